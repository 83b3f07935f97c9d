//! PP-TSM MobileNetV2 (PaddleVideo's `PPTSM_MobileNetV2`, `pptsm_mv2.py`): MobileNetV2 x1.0 with
//! a temporal shift at the input of every inverted residual that has a shortcut, and the
//! classifier inside the backbone (its head, `MoViNetHead`, passes the logits through).
//!
//! Keys: `conv1`, `conv{2..8}` (one group of inverted residuals each: `_first_block`, then
//! `conv{g}_{2..n}`), `conv9`, `out`; convolutions `_conv`, BatchNorms `_batch_norm`. Here a
//! group's later blocks are `blocks[g - 2].rest[j]`, renamed by `model::paddle_key`.

use burn::module::Module;
use burn::tensor::{Device, Tensor};

use super::layers::{
    Act, BatchNorm, BatchStats, Conv, Linear, Normalization, Trace, global_avg_pool, segment_mean,
    temporal_shift,
};

/// `(expansion t, output channels c, blocks n, first stride s)` of each group, `conv2`..`conv8`.
pub const GROUPS: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];
const STEM_CHANNELS: usize = 32;
/// The stage (for `--freeze-stages`) of each group `conv2`..`conv8`, by output resolution as
/// the ResNet's stages: 1/2 and 1/4 (stage 0), 1/8, 1/16, 1/32. `conv1` is the stem; `conv9`
/// and `out` are never frozen.
pub const GROUP_STAGES: [usize; 7] = [0, 0, 1, 2, 2, 3, 3];
/// Channels of `conv9`, the classifier's input.
pub const FEATURE_CHANNELS: usize = 1280;

/// MobileNetV2's `ConvBNLayer` (keys `_conv.*`, `_batch_norm.*`): conv, BatchNorm, ReLU6 or
/// nothing. In the fused form `_batch_norm` is gone and the conv carries the folded bias.
#[derive(Module, Debug)]
pub struct Mv2ConvBn {
    pub _conv: Conv,
    pub _batch_norm: Option<BatchNorm>,
    #[module(skip)]
    pub act: Act,
}

impl Mv2ConvBn {
    fn new(
        device: &Device,
        channels: [usize; 2],
        kernel: usize,
        stride: usize,
        groups: usize,
        act: Act,
        fused: bool,
    ) -> Self {
        Self {
            _conv: Conv::new(device, channels, kernel, stride, groups, fused),
            _batch_norm: (!fused).then(|| BatchNorm::new(device, channels[1])),
            act,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward_with(x, &mut Normalization::Running, "")
    }

    /// The forward with BatchNorm in the given mode; `name` is this layer's PaddleVideo name
    /// without `backbone.` (its BatchNorm is `{name}._batch_norm`).
    pub fn forward_with(
        &self,
        x: Tensor<4>,
        norm: &mut Normalization<'_>,
        name: &str,
    ) -> Tensor<4> {
        let x = self._conv.forward(x);
        let x = match (&self._batch_norm, norm) {
            (None, _) => x,
            (Some(bn), Normalization::Running) => bn.forward(x),
            (Some(bn), norm) => bn.forward_with(x, norm, &format!("{name}._batch_norm")),
        };
        self.act.apply(x)
    }
}

/// `InvertedResidualUnit`: 1x1 expand (ReLU6), 3x3 depthwise (stride, ReLU6), 1x1 linear. With
/// a shortcut (every block of a group but the first) the input is shifted in time first, and
/// the unshifted input is added to the result.
#[derive(Module, Debug)]
pub struct InvertedResidual {
    pub _expand_conv: Mv2ConvBn,
    pub _bottleneck_conv: Mv2ConvBn,
    pub _linear_conv: Mv2ConvBn,
    pub shortcut: bool,
}

impl InvertedResidual {
    #[allow(clippy::too_many_arguments)]
    fn new(
        device: &Device,
        c_in: usize,
        c_out: usize,
        expansion: usize,
        stride: usize,
        shortcut: bool,
        fused: bool,
    ) -> Self {
        let mid = c_in * expansion;
        Self {
            _expand_conv: Mv2ConvBn::new(device, [c_in, mid], 1, 1, 1, Act::Relu6, fused),
            _bottleneck_conv: Mv2ConvBn::new(device, [mid, mid], 3, stride, mid, Act::Relu6, fused),
            _linear_conv: Mv2ConvBn::new(device, [mid, c_out], 1, 1, 1, Act::None, fused),
            shortcut,
        }
    }

    pub fn forward(&self, x: Tensor<4>, num_seg: usize) -> Tensor<4> {
        self.forward_with(x, num_seg, &mut Normalization::Running, "")
    }

    /// `name` is the block's PaddleVideo name without `backbone.` (`conv3._first_block`,
    /// `conv3.conv3_2`).
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
            ._expand_conv
            .forward_with(y, norm, &format!("{name}._expand_conv"));
        let y = self
            ._bottleneck_conv
            .forward_with(y, norm, &format!("{name}._bottleneck_conv"));
        let y = self
            ._linear_conv
            .forward_with(y, norm, &format!("{name}._linear_conv"));
        if self.shortcut { x + y } else { y }
    }
}

/// `InvresiBlocks`: one group, `_first_block` (stride, no shortcut) then `n - 1` blocks with one.
#[derive(Module, Debug)]
pub struct InvresiBlocks {
    pub _first_block: InvertedResidual,
    pub rest: Vec<InvertedResidual>,
}

/// `PPTSM_MobileNetV2` (`MobileNet`, scale 1.0). `blocks[g]` is PaddleVideo's `conv{g + 2}`.
#[derive(Module, Debug)]
pub struct PpTsmMv2 {
    pub conv1: Mv2ConvBn,
    pub blocks: Vec<InvresiBlocks>,
    pub conv9: Mv2ConvBn,
    pub out: Linear,
}

impl PpTsmMv2 {
    /// Zero-weight skeleton.
    pub fn new(device: &Device, num_classes: usize, fused: bool) -> Self {
        let mut c_in = STEM_CHANNELS;
        let mut blocks = Vec::with_capacity(GROUPS.len());
        for &(t, c, n, s) in &GROUPS {
            let first = InvertedResidual::new(device, c_in, c, t, s, false, fused);
            let rest = (1..n)
                .map(|_| InvertedResidual::new(device, c, c, t, 1, true, fused))
                .collect();
            blocks.push(InvresiBlocks {
                _first_block: first,
                rest,
            });
            c_in = c;
        }
        Self {
            conv1: Mv2ConvBn::new(device, [3, STEM_CHANNELS], 3, 2, 1, Act::Relu6, fused),
            blocks,
            conv9: Mv2ConvBn::new(device, [c_in, FEATURE_CHANNELS], 1, 1, 1, Act::Relu6, fused),
            out: Linear::new(device, FEATURE_CHANNELS, num_classes),
        }
    }

    pub fn forward(&self, x: Tensor<4>, num_seg: usize, trace: &mut Trace) -> Tensor<2> {
        let features = self.features(x, num_seg, trace);
        let logits = self.out.forward(features);
        trace.record("logits", &logits);
        logits
    }

    /// `[N, 1280]`: the mean over segments of each frame's pooled `conv9` output.
    pub fn features(&self, x: Tensor<4>, num_seg: usize, trace: &mut Trace) -> Tensor<2> {
        self.features_with(x, num_seg, trace, &mut Normalization::Running, 0)
    }

    /// Train mode (Paddle's `model.train()`): `[N, 1280]` features and `[N, classes]` logits;
    /// every BatchNorm normalises with its batch statistics, appended to `stats` (names
    /// without `backbone.`, e.g. `conv3.conv3_2._expand_conv._batch_norm`). The stem (`conv1`)
    /// and the groups of the first `frozen` stages ([`GROUP_STAGES`]) are frozen: running
    /// statistics (eval mode), output detached. 0 freezes nothing.
    pub fn forward_train_frozen(
        &self,
        x: Tensor<4>,
        num_seg: usize,
        frozen: usize,
        stats: &mut BatchStats,
        trace: &mut Trace,
    ) -> (Tensor<2>, Tensor<2>) {
        let features =
            self.features_with(x, num_seg, trace, &mut Normalization::Batch(stats), frozen);
        let logits = self.out.forward(features.clone());
        trace.record("logits", &logits);
        (features, logits)
    }

    fn features_with(
        &self,
        x: Tensor<4>,
        num_seg: usize,
        trace: &mut Trace,
        norm: &mut Normalization<'_>,
        frozen: usize,
    ) -> Tensor<2> {
        let mut running = Normalization::Running;
        let stem_norm = if frozen > 0 { &mut running } else { &mut *norm };
        let mut x = self.conv1.forward_with(x, stem_norm, "conv1");
        trace.record("conv1", &x);
        let mut was_frozen = frozen > 0;
        for (g, group) in self.blocks.iter().enumerate() {
            let is_frozen = GROUP_STAGES.get(g).is_some_and(|&s| s < frozen);
            if was_frozen && !is_frozen {
                x = x.detach();
            }
            was_frozen = is_frozen;
            let group_norm = if is_frozen { &mut running } else { &mut *norm };
            let name = format!("conv{}", g + 2);
            x = group._first_block.forward_with(
                x,
                num_seg,
                group_norm,
                &format!("{name}._first_block"),
            );
            trace.record(format!("{name}._first_block"), &x);
            for (j, block) in group.rest.iter().enumerate() {
                let block_name = format!("{name}.{name}_{}", j + 2);
                x = block.forward_with(x, num_seg, group_norm, &block_name);
                trace.record(block_name, &x);
            }
        }
        if was_frozen {
            x = x.detach();
        }
        let x = self.conv9.forward_with(x, norm, "conv9");
        trace.record("conv9", &x);
        let x = global_avg_pool(x);
        trace.record("pool2d_avg", &x);
        let features = segment_mean(x, num_seg);
        trace.record("features", &features);
        features
    }
}
