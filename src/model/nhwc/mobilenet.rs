//! PP-TSM MobileNetV2 and MobileNetV3 (fused: BatchNorm folded into the convolutions' biases)
//! on the CPU path, channels-last, on PP-TSMv2's layers: 1x1 convolutions as `gemm`'s packed
//! products, depthwise 3x3/5x5 convolutions in `kernels`' strips, the squeeze-excitation, each
//! with its activation applied in registers (ReLU6 for v2; ReLU or hardswish, and the SE's
//! PaddleVideo hard sigmoid, for v3).
//!
//! Built from a loaded fused [`PpTsmMv2`] / [`PpTsmMv3`] (the weights' one source of truth, as
//! for PP-TSMv2). The temporal shift sits where the burn models put it: at the input of every
//! unit with a shortcut, whose unshifted input is added to its output. From the first such unit
//! on, a frame's activations depend on its neighbours', so there is no per-frame split for the
//! live window; instead each unit runs frame by frame (in parallel, each frame's activations
//! staying in cache, its shifted input built from its neighbours' maps) while the maps are
//! large, and on all frames at once when they are small, so that the late units' weights pass
//! through the cache once per clip rather than once per frame.

use rayon::prelude::*;

use super::gemm::PackedMatrix;
use super::kernels::{self, Shape};
use super::{
    Depthwise, Excitation, Gate, NhwcError, Pointwise, Stem, classifier, classify_with, mean_of,
};
use crate::model::layers::{Act, Conv, ConvBn, shift_channels};
use crate::model::pptsm_mv2::{InvertedResidual, Mv2ConvBn, PpTsmMv2};
use crate::model::pptsm_mv3::{DROPOUT_INFER_SCALE, PpTsmMv3, ResidualUnit};

/// Units whose input maps have at least this many pixels run frame by frame; smaller ones run
/// on all frames at once (at 224: 112x112 to 14x14 by frame, 7x7 at once). On one AVX2 thread,
/// 8 frames at 224: every unit on all frames at once took 1.12-1.15x the time; a threshold of
/// 0, 14x14 or 28x28 the same within 1%, 56x56 1.03x.
const PER_FRAME_MIN_PIXELS: usize = 14 * 14;

/// A fused inverted residual (v2) or residual unit (v3): 1x1 expand, k x k depthwise, optional
/// SE, 1x1 linear; with a shortcut, the temporal shift first and the input added at the end.
struct Unit {
    expand: Pointwise,
    depthwise: Depthwise,
    excitation: Option<Excitation>,
    linear: Pointwise,
    shortcut: bool,
}

impl Unit {
    fn from_mv2(block: &InvertedResidual) -> Result<Self, NhwcError> {
        Ok(Self {
            expand: Pointwise::new(mv2_conv(&block._expand_conv)?, block._expand_conv.act)?,
            depthwise: Depthwise::from_conv(
                mv2_conv(&block._bottleneck_conv)?,
                block._bottleneck_conv.act,
            )?,
            excitation: None,
            linear: Pointwise::new(mv2_conv(&block._linear_conv)?, block._linear_conv.act)?,
            shortcut: block.shortcut,
        })
    }

    fn from_mv3(unit: &ResidualUnit) -> Result<Self, NhwcError> {
        let excitation = match &unit.mid_se {
            Some(se) => Some(Excitation::new(&se.conv1, &se.conv2, Gate::HardSigmoid)?),
            None => None,
        };
        Ok(Self {
            expand: Pointwise::from_conv_bn(&unit.expand_conv, String::new())?,
            depthwise: Depthwise::from_conv(
                folded(&unit.bottleneck_conv)?,
                unit.bottleneck_conv.act,
            )?,
            excitation,
            linear: Pointwise::from_conv_bn(&unit.linear_conv, String::new())?,
            shortcut: unit.shortcut,
        })
    }

    fn out_shape(&self, shape: Shape) -> Shape {
        let mid = self.depthwise.out_shape(self.expand.out_shape(shape));
        self.linear.out_shape(mid)
    }

    /// The unit on `shape.frames` frames in clips of `num_seg`.
    fn forward(&self, x: Vec<f32>, shape: Shape, num_seg: usize) -> (Vec<f32>, Shape) {
        let out_shape = self.out_shape(shape);
        let mut out = kernels::buffer(out_shape.values());
        let group = if shape.h * shape.w >= PER_FRAME_MIN_PIXELS {
            1
        } else {
            shape.frames.max(1)
        };
        let out_len = group * out_shape.h * out_shape.w * out_shape.c;
        out.par_chunks_mut(out_len.max(1))
            .enumerate()
            .for_each(|(g, dst)| {
                let first = g * group;
                let frames = first..(first + group).min(shape.frames);
                self.frames_into(&x, shape, num_seg, frames, dst);
            });
        kernels::recycle(x);
        (out, out_shape)
    }

    /// The unit on the frames `frames` of `x` (all `shape.frames` frames, which the shift
    /// reads), written into `out`.
    fn frames_into(
        &self,
        x: &[f32],
        shape: Shape,
        num_seg: usize,
        frames: std::ops::Range<usize>,
        out: &mut [f32],
    ) {
        let frame_len = shape.h * shape.w * shape.c;
        let part = Shape {
            frames: frames.len(),
            ..shape
        };
        let own = &x[frames.start * frame_len..frames.end * frame_len];
        let shifted = self.shortcut.then(|| {
            let mut shifted = kernels::buffer(part.values());
            let split = shift_channels(shape.c, num_seg);
            for (f, dst) in frames.clone().zip(shifted.chunks_exact_mut(frame_len)) {
                let (previous, current, next) = kernels::clip_neighbours(x, frame_len, num_seg, f);
                kernels::shift_frame(previous, current, next, shape.c, split, dst);
            }
            shifted
        });
        let (y, y_shape) = self.expand.forward(shifted.as_deref().unwrap_or(own), part);
        if let Some(shifted) = shifted {
            kernels::recycle(shifted);
        }
        let (mut z, z_shape) = self.depthwise.forward(&y, y_shape);
        kernels::recycle(y);
        if let Some(se) = &self.excitation {
            se.apply(&mut z, z_shape);
        }
        self.linear.forward_into(&z, z_shape, out);
        kernels::recycle(z);
        if self.shortcut {
            out.iter_mut().zip(own).for_each(|(a, b)| *a += b);
        }
    }
}

/// The conv of a MobileNetV2 `ConvBNLayer` whose BatchNorm is folded.
fn mv2_conv(layer: &Mv2ConvBn) -> Result<&Conv, NhwcError> {
    match layer._batch_norm {
        None => Ok(&layer._conv),
        Some(_) => Err(NhwcError::Unsupported("BatchNorm not folded")),
    }
}

/// The conv of a `ConvBn` whose BatchNorm is folded.
fn folded(layer: &ConvBn) -> Result<&Conv, NhwcError> {
    match layer.bn {
        None => Ok(&layer.conv),
        Some(_) => Err(NhwcError::Unsupported("BatchNorm not folded")),
    }
}

/// PP-TSM MobileNetV2 or MobileNetV3 (fused) on the CPU, channels-last.
pub struct NhwcMobileNet {
    /// 3x3 stride-2 stem (+ ReLU6 / hardswish).
    stem: Stem,
    units: Vec<Unit>,
    /// The 1x1 convolution before the global pool: v2's `conv9` (+ ReLU6), v3's
    /// `last_second_conv` (+ hardswish).
    before_pool: Pointwise,
    /// v3's `last_conv` after the pool (no bias; hardswish, then the dropout's inference scale).
    after_pool: Option<Pointwise>,
    /// The classifier, in the backbone in both (`out` / `fc`).
    fc: PackedMatrix,
}

impl NhwcMobileNet {
    pub fn from_mv2(net: &PpTsmMv2) -> Result<Self, NhwcError> {
        let units = net
            .blocks
            .iter()
            .flat_map(|group| std::iter::once(&group._first_block).chain(&group.rest))
            .map(Unit::from_mv2)
            .collect::<Result<_, _>>()?;
        Ok(Self {
            stem: Stem::new(mv2_conv(&net.conv1)?, net.conv1.act)?,
            units,
            before_pool: Pointwise::new(mv2_conv(&net.conv9)?, net.conv9.act)?,
            after_pool: None,
            fc: classifier(&net.out)?,
        })
    }

    pub fn from_mv3(net: &PpTsmMv3) -> Result<Self, NhwcError> {
        let units = net
            .blocks
            .iter()
            .map(Unit::from_mv3)
            .collect::<Result<_, _>>()?;
        Ok(Self {
            stem: Stem::new(folded(&net.conv)?, net.conv.act)?,
            units,
            before_pool: Pointwise::from_conv_bn(&net.last_second_conv, String::new())?,
            after_pool: Some(Pointwise::new(&net.last_conv, Act::Hardswish)?),
            fc: classifier(&net.fc)?,
        })
    }

    /// Width of the pooled features the classifier sees (1280).
    pub fn feature_dim(&self) -> usize {
        self.fc.k()
    }

    /// Pre-fc features `[N, 1280]` of clips `[N, T, 3, H, W]`.
    pub fn features(&self, clips: &[f32], [n, t, _, h, w]: [usize; 5]) -> Vec<f32> {
        let frames = n * t;
        if frames == 0 {
            return Vec::new();
        }
        let frame_len = 3 * h * w;
        let stem_shape = self.stem.out_shape(h, w);
        let mut x = kernels::buffer(frames * stem_shape.values());
        x.par_chunks_mut(stem_shape.values())
            .zip(clips[..frames * frame_len].par_chunks(frame_len))
            .for_each(|(dst, frame)| self.stem.forward_into(frame, h, w, dst));
        let mut shape = Shape {
            frames,
            ..stem_shape
        };
        for unit in &self.units {
            (x, shape) = unit.forward(x, shape, t);
        }
        let (y, y_shape) = self.before_pool.forward(&x, shape);
        kernels::recycle(x);
        let pooled = kernels::channel_means(&y, y_shape);
        kernels::recycle(y);
        // Each frame's share of its clip's features (their mean).
        let shares = match &self.after_pool {
            Some(last) => {
                let one_pixel = Shape {
                    frames,
                    h: 1,
                    w: 1,
                    c: y_shape.c,
                };
                let (mut shares, _) = last.forward(&pooled, one_pixel);
                shares.iter_mut().for_each(|v| *v *= DROPOUT_INFER_SCALE);
                shares
            }
            None => pooled,
        };
        let width = self.feature_dim();
        let rows: Vec<&[f32]> = shares.chunks_exact(width).collect();
        rows.chunks_exact(t)
            .flat_map(|clip| mean_of(clip, width))
            .collect()
    }

    /// The classifier on pre-fc features: `[N, 1280]` -> `[N, classes]`.
    pub fn classify(&self, features: &[f32]) -> Vec<f32> {
        classify_with(&self.fc, features)
    }

    /// Raw logits `[N, classes]` of clips `[N, T, 3, H, W]`.
    pub fn logits(&self, clips: &[f32], dims: [usize; 5]) -> Vec<f32> {
        self.classify(&self.features(clips, dims))
    }
}
