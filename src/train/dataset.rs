//! What `kineto train DATA` reads: a folder of class folders (also the layout a labelling
//! project exports), or a PaddleVideo list file (`path label_id` per line, paths relative to
//! the list file) with class names from `--labels` (else `class_<id>`). Plus the seeded
//! stratified split, an explicit validation set, the class summary, and a quick probe of every
//! clip so that broken files are listed and skipped before training starts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rayon::prelude::*;
use serde::Serialize;

use super::TrainError;
use crate::files::{Found, Walk, is_hidden, walk};
use crate::infer::batch::{clip_of, is_clip_file, is_video_file};
use crate::labels::read_label_file;
use crate::video::VideoError;
use crate::video::probe::probe;
use crate::video::rawframes::{FrameFolder, FrameNames};

/// One training clip.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Sample {
    pub path: PathBuf,
    pub label: usize,
}

/// Where a dataset came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatasetSource {
    /// One folder per class (the class is the folder's name).
    ClassFolders { root: PathBuf },
    /// A PaddleVideo list file, with the label file that named the classes (if any).
    ListFile {
        path: PathBuf,
        labels: Option<PathBuf>,
    },
}

impl DatasetSource {
    /// The folder or list file.
    pub fn path(&self) -> &Path {
        match self {
            DatasetSource::ClassFolders { root } => root,
            DatasetSource::ListFile { path, .. } => path,
        }
    }
}

/// Classes and clips. `items` are sorted by (label, path); `classes[label]` names a label.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub classes: Vec<String>,
    pub items: Vec<Sample>,
    pub source: DatasetSource,
    /// Things the user should know that are not errors (ignored files, classes without clips
    /// in a list file), one line each.
    pub notes: Vec<String>,
    /// Clips known unreadable before decoding, with the problem: a frame folder with fewer
    /// images than its list line says. Only when missing clips are kept (evaluation), which
    /// reports them as broken; otherwise the line is an error.
    pub unreadable: Vec<(PathBuf, String)>,
}

impl Dataset {
    /// A folder of class folders, or a list file. `labels` names the classes of a list file;
    /// for class folders it fixes the order of the classes (every folder must be in it).
    pub fn open(data: &Path, labels: Option<&Path>) -> Result<Self, TrainError> {
        if data.is_dir() {
            Self::from_class_folders(data, labels)
        } else if data.is_file() {
            Self::from_list_file(data, labels)
        } else {
            Err(TrainError::NotFound {
                path: data.to_path_buf(),
            })
        }
    }

    /// One folder per class under `root`; videos are found recursively in each class folder.
    /// Classes are sorted by name unless `labels` gives the order. Video files directly in
    /// `root` are ignored (with a note); folders whose name starts with `.` are skipped.
    pub fn from_class_folders(root: &Path, labels: Option<&Path>) -> Result<Self, TrainError> {
        let dataset = Self::read_class_folders(root, labels)?;
        dataset.check_class_count()?;
        Ok(dataset)
    }

    /// [`Dataset::from_class_folders`] without requiring two classes (a test set may hold
    /// one).
    pub fn read_class_folders(root: &Path, labels: Option<&Path>) -> Result<Self, TrainError> {
        let mut folders = Vec::new();
        let mut loose = 0usize;
        for path in read_dir_sorted(root)? {
            if is_hidden(&path) {
                continue;
            }
            if path.is_dir() {
                folders.push(path);
            } else if is_video_file(&path) {
                loose += 1;
            }
        }
        let mut notes = Vec::new();
        if loose > 0 {
            notes.push(format!(
                "{}: {loose} video file{} directly in the folder ignored (each clip belongs in \
                 its class folder)",
                root.display(),
                if loose == 1 { "" } else { "s" }
            ));
        }
        let mut found: Vec<(String, PathBuf, Vec<PathBuf>)> = Vec::new();
        for folder in folders {
            let name = folder
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut clips = Vec::new();
            let how = Walk {
                wanted: &is_clip_file,
                skip_hidden: true,
                cancel: None,
            };
            for found in walk(&folder, how) {
                match found {
                    Found::File(path) => clips.push(clip_of(&path)),
                    Found::Problem { path, problem } => {
                        notes.push(format!("{}: skipped: {problem}", path.display()))
                    }
                }
            }
            clips.sort();
            found.push((name, folder, clips));
        }
        if found.iter().all(|(_, _, clips)| clips.is_empty()) {
            return Err(TrainError::NoVideos {
                path: root.to_path_buf(),
            });
        }
        if let Some((name, folder, _)) = found.iter().find(|(_, _, clips)| clips.is_empty()) {
            return Err(TrainError::EmptyClass {
                path: folder.clone(),
                class: name.clone(),
            });
        }
        let classes: Vec<String> = match labels {
            None => {
                let mut names: Vec<String> = found.iter().map(|(n, _, _)| n.clone()).collect();
                names.sort();
                names
            }
            Some(file) => {
                let names = read_label_file(file)?;
                if let Some((name, _, _)) = found.iter().find(|(n, _, _)| !names.contains(n)) {
                    return Err(TrainError::Classes {
                        path: file.to_path_buf(),
                        problem: format!("class folder '{name}' is not in the label file"),
                    });
                }
                if let Some(missing) = names
                    .iter()
                    .find(|n| !found.iter().any(|(f, _, _)| f == *n))
                {
                    return Err(TrainError::EmptyClass {
                        path: root.join(missing),
                        class: missing.clone(),
                    });
                }
                names
            }
        };
        let mut items = Vec::new();
        for (name, _, clips) in found {
            let label = classes.iter().position(|c| *c == name).unwrap_or_default();
            items.extend(clips.into_iter().map(|path| Sample { path, label }));
        }
        items.sort();
        Ok(Dataset {
            classes,
            items,
            source: DatasetSource::ClassFolders {
                root: root.to_path_buf(),
            },
            notes,
            unreadable: Vec::new(),
        })
    }

    /// A PaddleVideo list file: `path label_id` per line (the path may contain spaces; the
    /// label is the last field), paths relative to the list file's folder, blank lines
    /// ignored. Class names from `labels`, else `class_<id>` up to the largest id.
    pub fn from_list_file(list: &Path, labels: Option<&Path>) -> Result<Self, TrainError> {
        let dataset = Self::from_list_file_in(list, labels, None, false)?;
        dataset.check_class_count()?;
        Ok(dataset)
    }

    /// [`Dataset::from_list_file`] with its paths relative to `root` when given (else to the
    /// list file's folder), without requiring two classes (a test set may hold one). With
    /// `missing_ok` a clip that does not exist stays in the set (an evaluation reports it as a
    /// broken clip) instead of being an error.
    pub fn from_list_file_in(
        list: &Path,
        labels: Option<&Path>,
        root: Option<&Path>,
        missing_ok: bool,
    ) -> Result<Self, TrainError> {
        let text = crate::files::read_to_string(list).map_err(|e| TrainError::io(list, e))?;
        let base = root.unwrap_or(list.parent().unwrap_or(Path::new(".")));
        let names = labels.map(read_label_file).transpose()?;
        let line_err = |line: usize, problem: String| TrainError::ListLine {
            path: list.to_path_buf(),
            line,
            problem,
        };
        let mut items = Vec::new();
        let mut unreadable = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let entry = raw.trim();
            if entry.is_empty() {
                continue;
            }
            let Some((file, label)) = entry.rsplit_once(char::is_whitespace) else {
                return Err(line_err(
                    line,
                    format!("expected `path label_id`, found {entry:?}"),
                ));
            };
            let (file, label) = (file.trim(), label.trim());
            let label: usize = label.parse().map_err(|_| {
                line_err(
                    line,
                    format!(
                        "label {label:?} is not a non-negative integer (expected `path label_id`)"
                    ),
                )
            })?;
            if let (Some(names), Some(file)) = (&names, labels)
                && label >= names.len()
            {
                return Err(line_err(
                    line,
                    format!(
                        "label {label} is out of range: {} has {} classes (0..{})",
                        file.display(),
                        names.len(),
                        names.len()
                    ),
                ));
            }
            let mut path = base.join(file);
            // PaddleVideo's frame format: `frame_dir num_frames label`.
            if !path.is_file()
                && let Some((dir, n)) = file.rsplit_once(char::is_whitespace)
                && let Ok(listed) = n.trim().parse::<u32>()
            {
                path = base.join(dir.trim());
                if !missing_ok {
                    FrameFolder::open(&path, &FrameNames::detect(&path), Some(listed))
                        .map_err(|e| line_err(line, e.to_string()))?;
                } else if path.is_dir()
                    && let Err(e @ VideoError::FewerFrames { .. }) =
                        FrameFolder::open(&path, &FrameNames::detect(&path), Some(listed))
                {
                    unreadable.push((path.clone(), format!("line {line}: {e}")));
                }
            } else if !missing_ok && !path.is_file() {
                return Err(line_err(line, format!("{}: no such file", path.display())));
            }
            items.push(Sample { path, label });
        }
        if items.is_empty() {
            return Err(TrainError::NoVideos {
                path: list.to_path_buf(),
            });
        }
        let classes = match names {
            Some(names) => names,
            None => {
                let max = items.iter().map(|s| s.label).max().unwrap_or_default();
                (0..=max).map(|i| format!("class_{i}")).collect()
            }
        };
        items.sort();
        let mut dataset = Dataset {
            classes,
            items,
            source: DatasetSource::ListFile {
                path: list.to_path_buf(),
                labels: labels.map(Path::to_path_buf),
            },
            notes: Vec::new(),
            unreadable,
        };
        let counts = dataset.counts();
        let empty: Vec<String> = counts
            .iter()
            .enumerate()
            .filter(|(_, n)| **n == 0)
            .map(|(i, _)| format!("{i} {}", dataset.classes[i]))
            .collect();
        if !empty.is_empty() {
            let shown: Vec<String> = empty.iter().take(5).cloned().collect();
            dataset.notes.push(format!(
                "{}: {} class{} without clips ({}{})",
                list.display(),
                empty.len(),
                if empty.len() == 1 { "" } else { "es" },
                shown.join(", "),
                if empty.len() > shown.len() {
                    ", ..."
                } else {
                    ""
                }
            ));
        }
        Ok(dataset)
    }

    /// UCF-101's official split files: `trainlist01.txt` lines `Class/clip.avi 1` with 1-based
    /// class ids, `testlist01.txt` lines `Class/clip.avi` whose class is the clip's folder;
    /// `class_index` is `classInd.txt` (`1 ApplyEyeMakeup` per line), giving the classes in
    /// order (label = id - 1). Paths are relative to `root` (the `UCF-101` folder), else to the
    /// split file's folder. A clip that does not exist stays in the set (see
    /// [`Dataset::from_list_file_in`]); one class is enough (a test set).
    pub fn from_ucf_split(
        list: &Path,
        class_index: &Path,
        root: Option<&Path>,
    ) -> Result<Self, TrainError> {
        let classes = read_ucf_class_index(class_index)?;
        let text = crate::files::read_to_string(list).map_err(|e| TrainError::io(list, e))?;
        let base = root.unwrap_or(list.parent().unwrap_or(Path::new(".")));
        let line_err = |line: usize, problem: String| TrainError::ListLine {
            path: list.to_path_buf(),
            line,
            problem,
        };
        let by_name = |name: &str| {
            classes
                .iter()
                .position(|c| c == name)
                .or_else(|| classes.iter().position(|c| c.eq_ignore_ascii_case(name)))
        };
        let mut items = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let entry = raw.trim();
            if entry.is_empty() {
                continue;
            }
            let (file, id) = match entry.rsplit_once(char::is_whitespace) {
                Some((file, id)) if id.trim().parse::<usize>().is_ok() => {
                    (file.trim(), id.trim().parse::<usize>().ok())
                }
                _ => (entry, None),
            };
            let folder = Path::new(file)
                .parent()
                .and_then(Path::file_name)
                .map(|f| f.to_string_lossy().into_owned());
            let from_folder = folder.as_deref().and_then(by_name);
            let label = match (id, from_folder) {
                (Some(0), _) => {
                    return Err(line_err(
                        line,
                        "class id 0: UCF-101's ids start at 1 (a 0-based PaddleVideo list is \
                         read without --class-index)"
                            .into(),
                    ));
                }
                (Some(id), _) if id > classes.len() => {
                    return Err(line_err(
                        line,
                        format!(
                            "class id {id} is out of range: {} has {} classes (1..={})",
                            class_index.display(),
                            classes.len(),
                            classes.len()
                        ),
                    ));
                }
                (Some(id), Some(named)) if named != id - 1 => {
                    return Err(line_err(
                        line,
                        format!(
                            "class id {id} ({}) but the clip's folder is {}",
                            classes[id - 1],
                            folder.unwrap_or_default()
                        ),
                    ));
                }
                (Some(id), _) => id - 1,
                (None, Some(label)) => label,
                (None, None) => {
                    return Err(line_err(
                        line,
                        match folder {
                            Some(f) => format!(
                                "no class id, and the clip's folder {f:?} is not a class of {}",
                                class_index.display()
                            ),
                            None => format!(
                                "no class id and no class folder in {file:?} (expected \
                                 `Class/clip.avi [id]`)"
                            ),
                        },
                    ));
                }
            };
            items.push(Sample {
                path: base.join(file),
                label,
            });
        }
        if items.is_empty() {
            return Err(TrainError::NoVideos {
                path: list.to_path_buf(),
            });
        }
        items.sort();
        Ok(Dataset {
            classes,
            items,
            source: DatasetSource::ListFile {
                path: list.to_path_buf(),
                labels: Some(class_index.to_path_buf()),
            },
            notes: Vec::new(),
            unreadable: Vec::new(),
        })
    }

    /// Clips per class, indexed by label.
    pub fn counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for s in &self.items {
            if let Some(c) = counts.get_mut(s.label) {
                *c += 1;
            }
        }
        counts
    }

    fn check_class_count(&self) -> Result<(), TrainError> {
        let with_clips: Vec<&str> = self
            .counts()
            .iter()
            .zip(&self.classes)
            .filter(|(n, _)| **n > 0)
            .map(|(_, c)| c.as_str())
            .collect();
        if with_clips.len() < 2 {
            return Err(TrainError::TooFewClasses {
                path: self.source.path().to_path_buf(),
                found: with_clips.len(),
                names: with_clips.join(", "),
            });
        }
        Ok(())
    }
}

/// UCF-101's `classInd.txt`: `1 ApplyEyeMakeup` per line, ids from 1 in order.
pub fn read_ucf_class_index(path: &Path) -> Result<Vec<String>, TrainError> {
    let text = crate::files::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    let mut names = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let entry = raw.trim();
        if entry.is_empty() {
            continue;
        }
        let parsed = entry
            .split_once(char::is_whitespace)
            .and_then(|(id, name)| Some((id.parse::<usize>().ok()?, name.trim())));
        match parsed {
            Some((id, name)) if id == names.len() + 1 && !name.is_empty() => {
                names.push(name.to_string())
            }
            _ => {
                return Err(TrainError::ListLine {
                    path: path.to_path_buf(),
                    line: i + 1,
                    problem: format!(
                        "expected `{} ClassName` (ids from 1, in order), found {entry:?}",
                        names.len() + 1
                    ),
                });
            }
        }
    }
    if names.is_empty() {
        return Err(TrainError::Classes {
            path: path.to_path_buf(),
            problem: "no classes (expected `1 ClassName` per line)".into(),
        });
    }
    Ok(names)
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, TrainError> {
    let entries = std::fs::read_dir(dir).map_err(|e| TrainError::io(dir, e))?;
    let mut paths = Vec::new();
    for entry in entries {
        paths.push(entry.map_err(|e| TrainError::io(dir, e))?.path());
    }
    paths.sort();
    Ok(paths)
}

/// A seeded split into (train, val), per class: `round(n * val_fraction)` clips of a class go
/// to val, at least one when the class has 2 or more clips and never all of them (a class with
/// one clip stays in train). `val_fraction` <= 0 gives no validation set; it is capped at 0.9.
/// The same dataset and seed always give the same split; both halves keep the dataset's order.
pub fn split_stratified(
    dataset: &Dataset,
    val_fraction: f64,
    seed: u64,
) -> (Vec<Sample>, Vec<Sample>) {
    if val_fraction.is_nan() || val_fraction <= 0.0 {
        return (dataset.items.clone(), Vec::new());
    }
    let fraction = val_fraction.min(0.9);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut by_class: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, s) in dataset.items.iter().enumerate() {
        by_class.entry(s.label).or_default().push(i);
    }
    let mut in_val = vec![false; dataset.items.len()];
    for indices in by_class.values_mut() {
        let n = indices.len();
        if n < 2 {
            continue;
        }
        let k = ((n as f64 * fraction).round() as usize).clamp(1, n - 1);
        indices.shuffle(&mut rng);
        for &i in indices.iter().take(k) {
            in_val[i] = true;
        }
    }
    let mut train = Vec::new();
    let mut val = Vec::new();
    for (s, v) in dataset.items.iter().zip(in_val) {
        if v {
            val.push(s.clone());
        } else {
            train.push(s.clone());
        }
    }
    (train, val)
}

/// A separate validation set: its classes are matched to the training set's by name (its
/// labels are renumbered to the training set's ids). A validation class the training set
/// lacks is an error; training classes missing from it simply have no validation clips.
pub fn split_explicit(
    train: &Dataset,
    val: &Dataset,
) -> Result<(Vec<Sample>, Vec<Sample>), TrainError> {
    let counts = val.counts();
    let mut map = vec![None; val.classes.len()];
    for (i, name) in val.classes.iter().enumerate() {
        match train.classes.iter().position(|c| c == name) {
            Some(j) => map[i] = Some(j),
            None if counts.get(i).copied().unwrap_or(0) == 0 => {}
            None => {
                return Err(TrainError::Classes {
                    path: val.source.path().to_path_buf(),
                    problem: format!(
                        "validation class '{name}' is not a class of the training data ({})",
                        train.source.path().display()
                    ),
                });
            }
        }
    }
    let val_items = val
        .items
        .iter()
        .filter_map(|s| {
            map.get(s.label).copied().flatten().map(|label| Sample {
                path: s.path.clone(),
                label,
            })
        })
        .collect();
    Ok((train.items.clone(), val_items))
}

/// Clips per class in the training and validation halves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClassCount {
    pub label: usize,
    pub name: String,
    pub train: usize,
    pub val: usize,
}

/// The class table `kineto train` shows before it starts (and the app's Train tab).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DatasetSummary {
    pub classes: Vec<ClassCount>,
    pub train: usize,
    pub val: usize,
}

impl DatasetSummary {
    pub fn new(classes: &[String], train: &[Sample], val: &[Sample]) -> Self {
        let mut rows: Vec<ClassCount> = classes
            .iter()
            .enumerate()
            .map(|(label, name)| ClassCount {
                label,
                name: name.clone(),
                train: 0,
                val: 0,
            })
            .collect();
        for s in train {
            if let Some(r) = rows.get_mut(s.label) {
                r.train += 1;
            }
        }
        for s in val {
            if let Some(r) = rows.get_mut(s.label) {
                r.val += 1;
            }
        }
        DatasetSummary {
            classes: rows,
            train: train.len(),
            val: val.len(),
        }
    }

    /// An aligned table: `id  class  train  val`, then a total line.
    pub fn to_text(&self) -> String {
        let total = format!("{} classes", self.classes.len());
        let width = self
            .classes
            .iter()
            .map(|c| c.name.chars().count())
            .chain([5, total.chars().count()])
            .max()
            .unwrap_or(5);
        let id_width = self
            .classes
            .len()
            .saturating_sub(1)
            .to_string()
            .len()
            .max(2);
        let mut out = format!(
            "{:>id_width$}  {:<width$}  {:>6}  {:>6}\n",
            "id", "class", "train", "val"
        );
        for c in &self.classes {
            out.push_str(&format!(
                "{:>id_width$}  {:<width$}  {:>6}  {:>6}\n",
                c.label, c.name, c.train, c.val
            ));
        }
        out.push_str(&format!(
            "{:>id_width$}  {:<width$}  {:>6}  {:>6}\n",
            "", total, self.train, self.val
        ));
        out
    }
}

impl std::fmt::Display for DatasetSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_text())
    }
}

/// Probe every clip (a demux-only pass, in parallel; a panic counts as a failure) and split
/// them into the decodable ones and the broken ones with the problem (without the path
/// prefix). `on_progress(done, total)` is called after each clip, from worker threads. Both
/// lists keep the input order.
pub fn check_decodable(
    samples: &[Sample],
    on_progress: impl Fn(usize, usize) + Sync,
) -> (Vec<Sample>, Vec<(PathBuf, String)>) {
    let total = samples.len();
    let done = AtomicUsize::new(0);
    let results: Vec<Result<(), String>> = samples
        .par_iter()
        .map(|s| {
            let r = match std::panic::catch_unwind(|| {
                if s.path.is_dir() {
                    FrameFolder::open(&s.path, &FrameNames::detect(&s.path), None)
                        .map(|f| f.info().clone())
                } else {
                    probe(&s.path)
                }
            }) {
                Ok(Ok(info)) if info.frame_count > 0 => Ok(()),
                Ok(Ok(_)) => Err("video stream has no frames".to_string()),
                Ok(Err(e)) => Err(strip_path(&e.to_string(), &s.path)),
                Err(_) => Err("the video reader crashed on this file".to_string()),
            };
            on_progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
            r
        })
        .collect();
    let mut ok = Vec::new();
    let mut broken = Vec::new();
    for (s, r) in samples.iter().zip(results) {
        match r {
            Ok(()) => ok.push(s.clone()),
            Err(problem) => broken.push((s.path.clone(), problem)),
        }
    }
    (ok, broken)
}

fn strip_path(message: &str, path: &Path) -> String {
    let prefix = format!("{}: ", path.display());
    message.strip_prefix(&prefix).unwrap_or(message).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::synth::{ClipSpec, Codec, Container, synth_clip};

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("kineto-dataset-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        d
    }

    fn touch(path: &Path) {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(path, b"x").unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }

    fn write(path: &Path, text: &str) {
        std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }

    /// classes b (3 clips, one nested), a (2), c (5, one with an upper-case extension).
    fn folders(tag: &str) -> PathBuf {
        let root = tmpdir(tag);
        for f in [
            "b/1.mp4",
            "b/2.avi",
            "b/sub/3.mkv",
            "a/1.webm",
            "a/2.mp4",
            "c/1.mp4",
            "c/2.mp4",
            "c/3.MOV",
            "c/4.mp4",
            "c/5.mp4",
        ] {
            touch(&root.join(f));
        }
        touch(&root.join("b/notes.txt"));
        touch(&root.join("c/.hidden/x.mp4"));
        root
    }

    #[test]
    fn class_folders_sorted_recursive_and_loose_files_noted() {
        let root = folders("folders");
        touch(&root.join("loose.mp4"));
        write(&root.join("readme.txt"), "hi");
        let d = Dataset::open(&root, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.classes, ["a", "b", "c"]);
        assert_eq!(d.counts(), [2, 3, 5]);
        assert!(
            d.items
                .iter()
                .any(|s| s.path.ends_with("b/sub/3.mkv") && s.label == 1)
        );
        assert!(
            d.items
                .iter()
                .any(|s| s.path.ends_with("c/3.MOV") && s.label == 2)
        );
        assert!(!d.items.iter().any(|s| s.path.ends_with("notes.txt")));
        assert!(
            !d.items
                .iter()
                .any(|s| s.path.to_string_lossy().contains(".hidden"))
        );
        assert!(d.items.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(d.notes.len(), 1, "{:?}", d.notes);
        assert!(d.notes[0].contains("1 video file"), "{:?}", d.notes);
        assert_eq!(d.source, DatasetSource::ClassFolders { root: root.clone() });
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn class_folder_errors() {
        let root = tmpdir("folder-errors");
        // Nothing at all.
        let e = Dataset::open(&root, None).err().map(|e| e.to_string());
        assert!(
            e.as_deref().is_some_and(|e| e.contains("no videos found")),
            "{e:?}"
        );
        // Folders without videos.
        touch(&root.join("a/readme.txt"));
        let e = Dataset::open(&root, None).err();
        assert!(matches!(e, Some(TrainError::NoVideos { .. })), "{e:?}");
        // One class.
        touch(&root.join("b/1.mp4"));
        let e = Dataset::open(&root, None).err().map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("class 'a' has no videos")),
            "{e:?}"
        );
        std::fs::remove_dir_all(root.join("a")).unwrap_or_else(|e| panic!("{e}"));
        let e = Dataset::open(&root, None).err();
        match e {
            Some(e @ TrainError::TooFewClasses { .. }) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("needs at least 2 classes, found 1 (b)"),
                    "{msg}"
                );
                assert!(msg.starts_with(&root.display().to_string()), "{msg}");
            }
            other => panic!("{other:?}"),
        }
        // Missing path.
        let e = Dataset::open(&root.join("nope"), None).err();
        assert!(matches!(e, Some(TrainError::NotFound { .. })), "{e:?}");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn class_folders_with_a_label_file_follow_its_order() {
        let root = folders("folder-labels");
        let labels = root.join("labels.txt");
        write(&labels, "c\na\nb\n");
        let d = Dataset::open(&root, Some(&labels)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.classes, ["c", "a", "b"]);
        assert_eq!(d.counts(), [5, 2, 3]);
        write(&labels, "c\na\n");
        let e = Dataset::open(&root, Some(&labels))
            .err()
            .map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("'b' is not in the label file")),
            "{e:?}"
        );
        write(&labels, "c\na\nb\nd\n");
        let e = Dataset::open(&root, Some(&labels)).err();
        assert!(
            matches!(&e, Some(TrainError::EmptyClass { class, .. }) if class == "d"),
            "{e:?}"
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn list_file_with_and_without_labels() {
        let root = tmpdir("list");
        for f in ["v/a 1.mp4", "v/b.mp4", "v/c.avi", "v/d.mp4"] {
            touch(&root.join(f));
        }
        let list = root.join("train.list");
        write(
            &list,
            "v/a 1.mp4 0\n\nv/b.mp4 2\n  v/c.avi   2  \nv/d.mp4 0\n",
        );
        let d = Dataset::open(&list, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.classes, ["class_0", "class_1", "class_2"]);
        assert_eq!(d.counts(), [2, 0, 2]);
        assert!(d.items.iter().any(|s| s.path == root.join("v/a 1.mp4")));
        assert!(
            d.notes
                .iter()
                .any(|n| n.contains("1 class without clips (1 class_1)")),
            "{:?}",
            d.notes
        );
        let labels = root.join("labels.txt");
        write(&labels, "0 walk\n1 run\n2 jump\n");
        let d = Dataset::open(&list, Some(&labels)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.classes, ["walk", "run", "jump"]);
        assert_eq!(
            d.source,
            DatasetSource::ListFile {
                path: list.clone(),
                labels: Some(labels.clone())
            }
        );
        // Out of range of the label file.
        write(&labels, "walk\nrun\n");
        let e = Dataset::open(&list, Some(&labels)).err();
        match e {
            Some(e @ TrainError::ListLine { line: 3, .. }) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("train.list: line 3: label 2 is out of range"),
                    "{msg}"
                );
                assert!(msg.contains("has 2 classes"), "{msg}");
            }
            other => panic!("{other:?}"),
        }
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn list_file_errors_name_the_line() {
        let root = tmpdir("list-errors");
        touch(&root.join("a.mp4"));
        touch(&root.join("b.mp4"));
        let list = root.join("l.txt");
        let cases = [
            ("a.mp4 0\nb.mp4\n", 2, "expected `path label_id`"),
            ("a.mp4 0\nb.mp4 x\n", 2, "is not a non-negative integer"),
            ("a.mp4 0\nb.mp4 -1\n", 2, "is not a non-negative integer"),
            ("a.mp4 0\n\nmissing.mp4 1\n", 3, "missing.mp4: no such file"),
        ];
        for (text, line, want) in cases {
            write(&list, text);
            let e = Dataset::open(&list, None).err();
            match e {
                Some(e @ TrainError::ListLine { line: l, .. }) if l == line => {
                    let msg = e.to_string();
                    assert!(msg.contains(want), "{text:?}: {msg}");
                    assert!(msg.contains(&format!("l.txt: line {line}: ")), "{msg}");
                    assert!(!msg.contains('\n'));
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
        write(&list, "a.mp4 1\nb.mp4 1\n");
        let e = Dataset::open(&list, None).err();
        assert!(
            matches!(e, Some(TrainError::TooFewClasses { found: 1, .. })),
            "{e:?}"
        );
        write(&list, "\n\n");
        let e = Dataset::open(&list, None).err();
        assert!(matches!(e, Some(TrainError::NoVideos { .. })), "{e:?}");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn ucf_split_files_and_their_errors_name_the_line() {
        let root = tmpdir("ucf");
        let index = root.join("classInd.txt");
        write(&index, "1 ApplyEyeMakeup\n2 Archery\n3 YoYo\n");
        assert_eq!(
            read_ucf_class_index(&index).unwrap(),
            ["ApplyEyeMakeup", "Archery", "YoYo"]
        );
        let list = root.join("testlist01.txt");
        let open = |text: &str| {
            write(&list, text);
            Dataset::from_ucf_split(&list, &index, None)
        };
        let set = open("Archery/v_Archery_g01_c01.avi\nApplyEyeMakeup/v_a.avi 1\nyoyo/v_y.avi\n")
            .unwrap();
        let labels: Vec<(String, usize)> = set
            .items
            .iter()
            .map(|s| {
                (
                    s.path.strip_prefix(&root).unwrap().display().to_string(),
                    s.label,
                )
            })
            .collect();
        assert_eq!(
            labels,
            [
                ("ApplyEyeMakeup/v_a.avi".to_string(), 0),
                ("Archery/v_Archery_g01_c01.avi".to_string(), 1),
                ("yoyo/v_y.avi".to_string(), 2),
            ]
        );
        for (text, words) in [
            ("Archery/a.avi 0\nYoYo/b.avi 3\n", "line 1: class id 0"),
            (
                "Archery/a.avi 2\nYoYo/b.avi 4\n",
                "line 2: class id 4 is out of range",
            ),
            (
                "Archery/a.avi 1\n",
                "class id 1 (ApplyEyeMakeup) but the clip's folder is Archery",
            ),
            (
                "Archery/a.avi\nBowling/b.avi\n",
                "line 2: no class id, and the clip's folder",
            ),
            ("a.avi\n", "no class id and no class folder"),
        ] {
            let e = open(text).unwrap_err().to_string();
            assert!(e.contains(words), "{text:?}: {e}");
        }
        write(&index, "0 ApplyEyeMakeup\n");
        let e = read_ucf_class_index(&index).unwrap_err().to_string();
        assert!(e.contains("line 1: expected `1 ClassName`"), "{e}");
        let _ = std::fs::remove_dir_all(&root);
    }

    fn synthetic(counts: &[usize]) -> Dataset {
        let mut items = Vec::new();
        for (label, &n) in counts.iter().enumerate() {
            for k in 0..n {
                items.push(Sample {
                    path: PathBuf::from(format!("c{label}/{k:03}.mp4")),
                    label,
                });
            }
        }
        Dataset {
            classes: (0..counts.len()).map(|i| format!("c{i}")).collect(),
            items,
            source: DatasetSource::ClassFolders {
                root: PathBuf::from("data"),
            },
            notes: Vec::new(),
            unreadable: Vec::new(),
        }
    }

    #[test]
    fn stratified_split_is_seeded_per_class_and_complete() {
        let d = synthetic(&[10, 2, 1, 7, 40]);
        let (train, val) = split_stratified(&d, 0.2, 42);
        let summary = DatasetSummary::new(&d.classes, &train, &val);
        let per_class: Vec<(usize, usize)> =
            summary.classes.iter().map(|c| (c.train, c.val)).collect();
        assert_eq!(per_class, [(8, 2), (1, 1), (1, 0), (6, 1), (32, 8)]);
        assert_eq!((summary.train, summary.val), (48, 12));
        // Every clip exactly once.
        let mut all: Vec<Sample> = train.iter().chain(&val).cloned().collect();
        all.sort();
        assert_eq!(all, d.items);
        // Deterministic; another seed picks other clips.
        assert_eq!(split_stratified(&d, 0.2, 42), (train.clone(), val.clone()));
        let (_, val2) = split_stratified(&d, 0.2, 43);
        assert_ne!(val, val2);
        // No validation, and a capped fraction.
        assert_eq!(split_stratified(&d, 0.0, 1), (d.items.clone(), Vec::new()));
        let (t, _) = split_stratified(&d, 1.0, 1);
        let s = DatasetSummary::new(&d.classes, &t, &[]);
        assert!(s.classes.iter().all(|c| c.train >= 1), "{s}");
    }

    #[test]
    fn explicit_val_matches_classes_by_name() {
        let train = synthetic(&[3, 3, 3]);
        let mut val = synthetic(&[1, 2]);
        // Val's class c0 is train's c2, c1 is c0.
        val.classes = vec!["c2".into(), "c0".into()];
        let (t, v) = split_explicit(&train, &val).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t, train.items);
        let labels: Vec<usize> = v.iter().map(|s| s.label).collect();
        assert_eq!(labels, [2, 0, 0]);
        val.classes = vec!["c2".into(), "zebra".into()];
        let e = split_explicit(&train, &val).err().map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("validation class 'zebra' is not a class")),
            "{e:?}"
        );
    }

    #[test]
    fn summary_text_is_aligned() {
        let d = synthetic(&[3, 2]);
        let (train, val) = split_stratified(&d, 0.5, 0);
        let text = DatasetSummary::new(&d.classes, &train, &val).to_text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines[0].contains("class") && lines[0].contains("train") && lines[0].contains("val")
        );
        assert!(lines[1].contains("c0"), "{text}");
        assert!(lines[3].contains("2 classes"), "{text}");
        assert!(lines.iter().all(|l| l.len() == lines[0].len()), "{text}");
    }

    #[test]
    fn check_decodable_lists_broken_clips() {
        let root = tmpdir("decodable");
        let good = root.join("good.mp4");
        synth_clip(
            &good,
            &ClipSpec {
                width: 64,
                height: 48,
                ..ClipSpec::new(Container::Mp4, Codec::H264, 10)
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let text = root.join("text.mp4");
        write(&text, "not a video\n");
        let samples = vec![
            Sample {
                path: text.clone(),
                label: 0,
            },
            Sample {
                path: good.clone(),
                label: 1,
            },
            Sample {
                path: root.join("gone.mp4"),
                label: 1,
            },
        ];
        let calls = AtomicUsize::new(0);
        let (ok, broken) = check_decodable(&samples, |done, total| {
            assert!((1..=total).contains(&done) && total == 3);
            calls.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(calls.load(Ordering::Relaxed), 3);
        assert_eq!(ok, [samples[1].clone()]);
        assert_eq!(broken.len(), 2, "{broken:?}");
        assert_eq!(broken[0].0, text);
        assert_eq!(broken[1].0, root.join("gone.mp4"));
        for (p, problem) in &broken {
            assert!(!problem.is_empty() && !problem.contains('\n'), "{problem}");
            assert!(!problem.starts_with(&p.display().to_string()), "{problem}");
        }
        let _ = std::fs::remove_dir_all(&root);
    }
}
