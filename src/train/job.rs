//! One head-only training run from start to finish, as a library call that the CLI
//! (`kineto train --head-only`) and the app's Train tab share: check the options and the data,
//! prepare the run folder, load the frozen backbone, probe the clips (broken ones listed and
//! skipped), cache the features, train the classifier, write the model, the confusion matrix
//! and the report. Everything it has to say goes out as [`JobEvent`]s; it never prints.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;

use super::TrainError;
use super::dataset::{
    Dataset, DatasetSummary, Sample, check_decodable, split_explicit, split_stratified,
};
use super::head_only::{
    HeadOnlyOptions, ModelOrigin, cache_key, extract_features, train_head, write_model,
};
use super::metrics::{Evaluation, TrainEvent};
use super::run::{MetricsLog, default_run_dir, prepare_run_dir, write_run_file};
use crate::checkpoint::file::open_checkpoint;
use crate::checkpoint::keys::Role;
use crate::infer::device::{ComputeDevice, DeviceChoice};
use crate::infer::engine::Engine;
use crate::model::Form;
use crate::progress::CancelToken;
use crate::weights::cache::Cache;

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

/// What to train (head-only: frozen backbone, cached features, a new fc).
#[derive(Clone, Debug)]
pub struct TrainJob {
    /// Class folders or a PaddleVideo list file.
    pub data: PathBuf,
    /// A separate validation set; otherwise `val_split` of each class is held out.
    pub val: Option<PathBuf>,
    pub val_split: f64,
    /// Class names of a list file (or the class order of class folders).
    pub labels: Option<PathBuf>,
    /// The start weights as the user named them (recorded in `settings.json`).
    pub weights: String,
    /// The start weights, resolved to a local file.
    pub weights_path: PathBuf,
    /// num_seg; `None`: what the checkpoint's attention fixes, else 8.
    pub frames: Option<usize>,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: Option<f64>,
    pub seed: u64,
    /// `None`: `<data dir>/runs/<UTC time>-<DATA name>` in the default cache location.
    pub run_dir: Option<PathBuf>,
    /// A second copy of the model (it is always written into the run folder).
    pub output: Option<PathBuf>,
    pub device: JobDevice,
    /// Full fine-tuning: the training crop (PaddleVideo: 224; the scale and multi-scale crop
    /// follow as `size·256/224`). Smaller sizes train faster and less well.
    pub size: u32,
    /// Full fine-tuning: PaddleVideo's Mixup (alpha 0.2) on every batch.
    pub mixup: bool,
    /// Full fine-tuning: continue the run in `run_dir` from its `latest` checkpoint (the
    /// options come from its `settings.json`; see [`super::full_job::resume_job`]).
    pub resume: bool,
    /// Full fine-tuning: distillation from a teacher (DML or classic KD); `None`: plain CE.
    pub distill: Option<super::full_job::DistillJob>,
    /// Full fine-tuning: freeze the stem and the first this many stages (0 to
    /// [`super::full::MAX_FREEZE_STAGES`]; 0 trains everything), see [`super::full`].
    pub freeze_stages: usize,
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
            run_dir: None,
            output: None,
            device: JobDevice::Choose {
                choice: DeviceChoice::Cpu,
                threads: 0,
            },
            size: 224,
            mixup: true,
            resume: false,
            distill: None,
            freeze_stages: 0,
        }
    }

    /// The option values that can be checked without touching any file.
    pub fn validate(&self) -> Result<(), TrainError> {
        if self.epochs == 0 || self.batch_size == 0 {
            return Err(TrainError::Invalid(
                "epochs and batch size must be at least 1".into(),
            ));
        }
        if let Some(lr) = self.lr
            && !(lr.is_finite() && lr > 0.0)
        {
            return Err(TrainError::Invalid(
                "the learning rate must be a positive number".into(),
            ));
        }
        if !(0.0..1.0).contains(&self.val_split) {
            return Err(TrainError::Invalid(
                "the validation split must be in [0, 1)".into(),
            ));
        }
        if self.freeze_stages > super::full::MAX_FREEZE_STAGES {
            return Err(TrainError::Invalid(format!(
                "--freeze-stages takes 0 to {} stages, not {}",
                super::full::MAX_FREEZE_STAGES,
                self.freeze_stages
            )));
        }
        if self.frames == Some(0) {
            return Err(TrainError::Invalid("--frames must be at least 1".into()));
        }
        Ok(())
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
    /// The job stopped with an error (sent by the thread that runs the job, not by
    /// [`run_head_only`], which returns it).
    Failed(String),
    /// The job was cancelled (likewise).
    Cancelled,
}

/// How a run ended.
#[derive(Clone, Debug)]
pub struct HeadOnlyOutcome {
    pub run_dir: PathBuf,
    /// Stopped by the cancel token: nothing below was written.
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

/// Opens `data` (and `val`), splits it as a run would.
pub(crate) fn open_split(
    job: &TrainJob,
) -> Result<(Dataset, Vec<Sample>, Vec<Sample>), TrainError> {
    let dataset = Dataset::open(&job.data, job.labels.as_deref())?;
    let (train, val) = match &job.val {
        Some(v) => {
            let val_set = Dataset::open(v, None)?;
            split_explicit(&dataset, &val_set)?
        }
        None => split_stratified(&dataset, job.val_split, job.seed),
    };
    Ok((dataset, train, val))
}

/// Probes every clip and drops the broken ones from both halves.
/// `probe`, then the Summary event; a class left without training clips is an error.
pub(crate) fn probe_and_report(
    job: &TrainJob,
    dataset: Dataset,
    train: Vec<Sample>,
    val: Vec<Sample>,
    on_event: &mut impl FnMut(JobEvent),
) -> Result<DataCheck, TrainError> {
    let check = probe(dataset, train, val);
    on_event(JobEvent::Summary {
        data: job.data.clone(),
        notes: check.dataset.notes.clone(),
        summary: check.summary.clone(),
        broken: check.broken.clone(),
    });
    if let Some(empty) = check.summary.classes.iter().find(|c| c.train == 0) {
        return Err(TrainError::EmptyClass {
            path: job.data.clone(),
            class: empty.name.clone(),
        });
    }
    Ok(check)
}

pub(crate) fn probe(dataset: Dataset, train: Vec<Sample>, val: Vec<Sample>) -> DataCheck {
    let all: Vec<Sample> = train.iter().chain(&val).cloned().collect();
    let (_, broken) = check_decodable(&all, |_, _| {});
    let is_broken = |s: &Sample| broken.iter().any(|(p, _)| *p == s.path);
    let train: Vec<Sample> = train.into_iter().filter(|s| !is_broken(s)).collect();
    let val: Vec<Sample> = val.into_iter().filter(|s| !is_broken(s)).collect();
    let summary = DatasetSummary::new(&dataset.classes, &train, &val);
    DataCheck {
        dataset,
        train,
        val,
        broken,
        summary,
    }
}

/// The data half of a run on its own (the app's "Check data"): open, split, probe.
pub fn check_data(job: &TrainJob) -> Result<DataCheck, TrainError> {
    job.validate()?;
    let (dataset, train, val) = open_split(job)?;
    Ok(probe(dataset, train, val))
}

/// `<data dir>/runs/<UTC time>-<DATA name>`, the data dir being the parent of the weights
/// cache (`cache_dir` as `--cache-dir` gives it, else the default location).
pub fn default_run_dir_for(data: &Path, cache_dir: Option<&Path>) -> Result<PathBuf, TrainError> {
    let cache = Cache::locate(cache_dir).map_err(|e| TrainError::Invalid(e.to_string()))?;
    let data_dir = cache
        .weights_dir()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    Ok(default_run_dir(&data_dir, data))
}

/// The frames per clip of a run: `--frames`, else what the checkpoint's temporal attention
/// fixes, else 8; a `--frames` that the attention does not allow is an error.
pub(crate) fn resolve_num_seg(
    frames: Option<usize>,
    fixed: Option<usize>,
    weights: &Path,
) -> Result<usize, TrainError> {
    match (frames, fixed) {
        (Some(f), Some(t)) if f != t => Err(TrainError::Invalid(format!(
            "{}: this checkpoint's temporal attention fixes num_seg = {t}; --frames {f} cannot be used",
            weights.display()
        ))),
        (Some(0), _) => Err(TrainError::Invalid("--frames must be at least 1".into())),
        (Some(f), _) => Ok(f),
        (None, Some(t)) => Ok(t),
        (None, None) => Ok(8),
    }
}

/// Runs a head-only job (see the module doc). Every check that needs no decoding comes before
/// any decoding. Cancelling stops between clips and epochs and returns an outcome with
/// `cancelled` set (and no model).
pub fn run_head_only(
    job: &TrainJob,
    cancel: &CancelToken,
    mut on_event: impl FnMut(JobEvent),
) -> Result<HeadOnlyOutcome, TrainError> {
    let start = Instant::now();
    job.validate()?;
    if job.distill.is_some() {
        return Err(TrainError::Invalid(
            "distillation needs full fine-tuning; it cannot be used with head-only training".into(),
        ));
    }
    let (dataset, train, val) = open_split(job)?;
    let run_dir = match &job.run_dir {
        Some(d) => d.clone(),
        None => default_run_dir_for(&job.data, None)?,
    };
    prepare_run_dir(&run_dir)?;
    let weights = job.weights_path.clone();
    let device = match &job.device {
        JobDevice::Resolved(d) => d.clone(),
        JobDevice::Choose { choice, threads } => ComputeDevice::resolve(*choice, *threads)
            .map_err(|e| TrainError::Invalid(e.to_string()))?,
    };
    let engine = Engine::load(&weights, Role::Student, Form::Fused, device)
        .map_err(|e| TrainError::Invalid(e.to_string()))?;
    let checkpoint =
        open_checkpoint(&weights, Role::Student).map_err(|e| TrainError::Invalid(e.to_string()))?;
    let num_seg = resolve_num_seg(job.frames, engine.model.arch.num_seg, &weights)?;
    let outcome = |cancelled: bool| HeadOnlyOutcome {
        run_dir: run_dir.clone(),
        cancelled,
        model_path: None,
        output: None,
        epochs_done: 0,
        best_val_top1: None,
        class_names: dataset.classes.clone(),
        num_seg,
    };
    if cancel.is_cancelled() {
        return Ok(outcome(true));
    }

    // Broken clips: a quick probe of every clip, listed and skipped.
    let DataCheck {
        dataset,
        train,
        val,
        mut broken,
        summary,
    } = probe_and_report(job, dataset.clone(), train, val, &mut on_event)?;

    let opts = HeadOnlyOptions {
        epochs: job.epochs,
        batch_size: job.batch_size,
        lr: job.lr,
        seed: job.seed,
        ..HeadOnlyOptions::default()
    };
    let settings = json!({
        "mode": "head_only",
        "data": job.data.display().to_string(),
        "val": job.val.as_ref().map(|v| v.display().to_string()),
        "val_split": if job.val.is_some() { None } else { Some(job.val_split) },
        "labels": job.labels.as_ref().map(|v| v.display().to_string()),
        "weights": job.weights,
        "weights_path": weights.display().to_string(),
        "frames": num_seg,
        "device": format!("{:?}", engine.device),
        "options": opts,
        "classes": dataset.classes,
        "summary": summary,
        "broken": broken.iter().map(|(p, e)| json!({"path": p, "error": e})).collect::<Vec<_>>(),
        "kineto_version": env!("CARGO_PKG_VERSION"),
    });
    let settings_text =
        serde_json::to_string_pretty(&settings).map_err(|e| TrainError::Invalid(e.to_string()))?;
    write_run_file(&run_dir, "settings.json", settings_text.as_bytes())?;
    let mut log = MetricsLog::create(&run_dir)?;

    // Features: decode each clip once (or take it from the run folder's cache).
    let key = cache_key(&engine, &weights, num_seg)?;
    let extracted = extract_features(&engine, &key, &run_dir, &train, &val, cancel, |p| {
        on_event(JobEvent::Extract {
            done: p.done,
            total: p.total,
            cached: p.cached,
            path: p.path.to_path_buf(),
        })
    })?;
    if cancel.is_cancelled() {
        return Ok(outcome(true));
    }
    on_event(JobEvent::Extracted {
        decoded: extracted.decoded,
        cached: extracted.cached,
        elapsed_s: extracted.elapsed_s,
        broken: extracted.broken.clone(),
    });
    broken.extend(extracted.broken.iter().cloned());

    // The classifier.
    let classes = dataset.classes.len();
    let mut log_error = None;
    let result = train_head(
        &extracted.train,
        &extracted.val,
        classes,
        &opts,
        cancel,
        |event| {
            if let Err(e) = log.write(event) {
                log_error.get_or_insert(e);
            }
            on_event(JobEvent::Train(event.clone()));
        },
    )?;
    if let Some(e) = log_error {
        return Err(e);
    }
    if result.cancelled {
        return Ok(HeadOnlyOutcome {
            epochs_done: result.epochs_done,
            ..outcome(true)
        });
    }

    // The model, the confusion matrix, the report.
    let model_path = run_dir.join("model.safetensors");
    let origin = ModelOrigin {
        weights: &weights,
        weights_sha256: &key.weights_sha256,
        data: &job.data,
        epochs: result.epochs_done,
        num_seg,
    };
    write_model(
        &checkpoint,
        &result.head,
        &dataset.classes,
        &origin,
        &model_path,
    )?;
    if let Some(out) = &job.output {
        write_model(&checkpoint, &result.head, &dataset.classes, &origin, out)?;
    }
    let labels_text = dataset.classes.join("\n") + "\n";
    write_run_file(&run_dir, "labels.txt", labels_text.as_bytes())?;
    let preface = if result.val.is_none() {
        "no validation clips: the numbers below are on the training set\n".to_string()
    } else {
        String::new()
    };
    let output = finish_run(
        job,
        RunEnd {
            run_dir: &run_dir,
            classes: &dataset.classes,
            evaluation: result.val.as_ref().unwrap_or(&result.train),
            preface,
            model_path: &model_path,
            epochs: result.epochs_done,
            best_val_top1: result.best_val_top1,
            elapsed_s: start.elapsed().as_secs_f64(),
        },
        &mut log,
        &mut on_event,
    )?;
    Ok(HeadOnlyOutcome {
        model_path: Some(model_path),
        output: Some(output),
        epochs_done: result.epochs_done,
        best_val_top1: result.best_val_top1,
        ..outcome(false)
    })
}

/// How a finished run of either mode ends.
pub(crate) struct RunEnd<'a> {
    pub run_dir: &'a Path,
    pub classes: &'a [String],
    /// Validation (or, without validation clips, training) results.
    pub evaluation: &'a Evaluation,
    /// Lines that go before the report (settings worth restating, caveats).
    pub preface: String,
    pub model_path: &'a Path,
    pub epochs: usize,
    pub best_val_top1: Option<f64>,
    pub elapsed_s: f64,
}

/// Writes `confusion.csv` and `report.txt`, logs and sends the report and the Done event.
/// Returns where the model went (`--output`, else the run's model).
pub(crate) fn finish_run(
    job: &TrainJob,
    end: RunEnd<'_>,
    log: &mut MetricsLog,
    on_event: &mut impl FnMut(JobEvent),
) -> Result<PathBuf, TrainError> {
    let csv = end.evaluation.confusion.to_csv(end.classes);
    write_run_file(end.run_dir, "confusion.csv", csv.as_bytes())?;
    let report = end.preface + &end.evaluation.report(end.classes);
    write_run_file(end.run_dir, "report.txt", report.as_bytes())?;
    on_event(JobEvent::Report {
        text: report,
        confusion_csv: csv,
        class_names: end.classes.to_vec(),
        model_path: end.model_path.to_path_buf(),
        run_dir: end.run_dir.to_path_buf(),
    });
    let output = job
        .output
        .clone()
        .unwrap_or_else(|| end.model_path.to_path_buf());
    let done = TrainEvent::Done {
        output: output.clone(),
        run_dir: end.run_dir.to_path_buf(),
        epochs: end.epochs,
        best_val_top1: end.best_val_top1,
        elapsed_s: end.elapsed_s,
    };
    log.write(&done)?;
    on_event(JobEvent::Train(done));
    Ok(output)
}
