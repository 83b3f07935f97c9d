//! The graph of a PaddleVideo inference model (what `tools/export_model.py` writes with
//! `paddle.jit.save`), read only as far as loading its weights needs: the parameters with their
//! shapes, the role each plays where the graph first uses it, and the temporal shift's
//! `seg_num`. Two encodings:
//! - Paddle 2's `NAME.pdmodel`: a `ProgramDesc` protobuf (`paddle/fluid/framework/framework.proto`),
//!   decoded with the few messages below (`prost` derive; unknown fields are skipped);
//! - Paddle 3's `NAME.json`: the PIR program as JSON (`builtin.parameter` ops are `"p"`, every op
//!   lists its inputs as value ids `{"%": id}`).
//!
//! Nothing here trusts the file: sizes are bounded by the file's and every lookup is checked.

use std::collections::HashMap;

use prost::Message;
use serde_json::Value;

/// What a parameter is to the op that first reads it. BatchNorm's four inputs are told apart
/// by the op's slots; everything else by rank (1-D: a bias, else a weight).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParamRole {
    Weight,
    Bias,
    BnScale,
    BnBias,
    BnMean,
    BnVariance,
}

impl ParamRole {
    pub fn describe(self) -> &'static str {
        match self {
            ParamRole::Weight => "weight",
            ParamRole::Bias => "bias",
            ParamRole::BnScale => "BatchNorm scale",
            ParamRole::BnBias => "BatchNorm bias",
            ParamRole::BnMean => "BatchNorm mean",
            ParamRole::BnVariance => "BatchNorm variance",
        }
    }

    pub fn by_rank(shape: &[usize]) -> ParamRole {
        if shape.len() == 1 {
            ParamRole::Bias
        } else {
            ParamRole::Weight
        }
    }
}

/// One parameter of the graph.
#[derive(Clone, Debug, PartialEq)]
pub struct GraphParam {
    /// Paddle's variable name (`conv2d_12.w_0`, `res2a_branch2a_weights`, ...).
    pub name: String,
    pub shape: Vec<usize>,
    /// Its role where the graph first reads it; `None` when no op reads it.
    pub role: Option<ParamRole>,
}

/// The parameters in the order the graph first reads them (unread ones last, by name), and the
/// frames per clip its temporal shift was exported with.
#[derive(Clone, Debug, Default)]
pub struct InferenceGraph {
    pub params: Vec<GraphParam>,
    pub num_seg: Option<usize>,
}

impl InferenceGraph {
    /// The parameter names sorted, which is the order `save_combine` writes `.pdiparams` in.
    pub fn sorted_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.params.iter().map(|p| p.name.as_str()).collect();
        names.sort_unstable();
        names
    }
}

/// Collects first uses in graph order.
#[derive(Default)]
struct Builder {
    shapes: HashMap<String, Vec<usize>>,
    declared: Vec<String>,
    used: Vec<(String, ParamRole)>,
    seen: std::collections::HashSet<String>,
    num_seg: Option<usize>,
}

impl Builder {
    fn declare(&mut self, name: String, shape: Vec<usize>) {
        if self.shapes.insert(name.clone(), shape).is_none() {
            self.declared.push(name);
        }
    }

    fn use_param(&mut self, name: &str, bn_slot: Option<ParamRole>) {
        let Some(shape) = self.shapes.get(name) else {
            return;
        };
        if self.seen.insert(name.to_string()) {
            let role = bn_slot.unwrap_or_else(|| ParamRole::by_rank(shape));
            self.used.push((name.to_string(), role));
        }
    }

    fn finish(self) -> InferenceGraph {
        let Builder {
            mut shapes,
            mut declared,
            used,
            seen,
            num_seg,
        } = self;
        let mut params: Vec<GraphParam> = used
            .into_iter()
            .filter_map(|(name, role)| {
                let shape = shapes.remove(&name)?;
                Some(GraphParam {
                    name,
                    shape,
                    role: Some(role),
                })
            })
            .collect();
        declared.retain(|n| !seen.contains(n));
        declared.sort_unstable();
        params.extend(declared.into_iter().filter_map(|name| {
            let shape = shapes.remove(&name)?;
            Some(GraphParam {
                name,
                shape,
                role: None,
            })
        }));
        InferenceGraph { params, num_seg }
    }
}

// ------------------------------------------------------------------ Paddle 2: ProgramDesc

#[derive(Clone, PartialEq, prost::Message)]
struct ProgramDesc {
    #[prost(message, repeated, tag = "1")]
    blocks: Vec<BlockDesc>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct BlockDesc {
    #[prost(message, repeated, tag = "3")]
    vars: Vec<VarDesc>,
    #[prost(message, repeated, tag = "4")]
    ops: Vec<OpDesc>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct VarDesc {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    var_type: Option<VarType>,
    #[prost(bool, tag = "3")]
    persistable: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
struct VarType {
    #[prost(int32, tag = "1")]
    kind: i32,
    /// `lod_tensor` in Paddle 2's proto, `dense_tensor` in Paddle 3's: the same field.
    #[prost(message, optional, tag = "3")]
    dense_tensor: Option<DenseTensorDesc>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct DenseTensorDesc {
    #[prost(message, optional, tag = "1")]
    tensor: Option<TensorDesc>,
}

/// `VarType.TensorDesc`; also the header of each tensor in a `.pdiparams` file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorDesc {
    #[prost(int32, tag = "1")]
    pub data_type: i32,
    #[prost(int64, repeated, tag = "2")]
    pub dims: Vec<i64>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct OpDesc {
    #[prost(message, repeated, tag = "1")]
    inputs: Vec<OpVar>,
    #[prost(string, tag = "3")]
    op_type: String,
    #[prost(message, repeated, tag = "4")]
    attrs: Vec<OpAttr>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct OpVar {
    #[prost(string, tag = "1")]
    parameter: String,
    #[prost(string, repeated, tag = "2")]
    arguments: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct OpAttr {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(int32, tag = "3")]
    i: i32,
}

/// `VarType.Type.LOD_TENSOR` (`DENSE_TENSOR` in Paddle 3).
const DENSE_TENSOR: i32 = 7;

/// Paddle's data type codes for float32 (`VarType.FP32`).
pub const FP32: i32 = 5;

/// A shape from protobuf dims; `None` for a negative or absurd dimension.
pub fn dims_to_shape(dims: &[i64]) -> Option<Vec<usize>> {
    dims.iter().map(|&d| usize::try_from(d).ok()).collect()
}

/// Reads a Paddle 2 `.pdmodel`.
pub fn parse_pdmodel(bytes: &[u8]) -> Result<InferenceGraph, String> {
    let program = ProgramDesc::decode(bytes)
        .map_err(|e| format!("not a PaddlePaddle program (ProgramDesc protobuf): {e}"))?;
    let block = program.blocks.first().ok_or("the program has no blocks")?;
    let mut builder = Builder::default();
    for var in program.blocks.iter().flat_map(|b| &b.vars) {
        let Some(var_type) = &var.var_type else {
            continue;
        };
        if !var.persistable || var_type.kind != DENSE_TENSOR {
            continue;
        }
        let dims = var_type
            .dense_tensor
            .as_ref()
            .and_then(|d| d.tensor.as_ref())
            .map(|t| t.dims.as_slice())
            .unwrap_or_default();
        let shape = dims_to_shape(dims)
            .ok_or_else(|| format!("parameter {} has dimensions {dims:?}", var.name))?;
        builder.declare(var.name.clone(), shape);
    }
    for op in &block.ops {
        let batch_norm = op.op_type == "batch_norm" || op.op_type == "sync_batch_norm";
        for input in &op.inputs {
            let slot = match (batch_norm, input.parameter.as_str()) {
                (true, "Scale") => Some(ParamRole::BnScale),
                (true, "Bias") => Some(ParamRole::BnBias),
                (true, "Mean") => Some(ParamRole::BnMean),
                (true, "Variance") => Some(ParamRole::BnVariance),
                _ => None,
            };
            for arg in &input.arguments {
                builder.use_param(arg, slot);
            }
        }
        if op.op_type == "temporal_shift" && builder.num_seg.is_none() {
            builder.num_seg = op
                .attrs
                .iter()
                .find(|a| a.name == "seg_num")
                .and_then(|a| usize::try_from(a.i).ok());
        }
    }
    Ok(builder.finish())
}

// ------------------------------------------------------------------ Paddle 3: PIR JSON

/// Reads a Paddle 3 `.json` program (PIR).
pub fn parse_pir_json(bytes: &[u8]) -> Result<InferenceGraph, String> {
    let root: Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JSON program: {e}"))?;
    let magic = root.pointer("/base_code/magic").and_then(Value::as_str);
    if magic != Some("pir") {
        return Err("not a PaddlePaddle PIR program (no base_code.magic \"pir\")".into());
    }
    let regions = root
        .pointer("/program/regions")
        .and_then(Value::as_array)
        .ok_or("the program has no regions")?;
    let mut ops = Vec::new();
    collect_ops(regions, &mut ops, 0);
    let mut builder = Builder::default();
    // Value id -> parameter name, from the parameter ops.
    let mut values: HashMap<u64, String> = HashMap::new();
    for op in &ops {
        if op.get("#").and_then(Value::as_str) != Some("p") {
            continue;
        }
        let name = op
            .get("A")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().rev().find_map(Value::as_str))
            .ok_or("a parameter op has no name")?;
        let out = op
            .get("O")
            .ok_or_else(|| format!("parameter {name} has no output"))?;
        let id = out
            .get("%")
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("parameter {name} has no value id"))?;
        let dims: Vec<i64> = out
            .pointer("/TT/D/1")
            .and_then(Value::as_array)
            .map(|d| d.iter().filter_map(Value::as_i64).collect())
            .ok_or_else(|| format!("parameter {name} has no shape"))?;
        let shape = dims_to_shape(&dims)
            .ok_or_else(|| format!("parameter {name} has dimensions {dims:?}"))?;
        values.insert(id, name.to_string());
        builder.declare(name.to_string(), shape);
    }
    for op in &ops {
        let kind = op.get("#").and_then(Value::as_str).unwrap_or_default();
        if kind == "p" {
            continue;
        }
        // pd_op.batch_norm(_): x, mean, variance, scale, bias.
        let batch_norm = kind.ends_with(".batch_norm") || kind.ends_with(".batch_norm_");
        let inputs = op.get("I").and_then(Value::as_array);
        for (position, input) in inputs.into_iter().flatten().enumerate() {
            let Some(name) = input
                .get("%")
                .and_then(Value::as_u64)
                .and_then(|id| values.get(&id))
            else {
                continue;
            };
            let slot = match (batch_norm, position) {
                (true, 1) => Some(ParamRole::BnMean),
                (true, 2) => Some(ParamRole::BnVariance),
                (true, 3) => Some(ParamRole::BnScale),
                (true, 4) => Some(ParamRole::BnBias),
                _ => None,
            };
            let name = name.clone();
            builder.use_param(&name, slot);
        }
        if kind.ends_with(".temporal_shift") && builder.num_seg.is_none() {
            builder.num_seg = op
                .get("A")
                .and_then(Value::as_array)
                .and_then(|attrs| {
                    attrs
                        .iter()
                        .find(|a| a.get("N").and_then(Value::as_str) == Some("seg_num"))
                })
                .and_then(|a| a.pointer("/AT/D"))
                .and_then(Value::as_u64)
                .and_then(|n| usize::try_from(n).ok());
        }
    }
    Ok(builder.finish())
}

/// Every op of every block of `regions`, nested regions after their op (depth-limited, so a
/// hostile file cannot recurse without end).
fn collect_ops<'a>(regions: &'a [Value], out: &mut Vec<&'a Value>, depth: usize) {
    if depth > 16 {
        return;
    }
    for region in regions {
        let blocks = region.get("blocks").and_then(Value::as_array);
        for block in blocks.into_iter().flatten() {
            let ops = block.get("ops").and_then(Value::as_array);
            for op in ops.into_iter().flatten() {
                out.push(op);
                if let Some(inner) = op.get("regions").and_then(Value::as_array) {
                    collect_ops(inner, out, depth + 1);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIR_JSON: &[u8] =
        br##"{"base_code":{"magic":"pir","version":4},"program":{"regions":[{"blocks":[{"ops":[
          {"#":"p","A":[0,1,1,"bn.w_2"],"O":{"%":1,"TT":{"D":[{},[4]]}}},
          {"#":"p","A":[0,1,1,"conv.w_0"],"O":{"%":2,"TT":{"D":[{},[4,3,3,3]]}}},
          {"#":"p","A":[0,1,1,"bn.w_0"],"O":{"%":3,"TT":{"D":[{},[4]]}}},
          {"#":"p","A":[0,1,1,"bn.b_0"],"O":{"%":4,"TT":{"D":[{},[4]]}}},
          {"#":"p","A":[0,1,1,"bn.w_1"],"O":{"%":5,"TT":{"D":[{},[4]]}}},
          {"#":"p","A":[0,1,1,"unused"],"O":{"%":6,"TT":{"D":[{},[2]]}}},
          {"#":"1.conv2d","I":[{"%":10},{"%":2}]},
          {"#":"1.batch_norm_","I":[{"%":11},{"%":5},{"%":1},{"%":3},{"%":4}]},
          {"#":"1.temporal_shift","A":[{"AT":{"D":8},"N":"seg_num"}],"I":[{"%":12}]}
        ]}]}]}}"##;

    /// A Paddle 2 program: one conv weight and a BatchNorm's four inputs, a temporal shift.
    fn pdmodel() -> Vec<u8> {
        let var = |name: &str, dims: Vec<i64>| VarDesc {
            name: name.into(),
            var_type: Some(VarType {
                kind: DENSE_TENSOR,
                dense_tensor: Some(DenseTensorDesc {
                    tensor: Some(TensorDesc {
                        data_type: FP32,
                        dims,
                    }),
                }),
            }),
            persistable: true,
        };
        let input = |slot: &str, name: &str| OpVar {
            parameter: slot.into(),
            arguments: vec![name.into()],
        };
        let op = |op_type: &str, inputs: Vec<OpVar>, attrs: Vec<OpAttr>| OpDesc {
            inputs,
            op_type: op_type.into(),
            attrs,
        };
        let program = ProgramDesc {
            blocks: vec![BlockDesc {
                vars: ["s", "b", "m", "v"]
                    .into_iter()
                    .map(|n| var(n, vec![4]))
                    .chain([var("w", vec![4, 3, 3, 3])])
                    .collect(),
                ops: vec![
                    op("conv2d", vec![input("Filter", "w")], Vec::new()),
                    op(
                        "batch_norm",
                        vec![
                            input("Bias", "b"),
                            input("Mean", "m"),
                            input("Scale", "s"),
                            input("Variance", "v"),
                        ],
                        Vec::new(),
                    ),
                    op(
                        "temporal_shift",
                        Vec::new(),
                        vec![OpAttr {
                            name: "seg_num".into(),
                            i: 8,
                        }],
                    ),
                ],
            }],
        };
        program.encode_to_vec()
    }

    #[test]
    fn pdmodel_roles_and_seg_num() {
        let g = parse_pdmodel(&pdmodel()).unwrap();
        let got: Vec<(&str, Option<ParamRole>)> =
            g.params.iter().map(|p| (p.name.as_str(), p.role)).collect();
        assert_eq!(
            got,
            [
                ("w", Some(ParamRole::Weight)),
                ("b", Some(ParamRole::BnBias)),
                ("m", Some(ParamRole::BnMean)),
                ("s", Some(ParamRole::BnScale)),
                ("v", Some(ParamRole::BnVariance)),
            ]
        );
        assert_eq!(g.num_seg, Some(8));
    }

    #[test]
    fn pir_json_roles_and_seg_num() {
        let json = PIR_JSON;
        let g = parse_pir_json(json).unwrap();
        let got: Vec<(&str, Option<ParamRole>)> =
            g.params.iter().map(|p| (p.name.as_str(), p.role)).collect();
        assert_eq!(
            got,
            [
                ("conv.w_0", Some(ParamRole::Weight)),
                ("bn.w_1", Some(ParamRole::BnMean)),
                ("bn.w_2", Some(ParamRole::BnVariance)),
                ("bn.w_0", Some(ParamRole::BnScale)),
                ("bn.b_0", Some(ParamRole::BnBias)),
                ("unused", None),
            ]
        );
        assert_eq!(g.num_seg, Some(8));
        assert_eq!(
            g.sorted_names(),
            ["bn.b_0", "bn.w_0", "bn.w_1", "bn.w_2", "conv.w_0", "unused"]
        );
    }

    #[test]
    fn hostile_graphs_are_errors_not_panics() {
        assert!(parse_pir_json(b"{}").is_err());
        assert!(parse_pir_json(b"[1,2").is_err());
        assert!(parse_pdmodel(b"\xff\xff\xff\xff").is_err());
        type Parse = fn(&[u8]) -> Result<InferenceGraph, String>;
        let cases: [(&str, Vec<u8>, Parse); 2] = [
            ("pdmodel", pdmodel(), parse_pdmodel),
            ("pir-json", PIR_JSON.to_vec(), parse_pir_json),
        ];
        for (name, seed, parse) in cases {
            let (ok, refused) =
                crate::fuzz_lite::run(name, &[seed], 2_000, b"\x12\x1a\":[", "", |data| {
                    parse(data).map(drop)
                });
            assert!(
                ok > 0 && refused > 0,
                "{name}: {ok} parsed, {refused} refused"
            );
        }
    }
}
