//! `kineto bench --json` reports what the speed comparisons read (a smoke test, not a timing).

// Test code: a failed unwrap/expect is the test failing (clippy.toml exempts only #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn bench_json_has_the_documented_fields() {
    let out = Command::new(env!("CARGO_BIN_EXE_kineto"))
        .args([
            "bench",
            "--device",
            "cpu",
            "--threads",
            "1",
            "--frames",
            "2",
            "--size",
            "64",
            "--runs",
            "2",
            "--warmup",
            "1",
            "--json",
        ])
        .output()
        .expect("run kineto");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    for key in [
        "case",
        "model",
        "frames",
        "batch",
        "size",
        "device",
        "backend",
        "threads",
        "runs",
        "warmup",
        "median_ms",
        "mean_ms",
        "min_ms",
        "max_ms",
        "kineto_version",
    ] {
        assert!(v.get(key).is_some(), "missing {key} in {v}");
    }
    assert_eq!(v["frames"], 2);
    assert_eq!(v["threads"], 1);
    assert_eq!(v["device"], "cpu");
    assert!(v["median_ms"].as_f64().unwrap_or(-1.0) > 0.0);
}

fn bench_json(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_kineto"))
        .args(["bench", "--device", "cpu", "--threads", "1", "--json"])
        .args(args)
        .output()
        .expect("run kineto");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON value")
}

#[test]
fn bench_live_reports_the_window_update_beside_the_full_forward() {
    let v = bench_json(&[
        "--case", "live", "--frames", "4", "--size", "64", "--runs", "3", "--warmup", "1",
    ]);
    assert_eq!(v["case"], "live");
    assert_eq!(v["path"], "nhwc");
    assert_eq!(v["frame_shares_cached"], true);
    let update = v["median_ms"].as_f64().unwrap_or(-1.0);
    let full = v["full_forward_median_ms"].as_f64().unwrap_or(-1.0);
    assert!(update > 0.0 && full > 0.0, "{v}");
}

#[test]
fn bench_train_times_a_full_fine_tuning_step() {
    let v = bench_json(&[
        "--case", "train", "--frames", "2", "--size", "32", "--runs", "1", "--warmup", "0",
    ]);
    assert_eq!(v["case"], "train");
    assert_eq!(v["precision"], "f32");
    assert_eq!(v["path"], "nhwc");
    assert_eq!(v["freeze_stages"], 0);
    assert_eq!(v["size"], 32);
    assert!(v["median_ms"].as_f64().unwrap_or(-1.0) > 0.0, "{v}");
    let frozen = bench_json(&[
        "--case",
        "train",
        "--frames",
        "2",
        "--size",
        "32",
        "--runs",
        "1",
        "--warmup",
        "0",
        "--freeze-stages",
        "4",
    ]);
    assert_eq!(frozen["freeze_stages"], 4);
    assert!(
        frozen["median_ms"].as_f64().unwrap_or(-1.0) > 0.0,
        "{frozen}"
    );
}
