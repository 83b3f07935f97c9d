//! The weights cache: `<dir>/weights/<file_name>` and `<dir>/weights/index.json`, a JSON array
//! of `{name, file_name, sha256, size, url, fetched_at, source}` rewritten atomically.
//!
//! `<dir>` is `--cache-dir DIR`, else `KINETO_CACHE_DIR`, else the user's data directory
//! (`directories`: `~/.local/share/kineto` on Linux).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::WeightsError;
use super::catalog::CatalogEntry;
use crate::checkpoint::write_file_atomic;

pub const CACHE_ENV: &str = "KINETO_CACHE_DIR";

/// One cached file, as `index.json` records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub name: String,
    pub file_name: String,
    /// Lower-case hex sha256 of the file, recorded when it was first verified.
    pub sha256: String,
    pub size: u64,
    /// Where it was downloaded from (null for an import of a name the catalog does not know).
    pub url: Option<String>,
    /// UTC, RFC 3339.
    pub fetched_at: String,
    /// `download` or `import` (then the imported file's path follows: `import <path>`).
    pub source: String,
}

impl IndexEntry {
    /// A catalog entry's file, verified just now: name, file name and URL from the catalog.
    pub fn from_catalog(entry: &CatalogEntry, sha256: String, size: u64, source: &str) -> Self {
        Self {
            name: entry.name.clone(),
            file_name: entry.file_name.clone(),
            sha256,
            size,
            url: Some(entry.url.clone()),
            fetched_at: now_rfc3339(),
            source: source.to_string(),
        }
    }
}

/// An advisory lock held on part of the cache; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct CacheLock {
    _file: fs::File,
}

#[derive(Clone, Debug)]
pub struct Cache {
    /// The cache root (`<dir>`); weights live in `<dir>/weights`.
    pub root: PathBuf,
}

impl Cache {
    /// `flag` (from `--cache-dir`), else `KINETO_CACHE_DIR`, else the user's data directory.
    pub fn locate(flag: Option<&Path>) -> Result<Cache, WeightsError> {
        if let Some(dir) = flag {
            return Ok(Cache::at(dir));
        }
        if let Some(dir) = std::env::var_os(CACHE_ENV).filter(|d| !d.is_empty()) {
            return Ok(Cache::at(Path::new(&dir)));
        }
        directories::ProjectDirs::from("", "", "kineto")
            .map(|dirs| Cache::at(dirs.data_dir()))
            .ok_or_else(|| {
                WeightsError::Usage(format!(
                    "no user data directory (HOME unset?); set {CACHE_ENV} or pass --cache-dir DIR"
                ))
            })
    }

    pub fn at(root: &Path) -> Cache {
        Cache {
            root: root.to_path_buf(),
        }
    }

    pub fn weights_dir(&self) -> PathBuf {
        self.root.join("weights")
    }

    pub fn index_path(&self) -> PathBuf {
        self.weights_dir().join("index.json")
    }

    /// Where a file of this name lives in the cache.
    pub fn file_path(&self, file_name: &str) -> PathBuf {
        self.weights_dir().join(file_name)
    }

    /// Where a download of this file accumulates until it is verified.
    pub fn part_path(&self, file_name: &str) -> PathBuf {
        self.weights_dir().join(format!("{file_name}.part"))
    }

    /// Where a resumable download keeps the server's validator (ETag or Last-Modified) of the
    /// bytes in its `.part` file, sent back as `If-Range` so that a file changed on the server
    /// is downloaded whole rather than spliced.
    pub fn validator_path(&self, file_name: &str) -> PathBuf {
        self.weights_dir()
            .join(format!("{file_name}.part.validator"))
    }

    /// Holds the advisory lock of the cache index until dropped: two processes updating
    /// `index.json` at once would each write back what they read, losing the other's entry.
    pub fn lock_index(&self) -> Result<CacheLock, WeightsError> {
        self.lock("index")
    }

    /// Holds the advisory lock of one cached file (its download, `.part` file and rename) until
    /// dropped.
    pub fn lock_entry(&self, file_name: &str) -> Result<CacheLock, WeightsError> {
        self.lock(&format!("file-{file_name}"))
    }

    /// `<dir>/locks/<name>.lock`, locked exclusively (waiting for another holder): the lock is
    /// the kernel's (`flock`), so a process killed while holding it releases it.
    fn lock(&self, name: &str) -> Result<CacheLock, WeightsError> {
        let dir = self.root.join("locks");
        fs::create_dir_all(&dir)
            .map_err(|e| WeightsError::io(&dir, "create the cache folder", e))?;
        let path = dir.join(format!("{name}.lock"));
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| WeightsError::io(&path, "lock", e))?;
        file.lock()
            .map_err(|e| WeightsError::io(&path, "lock", e))?;
        Ok(CacheLock { _file: file })
    }

    /// Creates `<dir>/weights` if needed.
    pub fn ensure_dir(&self) -> Result<PathBuf, WeightsError> {
        let dir = self.weights_dir();
        fs::create_dir_all(&dir)
            .map_err(|e| WeightsError::io(&dir, "create the cache folder", e))?;
        Ok(dir)
    }

    /// The index; empty when there is none yet.
    pub fn read_index(&self) -> Result<Vec<IndexEntry>, WeightsError> {
        let path = self.index_path();
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(Vec::new());
            }
            Err(e) => return Err(WeightsError::io(&path, "read", e)),
        };
        serde_json::from_str(&text).map_err(|e| WeightsError::Config {
            path,
            problem: format!("not a Kineto cache index ({e}); delete it and fetch again"),
        })
    }

    pub fn lookup(&self, name: &str) -> Result<Option<IndexEntry>, WeightsError> {
        Ok(self.read_index()?.into_iter().find(|e| e.name == name))
    }

    /// Adds or replaces the entry of `entry.name` (and drops any other entry for the same file),
    /// then rewrites the index atomically.
    pub fn record(&self, entry: IndexEntry) -> Result<(), WeightsError> {
        self.ensure_dir()?;
        let _lock = self.lock_index()?;
        let mut index = self.read_index()?;
        index.retain(|e| e.name != entry.name && e.file_name != entry.file_name);
        index.push(entry);
        index.sort_by(|a, b| a.name.cmp(&b.name));
        let path = self.index_path();
        let text = serde_json::to_string_pretty(&index).map_err(|e| WeightsError::Config {
            path: path.clone(),
            problem: e.to_string(),
        })?;
        write_file_atomic(&path, text.as_bytes()).map_err(|e| WeightsError::io(&path, "write", e))
    }

    /// The cached file of `entry`, checked against its recorded size and sha256.
    pub fn verify(&self, entry: &IndexEntry) -> Result<PathBuf, WeightsError> {
        let path = self.file_path(&entry.file_name);
        let (sha, size) = sha256_file(&path)?;
        if sha != entry.sha256 || size != entry.size {
            return Err(WeightsError::invalid(
                &path,
                format!(
                    "changed on disk since it was verified (sha256 {sha}, {size} bytes; the \
                     cache index recorded {}, {} bytes); run `kineto weights fetch {} --force` \
                     or import it again",
                    entry.sha256, entry.size, entry.name
                ),
            ));
        }
        Ok(path)
    }
}

/// Lower-case hex sha256 and size of a file, read in 1 MiB chunks.
pub fn sha256_file(path: &Path) -> Result<(String, u64), WeightsError> {
    let mut file =
        crate::files::open_regular(path).map_err(|e| WeightsError::io(path, "read", e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| WeightsError::io(path, "read", e))?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).unwrap_or_default());
        size += n as u64;
    }
    Ok((hex(&hasher.finalize()), size))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Now, UTC, as RFC 3339 (`2026-01-01T12:00:00Z`).
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(secs)
}

/// Seconds since the Unix epoch as RFC 3339 UTC (Howard Hinnant's civil-from-days).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `kineto weights import FILE [--name NAME]`: checks `file` and copies it into the cache under
/// `name` (default: the file's stem). A catalog name is verified against the catalog entry and
/// stored under the entry's file name, so `--weights NAME` finds it; any other name must be a
/// checkpoint Kineto can run (plain, DML or student `.pdparams`, or `.safetensors`). A
/// PaddleVideo inference model (`.pdiparams` with its graph) is converted to `NAME.safetensors`.
pub fn import(cache: &Cache, file: &Path, name: Option<&str>) -> Result<IndexEntry, WeightsError> {
    use super::catalog::Catalog;
    use crate::checkpoint::file::Format;
    use crate::checkpoint::inference_model::is_inference_model_path;

    let meta =
        fs::metadata(file).map_err(|e| WeightsError::invalid(file, format!("cannot read: {e}")))?;
    if !meta.is_file() {
        return Err(WeightsError::invalid(file, "not a file"));
    }
    // An inference model is converted: the cache keeps one self-contained safetensors file.
    let inference = is_inference_model_path(file);
    let format = if inference {
        Format::Safetensors
    } else {
        Format::from_path(file).ok_or_else(|| {
            WeightsError::invalid(
                file,
                "expected a .pdparams, .safetensors or .pdiparams (inference model) file",
            )
        })?
    };
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string();
    let name = name.map(str::to_string).unwrap_or(stem);
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    if !plain {
        return Err(WeightsError::Usage(format!(
            "{name:?}: a cache name may hold letters, digits, '_', '-' and '.' only (use --name)"
        )));
    }
    let catalog = Catalog::load()?;
    let (file_name, url) = match catalog.get(&name) {
        Some(entry) if inference => {
            return Err(WeightsError::invalid(
                file,
                format!(
                    "{} is published as {}; import that file, or give this model another \
                     --name",
                    name, entry.file_name
                ),
            ));
        }
        Some(entry) => {
            if Format::from_path(Path::new(&entry.file_name)) != Some(format) {
                return Err(WeightsError::invalid(
                    file,
                    format!(
                        "{} is published as {}; import that format",
                        name, entry.file_name
                    ),
                ));
            }
            super::verify_file(entry, file).map_err(|p| WeightsError::invalid(file, p))?;
            (entry.file_name.clone(), Some(entry.url.clone()))
        }
        None => {
            super::verify_any(file).map_err(|p| WeightsError::invalid(file, p))?;
            (format!("{name}.{}", format.as_str()), None)
        }
    };
    cache.ensure_dir()?;
    let dest = cache.file_path(&file_name);
    let tmp =
        crate::checkpoint::temp_path_for(&dest).map_err(|e| WeightsError::io(&dest, "write", e))?;
    if inference {
        let request = super::export::ExportRequest {
            source: file,
            source_name: None,
            catalog_num_seg: None,
            output: &tmp,
            format: Some(Format::Safetensors),
            fused: false,
            teacher: false,
            labels: None,
        };
        if let Err(e) = super::export::export(&request) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    } else {
        let copied = (|| {
            fs::copy(file, &tmp)?;
            fs::File::open(&tmp)?.sync_all()
        })();
        if let Err(e) = copied {
            let _ = fs::remove_file(&tmp);
            return Err(WeightsError::io(&dest, "write", e));
        }
    }
    let (sha256, size) = match sha256_file(&tmp) {
        Ok(v) => v,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    // The file and its index entry change together: another import or download of the same
    // file waits.
    let _lock = match cache.lock_entry(&file_name) {
        Ok(lock) => lock,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if let Err(e) = fs::rename(&tmp, &dest) {
        let _ = fs::remove_file(&tmp);
        return Err(WeightsError::io(&dest, "write", e));
    }
    crate::checkpoint::sync_parent_dir(&dest);
    let source = fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    let entry = IndexEntry {
        name,
        file_name,
        sha256,
        size,
        url,
        fetched_at: now_rfc3339(),
        source: format!("import {}", source.display()),
    };
    cache.record(entry.clone())?;
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_767_225_600 + 43_200 + 61), "2026-01-01T12:01:01Z");
    }

    #[test]
    fn index_round_trip_and_replacement() {
        let root = std::env::temp_dir().join(format!("kineto-cache-unit-{}", std::process::id()));
        let cache = Cache::at(&root);
        assert!(cache.read_index().unwrap().is_empty());
        let e = |name: &str, file: &str| IndexEntry {
            name: name.into(),
            file_name: file.into(),
            sha256: "00".into(),
            size: 1,
            url: None,
            fetched_at: now_rfc3339(),
            source: "import".into(),
        };
        cache.record(e("b", "b.pdparams")).unwrap();
        cache.record(e("a", "a.pdparams")).unwrap();
        cache.record(e("b2", "b.pdparams")).unwrap();
        let names: Vec<String> = cache
            .read_index()
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["a", "b2"]);
        fs::write(cache.index_path(), "{").unwrap();
        let err = cache.read_index().unwrap_err().to_string();
        assert!(
            err.contains("index.json: not a Kineto cache index"),
            "{err}"
        );
        fs::remove_dir_all(&root).unwrap();
    }
}
