//! The window, driven headless with egui_kittest over the real app state: the real player
//! (GStreamer), the real inference service (fixture weights on the CPU), the real project saver.

// Test code: a failed unwrap/expect is the test failing (clippy.toml exempts only #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::app::run_until;
use common::fixture;
use eframe::egui;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use kineto::app::settings::{DeviceSetting, Settings};
use kineto::app::{AppOptions, DialogBackend, KinetoApp, Tab};
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

#[test]
fn a_clip_named_relative_to_the_working_folder_joins_its_folders_project() {
    // `cd clips && kineto clip.mp4`: the project's root was "" and the clip "outside the
    // project folder" (0 clips). Paths are made absolute at the edge.
    let settings = test_settings(&fixture("pptsmv2/w8.pdparams"));
    let mut h = harness(options(settings, DialogBackend::scripted(vec![])));
    let name = format!("kineto-absent-{}.mp4", std::process::id());
    h.state_mut().open_clip(Path::new(&name));
    h.step();
    let cwd = std::env::current_dir().expect("cwd");
    let project = h.state().shared.project.as_ref().expect("a project");
    assert_eq!(project.root, cwd);
    assert_eq!(
        project
            .clips
            .iter()
            .map(|c| c.path.as_str())
            .collect::<Vec<_>>(),
        [name.as_str()]
    );
    assert_eq!(h.state().shared.current_clip, Some(cwd.join(&name)));
    assert!(
        !cwd.join("kineto-project.json").exists(),
        "nothing labelled, nothing written"
    );
}
