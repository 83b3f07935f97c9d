//! The Train tab driven headless with egui_kittest over the real app: demo clips made by the
//! library, the fixture PP-TSMv2 8f weights on the CPU, head-only training on the panel's own
//! thread, live curves, the report, "Use this model" (the loaded model switches to the new
//! classes), a cancel during feature extraction, and full fine-tuning (per-step curve points,
//! closing the window saving `latest` before it closes, Resume in a restarted app with the run's earlier curve points, the
//! fused start weights refused in one line),
//! then distillation from the panel (a DML teacher in the fused form refused in one line, KD
//! from the finished run's model with its `ce` / `kd` loss terms) and "Export..." through the
//! scripted dialog to a `.pdparams` the library reads back.

// Test code: a failed unwrap/expect is the test failing (clippy.toml exempts only #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::app::{request_close, run_until, viewport_commands};
use common::fixture;
use eframe::egui;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use kineto::app::settings::{DeviceSetting, Settings};
use kineto::app::{AppOptions, DialogBackend, KinetoApp, Tab, TrainState};
use kineto::checkpoint::file::open_checkpoint;
use kineto::checkpoint::keys::Role;
use kineto::checkpoint::pdparams::read_pdparams;
use kineto::train::demo::{DemoOptions, generate};

fn tmp(tag: &str) -> common::ScratchDir {
    common::ScratchDir::new(&format!("app-train-{tag}"))
}

fn demo(dir: &Path, clips_per_class: usize) -> Vec<String> {
    let opts = DemoOptions {
        classes: 3,
        clips_per_class,
        seconds: 1.0,
        seed: 5,
        force: false,
    };
    let summary = generate(dir, &opts, |_, _, _| {}).expect("demo data");
    assert_eq!(summary.classes.len(), 3);
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("demo dir")
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn harness(weights: &Path) -> Harness<'static, KinetoApp> {
    harness_with(weights, 1)
}

fn harness_with(weights: &Path, threads: usize) -> Harness<'static, KinetoApp> {
    harness_dialogs(weights, threads, DialogBackend::scripted(vec![]))
}

fn harness_dialogs(
    weights: &Path,
    threads: usize,
    dialogs: DialogBackend,
) -> Harness<'static, KinetoApp> {
    let settings = Settings {
        model: weights.display().to_string(),
        frames: 8,
        device: DeviceSetting::Cpu,
        threads,
        top_k: 5,
        offline: true,
        ..Settings::default()
    };
    let options = AppOptions {
        video: None,
        settings: Some(settings),
        overrides: Default::default(),
        audio: false,
        dialogs,
    };
    Harness::builder()
        .with_size([1200.0, 900.0])
        .build_eframe(move |cc| KinetoApp::new(cc, options))
}

#[test]
fn head_only_training_from_the_panel_and_use_the_model() {
    let root = tmp("train");
    let data = root.join("data");
    let names = demo(&data, 6);
    let mut h = harness(&fixture("pptsmv2/w8.pdparams"));
    run_until(&mut h, Duration::from_secs(120), "the model", |h| {
        h.state().shared.model().is_some()
    });

    h.state_mut().tab = Tab::Train;
    h.step();
    h.get_by_label("Start");
    h.state_mut().train.set_data(&data);
    h.state_mut().train.set_run_dir(&root.join("run"));
    h.state_mut().train.set_epochs(6, 8);
    h.step();

    // The class table.
    h.get_by_label("Check data").click();
    run_until(&mut h, Duration::from_secs(60), "the data check", |h| {
        h.state().train.summary_classes().is_some()
    });
    assert_eq!(h.state().train.summary_classes(), Some(names.clone()));
    h.step();
    assert!(h.query_all_by_label_contains(&names[0]).count() >= 1);

    // Train: curves gain points as epoch events arrive, then the report.
    h.get_by_label("Start").click();
    run_until(&mut h, Duration::from_secs(10), "the job to start", |h| {
        h.state().train.is_running() || *h.state().train.state() != TrainState::Idle
    });
    run_until(&mut h, Duration::from_secs(300), "curve points", |h| {
        h.state().train.epoch_points() >= 1
            || matches!(h.state().train.state(), TrainState::Failed(_))
    });
    assert!(
        !matches!(h.state().train.state(), TrainState::Failed(_)),
        "{:?}",
        h.state().train.state()
    );
    run_until(&mut h, Duration::from_secs(300), "the report", |h| {
        !h.state().train.is_running()
    });
    assert_eq!(*h.state().train.state(), TrainState::Done);
    assert_eq!(h.state().train.epoch_points(), 6);
    let report = h.state().train.report_text().expect("report").to_string();
    assert!(report.contains("per-class accuracy"), "{report}");
    h.step();
    h.get_by_label_contains("per-class accuracy");
    let model = h
        .state()
        .train
        .trained_model()
        .expect("model")
        .to_path_buf();
    assert!(model.exists());
    assert!(root.join("run").join("confusion.csv").exists());

    // Use it: the app's model reloads with the demo classes.
    h.get_by_label("Use this model").click();
    h.step();
    assert_eq!(h.state().shared.settings.model, model.display().to_string());
    run_until(&mut h, Duration::from_secs(120), "the new model", |h| {
        let shared = &h.state().shared;
        shared
            .model()
            .is_some_and(|m| m.labels.as_ref() == &names && m.path == model)
            || matches!(shared.model, kineto::app::ModelState::Failed { .. })
    });
    let loaded = h.state().shared.model().cloned();
    assert!(loaded.is_some(), "{:?}", h.state().shared.model);
    assert_eq!(h.state().shared.settings.model, model.display().to_string());
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn cancel_during_feature_extraction() {
    let root = tmp("cancel");
    let data = root.join("data");
    demo(&data, 10);
    let mut h = harness(&fixture("pptsmv2/w8.pdparams"));
    run_until(&mut h, Duration::from_secs(120), "the model", |h| {
        h.state().shared.model().is_some()
    });
    h.state_mut().tab = Tab::Train;
    h.state_mut().train.set_data(&data);
    h.state_mut().train.set_run_dir(&root.join("run"));
    h.step();
    h.get_by_label("Start").click();
    run_until(
        &mut h,
        Duration::from_secs(120),
        "feature extraction",
        |h| h.state().train.extract_progress().is_some() || !h.state().train.is_running(),
    );
    let (done, total) = h.state().train.extract_progress().expect("extracting");
    assert!(done < total, "extraction finished before the cancel");
    h.get_by_label("Cancel").click();
    run_until(&mut h, Duration::from_secs(60), "the cancel", |h| {
        !h.state().train.is_running()
    });
    assert_eq!(*h.state().train.state(), TrainState::Cancelled);
    assert_eq!(h.state().train.epoch_points(), 0);
    assert!(h.state().train.report_text().is_none());
    h.step();
    h.get_by_label("cancelled");
    // A second run can start after a cancel.
    assert!(!h.state().train.is_running());
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn full_fine_tuning_from_the_panel_cancel_resume_fused_refusal_kd_and_export() {
    let started = Instant::now();
    let root = tmp("full");
    let data = root.join("data");
    demo(&data, 4);
    let run = root.join("run");
    let dialogs = DialogBackend::scripted(vec![]);
    let mut h = harness_dialogs(&fixture("pptsmv2/w8.pdparams"), 2, dialogs.clone());
    run_until(&mut h, Duration::from_secs(120), "the model", |h| {
        h.state().shared.model().is_some()
    });
    h.state_mut().tab = Tab::Train;
    h.step();

    // The mode choice: head-only by default; full fine-tuning shows its own settings.
    assert!(!h.state().train.full_mode());
    assert!(h.query_by_label("Crop size").is_none());
    assert!(h.query_by_label("Freeze stages").is_none());
    h.get_by_label("Full fine-tuning").click();
    h.step();
    assert!(h.state().train.full_mode());
    h.get_by_label("Crop size");
    h.get_by_label("Freeze stages");
    h.get_by_label_contains("0.01 x batch / 128 = ");
    h.state_mut().train.set_data(&data);
    h.state_mut().train.set_run_dir(&run);
    h.state_mut().train.set_epochs(1, 2);
    h.state_mut().train.set_full_options(64, true);
    h.step();
    h.get_by_label_contains("0.01 x batch / 128 = 0.000156");

    // Start: step points arrive one per optimisation step (x = the global step).
    h.get_by_label("Start").click();
    run_until(&mut h, Duration::from_secs(120), "the first step", |h| {
        h.state().train.step_points() >= 1 || !h.state().train.is_running()
    });
    assert_eq!(*h.state().train.state(), TrainState::Running);
    assert_eq!(h.state().train.run_folder(), Some(run.as_path()));
    let progress = h.state().train.progress_text().expect("progress");
    assert!(progress.starts_with("epoch 1/1, step "), "{progress}");

    // Pause: the worker finishes the step in flight, then takes no further step.
    let at_click = h.state().train.step_points();
    h.get_by_label("Pause").click();
    h.step();
    h.step();
    assert!(h.state().train.is_paused());
    h.get_by_label_contains("paused (Continue goes on");
    let paused_at = Instant::now();
    run_until(
        &mut h,
        Duration::from_secs(30),
        "three paused seconds",
        |_| paused_at.elapsed() > Duration::from_secs(3),
    );
    let steps = h.state().train.step_points();
    assert!(
        steps <= at_click + 1,
        "no step while paused: {at_click} -> {steps}"
    );
    h.get_by_label("Continue");

    // Closing the window (while paused): the close is cancelled and "Saving..." shows while
    // the run stops between steps and commits `latest`; then the window closes. Resume is
    // offered.
    request_close(&mut h);
    h.step();
    assert!(
        viewport_commands(&h).contains(&egui::ViewportCommand::CancelClose),
        "the close is cancelled while training runs"
    );
    assert!(h.state().is_closing());
    h.step(); // a new window is measured, unseen, in its first frame
    h.get_by_label("Saving the training run…");
    h.get_by_label("Quit now");
    let mut closed = false;
    run_until(&mut h, Duration::from_secs(60), "the save on close", |h| {
        closed |= viewport_commands(h).contains(&egui::ViewportCommand::Close);
        closed
    });
    assert!(!h.state().train.is_running());
    assert!(!h.state().is_closing());
    assert_eq!(*h.state().train.state(), TrainState::Cancelled);
    let files = kineto::train::checkpoints::latest_files(&run).expect("latest saved");
    assert!(run.join(files.model).exists());
    assert!(run.join("latest.state.json").exists());
    assert!(!run.join("model.safetensors").exists());
    let steps_before = h.state().train.step_points();
    let last_before = h.state().train.last_step().expect("a step");
    assert_eq!(steps_before, last_before);
    assert_eq!(h.state().train.resumable(), Some(run.as_path()));
    h.step();
    h.get_by_label_contains("latest checkpoint is saved in the run folder");
    assert!(
        h.query_all_by_label_contains(&run.display().to_string())
            .count()
            >= 1
    );

    // Resume in a restarted app (a fresh panel that only knows the run folder): the curves
    // show the run from its first step (the run's history), then the steps go on from the
    // checkpoint to the end of the epoch, then the report.
    drop(h);
    let mut h = harness_dialogs(&fixture("pptsmv2/w8.pdparams"), 2, dialogs.clone());
    run_until(&mut h, Duration::from_secs(120), "the model", |h| {
        h.state().shared.model().is_some()
    });
    h.state_mut().tab = Tab::Train;
    h.step();
    h.get_by_label("Full fine-tuning").click();
    h.step();
    h.state_mut().train.set_data(&data);
    h.state_mut().train.set_run_dir(&run);
    h.state_mut().train.set_epochs(1, 2);
    h.state_mut().train.set_full_options(64, true);
    h.step();
    assert_eq!(h.state().train.step_points(), 0);
    h.get_by_label("Resume").click();
    run_until(&mut h, Duration::from_secs(300), "the resumed run", |h| {
        !h.state().train.is_running()
    });
    assert_eq!(
        *h.state().train.state(),
        TrainState::Done,
        "{:?}",
        h.state().train.state()
    );
    assert_eq!(h.state().train.epoch_points(), 1);
    let steps = h.state().train.step_points();
    assert!(steps > steps_before, "{steps} step points");
    assert_eq!(h.state().train.last_step(), Some(steps));
    let progress = h.state().train.progress_text().expect("progress");
    assert!(
        progress.starts_with(&format!("epoch 1/1, step {steps}/{steps},")),
        "{progress}"
    );
    let report = h.state().train.report_text().expect("report").to_string();
    assert!(report.contains("per-class accuracy"), "{report}");
    let model = run.join("model.safetensors");
    assert_eq!(h.state().train.trained_model(), Some(model.as_path()));
    assert!(model.exists());
    assert!(h.state().train.resumable().is_none());
    h.step();
    h.get_by_label("Use this model");
    assert!(h.query_by_label("Resume").is_none());

    // The run's model is fused: as start weights of full fine-tuning it is refused in one
    // line, before any work (no run folder is made).
    let run2 = root.join("run2");
    h.state_mut().train.set_weights(&model);
    h.state_mut().train.set_run_dir(&run2);
    h.step();
    h.get_by_label("Start").click();
    run_until(&mut h, Duration::from_secs(60), "the refusal", |h| {
        !h.state().train.is_running()
    });
    match h.state().train.state() {
        TrainState::Failed(e) => {
            assert!(e.contains("fused (inference) form"), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
        other => panic!("expected the fused weights to be refused: {other:?}"),
    }
    assert!(!run2.exists());
    h.step();
    h.get_by_label_contains("fused (inference) form");
    let plain = started.elapsed().as_secs_f64();

    // Distillation: no Export... before a run is done; the section shows in full mode only.
    assert!(h.query_by_label("Export...").is_none());
    h.get_by_label("Distillation");
    h.state_mut()
        .train
        .set_weights(&fixture("pptsmv2/w8.pdparams"));
    h.get_by_label("DML (teacher trained too)").click();
    h.step();
    h.get_by_label_contains("trained together");
    assert!(h.query_by_label("Temperature").is_none());
    // The teacher through the dialog: the run's fused model, which DML refuses in one line
    // before any work.
    dialogs.push_answer(vec![model.clone()]);
    h.get_by_label("Choose...").click();
    run_until(&mut h, Duration::from_secs(10), "the teacher", |h| {
        !h.state().train.teacher().is_empty()
    });
    assert_eq!(h.state().train.teacher(), model.display().to_string());
    let run3 = root.join("run3");
    h.state_mut().train.set_run_dir(&run3);
    h.step();
    h.get_by_label("Start").click();
    run_until(&mut h, Duration::from_secs(60), "the DML refusal", |h| {
        !h.state().train.is_running()
    });
    match h.state().train.state() {
        TrainState::Failed(e) => {
            assert!(e.contains("fused inference form"), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
        other => panic!("expected the fused DML teacher to be refused: {other:?}"),
    }
    assert!(!run3.exists());

    // KD from the same model (it knows the data's classes): the step curve has `ce` and `kd`.
    h.get_by_label("KD (frozen teacher)").click();
    h.step();
    h.get_by_label("Temperature");
    h.get_by_label("KD weight");
    h.get_by_label_contains("must already know the data's classes");
    h.get_by_label("Start").click();
    run_until(&mut h, Duration::from_secs(300), "the KD run", |h| {
        !h.state().train.is_running()
    });
    assert_eq!(
        *h.state().train.state(),
        TrainState::Done,
        "{:?}",
        h.state().train.state()
    );
    assert_eq!(h.state().train.loss_terms(), vec!["ce", "kd"]);
    assert!(h.state().train.step_points() >= 1);
    h.step();
    h.get_by_label_contains("KD from model.safetensors");
    let kd = started.elapsed().as_secs_f64() - plain;

    // Export... to .pdparams (PaddleVideo's training form, from the run's `latest`).
    let out = root.join("exported.pdparams");
    dialogs.push_answer(vec![out.clone()]);
    h.get_by_label("Export...").click();
    run_until(&mut h, Duration::from_secs(60), "the export", |h| {
        h.state().train.export_outcome().is_some()
    });
    let line = match h.state().train.export_outcome() {
        Some(Ok(line)) => line.clone(),
        other => panic!("export: {other:?}"),
    };
    assert!(line.contains("pdparams"), "{line}");
    h.step();
    h.get_by_label(&line);
    let raw = read_pdparams(&out).expect("the exported .pdparams");
    assert!(!raw.is_empty());
    let back = open_checkpoint(&out, Role::Student).expect("the exported checkpoint");
    assert_eq!(back.arch.num_classes, 3);
    assert_eq!(back.arch.form, kineto::model::Form::Training);
    eprintln!(
        "full fine-tuning panel test: {steps_before} of {steps} steps before the cancel, {plain:.1} \
         s; KD and export {kd:.1} s, {:.1} s in all",
        started.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&root);
}
