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
