//! The file system as users have it: folder walks that survive symlink loops and odd files, and
//! reads that refuse what is not a regular file before anything blocks on it (a FIFO named
//! `clip.mp4` would block an `open` forever).

use std::collections::HashSet;
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::progress::CancelToken;

/// What a folder walk found: a regular file it takes, or a path it cannot take and why.
#[derive(Clone, Debug, PartialEq)]
pub enum Found {
    File(PathBuf),
    Problem { path: PathBuf, problem: String },
}

impl Found {
    pub fn path(&self) -> &Path {
        match self {
            Found::File(p) | Found::Problem { path: p, .. } => p,
        }
    }
}

/// How a walk chooses.
#[derive(Clone, Copy)]
pub struct Walk<'a> {
    /// Which file names are taken (others are passed over without a word).
    pub wanted: &'a dyn Fn(&Path) -> bool,
    /// Pass over names that start with `.` (files and folders).
    pub skip_hidden: bool,
    /// Stop early (what was found so far is returned).
    pub cancel: Option<&'a CancelToken>,
}

/// Every wanted file under `root`, recursively, in walk order (each folder's entries sorted by
/// name). Links are followed, but each
/// folder and each file is visited once (by device and inode): `a -> .` neither repeats nor
/// hangs, and two links to one clip give one entry (the first path in sorted order). A wanted
/// name that is not a regular file (FIFO, socket, device, broken link) and a folder that
/// cannot be read become `Found::Problem` entries in their place.
pub fn walk(root: &Path, how: Walk) -> Vec<Found> {
    let mut seen = Seen::default();
    let mut out = Vec::new();
    match fs::metadata(root) {
        Ok(meta) if meta.is_dir() => {
            seen.first_visit(root, &meta);
            walk_dir(root, &how, &mut seen, &mut out);
        }
        Ok(meta) => out.extend(take_file(root.to_path_buf(), &meta, &mut seen)),
        Err(e) => out.push(Found::Problem {
            path: root.to_path_buf(),
            problem: io_problem(&e),
        }),
    }
    out
}

fn walk_dir(dir: &Path, how: &Walk, seen: &mut Seen, out: &mut Vec<Found>) {
    let mut paths = match fs::read_dir(dir) {
        Ok(entries) => entries.flatten().map(|e| e.path()).collect::<Vec<_>>(),
        Err(e) => {
            out.push(Found::Problem {
                path: dir.to_path_buf(),
                problem: format!("folder cannot be read: {}", io_problem(&e)),
            });
            return;
        }
    };
    paths.sort();
    for path in paths {
        if how.cancel.is_some_and(|c| c.is_cancelled()) {
            return;
        }
        if how.skip_hidden && is_hidden(&path) {
            continue;
        }
        match fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => {
                if seen.first_visit(&path, &meta) {
                    walk_dir(&path, how, seen, out);
                }
            }
            Ok(meta) if (how.wanted)(&path) => out.extend(take_file(path, &meta, seen)),
            Ok(_) => {}
            Err(e) if (how.wanted)(&path) => out.push(Found::Problem {
                problem: match fs::symlink_metadata(&path) {
                    Ok(m) if m.file_type().is_symlink() => "a broken link".to_string(),
                    _ => io_problem(&e),
                },
                path,
            }),
            Err(_) => {}
        }
    }
}

fn take_file(path: PathBuf, meta: &Metadata, seen: &mut Seen) -> Option<Found> {
    if let Some(problem) = not_regular(meta) {
        return Some(Found::Problem { path, problem });
    }
    seen.first_visit(&path, meta).then_some(Found::File(path))
}

/// What was visited: (device, inode) on Unix, the canonical path elsewhere.
#[derive(Default)]
struct Seen(HashSet<FileId>);

#[cfg(unix)]
type FileId = (u64, u64);
#[cfg(not(unix))]
type FileId = PathBuf;

impl Seen {
    fn first_visit(&mut self, path: &Path, meta: &Metadata) -> bool {
        #[cfg(unix)]
        let id = {
            use std::os::unix::fs::MetadataExt;
            let _ = path;
            (meta.dev(), meta.ino())
        };
        #[cfg(not(unix))]
        let id = {
            let _ = meta;
            fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
        };
        self.0.insert(id)
    }
}

pub fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

/// Why a file of this kind cannot be read as data, or `None` for a regular file.
pub fn not_regular(meta: &Metadata) -> Option<String> {
    if meta.is_file() {
        return None;
    }
    if meta.is_dir() {
        return Some("is a folder, not a file".into());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        let kind = if t.is_fifo() {
            "a FIFO (named pipe)"
        } else if t.is_socket() {
            "a socket"
        } else if t.is_char_device() || t.is_block_device() {
            "a device"
        } else {
            "not a file"
        };
        Some(format!("not a regular file: {kind}"))
    }
    #[cfg(not(unix))]
    Some("not a regular file".into())
}

/// Opens `path` for reading only if it is a regular file. The open does not block on a FIFO
/// (non-blocking on Unix), and the type is checked on the opened file, so nothing can swap it.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    let meta = file.metadata()?;
    match not_regular(&meta) {
        None => Ok(file),
        Some(problem) => Err(io::Error::new(io::ErrorKind::InvalidInput, problem)),
    }
}

/// `fs::read` for regular files only (see [`open_regular`]).
pub fn read(path: &Path) -> io::Result<Vec<u8>> {
    let mut file = open_regular(path)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// `fs::read_to_string` for regular files only (see [`open_regular`]).
pub fn read_to_string(path: &Path) -> io::Result<String> {
    let mut file = open_regular(path)?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    Ok(text)
}

/// An I/O error in a user's words: "no such file", "permission denied", or the system's text
/// without its "(os error N)".
pub fn io_problem(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file or folder".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => {
            let s = e.to_string();
            s.split(" (os error").next().unwrap_or(&s).to_string()
        }
    }
}

#[cfg(test)]
pub(crate) use test_dir::TempDir;

#[cfg(test)]
mod test_dir {
    use std::fs;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::SystemTime;

    /// A fresh directory under the system temp dir, removed on drop.
    pub(crate) struct TempDir(pub PathBuf);

    impl TempDir {
        pub(crate) fn new(tag: &str) -> Self {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let dir = std::env::temp_dir().join(format!(
                "kineto-test-{tag}-{}-{}-{nanos}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        pub(crate) fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn videos(p: &Path) -> bool {
        p.extension().is_some_and(|e| e == "mp4")
    }

    fn walk_all(root: &Path) -> Vec<Found> {
        walk(
            root,
            Walk {
                wanted: &videos,
                skip_hidden: false,
                cancel: None,
            },
        )
    }

    #[cfg(unix)]
    #[test]
    fn links_to_the_folder_itself_neither_repeat_nor_hang_and_a_fifo_is_a_problem() {
        use std::os::unix::fs::symlink;
        let dir = TempDir::new("walk");
        let root = dir.path();
        fs::create_dir(root.join("sub")).unwrap();
        fs::write(root.join("a.mp4"), b"x").unwrap();
        fs::write(root.join("sub/b.mp4"), b"y").unwrap();
        fs::write(root.join("notes.txt"), b"z").unwrap();
        symlink(".", root.join("loop1")).unwrap();
        symlink(".", root.join("loop2")).unwrap();
        symlink("..", root.join("sub/up")).unwrap();
        symlink("a.mp4", root.join("same.mp4")).unwrap();
        symlink("gone.mp4", root.join("broken.mp4")).unwrap();
        let fifo = root.join("pipe.mp4");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);

        let found = walk_all(root);
        let files: Vec<_> = found
            .iter()
            .filter_map(|f| match f {
                Found::File(p) => Some(p.strip_prefix(root).unwrap().to_path_buf()),
                _ => None,
            })
            .collect();
        assert_eq!(files, [PathBuf::from("a.mp4"), PathBuf::from("sub/b.mp4")]);
        let problems: Vec<_> = found
            .iter()
            .filter_map(|f| match f {
                Found::Problem { path, problem } => {
                    Some((path.file_name().unwrap().to_owned(), problem.clone()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems
                .iter()
                .any(|(n, p)| n == "broken.mp4" && p == "a broken link")
        );
        assert!(
            problems
                .iter()
                .any(|(n, p)| n == "pipe.mp4" && p.contains("FIFO"))
        );
        // Reading the FIFO is refused at once rather than blocking.
        let err = read(&fifo).unwrap_err();
        assert!(err.to_string().contains("FIFO"), "{err}");
    }

    #[test]
    fn hidden_names_are_skipped_when_asked() {
        let dir = TempDir::new("walk");
        fs::create_dir(dir.path().join(".cache")).unwrap();
        fs::write(dir.path().join(".cache/a.mp4"), b"x").unwrap();
        fs::write(dir.path().join(".b.mp4"), b"x").unwrap();
        fs::write(dir.path().join("c.mp4"), b"x").unwrap();
        assert_eq!(walk_all(dir.path()).len(), 3);
        let shown = walk(
            dir.path(),
            Walk {
                wanted: &videos,
                skip_hidden: true,
                cancel: None,
            },
        );
        assert_eq!(shown, [Found::File(dir.path().join("c.mp4"))]);
    }
}
