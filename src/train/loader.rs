//! Training and validation clips as model input, prepared by decode workers ahead of the
//! steps: PaddleVideo's `PIPELINE.train` (one random frame per segment, Scale, MultiScaleCrop,
//! RandomCrop, RandomFlip, normalisation; every length scaled by `size/224` below 224) with
//! all random choices from a per-clip seed, and the test pipeline for validation.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, bounded};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::TrainError;
use crate::progress::panic_text;
use crate::video::frame::{FrameError, RgbFrame};
use crate::video::sample::{train_indices, uniform_indices};
use crate::video::source::ClipSource;
use crate::video::transform::{
    Normalize, multi_scale_crop, random_crop, random_flip, scale_center_crop, scale_short_side,
    to_clip_tensor,
};

/// `round(size·256/224)`: PaddleVideo's Scale / MultiScaleCrop length for a `size` crop
/// (256 for 224).
pub fn short_side_for(size: u32) -> u32 {
    (f64::from(size) * 256.0 / 224.0).round() as u32
}

/// How clips are turned into model input.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClipSpec {
    pub num_seg: usize,
    pub size: u32,
    pub short: u32,
}

impl ClipSpec {
    pub fn values(&self) -> usize {
        self.num_seg * 3 * (self.size as usize) * (self.size as usize)
    }
}

/// The problem without its `<path>: ` prefix.
fn problem(path: &Path, text: String) -> String {
    let prefix = format!("{}: ", path.display());
    text.strip_prefix(&prefix)
        .map_or(text.clone(), str::to_string)
}

/// One training clip: random frame per segment, Scale, MultiScaleCrop, RandomCrop,
/// RandomFlip, normalisation, all random choices from `seed`. `[T, 3, size, size]`.
fn train_clip(path: &Path, spec: ClipSpec, seed: u64) -> Result<Vec<f32>, String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut decoder = ClipSource::open(path).map_err(|e| problem(path, e.to_string()))?;
    let frames_len = decoder.info().frame_count as usize;
    if frames_len == 0 {
        return Err("the video has no frames".into());
    }
    let indices = train_indices(frames_len, spec.num_seg, &mut rng);
    let scaled = decode_mapped(&mut decoder, path, &indices, |f| {
        scale_short_side(f, spec.short)
    })?;
    drop(decoder);
    let frame_err = |e: crate::video::frame::FrameError| e.to_string();
    let cropped = multi_scale_crop(&scaled, &mut rng, spec.short).map_err(frame_err)?;
    let cropped = random_crop(&cropped, spec.size, &mut rng).map_err(frame_err)?;
    let flipped = random_flip(cropped, &mut rng);
    let clip = to_clip_tensor(&flipped, &Normalize::imagenet()).map_err(frame_err)?;
    Ok(clip.data)
}

/// One validation clip: the test pipeline (middle frame of each segment, Scale, CenterCrop,
/// normalisation) at the run's scale; at 224 the exact tensor `kineto classify` feeds.
fn eval_clip(path: &Path, spec: ClipSpec) -> Result<Vec<f32>, String> {
    let mut decoder = ClipSource::open(path).map_err(|e| problem(path, e.to_string()))?;
    let frames_len = decoder.info().frame_count as usize;
    if frames_len == 0 {
        return Err("the video has no frames".into());
    }
    // The test pipeline (`transform::test_pipeline`), each frame scaled and cropped as soon
    // as it is decoded.
    let indices = uniform_indices(frames_len, spec.num_seg);
    let cropped = decode_mapped(&mut decoder, path, &indices, |f| {
        scale_center_crop(f, spec.short, spec.size)
    })?;
    drop(decoder);
    let clip = to_clip_tensor(&cropped, &Normalize::imagenet()).map_err(|e| e.to_string())?;
    Ok(clip.data)
}

/// `map` of the frames at `indices` (in their order, repeats included), each distinct frame
/// mapped as soon as it is decoded, so that one full-resolution frame is held at a time.
fn decode_mapped(
    decoder: &mut ClipSource,
    path: &Path,
    indices: &[u32],
    map: impl Fn(&RgbFrame) -> Result<RgbFrame, FrameError>,
) -> Result<Vec<RgbFrame>, String> {
    let mut done: HashMap<u32, Result<RgbFrame, FrameError>> = HashMap::new();
    decoder
        .for_each_frame(indices, &mut |frame| {
            done.insert(frame.index, map(&frame));
        })
        .map_err(|e| problem(path, e.to_string()))?;
    indices
        .iter()
        .map(|i| match done.get(i) {
            Some(Ok(frame)) => Ok(frame.clone()),
            Some(Err(e)) => Err(e.to_string()),
            None => Err(format!("frame {i} was not decoded")),
        })
        .collect()
}

pub(crate) type ClipResult = Result<Vec<f32>, String>;

/// Decode workers feeding a bounded, ordered prefetch queue: worker `w` prepares clips
/// `w, w + W, w + 2W, …` into its own bounded channel, and [`Loader::next`] reads the channels
/// round-robin, so the clips come back in order while up to `W·depth` are prepared ahead.
pub(crate) struct Loader {
    receivers: Vec<Receiver<ClipResult>>,
    next: usize,
    len: usize,
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

impl Loader {
    /// `seeds`: one per clip for training clips, `None` for validation clips.
    pub fn spawn(
        clips: Vec<(PathBuf, Option<u64>)>,
        spec: ClipSpec,
        workers: usize,
        depth: usize,
    ) -> Result<Self, TrainError> {
        let workers = workers.clamp(1, clips.len().max(1));
        let clips = Arc::new(clips);
        let stop = Arc::new(AtomicBool::new(false));
        let mut receivers = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for w in 0..workers {
            let (tx, rx) = bounded::<ClipResult>(depth.max(1));
            let clips = Arc::clone(&clips);
            let stop = Arc::clone(&stop);
            let handle = std::thread::Builder::new()
                .name(format!("kineto-decode-{w}"))
                .spawn(move || {
                    for (path, seed) in clips.iter().skip(w).step_by(workers) {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let run = || match seed {
                            Some(seed) => train_clip(path, spec, *seed),
                            None => eval_clip(path, spec),
                        };
                        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run))
                            .unwrap_or_else(|p| {
                                Err(format!("decoding crashed: {}", panic_text(p.as_ref())))
                            });
                        if tx.send(result).is_err() {
                            break;
                        }
                    }
                })
                .map_err(|source| TrainError::Thread {
                    what: "a decode thread",
                    source,
                })?;
            receivers.push(rx);
            handles.push(handle);
        }
        Ok(Self {
            receivers,
            next: 0,
            len: clips.len(),
            stop,
            handles,
        })
    }

    /// The next clip in order; `None` after the last.
    pub fn next(&mut self) -> Option<ClipResult> {
        if self.next >= self.len {
            return None;
        }
        let rx = &self.receivers[self.next % self.receivers.len()];
        self.next += 1;
        Some(
            rx.recv()
                .unwrap_or_else(|_| Err("the decode worker stopped".into())),
        )
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Workers blocked on a full channel see it closed and stop.
        self.receivers.clear();
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}

/// Decode worker threads for a device with `threads` compute threads.
pub(crate) fn decode_workers(threads: usize) -> usize {
    (threads / 4).clamp(1, 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_pipeline_lengths() {
        assert_eq!(short_side_for(224), 256);
        assert_eq!(short_side_for(112), 128);
        assert_eq!(short_side_for(64), 73);
    }
}
