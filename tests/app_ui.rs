//! The window, driven headless with egui_kittest over the real app state: the real player
//! (GStreamer), the real inference service (fixture weights on the CPU), the real project saver.

// Test code: a failed unwrap/expect is the test failing (clippy.toml exempts only #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::app::{request_close, run_until, viewport_commands};
use common::fixture;
use eframe::egui;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use kineto::app::settings::{DeviceSetting, Settings};
use kineto::app::{AppOptions, DialogBackend, KinetoApp, Tab};
use kineto::labels::project::ClipStatus;
use kineto::video::synth::{ClipSpec, Codec, Container, synth_clip};

fn tmp(tag: &str) -> common::ScratchDir {
    common::ScratchDir::new(&format!("app-{tag}"))
}

fn test_settings(weights: &Path) -> Settings {
    Settings {
        model: weights.display().to_string(),
        frames: 8,
        device: DeviceSetting::Cpu,
        threads: 1,
        top_k: 5,
        offline: true,
        ..Settings::default()
    }
}

fn harness(options: AppOptions) -> Harness<'static, KinetoApp> {
    Harness::builder()
        .with_size([1100.0, 700.0])
        .build_eframe(move |cc| KinetoApp::new(cc, options))
}

fn options(settings: Settings, dialogs: DialogBackend) -> AppOptions {
    AppOptions {
        video: None,
        settings: Some(settings),
        overrides: Default::default(),
        audio: false,
        dialogs,
    }
}

/// A file dropped on the window, as the windowing layer hands it to egui.
#[derive(Debug)]
struct Dropped(PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &Path {
        &self.0
    }

    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

fn clip(dir: &Path, name: &str, container: Container, codec: Codec, frames: u32) -> PathBuf {
    let path = dir.join(name);
    synth_clip(&path, &ClipSpec::new(container, codec, frames)).expect("synth clip");
    path
}

#[test]
fn a_clip_plays_with_live_labels_a_timeline_and_frame_steps() {
    let dir = tmp("player");
    let video = clip(&dir, "ball.mp4", Container::Mp4, Codec::H264, 100);
    let settings = test_settings(&fixture("pptsmv2/w8.pdparams"));
    let mut h = harness(options(settings, DialogBackend::scripted(vec![])));
    run_until(&mut h, Duration::from_secs(120), "the model", |h| {
        h.state().shared.model().is_some()
    });
    // Opened by a relative path, as `cd clips && kineto clip.mp4` does: it belongs to the
    // project of its folder like any other (the label panel said "outside the project folder").
    let cwd = std::env::current_dir().expect("cwd");
    let ups = cwd.components().count() - 1;
    let relative: PathBuf = std::iter::repeat_n(Path::new(".."), ups)
        .collect::<PathBuf>()
        .join(video.strip_prefix("/").expect("absolute"));
    assert!(relative.is_relative());
    h.state_mut().open_paths(vec![relative]);
    run_until(&mut h, Duration::from_secs(120), "a live label", |h| {
        h.state().live_top1().is_some()
    });
    let label = h.state().live_top1().expect("live label");
    // The label is on screen (the live panel's score bars; the clip's own top-k may show it too).
    assert!(h.query_all_by_label_contains(&label).count() >= 1);

    // Frame steps move the playhead by one frame (25 fps) each way.
    h.state()
        .shared
        .player
        .send(kineto::video::player::PlayerCmd::Pause);
    run_until(&mut h, Duration::from_secs(20), "pause", |h| {
        h.state().shared.player.status().state == kineto::video::player::PlayState::Paused
    });
    let before = h.state().shared.player.status().position_s;
    h.key_press(egui::Key::Period);
    run_until(&mut h, Duration::from_secs(20), "a frame step", |h| {
        h.state().shared.player.status().position_s > before + 0.02
    });
    let after = h.state().shared.player.status().position_s;
    assert!(
        (after - before - 0.04).abs() < 0.021,
        "one frame forward: {before} -> {after}"
    );

    // The timeline covers the 4 s clip with 1 s strides: 3 windows of 2 s.
    run_until(&mut h, Duration::from_secs(180), "the timeline", |h| {
        h.state().timeline_windows() == Some(3)
    });
    assert_eq!(h.state().tab, Tab::Player);
    // The finished timeline proposed the clip's segments: they cover the clip, on frames, and
    // are predictions (the file is still not written: nothing was labelled).
    {
        let project = h.state().shared.project.as_ref().expect("project");
        let clip = project
            .clips
            .iter()
            .find(|c| c.path == "ball.mp4")
            .expect("the clip");
        let segments = &clip.segments;
        assert!(!segments.is_empty(), "segments proposed");
        assert_eq!(segments[0].start_s, 0.0);
        assert!(
            (segments.last().unwrap().end_s - 4.0).abs() < 1e-6,
            "{segments:?}"
        );
        assert!(segments.windows(2).all(|w| w[0].end_s == w[1].start_s));
        assert!(segments.iter().all(|s| s.status == ClipStatus::Predicted));
        assert_eq!(clip.fps, Some(25.0));
    }

    // Opening and classifying wrote no project file; the first label writes it, with the clip.
    let project_file = dir.join("kineto-project.json");
    assert!(
        !project_file.exists(),
        "a clip only opened leaves no project file"
    );
    run_until(
        &mut h,
        Duration::from_secs(60),
        "the clip's prediction",
        |h| {
            h.state().shared.project.as_ref().is_some_and(|p| {
                p.clips
                    .iter()
                    .any(|c| c.path == "ball.mp4" && c.prediction.is_some())
            })
        },
    );
    h.key_press(egui::Key::Num1);
    h.step();
    h.state_mut().shared.saver.flush(Duration::from_secs(10));
    let project: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&project_file).expect("project file"))
            .expect("project json");
    let clips = project["clips"].as_array().expect("clips");
    assert_eq!(clips.len(), 1, "{project}");
    assert_eq!(clips[0]["path"], "ball.mp4");
    assert_eq!(clips[0]["status"], "accepted");
}

#[test]
fn a_dropped_folder_fills_the_table_and_labels_are_saved_and_exported() {
    let dir = tmp("batch");
    clip(&dir, "a.mp4", Container::Mp4, Codec::H264, 40);
    clip(&dir, "b.webm", Container::Webm, Codec::Vp8, 40);
    std::fs::write(dir.join("broken.mp4"), b"this is not a video").expect("write");
    let export = dir.join("out").join("results.csv");
    std::fs::create_dir_all(export.parent().expect("parent")).expect("out dir");
    let dialogs = DialogBackend::scripted(vec![vec![export.clone()]]);
    let settings = test_settings(&fixture("pptsmv2/w8.pdparams"));
    let mut h = harness(options(settings, dialogs));
    run_until(&mut h, Duration::from_secs(120), "the model", |h| {
        h.state().shared.model().is_some()
    });

    h.input_mut()
        .dropped_files
        .push(std::sync::Arc::new(Dropped(dir.to_path_buf())));
    run_until(&mut h, Duration::from_secs(240), "the batch", |h| {
        h.state().batch.records.iter().all(Option::is_some) && !h.state().batch.records.is_empty()
    });
    assert_eq!(h.state().tab, Tab::Batch);
    let records: Vec<_> = h.state().batch.records.iter().flatten().cloned().collect();
    assert_eq!(records.len(), 3, "three videos by extension");
    let broken = records
        .iter()
        .find(|r| r.path.ends_with("broken.mp4"))
        .expect("broken row");
    assert_eq!(broken.status, "error");
    h.step();
    assert!(h.query_all_by_label_contains("ERROR").count() >= 1);

    // Select a.mp4 and press 2: the second-ranked label becomes its corrected label, and the
    // project file on disk says so.
    h.get_by_label("a.mp4").click();
    h.step();
    h.key_press(egui::Key::Num2);
    h.step();
    let a = records
        .iter()
        .find(|r| r.path.ends_with("a.mp4"))
        .expect("a row");
    let second = a.top_k[1].label.clone();
    h.state_mut().shared.saver.flush(Duration::from_secs(10));
    let project: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("kineto-project.json")).expect("project file"),
    )
    .expect("project json");
    let clips = project["clips"].as_array().expect("clips");
    let saved = clips
        .iter()
        .find(|c| c["path"] == "a.mp4")
        .expect("a.mp4 in project");
    assert_eq!(saved["status"], "corrected");
    assert_eq!(saved["label"], second.as_str());

    // Export CSV through the (scripted) save dialog and read it back.
    h.get_by_label("Export CSV…").click();
    run_until(&mut h, Duration::from_secs(10), "the export", |_| {
        export.exists()
    });
    let csv = std::fs::read_to_string(&export).expect("csv");
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("path,status,label,label_id,score,top_k,decode_ms,preprocess_ms,infer_ms,error")
    );
    assert_eq!(lines.count(), 3);
    assert!(csv.contains("broken.mp4,error"));
}

#[test]
fn without_weights_the_window_says_what_is_missing() {
    let settings = Settings {
        offline: true,
        ..test_settings(Path::new("/nonexistent/kineto-weights.pdparams"))
    };
    let mut h = Harness::builder()
        .with_size([900.0, 560.0])
        .wgpu()
        .build_eframe(move |cc| {
            KinetoApp::new(cc, options(settings, DialogBackend::scripted(vec![])))
        });
    run_until(&mut h, Duration::from_secs(60), "the load failure", |h| {
        matches!(
            h.state().shared.model,
            kineto::app::ModelState::Failed { .. }
        )
    });
    h.run_steps(3);
    h.get_by_label("Import weights…");
    h.get_by_label_contains("could not be loaded");
    h.snapshot("first_run_without_weights");
}

/// The loaded model's device line ("cpu (flex, 1 thread, int8)") once a model whose line ends
/// with `precision)` is ready, or the error of a failed load.
fn loaded_in(h: &mut Harness<'static, KinetoApp>, precision: &str) -> Result<String, String> {
    let ending = format!("{precision})");
    run_until(h, Duration::from_secs(60), &ending, |h| {
        match &h.state().shared.model {
            kineto::app::ModelState::Ready(m) => m.device.ends_with(&ending),
            kineto::app::ModelState::Failed { .. } => true,
            _ => false,
        }
    });
    match &h.state().shared.model {
        kineto::app::ModelState::Ready(m) => Ok(m.device.clone()),
        kineto::app::ModelState::Failed { error, .. } => Err(error.clone()),
        _ => unreachable!("waited for the load to end"),
    }
}

#[test]
fn settings_switch_a_quantized_model_between_int8_and_fp32_and_refuse_int8_for_fp32_weights() {
    let dir = tmp("precision");
    let fp32 = fixture("pptsmv2/w8.pdparams");
    let int8 = dir.join("w8_int8.safetensors");
    let out = common::kineto(&[
        "--device",
        "cpu",
        "quantize",
        "--weights",
        common::s(&fp32),
        "--calib",
        common::s(&fixture("video/example.avi")),
        "--clips",
        "1",
        "--output",
        common::s(&int8),
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));

    // The model's own precision: int8 for a quantized file on the CPU, shown in the status bar.
    let mut h = harness(options(
        test_settings(&int8),
        DialogBackend::scripted(vec![]),
    ));
    loaded_in(&mut h, "int8").expect("the quantized model loads");
    h.run_steps(2);
    h.get_by_label_contains("int8)");

    // Settings > Precision > fp32 > Apply reloads the same file in float32.
    h.get_by_label("Settings").click();
    // The window's first frame only sizes it.
    h.run_steps(5);
    h.get_by_label("fp32").click();
    h.run_steps(2);
    h.get_by_label("Apply").click();
    h.run_steps(2);
    assert_eq!(
        h.state().shared.settings.precision,
        kineto::app::settings::PrecisionSetting::Fp32
    );
    loaded_in(&mut h, "fp32").expect("the model loads in fp32");
    h.run_steps(2);
    h.get_by_label_contains("fp32)");

    // int8 asked of float32 weights: the load fails with the way out, and nothing panics.
    h.get_by_label("Settings").click();
    h.run_steps(5);
    h.get_by_label("int8").click();
    h.run_steps(2);
    h.get_by_label("Apply").click();
    h.run_steps(2);
    let mut settings = h.state().shared.settings.clone();
    settings.model = fp32.display().to_string();
    h.state_mut().shared.apply_settings(settings);
    let error = loaded_in(&mut h, "never").expect_err("int8 of fp32 weights");
    assert!(error.contains("kineto quantize"), "{error}");
}

#[test]
fn a_clip_named_relative_to_the_working_folder_joins_its_folders_project() {
    // `cd clips && kineto clip.mp4`: the project's root was "" and the clip "outside the
    // project folder" (0 clips). Paths are made absolute at the edge.
    let settings = test_settings(&fixture("pptsmv2/w8.pdparams"));
    let mut h = harness(options(settings, DialogBackend::scripted(vec![])));
    let name = format!("kineto-absent-{}.mp4", std::process::id());
    h.state_mut().open_clip(Path::new(&name));
    // The project is read on its worker.
    run_until(&mut h, Duration::from_secs(30), "the project", |h| {
        h.state().shared.project.is_some()
    });
    let cwd = std::env::current_dir().expect("cwd");
    let project = h.state().shared.project.as_ref().expect("a project");
    assert_eq!(project.root, cwd);
    assert_eq!(clip_paths(project), [name.as_str()]);
    assert_eq!(h.state().shared.current_clip, Some(cwd.join(&name)));
    assert!(
        !cwd.join("kineto-project.json").exists(),
        "nothing labelled, nothing written"
    );
}

/// Writes `<dir>/kineto-project.json` holding `clips` labelled clips (`clip-<i>.mp4`), each
/// with a top-5 prediction: a project of 100,000 clips is some 40 MB of JSON.
fn write_big_project(dir: &Path, clips: usize) {
    use std::fmt::Write as _;
    let labels: Vec<String> = (0..400).map(|i| format!("class {i}")).collect();
    let mut text = format!(
        "{{\"format\":\"kineto-project\",\"version\":1,\"label_set\":{{\"name\":\"big\",\"labels\":{}}},\"clips\":[",
        serde_json::to_string(&labels).expect("labels")
    );
    for i in 0..clips {
        if i > 0 {
            text.push(',');
        }
        let top_k: Vec<String> = (0..5)
            .map(|r| {
                let id = (i + r * 7) % 400;
                format!(
                    "{{\"rank\":{},\"label_id\":{id},\"label\":\"class {id}\",\"score\":0.{}}}",
                    r + 1,
                    9 - r
                )
            })
            .collect();
        let id = i % 400;
        write!(
            text,
            "{{\"path\":\"clip-{i:06}.mp4\",\"status\":\"accepted\",\"label_id\":{id},\"label\":\"class {id}\",\"updated_at\":\"2025-01-01T00:00:00Z\",\"prediction\":{{\"top_k\":[{}]}}}}",
            top_k.join(",")
        )
        .expect("write");
    }
    text.push_str("]}");
    std::fs::write(dir.join("kineto-project.json"), text).expect("write the project");
}

/// The window with a model that cannot load (these tests need none): nothing but the project.
fn harness_without_model() -> Harness<'static, KinetoApp> {
    let settings = Settings {
        offline: true,
        ..test_settings(Path::new("/nonexistent/kineto-weights.pdparams"))
    };
    harness(options(settings, DialogBackend::scripted(vec![])))
}

const BIG: usize = 100_000;

/// Like `run_until`, timing each frame (the UI thread's work in it).
fn timed_frames_until(
    h: &mut Harness<'static, KinetoApp>,
    timeout: Duration,
    what: &str,
    mut done: impl FnMut(&Harness<'static, KinetoApp>) -> bool,
) -> Vec<Duration> {
    let deadline = std::time::Instant::now() + timeout;
    let mut frames = Vec::new();
    loop {
        let started = std::time::Instant::now();
        h.step();
        frames.push(started.elapsed());
        if done(h) {
            return frames;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_project_switch_does_not_block_the_window_and_the_project_opens_once_read() {
    // Opening a clip of a folder whose project holds 100,000 clips read and parsed its file on
    // the UI thread (seconds in a debug build), after waiting up to 2 s for the saver.
    let dir = tmp("big-project");
    write_big_project(&dir, BIG);
    let started = std::time::Instant::now();
    let direct = kineto::labels::project::Project::load(&dir)
        .expect("load")
        .expect("a project");
    let load_time = started.elapsed();
    assert_eq!(direct.clips.len(), BIG);
    drop(direct);

    let mut h = harness_without_model();
    h.step();
    let clip = dir.join("new-clip.mp4");
    let started = std::time::Instant::now();
    h.state_mut().open_clip(&clip);
    h.step();
    let ui_time = started.elapsed();
    eprintln!(
        "project of {BIG} clips: Project::load {:.0} ms off the UI thread; open_clip + one frame on it {:.1} ms",
        load_time.as_secs_f64() * 1e3,
        ui_time.as_secs_f64() * 1e3
    );
    assert!(
        ui_time < load_time / 4 && ui_time < Duration::from_millis(500),
        "the switch held the UI thread {ui_time:?} (the load takes {load_time:?})"
    );
    // Meanwhile the label panel says so, and labelling waits.
    assert!(h.state().shared.project_loading());
    assert!(h.state().shared.project.is_none());
    h.get_by_label_contains("loading project");

    let frames = timed_frames_until(&mut h, Duration::from_secs(120), "the project", |h| {
        h.state().shared.project.is_some()
    });
    let slowest = frames.iter().max().copied().unwrap_or_default();
    eprintln!(
        "slowest frame while it loaded and when it opened: {:.1} ms",
        slowest.as_secs_f64() * 1e3
    );
    let project = h.state().shared.project.as_ref().expect("the project");
    assert_eq!(project.root, *dir);
    assert_eq!(project.label_set.name, "big", "the file's own label set");
    assert_eq!(project.clips.len(), BIG + 1, "its clips and the one opened");
    assert_eq!(project.clips[BIG].path, "new-clip.mp4");
    assert!(!h.state().shared.project_loading());
}

#[test]
fn a_late_project_load_is_dropped_not_applied_to_the_next_project() {
    let big = tmp("late-load-a");
    write_big_project(&big, BIG);
    let other = tmp("late-load-b");
    let mut h = harness_without_model();
    h.step();
    let first = h.state().shared.project_generation();
    h.state_mut().open_clip(&big.join("a.mp4"));
    h.state_mut().open_clip(&other.join("b.mp4"));
    h.step();
    // The first folder's project, read after the switch to the second, arrives late: it is
    // dropped (its generation is not the last one) rather than opened for the second folder.
    let stale = kineto::labels::project::Project::new(&*big, "stale", vec!["x".into()]);
    h.state_mut()
        .shared
        .apply_project_load(first + 1, &big, Ok(Some(stale)));
    // (The second folder's own load may have ended already: either way, not the stale one.)
    assert!(
        h.state()
            .shared
            .project
            .as_ref()
            .is_none_or(|p| p.root == *other && p.label_set.name != "stale"),
        "a late load was applied"
    );
    run_until(
        &mut h,
        Duration::from_secs(120),
        "the second project",
        |h| h.state().shared.project.is_some(),
    );
    // Long enough for the first load to have ended too: the second project stays.
    let until = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < until {
        h.step();
        std::thread::sleep(Duration::from_millis(30));
    }
    let project = h.state().shared.project.as_ref().expect("the project");
    assert_eq!(project.root, *other);
    assert_eq!(clip_paths(project), ["b.mp4"]);
}

#[test]
fn switching_back_to_a_project_reads_its_last_snapshot_not_the_file_before_it() {
    // The switch no longer waits for the saver: the load of a project waits (on its worker)
    // for the snapshots handed over before it, so what was labelled just before is there.
    let a = tmp("switch-back-a");
    let b = tmp("switch-back-b");
    let mut h = harness_without_model();
    h.step();
    let clip = a.join("a.mp4");
    h.state_mut().open_clip(&clip);
    run_until(&mut h, Duration::from_secs(60), "project a", |h| {
        h.state().shared.project.is_some()
    });
    {
        let shared = &mut h.state_mut().shared;
        let project = shared.project.as_mut().expect("project a");
        let index = project.clip_index(&clip).expect("a.mp4");
        project.correct(index, 3).expect("label");
        shared.save_project();
    }
    h.state_mut().open_clip(&b.join("b.mp4"));
    h.state_mut().open_clip(&clip);
    run_until(&mut h, Duration::from_secs(60), "project a again", |h| {
        h.state()
            .shared
            .project
            .as_ref()
            .is_some_and(|p| p.root == *a)
    });
    let project = h.state().shared.project.as_ref().expect("project a");
    assert_eq!(project.clips.len(), 1);
    assert_eq!(project.clips[0].label_id, Some(3), "the label given before");
}

#[test]
fn starting_a_batch_of_100000_files_keeps_the_ui_thread_short() {
    // A folder of 100,000 (empty) .mp4 files with a project of the same 100,000 clips: the
    // walk runs on `kineto-batch-walk`, the project load on `kineto-project-load`; the UI
    // thread adds the files to the project (one pass) and draws the table's visible rows.
    let dir = tmp("batch-100k");
    write_big_project(&dir, BIG);
    for i in 0..BIG {
        std::fs::write(dir.join(format!("clip-{i:06}.mp4")), b"").expect("write");
    }
    let mut h = harness_without_model();
    h.step();
    let started = std::time::Instant::now();
    h.state_mut().open_paths(vec![dir.to_path_buf()]);
    h.step();
    let start_time = started.elapsed();
    let mut frames = timed_frames_until(&mut h, Duration::from_secs(300), "the batch", |h| {
        h.state().batch.files.len() == BIG && h.state().shared.project.is_some()
    });
    // A few more frames of the table (100,000 rows, the visible ones drawn).
    for _ in 0..5 {
        let started = std::time::Instant::now();
        h.step();
        frames.push(started.elapsed());
    }
    let slowest = frames.iter().max().copied().unwrap_or_default();
    let mut sorted = frames.clone();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    eprintln!(
        "batch of {BIG} files: start {:.1} ms; {} frames until started and open: slowest {:.1} ms, median {:.1} ms",
        start_time.as_secs_f64() * 1e3,
        frames.len(),
        slowest.as_secs_f64() * 1e3,
        median.as_secs_f64() * 1e3
    );
    let project = h.state().shared.project.as_ref().expect("the project");
    assert_eq!(
        project.clips.len(),
        BIG,
        "the files were in the project already"
    );
    // Generous (a debug build on a shared machine): the point is no multi-second freeze.
    assert!(
        slowest < Duration::from_secs(2),
        "a frame held the UI thread {slowest:?}"
    );
    h.state_mut().batch.cancel();
}

/// The project's clip paths, in order.
fn clip_paths(project: &kineto::labels::project::Project) -> Vec<&str> {
    project.clips.iter().map(|c| c.path.as_str()).collect()
}

#[test]
fn closing_with_an_unsaved_project_asks_and_saves_on_try_again() {
    // The project's last write failed (here its file's name is taken by a folder, as a full
    // disk or a read-only folder would fail it): closing the window used to wait 2 s for the
    // saver and quit, losing the labels. Now the close is cancelled and the window asks.
    let dir = tmp("close-unsaved");
    let mut h = harness_without_model();
    h.step();
    let clip = dir.join("a.mp4");
    h.state_mut().open_clip(&clip);
    run_until(&mut h, Duration::from_secs(60), "the project", |h| {
        h.state().shared.project.is_some()
    });
    let file = dir.join("kineto-project.json");
    std::fs::create_dir(&file).expect("a folder in the file's place");
    {
        let shared = &mut h.state_mut().shared;
        let project = shared.project.as_mut().expect("project");
        let index = project.clip_index(&clip).expect("a.mp4");
        project.correct(index, 3).expect("label");
        shared.save_project();
    }
    run_until(&mut h, Duration::from_secs(30), "the failed write", |h| {
        h.state().shared.unsaved_project.is_some()
    });
    request_close(&mut h);
    h.step();
    assert!(
        viewport_commands(&h).contains(&egui::ViewportCommand::CancelClose),
        "the close is cancelled while the labels are unsaved"
    );
    assert!(h.state().is_closing());
    h.step(); // a new window is measured, unseen, in its first frame
    h.get_by_label("The labelling project could not be saved");
    h.get_by_label("Quit without saving");
    // Three more frames: still asking, not closed.
    for _ in 0..3 {
        h.step();
        assert!(!viewport_commands(&h).contains(&egui::ViewportCommand::Close));
    }
    std::fs::remove_dir(&file).expect("the folder removed");
    h.get_by_label("Try again").click();
    let mut closed = false;
    run_until(
        &mut h,
        Duration::from_secs(30),
        "the save, then the close",
        |h| {
            closed |= viewport_commands(h).contains(&egui::ViewportCommand::Close);
            closed
        },
    );
    let saved = kineto::labels::project::Project::load(&dir)
        .expect("readable")
        .expect("written");
    assert_eq!(saved.clips[0].label_id, Some(3), "the label is on disk");
}

/// The project file as JSON, once the saver has written what `done` waits for.
fn project_on_disk_until(
    h: &mut Harness<'static, KinetoApp>,
    dir: &Path,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let file = dir.join("kineto-project.json");
    let read = || -> Option<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(&file).ok()?).ok()
    };
    run_until(h, Duration::from_secs(30), what, |_| {
        read().is_some_and(|v| done(&v))
    });
    read().expect("the project file")
}

/// `(start_s, end_s, status, label)` of each segment of the first clip in the file.
fn segments_on_disk(v: &serde_json::Value) -> Vec<(f64, f64, String, String)> {
    v["clips"][0]["segments"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|s| {
                    (
                        s["start_s"].as_f64().unwrap_or(-1.0),
                        s["end_s"].as_f64().unwrap_or(-1.0),
                        s["status"].as_str().unwrap_or("").to_string(),
                        s["label"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn segments_are_selected_corrected_dragged_split_and_undone_in_the_window() {
    let dir = tmp("segments");
    let video = clip(&dir, "long.mp4", Container::Mp4, Codec::H264, 100);
    // A version 1 project from an older Kineto: it opens, is kept aside and is migrated.
    let v1 = r#"{"format": "kineto-project", "version": 1,
          "label_set": {"name": "three", "labels": ["archery", "bowling", "cooking egg"]},
          "clips": [{"path": "long.mp4", "status": "accepted", "label_id": 1,
                      "label": "bowling", "updated_at": "2026-01-01T12:00:00Z"}]}"#;
    std::fs::write(dir.join("kineto-project.json"), v1).unwrap();
    let mut h = harness_without_model();
    h.step();
    h.state_mut().open_clip(&video);
    run_until(
        &mut h,
        Duration::from_secs(60),
        "the project and the clip",
        |h| {
            h.state().shared.project.is_some()
                && h.state().shared.player.status().duration_s.is_some()
        },
    );
    let kept = dir.join("kineto-project.v1.json");
    assert_eq!(
        std::fs::read_to_string(&kept).unwrap(),
        v1,
        "the v1 file kept aside"
    );
    let duration = h.state().shared.player.status().duration_s.unwrap();
    assert!((duration - 4.0).abs() < 0.05, "{duration}");
    let ranked = |id: usize, score: f32, rank: usize| kineto::report::Ranked {
        rank,
        label_id: id,
        label: ["archery", "bowling", "cooking egg"][id].to_string(),
        score,
    };
    let proposal = |a: f64, b: f64, top: usize| kineto::labels::segments::ProposedSegment {
        start_s: a,
        end_s: b,
        top_k: vec![ranked(top, 0.7, 1), ranked((top + 1) % 3, 0.2, 2)],
    };
    h.state_mut().offer_segment_proposals(
        vec![
            proposal(0.0, 1.0, 0),
            proposal(1.0, 3.0, 1),
            proposal(3.0, 4.0, 2),
        ],
        4.0,
        25.0,
    );
    h.step();
    let track = h.get_by_label("segment track").rect();
    let x_at = |t: f64| track.left() + track.width() * (t / duration) as f32;
    let y = track.center().y;
    let click = |h: &mut Harness<'static, KinetoApp>, x: f32| {
        h.hover_at(egui::pos2(x, y));
        h.step();
        h.drag_at(egui::pos2(x, y));
        h.step();
        h.drop_at(egui::pos2(x, y));
        h.step();
    };

    // Select the middle segment with a click, correct it with a key: its second class.
    click(&mut h, x_at(2.0));
    assert_eq!(h.state_mut().segment_track().selected, Some(1));
    h.key_press(egui::Key::Num2);
    h.step();
    let v = project_on_disk_until(&mut h, &dir, "the correction", |v| {
        segments_on_disk(v)
            .get(1)
            .is_some_and(|s| s.2 == "corrected")
    });
    assert_eq!(v["version"], 2, "migrated to version 2");
    assert_eq!(
        v["clips"][0]["label"], "bowling",
        "the clip's own label stays"
    );
    let s = segments_on_disk(&v);
    assert_eq!(s.len(), 3);
    assert_eq!(
        (s[1].2.as_str(), s[1].3.as_str()),
        ("corrected", "cooking egg")
    );

    // Drag its start from 1 s to about 1.5 s: snapped to a 25 fps frame.
    h.hover_at(egui::pos2(x_at(1.0), y));
    h.step();
    h.drag_at(egui::pos2(x_at(1.0), y));
    h.step();
    for k in 1..=5 {
        h.hover_at(egui::pos2(x_at(1.0 + 0.1 * f64::from(k)), y));
        h.step();
    }
    h.drop_at(egui::pos2(x_at(1.5), y));
    h.step();
    let v = project_on_disk_until(&mut h, &dir, "the drag", |v| {
        segments_on_disk(v).get(1).is_some_and(|s| s.0 > 1.2)
    });
    let s = segments_on_disk(&v);
    let start = s[1].0;
    assert!((start - 1.5).abs() < 0.1, "dragged to {start}");
    assert!(
        ((start * 25.0) - (start * 25.0).round()).abs() < 1e-6,
        "on a frame: {start}"
    );
    assert_eq!(s[0].1, 1.0, "the neighbour keeps its end");

    // Split at the playhead (2.4 s).
    h.state()
        .shared
        .player
        .send(kineto::video::player::PlayerCmd::Seek {
            position_s: 2.4,
            accurate: true,
        });
    run_until(&mut h, Duration::from_secs(30), "the seek", |h| {
        (h.state().shared.player.status().position_s - 2.4).abs() < 0.05
    });
    h.key_press(egui::Key::S);
    h.step();
    let v = project_on_disk_until(&mut h, &dir, "the split", |v| {
        segments_on_disk(v).len() == 4
    });
    let s = segments_on_disk(&v);
    assert!((s[1].1 - 2.4).abs() < 0.05 && s[2].0 == s[1].1, "{s:?}");
    assert_eq!(s[2].3, "cooking egg", "both halves keep the label");

    // Undo the split, then the drag.
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Z);
    h.step();
    project_on_disk_until(&mut h, &dir, "the split undone", |v| {
        segments_on_disk(v).len() == 3
    });
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Z);
    h.step();
    let v = project_on_disk_until(&mut h, &dir, "the drag undone", |v| {
        segments_on_disk(v).get(1).is_some_and(|s| s.0 == 1.0)
    });
    assert_eq!(
        segments_on_disk(&v)[1].2,
        "corrected",
        "the correction stays"
    );
    assert_eq!(
        std::fs::read_to_string(&kept).unwrap(),
        v1,
        "the kept v1 file is untouched"
    );

    // The wheel over the track zooms in around the pointer (a long file's segments get room).
    let full = h.state_mut().segment_track().view(duration);
    h.hover_at(egui::pos2(x_at(3.0), y));
    h.step();
    for _ in 0..10 {
        h.event(egui::Event::MouseWheel {
            unit: egui::MouseWheelUnit::Point,
            delta: egui::vec2(0.0, 60.0),
            modifiers: egui::Modifiers::NONE,
            phase: egui::TouchPhase::Move,
            source: egui::MouseWheelSource::Wheel,
        });
        h.step();
    }
    let zoomed = h.state_mut().segment_track().view(duration);
    assert!(
        zoomed.end_s - zoomed.start_s < 0.8 * (full.end_s - full.start_s),
        "{full:?} -> {zoomed:?}"
    );
    assert!(
        zoomed.start_s <= 3.0 && 3.0 <= zoomed.end_s,
        "around the pointer: {zoomed:?}"
    );
}
