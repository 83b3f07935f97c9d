//! Live labels for the player: the window of the last `window_s` seconds, sampled on a fixed time
//! grid (multiples of `window_s / num_seg` from the clip start), so that consecutive windows
//! share all but one frame. Frames come from the player's FrameRing while it plays and are
//! decoded from the file otherwise (paused, just after a seek); transformed frames are cached by
//! grid index so a window that moves by one step transforms one new frame. Where the engine can
//! split its forward pass at the temporal shift (the CPU path), each grid frame's maps up to the
//! shift are cached too, so a one-step move runs the per-frame layers on one frame only; and as
//! the layers after the shift see a frame and its two neighbours only, each frame's share of
//! the features is cached by (grid point, neighbours present), so a one-step move recomputes
//! them for three frames (the new one, its predecessor, and the new first frame).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::classify::transform_frame;
use super::engine::Engine;
use super::topk::top_k;
use crate::model::nhwc::FrameMaps;
use crate::report::Ranked;
use crate::video::decode::FrameDecoder;
use crate::video::frame::RgbFrame;
use crate::video::player::FrameRing;
use crate::video::transform::{Normalize, to_clip_tensor};

/// Transformed frames kept per clip: enough for a few windows around the playhead.
const CACHE_GRID_POINTS: u64 = 96;

/// What the player asks for: labels for the window ending at `window_end_s`.
#[derive(Clone)]
pub struct LiveRequest {
    /// The player's generation (bumped on open and seek); results carry it back.
    pub generation: u64,
    pub path: PathBuf,
    pub window_end_s: f64,
    pub window_s: f64,
    /// Frames the player captured on the grid while playing; missing ones are decoded.
    pub ring: Option<Arc<FrameRing>>,
    pub requested_at: Instant,
}

impl std::fmt::Debug for LiveRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveRequest")
            .field("generation", &self.generation)
            .field("path", &self.path)
            .field("window_end_s", &self.window_end_s)
            .field("window_s", &self.window_s)
            .finish()
    }
}

/// Labels for one window.
#[derive(Clone, Debug)]
pub struct LiveResult {
    pub generation: u64,
    pub path: PathBuf,
    pub window_start_s: f64,
    pub window_end_s: f64,
    pub top_k: Vec<Ranked>,
    /// Request to result, decode and inference included.
    pub latency_ms: f64,
    /// Model forward alone.
    pub infer_ms: f64,
    /// Frames taken from the player's ring (the rest were decoded from the file).
    pub from_ring: usize,
    pub finished_at: Instant,
}

/// The grid indices of the window ending at `end_s`: `num_seg` consecutive points, clamped so
/// that a window near the start begins at 0 and none passes the clip's last grid point.
pub fn window_grid(end_s: f64, window_s: f64, num_seg: usize, duration_s: f64) -> Vec<u64> {
    let num_seg = num_seg.max(1) as u64;
    let step = window_s / num_seg as f64;
    let last_point = if duration_s > 0.0 {
        ((duration_s - 1e-9) / step).floor().max(0.0) as u64
    } else {
        u64::MAX
    };
    let end = ((end_s.max(0.0) / step).floor() as u64)
        .max(num_seg - 1)
        .min(last_point.max(num_seg - 1));
    (end + 1 - num_seg..=end).collect()
}

/// The frame shown at grid point `g`: the first frame whose timestamp reaches `g * step`.
pub fn grid_frame_index(g: u64, step_s: f64, fps: f64, frame_count: u32) -> u32 {
    let t = g as f64 * step_s * fps;
    let index = (t - 1e-6).ceil().max(0.0) as u32;
    index.min(frame_count.saturating_sub(1))
}

/// Per-clip state of the live path: transformed frames by grid index and an open decoder.
#[derive(Default)]
pub struct LiveCache {
    path: Option<PathBuf>,
    step_bits: u64,
    frames: HashMap<u64, RgbFrame>,
    /// Per-frame maps at the temporal shift, by grid index (engines that split there).
    maps: HashMap<u64, FrameMaps>,
    /// Each frame's share of the window features, by (grid index, has a previous frame, has
    /// a next frame) in the window.
    shares: HashMap<(u64, bool, bool), Vec<f32>>,
    decoder: Option<FrameDecoder>,
}

impl LiveCache {
    fn reset_for(&mut self, path: &Path, step_s: f64) {
        if self.path.as_deref() != Some(path) || self.step_bits != step_s.to_bits() {
            if self.path.as_deref() != Some(path) {
                self.decoder = None;
            }
            self.path = Some(path.to_path_buf());
            self.step_bits = step_s.to_bits();
            self.frames.clear();
            self.maps.clear();
            self.shares.clear();
        }
    }

    fn decoder(&mut self, path: &Path) -> Result<&mut FrameDecoder, String> {
        if self.decoder.is_none() {
            self.decoder = Some(FrameDecoder::open(path).map_err(|e| e.to_string())?);
        }
        self.decoder
            .as_mut()
            .ok_or_else(|| "decoder unavailable".to_string())
    }
}

/// Computes the labels for `req` with `engine` (num_seg frames), reusing `cache`.
pub fn serve(
    engine: &Engine,
    num_seg: usize,
    labels: &[String],
    k: usize,
    req: &LiveRequest,
    cache: &mut LiveCache,
) -> Result<LiveResult, String> {
    let step = req.window_s / num_seg.max(1) as f64;
    cache.reset_for(&req.path, step);
    let info = cache.decoder(&req.path)?.info().clone();
    let fps = if info.fps() > 0.0 {
        info.fps()
    } else {
        f64::from(info.frame_count) / info.duration_s.max(1e-9)
    };
    let duration_s = f64::from(info.frame_count) / fps.max(1e-9);
    let grid = window_grid(req.window_end_s, req.window_s, num_seg, duration_s);

    let mut from_ring = 0;
    let mut missing: Vec<(u64, u32)> = Vec::new();
    for &g in &grid {
        if cache.frames.contains_key(&g) {
            continue;
        }
        let ringed = req
            .ring
            .as_ref()
            .and_then(|ring| ring.frames_for(&[g]))
            .and_then(|mut frames| frames.pop());
        match ringed {
            Some(frame) => {
                let frame = transform_frame(&frame).map_err(|e| e.to_string())?;
                cache.frames.insert(g, frame);
                from_ring += 1;
            }
            None => missing.push((g, grid_frame_index(g, step, fps, info.frame_count))),
        }
    }
    if !missing.is_empty() {
        let mut indices: Vec<u32> = missing.iter().map(|&(_, i)| i).collect();
        indices.sort_unstable();
        indices.dedup();
        // Each frame is transformed as soon as it is decoded (one full-resolution frame at a
        // time).
        let mut by_index: HashMap<u32, Result<RgbFrame, String>> = HashMap::new();
        let decoded = cache
            .decoder(&req.path)?
            .for_each_frame(&indices, &mut |frame| {
                let small = transform_frame(&frame).map_err(|e| e.to_string());
                by_index.insert(frame.index, small);
            });
        if let Err(e) = decoded {
            // A failed seek can leave the decoder unusable: open a fresh one next time.
            cache.decoder = None;
            return Err(e.to_string());
        }
        for (g, index) in missing {
            let frame = by_index
                .get(&index)
                .ok_or_else(|| format!("frame {index} was not decoded"))?
                .clone()?;
            cache.frames.insert(g, frame);
        }
    }
    let first = grid.first().copied().unwrap_or(0);
    let near = |g: u64| g + CACHE_GRID_POINTS >= first && g <= first + CACHE_GRID_POINTS;
    cache.frames.retain(|&g, _| near(g));
    cache.maps.retain(|&g, _| near(g));
    cache.shares.retain(|&(g, _, _), _| near(g));

    let started = Instant::now();
    let logits = if engine.splits_at_shift() {
        logits_from_cached_maps(engine, &grid, cache)?
    } else {
        let frames: Vec<RgbFrame> = grid
            .iter()
            .filter_map(|g| cache.frames.get(g).cloned())
            .collect();
        let clip = to_clip_tensor(&frames, &Normalize::imagenet()).map_err(|e| e.to_string())?;
        let dims = [1, clip.frames, 3, clip.height, clip.width];
        engine.logits(clip.data, dims).map_err(|e| e.to_string())?
    };
    let infer_ms = started.elapsed().as_secs_f64() * 1e3;
    let label_of = |id: usize| {
        labels
            .get(id)
            .cloned()
            .unwrap_or_else(|| format!("class_{id}"))
    };
    Ok(LiveResult {
        generation: req.generation,
        path: req.path.clone(),
        window_start_s: first as f64 * step,
        window_end_s: (grid.last().copied().unwrap_or(0) + 1) as f64 * step,
        top_k: top_k(&logits, k, label_of),
        latency_ms: req.requested_at.elapsed().as_secs_f64() * 1e3,
        infer_ms,
        from_ring,
        finished_at: Instant::now(),
    })
}

/// The window's logits from per-frame maps, computing the maps of grid points not cached yet.
fn logits_from_cached_maps(
    engine: &Engine,
    grid: &[u64],
    cache: &mut LiveCache,
) -> Result<Vec<f32>, String> {
    for g in grid {
        if cache.maps.contains_key(g) {
            continue;
        }
        let frame = cache
            .frames
            .get(g)
            .ok_or_else(|| format!("grid point {g} has no frame"))?;
        let one = to_clip_tensor(std::slice::from_ref(frame), &Normalize::imagenet())
            .map_err(|e| e.to_string())?;
        let maps = engine
            .frame_maps(&one.data, one.height, one.width)
            .ok_or("this engine cannot split at the temporal shift")?
            .map_err(|e| e.to_string())?;
        cache.maps.insert(*g, maps);
    }
    let window: Vec<&FrameMaps> = grid.iter().filter_map(|g| cache.maps.get(g)).collect();
    if window.len() != grid.len() {
        return Err("a grid point has no maps".to_string());
    }
    if !engine.has_local_shares() {
        return engine
            .logits_from_frames(&window)
            .ok_or("this engine cannot split at the temporal shift")?
            .map_err(|e| e.to_string());
    }
    let last = grid.len() - 1;
    for (i, &g) in grid.iter().enumerate() {
        let key = (g, i > 0, i < last);
        if cache.shares.contains_key(&key) {
            continue;
        }
        let previous = (i > 0).then(|| window[i - 1]);
        let next = (i < last).then(|| window[i + 1]);
        let share = engine
            .frame_share(previous, window[i], next, grid.len())
            .ok_or("this engine has no local shares")?
            .map_err(|e| e.to_string())?;
        cache.shares.insert(key, share);
    }
    let shares: Vec<&[f32]> = grid
        .iter()
        .enumerate()
        .filter_map(|(i, &g)| cache.shares.get(&(g, i > 0, i < last)).map(Vec::as_slice))
        .collect();
    engine
        .logits_from_shares(&shares)
        .ok_or("this engine cannot split at the temporal shift")?
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_on_the_grid_share_all_but_one_point() {
        let a = window_grid(5.0, 2.0, 8, 10.0);
        let b = window_grid(5.25, 2.0, 8, 10.0);
        assert_eq!(a, (13..=20).collect::<Vec<_>>());
        assert_eq!(b, (14..=21).collect::<Vec<_>>());
    }

    #[test]
    fn windows_clamp_to_the_clip() {
        assert_eq!(window_grid(0.3, 2.0, 8, 10.0), (0..8).collect::<Vec<_>>());
        // 3 s clip, step 0.25: last grid point 11.
        assert_eq!(window_grid(9.0, 2.0, 8, 3.0), (4..=11).collect::<Vec<_>>());
        // Shorter than a window: still num_seg points from 0 (frames repeat, as uniform does).
        assert_eq!(window_grid(1.0, 2.0, 8, 1.0), (0..8).collect::<Vec<_>>());
    }

    #[test]
    fn grid_points_map_to_the_first_frame_at_or_after_them() {
        assert_eq!(grid_frame_index(0, 0.25, 25.0, 100), 0);
        assert_eq!(grid_frame_index(1, 0.25, 25.0, 100), 7); // 6.25 -> 7
        assert_eq!(grid_frame_index(4, 0.25, 25.0, 100), 25); // exactly 1 s
        assert_eq!(grid_frame_index(1000, 0.25, 25.0, 100), 99);
    }
}
