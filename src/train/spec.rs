//! What a training job is and what it says: the options ([`TrainJob`], recorded in a full
//! run's `settings.json`), its distillation ([`DistillJob`]), the events it sends
//! ([`JobEvent`]), the data check ([`DataCheck`]) and how it ended ([`TrainOutcome`]). Shared
//! by both job kinds, the service, the CLI and the app; it imports no job.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::TrainError;
use super::dataset::{Dataset, DatasetSummary, Sample};
use super::metrics::TrainEvent;
use super::trainer::MAX_FREEZE_STAGES;
use crate::infer::device::{ComputeDevice, DeviceChoice};

/// Classic KD defaults: temperature and the KD term's weight A in `(1 − A)·CE + A·KD`.
pub const KD_TEMPERATURE: f64 = 4.0;
pub const KD_WEIGHT: f64 = 0.5;
/// DML's default weight of the symmetric KL term (PaddleVideo's: every term 1.0).
pub const DML_WEIGHT: f64 = 1.0;
/// PaddleVideo's `MIX: {name: Mixup, alpha: 0.2}`.
pub const MIXUP_ALPHA: f64 = 0.2;
/// PaddleVideo's training crop; `size` may be smaller for speed, down to [`MIN_SIZE`].
pub const FULL_SIZE: u32 = 224;
pub const MIN_SIZE: u32 = 32;

/// The compute device of a job: resolved by the caller (the CLI, which reports software
/// adapters), or resolved on the job's own thread (the app).
#[derive(Clone)]
pub enum JobDevice {
    Resolved(ComputeDevice),
    Choose {
        choice: DeviceChoice,
        threads: usize,
    },
}

impl Default for JobDevice {
    fn default() -> Self {
        JobDevice::Choose {
            choice: DeviceChoice::Cpu,
            threads: 0,
        }
    }
}

impl JobDevice {
    /// The device itself (resolving a choice here, on the job's thread).
    pub fn resolve(&self) -> Result<ComputeDevice, TrainError> {
        match self {
            JobDevice::Resolved(d) => Ok(d.clone()),
            JobDevice::Choose { choice, threads } => Ok(ComputeDevice::resolve(*choice, *threads)?),
        }
    }
}

impl std::fmt::Debug for JobDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JobDevice::Resolved(d) => write!(f, "Resolved({d:?})"),
            JobDevice::Choose { choice, threads } => {
                write!(f, "Choose({choice:?}, {threads} threads)")
            }
        }
    }
}

/// What to train, and how. The serialised fields are what a full run records in its
/// `settings.json` (`job`) so that `--resume` continues the same run; the run folder, the
/// device and the resume flag are the caller's.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainJob {
    /// Class folders or a PaddleVideo list file.
    pub data: PathBuf,
    /// A separate validation set; otherwise `val_split` of each class is held out.
    pub val: Option<PathBuf>,
    pub val_split: f64,
    /// Class names of a list file (or the class order of class folders).
    pub labels: Option<PathBuf>,
    /// The start weights as the user named them.
    pub weights: String,
    /// The start weights, resolved to a local file.
    pub weights_path: PathBuf,
    /// num_seg; `None`: what the checkpoint's attention fixes, else 8.
    #[serde(default)]
    pub frames: Option<usize>,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: Option<f64>,
    pub seed: u64,
    /// Full fine-tuning: the training crop (PaddleVideo: 224; the scale and multi-scale crop
    /// follow as `size·256/224`). Smaller sizes train faster and less well.
    pub size: u32,
    /// Full fine-tuning: PaddleVideo's Mixup (alpha 0.2) on every batch.
    pub mixup: bool,
    /// A second copy of the model (it is always written into the run folder).
    pub output: Option<PathBuf>,
    /// Full fine-tuning: distillation from a teacher (DML or classic KD); `None`: plain CE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distill: Option<DistillJob>,
    /// Full fine-tuning: freeze the stem and the first this many stages (0 to
    /// [`MAX_FREEZE_STAGES`]; 0 trains everything), see [`super::trainer`].
    #[serde(default, skip_serializing_if = "is_zero")]
    pub freeze_stages: usize,
    /// `None`: `<data dir>/runs/<UTC time>-<DATA name>` in the default cache location.
    #[serde(skip)]
    pub run_dir: Option<PathBuf>,
    #[serde(skip)]
    pub device: JobDevice,
    /// Full fine-tuning: continue the run in `run_dir` from its `latest` checkpoint (the
    /// options come from its `settings.json`; see [`super::checkpoints::resume_job`]).
    #[serde(skip)]
    pub resume: bool,
    /// Resuming: a new base learning rate from here on (recorded in `settings.json`'s
    /// `lr_changes`), e.g. after a non-finite loss.
    #[serde(skip)]
    pub new_lr: Option<f64>,
    /// A new run may write into a run folder that holds files (a full run's checkpoints and
    /// reports are replaced; head-only keeps its feature cache).
    #[serde(skip)]
    pub force: bool,
    /// Full fine-tuning: a `latest` checkpoint at the first step end after this many minutes
    /// of training since the last one (besides every epoch end and a cancel); the caller's,
    /// like the device (it changes no number of the run).
    #[serde(skip, default = "default_checkpoint_minutes")]
    pub checkpoint_minutes: f64,
}

/// Full fine-tuning's default time between `latest` checkpoints, in minutes.
pub const CHECKPOINT_MINUTES: f64 = 5.0;

fn default_checkpoint_minutes() -> f64 {
    CHECKPOINT_MINUTES
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// `--checkpoint-minutes`: a positive number of minutes.
pub fn check_checkpoint_minutes(minutes: f64) -> Result<(), TrainError> {
    if minutes.is_finite() && minutes > 0.0 {
        return Ok(());
    }
    Err(TrainError::bad_option(
        "--checkpoint-minutes",
        format!("must be a positive number of minutes, not {minutes}"),
    ))
}

impl TrainJob {
    /// Head-only defaults for `data` from `weights_path`.
    pub fn new(data: impl Into<PathBuf>, weights_path: impl Into<PathBuf>) -> Self {
        let weights_path = weights_path.into();
        Self {
            data: data.into(),
            val: None,
            val_split: 0.1,
            labels: None,
            weights: weights_path.display().to_string(),
            weights_path,
            frames: None,
            epochs: 10,
            batch_size: 16,
            lr: None,
            seed: 0,
            size: FULL_SIZE,
            mixup: true,
            output: None,
            distill: None,
            freeze_stages: 0,
            run_dir: None,
            device: JobDevice::default(),
            resume: false,
            new_lr: None,
            force: false,
            checkpoint_minutes: CHECKPOINT_MINUTES,
        }
    }

    /// The time between `latest` checkpoints ([`TrainJob::checkpoint_minutes`]; a span too
    /// long for a `Duration` is never reached).
    pub fn checkpoint_interval(&self) -> std::time::Duration {
        std::time::Duration::try_from_secs_f64(self.checkpoint_minutes * 60.0)
            .unwrap_or(std::time::Duration::MAX)
    }

    /// The option values that can be checked without touching any file.
    pub fn validate(&self) -> Result<(), TrainError> {
        if self.epochs == 0 {
            return Err(TrainError::bad_option("--epochs", "must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(TrainError::bad_option("--batch-size", "must be at least 1"));
        }
        if let Some(lr) = self.lr.or(self.new_lr)
            && !(lr.is_finite() && lr > 0.0)
        {
            return Err(TrainError::bad_option("--lr", "must be a positive number"));
        }
        if !(0.0..1.0).contains(&self.val_split) {
            return Err(TrainError::bad_option("--val-split", "must be in [0, 1)"));
        }
        if self.freeze_stages > MAX_FREEZE_STAGES {
            return Err(TrainError::bad_option(
                "--freeze-stages",
                format!(
                    "takes 0 to {MAX_FREEZE_STAGES} stages, not {}",
                    self.freeze_stages
                ),
            ));
        }
        if self.frames == Some(0) {
            return Err(TrainError::bad_option("--frames", "must be at least 1"));
        }
        check_checkpoint_minutes(self.checkpoint_minutes)?;
        if let Some(d) = &self.distill {
            d.validate()?;
        }
        Ok(())
    }

    /// The job with every path absolute (relative ones against the working folder now), so
    /// that a run's settings mean the same from any folder.
    pub fn with_absolute_paths(&self) -> TrainJob {
        let mut job = self.clone();
        job.data = absolute(&job.data);
        job.val = job.val.as_deref().map(absolute);
        job.labels = job.labels.as_deref().map(absolute);
        job.weights_path = absolute(&job.weights_path);
        job.output = job.output.as_deref().map(absolute);
        job.run_dir = job.run_dir.as_deref().map(absolute);
        if let Some(d) = &mut job.distill {
            d.teacher_path = absolute(&d.teacher_path);
        }
        job
    }

    /// What full fine-tuning also checks: the training crop.
    pub fn validate_full(&self) -> Result<(), TrainError> {
        self.validate()?;
        if !(MIN_SIZE..=FULL_SIZE).contains(&self.size) {
            return Err(TrainError::bad_option(
                "--size",
                format!("must be between {MIN_SIZE} and {FULL_SIZE}"),
            ));
        }
        Ok(())
    }
}

/// `path` made absolute against the working folder (`.` components dropped; links and `..`
/// kept, so that a linked dataset keeps the name the user gave it).
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Whether two paths name the same file or folder (compared by what they point at).
pub fn same_path(a: &Path, b: &Path) -> bool {
    let resolved = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| absolute(p));
    resolved(a) == resolved(b)
}

/// The frames per clip of a run: `--frames`, else what the checkpoint's temporal attention
/// fixes, else 8; a `--frames` that the attention does not allow is an error.
pub fn resolve_num_seg(
    frames: Option<usize>,
    fixed: Option<usize>,
    weights: &Path,
) -> Result<usize, TrainError> {
    match (frames, fixed) {
        (Some(f), Some(t)) if f != t => Err(TrainError::Model {
            path: weights.to_path_buf(),
            problem: format!(
                "this checkpoint's temporal attention fixes num_seg = {t}; --frames {f} cannot \
                 be used"
            ),
        }),
        (Some(0), _) => Err(TrainError::bad_option("--frames", "must be at least 1")),
        (Some(f), _) => Ok(f),
        (None, Some(t)) => Ok(t),
        (None, None) => Ok(8),
    }
}

/// The report's line about `--freeze-stages` (`None` when nothing is frozen).
pub fn freeze_description(stages: usize) -> Option<String> {
    let what = match stages {
        0 => return None,
        1 => "the stem and stages.0".to_string(),
        2 => "the stem and stages.0-1".to_string(),
        n => format!(
            "the stem, stages.0-{} and the temporal attention (if any)",
            n - 1
        ),
    };
    Some(format!(
        "frozen (--freeze-stages {stages}): {what}; BatchNorm there in eval mode"
    ))
}

/// Which distillation: PaddleVideo's DML (student and teacher trained together) or classic KD
/// (frozen teacher).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DistillMode {
    Dml,
    Kd,
}

impl DistillMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DistillMode::Dml => "dml",
            DistillMode::Kd => "kd",
        }
    }
}

/// Distillation of a full fine-tuning job (`settings.json` → `job.distill`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "DistillRecord")]
pub struct DistillJob {
    pub mode: DistillMode,
    /// The teacher as named, and the file it resolved to (of a DML checkpoint: its Teacher).
    pub teacher: String,
    pub teacher_path: PathBuf,
    /// The teacher file's sha256, recorded by the run when it starts (empty before).
    #[serde(default)]
    pub teacher_sha256: String,
    /// KD only: the softmax temperature T.
    pub temperature: f64,
    /// KD only: A in `(1 − A)·CE + A·T²·KL(p_t^T ‖ p_s^T)`, in [0, 1].
    pub kd_weight: f64,
    /// DML only: the weight of the symmetric KL term (both cross-entropies weigh 1), >= 0.
    pub dml_weight: f64,
}

/// `job.distill` as runs of every version wrote it: a weight that does not apply to the mode
/// may be `null`, and runs from before `dml_weight` existed lack it.
#[derive(Deserialize)]
struct DistillRecord {
    mode: DistillMode,
    teacher: String,
    teacher_path: PathBuf,
    #[serde(default)]
    teacher_sha256: String,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    kd_weight: Option<f64>,
    #[serde(default)]
    dml_weight: Option<f64>,
}

impl From<DistillRecord> for DistillJob {
    fn from(r: DistillRecord) -> Self {
        Self {
            mode: r.mode,
            teacher: r.teacher,
            teacher_path: r.teacher_path,
            teacher_sha256: r.teacher_sha256,
            temperature: r.temperature.unwrap_or(KD_TEMPERATURE),
            kd_weight: r.kd_weight.unwrap_or(KD_WEIGHT),
            dml_weight: r.dml_weight.unwrap_or(DML_WEIGHT),
        }
    }
}

impl DistillJob {
    /// DML with `teacher` (PaddleVideo's weights: every term 1.0).
    pub fn dml(teacher: impl Into<PathBuf>) -> Self {
        let teacher_path = teacher.into();
        Self {
            mode: DistillMode::Dml,
            teacher: teacher_path.display().to_string(),
            teacher_path,
            teacher_sha256: String::new(),
            temperature: KD_TEMPERATURE,
            kd_weight: KD_WEIGHT,
            dml_weight: DML_WEIGHT,
        }
    }

    /// Classic KD from the frozen `teacher` at the default temperature and weight.
    pub fn kd(teacher: impl Into<PathBuf>) -> Self {
        Self {
            mode: DistillMode::Kd,
            ..Self::dml(teacher)
        }
    }

    /// The weights' ranges (those of the other mode are not used, and not checked).
    pub fn validate(&self) -> Result<(), TrainError> {
        match self.mode {
            DistillMode::Dml => {
                if !(self.dml_weight.is_finite() && self.dml_weight >= 0.0) {
                    return Err(TrainError::bad_option(
                        "--dml-weight",
                        "must be a number >= 0",
                    ));
                }
            }
            DistillMode::Kd => {
                if !(self.temperature.is_finite() && self.temperature > 0.0) {
                    return Err(TrainError::bad_option(
                        "--temperature",
                        "must be a positive number",
                    ));
                }
                if !(0.0..=1.0).contains(&self.kd_weight) {
                    return Err(TrainError::bad_option("--kd-weight", "must be in [0, 1]"));
                }
            }
        }
        Ok(())
    }

    /// "DML with teacher.pdparams (KL weight 1)", "KD from m.safetensors (T 4, weight 0.5)".
    pub fn describe(&self) -> String {
        let name = self.teacher_path.file_name().map_or_else(
            || self.teacher.clone(),
            |n| n.to_string_lossy().into_owned(),
        );
        match self.mode {
            DistillMode::Dml => format!("DML with {name} (KL weight {})", self.dml_weight),
            DistillMode::Kd => format!(
                "KD from {name} (T {}, weight {})",
                self.temperature, self.kd_weight
            ),
        }
    }
}

/// What a run says as it goes.
#[derive(Clone, Debug)]
pub enum JobEvent {
    /// The dataset after the probe of every clip (before any feature is extracted).
    Summary {
        data: PathBuf,
        notes: Vec<String>,
        summary: DatasetSummary,
        /// Clips that cannot be decoded (listed and skipped).
        broken: Vec<(PathBuf, String)>,
    },
    /// One clip's features are ready (decoded or taken from the cache).
    Extract {
        done: usize,
        total: usize,
        cached: bool,
        path: PathBuf,
    },
    /// Every clip's features are ready.
    Extracted {
        decoded: usize,
        cached: usize,
        elapsed_s: f64,
        /// Clips that failed while their features were extracted.
        broken: Vec<(PathBuf, String)>,
    },
    /// A step, epoch or done event (as written to `metrics.jsonl`).
    Train(TrainEvent),
    /// A resumed run's events so far (its `metrics.jsonl` up to the checkpoint it continues
    /// from), sent once before its first new step, so that curves can show the whole run.
    History(Vec<TrainEvent>),
    /// The model and the report are written.
    Report {
        /// `report.txt`: top-1/top-5, the confusion matrix, per-class accuracy.
        text: String,
        /// `confusion.csv`.
        confusion_csv: String,
        class_names: Vec<String>,
        model_path: PathBuf,
        run_dir: PathBuf,
    },
}

/// How a run of either kind ended.
#[derive(Clone, Debug)]
pub struct TrainOutcome {
    pub run_dir: PathBuf,
    /// Stopped by the cancel token: no model was written (a full run saved `latest`).
    pub cancelled: bool,
    /// `<run_dir>/model.safetensors`.
    pub model_path: Option<PathBuf>,
    /// The `output` copy if there was one, else the model path.
    pub output: Option<PathBuf>,
    pub epochs_done: usize,
    pub best_val_top1: Option<f64>,
    pub class_names: Vec<String>,
    pub num_seg: usize,
}

/// The dataset as training would see it: classes, the split, the clips that cannot be
/// decoded, the class table.
#[derive(Clone, Debug)]
pub struct DataCheck {
    pub dataset: Dataset,
    pub train: Vec<Sample>,
    pub val: Vec<Sample>,
    pub broken: Vec<(PathBuf, String)>,
    pub summary: DatasetSummary,
}

impl DataCheck {
    /// The first class without training clips, if any.
    pub fn empty_class(&self) -> Option<&str> {
        self.summary
            .classes
            .iter()
            .find(|c| c.train == 0)
            .map(|c| c.name.as_str())
    }
}
