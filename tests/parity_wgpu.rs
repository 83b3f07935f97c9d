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

/// A batch on wgpu gives each clip its own answer: clips 0 and 2 are the fixture clip (their
/// logits PaddleVideo's), clip 1 its mirror image (its logits what the CPU gives it alone).
#[test]
fn pptsmv2_batch_of_three_on_wgpu() {
    let device = wgpu_device();
    let arrays = npz("pptsmv2/act64_8f.npz");
    let input = npz_get(&arrays, "input");
    let reference = &npz_get(&arrays, "logits_fused").data;
    let clip_len = input.data.len();
    let width = *input.shape.last().expect("input shape");
    let mirror: Vec<f32> = input
        .data
        .chunks(width)
        .flat_map(|row| row.iter().rev().copied())
        .collect();
    let frames_dims = |n: usize| {
        let [t, c, h, w] = input.shape[input.shape.len() - 4..] else {
            panic!("input shape {:?}", input.shape)
        };
        [n, t, c, h, w]
    };
    let store = v2_store(false);
    let cpu = Device::flex();
    let alone = data_f32(
        &build(&store, Form::Fused, &cpu)
            .forward(burn::tensor::Tensor::from_data(
                burn::tensor::TensorData::new(mirror.clone(), frames_dims(1)),
                &cpu,
            ))
            .into_data(),
    );
    let batch: Vec<f32> = [&input.data, &mirror, &input.data]
        .into_iter()
        .flat_map(|clip| clip.iter().copied())
        .collect();
    assert_eq!(batch.len(), 3 * clip_len);
    let logits = data_f32(
        &build(&store, Form::Fused, &device)
            .forward(burn::tensor::Tensor::from_data(
                burn::tensor::TensorData::new(batch, frames_dims(3)),
                &device,
            ))
            .into_data(),
    );
    let classes = reference.len();
    assert_eq!(logits.len(), 3 * classes);
    for (row, expected, what) in [
        (0, reference.as_slice(), "PaddleVideo's"),
        (1, alone.as_slice(), "the CPU's alone"),
        (2, reference.as_slice(), "PaddleVideo's"),
    ] {
        let d = max_abs_diff(&logits[row * classes..(row + 1) * classes], expected);
        assert!(d <= 1e-4, "clip {row} of 3 on wgpu vs {what}: {d:e}");
    }
    // The mirror image is a different clip: the check above could not pass by accident.
    assert!(max_abs_diff(&alone, reference) > 1e-3);
}
