//! Distillation in full fine-tuning (`kineto train --distill dml|kd --teacher W`):
//!
//! - the DML and KD steps seed each model's backward with exactly the gradients of
//!   `train::distill` (DML with Mixup targets): each outcome's `dlogits` equals `dml_loss` /
//!   `kd_loss` on the step's own logits, and the fc's parameter gradients are the ones those
//!   `dlogits` imply (`dL/db = Σ_n dlogits`, `dL/dW = featuresᵀ·dlogits`), so a swapped or
//!   missing gradient fails; prints the time of a DML step at 64x64, 2 clips x 8 frames;
//! - end to end on demo data at `--size 64`, from the fixture PP-TSMv2 8f weights as both
//!   student start and DML teacher: the step events carry `ce`, `ce_teacher`, `dml` (total =
//!   their sum; the student's mean CE falls from epoch 1 to 2), the run folder has `latest`
//!   and `latest_teacher` (with velocities; the teacher trained), Ctrl-C + `--resume` gives
//!   the uninterrupted run's numbers, KD from the DML run's fused model logs `ce` and `kd`;
//!   the refusals (KD teacher with other classes, `--distill` with `--head-only`) are one line,
//!   exit 2; DML with the fixture PP-TSM ResNet-50 as teacher (PaddleVideo's recipe) trains it;
//! - the ResNet teacher's train-mode step in float64: its gradients match central finite
//!   differences of the train-mode forward (stem, BatchNorm, the ResNet-D pooled shortcut, a
//!   late 3x3 conv, the head), and its update applies `ppTSMHead`'s lr multipliers and decay
//!   exemptions. About two minutes on 2 busy cores.

// Test code: a failed unwrap/expect is the test failing (clippy.toml exempts only #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Instant;

use burn::tensor::{Device, FloatDType, TensorData};
use common::compare::max_abs;
use common::train::{central_difference, demo_data, events, interrupt_after_first_step, of_kind};
use common::{build, fixture, kineto, r50_store, s, v2_store};
use kineto::checkpoint::file::open_checkpoint;
use kineto::checkpoint::keys::Role;
use kineto::checkpoint::{ParamStore, ParamTensor};
use kineto::model::{Form, ModelKind};
use kineto::train::checkpoints::latest_files;
use kineto::train::losses::{DmlWeights, KdWeights, Targets, dml_loss, kd_loss};
use kineto::train::optim::Momentum;
use kineto::train::trainer::{FullStepOptions, FullTrainer, StepOutcome, dml_step, kd_step};

/// A smooth deterministic clip batch `[n, 8, 3, 64, 64]`.
fn clips(n: usize) -> TensorData {
    let len = n * 8 * 3 * 64 * 64;
    let data: Vec<f32> = (0..len)
        .map(|i| {
            let x = i as f32;
            (x * 0.0137).sin() + 0.5 * (x * 0.00071 + (i / 4096) as f32).cos()
        })
        .collect();
    TensorData::new(data, [n, 8, 3, 64, 64])
}

fn trainer(fc_bias_shift: Option<u64>) -> FullTrainer {
    let mut store = v2_store(false);
    if let Some(seed) = fc_bias_shift {
        // A teacher that disagrees with the student: another fc bias.
        let bias: Vec<f32> = (0..400u64)
            .map(|i| (((i * 7919 + seed * 104_729) % 1000) as f32 / 250.0) - 2.0)
            .collect();
        store.insert(
            "backbone.fc.bias",
            ParamTensor::new(vec![400], bias).expect("bias"),
        );
    }
    let model = build(&store, Form::Training, &Device::flex());
    FullTrainer::new(model, FloatDType::F32, FullStepOptions::default())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The fc gradients of `outcome` are those its `dlogits` imply.
fn assert_fc_grads_follow_dlogits(outcome: &StepOutcome, who: &str) {
    let d = &outcome.dlogits;
    let (n, classes) = (d.shape[0], d.shape[1]);
    let f = &outcome.features;
    let dim = f.shape[1];
    let bias = &outcome.grads["backbone.fc.bias"].data;
    let expected: Vec<f64> = (0..classes)
        .map(|j| (0..n).map(|i| d.data[i * classes + j]).sum())
        .collect();
    let scale = max_abs(&expected);
    assert!(scale > 1e-6, "{who}: a vanishing gradient tests nothing");
    for j in 0..classes {
        assert!(
            (bias[j] - expected[j]).abs() <= 1e-5 * scale,
            "{who}: fc.bias grad[{j}] {} vs Σ dlogits {}",
            bias[j],
            expected[j]
        );
    }
    let weight = &outcome.grads["backbone.fc.weight"].data;
    let mut worst: f64 = 0.0;
    let mut wscale: f64 = 0.0;
    for k in 0..dim {
        for j in 0..classes {
            let e: f64 = (0..n)
                .map(|i| f.data[i * dim + k] * d.data[i * classes + j])
                .sum();
            worst = worst.max((weight[k * classes + j] - e).abs());
            wscale = wscale.max(e.abs());
        }
    }
    assert!(
        worst <= 1e-4 * wscale,
        "{who}: fc.weight grad off by {worst} (scale {wscale})"
    );
}

#[test]
fn distillation_steps_seed_the_backwards_with_the_distill_gradients() {
    let mut student = trainer(None);
    let mut teacher = trainer(Some(3));
    let targets = Targets::Mixup {
        a: vec![39, 7],
        b: vec![7, 39],
        lam: 0.7,
    };
    let mut times = Vec::new();
    let mut first = None;
    for _ in 0..2 {
        let start = Instant::now();
        let step = dml_step(
            &mut student,
            &mut teacher,
            clips(2),
            &targets,
            DmlWeights::default(),
            0.01,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        times.push(start.elapsed().as_secs_f64());
        first.get_or_insert(step);
    }
    let start = Instant::now();
    trainer(None)
        .step_targets(clips(2), &targets, 0.01)
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "DML step (student + teacher, 2 clips x 8 frames at 64x64, f32): {:.3} s, then {:.3} s; \
         a plain CE step of one model {:.3} s",
        times[0],
        times[1],
        start.elapsed().as_secs_f64()
    );
    let step = first.expect("a step");
    let (s, t) = (&step.student, &step.teacher);
    let classes = s.logits.shape[1];
    let reference = dml_loss(
        &s.logits.data,
        &t.logits.data,
        classes,
        &targets,
        DmlWeights::default(),
    );
    assert!(reference.dml > 1e-3, "the two models must disagree");
    assert_eq!(step.total, reference.total);
    assert_eq!(
        (step.ce_student, step.ce_teacher, step.dml),
        (reference.ce_student, reference.ce_teacher, reference.dml)
    );
    assert_eq!(s.loss, reference.total);
    let close = |a: &[f64], b: &[f64], who: &str| {
        assert_eq!(a.len(), b.len());
        let scale = max_abs(b);
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= 1e-12 * scale, "{who}[{i}]: {x} vs {y}");
        }
    };
    close(&s.dlogits.data, &reference.grad_student, "student dlogits");
    close(&t.dlogits.data, &reference.grad_teacher, "teacher dlogits");
    assert_fc_grads_follow_dlogits(s, "DML student");
    assert_fc_grads_follow_dlogits(t, "DML teacher");

    // KD: the teacher's logits are constants; the student gets kd_loss's gradient.
    let teacher_logits = t.logits.data.clone();
    let weights = KdWeights { ce: 0.5, kd: 0.5 };
    let kd = kd_step(
        &mut student,
        &teacher_logits,
        clips(2),
        &targets,
        4.0,
        weights,
        0.01,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let reference = kd_loss(
        &kd.student.logits.data,
        &teacher_logits,
        classes,
        &targets,
        4.0,
        weights,
    );
    assert!(reference.kd > 1e-3);
    assert_eq!(
        (kd.total, kd.ce, kd.kd),
        (reference.total, reference.ce, reference.kd)
    );
    close(
        &kd.student.dlogits.data,
        &reference.grad_student,
        "KD dlogits",
    );
    assert_fc_grads_follow_dlogits(&kd.student, "KD student");

    // Shapes are checked before anything runs.
    let err = kd_step(
        &mut student,
        &teacher_logits[..400],
        clips(2),
        &targets,
        4.0,
        weights,
        0.01,
    )
    .expect_err("teacher logits of one clip for two");
    assert!(err.to_string().contains("teacher logits"), "{err}");
}

fn tmp(tag: &str) -> common::ScratchDir {
    common::ScratchDir::absent(&format!("distill-{tag}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn train_args(data: &Path, run_dir: &Path) -> Vec<String> {
    let weights = fixture("pptsmv2/w8.pdparams");
    [
        "--device",
        "cpu",
        "train",
        s(data),
        "--weights",
        s(&weights),
    ]
    .into_iter()
    .chain(common::train::SMALL_RUN)
    .chain(["--run-dir", s(run_dir)])
    .map(str::to_string)
    .collect()
}

fn run(args: &[String]) -> std::process::Output {
    kineto(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn term(step: &serde_json::Value, key: &str) -> f64 {
    step["terms"][key]
        .as_f64()
        .unwrap_or_else(|| panic!("no term {key}: {step}"))
}

/// One line on stderr, exit 2, mentioning every `needle`.
fn assert_refused(out: &std::process::Output, needles: &[&str]) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    for n in needles {
        assert!(err.contains(n), "{n:?} not in: {err}");
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1e-12)
}

#[test]
fn dml_and_kd_runs_log_their_terms_checkpoint_and_resume() {
    let root = tmp("loop");
    let data = root.join("data");
    demo_data(&data, 2, 4, 3);
    let w8 = fixture("pptsmv2/w8.pdparams");
    let dml_args = |run_dir: &Path| {
        let mut args = train_args(&data, run_dir);
        args.extend(
            [
                "--epochs",
                "2",
                "--seed",
                "2",
                "--distill",
                "dml",
                "--teacher",
                s(&w8),
            ]
            .map(str::to_string),
        );
        args
    };

    // DML, uninterrupted.
    let whole = root.join("dml");
    let out = run(&dml_args(&whole));
    assert!(out.status.success(), "DML run: {}", text(&out.stderr));
    let reference = events(&whole);
    let steps = of_kind(&reference, "step");
    assert_eq!(steps.len(), 6, "{reference:?}");
    for step in &steps {
        let (ce, ce_t, dml) = (
            term(step, "ce"),
            term(step, "ce_teacher"),
            term(step, "dml"),
        );
        let loss = step["loss"].as_f64().expect("loss");
        assert!(ce.is_finite() && ce_t.is_finite() && dml.is_finite() && dml >= 0.0);
        assert!(
            (loss - (ce + ce_t + dml)).abs() <= 1e-9 * loss.abs(),
            "total {loss} is not the sum of its terms: {step}"
        );
    }
    let ce_of_epoch = |e: u64| {
        let v: Vec<f64> = steps
            .iter()
            .filter(|s| s["epoch"] == e)
            .map(|s| term(s, "ce"))
            .collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    let (ce1, ce2) = (ce_of_epoch(1), ce_of_epoch(2));
    eprintln!("DML student CE by epoch: {ce1:.4} -> {ce2:.4}");
    assert!(ce2 < ce1, "the student's CE did not fall: {ce1} -> {ce2}");
    let files = latest_files(&whole).expect("a committed latest checkpoint");
    let teacher_file = files.teacher.clone().expect("the teacher's checkpoint");
    for f in [
        files.model.as_str(),
        &files.optim,
        &teacher_file,
        files
            .teacher_optim
            .as_deref()
            .expect("the teacher's velocities"),
        "latest.state.json",
        "model.safetensors",
        "report.txt",
    ] {
        assert!(
            whole.join(f).exists(),
            "{f} missing from the DML run folder"
        );
    }
    let settings: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(whole.join("settings.json")).expect("settings"),
    )
    .expect("settings json");
    assert_eq!(settings["job"]["distill"]["mode"], "dml");
    let teacher =
        open_checkpoint(&whole.join(&teacher_file), Role::Student).expect("latest_teacher loads");
    assert_eq!(teacher.arch.model, ModelKind::PptsmV2);
    assert_eq!(teacher.arch.form, Form::Training);
    assert_eq!(teacher.arch.num_classes, 2);
    let start = open_checkpoint(&w8, Role::Student).expect("w8");
    let key = "backbone.stem.0.conv.weight";
    let (a, b) = (
        teacher.store.get(key).expect("teacher stem"),
        start.store.get(key).expect("w8 stem"),
    );
    assert_ne!(a.data, b.data, "the DML teacher was not trained");
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(whole.join("latest.state.json")).expect("state"),
    )
    .expect("state json");
    assert!(
        state["teacher_velocity"]
            .as_array()
            .is_some_and(|v| !v.is_empty()),
        "no teacher velocities in the state"
    );

    // The same DML run cut by Ctrl-C after its first step, then resumed: same numbers.
    let cut = root.join("dml-cut");
    assert_eq!(
        interrupt_after_first_step(&dml_args(&cut)),
        Some(130),
        "Ctrl-C exits 130"
    );
    let cut_files = latest_files(&cut).expect("a committed latest checkpoint");
    assert!(cut.join(cut_files.teacher.expect("teacher")).exists());
    assert!(of_kind(&events(&cut), "epoch").len() < 2, "cut too late");
    let out = kineto(&["--device", "cpu", "--quiet", "train", "--resume", s(&cut)]);
    assert!(out.status.success(), "resume: {}", text(&out.stderr));
    let resumed = events(&cut);
    assert_eq!(resumed.len(), reference.len(), "{resumed:?}");
    for (r, e) in resumed.iter().zip(&reference) {
        assert_eq!(r["event"], e["event"]);
        for (k, v) in e.as_object().expect("object") {
            match (v.as_f64(), r[k].as_f64()) {
                (Some(a), Some(b)) => assert!(close(a, b), "{k}: {b} vs {a}\n{r}\n{e}"),
                _ if k == "terms" => {
                    for t in ["ce", "ce_teacher", "dml"] {
                        assert!(close(term(r, t), term(e, t)), "{t}: {r} vs {e}");
                    }
                }
                _ => assert_eq!(&r[k], v, "{k}"),
            }
        }
    }

    // KD from the DML run's student (fused, the data's classes), one epoch.
    let kd_dir = root.join("kd");
    let model = whole.join("model.safetensors");
    let mut args = train_args(&data, &kd_dir);
    args.extend(
        [
            "--epochs",
            "1",
            "--distill",
            "kd",
            "--teacher",
            s(&model),
            "--temperature",
            "2",
            "--kd-weight",
            "0.7",
        ]
        .map(str::to_string),
    );
    let out = run(&args);
    assert!(out.status.success(), "KD run: {}", text(&out.stderr));
    let log = events(&kd_dir);
    let steps = of_kind(&log, "step");
    assert_eq!(steps.len(), 3);
    for step in &steps {
        let (ce, kd) = (term(step, "ce"), term(step, "kd"));
        let loss = step["loss"].as_f64().expect("loss");
        assert!(kd.is_finite() && kd >= 0.0, "{step}");
        assert!(
            (loss - (0.3 * ce + 0.7 * kd)).abs() <= 1e-9 * loss.abs().max(1e-9),
            "KD total {loss} is not 0.3·ce + 0.7·kd: {step}"
        );
        assert!(step["terms"].get("ce_teacher").is_none());
    }
    assert!(kd_dir.join("model.safetensors").exists());
    assert!(
        latest_files(&kd_dir)
            .expect("a committed latest checkpoint")
            .teacher
            .is_none()
    );

    // Refusals: one line, exit 2, before any work.
    let refused = root.join("refused");
    let mut args = train_args(&data, &refused);
    args.extend(["--distill", "kd", "--teacher", s(&w8)].map(str::to_string));
    assert_refused(&run(&args), &["w8.pdparams", "400 classes"]);
    let mut args = train_args(&data, &refused);
    args.extend(["--distill", "kd", "--teacher", s(&w8), "--dml-weight", "2"].map(str::to_string));
    assert_refused(&run(&args), &["--dml-weight", "dml"]);
    let mut args = train_args(&data, &refused);
    args.extend(["--head-only", "--distill", "dml", "--teacher", s(&w8)].map(str::to_string));
    // (--size is refused with --head-only too; drop it to see the --distill refusal.)
    let pos = args.iter().position(|a| a == "--size").expect("--size");
    args.drain(pos..pos + 2);
    assert_refused(&run(&args), &["--distill", "--head-only"]);
    assert!(!refused.join("settings.json").exists());

    // DML with PaddleVideo's teacher, PP-TSM ResNet-50 (small: 4 frames at 32x32, one epoch).
    let r50 = fixture("pptsm_r50/w.pdparams");
    let r50_dir = root.join("dml-r50");
    let mut args = train_args(&data, &r50_dir);
    set_arg(&mut args, "--frames", "4");
    set_arg(&mut args, "--size", "32");
    args.extend(
        [
            "--epochs",
            "1",
            "--distill",
            "dml",
            "--teacher",
            s(&r50),
            "--dml-weight",
            "0.5",
        ]
        .map(str::to_string),
    );
    let out = run(&args);
    assert!(out.status.success(), "DML with R50: {}", text(&out.stderr));
    for step in of_kind(&events(&r50_dir), "step") {
        let (ce, ce_t, dml) = (
            term(step, "ce"),
            term(step, "ce_teacher"),
            term(step, "dml"),
        );
        let loss = step["loss"].as_f64().expect("loss");
        assert!(ce_t.is_finite() && dml.is_finite() && dml >= 0.0, "{step}");
        assert!(
            (loss - (ce + ce_t + 0.5 * dml)).abs() <= 1e-9 * loss.abs(),
            "--dml-weight 0.5: total {loss} is not ce + ce_teacher + 0.5·dml: {step}"
        );
    }
    let settings: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(r50_dir.join("settings.json")).expect("settings"),
    )
    .expect("settings json");
    assert_eq!(settings["job"]["distill"]["dml_weight"], 0.5);
    let r50_files = latest_files(&r50_dir).expect("a committed latest checkpoint");
    let teacher = open_checkpoint(
        &r50_dir.join(r50_files.teacher.expect("teacher")),
        Role::Student,
    )
    .expect("latest_teacher loads");
    assert_eq!(teacher.arch.model, ModelKind::PptsmResnet);
    assert_eq!(teacher.arch.form, Form::Training);
    assert_eq!(teacher.arch.num_classes, 2);
    let start = r50_store();
    let key = "backbone.conv1_1._conv.weight";
    assert_ne!(
        teacher.store.get(key).expect("teacher stem").data,
        start.get(key).expect("r50 stem").data,
        "the ResNet teacher was not trained"
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// Replaces the value after `flag` in `args`.
fn set_arg(args: &mut [String], flag: &str, value: &str) {
    let pos = args.iter().position(|a| a == flag).expect(flag);
    args[pos + 1] = value.to_string();
}

/// `[1, 8, 3, 64, 64]` smooth clips for the ResNet checks.
fn small_clips() -> TensorData {
    let len = 8 * 3 * 64 * 64;
    let data: Vec<f32> = (0..len)
        .map(|i| ((i as f32) * 0.021).sin() + 0.3 * ((i / 4096) as f32).cos())
        .collect();
    TensorData::new(data, [1, 8, 3, 64, 64])
}

fn r50_trainer(store: &ParamStore) -> FullTrainer {
    let model = build(store, Form::Training, &Device::flex());
    FullTrainer::new(model, FloatDType::F64, FullStepOptions::default())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// `Σ logits·seed` of the float64 train-mode forward of `store` on `small_clips()`.
fn seeded_loss(store: &ParamStore, seed: &[f64]) -> f64 {
    let forward = r50_trainer(store).forward(small_clips()).expect("forward");
    forward
        .logits
        .data
        .iter()
        .zip(seed)
        .map(|(l, s)| l * s)
        .sum()
}

#[test]
fn resnet_teacher_step_matches_finite_differences_and_the_head_recipe() {
    let store = r50_store();
    let seed: Vec<f64> = (0..400)
        .map(|i| (((i * 7919) % 1000) as f64 / 500.0) - 1.0)
        .collect();
    let mut trainer = r50_trainer(&store);
    let forward = trainer.forward(small_clips()).expect("forward");
    let loss: f64 = forward
        .logits
        .data
        .iter()
        .zip(&seed)
        .map(|(l, s)| l * s)
        .sum();
    let lr = 0.01;
    let step = trainer
        .backward_and_update(forward, loss, seed.clone(), lr)
        .unwrap_or_else(|e| panic!("{e}"));

    // Each gradient at its largest element against (L(p + h) - L(p - h)) / 2h. The stem's
    // differences cross leaky-ReLU kinks downstream (measured: 0.2-0.3% off); later layers
    // agree to about 1e-7.
    for (key, tolerance) in [
        ("backbone.conv1_1._conv.weight", 1e-2),
        ("backbone.conv1_2._batch_norm.weight", 1e-2),
        ("backbone.bb_1_0.short._conv.weight", 1e-5),
        ("backbone.bb_2_3.conv1._conv.weight", 1e-5),
        ("backbone.bb_3_2.conv2._batch_norm.bias", 1e-5),
        ("head.fc.weight", 1e-5),
        ("head.fc.bias", 1e-5),
    ] {
        let grad = &step
            .grads
            .get(key)
            .unwrap_or_else(|| panic!("no grad {key}"))
            .data;
        let (i, g) = grad
            .iter()
            .copied()
            .enumerate()
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
            .expect("elements");
        let numeric = central_difference(&store, key, i, |s| seeded_loss(s, &seed));
        eprintln!("{key}[{i}]: autodiff {g:.6e}, finite difference {numeric:.6e}");
        assert!(
            (numeric - g).abs() <= tolerance * g.abs(),
            "{key}[{i}]: autodiff {g} vs finite difference {numeric}"
        );
    }

    // ppTSMHead: fc lr x5 (weight) / x10 (bias), no decay on the bias; BatchNorm not decayed.
    let after = trainer.parameters().expect("parameters");
    for (key, multiplier, decay) in [
        ("head.fc.weight", 5.0, 1e-4),
        ("head.fc.bias", 10.0, 0.0),
        ("backbone.conv1_2._batch_norm.weight", 1.0, 0.0),
        ("backbone.bb_3_2.conv2._conv.weight", 1.0, 1e-4),
    ] {
        let mut expected: Vec<f64> = store
            .get(key)
            .expect("param")
            .data
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        let mut velocity = vec![0.0; expected.len()];
        let grad = &step.grads[key].data;
        Momentum::PADDLEVIDEO.step(&mut expected, &mut velocity, grad, lr * multiplier, decay);
        let ours = &after[key].data;
        let scale = max_abs(&expected);
        for (j, (a, b)) in ours.iter().zip(&expected).enumerate() {
            assert!((a - b).abs() <= 1e-12 * scale, "{key}[{j}]: {a} vs {b}");
        }
    }
}
