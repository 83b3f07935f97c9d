//! PaddleVideo inference models, as `tools/export_model.py` writes them with `paddle.jit.save`:
//! `NAME.pdiparams` (the weights) beside `NAME.pdmodel` (Paddle 2) or `NAME.json` (Paddle 3),
//! and `NAME.pdiparams.info` where Paddle wrote one.
//!
//! `.pdiparams` is `save_combine`'s stream of tensors in the sorted order of the graph's
//! parameter names, each `u32 version, u64 lod levels (+ levels), u32 version, i32 size,
//! TensorDesc protobuf, raw data`. The names are Paddle's variable names (`conv2d_12.w_0`), not
//! PaddleVideo's keys; they become canonical keys in one of two ways:
//! - `.pdiparams.info` (a pickle: variable name -> `{"structured_name": key, ...}`) names them;
//! - without it, the graph does: its parameters in the order it first reads them, each with its
//!   role there (conv/linear weight, bias, BatchNorm scale/bias/mean/variance) and shape, are
//!   matched against Kineto's models in PaddleVideo's key order (a layer's parameters are first
//!   read in the order the layers were registered, which is that key order).
//!
//! What comes out is PaddleVideo's model after `rep()` (export_model.py runs it): BatchNorms
//! still separate, each rep block's branches already merged. For PP-TSM ResNets that is the
//! training form itself; for PP-TSMv2 the branches are gone, so the result is fused
//! (`model::fuse::fuse_store` folds the BatchNorms).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use burn::tensor::Device;

use super::paddle_graph::{
    FP32, GraphParam, InferenceGraph, ParamRole, TensorDesc, dims_to_shape, parse_pdmodel,
    parse_pir_json,
};
use super::pickle::{self, Obj};
use super::{CheckpointError, ParamStore, ParamTensor};
use crate::model::arch::{self, Arch, Form, ModelKind};
use crate::model::fuse::{fuse_store, rep_store};
use crate::model::{Recognizer, key_order};

/// The file extensions of an inference model's parts.
pub const PARAMS_EXT: &str = "pdiparams";
pub const PADDLE2_GRAPH_EXT: &str = "pdmodel";
pub const PADDLE3_GRAPH_EXT: &str = "json";

/// How the parameters got their names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Naming {
    /// `NAME.pdiparams.info`.
    Info,
    /// Matched by the graph's structure.
    Graph,
}

/// An inference model read into canonical keys (`backbone.*`, `head.*`).
#[derive(Clone, Debug)]
pub struct InferenceModel {
    pub store: ParamStore,
    pub arch: Arch,
    /// The frames per clip the graph was exported with (its temporal shift's `seg_num`).
    pub num_seg: Option<usize>,
    pub params_path: PathBuf,
    pub graph_path: PathBuf,
    pub naming: Naming,
}

/// True for a path that names part of an inference model: `.pdiparams`, `.pdmodel`, or a
/// `.json` with a `.pdiparams` beside it.
pub fn is_inference_model_path(path: &Path) -> bool {
    let Some(ext) = path.extension().and_then(|e| e.to_str()) else {
        return false;
    };
    ext.eq_ignore_ascii_case(PARAMS_EXT)
        || ext.eq_ignore_ascii_case(PADDLE2_GRAPH_EXT)
        || (ext.eq_ignore_ascii_case(PADDLE3_GRAPH_EXT)
            && path.with_extension(PARAMS_EXT).is_file())
}

fn companion_err(path: &Path, problem: String) -> CheckpointError {
    CheckpointError::Companion {
        path: path.to_path_buf(),
        problem,
    }
}

fn graph_err(path: &Path, problem: String) -> CheckpointError {
    CheckpointError::Graph {
        path: path.to_path_buf(),
        problem,
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, CheckpointError> {
    crate::files::read(path).map_err(|source| CheckpointError::Io {
        path: path.to_path_buf(),
        action: "read",
        source,
    })
}

/// Reads the inference model that `path` (its `.pdiparams` or its `.pdmodel`) belongs to.
pub fn read_inference_model(path: &Path) -> Result<InferenceModel, CheckpointError> {
    let params_path = path.with_extension(PARAMS_EXT);
    let stem = params_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !params_path.is_file() {
        return Err(companion_err(
            path,
            format!("the weights of this inference model, {stem}.{PARAMS_EXT}, are not beside it"),
        ));
    }
    let json = params_path.with_extension(PADDLE3_GRAPH_EXT);
    let pdmodel = params_path.with_extension(PADDLE2_GRAPH_EXT);
    let (graph_path, graph) = if json.is_file() {
        let graph = parse_pir_json(&read_file(&json)?).map_err(|p| graph_err(&json, p))?;
        (json, graph)
    } else if pdmodel.is_file() {
        let graph = parse_pdmodel(&read_file(&pdmodel)?).map_err(|p| graph_err(&pdmodel, p))?;
        (pdmodel, graph)
    } else {
        return Err(companion_err(
            &params_path,
            format!(
                "an inference model needs its graph beside it: {stem}.{PADDLE2_GRAPH_EXT} \
                 (Paddle 2) or {stem}.{PADDLE3_GRAPH_EXT} (Paddle 3), as export_model.py wrote them"
            ),
        ));
    };
    let tensors = parse_pdiparams(&read_file(&params_path)?, &graph).map_err(|p| {
        companion_err(
            &params_path,
            format!("does not belong to {}: {p}", file_name(&graph_path)),
        )
    })?;
    let info_path = PathBuf::from(format!("{}.info", params_path.display()));
    let (named, naming) = if info_path.is_file() {
        let names = parse_info(&read_file(&info_path)?).map_err(|p| graph_err(&info_path, p))?;
        let named = name_by_info(&graph, tensors, &names).map_err(|p| {
            companion_err(
                &info_path,
                format!("does not belong to {}: {p}", file_name(&params_path)),
            )
        })?;
        (named, Naming::Info)
    } else {
        let named = name_by_graph(&graph, tensors).map_err(|p| graph_err(&graph_path, p))?;
        (named, Naming::Graph)
    };
    let (layout_store, arch) = finish(&named).map_err(|p| graph_err(&graph_path, p))?;
    Ok(InferenceModel {
        store: layout_store,
        arch,
        num_seg: graph.num_seg,
        params_path,
        graph_path,
        naming,
    })
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The tensors of a `.pdiparams` file, by the graph's parameter names (sorted, as written).
fn parse_pdiparams(
    bytes: &[u8],
    graph: &InferenceGraph,
) -> Result<HashMap<String, ParamTensor>, String> {
    let names = graph.sorted_names();
    let declared: HashMap<&str, &GraphParam> =
        graph.params.iter().map(|p| (p.name.as_str(), p)).collect();
    let mut reader = Reader { bytes, at: 0 };
    let mut out = HashMap::with_capacity(names.len());
    for (index, name) in names.iter().enumerate() {
        if reader.at == bytes.len() {
            return Err(format!(
                "it holds {index} tensors, the graph has {} parameters",
                names.len()
            ));
        }
        let tensor = reader
            .tensor()
            .map_err(|p| format!("tensor {index} ({name}): {p}"))?;
        let expected = declared.get(name).map(|p| p.shape.as_slice());
        if expected != Some(tensor.shape.as_slice()) {
            return Err(format!(
                "tensor {index} ({name}) has shape {:?}, the graph says {:?}",
                tensor.shape,
                expected.unwrap_or_default()
            ));
        }
        out.insert((*name).to_string(), tensor);
    }
    if reader.at != bytes.len() {
        return Err(format!(
            "{} bytes follow the graph's {} parameters",
            bytes.len() - reader.at,
            names.len()
        ));
    }
    Ok(out)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or("the file ends inside it")?;
        let slice = self
            .bytes
            .get(self.at..end)
            .ok_or("the file ends inside it")?;
        self.at = end;
        Ok(slice)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn tensor(&mut self) -> Result<ParamTensor, String> {
        let version = self.u32()?;
        if version != 0 {
            return Err(format!("unknown tensor version {version}"));
        }
        let lod_levels = self.u64()?;
        for _ in 0..lod_levels {
            let size = usize::try_from(self.u64()?).map_err(|_| "a LoD level is too large")?;
            self.take(size)?;
        }
        let version = self.u32()?;
        if version != 0 {
            return Err(format!("unknown tensor version {version}"));
        }
        let desc_size = usize::try_from(self.u32()?).map_err(|_| "bad descriptor size")?;
        let desc = <TensorDesc as prost::Message>::decode(self.take(desc_size)?)
            .map_err(|e| format!("bad tensor descriptor: {e}"))?;
        if desc.data_type != FP32 {
            return Err(format!(
                "data type {} (Paddle's code); Kineto reads float32 (code {FP32}) weights",
                desc.data_type
            ));
        }
        let shape =
            dims_to_shape(&desc.dims).ok_or_else(|| format!("dimensions {:?}", desc.dims))?;
        let count = shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .ok_or("too many values")?;
        let raw = self.take(count.checked_mul(4).ok_or("too many values")?)?;
        let data = raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok(ParamTensor { shape, data })
    }
}

/// `.pdiparams.info`: variable name -> structured name (PaddleVideo's key).
fn parse_info(bytes: &[u8]) -> Result<HashMap<String, String>, String> {
    let unpickled = pickle::unpickle(bytes).map_err(|e| e.to_string())?;
    let not_info =
        || "not a .pdiparams.info (a dict of variable name -> {structured_name})".to_string();
    let Some(Obj::Dict(entries)) = unpickled.get(unpickled.root()) else {
        return Err(not_info());
    };
    let text = |id| match unpickled.get(id) {
        Some(Obj::Str(s)) => Some(s.to_string()),
        _ => None,
    };
    let mut names = HashMap::new();
    for &(key, value) in entries {
        let Some(var) = text(key) else {
            return Err(not_info());
        };
        let Some(Obj::Dict(fields)) = unpickled.get(value) else {
            return Err(not_info());
        };
        let structured = fields
            .iter()
            .find(|&&(k, _)| text(k).as_deref() == Some("structured_name"))
            .and_then(|&(_, v)| text(v))
            .ok_or_else(|| format!("{var} has no structured_name"))?;
        names.insert(var, structured);
    }
    Ok(names)
}

fn name_by_info(
    graph: &InferenceGraph,
    mut tensors: HashMap<String, ParamTensor>,
    names: &HashMap<String, String>,
) -> Result<ParamStore, String> {
    let mut store = ParamStore::new();
    for param in &graph.params {
        let key = names
            .get(&param.name)
            .ok_or_else(|| format!("it does not name parameter {}", param.name))?;
        let tensor = tensors
            .remove(&param.name)
            .ok_or_else(|| format!("parameter {} has no tensor", param.name))?;
        store.insert(key.clone(), tensor);
    }
    Ok(store)
}

/// A canonical key's role, from its name and its layer's other keys.
fn key_role(store: &ParamStore, key: &str, shape: &[usize]) -> ParamRole {
    if key.ends_with("._mean") {
        return ParamRole::BnMean;
    }
    if key.ends_with("._variance") {
        return ParamRole::BnVariance;
    }
    let is_bn = |prefix: &str| store.contains(&format!("{prefix}._mean"));
    match key.rsplit_once('.') {
        Some((prefix, "weight")) if is_bn(prefix) => ParamRole::BnScale,
        Some((prefix, "bias")) if is_bn(prefix) => ParamRole::BnBias,
        _ if shape.len() == 1 => ParamRole::Bias,
        _ => ParamRole::Weight,
    }
}

/// The models an inference graph could be, from its classifier's shape and its temporal
/// shift's frame count (training form; the match drops what `rep()` removed).
fn candidate_archs(graph: &InferenceGraph) -> Vec<Arch> {
    let mut out = Vec::new();
    let square = |t: usize| graph.params.iter().any(|p| p.shape == [t, t]);
    let attention_seg = graph.num_seg.filter(|&t| square(t));
    for param in graph.params.iter().filter(|p| p.shape.len() == 2) {
        let (features, classes) = (param.shape[0], param.shape[1]);
        let base = |model, depth, num_seg: Option<usize>| Arch {
            model,
            depth,
            num_seg,
            num_classes: classes,
            attention: num_seg.is_some(),
            form: Form::Training,
        };
        if features == ModelKind::PptsmV2.feature_dim() {
            if let Some(t) = attention_seg {
                out.push(base(ModelKind::PptsmV2, None, Some(t)));
            }
            out.push(base(ModelKind::PptsmV2, None, None));
        }
        if features == ModelKind::PptsmResnet.feature_dim() {
            for depth in [50, 101, 152] {
                out.push(base(ModelKind::PptsmResnet, Some(depth), None));
            }
        }
    }
    out.dedup();
    out
}

/// Names the tensors by matching the graph against each candidate model.
fn name_by_graph(
    graph: &InferenceGraph,
    mut tensors: HashMap<String, ParamTensor>,
) -> Result<ParamStore, String> {
    let mut tried = Vec::new();
    for arch in candidate_archs(graph) {
        let Ok(skeleton) = Recognizer::skeleton(arch, &Device::flex()) else {
            continue;
        };
        // What export_model.py saves: the model after `rep()`, in PaddleVideo's key order.
        let skeleton = super::keys::reorder(&skeleton.to_store(), &key_order(arch));
        let Ok(repped) = rep_store(&skeleton) else {
            continue;
        };
        let expected: Vec<(String, ParamRole, Vec<usize>)> = repped
            .iter()
            .map(|(k, t)| {
                (
                    k.to_string(),
                    key_role(&repped, k, &t.shape),
                    t.shape.clone(),
                )
            })
            .collect();
        if expected.len() != graph.params.len() {
            tried.push(format!(
                "{} has {} parameters",
                arch.display_name(),
                expected.len()
            ));
            continue;
        }
        match assign(graph, &expected) {
            Ok(keys) => {
                let mut store = ParamStore::new();
                for (key, _, _) in &expected {
                    let name = keys.get(key.as_str()).ok_or("incomplete match")?;
                    let tensor = tensors.remove(*name).ok_or("a tensor is missing")?;
                    store.insert(key.clone(), tensor);
                }
                return Ok(store);
            }
            Err(problem) => tried.push(format!("{}: {problem}", arch.display_name())),
        }
    }
    let classifier = if tried.is_empty() {
        " (no classifier of 1280 or 2048 features)"
    } else {
        ""
    };
    Err(format!(
        "unknown graph: its {} parameters fit none of Kineto's models{classifier}{}{}; \
         an inference model's .pdiparams.info would name them",
        graph.params.len(),
        if tried.is_empty() { "" } else { ": " },
        tried.join("; ")
    ))
}

/// Each graph parameter, in the order the graph first reads it, takes the first unassigned key
/// with its role and shape, in key order. Returns key -> parameter name.
fn assign<'a>(
    graph: &'a InferenceGraph,
    expected: &'a [(String, ParamRole, Vec<usize>)],
) -> Result<HashMap<&'a str, &'a str>, String> {
    let mut free: HashMap<(ParamRole, &[usize]), VecDeque<&str>> = HashMap::new();
    for (key, role, shape) in expected {
        free.entry((*role, shape.as_slice()))
            .or_default()
            .push_back(key.as_str());
    }
    let mut keys = HashMap::with_capacity(expected.len());
    for param in &graph.params {
        let role = param
            .role
            .unwrap_or_else(|| ParamRole::by_rank(&param.shape));
        let key = free
            .get_mut(&(role, param.shape.as_slice()))
            .and_then(VecDeque::pop_front)
            .ok_or_else(|| {
                format!(
                    "no {} of shape {:?} is left for {}",
                    role.describe(),
                    param.shape,
                    param.name
                )
            })?;
        keys.insert(key, param.name.as_str());
    }
    Ok(keys)
}

/// The named store as a checkpoint's: the training form when it is complete (PP-TSM ResNets),
/// else fused (PP-TSMv2, whose rep branches export_model.py merged).
fn finish(named: &ParamStore) -> Result<(ParamStore, Arch), String> {
    let (_, store) = super::keys::canonicalize(named, super::keys::Role::Student)?;
    if let Ok(arch) = arch::detect(&store) {
        let order = key_order(arch);
        let complete = order.len() == store.len() && order.iter().all(|k| store.contains(k));
        if arch.form == Form::Training && complete {
            return Ok((super::keys::reorder(&store, &order), arch));
        }
    }
    let fused = fuse_store(&store)?;
    let arch = arch::detect(&fused)?;
    if arch.form != Form::Fused {
        return Err("its BatchNorms could not be folded".into());
    }
    Ok((super::keys::reorder(&fused, &key_order(arch)), arch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::paddle_graph::GraphParam;

    /// `save_combine`'s encoding of one float32 tensor.
    fn encode(shape: &[usize], data: &[f32]) -> Vec<u8> {
        let desc = TensorDesc {
            data_type: FP32,
            dims: shape.iter().map(|&d| d as i64).collect(),
        };
        let desc = prost::Message::encode_to_vec(&desc);
        let mut out = Vec::new();
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        out.extend_from_slice(&desc);
        for v in data {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    fn graph() -> InferenceGraph {
        let param = |name: &str, shape: Vec<usize>| GraphParam {
            name: name.into(),
            shape,
            role: None,
        };
        InferenceGraph {
            // Graph order differs from the file's (sorted) order.
            params: vec![param("w", vec![2, 2]), param("b", vec![2])],
            num_seg: None,
        }
    }

    #[test]
    fn pdiparams_tensors_come_in_sorted_name_order() {
        let mut bytes = encode(&[2], &[5.0, 6.0]);
        bytes.extend(encode(&[2, 2], &[1.0, 2.0, 3.0, 4.0]));
        let tensors = parse_pdiparams(&bytes, &graph()).unwrap();
        assert_eq!(tensors["b"].data, [5.0, 6.0]);
        assert_eq!(tensors["w"].data, [1.0, 2.0, 3.0, 4.0]);
        // Swapped: the shapes tell.
        let mut swapped = encode(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
        swapped.extend(encode(&[2], &[5.0, 6.0]));
        let err = parse_pdiparams(&swapped, &graph()).unwrap_err();
        assert!(err.contains("tensor 0 (b) has shape [2, 2]"), "{err}");
        let (ok, refused) =
            crate::fuzz_lite::run("pdiparams", &[bytes], 3_000, &[0, 4, 5], "", |data| {
                parse_pdiparams(data, &graph()).map(drop)
            });
        assert!(refused > 0 && ok + refused == 3_000);
    }
}
