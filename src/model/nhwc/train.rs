//! A training step of PP-TSMv2 (training form: BatchNorm layers, rep branches) on the CPU,
//! channels-last: the train-mode forward, keeping what the backward needs, and the backward of
//! `Σ logits · dlogits` to every trainable parameter. The semantics are `train::full`'s step
//! (`FullTrainer`): every BatchNorm normalises with its batch statistics (gradients flow
//! through them), dropout off, the first `frozen` stages (with the stem) run with running
//! statistics and get no gradient. What this adds is speed: every 1x1 convolution and its two
//! backward products are the packed GEMM of `gemm`, the depthwise convolutions are vectorised
//! across channels, and no autodiff graph is built.
//!
//! Weights come from a [`ParamStore`] by canonical PaddleVideo key; gradients go back by the
//! same keys, in the same layouts.

mod layers;
mod ops;

use std::collections::BTreeMap;
use std::sync::Arc;

use rayon::prelude::*;

use super::kernels::{self, Shape};
use crate::model::layers::{BN_EPSILON, PADDLE_BN_EPSILON, shift_channels};
use crate::model::params::ParamStore;
use layers::{
    AttentionTape, BatchNormW, BlockW, PwLayer, SeTape, attention_backward, attention_forward,
    has_prefix, matvec_t, param,
};
use ops::{BnInput, Norm, Pointwise};

/// PP-LCNetV2's stages (`stages.0` .. `stages.3`).
const STAGES: usize = 4;
/// The stage before which the temporal attention and the temporal shift run.
const SHIFT_STAGE: usize = 2;
/// The only stage whose blocks have `use_shortcut` (PaddleVideo's `NET_CONFIG`).
const SHORTCUT_STAGE: usize = 3;
/// Frozen stages from which the temporal attention is frozen too (it runs before `stages.2`).
const ATTENTION_FROZEN_FROM: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum NhwcTrainError {
    #[error("the store has no {0} (PP-TSMv2 in its training form is needed)")]
    Missing(String),
    #[error("{key} has shape {got:?}, expected {expected}")]
    Shape {
        key: String,
        got: Vec<usize>,
        expected: String,
    },
    #[error(
        "clips are [N, T, 3, H, W] with N >= 1, T = num_seg = {num_seg}, H, W >= 32 and \
         N·T·3·H·W values; got {dims:?} and {values} values"
    )]
    Input {
        dims: [usize; 5],
        values: usize,
        num_seg: usize,
    },
    #[error("freezing takes 0 to {max} stages, not {got}")]
    Frozen { got: usize, max: usize },
    #[error("{got} logit gradients for [{n}, {classes}] logits")]
    Dlogits {
        got: usize,
        n: usize,
        classes: usize,
    },
}

/// PP-TSMv2 in its training form, laid out for the NHWC step.
pub struct NhwcTrainNet {
    /// `stem.0`: 3x3 stride-2 conv 3 -> 32 as a product over patches (`[27, 32]`).
    stem: PwLayer,
    /// `stem.1`, then every block of the four stages in order.
    blocks: Vec<BlockW>,
    /// `global_attention.fc`: `[T, T]` (input x output) and `[T]`.
    attention: Option<(Vec<f32>, Vec<f32>)>,
    /// `[1024, 1280]`, no bias.
    last_conv: Pointwise,
    /// `[1280, classes]` and `[classes]`.
    fc_weight: Vec<f32>,
    fc_bias: Vec<f32>,
    num_seg: usize,
}

impl NhwcTrainNet {
    /// The training-form weights of `store` (canonical keys); `num_seg` is the frames per clip
    /// (the temporal attention, if the store has it, must be for that many).
    pub fn from_store(store: &ParamStore, num_seg: usize) -> Result<Self, NhwcTrainError> {
        let stem = PwLayer::load(store, "stem.0", [3, 3, 3])?;
        let mut blocks = vec![BlockW::load(store, "stem.1", None, stem.matrix.n(), 1)?];
        for s in 0..STAGES {
            let mut b = 0;
            while has_prefix(store, &format!("backbone.stages.{s}.{b}.")) {
                let c_in = blocks.last().map_or(0, BlockW::c_out);
                let name = format!("stages.{s}.{b}");
                let mut block =
                    BlockW::load(store, &name, Some(s), c_in, if b == 0 { 2 } else { 1 })?;
                block.shift_before = s == SHIFT_STAGE && b == 0;
                blocks.push(block);
                b += 1;
            }
            if b == 0 {
                return Err(NhwcTrainError::Missing(format!("backbone.stages.{s}")));
            }
        }
        let attention = if store.contains("backbone.global_attention.fc.weight") {
            let t = Some(num_seg);
            let (w, _) = param(store, "backbone.global_attention.fc.weight", &[t, t])?;
            let (b, _) = param(store, "backbone.global_attention.fc.bias", &[t])?;
            Some((w.to_vec(), b.to_vec()))
        } else {
            None
        };
        let c_last = blocks.last().map_or(0, BlockW::c_out);
        let (last, shape) = param(
            store,
            "backbone.last_conv.weight",
            &[None, Some(c_last), Some(1), Some(1)],
        )?;
        let width = shape[0];
        let (fc_weight, fc_shape) = param(store, "backbone.fc.weight", &[Some(width), None])?;
        let (fc_bias, _) = param(store, "backbone.fc.bias", &[Some(fc_shape[1])])?;
        Ok(Self {
            stem,
            blocks,
            attention,
            last_conv: Pointwise::new(&ops::transpose(last, width, c_last), c_last, width),
            fc_weight: fc_weight.to_vec(),
            fc_bias: fc_bias.to_vec(),
            num_seg,
        })
    }

    pub fn classes(&self) -> usize {
        self.fc_bias.len()
    }

    /// Width of the features the fc sees (1280).
    pub fn feature_dim(&self) -> usize {
        self.last_conv.n()
    }

    /// Train-mode forward of clips `[N, T, 3, H, W]` (NCHW frames, as the burn path takes
    /// them) with the first `frozen` stages frozen (0 to 4, as `FullTrainer::set_freeze_stages`),
    /// keeping what the backward needs.
    /// The pass shares the net (an `Arc`), so it can outlive the borrow of its owner, e.g.
    /// between a trainer's forward and its update.
    pub fn forward(
        self: &Arc<Self>,
        clips: &[f32],
        dims: [usize; 5],
        frozen: usize,
    ) -> Result<TrainPass, NhwcTrainError> {
        let [n, t, c, h, w] = dims;
        if n == 0
            || t != self.num_seg
            || c != 3
            || h < 32
            || w < 32
            || clips.len() != dims.iter().product::<usize>()
        {
            return Err(NhwcTrainError::Input {
                dims,
                values: clips.len(),
                num_seg: self.num_seg,
            });
        }
        if frozen > STAGES {
            return Err(NhwcTrainError::Frozen {
                got: frozen,
                max: STAGES,
            });
        }
        let mut stats = Vec::new();
        let input = Shape {
            frames: n * t,
            h,
            w,
            c: 3,
        };
        let mut shape = input.strided(3, 2, self.stem.matrix.n());
        let cols = kernels::im2col_nchw(clips, input, 3, 2, shape);
        let stem_train = frozen == 0;
        let z = self.stem.matrix.forward(&cols, shape.pixels());
        let norm = normalisation(
            &self.stem.bn,
            &z,
            shape.c,
            stem_train,
            &self.stem.name,
            &mut stats,
        );
        let mut x = kernels::buffer(z.len());
        ops::normalise_into(&self.stem.bn.input(&z, &norm), shape.c, &mut x, false, true);
        let stem = if stem_train {
            Some(StemTape {
                cols,
                z,
                norm,
                shape,
            })
        } else {
            kernels::recycle(cols);
            kernels::recycle(z);
            None
        };

        let mut tapes = Vec::new();
        let mut attention = None;
        let mut shift_shape = shape;
        for block in &self.blocks {
            let train = !block.frozen(frozen);
            if block.shift_before {
                shift_shape = shape;
                if let Some((weight, bias)) = &self.attention {
                    let trainable = frozen < ATTENTION_FROZEN_FROM;
                    attention = attention_forward(&mut x, shape, t, weight, bias, trainable);
                }
                let shifted = kernels::temporal_shift(&x, shape, t, shift_channels(shape.c, t));
                kernels::recycle(std::mem::replace(&mut x, shifted));
            }
            let (y, y_shape, tape) = self.block_forward(block, x, shape, train, &mut stats);
            x = y;
            shape = y_shape;
            tapes.extend(tape);
        }

        let pooled = kernels::channel_means(&x, shape);
        kernels::recycle(x);
        let frames = shape.frames;
        let last_z = self.last_conv.forward(&pooled, frames);
        let width = self.feature_dim();
        let mut features = vec![0.0f32; n * width];
        for (f, share) in last_z.chunks_exact(width).enumerate() {
            let feature = &mut features[(f / t) * width..][..width];
            feature
                .iter_mut()
                .zip(share)
                .for_each(|(a, &v)| *a += v.max(0.0));
        }
        features.iter_mut().for_each(|v| *v /= t as f32);
        let logits = features
            .chunks_exact(width)
            .flat_map(|f| kernels::dense(f, &self.fc_weight, Some(&self.fc_bias), self.classes()))
            .collect();
        Ok(TrainPass {
            net: Arc::clone(self),
            n,
            t,
            stem,
            tapes,
            attention,
            shift_shape,
            last_shape: shape,
            pooled,
            last_z,
            features,
            logits,
            stats,
        })
    }

    fn block_forward(
        &self,
        block: &BlockW,
        input: Vec<f32>,
        shape: Shape,
        train: bool,
        stats: &mut Vec<BatchStat>,
    ) -> (Vec<f32>, Shape, Option<BlockTape>) {
        let mut dw_tapes = Vec::with_capacity(block.dw.len());
        let mut act = Vec::new();
        let mut mid = shape;
        for (b, layer) in block.dw.iter().enumerate() {
            let (z, z_shape) =
                ops::depthwise(&input, shape, &layer.weight, layer.kernel, layer.stride);
            mid = z_shape;
            if b == 0 {
                act = kernels::buffer(z.len());
            }
            let norm = normalisation(&layer.bn, &z, mid.c, train, &layer.name, stats);
            ops::normalise_into(&layer.bn.input(&z, &norm), mid.c, &mut act, b > 0, false);
            dw_tapes.push(LayerTape { z, norm });
        }
        ops::relu_in_place(&mut act);
        let se = block.se.as_ref().map(|se| se.forward(&act, mid));
        let scaled = se.as_ref().map(|tape| scaled_by(&act, mid, &tape.scales));
        let mut pw_tapes = Vec::with_capacity(2);
        let mut out: Option<Vec<f32>> = None;
        for layer in block.pointwise() {
            let x_in = out.as_deref().or(scaled.as_deref()).unwrap_or(&act);
            let z = layer.matrix.forward(x_in, mid.pixels());
            let c = layer.matrix.n();
            let norm = normalisation(&layer.bn, &z, c, train, &layer.name, stats);
            let mut y = kernels::buffer(z.len());
            ops::normalise_into(&layer.bn.input(&z, &norm), c, &mut y, false, true);
            pw_tapes.push(LayerTape { z, norm });
            if let Some(old) = out.replace(y) {
                kernels::recycle(old);
            }
        }
        let mut y = out.unwrap_or_default();
        let out_shape = Shape {
            c: block.c_out(),
            ..mid
        };
        if block.shortcut {
            ops::add_into(&mut y, &input);
        }
        if let Some(s) = scaled {
            kernels::recycle(s);
        }
        if !train {
            kernels::recycle(input);
            kernels::recycle(act);
            for tape in dw_tapes.into_iter().chain(pw_tapes) {
                kernels::recycle(tape.z);
            }
            return (y, out_shape, None);
        }
        let tape = BlockTape {
            input,
            in_shape: shape,
            mid,
            dw: dw_tapes,
            act,
            se,
            pw: pw_tapes,
        };
        (y, out_shape, Some(tape))
    }
}

/// `act` rescaled per frame and channel (the SE output).
fn scaled_by(act: &[f32], shape: Shape, scales: &[f32]) -> Vec<f32> {
    let mut x = kernels::buffer(act.len());
    x.copy_from_slice(act);
    kernels::scale_channels(&mut x, shape, scales);
    x
}

/// One BatchNorm's normalisation: the batch statistics (recorded in `stats`) when training,
/// else the running ones.
fn normalisation(
    bn: &BatchNormW,
    z: &[f32],
    c: usize,
    train: bool,
    layer: &str,
    stats: &mut Vec<BatchStat>,
) -> Norm {
    if train {
        let (norm, variance) = Norm::batch(z, c, PADDLE_BN_EPSILON);
        stats.push((format!("backbone.{layer}.bn"), norm.mean.clone(), variance));
        norm
    } else {
        Norm::running(&bn.running_mean, &bn.running_var, BN_EPSILON)
    }
}

/// `("backbone.<layer>.bn", mean, biased variance)`.
type BatchStat = (String, Vec<f32>, Vec<f32>);
type Grads = BTreeMap<String, Vec<f32>>;

/// A ConvBN's conv output and its normalisation.
struct LayerTape {
    z: Vec<f32>,
    norm: Norm,
}

struct StemTape {
    /// The 3x3 patches `[pixels, 27]`.
    cols: Vec<f32>,
    z: Vec<f32>,
    norm: Norm,
    shape: Shape,
}

struct BlockTape {
    input: Vec<f32>,
    in_shape: Shape,
    /// Shape after the depthwise convolution.
    mid: Shape,
    dw: Vec<LayerTape>,
    /// ReLU of the depthwise branches' sum (the SE's input).
    act: Vec<f32>,
    se: Option<SeTape>,
    pw: Vec<LayerTape>,
}

/// A train-mode forward and what its backward needs.
pub struct TrainPass {
    net: Arc<NhwcTrainNet>,
    n: usize,
    t: usize,
    /// `None` when the stem is frozen.
    stem: Option<StemTape>,
    /// The trainable blocks' tapes: the last `tapes.len()` blocks.
    tapes: Vec<BlockTape>,
    attention: Option<AttentionTape>,
    /// Shape at the temporal shift.
    shift_shape: Shape,
    /// Shape of the last block's output.
    last_shape: Shape,
    /// `[frames, 1024]`, `[frames, 1280]` (before ReLU).
    pooled: Vec<f32>,
    last_z: Vec<f32>,
    features: Vec<f32>,
    logits: Vec<f32>,
    stats: Vec<BatchStat>,
}

impl TrainPass {
    /// `[N, classes]`.
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }

    /// `[N, 1280]`: the fc input (the mean over segments).
    pub fn features(&self) -> &[f32] {
        &self.features
    }

    /// `("backbone.<layer>.bn", mean, biased variance)` of every BatchNorm run with batch
    /// statistics, in forward order.
    pub fn batch_stats(&self) -> Vec<(String, Vec<f32>, Vec<f32>)> {
        self.stats.clone()
    }

    /// The gradient of `Σ logits · dlogits` (`dlogits` is `[N, classes]`) with respect to
    /// every trainable parameter, by canonical key, in the store's layouts.
    pub fn backward(self, dlogits: &[f32]) -> Result<Grads, NhwcTrainError> {
        let net = self.net;
        let (n, t, classes, width) = (self.n, self.t, net.classes(), net.feature_dim());
        if dlogits.len() != n * classes {
            return Err(NhwcTrainError::Dlogits {
                got: dlogits.len(),
                n,
                classes,
            });
        }
        let mut grads = Grads::new();
        // fc: logits = features · W + b.
        grads.insert(
            "backbone.fc.weight".to_string(),
            ops::weight_grad(&self.features, dlogits, n, width, classes),
        );
        let mut dbias = vec![0.0f32; classes];
        for row in dlogits.chunks_exact(classes) {
            ops::add_into(&mut dbias, row);
        }
        grads.insert("backbone.fc.bias".to_string(), dbias);
        let dfeatures: Vec<f32> = dlogits
            .chunks_exact(classes)
            .flat_map(|g| matvec_t(&net.fc_weight, g, width))
            .collect();

        // Segment mean, ReLU, last conv.
        let frames = n * t;
        let mut dz = self.last_z;
        for (f, row) in dz.chunks_exact_mut(width).enumerate() {
            let df = &dfeatures[(f / t) * width..][..width];
            for (d, &g) in row.iter_mut().zip(df) {
                *d = if *d > 0.0 { g / t as f32 } else { 0.0 };
            }
        }
        let c_last = net.last_conv.k();
        let dw = ops::weight_grad(&self.pooled, &dz, frames, c_last, width);
        grads.insert(
            "backbone.last_conv.weight".to_string(),
            ops::transpose(&dw, c_last, width),
        );
        if self.tapes.is_empty() {
            return Ok(grads);
        }

        // Global average pool.
        let dpooled = net.last_conv.input_grad(&dz, frames);
        let shape = self.last_shape;
        let inv = 1.0 / (shape.h * shape.w) as f32;
        let mut d = kernels::buffer(shape.values());
        d.par_chunks_mut(shape.h * shape.w * shape.c)
            .zip(dpooled.par_chunks(shape.c))
            .for_each(|(frame, g)| {
                for px in frame.chunks_exact_mut(shape.c) {
                    px.iter_mut().zip(g).for_each(|(v, &gv)| *v = gv * inv);
                }
            });

        let first = net.blocks.len() - self.tapes.len();
        let trained = net.blocks[first..].iter().zip(self.tapes);
        let mut attention = self.attention;
        for (i, (block, tape)) in trained.enumerate().rev() {
            // The first trainable block's input gradient is only needed by a trainable stem
            // or temporal attention before it.
            let is_first = i == 0;
            let feeds_attention = block.shift_before && attention.is_some();
            let need_dx = !is_first || feeds_attention || self.stem.is_some();
            let Some(dx) = net.block_backward(block, tape, d, need_dx, &mut grads) else {
                return Ok(grads);
            };
            d = dx;
            if block.shift_before {
                let s = self.shift_shape;
                let dshift = ops::temporal_shift_backward(&d, s, t, shift_channels(s.c, t));
                kernels::recycle(std::mem::replace(&mut d, dshift));
                if let (Some(tape), Some((weight, _))) = (attention.take(), &net.attention) {
                    d = attention_backward(d, s, t, weight, tape, &mut grads);
                }
                if is_first {
                    return Ok(grads);
                }
            }
        }

        if let Some(stem) = self.stem {
            let c = stem.shape.c;
            let bn = net.stem.bn.input(&stem.z, &stem.norm);
            ops::relu_backward(&mut d, c, std::slice::from_ref(&bn));
            let (dz, dgamma, dbeta) = ops::bn_backward(&d, &bn, c);
            let k = net.stem.matrix.k();
            let dw = ops::weight_grad(&stem.cols, &dz, stem.shape.pixels(), k, c);
            insert_conv_bn(
                &mut grads,
                &net.stem.name,
                ops::transpose(&dw, k, c),
                dgamma,
                dbeta,
            );
        }
        Ok(grads)
    }
}

fn insert_conv_bn(
    grads: &mut Grads,
    layer: &str,
    weight: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
) {
    grads.insert(format!("backbone.{layer}.conv.weight"), weight);
    grads.insert(format!("backbone.{layer}.bn.weight"), gamma);
    grads.insert(format!("backbone.{layer}.bn.bias"), beta);
}

impl NhwcTrainNet {
    /// One block's backward from the gradient of its output; returns the gradient of its input
    /// when `need_dx`.
    fn block_backward(
        &self,
        block: &BlockW,
        tape: BlockTape,
        d_out: Vec<f32>,
        need_dx: bool,
        grads: &mut Grads,
    ) -> Option<Vec<f32>> {
        let BlockTape {
            input,
            in_shape,
            mid,
            dw,
            act,
            se,
            pw,
        } = tape;
        let pixels = mid.pixels();
        // The shortcut's gradient is where the input gradient starts.
        let mut dx = need_dx.then(|| {
            if block.shortcut {
                d_out.clone()
            } else {
                vec![0.0f32; in_shape.values()]
            }
        });
        let mut d = d_out;
        let layers = block.pointwise();
        for (j, (layer, lt)) in layers.iter().zip(&pw).enumerate().rev() {
            let c = layer.matrix.n();
            let bn = layer.bn.input(&lt.z, &lt.norm);
            ops::relu_backward(&mut d, c, std::slice::from_ref(&bn));
            let (dz, dgamma, dbeta) = ops::bn_backward(&d, &bn, c);
            kernels::recycle(d);
            let x_in = match j.checked_sub(1).and_then(|i| layers.get(i).zip(pw.get(i))) {
                Some((prev, prev_tape)) => {
                    let c_prev = prev.matrix.n();
                    let mut y = kernels::buffer(prev_tape.z.len());
                    let bn = prev.bn.input(&prev_tape.z, &prev_tape.norm);
                    ops::normalise_into(&bn, c_prev, &mut y, false, true);
                    y
                }
                None => match &se {
                    Some(se) => scaled_by(&act, mid, &se.scales),
                    None => act.clone(),
                },
            };
            let k = layer.matrix.k();
            let dw = ops::weight_grad(&x_in, &dz, pixels, k, c);
            kernels::recycle(x_in);
            insert_conv_bn(grads, &layer.name, ops::transpose(&dw, k, c), dgamma, dbeta);
            d = layer.matrix.input_grad(&dz, pixels);
            kernels::recycle(dz);
        }
        if let (Some(se_w), Some(se_t)) = (&block.se, &se) {
            d = se_w.backward(d, &act, mid, se_t, grads);
        }
        let c = in_shape.c;
        let branches: Vec<BnInput<'_>> = block
            .dw
            .iter()
            .zip(&dw)
            .map(|(layer, lt)| layer.bn.input(&lt.z, &lt.norm))
            .collect();
        ops::relu_backward(&mut d, c, &branches);
        for (layer, bn) in block.dw.iter().zip(&branches) {
            let (dz, dgamma, dbeta) = ops::bn_backward(&d, bn, c);
            let dweight = ops::depthwise_backward(
                &dz,
                &input,
                in_shape,
                &layer.weight,
                (layer.kernel, layer.stride),
                dx.as_deref_mut(),
            );
            kernels::recycle(dz);
            let taps = layer.kernel * layer.kernel;
            insert_conv_bn(
                grads,
                &layer.name,
                ops::transpose(&dweight, taps, c),
                dgamma,
                dbeta,
            );
        }
        dx
    }
}
