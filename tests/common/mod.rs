//! Shared test helpers: fixture paths, .npz reading, comparisons, model building.
#![allow(dead_code)]

pub mod app;
pub mod compare;
pub mod train;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use burn::tensor::{Device, TensorData};
use kineto::checkpoint::ParamStore;
use kineto::checkpoint::keys::{Role, canonicalize};
use kineto::checkpoint::pdparams::read_pdparams;
use kineto::model::fuse::fuse_store;
use kineto::model::{Form, Recognizer};
use kineto::npy::{NpyArray, read_npy_f32, read_npy_u8, read_npz_f32};

/// `KINETO_FIXTURES`, else `../shared/fixtures` beside the package. A missing file panics with
/// its path: fixtures are never skipped.
pub fn fixture(rel: &str) -> PathBuf {
    let root = std::env::var_os("KINETO_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"));
    let path = root.join(rel);
    assert!(path.exists(), "missing fixture {}", path.display());
    path
}

pub fn npy(rel: &str) -> NpyArray<f32> {
    let path = fixture(rel);
    read_npy_f32(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// A uint8 `.npy` fixture (decoded frames).
pub fn npy_u8(rel: &str) -> NpyArray<u8> {
    read_npy_u8(&fixture(rel)).unwrap_or_else(|e| panic!("{e}"))
}

/// Every float32 array of an `np.savez_compressed` fixture, by key.
pub fn npz(rel: &str) -> Vec<(String, NpyArray<f32>)> {
    read_npz_f32(&fixture(rel)).unwrap_or_else(|e| panic!("{e}"))
}

pub fn npz_get<'a>(arrays: &'a [(String, NpyArray<f32>)], key: &str) -> &'a NpyArray<f32> {
    &arrays
        .iter()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("fixture array {key} missing"))
        .1
}

pub fn data_f32(data: &TensorData) -> Vec<f32> {
    data.clone()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 data")
}

/// Max abs difference; shapes must match.
pub fn max_abs_diff(ours: &[f32], reference: &[f32]) -> f32 {
    assert_eq!(ours.len(), reference.len(), "length mismatch");
    ours.iter()
        .zip(reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

/// Canonical PP-TSMv2 fixture weights; with `attention`, merged with the 16f attention extra.
pub fn v2_store(attention: bool) -> ParamStore {
    let mut raw = read_pdparams(&fixture("pptsmv2/w8.pdparams")).expect("w8.pdparams");
    if attention {
        let extra = read_pdparams(&fixture("pptsmv2/att16_extra.pdparams")).expect("att16_extra");
        for (k, t) in extra.iter() {
            raw.insert(k, t.clone());
        }
    }
    canonicalize(&raw, Role::Student).expect("layout").1
}

pub fn r50_store() -> ParamStore {
    let raw = read_pdparams(&fixture("pptsm_r50/w.pdparams")).expect("w.pdparams");
    canonicalize(&raw, Role::Student).expect("layout").1
}

pub fn build(store: &ParamStore, form: Form, device: &Device) -> Recognizer {
    let store = match form {
        Form::Training => store.clone(),
        Form::Fused => fuse_store(store).expect("fuse"),
    };
    Recognizer::from_store(&store, device).unwrap_or_else(|e| panic!("{e}"))
}

/// The input's `[N, T, 3, H, W]` (a lone clip `[T, 3, H, W]` is a batch of one).
pub fn clip_dims(array: &NpyArray<f32>) -> [usize; 5] {
    match array.shape.as_slice() {
        &[t, c, h, w] => [1, t, c, h, w],
        &[n, t, c, h, w] => [n, t, c, h, w],
        other => panic!("input shape {other:?}"),
    }
}

/// The input as a 5-D tensor on `device`.
pub fn clip_tensor(array: &NpyArray<f32>, device: &Device) -> burn::tensor::Tensor<5> {
    burn::tensor::Tensor::from_data(
        TensorData::new(array.data.clone(), clip_dims(array)),
        device,
    )
}

/// Runs the traced forward and compares every fixture array (bar `skip`) with the record of the
/// same name; per-frame activations stored for the first frames only are compared on those.
pub fn check_activations(
    model: &Recognizer,
    arrays: &[(String, NpyArray<f32>)],
    device: &Device,
    skip: &[&str],
) -> Vec<(String, f32)> {
    let input = clip_tensor(npz_get(arrays, "input"), device);
    let mut trace = kineto::model::layers::Trace::enabled();
    model.forward_traced(input, &mut trace);
    let mut report = Vec::new();
    for (name, reference) in arrays {
        if name == "input" || skip.contains(&name.as_str()) {
            continue;
        }
        let ours = trace
            .get(name)
            .unwrap_or_else(|| panic!("the forward records no {name}"));
        let ours = data_f32(ours);
        let n = reference.data.len();
        assert!(
            ours.len() >= n,
            "{name}: ours has {} values, fixture {n}",
            ours.len()
        );
        let diff = max_abs_diff(&ours[..n], &reference.data);
        let tol = if name.starts_with("logits") {
            1e-4
        } else {
            1e-3
        };
        assert!(diff <= tol, "{name}: max abs diff {diff:e} > {tol:e}");
        report.push((name.clone(), diff));
    }
    report
}

/// Runs `tests/python/<script>` with `args` under `KINETO_PADDLE_PYTHON` (the venv `.ci/run`
/// makes: paddlepaddle, numpy, decord). Unset, the test fails and says how to make it; it is
/// never skipped. The output is returned whatever the exit status.
pub fn python_script<I, A>(script: &str, args: I) -> Output
where
    I: IntoIterator<Item = A>,
    A: AsRef<std::ffi::OsStr>,
{
    let python = match std::env::var_os("KINETO_PADDLE_PYTHON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!(
            "KINETO_PADDLE_PYTHON is not set: this test needs the Python venv .ci/run makes \
             (paddlepaddle, numpy, decord, onnx, onnxruntime, pillow, opencv-python-headless, \
             scipy, and ppvideo installed with --no-deps; see .ci/run for the versions), then \
             `export KINETO_PADDLE_PYTHON=~/.cache/kineto/paddle-venv/bin/python`"
        ),
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    Command::new(&python)
        .arg(&path)
        .args(args)
        .env("PYTHONWARNINGS", "ignore")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} (KINETO_PADDLE_PYTHON): {e}",
                python.display()
            )
        })
}

/// Runs the `kineto` binary the tests were built with.
pub fn kineto(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kineto"))
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .expect("run kineto")
}

/// `kineto` run with `dir` as its working folder.
pub fn kineto_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kineto"))
        .current_dir(dir)
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .expect("run kineto")
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A scratch folder `kineto-{tag}-{pid}` under the system's temp dir, removed with its
/// contents when dropped, so that test runs leave nothing behind; a failing test keeps it for
/// inspection.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// An empty folder (a stale one from an earlier run is cleared).
    pub fn new(tag: &str) -> Self {
        let dir = Self::absent(tag);
        std::fs::create_dir_all(&dir.0).expect("create a scratch folder");
        dir
    }

    /// A path where nothing exists yet, for a command that creates it.
    pub fn absent(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("kineto-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Self(dir)
    }
}

impl std::ops::Deref for ScratchDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for ScratchDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for ScratchDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
