//! Head-only training: the start checkpoint's backbone stays frozen (its fused inference form,
//! run through an [`Engine`]); every clip is decoded once with PaddleVideo's test pipeline
//! (uniform sampling, Scale(256), CenterCrop(224), normalisation), its pooled pre-fc features
//! are cached on disk in the run folder, and a new fc (features -> classes) is trained on the
//! host in f32: softmax cross-entropy, Momentum 0.9 with Nesterov and L2 1e-4 added to the
//! gradient of the weight *and* the bias (PaddleVideo's rule), the warm-up + cosine schedule,
//! seeded shuffling, mini-batches (the last short batch is kept: small sets would lose clips).
//! Mixup is not applied (it mixes images, which cached features cannot do).
//!
//! The features are standardised per dimension (training-set mean and standard deviation)
//! while the fc trains, and the standardisation is folded into the exported fc
//! (`W' = W/σ`, `b' = b − μ·W/σ`), so the model is a plain PaddleVideo network. Without it a
//! frozen backbone's features (a large shared component, small class-dependent spread) make
//! the recipe's learning rate crawl; the L2 decay therefore acts on the standardised weights.
//!
//! The result is the start checkpoint (training or fused form, as it came) with its fc
//! replaced, written as Kineto safetensors with the new class names.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Instant, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::TrainError;
use super::dataset::Sample;
use super::distill::{Targets, cross_entropy};
use super::metrics::{Evaluation, TrainEvent};
use super::optim::Momentum;
use super::run::WarmupCosine;
use crate::checkpoint::file::Checkpoint;
use crate::checkpoint::safetensors::{INPUT_SIZE, KinetoMeta, MEAN, SHORT_SIDE, STD};
use crate::checkpoint::{ParamStore, ParamTensor, write_file_atomic};
use crate::infer::classify::{Sampling, prepare};
use crate::infer::engine::Engine;
use crate::model::ModelKind;
use crate::progress::CancelToken;

/// File names inside the run folder.
pub const FEATURES_BIN: &str = "features.bin";
pub const FEATURES_INDEX: &str = "features.json";
const CACHE_FORMAT: &str = "kineto-feature-cache";
const CACHE_VERSION: u32 = 1;

/// A clip's identity (path, size, mtime in ns) and its features or failure.
type CacheRow = (PathBuf, u64, u128, Result<Vec<f32>, String>);

/// What makes cached features valid: the frozen backbone and the sampling.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheKey {
    pub weights_path: PathBuf,
    pub weights_sha256: String,
    pub num_seg: usize,
    pub dim: usize,
}

/// One clip in the index: its file identity, and its feature row or why it failed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct CacheEntry {
    path: PathBuf,
    size: u64,
    mtime_ns: u128,
    row: Option<usize>,
    error: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct CacheIndex {
    format: String,
    version: u32,
    key: CacheKey,
    rows: usize,
    entries: Vec<CacheEntry>,
}

/// Features of one set of clips: `features` is `[clips, dim]` row-major.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FeatureSet {
    pub dim: usize,
    pub features: Vec<f32>,
    pub labels: Vec<usize>,
    pub paths: Vec<PathBuf>,
}

impl FeatureSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.features[i * self.dim..(i + 1) * self.dim]
    }

    fn push(&mut self, sample: &Sample, row: &[f32]) {
        self.features.extend_from_slice(row);
        self.labels.push(sample.label);
        self.paths.push(sample.path.clone());
    }
}

/// The outcome of feature extraction.
#[derive(Clone, Debug, Default)]
pub struct Extracted {
    pub train: FeatureSet,
    pub val: FeatureSet,
    /// Clips that could not be decoded: path and problem (skipped).
    pub broken: Vec<(PathBuf, String)>,
    /// Clips decoded and run through the backbone in this call.
    pub decoded: usize,
    /// Clips whose features (or failure) came from the cache.
    pub cached: usize,
    pub elapsed_s: f64,
}

/// Progress of [`extract_features`]: `done` of `total` clips; `cached` when that clip was not
/// decoded.
#[derive(Clone, Debug)]
pub struct ExtractProgress<'a> {
    pub done: usize,
    pub total: usize,
    pub path: &'a Path,
    pub cached: bool,
}

fn file_identity(path: &Path) -> Option<(u64, u128)> {
    let meta = fs::metadata(path).ok()?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Some((meta.len(), mtime))
}

/// The feature dimension of the engine's network.
pub fn feature_dim(engine: &Engine) -> usize {
    engine.model.arch.model.feature_dim()
}

/// The cache key for `engine` (loaded from `weights`) at `num_seg`.
pub fn cache_key(engine: &Engine, weights: &Path, num_seg: usize) -> Result<CacheKey, TrainError> {
    let (sha, _) = crate::weights::cache::sha256_file(weights)
        .map_err(|e| TrainError::Invalid(e.to_string()))?;
    Ok(CacheKey {
        weights_path: fs::canonicalize(weights).unwrap_or_else(|_| weights.to_path_buf()),
        weights_sha256: sha,
        num_seg,
        dim: feature_dim(engine),
    })
}

/// Pre-fc features of one clip (`[1, T, 3, 224, 224]` host data) on the engine's device (the
/// CPU path where it applies: the same numbers as inference).
fn clip_features(engine: &Engine, data: Vec<f32>, dims: [usize; 5]) -> Result<Vec<f32>, String> {
    engine.features(data, dims).map_err(|e| e.to_string())
}

fn read_cache(
    dir: &Path,
    key: &CacheKey,
) -> HashMap<(PathBuf, u64, u128), Result<Vec<f32>, String>> {
    let mut out = HashMap::new();
    let Ok(text) = fs::read_to_string(dir.join(FEATURES_INDEX)) else {
        return out;
    };
    let Ok(index) = serde_json::from_str::<CacheIndex>(&text) else {
        return out;
    };
    if index.format != CACHE_FORMAT || index.version != CACHE_VERSION || index.key != *key {
        return out;
    }
    let Ok(bytes) = fs::read(dir.join(FEATURES_BIN)) else {
        return out;
    };
    if bytes.len() != index.rows * key.dim * 4 {
        return out;
    }
    for e in index.entries {
        let value = match (e.row, e.error) {
            (Some(row), _) if row < index.rows => {
                let start = row * key.dim * 4;
                Ok(bytes[start..start + key.dim * 4]
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect())
            }
            (_, Some(error)) => Err(error),
            _ => continue,
        };
        out.insert((e.path, e.size, e.mtime_ns), value);
    }
    out
}

fn write_cache(dir: &Path, key: &CacheKey, entries: &[CacheRow]) -> Result<(), TrainError> {
    let mut bytes = Vec::new();
    let mut index_entries = Vec::with_capacity(entries.len());
    let mut rows = 0;
    for (path, size, mtime_ns, value) in entries {
        let (row, error) = match value {
            Ok(f) => {
                bytes.extend(f.iter().flat_map(|v| v.to_le_bytes()));
                rows += 1;
                (Some(rows - 1), None)
            }
            Err(e) => (None, Some(e.clone())),
        };
        index_entries.push(CacheEntry {
            path: path.clone(),
            size: *size,
            mtime_ns: *mtime_ns,
            row,
            error,
        });
    }
    let index = CacheIndex {
        format: CACHE_FORMAT.into(),
        version: CACHE_VERSION,
        key: key.clone(),
        rows,
        entries: index_entries,
    };
    let bin = dir.join(FEATURES_BIN);
    write_file_atomic(&bin, &bytes).map_err(|e| TrainError::io(&bin, e))?;
    let idx = dir.join(FEATURES_INDEX);
    let text =
        serde_json::to_string_pretty(&index).map_err(|e| TrainError::Invalid(e.to_string()))?;
    write_file_atomic(&idx, text.as_bytes()).map_err(|e| TrainError::io(&idx, e))
}

/// Decodes every train and val clip once (or takes it from the cache in `cache_dir`), runs the
/// frozen backbone, and returns the features. Broken clips are listed and skipped. The cache
/// is rewritten with the clips of this call. Stops early (with what it has) when cancelled.
pub fn extract_features(
    engine: &Engine,
    key: &CacheKey,
    cache_dir: &Path,
    train: &[Sample],
    val: &[Sample],
    cancel: &CancelToken,
    mut on_clip: impl FnMut(ExtractProgress<'_>),
) -> Result<Extracted, TrainError> {
    let start = Instant::now();
    let cache = read_cache(cache_dir, key);
    let sampling = Sampling {
        num_seg: key.num_seg,
        dense: false,
    };
    let total = train.len() + val.len();
    let mut out = Extracted {
        train: FeatureSet {
            dim: key.dim,
            ..FeatureSet::default()
        },
        val: FeatureSet {
            dim: key.dim,
            ..FeatureSet::default()
        },
        ..Extracted::default()
    };
    let mut entries = Vec::with_capacity(total);
    let all = train
        .iter()
        .map(|s| (s, true))
        .chain(val.iter().map(|s| (s, false)));
    for (i, (sample, is_train)) in all.enumerate() {
        cancel.wait_while_paused();
        if cancel.is_cancelled() {
            break;
        }
        let identity = file_identity(&sample.path);
        let cached = identity
            .and_then(|(size, mtime)| cache.get(&(sample.path.clone(), size, mtime)).cloned());
        let from_cache = cached.is_some();
        let value = match cached {
            Some(v) => {
                out.cached += 1;
                v
            }
            None => {
                out.decoded += 1;
                let prepared = engine
                    .device
                    .install(|| prepare(&sample.path, sampling, false))
                    .map_err(|e| e.problem(&sample.path));
                prepared.and_then(|clip| {
                    let f = clip_features(engine, clip.tensor, clip.dims)?;
                    if f.len() != key.dim {
                        return Err(format!(
                            "backbone gave {} features, expected {}",
                            f.len(),
                            key.dim
                        ));
                    }
                    Ok(f)
                })
            }
        };
        match &value {
            Ok(f) => {
                if is_train {
                    out.train.push(sample, f);
                } else {
                    out.val.push(sample, f);
                }
            }
            Err(problem) => out.broken.push((sample.path.clone(), problem.clone())),
        }
        if let Some((size, mtime)) = identity {
            entries.push((sample.path.clone(), size, mtime, value));
        }
        on_clip(ExtractProgress {
            done: i + 1,
            total,
            path: &sample.path,
            cached: from_cache,
        });
    }
    write_cache(cache_dir, key, &entries)?;
    out.elapsed_s = start.elapsed().as_secs_f64();
    Ok(out)
}

/// A linear classifier in PaddleVideo's layout: `weight` `[dim, classes]`, `bias` `[classes]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Head {
    pub dim: usize,
    pub classes: usize,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

impl Head {
    /// Paddle's `Linear` default: Xavier-uniform weight, zero bias; seeded.
    pub fn init(dim: usize, classes: usize, seed: u64) -> Self {
        let limit = (6.0 / (dim + classes) as f64).sqrt();
        Self::drawn(dim, classes, seed, |rng| {
            (rng.random::<f64>() * 2.0 - 1.0) * limit
        })
    }

    /// A head whose weights are drawn one by one by `draw` from a generator seeded with `seed`,
    /// and whose bias is zero.
    fn drawn(
        dim: usize,
        classes: usize,
        seed: u64,
        mut draw: impl FnMut(&mut StdRng) -> f64,
    ) -> Self {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x6865_6164);
        let weight = (0..dim * classes).map(|_| draw(&mut rng) as f32).collect();
        Self {
            dim,
            classes,
            weight,
            bias: vec![0.0; classes],
        }
    }

    /// The new classifier of a model PaddleVideo fine-tunes: PP-TSMv2's fc is a plain `Linear`
    /// ([`Head::init`]); PP-TSM's `ppTSMHead.init_weights` draws the weight from N(0, 0.01²)
    /// and zeroes the bias. Seeded.
    pub fn for_model(model: ModelKind, classes: usize, seed: u64) -> Self {
        let dim = model.feature_dim();
        match model {
            ModelKind::PptsmV2 => Self::init(dim, classes, seed),
            // Box-Muller: one standard normal from two uniforms in (0, 1].
            ModelKind::PptsmResnet => Self::drawn(dim, classes, seed, |rng| {
                let (u, v) = (1.0 - rng.random::<f64>(), rng.random::<f64>());
                0.01 * ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos())
            }),
        }
    }

    /// Logits `[N, classes]` of features `[N, dim]`.
    pub fn logits(&self, features: &[f32]) -> Vec<f32> {
        let n = features.len() / self.dim.max(1);
        let mut out = Vec::with_capacity(n * self.classes);
        for x in features.chunks_exact(self.dim) {
            let mut row = self.bias.clone();
            for (xi, w) in x.iter().zip(self.weight.chunks_exact(self.classes)) {
                if *xi != 0.0 {
                    for (r, wj) in row.iter_mut().zip(w) {
                        *r += xi * wj;
                    }
                }
            }
            out.extend(row);
        }
        out
    }

    pub fn evaluate(&self, set: &FeatureSet) -> Evaluation {
        Evaluation::of(&self.logits(&set.features), self.classes, &set.labels)
    }
}

/// Per-dimension standardisation `z = (x − mean)·inv_std` (inv_std 0 for constant dimensions).
#[derive(Clone, Debug, PartialEq)]
pub struct Standardizer {
    pub mean: Vec<f32>,
    pub inv_std: Vec<f32>,
}

impl Standardizer {
    pub fn fit(set: &FeatureSet) -> Self {
        let (n, dim) = (set.len().max(1) as f64, set.dim);
        let mut mean = vec![0.0f64; dim];
        let mut sq = vec![0.0f64; dim];
        for x in set.features.chunks_exact(dim) {
            for (j, &v) in x.iter().enumerate() {
                mean[j] += v as f64;
                sq[j] += (v as f64) * (v as f64);
            }
        }
        let mut inv_std = vec![0.0f32; dim];
        for j in 0..dim {
            mean[j] /= n;
            let var = (sq[j] / n - mean[j] * mean[j]).max(0.0);
            let std = var.sqrt();
            inv_std[j] = if std > 1e-6 { (1.0 / std) as f32 } else { 0.0 };
        }
        Self {
            mean: mean.into_iter().map(|v| v as f32).collect(),
            inv_std,
        }
    }

    pub fn apply(&self, set: &FeatureSet) -> FeatureSet {
        let mut out = set.clone();
        for x in out.features.chunks_exact_mut(set.dim) {
            for ((v, m), s) in x.iter_mut().zip(&self.mean).zip(&self.inv_std) {
                *v = (*v - m) * s;
            }
        }
        out
    }

    /// The head on raw features equal to `head` on standardised ones.
    pub fn fold(&self, head: &Head) -> Head {
        let mut out = head.clone();
        for (j, w) in out.weight.chunks_exact_mut(head.classes).enumerate() {
            let (m, s) = (self.mean[j] as f64, self.inv_std[j] as f64);
            for (k, wk) in w.iter_mut().enumerate() {
                let scaled = *wk as f64 * s;
                out.bias[k] = (out.bias[k] as f64 - m * scaled) as f32;
                *wk = scaled as f32;
            }
        }
        out
    }
}

/// Settings of the head-only optimisation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HeadOnlyOptions {
    pub epochs: usize,
    pub batch_size: usize,
    /// `None`: PaddleVideo's base lr 0.01 (not scaled to the batch size; see `train_head`).
    pub lr: Option<f64>,
    pub seed: u64,
    pub momentum: f64,
    pub weight_decay: f64,
}

impl Default for HeadOnlyOptions {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 16,
            lr: None,
            seed: 0,
            momentum: 0.9,
            weight_decay: 1e-4,
        }
    }
}

/// What training produced.
#[derive(Clone, Debug)]
pub struct HeadOnlyResult {
    pub head: Head,
    pub epochs_done: usize,
    pub train: Evaluation,
    pub val: Option<Evaluation>,
    pub best_val_top1: Option<f64>,
    pub schedule: WarmupCosine,
    /// Seconds per epoch (mean).
    pub epoch_s: f64,
    pub cancelled: bool,
}

/// Paddle's Nesterov Momentum step with L2 added to the gradient (see [`Momentum`]).
fn momentum_step(p: &mut [f32], v: &mut [f32], g: &[f32], lr: f64, mu: f64, decay: f64) {
    let rule = Momentum {
        momentum: mu,
        nesterov: true,
    };
    rule.step(p, v, g, lr, decay);
}

/// Trains a fresh fc on `train` features; evaluates on `val` after every epoch. Emits a `step`
/// (the epoch's mean loss) and an `epoch` event per epoch through `on_event`.
pub fn train_head(
    train: &FeatureSet,
    val: &FeatureSet,
    classes: usize,
    opts: &HeadOnlyOptions,
    cancel: &CancelToken,
    mut on_event: impl FnMut(&TrainEvent),
) -> Result<HeadOnlyResult, TrainError> {
    if train.is_empty() {
        return Err(TrainError::Invalid(
            "no training clips could be decoded".into(),
        ));
    }
    if opts.epochs == 0 || opts.batch_size == 0 {
        return Err(TrainError::Invalid(
            "epochs and batch size must be at least 1".into(),
        ));
    }
    let dim = train.dim;
    let start = Instant::now();
    let standardizer = Standardizer::fit(train);
    let raw_train = train;
    let train = &standardizer.apply(raw_train);
    let raw_val = val;
    let val = &standardizer.apply(raw_val);
    // Without --lr: the recipe's unscaled base (0.01, warm-up from 0.005). The batch-size
    // scaling (0.01·B/128) is for full fine-tuning; a linear head trained for a few dozen
    // steps barely moves at 0.00125 (measured on demo data: 67% vs 100% val top-1).
    let schedule = WarmupCosine::recipe(opts.epochs, 128, opts.lr);
    let mut head = Head::init(dim, classes, opts.seed);
    let mut vel_w = vec![0.0f32; head.weight.len()];
    let mut vel_b = vec![0.0f32; classes];
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let mut order: Vec<usize> = (0..train.len()).collect();
    let iters = train.len().div_ceil(opts.batch_size);
    let mut best = None::<f64>;
    let mut epochs_done = 0;
    let mut step = 0;
    let mut cancelled = false;
    let mut batch_x = Vec::with_capacity(opts.batch_size * dim);
    let mut grad_w = vec![0.0f32; head.weight.len()];
    for epoch in 0..opts.epochs {
        cancel.wait_while_paused();
        if cancel.is_cancelled() {
            cancelled = true;
            break;
        }
        order.shuffle(&mut rng);
        let (mut loss_sum, mut correct) = (0.0, 0usize);
        let mut lr = 0.0;
        for (it, chunk) in order.chunks(opts.batch_size).enumerate() {
            lr = schedule.lr(epoch as f64 + it as f64 / iters as f64);
            batch_x.clear();
            for &i in chunk {
                batch_x.extend_from_slice(train.row(i));
            }
            let labels: Vec<usize> = chunk.iter().map(|&i| train.labels[i]).collect();
            let logits = head.logits(&batch_x);
            for (row, &y) in logits.chunks_exact(classes).zip(&labels) {
                correct += usize::from(super::metrics::argmax(row) == y);
            }
            let logits64: Vec<f64> = logits.iter().map(|&v| v as f64).collect();
            let ce = cross_entropy(&logits64, classes, &Targets::Hard(labels));
            loss_sum += ce.loss * chunk.len() as f64;
            // dW = X^T dZ, db = sum over rows of dZ.
            grad_w.iter_mut().for_each(|g| *g = 0.0);
            let mut grad_b = vec![0.0f32; classes];
            for (x, dz) in batch_x.chunks_exact(dim).zip(ce.grad.chunks_exact(classes)) {
                let dz: Vec<f32> = dz.iter().map(|&v| v as f32).collect();
                for (gb, d) in grad_b.iter_mut().zip(&dz) {
                    *gb += d;
                }
                for (xi, gw) in x.iter().zip(grad_w.chunks_exact_mut(classes)) {
                    if *xi != 0.0 {
                        for (g, d) in gw.iter_mut().zip(&dz) {
                            *g += xi * d;
                        }
                    }
                }
            }
            momentum_step(
                &mut head.weight,
                &mut vel_w,
                &grad_w,
                lr,
                opts.momentum,
                opts.weight_decay,
            );
            momentum_step(
                &mut head.bias,
                &mut vel_b,
                &grad_b,
                lr,
                opts.momentum,
                opts.weight_decay,
            );
            step += 1;
        }
        let n = train.len() as f64;
        let train_loss = loss_sum / n;
        let elapsed_s = start.elapsed().as_secs_f64();
        let mut terms = BTreeMap::new();
        terms.insert("ce".to_string(), train_loss);
        on_event(&TrainEvent::Step {
            epoch: epoch + 1,
            step,
            loss: train_loss,
            terms,
            lr,
            clips_per_s: n * (epoch + 1) as f64 / elapsed_s.max(1e-9),
            elapsed_s,
        });
        let val_eval = (!val.is_empty()).then(|| head.evaluate(val));
        if let Some(v) = &val_eval {
            best = Some(best.map_or(v.top1, |b: f64| b.max(v.top1)));
        }
        on_event(&TrainEvent::Epoch {
            epoch: epoch + 1,
            train_loss,
            train_top1: correct as f64 / n,
            val_loss: val_eval.as_ref().map(|v| v.loss),
            val_top1: val_eval.as_ref().map(|v| v.top1),
            val_top5: val_eval.as_ref().map(|v| v.top5),
            elapsed_s: start.elapsed().as_secs_f64(),
        });
        epochs_done = epoch + 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let head = standardizer.fold(&head);
    Ok(HeadOnlyResult {
        train: head.evaluate(raw_train),
        val: (!raw_val.is_empty()).then(|| head.evaluate(raw_val)),
        head,
        epochs_done,
        best_val_top1: best,
        schedule,
        epoch_s: elapsed / epochs_done.max(1) as f64,
        cancelled,
    })
}

/// The fc keys of an architecture: PP-TSMv2 keeps its fc in the backbone.
pub fn fc_keys(model: ModelKind) -> (&'static str, &'static str) {
    match model {
        ModelKind::PptsmV2 => ("backbone.fc.weight", "backbone.fc.bias"),
        ModelKind::PptsmResnet => ("head.fc.weight", "head.fc.bias"),
    }
}

/// The start checkpoint with its fc replaced by `head`.
pub fn store_with_head(checkpoint: &Checkpoint, head: &Head) -> Result<ParamStore, TrainError> {
    let (wk, bk) = fc_keys(checkpoint.arch.model);
    let mut store = checkpoint.store.clone();
    if !store.contains(wk) || !store.contains(bk) {
        return Err(TrainError::Invalid(format!(
            "{}: no {wk} / {bk} to replace",
            checkpoint.path.display()
        )));
    }
    let tensor = |shape: Vec<usize>, data: Vec<f32>| {
        ParamTensor::new(shape, data).map_err(|e| TrainError::Invalid(format!("{e:?}")))
    };
    store.insert(
        wk,
        tensor(vec![head.dim, head.classes], head.weight.clone())?,
    );
    store.insert(bk, tensor(vec![head.classes], head.bias.clone())?);
    Ok(store)
}

/// Where the model came from and what it was trained on (the safetensors `provenance`).
#[derive(Clone, Debug)]
pub struct ModelOrigin<'a> {
    pub weights: &'a Path,
    pub weights_sha256: &'a str,
    pub data: &'a Path,
    pub epochs: usize,
    pub num_seg: usize,
}

/// Writes the fine-tuned model as Kineto safetensors with `class_names` (atomically).
pub fn write_model(
    checkpoint: &Checkpoint,
    head: &Head,
    class_names: &[String],
    origin: &ModelOrigin<'_>,
    output: &Path,
) -> Result<(), TrainError> {
    if class_names.len() != head.classes {
        return Err(TrainError::Invalid(format!(
            "{} class names for {} classes",
            class_names.len(),
            head.classes
        )));
    }
    let store = store_with_head(checkpoint, head)?;
    let parent = checkpoint.meta.as_ref().map(|m| m.provenance.clone());
    write_trained_store(
        &store,
        crate::model::Arch {
            num_classes: head.classes,
            ..checkpoint.arch
        },
        class_names,
        origin,
        "head_only",
        parent,
        output,
    )
}

/// Writes a trained store (in `arch.form`, `arch.num_classes` classes) as Kineto safetensors
/// with `class_names` and its provenance (`mode`: `head_only` or `full`; `parent`: the start
/// checkpoint's own provenance), atomically. Shared by head-only and full fine-tuning.
pub fn write_trained_store(
    store: &ParamStore,
    arch: crate::model::Arch,
    class_names: &[String],
    origin: &ModelOrigin<'_>,
    mode: &str,
    parent: Option<serde_json::Value>,
    output: &Path,
) -> Result<(), TrainError> {
    if class_names.len() != arch.num_classes {
        return Err(TrainError::Invalid(format!(
            "{} class names for {} classes",
            class_names.len(),
            arch.num_classes
        )));
    }
    let label_set = origin
        .data
        .file_stem()
        .map(|n| n.to_string_lossy().into_owned());
    let meta = KinetoMeta {
        model: arch.model,
        depth: arch.depth,
        form: arch.form,
        num_seg: origin.num_seg,
        attention: arch.attention,
        num_classes: arch.num_classes,
        class_names: Some(class_names.to_vec()),
        label_set,
        input_size: INPUT_SIZE,
        short_side: SHORT_SIDE,
        mean: MEAN,
        std: STD,
        provenance: json!({
            "source": origin.weights.file_name().map(|n| n.to_string_lossy().into_owned()),
            "source_file": origin.weights.display().to_string(),
            "source_sha256": origin.weights_sha256,
            "fine_tuning_data": origin.data.display().to_string(),
            "fine_tuning_mode": mode,
            "epochs": origin.epochs,
            "date": crate::weights::cache::now_rfc3339(),
            "kineto_version": env!("CARGO_PKG_VERSION"),
            "parent": parent,
        }),
    };
    crate::checkpoint::safetensors::write_safetensors(store, Some(&meta), output)
        .map_err(|e| TrainError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_classifiers_follow_each_models_initialiser() {
        let v2 = Head::for_model(ModelKind::PptsmV2, 5, 9);
        assert_eq!(v2.weight, Head::init(1280, 5, 9).weight);
        let r50 = Head::for_model(ModelKind::PptsmResnet, 5, 9);
        assert_eq!((r50.dim, r50.weight.len()), (2048, 2048 * 5));
        assert!(r50.bias.iter().all(|&b| b == 0.0));
        let n = r50.weight.len() as f64;
        let mean = r50.weight.iter().map(|&w| f64::from(w)).sum::<f64>() / n;
        let std = (r50
            .weight
            .iter()
            .map(|&w| (f64::from(w) - mean).powi(2))
            .sum::<f64>()
            / n)
            .sqrt();
        assert!(
            mean.abs() < 5e-4 && (std - 0.01).abs() < 5e-4,
            "N(0, 0.01²)? {mean} {std}"
        );
    }

    /// Two separable blobs are learnt, and the same seed gives the same head.
    #[test]
    fn learns_separable_features_deterministically() {
        let dim = 6;
        let mut set = FeatureSet {
            dim,
            ..FeatureSet::default()
        };
        for i in 0..40 {
            let label = i % 2;
            let row: Vec<f32> = (0..dim)
                .map(|d| if d % 2 == label { 3.0 } else { 0.5 } + (i as f32 * 0.01))
                .collect();
            set.push(
                &Sample {
                    path: PathBuf::from(format!("{i}.mp4")),
                    label,
                },
                &row,
            );
        }
        let opts = HeadOnlyOptions {
            epochs: 12,
            batch_size: 8,
            lr: Some(0.05),
            ..HeadOnlyOptions::default()
        };
        let run = || train_head(&set, &set, 2, &opts, &CancelToken::new(), |_| {}).unwrap();
        let a = run();
        let b = run();
        assert_eq!(a.head, b.head);
        assert_eq!(a.val.as_ref().unwrap().top1, 1.0);
    }

    #[test]
    fn nesterov_first_step_is_paddles() {
        // First step (v = 0): p1 = p0 - lr·1.9·(g + c·p0).
        let mut p = [2.0f32];
        let mut v = [0.0f32];
        momentum_step(&mut p, &mut v, &[0.5], 0.1, 0.9, 1e-4);
        let expected = 2.0 - 0.1 * 1.9 * (0.5 + 1e-4 * 2.0);
        assert!((p[0] as f64 - expected).abs() < 1e-6);
    }
}
