//! Trained models as files: the start checkpoint with a new classifier ([`store_with_head`],
//! [`start_model`]) and Kineto safetensors with the class names and where the model came from
//! ([`write_model`], [`write_trained_store`]). Shared by head-only and full fine-tuning.

use std::path::Path;

use serde_json::json;

use super::TrainError;
use super::head::Head;
use crate::checkpoint::file::Checkpoint;
use crate::checkpoint::safetensors::KinetoMeta;
use crate::checkpoint::{ParamStore, ParamTensor};
use crate::infer::device::ComputeDevice;
use crate::model::{Arch, ModelKind, Recognizer};
use crate::video::transform::{INPUT_SIZE, MEAN, SHORT_SIDE, STD};

/// The fc keys of an architecture: PP-TSMv2 and the MobileNets keep their fc in the backbone.
pub fn fc_keys(model: ModelKind) -> (&'static str, &'static str) {
    model.fc_keys()
}

/// The start checkpoint with its fc replaced by `head`.
pub fn store_with_head(checkpoint: &Checkpoint, head: &Head) -> Result<ParamStore, TrainError> {
    let (wk, bk) = fc_keys(checkpoint.arch.model);
    let mut store = checkpoint.store.clone();
    if !store.contains(wk) || !store.contains(bk) {
        return Err(TrainError::model(
            &checkpoint.path,
            format!("no {wk} / {bk} to replace"),
        ));
    }
    let tensor = |shape: Vec<usize>, data: Vec<f32>| {
        ParamTensor::new(shape, data)
            .map_err(|e| TrainError::model(&checkpoint.path, format!("{e:?}")))
    };
    store.insert(
        wk,
        tensor(vec![head.dim, head.classes], head.weight.clone())?,
    );
    store.insert(bk, tensor(vec![head.classes], head.bias.clone())?);
    Ok(store)
}

/// The training-form network to start from: the start checkpoint with a fresh fc for
/// `classes` classes (seeded).
pub(crate) fn start_model(
    checkpoint: &Checkpoint,
    classes: usize,
    seed: u64,
    device: &ComputeDevice,
) -> Result<Recognizer, TrainError> {
    let head = Head::for_model(checkpoint.arch.model, classes, seed);
    let store = store_with_head(checkpoint, &head)?;
    Recognizer::from_store(&store, &device.device)
        .map_err(|e| TrainError::model(&checkpoint.path, e))
}

/// Where the model came from and what it was trained on (the safetensors `provenance`).
#[derive(Clone, Debug)]
pub struct ModelOrigin<'a> {
    pub weights: &'a Path,
    pub weights_sha256: &'a str,
    pub data: &'a Path,
    pub epochs: usize,
    pub num_seg: usize,
}

/// Writes the fine-tuned model as Kineto safetensors with `class_names` (atomically).
pub fn write_model(
    checkpoint: &Checkpoint,
    head: &Head,
    class_names: &[String],
    origin: &ModelOrigin<'_>,
    output: &Path,
) -> Result<(), TrainError> {
    let store = store_with_head(checkpoint, head)?;
    let parent = checkpoint.meta.as_ref().map(|m| m.provenance.clone());
    write_trained_store(
        &store,
        Arch {
            num_classes: head.classes,
            ..checkpoint.arch
        },
        class_names,
        origin,
        "head_only",
        parent,
        output,
    )
}

/// Writes a trained store (in `arch.form`, `arch.num_classes` classes) as Kineto safetensors
/// with `class_names` and its provenance (`mode`: `head_only` or `full`; `parent`: the start
/// checkpoint's own provenance), atomically. Shared by head-only and full fine-tuning.
pub fn write_trained_store(
    store: &ParamStore,
    arch: Arch,
    class_names: &[String],
    origin: &ModelOrigin<'_>,
    mode: &str,
    parent: Option<serde_json::Value>,
    output: &Path,
) -> Result<(), TrainError> {
    if class_names.len() != arch.num_classes {
        return Err(TrainError::model(
            output,
            format!(
                "{} class names for {} classes",
                class_names.len(),
                arch.num_classes
            ),
        ));
    }
    let label_set = origin
        .data
        .file_stem()
        .map(|n| n.to_string_lossy().into_owned());
    let meta = KinetoMeta {
        model: arch.model,
        depth: arch.depth,
        form: arch.form,
        num_seg: origin.num_seg,
        attention: arch.attention,
        num_classes: arch.num_classes,
        class_names: Some(class_names.to_vec()),
        label_set,
        input_size: INPUT_SIZE as usize,
        short_side: SHORT_SIDE as usize,
        mean: MEAN,
        std: STD,
        provenance: json!({
            "source": origin.weights.file_name().map(|n| n.to_string_lossy().into_owned()),
            "source_file": origin.weights.display().to_string(),
            "source_sha256": origin.weights_sha256,
            "fine_tuning_data": origin.data.display().to_string(),
            "fine_tuning_mode": mode,
            "epochs": origin.epochs,
            "date": crate::weights::cache::now_rfc3339(),
            "kineto_version": env!("CARGO_PKG_VERSION"),
            "parent": parent,
        }),
    };
    Ok(crate::checkpoint::safetensors::write_safetensors(
        store,
        Some(&meta),
        output,
    )?)
}
