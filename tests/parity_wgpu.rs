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

/// The training form (what training runs on a GPU): every activation and the logits. The fused
/// form is checked against PaddleVideo's fused logits in the batch test below (clip 1), and at
/// batch 1 against the CPU by the CLI test: a fused forward here would tune every kernel of
/// it once more (a convolution with a bias is another autotune key) for no new check.
#[test]
fn pptsmv2_8f_at_64_on_wgpu() {
    let device = wgpu_device();
    let arrays = npz("pptsmv2/act64_8f.npz");
    let model = build(&v2_store(false), Form::Training, &device);
    check_activations(&model, &arrays, &device, &["logits_fused"]);
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
/// and says so on stderr, and gives the CPU's numbers. A new process tunes every kernel again,
/// and on lavapipe each tuning run costs what the kernel costs: so the input here is the
/// fixture clip's centre 32x32 (the in-process tests above hold the PaddleVideo comparison).
#[test]
fn cli_logits_on_the_gpu_device() {
    let dir = common::ScratchDir::new("wgpu-cli");
    let arrays = npz("pptsmv2/act64_8f.npz");
    let x = centre_crop(npz_get(&arrays, "input"), 32);
    let input = dir.join("in.npy");
    kineto::npy::write_npy_f32(&input, &x.shape, &x.data).expect("write input");
    let cpu = Device::flex();
    let expected = data_f32(
        &build(&v2_store(false), Form::Fused, &cpu)
            .forward(clip_tensor(&x, &cpu))
            .into_data(),
    );
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
    let d = max_abs_diff(&ours.data, &expected);
    assert!(d <= 1e-4, "gpu CLI logits vs the CPU's: {d:e}");
    // A different input gives different logits: the comparison above cannot pass by accident.
    let reference = &npz_get(&arrays, "logits_fused").data;
    assert!(max_abs_diff(&expected, reference) > 1e-3);
}

/// The `size`x`size` centre of every frame of a `[.., T, C, H, W]` clip.
fn centre_crop(clip: &kineto::npy::NpyArray<f32>, size: usize) -> kineto::npy::NpyArray<f32> {
    let rank = clip.shape.len();
    let (h, w) = (clip.shape[rank - 2], clip.shape[rank - 1]);
    let (top, left) = ((h - size) / 2, (w - size) / 2);
    let data = clip
        .data
        .chunks(h * w)
        .flat_map(|plane| {
            (top..top + size).flat_map(move |y| plane[y * w + left..y * w + left + size].to_vec())
        })
        .collect();
    let mut shape = clip.shape.clone();
    shape[rank - 2] = size;
    shape[rank - 1] = size;
    kineto::npy::NpyArray { shape, data }
}

/// A batch on wgpu gives each clip its own answer: clip 0 is the fixture clip's mirror image
/// (its logits what the CPU gives it alone), clip 1 the fixture clip (its logits PaddleVideo's).
/// Two clips, not more: on lavapipe every kernel of a new batch size is tuned at its full cost.
#[test]
fn pptsmv2_batch_of_two_on_wgpu() {
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
    let batch: Vec<f32> = [&mirror, &input.data]
        .into_iter()
        .flat_map(|clip| clip.iter().copied())
        .collect();
    assert_eq!(batch.len(), 2 * clip_len);
    let logits = data_f32(
        &build(&store, Form::Fused, &device)
            .forward(burn::tensor::Tensor::from_data(
                burn::tensor::TensorData::new(batch, frames_dims(2)),
                &device,
            ))
            .into_data(),
    );
    let classes = reference.len();
    assert_eq!(logits.len(), 2 * classes);
    for (row, expected, what) in [
        (0, alone.as_slice(), "the CPU's alone"),
        (1, reference.as_slice(), "PaddleVideo's"),
    ] {
        let d = max_abs_diff(&logits[row * classes..(row + 1) * classes], expected);
        assert!(d <= 1e-4, "clip {row} of 2 on wgpu vs {what}: {d:e}");
    }
    // The mirror image is a different clip: the check above could not pass by accident.
    assert!(max_abs_diff(&alone, reference) > 1e-3);
}
