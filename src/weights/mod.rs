//! Weights: the catalog of PaddleVideo's published checkpoints, the local cache with its
//! sha256 index, verified downloads, `--weights NAME|FILE` resolution, and export to
//! safetensors and `.pdparams`, and to ONNX (`onnx`).

pub mod cache;
pub mod catalog;
pub mod download;
mod error;
pub mod export;
pub mod onnx;
pub mod resolve;

use std::path::Path;

pub use catalog::{Catalog, CatalogEntry, DEFAULT_WEIGHTS, EntryKind};
pub use error::WeightsError;

use crate::checkpoint::file::{Format, open_checkpoint};
use crate::checkpoint::keys::{Layout, Role, canonicalize};
use crate::checkpoint::pdparams::read_pdparams;
use crate::checkpoint::safetensors::read_safetensors;
use crate::model::arch;

/// Checks that the file at `path` is what `entry` describes: it parses, holds the entry's
/// architecture, and matches its key/shape signature (and its teacher's, for DML files). The
/// problem is one line without the path.
pub fn verify_file(entry: &CatalogEntry, path: &Path) -> Result<(), String> {
    let raw = match Format::from_path(path) {
        Some(Format::Safetensors) => read_safetensors(path).map(|f| f.store),
        _ => read_pdparams(path),
    }
    .map_err(|e| strip_path(&e.to_string(), path))?;
    let not_it = |problem: String| format!("is not {}: {problem}", entry.name);
    match entry.kind {
        EntryKind::Imagenet => {
            catalog::check_signature(&raw, &entry.signature).map_err(not_it)?;
        }
        EntryKind::Video => {
            let (layout, student) = canonicalize(&raw, Role::Student).map_err(not_it)?;
            if entry.layout == "dml" && layout != Layout::Dml {
                return Err(not_it(format!(
                    "expected a DML checkpoint (Student.*/Teacher.*), found the {} layout",
                    layout.as_str()
                )));
            }
            let found = arch::detect(&student).map_err(not_it)?;
            if found.model.as_str() != entry.arch {
                return Err(not_it(format!(
                    "it holds {} ({}), the catalog entry is {}",
                    found.display_name(),
                    found.model.as_str(),
                    entry.arch
                )));
            }
            catalog::check_signature(&student, &entry.signature).map_err(not_it)?;
            if !entry.teacher.is_empty() {
                let (_, teacher) = canonicalize(&raw, Role::Teacher).map_err(not_it)?;
                catalog::check_signature(&teacher, &entry.teacher)
                    .map_err(|p| not_it(format!("teacher {p}")))?;
            }
        }
    }
    Ok(())
}

/// Checks that `path` is a checkpoint Kineto can run (any layout), for imports under a name the
/// catalog does not know.
pub fn verify_any(path: &Path) -> Result<(), String> {
    let ckpt =
        open_checkpoint(path, Role::Student).map_err(|e| strip_path(&e.to_string(), path))?;
    crate::model::Recognizer::from_store(&ckpt.store, &burn::tensor::Device::flex())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// `"<path>: problem"` -> `"problem"` (messages are re-prefixed by the caller).
fn strip_path(message: &str, path: &Path) -> String {
    let prefix = format!("{}: ", path.display());
    message.strip_prefix(&prefix).unwrap_or(message).to_string()
}
