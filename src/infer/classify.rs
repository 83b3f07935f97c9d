//! One video -> the exact tensor PaddleVideo's test pipeline feeds the model -> a record.
//!
//! Uniform mode: `Sampler(valid_mode=True)` -> `Scale(256)` -> `CenterCrop(224)` -> normalise.
//! Dense mode (PaddleVideo's 10 clips x 3 crops): 30 views, crop-major (`view = crop * 10 +
//! clip`), scores = the mean of the 30 views' logits.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::InferError;
use super::engine::Engine;
use super::topk::top_k;
use crate::report::{ClassifyRecord, Timings};
use crate::video::VideoError;
use crate::video::frame::{FrameError, RgbFrame};
use crate::video::probe::VideoInfo;
use crate::video::sample::uniform_indices;
use crate::video::source::ClipSource;
use crate::video::transform::{
    INPUT_SIZE, Normalize, SHORT_SIDE, crop, scale_center_crop, scale_short_side, test_frame_into,
    three_crop_boxes, to_clip_tensor,
};

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
    #[error("{}: cancelled", path.display())]
    Cancelled { path: PathBuf },
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

/// Views of a clip in dense mode: 10 clips x 3 crops.
pub const DENSE_VIEWS: usize = 30;

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
    /// Opening, counting and decoding (wall time, less any transform work done on the
    /// decoding thread). `decode_ms + preprocess_ms` is the wall time of [`prepare`].
    pub decode_ms: f64,
    /// Transform time not hidden behind decoding: with one thread, all of it; with more,
    /// the frames still being transformed when decoding ends.
    pub preprocess_ms: f64,
}

fn ms_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}

/// Decodes and preprocesses `path` exactly as PaddleVideo's test pipeline does.
///
/// Runs on rayon's current pool (the global one unless called inside `install`). With
/// one thread, each frame is transformed on the decoding thread as soon as it is decoded
/// (GStreamer's own streaming threads keep decoding meanwhile). With two or more, the
/// transforms run on the pool while the next frames decode, and a sparse request in a long
/// video is decoded by two decoders at once ([`crate::video::decode::decode_each`]; a frame folder decodes its JPEGs on the pool). The result is the same
/// tensor, bit for bit, either way.
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
    let mut decoder = ClipSource::open(path)?;
    let info = decoder.info().clone();
    let frames_len = info.frame_count as usize;
    if frames_len == 0 {
        return Err(ClassifyError::NoFrames {
            path: path.to_path_buf(),
        });
    }
    let norm = Normalize::imagenet();
    let t = sampling.num_seg;
    let workers = rayon::current_num_threads();
    if !sampling.dense {
        let indices = uniform_indices(frames_len, t);
        let clip = uniform_clip(&mut decoder, &indices, &norm, keep_frames, workers, start)?;
        return Ok(PreparedClip {
            info,
            view_indices: vec![indices],
            dims: [1, t, 3, INPUT_SIZE as usize, INPUT_SIZE as usize],
            tensor: clip.tensor,
            frames: clip.frames,
            decode_ms: clip.decode_ms,
            preprocess_ms: clip.preprocess_ms,
        });
    }

    let dense = decoder.dense_indices(t);
    let flat: Vec<u32> = dense.views.iter().flatten().copied().collect();
    // Each distinct frame is scaled as soon as it is decoded; only the scaled ones are kept.
    let scale = |f: RgbFrame| scale_short_side(&f, SHORT_SIDE);
    let (scaled, decode_ms) = decode_transformed(&mut decoder, &flat, workers, start, &scale)?;
    drop(decoder);
    let start = Instant::now();
    let scaled_at = |i: &u32| {
        scaled.get(i).ok_or_else(|| {
            ClassifyError::Video(VideoError::FrameUnavailable {
                path: path.to_path_buf(),
                index: *i,
                detail: "not produced by the decoder".into(),
            })
        })
    };
    let (w, h) = match flat.first() {
        Some(i) => scaled_at(i).map(|f| (f.width, f.height))?,
        None => (0, 0),
    };
    // GroupFullResSample: crops outside, clips inside, so view = crop * 10 + clip.
    let mut tensor = Vec::with_capacity(DENSE_VIEWS * t * 3 * (INPUT_SIZE * INPUT_SIZE) as usize);
    let mut view_indices = Vec::with_capacity(DENSE_VIEWS);
    for (x, y) in three_crop_boxes(w, h, INPUT_SIZE) {
        for indices in &dense.views {
            let cropped = indices
                .iter()
                .map(|i| {
                    let frame = scaled_at(i)?;
                    crop(frame, x, y, INPUT_SIZE, INPUT_SIZE).map_err(frame_error)
                })
                .collect::<Result<Vec<_>, _>>()?;
            tensor.extend(to_clip_tensor(&cropped, &norm).map_err(frame_error)?.data);
            view_indices.push(indices.clone());
        }
    }
    let views = view_indices.len();
    Ok(PreparedClip {
        info,
        view_indices,
        dims: [views, t, 3, INPUT_SIZE as usize, INPUT_SIZE as usize],
        tensor,
        frames: None,
        decode_ms,
        preprocess_ms: ms_since(start),
    })
}

/// Full-resolution frames decoded but not yet transformed: the decoding thread waits while
/// `limit` of them are (a 3840x2160 RGB frame is 25 MB), so that memory stays bounded however
/// many frames a request wants and however large they are.
struct InFlight {
    count: Mutex<usize>,
    freed: Condvar,
    limit: usize,
}

impl InFlight {
    fn new(limit: usize) -> Self {
        InFlight {
            count: Mutex::new(0),
            freed: Condvar::new(),
            limit: limit.max(1),
        }
    }

    /// Wait for room for one more frame and take it.
    fn acquire(&self) {
        let Ok(mut count) = self.count.lock() else {
            return;
        };
        while *count >= self.limit {
            match self.freed.wait(count) {
                Ok(c) => count = c,
                Err(_) => return,
            }
        }
        *count += 1;
    }

    fn release(&self) {
        if let Ok(mut count) = self.count.lock() {
            *count = count.saturating_sub(1);
        }
        self.freed.notify_one();
    }
}

/// Frames handed to the pool at once per worker (see [`InFlight`]).
const IN_FLIGHT_PER_WORKER: usize = 2;

/// Decodes the frames at `indices`, handing each to `work` as it is decoded: on the pool
/// behind the in-flight gate with two or more workers (so that at most a few full-resolution
/// frames wait), on the decoding thread with one. Returns when decoding ended and the time
/// `work` spent on the decoding thread.
fn decode_on_pool(
    decoder: &mut ClipSource,
    indices: &[u32],
    workers: usize,
    work: &(dyn Fn(RgbFrame) + Sync),
) -> Result<(Instant, Duration), ClassifyError> {
    let inline_time: Mutex<Duration> = Mutex::new(Duration::ZERO);
    let in_flight = InFlight::new(IN_FLIGHT_PER_WORKER * workers);
    let mut decoded_at = Instant::now();
    let decoded = rayon::scope(|s| {
        let on_frame = |frame: RgbFrame| {
            if workers >= 2 {
                in_flight.acquire();
                let in_flight = &in_flight;
                s.spawn(move |_| {
                    work(frame);
                    in_flight.release();
                });
            } else {
                let t0 = Instant::now();
                work(frame);
                if let Ok(mut d) = inline_time.lock() {
                    *d += t0.elapsed();
                }
            }
        };
        let result = decoder.decode_each(indices, workers, &on_frame);
        decoded_at = Instant::now();
        result
    });
    decoded?;
    Ok((decoded_at, inline_time.into_inner().unwrap_or_default()))
}

/// Decodes the distinct frames at `indices` and applies `transform` to each as soon as it is
/// decoded (on the pool with two or more workers, on the decoding thread with one), keeping
/// only the results: at most a few full-resolution frames exist at any time. Returns the
/// results by index and the decoding time in ms since `start` (less the transform time spent
/// on the decoding thread).
fn decode_transformed<T: Send>(
    decoder: &mut ClipSource,
    indices: &[u32],
    workers: usize,
    start: Instant,
    transform: &(dyn Fn(RgbFrame) -> Result<T, FrameError> + Sync),
) -> Result<(HashMap<u32, T>, f64), ClassifyError> {
    let path = decoder.info().path.clone();
    let done: Mutex<HashMap<u32, T>> = Mutex::new(HashMap::with_capacity(indices.len()));
    let failure: Mutex<Option<FrameError>> = Mutex::new(None);
    let run = |frame: RgbFrame| {
        let index = frame.index;
        match transform(frame) {
            Ok(out) => {
                if let Ok(mut d) = done.lock() {
                    d.insert(index, out);
                }
            }
            Err(e) => {
                if let Ok(mut f) = failure.lock() {
                    f.get_or_insert(e);
                }
            }
        }
    };
    let (decoded_at, inline) = decode_on_pool(decoder, indices, workers, &run)?;
    if let Some(e) = failure.into_inner().ok().flatten() {
        return Err(ClassifyError::Frame { path, source: e });
    }
    let decode_ms = (decoded_at - start).as_secs_f64() * 1e3 - inline.as_secs_f64() * 1e3;
    Ok((done.into_inner().unwrap_or_default(), decode_ms))
}

/// A uniform-mode clip and how its time split.
struct UniformClip {
    tensor: Vec<f32>,
    frames: Option<Vec<RgbFrame>>,
    decode_ms: f64,
    preprocess_ms: f64,
}

/// Decodes the frames at `indices` and transforms each into its slot of the
/// `[T, 3, INPUT_SIZE, INPUT_SIZE]` tensor as soon as it is decoded (see [`prepare`]). `start`
/// is when opening the file began.
fn uniform_clip(
    decoder: &mut ClipSource,
    indices: &[u32],
    norm: &Normalize,
    keep_frames: bool,
    workers: usize,
    start: Instant,
) -> Result<UniformClip, ClassifyError> {
    let path = decoder.info().path.clone();
    let slot_len = 3 * (INPUT_SIZE * INPUT_SIZE) as usize;
    let mut tensor = vec![0.0f32; indices.len() * slot_len];
    // Each distinct index is transformed once, into the slot of its first position; the
    // slots of repeats (videos shorter than num_seg) are copied afterwards.
    let mut first_pos: HashMap<u32, usize> = HashMap::with_capacity(indices.len());
    for (pos, &i) in indices.iter().enumerate() {
        first_pos.entry(i).or_insert(pos);
    }
    let mut slots: HashMap<u32, &mut [f32]> = HashMap::with_capacity(first_pos.len());
    for (pos, slot) in tensor.chunks_exact_mut(slot_len).enumerate() {
        if let Some(&i) = indices.get(pos)
            && first_pos.get(&i) == Some(&pos)
        {
            slots.insert(i, slot);
        }
    }
    let slots = Mutex::new(slots);
    let kept: Mutex<HashMap<u32, RgbFrame>> = Mutex::new(HashMap::new());
    let failure: Mutex<Option<FrameError>> = Mutex::new(None);
    let transform = |frame: RgbFrame| {
        let slot = slots.lock().ok().and_then(|mut m| m.remove(&frame.index));
        if keep_frames && let Ok(mut k) = kept.lock() {
            k.insert(frame.index, frame.clone());
        }
        if let Some(slot) = slot
            && let Err(e) = test_frame_into(&frame, SHORT_SIDE, INPUT_SIZE, norm, slot)
            && let Ok(mut f) = failure.lock()
        {
            f.get_or_insert(e);
        }
    };
    let (decoded_at, inline) = decode_on_pool(decoder, indices, workers, &transform)?;
    if let Some(e) = failure.into_inner().ok().flatten() {
        return Err(ClassifyError::Frame { path, source: e });
    }
    for (pos, i) in indices.iter().enumerate() {
        if let Some(&first) = first_pos.get(i)
            && first != pos
        {
            tensor.copy_within(first * slot_len..(first + 1) * slot_len, pos * slot_len);
        }
    }
    let frames = if keep_frames {
        let kept = kept.into_inner().unwrap_or_default();
        Some(
            indices
                .iter()
                .filter_map(|i| kept.get(i).cloned())
                .collect(),
        )
    } else {
        None
    };
    let inline_ms = inline.as_secs_f64() * 1e3;
    let total_ms = ms_since(start);
    let decode_ms = (decoded_at - start).as_secs_f64() * 1e3 - inline_ms;
    Ok(UniformClip {
        tensor,
        frames,
        decode_ms,
        preprocess_ms: total_ms - decode_ms,
    })
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

/// Runs the model once on several prepared clips of the same frame shape (their views
/// stacked into one batch) and builds their records, in order. Each record's `infer` time is
/// its share of the forward (by views). If the batched forward fails, each clip is run alone,
/// so that only the clip at fault gets the error row.
pub fn classify_together(
    engine: &Engine,
    mut clips: Vec<(&Path, PreparedClip)>,
    k: usize,
    labels: &[String],
) -> Vec<ClassifyRecord> {
    let same_shape = clips
        .windows(2)
        .all(|w| w[0].1.dims[1..] == w[1].1.dims[1..]);
    let each_alone = |clips: Vec<(&Path, PreparedClip)>| -> Vec<ClassifyRecord> {
        clips
            .into_iter()
            .flat_map(|clip| classify_together(engine, vec![clip], k, labels))
            .collect()
    };
    if clips.len() > 1 && !same_shape {
        return each_alone(clips);
    }
    let Some(first) = clips.first() else {
        return Vec::new();
    };
    let views: usize = clips.iter().map(|(_, c)| c.dims[0]).sum();
    let dims = [
        views,
        first.1.dims[1],
        first.1.dims[2],
        first.1.dims[3],
        first.1.dims[4],
    ];
    let data = if clips.len() == 1 {
        // Alone, the clip is never retried: its tensor can go.
        std::mem::take(&mut clips[0].1.tensor)
    } else {
        let mut data = Vec::with_capacity(dims.iter().product());
        for (_, clip) in &clips {
            data.extend_from_slice(&clip.tensor);
        }
        data
    };
    let start = Instant::now();
    let logits = engine.logits(data, dims);
    let infer_ms = ms_since(start);
    let logits = match logits {
        Ok(l) => l,
        Err(_) if clips.len() > 1 => return each_alone(clips),
        Err(source) => {
            let (path, clip) = &clips[0];
            let err = ClassifyError::Infer {
                path: path.to_path_buf(),
                source,
            };
            return vec![ClassifyRecord::failed(
                path,
                clip.dims[1],
                err.problem(path),
            )];
        }
    };
    let classes = engine.num_classes();
    let label_of = |id: usize| {
        labels
            .get(id)
            .cloned()
            .unwrap_or_else(|| format!("class_{id}"))
    };
    let mut offset = 0;
    clips
        .into_iter()
        .map(|(path, clip)| {
            let n = clip.dims[0];
            let own = logits
                .get(offset * classes..(offset + n) * classes)
                .unwrap_or_default();
            offset += n;
            let scores = mean_logits(own, n, classes);
            ClassifyRecord {
                path: path.display().to_string(),
                status: "ok",
                error: None,
                top_k: top_k(&scores, k, label_of),
                frames: clip.dims[1],
                indices: clip.view_indices.into_iter().next().unwrap_or_default(),
                timings_ms: Timings {
                    decode: clip.decode_ms,
                    preprocess: clip.preprocess_ms,
                    infer: infer_ms * n as f64 / views as f64,
                },
            }
        })
        .collect()
}

/// Uniform-mode preprocessing of frames already decoded (timeline windows reuse frames).
pub fn transform_frame(frame: &RgbFrame) -> Result<RgbFrame, FrameError> {
    scale_center_crop(frame, SHORT_SIDE, INPUT_SIZE)
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
