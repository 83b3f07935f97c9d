//! PaddleVideo's frame samplers (`loader/pipelines/sample.py`, `Sampler` with `seg_len=1`)
//! for the video format: all indices are 0-based frames of the decoded stream.

use rand::Rng;

/// `Sampler(num_seg, seg_len=1, valid_mode=True)`: the middle frame of each of `num_seg`
/// equal segments, `((avg - 1) / 2 + i * avg) % frames_len` with `avg = frames_len / num_seg`;
/// videos shorter than `num_seg` frames give `i % frames_len`.
///
/// Empty when `frames_len == 0` (PaddleVideo divides by zero there).
pub fn uniform_indices(frames_len: usize, num_seg: usize) -> Vec<u32> {
    segment_indices(frames_len, num_seg, |avg| (avg - 1) / 2)
}

/// `Sampler(num_seg, seg_len=1, valid_mode=False)`: one uniformly random frame per segment,
/// `(randint(0, avg - 1) + i * avg) % frames_len`, drawn independently per segment; videos
/// shorter than `num_seg` frames give `i % frames_len` (no randomness).
///
/// Empty when `frames_len == 0`.
pub fn train_indices(frames_len: usize, num_seg: usize, rng: &mut impl Rng) -> Vec<u32> {
    segment_indices(frames_len, num_seg, |avg| rng.random_range(0..avg))
}

/// Shared segment loop; `offset(avg)` picks the frame inside a segment of `avg >= 1` frames.
fn segment_indices(
    frames_len: usize,
    num_seg: usize,
    mut offset: impl FnMut(usize) -> usize,
) -> Vec<u32> {
    if frames_len == 0 || num_seg == 0 {
        return Vec::new();
    }
    let avg = frames_len / num_seg;
    (0..num_seg)
        .map(|i| {
            let idx = if avg >= 1 { offset(avg) + i * avg } else { i };
            to_u32(idx % frames_len)
        })
        .collect()
}

/// Dense-mode clip count (PaddleVideo's `Sampler(dense_sample=True)` in valid mode).
pub const DENSE_CLIPS: usize = 10;
/// Frames spanned by one dense clip.
const DENSE_WINDOW: usize = 64;

/// Dense test-mode sample: `DENSE_CLIPS` clips of `num_seg` frames each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DenseSample {
    /// Start offset of each clip (`np.linspace(0, sample_pos - 1, 10, dtype=int)`).
    pub starts: Vec<u32>,
    /// Per clip, the 0-based frames that decord reads (see [`dense_indices`]).
    pub views: Vec<Vec<u32>>,
}

/// PaddleVideo's dense sampler (`Sampler(num_seg, 1, valid_mode=True, dense_sample=True)`)
/// as it behaves with the decord backend.
///
/// `sample_pos = max(1, 1 + L - 64)`, `t_stride = 64 / num_seg`, ten clip starts from
/// `np.linspace(0, sample_pos - 1, 10)` and, per clip start `s`, the frames
/// `(k * t_stride + s) % L + 1` for `k` in `0..num_seg`. PaddleVideo's `+1` is meant for
/// 1-based image files but decord's `get_batch` is 0-based, so decord reads the frame one
/// later than the segment offset: these are the 0-based frames decord actually returns.
///
/// That number equals `L` only for short videos (`L < 64`, e.g. `L = 9`, `k = 1`); decord then
/// raises "Out of bound indices" and PaddleVideo silently retries with another video. Here such
/// an index wraps to frame 0 (the frame after the last one, cyclically, like the `% L` above).
///
/// Empty (no starts, no views) when `frames_len == 0` or `num_seg == 0`.
pub fn dense_indices(frames_len: usize, num_seg: usize) -> DenseSample {
    if frames_len == 0 || num_seg == 0 {
        return DenseSample {
            starts: Vec::new(),
            views: Vec::new(),
        };
    }
    let sample_pos = (1 + frames_len).saturating_sub(DENSE_WINDOW).max(1);
    let t_stride = DENSE_WINDOW / num_seg;
    let starts = linspace_floor(sample_pos - 1, DENSE_CLIPS);
    let views = starts
        .iter()
        .map(|&s| {
            (0..num_seg)
                .map(|k| to_u32(((k * t_stride + s) % frames_len + 1) % frames_len))
                .collect()
        })
        .collect();
    DenseSample {
        starts: starts.into_iter().map(to_u32).collect(),
        views,
    }
}

/// PaddleVideo's dense sampler on a frame folder (`FrameDecoder`): the same starts and
/// `(k * t_stride + s) % L + 1` as [`dense_indices`], but here the `+1` names 1-based file
/// `img_{:05}.jpg`, so the 0-based frames read are `(k * t_stride + s) % L`: one earlier than
/// decord reads from the video the folder was extracted from (PaddleVideo's own difference).
pub fn dense_frame_indices(frames_len: usize, num_seg: usize) -> DenseSample {
    let mut dense = dense_indices(frames_len, num_seg);
    for view in &mut dense.views {
        for i in view.iter_mut() {
            // decord's frame is `(x + 1) % L`; the folder's is `x`.
            let len = frames_len as u32;
            *i = (*i + len - 1) % len;
        }
    }
    dense
}

/// `np.linspace(0, stop, num, dtype=int)` as numpy 2 computes it: `floor(i * (stop / (num -
/// 1)))` in f64, with the last value set to `stop` exactly.
fn linspace_floor(stop: usize, num: usize) -> Vec<usize> {
    let step = stop as f64 / (num - 1) as f64;
    (0..num)
        .map(|i| {
            if i + 1 == num {
                stop
            } else {
                (i as f64 * step).floor() as usize
            }
        })
        .collect()
}

/// Frame indices are below `frames_len`; saturate rather than wrap for absurd lengths.
fn to_u32(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn dense_frames_are_the_offsets_themselves() {
        let d = dense_frame_indices(131, 8);
        assert_eq!(d.starts, dense_indices(131, 8).starts);
        assert_eq!(d.views[0], [0, 8, 16, 24, 32, 40, 48, 56]);
        assert_eq!(d.views[9][0], 67);
        // L = 9: decord would need frame 9 (wrapped to 0 by `dense_indices`); files go to 9.
        assert_eq!(dense_frame_indices(9, 8).views[0], [0, 8, 7, 6, 5, 4, 3, 2]);
    }

    #[test]
    fn uniform_example_avi() {
        assert_eq!(uniform_indices(131, 8), [7, 23, 39, 55, 71, 87, 103, 119]);
        let want: Vec<u32> = (0..16).map(|i| 3 + 8 * i).collect();
        assert_eq!(uniform_indices(131, 16), want);
    }

    #[test]
    fn uniform_short_videos() {
        assert_eq!(uniform_indices(5, 8), [0, 1, 2, 3, 4, 0, 1, 2]);
        assert_eq!(uniform_indices(1, 4), [0, 0, 0, 0]);
        assert!(uniform_indices(0, 8).is_empty());
        assert!(uniform_indices(10, 0).is_empty());
        // Exactly one frame per segment: avg = 1, offset 0.
        assert_eq!(uniform_indices(8, 8), [0, 1, 2, 3, 4, 5, 6, 7]);
        // avg = 2: (2 - 1) / 2 = 0.
        assert_eq!(uniform_indices(17, 8), [0, 2, 4, 6, 8, 10, 12, 14]);
    }

    #[test]
    fn train_indices_stay_in_their_segments() {
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..200 {
            let idx = train_indices(131, 8, &mut rng);
            assert_eq!(idx.len(), 8);
            for (i, &f) in idx.iter().enumerate() {
                let lo = 16 * i as u32;
                assert!((lo..lo + 16).contains(&f), "segment {i}: {f}");
            }
        }
        // Both ends of a segment are reachable.
        let seen: std::collections::BTreeSet<u32> = (0..500)
            .map(|_| train_indices(131, 8, &mut rng)[0])
            .collect();
        assert_eq!(seen, (0..16).collect());
    }

    #[test]
    fn train_short_videos_are_deterministic() {
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(train_indices(3, 8, &mut rng), [0, 1, 2, 0, 1, 2, 0, 1]);
        assert_eq!(train_indices(1, 2, &mut rng), [0, 0]);
        assert!(train_indices(0, 8, &mut rng).is_empty());
        // avg = 1: the only frame of each segment.
        assert_eq!(train_indices(8, 8, &mut rng), [0, 1, 2, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn dense_example_avi_matches_fixture() {
        let path = crate::npy::fixture_path("video/example_dense.json");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let json: serde_json::Value = serde_json::from_str(&text).expect("valid json");
        let sample = &json["sample"];
        let as_u32 = |v: &serde_json::Value| -> Vec<u32> {
            v.as_array()
                .expect("array")
                .iter()
                .map(|x| x.as_u64().expect("int") as u32)
                .collect()
        };
        let frames_len = json["frames_len"].as_u64().expect("frames_len") as usize;
        let num_seg = json["num_seg"].as_u64().expect("num_seg") as usize;
        let got = dense_indices(frames_len, num_seg);
        assert_eq!(got.starts, as_u32(&sample["clip_starts"]));
        let want_views: Vec<Vec<u32>> = sample["indices_by_clip"]
            .as_array()
            .expect("indices_by_clip")
            .iter()
            .map(as_u32)
            .collect();
        assert_eq!(got.views, want_views);
        let flat: Vec<u32> = got.views.concat();
        assert_eq!(flat, as_u32(&sample["indices"]));
        assert_eq!(got.starts, [0, 7, 14, 22, 29, 37, 44, 52, 59, 67]);
    }

    /// The fixture's per-frame sums of the 80 dense frames agree with the uniform-mode
    /// frames of the same 0-based index: the dense numbers are frames decord really returned.
    #[test]
    fn dense_indices_are_decord_frames() {
        let path = crate::npy::fixture_path("video/example_dense.json");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let json: serde_json::Value = serde_json::from_str(&text).expect("valid json");
        let sums = json["sample"]["per_frame_u8_sum"].as_array().expect("sums");
        let dense: Vec<u32> = dense_indices(131, 8).views.concat();
        let mut checked = 0;
        for (num_seg, file) in [
            (8, "video/example_8f_frames_rgb.npy"),
            (16, "video/example_16f_frames_rgb.npy"),
        ] {
            let frames = crate::npy::read_npy_u8(&crate::npy::fixture_path(file))
                .unwrap_or_else(|e| panic!("{e}"));
            let per_frame = frames.data.len() / num_seg;
            for (idx, px) in uniform_indices(131, num_seg)
                .iter()
                .zip(frames.data.chunks_exact(per_frame))
            {
                let sum: u64 = px.iter().map(|&b| u64::from(b)).sum();
                for (pos, _) in dense.iter().enumerate().filter(|&(_, d)| d == idx) {
                    assert_eq!(sums[pos].as_u64(), Some(sum), "frame {idx}");
                    checked += 1;
                }
            }
        }
        // Frames 23, 39, 55 and 71 occur in clips 2 and 3.
        assert_eq!(checked, 8);
    }

    #[test]
    fn dense_short_videos() {
        // L < 64: sample_pos = 1, ten identical clips starting at 0.
        let d = dense_indices(9, 8);
        assert_eq!(d.starts, [0; 10]);
        // (8k % 9) + 1 = 1, 9(->wraps to 0), 8, 7, ...
        assert_eq!(d.views[0], [1, 0, 8, 7, 6, 5, 4, 3]);
        assert!(d.views.iter().all(|v| v == &d.views[0]));
        let one = dense_indices(1, 8);
        assert_eq!(one.views[0], [0; 8]);
        let empty = dense_indices(0, 8);
        assert!(empty.starts.is_empty() && empty.views.is_empty());
        // L = 64: sample_pos = 1, largest index 57 + 1.
        assert_eq!(
            dense_indices(64, 8).views[9],
            [1, 9, 17, 25, 33, 41, 49, 57]
        );
        // L >= 64 never reaches L: the last clip ends at L - 7.
        for l in 64..400 {
            let d = dense_indices(l, 8);
            let max = d.views.iter().flatten().copied().max().expect("frames");
            assert_eq!(max as usize, l - 7, "L = {l}");
        }
    }

    #[test]
    fn linspace_matches_integer_floor() {
        // README: floor(i * (sample_pos - 1) / 9) equals numpy's result for these lengths.
        for stop in 0..200_000usize {
            let got = linspace_floor(stop, 10);
            for (i, &g) in got.iter().enumerate() {
                assert_eq!(g, i * stop / 9, "stop {stop} i {i}");
            }
        }
    }
}
