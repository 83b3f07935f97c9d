//! The catalog of PaddleVideo's published checkpoints: `configs/catalog.toml`, embedded in the
//! binary; `KINETO_CATALOG=FILE` replaces it (for mirrors and for the tests' local server).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::WeightsError;
use crate::checkpoint::ParamStore;

const EMBEDDED: &str = include_str!("../../configs/catalog.toml");
/// What `KINETO_CATALOG` points at, when set: a catalog file in the same format.
pub const CATALOG_ENV: &str = "KINETO_CATALOG";
/// The default `--weights`: PP-TSMv2 16f DML student (the most accurate CPU model).
pub const DEFAULT_WEIGHTS: &str = "PPTSMv2_k400_16f_dml_student";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A Kinetics-400 recognizer Kineto runs.
    Video,
    /// An ImageNet backbone, the starting point for training.
    Imagenet,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyShape {
    pub key: String,
    pub shape: Vec<usize>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogEntry {
    pub name: String,
    pub kind: EntryKind,
    pub arch: String,
    pub layout: String,
    #[serde(default)]
    pub num_seg: Option<usize>,
    #[serde(default)]
    pub top1: Option<f64>,
    pub url: String,
    pub file_name: String,
    #[serde(default)]
    pub description: String,
    pub signature: Vec<KeyShape>,
    #[serde(default)]
    pub teacher: Vec<KeyShape>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    weights: Vec<CatalogEntry>,
}

#[derive(Clone, Debug)]
pub struct Catalog {
    /// Where it came from: `<embedded>` or the `KINETO_CATALOG` file.
    pub source: PathBuf,
    pub entries: Vec<CatalogEntry>,
}

impl Catalog {
    /// The embedded catalog, or the file `KINETO_CATALOG` names.
    pub fn load() -> Result<Catalog, WeightsError> {
        match std::env::var_os(CATALOG_ENV) {
            Some(path) if !path.is_empty() => Catalog::from_file(Path::new(&path)),
            _ => Catalog::parse(EMBEDDED, Path::new("<embedded catalog.toml>")),
        }
    }

    pub fn embedded() -> Result<Catalog, WeightsError> {
        Catalog::parse(EMBEDDED, Path::new("<embedded catalog.toml>"))
    }

    pub fn from_file(path: &Path) -> Result<Catalog, WeightsError> {
        let text = std::fs::read_to_string(path).map_err(|e| WeightsError::io(path, "read", e))?;
        Catalog::parse(&text, path)
    }

    pub fn parse(text: &str, source: &Path) -> Result<Catalog, WeightsError> {
        let config = |problem: String| WeightsError::Config {
            path: source.to_path_buf(),
            problem,
        };
        let file: CatalogFile = toml::from_str(text)
            .map_err(|e| config(e.to_string().lines().collect::<Vec<_>>().join(" ")))?;
        for (i, entry) in file.weights.iter().enumerate() {
            let valid_name = !entry.name.is_empty()
                && entry
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
            let valid_file = !entry.file_name.is_empty()
                && !entry.file_name.starts_with('.')
                && entry
                    .file_name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
            if !valid_name || !valid_file {
                return Err(config(format!(
                    "entry {i} ({}): name and file_name must be plain file names",
                    entry.name
                )));
            }
            if file.weights[..i].iter().any(|e| e.name == entry.name) {
                return Err(config(format!("entry name {} appears twice", entry.name)));
            }
            if entry.signature.is_empty() {
                return Err(config(format!(
                    "entry {} has an empty signature",
                    entry.name
                )));
            }
        }
        Ok(Catalog {
            source: source.to_path_buf(),
            entries: file.weights,
        })
    }

    pub fn get(&self, name: &str) -> Option<&CatalogEntry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// The names, for messages.
    pub fn names(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.name.as_str()).collect()
    }
}

/// Checks `store` against `signature`: every key present with its shape. The problem names the
/// first key that differs.
pub fn check_signature(store: &ParamStore, signature: &[KeyShape]) -> Result<(), String> {
    for KeyShape { key, shape } in signature {
        match store.get(key) {
            None => return Err(format!("has no {key} (expected {shape:?})")),
            Some(t) if &t.shape != shape => {
                return Err(format!("{key} has shape {:?}, expected {shape:?}", t.shape));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_catalog_parses_and_lists_the_issue_entries() {
        let c = Catalog::embedded().unwrap();
        for name in [
            "PPTSMv2_k400_8f",
            "PPTSMv2_k400_16f",
            "PPTSMv2_k400_8f_dml_student",
            "PPTSMv2_k400_16f_dml_student",
            "PPTSMv2_k400_8f_dml",
            "PPTSMv2_k400_16f_dml",
            "ppTSM_k400_uniform",
            "ppTSM_k400_uniform_distill",
            "ppTSM_k400_dense",
            "ppTSM_k400_dense_distill",
            "ppTSM_k400_uniform_distill_r101",
            "ppTSM_k400_dense_r101",
            "ppTSM_mv2_k400",
            "ppTSM_mv3_k400",
            "PPLCNetV2_base_ssld_pretrained",
            "ResNet50_vd_ssld_v2_pretrained",
        ] {
            let e = c.get(name).unwrap_or_else(|| panic!("{name} missing"));
            assert!(e.url.starts_with("https://"), "{name}");
            assert!(e.url.ends_with(&e.file_name), "{name}");
            if e.kind == EntryKind::Video {
                assert!(matches!(e.num_seg, Some(8 | 16)), "{name}");
                assert!(e.top1.is_some(), "{name}");
            }
            if e.layout == "dml" {
                assert!(!e.teacher.is_empty(), "{name}");
            }
        }
        assert!(c.get(DEFAULT_WEIGHTS).is_some());
    }

    #[test]
    fn bad_catalogs_are_refused_with_the_file_name() {
        let e = Catalog::parse("weights = 3", Path::new("c.toml")).unwrap_err();
        assert!(e.to_string().starts_with("c.toml: "), "{e}");
        let two = r#"
[[weights]]
name = "../evil"
kind = "video"
arch = "pptsm_v2"
layout = "plain"
url = "http://127.0.0.1/x"
file_name = "x.pdparams"
signature = [{ key = "a", shape = [1] }]
"#;
        let e = Catalog::parse(two, Path::new("c.toml")).unwrap_err();
        assert!(e.to_string().contains("plain file names"), "{e}");
    }
}
