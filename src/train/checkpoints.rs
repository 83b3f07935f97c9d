//! What a full fine-tuning run keeps on disk besides its reports, and every check of the
//! weights it starts from:
//! - the start weights must be PP-TSMv2 in the training form; a teacher must fit the mode,
//!   the data's classes and the frames ([`open_training_checkpoint`], [`open_teacher`]);
//! - `settings.json` → `job` ([`RunSettings`]: the [`TrainJob`] with the resolved num_seg and
//!   the start weights' sha256), which `--resume` continues ([`resume_job`],
//!   [`is_resumable`]);
//! - `latest.safetensors` (training form, class names) + `latest.optim.bin` (the optimiser's
//!   f64 velocities) + `latest.state.json` (epoch, batch, step, partial epoch sums, the sha256
//!   of both files; written last, the commit point), the DML teacher's
//!   `latest_teacher.safetensors` + `latest_teacher.optim.bin` beside them, `best.safetensors`
//!   by val top-1, and the final fused `model.safetensors` ([`Saver`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::TrainError;
use super::model_file::{ModelOrigin, write_trained_store};
use super::run_folder::{SETTINGS, write_run_file};
use super::spec::{DistillJob, DistillMode, JobDevice, TrainJob};
use super::trainer::FullTrainer;
use crate::checkpoint::file::{Checkpoint, open_checkpoint};
use crate::checkpoint::keys::{Layout, Role};
use crate::model::fuse::fuse_store;
use crate::model::{Arch, Form, ModelKind};

/// Files of a full fine-tuning run folder.
pub const LATEST: &str = "latest.safetensors";
pub const LATEST_OPTIM: &str = "latest.optim.bin";
pub const LATEST_STATE: &str = "latest.state.json";
pub const BEST: &str = "best.safetensors";
pub const MODEL: &str = "model.safetensors";
/// DML: the teacher's training-form weights and velocities at the same checkpoint.
pub const LATEST_TEACHER: &str = "latest_teacher.safetensors";
pub const LATEST_TEACHER_OPTIM: &str = "latest_teacher.optim.bin";
const STATE_FORMAT: &str = "kineto-train-state";
const STATE_VERSION: u32 = 1;

/// What a full run was started with (`settings.json` → `job`): everything that decides its
/// numbers, so that `--resume` continues exactly the same run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunSettings {
    #[serde(flatten)]
    pub job: TrainJob,
    pub weights_sha256: String,
    pub num_seg: usize,
}

impl RunSettings {
    /// The fields that must agree between a run and its resumption (names, outputs and the
    /// frames as asked may differ; the resolved num_seg may not).
    pub fn numbers(&self) -> serde_json::Value {
        let mut v = json!(self);
        if let Some(o) = v.as_object_mut() {
            for key in ["weights", "output", "weights_path", "frames"] {
                o.remove(key);
            }
            if let Some(d) = o.get_mut("distill").and_then(|d| d.as_object_mut()) {
                d.remove("teacher");
                d.remove("teacher_path");
            }
        }
        v
    }
}

/// Where a run stands at a checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct RunState {
    format: String,
    version: u32,
    /// The epoch in progress (0-based); `epochs` when the run is complete.
    pub epoch: usize,
    /// The next batch of that epoch (`iterations` when only its validation is left).
    pub batch: usize,
    /// Steps done in the whole run.
    pub step: usize,
    /// Sums over the batches done in `epoch`.
    pub loss_sum: f64,
    pub correct: usize,
    pub seen: usize,
    pub best_val_top1: Option<f64>,
    pub elapsed_s: f64,
    latest_sha256: String,
    optim_sha256: String,
    /// Velocities in `latest.optim.bin`: key and length, in file order (f64 little-endian).
    velocity: Vec<(String, usize)>,
    pub broken: Vec<(PathBuf, String)>,
    /// DML: `latest_teacher.safetensors` / `latest_teacher.optim.bin` like the student's.
    #[serde(default)]
    teacher_sha256: String,
    #[serde(default)]
    teacher_optim_sha256: String,
    #[serde(default)]
    teacher_velocity: Vec<(String, usize)>,
}

impl RunState {
    pub fn fresh() -> Self {
        Self {
            format: STATE_FORMAT.into(),
            version: STATE_VERSION,
            epoch: 0,
            batch: 0,
            step: 0,
            loss_sum: 0.0,
            correct: 0,
            seen: 0,
            best_val_top1: None,
            elapsed_s: 0.0,
            latest_sha256: String::new(),
            optim_sha256: String::new(),
            velocity: Vec::new(),
            broken: Vec::new(),
            teacher_sha256: String::new(),
            teacher_optim_sha256: String::new(),
            teacher_velocity: Vec::new(),
        }
    }
}

/// A full fine-tuning job that continues the run in `run_dir`: its options from the run's
/// `settings.json` (the device is the caller's).
pub fn resume_job(run_dir: &Path, device: JobDevice) -> Result<TrainJob, TrainError> {
    let settings = read_settings(run_dir)?;
    let mut job = settings.job;
    job.frames = Some(settings.num_seg);
    job.run_dir = Some(run_dir.to_path_buf());
    job.device = device;
    job.resume = true;
    Ok(job)
}

/// `settings.json` → `job` of a full run.
pub fn read_settings(run_dir: &Path) -> Result<RunSettings, TrainError> {
    let path = run_dir.join(SETTINGS);
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
    let bad = |problem: String| TrainError::Target {
        path: path.clone(),
        problem,
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    if value["mode"] != "full" {
        return Err(bad(
            "not a full fine-tuning run (only those can be resumed)".into(),
        ));
    }
    serde_json::from_value(value["job"].clone()).map_err(|e| bad(format!("bad job settings: {e}")))
}

/// Whether `dir` holds a full run with a `latest` checkpoint that has epochs left (what the
/// app's "Resume" offers; [`read_latest`] checks the files themselves when the run starts).
pub fn is_resumable(dir: &Path) -> bool {
    let Ok(settings) = read_settings(dir) else {
        return false;
    };
    let state = std::fs::read_to_string(dir.join(LATEST_STATE))
        .ok()
        .and_then(|t| serde_json::from_str::<RunState>(&t).ok());
    state.is_some_and(|s| s.epoch < settings.job.epochs)
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(crate) fn file_sha256(path: &Path) -> Result<String, TrainError> {
    Ok(crate::weights::cache::sha256_file(path)?.0)
}

/// The start checkpoint, which must be PP-TSMv2 in the training form.
pub fn open_training_checkpoint(weights: &Path) -> Result<Checkpoint, TrainError> {
    let checkpoint = open_checkpoint(weights, Role::Student)?;
    if checkpoint.arch.form == Form::Fused {
        return Err(TrainError::FusedStart {
            path: weights.to_path_buf(),
        });
    }
    if checkpoint.arch.model != ModelKind::PptsmV2 {
        return Err(TrainError::UnsupportedModel {
            path: weights.to_path_buf(),
            model: checkpoint.arch.display_name(),
        });
    }
    Ok(checkpoint)
}

/// The teacher's checkpoint: of a DML checkpoint (PaddleVideo's `Student.*`/`Teacher.*`) its
/// Teacher, else the one model the file holds.
pub(crate) fn open_teacher_checkpoint(path: &Path) -> Result<Checkpoint, TrainError> {
    let checkpoint = open_checkpoint(path, Role::Student)?;
    if checkpoint.layout == Layout::Dml {
        return Ok(open_checkpoint(path, Role::Teacher)?);
    }
    Ok(checkpoint)
}

/// Checks the teacher against the mode, the data's classes and num_seg, before any work.
pub(crate) fn check_teacher(
    distill: &DistillJob,
    teacher: &Checkpoint,
    classes: &[String],
    num_seg: usize,
) -> Result<(), TrainError> {
    let refuse = |problem: String| {
        Err(TrainError::Teacher {
            path: teacher.path.clone(),
            problem,
        })
    };
    if let Some(fixed) = teacher.arch.num_seg
        && fixed != num_seg
    {
        return refuse(format!(
            "the teacher's temporal attention fixes num_seg = {fixed}; the student trains on \
             {num_seg} frames"
        ));
    }
    match distill.mode {
        DistillMode::Dml if teacher.arch.form == Form::Fused => Err(TrainError::FusedTeacher {
            path: teacher.path.clone(),
        }),
        DistillMode::Dml => Ok(()),
        DistillMode::Kd if teacher.arch.num_classes != classes.len() => refuse(format!(
            "the KD teacher has {} classes, the data {}; a frozen teacher must already know the \
             data's classes (e.g. a model from kineto train on this data), or use --distill dml",
            teacher.arch.num_classes,
            classes.len()
        )),
        DistillMode::Kd => match &teacher.class_names {
            Some(names) if names.as_slice() != classes => refuse(format!(
                "the KD teacher's classes ({}) are not the data's ({})",
                names.join(", "),
                classes.join(", ")
            )),
            _ => Ok(()),
        },
    }
}

/// Everything a checkpoint write needs besides the trainer and the state.
pub(crate) struct Saver<'a> {
    pub run_dir: &'a Path,
    /// The network's architecture (its form is the training form; [`Saver::write`] fuses).
    pub arch: Arch,
    pub class_names: &'a [String],
    pub weights: &'a Path,
    pub weights_sha256: &'a str,
    pub data: &'a Path,
    pub num_seg: usize,
    pub parent: Option<serde_json::Value>,
}

impl Saver<'_> {
    /// The trainer's weights in `form` (the training form, or fused: what inference runs),
    /// with class names, to `path`.
    pub fn write(
        &self,
        trainer: &FullTrainer,
        form: Form,
        epochs: usize,
        path: &Path,
    ) -> Result<(), TrainError> {
        let store = match form {
            Form::Training => trainer.to_store(),
            Form::Fused => {
                fuse_store(&trainer.to_store()).map_err(|e| TrainError::model(path, e))?
            }
        };
        let origin = ModelOrigin {
            weights: self.weights,
            weights_sha256: self.weights_sha256,
            data: self.data,
            epochs,
            num_seg: self.num_seg,
        };
        write_trained_store(
            &store,
            Arch { form, ..self.arch },
            self.class_names,
            &origin,
            "full",
            self.parent.clone(),
            path,
        )
    }

    /// The training-form weights to `file` and the velocities to `optim_file` in the run
    /// folder: the sha256 of both and the velocities' layout (key, length; f64 LE, in order).
    fn write_model_and_velocities(
        &self,
        trainer: &FullTrainer,
        epochs: usize,
        file: &str,
        optim_file: &str,
    ) -> Result<Written, TrainError> {
        let path = self.run_dir.join(file);
        self.write(trainer, Form::Training, epochs, &path)?;
        let mut keys: Vec<&String> = trainer.velocities().keys().collect();
        keys.sort();
        let mut bytes = Vec::new();
        let mut layout = Vec::with_capacity(keys.len());
        for key in keys {
            let v = &trainer.velocities()[key];
            bytes.extend(v.iter().flat_map(|x| x.to_le_bytes()));
            layout.push((key.clone(), v.len()));
        }
        write_run_file(self.run_dir, optim_file, &bytes)?;
        Ok(Written {
            model_sha256: file_sha256(&path)?,
            optim_sha256: sha256_hex(&bytes),
            layout,
        })
    }
}

/// What `write_model_and_velocities` wrote: the sha256 of both files and the velocities'
/// layout (key, length).
struct Written {
    model_sha256: String,
    optim_sha256: String,
    layout: Vec<(String, usize)>,
}

/// `latest`: the student's weights and velocities, the DML teacher's, then the state that
/// names them all (the commit point).
pub(crate) fn save_latest(
    saver: &Saver<'_>,
    trainer: &FullTrainer,
    teacher: Option<(&Saver<'_>, &FullTrainer)>,
    state: &mut RunState,
) -> Result<(), TrainError> {
    let written = saver.write_model_and_velocities(trainer, state.epoch, LATEST, LATEST_OPTIM)?;
    state.latest_sha256 = written.model_sha256;
    state.optim_sha256 = written.optim_sha256;
    state.velocity = written.layout;
    if let Some((teacher_saver, teacher)) = teacher {
        let written = teacher_saver.write_model_and_velocities(
            teacher,
            state.epoch,
            LATEST_TEACHER,
            LATEST_TEACHER_OPTIM,
        )?;
        state.teacher_sha256 = written.model_sha256;
        state.teacher_optim_sha256 = written.optim_sha256;
        state.teacher_velocity = written.layout;
    }
    let text = serde_json::to_string_pretty(state).map_err(|source| TrainError::Encode {
        path: saver.run_dir.join(LATEST_STATE),
        source,
    })?;
    write_run_file(saver.run_dir, LATEST_STATE, text.as_bytes())?;
    Ok(())
}

/// Velocities saved by `write_model_and_velocities`, after checking `model` and `optim`
/// against the sha256 the state names.
fn read_checked(
    run_dir: &Path,
    model: &str,
    model_sha: &str,
    optim: &str,
    optim_sha: &str,
    layout: &[(String, usize)],
) -> Result<HashMap<String, Vec<f64>>, TrainError> {
    let bad = |path: &Path, problem: String| TrainError::Target {
        path: path.to_path_buf(),
        problem,
    };
    let model = run_dir.join(model);
    if !model.exists() {
        return Err(bad(&model, "missing (latest.state.json names it)".into()));
    }
    if file_sha256(&model)? != model_sha {
        return Err(bad(
            &model,
            "does not match latest.state.json (the checkpoint was interrupted while it was written)"
                .into(),
        ));
    }
    let optim = run_dir.join(optim);
    let bytes = std::fs::read(&optim).map_err(|e| TrainError::io(&optim, e))?;
    if sha256_hex(&bytes) != optim_sha {
        return Err(bad(&optim, "does not match latest.state.json".into()));
    }
    let mut values = bytes
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]));
    let mut velocity = HashMap::new();
    for (key, len) in layout {
        let v: Vec<f64> = values.by_ref().take(*len).collect();
        if v.len() != *len {
            return Err(bad(&optim, format!("too short for the velocity of {key}")));
        }
        velocity.insert(key.clone(), v);
    }
    Ok(velocity)
}

/// Velocities of the student and (DML) of the teacher.
pub(crate) type Velocities = (HashMap<String, Vec<f64>>, Option<HashMap<String, Vec<f64>>>);

/// The state and velocities of `latest` (and `latest_teacher` with `teacher`), checked
/// against the files they name.
pub(crate) fn read_latest(
    run_dir: &Path,
    teacher: bool,
) -> Result<(RunState, Velocities), TrainError> {
    let path = run_dir.join(LATEST_STATE);
    let bad = |path: &Path, problem: String| TrainError::Target {
        path: path.to_path_buf(),
        problem,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            bad(
                &path,
                "no checkpoint to resume from (the run saved none yet)".into(),
            )
        } else {
            TrainError::io(&path, e)
        }
    })?;
    let state: RunState =
        serde_json::from_str(&text).map_err(|e| bad(&path, format!("not a run state: {e}")))?;
    if state.format != STATE_FORMAT || state.version > STATE_VERSION {
        return Err(bad(
            &path,
            format!("unknown state format {} v{}", state.format, state.version),
        ));
    }
    let velocity = read_checked(
        run_dir,
        LATEST,
        &state.latest_sha256,
        LATEST_OPTIM,
        &state.optim_sha256,
        &state.velocity,
    )?;
    let teacher_velocity = if teacher {
        Some(read_checked(
            run_dir,
            LATEST_TEACHER,
            &state.teacher_sha256,
            LATEST_TEACHER_OPTIM,
            &state.teacher_optim_sha256,
            &state.teacher_velocity,
        )?)
    } else {
        None
    };
    Ok((state, (velocity, teacher_velocity)))
}
