//! What a full fine-tuning run keeps on disk besides its reports, and every check of the
//! weights it starts from:
//! - the start weights must be PP-TSMv2 in the training form; a teacher must fit the mode,
//!   the data's classes and the frames ([`open_training_checkpoint`], `open_teacher_checkpoint`);
//! - `settings.json` → `job` ([`RunSettings`]: the [`TrainJob`] with the resolved num_seg and
//!   the start weights' sha256), which `--resume` continues ([`resume_job`],
//!   [`is_resumable`]);
//! - the `latest` checkpoint, where a resume starts: the training-form weights with the class
//!   names, the optimiser's f64 velocities and, for DML, the teacher's weights and
//!   velocities, named and checksummed by `latest.state.json` (epoch, batch, step, partial
//!   epoch sums; `RunState`); `best.safetensors` by val top-1, and the final fused
//!   `model.safetensors` (`Saver`).
//!
//! **Crash safety** (`save_latest`): every checkpoint is a new *generation* `g` of files,
//! `latest-<g>.safetensors` + `latest-<g>.optim.bin` (+ `latest_teacher-<g>.safetensors` +
//! `latest_teacher-<g>.optim.bin`), each written under a temporary name, fsynced and renamed;
//! then the state that names them with their sha256 is written the same way, and its rename
//! over `latest.state.json` is the one commit point. Only after it are the previous
//! generation's files removed. A process killed at any instant therefore leaves the previous
//! checkpoint whole, or the new one committed; `read_latest` reads what the state names (the
//! newest complete checkpoint) and removes what an uncommitted write left (files of another
//! generation, temporary files). Version 1 of the state (fixed names `latest.safetensors`,
//! `latest.optim.bin`, `latest_teacher.*`, overwritten in place) is still read; the next
//! checkpoint of such a run is generation 1 and replaces those files. (Tests widen the
//! window between the files and the commit with `KINETO_CHECKPOINT_COMMIT_DELAY_MS`.)
//!
//! A run checkpoints at every epoch end, every [`TrainJob::checkpoint_minutes`] of training
//! (at a step end, mid-epoch) and when cancelled; the state holds where in the epoch it is, so
//! a resume computes the same steps as an uninterrupted run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::TrainError;
use super::model_file::{ModelOrigin, write_trained_store};
use super::run_folder::{REPORT, SETTINGS, write_run_file};
use super::spec::{DistillJob, DistillMode, JobDevice, TrainJob};
use super::trainer::FullTrainer;
use crate::checkpoint::file::{Checkpoint, open_checkpoint};
use crate::checkpoint::keys::{Layout, Role};
use crate::model::fuse::fuse_store;
use crate::model::{Arch, Form};

/// Files of a full fine-tuning run folder. The state is the commit point of the `latest`
/// checkpoint: it names the checkpoint's other files (see the module doc).
pub const LATEST_STATE: &str = "latest.state.json";
pub const BEST: &str = "best.safetensors";
pub const MODEL: &str = "model.safetensors";
/// Version 1 of the state: the checkpoint's files under fixed names, overwritten by every
/// checkpoint (still read; version 2 names `latest-<generation>.*`).
pub const LATEST: &str = "latest.safetensors";
pub const LATEST_OPTIM: &str = "latest.optim.bin";
/// DML: the teacher's training-form weights and velocities at the same checkpoint (version 1).
pub const LATEST_TEACHER: &str = "latest_teacher.safetensors";
pub const LATEST_TEACHER_OPTIM: &str = "latest_teacher.optim.bin";
const STATE_FORMAT: &str = "kineto-train-state";
/// 1: fixed file names; 2: a generation per checkpoint, its files named in the state.
const STATE_VERSION: u32 = 2;

/// The files of one checkpoint, relative to the run folder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointFiles {
    /// The student's weights (safetensors, training form, with the class names).
    pub model: String,
    /// The student's velocities (f64 little-endian, in the state's layout).
    pub optim: String,
    /// DML: the teacher's weights and velocities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher_optim: Option<String>,
}

impl CheckpointFiles {
    /// Version 1's fixed names.
    fn version1(teacher: bool) -> Self {
        Self {
            model: LATEST.into(),
            optim: LATEST_OPTIM.into(),
            teacher: teacher.then(|| LATEST_TEACHER.into()),
            teacher_optim: teacher.then(|| LATEST_TEACHER_OPTIM.into()),
        }
    }

    /// The names of generation `g`: `latest-<g>.safetensors`, `latest-<g>.optim.bin` and
    /// (DML) `latest_teacher-<g>.safetensors`, `latest_teacher-<g>.optim.bin`.
    fn of_generation(g: u64, teacher: bool) -> Self {
        Self {
            model: format!("latest-{g}.safetensors"),
            optim: format!("latest-{g}.optim.bin"),
            teacher: teacher.then(|| format!("latest_teacher-{g}.safetensors")),
            teacher_optim: teacher.then(|| format!("latest_teacher-{g}.optim.bin")),
        }
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        [
            Some(&self.model),
            Some(&self.optim),
            self.teacher.as_ref(),
            self.teacher_optim.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(String::as_str)
    }
}

/// Whether `name` is a file of some `latest` checkpoint (either version, any generation) or
/// a temporary file of an atomic write that did not finish (`.<name>.tmp-<pid>-<n>`: a
/// checkpoint's, the state's, `best`'s, a run file's).
fn is_checkpoint_file(name: &str) -> bool {
    if name.starts_with('.') && name.contains(".tmp-") {
        return true;
    }
    if [LATEST, LATEST_OPTIM, LATEST_TEACHER, LATEST_TEACHER_OPTIM].contains(&name) {
        return true;
    }
    let Some(rest) = name
        .strip_prefix("latest-")
        .or_else(|| name.strip_prefix("latest_teacher-"))
    else {
        return false;
    };
    let Some((digits, ext)) = rest.split_once('.') else {
        return false;
    };
    !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (ext == "safetensors" || ext == "optim.bin")
}

/// Removes every checkpoint file of `run_dir` that `keep` does not name: the previous
/// generation once a new one is committed, and what a process stopped inside a checkpoint
/// write left (an uncommitted generation's files, temporary files). Best effort: a file that
/// cannot be removed is left for the next checkpoint, and `keep` stays intact either way.
fn remove_stale(run_dir: &Path, keep: Option<&CheckpointFiles>) {
    let Ok(entries) = std::fs::read_dir(run_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if is_checkpoint_file(name) && !keep.is_some_and(|k| k.names().any(|n| n == name)) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The files of the committed `latest` checkpoint of `run_dir` (what its state names), or
/// `None` when it has none.
pub fn latest_files(run_dir: &Path) -> Option<CheckpointFiles> {
    let text = std::fs::read_to_string(run_dir.join(LATEST_STATE)).ok()?;
    let state: RunState = serde_json::from_str(&text).ok()?;
    Some(state.files())
}

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
    /// Version 2: the checkpoint's generation (1 for the first), and its files.
    #[serde(default)]
    generation: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    files: Option<CheckpointFiles>,
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
    /// Velocities in the optim file: key and length, in file order (f64 little-endian).
    velocity: Vec<(String, usize)>,
    pub broken: Vec<(PathBuf, String)>,
    /// DML: the teacher's weights and velocities like the student's.
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
            generation: 0,
            files: None,
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

    /// The files this state names (version 1: the fixed names, the teacher's when DML).
    pub fn files(&self) -> CheckpointFiles {
        match &self.files {
            Some(files) => files.clone(),
            None => CheckpointFiles::version1(!self.teacher_sha256.is_empty()),
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

/// Whether `dir` holds a full run with a `latest` checkpoint that has work left: epochs, or
/// the final model and report (what the app's "Resume" offers; [`read_latest`] checks the
/// files themselves when the run starts).
pub fn is_resumable(dir: &Path) -> bool {
    let Ok(settings) = read_settings(dir) else {
        return false;
    };
    let state = std::fs::read_to_string(dir.join(LATEST_STATE))
        .ok()
        .and_then(|t| serde_json::from_str::<RunState>(&t).ok());
    state.is_some_and(|s| s.epoch < settings.job.epochs || !is_complete(dir))
}

/// Whether a run's end is written: its final model and its report.
pub fn is_complete(dir: &Path) -> bool {
    dir.join(MODEL).is_file() && dir.join(REPORT).is_file()
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

/// The start checkpoint, in the training form (PP-TSMv2, PP-TSM ResNet, MobileNetV2/V3).
pub fn open_training_checkpoint(weights: &Path) -> Result<Checkpoint, TrainError> {
    let checkpoint = open_checkpoint(weights, Role::Student)?;
    if checkpoint.arch.form == Form::Fused {
        return Err(TrainError::FusedStart {
            path: weights.to_path_buf(),
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

/// A new `latest` checkpoint, crash-safe at any instant: the next generation's files (the
/// student's weights and velocities, the DML teacher's) under new names, each fsynced, then
/// the state that names them and their sha256, written beside and renamed over
/// `latest.state.json` (the commit point: one atomic rename), then the previous generation's
/// files removed. Until the rename the previous checkpoint is whole and is what a resume
/// finds; on an error `state` is left as it was.
pub(crate) fn save_latest(
    saver: &Saver<'_>,
    trainer: &FullTrainer,
    teacher: Option<(&Saver<'_>, &FullTrainer)>,
    state: &mut RunState,
) -> Result<(), TrainError> {
    let next = write_generation(saver, trainer, teacher, state)?;
    commit_delay_for_tests();
    commit(saver.run_dir, &next)?;
    *state = next;
    remove_stale(saver.run_dir, state.files.as_ref());
    Ok(())
}

/// `KINETO_CHECKPOINT_COMMIT_DELAY_MS`: a pause between a checkpoint's files and its commit,
/// which widens the window where a kill leaves an uncommitted generation (the kill test's
/// knob; unset, no pause).
fn commit_delay_for_tests() {
    if let Some(ms) = std::env::var("KINETO_CHECKPOINT_COMMIT_DELAY_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms.min(10_000)));
    }
}

/// The files of the generation after `state`'s, and the state that names them (not yet
/// committed).
fn write_generation(
    saver: &Saver<'_>,
    trainer: &FullTrainer,
    teacher: Option<(&Saver<'_>, &FullTrainer)>,
    state: &RunState,
) -> Result<RunState, TrainError> {
    let mut next = state.clone();
    next.format = STATE_FORMAT.into();
    next.version = STATE_VERSION;
    next.generation = state.generation + 1;
    let files = CheckpointFiles::of_generation(next.generation, teacher.is_some());
    let written =
        saver.write_model_and_velocities(trainer, state.epoch, &files.model, &files.optim)?;
    next.latest_sha256 = written.model_sha256;
    next.optim_sha256 = written.optim_sha256;
    next.velocity = written.layout;
    if let (Some((teacher_saver, teacher)), Some(model), Some(optim)) =
        (teacher, &files.teacher, &files.teacher_optim)
    {
        let written =
            teacher_saver.write_model_and_velocities(teacher, state.epoch, model, optim)?;
        next.teacher_sha256 = written.model_sha256;
        next.teacher_optim_sha256 = written.optim_sha256;
        next.teacher_velocity = written.layout;
    }
    next.files = Some(files);
    Ok(next)
}

/// Commits `state`: written to a temporary file, fsynced, renamed over `latest.state.json`.
fn commit(run_dir: &Path, state: &RunState) -> Result<(), TrainError> {
    let text = serde_json::to_string_pretty(state).map_err(|source| TrainError::Encode {
        path: run_dir.join(LATEST_STATE),
        source,
    })?;
    write_run_file(run_dir, LATEST_STATE, text.as_bytes())?;
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
        return Err(bad(&model, format!("missing ({LATEST_STATE} names it)")));
    }
    if file_sha256(&model)? != model_sha {
        return Err(bad(
            &model,
            format!("does not match {LATEST_STATE} (the file changed after the checkpoint)"),
        ));
    }
    let optim = run_dir.join(optim);
    let bytes = std::fs::read(&optim).map_err(|e| TrainError::io(&optim, e))?;
    if sha256_hex(&bytes) != optim_sha {
        return Err(bad(&optim, format!("does not match {LATEST_STATE}")));
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

/// The state and velocities of the committed `latest` checkpoint (and the DML teacher's with
/// `teacher`), checked against the files the state names. What a checkpoint write that did
/// not commit left behind (the next generation's files, temporary files) is removed: the
/// state names the newest complete checkpoint.
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
    let files = state.files();
    let velocity = read_checked(
        run_dir,
        &files.model,
        &state.latest_sha256,
        &files.optim,
        &state.optim_sha256,
        &state.velocity,
    )?;
    let teacher_velocity = if teacher {
        let (Some(model), Some(optim)) = (&files.teacher, &files.teacher_optim) else {
            return Err(bad(
                &path,
                "names no teacher checkpoint (a DML run saves one)".into(),
            ));
        };
        Some(read_checked(
            run_dir,
            model,
            &state.teacher_sha256,
            optim,
            &state.teacher_optim_sha256,
            &state.teacher_velocity,
        )?)
    } else {
        None
    };
    remove_stale(run_dir, Some(&files));
    Ok((state, (velocity, teacher_velocity)))
}

/// Removes every `latest` checkpoint file of `run_dir`, the state first (a forced new run).
pub(crate) fn remove_latest(run_dir: &Path) -> Result<(), TrainError> {
    let path = run_dir.join(LATEST_STATE);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(TrainError::io(path, e)),
    }
    remove_stale(run_dir, None);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::init::random_store;
    use crate::model::{ModelKind, Recognizer};
    use crate::train::trainer::FullStepOptions;
    use burn::tensor::{Device, FloatDType};

    const KEY: &str = "backbone.fc.bias";

    fn arch() -> Arch {
        Arch {
            model: ModelKind::PptsmV2,
            depth: None,
            num_seg: None,
            num_classes: 2,
            attention: false,
            form: Form::Training,
        }
    }

    /// A trainer of seeded random weights whose fc bias has the velocity `v`.
    fn trainer(seed: u64, v: [f64; 2]) -> FullTrainer {
        let model =
            Recognizer::from_store(&random_store(arch(), seed), &Device::flex()).expect("model");
        let mut t =
            FullTrainer::new(model, FloatDType::F32, FullStepOptions::default()).expect("trainer");
        t.set_velocities(HashMap::from([(KEY.to_string(), v.to_vec())]))
            .expect("velocities");
        t
    }

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("kineto-ckpt-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("mkdir");
        d
    }

    fn saver<'a>(dir: &'a Path, classes: &'a [String]) -> Saver<'a> {
        Saver {
            run_dir: dir,
            arch: arch(),
            class_names: classes,
            weights: Path::new("start.pdparams"),
            weights_sha256: "0",
            data: Path::new("data"),
            num_seg: 8,
            parent: None,
        }
    }

    /// What a process killed inside a checkpoint write leaves: the next checkpoint's weights
    /// and velocities written, its state not committed.
    fn write_uncommitted(saver: &Saver<'_>, trainer: &FullTrainer, state: &RunState) -> RunState {
        write_generation(saver, trainer, None, state).expect("write")
    }

    fn sorted(names: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        v.sort();
        v
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("read_dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn an_uncommitted_checkpoint_resumes_from_the_previous_one() {
        let dir = scratch("uncommitted");
        let classes = vec!["a".to_string(), "b".to_string()];
        let saver = saver(&dir, &classes);
        let first = trainer(1, [1.0, 2.0]);
        let mut state = RunState::fresh();
        state.step = 1;
        save_latest(&saver, &first, None, &mut state).expect("first checkpoint");
        let mut next = state.clone();
        next.step = 2;
        let uncommitted = write_uncommitted(&saver, &trainer(2, [3.0, 4.0]), &next);
        // A temporary file of the state's write, as a kill before its rename leaves it.
        std::fs::write(dir.join(".latest.state.json.tmp-1-0"), b"{").expect("tmp");

        let (read, (velocity, teacher)) =
            read_latest(&dir, false).expect("resumes from the previous checkpoint");
        assert_eq!(read.step, 1);
        assert_eq!(velocity[KEY], vec![1.0, 2.0]);
        assert!(teacher.is_none());
        let files = read.files();
        let weights =
            crate::checkpoint::file::open_checkpoint(&dir.join(&files.model), Role::Student)
                .expect("the previous weights");
        assert_eq!(
            weights.store.get("backbone.fc.weight"),
            first.to_store().get("backbone.fc.weight")
        );
        // The uncommitted generation's files and the temporary file are gone.
        let left = names(&dir);
        let uncommitted = uncommitted.files();
        assert!(!left.contains(&uncommitted.model), "{left:?}");
        assert!(!left.contains(&uncommitted.optim), "{left:?}");
        assert_eq!(left, sorted(&[LATEST_STATE, &files.model, &files.optim]));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_committed_checkpoint_replaces_the_previous_generation() {
        let dir = scratch("generations");
        let classes = vec!["a".to_string(), "b".to_string()];
        let saver = saver(&dir, &classes);
        let mut state = RunState::fresh();
        save_latest(&saver, &trainer(1, [1.0, 2.0]), None, &mut state).expect("first");
        state.step = 7;
        save_latest(&saver, &trainer(2, [5.0, 6.0]), None, &mut state).expect("second");
        assert_eq!(
            names(&dir),
            sorted(&[LATEST_STATE, "latest-2.optim.bin", "latest-2.safetensors"])
        );
        let (read, (velocity, _)) = read_latest(&dir, false).expect("read");
        assert_eq!((read.step, read.generation), (7, 2));
        assert_eq!(velocity[KEY], vec![5.0, 6.0]);
        assert_eq!(latest_files(&dir), Some(read.files()));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A run folder of the version-1 format (fixed names, overwritten) resumes, and its next
    /// checkpoint moves to generations.
    #[test]
    fn a_version_1_checkpoint_still_resumes() {
        let dir = scratch("v1");
        let classes = vec!["a".to_string(), "b".to_string()];
        let saver = saver(&dir, &classes);
        let old = trainer(3, [7.0, 8.0]);
        let written = saver
            .write_model_and_velocities(&old, 0, LATEST, LATEST_OPTIM)
            .expect("v1 files");
        let mut state = RunState::fresh();
        state.version = 1;
        state.step = 3;
        state.latest_sha256 = written.model_sha256;
        state.optim_sha256 = written.optim_sha256;
        state.velocity = written.layout;
        let mut json = serde_json::to_value(&state).expect("json");
        if let Some(o) = json.as_object_mut() {
            o.remove("generation");
            o.remove("files");
        }
        std::fs::write(dir.join(LATEST_STATE), json.to_string()).expect("state");

        let (mut read, (velocity, _)) = read_latest(&dir, false).expect("a v1 state resumes");
        assert_eq!(read.step, 3);
        assert_eq!(velocity[KEY], vec![7.0, 8.0]);
        assert_eq!(read.files().model, LATEST);
        save_latest(&saver, &old, None, &mut read).expect("next checkpoint");
        assert_eq!(
            names(&dir),
            sorted(&[LATEST_STATE, "latest-1.optim.bin", "latest-1.safetensors"])
        );
        assert!(read_latest(&dir, false).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
