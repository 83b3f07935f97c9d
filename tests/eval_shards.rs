//! `kineto eval` and sharded `classify` end to end on demo data (3 classes x 3 one-second
//! clips), CPU:
//! - eval of a head-only model trained for one epoch (not every clip right): its top-1 is what
//!   `classify` and the class folders give; a list file, UCF-101's split files (with and
//!   without ids) and the class folders give the same report; a broken clip is counted and
//!   listed (exit 1), the others' numbers unchanged;
//! - three shards (one by the CLI, one by the Slurm script run with bash and
//!   SLURM_ARRAY_TASK_ID, one by the Kubernetes manifest's script run with sh and
//!   JOB_COMPLETION_INDEX; `sbatch`/`kubectl` are not needed) merged equal one run: same
//!   records, same order;
//! - a run killed with SIGKILL midway, its file given a torn last line, resumed: no duplicate,
//!   no missing record;
//! - the refusals of --shard and --resume (exit 2, one line).

// Test code: a failed unwrap/expect is the test failing (clippy.toml exempts only #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::train::{demo_data, train_head_only};
use common::{fixture, kineto, s, stderr};
use serde_json::Value;

const CLASSES: [&str; 3] = ["ball_wavy", "bars_scroll", "zoneplate_rings"];

fn scratch(tag: &str) -> common::ScratchDir {
    common::ScratchDir::new(&format!("evsh-{tag}"))
}

fn w8() -> PathBuf {
    fixture("pptsmv2/w8.pdparams")
}

/// The demo clips of `data`, sorted by path (the order classify prints).
fn clips(data: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    for class in CLASSES {
        for entry in std::fs::read_dir(data.join(class)).unwrap() {
            all.push(entry.unwrap().path());
        }
    }
    all.sort();
    all
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Records without their timings (which differ between runs).
fn untimed(records: &Value) -> Vec<Value> {
    records
        .as_array()
        .expect("array")
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.as_object_mut().unwrap().remove("timings_ms");
            r
        })
        .collect()
}

fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn eval_matches_classify_and_reads_folders_lists_and_ucf_splits() {
    let root = scratch("eval");
    let data = root.join("data");
    demo_data(&data, 3, 3, 3);
    let model = root.join("head.safetensors");
    train_head_only(&data, &root, &model, 1, &["-q", "--val-split", "0"]);
    let eval = |data: &Path, extra: &[&str]| {
        let mut args = vec![
            "-q",
            "--device",
            "cpu",
            "eval",
            s(data),
            "--weights",
            s(&model),
            "--format",
            "json",
        ];
        args.extend(extra);
        kineto(&args)
    };

    let per_clip = root.join("per_clip.csv");
    let folders = eval(&data, &["--output", s(&per_clip)]);
    assert!(folders.status.success(), "eval: {}", stderr(&folders));
    let report = json(&folders);
    assert_eq!(report["clips"], 9);
    assert_eq!(report["errors"], 0);
    assert_eq!(report["top5_k"], 3, "3 classes: top-5 is top-3");

    // classify + the class folders give the same top-1, clip by clip.
    let classified = kineto(&[
        "-q",
        "--device",
        "cpu",
        "classify",
        s(&data),
        "--weights",
        s(&model),
        "--format",
        "json",
    ]);
    assert!(classified.status.success(), "{}", stderr(&classified));
    let records = json(&classified);
    let records = records.as_array().unwrap();
    let mut right = 0;
    let csv = std::fs::read_to_string(&per_clip).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 9);
    for (record, row) in records.iter().zip(&rows) {
        let path = Path::new(record["path"].as_str().unwrap());
        let truth = path
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        let predicted = record["top_k"][0]["label"].as_str().unwrap();
        right += usize::from(predicted == truth);
        let score = record["top_k"][0]["score"].as_f64().unwrap();
        let cells: Vec<&str> = row.split(',').collect();
        let correct = (predicted == truth).to_string();
        let want = [s(path), truth, predicted, cells[3], correct.as_str(), ""];
        assert_eq!(cells, want, "{row}");
        assert!(
            (cells[3].parse::<f64>().unwrap() - score).abs() < 2e-6,
            "{row}"
        );
    }
    let top1 = report["top1"].as_f64().unwrap();
    assert_eq!(top1, right as f64 / 9.0);
    assert!(
        right < 9 && right > 0,
        "one epoch should leave some clips wrong, else the comparison is weak: {right}/9"
    );
    let per_class_right: u64 = report["per_class"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["correct"].as_u64().unwrap())
        .sum();
    assert_eq!(per_class_right, right as u64);

    // A PaddleVideo list file (0-based ids, paths relative to it) gives the same report.
    let mut list = String::new();
    let mut trainlist = String::new();
    let mut testlist = String::new();
    for clip in clips(&data) {
        let rel = clip.strip_prefix(&data).unwrap().to_str().unwrap();
        let class = rel.split('/').next().unwrap();
        let id = CLASSES.iter().position(|c| *c == class).unwrap();
        list.push_str(&format!("data/{rel} {id}\n"));
        trainlist.push_str(&format!("{rel} {}\n", id + 1));
        testlist.push_str(&format!("{rel}\r\n"));
    }
    let list_file = root.join("test.txt");
    std::fs::write(&list_file, &list).unwrap();
    let listed = eval(&list_file, &[]);
    assert!(listed.status.success(), "eval list: {}", stderr(&listed));
    assert_eq!(json(&listed), report, "list file vs class folders");

    // UCF-101's split files: classInd.txt (1-based), trainlist with ids, testlist without,
    // paths relative to --root.
    let splits = root.join("ucfTrainTestlist");
    std::fs::create_dir_all(&splits).unwrap();
    let index = splits.join("classInd.txt");
    let index_text: String = CLASSES
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{} {c}\n", i + 1))
        .collect();
    std::fs::write(&index, index_text).unwrap();
    for (name, text) in [
        ("trainlist01.txt", &trainlist),
        ("testlist01.txt", &testlist),
    ] {
        let split = splits.join(name);
        std::fs::write(&split, text).unwrap();
        let ucf = eval(&split, &["--class-index", s(&index), "--root", s(&data)]);
        assert!(ucf.status.success(), "eval {name}: {}", stderr(&ucf));
        assert_eq!(json(&ucf), report, "{name} vs class folders");
    }

    // A broken clip is counted and listed, not scored: exit 1, the numbers of the others.
    std::fs::write(root.join("data/broken.mp4"), b"not a video").unwrap();
    std::fs::write(&list_file, format!("{list}data/broken.mp4 1\n")).unwrap();
    let broken = eval(&list_file, &[]);
    assert_eq!(broken.status.code(), Some(1), "{}", stderr(&broken));
    assert!(stderr(&broken).contains("1 of 10 clips could not be classified"));
    let with_broken = json(&broken);
    assert_eq!(with_broken["errors"], 1);
    assert_eq!(
        with_broken["broken"][0]["path"],
        s(&root.join("data/broken.mp4"))
    );
    for key in [
        "clips",
        "top1",
        "top5",
        "mean_class_top1",
        "confusion",
        "per_class",
    ] {
        assert_eq!(with_broken[key], report[key], "{key}");
    }
    // The table names top-5 for what it is, and lists the broken clip.
    let table = kineto(&[
        "-q",
        "--device",
        "cpu",
        "eval",
        s(&list_file),
        "--weights",
        s(&model),
    ]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("top-3 (of 3 classes)"), "{text}");
    assert!(text.contains("broken.mp4: "), "{text}");

    // A class the model lacks, and --class-index on class folders: one line, exit 2.
    std::fs::write(&index, "1 ball_wavy\n2 bars_scroll\n3 zoneplate_ringz\n").unwrap();
    let split = splits.join("trainlist01.txt");
    let unknown = eval(&split, &["--class-index", s(&index), "--root", s(&data)]);
    assert_eq!(unknown.status.code(), Some(2), "{}", stderr(&unknown));
    assert!(
        stderr(&unknown).contains("class 'zoneplate_ringz' is not a class of the model"),
        "{}",
        stderr(&unknown)
    );
    let misuse = eval(&data, &["--class-index", s(&index)]);
    assert_eq!(misuse.status.code(), Some(2), "{}", stderr(&misuse));
    assert_eq!(stderr(&misuse).lines().count(), 1, "{}", stderr(&misuse));
}

/// Runs a cluster script with `shell` and the environment the scheduler would give it.
fn run_script(shell: &str, script: &str, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(shell);
    cmd.args(["-c", script])
        .env("KINETO", env!("CARGO_BIN_EXE_kineto"))
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .env_remove("SLURM_CPUS_PER_TASK");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run the script")
}

/// The shell script of the Indexed Job manifest: the block scalar under `args: - |`.
fn manifest_script(yaml: &str) -> String {
    let lines: Vec<&str> = yaml.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim() == "- |")
        .expect("a `- |` block in the manifest")
        + 1;
    let indent = lines[start].len() - lines[start].trim_start().len();
    lines[start..]
        .iter()
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() >= indent)
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn three_shards_from_the_cli_slurm_and_kubernetes_merge_into_one_run() {
    let root = scratch("shards");
    let data = root.join("data");
    demo_data(&data, 3, 3, 5);
    let weights = w8();
    let classify = |extra: &[&str]| {
        let mut args = vec![
            "-q",
            "--device",
            "cpu",
            "--offline",
            "classify",
            s(&data),
            "--weights",
            s(&weights),
        ];
        args.extend(extra);
        kineto(&args)
    };
    let whole = classify(&["--format", "json"]);
    assert!(whole.status.success(), "{}", stderr(&whole));
    let whole = untimed(&json(&whole));
    assert_eq!(whole.len(), 9);

    let out = root.join("out");
    std::fs::create_dir_all(&out).unwrap();
    // Shard 0 by hand, as a JSON array (merge reads both shapes).
    let shard0 = out.join("shard-0.json");
    let first = classify(&["--shard", "0/3", "--output", s(&shard0)]);
    assert!(first.status.success(), "{}", stderr(&first));
    // Shard 1: the Slurm array script, as a task of `--array=0-2` would run it.
    let cluster = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/cluster");
    let sbatch = std::fs::read_to_string(cluster.join("kineto-array.sbatch")).unwrap();
    assert!(sbatch.contains("#SBATCH --array=0-"), "an array job");
    let common_env = [
        ("VIDEOS", s(&data)),
        ("OUT_DIR", s(&out)),
        ("WEIGHTS", s(&weights)),
    ];
    let mut env = common_env.to_vec();
    env.extend([
        ("SLURM_ARRAY_TASK_ID", "1"),
        ("SLURM_ARRAY_TASK_COUNT", "3"),
    ]);
    let slurm = run_script("bash", &sbatch, &env);
    assert!(slurm.status.success(), "slurm script: {}", stderr(&slurm));
    // Shard 2: the Indexed Job's script with the index Kubernetes sets.
    let yaml = std::fs::read_to_string(cluster.join("kineto-indexed-job.yaml")).unwrap();
    assert!(yaml.contains("completionMode: Indexed"));
    let mut env = common_env.to_vec();
    env.extend([("JOB_COMPLETION_INDEX", "2"), ("SHARDS", "3")]);
    let k8s = run_script("sh", &manifest_script(&yaml), &env);
    assert!(k8s.status.success(), "manifest script: {}", stderr(&k8s));

    let shard1 = out.join("shard-1.jsonl");
    let shard2 = out.join("shard-2.jsonl");
    let sizes: Vec<usize> = [jsonl(&shard1).len(), jsonl(&shard2).len()].to_vec();
    assert_eq!(sizes, [3, 3]);
    let merged = kineto(&["merge", s(&shard2), s(&shard0), s(&shard1)]);
    assert!(merged.status.success(), "{}", stderr(&merged));
    assert_eq!(untimed(&json(&merged)), whole, "3 shards merged vs one run");
    // CSV and an --output file too.
    let csv = root.join("all.csv");
    let merged = kineto(&[
        "-q",
        "merge",
        s(&shard0),
        s(&shard1),
        s(&shard2),
        "-o",
        s(&csv),
    ]);
    assert!(merged.status.success(), "{}", stderr(&merged));
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.starts_with("path,status,label"), "{text}");
    assert_eq!(text.lines().count(), 10);
}

#[test]
fn a_run_killed_with_sigkill_resumes_without_duplicates_or_gaps() {
    let root = scratch("resume");
    let data = root.join("data");
    demo_data(&data, 3, 3, 9);
    let expected: Vec<String> = clips(&data)
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let output = root.join("out.jsonl");
    let weights = w8();
    let args = [
        "--device",
        "cpu",
        "--threads",
        "1",
        "classify",
        s(&data),
        "--weights",
        s(&weights),
        "--format",
        "jsonl",
        "--output",
        s(&output),
        "--resume",
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_kineto"))
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once the first record is on disk.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(120) {
        let text = std::fs::read_to_string(&output).unwrap_or_default();
        if text.lines().count() >= 1 || child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    child.wait().unwrap();
    let before = jsonl_complete_lines(&output);
    eprintln!(
        "killed: {killed}, {} of 9 records on disk at the kill",
        before
    );
    // Whatever the kill left, the last line is torn as a kill mid-write would leave it.
    let torn = format!("{{\"path\":\"{}\",\"status\":\"o", expected[8]);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&output)
        .unwrap();
    std::io::Write::write_all(&mut file, torn.as_bytes()).unwrap();
    drop(file);

    let resumed = kineto(&args);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert!(
        stderr(&resumed).contains("was cut short"),
        "{}",
        stderr(&resumed)
    );
    let records = jsonl(&output);
    let paths: Vec<String> = records
        .iter()
        .map(|r| r["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(paths, expected, "every clip once, in order");
    assert!(records.iter().all(|r| r["status"] == "ok"));
    let unique: HashSet<&String> = paths.iter().collect();
    assert_eq!(unique.len(), 9);

    // A finished run resumed again has nothing to do and leaves the file alone.
    let text = std::fs::read_to_string(&output).unwrap();
    let again = kineto(&args);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("0 to classify"),
        "{}",
        stderr(&again)
    );
    assert_eq!(std::fs::read_to_string(&output).unwrap(), text);
}

/// Lines of a JSON-lines file that end in a newline.
fn jsonl_complete_lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .matches('\n')
        .count()
}

#[test]
fn shard_and_resume_refusals_are_one_line_and_exit_2() {
    let root = scratch("refuse");
    let clip = root.join("a.mp4");
    std::fs::write(&clip, b"x").unwrap();
    for (extra, words) in [
        (&["--shard", "3/3"][..], "shards are numbered 0 to 2"),
        (&["--shard", "1/0"][..], "must be at least 1"),
        (&["--shard", "two"][..], "expected I/N"),
        (&["--resume"][..], "--resume"),
        (
            &["--resume", "--format", "json", "-o", "x.json"][..],
            "--resume",
        ),
        (&["--format", "yaml"][..], "table, json, csv or jsonl"),
    ] {
        let mut args = vec!["classify", s(&clip)];
        args.extend(extra);
        let out = kineto(&args);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(words), "{extra:?}: {}", stderr(&out));
    }
    let out = kineto(&["merge", s(&clip)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
}
