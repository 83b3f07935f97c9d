//! Training: a new classifier on a frozen backbone (head-only) or PaddleVideo's full
//! fine-tuning recipe (optionally distilled from a teacher), as one library service that the
//! CLI (`kineto train`) and the app's Train tab both drive.
//!
//! Layers, each file importing only those above it in this list:
//! - the pieces: [`dataset`] (class folders, list files, splits, the decodability check),
//!   [`metrics`] (events, confusion, reports), [`losses`] (CE with label smoothing, DML, KD),
//!   [`optim`] (Momentum, the warm-up + cosine schedule), [`trainer`] (the train-mode step of
//!   the whole network, any of the four models, with each model's PaddleVideo recipe: decay
//!   exemptions, lr multipliers, label smoothing; `--freeze-stages`),
//!   [`seeds`], [`mixup`], [`demo`] (the synthetic demo set);
//! - [`spec`]: what a job is and says (the serialisable [`spec::TrainJob`], its distillation,
//!   events, the data check, the outcome); it imports no job;
//! - the parts of a run: [`data_check`], [`run_folder`] (settings, `metrics.jsonl`, reports),
//!   [`features`] and [`head`] (head-only), [`model_file`] (trained models as safetensors),
//!   [`loader`] (decode workers), [`evaluate`], [`checkpoints`] (the start weights' checks,
//!   `latest`/`best`, resume), [`teacher`] (DML / KD), [`eval`] (`kineto eval`: a test set in
//!   the model's class ids, classified by `infer::batch`, scored by [`metrics`]),
//!   [`extract_frames`] (`kineto extract-frames`: a dataset into PaddleVideo's frame format),
//!   [`quantize`] (`kineto quantize`: int8 post-training quantization on calibration clips);
//! - the jobs: [`head_only_job`], [`full_job`];
//! - [`service`]: runs a job on a named thread with cancel, pause and events.

pub mod checkpoints;
pub mod data_check;
pub mod dataset;
pub mod demo;
pub mod eval;
pub mod evaluate;
pub mod extract_frames;
pub mod features;
pub mod full_job;
pub mod head;
pub mod head_only_job;
pub mod loader;
pub mod losses;
pub mod metrics;
pub mod mixup;
pub mod model_file;
pub mod optim;
pub mod quantize;
pub mod run_folder;
pub mod seeds;
pub mod service;
pub mod spec;
pub mod teacher;
pub mod trainer;

use std::path::PathBuf;

use crate::checkpoint::CheckpointError;
use crate::checkpoint::file::OpenError;
use crate::infer::InferError;
use crate::labels::LabelsError;
use crate::video::VideoError;
use crate::weights::WeightsError;
use trainer::FullTrainError;

/// Why a training job (or the demo set) cannot start or go on. `Display` is one line, naming
/// the file or the option concerned.
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
    /// A folder or run file that must not be written into, or cannot be resumed from.
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
    /// A weights file that cannot be read or recognised.
    #[error(transparent)]
    Checkpoint(#[from] OpenError),
    /// A weights file that cannot be written.
    #[error(transparent)]
    Write(#[from] CheckpointError),
    /// The compute device, or loading and running an inference model.
    #[error(transparent)]
    Infer(#[from] InferError),
    /// The weights cache (its location, a file's checksum).
    #[error(transparent)]
    Weights(#[from] WeightsError),
    /// Full fine-tuning from start weights in the fused inference form.
    #[error(
        "{}: is in the fused (inference) form, BatchNorm folded into the convolutions; full \
         fine-tuning needs the training form (a PaddleVideo .pdparams, or safetensors exported \
         without --fused), or train the head only (--head-only)",
        path.display()
    )]
    FusedStart { path: PathBuf },
    /// A DML teacher (trained too) in the fused inference form.
    #[error(
        "{}: is in the fused inference form; --distill dml trains the teacher too and needs \
         the training form (a .pdparams, or safetensors exported without --fused)",
        path.display()
    )]
    FusedTeacher { path: PathBuf },
    /// A teacher that does not fit the mode, the data's classes or the student's frames.
    #[error("{}: {problem}", path.display())]
    Teacher { path: PathBuf, problem: String },
    /// Weights that cannot be built into a network, or a network that cannot be written.
    #[error("{}: {problem}", path.display())]
    Model { path: PathBuf, problem: String },
    /// An option value out of range, or options that cannot go together.
    #[error("{option} {problem}")]
    BadOption {
        option: &'static str,
        problem: String,
    },
    /// A resumed run that has nothing left to do.
    #[error(
        "{}: the run is already complete ({epochs} of {epochs} epochs; its model is \
         model.safetensors); start a new run to train more",
        path.display()
    )]
    AlreadyComplete { path: PathBuf, epochs: usize },
    /// The loss of a step is NaN or infinite: training stops before saving anything of it.
    #[error(
        "step {step} (epoch {epoch}): the loss is not a finite number at lr {lr:.3e}; the last \
         good checkpoint is kept: resume with a smaller learning rate (kineto train --resume \
         RUN_DIR --lr X)"
    )]
    NonFiniteLoss { step: usize, epoch: usize, lr: f64 },
    /// A training step failed.
    #[error("training step: {0}")]
    Step(#[from] FullTrainError),
    /// Validation of the current weights failed.
    #[error("evaluation: {0}")]
    Evaluation(String),
    /// No clip of an epoch could be decoded.
    #[error("no training clip could be decoded")]
    NoTrainingClips,
    /// `kineto quantize`'s calibration data holds no clip that could be read.
    #[error("{}: {problem}", path.display())]
    NoCalibrationClips { path: PathBuf, problem: String },
    /// Stopped by its cancel token before anything was written.
    #[error("cancelled; nothing was written")]
    Cancelled,
    /// A panic in the job or in one of its workers.
    #[error("{what} crashed: {message}")]
    Crashed { what: &'static str, message: String },
    /// A worker thread could not be started.
    #[error("cannot start {what}: {source}")]
    Thread {
        what: &'static str,
        source: std::io::Error,
    },
    /// A run file that cannot be encoded.
    #[error("{}: {source}", path.display())]
    Encode {
        path: PathBuf,
        source: serde_json::Error,
    },
}

impl TrainError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn bad_option(option: &'static str, problem: impl Into<String>) -> Self {
        TrainError::BadOption {
            option,
            problem: problem.into(),
        }
    }

    pub(crate) fn model(path: impl Into<PathBuf>, problem: impl std::fmt::Display) -> Self {
        TrainError::Model {
            path: path.into(),
            problem: problem.to_string(),
        }
    }
}
