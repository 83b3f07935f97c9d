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
    Act, BatchNorm, Conv, Linear, Trace, global_avg_pool, segment_mean, temporal_shift,
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
        let x = self._conv.forward(x);
        let x = match &self._batch_norm {
            Some(bn) => bn.forward(x),
            None => x,
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
        let y = if self.shortcut {
            temporal_shift(x.clone(), num_seg)
        } else {
            x.clone()
        };
        let y = self._expand_conv.forward(y);
        let y = self._bottleneck_conv.forward(y);
        let y = self._linear_conv.forward(y);
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
        let mut x = self.conv1.forward(x);
        trace.record("conv1", &x);
        for (g, group) in self.blocks.iter().enumerate() {
            let name = format!("conv{}", g + 2);
            x = group._first_block.forward(x, num_seg);
            trace.record(format!("{name}._first_block"), &x);
            for (j, block) in group.rest.iter().enumerate() {
                x = block.forward(x, num_seg);
                trace.record(format!("{name}.{name}_{}", j + 2), &x);
            }
        }
        let x = self.conv9.forward(x);
        trace.record("conv9", &x);
        let x = global_avg_pool(x);
        trace.record("pool2d_avg", &x);
        let features = segment_mean(x, num_seg);
        trace.record("features", &features);
        features
    }
}
