//! Head-only training's classifier: a new fc (features -> classes) trained on the host in f32
//! on cached features: softmax cross-entropy, Momentum 0.9 with Nesterov and L2 1e-4 added to
//! the gradient of the weight *and* the bias (PaddleVideo's rule), the warm-up + cosine
//! schedule, seeded shuffling, mini-batches (the last short batch is kept: small sets would
//! lose clips). Mixup is not applied (it mixes images, which cached features cannot do).
//!
//! The features are standardised per dimension (training-set mean and standard deviation)
//! while the fc trains, and the standardisation is folded into the exported fc
//! (`W' = W/σ`, `b' = b − μ·W/σ`), so the model is a plain PaddleVideo network. Without it a
//! frozen backbone's features (a large shared component, small class-dependent spread) make
//! the recipe's learning rate crawl; the L2 decay therefore acts on the standardised weights.

use std::collections::BTreeMap;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::TrainError;
use super::features::FeatureSet;
use super::losses::{Targets, cross_entropy};
use super::metrics::{Evaluation, TrainEvent};
use super::optim::{Momentum, WarmupCosine};
use crate::model::ModelKind;
use crate::progress::CancelToken;

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

    /// The new classifier of a model PaddleVideo fine-tunes: PP-TSMv2's and the MobileNets' fc
    /// is a plain `Linear` ([`Head::init`]); PP-TSM's `ppTSMHead.init_weights` draws the weight from N(0, 0.01²)
    /// and zeroes the bias. Seeded.
    pub fn for_model(model: ModelKind, classes: usize, seed: u64) -> Self {
        let dim = model.feature_dim();
        match model {
            ModelKind::PptsmV2 | ModelKind::PptsmMv2 | ModelKind::PptsmMv3 => {
                Self::init(dim, classes, seed)
            }
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
        return Err(TrainError::NoTrainingClips);
    }
    if opts.epochs == 0 || opts.batch_size == 0 {
        return Err(TrainError::bad_option(
            "--epochs and --batch-size",
            "must be at least 1",
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::train::dataset::Sample;

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
