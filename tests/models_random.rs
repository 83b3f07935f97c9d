//! Architectures beyond the fixtures, on seeded random weights: other class counts, attention
//! with another num_seg, ResNet-101, non-square inputs. The fused form must agree with the
//! training form, and a loaded model must give back exactly the weights it was built from.

// Test code: a failed unwrap/expect is the test failing (clippy.toml exempts only #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use burn::tensor::{Device, Tensor, TensorData};
use common::max_abs_diff;
use kineto::model::fuse::fuse_store;
use kineto::model::init::random_store;
use kineto::model::{Arch, Form, ModelKind, Recognizer};

fn arch(model: ModelKind, depth: Option<usize>, num_seg: Option<usize>, classes: usize) -> Arch {
    Arch {
        model,
        depth,
        num_seg,
        num_classes: classes,
        attention: num_seg.is_some(),
        form: Form::Training,
    }
}

fn run(model: &Recognizer, t: usize, h: usize, w: usize, device: &Device) -> Vec<f32> {
    let dims = [2, t, 3, h, w];
    let data: Vec<f32> = (0..dims.iter().product::<usize>())
        .map(|i| ((i as f32) * 0.37).sin())
        .collect();
    model.check_input(&dims).expect("valid input");
    let x = Tensor::<5>::from_data(TensorData::new(data, dims), device);
    common::data_f32(&model.forward(x).into_data())
}

#[test]
fn fused_and_training_forms_agree_on_random_models() {
    let device = Device::flex();
    let cases = [
        (arch(ModelKind::PptsmV2, None, None, 10), 3, 40, 72),
        (arch(ModelKind::PptsmV2, None, Some(4), 5), 4, 64, 48),
        (arch(ModelKind::PptsmResnet, Some(50), None, 7), 2, 33, 47),
        (arch(ModelKind::PptsmResnet, Some(101), None, 3), 2, 32, 32),
        (arch(ModelKind::PptsmMv2, None, None, 6), 3, 35, 50),
        (arch(ModelKind::PptsmMv3, None, None, 4), 2, 33, 47),
    ];
    for (i, (arch, t, h, w)) in cases.into_iter().enumerate() {
        let store = random_store(arch, 100 + i as u64);
        let detected = kineto::model::arch::detect(&store).expect("detect");
        assert_eq!(detected, arch, "architecture read back from the keys");

        let training = Recognizer::from_store(&store, &device).expect("training form");
        let fused = Recognizer::from_store(&fuse_store(&store).expect("fuse"), &device)
            .expect("fused form");
        assert_eq!(fused.arch.form, Form::Fused);
        let a = run(&training, t, h, w, &device);
        let b = run(&fused, t, h, w, &device);
        assert_eq!(a.len(), 2 * arch.num_classes);
        assert!(a.iter().all(|x| x.is_finite()));
        let scale = a.iter().fold(1.0f32, |m, x| m.max(x.abs()));
        let d = max_abs_diff(&a, &b);
        assert!(
            d <= 1e-4 * scale,
            "case {i}: fused vs training {d:e} (scale {scale})"
        );

        // Bit-exact round trip through the module tree.
        let back = training.to_store();
        assert_eq!(back.len(), store.len());
        for (k, t) in store.iter() {
            assert_eq!(back.get(k), Some(t), "{k} round trip");
        }
    }
}

#[test]
fn attention_rejects_another_num_seg() {
    let device = Device::flex();
    let store = random_store(arch(ModelKind::PptsmV2, None, Some(4), 5), 7);
    let model = Recognizer::from_store(&store, &device).expect("model");
    assert!(model.check_input(&[1, 8, 3, 64, 64]).is_err());
    assert!(model.check_input(&[1, 4, 3, 64, 64]).is_ok());
    assert!(model.check_input(&[1, 4, 3, 16, 64]).is_err(), "too small");
    assert!(model.check_input(&[1, 4, 1, 64, 64]).is_err(), "not RGB");
}
