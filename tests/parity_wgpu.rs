//! The same parity on burn's wgpu backend. CI has no GPU: this runs on Mesa's lavapipe, which
//! compiles every kernel shape slowly, so only the 64x64 fixtures run here.

mod common;

use burn::tensor::{Device, DeviceKind};
use common::*;
use kineto::model::Form;

fn wgpu_device() -> Device {
    // lavapipe in CI, or a real adapter where one exists: either must give the same numbers.
    Device::wgpu(DeviceKind::DefaultDevice)
}

#[test]
fn pptsmv2_8f_at_64_on_wgpu() {
    let device = wgpu_device();
    let arrays = npz("pptsmv2/act64_8f.npz");
    let store = v2_store(false);
    let model = build(&store, Form::Training, &device);
    check_activations(&model, &arrays, &device, &["logits_fused"]);
    let fused = build(&store, Form::Fused, &device);
    let ours = data_f32(
        &fused
            .forward(clip_tensor(npz_get(&arrays, "input"), &device))
            .into_data(),
    );
    let d = max_abs_diff(&ours, &npz_get(&arrays, "logits_fused").data);
    assert!(d <= 1e-4, "fused logits on wgpu: {d:e}");
}

#[test]
fn pptsmv2_16f_attention_at_64_on_wgpu() {
    let device = wgpu_device();
    let arrays = npz("pptsmv2/act64_16f_att.npz");
    let model = build(&v2_store(true), Form::Fused, &device);
    let ours = data_f32(
        &model
            .forward(clip_tensor(npz_get(&arrays, "input"), &device))
            .into_data(),
    );
    let d = max_abs_diff(&ours, &npz_get(&arrays, "logits_fused").data);
    assert!(d <= 1e-4, "16f+att fused logits on wgpu: {d:e}");
}

#[test]
fn r50_at_64_on_wgpu() {
    let device = wgpu_device();
    let arrays = npz("pptsm_r50/act64.npz");
    let model = build(&r50_store(), Form::Training, &device);
    check_activations(&model, &arrays, &device, &[]);
}
