//! The same parity on burn's wgpu backend. CI has no GPU: this runs on Mesa's lavapipe, which
//! compiles every kernel shape slowly, so only the 64x64 fixtures run here.

// Test code: a failed unwrap/expect is the test failing (clippy.toml exempts only #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used)]

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

/// `kineto logits --device gpu` end to end: takes the software adapter when there is no GPU
/// and says so on stderr; the numbers are the same.
#[test]
fn cli_logits_on_the_gpu_device() {
    let dir = common::ScratchDir::new("wgpu-cli");
    let arrays = npz("pptsmv2/act64_8f.npz");
    let x = npz_get(&arrays, "input");
    let input = dir.join("in.npy");
    kineto::npy::write_npy_f32(&input, &x.shape, &x.data).expect("write input");
    let output = dir.join("out.npy");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kineto"))
        .args(["logits", "--device", "gpu", "--weights"])
        .arg(fixture("pptsmv2/w8.pdparams"))
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .output()
        .expect("run kineto");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let ours = kineto::npy::read_npy_f32(&output).expect("output");
    let d = max_abs_diff(&ours.data, &npz_get(&arrays, "logits_fused").data);
    assert!(d <= 1e-4, "gpu CLI logits: {d:e}");
}
