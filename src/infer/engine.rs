//! Engine = a loaded recognizer on a device: host clips in, host logits out. The only place
//! (with training) where host data becomes burn tensors.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, TensorData};

use super::InferError;
use super::device::ComputeDevice;
use crate::checkpoint::file::{Checkpoint, open_checkpoint};
use crate::checkpoint::int8::Int8Weights;
use crate::checkpoint::keys::{Layout, Role};
use crate::model::fuse::fuse_store;
use crate::model::nhwc::qgemm::{QSimd, kernel_for, qsimd};
use crate::model::nhwc::quant::{ActivationStats, Estimator, QuantBits, QuantLayer, QuantLayers};
use crate::model::nhwc::{FrameMaps, NhwcMobileNet, NhwcNet, NhwcPpTsmV2};
use crate::model::{Form, Network, Recognizer};

pub struct Engine {
    pub model: Recognizer,
    pub device: ComputeDevice,
    pub weights_path: PathBuf,
    pub layout: Layout,
    /// Class names the checkpoint carries (Kineto's safetensors); `None` for `.pdparams`.
    pub class_names: Option<Vec<String>>,
    /// The channels-last CPU path, used instead of burn's when the device is the CPU and the
    /// model a fused PP-TSMv2 or PP-TSM MobileNet (it is several times faster there; same
    /// weights, same parity).
    pub(crate) nhwc: Option<NhwcNet>,
    /// Whether the CPU path's 1x1 convolutions run in int8 (a quantized file's layers).
    pub precision: Precision,
}

/// The number format of the forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// Float32 everywhere: exact (PaddleVideo's logits within 1e-5).
    Fp32,
    /// The 1x1 convolutions of PP-TSMv2 in int8 (`kineto quantize`), the rest float32.
    Int8,
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
        }
    }
}

/// The checkpoint's parameters in the wanted form (fusing a training-form checkpoint).
pub fn store_in_form(
    checkpoint: &Checkpoint,
    form: Form,
) -> Result<crate::checkpoint::ParamStore, InferError> {
    let weights_error = |problem: String| InferError::Weights {
        path: checkpoint.path.clone(),
        problem,
    };
    match (checkpoint.arch.form, form) {
        (Form::Training, Form::Fused) => fuse_store(&checkpoint.store).map_err(weights_error),
        (Form::Fused, Form::Training) => Err(weights_error(
            "this checkpoint is in the fused (inference) form; the training form cannot be \
             recovered from it"
                .into(),
        )),
        _ => Ok(checkpoint.store.clone()),
    }
}

impl Engine {
    /// Loads `path` (the student of a DML file unless `role` says teacher) in `form`, in int8
    /// when the file is a quantized model and the device the CPU, else in float32.
    pub fn load(
        path: &Path,
        role: Role,
        form: Form,
        device: ComputeDevice,
    ) -> Result<Self, InferError> {
        Self::load_in(path, role, form, device, None)
    }

    /// [`Engine::load`] in `precision` (`None`: as `load` chooses). Int8 needs a quantized
    /// file (`kineto quantize`), the CPU and the fused PP-TSMv2; float32 runs any file, a
    /// quantized one's float tensors included.
    pub fn load_in(
        path: &Path,
        role: Role,
        form: Form,
        device: ComputeDevice,
        precision: Option<Precision>,
    ) -> Result<Self, InferError> {
        Self::from_checkpoint(&open_checkpoint(path, role)?, form, device, precision)
    }

    /// [`Engine::load_in`] of a checkpoint already read (the window's service and `kineto
    /// quantize` keep it for its class names, metadata and float tensors).
    pub fn from_checkpoint(
        checkpoint: &Checkpoint,
        form: Form,
        device: ComputeDevice,
        precision: Option<Precision>,
    ) -> Result<Self, InferError> {
        let store = store_in_form(checkpoint, form)?;
        let model =
            Recognizer::from_store(&store, &device.device).map_err(|source| InferError::Model {
                path: checkpoint.path.clone(),
                source,
            })?;
        let mut engine = Self {
            weights_path: checkpoint.path.clone(),
            layout: checkpoint.layout,
            class_names: checkpoint.class_names.clone(),
            ..Self::from_model(model, device)
        };
        engine.apply_precision(checkpoint.int8.as_ref(), precision)?;
        Ok(engine)
    }

    /// Runs in `precision` (`None`: int8 when the file brought `int8` layers and the device is
    /// the CPU, unless a layer would run slower code than the CPU's int8 kernel: 8-bit weights
    /// where AVX2 is the widest run portable code, slower than float32; else float32). Int8 needs those layers, the CPU and
    /// the fused PP-TSMv2.
    pub fn apply_precision(
        &mut self,
        int8: Option<&Int8Weights>,
        precision: Option<Precision>,
    ) -> Result<(), InferError> {
        let cpu = self.device.kind == "cpu";
        // No layer demoted from the CPU's int8 kernel to portable code.
        let fast = |int8: &Int8Weights| {
            let widest = qsimd();
            int8.layers.values().all(|l| kernel_for(l) == widest)
        };
        let precision = precision.unwrap_or(match int8 {
            Some(int8) if cpu && fast(int8) => Precision::Int8,
            _ => Precision::Fp32,
        });
        if precision == Precision::Fp32 {
            return Ok(());
        }
        let problem = |problem: String| InferError::Precision {
            path: self.weights_path.clone(),
            problem,
        };
        let Some(int8) = int8 else {
            return Err(problem(format!(
                "holds float32 weights only; int8 needs a quantized model: run `kineto quantize \
                 --weights {} --calib CLIPS --output MODEL_int8.safetensors` and use that file",
                self.weights_path.display()
            )));
        };
        if !cpu {
            return Err(problem("int8 runs on the CPU only (--device cpu)".into()));
        }
        if self.model.arch.form != Form::Fused {
            return Err(problem("int8 runs the fused (inference) form only".into()));
        }
        self.set_int8(&int8.layers)
    }

    /// An engine around a model built elsewhere (random weights for benchmarks, a trained one).
    pub fn from_model(model: Recognizer, device: ComputeDevice) -> Self {
        Self {
            nhwc: nhwc_path(&model, &device),
            model,
            device,
            weights_path: PathBuf::new(),
            layout: Layout::Plain,
            class_names: None,
            precision: Precision::Fp32,
        }
    }

    /// The CPU path's PP-TSMv2, which int8 quantizes; an error naming what is missing.
    fn quantizable(&mut self) -> Result<&mut NhwcPpTsmV2, InferError> {
        let problem = format!(
            "int8 runs PP-TSMv2 on Kineto's CPU path only; this is {} on {}",
            self.model.arch.display_name(),
            self.path_name()
        );
        match self.nhwc.as_mut() {
            Some(NhwcNet::PpTsmV2(net)) => Ok(net),
            _ => Err(InferError::Precision {
                path: self.weights_path.clone(),
                problem,
            }),
        }
    }

    /// The names of the layers int8 can quantize, in forward order (empty where int8 cannot
    /// run).
    pub fn quantizable_layers(&self) -> Vec<String> {
        self.split_net()
            .map(NhwcPpTsmV2::quantizable_layers)
            .unwrap_or_default()
    }

    /// Calibration for `kineto quantize`: from now on the forward passes run in float32 and
    /// record the inputs of every layer int8 can quantize.
    pub fn start_calibration(&mut self) -> Result<(), InferError> {
        self.quantizable()?.start_calibration();
        self.precision = Precision::Fp32;
        Ok(())
    }

    /// Calibration starts over with the input channels of the layers `smooth` accepts
    /// smoothed with strength `alpha` by the ranges recorded so far
    /// (`model::nhwc::quant::smoothing`).
    pub fn smooth_calibration(
        &mut self,
        alpha: f64,
        smooth: impl Fn(&str) -> bool,
    ) -> Result<(), InferError> {
        self.quantizable()?.smooth_calibration(alpha, smooth);
        Ok(())
    }

    /// The layers quantized from what calibration recorded, in the integer widths `bits`
    /// (names in forward order, with the statistics each input range came from).
    pub fn calibrated(
        &mut self,
        estimator: Estimator,
        bits: QuantBits,
    ) -> Vec<(String, QuantLayer, ActivationStats)> {
        match self.quantizable() {
            Ok(net) => net.calibrated(estimator, bits),
            Err(_) => Vec::new(),
        }
    }

    /// Runs `layers` in int8 from now on (the others stay float32).
    pub fn set_int8(&mut self, layers: &QuantLayers) -> Result<(), InferError> {
        let path = self.weights_path.clone();
        self.quantizable()?
            .set_int8(layers)
            .map_err(|e| InferError::Precision {
                path,
                problem: e.to_string(),
            })?;
        self.precision = Precision::Int8;
        Ok(())
    }

    /// Which implementation runs the forward pass: "nhwc" (Kineto's CPU path) or the burn
    /// backend's name.
    pub fn path_name(&self) -> &'static str {
        if self.nhwc.is_some() {
            "nhwc"
        } else {
            self.device.backend
        }
    }

    /// Raw logits `[N * classes]` for clips `[N, T, 3, H, W]` given as host data.
    pub fn logits(&self, data: Vec<f32>, dims: [usize; 5]) -> Result<Vec<f32>, InferError> {
        self.run(data, dims, Output::Logits)
    }

    /// Pre-fc features `[N * C]` (C = 1280 for PP-TSMv2, 2048 for ResNet-50) for clips
    /// `[N, T, 3, H, W]`: what the classifier sees.
    pub fn features(&self, data: Vec<f32>, dims: [usize; 5]) -> Result<Vec<f32>, InferError> {
        self.run(data, dims, Output::Features)
    }

    fn run(
        &self,
        data: Vec<f32>,
        dims: [usize; 5],
        output: Output,
    ) -> Result<Vec<f32>, InferError> {
        self.model.check_input(&dims)?;
        let expected: usize = dims.iter().product();
        if data.len() != expected {
            return Err(InferError::Input(crate::model::ModelError::InputShape(
                dims.to_vec(),
            )));
        }
        let device = &self.device.device;
        let model = &self.model;
        let nhwc = self.nhwc.as_ref();
        let run = || -> Result<Vec<f32>, String> {
            if let Some(net) = nhwc {
                return Ok(match output {
                    Output::Logits => net.logits(&data, dims),
                    Output::Features => net.features(&data, dims),
                });
            }
            let clips = Tensor::<5>::from_data(TensorData::new(data, dims), device);
            let result = match output {
                Output::Logits => model.forward(clips),
                Output::Features => model.features(clips),
            };
            result
                .try_into_data()
                .map_err(|e| format!("{e:?}"))?
                .convert::<f32>()
                .try_into_vec::<f32>()
                .map_err(|e| format!("{e:?}"))
        };
        // burn panics rather than returning errors on backend failures: keep them at this
        // boundary so one bad input never takes a batch down.
        self.guarded(run)
    }

    /// Whether this engine can split its forward pass at the temporal shift
    /// (`frame_maps` + `logits_from_frames`): the NHWC CPU path for PP-TSMv2 can.
    pub fn splits_at_shift(&self) -> bool {
        self.split_net().is_some()
    }

    /// The CPU path's PP-TSMv2, the network that splits at its temporal shift.
    /// The narrowest int8 kernel the model's layers run (`None` in float32).
    pub fn int8_kernel(&self) -> Option<QSimd> {
        self.split_net().and_then(NhwcPpTsmV2::int8_kernel)
    }

    fn split_net(&self) -> Option<&NhwcPpTsmV2> {
        self.nhwc.as_ref().and_then(NhwcNet::pptsm_v2)
    }

    /// Whether each frame's share of the clip features depends on its neighbours only
    /// (`frame_share`): the CPU path for PP-TSMv2 without temporal attention.
    pub fn has_local_shares(&self) -> bool {
        self.split_net().is_some_and(|n| n.shares_are_local())
    }

    /// One frame `[3, H, W]` (host data) -> its maps at the temporal shift, which depend on
    /// that frame alone. `None` when the engine cannot split (see `splits_at_shift`).
    pub fn frame_maps(
        &self,
        frame: &[f32],
        height: usize,
        width: usize,
    ) -> Option<Result<FrameMaps, InferError>> {
        let net = self.split_net()?;
        if frame.len() != 3 * height * width || height < 32 || width < 32 {
            return Some(Err(InferError::Input(
                crate::model::ModelError::InputShape(vec![1, 3, height, width]),
            )));
        }
        Some(self.guarded(|| Ok(net.frame_maps(frame, 1, height, width))))
    }

    /// Raw logits of one clip from its frames' maps (`frame_maps`), in frame order.
    pub fn logits_from_frames(
        &self,
        frames: &[&FrameMaps],
    ) -> Option<Result<Vec<f32>, InferError>> {
        let net = self.split_net()?;
        if let Some(expected) = self.model.arch.num_seg
            && frames.len() != expected
        {
            return Some(Err(InferError::Input(crate::model::ModelError::NumSeg {
                expected,
                got: frames.len(),
            })));
        }
        Some(self.guarded(|| Ok(net.classify(&net.features_from_frames(frames)))))
    }

    /// One frame's share of the clip features from its maps and its neighbours' (see
    /// `NhwcPpTsmV2::frame_share`); `None` when the engine cannot split or the model has
    /// temporal attention (whose frame weights depend on the whole window).
    pub fn frame_share(
        &self,
        previous: Option<&FrameMaps>,
        current: &FrameMaps,
        next: Option<&FrameMaps>,
        num_seg: usize,
    ) -> Option<Result<Vec<f32>, InferError>> {
        let net = self.split_net().filter(|n| n.shares_are_local())?;
        Some(self.guarded(|| Ok(net.frame_share(previous, current, next, num_seg))))
    }

    /// Raw logits of one clip from its frames' shares (`frame_share`).
    pub fn logits_from_shares(&self, shares: &[&[f32]]) -> Option<Result<Vec<f32>, InferError>> {
        let net = self.split_net()?;
        Some(self.guarded(|| Ok(net.classify(&net.features_from_shares(shares)))))
    }

    /// Runs `f` on this engine's thread pool, turning a panic into an error.
    fn guarded<R: Send>(
        &self,
        f: impl FnOnce() -> Result<R, String> + Send,
    ) -> Result<R, InferError> {
        let backend_error = |message: String| InferError::Backend {
            device: format!("{:?}", self.device),
            message,
        };
        match self.device.install(|| catch_unwind(AssertUnwindSafe(f))) {
            Ok(Ok(values)) => Ok(values),
            Ok(Err(message)) => Err(backend_error(message)),
            Err(panic) => Err(backend_error(crate::progress::panic_text(panic.as_ref()))),
        }
    }

    pub fn num_classes(&self) -> usize {
        self.model.arch.num_classes
    }
}

#[derive(Clone, Copy)]
enum Output {
    Logits,
    Features,
}

/// The NHWC CPU path for a fused PP-TSMv2 or PP-TSM MobileNet (v2, v3) on the CPU; `None`
/// elsewhere (burn runs the model: the ResNets, the training form, GPUs).
/// `KINETO_CPU_PATH=burn` keeps burn's path (for comparisons).
fn nhwc_path(model: &Recognizer, device: &ComputeDevice) -> Option<NhwcNet> {
    let wanted = device.kind == "cpu"
        && model.arch.form == Form::Fused
        && std::env::var("KINETO_CPU_PATH").as_deref() != Ok("burn");
    if !wanted {
        return None;
    }
    match &model.network {
        Network::V2(net) => NhwcPpTsmV2::from_network(net).ok().map(NhwcNet::PpTsmV2),
        Network::Mv2(net) => NhwcMobileNet::from_mv2(net).ok().map(NhwcNet::MobileNet),
        Network::Mv3(net) => NhwcMobileNet::from_mv3(net).ok().map(NhwcNet::MobileNet),
        Network::Resnet(_) => None,
    }
}
