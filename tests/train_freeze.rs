//! `FullTrainer::set_freeze_stages` (`kineto train --freeze-stages N`) on the fixture PP-TSMv2
//! weights:
//!
//! - with N = 2 a step gives no gradient, no velocity and no change (parameters and BatchNorm
//!   running statistics bit-identical) to the stem and stages 0-1, while stages 2-3, last_conv
//!   and the fc get gradients and change;
//! - with the 16f temporal attention, N = 2 trains the attention and N = 3 freezes it; N = 4
//!   leaves only last_conv and the fc; out-of-range N is refused;
//! - N = 0 set explicitly is the unfrozen step, bit for bit.
//!
//! Step times with frozen stages: `kineto bench --case train --freeze-stages N`.

// Test code: a failed unwrap/expect is the test failing (clippy.toml exempts only #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use burn::tensor::{Device, FloatDType, TensorData};
use common::{build, v2_store};
use kineto::model::{Form, ModelKind};
use kineto::train::trainer::{FullStepOptions, FullTrainer, HostTensor, is_frozen_key};

fn trainer(attention: bool) -> FullTrainer {
    let model = build(&v2_store(attention), Form::Training, &Device::flex());
    FullTrainer::new(model, FloatDType::F32, FullStepOptions::default())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// `n` deterministic clips of `t` frames at `size`x`size`.
fn clips(n: usize, t: usize, size: usize) -> TensorData {
    let len = n * t * 3 * size * size;
    let data: Vec<f32> = (0..len)
        .map(|i| ((i as f32) * 0.618_034).fract() * 2.0 - 1.0)
        .collect();
    TensorData::new(data, [n, t, 3, size, size])
}

fn params(trainer: &FullTrainer) -> BTreeMap<String, HostTensor> {
    trainer.parameters().unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_frozen_step_leaves_the_prefix_alone() {
    let mut trainer = trainer(false);
    trainer
        .set_freeze_stages(2)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(trainer.freeze_stages(), 2);
    let before = params(&trainer);
    let frozen: Vec<&String> = before.keys().filter(|k| trainer.is_frozen(k)).collect();
    assert!(frozen.iter().any(|k| k.starts_with("backbone.stem.0.")));
    assert!(frozen.iter().any(|k| k.starts_with("backbone.stages.1.1.")));
    assert!(frozen.iter().any(|k| k.ends_with("._variance")));
    assert!(!frozen.iter().any(|k| k.starts_with("backbone.stages.2.")));

    let outcome = (0..2)
        .map(|_| {
            trainer
                .step(clips(2, 8, 32), &[3, 7], 0.05)
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .last()
        .unwrap_or_else(|| panic!("no step"));
    let after = params(&trainer);

    for key in &frozen {
        assert!(!outcome.grads.contains_key(*key), "gradient for {key}");
        assert!(
            !trainer.velocities().contains_key(*key),
            "velocity for {key}"
        );
        assert!(
            !outcome.untouched.contains(key),
            "{key} listed as untouched"
        );
        assert_eq!(before[*key], after[*key], "{key} changed");
    }
    // BatchNorm of the frozen prefix ran in eval mode: no batch statistics recorded.
    assert!(
        outcome
            .batch_stats
            .keys()
            .all(|k| !k.starts_with("backbone.stem.") && !k.starts_with("backbone.stages.1.")),
        "{:?}",
        outcome.batch_stats.keys().collect::<Vec<_>>()
    );
    for key in [
        "backbone.stages.2.0.pw_conv_1.conv.weight",
        "backbone.stages.2.3.dw_conv_list.0.bn._mean",
        "backbone.stages.3.1.pw_conv.bn._variance",
        "backbone.last_conv.weight",
        "backbone.fc.weight",
        "backbone.fc.bias",
    ] {
        assert_ne!(before[key], after[key], "{key} did not change");
        if !key.ends_with("._mean") && !key.ends_with("._variance") {
            assert!(outcome.grads.contains_key(key), "no gradient for {key}");
            assert!(
                trainer.velocities().contains_key(key),
                "no velocity for {key}"
            );
        }
    }
    // A velocity for a frozen key is refused (a resume with other settings).
    let mut velocity = trainer.velocities().clone();
    let stem = "backbone.stem.0.conv.weight".to_string();
    velocity.insert(stem.clone(), vec![0.0; before[&stem].data.len()]);
    let err = trainer.set_velocities(velocity).unwrap_err();
    assert!(err.to_string().contains("frozen"), "{err}");
}

#[test]
fn freezing_covers_the_attention_from_three_and_refuses_five() {
    let mut trainer = trainer(true);
    let att_w = "backbone.global_attention.fc.weight";
    trainer
        .set_freeze_stages(2)
        .unwrap_or_else(|e| panic!("{e}"));
    let outcome = trainer
        .step(clips(1, 16, 32), &[1], 0.05)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        outcome.grads.contains_key(att_w),
        "N = 2 trains the attention"
    );

    trainer
        .set_freeze_stages(3)
        .unwrap_or_else(|e| panic!("{e}"));
    // The attention's velocity is dropped with the freeze.
    assert!(!trainer.velocities().contains_key(att_w));
    let before = params(&trainer);
    let outcome = trainer
        .step(clips(1, 16, 32), &[1], 0.05)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!outcome.grads.contains_key(att_w));
    assert_eq!(before[att_w], params(&trainer)[att_w]);
    assert!(
        outcome
            .grads
            .keys()
            .any(|k| k.starts_with("backbone.stages.3."))
    );
    assert!(
        !outcome
            .grads
            .keys()
            .any(|k| k.starts_with("backbone.stages.2."))
    );

    trainer
        .set_freeze_stages(4)
        .unwrap_or_else(|e| panic!("{e}"));
    let outcome = trainer
        .step(clips(1, 16, 32), &[1], 0.05)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut trained: Vec<&str> = outcome.grads.keys().map(String::as_str).collect();
    trained.sort_unstable();
    assert_eq!(
        trained,
        [
            "backbone.fc.bias",
            "backbone.fc.weight",
            "backbone.last_conv.weight"
        ]
    );
    assert!(outcome.batch_stats.is_empty());
    assert!(is_frozen_key(ModelKind::PptsmV2, att_w, 4));

    let err = trainer.set_freeze_stages(5).unwrap_err();
    assert_eq!(
        err.to_string(),
        "--freeze-stages takes 0 to 4 stages, not 5"
    );
    assert_eq!(trainer.freeze_stages(), 4);
}

#[test]
fn freeze_zero_is_the_unfrozen_step() {
    let mut plain = trainer(false);
    let mut zero = trainer(false);
    zero.set_freeze_stages(0).unwrap_or_else(|e| panic!("{e}"));
    let a = plain
        .step(clips(1, 8, 32), &[5], 0.05)
        .unwrap_or_else(|e| panic!("{e}"));
    let b = zero
        .step(clips(1, 8, 32), &[5], 0.05)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a.loss.to_bits(), b.loss.to_bits());
    assert_eq!(a.grads, b.grads);
    assert_eq!(a.batch_stats, b.batch_stats);
    assert_eq!(params(&plain), params(&zero));
}
