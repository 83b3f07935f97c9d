//! `WeightsError`: everything the weights layer (catalog, cache, download, resolve, export) can
//! report. `Display` is one line, `<path or URL>: <problem>`.

use std::path::PathBuf;

use crate::checkpoint::CheckpointError;
use crate::checkpoint::file::OpenError;

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// A file or folder could not be read or written (`action`: "read", "write", "create", ...).
    #[error("{}: cannot {action}: {error}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        error: std::io::Error,
    },
    /// A checkpoint that does not load (malformed, hostile, wrong keys).
    #[error(transparent)]
    Open(#[from] OpenError),
    /// A checkpoint that could not be written.
    #[error(transparent)]
    Write(#[from] CheckpointError),
    /// A weights file that loads but is not what it should be (wrong model for a catalog entry,
    /// a changed cached file, a fused checkpoint where the training form is needed).
    #[error("{}: {problem}", path.display())]
    Invalid { path: PathBuf, problem: String },
    /// Bad arguments: an unknown catalog name, conflicting options.
    #[error("{0}")]
    Usage(String),
    /// The catalog (embedded or `KINETO_CATALOG`) or the cache index is malformed.
    #[error("{}: {problem}", path.display())]
    Config { path: PathBuf, problem: String },
    /// No download allowed (`--offline`) or possible (the server cannot be reached, or answers
    /// with an error): the message says what to fetch by hand and how to import it.
    #[error(
        "{url}: {problem}; download {file_name} by hand and run `kineto weights import FILE` \
         (or `kineto weights import FILE --name {name}`)"
    )]
    Unreachable {
        name: String,
        url: String,
        file_name: String,
        problem: String,
    },
    /// A download that arrived but does not verify (truncated, corrupted, another model).
    #[error("{url}: {problem}")]
    Download { url: String, problem: String },
}

impl WeightsError {
    /// True when the input itself (a checkpoint, a downloaded file) cannot be used; false for
    /// usage and environment errors. The CLI maps these to exit codes 1 and 2.
    pub fn is_input_error(&self) -> bool {
        matches!(
            self,
            WeightsError::Open(_) | WeightsError::Invalid { .. } | WeightsError::Download { .. }
        )
    }

    pub(crate) fn io(
        path: impl Into<PathBuf>,
        action: &'static str,
        error: std::io::Error,
    ) -> Self {
        WeightsError::Io {
            path: path.into(),
            action,
            error,
        }
    }

    pub(crate) fn invalid(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        WeightsError::Invalid {
            path: path.into(),
            problem: problem.into(),
        }
    }
}
