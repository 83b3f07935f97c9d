//! PP-TSM ResNet-50 (the teacher / server model) against PaddleVideo's outputs
//! (`../shared/fixtures/pptsm_r50`) on the CPU backend.

// Test code: a failed unwrap/expect is the test failing (clippy.toml exempts only #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use burn::tensor::Device;
use common::*;
use kineto::model::Form;

#[test]
fn activations_at_64_both_forms() {
    let device = Device::flex();
    let arrays = npz("pptsm_r50/act64.npz");
    let store = r50_store();
    let model = build(&store, Form::Training, &device);
    let report = check_activations(&model, &arrays, &device, &[]);
    assert_eq!(report.len(), 8);
    let fused = build(&store, Form::Fused, &device);
    let ours = data_f32(
        &fused
            .forward(clip_tensor(npz_get(&arrays, "input"), &device))
            .into_data(),
    );
    let d = max_abs_diff(&ours, &npz_get(&arrays, "logits").data);
    assert!(d <= 1e-4, "fused logits at 64: {d:e}");
}

/// 112x112 makes res5's input 7x7: the ceil-mode average-pool shortcut sees partial windows.
#[test]
fn logits_at_112_odd_maps() {
    let device = Device::flex();
    let arrays = npz("pptsm_r50/io112.npz");
    let store = r50_store();
    for form in [Form::Training, Form::Fused] {
        let model = build(&store, form, &device);
        let ours = data_f32(
            &model
                .forward(clip_tensor(npz_get(&arrays, "input"), &device))
                .into_data(),
        );
        let d = max_abs_diff(&ours, &npz_get(&arrays, "logits").data);
        assert!(d <= 1e-4, "{form:?} logits at 112: {d:e}");
    }
}

#[test]
fn logits_at_224_on_the_example_clip() {
    let device = Device::flex();
    let model = build(&r50_store(), Form::Fused, &device);
    let ours = data_f32(
        &model
            .forward(clip_tensor(&npy("video/example_8f_input.npy"), &device))
            .into_data(),
    );
    let d = max_abs_diff(&ours, &npy("pptsm_r50/logits224_example8f.npy").data);
    assert!(d <= 1e-4, "R50 logits at 224: {d:e}");
}
