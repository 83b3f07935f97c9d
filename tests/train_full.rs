//! `kineto train DATA` (full fine-tuning) end to end on small demo data at a small size
//! (`--size 64`, 8 frames, 2 classes x 4 short clips, batch 2), from the fixture PP-TSMv2 8f
//! weights (training form):
//!
//! - the training loss falls (mean of the first epoch vs the last), the run folder has
//!   `latest`/`best`/`model.safetensors`, `metrics.jsonl`, the state and the report, and
//!   `kineto classify` runs the exported (fused) model and answers with one of the new classes;
//! - a fused checkpoint as start weights is refused with one line and exit 2;
//! - Ctrl-C (SIGINT) during the first epoch saves `latest` and exits 130, and `--resume` then
//!   gives the same step losses and epoch metrics as an uninterrupted run with the same seed
//!   (within 1e-6 relative);
//! - `--freeze-stages 2`: after one epoch the stem's and stages 0-1's parameters and BatchNorm
//!   running statistics in `latest.safetensors` are bit-identical to the start weights while
//!   stages 2-3 and the fc changed; settings.json, `--resume` and the report keep the setting;
//!   `--head-only` with it and N = 5 are refused with one line and exit 2.

// Test code: a failed unwrap/expect is the test failing (clippy.toml exempts only #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::train::{
    classify_demo_clip, demo_data, events, interrupt_after_first_step_in, of_kind,
};
use common::{fixture, kineto, kineto_in, s};
use kineto::checkpoint::file::open_checkpoint;
use kineto::checkpoint::keys::Role;
use kineto::model::Form;

fn tmp(tag: &str) -> common::ScratchDir {
    common::ScratchDir::absent(&format!("full-{tag}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The `train` arguments every run here shares.
fn train_args<'a>(data: &'a Path, weights: &'a Path, run_dir: &'a Path) -> Vec<&'a str> {
    vec![
        "--device",
        "cpu",
        "train",
        s(data),
        "--weights",
        s(weights),
        "--frames",
        "8",
        "--size",
        "64",
        "--batch-size",
        "2",
        "--val-split",
        "0.25",
        "--run-dir",
        s(run_dir),
    ]
}

#[test]
fn full_fine_tuning_lowers_the_loss_and_exports_a_fused_model() {
    let root = tmp("learn");
    let data = root.join("data");
    demo_data(&data, 2, 4, 3);
    let weights = fixture("pptsmv2/w8.pdparams");
    let run_dir = root.join("run");
    let mut args = train_args(&data, &weights, &run_dir);
    // The recipe's lr for batch 2 (0.01·2/128); no Mixup, so the loss is the plain CE.
    args.extend(["--epochs", "4", "--no-mixup", "--seed", "1", "--json"]);
    let out = kineto(&args);
    let err = text(&out.stderr);
    assert!(out.status.success(), "train failed: {err}");
    assert!(err.contains("ball_wavy"), "the summary: {err}");
    assert!(err.contains("per-class accuracy"), "the report: {err}");
    let stdout: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line on stdout"))
        .collect();
    assert_eq!(stdout.last().expect("events")["event"], "done");

    let log = events(&run_dir);
    let steps = of_kind(&log, "step");
    let epochs = of_kind(&log, "epoch");
    assert_eq!(epochs.len(), 4, "{log:?}");
    // 6 training clips, batch 2: 3 steps per epoch, numbered through.
    assert_eq!(steps.len(), 12);
    for (i, step) in steps.iter().enumerate() {
        assert_eq!(step["step"], i + 1);
        assert_eq!(step["epoch"], i / 3 + 1);
        let lr = step["lr"].as_f64().expect("lr");
        assert!(lr > 0.0 && lr <= 0.01 * 2.0 / 128.0 + 1e-12, "lr {lr}");
        assert!(step["loss"].as_f64().expect("loss").is_finite());
    }
    let loss = |e: &serde_json::Value| e["train_loss"].as_f64().expect("train_loss");
    let (first, last) = (loss(epochs[0]), loss(epochs[3]));
    assert!(
        last < first,
        "the training loss did not fall: {:?}",
        epochs.iter().map(|e| loss(e)).collect::<Vec<_>>()
    );
    for e in &epochs {
        let top1 = e["val_top1"].as_f64().expect("val top-1");
        assert!((0.0..=1.0).contains(&top1));
    }
    for f in [
        "settings.json",
        "metrics.jsonl",
        "latest.safetensors",
        "latest.optim.bin",
        "latest.state.json",
        "best.safetensors",
        "model.safetensors",
        "confusion.csv",
        "report.txt",
    ] {
        assert!(run_dir.join(f).exists(), "{f} missing from the run folder");
    }

    // latest: the training form; model: the fused form; both name the new classes.
    let classes = vec!["ball_wavy".to_string(), "bars_scroll".to_string()];
    let latest =
        open_checkpoint(&run_dir.join("latest.safetensors"), Role::Student).expect("latest loads");
    assert_eq!(latest.arch.form, Form::Training);
    assert_eq!(latest.class_names.as_ref(), Some(&classes));
    let model_path = run_dir.join("model.safetensors");
    let model = open_checkpoint(&model_path, Role::Student).expect("model loads");
    assert_eq!(model.arch.form, Form::Fused);
    assert_eq!(model.arch.num_classes, 2);
    assert_eq!(model.class_names.as_ref(), Some(&classes));

    // classify runs the result (224, the test pipeline) and answers with a new class.
    let top1 = classify_demo_clip(&data, &model_path);
    assert!(classes.contains(&top1), "top-1 {top1} is not a new class");

    // A fused checkpoint cannot be fine-tuned: one line, exit 2, before any work.
    let refused_dir = root.join("refused");
    let mut args = train_args(&data, &model_path, &refused_dir);
    args.extend(["--epochs", "1"]);
    let out = kineto(&args);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(
        lines[0].contains("model.safetensors") && lines[0].contains("fused"),
        "{err}"
    );
    assert!(!refused_dir.join("settings.json").exists());
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn resume_after_ctrl_c_matches_an_uninterrupted_run() {
    let root = tmp("resume");
    let data = root.join("data");
    demo_data(&data, 2, 4, 4);
    let weights = fixture("pptsmv2/w8.pdparams");
    let seeded = |data: &Path, run_dir: &Path| {
        let mut args: Vec<String> = train_args(data, &weights, run_dir)
            .into_iter()
            .map(str::to_string)
            .collect();
        // Mixup on (the default): its draws must resume too.
        args.extend(["--epochs", "2", "--seed", "5", "--quiet"].map(str::to_string));
        args
    };

    let whole = root.join("whole");
    let out = kineto(
        &seeded(&data, &whole)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let reference = events(&whole);

    // The same run, started with paths relative to its folder, interrupted by SIGINT after its
    // first step, then resumed from another folder.
    let cut = root.join("cut");
    assert_eq!(
        interrupt_after_first_step_in(&root, &seeded(Path::new("data"), Path::new("cut"))),
        Some(130),
        "Ctrl-C exits 130"
    );
    assert!(cut.join("latest.state.json").exists(), "latest saved");
    let partial = events(&cut);
    assert!(
        of_kind(&partial, "done").is_empty() && of_kind(&partial, "epoch").len() < 2,
        "interrupted too late to test anything: {partial:?}"
    );

    // Options a resume takes from the run are refused, not ignored.
    let out = kineto(&["train", "--resume", s(&cut), "--epochs", "3", "--seed", "1"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("leave out --epochs, --seed"),
        "{}",
        text(&out.stderr)
    );
    // DATA names the run's data by what it points at (here through `..`).
    let elsewhere = root.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).expect("mkdir");
    let data_again = elsewhere.join("..").join("data");
    let out = kineto_in(
        &elsewhere,
        &[
            "--device",
            "cpu",
            "--quiet",
            "train",
            s(&data_again),
            "--resume",
            s(&cut),
        ],
    );
    assert!(out.status.success(), "resume: {}", text(&out.stderr));
    let resumed = events(&cut);
    assert_eq!(resumed.len(), reference.len(), "{resumed:?}");
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1e-12);
    for (r, e) in resumed.iter().zip(&reference) {
        assert_eq!(r["event"], e["event"]);
        let keys = e.as_object().expect("object");
        for (k, v) in keys {
            match (v.as_f64(), r[k].as_f64()) {
                (Some(a), Some(b)) => assert!(close(a, b), "{k}: {b} vs {a}\n{r}\n{e}"),
                _ if k == "terms" => {
                    let (a, b) = (v["ce"].as_f64(), r[k]["ce"].as_f64());
                    assert!(close(a.expect("ce"), b.expect("ce")), "ce: {r} vs {e}");
                }
                _ => assert_eq!(&r[k], v, "{k}"),
            }
        }
    }
    assert_eq!(of_kind(&resumed, "step").len(), 6);

    // A finished run is said to be complete, and its model is left alone.
    let model = std::fs::read(cut.join("model.safetensors")).expect("model");
    let out = kineto(&["--device", "cpu", "train", "--resume", s(&cut)]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("already complete"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read(cut.join("model.safetensors")).expect("model"),
        model
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn freeze_stages_keeps_the_prefix_bit_identical() {
    let root = tmp("freeze");
    let data = root.join("data");
    demo_data(&data, 2, 4, 6);
    let weights = fixture("pptsmv2/w8.pdparams");

    // Refusals first: one line, exit 2, nothing written.
    for extra in [
        &["--freeze-stages", "5"][..],
        &["--freeze-stages", "1", "--head-only"][..],
    ] {
        let refused = root.join("refused");
        let mut args = train_args(&data, &weights, &refused);
        if extra.contains(&"--head-only") {
            // --size is full fine-tuning only; keep the refusal about the freeze.
            args.retain(|a| *a != "--size" && *a != "64");
        }
        args.extend(extra);
        let out = kineto(&args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.contains("--freeze-stages"), "{err}");
        assert!(!refused.join("settings.json").exists());
    }

    let run_dir = root.join("run");
    let mut args = train_args(&data, &weights, &run_dir);
    args.extend([
        "--epochs",
        "1",
        "--no-mixup",
        "--freeze-stages",
        "2",
        "--lr",
        "0.05",
        "--quiet",
    ]);
    let out = kineto(&args);
    assert!(out.status.success(), "train failed: {}", text(&out.stderr));

    let settings: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run_dir.join("settings.json")).expect("settings.json"),
    )
    .expect("settings json");
    assert_eq!(settings["job"]["freeze_stages"], 2);
    let report = std::fs::read_to_string(run_dir.join("report.txt")).expect("report");
    assert!(
        report.starts_with("frozen (--freeze-stages 2): the stem and stages.0-1"),
        "{report}"
    );
    let resumed = kineto::train::checkpoints::resume_job(
        &run_dir,
        kineto::train::spec::TrainJob::new(&data, &weights).device,
    )
    .expect("resume_job");
    assert_eq!(resumed.freeze_stages, 2);

    let start = open_checkpoint(&weights, Role::Student).expect("start weights");
    let latest =
        open_checkpoint(&run_dir.join("latest.safetensors"), Role::Student).expect("latest");
    let (mut frozen, mut changed) = (0, Vec::new());
    for (key, tensor) in latest.store.iter() {
        let Some(original) = start.store.get(key) else {
            continue;
        };
        let prefix = key.starts_with("backbone.stem.")
            || key.starts_with("backbone.stages.0.")
            || key.starts_with("backbone.stages.1.");
        if prefix {
            assert_eq!(tensor.shape, original.shape, "{key}");
            let same = tensor
                .data
                .iter()
                .zip(&original.data)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{key} changed although frozen");
            frozen += 1;
        } else if tensor.data != original.data {
            changed.push(key.to_string());
        }
    }
    // Conv and BatchNorm weights, biases and running statistics of the stem and stages 0-1.
    assert!(frozen >= 40, "{frozen} frozen tensors compared");
    for key in [
        "backbone.stem.0.bn._mean",
        "backbone.stages.1.1.pw_conv.bn._variance",
    ] {
        assert!(latest.store.get(key).is_some(), "{key} missing");
    }
    for key in [
        "backbone.stages.2.0.pw_conv_1.conv.weight",
        "backbone.stages.2.0.pw_conv_1.bn._mean",
        "backbone.stages.3.1.pw_conv.conv.weight",
        "backbone.stages.3.1.pw_conv.bn._variance",
        "backbone.last_conv.weight",
    ] {
        assert!(changed.iter().any(|k| k == key), "{key} did not change");
    }
    // The fc was replaced for the 2 classes; it trained (its shape differs from the start).
    let fc = latest.store.get("backbone.fc.weight").expect("fc");
    assert_eq!(fc.shape, vec![1280, 2]);
    let _ = std::fs::remove_dir_all(&root);
}
