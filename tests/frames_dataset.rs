//! PaddleVideo's frame format ("rawframes", issue 26): a clip is a folder of `img_{:05}.jpg`
//! files numbered from 1 and a list file has `frame_dir num_frames label` lines.
//!
//! The reference is PaddleVideo's own code, run at test time by `tests/python/paddle_frames.py`
//! in the `KINETO_PADDLE_PYTHON` venv (decord reads example.avi, Pillow writes the JPEGs,
//! `FrameDecoder` + `Sampler` + `Scale` + `CenterCrop` + `Normalization` read them back). Without
//! that Python the tests fail.

// Test code: a failed unwrap/expect is the test failing (clippy.toml exempts only #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::{ScratchDir, fixture, kineto, s, stderr};
use kineto::infer::classify::{Sampling, prepare};
use kineto::npy::{read_npy_f32, read_npy_u8};
use kineto::train::dataset::Dataset;
use serde_json::Value;

/// Runs PaddleVideo's extraction and frame pipeline on example.avi into `out`; its JSON line.
fn paddle_frames(out: &Path) -> Value {
    let output = common::python_script(
        "paddle_frames.py",
        [fixture("video/example.avi").as_os_str(), out.as_os_str()],
    );
    assert!(
        output.status.success(),
        "paddle_frames.py failed (KINETO_PADDLE_PYTHON needs paddle, ppvideo, decord, Pillow):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().expect("a JSON line");
    serde_json::from_str(line).expect("JSON")
}

fn file_numbers(files: &Value) -> Vec<u32> {
    files
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let name = f.as_str().unwrap();
            name.trim_start_matches("img_")
                .trim_end_matches(".jpg")
                .parse()
                .unwrap()
        })
        .collect()
}

#[test]
fn frames_extracted_paddlevideos_way_read_as_paddlevideo_reads_them() {
    let dir = ScratchDir::new("frames-paddle");
    let reference = paddle_frames(&dir);
    let clip = dir.join("clip");
    assert_eq!(reference["frames_len"], 131);

    // Uniform: the files PaddleVideo's Sampler opens are Kineto's 0-based frames + 1, the same
    // frames Kineto samples from the video itself.
    let ours = prepare(
        &clip,
        Sampling {
            num_seg: 8,
            dense: false,
        },
        true,
    )
    .unwrap();
    assert_eq!(ours.info.frame_count, 131);
    let files: Vec<u32> = ours.view_indices[0].iter().map(|i| i + 1).collect();
    assert_eq!(files, file_numbers(&reference["uniform_files"]));
    let video = prepare(
        &fixture("video/example.avi"),
        Sampling {
            num_seg: 8,
            dense: false,
        },
        false,
    )
    .unwrap();
    assert_eq!(
        video.view_indices, ours.view_indices,
        "video and frames sample alike"
    );

    // Pixels: Pillow's decode of the same JPEGs, bit for bit (the same libjpeg-turbo, ISLOW,
    // fancy upsampling); the tensor: PaddleVideo's Scale/CenterCrop/Normalization.
    let pil = read_npy_u8(&dir.join("frames_u8.npy")).unwrap();
    let frames = ours.frames.as_ref().unwrap();
    let decoded: Vec<u8> = frames.iter().flat_map(|f| f.data.iter().copied()).collect();
    assert_eq!(pil.shape, [8, 240, 320, 3]);
    let max_px = pil
        .data
        .iter()
        .zip(&decoded)
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap();
    assert_eq!(decoded.len(), pil.data.len());
    assert_eq!(max_px, 0, "pixels differ from Pillow's by up to {max_px}");
    let input = read_npy_f32(&dir.join("input.npy")).unwrap();
    assert_eq!(input.shape, [8, 3, 224, 224]);
    let max = common::max_abs_diff(&ours.tensor, &input.data);
    eprintln!("frames: max |tensor - PaddleVideo's| = {max:e}");
    assert!(max <= 1e-6, "tensor differs by {max}");

    // `kineto extract-frames` writes the same files, byte for byte: decord's frames, JPEG at
    // quality 95 with libjpeg-turbo's defaults (what Pillow and cv2.imwrite write).
    let videos = dir.join("videos");
    video_dataset(&videos);
    let extracted = dir.join("extracted");
    let run = kineto(&["-q", "extract-frames", s(&videos), s(&extracted)]);
    assert!(run.status.success(), "{}", stderr(&run));
    for n in 1..=131 {
        let name = format!("img_{n:05}.jpg");
        let ours = std::fs::read(extracted.join("a/one").join(&name)).unwrap();
        let pil = std::fs::read(clip.join(&name)).unwrap();
        assert!(ours == pil, "{name} differs from Pillow's");
    }

    // Dense: PaddleVideo's `+1` names the 1-based file here (decord reads one frame later).
    let dense = prepare(
        &clip,
        Sampling {
            num_seg: 8,
            dense: true,
        },
        false,
    )
    .unwrap();
    let dense_files: Vec<u32> = dense.view_indices[..10]
        .iter()
        .flatten()
        .map(|i| i + 1)
        .collect();
    assert_eq!(dense_files, file_numbers(&reference["dense_files"]));
}

/// `root/<class>/<name>.avi`: example.avi under two classes.
fn video_dataset(root: &Path) -> Vec<PathBuf> {
    let mut videos = Vec::new();
    for (class, name) in [("a", "one"), ("b", "two")] {
        std::fs::create_dir_all(root.join(class)).unwrap();
        let path = root.join(class).join(format!("{name}.avi"));
        std::fs::copy(fixture("video/example.avi"), &path).unwrap();
        videos.push(path);
    }
    videos
}

#[test]
fn extract_frames_writes_paddlevideos_layout_resumably_and_the_clips_read_alike() {
    let root = ScratchDir::new("frames-extract");
    let data = root.join("videos");
    let videos = video_dataset(&data);
    let out = root.join("frames");
    // A stale partial folder from an interrupted run is redone.
    std::fs::create_dir_all(out.join("a/.one.partial")).unwrap();
    std::fs::write(out.join("a/.one.partial/img_00001.jpg"), b"torn").unwrap();
    let run = kineto(&["-q", "extract-frames", s(&data), s(&out), "--jobs", "2"]);
    assert!(run.status.success(), "{}", stderr(&run));
    let summary: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(summary["written"], 2);
    assert_eq!(summary["frames"], 262);
    assert!(summary["bytes"].as_u64().unwrap() > 0);
    let list = std::fs::read_to_string(out.join("list.txt")).unwrap();
    assert_eq!(list, "a/one 131 0\nb/two 131 1\n");
    assert_eq!(
        std::fs::read_to_string(out.join("labels.txt")).unwrap(),
        "0 a\n1 b\n"
    );
    assert!(!out.join("a/.one.partial").exists());
    assert!(out.join("a/one/img_00131.jpg").is_file());
    assert!(!out.join("a/one/img_00132.jpg").exists());

    // Again: nothing rewritten.
    let before = std::fs::metadata(out.join("a/one/img_00001.jpg"))
        .unwrap()
        .modified()
        .unwrap();
    let again = kineto(&["-q", "extract-frames", s(&data), s(&out)]);
    assert!(again.status.success(), "{}", stderr(&again));
    let summary: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(
        (summary["skipped"].as_u64(), summary["written"].as_u64()),
        (Some(2), Some(0))
    );
    let after = std::fs::metadata(out.join("a/one/img_00001.jpg"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(before, after);

    // The list file is a training set; its clips sample as the videos do.
    let set = Dataset::open(&out.join("list.txt"), Some(&out.join("labels.txt"))).unwrap();
    assert_eq!(set.classes, ["a", "b"]);
    assert_eq!(set.items[0].path, out.join("a/one"));
    let frames = prepare(
        &out.join("a/one"),
        Sampling {
            num_seg: 8,
            dense: false,
        },
        false,
    )
    .unwrap();
    let video = prepare(
        &videos[0],
        Sampling {
            num_seg: 8,
            dense: false,
        },
        false,
    )
    .unwrap();
    assert_eq!(frames.view_indices, video.view_indices);
    // JPEG at quality 95 is lossy: close to the video's tensor, not equal.
    let max = common::max_abs_diff(&frames.tensor, &video.tensor);
    eprintln!("extracted q95 vs video: max |tensor diff| = {max}");
    assert!(max < 0.5, "{max}");

    // Class folders of frame folders are a training set too.
    let folders = Dataset::open(&out, None).unwrap();
    let paths: Vec<&Path> = folders.items.iter().map(|i| i.path.as_path()).collect();
    assert_eq!(paths, [out.join("a/one"), out.join("b/two")]);

    // `kineto preprocess` takes a frame folder as a clip.
    let npy = root.join("x.npy");
    let pre = kineto(&["preprocess", s(&out.join("b/two")), "--output", s(&npy)]);
    assert!(pre.status.success(), "{}", stderr(&pre));
    let report: Value = serde_json::from_slice(&pre.stdout).unwrap();
    assert_eq!(report["frame_count"], 131);
    assert_eq!(report["indices"][0], 7);
}

#[test]
fn bad_frame_folders_are_one_error_row_each_and_the_rest_goes_on() {
    let root = ScratchDir::new("frames-bad");
    let data = root.join("videos");
    video_dataset(&data);
    let out = root.join("frames");
    let run = kineto(&["-q", "extract-frames", s(&data), s(&out)]);
    assert!(run.status.success(), "{}", stderr(&run));
    // b/two: a corrupt JPEG among the sampled ones (0-based 7 = img_00008.jpg).
    let corrupt = out.join("b/two/img_00008.jpg");
    let bytes = std::fs::read(&corrupt).unwrap();
    std::fs::write(&corrupt, &bytes[..bytes.len() / 3]).unwrap();
    let missing = out.join("c/absent");
    let classify = kineto(&[
        "-q",
        "--device",
        "cpu",
        "classify",
        "--format",
        "json",
        "--weights",
        s(&fixture("pptsmv2/w8.pdparams")),
        s(&out.join("a/one")),
        s(&out.join("b/two")),
        s(&missing),
    ]);
    assert_eq!(classify.status.code(), Some(1), "{}", stderr(&classify));
    let records: Value = serde_json::from_slice(&classify.stdout).unwrap();
    let records = records.as_array().unwrap();
    assert_eq!(records.len(), 3);
    let status: Vec<&str> = records
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        status.iter().filter(|s| **s == "ok").count(),
        1,
        "{records:?}"
    );
    let text = serde_json::to_string(records).unwrap();
    assert!(text.contains("img_00008.jpg"), "{text}");
    assert!(
        text.contains("no such frame folder") || text.contains("absent"),
        "{text}"
    );

    // A list line whose folder holds fewer JPEGs than it says names the line and the file.
    std::fs::remove_file(out.join("a/one/img_00131.jpg")).unwrap();
    let list = out.join("list.txt");
    let err = Dataset::open(&list, None).unwrap_err().to_string();
    assert!(
        err.contains("line 1") && err.contains("img_00131.jpg"),
        "{err}"
    );
    // A test set keeps it, known unreadable: `eval` reports it as one broken row naming the
    // line, and scores the rest.
    let test = Dataset::from_list_file_in(&list, None, None, true).unwrap();
    assert_eq!(test.items.len(), 2);
    assert!(
        test.unreadable
            .iter()
            .any(|(p, e)| p.ends_with("a/one") && e.contains("line 1") && e.contains("130")),
        "{:?}",
        test.unreadable
    );
    std::fs::write(&corrupt, &bytes).unwrap();
    let eval = kineto(&[
        "-q",
        "--device",
        "cpu",
        "eval",
        s(&list),
        "--weights",
        s(&fixture("pptsmv2/w8.pdparams")),
        "--format",
        "json",
    ]);
    assert_eq!(eval.status.code(), Some(1), "{}", stderr(&eval));
    let report: Value = serde_json::from_slice(&eval.stdout).unwrap();
    assert_eq!(
        (report["clips"].as_u64(), report["errors"].as_u64()),
        (Some(1), Some(1)),
        "{report}"
    );
    let broken = report["broken"][0].to_string();
    assert!(
        broken.contains("a/one") && broken.contains("line 1"),
        "{broken}"
    );
}

/// Issue 26's promise, where the pixels are equal: demo videos extracted as PNG (lossless) and
/// trained on (full fine-tuning, PP-TSMv2 8f at 64, 2 epochs) give the same run as the videos
/// themselves: every step's loss, learning rate and every epoch's metrics identical.
#[test]
fn training_from_png_frames_gives_the_videos_run() {
    let root = ScratchDir::absent("frames-train");
    let data = root.join("videos");
    common::train::demo_data(&data, 2, 4, 3);
    let frames = root.join("frames");
    let run = kineto(&[
        "-q",
        "extract-frames",
        s(&data),
        s(&frames),
        "--format",
        "png",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let summary: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(summary["suffix"], "img_{:05}.png", "{summary}");
    assert_eq!(summary["written"], 8, "{summary}");
    let weights = fixture("pptsmv2/w8.pdparams");
    let train = |data_args: &[&str], run_dir: &Path| {
        let mut args = vec!["--device", "cpu", "train"];
        args.extend_from_slice(data_args);
        args.extend(["--weights", s(&weights)]);
        args.extend(common::train::SMALL_RUN);
        args.extend([
            "--epochs",
            "2",
            "--seed",
            "4",
            "--quiet",
            "--run-dir",
            s(run_dir),
        ]);
        let out = kineto(&args);
        assert!(
            out.status.success(),
            "train {data_args:?}: {}",
            stderr(&out)
        );
        common::train::events(run_dir)
    };
    let from_videos = train(&[s(&data)], &root.join("run-videos"));
    let list = frames.join("list.txt");
    let labels = frames.join("labels.txt");
    let from_frames = train(
        &[s(&list), "--labels", s(&labels)],
        &root.join("run-frames"),
    );
    let steps = common::train::of_kind(&from_videos, "step");
    assert_eq!(steps.len(), 6, "{from_videos:?}");
    assert_eq!(common::train::of_kind(&from_videos, "epoch").len(), 2);
    assert_eq!(from_frames, from_videos);
}
