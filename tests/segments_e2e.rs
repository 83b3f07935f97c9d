//! `kineto segments` end to end (issue 19): demo data from `kineto demo-data`, a head-only
//! model trained on it, a long clip made of demo clips of different classes joined with
//! GStreamer's `concat` (known cut times), then `kineto segments` with that model: every true
//! boundary found within one stride, every segment labelled right, the segments sorted and
//! covering the clip, and `--cut` giving class folders that `kineto train`'s dataset reader
//! reads with the right counts. Plus the refusals that come before any work (exit 2).

// Test code: a failed unwrap/expect is the test failing (clippy.toml exempts only #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use common::train::train_head_only;
use common::{kineto, s, stderr};
use kineto::report::Segment;
use kineto::train::dataset::Dataset;
use kineto::video::probe::probe;
use kineto::video::synth::{JoinFormat, join_clips_uniform};

/// The clips of one class folder of demo data, sorted.
fn clips_of(data: &Path, class: &str) -> Vec<PathBuf> {
    let mut clips: Vec<PathBuf> = std::fs::read_dir(data.join(class))
        .expect("class folder")
        .flatten()
        .map(|e| e.path())
        .collect();
    clips.sort();
    clips
}

#[test]
fn segments_of_joined_demo_clips_are_found_labelled_and_cut_into_class_folders() {
    let t0 = Instant::now();
    let root = common::ScratchDir::new("segments-e2e");
    let classes = ["ball_wavy", "bars_scroll", "zoneplate_rings"];

    // Training data: 3 classes x 10 two-second clips (with 6 one-second clips the model took
    // a green ball on purple for scrolling bars).
    let data = root.join("data");
    let made = kineto(&[
        "demo-data",
        s(&data),
        "--classes",
        "3",
        "--clips-per-class",
        "10",
        "--seconds",
        "2",
        "--seed",
        "11",
    ]);
    assert!(made.status.success(), "demo-data: {}", stderr(&made));
    let model = root.join("model.safetensors");
    train_head_only(&data, &root, &model, 10, &[]);
    let t_train = t0.elapsed();

    // The long clip: other demo clips (another seed, 4 s each) of classes 0, 1, 2, 0.
    let long_parts = root.join("parts");
    let made = kineto(&[
        "demo-data",
        s(&long_parts),
        "--classes",
        "3",
        "--clips-per-class",
        "2",
        "--seconds",
        "4",
        "--seed",
        "23",
    ]);
    assert!(made.status.success(), "demo-data: {}", stderr(&made));
    let order = [0usize, 1, 2, 0];
    let parts: Vec<PathBuf> = order
        .iter()
        .enumerate()
        .map(|(k, &c)| clips_of(&long_parts, classes[c])[usize::from(k >= 3)].clone())
        .collect();
    let long = root.join("long.mp4");
    let format = JoinFormat {
        width: 320,
        height: 240,
        fps: 25,
        keyframe_interval: Some(25),
    };
    join_clips_uniform(&parts, &long, format).unwrap_or_else(|e| panic!("{e}"));
    let mut cuts = Vec::new();
    let mut at = 0.0;
    for part in &parts {
        at += probe(part).unwrap_or_else(|e| panic!("{e}")).duration_s;
        cuts.push(at);
    }
    let info = probe(&long).unwrap_or_else(|e| panic!("{e}"));
    let duration = f64::from(info.frame_count) / info.fps();
    assert!(
        (duration - at).abs() < 0.2,
        "the joined clip lasts {duration} s, its parts {at} s"
    );
    cuts.pop();
    let t_join = t0.elapsed();

    // Segments, and each as a clip in class folders.
    let cut_dir = root.join("cut");
    let run = kineto(&[
        "--device",
        "cpu",
        "segments",
        s(&long),
        "--weights",
        s(&model),
        "--frames",
        "8",
        "--format",
        "json",
        "--cut",
        s(&cut_dir),
    ]);
    let err = stderr(&run);
    let segments: Vec<Segment> = serde_json::from_slice(&run.stdout).expect("segments JSON");
    let labels: Vec<&str> = segments.iter().map(|s| s.label.as_str()).collect();
    let want: Vec<&str> = order.iter().map(|&c| classes[c]).collect();
    assert_eq!(labels, want, "{segments:#?}\ncuts {cuts:?}\nstderr: {err}");
    assert!(run.status.success(), "segments: {err}");
    let stride = 1.0;
    for (seg, cut) in segments[1..].iter().zip(&cuts) {
        assert!(
            (seg.start_s - cut).abs() <= stride + 0.04,
            "boundary at {} s, the clips join at {cut} s",
            seg.start_s
        );
    }
    assert_eq!(segments[0].start_s, 0.0);
    assert!((segments[3].end_s - duration).abs() < 1e-6);
    for pair in segments.windows(2) {
        assert_eq!(pair[0].end_s, pair[1].start_s, "sorted and covering");
    }
    for seg in &segments {
        assert_eq!(seg.top_k[0].label, seg.label);
        assert!(seg.score > 0.0 && seg.score <= 1.0);
    }
    assert!(
        err.contains("4 of 4 clips written") && err.contains("moved at most"),
        "{err}"
    );

    // The class folders read as a training set: 2, 1, 1 clips.
    let set = Dataset::open(&cut_dir, None).unwrap_or_else(|e| panic!("{e}"));
    let mut classes_sorted = classes.to_vec();
    classes_sorted.sort_unstable();
    assert_eq!(set.classes, classes_sorted);
    let counts: Vec<(String, usize)> = set.classes.iter().cloned().zip(set.counts()).collect();
    assert_eq!(
        counts,
        [
            ("ball_wavy".to_string(), 2),
            ("bars_scroll".to_string(), 1),
            ("zoneplate_rings".to_string(), 1)
        ]
    );

    // CSV to a file; bad numbers and a --cut that is a file: exit 2, one line, no work.
    let csv = root.join("segments.csv");
    let run = kineto(&[
        "--device",
        "cpu",
        "segments",
        s(&long),
        "--weights",
        s(&model),
        "--frames",
        "8",
        "--min-score",
        "0.5",
        "--output",
        s(&csv),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(
        text.starts_with("path,start_s,end_s,label_id,label,score\n"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 5, "{text}");
    for bad in [
        ["--min-score", "1.5"],
        ["--min-s", "1e9"],
        ["--stride-s", "0"],
        ["--cut", s(&csv)],
    ] {
        let run = kineto(&["segments", s(&long), "--weights", s(&model), bad[0], bad[1]]);
        let err = stderr(&run);
        assert_eq!(run.status.code(), Some(2), "{bad:?}: {err}");
        assert!(
            err.contains(bad[0]) || err.contains("--cut needs a folder"),
            "{err}"
        );
    }
    eprintln!(
        "segments e2e: train {:.1} s, join {:.1} s, total {:.1} s",
        t_train.as_secs_f64(),
        (t_join - t_train).as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
}
