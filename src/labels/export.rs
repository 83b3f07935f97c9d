//! A labelling project out to what training reads: a PaddleVideo list file (`path label_id`
//! per line), a CSV report, or one folder per class (the layout `kineto train DIR` reads).
//!
//! Files are written to a temporary name beside the target and renamed. Class folders never
//! overwrite an existing file that differs from the clip: the export stops before writing
//! anything and names the file.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::project::{ClipStatus, Project, ProjectClip, ProjectError, absolute_normal};
use crate::checkpoint::{sync_parent_dir, temp_path_for, write_file_atomic};
use crate::report::csv_field;

pub const CSV_HEADER: &str = "path,status,label,label_id,score,updated_at";

/// How `export_class_folders` puts a clip into its class folder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FolderMode {
    #[default]
    Copy,
    /// Falls back to a copy when the output is on another file system.
    HardLink,
    /// Absolute links to the clips (Unix only).
    SymLink,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportSummary {
    /// Names changed so that `kineto train` reads them (a label or clip name starting with
    /// `.` is hidden from it): "what → what it became", one per renamed label or clip.
    pub renamed: Vec<String>,
    /// Clips in the export (including `unchanged`).
    pub clips: usize,
    /// Class folders with at least one clip.
    pub classes: usize,
    /// Hard links that became copies because the output is on another file system.
    pub copied_across_devices: usize,
    /// Clips already present with the same content (a repeated export), left alone.
    pub unchanged: usize,
}

/// Accepted and corrected clips (and predicted ones with `include_predicted`) with their class.
fn labelled(project: &Project, include_predicted: bool) -> impl Iterator<Item = (usize, usize)> {
    project
        .clips
        .iter()
        .enumerate()
        .filter_map(move |(i, clip)| {
            let take = clip.status.is_confirmed()
                || (include_predicted && clip.status == ClipStatus::Predicted);
            clip.label_id.filter(|_| take).map(|id| (i, id))
        })
}

fn clip_abs(project: &Project, idx: usize) -> Result<PathBuf, ProjectError> {
    project.abs_path(idx).ok_or(ProjectError::NoSuchClip {
        path: project.path(),
        index: idx,
        count: project.clips.len(),
    })
}

/// The directory holding `out` (`.` for a bare file name).
fn dir_of(out: &Path) -> &Path {
    match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// The clip's path relative to `base` with `/` separators when it lies under `base`, else
/// absolute.
fn path_for_output(project: &Project, idx: usize, base: &Path) -> Result<String, ProjectError> {
    let abs = clip_abs(project, idx)?;
    let not_utf8 = || ProjectError::Invalid {
        path: abs.clone(),
        problem: "the path is not UTF-8".to_string(),
    };
    let normal = absolute_normal(&abs).unwrap_or_else(|| abs.clone());
    if let Some(base) = absolute_normal(base)
        && let Ok(rel) = normal.strip_prefix(&base)
        && !rel.as_os_str().is_empty()
    {
        let parts: Option<Vec<&str>> = rel.iter().map(|p| p.to_str()).collect();
        return parts.map(|p| p.join("/")).ok_or_else(not_utf8);
    }
    normal.to_str().map(str::to_string).ok_or_else(not_utf8)
}

fn write_out(out: &Path, text: &str) -> Result<(), ProjectError> {
    write_file_atomic(out, text.as_bytes()).map_err(|source| ProjectError::Io {
        path: out.to_path_buf(),
        action: "write",
        source,
    })
}

/// Writes a PaddleVideo list file: `path label_id` per labelled clip, paths relative to the
/// file's folder when the clip lies under it (else absolute). Returns the number of lines.
pub fn export_list(
    project: &Project,
    out: &Path,
    include_predicted: bool,
) -> Result<usize, ProjectError> {
    let base = dir_of(out);
    let mut text = String::new();
    let mut lines = 0;
    for (idx, label_id) in labelled(project, include_predicted) {
        let path = path_for_output(project, idx, base)?;
        if path.chars().any(char::is_whitespace) {
            return Err(ProjectError::Invalid {
                path: PathBuf::from(path),
                problem: "a PaddleVideo list file cannot hold a path with whitespace (rename \
                          the clip or export class folders)"
                    .to_string(),
            });
        }
        let _ = writeln!(text, "{path} {label_id}");
        lines += 1;
    }
    write_out(out, &text)?;
    Ok(lines)
}

/// Writes every clip as `path,status,label,label_id,score,updated_at` (score: the predicted
/// top-1's). Paths as in `export_list`. Returns the number of rows.
pub fn export_csv(project: &Project, out: &Path) -> Result<usize, ProjectError> {
    let base = dir_of(out);
    let mut text = format!("{CSV_HEADER}\n");
    for (idx, clip) in project.clips.iter().enumerate() {
        let path = path_for_output(project, idx, base)?;
        let _ = writeln!(
            text,
            "{},{},{},{},{},{}",
            csv_field(&path),
            clip.status,
            csv_field(clip.label.as_deref().unwrap_or("")),
            clip.label_id.map_or(String::new(), |id| id.to_string()),
            clip.predicted_top1()
                .map_or(String::new(), |r| format!("{:.6}", r.score)),
            csv_field(clip.updated_at.as_deref().unwrap_or("")),
        );
    }
    write_out(out, &text)?;
    Ok(project.clips.len())
}

/// A label as a folder name: path separators, characters Windows refuses and control
/// characters become `_`; leading dots become `_` (a hidden folder is skipped by
/// `kineto train`); an empty or dot-only name becomes `class_<id>`.
pub fn folder_name_for_label(label: &str, label_id: usize) -> String {
    let name: String = label
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|') {
                '_'
            } else {
                c
            }
        })
        .collect();
    let name = name.trim().trim_end_matches('.').to_string();
    if name.is_empty() || name.chars().all(|c| c == '.') {
        format!("class_{label_id}")
    } else {
        unhidden(name)
    }
}

/// `name` with its leading dots turned into `_` (`.x` → `_x`), so that no reader skips it.
fn unhidden(name: String) -> String {
    let dots = name.len() - name.trim_start_matches('.').len();
    if dots == 0 {
        return name;
    }
    format!("{}{}", "_".repeat(dots), &name[dots..])
}

/// The clip's file name in its class folder: its relative path with `/` turned into `_`, so
/// that `a/clip.mp4` and `b/clip.mp4` stay apart, and a leading `.` turned into `_` (a hidden
/// file is skipped by `kineto train`).
pub fn flat_file_name(clip: &ProjectClip) -> String {
    unhidden(clip.path.replace('/', "_"))
}

struct Planned {
    src: PathBuf,
    dest: PathBuf,
    unchanged: bool,
}

/// Puts each labelled clip at `out_dir/<label>/<flat file name>`. Everything is checked before
/// anything is written: two clips landing on one name, two labels on one folder (names that
/// differ only in case count as one: they are one on case-insensitive file systems), or an
/// existing different file stop the export with an error naming it.
pub fn export_class_folders(
    project: &Project,
    out_dir: &Path,
    mode: FolderMode,
    include_predicted: bool,
) -> Result<ExportSummary, ProjectError> {
    export_class_folders_with(project, out_dir, mode, include_predicted, &mut |_, _| true)
}

/// [`export_class_folders`], telling `progress(done, total)` after each clip; it stops with
/// [`ProjectError::Cancelled`] when `progress` returns false (the clips written stay, each
/// whole).
pub fn export_class_folders_with(
    project: &Project,
    out_dir: &Path,
    mode: FolderMode,
    include_predicted: bool,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<ExportSummary, ProjectError> {
    let labels = &project.label_set.labels;
    let mut folders: BTreeMap<usize, String> = BTreeMap::new();
    let mut folder_owner: HashMap<String, usize> = HashMap::new();
    let mut dest_owner: HashMap<String, usize> = HashMap::new();
    let mut renamed = Vec::new();
    let mut plan = Vec::new();
    for (idx, label_id) in labelled(project, include_predicted) {
        let Some(label) = labels.get(label_id) else {
            return Err(ProjectError::LabelOutOfRange {
                path: clip_abs(project, idx)?,
                label_id,
                classes: labels.len(),
            });
        };
        let folder = folder_name_for_label(label, label_id);
        if !folders.contains_key(&label_id) && folder != *label {
            renamed.push(format!("label {label:?} → folder {folder:?}"));
        }
        match folder_owner.get(&folder.to_lowercase()) {
            Some(&other) if other != label_id => {
                return Err(ProjectError::NameCollision {
                    path: out_dir.join(&folder),
                    first: format!("label {:?}", labels.get(other).map_or("", String::as_str)),
                    second: format!("label {label:?}"),
                });
            }
            _ => {
                folder_owner.insert(folder.to_lowercase(), label_id);
            }
        }
        folders.insert(label_id, folder.clone());
        let clip = &project.clips[idx];
        let file_name = flat_file_name(clip);
        if file_name.starts_with('_') && clip.path.starts_with('.') {
            renamed.push(format!("clip {:?} → {file_name:?}", clip.path));
        }
        let dest = out_dir.join(&folder).join(&file_name);
        let key = format!("{}/{}", folder.to_lowercase(), file_name.to_lowercase());
        if let Some(&first) = dest_owner.get(&key) {
            return Err(ProjectError::NameCollision {
                path: dest,
                first: project.clips[first].path.clone(),
                second: clip.path.clone(),
            });
        }
        dest_owner.insert(key, idx);
        let src = clip_abs(project, idx)?;
        if !src.is_file() {
            return Err(ProjectError::Io {
                path: src,
                action: "export",
                source: io::Error::new(io::ErrorKind::NotFound, "the clip file is missing"),
            });
        }
        let unchanged = match fs::symlink_metadata(&dest) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => {
                return Err(ProjectError::Io {
                    path: dest,
                    action: "inspect",
                    source: e,
                });
            }
            Ok(_) => {
                if same_file(&src, &dest).map_err(|e| ProjectError::Io {
                    path: dest.clone(),
                    action: "compare",
                    source: e,
                })? {
                    true
                } else {
                    return Err(ProjectError::Exists {
                        path: dest,
                        clip: src,
                    });
                }
            }
        };
        plan.push(Planned {
            src,
            dest,
            unchanged,
        });
    }

    let mut summary = ExportSummary {
        clips: plan.len(),
        classes: folders.len(),
        renamed,
        ..ExportSummary::default()
    };
    for folder in folders.values() {
        let dir = out_dir.join(folder);
        fs::create_dir_all(&dir).map_err(|e| ProjectError::Io {
            path: dir,
            action: "create the folder",
            source: e,
        })?;
    }
    for (done, item) in plan.iter().enumerate() {
        if !progress(done, plan.len()) {
            return Err(ProjectError::Cancelled {
                path: out_dir.to_path_buf(),
                done,
                total: plan.len(),
            });
        }
        if item.unchanged {
            summary.unchanged += 1;
            continue;
        }
        let io_err = |action, source| ProjectError::Io {
            path: item.dest.clone(),
            action,
            source,
        };
        match mode {
            FolderMode::Copy => {
                copy_atomic(&item.src, &item.dest).map_err(|e| io_err("copy", e))?
            }
            FolderMode::HardLink => match fs::hard_link(&item.src, &item.dest) {
                Ok(()) => {}
                Err(e) if is_cross_device(&e) => {
                    copy_atomic(&item.src, &item.dest).map_err(|e| io_err("copy", e))?;
                    summary.copied_across_devices += 1;
                }
                Err(e) => return Err(io_err("hard-link", e)),
            },
            FolderMode::SymLink => {
                let target = fs::canonicalize(&item.src)
                    .ok()
                    .or_else(|| absolute_normal(&item.src))
                    .unwrap_or_else(|| item.src.clone());
                symlink(&target, &item.dest).map_err(|e| io_err("link", e))?;
            }
        }
    }
    for folder in folders.values() {
        sync_parent_dir(&out_dir.join(folder).join("x"));
    }
    Ok(summary)
}

fn is_cross_device(e: &io::Error) -> bool {
    const EXDEV: i32 = 18;
    e.kind() == io::ErrorKind::CrossesDevices || (cfg!(unix) && e.raw_os_error() == Some(EXDEV))
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(not(unix))]
fn symlink(_target: &Path, _link: &Path) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "symbolic link export is only supported on Unix; use copy or hard link",
    ))
}

/// Copies to a temporary name beside `dest`, fsyncs, renames.
fn copy_atomic(src: &Path, dest: &Path) -> io::Result<()> {
    let tmp = temp_path_for(dest)?;
    let result = (|| {
        fs::copy(src, &tmp)?;
        fs::File::open(&tmp)?.sync_all()?;
        fs::rename(&tmp, dest)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Whether `dest` already is `src`: the same file (a link to it) or identical bytes.
fn same_file(src: &Path, dest: &Path) -> io::Result<bool> {
    if let (Ok(a), Ok(b)) = (fs::canonicalize(src), fs::canonicalize(dest))
        && a == b
    {
        return Ok(true);
    }
    let (a, b) = match (fs::metadata(src), fs::metadata(dest)) {
        (Ok(a), Ok(b)) => (a, b),
        // A dangling link or an unreadable entry is not the clip.
        _ => return Ok(false),
    };
    if !b.is_file() || a.len() != b.len() {
        return Ok(false);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if a.dev() == b.dev() && a.ino() == b.ino() {
            return Ok(true);
        }
    }
    let mut fa = io::BufReader::new(fs::File::open(src)?);
    let mut fb = io::BufReader::new(fs::File::open(dest)?);
    let mut ba = vec![0u8; 64 * 1024];
    let mut bb = vec![0u8; 64 * 1024];
    loop {
        let n = read_full(&mut fa, &mut ba)?;
        let m = read_full(&mut fb, &mut bb)?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::project::tests::{TempDir, labels, ranked};

    /// A project in `<tmp>/proj` with clips on disk:
    /// 0 `sub/a.mp4` accepted bowling (predicted 0.8), 1 `b.mp4` corrected "cooking egg",
    /// 2 `c.mp4` predicted archery (0.6), 3 `d.mp4` unlabelled, 4 `other/a.mp4` corrected
    /// bowling.
    fn sample(dir: &TempDir) -> Project {
        let root = dir.path().join("proj");
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::create_dir_all(root.join("other")).unwrap();
        let mut p = Project::new(&root, "mine", labels());
        for (rel, bytes) in [
            ("sub/a.mp4", "clip a"),
            ("b.mp4", "clip b"),
            ("c.mp4", "clip c"),
            ("d.mp4", "clip d"),
            ("other/a.mp4", "other clip a"),
        ] {
            fs::write(root.join(rel), bytes).unwrap();
            p.add_clip(&root.join(rel)).unwrap();
        }
        p.set_prediction(0, ranked(&[(1, 0.8), (2, 0.1)])).unwrap();
        p.accept(0).unwrap();
        p.correct(1, 2).unwrap();
        p.set_prediction(2, ranked(&[(0, 0.6)])).unwrap();
        p.correct(4, 1).unwrap();
        p
    }

    #[test]
    fn list_file_content() {
        let dir = TempDir::new("exportlist");
        let p = sample(&dir);
        let out = p.root.join("train.list");
        assert_eq!(export_list(&p, &out, false).unwrap(), 3);
        assert_eq!(
            fs::read_to_string(&out).unwrap(),
            "sub/a.mp4 1\nb.mp4 2\nother/a.mp4 1\n"
        );
        assert_eq!(export_list(&p, &out, true).unwrap(), 4);
        assert_eq!(
            fs::read_to_string(&out).unwrap(),
            "sub/a.mp4 1\nb.mp4 2\nc.mp4 0\nother/a.mp4 1\n"
        );
        // Outside the project folder: relative where the clip is under the list's folder,
        // absolute otherwise.
        let out = p.root.join("sub").join("only.list");
        export_list(&p, &out, false).unwrap();
        let root = absolute_normal(&p.root).unwrap();
        let root = root.to_str().unwrap();
        assert_eq!(
            fs::read_to_string(&out).unwrap(),
            format!("a.mp4 1\n{root}/b.mp4 2\n{root}/other/a.mp4 1\n")
        );
        // Only the list itself was written.
        let mut names: Vec<_> = fs::read_dir(&p.root)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["b.mp4", "c.mp4", "d.mp4", "other", "sub", "train.list"]
        );
    }

    #[test]
    fn list_file_refuses_whitespace_in_paths() {
        let dir = TempDir::new("exportspace");
        let mut p = sample(&dir);
        let i = p.add_clip(&p.root.join("with space.mp4")).unwrap();
        p.correct(i, 0).unwrap();
        let out = p.root.join("train.list");
        let err = export_list(&p, &out, false).unwrap_err();
        assert!(
            err.to_string()
                .contains("with space.mp4: a PaddleVideo list"),
            "{err}"
        );
        assert!(!out.exists());
    }

    #[test]
    fn csv_content() {
        let dir = TempDir::new("exportcsv");
        let mut p = sample(&dir);
        for (i, clip) in p.clips.iter_mut().enumerate() {
            std::sync::Arc::make_mut(clip).updated_at = Some(format!("2026-01-01T12:00:0{i}Z"));
        }
        let out = p.root.join("labels.csv");
        assert_eq!(export_csv(&p, &out).unwrap(), 5);
        assert_eq!(
            fs::read_to_string(&out).unwrap(),
            "path,status,label,label_id,score,updated_at\n\
             sub/a.mp4,accepted,bowling,1,0.800000,2026-01-01T12:00:00Z\n\
             b.mp4,corrected,cooking egg,2,,2026-01-01T12:00:01Z\n\
             c.mp4,predicted,archery,0,0.600000,2026-01-01T12:00:02Z\n\
             d.mp4,unlabelled,,,,2026-01-01T12:00:03Z\n\
             other/a.mp4,corrected,bowling,1,,2026-01-01T12:00:04Z\n"
        );
        p.label_set.labels[2] = "cooking, \"egg\"".to_string();
        p.correct(1, 2).unwrap();
        std::sync::Arc::make_mut(&mut p.clips[1]).updated_at = None;
        export_csv(&p, &out).unwrap();
        let text = fs::read_to_string(&out).unwrap();
        assert!(
            text.contains("\nb.mp4,corrected,\"cooking, \"\"egg\"\"\",2,,\n"),
            "{text}"
        );
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for class in fs::read_dir(dir).unwrap() {
            let class = class.unwrap();
            for f in fs::read_dir(class.path()).unwrap() {
                out.push(format!(
                    "{}/{}",
                    class.file_name().to_str().unwrap(),
                    f.unwrap().file_name().to_str().unwrap()
                ));
            }
        }
        out.sort();
        out
    }

    #[test]
    fn class_folders_by_copy() {
        let dir = TempDir::new("foldercopy");
        let p = sample(&dir);
        let out = dir.path().join("classes");
        let summary = export_class_folders(&p, &out, FolderMode::Copy, false).unwrap();
        assert_eq!(
            summary,
            ExportSummary {
                clips: 3,
                classes: 2,
                ..Default::default()
            }
        );
        assert_eq!(
            listing(&out),
            [
                "bowling/other_a.mp4",
                "bowling/sub_a.mp4",
                "cooking egg/b.mp4"
            ]
        );
        assert_eq!(
            fs::read_to_string(out.join("bowling/sub_a.mp4")).unwrap(),
            "clip a"
        );
        assert!(
            !fs::symlink_metadata(out.join("bowling/sub_a.mp4"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        // Again: identical files are left alone.
        let again = export_class_folders(&p, &out, FolderMode::Copy, true).unwrap();
        assert_eq!((again.clips, again.classes, again.unchanged), (4, 3, 3));
        assert_eq!(
            fs::read_to_string(out.join("archery/c.mp4")).unwrap(),
            "clip c"
        );
    }

    #[test]
    fn class_folders_by_hard_link() {
        let dir = TempDir::new("folderhard");
        let p = sample(&dir);
        let out = dir.path().join("classes");
        let summary = export_class_folders(&p, &out, FolderMode::HardLink, false).unwrap();
        assert_eq!((summary.clips, summary.copied_across_devices), (3, 0));
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let a = fs::metadata(p.root.join("b.mp4")).unwrap();
            let b = fs::metadata(out.join("cooking egg/b.mp4")).unwrap();
            assert_eq!(a.ino(), b.ino());
        }
    }

    #[cfg(unix)]
    #[test]
    fn class_folders_by_symlink() {
        let dir = TempDir::new("foldersym");
        let p = sample(&dir);
        let out = dir.path().join("classes");
        let summary = export_class_folders(&p, &out, FolderMode::SymLink, false).unwrap();
        assert_eq!((summary.clips, summary.classes), (3, 2));
        let link = out.join("bowling/sub_a.mp4");
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        let target = fs::read_link(&link).unwrap();
        assert!(target.is_absolute());
        assert_eq!(target, fs::canonicalize(p.root.join("sub/a.mp4")).unwrap());
        assert_eq!(fs::read_to_string(&link).unwrap(), "clip a");
        // Repeating it sees the links as the clips.
        let again = export_class_folders(&p, &out, FolderMode::SymLink, false).unwrap();
        assert_eq!(again.unchanged, 3);
    }

    #[test]
    fn class_folders_refuse_to_overwrite_and_collide() {
        let dir = TempDir::new("foldercollide");
        let mut p = sample(&dir);
        let out = dir.path().join("classes");
        fs::create_dir_all(out.join("bowling")).unwrap();
        fs::write(out.join("bowling/sub_a.mp4"), "something else").unwrap();
        let err = export_class_folders(&p, &out, FolderMode::Copy, false).unwrap_err();
        assert!(matches!(err, ProjectError::Exists { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("sub_a.mp4: already exists and differs"),
            "{err}"
        );
        // Nothing was written: the check runs before any copy.
        assert!(!out.join("cooking egg").exists());
        assert_eq!(
            fs::read_to_string(out.join("bowling/sub_a.mp4")).unwrap(),
            "something else"
        );

        // `sub_a.mp4` at the root lands where `sub/a.mp4` does.
        fs::write(p.root.join("sub_a.mp4"), "root clip").unwrap();
        let i = p.add_clip(&p.root.join("sub_a.mp4")).unwrap();
        p.correct(i, 1).unwrap();
        let out2 = dir.path().join("classes2");
        let err = export_class_folders(&p, &out2, FolderMode::Copy, false).unwrap_err();
        assert!(matches!(err, ProjectError::NameCollision { .. }), "{err}");
        assert!(
            err.to_string().contains("both sub/a.mp4 and sub_a.mp4"),
            "{err}"
        );
        assert!(!out2.exists());

        // Two labels that make one folder name.
        let mut p = sample(&dir);
        p.label_set.labels[0] = "cooking/egg".to_string();
        p.label_set.labels[2] = "cooking_egg".to_string();
        p.correct(3, 0).unwrap();
        p.correct(1, 2).unwrap();
        let err =
            export_class_folders(&p, &dir.path().join("c3"), FolderMode::Copy, false).unwrap_err();
        assert!(matches!(err, ProjectError::NameCollision { .. }), "{err}");
    }

    #[test]
    fn folder_names_are_safe() {
        assert_eq!(folder_name_for_label("a/b:c", 0), "a_b_c");
        assert_eq!(folder_name_for_label("  ..  ", 7), "class_7");
        assert_eq!(folder_name_for_label("", 3), "class_3");
        assert_eq!(folder_name_for_label("cooking egg", 1), "cooking egg");
        assert_eq!(folder_name_for_label(".hidden", 2), "_hidden");
        assert_eq!(folder_name_for_label("..x.", 2), "__x");
    }

    #[test]
    fn class_folders_never_drop_a_clip_that_train_would_skip_or_a_file_system_would_merge() {
        // A label or clip name starting with `.` was exported as a hidden name that
        // `kineto train` skips without a word; `Run`/`run` and `A.mp4`/`a.mp4` overwrote each
        // other on case-insensitive file systems.
        let dir = TempDir::new("export-names");
        let root = dir.path().join("proj");
        fs::create_dir_all(&root).unwrap();
        let names = vec![".hidden".to_string(), "Run".to_string(), "run".to_string()];
        let mut p = Project::new(&root, "mine", names);
        for (rel, label) in [(".secret.mp4", 0), ("plain.mp4", 0)] {
            fs::write(root.join(rel), rel).unwrap();
            let i = p.add_clip(&root.join(rel)).unwrap();
            p.correct(i, label).unwrap();
        }
        let out = dir.path().join("out");
        let summary = export_class_folders(&p, &out, FolderMode::Copy, false).unwrap();
        assert_eq!(summary.clips, 2);
        assert_eq!(summary.renamed.len(), 2, "{:?}", summary.renamed);
        let how = crate::files::Walk {
            wanted: &|_: &Path| true,
            skip_hidden: true,
            cancel: None,
        };
        let seen = crate::files::walk(&out, how);
        assert_eq!(
            seen.len(),
            2,
            "both clips are visible to a walk that skips hidden names"
        );
        assert!(out.join("_hidden/_secret.mp4").is_file());

        // Two labels that differ only in case: refused before anything is written.
        let mut q = Project::new(&root, "mine", p.label_set.labels.clone());
        for (rel, label) in [("plain.mp4", 1), (".secret.mp4", 2)] {
            let i = q.add_clip(&root.join(rel)).unwrap();
            q.correct(i, label).unwrap();
        }
        let out2 = dir.path().join("out2");
        let err = export_class_folders(&q, &out2, FolderMode::Copy, false).unwrap_err();
        assert!(matches!(err, ProjectError::NameCollision { .. }), "{err}");
        assert!(!out2.exists());

        // Two clips that differ only in case, one label: refused.
        fs::write(root.join("A.mp4"), "A").unwrap();
        fs::write(root.join("a.mp4"), "a").unwrap();
        let mut r = Project::new(&root, "mine", p.label_set.labels.clone());
        for rel in ["A.mp4", "a.mp4"] {
            let i = r.add_clip(&root.join(rel)).unwrap();
            r.correct(i, 1).unwrap();
        }
        let out3 = dir.path().join("out3");
        let err = export_class_folders(&r, &out3, FolderMode::Copy, false).unwrap_err();
        assert!(matches!(err, ProjectError::NameCollision { .. }), "{err}");
        assert!(!out3.exists());
    }
}
