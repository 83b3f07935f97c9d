//! `--weights NAME|FILE` -> a verified local file. A catalog name resolves through the cache
//! (downloaded on demand unless offline); a name imported under `kineto weights import --name`
//! resolves to its cached file; anything else is a path.

use std::path::{Path, PathBuf};

use super::cache::{Cache, IndexEntry, sha256_file};
use super::catalog::{Catalog, CatalogEntry, EntryKind};
use super::download::{FetchOptions, Progress, fetch};
use super::{WeightsError, verify_file};

/// A resolved `--weights`.
#[derive(Clone, Debug)]
pub struct ResolvedWeights {
    /// The local file to open.
    pub path: PathBuf,
    /// The catalog entry when `--weights` named one.
    pub entry: Option<CatalogEntry>,
    /// The name `--weights` gave (catalog or cache name), `None` for a path.
    pub name: Option<String>,
}

/// Resolves `spec` for a command that runs or reads a video model.
pub fn resolve(
    spec: &str,
    cache_dir: Option<&Path>,
    options: &FetchOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<ResolvedWeights, WeightsError> {
    let catalog = Catalog::load()?;
    if let Some(entry) = catalog.get(spec) {
        if entry.kind == EntryKind::Imagenet {
            return Err(WeightsError::Usage(format!(
                "{spec}: an ImageNet backbone, the starting point for training; it has no \
                 video classifier to run (pick a Kinetics-400 model from `kineto weights list`)"
            )));
        }
        let cache = Cache::locate(cache_dir)?;
        let path = cached_or_found(entry, &cache)?
            .map(Ok)
            .unwrap_or_else(|| fetch(entry, &cache, options, progress))?;
        return Ok(ResolvedWeights {
            path,
            entry: Some(entry.clone()),
            name: Some(spec.to_string()),
        });
    }
    let path = PathBuf::from(spec);
    if path.exists() {
        return Ok(ResolvedWeights {
            path,
            entry: None,
            name: None,
        });
    }
    // A name imported with `weights import --name` (only when no such file exists).
    let looks_like_name = !spec.contains(['/', '\\']) && Path::new(spec).extension().is_none();
    if looks_like_name
        && let Ok(cache) = Cache::locate(cache_dir)
        && let Some(recorded) = cache.lookup(spec)?
    {
        let path = cache.verify(&recorded)?;
        return Ok(ResolvedWeights {
            path,
            entry: None,
            name: Some(spec.to_string()),
        });
    }
    let hint = if looks_like_name {
        let imported: Vec<String> = Cache::locate(cache_dir)
            .and_then(|cache| cache.read_index())
            .map(|index| index.into_iter().map(|e| e.name).collect())
            .unwrap_or_default();
        let imported: Vec<&str> = (imported.iter().map(String::as_str))
            .filter(|name| catalog.get(name).is_none())
            .collect();
        let all = catalog.names().into_iter().chain(imported.iter().copied());
        let guess = crate::text::nearest(spec, all)
            .map(|name| format!(" (did you mean {name}?)"))
            .unwrap_or_default();
        let imports = match imported.as_slice() {
            [] => String::new(),
            names => format!("; imported: {}", names.join(", ")),
        };
        format!(
            "no such file, and not a catalog name or an imported one{guess} (catalog: {}{imports})",
            catalog.names().join(", ")
        )
    } else {
        "no such file".to_string()
    };
    Err(WeightsError::invalid(path, hint))
}

/// The verified cached file of `entry` when the index has it; a file of the right name sitting
/// in the cache folder without an index entry (put there by hand) is checked against the catalog
/// and recorded. `None` when neither is there (or `force` asks for a new download).
pub fn cached_or_found(
    entry: &CatalogEntry,
    cache: &Cache,
) -> Result<Option<PathBuf>, WeightsError> {
    let path = cache.file_path(&entry.file_name);
    if let Some(recorded) = cache.lookup(&entry.name)?
        && recorded.file_name == entry.file_name
        && path.exists()
    {
        return cache.verify(&recorded).map(Some);
    }
    if !path.is_file() {
        return Ok(None);
    }
    verify_file(entry, &path).map_err(|problem| WeightsError::invalid(&path, problem))?;
    let (sha256, size) = sha256_file(&path)?;
    cache.record(IndexEntry::from_catalog(
        entry,
        sha256,
        size,
        "found in the cache folder",
    ))?;
    Ok(Some(path))
}
