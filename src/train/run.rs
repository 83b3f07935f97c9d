//! A training run on disk and the pieces every trainer shares: the run folder (settings,
//! `metrics.jsonl`, reports), and PaddleVideo's warm-up + cosine learning-rate schedule.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::TrainError;
use super::metrics::TrainEvent;
use crate::checkpoint::write_file_atomic;

/// PaddleVideo's `CustomWarmupCosineDecay` (`iter_step: True`) on a fractional epoch `e`:
/// linear from `warmup_start` to `cos(warmup_epochs)` during the warm-up, then
/// `base·(cos(π·e/max_epochs) + 1)/2` (no restart after the warm-up).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct WarmupCosine {
    pub warmup_start: f64,
    pub base: f64,
    pub warmup_epochs: f64,
    pub max_epochs: f64,
}

impl WarmupCosine {
    /// The PP-TSMv2 recipe scaled to a run: warm-up = 1/12 of the epochs (10 of 120 upstream);
    /// without `lr`, `cosine_base_lr = 0.01·B/128` and `warmup_start_lr = 0.005·B/128` (the
    /// 8-GPU x 16 setting scaled to the batch size as PaddleVideo's docs say); with `lr`, that
    /// base and half of it as the warm-up start.
    pub fn recipe(epochs: usize, batch_size: usize, lr: Option<f64>) -> Self {
        let base = lr.unwrap_or(0.01 * batch_size as f64 / 128.0);
        Self {
            warmup_start: base / 2.0,
            base,
            warmup_epochs: epochs as f64 / 12.0,
            max_epochs: epochs as f64,
        }
    }

    fn cosine(&self, e: f64) -> f64 {
        self.base * ((std::f64::consts::PI * e / self.max_epochs).cos() + 1.0) / 2.0
    }

    /// The learning rate at fractional epoch `e` (0 at the first iteration; it grows by
    /// 1/iterations-per-epoch after every iteration).
    pub fn lr(&self, e: f64) -> f64 {
        if e < self.warmup_epochs && self.warmup_epochs > 0.0 {
            let end = self.cosine(self.warmup_epochs);
            self.warmup_start + e * (end - self.warmup_start) / self.warmup_epochs
        } else {
            self.cosine(e)
        }
    }
}

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
    let probe = dir.join(format!(".kineto-write-test-{}", std::process::id()));
    File::create(&probe)
        .and_then(|mut f| f.write_all(b"ok"))
        .map_err(unwritable)?;
    let _ = fs::remove_file(&probe);
    Ok(())
}

/// Writes a file of the run atomically.
pub fn write_run_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, TrainError> {
    let path = dir.join(name);
    write_file_atomic(&path, bytes).map_err(|e| TrainError::io(&path, e))?;
    Ok(path)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paddle_schedule_at_120_epochs() {
        // PaddleVideo's 8f config: 0.005 -> cos(10) = 0.0098296 over 10 epochs, then cosine.
        let s = WarmupCosine {
            warmup_start: 0.005,
            base: 0.01,
            warmup_epochs: 10.0,
            max_epochs: 120.0,
        };
        assert!((s.lr(0.0) - 0.005).abs() < 1e-15);
        assert!((s.lr(10.0) - 0.0098296).abs() < 1e-7);
        assert!((s.lr(5.0) - (0.005 + 0.5 * (0.0098296291 - 0.005))).abs() < 1e-8);
        assert!(s.lr(120.0).abs() < 1e-15);
        let r = WarmupCosine::recipe(12, 16, None);
        assert_eq!(r.warmup_epochs, 1.0);
        assert!((r.base - 0.00125).abs() < 1e-15);
        assert!((r.warmup_start - 0.000625).abs() < 1e-15);
    }
}
