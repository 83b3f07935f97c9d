//! A run folder and what both job kinds write into it: the folder itself (made and proved
//! writable before any work), atomic run files (`settings.json`, `labels.txt`, ...),
//! `metrics.jsonl` (appended as events happen, trimmed on resume), and the end of a run
//! (`confusion.csv`, `report.txt`, the Report and Done events).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::TrainError;
use serde_json::json;

use super::dataset::DatasetSummary;
use super::metrics::{Evaluation, TrainEvent};
use super::spec::{JobEvent, TrainJob};
use crate::checkpoint::{check_dir_writable, write_file_atomic};

/// A run's settings (`settings.json`).
pub const SETTINGS: &str = "settings.json";
/// A finished run's report.
pub const REPORT: &str = "report.txt";

/// `<data dir>/runs/<UTC timestamp>-<DATA name>` (timestamp `YYYYmmddTHHMMSSZ`).
pub fn default_run_dir(data_dir: &Path, data: &Path) -> PathBuf {
    let stamp: String = crate::weights::cache::now_rfc3339()
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect();
    let name = data
        .file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    data_dir.join("runs").join(format!("{stamp}-{name}"))
}

/// A new run's folder must be new or empty: one that holds files (an earlier run) is refused
/// unless `force`, so that no run silently replaces another's model, checkpoints and log.
pub fn check_fresh_run_dir(dir: &Path, force: bool) -> Result<(), TrainError> {
    let holds_files = fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some());
    if holds_files && !force {
        return Err(TrainError::Target {
            path: dir.to_path_buf(),
            problem: "holds an earlier run; continue it with --resume, choose another --run-dir, \
                      or replace it with --force"
                .into(),
        });
    }
    Ok(())
}

/// Creates the run folder (and parents) and proves it writable, before any work starts.
pub fn prepare_run_dir(dir: &Path) -> Result<(), TrainError> {
    let unwritable = |e: std::io::Error| TrainError::Target {
        path: dir.to_path_buf(),
        problem: format!("cannot write the run folder: {e}"),
    };
    if dir.exists() && !dir.is_dir() {
        return Err(TrainError::Target {
            path: dir.to_path_buf(),
            problem: "is a file, not a folder".into(),
        });
    }
    fs::create_dir_all(dir).map_err(unwritable)?;
    check_dir_writable(dir).map_err(unwritable)
}

/// Writes a file of the run atomically.
pub fn write_run_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, TrainError> {
    let path = dir.join(name);
    write_file_atomic(&path, bytes).map_err(|e| TrainError::io(&path, e))?;
    Ok(path)
}

/// Writes `settings.json`: the job's own `fields` (an object) plus what every run records:
/// the classes, the data summary, the broken clips and the Kineto version.
pub(crate) fn write_settings(
    run_dir: &Path,
    mut fields: serde_json::Value,
    classes: &[String],
    summary: &DatasetSummary,
    broken: &[(PathBuf, String)],
) -> Result<(), TrainError> {
    let path = run_dir.join(SETTINGS);
    let encode = |source| TrainError::Encode {
        path: path.clone(),
        source,
    };
    if let Some(object) = fields.as_object_mut() {
        object.insert(
            "classes".into(),
            serde_json::to_value(classes).map_err(encode)?,
        );
        object.insert(
            "summary".into(),
            serde_json::to_value(summary).map_err(encode)?,
        );
        let broken: Vec<_> = broken
            .iter()
            .map(|(p, e)| json!({"path": p, "error": e}))
            .collect();
        object.insert("broken".into(), json!(broken));
        object.insert("kineto_version".into(), json!(env!("CARGO_PKG_VERSION")));
    }
    let text = serde_json::to_string_pretty(&fields).map_err(encode)?;
    write_run_file(run_dir, SETTINGS, text.as_bytes())?;
    Ok(())
}

/// `metrics.jsonl`: one event per line, appended and flushed as it happens.
pub struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    /// Starts a fresh log (an existing one is replaced).
    pub fn create(dir: &Path) -> Result<Self, TrainError> {
        let path = dir.join("metrics.jsonl");
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| TrainError::io(&path, e))?;
        Ok(Self { path, file })
    }

    /// Continues the log of a resumed run: keeps the lines `keep` accepts (the events up to
    /// the checkpoint the run resumes from; lines that are not JSON are dropped), rewrites the
    /// file atomically, and appends from there.
    ///
    /// Also returns the kept events (those that parse as [`TrainEvent`]s), the run's history.
    pub fn resume(
        dir: &Path,
        keep: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<(Self, Vec<TrainEvent>), TrainError> {
        let path = dir.join("metrics.jsonl");
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(TrainError::io(&path, e)),
        };
        let kept: Vec<&str> = text
            .lines()
            .filter(|line| serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| keep(&v)))
            .collect();
        let history = kept
            .iter()
            .filter_map(|line| serde_json::from_str::<TrainEvent>(line).ok())
            .collect();
        let kept: String = kept.iter().map(|line| format!("{line}\n")).collect();
        write_file_atomic(&path, kept.as_bytes()).map_err(|e| TrainError::io(&path, e))?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| TrainError::io(&path, e))?;
        Ok((Self { path, file }, history))
    }

    pub fn write(&mut self, event: &TrainEvent) -> Result<(), TrainError> {
        let line = event.to_json_line();
        writeln!(self.file, "{line}")
            .and_then(|_| self.file.flush())
            .map_err(|e| TrainError::io(&self.path, e))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `<data dir>/runs/<UTC time>-<DATA name>`, the data dir being the parent of the weights
/// cache (`cache_dir` as `--cache-dir` gives it, else the default location).
pub fn default_run_dir_for(data: &Path, cache_dir: Option<&Path>) -> Result<PathBuf, TrainError> {
    let cache = crate::weights::cache::Cache::locate(cache_dir)?;
    let data_dir = cache
        .weights_dir()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    Ok(default_run_dir(&data_dir, data))
}

/// The job's run folder: the one it names, else a new one in the default place (a resume must
/// name its run).
pub(crate) fn run_dir_of(job: &TrainJob) -> Result<PathBuf, TrainError> {
    match &job.run_dir {
        Some(d) => Ok(d.clone()),
        None if job.resume => Err(TrainError::bad_option("--resume", "needs the run folder")),
        None => default_run_dir_for(&job.data, None),
    }
}

/// How a finished run of either kind ends.
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
    write_run_file(end.run_dir, REPORT, report.as_bytes())?;
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
