//! The labelling project: `kineto-project.json` in the folder the user opened (DESIGN.md,
//! section 8). Clip paths are stored relative to that folder with `/` separators; unknown fields
//! (top level, per clip, and inside the label set, model and prediction objects) are kept and
//! written back; a file from a newer Kineto is refused rather than rewritten.
//!
//! Saving is atomic (`checkpoint::write_file_atomic`). The app saves through `ProjectSaver`, a
//! background thread that writes the latest snapshot, so a burst of edits costs one write.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::segments::{self, ClipSegment, ProposedSegment};
use crate::checkpoint::write_file_atomic;
use crate::progress::{Notify, lock};
use crate::report::Ranked;

/// The `format` value of a project file.
pub const FORMAT: &str = "kineto-project";
/// The newest project `version` this Kineto reads and writes. Version 2 added clips'
/// `segments` (and `duration_s`, `fps`); a version 1 file reads as it is, and is kept as
/// `kineto-project.v1.json` the first time it is opened, before it is written as version 2.
pub const VERSION: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error("{}: cannot {action}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    #[error("{}: invalid JSON at line {line}, column {column}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{}: not a Kineto project (format is {found}, expected \"{FORMAT}\")", path.display())]
    NotAProject { path: PathBuf, found: String },
    #[error(
        "{}: written by a newer Kineto (version {found}); this one reads version {supported}",
        path.display()
    )]
    NewerVersion {
        path: PathBuf,
        found: u64,
        supported: u32,
    },
    #[error("{}: {problem}", path.display())]
    Invalid { path: PathBuf, problem: String },
    #[error(
        "{}: labelled with label set `{project}` ({project_classes} classes), not `{given}` \
         ({given_classes} classes); open it with the same labels or start a new project",
        path.display()
    )]
    LabelSetMismatch {
        path: PathBuf,
        project: String,
        project_classes: usize,
        given: String,
        given_classes: usize,
    },
    #[error("{}: not inside the project folder {}", path.display(), root.display())]
    OutsideRoot { path: PathBuf, root: PathBuf },
    #[error("{}: no clip {index} (the project has {count})", path.display())]
    NoSuchClip {
        path: PathBuf,
        index: usize,
        count: usize,
    },
    #[error("{}: no prediction to accept", path.display())]
    NoPrediction { path: PathBuf },
    #[error(
        "{}: class id {label_id} is out of range (the label set has {classes} classes)",
        path.display()
    )]
    LabelOutOfRange {
        path: PathBuf,
        label_id: usize,
        classes: usize,
    },
    #[error("{}: already exists and differs from {}; not overwritten", path.display(), clip.display())]
    Exists { path: PathBuf, clip: PathBuf },
    #[error("{}: both {first} and {second} would be exported here", path.display())]
    NameCollision {
        path: PathBuf,
        first: String,
        second: String,
    },
    #[error("{}: the export was cancelled ({done} of {total} clips written)", path.display())]
    Cancelled {
        path: PathBuf,
        done: usize,
        total: usize,
    },
}

impl ProjectError {
    fn io(path: impl Into<PathBuf>, action: &'static str, source: io::Error) -> Self {
        Self::Io {
            path: path.into(),
            action,
            source,
        }
    }

    fn parse(path: &Path, err: &serde_json::Error) -> Self {
        let text = err.to_string();
        let suffix = format!(" at line {} column {}", err.line(), err.column());
        let message = text.strip_suffix(&suffix).unwrap_or(&text).to_string();
        Self::Parse {
            path: path.to_path_buf(),
            line: err.line(),
            column: err.column(),
            message,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClipStatus {
    #[default]
    Unlabelled,
    Predicted,
    Accepted,
    Corrected,
}

impl ClipStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unlabelled => "unlabelled",
            Self::Predicted => "predicted",
            Self::Accepted => "accepted",
            Self::Corrected => "corrected",
        }
    }

    /// Accepted or corrected: a label a person confirmed.
    pub fn is_confirmed(self) -> bool {
        matches!(self, Self::Accepted | Self::Corrected)
    }
}

impl std::fmt::Display for ClipStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClipPrediction {
    pub top_k: Vec<Ranked>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProjectClip {
    /// Relative to the project root, `/` separators.
    pub path: String,
    #[serde(default)]
    pub status: ClipStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_id: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction: Option<ClipPrediction>,
    /// Labelled spans of time (version 2), sorted and apart (`labels::segments`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<ClipSegment>,
    /// The clip's length and frame rate, once known (segment exports and frame snapping).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fps: Option<f64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ProjectClip {
    fn new(path: String) -> Self {
        Self {
            path,
            status: ClipStatus::Unlabelled,
            label_id: None,
            label: None,
            updated_at: Some(now_rfc3339()),
            prediction: None,
            segments: Vec::new(),
            duration_s: None,
            fps: None,
            extra: Map::new(),
        }
    }

    /// The top-1 of the stored prediction.
    pub fn predicted_top1(&self) -> Option<&Ranked> {
        self.prediction.as_ref().and_then(|p| p.top_k.first())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelSetRef {
    pub name: String,
    pub labels: Vec<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProjectModel {
    pub weights: String,
    pub frames: usize,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatusCounts {
    pub unlabelled: usize,
    pub predicted: usize,
    pub accepted: usize,
    pub corrected: usize,
}

impl StatusCounts {
    pub fn total(&self) -> usize {
        self.unlabelled + self.predicted + self.accepted + self.corrected
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Project {
    /// The folder holding `kineto-project.json`; clip paths are relative to it.
    #[serde(skip)]
    pub root: PathBuf,
    pub format: String,
    pub version: u32,
    pub label_set: LabelSetRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ProjectModel>,
    /// Shared with the saver's snapshots: cloning a project of 100,000 clips copies pointers
    /// (the window does it on its thread at every save), and a clip is copied on its next
    /// change (`Arc::make_mut`). In the file, a plain list.
    #[serde(default, with = "shared_clips")]
    pub clips: Vec<Arc<ProjectClip>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
    /// What loading had to leave out (a field or a clip that could not be read), one line
    /// each; empty for a sound file.
    #[serde(skip)]
    pub warnings: Vec<String>,
    #[serde(skip)]
    path_index: PathIndex,
    /// The version of the file this was read from, when older than [`VERSION`].
    #[serde(skip)]
    pub migrated_from: Option<u32>,
}

/// Each clip's index by its relative path, kept by every function that adds a clip: the
/// window asks for the open clip's index every frame, and a scan of 100,000 clips per ask
/// (and per added clip: O(n^2) for a batch) is what the index saves. Not in the file, and
/// not part of a project's equality.
#[derive(Clone, Debug, Default)]
struct PathIndex(HashMap<String, usize>);

impl PartialEq for PathIndex {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// `Project::clips` as a plain JSON list of clips.
mod shared_clips {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serializer};

    use super::ProjectClip;

    pub fn serialize<S: Serializer>(
        clips: &[Arc<ProjectClip>],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(clips.iter().map(|clip| &**clip))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Arc<ProjectClip>>, D::Error> {
        let clips = Vec::<ProjectClip>::deserialize(deserializer)?;
        Ok(clips.into_iter().map(Arc::new).collect())
    }
}

impl Project {
    pub const FILE_NAME: &'static str = "kineto-project.json";

    /// An empty project (nothing is written until `save`).
    pub fn new(
        root: impl Into<PathBuf>,
        label_set_name: impl Into<String>,
        labels: Vec<String>,
    ) -> Self {
        Self {
            root: root.into(),
            format: FORMAT.to_string(),
            version: VERSION,
            label_set: LabelSetRef {
                name: label_set_name.into(),
                labels,
                extra: Map::new(),
            },
            model: None,
            clips: Vec::new(),
            extra: Map::new(),
            warnings: Vec::new(),
            path_index: PathIndex::default(),
            migrated_from: None,
        }
    }

    /// `<root>/kineto-project.json`.
    pub fn path(&self) -> PathBuf {
        self.root.join(Self::FILE_NAME)
    }

    /// Reads `<root>/kineto-project.json`; `Ok(None)` when there is none.
    pub fn load(root: &Path) -> Result<Option<Project>, ProjectError> {
        let path = root.join(Self::FILE_NAME);
        let bytes = match crate::files::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ProjectError::io(path, "read", e)),
        };
        let mut project = Self::from_json(&bytes, root)?;
        if let Some(old) = project.migrated_from {
            // The file as an older Kineto wrote it stays beside the project (once: a later
            // open of a file not yet rewritten keeps the first copy).
            let kept = root.join(format!("kineto-project.v{old}.json"));
            if !kept.exists() {
                write_file_atomic(&kept, &bytes)
                    .map_err(|e| ProjectError::io(kept, "keep a copy of the older project", e))?;
            }
        }
        if !project.warnings.is_empty() {
            // The next save writes the project without what could not be read: the file as
            // it was stays beside it, so that nothing is lost.
            let stamp = now_rfc3339().replace(':', "-");
            let kept = root.join(format!("{}.unreadable-{stamp}", Self::FILE_NAME));
            match write_file_atomic(&kept, &bytes) {
                Ok(()) => project
                    .warnings
                    .push(format!("the file as it was is kept as {}", kept.display())),
                Err(e) => return Err(ProjectError::io(kept, "keep a copy of the project", e)),
            }
        }
        Ok(Some(project))
    }

    /// Parses and validates a project file's bytes; `root` is the folder it belongs to.
    pub fn from_json(bytes: &[u8], root: &Path) -> Result<Project, ProjectError> {
        let path = root.join(Self::FILE_NAME);
        // Format and version first, so that a newer file is refused with its own message
        // rather than with whatever its new layout fails on.
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| ProjectError::parse(&path, &e))?;
        let Some(object) = value.as_object() else {
            return Err(ProjectError::NotAProject {
                path,
                found: "missing (the file is not a JSON object)".to_string(),
            });
        };
        match object.get("format") {
            Some(Value::String(f)) if f == FORMAT => {}
            Some(other) => {
                return Err(ProjectError::NotAProject {
                    path,
                    found: crate::checkpoint::printable(&other.to_string()),
                });
            }
            None => {
                return Err(ProjectError::NotAProject {
                    path,
                    found: "missing".to_string(),
                });
            }
        }
        let version = match object.get("version").and_then(Value::as_u64) {
            Some(v) => v,
            None => {
                return Err(ProjectError::Invalid {
                    path,
                    problem: "`version` is missing or not a whole number".to_string(),
                });
            }
        };
        if version > u64::from(VERSION) {
            return Err(ProjectError::NewerVersion {
                path,
                found: version,
                supported: VERSION,
            });
        }
        if version == 0 {
            return Err(ProjectError::Invalid {
                path,
                problem: "`version` 0 does not exist (versions start at 1)".to_string(),
            });
        }
        // Clips are read one by one, each field on its own: an unreadable field costs that
        // field (an unreadable path, the clip), never the file.
        let mut value = value;
        let clips = match value.as_object_mut().and_then(|o| o.remove("clips")) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(clips)) => clips,
            Some(_) => {
                return Err(ProjectError::Invalid {
                    path,
                    problem: "`clips` is not a list".to_string(),
                });
            }
        };
        // What is not a clip must read: its errors keep their line and column.
        let mut project: Project = match serde_json::from_value(value) {
            Ok(project) => project,
            Err(e) => {
                return Err(match serde_json::from_slice::<Project>(bytes) {
                    Err(strict) => ProjectError::parse(&path, &strict),
                    Ok(_) => ProjectError::parse(&path, &e),
                });
            }
        };
        project.root = root.to_path_buf();
        if project.version < VERSION {
            project.migrated_from = Some(project.version);
            project.version = VERSION;
        }
        let mut warnings = Vec::new();
        for (i, clip) in clips.into_iter().enumerate() {
            if let Some(clip) = read_clip(i, clip, &mut warnings) {
                project.clips.push(Arc::new(clip));
            }
        }
        project.repair(&mut warnings)?;
        project.warnings = warnings;
        Ok(project)
    }

    /// Loads the project in `root`, or starts a new one; an existing project must use the same
    /// labels.
    pub fn open_or_new(
        root: &Path,
        label_set_name: &str,
        labels: Vec<String>,
    ) -> Result<Project, ProjectError> {
        match Self::load(root)? {
            Some(project) => {
                project.check_label_set(label_set_name, &labels)?;
                Ok(project)
            }
            None => Ok(Self::new(root, label_set_name, labels)),
        }
    }

    /// Errs unless `labels` is this project's label list (the name alone may differ).
    pub fn check_label_set(&self, name: &str, labels: &[String]) -> Result<(), ProjectError> {
        if self.label_set.labels == labels {
            return Ok(());
        }
        Err(ProjectError::LabelSetMismatch {
            path: self.path(),
            project: self.label_set.name.clone(),
            project_classes: self.label_set.labels.len(),
            given: name.to_string(),
            given_classes: labels.len(),
        })
    }

    /// Switches to another label set. Refused while any clip has an accepted or corrected
    /// label (those ids would change meaning); predictions and predicted labels are dropped
    /// (predicted clips become unlabelled), since their class ids belong to the old set.
    pub fn replace_label_set(
        &mut self,
        name: impl Into<String>,
        labels: Vec<String>,
    ) -> Result<(), ProjectError> {
        if labels.is_empty() {
            return Err(ProjectError::Invalid {
                path: self.path(),
                problem: "the new label set has no labels".to_string(),
            });
        }
        if self.label_set.labels == labels {
            self.label_set.name = name.into();
            return Ok(());
        }
        let confirmed = self
            .clips
            .iter()
            .filter(|c| c.status.is_confirmed())
            .count();
        if confirmed > 0 {
            return Err(ProjectError::Invalid {
                path: self.path(),
                problem: format!(
                    "{confirmed} clips have accepted or corrected labels from label set `{}`;                      start a project in another folder to use another label set",
                    self.label_set.name
                ),
            });
        }
        let now = now_rfc3339();
        for clip in &mut self.clips {
            if clip.prediction.is_some() || clip.label_id.is_some() {
                let clip = Arc::make_mut(clip);
                clip.status = ClipStatus::Unlabelled;
                clip.label_id = None;
                clip.label = None;
                clip.prediction = None;
                clip.updated_at = Some(now.clone());
            }
        }
        self.label_set.name = name.into();
        self.label_set.labels = labels;
        Ok(())
    }

    /// Pretty JSON with a trailing newline.
    pub fn to_json(&self) -> Result<String, ProjectError> {
        let mut text = serde_json::to_string_pretty(self).map_err(|e| ProjectError::Invalid {
            path: self.path(),
            problem: format!("cannot serialize: {e}"),
        })?;
        text.push('\n');
        Ok(text)
    }

    /// Writes `kineto-project.json` atomically.
    pub fn save(&self) -> Result<(), ProjectError> {
        let path = self.path();
        let text = self.to_json()?;
        write_file_atomic(&path, text.as_bytes()).map_err(|e| ProjectError::io(path, "write", e))
    }

    /// Checks every clip against the label set and the root, repairing what does not fit at
    /// the smallest cost, each repair a line in `warnings`: a path outside the root or listed
    /// twice drops that clip; a label that is out of range or disagrees with its name drops
    /// the label (the clip goes back to predicted or unlabelled); an out-of-range prediction
    /// is dropped. A label set without labels is refused.
    fn repair(&mut self, warnings: &mut Vec<String>) -> Result<(), ProjectError> {
        let labels = self.label_set.labels.clone();
        if labels.is_empty() {
            return Err(ProjectError::Invalid {
                path: self.path(),
                problem: "the label set has no labels".to_string(),
            });
        }
        let mut seen = HashSet::new();
        let clips = std::mem::take(&mut self.clips);
        self.path_index = PathIndex::default();
        for (i, clip) in clips.into_iter().enumerate() {
            let mut clip = Arc::unwrap_or_clone(clip);
            let name = crate::checkpoint::printable(&clip.path);
            let mut warn = |what: String| warnings.push(format!("clip {i} ({name}): {what}"));
            if let Err(problem) = check_relative(&clip.path) {
                warn(format!("{problem}; the clip was left out"));
                continue;
            }
            if !seen.insert(clip.path.clone()) {
                warn("is listed twice; the second entry was left out".to_string());
                continue;
            }
            let label_problem = match clip.label_id {
                Some(id) => match (labels.get(id), &clip.label) {
                    (None, _) => Some(format!(
                        "label_id {id} is out of range (the label set has {} classes)",
                        labels.len()
                    )),
                    (Some(expected), None) => {
                        clip.label = Some(expected.clone());
                        None
                    }
                    (Some(expected), Some(l)) if l == expected => None,
                    (Some(expected), Some(l)) => Some(format!(
                        "label {:?} does not match label_id {id} ({expected:?} in the label set)",
                        crate::checkpoint::printable(l)
                    )),
                },
                None if clip.status.is_confirmed() => {
                    Some(format!("is {} but has no label_id", clip.status))
                }
                None => {
                    clip.label = None;
                    None
                }
            };
            if let Some(prediction) = &clip.prediction
                && let Some(r) = prediction.top_k.iter().find(|r| r.label_id >= labels.len())
            {
                warn(format!(
                    "predicted label_id {} is out of range (the label set has {} classes); \
                     the prediction was left out",
                    r.label_id,
                    labels.len()
                ));
                clip.prediction = None;
            }
            if let Some(problem) = label_problem {
                warn(format!("{problem}; the label was left out"));
                clip.label_id = None;
                clip.label = None;
                clip.status = ClipStatus::Unlabelled;
                if let Some(top1) = clip.predicted_top1().cloned() {
                    clip.status = ClipStatus::Predicted;
                    clip.label_id = Some(top1.label_id);
                    clip.label = labels.get(top1.label_id).cloned();
                }
            }
            repair_segments(&mut clip, &labels, &mut warn);
            self.push_clip(clip);
        }
        Ok(())
    }

    /// The path of `path` relative to the root, `/`-separated; `path` may be absolute or
    /// relative to the root.
    pub fn relative_path(&self, path: &Path) -> Result<String, ProjectError> {
        let outside = || ProjectError::OutsideRoot {
            path: path.to_path_buf(),
            root: self.root.clone(),
        };
        let joined = self.root.join(path);
        let lexical = absolute_normal(&joined).and_then(|abs| {
            let root = absolute_normal(&self.root)?;
            abs.strip_prefix(&root).ok().map(Path::to_path_buf)
        });
        let rel = match lexical {
            Some(rel) => rel,
            // Symbolic links (e.g. a root opened through a link): compare resolved paths.
            None => {
                let (Ok(abs), Ok(root)) = (fs::canonicalize(&joined), fs::canonicalize(&self.root))
                else {
                    return Err(outside());
                };
                abs.strip_prefix(&root)
                    .map_err(|_| outside())?
                    .to_path_buf()
            }
        };
        let mut parts = Vec::new();
        for component in rel.components() {
            match component {
                Component::Normal(part) => match part.to_str() {
                    Some(s) => parts.push(s),
                    None => {
                        return Err(ProjectError::Invalid {
                            path: path.to_path_buf(),
                            problem: "the file name is not UTF-8 (a project stores text paths)"
                                .to_string(),
                        });
                    }
                },
                _ => return Err(outside()),
            }
        }
        if parts.is_empty() {
            return Err(ProjectError::Invalid {
                path: path.to_path_buf(),
                problem: "is the project folder itself, not a clip".to_string(),
            });
        }
        Ok(parts.join("/"))
    }

    /// The index of the clip at `path` (absolute, or relative to the root).
    pub fn clip_index(&self, path: &Path) -> Option<usize> {
        let rel = self.relative_path(path).ok()?;
        self.index_of(&rel)
    }

    /// The index of the clip whose relative path is `rel`, from the index. `clips` is public,
    /// so the index is checked against the list: a hit must name that clip, a miss counts only
    /// while the index holds every clip; otherwise a scan answers.
    fn index_of(&self, rel: &str) -> Option<usize> {
        match self.path_index.0.get(rel) {
            Some(&i) if self.clips.get(i).is_some_and(|c| c.path == rel) => Some(i),
            None if self.path_index.0.len() == self.clips.len() => None,
            _ => self.clips.iter().position(|c| c.path == rel),
        }
    }

    /// Appends a clip and indexes its path.
    fn push_clip(&mut self, clip: ProjectClip) -> usize {
        let i = self.clips.len();
        self.path_index.0.insert(clip.path.clone(), i);
        self.clips.push(Arc::new(clip));
        i
    }

    /// Adds the clip at `path` (absolute, or relative to the root) as unlabelled; a clip already
    /// in the project keeps its entry and index.
    pub fn add_clip(&mut self, path: &Path) -> Result<usize, ProjectError> {
        let rel = self.relative_path(path)?;
        if let Some(i) = self.index_of(&rel) {
            return Ok(i);
        }
        Ok(self.push_clip(ProjectClip::new(rel)))
    }

    /// Adds many clips at once (a batch of any size in one pass over the project), as
    /// [`Project::add_clip`] would one by one.
    pub fn add_clips(&mut self, paths: &[PathBuf]) -> Vec<Result<usize, ProjectError>> {
        // The root made absolute once, not once per path (a batch of 100,000 files).
        let root = absolute_normal(&self.root);
        let mut out = Vec::with_capacity(paths.len());
        for path in paths {
            let fast = root.as_deref().and_then(|root| plain_relative(root, path));
            let rel = match fast.map_or_else(|| self.relative_path(path), Ok) {
                Ok(rel) => rel,
                Err(e) => {
                    out.push(Err(e));
                    continue;
                }
            };
            let i = match self.index_of(&rel) {
                Some(i) => i,
                None => self.push_clip(ProjectClip::new(rel)),
            };
            out.push(Ok(i));
        }
        out
    }

    /// The clip's absolute path (the root joined with its relative path).
    pub fn abs_path(&self, idx: usize) -> Option<PathBuf> {
        let clip = self.clips.get(idx)?;
        Some(
            clip.path
                .split('/')
                .fold(self.root.clone(), |p, s| p.join(s)),
        )
    }

    fn clip_mut(&mut self, idx: usize) -> Result<&mut ProjectClip, ProjectError> {
        let count = self.clips.len();
        let path = self.path();
        self.clips
            .get_mut(idx)
            .map(Arc::make_mut)
            .ok_or(ProjectError::NoSuchClip {
                path,
                index: idx,
                count,
            })
    }

    fn clip_path_for_error(&self, idx: usize) -> PathBuf {
        self.abs_path(idx).unwrap_or_else(|| self.path())
    }

    /// Stores a prediction. An unlabelled or predicted clip becomes `predicted` with the top-1
    /// as its label; an accepted or corrected clip keeps its label and status.
    pub fn set_prediction(&mut self, idx: usize, top_k: Vec<Ranked>) -> Result<(), ProjectError> {
        let classes = self.label_set.labels.len();
        let clip_path = self.clip_path_for_error(idx);
        let clip = self.clip_mut(idx)?;
        let Some(top1) = top_k.first() else {
            return Err(ProjectError::Invalid {
                path: clip_path,
                problem: "an empty prediction (no classes) cannot be stored".to_string(),
            });
        };
        if let Some(r) = top_k.iter().find(|r| r.label_id >= classes) {
            return Err(ProjectError::LabelOutOfRange {
                path: clip_path,
                label_id: r.label_id,
                classes,
            });
        }
        if !clip.status.is_confirmed() {
            clip.status = ClipStatus::Predicted;
            clip.label_id = Some(top1.label_id);
            clip.label = Some(top1.label.clone());
        }
        match &mut clip.prediction {
            Some(p) => p.top_k = top_k,
            None => {
                clip.prediction = Some(ClipPrediction {
                    top_k,
                    extra: Map::new(),
                })
            }
        }
        clip.updated_at = Some(now_rfc3339());
        Ok(())
    }

    /// Confirms the predicted top-1 as the label.
    pub fn accept(&mut self, idx: usize) -> Result<(), ProjectError> {
        let clip_path = self.clip_path_for_error(idx);
        let names = &self.label_set.labels;
        let Some(clip) = self.clips.get(idx) else {
            return Err(self.no_clip(idx));
        };
        let Some(top1) = clip.predicted_top1() else {
            return Err(ProjectError::NoPrediction { path: clip_path });
        };
        let id = top1.label_id;
        let Some(name) = names.get(id).cloned() else {
            return Err(ProjectError::LabelOutOfRange {
                path: clip_path,
                label_id: id,
                classes: names.len(),
            });
        };
        let clip = self.clip_mut(idx)?;
        clip.status = ClipStatus::Accepted;
        clip.label_id = Some(id);
        clip.label = Some(name);
        clip.updated_at = Some(now_rfc3339());
        Ok(())
    }

    /// Sets the label by hand.
    pub fn correct(&mut self, idx: usize, label_id: usize) -> Result<(), ProjectError> {
        let clip_path = self.clip_path_for_error(idx);
        let classes = self.label_set.labels.len();
        let Some(name) = self.label_set.labels.get(label_id).cloned() else {
            if idx >= self.clips.len() {
                return Err(self.no_clip(idx));
            }
            return Err(ProjectError::LabelOutOfRange {
                path: clip_path,
                label_id,
                classes,
            });
        };
        let clip = self.clip_mut(idx)?;
        clip.status = ClipStatus::Corrected;
        clip.label_id = Some(label_id);
        clip.label = Some(name);
        clip.updated_at = Some(now_rfc3339());
        Ok(())
    }

    /// Back to unlabelled: the label goes, a stored prediction stays (so `accept` still works).
    pub fn clear(&mut self, idx: usize) -> Result<(), ProjectError> {
        let clip = self.clip_mut(idx)?;
        clip.status = ClipStatus::Unlabelled;
        clip.label_id = None;
        clip.label = None;
        clip.updated_at = Some(now_rfc3339());
        Ok(())
    }

    /// Clip `idx`'s segments (empty for no such clip).
    pub fn segments(&self, idx: usize) -> &[ClipSegment] {
        self.clips.get(idx).map_or(&[], |c| c.segments.as_slice())
    }

    /// Records clip `idx`'s length and frame rate (what segment edits snap to and exports
    /// write); values that are not positive numbers are ignored.
    pub fn set_clip_timing(
        &mut self,
        idx: usize,
        duration_s: f64,
        fps: f64,
    ) -> Result<(), ProjectError> {
        let clip = self.clip_mut(idx)?;
        if duration_s.is_finite() && duration_s > 0.0 {
            clip.duration_s = Some(duration_s);
        }
        if fps.is_finite() && fps > 0.0 {
            clip.fps = Some(fps);
        }
        Ok(())
    }

    /// Runs one edit of clip `idx`'s segments (the functions of `labels::segments`, given the
    /// list, the clip's frame rate and its length, 0 where unknown). The edit works on a copy:
    /// one that errs, or leaves the list breaking the rules, changes nothing.
    pub fn edit_segments<T>(
        &mut self,
        idx: usize,
        edit: impl FnOnce(&mut Vec<ClipSegment>, f64, f64) -> Result<T, String>,
    ) -> Result<T, ProjectError> {
        let clip_path = self.clip_path_for_error(idx);
        let clip = self.clip_mut(idx)?;
        let (fps, duration) = (clip.fps.unwrap_or(0.0), clip.duration_s.unwrap_or(0.0));
        let mut list = clip.segments.clone();
        let invalid = |problem: String| ProjectError::Invalid {
            path: clip_path.clone(),
            problem,
        };
        let out = edit(&mut list, fps, duration).map_err(invalid)?;
        if let Some(problem) = segments::check(&list, duration) {
            return Err(invalid(problem));
        }
        clip.segments = list;
        Ok(out)
    }

    /// Labels segment `seg` of clip `idx` with class `label_id` (the predicted top-1 is an
    /// acceptance, anything else a correction).
    pub fn label_segment(
        &mut self,
        idx: usize,
        seg: usize,
        label_id: usize,
    ) -> Result<(), ProjectError> {
        let classes = self.label_set.labels.len();
        let Some(name) = self.label_set.labels.get(label_id).cloned() else {
            return Err(ProjectError::LabelOutOfRange {
                path: self.clip_path_for_error(idx),
                label_id,
                classes,
            });
        };
        self.edit_segments(idx, |list, _, _| {
            let count = list.len();
            let s = (list.get_mut(seg))
                .ok_or(format!("no segment {} (the clip has {count})", seg + 1))?;
            s.set_label(label_id, name);
            Ok(())
        })
    }

    /// The model's segments for clip `idx`: they replace its predicted segments; segments a
    /// person labelled or marked stay (`labels::segments::apply_proposals`).
    pub fn set_segment_proposals(
        &mut self,
        idx: usize,
        proposals: Vec<ProposedSegment>,
    ) -> Result<(), ProjectError> {
        let classes = self.label_set.labels.len();
        if let Some(r) = proposals
            .iter()
            .flat_map(|p| &p.top_k)
            .find(|r| r.label_id >= classes)
        {
            return Err(ProjectError::LabelOutOfRange {
                path: self.clip_path_for_error(idx),
                label_id: r.label_id,
                classes,
            });
        }
        self.edit_segments(idx, |list, fps, _| {
            segments::apply_proposals(list, proposals, fps);
            Ok(())
        })
    }

    /// Whether a person labelled, or marked, any segment.
    pub fn has_confirmed_segments(&self) -> bool {
        (self.clips.iter().flat_map(|c| &c.segments))
            .any(|s| s.status.is_confirmed() || s.prediction.is_none())
    }

    pub fn counts(&self) -> StatusCounts {
        let mut c = StatusCounts::default();
        for clip in &self.clips {
            match clip.status {
                ClipStatus::Unlabelled => c.unlabelled += 1,
                ClipStatus::Predicted => c.predicted += 1,
                ClipStatus::Accepted => c.accepted += 1,
                ClipStatus::Corrected => c.corrected += 1,
            }
        }
        c
    }

    fn no_clip(&self, idx: usize) -> ProjectError {
        ProjectError::NoSuchClip {
            path: self.path(),
            index: idx,
            count: self.clips.len(),
        }
    }
}

/// Now as RFC 3339 UTC with whole seconds, e.g. `2026-01-01T12:00:00Z`.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// A stored clip path must be relative and stay inside the root.
fn check_relative(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("the path is empty");
    }
    if path.starts_with('/') || Path::new(path).has_root() || Path::new(path).is_absolute() {
        return Err("the path is absolute; clip paths are relative to the project folder");
    }
    for part in path.split('/') {
        match part {
            "" | "." => return Err("the path has an empty or `.` component"),
            ".." => return Err("the path leaves the project folder (`..`)"),
            _ => {}
        }
    }
    Ok(())
}

/// What [`Project::relative_path`] gives for an absolute `path` without `.` or `..` under the
/// absolute, normal `root`, without a system call; `None` for any other path (which takes
/// the full way, with its errors).
fn plain_relative(root: &Path, path: &Path) -> Option<String> {
    if !path.is_absolute() {
        return None;
    }
    let rel = path.strip_prefix(root).ok()?;
    let mut out = String::with_capacity(rel.as_os_str().len());
    for component in rel.components() {
        let Component::Normal(part) = component else {
            return None;
        };
        if !out.is_empty() {
            out.push('/');
        }
        out.push_str(part.to_str()?);
    }
    (!out.is_empty()).then_some(out)
}

/// `path` made absolute (against the current directory) with `.` and `..` removed lexically.
pub(crate) fn absolute_normal(path: &Path) -> Option<PathBuf> {
    let abs = std::path::absolute(path).ok()?;
    let mut out = PathBuf::new();
    for component in abs.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    Some(out)
}

/// Clip `i` of a project file: the fields that read; an unreadable optional field is left out
/// and an entry without a readable path is left out, each with a line in `warnings`.
fn read_clip(i: usize, value: Value, warnings: &mut Vec<String>) -> Option<ProjectClip> {
    let Value::Object(mut fields) = value else {
        warnings.push(format!("clip {i}: not a JSON object; left out"));
        return None;
    };
    let name = match fields.get("path") {
        Some(Value::String(p)) => crate::checkpoint::printable(p),
        _ => {
            warnings.push(format!("clip {i}: no readable `path`; left out"));
            return None;
        }
    };
    // Segments one by one too: an unreadable segment costs that segment.
    let mut segments = Vec::new();
    match fields.remove("segments") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for (j, value) in list.into_iter().enumerate() {
                match serde_json::from_value::<ClipSegment>(value) {
                    Ok(segment) => segments.push(segment),
                    Err(e) => warnings.push(format!(
                        "clip {i} ({name}): segment {j} could not be read ({}); left out",
                        crate::text::one_line(&e.to_string())
                    )),
                }
            }
        }
        Some(_) => warnings.push(format!(
            "clip {i} ({name}): `segments` is not a list; left out"
        )),
    }
    loop {
        match serde_json::from_value::<ProjectClip>(Value::Object(fields.clone())) {
            Ok(mut clip) => {
                clip.segments = segments;
                return Some(clip);
            }
            Err(e) => {
                // The first optional field that does not read on its own goes.
                let culprit = [
                    "prediction",
                    "status",
                    "label_id",
                    "label",
                    "updated_at",
                    "duration_s",
                    "fps",
                ]
                .into_iter()
                .find(|key| {
                    fields.get(*key).is_some_and(|v| {
                        let mut alone = Map::new();
                        alone.insert("path".to_string(), Value::String(String::new()));
                        alone.insert((*key).to_string(), v.clone());
                        serde_json::from_value::<ProjectClip>(Value::Object(alone)).is_err()
                    })
                });
                let Some(key) = culprit else {
                    warnings.push(format!(
                        "clip {i} ({name}): {}; left out",
                        crate::text::one_line(&e.to_string())
                    ));
                    return None;
                };
                fields.remove(key);
                warnings.push(format!(
                    "clip {i} ({name}): `{key}` could not be read ({}); left out",
                    crate::text::one_line(&e.to_string())
                ));
            }
        }
    }
}

/// Keeps the segments that keep the rules (finite, sorted, apart, inside the clip, labels in
/// range), each one dropped or repaired a line in `warn`.
fn repair_segments(clip: &mut ProjectClip, labels: &[String], warn: &mut impl FnMut(String)) {
    let duration = clip.duration_s.filter(|d| d.is_finite() && *d > 0.0);
    if clip.duration_s.is_some() && duration.is_none() {
        warn("`duration_s` is not a positive number; left out".to_string());
        clip.duration_s = None;
    }
    if clip.fps.is_some_and(|f| !(f.is_finite() && f > 0.0)) {
        warn("`fps` is not a positive number; left out".to_string());
        clip.fps = None;
    }
    let mut kept: Vec<ClipSegment> = Vec::with_capacity(clip.segments.len());
    for (j, mut seg) in std::mem::take(&mut clip.segments).into_iter().enumerate() {
        let prev_end = kept.last().map_or(0.0, |s| s.end_s);
        let problem =
            segments::check(std::slice::from_ref(&seg), duration.unwrap_or(0.0)).or_else(|| {
                (seg.start_s < prev_end - 1e-9)
                    .then(|| format!("starts before the previous segment ends ({prev_end} s)"))
            });
        if let Some(problem) = problem {
            // `check` names a one-segment list's segment 0; say which segment it is.
            let problem = problem.trim_start_matches("segment 0: ");
            warn(format!("segment {j}: {problem}; left out"));
            continue;
        }
        if let Some(id) = seg.label_id
            && labels
                .get(id)
                .is_none_or(|name| seg.label.as_ref() != Some(name))
        {
            warn(format!(
                "segment {j}: label_id {id} is out of range or disagrees with its name; the \
                 label was left out"
            ));
            seg.label_id = None;
            seg.label = None;
            seg.status = ClipStatus::Unlabelled;
        }
        if seg.top_k().iter().any(|r| r.label_id >= labels.len()) {
            warn(format!(
                "segment {j}: a predicted label_id is out of range; the prediction was left out"
            ));
            seg.prediction = None;
        }
        if seg.status != ClipStatus::Unlabelled && seg.label_id.is_none() {
            seg.status = ClipStatus::Unlabelled;
        }
        kept.push(seg);
    }
    clip.segments = kept;
}

/// What the saver thread reports after each write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaveEvent {
    Saved { path: PathBuf, clips: usize },
    Failed { path: PathBuf, error: String },
}

struct SaverShared {
    /// One pending snapshot per project file (a later one of the same project replaces it; one
    /// project's snapshot never replaces another's), and whether the saver is closing.
    pending: Mutex<(HashMap<PathBuf, Pending>, bool)>,
    pending_changed: Condvar,
    /// Sequence number of the last snapshot put (also serialises `save` callers).
    put: Mutex<u64>,
    /// Sequence number up to which every snapshot has been written (or has failed).
    done: Mutex<u64>,
    /// The highest sequence number written.
    written: Mutex<u64>,
    done_changed: Condvar,
    events: Sender<SaveEvent>,
    notify: Notify,
}

/// A project's snapshot waiting to be written: `queued` is the sequence number of its first
/// unwritten save (its place in the queue, so a project saved often is not starved by others),
/// `latest` that of the snapshot held.
struct Pending {
    queued: u64,
    latest: u64,
    project: Project,
}

impl SaverShared {
    fn write(&self, seq: u64, project: &Project) {
        let path = project.path();
        let event = match project.save() {
            Ok(()) => SaveEvent::Saved {
                path,
                clips: project.clips.len(),
            },
            Err(e) => SaveEvent::Failed {
                path,
                error: e.to_string(),
            },
        };
        // Nobody draining the events must not stall saving: a full channel drops the event.
        let _ = self.events.try_send(event);
        self.notify.notify();
        // Marked done last, so that `flush` returning means written, reported and notified.
        // Every save before the oldest still pending is written (or every save so far, when
        // none is pending: there is one writer).
        {
            let oldest_pending = lock(&self.pending).0.values().map(|p| p.queued).min();
            let mut written = lock(&self.written);
            *written = (*written).max(seq);
            let mut done = lock(&self.done);
            *done = (*done).max(oldest_pending.map_or(*written, |s| s - 1));
        }
        self.done_changed.notify_all();
    }

    /// The next snapshot to write, waiting for one; `None` once closed with nothing pending.
    fn next(&self) -> Option<(u64, Project)> {
        let mut pending = lock(&self.pending);
        loop {
            let oldest = pending.0.iter().min_by_key(|(_, p)| p.queued);
            if let Some(path) = oldest.map(|(path, _)| path.clone()) {
                return pending.0.remove(&path).map(|p| (p.latest, p.project));
            }
            if pending.1 {
                return None;
            }
            pending = self
                .pending_changed
                .wait(pending)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Saves project snapshots on a background thread; the latest snapshot of each project wins.
pub struct ProjectSaver {
    shared: Arc<SaverShared>,
    events: Receiver<SaveEvent>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ProjectSaver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectSaver")
            .field("running", &self.thread.is_some())
            .finish_non_exhaustive()
    }
}

const SAVER_EVENTS: usize = 256;
const SAVER_JOIN_TIMEOUT: Duration = Duration::from_secs(5);

impl ProjectSaver {
    /// Starts the saver thread; `notify` is called after every write (or failed write). If the
    /// thread cannot be started, `save` writes on the caller's thread instead.
    pub fn spawn(notify: Notify) -> ProjectSaver {
        let (tx, rx) = crossbeam_channel::bounded(SAVER_EVENTS);
        let shared = Arc::new(SaverShared {
            pending: Mutex::new((HashMap::new(), false)),
            pending_changed: Condvar::new(),
            put: Mutex::new(0),
            done: Mutex::new(0),
            written: Mutex::new(0),
            done_changed: Condvar::new(),
            events: tx,
            notify,
        });
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("kineto-project-saver".to_string())
            .spawn(move || {
                while let Some((seq, project)) = worker.next() {
                    worker.write(seq, &project);
                }
            })
            .ok();
        ProjectSaver {
            shared,
            events: rx,
            thread,
        }
    }

    /// Queues `snapshot` for writing, replacing one of the same project not yet written.
    pub fn save(&self, snapshot: Project) {
        let mut put = lock(&self.shared.put);
        *put += 1;
        if self.thread.is_some() {
            let mut pending = lock(&self.shared.pending);
            let queued = pending.0.get(&snapshot.path()).map_or(*put, |p| p.queued);
            let entry = Pending {
                queued,
                latest: *put,
                project: snapshot,
            };
            pending.0.insert(entry.project.path(), entry);
            drop(pending);
            self.shared.pending_changed.notify_all();
        } else {
            self.shared.write(*put, &snapshot);
        }
    }

    /// `Saved` / `Failed` reports, one per write.
    pub fn events(&self) -> &Receiver<SaveEvent> {
        &self.events
    }

    /// Waits until the last snapshot given to `save` has been written (or has failed);
    /// `false` if that takes longer than `timeout`.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.fence().wait(timeout)
    }

    /// A point in the saver's queue: every snapshot given to `save` so far. Another thread
    /// waits on it (the window's project load waits there, so that it reads a project file
    /// after its last snapshot was written, never the UI thread).
    pub fn fence(&self) -> SaveFence {
        SaveFence {
            shared: Arc::clone(&self.shared),
            target: *lock(&self.shared.put),
        }
    }
}

/// Every snapshot given to a [`ProjectSaver`] before [`ProjectSaver::fence`] was called.
pub struct SaveFence {
    shared: Arc<SaverShared>,
    target: u64,
}

impl std::fmt::Debug for SaveFence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaveFence")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl SaveFence {
    /// Waits until those snapshots have been written (or have failed); `false` if that takes
    /// longer than `timeout`.
    pub fn wait(&self, timeout: Duration) -> bool {
        let done = lock(&self.shared.done);
        let (done, _) = self
            .shared
            .done_changed
            .wait_timeout_while(done, timeout, |d| *d < self.target)
            .unwrap_or_else(PoisonError::into_inner);
        *done >= self.target
    }
}

impl Drop for ProjectSaver {
    /// Writes a pending snapshot, then stops the thread (waiting at most a few seconds).
    fn drop(&mut self) {
        lock(&self.shared.pending).1 = true;
        self.shared.pending_changed.notify_all();
        if let Some(thread) = self.thread.take() {
            let deadline = Instant::now() + SAVER_JOIN_TIMEOUT;
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub(crate) use crate::files::TempDir;

    pub(crate) fn labels() -> Vec<String> {
        ["archery", "bowling", "cooking egg"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    pub(crate) fn ranked(ids: &[(usize, f32)]) -> Vec<Ranked> {
        let names = labels();
        ids.iter()
            .enumerate()
            .map(|(i, &(id, score))| Ranked {
                rank: i + 1,
                label_id: id,
                label: names[id].clone(),
                score,
            })
            .collect()
    }

    fn write_project(dir: &Path, text: &str) {
        fs::write(dir.join(Project::FILE_NAME), text).unwrap();
    }

    /// The saver's snapshot is a clone: it shares the clips (a 100,000-clip project costs the
    /// window pointers, not copies, at every save) and keeps its values when the project
    /// changes afterwards.
    #[test]
    fn a_snapshot_shares_clips_and_keeps_its_values_when_the_project_changes() {
        let dir = TempDir::new("snapshot");
        let mut project = Project::new(dir.path(), "three", labels());
        let paths: Vec<PathBuf> = (0..100_000)
            .map(|i| dir.path().join(format!("c{i}.mp4")))
            .collect();
        assert!(project.add_clips(&paths).iter().all(Result::is_ok));
        let start = Instant::now();
        let snapshot = project.clone();
        let clone_time = start.elapsed();
        assert!(Arc::ptr_eq(&snapshot.clips[7], &project.clips[7]));
        project.correct(7, 2).unwrap();
        assert_eq!(project.clips[7].label_id, Some(2));
        assert_eq!(
            snapshot.clips[7].label_id, None,
            "the snapshot changed with the project"
        );
        assert!(!Arc::ptr_eq(&snapshot.clips[7], &project.clips[7]));
        assert!(
            Arc::ptr_eq(&snapshot.clips[8], &project.clips[8]),
            "one clip copied, not all"
        );
        assert!(
            clone_time < Duration::from_millis(50),
            "cloning 100,000 clips took {clone_time:?}"
        );
    }

    #[test]
    fn round_trip_keeps_unknown_fields() {
        let dir = TempDir::new("roundtrip");
        let text = r#"{
          "format": "kineto-project", "version": 1, "future_top": {"a": [1, 2]},
          "label_set": {"name": "mine", "labels": ["archery", "bowling", "cooking egg"]},
          "model": {"weights": "PPTSMv2_k400_16f_dml_student", "frames": 16},
          "clips": [
            {"path": "sub/a.mp4", "status": "accepted", "label_id": 1, "label": "bowling",
             "updated_at": "2026-01-01T12:00:00Z", "note": "keep me",
             "prediction": {"top_k": [{"rank": 1, "label_id": 1, "label": "bowling",
                                       "score": 0.91}], "model": "x"}},
            {"path": "b.mp4", "status": "unlabelled"}
          ]}"#;
        write_project(dir.path(), text);
        let mut project = Project::load(dir.path()).unwrap().unwrap();
        assert_eq!(project.root, dir.path());
        assert_eq!(
            project.extra["future_top"],
            serde_json::json!({"a": [1, 2]})
        );
        assert_eq!(project.clips[0].extra["note"], "keep me");
        assert_eq!(
            project.clips[0].prediction.as_ref().unwrap().extra["model"],
            "x"
        );
        assert_eq!(project.clips[0].predicted_top1().unwrap().score, 0.91);
        assert_eq!(project.model.as_ref().unwrap().frames, 16);
        assert_eq!(
            project.counts(),
            StatusCounts {
                unlabelled: 1,
                accepted: 1,
                ..Default::default()
            }
        );

        project.correct(1, 2).unwrap();
        assert_eq!(project.migrated_from, Some(1), "a version 1 file");
        project.save().unwrap();
        let mut again = Project::load(dir.path()).unwrap().unwrap();
        assert_eq!(again.migrated_from, None, "written as version 2");
        again.migrated_from = Some(1);
        assert_eq!(again, project);
        let raw: Value =
            serde_json::from_str(&fs::read_to_string(project.path()).unwrap()).unwrap();
        assert_eq!(raw["future_top"]["a"][1], 2);
        assert_eq!(raw["clips"][0]["note"], "keep me");
        assert_eq!(raw["clips"][1]["label"], "cooking egg");
        assert_eq!(raw["clips"][1]["status"], "corrected");
        assert!(raw["clips"][1].get("prediction").is_none());
        // No temporary files left beside it (the version 1 original is kept).
        let mut names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, [Project::FILE_NAME, "kineto-project.v1.json"]);
    }

    #[test]
    fn a_prediction_with_a_non_finite_score_saves_and_loads() {
        let dir = TempDir::new("nan-score");
        let mut project = Project::new(dir.path(), "mine", vec!["a".into(), "b".into()]);
        let clip = project.add_clip(&dir.path().join("x.mp4")).unwrap();
        let ranked = |rank, label_id, label: &str, score| Ranked {
            rank,
            label_id,
            label: label.into(),
            score,
        };
        project
            .set_prediction(
                clip,
                vec![
                    ranked(1, 0, "a", f32::NAN),
                    ranked(2, 1, "b", f32::INFINITY),
                ],
            )
            .unwrap();
        project.save().unwrap();
        let raw: Value =
            serde_json::from_str(&fs::read_to_string(project.path()).unwrap()).unwrap();
        assert!(raw["clips"][0]["prediction"]["top_k"][0]["score"].is_null());
        let again = Project::load(dir.path()).unwrap().unwrap();
        let top = &again.clips[0].prediction.as_ref().unwrap().top_k;
        assert!(top[0].score.is_nan() && top[1].score.is_nan());
        assert_eq!(again.clips[0].label.as_deref(), Some("a"));
    }

    #[test]
    fn missing_file_is_none_and_open_or_new_starts_one() {
        let dir = TempDir::new("missing");
        assert!(Project::load(dir.path()).unwrap().is_none());
        let p = Project::open_or_new(dir.path(), "mine", labels()).unwrap();
        assert!(p.clips.is_empty());
        assert_eq!(p.format, FORMAT);
        assert_eq!(p.version, VERSION);
        p.save().unwrap();
        let reopened = Project::open_or_new(dir.path(), "other name", labels()).unwrap();
        assert_eq!(reopened.label_set.name, "mine");
        let err = Project::open_or_new(dir.path(), "kinetics400", vec!["x".into()]).unwrap_err();
        assert!(
            matches!(err, ProjectError::LabelSetMismatch { .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains("label set `mine` (3 classes)"),
            "{err}"
        );
    }

    #[test]
    fn a_version_1_project_is_kept_aside_and_written_as_version_2_with_segments() {
        let dir = TempDir::new("migrate");
        let v1 = r#"{"format": "kineto-project", "version": 1,
          "label_set": {"name": "t", "labels": ["archery", "bowling", "cooking egg"]},
          "clips": [{"path": "long.mp4", "status": "unlabelled"}]}"#;
        write_project(dir.path(), v1);
        let mut p = Project::load(dir.path()).unwrap().unwrap();
        assert_eq!(p.migrated_from, Some(1));
        let kept = dir.path().join("kineto-project.v1.json");
        assert_eq!(
            fs::read_to_string(&kept).unwrap(),
            v1,
            "the original, as it was"
        );
        p.set_clip_timing(0, 12.0, 25.0).unwrap();
        let ranked = |id: usize| Ranked {
            rank: 1,
            label_id: id,
            label: labels()[id].clone(),
            score: 0.7,
        };
        let proposal = |a: f64, b: f64, id: usize| ProposedSegment {
            start_s: a,
            end_s: b,
            top_k: vec![ranked(id)],
        };
        p.set_segment_proposals(0, vec![proposal(0.0, 5.0, 0), proposal(5.0, 12.0, 2)])
            .unwrap();
        p.label_segment(0, 1, 1).unwrap();
        let err = p
            .edit_segments(0, |list, _, _| {
                list[0].end_s = 7.0;
                Ok(())
            })
            .unwrap_err();
        assert!(
            err.to_string().contains("before the previous one ends"),
            "{err}"
        );
        assert!(p.label_segment(0, 1, 9).is_err());
        p.save().unwrap();

        let raw: Value = serde_json::from_slice(&fs::read(p.path()).unwrap()).unwrap();
        assert_eq!(raw["version"], 2);
        assert_eq!(raw["clips"][0]["segments"][1]["status"], "corrected");
        assert_eq!(raw["clips"][0]["segments"][1]["label"], "bowling");
        let again = Project::load(dir.path()).unwrap().unwrap();
        assert_eq!(again.migrated_from, None);
        assert_eq!(again.segments(0), p.segments(0));
        assert_eq!(again.clips[0].fps, Some(25.0));
        // A second open does not replace the kept original.
        assert_eq!(fs::read_to_string(&kept).unwrap(), v1);
    }

    #[test]
    fn unreadable_segments_cost_themselves_not_the_clip() {
        let dir = TempDir::new("bad-segments");
        write_project(
            dir.path(),
            r#"{"format": "kineto-project", "version": 2,
          "label_set": {"name": "t", "labels": ["archery", "bowling", "cooking egg"]},
          "clips": [{"path": "a.mp4", "status": "accepted", "label_id": 1, "label": "bowling",
            "duration_s": 10.0, "fps": 25.0,
            "segments": [
              {"start_s": 0.0, "end_s": 2.0, "status": "accepted", "label_id": 0,
               "label": "archery"},
              {"start_s": null, "end_s": 3.0},
              {"start_s": 1.0, "end_s": 3.0, "status": "corrected", "label_id": 2,
               "label": "cooking egg"},
              {"start_s": 3.0, "end_s": 4.0, "status": "corrected", "label_id": 7,
               "label": "nope"},
              {"start_s": 5.0, "end_s": 4.5},
              {"start_s": 9.0, "end_s": 11.0},
              "not a segment"
            ]}]}"#,
        );
        let p = Project::load(dir.path()).unwrap().unwrap();
        assert_eq!(p.clips[0].label_id, Some(1), "the clip's own label stays");
        let spans: Vec<(f64, f64)> = p.segments(0).iter().map(|s| (s.start_s, s.end_s)).collect();
        assert_eq!(spans, [(0.0, 2.0), (3.0, 4.0)]);
        assert_eq!(
            p.segments(0)[1].status,
            ClipStatus::Unlabelled,
            "its label was out of range"
        );
        assert_eq!(p.warnings.len(), 7, "{:#?}", p.warnings);
    }

    #[test]
    fn newer_version_is_refused() {
        let dir = TempDir::new("newer");
        write_project(
            dir.path(),
            r#"{"format": "kineto-project", "version": 3, "clips": "new layout"}"#,
        );
        let err = Project::load(dir.path()).unwrap_err();
        assert!(
            matches!(
                err,
                ProjectError::NewerVersion {
                    found: 3,
                    supported: 2,
                    ..
                }
            ),
            "{err}"
        );
        let msg = err.to_string();
        assert!(
            msg.ends_with(
                "kineto-project.json: written by a newer Kineto (version 3); this one reads \
                 version 2"
            ),
            "{msg}"
        );
    }

    #[test]
    fn other_json_is_not_a_project() {
        let dir = TempDir::new("notproject");
        write_project(dir.path(), r#"{"format": "something-else", "version": 1}"#);
        let err = Project::load(dir.path()).unwrap_err();
        assert!(matches!(err, ProjectError::NotAProject { .. }), "{err}");
        assert!(err.to_string().contains("\"something-else\""), "{err}");
        write_project(dir.path(), "[1, 2]");
        let err = Project::load(dir.path()).unwrap_err();
        assert!(matches!(err, ProjectError::NotAProject { .. }), "{err}");
    }

    #[test]
    fn malformed_json_reports_line_and_column() {
        let dir = TempDir::new("malformed");
        write_project(
            dir.path(),
            "{\n  \"format\": \"kineto-project\",\n  \"version\": 1,,\n}",
        );
        let err = Project::load(dir.path()).unwrap_err();
        match &err {
            ProjectError::Parse { line, column, .. } => {
                assert_eq!((*line, *column), (3, 16), "{err}");
            }
            other => panic!("expected a parse error, got {other}"),
        }
        assert!(err.to_string().contains("line 3, column 16"), "{err}");
        // A type error in a valid document also has a position.
        write_project(
            dir.path(),
            "{\"format\": \"kineto-project\", \"version\": 1,\n\"label_set\": {\"name\": 5}}",
        );
        let err = Project::load(dir.path()).unwrap_err();
        assert!(matches!(err, ProjectError::Parse { line: 2, .. }), "{err}");
    }

    #[test]
    fn a_clip_field_that_cannot_be_read_costs_that_field_not_the_file() {
        // Each of these made the whole project unloadable, and with it every label in it.
        let dir = TempDir::new("invalid");
        let head = r#"{"format": "kineto-project", "version": 1,
            "label_set": {"name": "mine", "labels": ["archery", "bowling", "cooking egg"]},
            "clips": "#;
        let good = r#"{"path": "good.mp4", "status": "accepted", "label_id": 1}"#;
        for (clip, expect, kept) in [
            (
                r#"{"path": "a.mp4", "status": "corrected", "label_id": 3}"#,
                "out of range",
                true,
            ),
            (
                r#"{"path": "/abs/a.mp4", "status": "unlabelled"}"#,
                "absolute",
                false,
            ),
            (
                r#"{"path": "../a.mp4", "status": "unlabelled"}"#,
                "leaves",
                false,
            ),
            (
                r#"{"path": "x/../../a.mp4", "status": "unlabelled"}"#,
                "leaves",
                false,
            ),
            (r#"{"path": "good.mp4"}"#, "twice", false),
            (
                r#"{"path": "a.mp4", "status": "accepted"}"#,
                "no label_id",
                true,
            ),
            (
                r#"{"path": "a.mp4", "status": "accepted", "label_id": 0, "label": "x"}"#,
                "does not match",
                true,
            ),
            (
                r#"{"path": "a.mp4", "status": "maybe"}"#,
                "`status` could not be read",
                true,
            ),
            (
                r#"{"path": "a.mp4", "prediction": {"top_k": "lots"}}"#,
                "`prediction` could not be read",
                true,
            ),
            (r#"{"status": "accepted"}"#, "no readable `path`", false),
            (r#"17"#, "not a JSON object", false),
        ] {
            write_project(dir.path(), &format!("{head}[{good}, {clip}]}}"));
            let p = Project::load(dir.path())
                .unwrap_or_else(|e| panic!("{clip}: {e}"))
                .expect("a project");
            assert_eq!(p.clips[0].path, "good.mp4", "{clip}");
            assert_eq!(p.clips[0].status, ClipStatus::Accepted, "{clip}");
            assert_eq!(p.clips.len(), if kept { 2 } else { 1 }, "{clip}");
            assert!(p.warnings[0].contains(expect), "{clip}: {:?}", p.warnings);
            assert!(
                p.warnings.last().unwrap().contains("is kept as"),
                "{:?}",
                p.warnings
            );
        }
        // The file as it was is kept beside the project.
        let kept: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".unreadable-"))
            .collect();
        assert!(!kept.is_empty());
        // A missing label name is filled in from the label set, without a warning.
        write_project(
            dir.path(),
            &format!(r#"{head}[{{"path": "a.mp4", "status": "corrected", "label_id": 2}}]}}"#),
        );
        let p = Project::load(dir.path()).unwrap().unwrap();
        assert_eq!(p.clips[0].label.as_deref(), Some("cooking egg"));
        assert!(p.warnings.is_empty());
    }

    #[test]
    fn add_clip_is_relative_idempotent_and_refuses_outside_files() {
        let dir = TempDir::new("add");
        let root = dir.path().join("project");
        fs::create_dir_all(root.join("sub")).unwrap();
        let mut p = Project::new(&root, "mine", labels());
        let a = p.add_clip(&root.join("sub").join("a.mp4")).unwrap();
        assert_eq!(a, 0);
        assert_eq!(p.clips[0].path, "sub/a.mp4");
        assert_eq!(p.clips[0].status, ClipStatus::Unlabelled);
        assert!(p.clips[0].updated_at.as_deref().unwrap().ends_with('Z'));
        assert_eq!(p.add_clip(&root.join("sub/./x/../a.mp4")).unwrap(), 0);
        assert_eq!(p.add_clip(Path::new("sub/a.mp4")).unwrap(), 0);
        assert_eq!(p.add_clip(&root.join("b.mp4")).unwrap(), 1);
        assert_eq!(p.clip_index(&root.join("b.mp4")), Some(1));
        assert_eq!(p.clip_index(Path::new("sub/a.mp4")), Some(0));
        assert_eq!(p.clip_index(&root.join("c.mp4")), None);
        assert_eq!(p.abs_path(0).unwrap(), root.join("sub").join("a.mp4"));
        assert_eq!(p.abs_path(5), None);

        let outside = dir.path().join("elsewhere.mp4");
        let err = p.add_clip(&outside).unwrap_err();
        assert!(matches!(err, ProjectError::OutsideRoot { .. }), "{err}");
        assert!(
            err.to_string().contains("not inside the project folder"),
            "{err}"
        );
        let err = p.add_clip(Path::new("../elsewhere.mp4")).unwrap_err();
        assert!(matches!(err, ProjectError::OutsideRoot { .. }), "{err}");
        assert!(p.add_clip(&root).is_err());
        assert_eq!(p.clips.len(), 2);
    }

    /// The window looks up the open clip every frame and a batch adds its clips one call at a
    /// time in places: both go through the path index, not a scan of every clip.
    #[test]
    fn clip_lookups_use_the_path_index() {
        let dir = TempDir::new("index");
        let root = dir.path();
        let mut p = Project::new(root, "t", labels());
        for i in 0..20_000 {
            assert_eq!(p.add_clip(&root.join(format!("c{i}.mp4"))).unwrap(), i);
        }
        for i in (0..20_000).step_by(7) {
            assert_eq!(p.clip_index(&root.join(format!("c{i}.mp4"))), Some(i));
        }
        // Complete, so that a miss is answered without a scan. (These 20,000 adds and 2,858
        // lookups took 1.07 s with a scan per call, 0.06 s with the index, debug build.)
        assert_eq!(p.path_index.0.len(), p.clips.len());
        assert_eq!(p.clip_index(&root.join("missing.mp4")), None);

        // A list changed from outside is still answered right.
        let mut outside = ProjectClip::new("late.mp4".to_string());
        outside.status = ClipStatus::Unlabelled;
        p.clips.push(Arc::new(outside));
        assert_eq!(p.clip_index(&root.join("late.mp4")), Some(20_000));
        assert_eq!(p.add_clip(&root.join("late.mp4")).unwrap(), 20_000);

        // And after a load, where the file's order is the index.
        p.correct(3, 1).unwrap();
        p.save().unwrap();
        let loaded = Project::load(root).unwrap().unwrap();
        assert_eq!(loaded.path_index.0.len(), loaded.clips.len());
        assert_eq!(loaded.clip_index(&root.join("c3.mp4")), Some(3));
        assert_eq!(loaded.clip_index(&root.join("late.mp4")), Some(20_000));
    }

    #[test]
    fn add_clips_gives_what_add_clip_gives_one_by_one() {
        let dir = TempDir::new("add-many");
        let root = dir.path();
        let paths: Vec<PathBuf> = ["b.mp4", "a.mp4", "sub/../b.mp4", "../out.mp4", "c.mp4"]
            .iter()
            .map(|p| root.join(p))
            .collect();
        let mut one = Project::new(root, "t", labels());
        one.add_clip(&root.join("c.mp4")).unwrap();
        let mut many = one.clone();
        let singles: Vec<_> = paths.iter().map(|p| one.add_clip(p).ok()).collect();
        let batch: Vec<_> = many.add_clips(&paths).into_iter().map(Result::ok).collect();
        assert_eq!(batch, singles);
        assert_eq!(batch, [Some(1), Some(2), Some(1), None, Some(0)]);
        assert_eq!(
            many.clips.iter().map(|c| &c.path).collect::<Vec<_>>(),
            one.clips.iter().map(|c| &c.path).collect::<Vec<_>>()
        );
    }

    #[test]
    fn the_saver_keeps_one_pending_snapshot_per_project() {
        // Snapshots of many projects queued faster than they are written: each project's
        // file is written (one shared "latest" slot kept only the last project's).
        let dirs: Vec<TempDir> = (0..24).map(|_| TempDir::new("saver-many")).collect();
        let saver = ProjectSaver::spawn(Notify::none());
        for round in 0..3 {
            for dir in &dirs {
                let mut p = Project::new(dir.path(), "t", labels());
                for n in 0..=round {
                    p.add_clip(&dir.path().join(format!("c{n}.mp4"))).unwrap();
                }
                saver.save(p);
            }
        }
        assert!(saver.flush(Duration::from_secs(20)));
        for dir in &dirs {
            let p = Project::load(dir.path())
                .unwrap()
                .expect("each project was written");
            assert_eq!(
                p.clips.len(),
                3,
                "{}: the last snapshot",
                dir.path().display()
            );
        }
    }

    #[test]
    fn prediction_then_accept() {
        let dir = TempDir::new("accept");
        let mut p = Project::new(dir.path(), "mine", labels());
        let i = p.add_clip(&dir.path().join("a.mp4")).unwrap();
        let err = p.accept(i).unwrap_err();
        assert!(matches!(err, ProjectError::NoPrediction { .. }), "{err}");

        p.set_prediction(i, ranked(&[(1, 0.8), (0, 0.1)])).unwrap();
        assert_eq!(p.clips[i].status, ClipStatus::Predicted);
        assert_eq!(p.clips[i].label_id, Some(1));
        assert_eq!(p.clips[i].label.as_deref(), Some("bowling"));
        p.accept(i).unwrap();
        assert_eq!(p.clips[i].status, ClipStatus::Accepted);
        assert_eq!(p.clips[i].label_id, Some(1));

        // A new prediction is stored but does not move a confirmed label.
        p.set_prediction(i, ranked(&[(2, 0.9)])).unwrap();
        assert_eq!(p.clips[i].status, ClipStatus::Accepted);
        assert_eq!(p.clips[i].label_id, Some(1));
        assert_eq!(p.clips[i].predicted_top1().unwrap().label_id, 2);

        p.clear(i).unwrap();
        assert_eq!(p.clips[i].status, ClipStatus::Unlabelled);
        assert_eq!(p.clips[i].label_id, None);
        p.accept(i).unwrap();
        assert_eq!(p.clips[i].label.as_deref(), Some("cooking egg"));

        assert!(p.set_prediction(i, Vec::new()).is_err());
        assert!(matches!(
            p.set_prediction(
                i,
                ranked(&[(0, 0.5)])
                    .into_iter()
                    .map(|mut r| {
                        r.label_id = 7;
                        r
                    })
                    .collect()
            ),
            Err(ProjectError::LabelOutOfRange { label_id: 7, .. })
        ));
        assert!(matches!(
            p.accept(9),
            Err(ProjectError::NoSuchClip {
                index: 9,
                count: 1,
                ..
            })
        ));
    }

    #[test]
    fn correct_out_of_range_is_refused() {
        let dir = TempDir::new("correct");
        let mut p = Project::new(dir.path(), "mine", labels());
        let i = p.add_clip(&dir.path().join("a.mp4")).unwrap();
        let err = p.correct(i, 3).unwrap_err();
        assert!(
            matches!(
                err,
                ProjectError::LabelOutOfRange {
                    label_id: 3,
                    classes: 3,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("a.mp4: class id 3 is out of range"),
            "{err}"
        );
        assert_eq!(p.clips[i].status, ClipStatus::Unlabelled);
        p.correct(i, 2).unwrap();
        assert_eq!(p.clips[i].status, ClipStatus::Corrected);
        assert_eq!(p.clips[i].label.as_deref(), Some("cooking egg"));
        assert!(matches!(
            p.correct(4, 0),
            Err(ProjectError::NoSuchClip { .. })
        ));
    }

    #[test]
    fn replacing_the_label_set_drops_predictions_and_refuses_confirmed_labels() {
        let dir = TempDir::new("relabel");
        let mut p = Project::new(dir.path(), "mine", labels());
        let i = p.add_clip(&dir.path().join("a.mp4")).unwrap();
        p.set_prediction(i, ranked(&[(2, 0.9)])).unwrap();
        p.replace_label_set("two", vec!["x".into(), "y".into()])
            .unwrap();
        assert_eq!(p.label_set.labels, ["x", "y"]);
        assert_eq!(p.clips[i].status, ClipStatus::Unlabelled);
        assert!(p.clips[i].prediction.is_none());
        p.save().unwrap();
        assert_eq!(Project::load(dir.path()).unwrap().unwrap(), p);

        p.correct(i, 1).unwrap();
        let err = p.replace_label_set("mine", labels()).unwrap_err();
        assert!(
            err.to_string()
                .contains("1 clips have accepted or corrected"),
            "{err}"
        );
        assert_eq!(p.label_set.name, "two");
        assert!(
            p.replace_label_set("renamed", vec!["x".into(), "y".into()])
                .is_ok()
        );
        assert_eq!(p.clips[i].status, ClipStatus::Corrected);
        assert!(p.replace_label_set("none", Vec::new()).is_err());
    }

    #[test]
    fn saver_writes_the_latest_snapshot_and_flush_waits() {
        let dir = TempDir::new("saver");
        let notified = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&notified);
        let saver = ProjectSaver::spawn(Notify::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        }));
        let mut p = Project::new(dir.path(), "mine", labels());
        for n in 0..20 {
            p.add_clip(&dir.path().join(format!("c{n}.mp4"))).unwrap();
            saver.save(p.clone());
        }
        assert!(saver.flush(Duration::from_secs(10)));
        let on_disk = Project::load(dir.path()).unwrap().unwrap();
        assert_eq!(on_disk.clips.len(), 20);
        let events: Vec<SaveEvent> = saver.events().try_iter().collect();
        assert!(!events.is_empty() && events.len() <= 20);
        assert_eq!(
            events.last(),
            Some(&SaveEvent::Saved {
                path: p.path(),
                clips: 20
            })
        );
        assert_eq!(notified.load(Ordering::SeqCst), events.len());

        // Dropping the saver writes what is still pending.
        p.correct(0, 1).unwrap();
        saver.save(p.clone());
        drop(saver);
        assert_eq!(Project::load(dir.path()).unwrap().unwrap(), p);
    }

    #[test]
    fn saver_reports_a_failed_write() {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new("saverfail");
        let locked = dir.path().join("locked");
        fs::create_dir(&locked).unwrap();
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o555)).unwrap();
        // Root ignores permissions: then there is nothing to observe.
        let probe = locked.join("probe");
        let enforced = fs::write(&probe, b"x").is_err();
        let _ = fs::remove_file(&probe);

        let saver = ProjectSaver::spawn(Notify::none());
        let p = Project::new(&locked, "mine", labels());
        saver.save(p.clone());
        assert!(saver.flush(Duration::from_secs(10)));
        let event = saver.events().try_recv().unwrap();
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();
        if enforced {
            match event {
                SaveEvent::Failed { path, error } => {
                    assert_eq!(path, p.path());
                    assert!(
                        error.contains("kineto-project.json: cannot write"),
                        "{error}"
                    );
                }
                other => panic!("expected a failure, got {other:?}"),
            }
        } else {
            eprintln!("running as root: permissions not enforced, failure not checked");
        }
    }
}
