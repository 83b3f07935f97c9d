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
pub mod keys;
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
/// On any failure the temporary file is removed.
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temp_path_for(path)?;
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        file.write_all(bytes)?;
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

/// Makes file-controlled text safe for a one-line message: control
/// characters are escaped and very long text is cut.
#[deny(clippy::indexing_slicing)]
pub fn printable(s: &str) -> String {
    const MAX_CHARS: usize = 120;
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == MAX_CHARS {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_and_cuts() {
        assert_eq!(printable("a\nb"), "a\\nb");
        assert_eq!(printable(&"x".repeat(500)).len(), 123);
        assert_eq!(printable("backbone.fc.weight"), "backbone.fc.weight");
    }
}
