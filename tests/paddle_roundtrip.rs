//! The `.pdparams` Kineto exports loads in PaddlePaddle itself and equals the source arrays bit
//! for bit: `tests/python/check_pdparams.py` run with the interpreter of a venv that has
//! `paddlepaddle` (`KINETO_PADDLE_PYTHON`; `.ci/run` makes it). Without it the test fails.

// Test code: a failed unwrap/expect is the test failing (clippy.toml exempts only #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::fixture;
use kineto::checkpoint::pdparams::{read_pdparams, write_pdparams};

fn kineto(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_kineto"))
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .env(
            "KINETO_CACHE_DIR",
            std::env::temp_dir().join("kineto-paddle-test-cache"),
        )
        .output()
        .expect("run kineto");
    assert!(
        out.status.success(),
        "kineto {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn check(export: &Path, references: &[&Path]) {
    let mut args = vec![export.as_os_str()];
    args.extend(references.iter().map(|r| r.as_os_str()));
    let out = common::python_script("check_pdparams.py", args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "check_pdparams.py failed for {}:\n{stdout}\n{stderr}",
        export.display()
    );
    assert!(stdout.contains("; 0 differences"), "{stdout}");
}

fn tmp() -> common::ScratchDir {
    common::ScratchDir::new("paddle")
}

#[test]
fn paddle_loads_our_exports_bit_for_bit() {
    let dir = tmp();
    let s = |p: &Path| p.to_str().expect("utf-8").to_string();

    // PP-TSMv2: pdparams -> safetensors -> pdparams.
    let w8 = fixture("pptsmv2/w8.pdparams");
    let st = dir.join("w8.safetensors");
    let back = dir.join("w8.pdparams");
    kineto(&["export", "--weights", &s(&w8), "--output", &s(&st)]);
    kineto(&["export", "--weights", &s(&st), "--output", &s(&back)]);
    check(&back, &[&w8]);

    // The 16f attention model (w8 + att16_extra), straight to .pdparams.
    let att = fixture("pptsmv2/att16_extra.pdparams");
    let mut merged = read_pdparams(&w8).expect("w8");
    for (k, t) in read_pdparams(&att).expect("att").iter() {
        merged.insert(k, t.clone());
    }
    let merged_path = dir.join("att16_src.pdparams");
    write_pdparams(&merged, &merged_path).expect("write");
    let att_st = dir.join("att16.safetensors");
    let att_back = dir.join("att16.pdparams");
    kineto(&[
        "export",
        "--weights",
        &s(&merged_path),
        "--output",
        &s(&att_st),
    ]);
    kineto(&[
        "export",
        "--weights",
        &s(&att_st),
        "--output",
        &s(&att_back),
    ]);
    check(&att_back, &[&w8, &att]);

    // PP-TSM R50 (backbone.* and head.*).
    let r50 = fixture("pptsm_r50/w.pdparams");
    let r50_st = dir.join("r50.safetensors");
    let r50_back = dir.join("r50.pdparams");
    kineto(&["export", "--weights", &s(&r50), "--output", &s(&r50_st)]);
    kineto(&[
        "export",
        "--weights",
        &s(&r50_st),
        "--output",
        &s(&r50_back),
    ]);
    check(&r50_back, &[&r50]);
    let _ = std::fs::remove_dir_all(&dir);
}
