//! One full fine-tuning run from start to finish (`kineto train DATA` without `--head-only`),
//! parallel to [`run_head_only`](super::job::run_head_only) and sharing its pieces: the data
//! check and summary, the split, the run folder (`settings.json`, `metrics.jsonl`, the report,
//! `confusion.csv`), the [`JobEvent`]s, the warm-up + cosine schedule and the step of
//! [`FullTrainer`] (PaddleVideo's train-mode step, verified against Paddle).
//!
//! - **Model**: the start checkpoint in its *training* form (BatchNorm layers, rep branches;
//!   a fused checkpoint is refused), PP-TSMv2 only, with its fc replaced by a fresh one for the
//!   new classes (Paddle's `Linear` default: Xavier-uniform weight, zero bias; seeded).
//! - **Data**: PaddleVideo's `PIPELINE.train` (fixtures README, "Training recipe"): one random
//!   frame per segment, `Scale(256)`, `MultiScaleCrop(256)`, `RandomCrop(224)`, `RandomFlip`,
//!   normalisation; with `size` < 224 every length is scaled by `size/224` (Scale and
//!   MultiScaleCrop to `round(size·256/224)`, RandomCrop to `size`). Validation: the test
//!   pipeline (middle frame of each segment, Scale, CenterCrop) at the same scale, run on the
//!   fused form of the current weights (eval-mode BatchNorm). Decode workers feed a bounded
//!   prefetch queue, so decoding overlaps the steps. The last short batch is kept (small sets
//!   would lose clips; PaddleVideo drops it).
//! - **Mixup** as configured (alpha 0.2, per batch), unless switched off.
//! - **Schedule**: [`WarmupCosine::recipe`] per iteration. Without `lr`, PaddleVideo's base lr
//!   0.01 for its global batch of 128 (8 GPUs x 16 clips) scaled linearly to the batch size,
//!   as its PP-TSM docs say: `lr = 0.01·B/128`, warm-up from half of it over 1/12 of the
//!   epochs.
//! - **Determinism**: the epoch's clip order, each clip's random choices and each batch's Mixup
//!   are functions of (seed, epoch, clip / batch), not of a stream, so a run resumed from a
//!   checkpoint (taken at an epoch end, or mid-epoch on cancel) computes the same steps as an
//!   uninterrupted run with the same seed.
//! - **Checkpoints** in the run folder: `latest.safetensors` (training form, with the class
//!   names) plus `latest.optim.bin` (the optimiser's f64 velocities) and `latest.state.json`
//!   (epoch, batch, step, partial epoch sums, sha256 of both files), written at every epoch end
//!   and when cancelled; `best.safetensors` by val top-1. The final model is
//!   `model.safetensors` in the fused form with the class names (what `kineto classify` runs).
//! - **Distillation** ([`DistillJob`]): `Dml` trains a teacher (training form: PP-TSM
//!   ResNet-50 as in PaddleVideo's recipe, or another PP-TSMv2) with
//!   the student, both on the same mixed batch, by PaddleVideo's DML loss ([`dml_step`]; each
//!   model its own velocities, one schedule); the teacher is checkpointed beside `latest` as
//!   `latest_teacher.safetensors` + `latest_teacher.optim.bin` (named in the state), and
//!   resumed with it. `Kd` runs a frozen teacher (any form, PP-TSMv2 or ResNet-50, with the
//!   data's classes) through the fused inference [`Engine`] and trains the student by
//!   [`kd_step`]. The step events carry each term (`ce`, `ce_teacher`, `dml` / `ce`, `kd`);
//!   `loss` is the total. Validation and the exported model are the student's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use burn::tensor::{FloatDType, Tensor, TensorData};
use crossbeam_channel::{Receiver, bounded};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::TrainError;
use super::dataset::Sample;
use super::distill::{DmlWeights, KdWeights, Targets};
use super::full::{FullStepOptions, FullTrainer, dml_step, kd_step};
use super::head_only::{Head, ModelOrigin, store_with_head, write_trained_store};
use super::job::{
    DataCheck, HeadOnlyOutcome, JobDevice, JobEvent, RunEnd, TrainJob, default_run_dir_for,
    finish_run, open_split, probe_and_report, resolve_num_seg,
};
use super::metrics::{Evaluation, TrainEvent, argmax};
use super::run::{MetricsLog, WarmupCosine, prepare_run_dir, write_run_file};
use crate::checkpoint::file::{Checkpoint, open_checkpoint};
use crate::checkpoint::keys::{Layout, Role};
use crate::infer::device::ComputeDevice;
use crate::infer::engine::{Engine, panic_message, store_in_form};
use crate::model::fuse::fuse_store;
use crate::model::{Arch, Form, ModelKind, Recognizer};
use crate::progress::CancelToken;
use crate::video::decode::FrameDecoder;
use crate::video::sample::{train_indices, uniform_indices};
use crate::video::transform::{
    Normalize, multi_scale_crop, random_crop, random_flip, scale_short_side, test_pipeline,
    to_clip_tensor,
};

/// Files of a full fine-tuning run folder.
pub const LATEST: &str = "latest.safetensors";
pub const LATEST_OPTIM: &str = "latest.optim.bin";
pub const LATEST_STATE: &str = "latest.state.json";
pub const BEST: &str = "best.safetensors";
pub const MODEL: &str = "model.safetensors";
/// DML: the teacher's training-form weights and velocities at the same checkpoint.
pub const LATEST_TEACHER: &str = "latest_teacher.safetensors";
pub const LATEST_TEACHER_OPTIM: &str = "latest_teacher.optim.bin";
/// Classic KD defaults: temperature and the KD term's weight A in `(1 − A)·CE + A·KD`.
pub const KD_TEMPERATURE: f64 = 4.0;
pub const KD_WEIGHT: f64 = 0.5;
/// DML's default weight of the symmetric KL term (PaddleVideo's: every term 1.0).
pub const DML_WEIGHT: f64 = 1.0;
/// PaddleVideo's `MIX: {name: Mixup, alpha: 0.2}`.
pub const MIXUP_ALPHA: f64 = 0.2;
/// PaddleVideo's training crop; `size` may be smaller for speed.
pub const FULL_SIZE: u32 = 224;

const STATE_FORMAT: &str = "kineto-train-state";
const STATE_VERSION: u32 = 1;

/// What a full run was started with (`settings.json` → `job`): everything that decides its
/// numbers, so that `--resume` continues exactly the same run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FullSettings {
    pub data: PathBuf,
    pub val: Option<PathBuf>,
    pub val_split: f64,
    pub labels: Option<PathBuf>,
    /// The start weights as named, and the file they resolved to.
    pub weights: String,
    pub weights_path: PathBuf,
    pub weights_sha256: String,
    pub num_seg: usize,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: Option<f64>,
    pub seed: u64,
    pub size: u32,
    pub mixup: bool,
    pub output: Option<PathBuf>,
    /// Distillation (absent in runs without it, and in runs made before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distill: Option<DistillSettings>,
    /// `--freeze-stages`: the stem and this many stages of the student frozen (absent when 0,
    /// and in runs made before it existed).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub freeze_stages: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The report's line about `--freeze-stages` (`None` when nothing is frozen).
pub fn freeze_description(stages: usize) -> Option<String> {
    let what = match stages {
        0 => return None,
        1 => "the stem and stages.0".to_string(),
        2 => "the stem and stages.0-1".to_string(),
        n => format!(
            "the stem, stages.0-{} and the temporal attention (if any)",
            n - 1
        ),
    };
    Some(format!(
        "frozen (--freeze-stages {stages}): {what}; BatchNorm there in eval mode"
    ))
}

/// Which distillation: PaddleVideo's DML (student and teacher trained together) or classic KD
/// (frozen teacher).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DistillMode {
    Dml,
    Kd,
}

impl DistillMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DistillMode::Dml => "dml",
            DistillMode::Kd => "kd",
        }
    }
}

/// Distillation of a full fine-tuning job.
#[derive(Clone, Debug, PartialEq)]
pub struct DistillJob {
    pub mode: DistillMode,
    /// The teacher as named, and the file it resolved to (of a DML checkpoint: its Teacher).
    pub teacher: String,
    pub teacher_path: PathBuf,
    /// KD only: the softmax temperature T.
    pub temperature: f64,
    /// KD only: A in `(1 − A)·CE + A·T²·KL(p_t^T ‖ p_s^T)`, in [0, 1].
    pub kd_weight: f64,
    /// DML only: the weight of the symmetric KL term (both cross-entropies weigh 1), >= 0.
    pub dml_weight: f64,
}

impl DistillJob {
    /// DML with `teacher` (PaddleVideo's weights: every term 1.0).
    pub fn dml(teacher: impl Into<PathBuf>) -> Self {
        let teacher_path = teacher.into();
        Self {
            mode: DistillMode::Dml,
            teacher: teacher_path.display().to_string(),
            teacher_path,
            temperature: KD_TEMPERATURE,
            kd_weight: KD_WEIGHT,
            dml_weight: DML_WEIGHT,
        }
    }

    /// Classic KD from the frozen `teacher` at the default temperature and weight.
    pub fn kd(teacher: impl Into<PathBuf>) -> Self {
        Self {
            mode: DistillMode::Kd,
            ..Self::dml(teacher)
        }
    }

    fn validate(&self) -> Result<(), TrainError> {
        if !(self.dml_weight.is_finite() && self.dml_weight >= 0.0) {
            return Err(TrainError::Invalid(
                "--dml-weight must be a number >= 0".into(),
            ));
        }
        if self.mode == DistillMode::Kd {
            if !(self.temperature.is_finite() && self.temperature > 0.0) {
                return Err(TrainError::Invalid(
                    "--temperature must be a positive number".into(),
                ));
            }
            if !(0.0..=1.0).contains(&self.kd_weight) {
                return Err(TrainError::Invalid("--kd-weight must be in [0, 1]".into()));
            }
        }
        Ok(())
    }
}

/// `settings.json` → `job.distill`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DistillSettings {
    pub mode: DistillMode,
    pub teacher: String,
    pub teacher_path: PathBuf,
    pub teacher_sha256: String,
    /// KD only.
    pub temperature: Option<f64>,
    pub kd_weight: Option<f64>,
    /// DML only (absent in runs from before it existed: 1.0).
    pub dml_weight: Option<f64>,
}

impl FullSettings {
    /// The fields that must agree between a run and its resumption (names and outputs may
    /// differ).
    fn numbers(&self) -> serde_json::Value {
        let mut v = json!(self);
        if let Some(o) = v.as_object_mut() {
            o.remove("weights");
            o.remove("output");
            o.remove("weights_path");
            if let Some(d) = o.get_mut("distill").and_then(|d| d.as_object_mut()) {
                d.remove("teacher");
                d.remove("teacher_path");
            }
        }
        v
    }
}

/// Where a run stands at a checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct RunState {
    format: String,
    version: u32,
    /// The epoch in progress (0-based); `epochs` when the run is complete.
    epoch: usize,
    /// The next batch of that epoch (`iterations` when only its validation is left).
    batch: usize,
    /// Steps done in the whole run.
    step: usize,
    /// Sums over the batches done in `epoch`.
    loss_sum: f64,
    correct: usize,
    seen: usize,
    best_val_top1: Option<f64>,
    elapsed_s: f64,
    latest_sha256: String,
    optim_sha256: String,
    /// Velocities in `latest.optim.bin`: key and length, in file order (f64 little-endian).
    velocity: Vec<(String, usize)>,
    broken: Vec<(PathBuf, String)>,
    /// DML: `latest_teacher.safetensors` / `latest_teacher.optim.bin` like the student's.
    #[serde(default)]
    teacher_sha256: String,
    #[serde(default)]
    teacher_optim_sha256: String,
    #[serde(default)]
    teacher_velocity: Vec<(String, usize)>,
}

impl RunState {
    fn fresh() -> Self {
        Self {
            format: STATE_FORMAT.into(),
            version: STATE_VERSION,
            epoch: 0,
            batch: 0,
            step: 0,
            loss_sum: 0.0,
            correct: 0,
            seen: 0,
            best_val_top1: None,
            elapsed_s: 0.0,
            latest_sha256: String::new(),
            optim_sha256: String::new(),
            velocity: Vec::new(),
            broken: Vec::new(),
            teacher_sha256: String::new(),
            teacher_optim_sha256: String::new(),
            teacher_velocity: Vec::new(),
        }
    }
}

/// `round(size·256/224)`: PaddleVideo's Scale / MultiScaleCrop length for a `size` crop
/// (256 for 224).
pub fn short_side_for(size: u32) -> u32 {
    (f64::from(size) * 256.0 / 224.0).round() as u32
}

/// A full fine-tuning job that continues the run in `run_dir`: its options from the run's
/// `settings.json` (the device is the caller's).
pub fn resume_job(run_dir: &Path, device: JobDevice) -> Result<TrainJob, TrainError> {
    let settings = read_settings(run_dir)?;
    let mut job = TrainJob::new(&settings.data, &settings.weights_path);
    job.val = settings.val;
    job.val_split = settings.val_split;
    job.labels = settings.labels;
    job.weights = settings.weights;
    job.frames = Some(settings.num_seg);
    job.epochs = settings.epochs;
    job.batch_size = settings.batch_size;
    job.lr = settings.lr;
    job.seed = settings.seed;
    job.size = settings.size;
    job.mixup = settings.mixup;
    job.output = settings.output;
    job.freeze_stages = settings.freeze_stages;
    job.distill = settings.distill.map(|d| DistillJob {
        mode: d.mode,
        teacher: d.teacher,
        teacher_path: d.teacher_path,
        temperature: d.temperature.unwrap_or(KD_TEMPERATURE),
        kd_weight: d.kd_weight.unwrap_or(KD_WEIGHT),
        dml_weight: d.dml_weight.unwrap_or(DML_WEIGHT),
    });
    job.run_dir = Some(run_dir.to_path_buf());
    job.device = device;
    job.resume = true;
    Ok(job)
}

fn read_settings(run_dir: &Path) -> Result<FullSettings, TrainError> {
    let path = run_dir.join("settings.json");
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
    let bad = |problem: String| TrainError::Target {
        path: path.clone(),
        problem,
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    if value["mode"] != "full" {
        return Err(bad(
            "not a full fine-tuning run (only those can be resumed)".into(),
        ));
    }
    serde_json::from_value(value["job"].clone()).map_err(|e| bad(format!("bad job settings: {e}")))
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn file_sha256(path: &Path) -> Result<String, TrainError> {
    crate::weights::cache::sha256_file(path)
        .map(|(sha, _)| sha)
        .map_err(|e| TrainError::Invalid(e.to_string()))
}

/// A 64-bit mix (SplitMix64's finaliser) of the run seed and a tuple of indices: the seed of
/// one clip's or one batch's random choices.
fn derive_seed(seed: u64, parts: &[u64]) -> u64 {
    let mut h = seed ^ 0x6b69_6e65_746f_0001;
    for &p in parts {
        h = h.wrapping_add(0x9E37_79B9_7F4A_7C15).wrapping_add(p);
        h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        h ^= h >> 31;
    }
    h
}

const TAG_ORDER: u64 = 1;
const TAG_CLIP: u64 = 2;
const TAG_MIXUP: u64 = 3;
const TAG_TEACHER_HEAD: u64 = 4;

/// The epoch's clip order: a seeded shuffle that depends on (seed, epoch) only.
fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = StdRng::seed_from_u64(derive_seed(seed, &[TAG_ORDER, epoch as u64]));
    order.shuffle(&mut rng);
    order
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut impl Rng) -> f64 {
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// A Gamma(shape, 1) draw (Marsaglia–Tsang; shape < 1 through `Gamma(shape + 1)·U^(1/shape)`).
fn gamma(shape: f64, rng: &mut impl Rng) -> f64 {
    if shape < 1.0 {
        let u = 1.0 - rng.random::<f64>();
        return gamma(shape + 1.0, rng) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = normal(rng);
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u = 1.0 - rng.random::<f64>();
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

/// A Beta(alpha, alpha) draw (numpy's `np.random.beta(alpha, alpha)` in distribution).
pub fn beta(alpha: f64, rng: &mut impl Rng) -> f64 {
    let x = gamma(alpha, rng);
    let y = gamma(alpha, rng);
    if x + y > 0.0 { x / (x + y) } else { 0.5 }
}

/// PaddleVideo's Mixup collate on a batch `[n, per-clip values]`: `perm` a permutation,
/// `lam ~ Beta(alpha, alpha)`, `x = lam·x + (1 − lam)·x[perm]`, targets `(y, y[perm], lam)`.
pub fn mixup(data: &mut [f32], labels: &[usize], alpha: f64, rng: &mut impl Rng) -> Targets {
    let n = labels.len();
    let mut perm: Vec<usize> = (0..n).collect();
    perm.shuffle(rng);
    let lam = beta(alpha, rng);
    if n > 0 && data.len().is_multiple_of(n) {
        let per = data.len() / n;
        let original = data.to_vec();
        for (i, out) in data.chunks_exact_mut(per).enumerate() {
            let other = &original[perm[i] * per..(perm[i] + 1) * per];
            for (o, (&a, &b)) in out
                .iter_mut()
                .zip(original[i * per..(i + 1) * per].iter().zip(other))
            {
                *o = (lam * f64::from(a) + (1.0 - lam) * f64::from(b)) as f32;
            }
        }
    }
    Targets::Mixup {
        a: labels.to_vec(),
        b: perm.iter().map(|&j| labels[j]).collect(),
        lam,
    }
}

/// How clips are turned into model input.
#[derive(Clone, Copy, Debug)]
struct ClipSpec {
    num_seg: usize,
    size: u32,
    short: u32,
}

impl ClipSpec {
    fn values(&self) -> usize {
        self.num_seg * 3 * (self.size as usize) * (self.size as usize)
    }
}

/// The problem without its `<path>: ` prefix.
fn problem(path: &Path, text: String) -> String {
    let prefix = format!("{}: ", path.display());
    text.strip_prefix(&prefix)
        .map_or(text.clone(), str::to_string)
}

/// One training clip: random frame per segment, Scale, MultiScaleCrop, RandomCrop,
/// RandomFlip, normalisation, all random choices from `seed`. `[T, 3, size, size]`.
fn train_clip(path: &Path, spec: ClipSpec, seed: u64) -> Result<Vec<f32>, String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut decoder = FrameDecoder::open(path).map_err(|e| problem(path, e.to_string()))?;
    let frames_len = decoder.info().frame_count as usize;
    if frames_len == 0 {
        return Err("the video has no frames".into());
    }
    let indices = train_indices(frames_len, spec.num_seg, &mut rng);
    let frames = decoder
        .frames_at(&indices)
        .map_err(|e| problem(path, e.to_string()))?;
    drop(decoder);
    let frame_err = |e: crate::video::frame::FrameError| e.to_string();
    let scaled = frames
        .iter()
        .map(|f| scale_short_side(f, spec.short))
        .collect::<Result<Vec<_>, _>>()
        .map_err(frame_err)?;
    let cropped = multi_scale_crop(&scaled, &mut rng, spec.short).map_err(frame_err)?;
    let cropped = random_crop(&cropped, spec.size, &mut rng).map_err(frame_err)?;
    let flipped = random_flip(cropped, &mut rng);
    let clip = to_clip_tensor(&flipped, &Normalize::imagenet()).map_err(frame_err)?;
    Ok(clip.data)
}

/// One validation clip: the test pipeline (middle frame of each segment, Scale, CenterCrop,
/// normalisation) at the run's scale; at 224 the exact tensor `kineto classify` feeds.
fn eval_clip(path: &Path, spec: ClipSpec) -> Result<Vec<f32>, String> {
    let mut decoder = FrameDecoder::open(path).map_err(|e| problem(path, e.to_string()))?;
    let frames_len = decoder.info().frame_count as usize;
    if frames_len == 0 {
        return Err("the video has no frames".into());
    }
    let frames = decoder
        .frames_at(&uniform_indices(frames_len, spec.num_seg))
        .map_err(|e| problem(path, e.to_string()))?;
    drop(decoder);
    let clip = test_pipeline(&frames, spec.short, spec.size, &Normalize::imagenet())
        .map_err(|e| e.to_string())?;
    Ok(clip.data)
}

type ClipResult = Result<Vec<f32>, String>;

/// Decode workers feeding a bounded, ordered prefetch queue: worker `w` prepares clips
/// `w, w + W, w + 2W, …` into its own bounded channel, and [`Loader::next`] reads the channels
/// round-robin, so the clips come back in order while up to `W·depth` are prepared ahead.
struct Loader {
    receivers: Vec<Receiver<ClipResult>>,
    next: usize,
    len: usize,
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

impl Loader {
    /// `seeds`: one per clip for training clips, `None` for validation clips.
    fn spawn(
        clips: Vec<(PathBuf, Option<u64>)>,
        spec: ClipSpec,
        workers: usize,
        depth: usize,
    ) -> Result<Self, TrainError> {
        let workers = workers.clamp(1, clips.len().max(1));
        let clips = Arc::new(clips);
        let stop = Arc::new(AtomicBool::new(false));
        let mut receivers = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for w in 0..workers {
            let (tx, rx) = bounded::<ClipResult>(depth.max(1));
            let clips = Arc::clone(&clips);
            let stop = Arc::clone(&stop);
            let handle = std::thread::Builder::new()
                .name(format!("kineto-decode-{w}"))
                .spawn(move || {
                    for (path, seed) in clips.iter().skip(w).step_by(workers) {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let run = || match seed {
                            Some(seed) => train_clip(path, spec, *seed),
                            None => eval_clip(path, spec),
                        };
                        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run))
                            .unwrap_or_else(|p| {
                                Err(format!("decoding crashed: {}", panic_message(&p)))
                            });
                        if tx.send(result).is_err() {
                            break;
                        }
                    }
                })
                .map_err(|e| TrainError::Invalid(format!("cannot start a decode thread: {e}")))?;
            receivers.push(rx);
            handles.push(handle);
        }
        Ok(Self {
            receivers,
            next: 0,
            len: clips.len(),
            stop,
            handles,
        })
    }

    /// The next clip in order; `None` after the last.
    fn next(&mut self) -> Option<ClipResult> {
        if self.next >= self.len {
            return None;
        }
        let rx = &self.receivers[self.next % self.receivers.len()];
        self.next += 1;
        Some(
            rx.recv()
                .unwrap_or_else(|_| Err("the decode worker stopped".into())),
        )
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Workers blocked on a full channel see it closed and stop.
        self.receivers.clear();
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}

/// Decode worker threads for a device with `threads` compute threads.
fn decode_workers(threads: usize) -> usize {
    (threads / 4).clamp(1, 4)
}

/// Logits of the fused form of the trainer's current weights on `samples` (eval-mode
/// BatchNorm, the validation pipeline). `None` when cancelled.
fn evaluate(
    trainer: &FullTrainer,
    device: &ComputeDevice,
    samples: &[Sample],
    spec: ClipSpec,
    batch_size: usize,
    cancel: &CancelToken,
    broken: &mut Vec<(PathBuf, String)>,
) -> Result<Option<Evaluation>, TrainError> {
    let classes = trainer.classes();
    let fused = fuse_store(&trainer.to_store()).map_err(TrainError::Invalid)?;
    let model = Recognizer::from_store(&fused, &device.device)
        .map_err(|e| TrainError::Invalid(format!("the evaluation model: {e}")))?;
    let clips = samples.iter().map(|s| (s.path.clone(), None)).collect();
    let mut loader = Loader::spawn(
        clips,
        spec,
        decode_workers(device.threads),
        batch_size.max(2),
    )?;
    let (mut logits, mut labels) = (Vec::new(), Vec::new());
    for chunk in samples.chunks(batch_size.max(1)) {
        if cancel.is_cancelled() {
            return Ok(None);
        }
        let mut data = Vec::with_capacity(chunk.len() * spec.values());
        let mut chunk_labels = Vec::with_capacity(chunk.len());
        for sample in chunk {
            match loader.next() {
                Some(Ok(clip)) if clip.len() == spec.values() => {
                    data.extend(clip);
                    chunk_labels.push(sample.label);
                }
                Some(Ok(clip)) => broken.push((
                    sample.path.clone(),
                    format!("prepared {} values, expected {}", clip.len(), spec.values()),
                )),
                Some(Err(e)) => broken.push((sample.path.clone(), e)),
                None => broken.push((sample.path.clone(), "the decode queue ended early".into())),
            }
        }
        if chunk_labels.is_empty() {
            continue;
        }
        let size = spec.size as usize;
        let dims = [chunk_labels.len(), spec.num_seg, 3, size, size];
        model
            .check_input(&dims)
            .map_err(|e| TrainError::Invalid(e.to_string()))?;
        let run = || {
            let clips = Tensor::<5>::from_data(TensorData::new(data, dims), &device.device);
            model.forward(clips).try_into_data()
        };
        let out = device.install(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)));
        let values = match out {
            Ok(Ok(d)) => d
                .convert::<f32>()
                .try_into_vec::<f32>()
                .map_err(|e| TrainError::Invalid(format!("evaluation: {e:?}")))?,
            Ok(Err(e)) => return Err(TrainError::Invalid(format!("evaluation: {e:?}"))),
            Err(p) => {
                return Err(TrainError::Invalid(format!(
                    "evaluation crashed: {}",
                    panic_message(&p)
                )));
            }
        };
        logits.extend(values);
        labels.extend(chunk_labels);
    }
    Ok(Some(Evaluation::of(&logits, classes, &labels)))
}

/// The training-form network to start from: `latest` when resuming, else the start
/// checkpoint with a fresh fc for `classes` classes.
fn start_model(
    checkpoint: &Checkpoint,
    classes: usize,
    seed: u64,
    device: &ComputeDevice,
) -> Result<Recognizer, TrainError> {
    let head = Head::for_model(checkpoint.arch.model, classes, seed);
    let store = store_with_head(checkpoint, &head)?;
    Recognizer::from_store(&store, &device.device)
        .map_err(|e| TrainError::Invalid(format!("{}: {e}", checkpoint.path.display())))
}

/// The start checkpoint, which must be PP-TSMv2 in the training form.
fn open_training_checkpoint(weights: &Path) -> Result<Checkpoint, TrainError> {
    let checkpoint =
        open_checkpoint(weights, Role::Student).map_err(|e| TrainError::Invalid(e.to_string()))?;
    if checkpoint.arch.form == Form::Fused {
        return Err(TrainError::Invalid(format!(
            "{}: is in the fused inference form (BatchNorm folded into the convolutions); full \
             fine-tuning needs the training form (a PaddleVideo .pdparams, or safetensors \
             exported without --fused), or use --head-only",
            weights.display()
        )));
    }
    if checkpoint.arch.model != ModelKind::PptsmV2 {
        return Err(TrainError::Invalid(format!(
            "{}: full fine-tuning supports PP-TSMv2 only; this is {} (use --head-only)",
            weights.display(),
            checkpoint.arch.display_name()
        )));
    }
    Ok(checkpoint)
}

/// The teacher's checkpoint: of a DML checkpoint (PaddleVideo's `Student.*`/`Teacher.*`) its
/// Teacher, else the one model the file holds.
fn open_teacher_checkpoint(path: &Path) -> Result<Checkpoint, TrainError> {
    let checkpoint = open_checkpoint(path, Role::Student).map_err(invalid)?;
    if checkpoint.layout == Layout::Dml {
        return open_checkpoint(path, Role::Teacher).map_err(invalid);
    }
    Ok(checkpoint)
}

/// Checks the teacher against the mode, the data's classes and num_seg, before any work.
fn check_teacher(
    distill: &DistillJob,
    teacher: &Checkpoint,
    classes: &[String],
    num_seg: usize,
) -> Result<(), TrainError> {
    let path = teacher.path.display();
    if let Some(fixed) = teacher.arch.num_seg
        && fixed != num_seg
    {
        return Err(TrainError::Invalid(format!(
            "{path}: the teacher's temporal attention fixes num_seg = {fixed}; the student \
             trains on {num_seg} frames"
        )));
    }
    match distill.mode {
        DistillMode::Dml => {
            if teacher.arch.form == Form::Fused {
                return Err(TrainError::Invalid(format!(
                    "{path}: is in the fused inference form; --distill dml trains the teacher \
                     too and needs the training form (a .pdparams, or safetensors exported \
                     without --fused)"
                )));
            }
        }
        DistillMode::Kd => {
            if teacher.arch.num_classes != classes.len() {
                return Err(TrainError::Invalid(format!(
                    "{path}: the KD teacher has {} classes, the data {}; a frozen teacher must \
                     already know the data's classes (e.g. a model from kineto train on this \
                     data), or use --distill dml",
                    teacher.arch.num_classes,
                    classes.len()
                )));
            }
            if let Some(names) = &teacher.class_names
                && names.as_slice() != classes
            {
                return Err(TrainError::Invalid(format!(
                    "{path}: the KD teacher's classes ({}) are not the data's ({})",
                    names.join(", "),
                    classes.join(", ")
                )));
            }
        }
    }
    Ok(())
}

/// The DML teacher to start from: its own fc when it already has the data's classes (by
/// name), else a fresh one (seeded apart from the student's).
fn start_teacher(
    checkpoint: &Checkpoint,
    class_names: &[String],
    seed: u64,
    device: &ComputeDevice,
) -> Result<Recognizer, TrainError> {
    if checkpoint.class_names.as_deref() == Some(class_names) {
        return Recognizer::from_store(&checkpoint.store, &device.device)
            .map_err(|e| TrainError::Invalid(format!("{}: {e}", checkpoint.path.display())));
    }
    start_model(
        checkpoint,
        class_names.len(),
        derive_seed(seed, &[TAG_TEACHER_HEAD]),
        device,
    )
}

/// The frozen KD teacher as an inference engine (the fused form: eval-mode BatchNorm; on the
/// CPU a fused PP-TSMv2 runs Kineto's channels-last path).
fn kd_engine(checkpoint: &Checkpoint, device: &ComputeDevice) -> Result<Engine, TrainError> {
    let store = store_in_form(checkpoint, Form::Fused).map_err(invalid)?;
    let model = Recognizer::from_store(&store, &device.device)
        .map_err(|e| TrainError::Invalid(format!("{}: {e}", checkpoint.path.display())))?;
    Ok(Engine::from_model(model, device.clone()))
}

/// What trains the student besides its own labels.
enum Distiller {
    None,
    /// The teacher is trained by the same step.
    Dml {
        teacher: Box<FullTrainer>,
        weights: DmlWeights,
    },
    /// Frozen: its logits come from `kd_engine`.
    Kd {
        temperature: f64,
        weights: KdWeights,
    },
}

/// One step's numbers for the log.
struct Stepped {
    loss: f64,
    terms: Vec<(&'static str, f64)>,
    /// The student's logits `[N, classes]`.
    logits: Vec<f64>,
}

/// Everything a checkpoint write needs besides the trainer and the state.
struct Saver<'a> {
    run_dir: &'a Path,
    arch: Arch,
    class_names: &'a [String],
    weights: &'a Path,
    weights_sha256: &'a str,
    data: &'a Path,
    num_seg: usize,
    parent: Option<serde_json::Value>,
}

impl Saver<'_> {
    fn origin(&self, epochs: usize) -> ModelOrigin<'_> {
        ModelOrigin {
            weights: self.weights,
            weights_sha256: self.weights_sha256,
            data: self.data,
            epochs,
            num_seg: self.num_seg,
        }
    }

    /// The training-form weights (with class names) to `path`.
    fn write_training(
        &self,
        trainer: &FullTrainer,
        epochs: usize,
        path: &Path,
    ) -> Result<(), TrainError> {
        write_trained_store(
            &trainer.to_store(),
            self.arch,
            self.class_names,
            &self.origin(epochs),
            "full",
            self.parent.clone(),
            path,
        )
    }

    /// The fused form (what inference runs) with class names to `path`.
    fn write_fused(
        &self,
        trainer: &FullTrainer,
        epochs: usize,
        path: &Path,
    ) -> Result<(), TrainError> {
        let fused = fuse_store(&trainer.to_store()).map_err(TrainError::Invalid)?;
        let arch = Arch {
            form: Form::Fused,
            ..self.arch
        };
        write_trained_store(
            &fused,
            arch,
            self.class_names,
            &self.origin(epochs),
            "full",
            self.parent.clone(),
            path,
        )
    }

    /// The training-form weights to `file` and the velocities to `optim_file` in the run
    /// folder: the sha256 of both and the velocities' layout (key, length; f64 LE, in order).
    fn write_model_and_velocities(
        &self,
        trainer: &FullTrainer,
        epochs: usize,
        file: &str,
        optim_file: &str,
    ) -> Result<Written, TrainError> {
        let path = self.run_dir.join(file);
        self.write_training(trainer, epochs, &path)?;
        let mut keys: Vec<&String> = trainer.velocities().keys().collect();
        keys.sort();
        let mut bytes = Vec::new();
        let mut layout = Vec::with_capacity(keys.len());
        for key in keys {
            let v = &trainer.velocities()[key];
            bytes.extend(v.iter().flat_map(|x| x.to_le_bytes()));
            layout.push((key.clone(), v.len()));
        }
        write_run_file(self.run_dir, optim_file, &bytes)?;
        Ok(Written {
            model_sha256: file_sha256(&path)?,
            optim_sha256: sha256_hex(&bytes),
            layout,
        })
    }
}

/// What `write_model_and_velocities` wrote: the sha256 of both files and the velocities'
/// layout (key, length).
struct Written {
    model_sha256: String,
    optim_sha256: String,
    layout: Vec<(String, usize)>,
}

/// `latest`: the student's weights and velocities, the DML teacher's, then the state that
/// names them all (the commit point).
fn save_latest(
    saver: &Saver<'_>,
    trainer: &FullTrainer,
    teacher: Option<(&Saver<'_>, &FullTrainer)>,
    state: &mut RunState,
) -> Result<(), TrainError> {
    let written = saver.write_model_and_velocities(trainer, state.epoch, LATEST, LATEST_OPTIM)?;
    state.latest_sha256 = written.model_sha256;
    state.optim_sha256 = written.optim_sha256;
    state.velocity = written.layout;
    if let Some((teacher_saver, teacher)) = teacher {
        let written = teacher_saver.write_model_and_velocities(
            teacher,
            state.epoch,
            LATEST_TEACHER,
            LATEST_TEACHER_OPTIM,
        )?;
        state.teacher_sha256 = written.model_sha256;
        state.teacher_optim_sha256 = written.optim_sha256;
        state.teacher_velocity = written.layout;
    }
    let text =
        serde_json::to_string_pretty(state).map_err(|e| TrainError::Invalid(e.to_string()))?;
    write_run_file(saver.run_dir, LATEST_STATE, text.as_bytes())?;
    Ok(())
}

/// Velocities saved by `write_model_and_velocities`, after checking `model` and `optim`
/// against the sha256 the state names.
fn read_checked(
    run_dir: &Path,
    model: &str,
    model_sha: &str,
    optim: &str,
    optim_sha: &str,
    layout: &[(String, usize)],
) -> Result<HashMap<String, Vec<f64>>, TrainError> {
    let bad = |path: &Path, problem: String| TrainError::Target {
        path: path.to_path_buf(),
        problem,
    };
    let model = run_dir.join(model);
    if !model.exists() {
        return Err(bad(&model, "missing (latest.state.json names it)".into()));
    }
    if file_sha256(&model)? != model_sha {
        return Err(bad(
            &model,
            "does not match latest.state.json (the checkpoint was interrupted while it was written)"
                .into(),
        ));
    }
    let optim = run_dir.join(optim);
    let bytes = std::fs::read(&optim).map_err(|e| TrainError::io(&optim, e))?;
    if sha256_hex(&bytes) != optim_sha {
        return Err(bad(&optim, "does not match latest.state.json".into()));
    }
    let mut values = bytes
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]));
    let mut velocity = HashMap::new();
    for (key, len) in layout {
        let v: Vec<f64> = values.by_ref().take(*len).collect();
        if v.len() != *len {
            return Err(bad(&optim, format!("too short for the velocity of {key}")));
        }
        velocity.insert(key.clone(), v);
    }
    Ok(velocity)
}

/// Velocities of the student and (DML) of the teacher.
type Velocities = (HashMap<String, Vec<f64>>, Option<HashMap<String, Vec<f64>>>);

/// The state and velocities of `latest` (and `latest_teacher` with `teacher`), checked
/// against the files they name.
fn read_latest(run_dir: &Path, teacher: bool) -> Result<(RunState, Velocities), TrainError> {
    let path = run_dir.join(LATEST_STATE);
    let bad = |path: &Path, problem: String| TrainError::Target {
        path: path.to_path_buf(),
        problem,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            bad(
                &path,
                "no checkpoint to resume from (the run saved none yet)".into(),
            )
        } else {
            TrainError::io(&path, e)
        }
    })?;
    let state: RunState =
        serde_json::from_str(&text).map_err(|e| bad(&path, format!("not a run state: {e}")))?;
    if state.format != STATE_FORMAT || state.version > STATE_VERSION {
        return Err(bad(
            &path,
            format!("unknown state format {} v{}", state.format, state.version),
        ));
    }
    let velocity = read_checked(
        run_dir,
        LATEST,
        &state.latest_sha256,
        LATEST_OPTIM,
        &state.optim_sha256,
        &state.velocity,
    )?;
    let teacher_velocity = if teacher {
        Some(read_checked(
            run_dir,
            LATEST_TEACHER,
            &state.teacher_sha256,
            LATEST_TEACHER_OPTIM,
            &state.teacher_optim_sha256,
            &state.teacher_velocity,
        )?)
    } else {
        None
    };
    Ok((state, (velocity, teacher_velocity)))
}

fn invalid(e: impl std::fmt::Display) -> TrainError {
    TrainError::Invalid(e.to_string())
}

/// One step of the student (and the DML teacher): plain CE (Mixup form with Mixup targets),
/// DML, or KD against `teacher_logits`.
fn distill_step(
    trainer: &mut FullTrainer,
    distiller: &mut Distiller,
    teacher_logits: Option<&[f64]>,
    clips: TensorData,
    targets: &Targets,
    lr: f64,
) -> Result<Stepped, super::full::FullTrainError> {
    match distiller {
        Distiller::None => {
            let o = trainer.step_targets(clips, targets, lr)?;
            Ok(Stepped {
                loss: o.loss,
                terms: vec![("ce", o.loss)],
                logits: o.logits.data,
            })
        }
        Distiller::Dml { teacher, weights } => {
            let d = dml_step(trainer, teacher, clips, targets, *weights, lr)?;
            Ok(Stepped {
                loss: d.total,
                terms: vec![
                    ("ce", d.ce_student),
                    ("ce_teacher", d.ce_teacher),
                    ("dml", d.dml),
                ],
                logits: d.student.logits.data,
            })
        }
        Distiller::Kd {
            temperature,
            weights,
        } => {
            let k = kd_step(
                trainer,
                teacher_logits.unwrap_or(&[]),
                clips,
                targets,
                *temperature,
                *weights,
                lr,
            )?;
            Ok(Stepped {
                loss: k.total,
                terms: vec![("ce", k.ce), ("kd", k.kd)],
                logits: k.student.logits.data,
            })
        }
    }
}

/// Runs a full fine-tuning job (see the module doc). Every check that needs no decoding comes
/// before any decoding. Cancelling stops between steps, saves `latest` (resumable with
/// [`resume_job`]) and returns an outcome with `cancelled` set.
pub fn run_full(
    job: &TrainJob,
    cancel: &CancelToken,
    mut on_event: impl FnMut(JobEvent),
) -> Result<HeadOnlyOutcome, TrainError> {
    let session = Instant::now();
    job.validate()?;
    if !(32..=FULL_SIZE).contains(&job.size) {
        return Err(TrainError::Invalid(format!(
            "--size must be between 32 and {FULL_SIZE}"
        )));
    }
    let (dataset, train, val) = open_split(job)?;
    let run_dir = match &job.run_dir {
        Some(d) => d.clone(),
        None if job.resume => {
            return Err(TrainError::Invalid("resuming needs the run folder".into()));
        }
        None => default_run_dir_for(&job.data, None)?,
    };
    let weights = job.weights_path.clone();
    let checkpoint = open_training_checkpoint(&weights)?;
    let teacher_checkpoint = match &job.distill {
        Some(d) => {
            d.validate()?;
            Some(open_teacher_checkpoint(&d.teacher_path)?)
        }
        None => None,
    };
    let num_seg = resolve_num_seg(job.frames, checkpoint.arch.num_seg, &weights)?;
    if let (Some(d), Some(t)) = (&job.distill, &teacher_checkpoint) {
        check_teacher(d, t, &dataset.classes, num_seg)?;
    }
    prepare_run_dir(&run_dir)?;
    let weights_sha256 = file_sha256(&weights)?;
    let distill_settings = match &job.distill {
        Some(d) => Some(DistillSettings {
            mode: d.mode,
            teacher: d.teacher.clone(),
            teacher_path: d.teacher_path.clone(),
            teacher_sha256: file_sha256(&d.teacher_path)?,
            temperature: (d.mode == DistillMode::Kd).then_some(d.temperature),
            kd_weight: (d.mode == DistillMode::Kd).then_some(d.kd_weight),
            dml_weight: (d.mode == DistillMode::Dml).then_some(d.dml_weight),
        }),
        None => None,
    };
    let settings = FullSettings {
        data: job.data.clone(),
        val: job.val.clone(),
        val_split: job.val_split,
        labels: job.labels.clone(),
        weights: job.weights.clone(),
        weights_path: weights.clone(),
        weights_sha256: weights_sha256.clone(),
        num_seg,
        epochs: job.epochs,
        batch_size: job.batch_size,
        lr: job.lr,
        seed: job.seed,
        size: job.size,
        mixup: job.mixup,
        output: job.output.clone(),
        distill: distill_settings,
        freeze_stages: job.freeze_stages,
    };
    let is_dml = job.distill.as_ref().map(|d| d.mode) == Some(DistillMode::Dml);
    let resumed = if job.resume {
        let stored = read_settings(&run_dir)?;
        if stored.numbers() != settings.numbers() {
            return Err(TrainError::Target {
                path: run_dir.join("settings.json"),
                problem: format!(
                    "this run was started with other settings ({}); resume it with its own",
                    first_difference(&stored.numbers(), &settings.numbers())
                ),
            });
        }
        Some(read_latest(&run_dir, is_dml)?)
    } else {
        None
    };
    let device = match &job.device {
        JobDevice::Resolved(d) => d.clone(),
        JobDevice::Choose { choice, threads } => {
            ComputeDevice::resolve(*choice, *threads).map_err(invalid)?
        }
    };
    let classes = dataset.classes.len();
    let outcome = |cancelled: bool, epochs_done: usize, best: Option<f64>| HeadOnlyOutcome {
        run_dir: run_dir.clone(),
        cancelled,
        model_path: None,
        output: None,
        epochs_done,
        best_val_top1: best,
        class_names: dataset.classes.clone(),
        num_seg,
    };
    if cancel.is_cancelled() {
        return Ok(outcome(true, 0, None));
    }

    // Broken clips: a quick probe of every clip, listed and skipped.
    let DataCheck {
        dataset,
        train,
        val,
        broken: probed_broken,
        summary,
    } = probe_and_report(job, dataset.clone(), train, val, &mut on_event)?;

    // The model and the optimiser state.
    let open_latest = |file: &str| -> Result<Recognizer, TrainError> {
        let latest = open_checkpoint(&run_dir.join(file), Role::Student).map_err(invalid)?;
        if latest.class_names.as_deref() != Some(dataset.classes.as_slice()) {
            return Err(TrainError::Classes {
                path: run_dir.join(file),
                problem: format!(
                    "its classes are not the data's ({})",
                    dataset.classes.join(", ")
                ),
            });
        }
        Recognizer::from_store(&latest.store, &device.device)
            .map_err(|e| TrainError::Invalid(format!("{}: {e}", latest.path.display())))
    };
    let (recognizer, teacher_model, mut state, velocity, teacher_velocity) = match resumed {
        Some((state, (velocity, teacher_velocity))) => {
            let teacher = if is_dml {
                Some(open_latest(LATEST_TEACHER)?)
            } else {
                None
            };
            (
                open_latest(LATEST)?,
                teacher,
                state,
                Some(velocity),
                teacher_velocity,
            )
        }
        None => {
            let teacher = match &teacher_checkpoint {
                Some(t) if is_dml => Some(start_teacher(t, &dataset.classes, job.seed, &device)?),
                _ => None,
            };
            (
                start_model(&checkpoint, classes, job.seed, &device)?,
                teacher,
                RunState::fresh(),
                None,
                None,
            )
        }
    };
    let arch = recognizer.arch;
    let mut trainer = FullTrainer::new(recognizer, FloatDType::F32, FullStepOptions::default())
        .map_err(|e| TrainError::Invalid(format!("{}: {e}", weights.display())))?;
    trainer
        .set_freeze_stages(job.freeze_stages)
        .map_err(|e| TrainError::Invalid(e.to_string()))?;
    if let Some(velocity) = velocity {
        trainer.set_velocities(velocity).map_err(|e| {
            TrainError::Invalid(format!("{}: {e}", run_dir.join(LATEST_OPTIM).display()))
        })?;
    }
    let teacher_arch = teacher_model.as_ref().map(|t| t.arch);
    let mut distiller = match (&job.distill, teacher_model) {
        (Some(d), Some(model)) if d.mode == DistillMode::Dml => {
            let path = d.teacher_path.display();
            let mut teacher = FullTrainer::new(model, FloatDType::F32, FullStepOptions::default())
                .map_err(|e| TrainError::Invalid(format!("{path}: {e}")))?;
            if let Some(velocity) = teacher_velocity {
                teacher.set_velocities(velocity).map_err(|e| {
                    TrainError::Invalid(format!(
                        "{}: {e}",
                        run_dir.join(LATEST_TEACHER_OPTIM).display()
                    ))
                })?;
            }
            Distiller::Dml {
                teacher: Box::new(teacher),
                weights: DmlWeights {
                    dml: d.dml_weight,
                    ..DmlWeights::default()
                },
            }
        }
        (Some(d), _) if d.mode == DistillMode::Kd => Distiller::Kd {
            temperature: d.temperature,
            weights: KdWeights {
                ce: 1.0 - d.kd_weight,
                kd: d.kd_weight,
            },
        },
        _ => Distiller::None,
    };
    let kd_teacher = match (&distiller, &teacher_checkpoint) {
        (Distiller::Kd { .. }, Some(t)) => Some(kd_engine(t, &device)?),
        _ => None,
    };
    drop(teacher_checkpoint);
    let mut broken = probed_broken;
    for b in &state.broken {
        if !broken.iter().any(|(p, _)| *p == b.0) {
            broken.push(b.clone());
        }
    }

    let schedule = WarmupCosine::recipe(job.epochs, job.batch_size, job.lr);
    let mut log = if job.resume {
        let (epoch, step) = (state.epoch, state.step);
        let (log, history) = MetricsLog::resume(&run_dir, |v| match v["event"].as_str() {
            Some("step") => v["step"].as_u64().is_some_and(|s| s as usize <= step),
            Some("epoch") => v["epoch"].as_u64().is_some_and(|e| e as usize <= epoch),
            _ => false,
        })?;
        on_event(JobEvent::History(history));
        log
    } else {
        let settings_json = json!({
            "mode": "full",
            "job": settings,
            "device": format!("{:?}", device),
            "dtype": "f32",
            "schedule": schedule,
            "mixup_alpha": if job.mixup { Some(MIXUP_ALPHA) } else { None },
            "short_side": short_side_for(job.size),
            "optimizer": {"momentum": 0.9, "nesterov": true, "weight_decay": 1e-4},
            "distill_loss": match &distiller {
                Distiller::None => serde_json::Value::Null,
                Distiller::Dml { weights, .. } => json!({
                    "mode": "dml",
                    "total": "ce_student·CE(student) + ce_teacher·CE(teacher) + dml·symmetric KL",
                    "weights": {
                        "ce_student": weights.ce_student,
                        "ce_teacher": weights.ce_teacher,
                        "dml": weights.dml,
                    },
                }),
                Distiller::Kd { temperature, weights } => json!({
                    "mode": "kd",
                    "total": "ce·CE(student) + kd·T²·KL(teacher_T || student_T)",
                    "weights": {"ce": weights.ce, "kd": weights.kd},
                    "temperature": temperature,
                }),
            },
            "classes": dataset.classes,
            "summary": summary,
            "broken": broken.iter().map(|(p, e)| json!({"path": p, "error": e})).collect::<Vec<_>>(),
            "kineto_version": env!("CARGO_PKG_VERSION"),
        });
        let text = serde_json::to_string_pretty(&settings_json).map_err(invalid)?;
        write_run_file(&run_dir, "settings.json", text.as_bytes())?;
        let labels_text = dataset.classes.join("\n") + "\n";
        write_run_file(&run_dir, "labels.txt", labels_text.as_bytes())?;
        MetricsLog::create(&run_dir)?
    };
    let saver = Saver {
        run_dir: &run_dir,
        arch: Arch {
            form: Form::Training,
            ..arch
        },
        class_names: &dataset.classes,
        weights: &weights,
        weights_sha256: &weights_sha256,
        data: &job.data,
        num_seg,
        parent: checkpoint.meta.as_ref().map(|m| m.provenance.clone()),
    };
    let teacher_sha256 = settings
        .distill
        .as_ref()
        .map(|d| d.teacher_sha256.clone())
        .unwrap_or_default();
    let teacher_saver = match (&job.distill, teacher_arch) {
        (Some(d), Some(arch)) => Some(Saver {
            run_dir: &run_dir,
            arch: Arch {
                form: Form::Training,
                ..arch
            },
            class_names: &dataset.classes,
            weights: &d.teacher_path,
            weights_sha256: &teacher_sha256,
            data: &job.data,
            num_seg,
            parent: None,
        }),
        _ => None,
    };
    let save = |trainer: &FullTrainer, distiller: &Distiller, state: &mut RunState| {
        let teacher = match (distiller, &teacher_saver) {
            (Distiller::Dml { teacher, .. }, Some(s)) => Some((s, &**teacher)),
            _ => None,
        };
        save_latest(&saver, trainer, teacher, state)
    };

    let spec = ClipSpec {
        num_seg,
        size: job.size,
        short: short_side_for(job.size),
    };
    let batch = job.batch_size;
    let iterations = train.len().div_ceil(batch);
    let workers = decode_workers(device.threads);
    let prior_elapsed = state.elapsed_s;
    let elapsed = |session: &Instant| prior_elapsed + session.elapsed().as_secs_f64();
    let mut session_clips = 0usize;
    let mut last_eval: Option<Evaluation> = None;
    let mut log_error = None;
    let mut emit = |event: TrainEvent, on_event: &mut dyn FnMut(JobEvent)| {
        if let Err(e) = log.write(&event) {
            log_error.get_or_insert(e);
        }
        on_event(JobEvent::Train(event));
    };

    while state.epoch < job.epochs {
        let epoch = state.epoch;
        let order = epoch_order(train.len(), job.seed, epoch);
        let first = state.batch.min(iterations);
        let clips: Vec<(PathBuf, Option<u64>)> = order
            .iter()
            .skip(first * batch)
            .map(|&i| {
                let seed = derive_seed(job.seed, &[TAG_CLIP, epoch as u64, i as u64]);
                (train[i].path.clone(), Some(seed))
            })
            .collect();
        let mut loader = Loader::spawn(clips, spec, workers, batch.max(2))?;
        for b in first..iterations {
            cancel.wait_while_paused();
            if cancel.is_cancelled() {
                drop(loader);
                state.batch = b;
                state.elapsed_s = elapsed(&session);
                state.broken = broken.clone();
                save(&trainer, &distiller, &mut state)?;
                return Ok(outcome(true, epoch, state.best_val_top1));
            }
            let members = &order[b * batch..((b + 1) * batch).min(order.len())];
            let mut data = Vec::with_capacity(members.len() * spec.values());
            let mut labels = Vec::with_capacity(members.len());
            for &i in members {
                match loader.next() {
                    Some(Ok(clip)) if clip.len() == spec.values() => {
                        data.extend(clip);
                        labels.push(train[i].label);
                    }
                    Some(Ok(clip)) => broken.push((
                        train[i].path.clone(),
                        format!("prepared {} values, expected {}", clip.len(), spec.values()),
                    )),
                    Some(Err(e)) => {
                        if !broken.iter().any(|(p, _)| *p == train[i].path) {
                            broken.push((train[i].path.clone(), e));
                        }
                    }
                    None => {
                        broken.push((train[i].path.clone(), "the decode queue ended early".into()))
                    }
                }
            }
            let n = labels.len();
            if n == 0 {
                state.batch = b + 1;
                continue;
            }
            let targets = if job.mixup {
                let mut rng = StdRng::seed_from_u64(derive_seed(
                    job.seed,
                    &[TAG_MIXUP, epoch as u64, b as u64],
                ));
                mixup(&mut data, &labels, MIXUP_ALPHA, &mut rng)
            } else {
                Targets::Hard(labels.clone())
            };
            let lr = schedule.lr(epoch as f64 + b as f64 / iterations as f64);
            let size = spec.size as usize;
            let dims = [n, num_seg, 3, size, size];
            let teacher_logits = match &kd_teacher {
                Some(engine) => Some(
                    engine
                        .logits(data.clone(), dims)
                        .map_err(|e| TrainError::Invalid(format!("the KD teacher: {e}")))?
                        .into_iter()
                        .map(f64::from)
                        .collect::<Vec<f64>>(),
                ),
                None => None,
            };
            let clips = TensorData::new(data, dims);
            let stepped = device.install(|| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    distill_step(
                        &mut trainer,
                        &mut distiller,
                        teacher_logits.as_deref(),
                        clips,
                        &targets,
                        lr,
                    )
                }))
            });
            let outcome_step = match stepped {
                Ok(Ok(o)) => o,
                Ok(Err(e)) => return Err(TrainError::Invalid(format!("training step: {e}"))),
                Err(p) => {
                    return Err(TrainError::Invalid(format!(
                        "training step crashed: {}",
                        panic_message(&p)
                    )));
                }
            };
            let logits: Vec<f32> = outcome_step.logits.iter().map(|&v| v as f32).collect();
            let correct = logits
                .chunks_exact(classes)
                .zip(&labels)
                .filter(|(row, y)| argmax(row) == **y)
                .count();
            state.loss_sum += outcome_step.loss * n as f64;
            state.correct += correct;
            state.seen += n;
            state.step += 1;
            state.batch = b + 1;
            session_clips += n;
            let terms = outcome_step
                .terms
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect();
            let session_s = session.elapsed().as_secs_f64();
            emit(
                TrainEvent::Step {
                    epoch: epoch + 1,
                    step: state.step,
                    loss: outcome_step.loss,
                    terms,
                    lr,
                    clips_per_s: session_clips as f64 / session_s.max(1e-9),
                    elapsed_s: elapsed(&session),
                },
                &mut on_event,
            );
        }
        drop(loader);
        if state.seen == 0 {
            return Err(TrainError::Invalid(
                "no training clip could be decoded".into(),
            ));
        }

        // Validation (the fused form of the current weights).
        let val_eval = if val.is_empty() {
            None
        } else {
            match evaluate(&trainer, &device, &val, spec, batch, cancel, &mut broken)? {
                Some(e) => Some(e),
                None => {
                    state.elapsed_s = elapsed(&session);
                    state.broken = broken.clone();
                    save(&trainer, &distiller, &mut state)?;
                    return Ok(outcome(true, epoch, state.best_val_top1));
                }
            }
        };
        let seen = state.seen as f64;
        emit(
            TrainEvent::Epoch {
                epoch: epoch + 1,
                train_loss: state.loss_sum / seen,
                train_top1: state.correct as f64 / seen,
                val_loss: val_eval.as_ref().map(|v| v.loss),
                val_top1: val_eval.as_ref().map(|v| v.top1),
                val_top5: val_eval.as_ref().map(|v| v.top5),
                elapsed_s: elapsed(&session),
            },
            &mut on_event,
        );
        state.epoch = epoch + 1;
        state.batch = 0;
        state.loss_sum = 0.0;
        state.correct = 0;
        state.seen = 0;
        if let Some(v) = &val_eval
            && state.best_val_top1.is_none_or(|b| v.top1 > b)
        {
            state.best_val_top1 = Some(v.top1);
            saver.write_training(&trainer, state.epoch, &run_dir.join(BEST))?;
        }
        state.elapsed_s = elapsed(&session);
        state.broken = broken.clone();
        save(&trainer, &distiller, &mut state)?;
        last_eval = val_eval;
    }
    if let Some(e) = log_error.take() {
        return Err(e);
    }

    // The final model (fused, with class names), the confusion matrix, the report.
    let evaluation = match last_eval {
        Some(e) => e,
        None => {
            let set = if val.is_empty() { &train } else { &val };
            match evaluate(&trainer, &device, set, spec, batch, cancel, &mut broken)? {
                Some(e) => e,
                None => return Ok(outcome(true, state.epoch, state.best_val_top1)),
            }
        }
    };
    let model_path = run_dir.join(MODEL);
    saver.write_fused(&trainer, state.epoch, &model_path)?;
    if let Some(out) = &job.output {
        saver.write_fused(&trainer, state.epoch, out)?;
    }
    let mut preface = String::new();
    if let Some(line) = freeze_description(job.freeze_stages) {
        preface.push_str(&line);
        preface.push('\n');
    }
    if val.is_empty() {
        preface.push_str(
            "no validation clips: the numbers below are on the training set (test pipeline)\n",
        );
    }
    let output = finish_run(
        job,
        RunEnd {
            run_dir: &run_dir,
            classes: &dataset.classes,
            evaluation: &evaluation,
            preface,
            model_path: &model_path,
            epochs: state.epoch,
            best_val_top1: state.best_val_top1,
            elapsed_s: elapsed(&session),
        },
        &mut log,
        &mut on_event,
    )?;
    Ok(HeadOnlyOutcome {
        model_path: Some(model_path),
        output: Some(output),
        ..outcome(false, state.epoch, state.best_val_top1)
    })
}

/// `key = stored vs given` of the first field that differs.
fn first_difference(stored: &serde_json::Value, given: &serde_json::Value) -> String {
    if let (Some(a), Some(b)) = (stored.as_object(), given.as_object()) {
        for (k, v) in a {
            if b.get(k) != Some(v) {
                let other = b.get(k).cloned().unwrap_or(serde_json::Value::Null);
                return format!("{k} = {v}, not {other}");
            }
        }
    }
    "settings differ".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_seeds_depend_on_seed_and_epoch_only() {
        assert_eq!(epoch_order(10, 3, 1), epoch_order(10, 3, 1));
        assert_ne!(epoch_order(10, 3, 1), epoch_order(10, 3, 2));
        assert_ne!(epoch_order(10, 3, 1), epoch_order(10, 4, 1));
        let mut sorted = epoch_order(10, 3, 1);
        sorted.sort();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        assert_ne!(derive_seed(1, &[2, 0, 1]), derive_seed(1, &[2, 1, 0]));
    }

    #[test]
    fn beta_02_is_u_shaped_with_mean_one_half() {
        let mut rng = StdRng::seed_from_u64(9);
        let draws: Vec<f64> = (0..20000).map(|_| beta(0.2, &mut rng)).collect();
        assert!(draws.iter().all(|x| (0.0..=1.0).contains(x)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        // Beta(0.2, 0.2): mean 1/2, variance 1/(4·1.4) = 0.1786; most mass near 0 and 1.
        let var = draws.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / draws.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "mean {mean}");
        assert!((var - 0.1786).abs() < 0.01, "variance {var}");
        let middle = draws.iter().filter(|x| (0.25..0.75).contains(*x)).count();
        assert!(middle < draws.len() / 4, "{middle} draws in the middle");
    }

    #[test]
    fn mixup_mixes_clips_and_labels_with_one_lambda() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut data = vec![0.0f32, 0.0, 1.0, 1.0, 2.0, 2.0];
        let targets = mixup(&mut data, &[0, 1, 2], 0.2, &mut rng);
        let Targets::Mixup { a, b, lam } = targets else {
            panic!("mixup targets");
        };
        assert_eq!(a, vec![0, 1, 2]);
        for i in 0..3 {
            let expected = lam * i as f64 + (1.0 - lam) * b[i] as f64;
            assert!((f64::from(data[2 * i]) - expected).abs() < 1e-6);
        }
    }

    #[test]
    fn scaled_pipeline_lengths() {
        assert_eq!(short_side_for(224), 256);
        assert_eq!(short_side_for(112), 128);
        assert_eq!(short_side_for(64), 73);
    }
}
