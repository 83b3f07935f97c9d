//! `kineto extract-frames`' library side: a video dataset (class folders or a list file) into
//! PaddleVideo's frame layout: one folder of `img_{:05}.jpg` per clip under `out` (the clip's
//! path relative to the dataset's root, extension dropped), a list file `out/list.txt` with
//! lines `frame_dir num_frames label` (frame_dir relative to `out`, as `FrameDataset` reads it
//! with `data_prefix`) and `out/labels.txt` (`id name`). Clips are extracted in parallel;
//! finished clip folders are kept (resumable), each clip written to a hidden folder and renamed
//! when complete (`video::rawframes::extract_clip`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;

use super::TrainError;
use super::dataset::{Dataset, DatasetSource};
use crate::progress::CancelToken;
use crate::video::rawframes::{ExtractOptions, Extracted, extract_clip};

/// One clip's outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct ExtractRow {
    pub video: PathBuf,
    /// The clip's frame folder, relative to the output folder.
    pub frame_dir: PathBuf,
    pub label: usize,
    /// The frames written (or found), or the problem.
    pub result: Result<Extracted, String>,
}

/// The list file written into the output folder.
pub const LIST_FILE: &str = "list.txt";
/// The class names written into the output folder (`id name` lines).
pub const LABELS_FILE: &str = "labels.txt";

/// Where each clip of `dataset` goes, relative to the output folder.
pub fn frame_dirs(dataset: &Dataset) -> Vec<PathBuf> {
    let root = match &dataset.source {
        DatasetSource::ClassFolders { root } => root.clone(),
        DatasetSource::ListFile { path, .. } => {
            path.parent().map(Path::to_path_buf).unwrap_or_default()
        }
    };
    dataset
        .items
        .iter()
        .map(|s| {
            let rel = s
                .path
                .strip_prefix(&root)
                .map(Path::to_path_buf)
                .unwrap_or_else(|_| s.path.file_name().map(PathBuf::from).unwrap_or_default());
            rel.with_extension("")
        })
        .collect()
}

/// Extracts every clip of `dataset` into `out` on `jobs` threads (`kineto-extract-N`), calling
/// `on_row(done, total, row)` after each clip; then writes `list.txt` (the clips that have
/// frames, in the dataset's order) and `labels.txt`. A clip that fails is one row with its
/// problem; the others go on.
pub fn extract_dataset(
    dataset: &Dataset,
    out: &Path,
    options: &ExtractOptions,
    jobs: usize,
    cancel: Option<&CancelToken>,
    on_row: &(dyn Fn(usize, usize, &ExtractRow) + Sync),
) -> Result<Vec<ExtractRow>, TrainError> {
    std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))?;
    let dirs = frame_dirs(dataset);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs.max(1))
        .thread_name(|i| format!("kineto-extract-{i}"))
        .build()
        .map_err(|e| TrainError::Target {
            path: out.to_path_buf(),
            problem: format!("cannot start the extraction threads: {e}"),
        })?;
    let total = dataset.items.len();
    let done = AtomicUsize::new(0);
    let rows: Vec<ExtractRow> = pool.install(|| {
        dataset
            .items
            .par_iter()
            .zip(dirs.par_iter())
            .with_max_len(1)
            .map(|(sample, dir)| {
                let result = if cancel.is_some_and(|c| c.is_cancelled()) {
                    Err("cancelled".to_string())
                } else {
                    extract_clip(&sample.path, &out.join(dir), options, cancel)
                        .map_err(|e| e.to_string())
                };
                let row = ExtractRow {
                    video: sample.path.clone(),
                    frame_dir: dir.clone(),
                    label: sample.label,
                    result,
                };
                on_row(done.fetch_add(1, Ordering::Relaxed) + 1, total, &row);
                row
            })
            .collect()
    });
    let mut list = String::new();
    for row in &rows {
        if let Ok(x) = &row.result {
            list.push_str(&format!(
                "{} {} {}\n",
                row.frame_dir.display(),
                x.frames,
                row.label
            ));
        }
    }
    write_atomic(&out.join(LIST_FILE), &list)?;
    let labels: String = dataset
        .classes
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{i} {c}\n"))
        .collect();
    write_atomic(&out.join(LABELS_FILE), &labels)?;
    Ok(rows)
}

fn write_atomic(path: &Path, text: &str) -> Result<(), TrainError> {
    let tmp = path.with_extension("txt.tmp");
    std::fs::write(&tmp, text).map_err(|e| TrainError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| TrainError::io(path, e))
}

/// Bytes of the regular files under `path` (the disk a frame dataset takes, less the
/// file system's rounding).
pub fn disk_usage(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_file() {
        return meta.len();
    }
    if !meta.is_dir() {
        return 0;
    }
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| disk_usage(&e.path()))
                .sum()
        })
        .unwrap_or(0)
}
