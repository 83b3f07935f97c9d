//! `kineto export --format onnx`: the file passes onnx's checker and runs in ONNX Runtime
//! (`tests/python/ort_logits.py` under `KINETO_PADDLE_PYTHON`, the venv `.ci/run` makes, with
//! `onnx` and `onnxruntime`), giving PaddleVideo's fixture logits and Kineto's own within 1e-4:
//! PP-TSMv2 8f, 16f and 16f + temporal attention, batch 1 (224x224) and batch 2 (64x64).
//! Without the venv or its modules the test fails.

// Test code: a failed unwrap/expect is the test failing (clippy.toml exempts only #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use common::*;
use kineto::checkpoint::ParamStore;
use kineto::checkpoint::pdparams::{read_pdparams, write_pdparams};
use kineto::model::Form;
use kineto::npy::{NpyArray, read_npy_f32, write_npy_f32};

const TOL: f32 = 1e-4;

/// Exports `weights` with `extra` arguments; panics with kineto's stderr on failure.
fn export(weights: &Path, output: &Path, extra: &[&str]) {
    let mut args = vec!["export", "--weights", s(weights), "--output", s(output)];
    args.extend_from_slice(extra);
    let out = kineto(&args);
    assert!(out.status.success(), "kineto {args:?}: {}", stderr(&out));
}

/// Runs the model in ONNX Runtime on each input; returns the metadata line and the logits.
fn ort(model: &Path, inputs: &[(&[usize], &[f32])]) -> (serde_json::Value, Vec<NpyArray<f32>>) {
    let dir = model.parent().expect("parent");
    let stem = model.file_stem().expect("stem").to_string_lossy();
    let mut args: Vec<PathBuf> = vec![model.to_path_buf()];
    let mut outs = Vec::new();
    for (i, (shape, data)) in inputs.iter().enumerate() {
        let input = dir.join(format!("{stem}_in{i}.npy"));
        let out = dir.join(format!("{stem}_out{i}.npy"));
        write_npy_f32(&input, shape, data).expect("write input");
        args.push(input);
        args.push(out.clone());
        outs.push(out);
    }
    let run = python_script("ort_logits.py", &args);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "ort_logits.py {}: {stdout}\n{}",
        model.display(),
        String::from_utf8_lossy(&run.stderr)
    );
    let info: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    let logits = outs
        .iter()
        .map(|p| read_npy_f32(p).expect("logits"))
        .collect();
    (info, logits)
}

/// Kineto's own logits (fused form, burn on the CPU) for `[N, T, 3, H, W]` clips.
fn kineto_logits(attention: bool, shape: &[usize], data: &[f32]) -> Vec<f32> {
    kineto_logits_of(&v2_store(attention), shape, data)
}

fn kineto_logits_of(store: &ParamStore, shape: &[usize], data: &[f32]) -> Vec<f32> {
    let device = Device::flex();
    let model = build(store, Form::Fused, &device);
    let dims: [usize; 5] = shape.try_into().expect("5-D");
    let x = Tensor::<5>::from_data(TensorData::new(data.to_vec(), dims), &device);
    data_f32(&model.forward(x).into_data())
}

/// The w8 + att16_extra attention model as one `.pdparams`.
fn attention_weights(dir: &Path) -> PathBuf {
    let mut merged = read_pdparams(&fixture("pptsmv2/w8.pdparams")).expect("w8");
    let extra = read_pdparams(&fixture("pptsmv2/att16_extra.pdparams")).expect("att16");
    for (k, t) in extra.iter() {
        merged.insert(k, t.clone());
    }
    let path = dir.join("w16att.pdparams");
    write_pdparams(&merged, &path).expect("write");
    path
}

/// Clip `[1, T, C, H, W]` followed by the same clip with its frames in reverse order.
fn with_reversed(clip: &NpyArray<f32>) -> (Vec<usize>, Vec<f32>) {
    let t = clip.shape[1];
    let frame = clip.data.len() / t;
    let mut data = clip.data.clone();
    for i in (0..t).rev() {
        data.extend_from_slice(&clip.data[i * frame..(i + 1) * frame]);
    }
    let mut shape = clip.shape.clone();
    shape[0] = 2;
    (shape, data)
}

struct Case {
    name: &'static str,
    attention: bool,
    frames: usize,
    /// `--frames` given, or left to the default.
    frames_arg: bool,
}

fn check_case(dir: &Path, case: &Case) -> (f32, f32) {
    let t = case.frames;
    let weights = if case.attention {
        attention_weights(dir)
    } else {
        fixture("pptsmv2/w8.pdparams")
    };
    let model = dir.join(format!("{}.onnx", case.name));
    let frames = t.to_string();
    let extra: Vec<&str> = if case.frames_arg {
        vec!["--frames", &frames]
    } else {
        vec![]
    };
    export(&weights, &model, &extra);

    let att = if case.attention { "_att" } else { "" };
    let x224 = npy(&format!("video/example_{t}f_input.npy"));
    let mut shape224 = vec![1];
    shape224.extend_from_slice(&x224.shape);
    let act64 = npz(&format!(
        "pptsmv2/act64_{t}f{}.npz",
        if case.attention { "_att" } else { "" }
    ));
    let (shape64, x64) = with_reversed(npz_get(&act64, "input"));
    let (info, logits) = ort(&model, &[(&shape224, &x224.data), (&shape64, &x64)]);
    let name = case.name;

    // The declared interface and the metadata.
    assert_eq!(
        info["opset"],
        serde_json::json!([["", 13]]),
        "{name}: {info}"
    );
    assert_eq!(
        info["inputs"],
        serde_json::json!([["clips", ["batch", t, 3, "height", "width"]]]),
        "{name}"
    );
    assert_eq!(
        info["outputs"],
        serde_json::json!([["logits", ["batch", 400]]]),
        "{name}"
    );
    let meta = &info["metadata"];
    assert_eq!(meta["num_seg"], t.to_string(), "{name}: {meta}");
    assert_eq!(meta["form"], "fused", "{name}");
    assert_eq!(meta["attention"], case.attention.to_string(), "{name}");
    let classes: Vec<String> =
        serde_json::from_str(meta["class_names"].as_str().expect("class_names")).expect("JSON");
    assert_eq!(classes.len(), 400);
    assert_eq!(classes[0], "abseiling");
    let ops: Vec<&str> = info["ops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for op in ["Slice", "Pad", "Concat", "Reshape"] {
        assert!(
            ops.contains(&op),
            "{name}: the shift's {op} is missing: {ops:?}"
        );
    }
    assert!(
        !ops.contains(&"BatchNormalization"),
        "{name}: not fused: {ops:?}"
    );

    // Batch 1 at 224 against PaddleVideo (training and rep-fused forms) and Kineto.
    let ort224 = &logits[0];
    assert_eq!(ort224.shape, vec![1, 400]);
    let mut worst_fixture = 0.0f32;
    for suffix in ["", "_fused"] {
        let reference = npy(&format!("pptsmv2/logits224_{t}f{att}{suffix}.npy"));
        let d = max_abs_diff(&ort224.data, &reference.data);
        assert!(d <= TOL, "{name} @224 vs logits224{suffix}: {d:e}");
        worst_fixture = worst_fixture.max(d);
    }
    let ours224 = kineto_logits(case.attention, &shape224, &x224.data);
    let mut worst_kineto = max_abs_diff(&ort224.data, &ours224);
    assert!(
        worst_kineto <= TOL,
        "{name} @224 vs Kineto: {worst_kineto:e}"
    );

    // Batch 2 at 64: the fixture clip and the same clip reversed in time.
    let ort64 = &logits[1];
    assert_eq!(ort64.shape, vec![2, 400]);
    for key in ["logits", "logits_fused"] {
        let d = max_abs_diff(&ort64.data[..400], &npz_get(&act64, key).data);
        assert!(d <= TOL, "{name} @64 row 0 vs {key}: {d:e}");
        worst_fixture = worst_fixture.max(d);
    }
    let ours64 = kineto_logits(case.attention, &shape64, &x64);
    let d = max_abs_diff(&ort64.data, &ours64);
    assert!(d <= TOL, "{name} @64 batch 2 vs Kineto: {d:e}");
    worst_kineto = worst_kineto.max(d);
    // The reversed clip is another clip: the two rows must differ.
    let rows = max_abs_diff(&ort64.data[..400], &ort64.data[400..]);
    assert!(
        rows > 1e-3,
        "{name}: the reversed clip gave the same logits"
    );
    eprintln!(
        "{name}: max |ORT - fixture| = {worst_fixture:.2e}, max |ORT - Kineto| = {worst_kineto:.2e}"
    );
    (worst_fixture, worst_kineto)
}

#[test]
fn onnx_runs_in_onnxruntime_with_fixture_and_kineto_logits() {
    let dir = ScratchDir::new("onnx-export");
    for case in [
        Case {
            name: "pptsmv2_8f",
            attention: false,
            frames: 8,
            frames_arg: false,
        },
        Case {
            name: "pptsmv2_16f",
            attention: false,
            frames: 16,
            frames_arg: true,
        },
        Case {
            name: "pptsmv2_16f_att",
            attention: true,
            frames: 16,
            frames_arg: false,
        },
    ] {
        check_case(&dir, &case);
    }
}

/// PP-TSM ResNet-50 8f: batch 1 at 112 (odd maps before the last stage: the ResNet-D pool's
/// partial windows) and batch 2 at 64, against the fixtures and Kineto.
#[test]
fn resnet50_runs_in_onnxruntime_with_fixture_and_kineto_logits() {
    let dir = ScratchDir::new("onnx-export-r50");
    let model = dir.join("pptsm_r50.onnx");
    export(&fixture("pptsm_r50/w.pdparams"), &model, &[]);
    let io112 = npz("pptsm_r50/io112.npz");
    let x112 = npz_get(&io112, "input");
    let act64 = npz("pptsm_r50/act64.npz");
    let (shape64, x64) = with_reversed(npz_get(&act64, "input"));
    let (info, logits) = ort(&model, &[(&x112.shape, &x112.data), (&shape64, &x64)]);
    assert_eq!(
        info["inputs"],
        serde_json::json!([["clips", ["batch", 8, 3, "height", "width"]]])
    );
    assert_eq!(info["metadata"]["model"], "pptsm_resnet", "{info}");
    let ops: Vec<&str> = info["ops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        ops.contains(&"AveragePool") && !ops.contains(&"BatchNormalization"),
        "{ops:?}"
    );
    let d112 = max_abs_diff(&logits[0].data, &npz_get(&io112, "logits").data);
    assert!(d112 <= TOL, "R50 @112 vs fixture: {d112:e}");
    let d64 = max_abs_diff(&logits[1].data[..400], &npz_get(&act64, "logits").data);
    assert!(d64 <= TOL, "R50 @64 row 0 vs fixture: {d64:e}");
    let store = r50_store();
    let ours112 = kineto_logits_of(&store, &x112.shape, &x112.data);
    let k112 = max_abs_diff(&logits[0].data, &ours112);
    let ours64 = kineto_logits_of(&store, &shape64, &x64);
    let k64 = max_abs_diff(&logits[1].data, &ours64);
    assert!(
        k112 <= TOL && k64 <= TOL,
        "R50 vs Kineto: {k112:e}, {k64:e}"
    );
    eprintln!(
        "pptsm_r50: max |ORT - fixture| = {:.2e}, max |ORT - Kineto| = {:.2e}",
        d112.max(d64),
        k112.max(k64)
    );
}

/// A safetensors with Kineto's metadata (what `kineto train` writes: own class names, here
/// also in the fused form) exports the same way, its class names in the ONNX metadata.
#[test]
fn safetensors_with_class_names_exports_the_same() {
    let dir = ScratchDir::new("onnx-export-st");
    let labels = dir.join("mine.txt");
    let names: Vec<String> = (0..400).map(|i| format!("action {i}")).collect();
    std::fs::write(&labels, names.join("\n") + "\n").unwrap();
    let st = dir.join("mine.safetensors");
    export(
        &fixture("pptsmv2/w8.pdparams"),
        &st,
        &["--fused", "--labels", s(&labels)],
    );
    let model = dir.join("mine.onnx");
    export(&st, &model, &[]);
    let act64 = npz("pptsmv2/act64_8f.npz");
    let input = npz_get(&act64, "input");
    let (info, logits) = ort(&model, &[(&input.shape, &input.data)]);
    let classes: Vec<String> =
        serde_json::from_str(info["metadata"]["class_names"].as_str().unwrap()).unwrap();
    assert_eq!(classes, names);
    assert_eq!(info["metadata"]["label_set"], "mine");
    let d = max_abs_diff(&logits[0].data, &npz_get(&act64, "logits").data);
    assert!(d <= TOL, "safetensors export vs fixture: {d:e}");
}

/// Options and models the ONNX export does not take: one line, exit 2, naming the problem.
#[test]
fn unsupported_requests_fail_with_one_line() {
    let dir = ScratchDir::new("onnx-export-bad");
    let w8 = fixture("pptsmv2/w8.pdparams");
    let out = dir.join("x.onnx");
    let att = attention_weights(&dir);
    let st = dir.join("x.safetensors");
    let cases: [(Vec<&str>, &str); 3] = [
        (
            vec!["--weights", s(&w8), "--output", s(&out), "--teacher"],
            "--teacher does not apply to --format onnx",
        ),
        (
            vec!["--weights", s(&att), "--output", s(&out), "--frames", "8"],
            "--frames 8: this checkpoint's temporal attention fixes num_seg = 16",
        ),
        (
            vec!["--weights", s(&w8), "--output", s(&st), "--frames", "8"],
            "--frames applies to --format onnx only",
        ),
    ];
    for (args, message) in cases {
        let mut full = vec!["export"];
        full.extend(args);
        let run = kineto(&full);
        let err = stderr(&run);
        assert_eq!(run.status.code(), Some(2), "{full:?}: {err}");
        assert!(err.contains(message), "{full:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{full:?}: {err}");
    }
    assert!(!out.exists());
}
