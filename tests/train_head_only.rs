//! `kineto train --head-only` end to end on demo data made by the library: val top-1 >= 95%
//! from the fixture PP-TSMv2 8f weights, the written safetensors names the new classes, and a
//! second run in the same run folder takes every feature from the cache (no decoding) and
//! gives identical metrics. Plus the refusals that come before any work (exit 2).

// Test code: a failed unwrap/expect is the test failing (clippy.toml exempts only #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::train::{classify_demo_clip, demo_data};
use common::{fixture, kineto, s};
use kineto::checkpoint::file::open_checkpoint;
use kineto::checkpoint::keys::Role;

fn tmp(tag: &str) -> common::ScratchDir {
    common::ScratchDir::absent(&format!("train-{tag}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `epoch` events of metrics.jsonl without their timings.
fn epoch_metrics(run_dir: &Path) -> Vec<serde_json::Value> {
    let log = std::fs::read_to_string(run_dir.join("metrics.jsonl")).expect("metrics.jsonl");
    log.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json line"))
        .filter(|v| v["event"] == "epoch")
        .map(|mut v| {
            v.as_object_mut().expect("object").remove("elapsed_s");
            v
        })
        .collect()
}

#[test]
fn head_only_learns_demo_classes_and_reuses_its_feature_cache() {
    let root = tmp("head");
    let data = root.join("data");
    demo_data(&data, 4, 8, 3);
    let weights = fixture("pptsmv2/w8.pdparams");
    let run_dir = root.join("run");
    let output = root.join("out.safetensors");
    let train = |json: bool, force: bool| {
        let mut args = vec![
            "--device",
            "cpu",
            "train",
            s(&data),
            "--head-only",
            "--weights",
            s(&weights),
            "--frames",
            "8",
            "--val-split",
            "0.25",
            "--epochs",
            "10",
            "--seed",
            "7",
            "--run-dir",
            s(&run_dir),
            "--output",
            s(&output),
        ];
        if json {
            args.push("--json");
        }
        if force {
            args.push("--force");
        }
        kineto(&args)
    };

    let cold = train(true, false);
    let err = text(&cold.stderr);
    assert!(cold.status.success(), "train failed: {err}");
    assert!(err.contains("32 clips decoded"), "{err}");
    // The summary comes first; the report at the end.
    assert!(err.contains("ball_wavy"), "{err}");
    assert!(err.contains("per-class accuracy"), "{err}");
    let lines: Vec<serde_json::Value> = text(&cold.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line on stdout"))
        .collect();
    let last_epoch = lines
        .iter()
        .rev()
        .find(|v| v["event"] == "epoch")
        .expect("epoch events");
    let val_top1 = last_epoch["val_top1"].as_f64().expect("val_top1");
    assert!(val_top1 >= 0.95, "val top-1 {val_top1}: {err}");
    let done = lines.last().expect("events");
    assert_eq!(done["event"], "done");
    assert_eq!(done["epochs"], 10);
    for f in [
        "settings.json",
        "metrics.jsonl",
        "model.safetensors",
        "confusion.csv",
        "features.bin",
        "features.json",
    ] {
        assert!(run_dir.join(f).exists(), "{f} missing from the run folder");
    }

    // The model loads, carries the new class names, and classifies a training clip as one.
    let ckpt = open_checkpoint(&output, Role::Student).expect("output loads");
    let names = ckpt.class_names.clone().expect("class names");
    assert_eq!(
        names,
        vec![
            "ball_wavy",
            "bars_scroll",
            "checkers_scroll",
            "zoneplate_rings"
        ]
    );
    assert_eq!(ckpt.arch.num_classes, 4);
    // The exported model carries its class names: no --labels needed.
    let top1 = classify_demo_clip(&data, &output);
    assert!(names.contains(&top1), "top-1 {top1} is not a new class");

    // The same run folder again: refused before any work unless --force.
    let first = epoch_metrics(&run_dir);
    let model_bytes = std::fs::read(run_dir.join("model.safetensors")).expect("model");
    let refused = train(false, false);
    let err = text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{err}");
    assert!(
        err.contains("holds an earlier run") && err.contains("--resume") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(
        std::fs::read(run_dir.join("model.safetensors")).expect("model"),
        model_bytes
    );

    // Warm, forced: the same run folder, the same seed -> no decoding, the same metrics.
    let warm = train(false, true);
    let err = text(&warm.stderr);
    assert!(warm.status.success(), "second run failed: {err}");
    assert!(err.contains("0 clips decoded, 32 from the cache"), "{err}");
    assert_eq!(
        epoch_metrics(&run_dir),
        first,
        "same seed, same cache, same metrics"
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn refusals_come_before_any_work() {
    let root = tmp("refuse");
    let weights = fixture("pptsmv2/w8.pdparams");
    let train = |data: &Path, extra: &[&str]| {
        let mut args = vec![
            "--device",
            "cpu",
            "train",
            s(data),
            "--weights",
            s(&weights),
        ];
        args.extend_from_slice(extra);
        kineto(&args)
    };
    // Full fine-tuning (no --head-only) on clips that are all broken: listed, then a class
    // without training clips is an error.
    std::fs::create_dir_all(root.join("two/a")).expect("mkdir");
    std::fs::create_dir_all(root.join("two/b")).expect("mkdir");
    std::fs::write(root.join("two/a/x.mp4"), b"x").expect("write");
    std::fs::write(root.join("two/b/y.mp4"), b"x").expect("write");
    let out = train(&root.join("two"), &["--run-dir", s(&root.join("full-run"))]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("has no videos"),
        "{}",
        text(&out.stderr)
    );
    // No videos.
    std::fs::create_dir_all(root.join("empty/a")).expect("mkdir");
    let out = train(&root.join("empty"), &["--head-only"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // An empty class.
    std::fs::create_dir_all(root.join("two/c")).expect("mkdir");
    let out = train(&root.join("two"), &["--head-only"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("'c'"), "{}", text(&out.stderr));
    std::fs::remove_dir(root.join("two/c")).expect("rmdir");
    // A single class.
    std::fs::create_dir_all(root.join("one/a")).expect("mkdir");
    std::fs::write(root.join("one/a/x.mp4"), b"x").expect("write");
    let out = train(&root.join("one"), &["--head-only"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // An unwritable run folder (a file where the folder should be).
    std::fs::write(root.join("blocker"), b"x").expect("write");
    let run_dir = root.join("blocker/run");
    let out = train(
        &root.join("two"),
        &["--head-only", "--run-dir", s(&run_dir)],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("run folder"),
        "{}",
        text(&out.stderr)
    );
    assert!(!text(&out.stderr).contains("clips decoded"));
    let _ = std::fs::remove_dir_all(&root);
}
