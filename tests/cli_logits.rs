//! `kineto logits` and `kineto weights info` end to end: the real binary on fixture weights,
//! and every kind of broken checkpoint giving one line, the file's name, and exit code 1.

// Test code: a failed unwrap/expect is the test failing (clippy.toml exempts only #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use kineto::checkpoint::pdparams::read_pdparams;
use kineto::checkpoint::pdparams::write_pdparams;
use kineto::checkpoint::{ParamStore, ParamTensor};
use kineto::npy::{read_npy_f32, write_npy_f32};

fn tmp() -> common::ScratchDir {
    common::ScratchDir::new(&format!("cli-{}", rand_suffix()))
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Every instruction-set cap gives the fixture's logits: a CPU with AVX-512 runs the 16-lane
/// kernels by default, and `KINETO_CPU_SIMD` makes it run the AVX2 and the portable ones too
/// (a cap above what the CPU has changes nothing).
#[test]
fn logits_match_the_fixture_on_cpu_with_every_kernel_width() {
    let dir = tmp();
    for cap in ["avx512", "avx2", "portable"] {
        let out_path = dir.join(format!("logits-{cap}.npy"));
        let out = Command::new(env!("CARGO_BIN_EXE_kineto"))
            .args([
                "logits",
                "--device",
                "cpu",
                "--weights",
                s(&fixture("pptsmv2/w8.pdparams")),
                "--input",
                s(&fixture("video/example_8f_input.npy")),
                "--output",
                s(&out_path),
            ])
            .env("XDG_RUNTIME_DIR", std::env::temp_dir())
            .env("KINETO_CPU_SIMD", cap)
            .output()
            .expect("run kineto");
        assert!(out.status.success(), "{cap}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "logits prints nothing on stdout");
        let ours = read_npy_f32(&out_path).expect("output npy");
        assert_eq!(ours.shape, vec![1, 400]);
        let d = max_abs_diff(&ours.data, &npy("pptsmv2/logits224_8f_fused.npy").data);
        assert!(d <= 1e-4, "{cap}: {d:e}");
    }
}

#[test]
fn logits_take_batches_non_square_inputs_and_the_training_form() {
    let dir = tmp();
    // Two 8-frame clips of 64x96 (crop of the 224 input): shape [2, 8, 3, 64, 96].
    let clip = npy("video/example_8f_input.npy");
    let mut data = Vec::new();
    for n in 0..2 {
        for t in 0..8 {
            for c in 0..3 {
                for y in 0..64 {
                    let row = ((t * 3 + c) * 224 + y + 40 * n) * 224;
                    data.extend_from_slice(&clip.data[row..row + 96]);
                }
            }
        }
    }
    let input = dir.join("in.npy");
    write_npy_f32(&input, &[2, 8, 3, 64, 96], &data).expect("write input");
    let mut results = Vec::new();
    for form in ["fused", "training"] {
        let output = dir.join(format!("{form}.npy"));
        let out = kineto(&[
            "logits",
            "--device",
            "cpu",
            "--form",
            form,
            "--weights",
            s(&fixture("pptsmv2/w8.pdparams")),
            "--input",
            s(&input),
            "--output",
            s(&output),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let got = read_npy_f32(&output).expect("output");
        assert_eq!(got.shape, vec![2, 400]);
        results.push(got.data);
    }
    let d = max_abs_diff(&results[0], &results[1]);
    assert!(d <= 1e-4, "fused vs training form: {d:e}");
    assert!(
        max_abs_diff(&results[0][..400], &results[0][400..]) > 1e-3,
        "the two clips differ"
    );
}

/// A DML checkpoint made from the two fixture models: the student by default, the teacher with
/// `--teacher`.
#[test]
fn dml_checkpoints_give_student_or_teacher() {
    let dir = tmp();
    let student = read_pdparams(&fixture("pptsmv2/w8.pdparams")).expect("w8");
    let teacher = read_pdparams(&fixture("pptsm_r50/w.pdparams")).expect("r50");
    let mut dml = ParamStore::new();
    for (k, t) in teacher.iter() {
        let k = k
            .replacen("backbone.", "Teacher.0.", 1)
            .replacen("head.", "Teacher.1.", 1);
        dml.insert(k, t.clone());
    }
    for (k, t) in student.iter() {
        dml.insert(k.replacen("backbone.", "Student.0.", 1), t.clone());
    }
    let path = dir.join("dml.pdparams");
    write_pdparams(&dml, &path).expect("write dml");

    let info = kineto(&["weights", "info", "--json", s(&path)]);
    assert!(info.status.success(), "{}", stderr(&info));
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).expect("json");
    assert_eq!(v["layout"], "dml");
    assert_eq!(v["model"], "pptsm_v2");
    let info = kineto(&["weights", "info", "--json", "--teacher", s(&path)]);
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).expect("json");
    assert_eq!(v["model"], "pptsm_resnet");
    assert_eq!(v["depth"], 50);

    let output = dir.join("t.npy");
    let arrays = npz("pptsm_r50/io112.npz");
    let input = dir.join("in112.npy");
    let x = npz_get(&arrays, "input");
    write_npy_f32(&input, &x.shape, &x.data).expect("write input");
    let out = kineto(&[
        "logits",
        "--device",
        "cpu",
        "--teacher",
        "--weights",
        s(&path),
        "--input",
        s(&input),
        "--output",
        s(&output),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let d = max_abs_diff(
        &read_npy_f32(&output).expect("out").data,
        &npz_get(&arrays, "logits").data,
    );
    assert!(d <= 1e-4, "teacher logits: {d:e}");
}

#[test]
fn weights_info_reads_the_architecture() {
    let out = kineto(&[
        "weights",
        "info",
        "--json",
        s(&fixture("pptsmv2/w8.pdparams")),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["model"], "pptsm_v2");
    assert_eq!(v["num_seg"], serde_json::Value::Null);
    assert_eq!(v["classes"], 400);
    assert_eq!(v["attention"], false);
    assert_eq!(v["form"], "training");
    assert_eq!(v["layout"], "plain");
    assert_eq!(v["parameters"], 6072592);

    let out = kineto(&["weights", "info", s(&fixture("pptsm_r50/w.pdparams"))]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("model: pptsm_resnet"), "{text}");
    assert!(text.contains("depth: 50"), "{text}");
}

/// Writes `store` and expects `kineto logits` to fail with exit `code` and a one-line message
/// naming the file and containing `needle`.
fn expect_failure(path: &Path, input: &Path, code: i32, needle: &str) {
    let out_path = path.with_extension("out.npy");
    let out = kineto(&[
        "logits",
        "--device",
        "cpu",
        "--weights",
        s(path),
        "--input",
        s(input),
        "--output",
        s(&out_path),
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(code), "{}: {err}", path.display());
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("kineto: error: "), "{err}");
    assert!(
        err.contains(&*path.file_name().unwrap().to_string_lossy()),
        "names the file: {err}"
    );
    assert!(err.contains(needle), "expected {needle:?} in {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!out_path.exists(), "no output on failure");
}

#[test]
fn broken_checkpoints_fail_cleanly() {
    let dir = tmp();
    let input = fixture("pptsmv2/act64_16f.npz"); // never read: the weights fail first
    let input64 = dir.join("in64.npy");
    let x = npz_get(&npz("pptsmv2/act64_8f.npz"), "input").clone();
    write_npy_f32(&input64, &x.shape, &x.data).expect("write");
    let _ = input;

    let empty = dir.join("empty.pdparams");
    std::fs::write(&empty, b"").expect("write");
    expect_failure(&empty, &input64, 1, "");

    let text = dir.join("text.pdparams");
    std::fs::write(&text, b"this is not a pickle\n").expect("write");
    expect_failure(&text, &input64, 1, "");

    let evil = dir.join("evil.pdparams");
    std::fs::write(&evil, b"cos\nsystem\n(S'echo hi'\ntR.").expect("write");
    expect_failure(&evil, &input64, 1, "os.system");

    let full = std::fs::read(fixture("pptsmv2/w8.pdparams")).expect("read");
    let truncated = dir.join("truncated.pdparams");
    std::fs::write(&truncated, &full[..full.len() / 2]).expect("write");
    expect_failure(&truncated, &input64, 1, "");

    let w8 = read_pdparams(&fixture("pptsmv2/w8.pdparams")).expect("w8");
    let mut missing = w8.clone();
    missing.remove("backbone.fc.bias");
    let p = dir.join("missing.pdparams");
    write_pdparams(&missing, &p).expect("write");
    expect_failure(&p, &input64, 1, "missing backbone.fc.bias");

    let mut misshaped = w8.clone();
    misshaped.insert(
        "backbone.stem.0.bn.weight",
        ParamTensor {
            shape: vec![31],
            data: vec![1.0; 31],
        },
    );
    let p = dir.join("misshaped.pdparams");
    write_pdparams(&misshaped, &p).expect("write");
    expect_failure(&p, &input64, 1, "backbone.stem.0.bn.weight");

    let mut extra = w8.clone();
    extra.insert(
        "backbone.mystery.weight",
        ParamTensor {
            shape: vec![2],
            data: vec![0.0; 2],
        },
    );
    let p = dir.join("extra.pdparams");
    write_pdparams(&extra, &p).expect("write");
    expect_failure(&p, &input64, 1, "unexpected backbone.mystery.weight");

    let mut other = ParamStore::new();
    other.insert(
        "conv1.weight",
        ParamTensor {
            shape: vec![64, 3, 7, 7],
            data: vec![0.0; 64 * 147],
        },
    );
    other.insert(
        "fc.weight",
        ParamTensor {
            shape: vec![1000, 512],
            data: vec![0.0; 512_000],
        },
    );
    let p = dir.join("resnet18.pdparams");
    write_pdparams(&other, &p).expect("write");
    expect_failure(&p, &input64, 1, "layout");

    let mut att = w8.clone();
    for (k, t) in read_pdparams(&fixture("pptsmv2/att16_extra.pdparams"))
        .expect("att")
        .iter()
    {
        att.insert(k, t.clone());
    }
    let p = dir.join("att16.pdparams");
    write_pdparams(&att, &p).expect("write");
    // 8 frames into a model whose attention fixes 16: the checkpoint's rule, exit 2.
    expect_failure(&p, &input64, 2, "num_seg = 16");
}

#[test]
fn bad_inputs_fail_cleanly() {
    let dir = tmp();
    let weights = fixture("pptsmv2/w8.pdparams");
    let bad = dir.join("bad.npy");
    std::fs::write(&bad, b"\x93NUMPY garbage").expect("write");
    let out = kineto(&[
        "logits",
        "--device",
        "cpu",
        "--weights",
        s(&weights),
        "--input",
        s(&bad),
        "--output",
        s(&dir.join("o.npy")),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("bad.npy"));

    let wrong = dir.join("wrong.npy");
    write_npy_f32(&wrong, &[8, 4, 64, 64], &vec![0.0; 8 * 4 * 64 * 64]).expect("write");
    let out = kineto(&[
        "logits",
        "--device",
        "cpu",
        "--weights",
        s(&weights),
        "--input",
        s(&wrong),
        "--output",
        s(&dir.join("o.npy")),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("wrong.npy"), "{}", stderr(&out));

    let out = kineto(&[
        "logits",
        "--device",
        "cpu",
        "--weights",
        s(&dir.join("nope.pdparams")),
        "--input",
        s(&wrong),
        "--output",
        s(&dir.join("o.npy")),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("nope.pdparams"));

    let out = kineto(&["logits", "--bogus-flag"]);
    assert_eq!(out.status.code(), Some(2));
}
