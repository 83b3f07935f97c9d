//! Engine = a loaded recognizer on a device: host clips in, host logits out. The only place
//! (with training) where host data becomes burn tensors.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, TensorData};

use super::InferError;
use super::device::ComputeDevice;
use crate::checkpoint::file::{Checkpoint, open_checkpoint};
use crate::checkpoint::keys::{Layout, Role};
use crate::model::fuse::fuse_store;
use crate::model::nhwc::NhwcPpTsmV2;
use crate::model::{Form, Network, Recognizer};

pub struct Engine {
    pub model: Recognizer,
    pub device: ComputeDevice,
    pub weights_path: PathBuf,
    pub layout: Layout,
    /// Class names the checkpoint carries (Kineto's safetensors); `None` for `.pdparams`.
    pub class_names: Option<Vec<String>>,
    /// The channels-last CPU path, used instead of burn's when the device is the CPU and the
    /// model a fused PP-TSMv2 (it is several times faster there; same weights, same parity).
    pub(crate) nhwc: Option<NhwcPpTsmV2>,
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
    /// Loads `path` (the student of a DML file unless `role` says teacher) in `form`.
    pub fn load(
        path: &Path,
        role: Role,
        form: Form,
        device: ComputeDevice,
    ) -> Result<Self, InferError> {
        let checkpoint = open_checkpoint(path, role)?;
        let store = store_in_form(&checkpoint, form)?;
        let model =
            Recognizer::from_store(&store, &device.device).map_err(|source| InferError::Model {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Self {
            nhwc: nhwc_path(&model, &device),
            model,
            device,
            weights_path: path.to_path_buf(),
            layout: checkpoint.layout,
            class_names: checkpoint.class_names,
        })
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
        }
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

    fn run(&self, data: Vec<f32>, dims: [usize; 5], output: Output) -> Result<Vec<f32>, InferError> {
        self.model.check_input(&dims)?;
        let expected: usize = dims.iter().product();
        if data.len() != expected {
            return Err(InferError::Input(crate::model::ModelError::InputShape(
                dims.to_vec(),
            )));
        }
        let backend_error = |message: String| InferError::Backend {
            device: format!("{:?}", self.device),
            message,
        };
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
        match self.device.install(|| catch_unwind(AssertUnwindSafe(run))) {
            Ok(Ok(values)) => Ok(values),
            Ok(Err(message)) => Err(backend_error(message)),
            Err(panic) => Err(backend_error(panic_message(&panic))),
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

/// The NHWC CPU path for a fused PP-TSMv2 on the CPU; `None` elsewhere (burn runs the model).
/// `KINETO_CPU_PATH=burn` keeps burn's path (for comparisons).
fn nhwc_path(model: &Recognizer, device: &ComputeDevice) -> Option<NhwcPpTsmV2> {
    let wanted = device.kind == "cpu"
        && model.arch.form == Form::Fused
        && std::env::var("KINETO_CPU_PATH").as_deref() != Ok("burn");
    match &model.network {
        Network::V2(net) if wanted => NhwcPpTsmV2::from_network(net).ok(),
        _ => None,
    }
}

pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "the backend panicked".to_string())
}
