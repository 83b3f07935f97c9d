//! Checkpoint files: the PaddlePaddle `.pdparams` reader/writer, the safetensors reader/writer,
//! the key layouts and their canonical form, and opening a weights file with its architecture
//! detected ([`file`]). Every format reads into and writes from [`ParamStore`] (`model::params`,
//! re-exported here); atomic file writes and printable error text are shared with the rest of
//! the crate.
//!
//! A `.pdparams` file is a Python pickle, and unpickling runs code, so the
//! reader in [`pickle`] is a restricted VM: a fixed opcode set, a fixed table
//! of importable names, and bounded memory. Nothing in a file is executed.
//!
//! The reader must not panic on any input, so `pickle`, `pdparams`, `safetensors`,
//! `model::params` and [`printable`] deny `unwrap`, `expect` and unchecked indexing (each
//! module or item for itself, so that sibling modules keep their own lint rules).

pub mod file;
pub mod inference_model;
pub mod int8;
pub mod keys;
pub mod paddle_graph;
pub mod pdparams;
pub mod pickle;
pub mod safetensors;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub use pdparams::{encode_pdparams, parse_pdparams, read_pdparams, write_pdparams};
pub use pickle::PickleError;

pub use crate::model::params::{ParamStore, ParamTensor};

/// Everything that can go wrong reading or writing a checkpoint. Display is
/// one line: `<path>: <problem>`.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file could not be read or written (`action` is "read" or "write").
    #[error("{}: cannot {action}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a pickle the restricted reader accepts.
    #[error("{}: {source}", path.display())]
    Pickle {
        path: PathBuf,
        #[source]
        source: PickleError,
    },
    /// The pickle is fine but its top-level object is not a str-keyed dict.
    #[error("{}: {problem}", path.display())]
    Layout { path: PathBuf, problem: String },
    /// A file an inference model needs beside this one is missing or belongs to another model.
    #[error("{}: {problem}", path.display())]
    Companion { path: PathBuf, problem: String },
    /// An inference model's graph is unreadable or is no model Kineto runs.
    #[error("{}: {problem}", path.display())]
    Graph { path: PathBuf, problem: String },
    /// One entry is not a usable float array.
    #[error("{}: {key}: {problem}", path.display())]
    Entry {
        path: PathBuf,
        /// The key, made printable (see [`printable`]).
        key: String,
        problem: String,
    },
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A temporary name beside `path` (same directory, so a rename is atomic): hidden, and unique
/// per process and call.
pub fn temp_path_for(path: &Path) -> std::io::Result<PathBuf> {
    let Some(file_name) = path.file_name() else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "path has no file name",
        ));
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok(dir.join(format!(
        ".{}.tmp-{}-{}",
        file_name.to_string_lossy(),
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    )))
}

/// Fsyncs the directory holding `path` so that a rename into it is durable; not every
/// platform can open a directory, so this is best effort.
pub fn sync_parent_dir(path: &Path) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Proves that files can be created in `dir` (writes and removes a small probe file), so that
/// long work can refuse an unwritable destination before it starts.
pub fn check_dir_writable(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".kineto-write-test-{}", std::process::id()));
    fs::write(&probe, b"ok")?;
    let _ = fs::remove_file(&probe);
    Ok(())
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory is written,
/// fsynced and renamed over `path`, so readers see either the old file or the complete new one.
/// A `path` that is a symbolic link stays one: the file it points at is replaced. The replaced
/// file's permissions carry over. Temporary files that killed writers left beside the file are
/// removed (once per folder and process). On any failure the temporary file is removed.
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let target = link_target(path);
    let path = target.as_path();
    remove_stale_temps(path);
    let tmp = temp_path_for(path)?;
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        file.write_all(bytes)?;
        if let Ok(old) = fs::metadata(path) {
            file.set_permissions(old.permissions())?;
        }
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        sync_parent_dir(path);
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The file a chain of symbolic links at `path` ends at (`path` itself when it is no link; at
/// most 40 links are followed, as the kernel does).
fn link_target(path: &Path) -> PathBuf {
    let mut current = path.to_path_buf();
    for _ in 0..40 {
        match fs::symlink_metadata(&current) {
            Ok(m) if m.file_type().is_symlink() => match fs::read_link(&current) {
                Ok(next) if next.is_absolute() => current = next,
                Ok(next) => {
                    let dir = current.parent().map(Path::to_path_buf).unwrap_or_default();
                    current = dir.join(next);
                }
                Err(_) => break,
            },
            _ => break,
        }
    }
    current
}

/// Removes `.<name>.tmp-<pid>-<n>` files beside `path` whose writing process is gone (a
/// `kill -9` or a power cut between write and rename leaves them). Each folder is looked at
/// once per process: a project saved every second in a folder of 100,000 clips must not list
/// the folder every time.
fn remove_stale_temps(path: &Path) {
    use std::collections::HashSet;
    use std::sync::{LazyLock, Mutex};
    static CLEANED: LazyLock<Mutex<HashSet<PathBuf>>> = LazyLock::new(Default::default);
    let (Some(name), dir) = (path.file_name(), path.parent().unwrap_or(Path::new("."))) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    if !crate::progress::lock(&CLEANED).insert(dir.to_path_buf()) {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let prefix = format!(".{}.tmp-", name.to_string_lossy());
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(rest) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|pid| pid != std::process::id() && !process_alive(pid)) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Whether a process with this id exists (signal 0 probes without sending anything).
fn process_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        // SAFETY: kill with signal 0 only checks that the process exists; it has no effect.
        let status = unsafe { libc::kill(pid, 0) };
        status == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

pub use crate::text::printable;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn atomic_writes_keep_links_and_permissions_and_clean_dead_writers_temps() {
        use std::os::unix::fs::PermissionsExt;
        let dir = crate::files::TempDir::new("atomic");
        let real = dir.path().join("real.json");
        fs::write(&real, b"old").unwrap();
        fs::set_permissions(&real, fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink("real.json", &link).unwrap();
        // A temp file of a writer that was killed (no such process) and one of this process.
        let stale = dir.path().join(".real.json.tmp-999999999-0");
        fs::write(&stale, b"half").unwrap();

        write_file_atomic(&link, b"new").unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink(),
            "still a link"
        );
        assert_eq!(fs::read(&real).unwrap(), b"new");
        assert_eq!(
            fs::metadata(&real).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(!stale.exists(), "the dead writer's temp file is gone");
    }

    #[test]
    fn printable_escapes_and_cuts() {
        assert_eq!(printable("a\nb"), "a\\nb");
        assert_eq!(printable(&"x".repeat(500)).len(), 123);
        assert_eq!(printable("backbone.fc.weight"), "backbone.fc.weight");
    }
}
