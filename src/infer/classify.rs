//! One video -> the exact tensor PaddleVideo's test pipeline feeds the model -> a record.
//!
//! Uniform mode: `Sampler(valid_mode=True)` -> `Scale(256)` -> `CenterCrop(224)` -> normalise.
//! Dense mode (PaddleVideo's 10 clips x 3 crops): 30 views, crop-major (`view = crop * 10 +
//! clip`), scores = the mean of the 30 views' logits.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use super::InferError;
use super::engine::Engine;
use super::topk::{Ranked, top_k};
use crate::video::VideoError;
use crate::video::decode::FrameDecoder;
use crate::video::frame::{FrameError, RgbFrame};
use crate::video::probe::VideoInfo;
use crate::video::sample::{dense_indices, uniform_indices};
use crate::video::transform::{
    Normalize, center_crop, crop, scale_short_side, test_pipeline, three_crop_boxes, to_clip_tensor,
};

/// PaddleVideo's `Scale(short_size=256)` and `CenterCrop(224)` for every PP-TSM config.
pub const SHORT_SIDE: u32 = 256;
pub const CROP: u32 = 224;

#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    #[error(transparent)]
    Video(#[from] VideoError),
    #[error("{}: {source}", path.display())]
    Frame { path: PathBuf, source: FrameError },
    #[error("{}: the video has no frames", path.display())]
    NoFrames { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Infer { path: PathBuf, source: InferError },
}

impl ClassifyError {
    /// The problem without the `<path>: ` prefix (records carry the path separately).
    pub fn problem(&self, path: &Path) -> String {
        let text = self.to_string();
        let prefix = format!("{}: ", path.display());
        text.strip_prefix(&prefix)
            .map_or(text.clone(), str::to_string)
    }
}

/// How a clip is sampled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sampling {
    pub num_seg: usize,
    pub dense: bool,
}

/// A video turned into model input.
#[derive(Clone, Debug)]
pub struct PreparedClip {
    pub info: VideoInfo,
    /// Frame indices of each view (one view in uniform mode, 30 in dense mode).
    pub view_indices: Vec<Vec<u32>>,
    /// `[views, T, 3, 224, 224]`.
    pub dims: [usize; 5],
    pub tensor: Vec<f32>,
    /// The decoded frames at the sampled indices (uniform mode), when asked for.
    pub frames: Option<Vec<RgbFrame>>,
    pub decode_ms: f64,
    pub preprocess_ms: f64,
}

fn ms_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}

/// Decodes and preprocesses `path` exactly as PaddleVideo's test pipeline does.
pub fn prepare(
    path: &Path,
    sampling: Sampling,
    keep_frames: bool,
) -> Result<PreparedClip, ClassifyError> {
    let frame_error = |source| ClassifyError::Frame {
        path: path.to_path_buf(),
        source,
    };
    let start = Instant::now();
    let mut decoder = FrameDecoder::open(path)?;
    let info = decoder.info().clone();
    let frames_len = info.frame_count as usize;
    if frames_len == 0 {
        return Err(ClassifyError::NoFrames {
            path: path.to_path_buf(),
        });
    }
    let norm = Normalize::imagenet();
    let t = sampling.num_seg;
    if !sampling.dense {
        let indices = uniform_indices(frames_len, t);
        let frames = decoder.frames_at(&indices)?;
        let decode_ms = ms_since(start);
        let start = Instant::now();
        let clip = test_pipeline(&frames, SHORT_SIDE, CROP, &norm).map_err(frame_error)?;
        return Ok(PreparedClip {
            info,
            view_indices: vec![indices],
            dims: [1, t, 3, clip.height, clip.width],
            tensor: clip.data,
            frames: keep_frames.then_some(frames),
            decode_ms,
            preprocess_ms: ms_since(start),
        });
    }

    let dense = dense_indices(frames_len, t);
    let flat: Vec<u32> = dense.views.iter().flatten().copied().collect();
    let frames = decoder.frames_at(&flat)?;
    let decode_ms = ms_since(start);
    let start = Instant::now();
    let scaled = frames
        .iter()
        .map(|f| scale_short_side(f, SHORT_SIDE))
        .collect::<Result<Vec<_>, _>>()
        .map_err(frame_error)?;
    let (w, h) = scaled.first().map_or((0, 0), |f| (f.width, f.height));
    // GroupFullResSample: crops outside, clips inside, so view = crop * 10 + clip.
    let mut tensor = Vec::with_capacity(30 * t * 3 * (CROP * CROP) as usize);
    let mut view_indices = Vec::with_capacity(30);
    for (x, y) in three_crop_boxes(w, h, CROP) {
        for (clip, indices) in dense.views.iter().enumerate() {
            let cropped = scaled[clip * t..(clip + 1) * t]
                .iter()
                .map(|f| crop(f, x, y, CROP, CROP))
                .collect::<Result<Vec<_>, _>>()
                .map_err(frame_error)?;
            tensor.extend(to_clip_tensor(&cropped, &norm).map_err(frame_error)?.data);
            view_indices.push(indices.clone());
        }
    }
    let views = view_indices.len();
    Ok(PreparedClip {
        info,
        view_indices,
        dims: [views, t, 3, CROP as usize, CROP as usize],
        tensor,
        frames: None,
        decode_ms,
        preprocess_ms: ms_since(start),
    })
}

/// What `classify` reports for one file (the JSON shape of DESIGN.md section 5).
#[derive(Clone, Debug, Serialize)]
pub struct ClassifyRecord {
    pub path: String,
    pub status: &'static str,
    pub error: Option<String>,
    pub top_k: Vec<Ranked>,
    pub frames: usize,
    pub indices: Vec<u32>,
    pub timings_ms: Timings,
}

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Timings {
    pub decode: f64,
    pub preprocess: f64,
    pub infer: f64,
}

impl ClassifyRecord {
    pub fn failed(path: &Path, frames: usize, error: String) -> Self {
        Self {
            path: path.display().to_string(),
            status: "error",
            error: Some(error),
            top_k: Vec::new(),
            frames,
            indices: Vec::new(),
            timings_ms: Timings::default(),
        }
    }

    pub fn is_ok(&self) -> bool {
        self.error.is_none()
    }
}

/// Mean of the views' logits (dense mode averages logits, not softmax, as PaddleVideo does).
pub fn mean_logits(logits: &[f32], views: usize, classes: usize) -> Vec<f32> {
    let mut mean = vec![0.0f64; classes];
    for view in logits.chunks(classes).take(views) {
        for (m, &x) in mean.iter_mut().zip(view) {
            *m += f64::from(x);
        }
    }
    mean.iter()
        .map(|&m| (m / views.max(1) as f64) as f32)
        .collect()
}

/// Runs the model on a prepared clip and builds its record.
pub fn classify_prepared(
    engine: &Engine,
    path: &Path,
    clip: PreparedClip,
    k: usize,
    labels: &[String],
) -> ClassifyRecord {
    let frames = clip.dims[1];
    let start = Instant::now();
    let logits = match engine.logits(clip.tensor, clip.dims) {
        Ok(l) => l,
        Err(source) => {
            let err = ClassifyError::Infer {
                path: path.to_path_buf(),
                source,
            };
            return ClassifyRecord::failed(path, frames, err.problem(path));
        }
    };
    let infer_ms = ms_since(start);
    let scores = mean_logits(&logits, clip.dims[0], engine.num_classes());
    let label_of = |id: usize| {
        labels
            .get(id)
            .cloned()
            .unwrap_or_else(|| format!("class_{id}"))
    };
    ClassifyRecord {
        path: path.display().to_string(),
        status: "ok",
        error: None,
        top_k: top_k(&scores, k, label_of),
        frames,
        indices: clip.view_indices.into_iter().next().unwrap_or_default(),
        timings_ms: Timings {
            decode: clip.decode_ms,
            preprocess: clip.preprocess_ms,
            infer: infer_ms,
        },
    }
}

/// Uniform-mode preprocessing of frames already decoded (timeline windows reuse frames).
pub fn transform_frame(frame: &RgbFrame) -> Result<RgbFrame, FrameError> {
    center_crop(&scale_short_side(frame, SHORT_SIDE)?, CROP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_scores_are_the_mean_of_view_logits() {
        let logits = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        assert_eq!(mean_logits(&logits, 3, 2), vec![3.0, 4.0]);
        assert_eq!(mean_logits(&logits, 1, 6), logits.to_vec());
    }
}
