//! Guards of the command line that protect the user's time and terminal:
//! - an `--output` that cannot be written is refused before any work (before even the weights
//!   are read), with exit 2 and one line naming the file;
//! - `--top-k 0` is refused with exit 2 (it used to print "no prediction" and exit 0);
//! - output piped into a reader that stops (`kineto weights list | head -1`) ends quietly,
//!   without a panic (exit 101 before);
//! - the window without a display says so in one line (not a path inside winit's sources);
//! - an error says its cause once (it said "not a pickle (...): not a pickle (...)");
//! - a mistyped subcommand is answered with the nearest one (it said "clasify: no such file").

// Test code: a failed unwrap/expect is the test failing (clippy.toml exempts only #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;
use std::process::{Command, Stdio};

use common::{kineto, s, stderr};

#[test]
fn an_unwritable_output_is_refused_before_any_work() {
    let dir = common::ScratchDir::new("guards-output");
    let clip = dir.join("clip.mp4");
    std::fs::write(&clip, b"not read: the output check comes first").expect("write");
    let output = dir.join("missing-folder").join("out.csv");
    let weights = dir.join("no-such-weights.pdparams");
    for command in ["classify", "timeline"] {
        let out = kineto(&[
            command,
            s(&clip),
            "--weights",
            s(&weights),
            "--offline",
            "--output",
            s(&output),
        ]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{command}: {err}");
        assert!(
            err.contains(s(&output)) && err.contains("does not exist"),
            "{command}: {err}"
        );
        assert!(!err.contains("no-such-weights"), "{command}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{command}: {err}");
    }
    // A folder where the file should be.
    let out = kineto(&["classify", s(&clip), "--output", s(&dir)]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("is a folder"), "{}", stderr(&out));
}

#[test]
fn top_k_zero_is_refused() {
    for command in ["classify", "timeline"] {
        let out = kineto(&[command, "clip.mp4", "--top-k", "0"]);
        assert_eq!(out.status.code(), Some(2), "{command}: {}", stderr(&out));
        assert!(stderr(&out).contains("--top-k"), "{}", stderr(&out));
    }
}

#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    let dir = common::ScratchDir::new("guards-pipe");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kineto"))
        .args(["weights", "list", "--cache-dir", s(&dir)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kineto");
    // The reader goes away before anything is written.
    drop(child.stdout.take());
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read stderr");
    let status = child.wait().expect("wait");
    assert!(!err.contains("panicked"), "{err}");
    assert_ne!(status.code(), Some(101), "{err}");
}

#[test]
fn no_display_is_said_in_words() {
    let out = Command::new(env!("CARGO_BIN_EXE_kineto"))
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .expect("run kineto");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no display"), "{err}");
    assert!(!err.contains(".cargo"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn an_error_says_its_cause_once() {
    let dir = common::ScratchDir::new("guards-once");
    let text = dir.join("notes.pdparams");
    std::fs::write(&text, b"just some text, not a checkpoint\n").expect("write");
    for args in [
        vec!["weights", "info", s(&text)],
        vec![
            "export",
            "--weights",
            s(&text),
            "--output",
            "unused.safetensors",
        ],
    ] {
        let out = kineto(&args);
        let err = stderr(&out);
        assert_ne!(out.status.code(), Some(0), "{args:?}: {err}");
        let line = err.trim();
        assert_eq!(line.lines().count(), 1, "{args:?}: {err}");
        // No part of the message comes twice.
        let parts: Vec<&str> = line.split(": ").filter(|p| p.len() > 8).collect();
        for (i, part) in parts.iter().enumerate() {
            assert!(
                !parts[i + 1..].contains(part),
                "{args:?}: repeated {part:?} in {line}"
            );
        }
    }
}

#[test]
fn a_mistyped_subcommand_gets_the_nearest_one() {
    let out = kineto(&["clasify"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("did you mean `kineto classify`"), "{err}");
    let out = kineto(&["no-such-clip.mp4"]);
    assert!(!stderr(&out).contains("did you mean"), "{}", stderr(&out));
}

/// The same bad weights file gives the same exit code and message in every command (exit 1 from
/// `weights info`, `logits`, `export`; exit 2 from `classify`, `timeline`, before), in words.
#[test]
fn one_exit_code_rule_for_a_bad_weights_file_across_commands() {
    let dir = common::ScratchDir::new("guards-exit-rule");
    let text = dir.join("notes.pdparams");
    std::fs::write(&text, b"just some text, not a checkpoint\n").expect("write");
    let fixtures = common::fixture("");
    let clip = fixtures.join("video/example.avi");
    let input = fixtures.join("video/example_8f_input.npy");
    let data = dir.join("data");
    for class in ["a", "b"] {
        std::fs::create_dir_all(data.join(class)).expect("mkdir");
        std::fs::copy(&clip, data.join(class).join("clip.avi")).expect("copy");
    }
    let w = s(&text);
    let out_npy = dir.join("out.npy");
    let out_st = dir.join("out.safetensors");
    let run = dir.join("run");
    let commands: Vec<Vec<&str>> = vec![
        vec!["weights", "info", w],
        vec!["weights", "import", w, "--cache-dir", s(&dir)],
        vec!["export", "--weights", w, "--output", s(&out_st)],
        vec![
            "logits",
            "--weights",
            w,
            "--input",
            s(&input),
            "--output",
            s(&out_npy),
        ],
        vec!["classify", "--weights", w, s(&clip)],
        vec!["timeline", "--weights", w, s(&clip)],
        vec!["bench", "--weights", w, "--runs", "1", "--warmup", "0"],
        vec!["train", "--weights", w, s(&data), "--run-dir", s(&run)],
    ];
    for args in commands {
        let mut full = vec!["--device", "cpu"];
        full.extend(&args);
        let out = kineto(&full);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.contains(
                "notes.pdparams: not a PaddlePaddle checkpoint (.pdparams) or safetensors file"
            ),
            "{args:?}: {err}"
        );
        assert!(!err.contains("os error"), "{args:?}: {err}");
    }
}

#[test]
fn messages_say_what_is_wrong_in_the_users_words() {
    let dir = common::ScratchDir::new("guards-words");
    let w8 = common::fixture("pptsmv2/w8.pdparams");
    let clip = common::fixture("video/example.avi");
    // A missing label file: once, without the system's "(os error 2)".
    let out = kineto(&[
        "classify",
        "--weights",
        s(&w8),
        "--labels",
        "nosuch.txt",
        s(&clip),
    ]);
    let err = stderr(&out);
    assert!(
        err.contains("nosuch.txt: cannot read: no such file or folder")
            && !err.contains("os error"),
        "{err}"
    );
    // A label file given, of the wrong length: no "(pass --labels FILE)" to someone who did.
    let three = dir.join("three.txt");
    std::fs::write(&three, "a\nb\nc\n").expect("write");
    let out = kineto(&[
        "classify",
        "--weights",
        s(&w8),
        "--labels",
        s(&three),
        s(&clip),
    ]);
    let err = stderr(&out);
    assert!(
        err.contains("3 labels, but the model has 400 classes"),
        "{err}"
    );
    assert!(!err.contains("pass --labels"), "{err}");
    // An unknown weights name: the nearest catalog name.
    let out = kineto(&[
        "classify",
        "--weights",
        "pptsmv2_k400_8f_dml_studnt",
        s(&clip),
    ]);
    let err = stderr(&out);
    assert!(
        err.contains("did you mean PPTSMv2_k400_8f_dml_student?"),
        "{err}"
    );
    // timeline writes json or csv: its help does not offer table, and clap refuses it.
    let help = kineto(&["timeline", "--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("json or csv") && !help.contains("table,"),
        "{help}"
    );
    let out = kineto(&["timeline", s(&clip), "--format", "table"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // Spans in seconds are bounded (1e-9 built ~10^10 windows and never answered).
    let out = kineto(&["timeline", s(&clip), "--stride-s", "1e-9"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--stride-s"), "{}", stderr(&out));
    // A checkpoint whose classifier has no classes is refused when read (it reached a
    // `chunks(0)` panic in the inference worker).
    let mut store = kineto::checkpoint::pdparams::read_pdparams(&w8).expect("w8");
    store.insert(
        "backbone.fc.weight",
        kineto::checkpoint::ParamTensor {
            shape: vec![1280, 0],
            data: vec![],
        },
    );
    store.insert(
        "backbone.fc.bias",
        kineto::checkpoint::ParamTensor {
            shape: vec![0],
            data: vec![],
        },
    );
    let zero = dir.join("zero.pdparams");
    kineto::checkpoint::pdparams::write_pdparams(&store, &zero).expect("write");
    let out = kineto(&["weights", "info", s(&zero)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("at least one class"),
        "{}",
        stderr(&out)
    );
}

/// Mesa's Vulkan probe printed `error: XDG_RUNTIME_DIR is invalid or not set` twice on every
/// `--device auto` run without a desktop session, which reads as Kineto's error.
#[test]
fn the_gpu_probe_is_quiet_without_a_desktop_session() {
    let dir = common::ScratchDir::new("guards-probe");
    let out = Command::new(env!("CARGO_BIN_EXE_kineto"))
        .args(["--device", "auto", "logits", "--weights"])
        .arg(common::fixture("pptsmv2/w8.pdparams"))
        .arg("--input")
        .arg(common::fixture("video/example_8f_input.npy"))
        .arg("--output")
        .arg(dir.join("out.npy"))
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .expect("run kineto");
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("XDG_RUNTIME_DIR"), "{err}");
}

/// README's offline quick start, as written: import a checkpoint you have under the catalog's
/// default name, then classify offline with no `--weights`, and `weights list` shows it.
#[test]
fn the_readmes_offline_quick_start_works_as_written() {
    let dir = common::ScratchDir::new("guards-quick-start");
    // A stand-in for ppTSMv2_k400_16f_dml.pdparams: the fixture's 16-frame attention model.
    let mut store =
        kineto::checkpoint::pdparams::read_pdparams(&common::fixture("pptsmv2/w8.pdparams"))
            .expect("w8");
    let extra = kineto::checkpoint::pdparams::read_pdparams(&common::fixture(
        "pptsmv2/att16_extra.pdparams",
    ))
    .expect("att16");
    for (key, tensor) in extra.iter() {
        store.insert(key, tensor.clone());
    }
    let mine = dir.join("ppTSMv2_k400_16f_dml.pdparams");
    kineto::checkpoint::pdparams::write_pdparams(&store, &mine).expect("write");
    let cache = dir.join("cache");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_kineto"))
            .args(args)
            .env("KINETO_CACHE_DIR", &cache)
            .env("XDG_RUNTIME_DIR", std::env::temp_dir())
            .output()
            .expect("run kineto")
    };
    let out = run(&[
        "weights",
        "import",
        s(&mine),
        "--name",
        "PPTSMv2_k400_16f_dml_student",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let clip = common::fixture("video/example.avi");
    let out = run(&[
        "--device",
        "cpu",
        "classify",
        s(&clip),
        "--offline",
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let records: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(records[0]["status"], "ok", "{records}");
    assert_eq!(
        records[0]["frames"], 16,
        "the default model is the 16-frame one"
    );
    let out = run(&["weights", "list", "--json"]);
    let listing: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let entry = (listing.as_array().expect("rows").iter())
        .find(|r| r["name"] == "PPTSMv2_k400_16f_dml_student")
        .expect("the default model is listed");
    assert_eq!(entry["cached"], true, "{entry}");
}
