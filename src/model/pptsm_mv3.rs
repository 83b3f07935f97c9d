//! PP-TSM MobileNetV3 (PaddleVideo's `PPTSM_MobileNetV3`, `pptsm_mv3.py`): MobileNetV3-large
//! x1.0 with a temporal shift at the input of every residual unit that has a shortcut (stride 1,
//! as many channels out as in), squeeze-excitation with PaddleVideo's hard sigmoid (slope 0.2,
//! offset 0.5), the global pool *before* the last 1x1 conv, and the classifier inside the
//! backbone (its head, `MoViNetHead`, passes the logits through).
//!
//! Keys are PaddleVideo's as they are: `conv`, `blocks.{i}` (`expand_conv`, `bottleneck_conv`,
//! `mid_se.conv1/conv2`, `linear_conv`), `last_second_conv`, `last_conv`, `fc`.

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::layers::{
    Act, BatchStats, Conv, ConvBn, Linear, Normalization, Trace, global_avg_pool, hardsigmoid,
    segment_mean, temporal_shift,
};

/// `(kernel, expanded channels, output channels, SE, activation, stride)` of each residual unit
/// (PaddleVideo's `NET_CONFIG["large"]`; every width is already a multiple of 8 at scale 1.0).
pub const UNITS: [(usize, usize, usize, bool, Act, usize); 15] = [
    (3, 16, 16, false, Act::Relu, 1),
    (3, 64, 24, false, Act::Relu, 2),
    (3, 72, 24, false, Act::Relu, 1),
    (5, 72, 40, true, Act::Relu, 2),
    (5, 120, 40, true, Act::Relu, 1),
    (5, 120, 40, true, Act::Relu, 1),
    (3, 240, 80, false, Act::Hardswish, 2),
    (3, 200, 80, false, Act::Hardswish, 1),
    (3, 184, 80, false, Act::Hardswish, 1),
    (3, 184, 80, false, Act::Hardswish, 1),
    (3, 480, 112, true, Act::Hardswish, 1),
    (3, 672, 112, true, Act::Hardswish, 1),
    (5, 672, 160, true, Act::Hardswish, 2),
    (5, 960, 160, true, Act::Hardswish, 1),
    (5, 960, 160, true, Act::Hardswish, 1),
];
const STEM_CHANNELS: usize = 16;
/// The stage (for `--freeze-stages`) of each residual unit `blocks.{i}`: PaddleClas's stage
/// ends for MobileNetV3-large (`blocks[2]`, `[5]`, `[11]`, `[14]`), i.e. by output resolution
/// 1/4, 1/8, 1/16, 1/32 as the ResNet's stages. `conv` is the stem; `last_second_conv`,
/// `last_conv` and `fc` are never frozen.
pub const UNIT_STAGES: [usize; 15] = [0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 2, 3, 3, 3];
/// `last_second_conv`'s channels (`LAST_SECOND_CONV_LARGE`).
const SQUEEZE_CHANNELS: usize = 960;
/// `last_conv`'s channels (`LAST_CONV`), the classifier's input.
pub const FEATURE_CHANNELS: usize = 1280;
/// `SEModule`'s reduction.
const SE_REDUCTION: usize = 4;
/// The dropout before the classifier is `Dropout(0.2, mode="downscale_in_infer")`: at inference
/// it scales by `1 - 0.2`.
pub const DROPOUT_INFER_SCALE: f32 = 0.8;

/// `SEModule`: global pool, 1x1 conv (bias) + ReLU, 1x1 conv (bias) + hard sigmoid, times the
/// input.
#[derive(Module, Debug)]
pub struct SeModule {
    pub conv1: Conv,
    pub conv2: Conv,
}

impl SeModule {
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let gate = global_avg_pool(x.clone());
        let gate = Act::Relu.apply(self.conv1.forward(gate));
        let gate = hardsigmoid(self.conv2.forward(gate));
        x * gate
    }
}

/// `ResidualUnit`: 1x1 expand, k x k depthwise (stride), optional SE, 1x1 linear; with a
/// shortcut the input is shifted in time first and the unshifted input added at the end.
#[derive(Module, Debug)]
pub struct ResidualUnit {
    pub expand_conv: ConvBn,
    pub bottleneck_conv: ConvBn,
    pub mid_se: Option<SeModule>,
    pub linear_conv: ConvBn,
    pub shortcut: bool,
}

impl ResidualUnit {
    pub fn forward(&self, x: Tensor<4>, num_seg: usize) -> Tensor<4> {
        self.forward_with(x, num_seg, &mut Normalization::Running, "")
    }

    /// `name` is the unit's PaddleVideo name without `backbone.` (`blocks.3`).
    pub fn forward_with(
        &self,
        x: Tensor<4>,
        num_seg: usize,
        norm: &mut Normalization<'_>,
        name: &str,
    ) -> Tensor<4> {
        let y = if self.shortcut {
            temporal_shift(x.clone(), num_seg)
        } else {
            x.clone()
        };
        let y = self
            .expand_conv
            .forward_with(y, norm, &format!("{name}.expand_conv"));
        let y = self
            .bottleneck_conv
            .forward_with(y, norm, &format!("{name}.bottleneck_conv"));
        let y = match &self.mid_se {
            Some(se) => se.forward(y),
            None => y,
        };
        let y = self
            .linear_conv
            .forward_with(y, norm, &format!("{name}.linear_conv"));
        if self.shortcut { x + y } else { y }
    }
}

/// `PPTSM_MobileNetV3` (`MobileNetV3`, large, scale 1.0).
#[derive(Module, Debug)]
pub struct PpTsmMv3 {
    pub conv: ConvBn,
    pub blocks: Vec<ResidualUnit>,
    pub last_second_conv: ConvBn,
    pub last_conv: Conv,
    pub fc: Linear,
}

impl PpTsmMv3 {
    /// Zero-weight skeleton.
    pub fn new(device: &Device, num_classes: usize, fused: bool) -> Self {
        let conv_bn =
            |c: [usize; 2], k, s, groups, act| ConvBn::new(device, c, k, s, groups, act, fused);
        let mut c_in = STEM_CHANNELS;
        let blocks = UNITS
            .iter()
            .map(|&(k, mid, c_out, se, act, stride)| {
                let unit = ResidualUnit {
                    expand_conv: conv_bn([c_in, mid], 1, 1, 1, act),
                    bottleneck_conv: conv_bn([mid, mid], k, stride, mid, act),
                    mid_se: se.then(|| SeModule {
                        conv1: Conv::new(device, [mid, mid / SE_REDUCTION], 1, 1, 1, true),
                        conv2: Conv::new(device, [mid / SE_REDUCTION, mid], 1, 1, 1, true),
                    }),
                    linear_conv: conv_bn([mid, c_out], 1, 1, 1, Act::None),
                    shortcut: stride == 1 && c_in == c_out,
                };
                c_in = c_out;
                unit
            })
            .collect();
        Self {
            conv: conv_bn([3, STEM_CHANNELS], 3, 2, 1, Act::Hardswish),
            blocks,
            last_second_conv: conv_bn([c_in, SQUEEZE_CHANNELS], 1, 1, 1, Act::Hardswish),
            last_conv: Conv::new(device, [SQUEEZE_CHANNELS, FEATURE_CHANNELS], 1, 1, 1, false),
            fc: Linear::new(device, FEATURE_CHANNELS, num_classes),
        }
    }

    pub fn forward(&self, x: Tensor<4>, num_seg: usize, trace: &mut Trace) -> Tensor<2> {
        let features = self.features(x, num_seg, trace);
        let logits = self.fc.forward(features);
        trace.record("logits", &logits);
        logits
    }

    /// `[N, 1280]`, what `fc` sees: per frame, pool, `last_conv`, hard swish and the dropout's
    /// inference scale, then the mean over segments.
    pub fn features(&self, x: Tensor<4>, num_seg: usize, trace: &mut Trace) -> Tensor<2> {
        self.features_with(
            x,
            num_seg,
            trace,
            &mut Normalization::Running,
            DROPOUT_INFER_SCALE,
            0,
        )
    }

    /// Train mode (Paddle's `model.train()`) with the dropout off (p = 0, the identity in
    /// training, as PP-TSMv2's: Paddle's dropout RNG cannot be reproduced): `[N, 1280]`
    /// features and `[N, classes]` logits; every BatchNorm normalises with its batch
    /// statistics, appended to `stats` (names without `backbone.`, e.g.
    /// `blocks.3.expand_conv.bn`). The stem (`conv`) and the units of the first `frozen`
    /// stages ([`UNIT_STAGES`]) are frozen: running statistics (eval mode), output detached.
    pub fn forward_train_frozen(
        &self,
        x: Tensor<4>,
        num_seg: usize,
        frozen: usize,
        stats: &mut BatchStats,
        trace: &mut Trace,
    ) -> (Tensor<2>, Tensor<2>) {
        let features = self.features_with(
            x,
            num_seg,
            trace,
            &mut Normalization::Batch(stats),
            1.0,
            frozen,
        );
        let logits = self.fc.forward(features.clone());
        trace.record("logits", &logits);
        (features, logits)
    }

    fn features_with(
        &self,
        x: Tensor<4>,
        num_seg: usize,
        trace: &mut Trace,
        norm: &mut Normalization<'_>,
        dropout_scale: f32,
        frozen: usize,
    ) -> Tensor<2> {
        let mut running = Normalization::Running;
        let stem_norm = if frozen > 0 { &mut running } else { &mut *norm };
        let mut x = self.conv.forward_with(x, stem_norm, "conv");
        trace.record("conv", &x);
        let mut was_frozen = frozen > 0;
        for (i, unit) in self.blocks.iter().enumerate() {
            let is_frozen = UNIT_STAGES.get(i).is_some_and(|&s| s < frozen);
            if was_frozen && !is_frozen {
                x = x.detach();
            }
            was_frozen = is_frozen;
            let unit_norm = if is_frozen { &mut running } else { &mut *norm };
            x = unit.forward_with(x, num_seg, unit_norm, &format!("blocks.{i}"));
            trace.record(format!("blocks.{i}"), &x);
        }
        if was_frozen {
            x = x.detach();
        }
        let x = self
            .last_second_conv
            .forward_with(x, norm, "last_second_conv");
        trace.record("last_second_conv", &x);
        let x = global_avg_pool(x);
        trace.record("avg_pool", &x);
        let x = Act::Hardswish.apply(self.last_conv.forward(x));
        trace.record("hardswish", &x);
        let x = if dropout_scale == 1.0 {
            x
        } else {
            x.mul_scalar(dropout_scale)
        };
        let features = segment_mean(x, num_seg);
        trace.record("features", &features);
        features
    }
}
