//! Model checkpoints: the in-memory parameter store every format loads into,
//! the PaddlePaddle `.pdparams` reader/writer and the safetensors reader/writer.
//!
//! A `.pdparams` file is a Python pickle, and unpickling runs code, so the
//! reader in [`pickle`] is a restricted VM: a fixed opcode set, a fixed table
//! of importable names, and bounded memory. Nothing in a file is executed.
//!
//! The reader must not panic on any input, so `pickle`, `pdparams` and the
//! items below deny `unwrap`, `expect` and unchecked indexing (set per item,
//! so that sibling modules keep their own lint rules).

pub mod file;
pub mod keys;
pub mod load;
pub mod pdparams;
pub mod pickle;
pub mod safetensors;

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub use pdparams::{encode_pdparams, parse_pdparams, read_pdparams, write_pdparams};
pub use pickle::PickleError;

/// One named f32 array. `shape` may be empty (0-d scalar).
/// `data.len() == product(shape)` (1 for 0-d).
#[derive(Clone, Debug, PartialEq)]
pub struct ParamTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// `ParamTensor::new` was given data whose length does not fit the shape.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("shape {shape:?} needs {expected} values, got {actual}")]
pub struct ShapeError {
    pub shape: Vec<usize>,
    /// `None` when the element count overflows `usize`.
    pub expected: ExpectedCount,
    pub actual: usize,
}

/// Element count a shape asks for (or that it overflows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpectedCount {
    Count(usize),
    Overflow,
}

impl fmt::Display for ExpectedCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedCount::Count(n) => write!(f, "{n}"),
            ExpectedCount::Overflow => f.write_str("more than usize::MAX"),
        }
    }
}

/// Element count of `shape` (1 for a 0-d shape); `None` if it overflows.
/// A zero dimension gives 0 even when the other dimensions would overflow.
#[deny(clippy::indexing_slicing)]
pub fn shape_numel(shape: &[usize]) -> Option<usize> {
    if shape.contains(&0) {
        return Some(0);
    }
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

#[deny(clippy::indexing_slicing)]
impl ParamTensor {
    /// Checks that `data` holds exactly `product(shape)` values.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self, ShapeError> {
        match shape_numel(&shape) {
            Some(n) if n == data.len() => Ok(ParamTensor { shape, data }),
            expected => Err(ShapeError {
                shape,
                expected: expected.map_or(ExpectedCount::Overflow, ExpectedCount::Count),
                actual: data.len(),
            }),
        }
    }

    /// Number of elements (`data.len()`).
    pub fn numel(&self) -> usize {
        self.data.len()
    }
}

/// Ordered name -> tensor map. Insertion order is kept (it is the file order
/// for loaded checkpoints, which the writer reproduces).
#[derive(Clone, Debug, Default)]
pub struct ParamStore {
    entries: Vec<(String, ParamTensor)>,
    index: HashMap<String, usize>,
}

impl PartialEq for ParamStore {
    /// Same names in the same order with equal tensors. (`f32` equality:
    /// use the tests' bitwise helpers where NaN payloads matter.)
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

#[deny(clippy::indexing_slicing)]
impl ParamStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `name`, or replaces its tensor in place (keeping its position).
    pub fn insert(&mut self, name: impl Into<String>, tensor: ParamTensor) {
        let name = name.into();
        if let Some(&i) = self.index.get(&name)
            && let Some(slot) = self.entries.get_mut(i)
        {
            slot.1 = tensor;
            return;
        }
        self.index.insert(name.clone(), self.entries.len());
        self.entries.push((name, tensor));
    }

    pub fn get(&self, name: &str) -> Option<&ParamTensor> {
        let &i = self.index.get(name)?;
        self.entries.get(i).map(|(_, t)| t)
    }

    /// Removes `name`; the remaining entries keep their order.
    pub fn remove(&mut self, name: &str) -> Option<ParamTensor> {
        let i = self.index.remove(name)?;
        if i >= self.entries.len() {
            return None;
        }
        let (_, tensor) = self.entries.remove(i);
        // Entries after `i` moved down by one.
        for slot in self.index.values_mut() {
            if *slot > i {
                *slot -= 1;
            }
        }
        Some(tensor)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Names in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(n, _)| n.as_str())
    }

    /// (name, tensor) pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ParamTensor)> {
        self.entries.iter().map(|(n, t)| (n.as_str(), t))
    }

    /// Sum of the element counts of all tensors.
    pub fn num_values(&self) -> usize {
        self.entries.iter().map(|(_, t)| t.numel()).sum()
    }
}

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

    fn t(shape: &[usize], data: &[f32]) -> ParamTensor {
        ParamTensor::new(shape.to_vec(), data.to_vec()).unwrap()
    }

    #[test]
    fn tensor_new_checks_len() {
        assert_eq!(t(&[], &[0.5]).numel(), 1);
        assert_eq!(t(&[2, 0, 3], &[]).numel(), 0);
        assert_eq!(t(&[2, 3], &[0.0; 6]).shape, vec![2, 3]);
        let e = ParamTensor::new(vec![4], vec![1.0; 3]).unwrap_err();
        assert_eq!(e.to_string(), "shape [4] needs 4 values, got 3");
        let e = ParamTensor::new(vec![], vec![]).unwrap_err();
        assert_eq!(e.to_string(), "shape [] needs 1 values, got 0");
        let e = ParamTensor::new(vec![usize::MAX, 2], vec![]).unwrap_err();
        assert_eq!(e.expected, ExpectedCount::Overflow);
        assert_eq!(shape_numel(&[usize::MAX, 2, 0]), Some(0));
    }

    #[test]
    fn store_keeps_order_and_replaces_in_place() {
        let mut s = ParamStore::new();
        assert!(s.is_empty());
        s.insert("a", t(&[1], &[1.0]));
        s.insert("b".to_string(), t(&[2], &[2.0, 2.5]));
        s.insert("c", t(&[], &[3.0]));
        s.insert("b", t(&[1], &[9.0]));
        assert_eq!(s.names().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(s.get("b").unwrap().data, vec![9.0]);
        assert_eq!(s.len(), 3);
        assert_eq!(s.num_values(), 3);
        assert!(s.contains("c") && !s.contains("d"));

        assert_eq!(s.remove("a").unwrap().data, vec![1.0]);
        assert!(s.remove("a").is_none());
        assert_eq!(s.names().collect::<Vec<_>>(), ["b", "c"]);
        // The index still finds the entries that moved.
        assert_eq!(s.get("c").unwrap().data, vec![3.0]);
        assert_eq!(s.get("b").unwrap().data, vec![9.0]);
        s.insert("a", t(&[1], &[4.0]));
        let pairs: Vec<_> = s.iter().map(|(n, t)| (n.to_string(), t.data[0])).collect();
        assert_eq!(
            pairs,
            [("b".into(), 9.0), ("c".into(), 3.0), ("a".to_string(), 4.0)]
        );
    }

    #[test]
    fn printable_escapes_and_cuts() {
        assert_eq!(printable("a\nb"), "a\\nb");
        assert_eq!(printable(&"x".repeat(500)).len(), 123);
        assert_eq!(printable("backbone.fc.weight"), "backbone.fc.weight");
    }
}
