//! PP-TSMv2: PP-LCNetV2-base (scale 1.0, depths [2, 2, 6, 2]) with one temporal shift (and the
//! optional temporal attention) before stage 3, global pooling, a last 1x1 conv to 1280,
//! `downscale_in_infer` dropout, the mean over segments, and the classifier.

use burn::module::Module;
use burn::tensor::{Device, Tensor, activation};

use super::layers::{
    Act, BatchStats, Conv, ConvBn, Linear, Normalization, Trace, global_avg_pool, segment_mean,
    temporal_shift,
};

/// Width of the last conv (`class_expand`).
pub const CLASS_EXPAND: usize = 1280;
/// Eval-mode dropout of p = 0.2 in `downscale_in_infer` mode multiplies by 1 - p.
pub const DROPOUT_KEEP: f32 = 0.8;

/// One stage of PP-LCNetV2: (input channels of block 0, depthwise kernel, split pointwise,
/// rep branches, SE, shortcut), PaddleVideo's `NET_CONFIG`.
struct StageConfig {
    in_channels: usize,
    kernel: usize,
    split_pw: bool,
    use_rep: bool,
    use_se: bool,
    use_shortcut: bool,
    depth: usize,
}

const STAGES: [StageConfig; 4] = [
    StageConfig {
        in_channels: 64,
        kernel: 3,
        split_pw: false,
        use_rep: false,
        use_se: false,
        use_shortcut: false,
        depth: 2,
    },
    StageConfig {
        in_channels: 128,
        kernel: 3,
        split_pw: false,
        use_rep: false,
        use_se: false,
        use_shortcut: false,
        depth: 2,
    },
    StageConfig {
        in_channels: 256,
        kernel: 5,
        split_pw: true,
        use_rep: true,
        use_se: true,
        use_shortcut: false,
        depth: 6,
    },
    StageConfig {
        in_channels: 512,
        kernel: 5,
        split_pw: false,
        use_rep: true,
        use_se: false,
        use_shortcut: true,
        depth: 2,
    },
];

/// Channels that leave stage 4.
pub const LAST_STAGE_CHANNELS: usize = 1024;

/// `SEModule` (reduction 4): pool, 1x1 conv, ReLU, 1x1 conv, sigmoid, rescale.
#[derive(Module, Debug)]
pub struct SeModule {
    pub conv1: Conv,
    pub conv2: Conv,
}

impl SeModule {
    fn new(device: &Device, channels: usize) -> Self {
        Self {
            conv1: Conv::new(device, [channels, channels / 4], 1, 1, 1, true),
            conv2: Conv::new(device, [channels / 4, channels], 1, 1, 1, true),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let s = global_avg_pool(x.clone());
        let s = activation::relu(self.conv1.forward(s));
        let s = activation::sigmoid(self.conv2.forward(s));
        x * s
    }
}

/// `RepDepthwiseSeparable`. The depthwise part is one of three things: a plain ConvBN + ReLU
/// (`dw_conv`, stages 1-2 and the stem), the training-form rep branches (`dw_conv_list`: 5x5, 3x3
/// and, at stride 1, 1x1 ConvBNs summed, then ReLU), or their merged 5x5 conv with bias
/// (`rep_dw`, saved under PaddleVideo's name `dw_conv`) in the fused form.
#[derive(Module, Debug)]
pub struct RepDepthwiseSeparable {
    pub dw_conv: Option<ConvBn>,
    pub dw_conv_list: Vec<ConvBn>,
    pub rep_dw: Option<Conv>,
    pub se: Option<SeModule>,
    pub pw_conv: Option<ConvBn>,
    pub pw_conv_1: Option<ConvBn>,
    pub pw_conv_2: Option<ConvBn>,
    pub use_shortcut: bool,
}

struct BlockConfig {
    c_in: usize,
    c_out: usize,
    stride: usize,
    kernel: usize,
    split_pw: bool,
    use_rep: bool,
    use_se: bool,
    use_shortcut: bool,
}

impl RepDepthwiseSeparable {
    fn new(device: &Device, cfg: &BlockConfig, fused: bool) -> Self {
        let BlockConfig {
            c_in,
            c_out,
            stride,
            kernel,
            ..
        } = *cfg;
        let dw =
            |k: usize, act: Act| ConvBn::new(device, [c_in, c_in], k, stride, c_in, act, fused);
        let (dw_conv, dw_conv_list, rep_dw) = match (cfg.use_rep, fused) {
            (false, _) => (Some(dw(kernel, Act::Relu)), Vec::new(), None),
            (true, false) => {
                // Kernel sizes k, k-2, ..., 1; the 1x1 branch only at stride 1.
                let sizes = (1..=kernel)
                    .rev()
                    .step_by(2)
                    .filter(|&k| k > 1 || stride == 1);
                (None, sizes.map(|k| dw(k, Act::None)).collect(), None)
            }
            (true, true) => (
                None,
                Vec::new(),
                Some(Conv::new(device, [c_in, c_in], kernel, stride, c_in, true)),
            ),
        };
        let pw = |a: usize, b: usize| ConvBn::new(device, [a, b], 1, 1, 1, Act::Relu, fused);
        let (pw_conv, pw_conv_1, pw_conv_2) = if cfg.split_pw {
            (None, Some(pw(c_in, c_out / 2)), Some(pw(c_out / 2, c_out)))
        } else {
            (Some(pw(c_in, c_out)), None, None)
        };
        Self {
            dw_conv,
            dw_conv_list,
            rep_dw,
            se: cfg.use_se.then(|| SeModule::new(device, c_in)),
            pw_conv,
            pw_conv_1,
            pw_conv_2,
            use_shortcut: cfg.use_shortcut && stride == 1 && c_in == c_out,
        }
    }

    fn forward(
        &self,
        x: Tensor<4>,
        name: &str,
        trace: &mut Trace,
        norm: &mut Normalization<'_>,
    ) -> Tensor<4> {
        let input = x.clone();
        let mut x = if let Some(dw) = &self.dw_conv {
            dw.forward_with(x, norm, &format!("{name}.dw_conv"))
        } else if let Some(rep) = &self.rep_dw {
            activation::relu(rep.forward(x))
        } else {
            let mut sum: Option<Tensor<4>> = None;
            for (k, branch) in self.dw_conv_list.iter().enumerate() {
                let y = branch.forward_with(x.clone(), norm, &format!("{name}.dw_conv_list.{k}"));
                trace.record(format!("{name}.dw_conv_list.{k}"), &y);
                sum = Some(match sum {
                    Some(s) => s + y,
                    None => y,
                });
            }
            let y = activation::relu(sum.unwrap_or(x));
            trace.record(format!("{name}.act"), &y);
            y
        };
        if let Some(se) = &self.se {
            x = se.forward(x);
            trace.record(format!("{name}.se"), &x);
        }
        if let (Some(pw1), Some(pw2)) = (&self.pw_conv_1, &self.pw_conv_2) {
            x = pw1.forward_with(x, norm, &format!("{name}.pw_conv_1"));
            trace.record(format!("{name}.pw_conv_1"), &x);
            x = pw2.forward_with(x, norm, &format!("{name}.pw_conv_2"));
        }
        if let Some(pw) = &self.pw_conv {
            x = pw.forward_with(x, norm, &format!("{name}.pw_conv"));
            trace.record(format!("{name}.pw_conv"), &x);
        }
        if self.use_shortcut {
            x = x + input;
        }
        trace.record(name, &x);
        x
    }
}

/// `GlobalAttention`: per-frame mean -> Linear(T, T) -> sigmoid -> rescale each frame.
#[derive(Module, Debug)]
pub struct GlobalAttention {
    pub fc: Linear,
}

impl GlobalAttention {
    fn forward(&self, x: Tensor<4>, num_seg: usize, trace: &mut Trace) -> Tensor<4> {
        let [nt, c, h, w] = x.dims();
        let n = nt / num_seg;
        let means: Tensor<2> = x
            .clone()
            .reshape([n, num_seg, c * h * w])
            .mean_dim(2)
            .reshape([n, num_seg]);
        let logits = self.fc.forward(means);
        trace.record("global_attention.fc", &logits);
        let weights: Tensor<5> = activation::sigmoid(logits).reshape([n, num_seg, 1, 1, 1]);
        let x5: Tensor<5> = x.reshape([n, num_seg, c, h, w]);
        (x5 * weights).reshape([nt, c, h, w])
    }
}

/// The whole PP-TSMv2 network (`PPTSM_v2_LCNet`); its fc lives in the backbone (`backbone.fc.*`).
#[derive(Module, Debug)]
pub struct PpTsmV2 {
    /// `stem.0`: ConvBN 3->32, k3, s2, ReLU.
    pub stem_conv: ConvBn,
    /// `stem.1`: depthwise-separable 32->64.
    pub stem_dw: RepDepthwiseSeparable,
    pub stages: Vec<Vec<RepDepthwiseSeparable>>,
    pub global_attention: Option<GlobalAttention>,
    pub last_conv: Conv,
    pub fc: Linear,
}

impl PpTsmV2 {
    /// A zero-weight skeleton in the training form (`fused == false`) or the inference form.
    /// `attention_segments` is the num_seg fixed by the temporal attention, if it is on.
    pub fn new(
        device: &Device,
        num_classes: usize,
        attention_segments: Option<usize>,
        fused: bool,
    ) -> Self {
        let stem_conv = ConvBn::new(device, [3, 32], 3, 2, 1, Act::Relu, fused);
        let plain = |c_in, c_out| BlockConfig {
            c_in,
            c_out,
            stride: 1,
            kernel: 3,
            split_pw: false,
            use_rep: false,
            use_se: false,
            use_shortcut: false,
        };
        let stem_dw = RepDepthwiseSeparable::new(device, &plain(32, 64), fused);
        let stages = STAGES
            .iter()
            .map(|s| {
                (0..s.depth)
                    .map(|i| {
                        let cfg = BlockConfig {
                            c_in: if i == 0 {
                                s.in_channels
                            } else {
                                s.in_channels * 2
                            },
                            c_out: s.in_channels * 2,
                            stride: if i == 0 { 2 } else { 1 },
                            kernel: s.kernel,
                            split_pw: s.split_pw,
                            use_rep: s.use_rep,
                            use_se: s.use_se,
                            use_shortcut: s.use_shortcut,
                        };
                        RepDepthwiseSeparable::new(device, &cfg, fused)
                    })
                    .collect()
            })
            .collect();
        Self {
            stem_conv,
            stem_dw,
            stages,
            global_attention: attention_segments.map(|t| GlobalAttention {
                fc: Linear::new(device, t, t),
            }),
            last_conv: Conv::new(device, [LAST_STAGE_CHANNELS, CLASS_EXPAND], 1, 1, 1, false),
            fc: Linear::new(device, CLASS_EXPAND, num_classes),
        }
    }

    /// `[N*T, 3, H, W]` frames of N clips of `num_seg` frames -> `[N, classes]` logits.
    pub fn forward(&self, x: Tensor<4>, num_seg: usize, trace: &mut Trace) -> Tensor<2> {
        let features = self.features(x, num_seg, trace);
        let logits = self.fc.forward(features);
        trace.record("logits", &logits);
        logits
    }

    /// The fc input: `[N, 1280]`, the mean over segments of each frame's pooled feature.
    pub fn features(&self, x: Tensor<4>, num_seg: usize, trace: &mut Trace) -> Tensor<2> {
        self.features_with(
            x,
            num_seg,
            trace,
            &mut Normalization::Running,
            DROPOUT_KEEP,
            0,
        )
    }

    /// Train mode (Paddle's `model.train()`) with dropout off (p = 0, the identity in
    /// `downscale_in_infer` mode): `[N, 1280]` features and `[N, classes]` logits; every
    /// BatchNorm normalises with its batch statistics, which are appended to `stats`. `trace`
    /// gets the same records as in inference.
    pub fn forward_train(
        &self,
        x: Tensor<4>,
        num_seg: usize,
        stats: &mut BatchStats,
        trace: &mut Trace,
    ) -> (Tensor<2>, Tensor<2>) {
        self.forward_train_frozen(x, num_seg, 0, stats, trace)
    }

    /// [`forward_train`](Self::forward_train) with the first `frozen` stages frozen
    /// (`frozen` in `0..=4`; larger values count as 4): the stem, `stages.0` to
    /// `stages.{frozen-1}` and, from 3 on, the temporal attention (it runs before `stages.2`)
    /// form the frozen prefix. Its BatchNorm layers normalise with their running statistics
    /// (eval mode, nothing recorded in `stats`) and its output is detached, so the backward
    /// stops there. `frozen == 0` is exactly `forward_train`.
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
            frozen.min(STAGES.len()),
        );
        let logits = self.fc.forward(features.clone());
        trace.record("logits", &logits);
        (features, logits)
    }

    /// The shared body of both modes; `dropout_scale` is what the dropout multiplies by. The
    /// first `frozen` stages (with the stem) run with running statistics and their output is
    /// detached (see [`forward_train_frozen`](Self::forward_train_frozen)); 0 in inference.
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
        let x = self.stem_conv.forward_with(x, stem_norm, "stem.0");
        trace.record("stem.0", &x);
        let mut x = self.stem_dw.forward(x, "stem.1", trace, stem_norm);
        for (s, stage) in self.stages.iter().enumerate() {
            if frozen > 0 && s == frozen {
                x = x.detach();
            }
            let stage_norm = if s < frozen { &mut running } else { &mut *norm };
            if s == 2 {
                if let Some(att) = &self.global_attention {
                    x = att.forward(x, num_seg, trace);
                }
                x = temporal_shift(x, num_seg);
                trace.record("temporal_shift", &x);
            }
            for (b, block) in stage.iter().enumerate() {
                x = block.forward(x, &format!("stages.{s}.{b}"), trace, stage_norm);
            }
        }
        if frozen >= self.stages.len() {
            x = x.detach();
        }
        let x = global_avg_pool(x);
        trace.record("avg_pool", &x);
        let x = self.last_conv.forward(x);
        trace.record("last_conv", &x);
        let x = activation::relu(x);
        trace.record("last_act", &x);
        let x = if dropout_scale == 1.0 {
            x
        } else {
            x.mul_scalar(dropout_scale)
        };
        trace.record("dropout", &x);
        let features = segment_mean(x, num_seg);
        trace.record("features", &features);
        features
    }

    /// The num_seg the temporal attention fixes, if it is on.
    pub fn attention_segments(&self) -> Option<usize> {
        self.global_attention
            .as_ref()
            .map(|a| a.fc.weight.dims()[0])
    }
}
