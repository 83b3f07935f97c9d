//! Training data: datasets (class folders or PaddleVideo list files), stratified splits, the
//! decodability check, and the synthetic demo set (`kineto demo-data`).

pub mod dataset;
pub mod demo;
pub mod distill;
pub mod full;
pub mod full_job;
pub mod head_only;
pub mod job;
pub mod metrics;
pub mod optim;
pub mod run;

use std::path::PathBuf;

use crate::labels::LabelsError;
use crate::video::VideoError;

/// Why a dataset cannot be read or made. `Display` is one line: `<path>: <problem>`.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// DATA does not exist.
    #[error("{}: no such file or folder", path.display())]
    NotFound { path: PathBuf },
    /// A folder without any video file (in class folders).
    #[error(
        "{}: no videos found (expected one folder per class with the class's video files inside)",
        path.display()
    )]
    NoVideos { path: PathBuf },
    /// A class folder without any video file.
    #[error("{}: class '{class}' has no videos", path.display())]
    EmptyClass { path: PathBuf, class: String },
    /// Fewer than two classes with clips.
    #[error("{}: needs at least 2 classes, found {found} ({names})", path.display())]
    TooFewClasses {
        path: PathBuf,
        found: usize,
        names: String,
    },
    /// A line of a list file: malformed, a label out of range, a missing clip.
    #[error("{}: line {line}: {problem}", path.display())]
    ListLine {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    /// Classes of a separate validation set that the training set does not have, and the like.
    #[error("{}: {problem}", path.display())]
    Classes { path: PathBuf, problem: String },
    /// A folder that must not be written into.
    #[error("{}: {problem}", path.display())]
    Target { path: PathBuf, problem: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Labels(#[from] LabelsError),
    #[error(transparent)]
    Video(#[from] VideoError),
    /// A bad option value (no file involved).
    #[error("{0}")]
    Invalid(String),
}

impl TrainError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.into(),
            source,
        }
    }
}
