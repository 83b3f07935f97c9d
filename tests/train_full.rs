//! `kineto train DATA` (full fine-tuning) end to end on small demo data at a small size
//! (`--size 64`, 8 frames, 2 classes x 4 short clips, batch 2), from the fixture PP-TSMv2 8f
//! weights (training form):
//!
//! - the training loss falls (mean of the first epoch vs the last), the run folder has
//!   `latest`/`best`/`model.safetensors`, `metrics.jsonl`, the state and the report, and
//!   `kineto classify` runs the exported (fused) model and answers with one of the new classes;
//! - a fused checkpoint as start weights is refused with one line and exit 2;
//! - Ctrl-C (SIGINT) during the first epoch saves `latest` and exits 130, and `--resume` then
//!   gives the same step losses and epoch metrics as an uninterrupted run with the same seed
//!   (within 1e-6 relative);
//! - kill -9 at 20 seeded random instants (checkpoints after every step, so several kills land
//!   inside a checkpoint write), resuming after each: the final model and the last checkpoint
//!   are bit-identical to an uninterrupted run's; a bad `--checkpoint-minutes` is one line,
//!   exit 2;
//! - `--freeze-stages 2`: after one epoch the stem's and stages 0-1's parameters and BatchNorm
//!   running statistics in the `latest` checkpoint are bit-identical to the start weights while
//!   stages 2-3 and the fc changed; settings.json, `--resume` and the report keep the setting;
//!   `--head-only` with it and N = 5 are refused with one line and exit 2.

// Test code: a failed unwrap/expect is the test failing (clippy.toml exempts only #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::train::{
    classify_demo_clip, demo_data, events, interrupt_after_first_step_in, of_kind,
};
use common::{fixture, kineto, kineto_in, s};
use kineto::checkpoint::file::open_checkpoint;
use kineto::checkpoint::keys::Role;
use kineto::model::Form;
use kineto::train::checkpoints::latest_files;

fn tmp(tag: &str) -> common::ScratchDir {
    common::ScratchDir::absent(&format!("full-{tag}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The `train` arguments every run here shares.
fn train_args<'a>(data: &'a Path, weights: &'a Path, run_dir: &'a Path) -> Vec<&'a str> {
    ["--device", "cpu", "train", s(data), "--weights", s(weights)]
        .into_iter()
        .chain(common::train::SMALL_RUN)
        .chain(["--run-dir", s(run_dir)])
        .collect()
}

#[test]
fn full_fine_tuning_lowers_the_loss_and_exports_a_fused_model() {
    let root = tmp("learn");
    let data = root.join("data");
    demo_data(&data, 2, 4, 3);
    let weights = fixture("pptsmv2/w8.pdparams");
    let run_dir = root.join("run");
    let mut args = train_args(&data, &weights, &run_dir);
    // The recipe's lr for batch 2 (0.01·2/128); no Mixup, so the loss is the plain CE.
    args.extend(["--epochs", "4", "--no-mixup", "--seed", "1", "--json"]);
    let out = kineto(&args);
    let err = text(&out.stderr);
    assert!(out.status.success(), "train failed: {err}");
    assert!(err.contains("ball_wavy"), "the summary: {err}");
    assert!(err.contains("per-class accuracy"), "the report: {err}");
    let stdout: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line on stdout"))
        .collect();
    assert_eq!(stdout.last().expect("events")["event"], "done");

    let log = events(&run_dir);
    let steps = of_kind(&log, "step");
    let epochs = of_kind(&log, "epoch");
    assert_eq!(epochs.len(), 4, "{log:?}");
    // 6 training clips, batch 2: 3 steps per epoch, numbered through.
    assert_eq!(steps.len(), 12);
    for (i, step) in steps.iter().enumerate() {
        assert_eq!(step["step"], i + 1);
        assert_eq!(step["epoch"], i / 3 + 1);
        let lr = step["lr"].as_f64().expect("lr");
        assert!(lr > 0.0 && lr <= 0.01 * 2.0 / 128.0 + 1e-12, "lr {lr}");
        assert!(step["loss"].as_f64().expect("loss").is_finite());
    }
    let loss = |e: &serde_json::Value| e["train_loss"].as_f64().expect("train_loss");
    let (first, last) = (loss(epochs[0]), loss(epochs[3]));
    assert!(
        last < first,
        "the training loss did not fall: {:?}",
        epochs.iter().map(|e| loss(e)).collect::<Vec<_>>()
    );
    for e in &epochs {
        let top1 = e["val_top1"].as_f64().expect("val top-1");
        assert!((0.0..=1.0).contains(&top1));
    }
    let files = latest_files(&run_dir).expect("a committed latest checkpoint");
    for f in [
        "settings.json",
        "metrics.jsonl",
        &files.model,
        &files.optim,
        "latest.state.json",
        "best.safetensors",
        "model.safetensors",
        "confusion.csv",
        "report.txt",
    ] {
        assert!(run_dir.join(f).exists(), "{f} missing from the run folder");
    }

    // latest: the training form; model: the fused form; both name the new classes.
    let classes = vec!["ball_wavy".to_string(), "bars_scroll".to_string()];
    let latest = open_checkpoint(&run_dir.join(&files.model), Role::Student).expect("latest loads");
    assert_eq!(latest.arch.form, Form::Training);
    assert_eq!(latest.class_names.as_ref(), Some(&classes));
    let model_path = run_dir.join("model.safetensors");
    let model = open_checkpoint(&model_path, Role::Student).expect("model loads");
    assert_eq!(model.arch.form, Form::Fused);
    assert_eq!(model.arch.num_classes, 2);
    assert_eq!(model.class_names.as_ref(), Some(&classes));

    // classify runs the result (224, the test pipeline) and answers with a new class.
    let top1 = classify_demo_clip(&data, &model_path);
    assert!(classes.contains(&top1), "top-1 {top1} is not a new class");

    // A fused checkpoint cannot be fine-tuned: one line, exit 2, before any work.
    let refused_dir = root.join("refused");
    let mut args = train_args(&data, &model_path, &refused_dir);
    args.extend(["--epochs", "1"]);
    let out = kineto(&args);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(
        lines[0].contains("model.safetensors") && lines[0].contains("fused"),
        "{err}"
    );
    assert!(!refused_dir.join("settings.json").exists());
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn resume_after_ctrl_c_matches_an_uninterrupted_run() {
    let root = tmp("resume");
    let data = root.join("data");
    demo_data(&data, 2, 4, 4);
    let weights = fixture("pptsmv2/w8.pdparams");
    let seeded = |data: &Path, run_dir: &Path| {
        let mut args: Vec<String> = train_args(data, &weights, run_dir)
            .into_iter()
            .map(str::to_string)
            .collect();
        // Mixup on (the default): its draws must resume too.
        args.extend(["--epochs", "2", "--seed", "5", "--quiet"].map(str::to_string));
        args
    };

    let whole = root.join("whole");
    let out = kineto(
        &seeded(&data, &whole)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let reference = events(&whole);

    // The same run, started with paths relative to its folder, interrupted by SIGINT after its
    // first step, then resumed from another folder.
    let cut = root.join("cut");
    assert_eq!(
        interrupt_after_first_step_in(&root, &seeded(Path::new("data"), Path::new("cut"))),
        Some(130),
        "Ctrl-C exits 130"
    );
    assert!(cut.join("latest.state.json").exists(), "latest saved");
    let partial = events(&cut);
    assert!(
        of_kind(&partial, "done").is_empty() && of_kind(&partial, "epoch").len() < 2,
        "interrupted too late to test anything: {partial:?}"
    );

    // Options a resume takes from the run are refused, not ignored.
    let out = kineto(&["train", "--resume", s(&cut), "--epochs", "3", "--seed", "1"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("leave out --epochs, --seed"),
        "{}",
        text(&out.stderr)
    );
    // DATA names the run's data by what it points at (here through `..`).
    let elsewhere = root.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).expect("mkdir");
    let data_again = elsewhere.join("..").join("data");
    let out = kineto_in(
        &elsewhere,
        &[
            "--device",
            "cpu",
            "--quiet",
            "train",
            s(&data_again),
            "--resume",
            s(&cut),
        ],
    );
    assert!(out.status.success(), "resume: {}", text(&out.stderr));
    let resumed = events(&cut);
    assert_eq!(resumed.len(), reference.len(), "{resumed:?}");
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1e-12);
    for (r, e) in resumed.iter().zip(&reference) {
        assert_eq!(r["event"], e["event"]);
        let keys = e.as_object().expect("object");
        for (k, v) in keys {
            match (v.as_f64(), r[k].as_f64()) {
                (Some(a), Some(b)) => assert!(close(a, b), "{k}: {b} vs {a}\n{r}\n{e}"),
                _ if k == "terms" => {
                    let (a, b) = (v["ce"].as_f64(), r[k]["ce"].as_f64());
                    assert!(close(a.expect("ce"), b.expect("ce")), "ce: {r} vs {e}");
                }
                _ => assert_eq!(&r[k], v, "{k}"),
            }
        }
    }
    assert_eq!(of_kind(&resumed, "step").len(), 6);

    // A finished run is said to be complete, and its model is left alone.
    let model = std::fs::read(cut.join("model.safetensors")).expect("model");
    let out = kineto(&["--device", "cpu", "train", "--resume", s(&cut)]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("already complete"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read(cut.join("model.safetensors")).expect("model"),
        model
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn freeze_stages_keeps_the_prefix_bit_identical() {
    let root = tmp("freeze");
    let data = root.join("data");
    demo_data(&data, 2, 4, 6);
    let weights = fixture("pptsmv2/w8.pdparams");

    // Refusals first: one line, exit 2, nothing written.
    for extra in [
        &["--freeze-stages", "5"][..],
        &["--freeze-stages", "1", "--head-only"][..],
    ] {
        let refused = root.join("refused");
        let mut args = train_args(&data, &weights, &refused);
        if extra.contains(&"--head-only") {
            // --size is full fine-tuning only; keep the refusal about the freeze.
            args.retain(|a| *a != "--size" && *a != "64");
        }
        args.extend(extra);
        let out = kineto(&args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.contains("--freeze-stages"), "{err}");
        assert!(!refused.join("settings.json").exists());
    }

    let run_dir = root.join("run");
    let mut args = train_args(&data, &weights, &run_dir);
    args.extend([
        "--epochs",
        "1",
        "--no-mixup",
        "--freeze-stages",
        "2",
        "--lr",
        "0.05",
        "--quiet",
    ]);
    let out = kineto(&args);
    assert!(out.status.success(), "train failed: {}", text(&out.stderr));

    let settings: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run_dir.join("settings.json")).expect("settings.json"),
    )
    .expect("settings json");
    assert_eq!(settings["job"]["freeze_stages"], 2);
    let report = std::fs::read_to_string(run_dir.join("report.txt")).expect("report");
    assert!(
        report.starts_with("frozen (--freeze-stages 2): the stem and stages.0-1"),
        "{report}"
    );
    let resumed = kineto::train::checkpoints::resume_job(
        &run_dir,
        kineto::train::spec::TrainJob::new(&data, &weights).device,
    )
    .expect("resume_job");
    assert_eq!(resumed.freeze_stages, 2);

    let start = open_checkpoint(&weights, Role::Student).expect("start weights");
    let files = latest_files(&run_dir).expect("a committed latest checkpoint");
    let latest = open_checkpoint(&run_dir.join(&files.model), Role::Student).expect("latest");
    let (mut frozen, mut changed) = (0, Vec::new());
    for (key, tensor) in latest.store.iter() {
        let Some(original) = start.store.get(key) else {
            continue;
        };
        let prefix = key.starts_with("backbone.stem.")
            || key.starts_with("backbone.stages.0.")
            || key.starts_with("backbone.stages.1.");
        if prefix {
            assert_eq!(tensor.shape, original.shape, "{key}");
            let same = tensor
                .data
                .iter()
                .zip(&original.data)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{key} changed although frozen");
            frozen += 1;
        } else if tensor.data != original.data {
            changed.push(key.to_string());
        }
    }
    // Conv and BatchNorm weights, biases and running statistics of the stem and stages 0-1.
    assert!(frozen >= 40, "{frozen} frozen tensors compared");
    for key in [
        "backbone.stem.0.bn._mean",
        "backbone.stages.1.1.pw_conv.bn._variance",
    ] {
        assert!(latest.store.get(key).is_some(), "{key} missing");
    }
    for key in [
        "backbone.stages.2.0.pw_conv_1.conv.weight",
        "backbone.stages.2.0.pw_conv_1.bn._mean",
        "backbone.stages.3.1.pw_conv.conv.weight",
        "backbone.stages.3.1.pw_conv.bn._variance",
        "backbone.last_conv.weight",
    ] {
        assert!(changed.iter().any(|k| k == key), "{key} did not change");
    }
    // The fc was replaced for the 2 classes; it trained (its shape differs from the start).
    let fc = latest.store.get("backbone.fc.weight").expect("fc");
    assert_eq!(fc.shape, vec![1280, 2]);
    let _ = std::fs::remove_dir_all(&root);
}

/// What a checkpoint write leaves in `run_dir` when it is stopped: checkpoint files that the
/// committed state does not name, and temporary files.
fn write_leftovers(run_dir: &Path) -> Vec<String> {
    let named: Vec<String> = latest_files(run_dir)
        .map(|f| {
            [Some(f.model), Some(f.optim), f.teacher, f.teacher_optim]
                .into_iter()
                .flatten()
                .collect()
        })
        .unwrap_or_default();
    let Ok(entries) = std::fs::read_dir(run_dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            (n.starts_with("latest") && !named.contains(n) && n != "latest.state.json")
                || (n.starts_with(".latest") && n.contains(".tmp-"))
        })
        .collect()
}

/// Every tensor of two safetensors files, bit for bit.
fn same_tensors(a: &Path, b: &Path) {
    let (a, b) = (
        open_checkpoint(a, Role::Student).expect("model a"),
        open_checkpoint(b, Role::Student).expect("model b"),
    );
    assert_eq!(a.store.len(), b.store.len());
    for (key, t) in a.store.iter() {
        let u = b.store.get(key).unwrap_or_else(|| panic!("{key} missing"));
        assert_eq!(t.shape, u.shape, "{key}");
        let same = t
            .data
            .iter()
            .zip(&u.data)
            .all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{key} differs from the uninterrupted run's");
    }
}

/// kill -9 at seeded random instants (at least 20 times, some inside a checkpoint write),
/// resuming after each, ends with the same weights, bit for bit, as an uninterrupted run with
/// the same seed, and the same step and epoch events. A checkpoint follows every step
/// (`--checkpoint-minutes 0.0001`, with a 150 ms pause before each commit that widens the
/// window between a checkpoint's files and its state); the instants are a random number of
/// step events into each session plus a random delay up to about one step and its
/// checkpoint, so they fall in start-ups, steps, checkpoint writes and validations.
/// `KINETO_KILL_SEED` replays another sequence.
#[test]
fn kill_9_at_random_instants_resumes_to_the_same_weights() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::time::Instant;

    const KILLS: usize = 20;
    let started = Instant::now();
    let root = tmp("kill");
    let data = root.join("data");
    demo_data(&data, 2, 4, 8);
    let weights = fixture("pptsmv2/w8.pdparams");
    let every = ["--checkpoint-minutes", "0.0001"];
    for bad in ["0", "-1", "nan", "inf"] {
        let mut args = train_args(&data, &weights, &root);
        let flag = format!("--checkpoint-minutes={bad}");
        args.push(&flag);
        let out = kineto(&args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.contains("--checkpoint-minutes"), "{err}");
    }
    let new_run = |run_dir: &Path| -> Vec<String> {
        let mut args: Vec<String> = train_args(&data, &weights, run_dir)
            .into_iter()
            .map(str::to_string)
            .collect();
        args.extend(["--epochs", "4", "--seed", "9", "--quiet", "--json"].map(str::to_string));
        args.extend(every.map(str::to_string));
        args
    };
    let spawn = |args: &[String]| {
        Command::new(env!("CARGO_BIN_EXE_kineto"))
            .args(args)
            .env("XDG_RUNTIME_DIR", std::env::temp_dir())
            .env("KINETO_CHECKPOINT_COMMIT_DELAY_MS", "150")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn kineto")
    };

    // The uninterrupted run, timing its steps (each with its checkpoint).
    let whole = root.join("whole");
    let mut child = spawn(&new_run(&whole));
    let mut step_times = Vec::new();
    for line in BufReader::new(child.stdout.take().expect("stdout")).lines() {
        if line.expect("line").contains("\"event\":\"step\"") {
            step_times.push(Instant::now());
        }
    }
    assert!(
        child.wait().expect("wait").success(),
        "the uninterrupted run"
    );
    // Checkpoints by time (each step here), not only at the 4 epoch ends.
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(whole.join("latest.state.json")).expect("state"),
    )
    .expect("state json");
    let generations = state["generation"].as_u64().expect("generation");
    assert!(
        generations > 12,
        "{generations} checkpoints in 12 steps and 4 epochs"
    );
    let steps = step_times.len();
    assert_eq!(steps, 12);
    let period = step_times
        .windows(2)
        .map(|w| w[1] - w[0])
        .min()
        .expect("steps");

    let seed = std::env::var("KINETO_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_206u64);
    // The kill test's seeded instants.
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
    let cut = root.join("cut");
    let (mut kills, mut inside_writes, mut sessions, mut restarts) = (0, 0, 0, 0);
    loop {
        sessions += 1;
        assert!(
            sessions <= 4 * KILLS,
            "no progress after {sessions} sessions"
        );
        let args: Vec<String> = if cut.join("latest.state.json").exists() {
            let mut args: Vec<String> = ["--device", "cpu", "--quiet", "train", "--resume"]
                .map(str::to_string)
                .to_vec();
            args.push(s(&cut).to_string());
            args.extend(["--json"].iter().chain(&every).map(|a| a.to_string()));
            args
        } else {
            let mut args = new_run(&cut);
            args.push("--force".into());
            args
        };
        let before = write_leftovers(&cut);
        let mut child = spawn(&args);
        if kills == KILLS {
            let out = child.wait_with_output().expect("wait");
            assert!(out.status.success(), "the last resume failed");
            break;
        }
        // 0 (45 %), 1 (45 %) or 2 step events into the session, then a delay: half the time
        // within a quarter step period (the checkpoint write that follows a step event), else
        // up to one period. Under a step of progress per session, so the kills spread over
        // the run; near its end, when few steps are left for the kills to come, only 0 (kills
        // in start-ups and first steps).
        let done: usize = std::fs::read_to_string(cut.join("latest.state.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["step"].as_u64())
            .unwrap_or(0) as usize;
        let near_end = steps.saturating_sub(done) * 4 <= KILLS - kills;
        let wait_steps = match rand::Rng::random::<f64>(&mut rng) {
            _ if near_end => 0,
            u if u < 0.45 => 0,
            u if u < 0.9 => 1,
            _ => 2,
        };
        let span = if rand::Rng::random::<f64>(&mut rng) < 0.5 {
            0.25
        } else {
            1.0
        };
        let delay = period.mul_f64(span * rand::Rng::random::<f64>(&mut rng));
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut seen = 0;
        while seen < wait_steps {
            match lines.next() {
                Some(Ok(line)) if line.contains("\"event\":\"step\"") => seen += 1,
                Some(_) => {}
                None => break,
            }
        }
        std::thread::sleep(delay);
        let _ = child.kill();
        let status = child.wait().expect("wait");
        drop(lines);
        if status.success() {
            // It finished before its kill: start the run again (--force) and go on killing.
            std::fs::remove_file(cut.join("latest.state.json")).expect("restart");
            restarts += 1;
            continue;
        }
        kills += 1;
        if write_leftovers(&cut).iter().any(|n| !before.contains(n)) {
            inside_writes += 1;
        }
    }
    eprintln!(
        "kill -9: seed {seed}, {kills} kills ({inside_writes} inside a checkpoint write), \
         {sessions} sessions, {restarts} restarts, step + checkpoint {period:?}, {:.1} s in all",
        started.elapsed().as_secs_f64()
    );
    assert!(kills >= KILLS, "only {kills} kills: the run ended first");
    assert!(
        inside_writes >= 3,
        "only {inside_writes} kills inside a checkpoint write"
    );
    same_tensors(
        &whole.join("model.safetensors"),
        &cut.join("model.safetensors"),
    );
    let (a, b) = (
        latest_files(&whole).expect("whole"),
        latest_files(&cut).expect("cut"),
    );
    same_tensors(&whole.join(a.model), &cut.join(b.model));
    let numbers = |run: &Path| {
        events(run)
            .into_iter()
            .filter(|e| e["event"] == "step" || e["event"] == "epoch")
            .collect::<Vec<_>>()
    };
    let (reference, resumed) = (numbers(&whole), numbers(&cut));
    assert_eq!(resumed.len(), reference.len(), "{resumed:?}");
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-12);
    for (r, e) in resumed.iter().zip(&reference) {
        for (k, v) in e.as_object().expect("object") {
            match (v.as_f64(), r[k].as_f64()) {
                (Some(a), Some(b)) => assert!(close(a, b), "{k}: {b} vs {a}\n{r}\n{e}"),
                _ => assert_eq!(&r[k], v, "{k}"),
            }
        }
    }
    let _ = std::fs::remove_dir_all(&root);
}
