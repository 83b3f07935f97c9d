//! `kineto export` round trips through the real binary: pdparams -> safetensors -> pdparams ->
//! logits, all bit-identical to each other and within 1e-4 of PaddleVideo's logits; class names
//! travel in the safetensors metadata; bad combinations fail with one line and no file.

// Test code: a failed unwrap/expect is the test failing (clippy.toml exempts only #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use kineto::checkpoint::file::open_checkpoint;
use kineto::checkpoint::keys::Role;
use kineto::checkpoint::pdparams::{read_pdparams, write_pdparams};
use kineto::checkpoint::safetensors::read_safetensors;
use kineto::checkpoint::{ParamStore, ParamTensor};
use kineto::npy::{read_npy_f32, write_npy_f32};

fn kineto(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kineto"))
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        // Never the user's cache, never the network.
        .env(
            "KINETO_CACHE_DIR",
            std::env::temp_dir().join("kineto-export-test-cache"),
        )
        .output()
        .expect("run kineto")
}

fn tmp(tag: &str) -> common::ScratchDir {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    common::ScratchDir::new(&format!("export-{tag}-{nanos}"))
}

fn ok(out: Output) -> Output {
    assert!(out.status.success(), "{}", stderr(&out));
    out
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Same key set, shapes and bit patterns (order not compared).
fn assert_same_store(a: &ParamStore, b: &ParamStore, what: &str) {
    let mut ka: Vec<&str> = a.names().collect();
    let mut kb: Vec<&str> = b.names().collect();
    ka.sort();
    kb.sort();
    assert_eq!(ka, kb, "{what}: key sets differ");
    for (name, t) in a.iter() {
        let u = b.get(name).expect("key");
        assert_eq!(t.shape, u.shape, "{what}: {name} shape");
        assert!(
            bits(&t.data) == bits(&u.data),
            "{what}: {name} values differ"
        );
    }
}

fn logits(weights: &Path, input: &Path, out: &Path, extra: &[&str]) -> Vec<f32> {
    let mut args = vec![
        "logits",
        "--device",
        "cpu",
        "--weights",
        s(weights),
        "--input",
        s(input),
        "--output",
        s(out),
    ];
    args.extend_from_slice(extra);
    ok(kineto(&args));
    read_npy_f32(out).expect("logits").data
}

fn info(weights: &Path) -> serde_json::Value {
    let out = ok(kineto(&["weights", "info", "--json", s(weights)]));
    serde_json::from_slice(&out.stdout).expect("json")
}

#[test]
fn pptsmv2_pdparams_safetensors_pdparams_logits_identical() {
    let dir = tmp("v2");
    let src = fixture("pptsmv2/w8.pdparams");
    let st = dir.join("w8.safetensors");
    let fused = dir.join("w8_fused.safetensors");
    let back = dir.join("w8_back.pdparams");
    let back_st = dir.join("w8_back.safetensors");
    ok(kineto(&[
        "export",
        "--weights",
        s(&src),
        "--output",
        s(&st),
    ]));
    ok(kineto(&[
        "export",
        "--weights",
        s(&src),
        "--output",
        s(&fused),
        "--fused",
    ]));
    ok(kineto(&[
        "export",
        "--weights",
        s(&st),
        "--output",
        s(&back),
    ]));
    ok(kineto(&[
        "export",
        "--weights",
        s(&back),
        "--output",
        s(&back_st),
        "--format",
        "safetensors",
    ]));

    // The exported .pdparams is the fixture, key for key and bit for bit, in the fixture's order.
    let original = read_pdparams(&src).expect("w8");
    let exported = read_pdparams(&back).expect("back");
    assert_same_store(&original, &exported, "pdparams -> safetensors -> pdparams");
    assert_eq!(
        original.names().collect::<Vec<_>>(),
        exported.names().collect::<Vec<_>>(),
        "PaddleVideo's state-dict order"
    );
    let st_file = read_safetensors(&st).expect("safetensors");
    assert_same_store(&original, &st_file.store, "safetensors");
    let meta = &st_file.raw_metadata;
    for (k, v) in [
        ("format", "kineto"),
        ("format_version", "1"),
        ("model", "pptsm_v2"),
        ("form", "training"),
        ("num_seg", "8"),
        ("attention", "false"),
        ("num_classes", "400"),
        ("label_set", "kinetics400"),
        ("input_size", "224"),
        ("short_side", "256"),
        ("mean", "[0.485,0.456,0.406]"),
        ("std", "[0.229,0.224,0.225]"),
    ] {
        assert_eq!(meta.get(k).map(String::as_str), Some(v), "metadata {k}");
    }
    let provenance: serde_json::Value = serde_json::from_str(&meta["provenance"]).expect("json");
    assert_eq!(provenance["source_file"], "w8.pdparams");
    assert_eq!(provenance["source_sha256"].as_str().map(str::len), Some(64));
    let fused_file = read_safetensors(&fused).expect("fused");
    assert_eq!(fused_file.raw_metadata["form"], "fused");

    // Logits: every copy gives the same bits; the fixture within 1e-4.
    let arrays = npz("pptsmv2/act64_8f.npz");
    let x = npz_get(&arrays, "input");
    let input = dir.join("in64.npy");
    write_npy_f32(&input, &x.shape, &x.data).expect("write input");
    let reference = logits(&src, &input, &dir.join("l0.npy"), &[]);
    for (i, w) in [&st, &fused, &back, &back_st].into_iter().enumerate() {
        let ours = logits(w, &input, &dir.join(format!("l{}.npy", i + 1)), &[]);
        assert!(
            bits(&ours) == bits(&reference),
            "{}: logits differ",
            w.display()
        );
    }
    let d = max_abs_diff(&reference, &npz_get(&arrays, "logits_fused").data);
    assert!(d <= 1e-4, "fixture logits: {d:e}");
    // The training form too, through the safetensors copy.
    let a = logits(&src, &input, &dir.join("t0.npy"), &["--form", "training"]);
    let b = logits(
        &back_st,
        &input,
        &dir.join("t1.npy"),
        &["--form", "training"],
    );
    assert!(bits(&a) == bits(&b), "training-form logits differ");

    let v = info(&st);
    assert_eq!(v["format"], "safetensors");
    assert_eq!(v["class_names"].as_array().map(Vec::len), Some(400));
    assert_eq!(v["class_names"][0], "abseiling");
    assert_eq!(info(&src)["class_names"], serde_json::Value::Null);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn attention_model_and_rep_dw_conv_survive_export() {
    let dir = tmp("att");
    let mut merged = read_pdparams(&fixture("pptsmv2/w8.pdparams")).expect("w8");
    for (k, t) in read_pdparams(&fixture("pptsmv2/att16_extra.pdparams"))
        .expect("att")
        .iter()
    {
        merged.insert(k, t.clone());
    }
    let src = dir.join("att16.pdparams");
    write_pdparams(&merged, &src).expect("write");
    let st = dir.join("att16.safetensors");
    let back = dir.join("att16_back.pdparams");
    ok(kineto(&[
        "export",
        "--weights",
        s(&src),
        "--output",
        s(&st),
    ]));
    ok(kineto(&[
        "export",
        "--weights",
        s(&st),
        "--output",
        s(&back),
    ]));
    assert_same_store(&merged, &read_pdparams(&back).expect("back"), "attention");
    let v = info(&st);
    assert_eq!(v["num_seg"], 16);
    assert_eq!(v["attention"], true);
    assert_eq!(
        read_safetensors(&st).expect("st").raw_metadata["num_seg"],
        "16"
    );
    // The key order is the full model's (keys_w16att.txt).
    let listed: Vec<String> = std::fs::read_to_string(fixture("pptsmv2/keys_w16att.txt"))
        .expect("keys")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split('\t').next().unwrap_or_default().to_string())
        .collect();
    let back_store = read_pdparams(&back).expect("back");
    assert_eq!(back_store.names().collect::<Vec<_>>(), listed);

    // A training-form store without the unused rep dw_conv keys gets them back (PaddleVideo's
    // model has them), filled with the merged conv that rep() would compute.
    let mut stripped = merged.clone();
    let dw: Vec<String> = merged
        .names()
        .filter(|k| k.ends_with(".dw_conv.weight") || k.ends_with(".dw_conv.bias"))
        .filter(|k| k.starts_with("backbone.stages."))
        .map(str::to_string)
        .collect();
    assert!(!dw.is_empty());
    for k in &dw {
        stripped.remove(k);
    }
    let stripped_path = dir.join("stripped.pdparams");
    write_pdparams(&stripped, &stripped_path).expect("write");
    let refilled = dir.join("refilled.pdparams");
    ok(kineto(&[
        "export",
        "--weights",
        s(&stripped_path),
        "--output",
        s(&refilled),
    ]));
    let r = read_pdparams(&refilled).expect("refilled");
    assert_eq!(r.names().collect::<Vec<_>>(), listed);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn r50_and_dml_teacher_round_trip() {
    let dir = tmp("r50");
    let src = fixture("pptsm_r50/w.pdparams");
    let st = dir.join("r50.safetensors");
    let back = dir.join("r50.pdparams");
    ok(kineto(&[
        "export",
        "--weights",
        s(&src),
        "--output",
        s(&st),
    ]));
    ok(kineto(&[
        "export",
        "--weights",
        s(&st),
        "--output",
        s(&back),
    ]));
    let original = read_pdparams(&src).expect("r50");
    let exported = read_pdparams(&back).expect("back");
    assert_same_store(&original, &exported, "r50");
    assert_eq!(
        original.names().collect::<Vec<_>>(),
        exported.names().collect::<Vec<_>>()
    );
    assert_eq!(
        read_safetensors(&st).expect("st").raw_metadata["depth"],
        "50"
    );

    // The teacher of a DML file exports as a plain Recognizer2D checkpoint.
    let student = read_pdparams(&fixture("pptsmv2/w8.pdparams")).expect("w8");
    let mut dml = ParamStore::new();
    for (k, t) in original.iter() {
        let k = k
            .replacen("backbone.", "Teacher.0.", 1)
            .replacen("head.", "Teacher.1.", 1);
        dml.insert(k, t.clone());
    }
    for (k, t) in student.iter() {
        dml.insert(k.replacen("backbone.", "Student.0.", 1), t.clone());
    }
    let dml_path = dir.join("dml.pdparams");
    write_pdparams(&dml, &dml_path).expect("write");
    let teacher = dir.join("teacher.pdparams");
    let student_out = dir.join("student.pdparams");
    ok(kineto(&[
        "export",
        "--weights",
        s(&dml_path),
        "--output",
        s(&teacher),
        "--teacher",
    ]));
    ok(kineto(&[
        "export",
        "--weights",
        s(&dml_path),
        "--output",
        s(&student_out),
    ]));
    assert_same_store(&original, &read_pdparams(&teacher).expect("t"), "teacher");
    assert_same_store(
        &student,
        &read_pdparams(&student_out).expect("s"),
        "student",
    );

    let arrays = npz("pptsm_r50/io112.npz");
    let x = npz_get(&arrays, "input");
    let input = dir.join("in112.npy");
    write_npy_f32(&input, &x.shape, &x.data).expect("write input");
    let a = logits(&src, &input, &dir.join("a.npy"), &[]);
    let b = logits(&back, &input, &dir.join("b.npy"), &[]);
    assert!(bits(&a) == bits(&b), "r50 logits differ");
    let d = max_abs_diff(&b, &npz_get(&arrays, "logits").data);
    assert!(d <= 1e-4, "{d:e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn class_names_travel_with_safetensors() {
    let dir = tmp("labels");
    let labels = dir.join("my_labels.txt");
    let names: Vec<String> = (0..400).map(|i| format!("class \"{i}\" ü")).collect();
    std::fs::write(&labels, names.join("\n") + "\n").expect("write labels");
    let src = fixture("pptsmv2/w8.pdparams");
    let a = dir.join("a.safetensors");
    let b = dir.join("b.safetensors");
    let fused = dir.join("c.safetensors");
    ok(kineto(&[
        "export",
        "--weights",
        s(&src),
        "--output",
        s(&a),
        "--labels",
        s(&labels),
    ]));
    ok(kineto(&["export", "--weights", s(&a), "--output", s(&b)]));
    ok(kineto(&[
        "export",
        "--weights",
        s(&b),
        "--output",
        s(&fused),
        "--fused",
    ]));
    for p in [&a, &b, &fused] {
        let ckpt = open_checkpoint(p, Role::Student).expect("open");
        assert_eq!(ckpt.class_names.as_ref(), Some(&names), "{}", p.display());
        assert_eq!(
            ckpt.meta
                .as_ref()
                .and_then(|m| m.label_set.clone())
                .as_deref(),
            Some("my_labels")
        );
    }
    let v = info(&fused);
    assert_eq!(v["class_names"][7], "class \"7\" ü");
    // Provenance chains back to the source.
    let meta = read_safetensors(&fused).expect("st").raw_metadata;
    let p: serde_json::Value = serde_json::from_str(&meta["provenance"]).expect("json");
    assert_eq!(p["source_file"], "b.safetensors");
    assert_eq!(p["parent"]["source_file"], "a.safetensors");
    assert_eq!(p["parent"]["parent"]["source_file"], "w8.pdparams");

    // A labels file that does not fit the model.
    let short = dir.join("short.txt");
    std::fs::write(&short, "a\nb\n").expect("write");
    let out_path = dir.join("x.safetensors");
    let out = kineto(&[
        "export",
        "--weights",
        s(&src),
        "--output",
        s(&out_path),
        "--labels",
        s(&short),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("short.txt: has 2 class names, the model has 400 classes"));
    assert!(!out_path.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_export_requests_fail_with_one_line_and_no_file() {
    let dir = tmp("bad");
    let src = fixture("pptsmv2/w8.pdparams");
    let check = |args: &[&str], code: i32, needle: &str| {
        let out = kineto(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.starts_with("kineto: error: "), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(needle), "expected {needle:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    };
    let out = dir.join("o.pdparams");
    check(
        &[
            "export",
            "--weights",
            s(&src),
            "--output",
            s(&out),
            "--fused",
        ],
        2,
        "--fused",
    );
    let out2 = dir.join("o.bin");
    check(
        &[
            "export",
            "--weights",
            s(&src),
            "--output",
            s(&out2),
            "--format",
            "pdparams",
            "--fused",
        ],
        2,
        "--fused",
    );
    check(
        &["export", "--weights", s(&src), "--output", s(&out2)],
        2,
        "o.bin",
    );
    // A fused checkpoint cannot become PaddleVideo's training-form .pdparams.
    let fused = dir.join("f.safetensors");
    ok(kineto(&[
        "export",
        "--weights",
        s(&src),
        "--output",
        s(&fused),
        "--fused",
    ]));
    check(
        &["export", "--weights", s(&fused), "--output", s(&out)],
        1,
        "fused",
    );
    // Unwritable output (a folder under a regular file): exit 2, nothing written.
    let blocker = dir.join("blocker");
    std::fs::write(&blocker, b"x").expect("write");
    let unwritable = blocker.join("o.safetensors");
    check(
        &["export", "--weights", s(&src), "--output", s(&unwritable)],
        2,
        "cannot write",
    );
    // A missing source.
    let missing = dir.join("missing.pdparams");
    check(
        &["export", "--weights", s(&missing), "--output", s(&out)],
        1,
        "missing.pdparams",
    );
    // A safetensors file with another dtype.
    let header =
        br#"{"backbone.stem.0.conv.weight":{"dtype":"F16","shape":[1],"data_offsets":[0,2]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[0, 0]);
    let f16 = dir.join("half.safetensors");
    std::fs::write(&f16, bytes).expect("write");
    check(
        &["export", "--weights", s(&f16), "--output", s(&out)],
        1,
        "float32",
    );
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n != "blocker" && n != "f.safetensors" && n != "half.safetensors")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let _ = ParamTensor::new(vec![1], vec![0.0]);
    let _ = std::fs::remove_dir_all(&dir);
}
