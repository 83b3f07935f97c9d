//! `kineto demo-data`: the folder layout, the JSON summary, clips that probe with the frame
//! counts asked for, the same files for the same seed, and the refusals (exit 2).

// Test code: a failed unwrap/expect is the test failing (clippy.toml exempts only #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{kineto, s, stderr};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use kineto::infer::batch::is_video_file;
use kineto::train::dataset::Dataset;
use kineto::train::demo::{MANIFEST, MAX_CLASSES, class_names};
use kineto::video::decode::FrameDecoder;
use kineto::video::probe::probe;

fn tmp(tag: &str) -> common::ScratchDir {
    common::ScratchDir::absent(&format!("demo-{tag}"))
}

/// Relative path -> bytes of every file under `dir`.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).expect("under root");
                out.insert(
                    rel.to_string_lossy().into_owned(),
                    std::fs::read(&path).expect("read file"),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

const ARGS: [&str; 8] = [
    "--classes",
    "3",
    "--clips-per-class",
    "2",
    "--seconds",
    "1",
    "--seed",
    "7",
];

fn demo(dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["demo-data", s(dir)];
    args.extend_from_slice(extra);
    kineto(&args)
}

#[test]
fn demo_data_layout_summary_probe_and_seed() {
    let a = tmp("a");
    let out = demo(&a, &ARGS);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let names = &class_names()[..3];
    assert_eq!(summary["dir"], s(&a));
    assert_eq!(summary["clips"], 6);
    assert!(
        summary["elapsed_s"].as_f64().is_some_and(|t| t > 0.0),
        "{summary}"
    );
    let classes = summary["classes"].as_array().expect("classes");
    assert_eq!(classes.len(), 3);
    for (c, name) in classes.iter().zip(names) {
        assert_eq!(c["name"], *name);
        assert_eq!(c["clips"], 2);
    }
    // Progress went to stderr: one line per class when stderr is not a terminal.
    let err = stderr(&out);
    for name in names {
        assert!(err.contains(name), "{err}");
    }

    // Layout: the manifest and one folder per class holding two clips.
    let mut entries: Vec<String> = std::fs::read_dir(&a)
        .expect("read dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    let mut want: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    want.push(MANIFEST.to_string());
    want.sort();
    assert_eq!(entries, want);
    let mut extensions = std::collections::BTreeSet::new();
    for name in names {
        let clips: Vec<PathBuf> = std::fs::read_dir(a.join(name))
            .expect("class dir")
            .flatten()
            .map(|e| e.path())
            .collect();
        assert_eq!(clips.len(), 2, "{name}: {clips:?}");
        for clip in clips {
            assert!(is_video_file(&clip), "{}", clip.display());
            let file = clip.file_name().map(|f| f.to_string_lossy().into_owned());
            assert!(
                file.is_some_and(|f| f.starts_with(name)),
                "{}",
                clip.display()
            );
            extensions.insert(clip.extension().map(|e| e.to_string_lossy().into_owned()));
            let info = probe(&clip).unwrap_or_else(|e| panic!("{e}"));
            let fps = info.fps();
            assert!(
                [24.0, 25.0, 30.0].contains(&fps),
                "{}: {fps}",
                clip.display()
            );
            let (lo, hi) = ((0.8 * fps).round() as u32, (1.2 * fps).round() as u32);
            assert!(
                (lo..=hi).contains(&info.frame_count),
                "{}: {} frames at {fps} fps",
                clip.display(),
                info.frame_count
            );
            assert!(info.width >= 160 && info.height >= 160, "{info:?}");
        }
    }
    assert!(extensions.len() >= 2, "{extensions:?}");

    // `kineto train` reads it as it is.
    let data = Dataset::open(&a, None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(data.classes, names);
    assert_eq!(data.counts(), [2, 2, 2]);
    assert!(data.notes.is_empty(), "{:?}", data.notes);

    // The same seed again: the same files.
    let b = tmp("b");
    let out = demo(&b, &ARGS);
    assert!(out.status.success(), "{}", stderr(&out));
    let (fa, fb) = (files(&a), files(&b));
    assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
    // The encoders are deterministic, the muxers are not quite: mp4mux/qtmux stamp the
    // creation time, matroskamux/webmmux the date and random segment/track UIDs (whose
    // length varies). So: files are byte-identical, or they differ in a few header bytes and
    // decode to exactly the same frames.
    for (name, bytes) in &fa {
        let other = &fb[name];
        if bytes == other {
            continue;
        }
        assert!(
            !name.ends_with(".avi") && !name.ends_with(".json"),
            "{name} differs between two runs with seed 7"
        );
        assert!(
            bytes.len().abs_diff(other.len()) <= 16,
            "{name}: {} vs {} bytes",
            bytes.len(),
            other.len()
        );
        let decode = |dir: &Path| {
            let path = dir.join(name);
            let n = probe(&path).unwrap_or_else(|e| panic!("{e}")).frame_count;
            let all: Vec<u32> = (0..n).collect();
            FrameDecoder::open(&path)
                .and_then(|mut d| d.frames_at(&all))
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let (x, y) = (decode(&a), decode(&b));
        assert_eq!(x.len(), y.len(), "{name}");
        for (f, g) in x.iter().zip(&y) {
            assert!(
                f.data == g.data,
                "{name}: frame {} differs between runs",
                f.index
            );
        }
    }

    // A previous demo-data output may be replaced: other settings, no leftovers.
    let out = demo(
        &a,
        &[
            "--classes",
            "2",
            "--clips-per-class",
            "1",
            "--seconds",
            "0.5",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let left = files(&a);
    assert_eq!(left.len(), 3, "{:?}", left.keys());
    assert!(!a.join(names[2]).exists());

    let _ = std::fs::remove_dir_all(&a);
    let _ = std::fs::remove_dir_all(&b);
}

#[test]
fn demo_data_refusals_exit_2() {
    let dir = tmp("refuse");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let stray = dir.join("holiday.txt");
    std::fs::write(&stray, "mine").expect("write");

    let out = demo(&dir, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("kineto: error: "), "{err}");
    assert!(
        err.contains(s(&dir)) && err.contains("not empty") && err.contains("--force"),
        "{err}"
    );
    assert!(out.stdout.is_empty());

    let too_many = (MAX_CLASSES + 1).to_string();
    for bad in [
        vec!["--classes", "1"],
        vec!["--classes", too_many.as_str()],
        vec!["--clips-per-class", "0"],
        vec!["--seconds", "0"],
        vec!["--classes", "x"],
    ] {
        let out = demo(&tmp("never"), &bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr(&out));
        assert!(!tmp("never").exists(), "{bad:?} created the folder");
    }
    let out = demo(&dir, &["--classes", "1", "--force"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--classes must be between 2 and"),
        "{}",
        stderr(&out)
    );

    // A file where the folder should be.
    let out = demo(&stray, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // --force writes next to what is there and leaves it alone.
    let out = demo(
        &dir,
        &[
            "--force",
            "--classes",
            "2",
            "--clips-per-class",
            "1",
            "--seconds",
            "0.4",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(&stray).ok().as_deref(),
        Some("mine")
    );
    let data = Dataset::open(&dir, None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(data.counts(), [1, 1]);
    let _ = std::fs::remove_dir_all(&dir);
}
