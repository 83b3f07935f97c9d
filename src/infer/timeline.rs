//! Predictions over sliding windows of one video. Windows start at `k * stride`; a last window
//! ends at the clip's end when the last full one stops short; a clip shorter than one window is
//! one window. Each window's frames `[floor(start * fps), floor(end * fps))` are sampled the
//! uniform way. Frames are decoded in chunks of windows and each sampled frame is decoded and
//! transformed once, however many windows use it.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

use super::classify::{ClassifyError, transform_frame};
use super::engine::Engine;
use super::topk::top_k;
use crate::progress::CancelToken;
use crate::report::Ranked;
use crate::video::decode::FrameDecoder;
use crate::video::frame::RgbFrame;
use crate::video::sample::uniform_indices;
use crate::video::transform::{Normalize, to_clip_tensor};

/// Windows decoded together: bounds the (transformed, 224x224) frames held in memory.
const WINDOWS_PER_CHUNK: usize = 16;
/// Windows per forward pass for the command line (the app uses 1 so that live requests, served
/// between forwards, never wait behind a batch).
pub const WINDOWS_PER_BATCH: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Span {
    pub start_s: f64,
    pub end_s: f64,
}

/// The window spans over a clip of `duration_s`.
pub fn window_spans(duration_s: f64, window_s: f64, stride_s: f64) -> Vec<Span> {
    if !(duration_s > 0.0 && window_s > 0.0 && stride_s > 0.0) {
        return Vec::new();
    }
    if duration_s <= window_s {
        return vec![Span {
            start_s: 0.0,
            end_s: duration_s,
        }];
    }
    let mut spans = Vec::new();
    let mut k = 0u64;
    loop {
        let start_s = k as f64 * stride_s;
        let end_s = start_s + window_s;
        // A tolerance so that 10.0 s clips with 1 s strides keep their last full window.
        if end_s > duration_s + 1e-9 {
            break;
        }
        spans.push(Span { start_s, end_s });
        k += 1;
    }
    let last_end = spans.last().map_or(0.0, |s| s.end_s);
    if last_end < duration_s - 1e-9 {
        spans.push(Span {
            start_s: duration_s - window_s,
            end_s: duration_s,
        });
    }
    spans
}

/// The frames a window samples: uniform over `[floor(start * fps), floor(end * fps))`.
pub fn window_indices(span: Span, fps: f64, frame_count: u32, num_seg: usize) -> Vec<u32> {
    let last = frame_count.saturating_sub(1);
    let first = ((span.start_s * fps).floor().max(0.0) as u32).min(last);
    let end = ((span.end_s * fps).floor().max(0.0) as u32).min(frame_count);
    let len = end.saturating_sub(first).max(1) as usize;
    uniform_indices(len, num_seg)
        .into_iter()
        .map(|i| (first + i).min(last))
        .collect()
}

#[derive(Clone, Debug, Serialize)]
pub struct TimelineWindow {
    pub start_s: f64,
    pub end_s: f64,
    pub indices: Vec<u32>,
    pub top_k: Vec<Ranked>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TimelineRecord {
    pub path: String,
    pub duration_s: f64,
    pub fps: f64,
    pub frame_count: u32,
    pub window_s: f64,
    pub stride_s: f64,
    pub frames: usize,
    pub windows: Vec<TimelineWindow>,
}

pub struct TimelineRequest<'a> {
    pub window_s: f64,
    pub stride_s: f64,
    pub num_seg: usize,
    pub k: usize,
    pub labels: &'a [String],
    /// Windows per forward pass (at least 1).
    pub batch: usize,
}

/// Runs the model over every window of `path`; `on_window` sees each as it completes.
pub fn timeline(
    engine: &Engine,
    path: &Path,
    req: &TimelineRequest,
    cancel: &CancelToken,
    mut on_window: impl FnMut(&TimelineWindow, usize, usize),
) -> Result<TimelineRecord, ClassifyError> {
    let mut decoder = FrameDecoder::open(path)?;
    let info = decoder.info().clone();
    if info.frame_count == 0 {
        return Err(ClassifyError::NoFrames {
            path: path.to_path_buf(),
        });
    }
    let fps = if info.fps() > 0.0 {
        info.fps()
    } else {
        f64::from(info.frame_count) / info.duration_s.max(1e-9)
    };
    let duration_s = f64::from(info.frame_count) / fps;
    let spans = window_spans(duration_s, req.window_s, req.stride_s);
    let all_indices: Vec<Vec<u32>> = spans
        .iter()
        .map(|&s| window_indices(s, fps, info.frame_count, req.num_seg))
        .collect();
    let norm = Normalize::imagenet();
    let frame_error = |source| ClassifyError::Frame {
        path: path.to_path_buf(),
        source,
    };
    let infer_error = |source| ClassifyError::Infer {
        path: path.to_path_buf(),
        source,
    };
    let label_of = |id: usize| {
        req.labels
            .get(id)
            .cloned()
            .unwrap_or_else(|| format!("class_{id}"))
    };

    let mut cache: HashMap<u32, RgbFrame> = HashMap::new();
    let mut windows = Vec::with_capacity(spans.len());
    for (chunk_no, chunk) in all_indices.chunks(WINDOWS_PER_CHUNK).enumerate() {
        if cancel.is_cancelled() {
            return Err(ClassifyError::Cancelled {
                path: path.to_path_buf(),
            });
        }
        let mut needed: Vec<u32> = chunk.iter().flatten().copied().collect();
        needed.sort_unstable();
        needed.dedup();
        // Keep what this chunk shares with the previous one; decode the rest once.
        cache.retain(|i, _| needed.binary_search(i).is_ok());
        let missing: Vec<u32> = needed
            .iter()
            .copied()
            .filter(|i| !cache.contains_key(i))
            .collect();
        // Each frame is transformed as soon as it is decoded: one full-resolution frame at a
        // time, however large the video and however many frames the chunk wants.
        let mut failed = None;
        decoder.for_each_frame(&missing, &mut |frame| {
            if failed.is_some() {
                return;
            }
            match transform_frame(&frame) {
                Ok(small) => {
                    cache.insert(frame.index, small);
                }
                Err(e) => failed = Some(e),
            }
        })?;
        if let Some(e) = failed {
            return Err(frame_error(e));
        }
        let per_batch = req.batch.max(1);
        for (batch_no, batch) in chunk.chunks(per_batch).enumerate() {
            if cancel.is_cancelled() {
                return Err(ClassifyError::Cancelled {
                    path: path.to_path_buf(),
                });
            }
            let mut data = Vec::new();
            let mut dims = [batch.len(), req.num_seg, 3, 0, 0];
            for indices in batch {
                let frames: Vec<RgbFrame> = indices
                    .iter()
                    .filter_map(|i| cache.get(i).cloned())
                    .collect();
                let clip = to_clip_tensor(&frames, &norm).map_err(frame_error)?;
                dims[3] = clip.height;
                dims[4] = clip.width;
                data.extend(clip.data);
            }
            let logits = engine.logits(data, dims).map_err(infer_error)?;
            let classes = engine.num_classes();
            for (j, (row, indices)) in logits.chunks(classes).zip(batch).enumerate() {
                let w = chunk_no * WINDOWS_PER_CHUNK + batch_no * per_batch + j;
                let span = spans[w];
                windows.push(TimelineWindow {
                    start_s: span.start_s,
                    end_s: span.end_s,
                    indices: indices.clone(),
                    top_k: top_k(row, req.k, label_of),
                });
                if let Some(window) = windows.last() {
                    on_window(window, windows.len(), spans.len());
                }
            }
        }
    }
    Ok(TimelineRecord {
        path: path.display().to_string(),
        duration_s,
        fps,
        frame_count: info.frame_count,
        window_s: req.window_s,
        stride_s: req.stride_s,
        frames: req.num_seg,
        windows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_the_clip() {
        let s = window_spans(5.24, 2.0, 1.0);
        let starts: Vec<f64> = s.iter().map(|w| w.start_s).collect();
        assert_eq!(starts[..4], [0.0, 1.0, 2.0, 3.0]);
        assert_eq!(s.len(), 5, "plus a last window ending at the clip's end");
        assert!((s[4].end_s - 5.24).abs() < 1e-12 && (s[4].start_s - 3.24).abs() < 1e-12);

        let exact = window_spans(4.0, 2.0, 1.0);
        assert_eq!(
            exact.len(),
            3,
            "no extra window when the last full one ends at the end"
        );

        let short = window_spans(1.5, 2.0, 1.0);
        assert_eq!(
            short,
            vec![Span {
                start_s: 0.0,
                end_s: 1.5
            }]
        );
        assert!(window_spans(0.0, 2.0, 1.0).is_empty());
    }

    #[test]
    fn window_frames_are_sampled_uniformly_inside_the_span() {
        // 25 fps, window [1 s, 3 s) = frames 25..75, 8 segments of 6 frames: middle frames.
        let idx = window_indices(
            Span {
                start_s: 1.0,
                end_s: 3.0,
            },
            25.0,
            131,
            8,
        );
        assert_eq!(idx, vec![27, 33, 39, 45, 51, 57, 63, 69]);
        // Past the end is clamped.
        let idx = window_indices(
            Span {
                start_s: 5.0,
                end_s: 6.0,
            },
            25.0,
            131,
            2,
        );
        assert!(idx.iter().all(|&i| i <= 130));
    }
}
