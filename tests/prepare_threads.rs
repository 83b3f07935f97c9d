//! `prepare` (what classify feeds the model) gives the same tensor, bit for bit, whatever the
//! number of threads: one thread transforms each frame on the decoding thread, two overlap
//! the transforms with decoding. On PaddleVideo's example clip the sampled frames are
//! decord's exactly and the tensor is the reference pipeline's (decord + Pillow) exactly.

// Test code: a failed unwrap/expect is the test failing (clippy.toml exempts only #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{fixture, npy, npy_u8};
use kineto::infer::classify::{PreparedClip, Sampling, prepare};

fn prepare_on(threads: usize, path: &Path, frames: usize, dense: bool) -> PreparedClip {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool");
    let sampling = Sampling {
        num_seg: frames,
        dense,
    };
    pool.install(|| prepare(path, sampling, !dense))
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn example_clip_is_the_same_on_one_and_two_threads_and_matches_the_reference() {
    let path = fixture("video/example.avi");
    for frames in [8usize, 16] {
        let one = prepare_on(1, &path, frames, false);
        let two = prepare_on(2, &path, frames, false);
        assert_eq!(one.view_indices, two.view_indices);
        assert_eq!(one.dims, [1, frames, 3, 224, 224]);
        assert!(
            one.tensor == two.tensor,
            "{frames}f: 1 and 2 threads differ"
        );
        assert!(one.frames == two.frames, "{frames}f: kept frames differ");

        // The sampled frames are decord's, byte for byte.
        let raw = npy_u8(&format!("video/example_{frames}f_frames_rgb.npy"));
        let kept: Vec<u8> = one
            .frames
            .as_ref()
            .expect("frames kept")
            .iter()
            .flat_map(|f| f.data.iter().copied())
            .collect();
        assert!(kept == raw.data, "{frames}f: frames differ from decord's");

        // ... and the tensor is decord + Pillow + PaddleVideo's normalisation.
        let want = npy(&format!("video/example_{frames}f_input.npy"));
        assert_eq!(want.data.len(), one.tensor.len());
        let max = one
            .tensor
            .iter()
            .zip(&want.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        eprintln!("{frames}f: max abs diff to the reference tensor {max:e}");
        // Same frames, same Pillow arithmetic, same float32 normalisation: exactly equal.
        assert!(max == 0.0, "{frames}f: max abs diff {max}");
        assert!(one.decode_ms >= 0.0 && one.preprocess_ms >= 0.0);
    }
}

#[test]
fn dense_mode_is_the_same_on_one_and_two_threads() {
    let path = fixture("video/example.avi");
    let one = prepare_on(1, &path, 8, true);
    let two = prepare_on(2, &path, 8, true);
    assert_eq!(one.dims, [30, 8, 3, 224, 224]);
    assert_eq!(one.view_indices, two.view_indices);
    assert!(one.tensor == two.tensor, "dense: 1 and 2 threads differ");
}

#[test]
fn a_video_shorter_than_num_seg_repeats_frames_the_same_way() {
    // example.avi has 131 frames: 140 segments repeat indices (PaddleVideo's short-video
    // rule); each repeated slot must hold its frame's tensor.
    let path = fixture("video/example.avi");
    let one = prepare_on(1, &path, 140, false);
    let two = prepare_on(2, &path, 140, false);
    assert!(one.tensor == two.tensor);
    let indices = &one.view_indices[0];
    let slot = 3 * 224 * 224;
    for (a, &i) in indices.iter().enumerate() {
        if let Some(b) = indices.iter().position(|&j| j == i)
            && b != a
        {
            assert!(
                one.tensor[a * slot..(a + 1) * slot] == one.tensor[b * slot..(b + 1) * slot],
                "slots {a} and {b} (frame {i}) differ"
            );
        }
    }
    let kept = one.frames.expect("frames kept");
    assert_eq!(kept.len(), 140);
    for (f, &i) in kept.iter().zip(indices) {
        assert_eq!(f.index, i);
    }
}
