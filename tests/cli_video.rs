//! `kineto preprocess`, `classify` and `timeline` on PaddleVideo's example clip (against the
//! fixtures made with PaddleVideo + decord) and on clips generated with GStreamer.

// Test code: a failed unwrap/expect is the test failing (clippy.toml exempts only #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use kineto::infer::topk::top_k_indices;
use kineto::npy::read_npy_f32;
use kineto::video::synth::{ClipSpec, Codec, Container, broken_variants, synth_clip};

fn tmp(tag: &str) -> common::ScratchDir {
    common::ScratchDir::new(&format!("video-{tag}"))
}

/// ImageNet std per channel: a difference in normalised units times std*255 is grey levels.
const STD: [f32; 3] = [0.229, 0.224, 0.225];

fn grey_level_diff(ours: &[f32], reference: &[f32], frames: usize) -> (f64, f32) {
    let plane = 224 * 224;
    let mut sum = 0.0f64;
    let mut max = 0.0f32;
    for (i, (a, b)) in ours.iter().zip(reference).enumerate() {
        let channel = (i / plane) % 3;
        let d = (a - b).abs() * STD[channel] * 255.0;
        sum += f64::from(d);
        max = max.max(d);
    }
    (sum / (frames * 3 * plane) as f64, max)
}

#[test]
fn preprocess_matches_paddlevideo_on_the_example_clip() {
    let dir = tmp("prep");
    for frames in [8usize, 16] {
        let out_path = dir.join(format!("x{frames}.npy"));
        let raw_path = dir.join(format!("f{frames}.npy"));
        let out = kineto(&[
            "preprocess",
            s(&fixture("video/example.avi")),
            "--frames",
            &frames.to_string(),
            "--output",
            s(&out_path),
            "--frames-output",
            s(&raw_path),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(report["frame_count"], 131);
        let want: Vec<u32> = (0..frames as u32)
            .map(|i| if frames == 8 { 7 + 16 * i } else { 3 + 8 * i })
            .collect();
        assert_eq!(report["indices"], serde_json::json!(want));
        let ours = read_npy_f32(&out_path).expect("tensor");
        assert_eq!(ours.shape, vec![frames, 3, 224, 224]);
        let reference = npy(&format!("video/example_{frames}f_input.npy"));
        let (mean, max) = grey_level_diff(&ours.data, &reference.data, frames);
        eprintln!("{frames}f: mean {mean:.4} max {max:.3} grey levels vs PaddleVideo");
        assert!(mean < 0.5, "{frames}f mean diff {mean} grey levels");
        assert!(max <= 8.0, "{frames}f max diff {max} grey levels");
    }
}

#[test]
fn classify_the_example_clip_gives_paddlevideos_top5() {
    let out = kineto(&[
        "classify",
        "--device",
        "cpu",
        "--format",
        "json",
        "--weights",
        s(&fixture("pptsmv2/w8.pdparams")),
        s(&fixture("video/example.avi")),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let records: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let r = &records[0];
    assert_eq!(r["status"], "ok");
    assert_eq!(r["frames"], 8);
    let ours: Vec<u64> = r["top_k"]
        .as_array()
        .expect("top_k")
        .iter()
        .map(|t| t["label_id"].as_u64().unwrap_or(999))
        .collect();
    let reference = npy("pptsmv2/logits224_8f.npy");
    let want: Vec<u64> = top_k_indices(&reference.data, 5)
        .into_iter()
        .map(|i| i as u64)
        .collect();
    assert_eq!(ours[0], want[0], "same top-1");
    let mut a = ours.clone();
    let mut b = want.clone();
    a.sort_unstable();
    b.sort_unstable();
    assert_eq!(a, b, "same top-5 set");
    assert_eq!(r["top_k"][0]["label"], "building_shed");
}

/// Dense mode (10 clips x 3 crops) against PaddleVideo's test step, in parts that cover what one
/// R50 run over all 30 views did (that run alone cost 90 s of CI's CPU):
/// - `preprocess --dense` gives the fixture's 30 views (shape, and each view's mean);
/// - R50 on the first and the last view (left crop of clip 0, centre crop of clip 9) gives
///   PaddleVideo's logits for them (the views' means above pin the order of the other 28);
/// - the mean of PaddleVideo's 30 per-view logits (what `classify --dense` ranks) is its test
///   step's scores, and has its top-5;
/// - `classify --dense` end to end (with PP-TSMv2, whose 30 views are cheap) ranks the mean of
///   the same model's logits over the 30 views of that tensor.
#[test]
fn dense_mode_matches_paddlevideos_dense_scores() {
    use kineto::infer::classify::mean_logits;
    use kineto::infer::device::{ComputeDevice, DeviceChoice};
    use kineto::infer::engine::Engine;

    let dir = tmp("dense");
    let out_path = dir.join("dense.npy");
    let out = kineto(&[
        "preprocess",
        s(&fixture("video/example.avi")),
        "--frames",
        "8",
        "--dense",
        "--output",
        s(&out_path),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let t = read_npy_f32(&out_path).expect("tensor");
    assert_eq!(t.shape, vec![30, 8, 3, 224, 224]);
    let view_len = 8 * 3 * 224 * 224;
    let dense: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("video/example_dense.json")).expect("dense json"),
    )
    .expect("json");
    let means = dense["per_view_mean"].as_array().expect("per_view_mean");
    for (v, want) in means.iter().enumerate() {
        let view = &t.data[v * view_len..(v + 1) * view_len];
        let mean = view.iter().map(|&x| f64::from(x)).sum::<f64>() / view_len as f64;
        let want = want.as_f64().expect("mean");
        assert!(
            (mean - want).abs() <= 1e-6,
            "view {v} mean {mean} vs {want}"
        );
    }

    // R50 on two views, in process (burn's CPU backend: ~4 s a view).
    let reference = npy("video/example_dense_logits.npy");
    let classes = 400;
    let cpu = burn::tensor::Device::flex();
    let r50 = build(&r50_store(), kineto::model::Form::Fused, &cpu);
    for v in [0, 29] {
        let view = kineto::npy::NpyArray {
            shape: vec![8, 3, 224, 224],
            data: t.data[v * view_len..(v + 1) * view_len].to_vec(),
        };
        let ours = data_f32(&r50.forward(clip_tensor(&view, &cpu)).into_data());
        let want = &reference.data[v * classes..(v + 1) * classes];
        let d = max_abs_diff(&ours, want);
        assert!(d <= 1e-4, "R50 logits of view {v} vs PaddleVideo's: {d:e}");
    }
    let mean = mean_logits(&reference.data, 30, classes);
    let scores = npy("video/example_dense_scores.npy");
    let d = max_abs_diff(&mean, &scores.data);
    assert!(
        d <= 1e-5,
        "mean of the views' logits vs the test step's scores: {d:e}"
    );
    assert_eq!(top_k_indices(&mean, 5), [364, 124, 374, 355, 390]);

    // `classify --dense` end to end ranks the mean of the per-view logits.
    let weights = fixture("pptsmv2/w8.pdparams");
    let engine = Engine::load(
        &weights,
        kineto::checkpoint::keys::Role::Student,
        kineto::model::Form::Fused,
        ComputeDevice::resolve(DeviceChoice::Cpu, 0).expect("cpu"),
    )
    .expect("engine");
    let logits = engine
        .logits(t.data.clone(), [30, 8, 3, 224, 224])
        .expect("logits");
    let want = top_k_indices(&mean_logits(&logits, 30, classes), 5);
    let out = kineto(&[
        "classify",
        "--device",
        "cpu",
        "--dense",
        "--frames",
        "8",
        "--format",
        "json",
        "--weights",
        s(&weights),
        s(&fixture("video/example.avi")),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let records: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let ids: Vec<usize> = records[0]["top_k"]
        .as_array()
        .expect("top_k")
        .iter()
        .map(|t| t["label_id"].as_u64().unwrap_or(999) as usize)
        .collect();
    assert_eq!(ids, want, "classify --dense's top-5");
    // One view alone ranks differently: the CLI's answer is the mean's, not any one view's.
    assert!(
        (0..30).any(|v| top_k_indices(&logits[v * classes..(v + 1) * classes], 5) != want),
        "every view has the mean's top-5: the check above could not tell"
    );
}

#[test]
fn timeline_windows_over_the_example_clip() {
    let dir = tmp("timeline");
    let csv = dir.join("t.csv");
    let out = kineto(&[
        "timeline",
        "--device",
        "cpu",
        "--weights",
        s(&fixture("pptsmv2/w8.pdparams")),
        s(&fixture("video/example.avi")),
        "--output",
        s(&csv),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&csv).expect("csv");
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("start_s,end_s,label,label_id,score,top_k")
    );
    // 131 frames at 25 fps = 5.24 s: windows at 0,1,2,3 s plus one ending at 5.24 s.
    assert_eq!(lines.count(), 5);

    let out = kineto(&[
        "timeline",
        "--device",
        "cpu",
        "--weights",
        s(&fixture("pptsmv2/w8.pdparams")),
        s(&fixture("video/example.avi")),
        "--window-s",
        "1.5",
        "--stride-s",
        "0.5",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["frame_count"], 131);
    let windows = v["windows"].as_array().expect("windows");
    assert!(windows.len() >= 8);
    assert_eq!(windows[0]["indices"].as_array().map(|a| a.len()), Some(8));
}

/// A folder of generated clips in every container and codec, plus broken files: every good
/// clip gets a label, every broken one an error row, exit code 1, and the CSV reads back.
#[test]
fn classify_a_folder_of_generated_and_broken_clips() {
    let dir = tmp("folder");
    let clips = dir.join("clips");
    std::fs::create_dir_all(clips.join("sub")).expect("dir");
    let specs = [
        ("a.mp4", Container::Mp4, Codec::H264),
        ("b.mp4", Container::Mp4, Codec::Mpeg4),
        ("c.avi", Container::Avi, Codec::Mjpeg),
        ("sub/d.webm", Container::Webm, Codec::Vp8),
        ("e.mkv", Container::Mkv, Codec::H264),
        ("f.MOV", Container::Mov, Codec::H264),
    ];
    for (name, container, codec) in specs {
        let mut spec = ClipSpec::new(container, codec, 20);
        spec.width = 96;
        spec.height = 72;
        synth_clip(&clips.join(name), &spec).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let broken = broken_variants(&clips.join("sub"));
    assert!(!broken.is_empty());
    std::fs::write(clips.join("notes.txt"), "not a video, skipped by extension").expect("write");

    let csv_path = dir.join("out.csv");
    let out = kineto(&[
        "classify",
        "--device",
        "cpu",
        "--weights",
        s(&fixture("pptsmv2/w8.pdparams")),
        s(&clips),
        "--output",
        s(&csv_path),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "some files are broken: {}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    let text = std::fs::read_to_string(&csv_path).expect("csv");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(kineto::report::CLASSIFY_CSV_HEADER));
    let rows: Vec<&str> = lines.collect();
    let ok = rows.iter().filter(|r| r.contains(",ok,")).count();
    let errors = rows.iter().filter(|r| r.contains(",error,")).count();
    assert_eq!(ok, specs.len(), "{text}");
    let broken_videos = broken
        .iter()
        .filter(|(_, p)| kineto::infer::batch::is_video_file(p))
        .count();
    assert!(errors >= 1 && ok + errors == rows.len(), "{text}");
    assert!(errors <= broken_videos, "{text}");
    assert!(!text.contains("notes.txt"));

    // Batches of decoded clips and several decoders give the same records in the same order
    // (timings aside, and the words of an error row: a broken file can meet a 4 s discovery
    // timeout under load), and the run says where its time went.
    let records = |extra: &[&str]| {
        let weights = fixture("pptsmv2/w8.pdparams");
        let mut args = vec![
            "classify",
            "--device",
            "cpu",
            "--format",
            "json",
            "--weights",
        ];
        args.extend([s(&weights), s(&clips)]);
        args.extend(extra);
        let out = kineto(&args);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let mut json: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("classify json");
        for record in json.as_array_mut().expect("an array").iter_mut() {
            let record = record.as_object_mut().expect("a record");
            record.remove("timings_ms");
            if let Some(error) = record.get_mut("error").filter(|e| !e.is_null()) {
                *error = serde_json::json!("(an error)");
            }
        }
        (json, stderr(&out))
    };
    let (one_by_one, _) = records(&[]);
    let (batched, said) = records(&["--batch", "4", "--decoders", "3"]);
    assert_eq!(batched, one_by_one);
    assert!(
        said.contains("clips/s") && said.contains("3 decoders"),
        "{said}"
    );
}

#[test]
fn classify_a_folder_with_links_to_itself_and_a_fifo_answers_once_per_clip() {
    // `a -> .` and `b -> .` made every clip appear ~40 times and hung the walk; a FIFO named
    // `*.mp4` blocked the decoder's open forever.
    let dir = tmp("loops");
    let clips = dir.join("clips");
    std::fs::create_dir_all(clips.join("sub")).expect("dir");
    for name in ["one.mp4", "sub/two.mp4"] {
        let mut spec = ClipSpec::new(Container::Mp4, Codec::H264, 12);
        spec.width = 64;
        spec.height = 48;
        synth_clip(&clips.join(name), &spec).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    std::os::unix::fs::symlink(".", clips.join("a")).expect("link");
    std::os::unix::fs::symlink(".", clips.join("b")).expect("link");
    let fifo = clips.join("pipe.mp4");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.expect("mkfifo").success());

    let csv_path = dir.join("out.csv");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kineto"))
        .args(["classify", "--device", "cpu", "--weights"])
        .arg(fixture("pptsmv2/w8.pdparams"))
        .arg(&clips)
        .arg("--output")
        .arg(&csv_path)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run kineto");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("kineto classify did not answer within 90 s (a hang in the walk or open)");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(1), "the FIFO is an error row");
    let text = std::fs::read_to_string(&csv_path).expect("csv");
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(
        rows.len(),
        3,
        "one row per real clip and one for the FIFO:\n{text}"
    );
    assert_eq!(
        rows.iter().filter(|r| r.contains(",ok,")).count(),
        2,
        "{text}"
    );
    let fifo_row = rows
        .iter()
        .find(|r| r.contains("pipe.mp4"))
        .expect("FIFO row");
    assert!(
        fifo_row.contains(",error,") && fifo_row.contains("FIFO"),
        "{fifo_row}"
    );
}

#[test]
fn export_segments_writes_every_format_and_clips_that_train_reads() {
    let dir = tmp("export-segments");
    let video = dir.join("long.mp4");
    let mut spec = ClipSpec::new(Container::Mp4, Codec::H264, 100);
    spec.width = 96;
    spec.height = 64;
    synth_clip(&video, &spec).expect("clip");
    // A project as the window writes it: two labelled segments, one predicted.
    let labels = r#"{"name": "three", "labels": ["archery", "bowling", "cooking egg"]}"#;
    let text = format!(
        r#"{{"format": "kineto-project", "version": 2, "label_set": {labels},
          "clips": [{{"path": "long.mp4", "status": "unlabelled", "duration_s": 4.0, "fps": 25.0,
            "segments": [
              {{"start_s": 0.0, "end_s": 1.2, "status": "accepted", "label_id": 0,
                "label": "archery",
                "prediction": {{"top_k": [{{"rank": 1, "label_id": 0, "label": "archery",
                                            "score": 0.75}}]}}}},
              {{"start_s": 1.2, "end_s": 2.6, "status": "predicted", "label_id": 2,
                "label": "cooking egg",
                "prediction": {{"top_k": [{{"rank": 1, "label_id": 2, "label": "cooking egg",
                                            "score": 0.5}}]}}}},
              {{"start_s": 2.6, "end_s": 4.0, "status": "corrected", "label_id": 1,
                "label": "bowling"}}
            ]}}]}}"#
    );
    std::fs::write(dir.join("kineto-project.json"), text).unwrap();

    let csv = dir.join("segments.csv");
    let out = kineto(&[
        "export-segments",
        s(&dir),
        "--format",
        "csv",
        "--output",
        s(&csv),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let csv_text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = csv_text.lines().collect();
    assert_eq!(lines[0], "path,start_s,end_s,label_id,label,score");
    assert_eq!(
        lines.len(),
        3,
        "the predicted segment is left out: {csv_text}"
    );
    assert!(
        lines[1].ends_with(",0,1.2,0,archery,0.750000"),
        "{}",
        lines[1]
    );
    assert!(lines[2].contains(",2.6,4,1,bowling,"), "{}", lines[2]);

    let anet = dir.join("anet.json");
    let out = kineto(&[
        "export-segments",
        s(&dir),
        "--format",
        "activitynet",
        "--include-predicted",
        "--output",
        s(&anet),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&anet).unwrap()).unwrap();
    let entry = &v["database"]["long"];
    assert_eq!(entry["duration"], 4.0);
    let ann = entry["annotations"].as_array().unwrap();
    assert_eq!(ann.len(), 3);
    assert_eq!(ann[1]["label"], "cooking egg");
    assert_eq!(ann[1]["segment"], serde_json::json!([1.2, 2.6]));

    let kin = dir.join("kinetics.csv");
    let out = kineto(&[
        "export-segments",
        s(&dir),
        "--format",
        "kinetics",
        "--split",
        "val",
        "--output",
        s(&kin),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let kin_text = std::fs::read_to_string(&kin).unwrap();
    assert!(kin_text.starts_with("label,youtube_id,time_start,time_end,split\n"));
    assert!(kin_text.contains("archery,long,0,1.2,val"), "{kin_text}");

    // Trimmed clips, frame-accurate: class folders that training reads.
    let clips = dir.join("clips");
    let out = kineto(&[
        "export-segments",
        s(&dir),
        "--format",
        "clips",
        "--reencode",
        "--output",
        s(&clips),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let data = kineto::train::dataset::Dataset::open(&clips, None).expect("class folders");
    assert_eq!(data.classes, ["archery", "bowling"]);
    assert_eq!(data.counts(), [1, 1]);
    for item in &data.items {
        let info = kineto::video::probe::probe(&item.path).expect("a readable clip");
        let want = if item.label == 0 { 30 } else { 35 };
        assert_eq!(info.frame_count, want, "{}", item.path.display());
    }
    // Again: nothing is overwritten.
    let out = kineto(&[
        "export-segments",
        s(&dir),
        "--format",
        "clips",
        "--reencode",
        "--output",
        s(&clips),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("already there"), "{}", stderr(&out));

    // Bad input: one line, the right exit code.
    let out = kineto(&[
        "export-segments",
        s(&dir.join("nowhere")),
        "--format",
        "csv",
        "--output",
        s(&csv),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no kineto-project.json"),
        "{}",
        stderr(&out)
    );
    let out = kineto(&[
        "export-segments",
        s(&dir),
        "--format",
        "csv",
        "--reencode",
        "--output",
        s(&csv),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}
