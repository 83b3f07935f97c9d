//! Running a loaded model: devices, the engine, top-k, and the jobs built on them (classifying
//! files, timelines, live labels, the background service). Results are `report`'s types.

pub mod batch;
pub mod classify;
pub mod device;
pub mod engine;
pub mod live;
pub mod segments;
pub mod service;
pub mod timeline;
pub mod topk;
pub mod watch;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error("{0}")]
    Device(String),
    #[error(transparent)]
    Open(#[from] crate::checkpoint::file::OpenError),
    #[error("{}: {source}", path.display())]
    Model {
        path: PathBuf,
        source: crate::model::ModelError,
    },
    #[error("{}: {problem}", path.display())]
    Weights { path: PathBuf, problem: String },
    #[error("{0}")]
    Input(#[from] crate::model::ModelError),
    #[error("inference failed on {device}: {message}")]
    Backend { device: String, message: String },
    /// `--precision int8` where it cannot run (an unquantized file, a GPU, another model).
    #[error("{}: {problem}", path.display())]
    Precision { path: PathBuf, problem: String },
}
