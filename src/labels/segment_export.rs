//! Segments of long videos out to what other tools and training read: a segments CSV, an
//! ActivityNet-style JSON, a Kinetics-style CSV, and trimmed clips in class folders (the layout
//! `kineto train DIR` reads).
//!
//! Everything works on [`SegmentRow`]s (a video, a span, a label), so the window's project and
//! the command line export the same way. Files are written to a temporary name and renamed. Clip
//! names are `<stem>_<start>-<end>.<ext>` in `DIR/<label folder>/` (folder names as in
//! [`super::export::folder_name_for_label`]); two rows landing on one name, or two labels on one
//! folder (names that differ only in case count as one), stop the export before anything is
//! written. A clip that already exists is never overwritten: it is left as it is and counted.
//! A clip that cannot be cut is an error row; the others are still written.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::export::folder_name_for_label;
use super::project::{Project, ProjectError};
use crate::checkpoint::write_file_atomic;
use crate::progress::CancelToken;
use crate::report::{SEGMENTS_CSV_HEADER, csv_field, seconds_cell};
use crate::video::cut::{CutContainer, CutMode, CutOutcome, CutSource, cut_file_name};

/// One labelled span of one video.
#[derive(Clone, Debug, PartialEq)]
pub struct SegmentRow {
    pub video: PathBuf,
    /// The whole video's duration (ActivityNet's `duration`).
    pub duration_s: f64,
    pub start_s: f64,
    pub end_s: f64,
    pub label_id: usize,
    pub label: String,
    /// The model's score, for proposed segments.
    pub score: Option<f32>,
}

/// The labelled segments of a project's clips, clip by clip: those a person accepted or
/// corrected, and predicted ones too with `include_predicted`. A clip's duration is the one
/// recorded when its segments were proposed, else its last segment's end.
pub fn project_segment_rows(project: &Project, include_predicted: bool) -> Vec<SegmentRow> {
    let mut rows = Vec::new();
    for (i, clip) in project.clips.iter().enumerate() {
        let Some(video) = project.abs_path(i) else {
            continue;
        };
        let duration_s = clip
            .duration_s
            .or_else(|| clip.segments.last().map(|s| s.end_s))
            .unwrap_or(0.0);
        for s in &clip.segments {
            let wanted = s.status.is_confirmed()
                || (include_predicted && s.status == crate::labels::project::ClipStatus::Predicted);
            let (Some(label_id), Some(label)) = (s.label_id, s.label.clone()) else {
                continue;
            };
            if !wanted {
                continue;
            }
            rows.push(SegmentRow {
                video: video.clone(),
                duration_s,
                start_s: s.start_s,
                end_s: s.end_s,
                label_id,
                label,
                score: s.top_k().first().map(|r| r.score),
            });
        }
    }
    rows
}

/// The header of the Kinetics-style CSV.
pub const KINETICS_CSV_HEADER: &str = "label,youtube_id,time_start,time_end,split";

fn write_out(out: &Path, text: &str) -> Result<(), ProjectError> {
    write_file_atomic(out, text.as_bytes()).map_err(|source| ProjectError::Io {
        path: out.to_path_buf(),
        action: "write",
        source,
    })
}

/// The file stem of a video (its ActivityNet / Kinetics id).
fn stem_of(video: &Path) -> String {
    video
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `path,start_s,end_s,label_id,label,score` per row (the same columns as `kineto segments
/// --format csv`).
pub fn segments_csv_text(rows: &[SegmentRow]) -> String {
    let mut out = format!("{SEGMENTS_CSV_HEADER}\n");
    for r in rows {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{}",
            csv_field(&r.video.display().to_string()),
            seconds_cell(r.start_s),
            seconds_cell(r.end_s),
            r.label_id,
            csv_field(&r.label),
            r.score.map_or(String::new(), |s| format!("{s:.6}")),
        );
    }
    out
}

/// Writes [`segments_csv_text`] to `out`; returns the number of rows.
pub fn export_segments_csv(rows: &[SegmentRow], out: &Path) -> Result<usize, ProjectError> {
    write_out(out, &segments_csv_text(rows))?;
    Ok(rows.len())
}

/// `{"database": {STEM: {"duration", "annotations": [{"segment": [s, e], "label"}]}}}`. Two
/// videos with one stem would share an entry: refused, naming both.
pub fn activitynet_json(rows: &[SegmentRow]) -> Result<String, ProjectError> {
    let mut owners: HashMap<String, &Path> = HashMap::new();
    let mut database: BTreeMap<String, (f64, Vec<Value>)> = BTreeMap::new();
    for r in rows {
        let stem = stem_of(&r.video);
        match owners.get(&stem) {
            Some(&other) if other != r.video.as_path() => {
                return Err(ProjectError::NameCollision {
                    path: PathBuf::from(&stem),
                    first: other.display().to_string(),
                    second: r.video.display().to_string(),
                });
            }
            _ => {
                owners.insert(stem.clone(), &r.video);
            }
        }
        let entry = database.entry(stem).or_insert((r.duration_s, Vec::new()));
        entry.1.push(json!({
            "segment": [r.start_s, r.end_s],
            "label": r.label,
        }));
    }
    let mut videos = Map::new();
    for (stem, (duration, annotations)) in database {
        videos.insert(
            stem,
            json!({ "duration": duration, "annotations": annotations }),
        );
    }
    let doc = json!({ "database": videos });
    serde_json::to_string_pretty(&doc).map_err(|e| ProjectError::Invalid {
        path: PathBuf::from("database"),
        problem: e.to_string(),
    })
}

/// Writes [`activitynet_json`] to `out`; returns the number of annotations.
pub fn export_activitynet(rows: &[SegmentRow], out: &Path) -> Result<usize, ProjectError> {
    let text = activitynet_json(rows).map_err(|e| match e {
        ProjectError::NameCollision {
            path,
            first,
            second,
        } => ProjectError::NameCollision {
            path: out.join(path),
            first,
            second,
        },
        other => other,
    })?;
    write_out(out, &text)?;
    Ok(rows.len())
}

/// `label,youtube_id,time_start,time_end,split` per row (youtube_id: the video's stem).
pub fn kinetics_csv_text(rows: &[SegmentRow], split: &str) -> String {
    let mut out = format!("{KINETICS_CSV_HEADER}\n");
    for r in rows {
        let _ = writeln!(
            out,
            "{},{},{},{},{}",
            csv_field(&r.label),
            csv_field(&stem_of(&r.video)),
            seconds_cell(r.start_s),
            seconds_cell(r.end_s),
            csv_field(split),
        );
    }
    out
}

/// Writes [`kinetics_csv_text`] to `out`; returns the number of rows.
pub fn export_kinetics_csv(
    rows: &[SegmentRow],
    out: &Path,
    split: &str,
) -> Result<usize, ProjectError> {
    write_out(out, &kinetics_csv_text(rows, split))?;
    Ok(rows.len())
}

/// One row's clip.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipResult {
    /// Index into the rows.
    pub row: usize,
    /// Where the clip is (or would have been).
    pub dest: PathBuf,
    pub status: ClipStatus,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ClipStatus {
    /// Cut and written: what the clip holds of the source.
    Written(CutOutcome),
    /// The file was there already; left as it is.
    Existing,
    /// The clip could not be cut (one line naming the file).
    Failed(String),
}

/// What [`export_segment_clips`] did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SegmentClipsSummary {
    /// One per row, in the rows' order (rows after a cancel are missing).
    pub clips: Vec<ClipResult>,
    /// Class folders with at least one row.
    pub classes: usize,
    /// Labels whose folder name differs from the label: "label → folder".
    pub renamed: Vec<String>,
}

impl SegmentClipsSummary {
    pub fn written(&self) -> usize {
        self.clips
            .iter()
            .filter(|c| matches!(c.status, ClipStatus::Written(_)))
            .count()
    }

    pub fn failed(&self) -> usize {
        self.clips
            .iter()
            .filter(|c| matches!(c.status, ClipStatus::Failed(_)))
            .count()
    }

    /// The largest distance (seconds) a written clip moved from its row's span: a key-frame
    /// cut starts at the key frame before the start.
    pub fn max_shift_s(&self, rows: &[SegmentRow]) -> f64 {
        self.clips
            .iter()
            .filter_map(|c| match &c.status {
                ClipStatus::Written(out) => {
                    rows.get(c.row).map(|r| out.shift_s(r.start_s, r.end_s))
                }
                _ => None,
            })
            .fold(0.0, f64::max)
    }
}

/// `name` with its leading dots turned into `_` (a hidden file is skipped by `kineto train`).
fn unhidden(name: String) -> String {
    let dots = name.len() - name.trim_start_matches('.').len();
    if dots == 0 {
        return name;
    }
    format!("{}{}", "_".repeat(dots), &name[dots..])
}

/// Cuts every row into `out_dir/<label folder>/<stem>_<start>-<end>.<ext>` (the source's
/// container; `mode` as in [`crate::video::cut::cut_video`]). Names are planned and checked before anything is
/// written; `progress(done, total)` is told after each clip, and `cancel` stops between clips
/// with [`ProjectError::Cancelled`] (the clips written stay, each whole).
pub fn export_segment_clips(
    rows: &[SegmentRow],
    out_dir: &Path,
    mode: CutMode,
    cancel: &CancelToken,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<SegmentClipsSummary, ProjectError> {
    let mut folders: BTreeMap<usize, String> = BTreeMap::new();
    let mut folder_owner: HashMap<String, (usize, &str)> = HashMap::new();
    let mut dest_owner: HashMap<String, usize> = HashMap::new();
    let mut renamed = Vec::new();
    // (row, destination, or why the row cannot be cut)
    let mut plan: Vec<(usize, Result<PathBuf, String>)> = Vec::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        let folder = folder_name_for_label(&r.label, r.label_id);
        match folder_owner.get(&folder.to_lowercase()) {
            Some(&(other, other_label)) if other != r.label_id || other_label != r.label => {
                return Err(ProjectError::NameCollision {
                    path: out_dir.join(&folder),
                    first: format!("label {other_label:?}"),
                    second: format!("label {:?}", r.label),
                });
            }
            _ => {
                folder_owner.insert(folder.to_lowercase(), (r.label_id, r.label.as_str()));
            }
        }
        if !folders.contains_key(&r.label_id) && folder != r.label {
            renamed.push(format!("label {:?} → folder {folder:?}", r.label));
        }
        folders.insert(r.label_id, folder.clone());
        let container = match CutContainer::of(&r.video) {
            Ok(c) => c,
            Err(e) => {
                plan.push((i, Err(e.to_string())));
                continue;
            }
        };
        let name = unhidden(cut_file_name(
            &stem_of(&r.video),
            r.start_s,
            r.end_s,
            container,
        ));
        let dest = out_dir.join(&folder).join(&name);
        let key = format!("{}/{}", folder.to_lowercase(), name.to_lowercase());
        if let Some(&first) = dest_owner.get(&key) {
            return Err(ProjectError::NameCollision {
                path: dest,
                first: format!(
                    "{} {}-{} s",
                    rows[first].video.display(),
                    seconds_cell(rows[first].start_s),
                    seconds_cell(rows[first].end_s)
                ),
                second: format!(
                    "{} {}-{} s",
                    r.video.display(),
                    seconds_cell(r.start_s),
                    seconds_cell(r.end_s)
                ),
            });
        }
        dest_owner.insert(key, i);
        plan.push((i, Ok(dest)));
    }
    for folder in folders.values() {
        let dir = out_dir.join(folder);
        std::fs::create_dir_all(&dir).map_err(|source| ProjectError::Io {
            path: dir,
            action: "create the folder",
            source,
        })?;
    }
    let mut source: Option<(PathBuf, Result<CutSource, crate::video::VideoError>)> = None;
    let mut summary = SegmentClipsSummary {
        clips: Vec::with_capacity(plan.len()),
        classes: folders.len(),
        renamed,
    };
    let total = plan.len();
    for (done, (row, dest)) in plan.into_iter().enumerate() {
        if cancel.is_cancelled() {
            return Err(ProjectError::Cancelled {
                path: out_dir.to_path_buf(),
                done,
                total,
            });
        }
        let r = &rows[row];
        let result = match dest {
            Err(problem) => ClipResult {
                row,
                dest: out_dir.to_path_buf(),
                status: ClipStatus::Failed(problem),
            },
            Ok(dest) => {
                let status = if std::fs::symlink_metadata(&dest).is_ok() {
                    ClipStatus::Existing
                } else {
                    // One demux pass per video, not per segment (rows come video by video).
                    if source.as_ref().is_none_or(|(p, _)| *p != r.video) {
                        source = Some((r.video.clone(), CutSource::open(&r.video)));
                    }
                    match source.as_ref().map(|(_, s)| s) {
                        Some(Ok(src)) => match src.cut(&dest, r.start_s, r.end_s, mode) {
                            Ok(out) => ClipStatus::Written(out),
                            Err(e) => ClipStatus::Failed(e.to_string()),
                        },
                        Some(Err(e)) => ClipStatus::Failed(e.to_string()),
                        None => ClipStatus::Failed(format!("{}: not opened", r.video.display())),
                    }
                };
                ClipResult { row, dest, status }
            }
        };
        summary.clips.push(result);
        progress(done + 1, total);
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::TempDir;
    use crate::video::synth::{ClipSpec, Codec, Container, synth_clip};

    fn row(video: &Path, start_s: f64, end_s: f64, label_id: usize, label: &str) -> SegmentRow {
        SegmentRow {
            video: video.to_path_buf(),
            duration_s: 4.0,
            start_s,
            end_s,
            label_id,
            label: label.to_string(),
            score: Some(0.75),
        }
    }

    #[test]
    fn csv_activitynet_and_kinetics_text() {
        let a = Path::new("/v/long a.mp4");
        let b = Path::new("/w/b.webm");
        let rows = vec![
            row(a, 0.0, 2.5, 1, "run"),
            row(a, 2.5, 4.0, 0, "jump, high"),
            row(b, 1.0, 3.0, 1, "run"),
        ];
        assert_eq!(
            segments_csv_text(&rows),
            "path,start_s,end_s,label_id,label,score\n\
             /v/long a.mp4,0,2.5,1,run,0.750000\n\
             /v/long a.mp4,2.5,4,0,\"jump, high\",0.750000\n\
             /w/b.webm,1,3,1,run,0.750000\n"
        );
        assert_eq!(
            kinetics_csv_text(&rows, "train"),
            "label,youtube_id,time_start,time_end,split\n\
             run,long a,0,2.5,train\n\
             \"jump, high\",long a,2.5,4,train\n\
             run,b,1,3,train\n"
        );
        let doc: Value = serde_json::from_str(&activitynet_json(&rows).unwrap()).unwrap();
        assert_eq!(
            doc,
            json!({"database": {
                "long a": {"duration": 4.0, "annotations": [
                    {"segment": [0.0, 2.5], "label": "run"},
                    {"segment": [2.5, 4.0], "label": "jump, high"},
                ]},
                "b": {"duration": 4.0, "annotations": [
                    {"segment": [1.0, 3.0], "label": "run"},
                ]},
            }})
        );
        // Two videos with one stem.
        let clash = vec![
            row(a, 0.0, 1.0, 0, "x"),
            row(Path::new("/z/long a.mkv"), 0.0, 1.0, 0, "x"),
        ];
        let err = activitynet_json(&clash).unwrap_err();
        assert!(matches!(err, ProjectError::NameCollision { .. }), "{err}");
        let dir = TempDir::new("segexport");
        let out = dir.path().join("a.json");
        assert!(export_activitynet(&clash, &out).is_err());
        assert!(!out.exists());
        assert_eq!(
            export_kinetics_csv(&rows, &dir.path().join("k.csv"), "val").unwrap(),
            3
        );
        assert_eq!(
            export_segments_csv(&rows, &dir.path().join("s.csv")).unwrap(),
            3
        );
    }

    #[test]
    fn clips_into_class_folders_with_error_rows_and_no_overwrite() {
        let dir = TempDir::new("segclips");
        let src = dir.path().join(".hidden src.mp4");
        let mut spec = ClipSpec::new(Container::Mp4, Codec::H264, 100);
        spec.width = 160;
        spec.height = 120;
        synth_clip(&src, &spec).unwrap_or_else(|e| panic!("{e}"));
        let missing = dir.path().join("missing.mp4");
        let flv = dir.path().join("odd.flv");
        let rows = vec![
            row(&src, 0.0, 1.0, 0, "a/b"),
            row(&src, 1.0, 2.4, 1, "run"),
            row(&missing, 0.0, 1.0, 1, "run"),
            row(&flv, 0.0, 1.0, 1, "run"),
            row(&src, 2.4, 4.0, 1, "run"),
        ];
        let out = dir.path().join("out");
        let cancel = CancelToken::new();
        let mut seen = Vec::new();
        let summary = export_segment_clips(&rows, &out, CutMode::Reencode, &cancel, &mut |d, t| {
            seen.push((d, t))
        })
        .unwrap();
        assert_eq!(seen.last(), Some(&(5, 5)));
        assert_eq!(
            (summary.written(), summary.failed(), summary.classes),
            (3, 2, 2)
        );
        assert_eq!(summary.renamed, ["label \"a/b\" → folder \"a_b\""]);
        assert!(out.join("a_b/_hidden src_0-1.mp4").is_file());
        assert!(out.join("run/_hidden src_1-2.4.mp4").is_file());
        assert!(out.join("run/_hidden src_2.4-4.mp4").is_file());
        let failed: Vec<&str> = summary
            .clips
            .iter()
            .filter_map(|c| match &c.status {
                ClipStatus::Failed(e) => Some(e.as_str()),
                _ => None,
            })
            .collect();
        assert!(failed[0].contains("missing.mp4"), "{failed:?}");
        assert!(failed[1].contains("odd.flv: cannot cut"), "{failed:?}");
        assert!(
            summary.max_shift_s(&rows) < 1e-9,
            "re-encoded cuts are exact"
        );

        // Again: nothing is overwritten.
        let again =
            export_segment_clips(&rows, &out, CutMode::KeyFrames, &cancel, &mut |_, _| {}).unwrap();
        assert_eq!(again.written(), 0);
        assert_eq!(
            again
                .clips
                .iter()
                .filter(|c| c.status == ClipStatus::Existing)
                .count(),
            3
        );

        // Two labels on one folder, two rows on one name: refused before anything is written.
        let out2 = dir.path().join("out2");
        let clash = vec![row(&src, 0.0, 1.0, 0, "Run"), row(&src, 1.0, 2.0, 1, "run")];
        let err = export_segment_clips(&clash, &out2, CutMode::KeyFrames, &cancel, &mut |_, _| {})
            .unwrap_err();
        assert!(matches!(err, ProjectError::NameCollision { .. }), "{err}");
        let twice = vec![row(&src, 0.0, 1.0, 0, "x"), row(&src, 0.0, 1.0, 0, "x")];
        let err = export_segment_clips(&twice, &out2, CutMode::KeyFrames, &cancel, &mut |_, _| {})
            .unwrap_err();
        assert!(matches!(err, ProjectError::NameCollision { .. }), "{err}");
        assert!(!out2.exists());

        // Cancelled before the first clip.
        cancel.cancel();
        let err = export_segment_clips(
            &rows,
            &dir.path().join("out3"),
            CutMode::KeyFrames,
            &cancel,
            &mut |_, _| {},
        )
        .unwrap_err();
        assert!(
            matches!(err, ProjectError::Cancelled { done: 0, .. }),
            "{err}"
        );
    }
}
