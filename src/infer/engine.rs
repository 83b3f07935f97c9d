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
use crate::model::{Form, Recognizer};

pub struct Engine {
    pub model: Recognizer,
    pub device: ComputeDevice,
    pub weights_path: PathBuf,
    pub layout: Layout,
    /// Class names the checkpoint carries (Kineto's safetensors); `None` for `.pdparams`.
    pub class_names: Option<Vec<String>>,
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
            model,
            device,
            weights_path: PathBuf::new(),
            layout: Layout::Plain,
            class_names: None,
        }
    }

    /// Raw logits `[N * classes]` for clips `[N, T, 3, H, W]` given as host data.
    pub fn logits(&self, data: Vec<f32>, dims: [usize; 5]) -> Result<Vec<f32>, InferError> {
        self.model.check_input(&dims)?;
        let expected: usize = dims.iter().product();
        if data.len() != expected {
            return Err(InferError::Input(crate::model::ModelError::InputShape(
                dims.to_vec(),
            )));
        }
        let device = &self.device.device;
        let model = &self.model;
        let run = || {
            let clips = Tensor::<5>::from_data(TensorData::new(data, dims), device);
            model.forward(clips).try_into_data()
        };
        // burn panics rather than returning errors on backend failures: keep them at this
        // boundary so one bad input never takes a batch down.
        let outcome = self.device.install(|| catch_unwind(AssertUnwindSafe(run)));
        let backend_error = |message: String| InferError::Backend {
            device: format!("{:?}", self.device),
            message,
        };
        let data = match outcome {
            Ok(Ok(data)) => data,
            Ok(Err(e)) => return Err(backend_error(format!("{e:?}"))),
            Err(panic) => return Err(backend_error(panic_message(&panic))),
        };
        data.convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| backend_error(format!("{e:?}")))
    }

    pub fn num_classes(&self) -> usize {
        self.model.arch.num_classes
    }
}

pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "the backend panicked".to_string())
}
