//! Helpers for the training tests: demo data, metrics.jsonl, Ctrl-C mid-run.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use kineto::checkpoint::{ParamStore, ParamTensor};
use kineto::train::demo::{DemoOptions, DemoSummary, generate};

/// The small PP-TSMv2 run the training tests share (with `--weights` the 8-frame fixture):
/// 8 frames at 64x64, batches of 2, a quarter of the clips held out for validation.
pub const SMALL_RUN: [&str; 8] = [
    "--frames",
    "8",
    "--size",
    "64",
    "--batch-size",
    "2",
    "--val-split",
    "0.25",
];

/// `classes` x `clips_per_class` one-second demo clips in `dir`.
pub fn demo_data(dir: &Path, classes: usize, clips_per_class: usize, seed: u64) -> DemoSummary {
    let opts = DemoOptions {
        classes,
        clips_per_class,
        seconds: 1.0,
        seed,
        force: false,
    };
    generate(dir, &opts, |_, _, _| {}).expect("demo data")
}

/// The events of a run's metrics.jsonl without timings and paths (which differ between runs).
pub fn events(run_dir: &Path) -> Vec<serde_json::Value> {
    let log = std::fs::read_to_string(run_dir.join("metrics.jsonl")).expect("metrics.jsonl");
    log.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json line"))
        .map(|mut v| {
            let o = v.as_object_mut().expect("object");
            for k in ["elapsed_s", "clips_per_s", "output", "run_dir"] {
                o.remove(k);
            }
            v
        })
        .collect()
}

/// The events of one kind ("step", "epoch", "done").
pub fn of_kind<'a>(events: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    events.iter().filter(|v| v["event"] == kind).collect()
}

/// Runs `kineto ARGS --json`, sends SIGINT (Ctrl-C) when the first step event appears, and
/// returns the exit code.
pub fn interrupt_after_first_step(args: &[String]) -> Option<i32> {
    interrupt_after_first_step_in(Path::new("."), args)
}

/// [`interrupt_after_first_step`] with `dir` as the working folder.
pub fn interrupt_after_first_step_in(dir: &Path, args: &[String]) -> Option<i32> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kineto"))
        .current_dir(dir)
        .args(args)
        .arg("--json")
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kineto");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut signalled = false;
    for line in lines.by_ref() {
        if line.expect("stdout line").contains("\"event\":\"step\"") {
            let kill = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status()
                .expect("kill");
            assert!(kill.success());
            signalled = true;
            break;
        }
    }
    assert!(signalled, "no step event before the end");
    lines.for_each(drop);
    child.wait().expect("wait").code()
}

/// `kineto classify` of the first `bars_scroll` clip of demo data with `weights` (8 frames,
/// CPU): the top-1 label.
pub fn classify_demo_clip(data: &Path, weights: &Path) -> String {
    let clip = std::fs::read_dir(data.join("bars_scroll"))
        .expect("class folder")
        .flatten()
        .map(|e| e.path())
        .min()
        .expect("a clip");
    let classified = super::kineto(&[
        "--device",
        "cpu",
        "classify",
        super::s(&clip),
        "--weights",
        super::s(weights),
        "--frames",
        "8",
        "--format",
        "json",
    ]);
    assert!(
        classified.status.success(),
        "classify: {}",
        super::stderr(&classified)
    );
    let records: serde_json::Value =
        serde_json::from_slice(&classified.stdout).expect("classify json");
    records[0]["top_k"][0]["label"]
        .as_str()
        .expect("top-1 label")
        .to_string()
}

/// A head-only model trained on `data` with `kineto train --head-only` on the 8-frame fixture
/// weights (CPU, seed 7, the run in `root/run`), written to `output`; `extra` adds flags.
pub fn train_head_only(data: &Path, root: &Path, output: &Path, epochs: u32, extra: &[&str]) {
    let epochs = epochs.to_string();
    let run = root.join("run");
    let weights = super::fixture("pptsmv2/w8.pdparams");
    let mut args = vec![
        "--device",
        "cpu",
        "train",
        super::s(data),
        "--head-only",
        "--weights",
        super::s(&weights),
        "--frames",
        "8",
        "--epochs",
        &epochs,
        "--seed",
        "7",
        "--run-dir",
        super::s(&run),
        "--output",
        super::s(output),
    ];
    args.extend_from_slice(extra);
    let trained = super::kineto(&args);
    assert!(
        trained.status.success(),
        "train: {}",
        super::stderr(&trained)
    );
}

/// The central finite difference of `loss` in element `i` of parameter `key`: a step of 1e-6
/// of the value (at least 1e-7) each way, divided by the f32 values actually stored.
pub fn central_difference(
    store: &ParamStore,
    key: &str,
    i: usize,
    loss: impl Fn(&ParamStore) -> f64,
) -> f64 {
    let param = store.get(key).expect("param");
    let v = param.data[i];
    let h = (v.abs() * 1e-6).max(1e-7);
    let shifted = |value: f32| {
        let mut data = param.data.clone();
        data[i] = value;
        let mut s = store.clone();
        s.insert(
            key,
            ParamTensor::new(param.shape.clone(), data).expect("shape"),
        );
        (value, loss(&s))
    };
    let ((up, l_up), (down, l_down)) = (shifted(v + h), shifted(v - h));
    (l_up - l_down) / (f64::from(up) - f64::from(down))
}
