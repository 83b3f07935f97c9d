//! `kineto bench --case preprocess --json` reports what the decode + preprocess comparison
//! with the anchors' `prep_bench.py` reads (a smoke test, not a timing).

// Test code: a failed unwrap/expect is the test failing (clippy.toml exempts only #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{fixture, kineto, s};

fn bench(args: &[&str]) -> std::process::Output {
    kineto(&[&["bench"], args].concat())
}

#[test]
fn preprocess_bench_json_has_the_documented_fields() {
    let video = fixture("video/example.avi");
    for threads in ["1", "2"] {
        let out = bench(&[
            "--case",
            "preprocess",
            "--video",
            s(&video),
            "--frames",
            "8",
            "--runs",
            "2",
            "--warmup",
            "1",
            "--threads",
            threads,
            "--json",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
        for key in [
            "case",
            "video",
            "frames",
            "frame_count",
            "indices",
            "threads",
            "runs",
            "warmup",
            "decode_ms",
            "preprocess_ms",
            "total_ms",
            "min_total_ms",
            "kineto_version",
        ] {
            assert!(v.get(key).is_some(), "missing {key} in {v}");
        }
        assert_eq!(v["case"], "preprocess");
        assert_eq!(v["frames"], 8);
        assert_eq!(v["frame_count"], 131);
        assert_eq!(
            v["indices"],
            serde_json::json!([7, 23, 39, 55, 71, 87, 103, 119])
        );
        assert_eq!(v["threads"].to_string(), threads);
        assert!(v["total_ms"].as_f64().unwrap_or(-1.0) > 0.0);
    }
}

#[test]
fn preprocess_bench_needs_a_readable_video() {
    let out = bench(&["--case", "preprocess"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "missing --video is a usage error"
    );
    let out = bench(&[
        "--case",
        "preprocess",
        "--video",
        "/nonexistent/clip.mp4",
        "--runs",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("clip.mp4"), "{err}");
}
