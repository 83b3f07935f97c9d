//! PP-TSM's server model and the distillation teacher: `ResNetTweaksTSM` (ResNet-vd with a
//! temporal shift on every bottleneck's residual branch) and `ppTSMHead`.

use burn::module::Module;
use burn::tensor::module::{avg_pool2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, MaxPoolOptions};
use burn::tensor::{Device, Tensor};

use super::layers::{
    Act, BatchNorm, BatchStats, Conv, Linear, Normalization, Trace, global_avg_pool, segment_mean,
    temporal_shift,
};

/// Bottleneck blocks per stage.
pub fn stage_depths(depth: usize) -> Option<[usize; 4]> {
    match depth {
        50 => Some([3, 4, 6, 3]),
        101 => Some([3, 4, 23, 3]),
        152 => Some([3, 8, 36, 3]),
        _ => None,
    }
}

const MID_CHANNELS: [usize; 4] = [64, 128, 256, 512];
/// Channels of the last stage, the head's input.
pub const FEATURE_CHANNELS: usize = 2048;

/// The ResNet's `ConvBNLayer` (keys `_conv.*`, `_batch_norm.*`), with the vd "tweak": a 2x2
/// average pool (ceil mode, exclusive) before the conv on the down-sampling shortcuts.
#[derive(Module, Debug)]
pub struct ResConvBn {
    pub _conv: Conv,
    pub _batch_norm: Option<BatchNorm>,
    pub avg_pool_first: bool,
    #[module(skip)]
    pub act: Act,
}

impl ResConvBn {
    fn new(
        device: &Device,
        channels: [usize; 2],
        kernel: usize,
        stride: usize,
        act: Act,
        fused: bool,
    ) -> Self {
        Self {
            _conv: Conv::new(device, channels, kernel, stride, 1, fused),
            _batch_norm: (!fused).then(|| BatchNorm::new(device, channels[1])),
            avg_pool_first: false,
            act,
        }
    }

    /// The forward with BatchNorm in the given mode; `name` is this layer's PaddleVideo name
    /// without `backbone.` (its BatchNorm is `{name}._batch_norm`).
    fn forward_with(&self, x: Tensor<4>, norm: &mut Normalization<'_>, name: &str) -> Tensor<4> {
        let x = if self.avg_pool_first {
            // Ceil mode with exclusive counts = pad the odd edge and let the pool divide by the
            // number of real pixels in each window.
            let [_, _, h, w] = x.dims();
            let options = AvgPoolOptions::new([2, 2])
                .with_padding_pairs([(0, h % 2), (0, w % 2)])
                .with_count_include_pad(false);
            avg_pool2d(x, options)
        } else {
            x
        };
        let x = self._conv.forward(x);
        let x = match &self._batch_norm {
            Some(bn) => bn.forward_with(x, norm, &format!("{name}._batch_norm")),
            None => x,
        };
        self.act.apply(x)
    }
}

/// `BottleneckBlock`: shift -> 1x1 -> 3x3 (stride) -> 1x1 (x4), plus the unshifted input or its
/// projection, then leaky ReLU.
#[derive(Module, Debug)]
pub struct Bottleneck {
    pub conv0: ResConvBn,
    pub conv1: ResConvBn,
    pub conv2: ResConvBn,
    pub short: Option<ResConvBn>,
}

impl Bottleneck {
    /// `name` is the block's PaddleVideo name, `bb_{s}_{i}`.
    fn forward(
        &self,
        x: Tensor<4>,
        num_seg: usize,
        norm: &mut Normalization<'_>,
        name: &str,
    ) -> Tensor<4> {
        let shifted = temporal_shift(x.clone(), num_seg);
        let y = self
            .conv0
            .forward_with(shifted, norm, &format!("{name}.conv0"));
        let y = self.conv1.forward_with(y, norm, &format!("{name}.conv1"));
        let y = self.conv2.forward_with(y, norm, &format!("{name}.conv2"));
        let short = match &self.short {
            Some(proj) => proj.forward_with(x, norm, &format!("{name}.short")),
            None => x,
        };
        Act::LeakyRelu.apply(short + y)
    }
}

/// `ppTSMHead`: pool, dropout (identity in eval), mean over segments, fc.
#[derive(Module, Debug)]
pub struct PpTsmHead {
    pub fc: Linear,
}

/// `ResNetTweaksTSM` + `ppTSMHead`. Blocks are `stages[s][i]`, saved as `bb_{s}_{i}`.
#[derive(Module, Debug)]
pub struct ResNetTsm {
    pub conv1_1: ResConvBn,
    pub conv1_2: ResConvBn,
    pub conv1_3: ResConvBn,
    pub stages: Vec<Vec<Bottleneck>>,
    pub head: PpTsmHead,
}

impl ResNetTsm {
    /// Zero-weight skeleton; `None` for a depth without a bottleneck table.
    pub fn new(device: &Device, depth: usize, num_classes: usize, fused: bool) -> Option<Self> {
        let depths = stage_depths(depth)?;
        let conv = |c: [usize; 2], k, s, act| ResConvBn::new(device, c, k, s, act, fused);
        let mut c_in = 64;
        let mut stages = Vec::with_capacity(4);
        for (s, (&blocks, &mid)) in depths.iter().zip(MID_CHANNELS.iter()).enumerate() {
            let mut stage = Vec::with_capacity(blocks);
            for i in 0..blocks {
                let stride = if i == 0 && s != 0 { 2 } else { 1 };
                let short = (i == 0).then(|| {
                    let mut proj = conv([c_in, mid * 4], 1, 1, Act::None);
                    // ResNet-D: pool then a stride-1 projection, except in the very first block.
                    proj.avg_pool_first = s != 0;
                    proj
                });
                stage.push(Bottleneck {
                    conv0: conv([c_in, mid], 1, 1, Act::LeakyRelu),
                    conv1: conv([mid, mid], 3, stride, Act::LeakyRelu),
                    conv2: conv([mid, mid * 4], 1, 1, Act::None),
                    short,
                });
                c_in = mid * 4;
            }
            stages.push(stage);
        }
        Some(Self {
            conv1_1: conv([3, 32], 3, 2, Act::LeakyRelu),
            conv1_2: conv([32, 32], 3, 1, Act::LeakyRelu),
            conv1_3: conv([32, 64], 3, 1, Act::LeakyRelu),
            stages,
            head: PpTsmHead {
                fc: Linear::new(device, FEATURE_CHANNELS, num_classes),
            },
        })
    }

    pub fn forward(&self, x: Tensor<4>, num_seg: usize, trace: &mut Trace) -> Tensor<2> {
        let features = self.features(x, num_seg, trace);
        let logits = self.head.fc.forward(features);
        trace.record("logits", &logits);
        logits
    }

    /// `[N, 2048]`: the mean over segments of each frame's pooled last-stage feature.
    pub fn features(&self, x: Tensor<4>, num_seg: usize, trace: &mut Trace) -> Tensor<2> {
        self.features_with(x, num_seg, trace, &mut Normalization::Running)
    }

    /// Train mode (Paddle's `model.train()`) with the head's dropout off (p = 0, as for
    /// PP-TSMv2: Paddle's dropout RNG cannot be reproduced): `[N, 2048]` features and
    /// `[N, classes]` logits; every BatchNorm normalises with its batch statistics, which are
    /// appended to `stats` (names without `backbone.`, e.g. `bb_0_0.conv0._batch_norm`).
    pub fn forward_train(
        &self,
        x: Tensor<4>,
        num_seg: usize,
        stats: &mut BatchStats,
        trace: &mut Trace,
    ) -> (Tensor<2>, Tensor<2>) {
        self.forward_train_frozen(x, num_seg, 0, stats, trace)
    }

    /// [`forward_train`](Self::forward_train) with the stem (`conv1_1`..`conv1_3`) and the
    /// first `frozen` stages (`bb_{s}_*`, s < `frozen`) frozen: they normalise with their
    /// running statistics (eval mode) and their output is detached, so no gradient reaches
    /// them. 0 freezes nothing.
    pub fn forward_train_frozen(
        &self,
        x: Tensor<4>,
        num_seg: usize,
        frozen: usize,
        stats: &mut BatchStats,
        trace: &mut Trace,
    ) -> (Tensor<2>, Tensor<2>) {
        let features = self.features_frozen(
            x,
            num_seg,
            trace,
            &mut Normalization::Batch(stats),
            frozen.min(self.stages.len()),
        );
        let logits = self.head.fc.forward(features.clone());
        trace.record("logits", &logits);
        (features, logits)
    }

    fn features_with(
        &self,
        x: Tensor<4>,
        num_seg: usize,
        trace: &mut Trace,
        norm: &mut Normalization<'_>,
    ) -> Tensor<2> {
        self.features_frozen(x, num_seg, trace, norm, 0)
    }

    /// The shared body: the stem and the first `frozen` stages run with running statistics
    /// and their output is detached (0 in inference and unfrozen training).
    fn features_frozen(
        &self,
        x: Tensor<4>,
        num_seg: usize,
        trace: &mut Trace,
        norm: &mut Normalization<'_>,
        frozen: usize,
    ) -> Tensor<2> {
        let mut running = Normalization::Running;
        let stem_norm = if frozen > 0 { &mut running } else { &mut *norm };
        let x = self.conv1_1.forward_with(x, stem_norm, "conv1_1");
        let x = self.conv1_2.forward_with(x, stem_norm, "conv1_2");
        let x = self.conv1_3.forward_with(x, stem_norm, "conv1_3");
        let x = max_pool2d(
            x,
            MaxPoolOptions::new([3, 3])
                .with_stride([2, 2])
                .with_padding([1, 1]),
        );
        trace.record("stem", &x);
        let mut x = x;
        for (s, stage) in self.stages.iter().enumerate() {
            if frozen > 0 && s == frozen {
                x = x.detach();
            }
            let stage_norm = if s < frozen { &mut running } else { &mut *norm };
            for (i, block) in stage.iter().enumerate() {
                x = block.forward(x, num_seg, stage_norm, &format!("bb_{s}_{i}"));
            }
            trace.record(format!("res{}", s + 2), &x);
        }
        if frozen >= self.stages.len() {
            x = x.detach();
        }
        let x = global_avg_pool(x);
        trace.record("pooled", &x);
        let features = segment_mean(x, num_seg);
        trace.record("features", &features);
        features
    }
}
