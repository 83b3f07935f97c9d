//! `kineto export --format onnx`: a checkpoint as an ONNX model of the fused inference graph.
//!
//! The graph is what `model::fuse` gives (BatchNorm folded, rep branches merged), built from the
//! loaded fused network so it has exactly the layers Kineto runs: input `clips`
//! `[batch, T, 3, height, width]` float32 (batch, height and width symbolic), output `logits`
//! `[batch, classes]`, opset 13. The temporal shift is standard ops, as PaddleVideo's export
//! gives it: Reshape to `[N, T, C, H, W]`, Slice of the shifted channel groups, Pad of one zero
//! frame, Concat, Reshape back. Kineto's metadata (class names, num_seg, preprocessing) goes into
//! the model's `metadata_props`.
//!
//! Every network: PP-TSMv2 (with or without the temporal attention), the PP-TSM ResNet
//! (ResNet-D shortcuts as AveragePool in ceil mode, exclusive counts) and PP-TSM MobileNetV2/V3
//! (ReLU6 as Clip; hardswish as `x * HardSigmoid(x; 1/6, 0.5)`, opset 13 having no HardSwish).

pub mod proto;

use std::path::PathBuf;

use burn::module::Param;
use burn::tensor::{Device, Tensor};
use prost::Message;

use super::WeightsError;
use super::export::{ExportRequest, metadata};
use crate::checkpoint::file::open_checkpoint;
use crate::checkpoint::keys::Role;
use crate::checkpoint::write_file_atomic;
use crate::model::fuse::fuse_store;
use crate::model::layers::{Act, Conv, ConvBn, Linear, shift_channels};
use crate::model::pptsm_mv2::{InvertedResidual, Mv2ConvBn, PpTsmMv2};
use crate::model::pptsm_mv3::{DROPOUT_INFER_SCALE, PpTsmMv3, ResidualUnit};
use crate::model::pptsm_v2::{DROPOUT_KEEP, PpTsmV2, RepDepthwiseSeparable};
use crate::model::resnet_tsm::{Bottleneck, ResConvBn, ResNetTsm};
use crate::model::{Form, Network, Recognizer};
use proto::{
    AttributeProto, AttributeType, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto, data_type,
    tensor_shape_proto, type_proto,
};

/// The opset the graph is written for (Slice/Pad/Unsqueeze take their indices as inputs from
/// 13 on; ReduceMean still takes `axes` as an attribute).
pub const OPSET: i64 = 13;
/// The IR version that goes with opset 13.
const IR_VERSION: i64 = 7;
/// The graph's input and output names.
pub const INPUT_NAME: &str = "clips";
pub const OUTPUT_NAME: &str = "logits";

/// What was written.
#[derive(Clone, Debug)]
pub struct OnnxReport {
    pub output: PathBuf,
    pub model: String,
    pub frames: usize,
    pub nodes: usize,
    pub parameters: usize,
    pub class_names: Option<usize>,
    pub bytes: usize,
}

/// Exports `request.source` as ONNX to `request.output`, for clips of `frames` frames (default:
/// the attention's num_seg, else the checkpoint's or the catalog's, else 8). `request.format`
/// and `request.fused` are not used: ONNX is always the fused graph.
pub fn export_onnx(
    request: &ExportRequest<'_>,
    frames: Option<usize>,
) -> Result<OnnxReport, WeightsError> {
    if request.teacher {
        return Err(WeightsError::Usage(
            "--teacher does not apply to --format onnx: export the teacher to safetensors \
             first (`kineto export --teacher --output teacher.safetensors`), then that file"
                .into(),
        ));
    }
    let ckpt = open_checkpoint(request.source, Role::Student)?;
    let arch = ckpt.arch;
    if let Some(labels) = &request.labels
        && labels.names.len() != arch.num_classes
    {
        return Err(WeightsError::invalid(
            &labels.path,
            format!(
                "has {} class names, the model has {} classes",
                labels.names.len(),
                arch.num_classes
            ),
        ));
    }
    let mut meta = metadata(request, &ckpt, Form::Fused)?;
    let frames = match (arch.num_seg, frames) {
        (Some(fixed), Some(asked)) if fixed != asked => {
            return Err(WeightsError::Usage(format!(
                "--frames {asked}: this checkpoint's temporal attention fixes num_seg = {fixed}"
            )));
        }
        (_, Some(0)) => return Err(WeightsError::Usage("--frames must be at least 1".into())),
        (Some(fixed), _) => fixed,
        (None, Some(asked)) => asked,
        (None, None) => meta.num_seg,
    };
    meta.num_seg = frames;

    let store = match arch.form {
        Form::Training => {
            fuse_store(&ckpt.store).map_err(|p| WeightsError::invalid(request.source, p))?
        }
        Form::Fused => ckpt.store.clone(),
    };
    let device = Device::flex();
    let model = Recognizer::from_store(&store, &device)
        .map_err(|e| WeightsError::invalid(request.source, e.to_string()))?;
    let mut graph = Builder::default();
    match &model.network {
        Network::V2(net) => pptsm_v2_graph(&mut graph, net, frames),
        Network::Resnet(net) => resnet_graph(&mut graph, net, frames),
        Network::Mv2(net) => mv2_graph(&mut graph, net, frames),
        Network::Mv3(net) => mv3_graph(&mut graph, net, frames),
    }
    .map_err(|p| WeightsError::invalid(request.source, p))?;

    let mut props: Vec<(String, String)> = meta.to_map().into_iter().collect();
    props.sort();
    let nodes = graph.nodes.len();
    let parameters = graph.parameters;
    let onnx = graph.into_model(
        &format!("{} {frames}f", arch.display_name()),
        arch.num_classes,
        frames,
        props,
    );
    let bytes = onnx.encode_to_vec();
    write_file_atomic(request.output, &bytes)
        .map_err(|e| WeightsError::io(request.output, "write", e))?;
    Ok(OnnxReport {
        output: request.output.to_path_buf(),
        model: arch.display_name(),
        frames,
        nodes,
        parameters,
        class_names: meta.class_names.as_ref().map(Vec::len),
        bytes: bytes.len(),
    })
}

/// Nodes and initializers being collected, with fresh value names.
#[derive(Default)]
struct Builder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    /// Float values in initializers (the model's parameters).
    parameters: usize,
    next: usize,
}

fn ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: values.to_vec(),
        ..Default::default()
    }
}

fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i: value,
        ..Default::default()
    }
}

fn float(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Float as i32,
        f: value,
        ..Default::default()
    }
}

/// A tensor parameter's host values and its dimensions.
fn host<const D: usize>(param: &Param<Tensor<D>>, what: &str) -> Result<HostTensor, String> {
    let data = param.val().into_data().convert::<f32>();
    let dims = data.shape().iter().map(|&d| d as i64).collect();
    let values = data
        .try_into_vec::<f32>()
        .map_err(|e| format!("{what}: cannot read the weights back: {e:?}"))?;
    Ok(HostTensor { dims, values })
}

struct HostTensor {
    dims: Vec<i64>,
    values: Vec<f32>,
}

impl Builder {
    /// A fresh value name from a readable stem.
    fn fresh(&mut self, stem: &str) -> String {
        self.next += 1;
        format!("{stem}_{}", self.next)
    }

    fn float_init(&mut self, name: &str, tensor: HostTensor) -> String {
        self.parameters += tensor.values.len();
        let raw_data = tensor.values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializers.push(TensorProto {
            dims: tensor.dims,
            data_type: data_type::FLOAT,
            name: name.into(),
            raw_data,
        });
        name.to_string()
    }

    fn i64_init(&mut self, stem: &str, values: &[i64]) -> String {
        let name = self.fresh(stem);
        self.initializers.push(TensorProto {
            dims: vec![values.len() as i64],
            data_type: data_type::INT64,
            name: name.clone(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        });
        name
    }

    fn scalar_init(&mut self, stem: &str, value: f32) -> String {
        let name = self.fresh(stem);
        self.initializers.push(TensorProto {
            dims: Vec::new(),
            data_type: data_type::FLOAT,
            name: name.clone(),
            raw_data: value.to_le_bytes().to_vec(),
        });
        name
    }

    /// One node with one output; returns the output's name.
    fn node(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        attribute: Vec<AttributeProto>,
    ) -> String {
        let output = self.fresh(name);
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.clone()],
            name: output.clone(),
            op_type: op.into(),
            attribute,
            ..Default::default()
        });
        output
    }

    /// `Shape(x)[from..to]`, as a 1-D int64 tensor.
    fn shape_slice(&mut self, x: &str, name: &str, from: i64, to: i64) -> String {
        let shape = self.node("Shape", name, &[x], Vec::new());
        let starts = self.i64_init("starts", &[from]);
        let ends = self.i64_init("ends", &[to]);
        let axes = self.i64_init("axes", &[0]);
        self.node("Slice", name, &[&shape, &starts, &ends, &axes], Vec::new())
    }

    /// `Reshape(x, concat(head, tail))`: a shape whose leading dims are constants (-1 for the
    /// batch) and whose trailing dims come from another tensor's shape.
    fn reshape_with_tail(&mut self, x: &str, name: &str, head: &[i64], tail: &str) -> String {
        let head = self.i64_init("shape_head", head);
        let shape = self.node("Concat", name, &[&head, tail], vec![int("axis", 0)]);
        self.node("Reshape", name, &[x, &shape], Vec::new())
    }

    fn slice(&mut self, x: &str, name: &str, starts: &[i64], ends: &[i64], axes: &[i64]) -> String {
        let starts = self.i64_init("starts", starts);
        let ends = self.i64_init("ends", ends);
        let axes = self.i64_init("axes", axes);
        self.node("Slice", name, &[x, &starts, &ends, &axes], Vec::new())
    }

    fn act(&mut self, x: String, name: &str, act: Act) -> String {
        match act {
            Act::None => x,
            Act::Relu => self.node("Relu", name, &[&x], Vec::new()),
            Act::LeakyRelu => self.node("LeakyRelu", name, &[&x], vec![float("alpha", 0.01)]),
            Act::Relu6 => {
                let (lo, hi) = (self.scalar_init("zero", 0.0), self.scalar_init("six", 6.0));
                self.node("Clip", name, &[&x, &lo, &hi], Vec::new())
            }
            // Opset 13 has no HardSwish: x * HardSigmoid(x; 1/6, 0.5) is the same function.
            Act::Hardswish => {
                let gate = self.node(
                    "HardSigmoid",
                    name,
                    &[&x],
                    vec![float("alpha", 1.0 / 6.0), float("beta", 0.5)],
                );
                self.node("Mul", name, &[&x, &gate], Vec::new())
            }
        }
    }

    /// `Conv2D` with "same" padding `(k - 1) / 2`; `key` is the weight's checkpoint key stem.
    fn conv(&mut self, x: &str, conv: &Conv, key: &str) -> Result<String, String> {
        let weight = host(&conv.weight, key)?;
        let k = conv.kernel_size() as i64;
        let pad = (k - 1) / 2;
        let stride = conv.stride as i64;
        let w = self.float_init(&format!("{key}.weight"), weight);
        let mut inputs = vec![x.to_string(), w];
        if let Some(bias) = &conv.bias {
            let b = host(bias, key)?;
            inputs.push(self.float_init(&format!("{key}.bias"), b));
        }
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        Ok(self.node(
            "Conv",
            key,
            &inputs,
            vec![
                ints("kernel_shape", &[k, k]),
                ints("strides", &[stride, stride]),
                ints("pads", &[pad, pad, pad, pad]),
                ints("dilations", &[1, 1]),
                int("group", conv.groups as i64),
            ],
        ))
    }

    /// A fused ConvBn (the conv carries the folded bias) and its activation.
    fn conv_bn(&mut self, x: &str, layer: &ConvBn, key: &str) -> Result<String, String> {
        if layer.bn.is_some() {
            return Err(format!("{key}: BatchNorm left after fusing"));
        }
        let y = self.conv(x, &layer.conv, &format!("{key}.conv"))?;
        Ok(self.act(y, key, layer.act))
    }

    /// `x @ W + b` for a `[N, in]` input and Paddle's `[in, out]` weight.
    fn linear(&mut self, x: &str, linear: &Linear, key: &str) -> Result<String, String> {
        let w = host(&linear.weight, key)?;
        let b = host(&linear.bias, key)?;
        let w = self.float_init(&format!("{key}.weight"), w);
        let b = self.float_init(&format!("{key}.bias"), b);
        Ok(self.node("Gemm", key, &[x, &w, &b], Vec::new()))
    }

    /// `[N*T, C, H, W]` -> the temporal shift of PaddlePaddle's `temporal_shift` (ratio 1/T):
    /// channels `[0, c1)` take the previous frame's, `[c1, c2)` the next frame's, zero at the
    /// clip's ends. `x5` is the input already as `[N, T, C, H, W]`.
    fn temporal_shift(&mut self, x5: &str, channels: usize, frames: usize) -> String {
        let (c1, c2) = shift_channels(channels, frames);
        let (c1, c2, c, t) = (c1 as i64, c2 as i64, channels as i64, frames as i64);
        let name = "temporal_shift";
        let mut parts = Vec::new();
        if c1 > 0 {
            // out[:, 0] = 0, out[:, i] = x[:, i - 1]
            let prev = self.slice(x5, name, &[0, 0], &[t - 1, c1], &[1, 2]);
            let pads = self.i64_init("pads", &[0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
            parts.push(self.node("Pad", name, &[&prev, &pads], Vec::new()));
        }
        if c2 > c1 {
            // out[:, i] = x[:, i + 1], out[:, T - 1] = 0
            let next = self.slice(x5, name, &[1, c1], &[t, c2], &[1, 2]);
            let pads = self.i64_init("pads", &[0, 0, 0, 0, 0, 0, 1, 0, 0, 0]);
            parts.push(self.node("Pad", name, &[&next, &pads], Vec::new()));
        }
        if c > c2 {
            parts.push(self.slice(x5, name, &[c2], &[c], &[2]));
        }
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        self.node("Concat", name, &parts, vec![int("axis", 2)])
    }

    fn into_model(
        self,
        graph_name: &str,
        classes: usize,
        frames: usize,
        props: Vec<(String, String)>,
    ) -> ModelProto {
        let dim = |d: Dim| tensor_shape_proto::Dimension {
            value: Some(match d {
                Dim::Fixed(v) => tensor_shape_proto::dimension::Value::DimValue(v as i64),
                Dim::Named(n) => tensor_shape_proto::dimension::Value::DimParam(n.into()),
            }),
        };
        let value = |name: &str, dims: Vec<Dim>| ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: data_type::FLOAT,
                    shape: Some(TensorShapeProto {
                        dim: dims.into_iter().map(dim).collect(),
                    }),
                })),
            }),
            ..Default::default()
        };
        let input = value(
            INPUT_NAME,
            vec![
                Dim::Named("batch"),
                Dim::Fixed(frames),
                Dim::Fixed(3),
                Dim::Named("height"),
                Dim::Named("width"),
            ],
        );
        let output = value(OUTPUT_NAME, vec![Dim::Named("batch"), Dim::Fixed(classes)]);
        ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            }],
            producer_name: "kineto".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            doc_string: format!(
                "{graph_name}: fused inference graph exported by Kineto; input clips \
                 [batch, {frames}, 3, height, width] preprocessed as PaddleVideo's test \
                 pipeline (see metadata), output raw logits [batch, {classes}]"
            ),
            graph: Some(GraphProto {
                node: self.nodes,
                name: graph_name.into(),
                initializer: self.initializers,
                input: vec![input],
                output: vec![output],
                ..Default::default()
            }),
            metadata_props: props
                .into_iter()
                .map(|(key, value)| StringStringEntryProto { key, value })
                .collect(),
            ..Default::default()
        }
    }
}

enum Dim {
    Fixed(usize),
    Named(&'static str),
}

/// One `RepDepthwiseSeparable` in the fused form.
fn v2_block(
    g: &mut Builder,
    x: &str,
    block: &RepDepthwiseSeparable,
    key: &str,
) -> Result<String, String> {
    let mut y = if let Some(dw) = &block.dw_conv {
        g.conv_bn(x, dw, &format!("{key}.dw_conv"))?
    } else if let Some(rep) = &block.rep_dw {
        let y = g.conv(x, rep, &format!("{key}.dw_conv"))?;
        g.node("Relu", &format!("{key}.act"), &[&y], Vec::new())
    } else {
        return Err(format!("{key}: rep branches left after fusing"));
    };
    if let Some(se) = &block.se {
        let name = format!("{key}.se");
        let s = g.node("GlobalAveragePool", &name, &[&y], Vec::new());
        let s = g.conv(&s, &se.conv1, &format!("{name}.conv1"))?;
        let s = g.node("Relu", &name, &[&s], Vec::new());
        let s = g.conv(&s, &se.conv2, &format!("{name}.conv2"))?;
        let s = g.node("Sigmoid", &name, &[&s], Vec::new());
        y = g.node("Mul", &name, &[&y, &s], Vec::new());
    }
    if let (Some(pw1), Some(pw2)) = (&block.pw_conv_1, &block.pw_conv_2) {
        y = g.conv_bn(&y, pw1, &format!("{key}.pw_conv_1"))?;
        y = g.conv_bn(&y, pw2, &format!("{key}.pw_conv_2"))?;
    }
    if let Some(pw) = &block.pw_conv {
        y = g.conv_bn(&y, pw, &format!("{key}.pw_conv"))?;
    }
    if block.use_shortcut {
        y = g.node("Add", key, &[&y, x], Vec::new());
    }
    Ok(y)
}

/// The fused PP-TSMv2 for clips of `frames` frames, from `clips` to `logits`.
fn pptsm_v2_graph(g: &mut Builder, net: &PpTsmV2, frames: usize) -> Result<(), String> {
    let t = frames as i64;
    // [N, T, 3, H, W] -> [N*T, 3, H, W]
    let hw = g.shape_slice(INPUT_NAME, "frames", 3, 5);
    let mut x = g.reshape_with_tail(INPUT_NAME, "frames", &[-1, 3], &hw);
    x = g.conv_bn(&x, &net.stem_conv, "backbone.stem.0")?;
    x = v2_block(g, &x, &net.stem_dw, "backbone.stem.1")?;
    for (s, stage) in net.stages.iter().enumerate() {
        if s == 2 {
            let chw = g.shape_slice(&x, "temporal_shift", 1, 4);
            let mut x5 = g.reshape_with_tail(&x, "temporal_shift", &[-1, t], &chw);
            if let Some(att) = &net.global_attention {
                let key = "backbone.global_attention";
                let means = g.node(
                    "ReduceMean",
                    key,
                    &[&x5],
                    vec![ints("axes", &[2, 3, 4]), int("keepdims", 0)],
                );
                let logits = g.linear(&means, &att.fc, &format!("{key}.fc"))?;
                let weights = g.node("Sigmoid", key, &[&logits], Vec::new());
                let axes = g.i64_init("axes", &[2, 3, 4]);
                let weights = g.node("Unsqueeze", key, &[&weights, &axes], Vec::new());
                x5 = g.node("Mul", key, &[&x5, &weights], Vec::new());
            }
            let channels = stage
                .first()
                .and_then(|b| {
                    b.dw_conv
                        .as_ref()
                        .map(|c| &c.conv)
                        .or(b.rep_dw.as_ref())
                        .map(|c| c.weight.dims()[0])
                })
                .ok_or("stage 3 has no depthwise conv")?;
            let shifted = g.temporal_shift(&x5, channels, frames);
            x = g.reshape_with_tail(&shifted, "temporal_shift", &[-1], &chw);
        }
        for (b, block) in stage.iter().enumerate() {
            x = v2_block(g, &x, block, &format!("backbone.stages.{s}.{b}"))?;
        }
    }
    let x = g.node("GlobalAveragePool", "avg_pool", &[&x], Vec::new());
    let x = g.conv(&x, &net.last_conv, "backbone.last_conv")?;
    let x = g.node("Relu", "last_act", &[&x], Vec::new());
    let keep = g.scalar_init("dropout_keep", DROPOUT_KEEP);
    let x = g.node("Mul", "dropout", &[&x, &keep], Vec::new());
    let width = net.last_conv.weight.dims()[0] as i64;
    let shape = g.i64_init("segments", &[-1, t, width]);
    let x = g.node("Reshape", "segments", &[&x, &shape], Vec::new());
    let features = g.node(
        "ReduceMean",
        "features",
        &[&x],
        vec![ints("axes", &[1]), int("keepdims", 0)],
    );
    g.linear(&features, &net.fc, "backbone.fc")?;
    // The classifier's output is the graph's.
    if let Some(last) = g.nodes.last_mut() {
        last.output = vec![OUTPUT_NAME.into()];
    }
    Ok(())
}

/// `[N*T, C, H, W]` -> its temporal shift, same shape (`key` names the nodes).
fn shift_4d(g: &mut Builder, x: &str, channels: usize, frames: usize, key: &str) -> String {
    let chw = g.shape_slice(x, key, 1, 4);
    let x5 = g.reshape_with_tail(x, key, &[-1, frames as i64], &chw);
    let shifted = g.temporal_shift(&x5, channels, frames);
    g.reshape_with_tail(&shifted, key, &[-1], &chw)
}

/// A fused ResNet `ConvBNLayer`: the ResNet-D 2x2 average pool first where it has one.
fn res_conv_bn(g: &mut Builder, x: &str, layer: &ResConvBn, key: &str) -> Result<String, String> {
    if layer._batch_norm.is_some() {
        return Err(format!("{key}: BatchNorm left after fusing"));
    }
    let pooled;
    let x = if layer.avg_pool_first {
        pooled = g.node(
            "AveragePool",
            &format!("{key}.pool"),
            &[x],
            vec![
                ints("kernel_shape", &[2, 2]),
                ints("strides", &[2, 2]),
                int("ceil_mode", 1),
                int("count_include_pad", 0),
            ],
        );
        pooled.as_str()
    } else {
        x
    };
    let y = g.conv(x, &layer._conv, &format!("{key}._conv"))?;
    Ok(g.act(y, key, layer.act))
}

fn bottleneck(
    g: &mut Builder,
    x: &str,
    block: &Bottleneck,
    frames: usize,
    key: &str,
) -> Result<String, String> {
    let channels = block.conv0._conv.weight.dims()[1];
    let shifted = shift_4d(g, x, channels, frames, &format!("{key}.temporal_shift"));
    let y = res_conv_bn(g, &shifted, &block.conv0, &format!("{key}.conv0"))?;
    let y = res_conv_bn(g, &y, &block.conv1, &format!("{key}.conv1"))?;
    let y = res_conv_bn(g, &y, &block.conv2, &format!("{key}.conv2"))?;
    let short = match &block.short {
        Some(proj) => res_conv_bn(g, x, proj, &format!("{key}.short"))?,
        None => x.to_string(),
    };
    let sum = g.node("Add", key, &[&short, &y], Vec::new());
    Ok(g.act(sum, key, Act::LeakyRelu))
}

/// The fused PP-TSM ResNet (`ResNetTweaksTSM` + `ppTSMHead`, whose dropout is the identity in
/// eval) for clips of `frames` frames.
fn resnet_graph(g: &mut Builder, net: &ResNetTsm, frames: usize) -> Result<(), String> {
    let t = frames as i64;
    let hw = g.shape_slice(INPUT_NAME, "frames", 3, 5);
    let mut x = g.reshape_with_tail(INPUT_NAME, "frames", &[-1, 3], &hw);
    x = res_conv_bn(g, &x, &net.conv1_1, "backbone.conv1_1")?;
    x = res_conv_bn(g, &x, &net.conv1_2, "backbone.conv1_2")?;
    x = res_conv_bn(g, &x, &net.conv1_3, "backbone.conv1_3")?;
    x = g.node(
        "MaxPool",
        "backbone.pool2d_max",
        &[&x],
        vec![
            ints("kernel_shape", &[3, 3]),
            ints("strides", &[2, 2]),
            ints("pads", &[1, 1, 1, 1]),
        ],
    );
    for (s, stage) in net.stages.iter().enumerate() {
        for (i, block) in stage.iter().enumerate() {
            x = bottleneck(g, &x, block, frames, &format!("backbone.bb_{s}_{i}"))?;
        }
    }
    let x = g.node("GlobalAveragePool", "avg_pool", &[&x], Vec::new());
    let width = net.head.fc.weight.dims()[0] as i64;
    let shape = g.i64_init("segments", &[-1, t, width]);
    let x = g.node("Reshape", "segments", &[&x, &shape], Vec::new());
    let features = g.node(
        "ReduceMean",
        "features",
        &[&x],
        vec![ints("axes", &[1]), int("keepdims", 0)],
    );
    g.linear(&features, &net.head.fc, "head.fc")?;
    if let Some(last) = g.nodes.last_mut() {
        last.output = vec![OUTPUT_NAME.into()];
    }
    Ok(())
}

/// `[N*T, C, 1, 1]` pooled frames -> `[N, C]`, the mean over each clip's `frames` segments.
fn segment_mean(g: &mut Builder, x: &str, width: usize, frames: usize) -> String {
    let shape = g.i64_init("segments", &[-1, frames as i64, width as i64]);
    let x = g.node("Reshape", "segments", &[x, &shape], Vec::new());
    g.node(
        "ReduceMean",
        "features",
        &[&x],
        vec![ints("axes", &[1]), int("keepdims", 0)],
    )
}

/// `[N, T, 3, H, W]` input -> `[N*T, 3, H, W]` frames.
fn input_frames(g: &mut Builder) -> String {
    let hw = g.shape_slice(INPUT_NAME, "frames", 3, 5);
    g.reshape_with_tail(INPUT_NAME, "frames", &[-1, 3], &hw)
}

/// Names the last node's output as the graph's.
fn mark_output(g: &mut Builder) {
    if let Some(last) = g.nodes.last_mut() {
        last.output = vec![OUTPUT_NAME.into()];
    }
}

/// A fused MobileNetV2 `ConvBNLayer` and its activation.
fn mv2_conv_bn(g: &mut Builder, x: &str, layer: &Mv2ConvBn, key: &str) -> Result<String, String> {
    if layer._batch_norm.is_some() {
        return Err(format!("{key}: BatchNorm left after fusing"));
    }
    let y = g.conv(x, &layer._conv, &format!("{key}._conv"))?;
    Ok(g.act(y, key, layer.act))
}

fn mv2_block(
    g: &mut Builder,
    x: &str,
    block: &InvertedResidual,
    frames: usize,
    key: &str,
) -> Result<String, String> {
    let input = if block.shortcut {
        let channels = block._expand_conv._conv.weight.dims()[1];
        shift_4d(g, x, channels, frames, &format!("{key}.temporal_shift"))
    } else {
        x.to_string()
    };
    let y = mv2_conv_bn(
        g,
        &input,
        &block._expand_conv,
        &format!("{key}._expand_conv"),
    )?;
    let y = mv2_conv_bn(
        g,
        &y,
        &block._bottleneck_conv,
        &format!("{key}._bottleneck_conv"),
    )?;
    let y = mv2_conv_bn(g, &y, &block._linear_conv, &format!("{key}._linear_conv"))?;
    Ok(if block.shortcut {
        g.node("Add", key, &[x, &y], Vec::new())
    } else {
        y
    })
}

/// The fused PP-TSM MobileNetV2 for clips of `frames` frames.
fn mv2_graph(g: &mut Builder, net: &PpTsmMv2, frames: usize) -> Result<(), String> {
    let mut x = input_frames(g);
    x = mv2_conv_bn(g, &x, &net.conv1, "backbone.conv1")?;
    for (i, group) in net.blocks.iter().enumerate() {
        let name = format!("backbone.conv{}", i + 2);
        x = mv2_block(
            g,
            &x,
            &group._first_block,
            frames,
            &format!("{name}._first_block"),
        )?;
        for (j, block) in group.rest.iter().enumerate() {
            x = mv2_block(
                g,
                &x,
                block,
                frames,
                &format!("{name}.conv{}_{}", i + 2, j + 2),
            )?;
        }
    }
    x = mv2_conv_bn(g, &x, &net.conv9, "backbone.conv9")?;
    let x = g.node(
        "GlobalAveragePool",
        "backbone.pool2d_avg",
        &[&x],
        Vec::new(),
    );
    let features = segment_mean(g, &x, net.out.weight.dims()[0], frames);
    g.linear(&features, &net.out, "backbone.out")?;
    mark_output(g);
    Ok(())
}

fn mv3_unit(
    g: &mut Builder,
    x: &str,
    unit: &ResidualUnit,
    frames: usize,
    key: &str,
) -> Result<String, String> {
    let input = if unit.shortcut {
        let channels = unit.expand_conv.conv.weight.dims()[1];
        shift_4d(g, x, channels, frames, &format!("{key}.temporal_shift"))
    } else {
        x.to_string()
    };
    let y = g.conv_bn(&input, &unit.expand_conv, &format!("{key}.expand_conv"))?;
    let mut y = g.conv_bn(&y, &unit.bottleneck_conv, &format!("{key}.bottleneck_conv"))?;
    if let Some(se) = &unit.mid_se {
        let se_key = format!("{key}.mid_se");
        let gate = g.node("GlobalAveragePool", &se_key, &[&y], Vec::new());
        let gate = g.conv(&gate, &se.conv1, &format!("{se_key}.conv1"))?;
        let gate = g.act(gate, &se_key, Act::Relu);
        let gate = g.conv(&gate, &se.conv2, &format!("{se_key}.conv2"))?;
        let gate = g.node(
            "HardSigmoid",
            &se_key,
            &[&gate],
            vec![float("alpha", 0.2), float("beta", 0.5)],
        );
        y = g.node("Mul", &se_key, &[&y, &gate], Vec::new());
    }
    let y = g.conv_bn(&y, &unit.linear_conv, &format!("{key}.linear_conv"))?;
    Ok(if unit.shortcut {
        g.node("Add", key, &[x, &y], Vec::new())
    } else {
        y
    })
}

/// The fused PP-TSM MobileNetV3 for clips of `frames` frames: the pool before `last_conv`, the
/// dropout as its inference scale.
fn mv3_graph(g: &mut Builder, net: &PpTsmMv3, frames: usize) -> Result<(), String> {
    let mut x = input_frames(g);
    x = g.conv_bn(&x, &net.conv, "backbone.conv")?;
    for (i, unit) in net.blocks.iter().enumerate() {
        x = mv3_unit(g, &x, unit, frames, &format!("backbone.blocks.{i}"))?;
    }
    x = g.conv_bn(&x, &net.last_second_conv, "backbone.last_second_conv")?;
    let x = g.node("GlobalAveragePool", "backbone.avg_pool", &[&x], Vec::new());
    let x = g.conv(&x, &net.last_conv, "backbone.last_conv")?;
    let x = g.act(x, "backbone.hardswish", Act::Hardswish);
    let scale = g.scalar_init("dropout_scale", DROPOUT_INFER_SCALE);
    let x = g.node("Mul", "backbone.dropout", &[&x, &scale], Vec::new());
    let features = segment_mean(g, &x, net.fc.weight.dims()[0], frames);
    g.linear(&features, &net.fc, "backbone.fc")?;
    mark_output(g);
    Ok(())
}
