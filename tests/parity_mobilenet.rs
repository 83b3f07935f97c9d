//! PP-TSM MobileNetV2 and MobileNetV3 against PaddleVideo's own code: the reference weights and
//! outputs are made at test time by `tests/python/make_mobilenet.py` (seeded, realistic random
//! weights; PaddleVideo's `pptsm_mv2.py` / `pptsm_mv3.py` from the ppvideo wheel), once per run
//! of this test binary. Needs `KINETO_PADDLE_PYTHON` and `KINETO_FIXTURES`: without them the
//! tests fail, they never skip.
//!
//! CPU: every activation at 64x64 (training form), logits at 64 and 224 in both forms, 16
//! frames, on burn's flex backend and on the channels-last CPU path the engine picks for the
//! fused form (`model::nhwc::mobilenet`); the key layout, strict loading, `weights info`, export both ways and `classify` on
//! the example clip; ONNX export in ONNX Runtime; head-only and full fine-tuning. wgpu (lavapipe in CI,
//! slow): the fused form's activations and logits at 64x64.

// Test code: a failed unwrap/expect is the test failing (clippy.toml exempts only #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use burn::tensor::{Device, DeviceKind};
use common::*;
use kineto::checkpoint::pdparams::read_pdparams;
use kineto::checkpoint::safetensors::read_safetensors;
use kineto::infer::device::{ComputeDevice, DeviceChoice};
use kineto::infer::engine::Engine;
use kineto::model::{Form, ModelKind, Recognizer, arch};
use kineto::npy::{NpyArray, read_npy_f32, read_npz_f32, write_npy_f32};

/// The folder the generator wrote into (made once per process; an earlier run's is removed).
fn refs() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let tmp = std::env::temp_dir();
        let ours = format!("kineto-mnet-refs-{}", std::process::id());
        if let Ok(entries) = std::fs::read_dir(&tmp) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("kineto-mnet-refs-") && name != ours {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = tmp.join(ours);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the reference folder");
        let fixtures = fixture("");
        let out = python_script("make_mobilenet.py", [fixtures.as_os_str(), dir.as_os_str()]);
        assert!(
            out.status.success(),
            "make_mobilenet.py failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

fn weights(name: &str) -> PathBuf {
    refs().join(format!("{name}.pdparams"))
}

fn store(name: &str) -> kineto::checkpoint::ParamStore {
    read_pdparams(&weights(name)).expect("pdparams")
}

fn arrays(file: &str) -> Vec<(String, NpyArray<f32>)> {
    read_npz_f32(&refs().join(file)).expect("npz")
}

fn array(file: &str) -> NpyArray<f32> {
    read_npy_f32(&refs().join(file)).expect("npy")
}

fn logits(model: &Recognizer, input: &NpyArray<f32>, device: &Device) -> Vec<f32> {
    data_f32(&model.forward(clip_tensor(input, device)).into_data())
}

/// Every activation at 64 (training form), logits at 64 (both forms), 224 and 16 frames, on
/// burn's flex backend; then the fused form's logits on the NHWC CPU path (what the engine runs
/// on the CPU) on the same inputs.
fn cpu_parity(name: &str) {
    let device = Device::flex();
    let store = store(name);
    let act = arrays(&format!("{name}_act64.npz"));
    let training = build(&store, Form::Training, &device);
    let report = check_activations(&training, &act, &device, &[]);
    let worst = report
        .iter()
        .filter(|(n, _)| n != "logits")
        .map(|(_, d)| *d)
        .fold(0.0, f32::max);
    let fused = build(&store, Form::Fused, &device);
    let reference = &npz_get(&act, "logits").data;
    let d64 = max_abs_diff(&logits(&fused, npz_get(&act, "input"), &device), reference);
    assert!(d64 <= 1e-4, "{name} fused logits at 64: {d64:e}");

    let x8 = npy("video/example_8f_input.npy");
    let want = array(&format!("{name}_logits224.npy"));
    let mut d224: f32 = 0.0;
    for model in [&training, &fused] {
        d224 = d224.max(max_abs_diff(&logits(model, &x8, &device), &want.data));
    }
    assert!(d224 <= 1e-4, "{name} logits at 224: {d224:e}");

    let io16 = arrays(&format!("{name}_io64_16f.npz"));
    let d16 = max_abs_diff(
        &logits(&fused, npz_get(&io16, "input"), &device),
        &npz_get(&io16, "logits").data,
    );
    assert!(d16 <= 1e-4, "{name} 16f logits at 64: {d16:e}");
    let x16 = npy("video/example_16f_input.npy");
    let d16_224 = max_abs_diff(
        &logits(&fused, &x16, &device),
        &array(&format!("{name}_logits224_16f.npy")).data,
    );
    assert!(d16_224 <= 1e-4, "{name} 16f logits at 224: {d16_224:e}");
    eprintln!(
        "{name} CPU (flex): activations {worst:.2e}, logits@64 {d64:.2e}, @224 {d224:.2e}, \
         16f@64 {d16:.2e}, 16f@224 {d16_224:.2e}"
    );

    let cpu = ComputeDevice::resolve(DeviceChoice::Cpu, 2).expect("cpu device");
    let engine = Engine::from_model(fused, cpu);
    assert_eq!(
        engine.path_name(),
        "nhwc",
        "{name}: the CPU runs the NHWC path"
    );
    let nhwc = |input: &NpyArray<f32>, reference: &[f32]| {
        let ours = engine
            .logits(input.data.clone(), clip_dims(input))
            .expect("NHWC logits");
        max_abs_diff(&ours, reference)
    };
    let cases = [
        ("8f@64", nhwc(npz_get(&act, "input"), reference)),
        ("8f@224", nhwc(&x8, &want.data)),
        (
            "16f@64",
            nhwc(npz_get(&io16, "input"), &npz_get(&io16, "logits").data),
        ),
        (
            "16f@224",
            nhwc(&x16, &array(&format!("{name}_logits224_16f.npy")).data),
        ),
    ];
    for (case, d) in cases {
        assert!(d <= 1e-4, "{name} NHWC logits {case}: {d:e}");
    }
    let report: Vec<String> = cases.iter().map(|(c, d)| format!("{c} {d:.2e}")).collect();
    eprintln!("{name} CPU (NHWC): logits {}", report.join(", "));
}

#[test]
fn mobilenet_v2_matches_paddlevideo_on_the_cpu() {
    cpu_parity("mv2");
}

#[test]
fn mobilenet_v3_matches_paddlevideo_on_the_cpu() {
    cpu_parity("mv3");
}

/// The architecture is read from the keys; the module's keys are PaddleVideo's, in its
/// state-dict order; a missing or misshapen key is refused.
#[test]
fn keys_detection_and_strict_loading() {
    let device = Device::flex();
    for (name, kind, fc) in [
        ("mv2", ModelKind::PptsmMv2, "backbone.out.weight"),
        ("mv3", ModelKind::PptsmMv3, "backbone.fc.weight"),
    ] {
        let store = store(name);
        let a = arch::detect(&store).expect("detect");
        assert_eq!(a.model, kind);
        assert_eq!(
            (a.num_classes, a.form, a.num_seg),
            (400, Form::Training, None)
        );
        let fused = kineto::model::fuse::fuse_store(&store).expect("fuse");
        assert_eq!(arch::detect(&fused).expect("detect").form, Form::Fused);
        assert!(
            !fused
                .names()
                .any(|k| k.contains("_batch_norm") || k.contains(".bn."))
        );

        let order = kineto::model::key_order(a);
        let file: Vec<&str> = store.names().collect();
        assert_eq!(order, file, "{name}: PaddleVideo's key order");

        let mut missing = store.clone();
        let dropped = order[order.len() / 2].clone();
        missing.remove(&dropped);
        let err = Recognizer::from_store(&missing, &device).expect_err("missing key");
        assert!(err.to_string().contains(&dropped), "{err}");

        let mut wrong = store.clone();
        let t = wrong.get(fc).expect("fc").clone();
        let bad = kineto::checkpoint::ParamTensor::new(vec![t.shape[0] + 1, t.shape[1]], {
            let mut d = t.data.clone();
            d.extend(std::iter::repeat_n(0.0, t.shape[1]));
            d
        })
        .expect("tensor");
        wrong.insert(fc, bad);
        assert!(
            arch::detect(&wrong).is_err(),
            "{name}: misshapen fc accepted"
        );
    }
}

fn ok(out: std::process::Output) -> std::process::Output {
    assert!(out.status.success(), "{}", stderr(&out));
    out
}

/// `weights info`, export to safetensors and back to .pdparams (bit for bit, in order), the
/// fused export, and `classify` on the example clip with PaddleVideo's top-5.
#[test]
fn cli_info_export_and_classify() {
    let dir = ScratchDir::new("mnet-cli");
    for (name, model) in [("mv2", "pptsm_mv2"), ("mv3", "pptsm_mv3")] {
        let src = weights(name);
        let info = ok(kineto(&["weights", "info", "--json", s(&src)]));
        let v: serde_json::Value = serde_json::from_slice(&info.stdout).expect("json");
        assert_eq!(v["model"], model, "{v}");
        let text = ok(kineto(&["weights", "info", s(&src)]));
        assert!(
            String::from_utf8_lossy(&text.stdout).contains(&format!("model: {model}\n")),
            "{}",
            String::from_utf8_lossy(&text.stdout)
        );

        let st = dir.join(format!("{name}.safetensors"));
        let back = dir.join(format!("{name}_back.pdparams"));
        let fused = dir.join(format!("{name}_fused.safetensors"));
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
        ok(kineto(&[
            "export",
            "--weights",
            s(&src),
            "--output",
            s(&fused),
            "--fused",
        ]));
        let original = read_pdparams(&src).expect("src");
        let exported = read_pdparams(&back).expect("back");
        assert_eq!(
            original.names().collect::<Vec<_>>(),
            exported.names().collect::<Vec<_>>()
        );
        for (k, t) in original.iter() {
            let u = exported.get(k).expect("key");
            assert_eq!(t.shape, u.shape, "{k}");
            assert!(
                t.data
                    .iter()
                    .zip(&u.data)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{k} differs"
            );
        }
        let meta = read_safetensors(&st).expect("st").raw_metadata;
        assert_eq!(meta["model"], model);
        assert_eq!(
            read_safetensors(&fused).expect("fused").raw_metadata["form"],
            "fused"
        );

        // The fused export's logits on the 64x64 clip.
        let act = arrays(&format!("{name}_act64.npz"));
        let x = npz_get(&act, "input");
        let input = dir.join("in64.npy");
        write_npy_f32(&input, &x.shape, &x.data).expect("write input");
        let out = dir.join(format!("{name}_l.npy"));
        ok(kineto(&[
            "logits",
            "--device",
            "cpu",
            "--weights",
            s(&fused),
            "--input",
            s(&input),
            "--output",
            s(&out),
        ]));
        let ours = read_npy_f32(&out).expect("logits").data;
        let d = max_abs_diff(&ours, &npz_get(&act, "logits").data);
        assert!(d <= 1e-4, "{name} fused export logits: {d:e}");

        let out = ok(kineto(&[
            "classify",
            "--device",
            "cpu",
            "--format",
            "json",
            "--weights",
            s(&src),
            s(&fixture("video/example.avi")),
        ]));
        let records: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        let r = &records[0];
        assert_eq!(r["status"], "ok");
        assert_eq!(r["frames"], 8);
        let ours: Vec<u64> = r["top_k"]
            .as_array()
            .expect("top_k")
            .iter()
            .map(|t| t["label_id"].as_u64().unwrap_or(999))
            .collect();
        let top5: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(refs().join(format!("{name}_top5.json"))).expect("top5"),
        )
        .expect("json");
        let want: Vec<u64> = top5["class_ids"]
            .as_array()
            .expect("ids")
            .iter()
            .map(|v| v.as_u64().unwrap_or(998))
            .collect();
        assert_eq!(ours, want, "{name}: PaddleVideo's top-5 in order");
    }
}

/// On wgpu only the fused form at 64x64 (lavapipe compiles and autotunes every convolution shape,
/// slowly): every activation, and the logits.
fn wgpu_parity(name: &str) {
    let start = std::time::Instant::now();
    let device = Device::wgpu(DeviceKind::DefaultDevice);
    let act = arrays(&format!("{name}_act64.npz"));
    let fused = build(&store(name), Form::Fused, &device);
    let report = check_activations(&fused, &act, &device, &[]);
    let worst = report
        .iter()
        .filter(|(n, _)| n != "logits")
        .map(|(_, d)| *d)
        .fold(0.0, f32::max);
    let logits = report
        .iter()
        .find(|(n, _)| n == "logits")
        .map(|(_, d)| *d)
        .expect("the logits are compared");
    eprintln!(
        "{name} wgpu (fused): activations {worst:.2e}, logits@64 {logits:.2e} ({:.0} s)",
        start.elapsed().as_secs_f64()
    );
}

#[test]
fn mobilenet_v2_matches_paddlevideo_on_wgpu() {
    wgpu_parity("mv2");
}

#[test]
fn mobilenet_v3_matches_paddlevideo_on_wgpu() {
    wgpu_parity("mv3");
}

/// The catalog's new entries (signatures unverified against the real downloads) fit the files
/// PaddleVideo's code writes for the same architectures: the MobileNets' generated weights, and a
/// ResNet-101 skeleton written with PaddleVideo's key names.
#[test]
fn catalog_entries_fit_paddlevideos_files() {
    let catalog = kineto::weights::catalog::Catalog::embedded().expect("catalog");
    for (entry, name) in [("ppTSM_mv2_k400", "mv2"), ("ppTSM_mv3_k400", "mv3")] {
        let e = catalog.get(entry).expect("entry");
        assert_eq!(e.num_seg, Some(8));
        kineto::weights::verify_file(e, &weights(name)).unwrap_or_else(|p| panic!("{entry}: {p}"));
        // ... and not the other MobileNet's file.
        let other = if name == "mv2" { "mv3" } else { "mv2" };
        assert!(kineto::weights::verify_file(e, &weights(other)).is_err());
    }
    let r101 = kineto::model::Arch {
        model: ModelKind::PptsmResnet,
        depth: Some(101),
        num_seg: None,
        num_classes: 400,
        attention: false,
        form: Form::Training,
    };
    let store = Recognizer::skeleton(r101, &Device::flex())
        .expect("skeleton")
        .to_store();
    let dir = ScratchDir::new("mnet-r101");
    let path = dir.join("r101.pdparams");
    kineto::checkpoint::write_pdparams(&store, &path).expect("write");
    for entry in ["ppTSM_k400_uniform_distill_r101", "ppTSM_k400_dense_r101"] {
        let e = catalog.get(entry).expect("entry");
        kineto::weights::verify_file(e, &path).unwrap_or_else(|p| panic!("{entry}: {p}"));
    }
}

/// `kineto export --format onnx` of both MobileNets runs in ONNX Runtime
/// (`tests/python/ort_logits.py`) and gives PaddleVideo's logits, at 64x64 (8 frames) and with
/// `--frames 16`.
#[test]
fn onnx_export_gives_paddlevideos_logits() {
    let dir = ScratchDir::new("mnet-onnx");
    for name in ["mv2", "mv3"] {
        let act = arrays(&format!("{name}_act64.npz"));
        let io16 = arrays(&format!("{name}_io64_16f.npz"));
        for (frames, set) in [("8", &act), ("16", &io16)] {
            let model = dir.join(format!("{name}_{frames}f.onnx"));
            ok(kineto(&[
                "export",
                "--weights",
                s(&weights(name)),
                "--output",
                s(&model),
                "--format",
                "onnx",
                "--frames",
                frames,
            ]));
            let x = npz_get(set, "input");
            let input = dir.join(format!("{name}_{frames}_in.npy"));
            write_npy_f32(&input, &x.shape, &x.data).expect("write input");
            let out = dir.join(format!("{name}_{frames}_out.npy"));
            let run = python_script(
                "ort_logits.py",
                [model.as_os_str(), input.as_os_str(), out.as_os_str()],
            );
            assert!(
                run.status.success(),
                "ort_logits.py: {}\n{}",
                String::from_utf8_lossy(&run.stdout),
                String::from_utf8_lossy(&run.stderr)
            );
            let ours = read_npy_f32(&out).expect("logits").data;
            let d = max_abs_diff(&ours, &npz_get(set, "logits").data);
            assert!(d <= 1e-4, "{name} {frames}f ONNX Runtime logits: {d:e}");
            eprintln!("{name} {frames}f ONNX Runtime vs PaddleVideo: {d:.2e}");
        }
    }
}

/// Head-only training works on a MobileNet (its fc in the backbone: `backbone.out` /
/// `backbone.fc`), and so does full fine-tuning (at 32x32, 2 frames, one epoch): its fused
/// model loads strictly and classifies with a new class, and its training-form checkpoint
/// exports as a .pdparams with PaddleVideo's keys and shapes (the fc with 2 classes).
#[test]
fn head_only_and_full_fine_tuning() {
    let root = ScratchDir::new("mnet-train");
    let data = root.join("data");
    common::train::demo_data(&data, 2, 2, 11);
    for (name, model) in [("mv2", "pptsm_mv2"), ("mv3", "pptsm_mv3")] {
        let output = root.join(format!("{name}_head.safetensors"));
        let run = root.join(format!("{name}_run"));
        ok(kineto(&[
            "--device",
            "cpu",
            "train",
            s(&data),
            "--head-only",
            "--weights",
            s(&weights(name)),
            "--frames",
            "8",
            "--epochs",
            "1",
            "--seed",
            "7",
            "--run-dir",
            s(&run),
            "--output",
            s(&output),
        ]));
        let info = ok(kineto(&["weights", "info", "--json", s(&output)]));
        let v: serde_json::Value = serde_json::from_slice(&info.stdout).expect("json");
        assert_eq!(v["model"], model, "{v}");
        assert_eq!(v["classes"], 2, "{v}");

        let run = root.join(format!("{name}_full"));
        ok(kineto(&[
            "--device",
            "cpu",
            "train",
            s(&data),
            "--weights",
            s(&weights(name)),
            "--frames",
            "2",
            "--size",
            "32",
            "--batch-size",
            "2",
            "--epochs",
            "1",
            "--seed",
            "7",
            "--run-dir",
            s(&run),
        ]));
        let model_path = run.join("model.safetensors");
        let info = ok(kineto(&["weights", "info", "--json", s(&model_path)]));
        let v: serde_json::Value = serde_json::from_slice(&info.stdout).expect("json");
        assert_eq!(v["model"], model, "{v}");
        assert_eq!(v["classes"], 2, "{v}");
        let top1 = common::train::classify_demo_clip(&data, &model_path);
        assert!(
            ["ball_wavy", "bars_scroll"].contains(&top1.as_str()),
            "{top1}"
        );
        let latest = kineto::train::checkpoints::latest_files(&run).expect("latest");
        let exported = root.join(format!("{name}_full.pdparams"));
        ok(kineto(&[
            "export",
            "--weights",
            s(&run.join(&latest.model)),
            "--output",
            s(&exported),
        ]));
        let shapes = |store: &kineto::checkpoint::ParamStore| {
            store
                .iter()
                .map(|(k, t)| {
                    let fc = k.starts_with("backbone.out.") || k.starts_with("backbone.fc.");
                    let shape = if fc {
                        t.shape[..t.shape.len() - 1].to_vec()
                    } else {
                        t.shape.clone()
                    };
                    (k.to_string(), shape)
                })
                .collect::<std::collections::BTreeSet<_>>()
        };
        let ours = read_pdparams(&exported).expect("exported");
        assert_eq!(shapes(&ours), shapes(&store(name)), "{name}");
        let bias = if name == "mv2" {
            "backbone.out.bias"
        } else {
            "backbone.fc.bias"
        };
        assert_eq!(ours.get(bias).expect("fc bias").shape, vec![2]);
    }
}
