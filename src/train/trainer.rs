//! Full fine-tuning of a model in its training form (PP-TSMv2 with BatchNorm layers and rep
//! branches; PP-TSM's ResNet-50/101, as a model of its own or as PaddleVideo's DML teacher;
//! PP-TSM MobileNetV2/V3), one step as PaddleVideo's `tasks/train.py` runs it:
//!
//! 1. train-mode forward: every BatchNorm normalises with the batch mean and the biased batch
//!    variance (gradients flow through both), dropout off (the fixtures set p = 0; Paddle's
//!    dropout RNG cannot be reproduced);
//! 2. softmax cross-entropy, mean over the batch, on the logits ([`cross_entropy_smoothed`],
//!    analytic gradient on the host; the ResNet's `ppTSMHead` smooths the labels with
//!    `ls_eps` 0.1, the others train on plain CE: [`FullStepOptions::recipe`]), then burn's
//!    autodiff backward from the logits, seeded with that gradient (`Σ logits·dL/dlogits` has
//!    the same parameter gradients as the loss);
//! 3. Paddle's `Momentum` (Nesterov 0.9) with L2 1e-4 *added to the gradient* where the
//!    model's ParamAttrs leave the config's decay ([`is_decayed`]): PP-TSMv2's and
//!    MobileNetV3's BatchNorm weights and biases are exempt (`L2Decay(0.0)`), the ResNet's too
//!    and `ppTSMHead`'s fc bias; MobileNetV2 decays everything, BatchNorm included (its
//!    ParamAttrs name parameters without a regularizer). Learning-rate multipliers: `ppTSMHead`'s
//!    fc x5 weight / x10 bias and PP-TSMv2's 16f attention fc the same; none in the MobileNets.
//!    Parameters that got no gradient are left untouched;
//! 4. the running statistics: `running = m·running + (1 − m)·batch` with m = 0.9, the variance
//!    with the biased batch variance (Paddle's convention, unlike PyTorch's).
//!
//! Paddle's op attributes are float32 even in a float64 run: BatchNorm's epsilon (1e-5) and
//! momentum (0.9) and the optimiser's `mu` (0.9) are used here as those float32 values, which is
//! what makes a float64 step agree with Paddle's float64 step to rounding level.
//!
//! The precision is a per-trainer choice ([`FloatDType::F32`] or [`FloatDType::F64`]): parameters
//! and inputs are cast to it and every op follows the tensors' dtype. The flex device's default
//! dtype is *not* used for this: it is one process-wide setting (flex has a single device id),
//! fixed by the first tensor created, so configuring it would tie a whole process to one
//! precision.
//!
//! The step is also split in two for losses computed elsewhere: [`FullTrainer::forward`] (the
//! train-mode forward, graph kept) and [`FullTrainer::backward_and_update`] (backward seeded
//! with a given dLoss/dlogits, then 3 and 4); the cross-entropy step is that pair, and so are
//! [`dml_step`] (PaddleVideo's DML: both models' forwards, one summed loss, each model seeded
//! with its own gradient of it) and [`kd_step`] (classic KD against a frozen teacher's logits).
//!
//! Freezing ([`FullTrainer::set_freeze_stages`], `kineto train --freeze-stages N`): with N > 0
//! the stem and the first N of the backbone's four stages are frozen ([`is_frozen_key`]):
//! PP-TSMv2's `stages.0` .. `stages.{N-1}` and, for N >= 3, its temporal attention (it runs
//! before `stages.2`); the ResNet's `bb_{s}_*`; the MobileNets' units grouped by resolution as
//! the ResNet's stages (1/4, 1/8, 1/16, 1/32: [`pptsm_mv2::GROUP_STAGES`],
//! [`pptsm_mv3::UNIT_STAGES`]). Their parameters are plain (non-gradient) tensors, so they get
//! no gradient, no velocity, no weight decay and no update; their BatchNorm layers normalise with
//! the running statistics, which stay as they are (eval mode, the usual practice for frozen
//! BatchNorm); and the frozen prefix's output is detached, so the backward stops there. N = 4
//! leaves what follows the last stage trainable (PP-TSMv2's `last_conv`, the MobileNets' last
//! convs, every fc). N = 0 is the unfrozen step, unchanged.
//!
//! The optimiser update runs on the host in f64 (one implementation of Paddle's rule,
//! [`Momentum`], shared with head-only training) and is rounded back to the trainer's dtype.
//!
//! Where the forward and backward run ([`FullTrainer::path_name`]): a float32 PP-TSMv2 on the
//! CPU uses Kineto's channels-last training path ([`crate::model::nhwc::train`]: the same step
//! written by hand, about 6x faster than burn's autodiff here), packed from the current weights
//! at every step; float64 (the parity tests), the ResNets and MobileNets, GPUs, traced steps
//! and `KINETO_CPU_PATH=burn` use burn's autodiff. Both give the update, statistics and events
//! described above.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{DType, Device, FloatDType, Gradients, Tensor, TensorData};

use super::losses::{DmlWeights, KdWeights, Targets, cross_entropy_smoothed, dml_loss, kd_loss};
use super::optim::Momentum;
use crate::checkpoint::ParamStore;
use crate::model::layers::{BatchStats, Trace};
use crate::model::load::store_from_module;
use crate::model::nhwc::train::{NhwcTrainError, NhwcTrainNet, TrainPass};
use crate::model::{Form, ModelKind, Network, Recognizer, paddle_key, pptsm_mv2, pptsm_mv3};

/// The learning-rate multipliers PaddleVideo's ParamAttrs give: PP-TSMv2's 16f temporal
/// attention fc and PP-TSM's `ppTSMHead` fc (weight ×5, bias ×10 in both).
const LR_MULTIPLIERS: [(&str, f64); 4] = [
    ("backbone.global_attention.fc.weight", 5.0),
    ("backbone.global_attention.fc.bias", 10.0),
    ("head.fc.weight", 5.0),
    ("head.fc.bias", 10.0),
];

#[derive(Debug, thiserror::Error)]
pub enum FullTrainError {
    #[error(
        "full fine-tuning needs a model in its training form (BatchNorm layers, and PP-TSMv2's \
         rep branches); this model is {0}"
    )]
    Unsupported(String),
    #[error("a training batch is [N, T, 3, H, W] with N, T >= 1 and H, W >= 32; got {0:?}")]
    InputShape(Vec<usize>),
    #[error("{labels} labels for {clips} clips")]
    LabelCount { labels: usize, clips: usize },
    #[error("label {label} is out of range ({classes} classes)")]
    LabelRange { label: usize, classes: usize },
    #[error("the temporal attention fixes num_seg = {expected}; the batch has {got} frames")]
    NumSeg { expected: usize, got: usize },
    #[error("precision {0:?} is not supported (float32 or float64)")]
    DType(FloatDType),
    #[error("reading {what} back from the device failed: {problem}")]
    Readback { what: String, problem: String },
    #[error("the update went wrong: {0}")]
    Update(String),
    #[error("--freeze-stages takes 0 to {max} stages, not {got}")]
    FreezeStages { got: usize, max: usize },
}

/// The most stages [`FullTrainer::set_freeze_stages`] freezes (all four of PP-LCNetV2's and
/// of the ResNet's; the MobileNets' units grouped into four stages by resolution).
pub const MAX_FREEZE_STAGES: usize = 4;

/// Where a parameter sits for `--freeze-stages`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Stem,
    Stage(usize),
    /// PP-TSMv2's temporal attention (it runs before `stages.2`).
    Attention,
    /// After the last stage: never frozen.
    Top,
}

/// The part of `kind`'s network that the PaddleVideo key `key` belongs to:
/// - PP-TSMv2: `stem.*`, `stages.{s}.*`, `global_attention.*`; `last_conv`, `fc` on top;
/// - ResNet: `conv1_1`..`conv1_3` (stem), `bb_{s}_{i}` (stage s); `head.fc` on top;
/// - MobileNetV2: `conv1` (stem), `conv2`..`conv8` by [`pptsm_mv2::GROUP_STAGES`]; `conv9`,
///   `out` on top;
/// - MobileNetV3: `conv` (stem), `blocks.{i}` by [`pptsm_mv3::UNIT_STAGES`];
///   `last_second_conv`, `last_conv`, `fc` on top.
fn part_of(kind: ModelKind, key: &str) -> Part {
    let Some(rest) = key.strip_prefix("backbone.") else {
        return Part::Top;
    };
    let first = rest.split('.').next().unwrap_or_default();
    let number = |s: &str| s.parse::<usize>().ok();
    match kind {
        ModelKind::PptsmV2 => match first {
            "stem" => Part::Stem,
            "global_attention" => Part::Attention,
            "stages" => rest
                .split('.')
                .nth(1)
                .and_then(number)
                .map_or(Part::Top, Part::Stage),
            _ => Part::Top,
        },
        ModelKind::PptsmResnet => {
            if first.starts_with("conv1_") {
                return Part::Stem;
            }
            first
                .strip_prefix("bb_")
                .and_then(|b| b.split('_').next())
                .and_then(number)
                .map_or(Part::Top, Part::Stage)
        }
        ModelKind::PptsmMv2 => match first.strip_prefix("conv").and_then(number) {
            Some(1) => Part::Stem,
            Some(g @ 2..=8) => pptsm_mv2::GROUP_STAGES
                .get(g - 2)
                .map_or(Part::Top, |&s| Part::Stage(s)),
            _ => Part::Top,
        },
        ModelKind::PptsmMv3 => match first {
            "conv" => Part::Stem,
            "blocks" => rest
                .split('.')
                .nth(1)
                .and_then(number)
                .and_then(|i| pptsm_mv3::UNIT_STAGES.get(i))
                .map_or(Part::Top, |&s| Part::Stage(s)),
            _ => Part::Top,
        },
    }
}

/// Whether the parameter (or running statistic) `key` of a `kind` network belongs to the
/// frozen prefix when the first `frozen` stages are frozen: the stem from 1 on, stage s for
/// s < `frozen`, PP-TSMv2's temporal attention from 3 on. What follows the last stage
/// (PP-TSMv2's `last_conv`, the MobileNets' last convs, every fc) is never frozen.
pub fn is_frozen_key(kind: ModelKind, key: &str, frozen: usize) -> bool {
    if frozen == 0 {
        return false;
    }
    match part_of(kind, key) {
        Part::Stem => true,
        Part::Stage(s) => s < frozen,
        Part::Attention => frozen >= 3,
        Part::Top => false,
    }
}

/// A host copy of a tensor in float64 (exact for both precisions).
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

/// One BatchNorm layer's batch statistics on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct HostBatchStat {
    pub mean: Vec<f64>,
    /// Biased (÷ N·H·W).
    pub variance: Vec<f64>,
}

/// Settings of the update. The defaults are PaddleVideo's PP-TSMv2 recipe;
/// [`FullStepOptions::recipe`] gives each model's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FullStepOptions {
    pub momentum: Momentum,
    /// L2 coefficient for every parameter the model's recipe decays (see [`is_decayed`]).
    pub weight_decay: f64,
    /// Paddle's BatchNorm momentum (the weight of the old running value).
    pub bn_momentum: f64,
    /// Label smoothing ε of the cross-entropy step ([`FullTrainer::step_targets`]): the
    /// targets are `(1 − ε)·onehot + ε/classes` (PaddleVideo's `ls_eps`; 0: plain CE).
    /// The DML and KD losses take the targets as they are.
    pub label_smoothing: f64,
}

impl Default for FullStepOptions {
    fn default() -> Self {
        Self {
            momentum: Momentum::PADDLEVIDEO,
            weight_decay: 1e-4,
            // Paddle's `momentum` attribute is a float32, also in a float64 run.
            bn_momentum: f64::from(0.9_f32),
            label_smoothing: 0.0,
        }
    }
}

impl FullStepOptions {
    /// PaddleVideo's recipe for `kind` (every config: Momentum 0.9 Nesterov, L2 1e-4): PP-TSM
    /// ResNet's `ppTSMHead` adds label smoothing `ls_eps: 0.1`
    /// (`pptsm_k400_frames_uniform.yaml`); PP-TSMv2 and the MobileNets (`MoViNetHead`) train
    /// with the plain CE.
    pub fn recipe(kind: ModelKind) -> Self {
        let label_smoothing = match kind {
            ModelKind::PptsmResnet => RESNET_LABEL_SMOOTHING,
            ModelKind::PptsmV2 | ModelKind::PptsmMv2 | ModelKind::PptsmMv3 => 0.0,
        };
        Self {
            label_smoothing,
            ..Self::default()
        }
    }
}

/// `ppTSMHead`'s `ls_eps` in PaddleVideo's PP-TSM ResNet configs.
pub const RESNET_LABEL_SMOOTHING: f64 = 0.1;

/// What one step computed (before the update), all on the host in f64.
#[derive(Clone, Debug)]
pub struct StepOutcome {
    pub loss: f64,
    /// `[N, classes]`.
    pub logits: HostTensor,
    /// `[N, 1280]`: the fc input (mean over segments).
    pub features: HostTensor,
    /// `[N, classes]`: dLoss/dlogits.
    pub dlogits: HostTensor,
    /// dLoss/dparam of every parameter that got one, by PaddleVideo key.
    pub grads: BTreeMap<String, HostTensor>,
    /// Batch statistics of every BatchNorm layer, by PaddleVideo key of the layer
    /// (`backbone.stem.0.bn`).
    pub batch_stats: BTreeMap<String, HostBatchStat>,
    /// Trainable parameters that got no gradient and were therefore left unchanged (Paddle
    /// skips them too).
    pub untouched: Vec<String>,
}

/// A train-mode forward whose autodiff graph (or the CPU path's tape) is kept until
/// [`FullTrainer::backward_and_update`] consumes it.
pub struct TrainForward {
    pass: Pass,
    /// `[N, classes]` on the host (f64).
    pub logits: HostTensor,
    n: usize,
    classes: usize,
}

/// What the backward of a forward needs. (One per step, so the variants' sizes are moot.)
#[allow(clippy::large_enum_variant)]
enum Pass {
    /// burn's autodiff graph, from the logits.
    Burn {
        logits: Tensor<2>,
        features: Tensor<2>,
        stats: BatchStats,
    },
    /// Kineto's channels-last CPU path (PP-TSMv2, float32).
    Nhwc(TrainPass),
}

impl std::fmt::Debug for TrainForward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TrainForward([{}, {}])", self.n, self.classes)
    }
}

/// A model in its training form being fine-tuned (PP-TSMv2, PP-TSM's ResNet, PP-TSM
/// MobileNetV2/V3): its parameters as autodiff leaves in the chosen precision, and the
/// optimiser's velocities.
#[derive(Debug)]
pub struct FullTrainer {
    network: Network,
    kind: ModelKind,
    /// The autodiff device every tensor of the step lives on.
    device: Device,
    dtype: FloatDType,
    options: FullStepOptions,
    velocity: HashMap<String, Vec<f64>>,
    /// How many stages (with the stem) are frozen; 0 trains everything.
    frozen: usize,
    /// Whether steps run Kineto's channels-last CPU path instead of burn's autodiff.
    cpu_path: bool,
}

impl FullTrainer {
    /// Takes over `model` (training form) and casts its parameters to `dtype`.
    pub fn new(
        model: Recognizer,
        dtype: FloatDType,
        options: FullStepOptions,
    ) -> Result<Self, FullTrainError> {
        if !matches!(dtype, FloatDType::F32 | FloatDType::F64) {
            return Err(FullTrainError::DType(dtype));
        }
        if model.arch.form != Form::Training {
            return Err(FullTrainError::Unsupported(model.arch.display_name()));
        }
        let kind = model.arch.model;
        let device = match &model.network {
            Network::V2(net) => net.fc.bias.val().device(),
            Network::Resnet(net) => net.head.fc.bias.val().device(),
            Network::Mv2(net) => net.out.bias.val().device(),
            Network::Mv3(net) => net.fc.bias.val().device(),
        }
        .autodiff();
        let network = model.network.map(&mut Trainable {
            dtype,
            path: KeyPath::new(kind),
            frozen: 0,
        });
        let mut trainer = Self {
            network,
            kind,
            device,
            dtype,
            options,
            velocity: HashMap::new(),
            frozen: 0,
            cpu_path: false,
        };
        trainer.set_cpu_path(std::env::var("KINETO_CPU_PATH").as_deref() != Ok("burn"));
        Ok(trainer)
    }

    /// Which implementation runs the steps: "nhwc" (Kineto's channels-last CPU path, the
    /// default for PP-TSMv2 in float32 on the CPU) or "burn" (autodiff; float64, the ResNets
    /// and MobileNets, GPUs, traced steps, and `KINETO_CPU_PATH=burn`).
    pub fn path_name(&self) -> &'static str {
        if self.cpu_path { "nhwc" } else { "burn" }
    }

    /// Switches the CPU path off (burn's autodiff, e.g. to compare the two) or back on where
    /// it applies (PP-TSMv2, float32, CPU). Returns whether it is on.
    pub fn set_cpu_path(&mut self, enabled: bool) -> bool {
        self.cpu_path = enabled
            && self.kind == ModelKind::PptsmV2
            && self.dtype == FloatDType::F32
            && self.device.clone().without_autodiff() == Device::flex();
        self.cpu_path
    }

    pub fn dtype(&self) -> FloatDType {
        self.dtype
    }

    /// Freezes the stem and the first `stages` stages (0 to [`MAX_FREEZE_STAGES`]; 0 unfreezes
    /// everything), see the module docs. The velocities of parameters that become frozen are
    /// dropped.
    pub fn set_freeze_stages(&mut self, stages: usize) -> Result<(), FullTrainError> {
        if stages > MAX_FREEZE_STAGES {
            return Err(FullTrainError::FreezeStages {
                got: stages,
                max: MAX_FREEZE_STAGES,
            });
        }
        self.frozen = stages;
        self.network = self.network.clone().map(&mut Trainable {
            dtype: self.dtype,
            path: KeyPath::new(self.kind),
            frozen: stages,
        });
        let kind = self.kind;
        self.velocity
            .retain(|key, _| !is_frozen_key(kind, key, stages));
        Ok(())
    }

    /// How many stages are frozen (0: none).
    pub fn freeze_stages(&self) -> usize {
        self.frozen
    }

    /// Whether the parameter or running statistic `key` is frozen.
    pub fn is_frozen(&self, key: &str) -> bool {
        is_frozen_key(self.kind, key, self.frozen)
    }

    /// One step on `clips` (`[N, T, 3, H, W]`, any float dtype; cast to the trainer's) with one
    /// label per clip, at learning rate `lr`. The parameters and running statistics are
    /// updated; the outcome holds the loss, logits, gradients and batch statistics.
    pub fn step(
        &mut self,
        clips: TensorData,
        labels: &[usize],
        lr: f64,
    ) -> Result<StepOutcome, FullTrainError> {
        self.step_traced(clips, labels, lr, &mut Trace::off())
    }

    /// [`step`](Self::step) with plain or Mixup targets (PaddleVideo's Mixup loss
    /// `lam·CE(a) + (1 − lam)·CE(b)`; the clips are already mixed by the caller).
    pub fn step_targets(
        &mut self,
        clips: TensorData,
        targets: &Targets,
        lr: f64,
    ) -> Result<StepOutcome, FullTrainError> {
        self.step_inner(clips, targets, lr, &mut Trace::off())
    }

    /// [`step`](Self::step), recording the train-mode forward's activations in `trace` (the
    /// inference forward's record names).
    pub fn step_traced(
        &mut self,
        clips: TensorData,
        labels: &[usize],
        lr: f64,
        trace: &mut Trace,
    ) -> Result<StepOutcome, FullTrainError> {
        self.step_inner(clips, &Targets::Hard(labels.to_vec()), lr, trace)
    }

    fn step_inner(
        &mut self,
        clips: TensorData,
        targets: &Targets,
        lr: f64,
        trace: &mut Trace,
    ) -> Result<StepOutcome, FullTrainError> {
        self.check_targets(clips.shape().as_slice(), targets)?;
        let forward = self.forward_traced(clips, trace)?;
        let ce = cross_entropy_smoothed(
            &forward.logits.data,
            forward.classes,
            targets,
            self.options.label_smoothing,
        );
        self.backward_and_update(forward, ce.loss, ce.grad, lr)
    }

    /// A step whose loss is computed by `loss` from the host logits (`[N, classes]`, f64): it
    /// returns the loss and its gradient wrt the logits (`N·classes` values, row-major), which
    /// seeds the backward. [`step_targets`](Self::step_targets) is this with cross-entropy.
    pub fn step_with_loss(
        &mut self,
        clips: TensorData,
        lr: f64,
        loss: impl FnOnce(&HostTensor) -> (f64, Vec<f64>),
    ) -> Result<StepOutcome, FullTrainError> {
        let forward = self.forward(clips)?;
        let (value, dlogits) = loss(&forward.logits);
        self.backward_and_update(forward, value, dlogits, lr)
    }

    /// The train-mode forward of `clips` (`[N, T, 3, H, W]`), its graph kept for
    /// [`backward_and_update`](Self::backward_and_update). Nothing is updated yet: a loss
    /// over several models' logits (DML) runs every forward first.
    pub fn forward(&self, clips: TensorData) -> Result<TrainForward, FullTrainError> {
        self.forward_traced(clips, &mut Trace::off())
    }

    fn forward_traced(
        &self,
        clips: TensorData,
        trace: &mut Trace,
    ) -> Result<TrainForward, FullTrainError> {
        let dims = self.check_shape(clips.shape().as_slice())?;
        // Traces record burn's activations: a traced step stays on burn.
        if self.cpu_path && !trace.is_enabled() {
            return self.forward_nhwc(clips, dims);
        }
        let [n, t, c, h, w] = dims;
        let frames = Tensor::<5>::from_data(clips, (&self.device, DType::from(self.dtype)))
            .reshape([n * t, c, h, w]);
        let mut stats = BatchStats::default();
        let (features, logits) = match &self.network {
            Network::V2(net) => net.forward_train_frozen(frames, t, self.frozen, &mut stats, trace),
            Network::Resnet(net) => {
                net.forward_train_frozen(frames, t, self.frozen, &mut stats, trace)
            }
            Network::Mv2(net) => {
                net.forward_train_frozen(frames, t, self.frozen, &mut stats, trace)
            }
            Network::Mv3(net) => {
                net.forward_train_frozen(frames, t, self.frozen, &mut stats, trace)
            }
        };
        let classes = logits.dims()[1];
        let logits_host = host(&logits, "logits")?;
        Ok(TrainForward {
            pass: Pass::Burn {
                logits,
                features,
                stats,
            },
            logits: logits_host,
            n,
            classes,
        })
    }

    /// The forward on the channels-last CPU path, from the current weights (packed anew:
    /// they change every step).
    fn forward_nhwc(
        &self,
        clips: TensorData,
        dims: [usize; 5],
    ) -> Result<TrainForward, FullTrainError> {
        let data = clips
            .try_into_vec_as::<f32>()
            .map_err(|e| FullTrainError::Readback {
                what: "clips".into(),
                problem: format!("{e:?}"),
            })?;
        let net = NhwcTrainNet::from_store(&self.to_store(), dims[1]).map_err(nhwc_error)?;
        let pass = Arc::new(net)
            .forward(&data, dims, self.frozen)
            .map_err(nhwc_error)?;
        let classes = pass.logits().len() / dims[0];
        let logits = HostTensor {
            shape: vec![dims[0], classes],
            data: pass.logits().iter().map(|&v| f64::from(v)).collect(),
        };
        Ok(TrainForward {
            pass: Pass::Nhwc(pass),
            logits,
            n: dims[0],
            classes,
        })
    }

    /// The backward of `forward` seeded with `dlogits` (dLoss/dlogits, `N·classes` values,
    /// row-major; `Σ logits·dlogits` has the loss's parameter gradients), then the optimiser
    /// update at learning rate `lr` and the running statistics. `loss` is only reported.
    pub fn backward_and_update(
        &mut self,
        forward: TrainForward,
        loss: f64,
        dlogits: Vec<f64>,
        lr: f64,
    ) -> Result<StepOutcome, FullTrainError> {
        let TrainForward {
            pass,
            logits: logits_host,
            n,
            classes,
        } = forward;
        if dlogits.len() != n * classes {
            return Err(FullTrainError::Update(format!(
                "{} logit gradients for [{n}, {classes}] logits",
                dlogits.len()
            )));
        }
        if let Some(v) = dlogits.iter().find(|v| !v.is_finite()) {
            return Err(FullTrainError::Update(format!(
                "the logit gradient is not finite ({v})"
            )));
        }
        let (grads, batch_stats, features) = match pass {
            Pass::Burn {
                logits,
                features,
                stats,
            } => {
                let seed = Tensor::<2>::from_data(
                    TensorData::new(dlogits.clone(), [n, classes]),
                    (&self.device, DType::from(self.dtype)),
                );
                let grads = (logits * seed).sum().backward();
                let batch_stats = stats
                    .layers
                    .iter()
                    .map(|s| {
                        let key = format!("backbone.{}", s.name);
                        let mean = host(&s.mean, &key)?.data;
                        let variance = host(&s.variance, &key)?.data;
                        Ok((key, HostBatchStat { mean, variance }))
                    })
                    .collect::<Result<BTreeMap<_, _>, FullTrainError>>()?;
                let features = host(&features, "features")?;
                (GradSource::Burn(grads), batch_stats, features)
            }
            Pass::Nhwc(pass) => {
                let widen = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect::<Vec<f64>>();
                let batch_stats = pass
                    .batch_stats()
                    .into_iter()
                    .map(|(key, mean, variance)| {
                        let stat = HostBatchStat {
                            mean: widen(&mean),
                            variance: widen(&variance),
                        };
                        (key, stat)
                    })
                    .collect();
                let features = HostTensor {
                    shape: vec![n, pass.features().len() / n],
                    data: widen(pass.features()),
                };
                let seed: Vec<f32> = dlogits.iter().map(|&v| v as f32).collect();
                let grads = pass.backward(&seed).map_err(nhwc_error)?;
                (GradSource::Host(grads), batch_stats, features)
            }
        };

        let mut update = Update {
            grads: &grads,
            batch_stats: &batch_stats,
            velocity: &self.velocity,
            velocity_out: HashMap::new(),
            options: self.options,
            lr,
            device: &self.device,
            dtype: self.dtype,
            path: KeyPath::new(self.kind),
            grads_out: BTreeMap::new(),
            untouched: Vec::new(),
            problems: Vec::new(),
            frozen: self.frozen,
        };
        let network = self.network.clone().map(&mut update);
        if let Some(problem) = update.problems.into_iter().next() {
            return Err(problem);
        }
        let (grads_out, untouched) = (update.grads_out, update.untouched);
        self.velocity.extend(update.velocity_out);
        self.network = network;
        Ok(StepOutcome {
            loss,
            features,
            logits: logits_host,
            dlogits: HostTensor {
                shape: vec![n, classes],
                data: dlogits,
            },
            grads: grads_out,
            batch_stats,
            untouched,
        })
    }

    /// Checks a batch shape and its targets (count and range) against this model.
    pub fn check_targets(&self, dims: &[usize], targets: &Targets) -> Result<(), FullTrainError> {
        match targets {
            Targets::Hard(labels) => self.check_batch(dims, labels)?,
            Targets::Mixup { a, b, .. } => {
                self.check_batch(dims, b)?;
                self.check_batch(dims, a)?
            }
        };
        Ok(())
    }

    fn check_batch(&self, dims: &[usize], labels: &[usize]) -> Result<[usize; 5], FullTrainError> {
        let dims5 = self.check_shape(dims)?;
        let n = dims5[0];
        if labels.len() != n {
            return Err(FullTrainError::LabelCount {
                labels: labels.len(),
                clips: n,
            });
        }
        let classes = self.classes();
        if let Some(&label) = labels.iter().find(|&&l| l >= classes) {
            return Err(FullTrainError::LabelRange { label, classes });
        }
        Ok(dims5)
    }

    fn check_shape(&self, dims: &[usize]) -> Result<[usize; 5], FullTrainError> {
        let Ok(dims5) = <[usize; 5]>::try_from(dims) else {
            return Err(FullTrainError::InputShape(dims.to_vec()));
        };
        let [n, t, c, h, w] = dims5;
        if n == 0 || t == 0 || c != 3 || h < 32 || w < 32 {
            return Err(FullTrainError::InputShape(dims.to_vec()));
        }
        if let Network::V2(net) = &self.network
            && let Some(expected) = net.attention_segments()
            && expected != t
        {
            return Err(FullTrainError::NumSeg { expected, got: t });
        }
        Ok(dims5)
    }

    /// The number of classes of the fc.
    pub fn classes(&self) -> usize {
        match &self.network {
            Network::V2(net) => net.fc.bias.dims()[0],
            Network::Resnet(net) => net.head.fc.bias.dims()[0],
            Network::Mv2(net) => net.out.bias.dims()[0],
            Network::Mv3(net) => net.fc.bias.dims()[0],
        }
    }

    /// Which architecture this trainer trains.
    pub fn model_kind(&self) -> ModelKind {
        self.kind
    }

    /// The optimiser's velocities by PaddleVideo key (f64; parameters that never got a
    /// gradient have none). With the parameters, what a resumed run needs to continue exactly.
    pub fn velocities(&self) -> &HashMap<String, Vec<f64>> {
        &self.velocity
    }

    /// Replaces the velocities (resuming a run). Every key must name a trainable (not frozen)
    /// parameter and every length match it.
    pub fn set_velocities(
        &mut self,
        velocity: HashMap<String, Vec<f64>>,
    ) -> Result<(), FullTrainError> {
        let params = self.parameters()?;
        for (key, v) in &velocity {
            if self.is_frozen(key) {
                return Err(FullTrainError::Update(format!(
                    "velocity for {key}, which is frozen"
                )));
            }
            match params.get(key) {
                Some(p) if p.data.len() == v.len() && !is_running_stat(key) => {}
                Some(p) => {
                    return Err(FullTrainError::Update(format!(
                        "velocity of {key} has {} values, the parameter {}",
                        v.len(),
                        p.data.len()
                    )));
                }
                None => {
                    return Err(FullTrainError::Update(format!(
                        "velocity for {key}, which the model does not have"
                    )));
                }
            }
        }
        self.velocity = velocity;
        Ok(())
    }

    /// Every parameter and running statistic by PaddleVideo key, in f64 (exact).
    pub fn parameters(&self) -> Result<BTreeMap<String, HostTensor>, FullTrainError> {
        let mut collector = HostCollector {
            path: KeyPath::new(self.kind),
            out: BTreeMap::new(),
            problems: Vec::new(),
        };
        self.network.visit(&mut collector);
        match collector.problems.into_iter().next() {
            Some(problem) => Err(problem),
            None => Ok(collector.out),
        }
    }

    /// The current weights as a float32 store (canonical keys), e.g. for saving; like
    /// [`Recognizer::to_store`], without the rep-fused `dw_conv` keys the training form ignores.
    pub fn to_store(&self) -> ParamStore {
        store_from_module(&self.network, |path| paddle_key(self.kind, path))
    }
}

/// One DML step of a student and a teacher (PaddleVideo's PP-TSMv2 DML).
#[derive(Clone, Debug)]
pub struct DmlStep {
    /// The total and its three terms (student CE, teacher CE, symmetric KL).
    pub total: f64,
    pub ce_student: f64,
    pub ce_teacher: f64,
    pub dml: f64,
    /// Each model's step; `loss` is the total, `dlogits` what seeded its backward.
    pub student: StepOutcome,
    pub teacher: StepOutcome,
}

/// PaddleVideo's DML step: both train-mode forwards on the same (mixed) clips, then
/// `w·CE(student) + w·CE(teacher) + w·DML(student, teacher)` ([`dml_loss`], Mixup targets as
/// `DistillationCELoss` takes them), one summed loss whose gradient trains both models, each
/// updated by its own optimiser state at the same `lr`.
pub fn dml_step(
    student: &mut FullTrainer,
    teacher: &mut FullTrainer,
    clips: TensorData,
    targets: &Targets,
    weights: DmlWeights,
    lr: f64,
) -> Result<DmlStep, FullTrainError> {
    let dims = clips.shape().as_slice().to_vec();
    student.check_targets(&dims, targets)?;
    teacher.check_targets(&dims, targets)?;
    if student.classes() != teacher.classes() {
        return Err(FullTrainError::Update(format!(
            "the student has {} classes, the teacher {}",
            student.classes(),
            teacher.classes()
        )));
    }
    let s = student.forward(clips.clone())?;
    let t = teacher.forward(clips)?;
    let loss = dml_loss(&s.logits.data, &t.logits.data, s.classes, targets, weights);
    let student_step = student.backward_and_update(s, loss.total, loss.grad_student, lr)?;
    let teacher_step = teacher.backward_and_update(t, loss.total, loss.grad_teacher, lr)?;
    Ok(DmlStep {
        total: loss.total,
        ce_student: loss.ce_student,
        ce_teacher: loss.ce_teacher,
        dml: loss.dml,
        student: student_step,
        teacher: teacher_step,
    })
}

/// One classic-KD step of the student against a frozen teacher's logits.
#[derive(Clone, Debug)]
pub struct KdStep {
    pub total: f64,
    pub ce: f64,
    pub kd: f64,
    /// `loss` is the total, `dlogits` what seeded the backward.
    pub student: StepOutcome,
}

/// A KD step: `teacher_logits` (`[N, classes]`, from the frozen teacher on the same clips)
/// are constants; the student's loss is [`kd_loss`] (`w_ce·CE + w_kd·T²·KL(p_t^T ‖ p_s^T)`).
pub fn kd_step(
    student: &mut FullTrainer,
    teacher_logits: &[f64],
    clips: TensorData,
    targets: &Targets,
    temperature: f64,
    weights: KdWeights,
    lr: f64,
) -> Result<KdStep, FullTrainError> {
    student.check_targets(clips.shape().as_slice(), targets)?;
    if !(temperature.is_finite() && temperature > 0.0) {
        return Err(FullTrainError::Update(format!(
            "the KD temperature must be positive, not {temperature}"
        )));
    }
    let s = student.forward(clips)?;
    if teacher_logits.len() != s.logits.data.len() {
        return Err(FullTrainError::Update(format!(
            "{} teacher logits for [{}, {}] student logits",
            teacher_logits.len(),
            s.n,
            s.classes
        )));
    }
    let loss = kd_loss(
        &s.logits.data,
        teacher_logits,
        s.classes,
        targets,
        temperature,
        weights,
    );
    let step = student.backward_and_update(s, loss.total, loss.grad_student, lr)?;
    Ok(KdStep {
        total: loss.total,
        ce: loss.ce,
        kd: loss.kd,
        student: step,
    })
}

fn is_running_stat(key: &str) -> bool {
    key.ends_with("._mean") || key.ends_with("._variance")
}

/// Whether the config's L2 decay applies to `key` of a `kind` network, as PaddleVideo's
/// ParamAttrs say (a parameter's own regularizer overrides the optimiser's):
/// - PP-TSMv2, PP-TSM MobileNetV3: every `ConvBNLayer`'s BatchNorm (`bn`) weight and bias
///   has `L2Decay(0.0)`; everything else is decayed, fc and SE biases included;
/// - PP-TSM ResNet: the BatchNorm (`_batch_norm`) weights and biases and `ppTSMHead`'s fc
///   bias have `L2Decay(0.0)`;
/// - PP-TSM MobileNetV2: its `ConvBNLayer` names its BatchNorm parameters without a
///   regularizer, so every parameter is decayed, BatchNorm's included.
pub fn is_decayed(kind: ModelKind, key: &str) -> bool {
    let ends = |suffixes: &[&str]| suffixes.iter().any(|s| key.ends_with(s));
    match kind {
        ModelKind::PptsmV2 | ModelKind::PptsmMv3 => !ends(&[".bn.weight", ".bn.bias"]),
        ModelKind::PptsmResnet => {
            !ends(&["._batch_norm.weight", "._batch_norm.bias"]) && key != "head.fc.bias"
        }
        ModelKind::PptsmMv2 => true,
    }
}

fn lr_multiplier(key: &str) -> f64 {
    LR_MULTIPLIERS
        .iter()
        .find(|(k, _)| *k == key)
        .map_or(1.0, |(_, m)| *m)
}

/// `tensor` on the host as f64.
fn host<const D: usize>(tensor: &Tensor<D>, what: &str) -> Result<HostTensor, FullTrainError> {
    let data = tensor.to_data();
    let shape = data.shape().as_slice().to_vec();
    let data = data
        .try_into_vec_as::<f64>()
        .map_err(|e| FullTrainError::Readback {
            what: what.to_string(),
            problem: format!("{e:?}"),
        })?;
    Ok(HostTensor { shape, data })
}

/// A parameter tensor from host values: `dtype` on the autodiff `device`; trainable ones
/// retain their gradient.
fn leaf<const D: usize>(
    data: Vec<f64>,
    shape: [usize; D],
    device: &Device,
    dtype: FloatDType,
    trainable: bool,
) -> Tensor<D> {
    let tensor = Tensor::from_data(TensorData::new(data, shape), (device, DType::from(dtype)));
    if trainable {
        tensor.require_grad()
    } else {
        tensor
    }
}

/// Where a module walk is, as a PaddleVideo key (the walks below map every parameter by it).
struct KeyPath {
    kind: ModelKind,
    segments: Vec<String>,
}

impl KeyPath {
    fn new(kind: ModelKind) -> Self {
        Self {
            kind,
            segments: Vec::new(),
        }
    }

    fn enter(&mut self, name: &str) {
        self.segments.push(name.to_string());
    }

    fn exit(&mut self) {
        self.segments.pop();
    }

    fn key(&self) -> String {
        paddle_key(self.kind, &self.segments.join("."))
    }
}

/// Casts every parameter to the trainer's dtype with autodiff on; all but the running
/// statistics and the frozen parameters become gradient-retaining leaves.
struct Trainable {
    dtype: FloatDType,
    path: KeyPath,
    frozen: usize,
}

impl ModuleMapper for Trainable {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.enter(name);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let key = self.path.key();
        let (id, tensor, _) = param.consume();
        // A fresh leaf: off any earlier graph, then cast, then tracked.
        let tensor = tensor.without_autodiff().cast(self.dtype).autodiff();
        let tensor = if is_running_stat(&key) || is_frozen_key(self.path.kind, &key, self.frozen) {
            tensor
        } else {
            tensor.require_grad()
        };
        Param::initialized(id, tensor)
    }
}

/// The update of one step, applied while walking the module (paths give the PaddleVideo keys).
/// Where a step's gradients are: burn's autodiff result, or the CPU path's host arrays by key.
enum GradSource {
    Burn(Gradients),
    Host(BTreeMap<String, Vec<f32>>),
}

impl GradSource {
    /// The gradient of the parameter `key` (with value `value`), if it got one.
    fn get<const D: usize>(
        &self,
        key: &str,
        value: &Tensor<D>,
    ) -> Result<Option<HostTensor>, FullTrainError> {
        match self {
            GradSource::Burn(grads) => value.grad(grads).map(|g| host(&g, key)).transpose(),
            GradSource::Host(grads) => Ok(grads.get(key).map(|g| HostTensor {
                shape: value.dims().to_vec(),
                data: g.iter().map(|&v| f64::from(v)).collect(),
            })),
        }
    }
}

fn nhwc_error(e: NhwcTrainError) -> FullTrainError {
    FullTrainError::Update(format!("CPU path: {e}"))
}

struct Update<'a> {
    grads: &'a GradSource,
    batch_stats: &'a BTreeMap<String, HostBatchStat>,
    velocity: &'a HashMap<String, Vec<f64>>,
    /// The new velocities, committed only when the whole update succeeded.
    velocity_out: HashMap<String, Vec<f64>>,
    options: FullStepOptions,
    lr: f64,
    device: &'a Device,
    dtype: FloatDType,
    path: KeyPath,
    grads_out: BTreeMap<String, HostTensor>,
    untouched: Vec<String>,
    problems: Vec<FullTrainError>,
    /// Frozen stages: their parameters and running statistics are kept as they are.
    frozen: usize,
}

impl Update<'_> {
    /// The new value of one parameter, or `None` to keep it.
    fn new_value<const D: usize>(
        &mut self,
        key: &str,
        value: &Tensor<D>,
    ) -> Result<Option<Vec<f64>>, FullTrainError> {
        if is_frozen_key(self.path.kind, key, self.frozen) {
            return Ok(None);
        }
        if let Some(layer) = key
            .strip_suffix("._mean")
            .or_else(|| key.strip_suffix("._variance"))
        {
            let Some(stat) = self.batch_stats.get(layer) else {
                return Err(FullTrainError::Update(format!(
                    "{layer} recorded no batch statistics"
                )));
            };
            let batch = if key.ends_with("._mean") {
                &stat.mean
            } else {
                &stat.variance
            };
            let m = self.options.bn_momentum;
            let running = host(value, key)?.data;
            return Ok(Some(
                running
                    .iter()
                    .zip(batch)
                    .map(|(r, b)| m * r + (1.0 - m) * b)
                    .collect(),
            ));
        }
        let Some(grad) = self.grads.get(key, value)? else {
            self.untouched.push(key.to_string());
            return Ok(None);
        };
        let mut p = host(value, key)?.data;
        let decay = if is_decayed(self.path.kind, key) {
            self.options.weight_decay
        } else {
            0.0
        };
        let mut velocity = self
            .velocity
            .get(key)
            .cloned()
            .unwrap_or_else(|| vec![0.0; p.len()]);
        self.options.momentum.step(
            &mut p,
            &mut velocity,
            &grad.data,
            self.lr * lr_multiplier(key),
            decay,
        );
        self.velocity_out.insert(key.to_string(), velocity);
        self.grads_out.insert(key.to_string(), grad);
        Ok(Some(p))
    }
}

impl ModuleMapper for Update<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.enter(name);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let key = self.path.key();
        let (id, value, _) = param.consume();
        match self.new_value(&key, &value) {
            Ok(Some(data)) => {
                let shape = value.dims();
                let trainable = !is_running_stat(&key);
                Param::initialized(id, leaf(data, shape, self.device, self.dtype, trainable))
            }
            Ok(None) => Param::initialized(id, value),
            Err(problem) => {
                self.problems.push(problem);
                Param::initialized(id, value)
            }
        }
    }
}

struct HostCollector {
    path: KeyPath,
    out: BTreeMap<String, HostTensor>,
    problems: Vec<FullTrainError>,
}

impl ModuleVisitor for HostCollector {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.enter(name);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let key = self.path.key();
        match host(&param.val(), &key) {
            Ok(t) => {
                self.out.insert(key, t);
            }
            Err(e) => self.problems.push(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decay_follows_each_models_param_attrs() {
        use ModelKind::{PptsmMv2, PptsmMv3, PptsmResnet, PptsmV2};
        assert!(!is_decayed(PptsmV2, "backbone.stem.0.bn.weight"));
        assert!(!is_decayed(
            PptsmV2,
            "backbone.stages.2.5.pw_conv_2.bn.bias"
        ));
        assert!(is_decayed(PptsmV2, "backbone.fc.bias"));
        assert!(is_decayed(PptsmV2, "backbone.stages.2.0.se.conv1.bias"));
        assert!(!is_decayed(
            PptsmResnet,
            "backbone.bb_0_0.conv0._batch_norm.weight"
        ));
        assert!(!is_decayed(
            PptsmResnet,
            "backbone.conv1_1._batch_norm.bias"
        ));
        assert!(is_decayed(
            PptsmResnet,
            "backbone.bb_3_2.conv2._conv.weight"
        ));
        assert!(is_decayed(PptsmResnet, "head.fc.weight"));
        assert!(!is_decayed(PptsmResnet, "head.fc.bias"));
        // MobileNetV2: no regularizer of its own anywhere, BatchNorm included.
        assert!(is_decayed(PptsmMv2, "backbone.conv1._batch_norm.weight"));
        assert!(is_decayed(
            PptsmMv2,
            "backbone.conv3.conv3_2._linear_conv._batch_norm.bias"
        ));
        assert!(is_decayed(PptsmMv2, "backbone.out.bias"));
        // MobileNetV3: BatchNorm exempt; SE convs, last_conv and fc decayed.
        assert!(!is_decayed(
            PptsmMv3,
            "backbone.blocks.3.expand_conv.bn.weight"
        ));
        assert!(!is_decayed(PptsmMv3, "backbone.conv.bn.bias"));
        assert!(is_decayed(PptsmMv3, "backbone.blocks.3.mid_se.conv1.bias"));
        assert!(is_decayed(PptsmMv3, "backbone.last_conv.weight"));
        assert!(is_decayed(PptsmMv3, "backbone.fc.bias"));
        assert!(is_running_stat("backbone.stem.0.bn._variance"));
        assert_eq!(lr_multiplier("backbone.fc.weight"), 1.0);
        assert_eq!(lr_multiplier("backbone.out.weight"), 1.0);
        assert_eq!(lr_multiplier("backbone.global_attention.fc.bias"), 10.0);
        assert_eq!(lr_multiplier("head.fc.weight"), 5.0);
        assert_eq!(lr_multiplier("head.fc.bias"), 10.0);
        assert_eq!(FullStepOptions::recipe(PptsmResnet).label_smoothing, 0.1);
        for kind in [PptsmV2, PptsmMv2, PptsmMv3] {
            assert_eq!(FullStepOptions::recipe(kind), FullStepOptions::default());
        }
    }

    #[test]
    fn frozen_keys_follow_the_stage_count() {
        let v2 = |key: &str, n: usize| is_frozen_key(ModelKind::PptsmV2, key, n);
        let stem = "backbone.stem.1.dw_conv.bn._mean";
        let s1 = "backbone.stages.1.1.pw_conv.conv.weight";
        let s2 = "backbone.stages.2.0.se.conv1.bias";
        let s3 = "backbone.stages.3.1.dw_conv_list.0.bn.weight";
        let att = "backbone.global_attention.fc.weight";
        for key in [stem, s1, s2, s3, att, "backbone.fc.bias"] {
            assert!(!v2(key, 0), "{key}");
        }
        assert!(v2(stem, 1));
        assert!(!v2(s1, 1));
        assert!(v2(s1, 2));
        assert!(!v2(s2, 2));
        assert!(!v2(att, 2));
        assert!(v2(att, 3));
        assert!(v2(s2, 3));
        assert!(!v2(s3, 3));
        assert!(v2(s3, 4));
        assert!(!v2("backbone.last_conv.weight", 4));
        assert!(!v2("backbone.fc.weight", 4));
    }

    #[test]
    fn frozen_keys_of_the_resnet_and_the_mobilenets() {
        let r = |key: &str, n: usize| is_frozen_key(ModelKind::PptsmResnet, key, n);
        assert!(!r("backbone.conv1_1._conv.weight", 0));
        assert!(r("backbone.conv1_3._batch_norm._mean", 1));
        assert!(r("backbone.bb_0_2.conv1._conv.weight", 1));
        assert!(!r("backbone.bb_1_0.short._conv.weight", 1));
        assert!(r("backbone.bb_1_0.short._conv.weight", 2));
        assert!(!r("backbone.bb_2_22.conv0._conv.weight", 2));
        assert!(r("backbone.bb_2_22.conv0._conv.weight", 3));
        assert!(r("backbone.bb_3_2.conv2._batch_norm.bias", 4));
        assert!(!r("head.fc.weight", 4));

        let m2 = |key: &str, n: usize| is_frozen_key(ModelKind::PptsmMv2, key, n);
        assert!(m2("backbone.conv1._conv.weight", 1));
        assert!(m2(
            "backbone.conv2._first_block._expand_conv._conv.weight",
            1
        ));
        assert!(m2(
            "backbone.conv3.conv3_2._linear_conv._batch_norm._mean",
            1
        ));
        assert!(!m2(
            "backbone.conv4._first_block._expand_conv._conv.weight",
            1
        ));
        assert!(m2("backbone.conv4.conv4_3._expand_conv._conv.weight", 2));
        assert!(!m2(
            "backbone.conv5._first_block._expand_conv._conv.weight",
            2
        ));
        assert!(m2("backbone.conv6.conv6_3._expand_conv._conv.weight", 3));
        assert!(!m2(
            "backbone.conv7._first_block._expand_conv._conv.weight",
            3
        ));
        assert!(m2(
            "backbone.conv8._first_block._linear_conv._conv.weight",
            4
        ));
        assert!(!m2("backbone.conv9._conv.weight", 4));
        assert!(!m2("backbone.out.weight", 4));

        let m3 = |key: &str, n: usize| is_frozen_key(ModelKind::PptsmMv3, key, n);
        assert!(m3("backbone.conv.conv.weight", 1));
        assert!(m3("backbone.blocks.2.linear_conv.bn.weight", 1));
        assert!(!m3("backbone.blocks.3.mid_se.conv1.weight", 1));
        assert!(m3("backbone.blocks.5.mid_se.conv2.bias", 2));
        assert!(!m3("backbone.blocks.6.expand_conv.conv.weight", 2));
        assert!(m3("backbone.blocks.11.expand_conv.conv.weight", 3));
        assert!(!m3("backbone.blocks.12.expand_conv.conv.weight", 3));
        assert!(m3("backbone.blocks.14.linear_conv.bn._variance", 4));
        assert!(!m3("backbone.last_second_conv.conv.weight", 4));
        assert!(!m3("backbone.last_conv.weight", 4));
        assert!(!m3("backbone.fc.bias", 4));
    }
}
