//! `kineto export`: a checkpoint to safetensors (Kineto's format, training or fused form, with
//! metadata and class names) or to `.pdparams` in PaddleVideo's `Recognizer2D` layout (always
//! the unfused training form, keys `backbone.*`/`head.*` in PaddleVideo's state-dict order).

use std::path::{Path, PathBuf};

use serde_json::json;

use super::WeightsError;
use super::cache::{now_rfc3339, sha256_file};
use crate::checkpoint::ParamStore;
use crate::checkpoint::file::{Checkpoint, Format, open_checkpoint};
use crate::checkpoint::keys::{Role, reorder};
use crate::checkpoint::pdparams::write_pdparams;
use crate::checkpoint::safetensors::{KinetoMeta, write_safetensors};
use crate::model::fuse::fuse_store;
use crate::model::{Form, ModelKind, key_order};
use crate::video::transform::{INPUT_SIZE, MEAN, SHORT_SIDE, STD};

/// Class names given on the command line (`--labels FILE`).
#[derive(Clone, Debug)]
pub struct Labels {
    pub names: Vec<String>,
    /// The label set's name (the file's stem).
    pub set: String,
    pub path: PathBuf,
}

#[derive(Clone, Debug)]
pub struct ExportRequest<'a> {
    /// The checkpoint to export (already resolved to a local file).
    pub source: &'a Path,
    /// The catalog or cache name the source was given by, for provenance.
    pub source_name: Option<&'a str>,
    /// The catalog's num_seg for the source, when it came from the catalog.
    pub catalog_num_seg: Option<usize>,
    pub output: &'a Path,
    /// `None`: from the output's extension.
    pub format: Option<Format>,
    pub fused: bool,
    pub teacher: bool,
    pub labels: Option<Labels>,
}

#[derive(Clone, Debug)]
pub struct ExportReport {
    pub output: PathBuf,
    pub format: Format,
    pub form: Form,
    pub tensors: usize,
    pub parameters: usize,
    pub class_names: Option<usize>,
}

pub fn export(request: &ExportRequest<'_>) -> Result<ExportReport, WeightsError> {
    let format = match request.format.or_else(|| Format::from_path(request.output)) {
        Some(f) => f,
        None => {
            return Err(WeightsError::Usage(format!(
                "{}: cannot tell the format from the extension; name it .safetensors, \
                 .pdparams or .onnx, or pass --format",
                request.output.display()
            )));
        }
    };
    if format == Format::PaddleInference {
        return Err(WeightsError::Usage(
            "Kineto reads PaddleVideo inference models but does not write them: export \
             .safetensors, .pdparams or .onnx"
                .into(),
        ));
    }
    if request.fused && format == Format::Pdparams {
        return Err(WeightsError::Usage(
            "--fused applies to safetensors only: .pdparams is always PaddleVideo's unfused \
             Recognizer2D layout"
                .into(),
        ));
    }
    let role = if request.teacher {
        Role::Teacher
    } else {
        Role::Student
    };
    let ckpt = open_checkpoint(request.source, role)?;
    if let Some(labels) = &request.labels
        && labels.names.len() != ckpt.arch.num_classes
    {
        return Err(WeightsError::invalid(
            &labels.path,
            format!(
                "has {} class names, the model has {} classes",
                labels.names.len(),
                ckpt.arch.num_classes
            ),
        ));
    }
    let report = |store: &ParamStore, form: Form, class_names: Option<usize>| ExportReport {
        output: request.output.to_path_buf(),
        format,
        form,
        tensors: store.len(),
        parameters: store.num_values(),
        class_names,
    };
    match format {
        Format::Pdparams => {
            let store = paddle_store(&ckpt)?;
            write_pdparams(&store, request.output)?;
            Ok(report(&store, Form::Training, None))
        }
        Format::Safetensors | Format::PaddleInference => {
            let (store, form) = if request.fused && ckpt.arch.form == Form::Training {
                let fused = fuse_store(&ckpt.store)
                    .map_err(|p| WeightsError::invalid(request.source, p))?;
                (fused, Form::Fused)
            } else {
                (ckpt.store.clone(), ckpt.arch.form)
            };
            let meta = metadata(request, &ckpt, form)?;
            write_safetensors(&store, Some(&meta), request.output)?;
            Ok(report(
                &store,
                form,
                meta.class_names.as_ref().map(Vec::len),
            ))
        }
    }
}

/// The canonical training-form store in PaddleVideo's `Recognizer2D` layout and order. A rep
/// block whose training-form `dw_conv.{weight,bias}` are missing (PaddleVideo's model has them;
/// only `rep()` fills them) gets the merged conv, the value `rep()` would give.
pub fn paddle_store(ckpt: &Checkpoint) -> Result<ParamStore, WeightsError> {
    if ckpt.arch.form == Form::Fused {
        return Err(WeightsError::invalid(
            &ckpt.path,
            "is in the fused (inference) form; .pdparams export needs the training form, \
             which cannot be recovered from it",
        ));
    }
    let mut store = ckpt.store.clone();
    if ckpt.arch.model == ModelKind::PptsmV2 {
        let missing: Vec<String> = store
            .names()
            .filter_map(|k| k.strip_suffix(".dw_conv_list.0.conv.weight"))
            .filter(|p| !store.contains(&format!("{p}.dw_conv.weight")))
            .map(str::to_string)
            .collect();
        if !missing.is_empty() {
            let fused = fuse_store(&store).map_err(|p| WeightsError::invalid(&ckpt.path, p))?;
            for prefix in missing {
                for suffix in ["weight", "bias"] {
                    let key = format!("{prefix}.dw_conv.{suffix}");
                    if let Some(t) = fused.get(&key) {
                        store.insert(key, t.clone());
                    }
                }
            }
        }
    }
    Ok(reorder(&store, &key_order(ckpt.arch)))
}

/// Kineto's metadata for an export of `ckpt` in `form` (class names from `--labels`, the file, or
/// Kinetics-400 for a 400-class model; provenance).
pub(crate) fn metadata(
    request: &ExportRequest<'_>,
    ckpt: &Checkpoint,
    form: Form,
) -> Result<KinetoMeta, WeightsError> {
    let arch = ckpt.arch;
    let source_meta = ckpt.meta.as_ref();
    let num_seg = arch
        .num_seg
        .or(request.catalog_num_seg)
        .or(source_meta.map(|m| m.num_seg))
        .or(ckpt.graph_num_seg)
        .unwrap_or(8);
    let (class_names, label_set) = match &request.labels {
        Some(labels) => (Some(labels.names.clone()), Some(labels.set.clone())),
        None => match (&ckpt.class_names, source_meta) {
            (Some(names), meta) => (Some(names.clone()), meta.and_then(|m| m.label_set.clone())),
            (None, _) if arch.num_classes == 400 => (
                Some(crate::labels::kinetics400()),
                Some("kinetics400".to_string()),
            ),
            (None, _) => (None, None),
        },
    };
    let (sha256, _) = sha256_file(request.source)?;
    let file_name = request
        .source
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parent = source_meta.map(|m| m.provenance.clone());
    let inherited = |key: &str| {
        parent
            .as_ref()
            .and_then(|p| p.get(key))
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    };
    let provenance = json!({
        "source": request.source_name.map(str::to_string).unwrap_or_else(|| file_name.clone()),
        "source_file": file_name,
        "source_format": ckpt.format.as_str(),
        "source_layout": ckpt.layout.as_str(),
        "source_sha256": sha256,
        "model_role": if request.teacher { "teacher" } else { "student" },
        "fine_tuning_data": inherited("fine_tuning_data"),
        "epochs": inherited("epochs"),
        "date": now_rfc3339(),
        "kineto_version": env!("CARGO_PKG_VERSION"),
        "parent": parent.unwrap_or(serde_json::Value::Null),
    });
    Ok(KinetoMeta {
        model: arch.model,
        depth: arch.depth,
        form,
        num_seg,
        attention: arch.attention,
        num_classes: arch.num_classes,
        class_names,
        label_set,
        input_size: source_meta.map_or(INPUT_SIZE as usize, |m| m.input_size),
        short_side: source_meta.map_or(SHORT_SIDE as usize, |m| m.short_side),
        mean: source_meta.map_or(MEAN, |m| m.mean),
        std: source_meta.map_or(STD, |m| m.std),
        provenance,
    })
}
