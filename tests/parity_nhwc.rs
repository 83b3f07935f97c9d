//! The channels-last CPU path (what `--device cpu` runs for a fused PP-TSMv2) against
//! PaddleVideo's own outputs: the maps at the temporal shift, features and logits at 64, logits
//! at 224 (8f, 16f, 16f with attention), on one and two threads, and a batch of two clips.

// Test code: a failed unwrap/expect is the test failing (clippy.toml exempts only #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use burn::tensor::Device;
use common::*;
use kineto::infer::device::{ComputeDevice, DeviceChoice};
use kineto::infer::engine::Engine;
use kineto::model::Form;
use kineto::model::nhwc::{FrameMaps, NhwcPpTsmV2};
use kineto::model::{Network, Recognizer};

fn engine(attention: bool, threads: usize) -> Engine {
    let model = build(&v2_store(attention), Form::Fused, &Device::flex());
    let device = ComputeDevice::resolve(DeviceChoice::Cpu, threads).expect("cpu device");
    let engine = Engine::from_model(model, device);
    assert_eq!(engine.path_name(), "nhwc", "the CPU runs the NHWC path");
    engine
}

fn logits_diff(attention: bool, threads: usize, input: &str, reference: &str) -> f32 {
    let input = npy(input);
    let logits = engine(attention, threads)
        .logits(input.data.clone(), clip_dims(&input))
        .expect("logits");
    max_abs_diff(&logits, &npy(reference).data)
}

#[test]
fn logits_at_224_match_paddle_on_one_and_two_threads() {
    for threads in [1, 2] {
        let cases = [
            (
                false,
                "video/example_8f_input.npy",
                "pptsmv2/logits224_8f_fused.npy",
            ),
            (
                false,
                "video/example_16f_input.npy",
                "pptsmv2/logits224_16f_fused.npy",
            ),
            (
                true,
                "video/example_16f_input.npy",
                "pptsmv2/logits224_16f_att_fused.npy",
            ),
        ];
        for (attention, input, reference) in cases {
            let d = logits_diff(attention, threads, input, reference);
            eprintln!("{reference} ({threads} threads): max abs diff {d:e}");
            assert!(d <= 1e-4, "{reference} on {threads} threads: {d:e}");
        }
    }
}

#[test]
fn maps_features_and_logits_at_64_match_paddle() {
    for (file, attention) in [
        ("pptsmv2/act64_8f.npz", false),
        ("pptsmv2/act64_16f_att.npz", true),
    ] {
        let arrays = npz(file);
        let input = npz_get(&arrays, "input");
        let dims = clip_dims(input);
        let engine = engine(attention, 1);
        let features = engine.features(input.data.clone(), dims).expect("features");
        let d = max_abs_diff(&features, &npz_get(&arrays, "features").data);
        assert!(d <= 1e-4, "{file} features: {d:e}");
        let logits = engine.logits(input.data.clone(), dims).expect("logits");
        for key in ["logits", "logits_fused"] {
            let d = max_abs_diff(&logits, &npz_get(&arrays, key).data);
            assert!(d <= 1e-4, "{file} {key}: {d:e}");
        }
    }

    // The per-frame maps (before attention and shift) against stage 2's output, NCHW.
    let arrays = npz("pptsmv2/act64_8f.npz");
    let input = npz_get(&arrays, "input");
    let model = build(&v2_store(false), Form::Fused, &Device::flex());
    let Recognizer {
        network: Network::V2(net),
        ..
    } = &model
    else {
        panic!("PP-TSMv2 expected");
    };
    let nhwc = NhwcPpTsmV2::from_network(net).expect("nhwc");
    let maps = nhwc.frame_maps(&input.data, 8, 64, 64);
    let s = maps.shape;
    let reference = npz_get(&arrays, "stages.1.1");
    assert_eq!(reference.shape, vec![8, s.c, s.h, s.w]);
    let mut nchw = vec![0.0; maps.data.len()];
    for f in 0..s.frames {
        for y in 0..s.h {
            for x in 0..s.w {
                for c in 0..s.c {
                    nchw[((f * s.c + c) * s.h + y) * s.w + x] =
                        maps.data[((f * s.h + y) * s.w + x) * s.c + c];
                }
            }
        }
    }
    let d = max_abs_diff(&nchw, &reference.data);
    assert!(d <= 1e-4, "stages.1.1: {d:e}");
}

#[test]
fn a_batch_of_two_clips_gives_each_clip_its_own_logits() {
    let input = npy("video/example_8f_input.npy");
    let mut dims = clip_dims(&input);
    // The clip and its mirror image: different logits, so a mix-up between clips would show.
    let mirrored: Vec<f32> = input
        .data
        .chunks_exact(dims[4])
        .flat_map(|row| row.iter().rev().copied())
        .collect();
    let engine = engine(false, 2);
    let single_a = engine.logits(input.data.clone(), dims).expect("a");
    let single_b = engine.logits(mirrored.clone(), dims).expect("b");
    dims[0] = 2;
    let both = engine
        .logits([input.data.clone(), mirrored].concat(), dims)
        .expect("batch");
    assert!(
        max_abs_diff(&single_a, &single_b) > 1e-2,
        "mirror changes logits"
    );
    assert!(max_abs_diff(&both[..400], &single_a) <= 1e-5);
    assert!(max_abs_diff(&both[400..], &single_b) <= 1e-5);
}

/// Each frame's maps at the temporal shift, through the engine.
fn frame_maps_of(engine: &Engine, frames: &[f32], h: usize, w: usize) -> Vec<FrameMaps> {
    frames
        .chunks_exact(3 * h * w)
        .map(|frame| {
            engine
                .frame_maps(frame, h, w)
                .expect("splits")
                .expect("maps")
        })
        .collect()
}

#[test]
fn live_window_from_per_frame_maps_matches_the_whole_clip() {
    let input = npy("video/example_16f_input.npy");
    let [_, t, _, h, w] = clip_dims(&input);
    let engine = engine(false, 1);
    assert!(engine.splits_at_shift());
    let frame_len = 3 * h * w;
    let maps = frame_maps_of(&engine, &input.data, h, w);
    // The 16 frames as a 16f window, and the sliding 8f windows over them.
    let all: Vec<_> = maps.iter().collect();
    let logits = engine
        .logits_from_frames(&all)
        .expect("splits")
        .expect("logits");
    let d = max_abs_diff(&logits, &npy("pptsmv2/logits224_16f_fused.npy").data);
    assert!(d <= 1e-4, "16f from frame maps: {d:e}");
    for start in [0, 3, 8] {
        let window: Vec<_> = maps[start..start + 8].iter().collect();
        let from_maps = engine
            .logits_from_frames(&window)
            .expect("splits")
            .expect("logits");
        let clip = input.data[start * frame_len..(start + 8) * frame_len].to_vec();
        let whole = engine.logits(clip, [1, 8, 3, h, w]).expect("logits");
        let d = max_abs_diff(&from_maps, &whole);
        assert!(d <= 1e-5, "window at {start}: {d:e}");
    }
    assert_eq!(t, 16);
}

#[test]
fn sliding_window_from_cached_frame_shares_matches_the_whole_clip() {
    let input = npy("video/example_16f_input.npy");
    let [_, _, _, h, w] = clip_dims(&input);
    let engine = engine(false, 1);
    assert!(engine.has_local_shares());
    let frame_len = 3 * h * w;
    let maps = frame_maps_of(&engine, &input.data, h, w);
    // Each frame's share for one window position; a window is the mean of its frames' shares.
    let share = |window: std::ops::Range<usize>, i: usize| {
        let prev = (i > window.start).then(|| &maps[i - 1]);
        let next = (i + 1 < window.end).then(|| &maps[i + 1]);
        engine
            .frame_share(prev, &maps[i], next, window.len())
            .expect("local")
            .expect("share")
    };
    let all: Vec<Vec<f32>> = (0..16).map(|i| share(0..16, i)).collect();
    let refs: Vec<&[f32]> = all.iter().map(Vec::as_slice).collect();
    let logits = engine
        .logits_from_shares(&refs)
        .expect("splits")
        .expect("logits");
    let d = max_abs_diff(&logits, &npy("pptsmv2/logits224_16f_fused.npy").data);
    assert!(d <= 1e-4, "16f from shares: {d:e}");
    for start in [0, 5, 8] {
        let window = start..start + 8;
        let shares: Vec<Vec<f32>> = window.clone().map(|i| share(window.clone(), i)).collect();
        let refs: Vec<&[f32]> = shares.iter().map(Vec::as_slice).collect();
        let from_shares = engine
            .logits_from_shares(&refs)
            .expect("splits")
            .expect("logits");
        let clip = input.data[start * frame_len..(start + 8) * frame_len].to_vec();
        let whole = engine.logits(clip, [1, 8, 3, h, w]).expect("logits");
        let d = max_abs_diff(&from_shares, &whole);
        assert!(d <= 1e-5, "window at {start}: {d:e}");
    }
}

#[test]
fn temporal_attention_has_no_local_shares() {
    // Its frames are weighed by the whole window, so a frame's share is not local.
    assert!(!engine(true, 1).has_local_shares());
}
