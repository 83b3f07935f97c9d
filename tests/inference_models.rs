//! PaddleVideo inference models (`tools/export_model.py`'s `NAME.pdiparams` beside `NAME.json`
//! (Paddle 3) or `NAME.pdmodel` + `NAME.pdiparams.info` (Paddle 2)) as `--weights` and through
//! `kineto weights import`: the fixtures' logits within 1e-4, whichever way the parameters are
//! named (by `.info`, or by the graph alone). The models are made at test time from the
//! fixtures' weights by `tests/python/export_inference.py` with PaddleVideo's own code, under
//! `KINETO_PADDLE_PYTHON` (the venv `.ci/run` makes); without it the test fails.

// Test code: a failed unwrap/expect is the test failing (clippy.toml exempts only #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use kineto::checkpoint::file::{Format, open_checkpoint};
use kineto::checkpoint::keys::Role;
use kineto::model::{Form, ModelKind};
use kineto::npy::read_npy_f32;

const TOL: f32 = 1e-4;

/// Exports the models (`pir` or `legacy`) into `dir`.
fn export_models(dir: &Path, mode: &str) {
    let fixtures = fixture("");
    let out = python_script(
        "export_inference.py",
        [fixtures.as_os_str(), dir.as_os_str(), mode.as_ref()],
    );
    assert!(
        out.status.success(),
        "export_inference.py {mode}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `kineto logits` of `weights` on a fixture input, against a fixture's logits.
fn check_logits(weights: &str, extra: &[&str], input: &str, reference: &str, scratch: &Path) {
    let output = scratch.join("logits.npy");
    let input = fixture(input);
    let mut args = vec![
        "logits",
        "-q",
        "--device",
        "cpu",
        "--weights",
        weights,
        "--input",
        s(&input),
        "--output",
        s(&output),
    ];
    args.extend_from_slice(extra);
    let out = kineto(&args);
    assert!(out.status.success(), "kineto {args:?}: {}", stderr(&out));
    let ours = read_npy_f32(&output).unwrap();
    let reference = npy(reference);
    assert_eq!(ours.shape, reference.shape);
    let err = max_abs_diff(&ours.data, &reference.data);
    eprintln!("{weights}: max |kineto - PaddleVideo| = {err:.2e}");
    assert!(err <= TOL, "{weights}: max abs diff {err} > {TOL}");
}

fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
}

/// Runs kineto and expects exit 1 with one line naming `file` and saying `says`.
fn refused(args: &[&str], file: &Path, says: &str) {
    let out = kineto(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "kineto {args:?}: {err}");
    let line = err.trim_end();
    assert!(!line.contains('\n'), "one line expected: {err}");
    assert!(
        line.contains(s(file)) && line.contains(says),
        "kineto {args:?}: expected {} and {says:?} in {line}",
        file.display()
    );
}

#[test]
fn paddle3_inference_models_give_the_fixtures_logits() {
    let scratch = ScratchDir::new("inference-pir");
    let dir = scratch.join("models");
    export_models(&dir, "pir");
    let path = |name: &str| dir.join(name);

    let v2 = path("pptsmv2_8f.pdiparams");
    let ckpt = open_checkpoint(&v2, Role::Student).unwrap();
    assert_eq!(ckpt.format, Format::PaddleInference);
    assert_eq!(
        (ckpt.arch.model, ckpt.arch.form, ckpt.arch.attention),
        (ModelKind::PptsmV2, Form::Fused, false),
        "export_model.py's rep() merged the branches: the rest folds into the fused form"
    );
    assert_eq!(ckpt.graph_num_seg, Some(8));
    check_logits(
        s(&v2),
        &[],
        "video/example_8f_input.npy",
        "pptsmv2/logits224_8f.npy",
        &scratch,
    );
    // The 16-frame model with temporal attention, named by its .json.
    let att = path("pptsmv2_16f_att.json");
    let ckpt = open_checkpoint(&att, Role::Student).unwrap();
    assert_eq!((ckpt.arch.num_seg, ckpt.arch.attention), (Some(16), true));
    check_logits(
        s(&att),
        &[],
        "video/example_16f_input.npy",
        "pptsmv2/logits224_16f_att.npy",
        &scratch,
    );
    // A ResNet's inference model is its whole training form.
    let r50 = open_checkpoint(&path("pptsm_r50.pdiparams"), Role::Student).unwrap();
    assert_eq!((r50.arch.depth, r50.arch.form), (Some(50), Form::Training));
    let fixture_r50 = open_checkpoint(&fixture("pptsm_r50/w.pdparams"), Role::Student).unwrap();
    assert!(
        r50.store == fixture_r50.store,
        "the ResNet's inference model must hold exactly the .pdparams it came from, by key"
    );

    // `weights import` keeps one safetensors file, which gives the same logits.
    let cache = scratch.join("cache");
    let out = kineto(&[
        "weights",
        "import",
        s(&v2),
        "--name",
        "v2_inference",
        "--cache-dir",
        s(&cache),
    ]);
    assert!(out.status.success(), "weights import: {}", stderr(&out));
    check_logits(
        "v2_inference",
        &["--cache-dir", s(&cache), "--offline"],
        "video/example_8f_input.npy",
        "pptsmv2/logits224_8f.npy",
        &scratch,
    );

    // Bad input: one line naming the file, exit 1.
    let lone = scratch.join("lone");
    std::fs::create_dir_all(&lone).unwrap();
    copy(&v2, &lone.join("m.pdiparams"));
    refused(
        &["weights", "info", s(&lone.join("m.pdiparams"))],
        &lone.join("m.pdiparams"),
        "needs its graph beside it",
    );
    copy(&path("pptsmv2_8f.json"), &lone.join("g.pdmodel"));
    refused(
        &["weights", "info", s(&lone.join("g.pdmodel"))],
        &lone.join("g.pdmodel"),
        "g.pdiparams, are not beside it",
    );
    // A mismatched pair: PP-TSMv2's graph with the ResNet's weights.
    copy(&path("pptsmv2_8f.json"), &lone.join("mix.json"));
    copy(&path("pptsm_r50.pdiparams"), &lone.join("mix.pdiparams"));
    refused(
        &["weights", "info", s(&lone.join("mix.pdiparams"))],
        &lone.join("mix.pdiparams"),
        "does not belong to mix.json",
    );
    // A graph that is no Kineto model.
    refused(
        &["weights", "info", s(&path("linear.pdiparams"))],
        &path("linear.json"),
        "unknown graph",
    );
    // A truncated weights file.
    let bytes = std::fs::read(&v2).unwrap();
    std::fs::write(lone.join("cut.pdiparams"), &bytes[..bytes.len() / 2]).unwrap();
    copy(&path("pptsmv2_8f.json"), &lone.join("cut.json"));
    refused(
        &["weights", "info", s(&lone.join("cut.pdiparams"))],
        &lone.join("cut.pdiparams"),
        "the file ends inside it",
    );
}

#[test]
fn paddle2_inference_models_are_named_by_info_or_by_graph() {
    let scratch = ScratchDir::new("inference-legacy");
    let dir = scratch.join("models");
    export_models(&dir, "legacy");
    let with_info: PathBuf = dir.join("pptsm_r50.pdiparams");
    assert!(dir.join("pptsm_r50.pdiparams.info").is_file());
    check_logits(
        s(&with_info),
        &[],
        "video/example_8f_input.npy",
        "pptsm_r50/logits224_example8f.npy",
        &scratch,
    );
    let named_by_info = open_checkpoint(&with_info, Role::Student).unwrap();

    // Without the .info, the graph's structure names the parameters: the same store.
    let bare = scratch.join("bare");
    std::fs::create_dir_all(&bare).unwrap();
    copy(&with_info, &bare.join("pptsm_r50.pdiparams"));
    copy(
        &dir.join("pptsm_r50.pdmodel"),
        &bare.join("pptsm_r50.pdmodel"),
    );
    let named_by_graph = open_checkpoint(&bare.join("pptsm_r50.pdmodel"), Role::Student).unwrap();
    assert!(named_by_info.store == named_by_graph.store);
    let fixture_r50 = open_checkpoint(&fixture("pptsm_r50/w.pdparams"), Role::Student).unwrap();
    assert!(named_by_graph.store == fixture_r50.store);
    assert_eq!(named_by_graph.graph_num_seg, Some(8));
}
