//! A weights file on disk -> its canonical parameters and architecture.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::inference_model::{is_inference_model_path, read_inference_model};
use super::int8::{Int8Weights, read_int8};
use super::keys::{Layout, Role, canonicalize, reorder};
use super::pdparams::read_pdparams;
use super::safetensors::{KinetoMeta, read_safetensors};
use super::{CheckpointError, ParamStore};
use crate::model::arch::{self, Arch};
use crate::model::key_order;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Pdparams,
    Safetensors,
    /// A PaddleVideo inference model (`.pdiparams` + `.pdmodel`/`.json`); read, never written.
    PaddleInference,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Pdparams => "pdparams",
            Format::Safetensors => "safetensors",
            Format::PaddleInference => "pdiparams",
        }
    }

    /// The format Kineto writes for a file name's extension (any case); `None` for other
    /// extensions, inference models included (they are only read).
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "pdparams" | "pdparam" => Some(Format::Pdparams),
            "safetensors" => Some(Format::Safetensors),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Read(#[from] CheckpointError),
    #[error("{}: {problem}", path.display())]
    Content { path: PathBuf, problem: String },
}

/// One model's parameters from a weights file, in canonical keys.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub path: PathBuf,
    pub format: Format,
    pub layout: Layout,
    pub arch: Arch,
    pub store: ParamStore,
    /// Class names carried by the file (safetensors metadata); `None` for `.pdparams`.
    pub class_names: Option<Vec<String>>,
    /// Kineto's safetensors metadata, when the file has it.
    pub meta: Option<KinetoMeta>,
    /// The frames per clip an inference model's graph was exported with.
    pub graph_num_seg: Option<usize>,
    /// A quantized model's int8 layers (`kineto quantize`'s safetensors).
    pub int8: Option<Int8Weights>,
}

/// Reads `path` and takes the model `role` names (the student unless asked for the teacher of a
/// DML checkpoint). `.safetensors` files are Kineto's format (one model, canonical keys);
/// `.pdiparams` and `.pdmodel` a PaddleVideo inference model (both files, beside each other);
/// any other name is read as `.pdparams`.
pub fn open_checkpoint(path: &Path, role: Role) -> Result<Checkpoint, OpenError> {
    let content = |problem: String| OpenError::Content {
        path: path.to_path_buf(),
        problem,
    };
    if is_inference_model_path(path) {
        if role == Role::Teacher {
            return Err(content(
                "--teacher needs a DML checkpoint; an inference model holds one model".into(),
            ));
        }
        let model = read_inference_model(path)?;
        return Ok(Checkpoint {
            path: path.to_path_buf(),
            format: Format::PaddleInference,
            layout: Layout::Plain,
            arch: model.arch,
            store: model.store,
            class_names: None,
            meta: None,
            graph_num_seg: model.num_seg,
            int8: None,
        });
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let (format, raw, meta, int8) = match ext.as_deref() {
        Some("safetensors") => {
            let file = read_safetensors(path)?;
            let int8 = read_int8(&file.int8, &file.raw_metadata).map_err(content)?;
            (Format::Safetensors, file.store, file.meta, int8)
        }
        Some("pdparams") | Some("pdparam") | None => {
            (Format::Pdparams, read_pdparams(path)?, None, None)
        }
        Some(other) => {
            return Err(content(format!(
                "unsupported weights format .{other}; Kineto reads .pdparams, .safetensors and \
                 PaddleVideo inference models (.pdiparams with .pdmodel or .json)"
            )));
        }
    };
    let (layout, store) = canonicalize(&raw, role).map_err(content)?;
    let arch = arch::detect(&store).map_err(content)?;
    let store = match format {
        // safetensors keeps tensors sorted by name: put them back in the model's order.
        Format::Safetensors => reorder(&store, &key_order(arch)),
        Format::Pdparams | Format::PaddleInference => store,
    };
    if let Some(meta) = &meta {
        check_meta(meta, &arch).map_err(content)?;
    }
    Ok(Checkpoint {
        path: path.to_path_buf(),
        format,
        layout,
        arch,
        store,
        class_names: meta.as_ref().and_then(|m| m.class_names.clone()),
        meta,
        graph_num_seg: None,
        int8,
    })
}

/// The metadata must describe the tensors it travels with.
fn check_meta(meta: &KinetoMeta, arch: &Arch) -> Result<(), String> {
    let mismatch = |what: &str, said: String, found: String| {
        Err(format!(
            "metadata says {what} {said}, the tensors hold {found}"
        ))
    };
    if meta.model != arch.model {
        return mismatch(
            "model",
            meta.model.as_str().into(),
            arch.model.as_str().into(),
        );
    }
    if meta.form != arch.form {
        return mismatch("form", meta.form.as_str().into(), arch.form.as_str().into());
    }
    if meta.num_classes != arch.num_classes {
        return mismatch(
            "num_classes",
            meta.num_classes.to_string(),
            arch.num_classes.to_string(),
        );
    }
    if meta.attention != arch.attention {
        return mismatch(
            "attention",
            meta.attention.to_string(),
            arch.attention.to_string(),
        );
    }
    if let Some(fixed) = arch.num_seg
        && meta.num_seg != fixed
    {
        return mismatch("num_seg", meta.num_seg.to_string(), fixed.to_string());
    }
    if arch.depth.is_some() && meta.depth != arch.depth {
        return mismatch(
            "depth",
            format!("{:?}", meta.depth),
            format!("{:?}", arch.depth),
        );
    }
    Ok(())
}
