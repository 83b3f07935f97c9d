//! Downloads into the cache: `<file_name>.part` grows (resumed with an HTTP Range request when a
//! partial file is there), then the complete file is checked (it parses and matches the catalog
//! entry's key/shape signature), its sha256 recorded, and only then renamed to `<file_name>`.
//! A failed check deletes the partial file; an interrupted transfer keeps it for the next try,
//! with the server's validator of its bytes (`.part.validator`, sent back as `If-Range`).
//! One process at a time downloads a file (the cache's per-file lock).

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use super::cache::{Cache, IndexEntry, sha256_file};
use super::catalog::CatalogEntry;
use super::{WeightsError, verify_file};
use crate::checkpoint::{sync_parent_dir, write_file_atomic};

/// `KINETO_HTTP_TIMEOUT=SECONDS` sets both timeouts (tests use short ones).
pub const TIMEOUT_ENV: &str = "KINETO_HTTP_TIMEOUT";

#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// Never touch the network: a missing file is an error that says what to download.
    pub offline: bool,
    /// Download again even when a verified copy is cached.
    pub force: bool,
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes of the body (a stalled transfer fails after this).
    pub read_timeout: Duration,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            offline: false,
            force: false,
            connect_timeout: Duration::from_secs(20),
            read_timeout: Duration::from_secs(60),
        }
    }
}

/// The longest `KINETO_HTTP_TIMEOUT` taken (a day).
const MAX_TIMEOUT_S: f64 = 86_400.0;

impl FetchOptions {
    /// The defaults with `KINETO_HTTP_TIMEOUT=SECONDS` applied to both timeouts; a value that
    /// is not a number of seconds in (0, 86400] is a usage error naming it.
    pub fn from_env() -> Result<Self, WeightsError> {
        let mut options = Self::default();
        let Some(raw) = std::env::var_os(TIMEOUT_ENV).filter(|v| !v.is_empty()) else {
            return Ok(options);
        };
        let text = raw.to_string_lossy();
        let seconds = (text.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0 && *s <= MAX_TIMEOUT_S)
            .ok_or_else(|| {
                WeightsError::Usage(format!(
                    "{TIMEOUT_ENV}={text}: expected a number of seconds above 0 and at most \
                     {MAX_TIMEOUT_S}"
                ))
            })?;
        options.connect_timeout = Duration::from_secs_f64(seconds);
        options.read_timeout = options.connect_timeout;
        Ok(options)
    }
}

/// What the progress callback is told.
#[derive(Clone, Copy, Debug)]
pub enum Progress {
    /// A transfer starts; `resumed_from` bytes were already there.
    Start {
        resumed_from: u64,
        total: Option<u64>,
    },
    /// `done` bytes of `total` are on disk.
    Bytes { done: u64, total: Option<u64> },
    /// The transfer is complete; the file is being checked.
    Verifying,
}

/// The verified cached file of `entry`, downloading it first when it is not cached (or when
/// `force`). A cached file that changed on disk is an error (unless `force`).
pub fn fetch(
    entry: &CatalogEntry,
    cache: &Cache,
    options: &FetchOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<PathBuf, WeightsError> {
    if let Some(cached) = recorded_file(entry, cache, options)? {
        return Ok(cached);
    }
    if options.offline {
        return Err(unreachable(
            entry,
            cache,
            "offline (--offline), and it is not in the cache".into(),
        ));
    }
    cache.ensure_dir()?;
    // One download of a file at a time: another process fetching it waits, then finds it.
    let _lock = cache.lock_entry(&entry.file_name)?;
    if let Some(cached) = recorded_file(entry, cache, options)? {
        return Ok(cached);
    }
    let part = cache.part_path(&entry.file_name);
    transfer(entry, cache, options, progress)?;
    progress(Progress::Verifying);
    if let Err(problem) = verify_file(entry, &part) {
        let _ = fs::remove_file(&part);
        let _ = fs::remove_file(cache.validator_path(&entry.file_name));
        return Err(WeightsError::Download {
            url: entry.url.clone(),
            problem: format!("the downloaded file {problem}; it was deleted"),
        });
    }
    let (sha256, size) = sha256_file(&part)?;
    let dest = cache.file_path(&entry.file_name);
    fs::rename(&part, &dest).map_err(|e| WeightsError::io(&dest, "write", e))?;
    let _ = fs::remove_file(cache.validator_path(&entry.file_name));
    sync_parent_dir(&dest);
    cache.record(IndexEntry::from_catalog(entry, sha256, size, "download"))?;
    Ok(dest)
}

/// The verified cached file the index records for `entry`, unless `force`. A recorded file
/// that is gone (deleted by hand) is `None`: it is simply downloaded again.
fn recorded_file(
    entry: &CatalogEntry,
    cache: &Cache,
    options: &FetchOptions,
) -> Result<Option<PathBuf>, WeightsError> {
    if !options.force
        && let Some(recorded) = cache.lookup(&entry.name)?
        && recorded.file_name == entry.file_name
        && cache.file_path(&recorded.file_name).exists()
    {
        return cache.verify(&recorded).map(Some);
    }
    Ok(None)
}

fn unreachable(entry: &CatalogEntry, cache: &Cache, problem: String) -> WeightsError {
    WeightsError::Unreachable {
        name: entry.name.clone(),
        url: entry.url.clone(),
        file_name: entry.file_name.clone(),
        problem: format!("{problem} (the cache is {})", cache.weights_dir().display()),
    }
}

/// Brings `<file_name>.part` to the full file: resumes from its length with a Range request, or
/// starts over when the server ignores the range.
fn transfer(
    entry: &CatalogEntry,
    cache: &Cache,
    options: &FetchOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<(), WeightsError> {
    let part = cache.part_path(&entry.file_name);
    let validator_path = cache.validator_path(&entry.file_name);
    // A partial file is resumed only with the validator of its bytes (sent as If-Range: a
    // server whose file changed answers with the whole new file rather than its tail).
    let validator = fs::read_to_string(&validator_path)
        .ok()
        .filter(|v| !v.trim().is_empty());
    let have = match &validator {
        Some(_) => fs::metadata(&part).map(|m| m.len()).unwrap_or(0),
        None => 0,
    };
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(options.connect_timeout)
        .timeout_read(options.read_timeout)
        .build();
    let mut request = agent.get(&entry.url);
    if let Some(validator) = validator.as_deref().filter(|_| have > 0) {
        request = request
            .set("Range", &format!("bytes={have}-"))
            .set("If-Range", validator.trim());
    }
    let response = match request.call() {
        Ok(r) => r,
        // The partial file is already complete (or longer than the file): start over.
        Err(ureq::Error::Status(416, _)) if have > 0 => {
            fs::remove_file(&part).map_err(|e| WeightsError::io(&part, "remove", e))?;
            let _ = fs::remove_file(&validator_path);
            return transfer(entry, cache, options, progress);
        }
        Err(ureq::Error::Status(code, r)) => {
            return Err(unreachable(
                entry,
                cache,
                format!("the server answered HTTP {code} {}", r.status_text()),
            ));
        }
        Err(ureq::Error::Transport(t)) => {
            return Err(unreachable(entry, cache, format!("cannot download: {t}")));
        }
    };
    let length = response
        .header("Content-Length")
        .and_then(|v| v.trim().parse::<u64>().ok());
    let (start, total) = match response.status() {
        206 => {
            let range = response
                .header("Content-Range")
                .and_then(parse_content_range);
            match range {
                Some((first, total)) if first == have => (have, total.or(length.map(|l| have + l))),
                _ => {
                    return Err(unreachable(
                        entry,
                        cache,
                        format!(
                            "the server answered a request for bytes {have}- with a range that \
                             does not start there"
                        ),
                    ));
                }
            }
        }
        _ => (0, length),
    };
    if start == 0 {
        // A fresh start: the validator of these bytes (a strong ETag, else Last-Modified), or
        // none, and then an interrupted transfer starts over.
        let fresh = (response.header("ETag"))
            .filter(|e| !e.trim_start().starts_with("W/"))
            .or_else(|| response.header("Last-Modified"))
            .map(str::to_string);
        let _ = fs::remove_file(&validator_path);
        if let Some(v) = fresh {
            write_file_atomic(&validator_path, v.as_bytes())
                .map_err(|e| WeightsError::io(&validator_path, "write", e))?;
        }
    }
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .append(start > 0)
        .truncate(start == 0)
        .open(&part)
        .map_err(|e| WeightsError::io(&part, "write", e))?;
    progress(Progress::Start {
        resumed_from: start,
        total,
    });
    let mut reader = response.into_reader();
    let mut buf = vec![0u8; 256 * 1024];
    let mut done = start;
    let interrupted = |done: u64, why: String| {
        unreachable(
            entry,
            cache,
            format!(
                "the download stopped after {done}{} bytes ({why}); run the command again to \
                 resume",
                total.map(|t| format!(" of {t}")).unwrap_or_default()
            ),
        )
    };
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = file.sync_all();
                return Err(interrupted(done, e.to_string()));
            }
        };
        let chunk = buf.get(..n).unwrap_or_default();
        file.write_all(chunk)
            .map_err(|e| WeightsError::io(&part, "write", e))?;
        done += n as u64;
        progress(Progress::Bytes { done, total });
    }
    file.sync_all()
        .map_err(|e| WeightsError::io(&part, "write", e))?;
    drop(file);
    if let Some(total) = total
        && done != total
    {
        if done > total {
            let _ = fs::remove_file(&part);
            let _ = fs::remove_file(&validator_path);
        }
        return Err(interrupted(done, "the connection closed early".into()));
    }
    Ok(())
}

/// `bytes FIRST-LAST/TOTAL` (TOTAL may be `*`) -> (FIRST, TOTAL).
fn parse_content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (first, _) = range.split_once('-')?;
    let first = first.trim().parse().ok()?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((first, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range() {
        assert_eq!(
            parse_content_range("bytes 100-199/200"),
            Some((100, Some(200)))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("items 1-2/3"), None);
    }
}
