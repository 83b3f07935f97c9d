//! Head-only training's features: the start checkpoint's backbone stays frozen (its fused
//! inference form, run through an [`Engine`]); every clip is decoded once with PaddleVideo's
//! test pipeline (uniform sampling, Scale(256), CenterCrop(224), normalisation) and its pooled
//! pre-fc features are cached on disk in the run folder, keyed by the weights' sha256, the
//! frames and each clip's size and modification time.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Instant, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::TrainError;
use super::dataset::Sample;
use crate::checkpoint::write_file_atomic;
use crate::infer::classify::{Sampling, prepare};
use crate::infer::engine::Engine;
use crate::progress::CancelToken;

/// File names inside the run folder.
pub const FEATURES_BIN: &str = "features.bin";
pub const FEATURES_INDEX: &str = "features.json";
const CACHE_FORMAT: &str = "kineto-feature-cache";
const CACHE_VERSION: u32 = 1;

/// A clip's identity (path, size, mtime in ns) and its features or failure.
type CacheRow = (PathBuf, u64, u128, Result<Vec<f32>, String>);

/// What makes cached features valid: the frozen backbone and the sampling.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheKey {
    pub weights_path: PathBuf,
    pub weights_sha256: String,
    pub num_seg: usize,
    pub dim: usize,
}

/// One clip in the index: its file identity, and its feature row or why it failed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct CacheEntry {
    path: PathBuf,
    size: u64,
    mtime_ns: u128,
    row: Option<usize>,
    error: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct CacheIndex {
    format: String,
    version: u32,
    key: CacheKey,
    rows: usize,
    entries: Vec<CacheEntry>,
}

/// Features of one set of clips: `features` is `[clips, dim]` row-major.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FeatureSet {
    pub dim: usize,
    pub features: Vec<f32>,
    pub labels: Vec<usize>,
    pub paths: Vec<PathBuf>,
}

impl FeatureSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.features[i * self.dim..(i + 1) * self.dim]
    }

    pub(crate) fn push(&mut self, sample: &Sample, row: &[f32]) {
        self.features.extend_from_slice(row);
        self.labels.push(sample.label);
        self.paths.push(sample.path.clone());
    }
}

/// The outcome of feature extraction.
#[derive(Clone, Debug, Default)]
pub struct Extracted {
    pub train: FeatureSet,
    pub val: FeatureSet,
    /// Clips that could not be decoded: path and problem (skipped).
    pub broken: Vec<(PathBuf, String)>,
    /// Clips decoded and run through the backbone in this call.
    pub decoded: usize,
    /// Clips whose features (or failure) came from the cache.
    pub cached: usize,
    pub elapsed_s: f64,
}

/// Progress of [`extract_features`]: `done` of `total` clips; `cached` when that clip was not
/// decoded.
#[derive(Clone, Debug)]
pub struct ExtractProgress<'a> {
    pub done: usize,
    pub total: usize,
    pub path: &'a Path,
    pub cached: bool,
}

fn file_identity(path: &Path) -> Option<(u64, u128)> {
    let meta = fs::metadata(path).ok()?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Some((meta.len(), mtime))
}

/// The feature dimension of the engine's network.
pub fn feature_dim(engine: &Engine) -> usize {
    engine.model.arch.model.feature_dim()
}

/// The cache key for `engine` (loaded from `weights`) at `num_seg`.
pub fn cache_key(engine: &Engine, weights: &Path, num_seg: usize) -> Result<CacheKey, TrainError> {
    let (sha, _) = crate::weights::cache::sha256_file(weights)?;
    Ok(CacheKey {
        weights_path: fs::canonicalize(weights).unwrap_or_else(|_| weights.to_path_buf()),
        weights_sha256: sha,
        num_seg,
        dim: feature_dim(engine),
    })
}

/// Pre-fc features of one clip (`[1, T, 3, 224, 224]` host data) on the engine's device (the
/// CPU path where it applies: the same numbers as inference).
fn clip_features(engine: &Engine, data: Vec<f32>, dims: [usize; 5]) -> Result<Vec<f32>, String> {
    engine.features(data, dims).map_err(|e| e.to_string())
}

fn read_cache(
    dir: &Path,
    key: &CacheKey,
) -> HashMap<(PathBuf, u64, u128), Result<Vec<f32>, String>> {
    let mut out = HashMap::new();
    let Ok(text) = fs::read_to_string(dir.join(FEATURES_INDEX)) else {
        return out;
    };
    let Ok(index) = serde_json::from_str::<CacheIndex>(&text) else {
        return out;
    };
    if index.format != CACHE_FORMAT || index.version != CACHE_VERSION || index.key != *key {
        return out;
    }
    let Ok(bytes) = fs::read(dir.join(FEATURES_BIN)) else {
        return out;
    };
    if bytes.len() != index.rows * key.dim * 4 {
        return out;
    }
    for e in index.entries {
        let value = match (e.row, e.error) {
            (Some(row), _) if row < index.rows => {
                let start = row * key.dim * 4;
                Ok(bytes[start..start + key.dim * 4]
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect())
            }
            (_, Some(error)) => Err(error),
            _ => continue,
        };
        out.insert((e.path, e.size, e.mtime_ns), value);
    }
    out
}

fn write_cache(dir: &Path, key: &CacheKey, entries: &[CacheRow]) -> Result<(), TrainError> {
    let mut bytes = Vec::new();
    let mut index_entries = Vec::with_capacity(entries.len());
    let mut rows = 0;
    for (path, size, mtime_ns, value) in entries {
        let (row, error) = match value {
            Ok(f) => {
                bytes.extend(f.iter().flat_map(|v| v.to_le_bytes()));
                rows += 1;
                (Some(rows - 1), None)
            }
            Err(e) => (None, Some(e.clone())),
        };
        index_entries.push(CacheEntry {
            path: path.clone(),
            size: *size,
            mtime_ns: *mtime_ns,
            row,
            error,
        });
    }
    let index = CacheIndex {
        format: CACHE_FORMAT.into(),
        version: CACHE_VERSION,
        key: key.clone(),
        rows,
        entries: index_entries,
    };
    let bin = dir.join(FEATURES_BIN);
    write_file_atomic(&bin, &bytes).map_err(|e| TrainError::io(&bin, e))?;
    let idx = dir.join(FEATURES_INDEX);
    let text = serde_json::to_string_pretty(&index).map_err(|source| TrainError::Encode {
        path: idx.clone(),
        source,
    })?;
    write_file_atomic(&idx, text.as_bytes()).map_err(|e| TrainError::io(&idx, e))
}

/// Decodes every train and val clip once (or takes it from the cache in `cache_dir`), runs the
/// frozen backbone, and returns the features. Broken clips are listed and skipped. The cache
/// is rewritten with the clips of this call. Stops early (with what it has) when cancelled.
pub fn extract_features(
    engine: &Engine,
    key: &CacheKey,
    cache_dir: &Path,
    train: &[Sample],
    val: &[Sample],
    cancel: &CancelToken,
    mut on_clip: impl FnMut(ExtractProgress<'_>),
) -> Result<Extracted, TrainError> {
    let start = Instant::now();
    let cache = read_cache(cache_dir, key);
    let sampling = Sampling {
        num_seg: key.num_seg,
        dense: false,
    };
    let total = train.len() + val.len();
    let mut out = Extracted {
        train: FeatureSet {
            dim: key.dim,
            ..FeatureSet::default()
        },
        val: FeatureSet {
            dim: key.dim,
            ..FeatureSet::default()
        },
        ..Extracted::default()
    };
    let mut entries = Vec::with_capacity(total);
    let all = train
        .iter()
        .map(|s| (s, true))
        .chain(val.iter().map(|s| (s, false)));
    for (i, (sample, is_train)) in all.enumerate() {
        cancel.wait_while_paused();
        if cancel.is_cancelled() {
            break;
        }
        let identity = file_identity(&sample.path);
        let cached = identity
            .and_then(|(size, mtime)| cache.get(&(sample.path.clone(), size, mtime)).cloned());
        let from_cache = cached.is_some();
        let value = match cached {
            Some(v) => {
                out.cached += 1;
                v
            }
            None => {
                out.decoded += 1;
                let prepared = engine
                    .device
                    .install(|| prepare(&sample.path, sampling, false))
                    .map_err(|e| e.problem(&sample.path));
                prepared.and_then(|clip| {
                    let f = clip_features(engine, clip.tensor, clip.dims)?;
                    if f.len() != key.dim {
                        return Err(format!(
                            "backbone gave {} features, expected {}",
                            f.len(),
                            key.dim
                        ));
                    }
                    Ok(f)
                })
            }
        };
        match &value {
            Ok(f) => {
                if is_train {
                    out.train.push(sample, f);
                } else {
                    out.val.push(sample, f);
                }
            }
            Err(problem) => out.broken.push((sample.path.clone(), problem.clone())),
        }
        if let Some((size, mtime)) = identity {
            entries.push((sample.path.clone(), size, mtime, value));
        }
        on_clip(ExtractProgress {
            done: i + 1,
            total,
            path: &sample.path,
            cached: from_cache,
        });
    }
    write_cache(cache_dir, key, &entries)?;
    out.elapsed_s = start.elapsed().as_secs_f64();
    Ok(out)
}
