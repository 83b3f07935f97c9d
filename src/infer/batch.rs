//! Many files: expand folders, decode the next clip on a worker while the current one runs on
//! the model (a bounded queue of two prepared clips), records in input order.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;

use super::classify::{Sampling, classify_prepared, prepare};
use super::engine::Engine;
use crate::files::{Walk, walk};
use crate::progress::{CancelToken, panic_text};
use crate::report::ClassifyRecord;

/// File extensions taken from folders (any case). Files named explicitly are always taken.
pub const VIDEO_EXTENSIONS: &[&str] = &[
    "mp4", "m4v", "mov", "avi", "mkv", "webm", "mpg", "mpeg", "wmv", "flv", "3gp", "ts",
];

pub fn is_video_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| VIDEO_EXTENSIONS.iter().any(|v| v.eq_ignore_ascii_case(e)))
}

/// Files and folders -> the files to classify: folders recursively (video extensions only,
/// each folder and clip once however links loop), everything sorted and de-duplicated. A path
/// that does not exist, or that is not a regular file, stays in the list, so that it becomes
/// an error row rather than vanishing (or blocking, for a FIFO).
pub fn expand_inputs(inputs: &[PathBuf], cancel: Option<&CancelToken>) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let how = Walk {
                wanted: &is_video_file,
                skip_hidden: false,
                cancel,
            };
            files.extend(walk(input, how).iter().map(|f| f.path().to_path_buf()));
        } else {
            files.push(input.clone());
        }
    }
    files.sort();
    files.dedup();
    files
}

/// Classifies `files` in order, calling `on_record` as each finishes. Decoding of file k+1
/// overlaps inference of file k; a failure (or a panic) in one file becomes its error row.
/// Once `cancel` is set no further file starts; the records finished so far are returned.
pub fn classify_files(
    engine: &Engine,
    files: &[PathBuf],
    sampling: Sampling,
    k: usize,
    labels: &[String],
    cancel: &CancelToken,
    mut on_record: impl FnMut(usize, &ClassifyRecord),
) -> Vec<ClassifyRecord> {
    let (tx, rx) = sync_channel(2);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            for (i, path) in files.iter().enumerate() {
                if cancel.is_cancelled() {
                    break;
                }
                let prepared = catch_unwind(AssertUnwindSafe(|| prepare(path, sampling, false)))
                    .map_err(|p| panic_text(p.as_ref()));
                if tx.send((i, prepared)).is_err() {
                    break;
                }
            }
        });
        let mut records = Vec::with_capacity(files.len());
        for (i, prepared) in rx {
            if cancel.is_cancelled() {
                break;
            }
            let path = &files[i];
            let record = match prepared {
                Ok(Ok(clip)) => classify_prepared(engine, path, clip, k, labels),
                Ok(Err(e)) => ClassifyRecord::failed(path, sampling.num_seg, e.problem(path)),
                Err(panic) => ClassifyRecord::failed(
                    path,
                    sampling.num_seg,
                    format!("internal error while decoding: {panic}"),
                ),
            };
            on_record(i, &record);
            records.push(record);
        }
        records
    })
}
