//! The NHWC training step (`model::nhwc::train`) against PaddlePaddle's own step
//! (`train/step64_8f.npz`, float32 tolerances of `train_full_step.rs`) and against burn's
//! `FullTrainer` in float64 on random weights (16 frames with the temporal attention, frozen and
//! not), plus an ignored timing against `FullTrainer::step` at 224x224.

// Test code: a failed unwrap/expect is the test failing (clippy.toml exempts only #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use burn::tensor::{Device, FloatDType, TensorData};
use common::compare::{l2_relative, leading_block, max_abs, max_abs_diff};
use common::{build, fixture, v2_store};
use kineto::checkpoint::{ParamStore, ParamTensor};
use kineto::model::init::random_store;
use kineto::model::layers::Trace;
use kineto::model::nhwc::train::NhwcTrainNet;
use kineto::model::{Arch, Form, ModelKind, Recognizer};
use kineto::npy::{NpyArray, read_npz_f64};
use kineto::train::losses::{Targets, cross_entropy};
use kineto::train::trainer::{FullStepOptions, FullTrainer, StepOutcome};

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

/// The worst error of a group of checks (each asserted against its tolerance).
#[derive(Default)]
struct Worst {
    ratio: f64,
    name: String,
    err: f64,
    count: usize,
}

impl Worst {
    fn add(&mut self, name: &str, err: f64, tol: f64) {
        self.count += 1;
        assert!(err <= tol, "{name}: error {err:e} exceeds {tol:e}");
        if err / tol >= self.ratio {
            self.ratio = err / tol;
            self.name = name.to_string();
            self.err = err;
        }
    }

    fn report(&self, label: &str) {
        eprintln!(
            "  {label:<26} {:>3} checked, worst {} = {:.3e} ({:.2} of its tolerance)",
            self.count, self.name, self.err, self.ratio
        );
    }
}

/// The head side, whose float32 gradients match Paddle's float64 ones closely (see
/// `train_full_step.rs`).
fn head_side(key: &str) -> bool {
    key.starts_with("backbone.fc.")
        || key == "backbone.last_conv.weight"
        || key.starts_with("backbone.stages.3.1.pw_conv.")
}

#[test]
fn step_matches_paddle_float64_within_float32_tolerances() {
    let arrays: BTreeMap<String, NpyArray<f64>> = read_npz_f64(&fixture("train/step64_8f.npz"))
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .collect();
    let get = |k: &str| &arrays[k];
    let input = get("input");
    let dims: [usize; 5] = input.shape.clone().try_into().expect("5-D input");
    let clips: Vec<f32> = input.data.iter().map(|&v| v as f32).collect();
    let labels: Vec<usize> = get("labels").data.iter().map(|&l| l as usize).collect();

    let net =
        Arc::new(NhwcTrainNet::from_store(&v2_store(false), 8).unwrap_or_else(|e| panic!("{e}")));
    let pass = net
        .forward(&clips, dims, 0)
        .unwrap_or_else(|e| panic!("{e}"));
    let logits = f64s(pass.logits());
    let mut heads = Worst::default();
    heads.add(
        "logits (abs)",
        max_abs_diff(&logits, &get("logits").data),
        2e-4,
    );
    let features = f64s(pass.features());
    let features_err = max_abs_diff(&features, &get("features").data) / max_abs(&features);
    eprintln!("  features (rel to max, no tolerance) {features_err:.3e}");
    let loss = cross_entropy(&logits, 400, &Targets::Hard(labels));
    heads.add(
        "dlogits (rel)",
        max_abs_diff(&loss.grad, &get("dlogits").data) / max_abs(&get("dlogits").data),
        1e-4,
    );

    let mut stats = Worst::default();
    let ours: BTreeMap<String, (Vec<f32>, Vec<f32>)> = pass
        .batch_stats()
        .into_iter()
        .map(|(k, m, v)| (k, (m, v)))
        .collect();
    for (key, r) in arrays.iter() {
        let Some(layer) = key.strip_prefix("bn_batch_mean.") else {
            continue;
        };
        let (mean, var) = &ours[layer];
        let rv = &get(&format!("bn_batch_var.{layer}")).data;
        stats.add(
            &format!("{layer} mean"),
            max_abs_diff(&f64s(mean), &r.data) / max_abs(&r.data),
            1e-4,
        );
        stats.add(
            &format!("{layer} var"),
            max_abs_diff(&f64s(var), rv) / max_abs(rv),
            1e-4,
        );
    }
    assert_eq!(stats.count, 6);

    let dlogits: Vec<f32> = loss.grad.iter().map(|&v| v as f32).collect();
    let grads = pass.backward(&dlogits).unwrap_or_else(|e| panic!("{e}"));
    let store = v2_store(false);
    let trainable: BTreeSet<&str> = store
        .names()
        .filter(|k| !k.ends_with("._mean") && !k.ends_with("._variance"))
        .filter(|k| {
            !(k.contains(".dw_conv.")
                && !k.contains(".dw_conv.conv.")
                && !k.contains(".dw_conv.bn."))
        })
        .collect();
    let keys: BTreeSet<&str> = grads.keys().map(String::as_str).collect();
    assert_eq!(keys, trainable, "one gradient per trainable parameter");
    let (mut head, mut early) = (Worst::default(), Worst::default());
    for (key, r) in arrays.iter() {
        let Some(param) = key.strip_prefix("grad.") else {
            continue;
        };
        let shape = &store.get(param).expect("param").shape;
        let ours = leading_block(&f64s(&grads[param]), shape, &r.shape);
        if head_side(param) {
            head.add(param, max_abs_diff(&ours, &r.data), 1e-3 * max_abs(&r.data));
        } else {
            early.add(param, l2_relative(&ours, &r.data), 0.15);
        }
    }
    assert_eq!(head.count + early.count, 20);
    eprintln!("NHWC step vs Paddle float64 (step64_8f):");
    heads.report("logits/dlogits");
    stats.report("batch stats (rel)");
    head.report("head grads (abs)");
    early.report("early grads (L2-rel)");
}

/// A random 16f PP-TSMv2 with the temporal attention whose ReLU decisions float32 rounding
/// cannot flip: every BatchNorm's β is ±3.5·γ (the sign alternating over channels, the same
/// for a block's rep branches), so a ReLU input within rounding of 0 needs a normalised value
/// near ∓3.5; running statistics and SE biases random. (With β near 0, a float32 run flips a
/// few of the millions of ReLU decisions, and each flip at the small late maps moves the
/// gradients before it by percents, as the fixtures README says.)
fn random_attention_store() -> ParamStore {
    let arch = Arch {
        model: ModelKind::PptsmV2,
        depth: None,
        num_seg: Some(16),
        num_classes: 7,
        attention: true,
        form: Form::Training,
    };
    let base = random_store(arch, 2024);
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 11) as f64 / (1u64 << 53) as f64) as f32
    };
    let mut store = ParamStore::new();
    for (key, t) in base.iter() {
        let data: Vec<f32> = if key.ends_with(".bn.weight") || key.ends_with("._variance") {
            t.data.iter().map(|_| 0.6 + 0.8 * next()).collect()
        } else if key.ends_with(".bias") || key.ends_with("._mean") {
            t.data.iter().map(|_| 0.2 * (next() - 0.5)).collect()
        } else {
            t.data.clone()
        };
        store.insert(
            key,
            ParamTensor {
                shape: t.shape.clone(),
                data,
            },
        );
    }
    let betas: Vec<String> = store
        .names()
        .filter(|k| k.ends_with(".bn.bias"))
        .map(String::from)
        .collect();
    for key in betas {
        let gamma = store
            .get(&key.replace(".bn.bias", ".bn.weight"))
            .expect("bn weight")
            .clone();
        let beta = gamma
            .data
            .iter()
            .enumerate()
            .map(|(c, g)| if c % 2 == 0 { 3.5 * g } else { 3.0 * g })
            .collect();
        store.insert(
            key,
            ParamTensor {
                shape: gamma.shape,
                data: beta,
            },
        );
    }
    store
}

fn random_clips(dims: [usize; 5], phase: f32) -> Vec<f32> {
    (0..dims.iter().product::<usize>())
        .map(|i| ((i as f32) * 0.37 + phase).sin() + 0.3 * ((i as f32) * 0.011).cos())
        .collect()
}

/// Burn's float64 step, and the columns of the last ReLU (`last_conv`'s output, recomputed in
/// float64 from the traced pooled maps) whose input is within 1e-4 of the largest |input| of 0
/// in some frame: there a float32 run may take the other side, and one such flip moves every
/// gradient before it by percents.
fn burn_step(
    store: &ParamStore,
    clips: &[f32],
    dims: [usize; 5],
    frozen: usize,
) -> (StepOutcome, BTreeSet<usize>) {
    let model = Recognizer::from_store(store, &Device::flex()).unwrap_or_else(|e| panic!("{e}"));
    let mut trainer = FullTrainer::new(model, FloatDType::F64, FullStepOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    trainer
        .set_freeze_stages(frozen)
        .unwrap_or_else(|e| panic!("{e}"));
    let data = TensorData::new(clips.to_vec(), dims.to_vec());
    let mut trace = Trace::enabled();
    let outcome = trainer
        .step_traced(data, &[1, 5], 0.01, &mut trace)
        .unwrap_or_else(|e| panic!("{e}"));
    let pooled = trace.get("avg_pool").expect("avg_pool record").clone();
    let pooled = pooled.try_into_vec_as::<f64>().expect("float data");
    let weight = store.get("backbone.last_conv.weight").expect("last_conv");
    let (width, c) = (weight.shape[0], weight.shape[1]);
    let z: Vec<f64> = pooled
        .chunks_exact(c)
        .flat_map(|p| {
            weight
                .data
                .chunks_exact(c)
                .take(width)
                .map(|w| p.iter().zip(w).map(|(a, &b)| a * f64::from(b)).sum::<f64>())
        })
        .collect();
    let scale = max_abs(&z);
    let ambiguous: BTreeSet<usize> = z
        .iter()
        .enumerate()
        .filter(|(_, v)| v.abs() < 1e-4 * scale)
        .map(|(i, _)| i % width)
        .collect();
    (outcome, ambiguous)
}

/// Zeroes the fc rows of `columns`.
fn zero_fc_rows(store: &mut ParamStore, columns: &BTreeSet<usize>) {
    let mut fc = store.get("backbone.fc.weight").expect("fc").clone();
    let classes = fc.shape[1];
    for &j in columns {
        fc.data[j * classes..(j + 1) * classes].fill(0.0);
    }
    store.insert("backbone.fc.weight", fc);
}

#[test]
fn step_matches_burn_float64_with_attention_and_frozen_stages() {
    let dims = [2, 16, 3, 48, 40];
    let clips = random_clips(dims, 1.5);
    for frozen in [0, 2] {
        // The last ReLU (after `last_conv`, no BatchNorm) cannot be kept away from 0 that way:
        // the columns where some frame's input is within 1e-4 of 0 get a zero fc row, so a
        // float32 flip there carries no gradient.
        let mut store = random_attention_store();
        let (_, ambiguous) = burn_step(&store, &clips, dims, frozen);
        zero_fc_rows(&mut store, &ambiguous);
        let (reference, _) = burn_step(&store, &clips, dims, frozen);
        let net = Arc::new(NhwcTrainNet::from_store(&store, 16).unwrap_or_else(|e| panic!("{e}")));
        let pass = net
            .forward(&clips, dims, frozen)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut head = Worst::default();
        let logits = f64s(pass.logits());
        head.add(
            "logits (rel to max)",
            max_abs_diff(&logits, &reference.logits.data) / max_abs(&reference.logits.data),
            1e-4,
        );
        head.add(
            "features (rel to max)",
            max_abs_diff(&f64s(pass.features()), &reference.features.data)
                / max_abs(&reference.features.data),
            1e-4,
        );

        let mut stats = Worst::default();
        let ours = pass.batch_stats();
        let keys: BTreeSet<&str> = ours.iter().map(|(k, _, _)| k.as_str()).collect();
        let theirs: BTreeSet<&str> = reference.batch_stats.keys().map(String::as_str).collect();
        assert_eq!(
            keys, theirs,
            "frozen {frozen}: the same BatchNorm layers in batch mode"
        );
        for (key, mean, var) in &ours {
            let r = &reference.batch_stats[key];
            stats.add(
                &format!("{key} mean"),
                max_abs_diff(&f64s(mean), &r.mean) / max_abs(&r.mean),
                1e-4,
            );
            stats.add(
                &format!("{key} var"),
                max_abs_diff(&f64s(var), &r.variance) / max_abs(&r.variance),
                1e-4,
            );
        }

        let dlogits: Vec<f32> = reference.dlogits.data.iter().map(|&v| v as f32).collect();
        let grads = pass.backward(&dlogits).unwrap_or_else(|e| panic!("{e}"));
        let keys: BTreeSet<&str> = grads.keys().map(String::as_str).collect();
        let theirs: BTreeSet<&str> = reference.grads.keys().map(String::as_str).collect();
        assert_eq!(
            keys, theirs,
            "frozen {frozen}: the same parameters get gradients"
        );
        // Some gradients are 0 up to rounding (a BatchNorm's β when the next BatchNorm removes
        // any shift because the ReLU between never clips): L2-relative with the reference's
        // norm floored at 1e-4 of the largest gradient value (an absolute 1e-7 of it).
        let scale = reference
            .grads
            .values()
            .fold(0.0f64, |m, g| m.max(max_abs(&g.data)));
        let mut grad = Worst::default();
        for (key, r) in &reference.grads {
            let ours = f64s(&grads[key]);
            assert_eq!(ours.len(), r.data.len(), "{key} length");
            let norm = r.data.iter().map(|v| v * v).sum::<f64>().sqrt();
            let diff = l2_relative(&ours, &r.data) * norm;
            grad.add(key, diff / (norm + 1e-4 * scale), 1e-3);
        }
        eprintln!("NHWC step vs burn float64, 16f + attention, frozen {frozen}:");
        head.report("logits/features");
        stats.report("batch stats (rel to max)");
        grad.report("grads (L2-rel, floored)");
    }
}

/// `FullTrainer` runs PP-TSMv2 float32 steps on this path (keys, batch statistics and the
/// update wired as on burn's): one step on the fixture's batch with each path from the same
/// weights gives the same loss, the same batch statistics and running statistics, gradients for
/// the same keys, and the same update of the fc and last_conv (elsewhere float32 ReLU flips
/// make gradients differ by percents: the README's L2-relative bound).
#[test]
fn full_trainer_steps_on_this_path_like_on_burn() {
    let arrays: BTreeMap<String, NpyArray<f64>> = read_npz_f64(&fixture("train/step64_8f.npz"))
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .collect();
    let input = &arrays["input"];
    let labels: Vec<usize> = arrays["labels"].data.iter().map(|&l| l as usize).collect();
    let store = v2_store(false);
    let step = |cpu_path: bool| {
        let model = build(&store, Form::Training, &Device::flex());
        let mut trainer = FullTrainer::new(model, FloatDType::F32, FullStepOptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(trainer.set_cpu_path(cpu_path), cpu_path);
        let clips = TensorData::new(input.data.clone(), input.shape.clone());
        let start = Instant::now();
        let outcome = trainer
            .step(clips, &labels, 0.05)
            .unwrap_or_else(|e| panic!("{e}"));
        eprintln!(
            "  {} step at 64x64: {:.2} s",
            trainer.path_name(),
            start.elapsed().as_secs_f64()
        );
        (outcome, trainer.parameters().expect("parameters"))
    };
    let (nhwc, nhwc_params) = step(true);
    let (burn, burn_params) = step(false);

    assert!((nhwc.loss - burn.loss).abs() <= 1e-5 * burn.loss, "loss");
    assert!(
        max_abs_diff(&nhwc.logits.data, &burn.logits.data) <= 2e-4,
        "logits"
    );
    assert!(nhwc.untouched.is_empty() && burn.untouched.is_empty());
    fn keys<V>(m: &BTreeMap<String, V>) -> Vec<String> {
        m.keys().cloned().collect()
    }
    assert_eq!(keys(&nhwc.grads), keys(&burn.grads), "gradient keys");
    assert_eq!(
        keys(&nhwc.batch_stats),
        keys(&burn.batch_stats),
        "batch statistics"
    );
    let mut stats = Worst::default();
    for (key, b) in &burn.batch_stats {
        let n = &nhwc.batch_stats[key];
        for (what, ours, reference) in [
            ("mean", &n.mean, &b.mean),
            ("var", &n.variance, &b.variance),
        ] {
            let err = max_abs_diff(ours, reference) / max_abs(reference).max(1e-12);
            stats.add(&format!("{key} {what}"), err, 1e-4);
        }
    }
    let (mut head, mut rest) = (Worst::default(), Worst::default());
    let start = store_f64(&store);
    for (key, reference) in &burn_params {
        let ours = &nhwc_params[key].data;
        if key.ends_with("._mean") || key.ends_with("._variance") {
            let err = max_abs_diff(ours, &reference.data) / max_abs(&reference.data).max(1e-12);
            stats.add(&format!("running {key}"), err, 1e-4);
            continue;
        }
        let p0 = &start[key];
        let update = |p: &[f64]| p.iter().zip(p0).map(|(a, b)| a - b).collect::<Vec<f64>>();
        let (ours, reference) = (update(ours), update(&reference.data));
        // (`stages.3.1.pw_conv` holds the ReLU input 7.8e-5 from zero that either float32
        // run may flip: the L2 bound below.)
        if key.starts_with("backbone.fc.") || key == "backbone.last_conv.weight" {
            let tol = 1e-6 + 1e-3 * max_abs(&reference);
            head.add(key, max_abs_diff(&ours, &reference), tol);
        } else {
            rest.add(key, l2_relative(&ours, &reference), 0.15);
        }
    }
    stats.report("batch + running stats (rel)");
    head.report("fc, last_conv updates (abs)");
    rest.report("other updates (L2-rel)");
}

/// Every value of `store` in f64, by key.
fn store_f64(store: &ParamStore) -> BTreeMap<String, Vec<f64>> {
    store
        .iter()
        .map(|(k, t)| (k.to_string(), f64s(&t.data)))
        .collect()
}
