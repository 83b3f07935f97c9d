//! A weights file on disk -> its canonical parameters and architecture.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::keys::{Layout, Role, canonicalize};
use super::pdparams::read_pdparams;
use super::{CheckpointError, ParamStore};
use crate::model::arch::{self, Arch};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Pdparams,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Pdparams => "pdparams",
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
}

/// Reads `path` and takes the model `role` names (the student unless asked for the teacher of a
/// DML checkpoint).
pub fn open_checkpoint(path: &Path, role: Role) -> Result<Checkpoint, OpenError> {
    let content = |problem: String| OpenError::Content {
        path: path.to_path_buf(),
        problem,
    };
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let (format, raw) = match ext.as_deref() {
        Some("pdparams") | Some("pdparam") | None => (Format::Pdparams, read_pdparams(path)?),
        Some(other) => {
            return Err(content(format!(
                "unsupported weights format .{other}; Kineto reads .pdparams files"
            )));
        }
    };
    let (layout, store) = canonicalize(&raw, role).map_err(content)?;
    let arch = arch::detect(&store).map_err(content)?;
    Ok(Checkpoint {
        path: path.to_path_buf(),
        format,
        layout,
        arch,
        store,
    })
}
