//! PP-TSMv2 against PaddleVideo's own outputs (`../shared/fixtures/pptsmv2`, `video/`), on the
//! CPU backend: every activation at 64x64, logits at 224, both forms, 8 and 16 frames, with and
//! without temporal attention.

// Test code: a failed unwrap/expect is the test failing (clippy.toml exempts only #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use burn::tensor::Device;
use common::*;
use kineto::model::Form;

fn logits_diff(form: Form, attention: bool, input: &str, reference: &str) -> f32 {
    let device = Device::flex();
    let model = build(&v2_store(attention), form, &device);
    let x = clip_tensor(&npy(input), &device);
    let ours = data_f32(&model.forward(x).into_data());
    let want = npy(reference);
    assert_eq!(want.shape, vec![1, 400]);
    max_abs_diff(&ours, &want.data)
}

#[test]
fn activations_8f_at_64_training_form() {
    let device = Device::flex();
    let arrays = npz("pptsmv2/act64_8f.npz");
    let model = build(&v2_store(false), Form::Training, &device);
    let report = check_activations(&model, &arrays, &device, &["logits_fused"]);
    assert_eq!(report.len(), 31, "every stored activation is compared");
    let worst = report.iter().map(|r| r.1).fold(0.0, f32::max);
    eprintln!("8f@64 worst activation diff {worst:e}");
}

#[test]
fn fused_logits_at_64_match_paddle_rep() {
    let device = Device::flex();
    for (file, attention) in [
        ("pptsmv2/act64_8f.npz", false),
        ("pptsmv2/act64_16f.npz", false),
        ("pptsmv2/act64_16f_att.npz", true),
    ] {
        let arrays = npz(file);
        let input = clip_tensor(npz_get(&arrays, "input"), &device);
        let model = build(&v2_store(attention), Form::Fused, &device);
        let ours = data_f32(&model.forward(input).into_data());
        for key in ["logits_fused", "logits"] {
            let diff = max_abs_diff(&ours, &npz_get(&arrays, key).data);
            assert!(diff <= 1e-4, "{file} fused vs {key}: {diff:e}");
        }
    }
}

#[test]
fn activations_16f_at_64() {
    let device = Device::flex();
    let plain = npz("pptsmv2/act64_16f.npz");
    let model = build(&v2_store(false), Form::Training, &device);
    check_activations(&model, &plain, &device, &["logits_fused"]);

    let att = npz("pptsmv2/act64_16f_att.npz");
    let model = build(&v2_store(true), Form::Training, &device);
    let report = check_activations(&model, &att, &device, &["logits_fused"]);
    assert_eq!(report.len(), 5);
}

#[test]
fn logits_8f_at_224() {
    let input = "video/example_8f_input.npy";
    let d = logits_diff(Form::Training, false, input, "pptsmv2/logits224_8f.npy");
    assert!(d <= 1e-4, "training form: {d:e}");
    let d = logits_diff(Form::Fused, false, input, "pptsmv2/logits224_8f_fused.npy");
    assert!(d <= 1e-4, "fused form: {d:e}");
}

#[test]
fn logits_16f_at_224() {
    let input = "video/example_16f_input.npy";
    let d = logits_diff(Form::Training, false, input, "pptsmv2/logits224_16f.npy");
    assert!(d <= 1e-4, "training form: {d:e}");
    let d = logits_diff(Form::Fused, false, input, "pptsmv2/logits224_16f_fused.npy");
    assert!(d <= 1e-4, "fused form: {d:e}");
}

#[test]
fn logits_16f_attention_at_224() {
    let input = "video/example_16f_input.npy";
    let d = logits_diff(Form::Training, true, input, "pptsmv2/logits224_16f_att.npy");
    assert!(d <= 1e-4, "training form: {d:e}");
    let d = logits_diff(
        Form::Fused,
        true,
        input,
        "pptsmv2/logits224_16f_att_fused.npy",
    );
    assert!(d <= 1e-4, "fused form: {d:e}");
}
