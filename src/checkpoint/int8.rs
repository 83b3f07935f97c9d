//! A quantized model in Kineto's safetensors: the fused model's float tensors, and for each
//! layer that runs in int8 (`model::nhwc::quant::QuantLayer`):
//!
//! | tensor | dtype | shape |
//! |---|---|---|
//! | `int8.<layer>.weight` | I8 | `[out, in]`, within ±63 |
//! | `int8.<layer>.weight_scale` | F32 | `[out]` |
//! | `int8.<layer>.input_scale` | F32 | `[]` |
//! | `int8.<layer>.input_zero_point` | U8 | `[]` |
//! | `int8.<layer>.input_smoothing` (optional) | F32 | `[in]`, each positive |
//! | `int8.<layer>.weight_max` (optional) | U8 | `[]`: 63 (absent) or 127 (8-bit weights) |
//! | `int8.<layer>.input_max` (optional) | U8 | `[]`: 255 (absent) or 127 (7-bit inputs) |
//!
//! with `<layer>` PaddleVideo's name (`stages.2.0.pw_conv_1`), and the metadata key
//! `quantization`: a JSON object that says how it was made (scheme, estimator, the layers kept
//! in float, the calibration clips and each layer's range). Every value is checked on reading.

use std::collections::{BTreeMap, HashMap};

use super::safetensors::{Dtype, INT8_PREFIX, RawTensor};
use crate::model::nhwc::qgemm::{ActQuant, INPUT_MAX, WEIGHT_MAX};
use crate::model::nhwc::quant::{QuantLayer, QuantLayers};

/// The metadata key of the quantization summary.
pub const METADATA_KEY: &str = "quantization";

/// A quantized model's int8 part.
#[derive(Clone, Debug, PartialEq)]
pub struct Int8Weights {
    pub layers: QuantLayers,
    /// The `quantization` metadata: how the file was made.
    pub summary: serde_json::Value,
}

const SUFFIXES: [&str; 7] = [
    "weight",
    "weight_scale",
    "input_scale",
    "input_zero_point",
    "input_smoothing",
    "weight_max",
    "input_max",
];

/// The file's int8 part from its `int8.*` tensors and metadata; `None` when it has neither.
pub fn read_int8(
    tensors: &BTreeMap<String, RawTensor>,
    metadata: &HashMap<String, String>,
) -> Result<Option<Int8Weights>, String> {
    let summary = metadata.get(METADATA_KEY);
    if tensors.is_empty() && summary.is_none() {
        return Ok(None);
    }
    let summary: serde_json::Value = match summary {
        Some(text) => serde_json::from_str(text)
            .map_err(|e| format!("metadata {METADATA_KEY} is not JSON: {e}"))?,
        None => return Err(format!("has int8 tensors but no {METADATA_KEY} metadata")),
    };
    let mut names: Vec<&str> = Vec::new();
    for key in tensors.keys() {
        let rest = key.strip_prefix(INT8_PREFIX).unwrap_or(key);
        let layer = SUFFIXES
            .iter()
            .find_map(|suffix| rest.strip_suffix(suffix)?.strip_suffix('.'))
            .ok_or_else(|| {
                format!(
                    "{}: not an int8 tensor Kineto knows",
                    crate::text::printable(key)
                )
            })?;
        if !names.contains(&layer) {
            names.push(layer);
        }
    }
    if names.is_empty() {
        return Err(format!("metadata {METADATA_KEY} without int8 tensors"));
    }
    let mut layers = QuantLayers::new();
    for name in names {
        let layer = read_layer(tensors, name).map_err(|p| format!("int8 layer {name}: {p}"))?;
        layers.insert(name.to_string(), layer);
    }
    Ok(Some(Int8Weights { layers, summary }))
}

fn read_layer(tensors: &BTreeMap<String, RawTensor>, name: &str) -> Result<QuantLayer, String> {
    // A tensor the layer may lack (`None`), checked where present.
    let optional = |suffix: &str, dtype: Dtype, rank: usize| {
        let key = format!("{INT8_PREFIX}{name}.{suffix}");
        let Some(t) = tensors.get(&key) else {
            return Ok(None);
        };
        if t.dtype != dtype || t.shape.len() != rank {
            return Err(format!(
                "{key} is {:?} {:?}; expected {dtype:?} of rank {rank}",
                t.dtype, t.shape
            ));
        }
        Ok(Some(t))
    };
    let get = |suffix: &str, dtype: Dtype, rank: usize| -> Result<&RawTensor, String> {
        optional(suffix, dtype, rank)?
            .ok_or_else(|| format!("{INT8_PREFIX}{name}.{suffix} is missing"))
    };
    let weight = get("weight", Dtype::I8, 2)?;
    let (out_channels, in_channels) = (weight.shape[0], weight.shape[1]);
    let weight_scale = f32s(get("weight_scale", Dtype::F32, 1)?);
    let input_scale = f32s(get("input_scale", Dtype::F32, 0)?);
    let zero_point = get("input_zero_point", Dtype::U8, 0)?;
    let smoothing = optional("input_smoothing", Dtype::F32, 1)?.map_or_else(Vec::new, f32s);
    let weight_max = match optional("weight_max", Dtype::U8, 0)? {
        Some(t) => t.bytes.first().map_or(0, |&b| i32::from(b)),
        None => WEIGHT_MAX,
    };
    let input_max = match optional("input_max", Dtype::U8, 0)? {
        Some(t) => t.bytes.first().copied().unwrap_or(0),
        None => INPUT_MAX,
    };
    let layer = QuantLayer {
        out_channels,
        in_channels,
        weight: weight.bytes.iter().map(|&b| b as i8).collect(),
        weight_scale,
        input: ActQuant {
            scale: input_scale.first().copied().unwrap_or(f32::NAN),
            zero_point: zero_point.bytes.first().copied().unwrap_or(0),
            max: input_max,
        },
        smoothing,
        weight_max,
    };
    match layer.problem() {
        Some(problem) => Err(problem),
        None => Ok(layer),
    }
}

fn f32s(t: &RawTensor) -> Vec<f32> {
    t.bytes
        .chunks_exact(4)
        .map(|c| <[u8; 4]>::try_from(c).map_or(f32::NAN, f32::from_le_bytes))
        .collect()
}

/// The tensors that store `layers`.
pub fn int8_tensors(layers: &QuantLayers) -> BTreeMap<String, RawTensor> {
    let mut tensors = BTreeMap::new();
    for (name, layer) in layers {
        let mut put = |suffix: &str, dtype: Dtype, shape: Vec<usize>, bytes: Vec<u8>| {
            let raw = RawTensor {
                dtype,
                shape,
                bytes,
            };
            tensors.insert(format!("{INT8_PREFIX}{name}.{suffix}"), raw);
        };
        put(
            "weight",
            Dtype::I8,
            vec![layer.out_channels, layer.in_channels],
            layer.weight.iter().map(|&w| w as u8).collect(),
        );
        put(
            "weight_scale",
            Dtype::F32,
            vec![layer.out_channels],
            layer
                .weight_scale
                .iter()
                .flat_map(|s| s.to_le_bytes())
                .collect(),
        );
        put(
            "input_scale",
            Dtype::F32,
            vec![],
            layer.input.scale.to_le_bytes().to_vec(),
        );
        put(
            "input_zero_point",
            Dtype::U8,
            vec![],
            vec![layer.input.zero_point],
        );
        // Absent means the default widths (7-bit weights, 8-bit inputs), so such files stay
        // as they were.
        if layer.weight_max != WEIGHT_MAX {
            let max = u8::try_from(layer.weight_max).unwrap_or(u8::MAX);
            put("weight_max", Dtype::U8, vec![], vec![max]);
        }
        if layer.input.max != INPUT_MAX {
            put("input_max", Dtype::U8, vec![], vec![layer.input.max]);
        }
        if !layer.smoothing.is_empty() {
            put(
                "input_smoothing",
                Dtype::F32,
                vec![layer.in_channels],
                layer
                    .smoothing
                    .iter()
                    .flat_map(|s| s.to_le_bytes())
                    .collect(),
            );
        }
    }
    tensors
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn layers() -> QuantLayers {
        let input = ActQuant {
            scale: 0.02,
            zero_point: 3,
            max: INPUT_MAX,
        };
        let weight = [0.5, -1.0, 0.25, 2.0, 0.0, -0.1];
        let layer = QuantLayer::quantize(&weight, 2, input, Vec::new(), WEIGHT_MAX);
        // 8-bit weights against 7-bit inputs, smoothed.
        let seven = ActQuant { max: 127, ..input };
        let smoothed = QuantLayer::quantize(&weight, 2, seven, vec![2.0, 0.5, 1.5], 127);
        QuantLayers::from([
            ("stages.0.0.pw_conv".to_string(), layer),
            ("stages.0.1.pw_conv".to_string(), smoothed),
        ])
    }

    fn metadata() -> HashMap<String, String> {
        HashMap::from([(METADATA_KEY.to_string(), r#"{"scheme":"int8"}"#.to_string())])
    }

    #[test]
    fn layers_read_back_as_written() {
        let tensors = int8_tensors(&layers());
        let read = read_int8(&tensors, &metadata()).unwrap().unwrap();
        assert_eq!(read.layers, layers());
        assert_eq!(read.summary["scheme"], "int8");
        assert_eq!(read_int8(&BTreeMap::new(), &HashMap::new()), Ok(None));
    }

    #[test]
    fn hostile_int8_tensors_are_refused_by_name() {
        let good = int8_tensors(&layers());
        let refused = |edit: &dyn Fn(&mut BTreeMap<String, RawTensor>), wanted: &str| {
            let mut tensors = good.clone();
            edit(&mut tensors);
            let error = read_int8(&tensors, &metadata()).unwrap_err();
            assert!(error.contains(wanted), "{error} lacks {wanted}");
        };
        let key = |suffix: &str| format!("int8.stages.0.0.pw_conv.{suffix}");
        refused(
            &|t| {
                t.remove(&key("weight_scale"));
            },
            "weight_scale is missing",
        );
        refused(
            &|t| t.get_mut(&key("weight")).unwrap().bytes[0] = 0x80,
            "outside",
        );
        refused(
            &|t| t.get_mut(&key("weight")).unwrap().shape = vec![3, 3],
            "weight has 6 values for [3, 3]",
        );
        refused(
            &|t| t.get_mut(&key("input_scale")).unwrap().bytes = (-1.0f32).to_le_bytes().into(),
            "not a positive finite",
        );
        refused(
            &|t| t.get_mut(&key("input_zero_point")).unwrap().dtype = Dtype::F32,
            "expected U8",
        );
        refused(
            &|t| {
                let w = t.remove(&key("weight")).unwrap();
                t.insert("int8.x.bias".into(), w);
            },
            "not an int8 tensor",
        );
        let smoothing = "int8.stages.0.1.pw_conv.input_smoothing";
        refused(
            &|t| t.get_mut(smoothing).unwrap().bytes[..4].copy_from_slice(&0f32.to_le_bytes()),
            "not a positive finite",
        );
        refused(
            &|t| {
                let s = t.get_mut(smoothing).unwrap();
                (s.shape, s.bytes) = (vec![2], s.bytes[..8].to_vec());
            },
            "input_smoothing has 2 values for 3 input channels",
        );
        refused(
            &|t| t.get_mut(smoothing).unwrap().dtype = Dtype::U8,
            "expected F32",
        );
        refused(
            &|t| {
                t.get_mut("int8.stages.0.1.pw_conv.weight_max")
                    .unwrap()
                    .bytes = vec![63]
            },
            "outside ±63",
        );
        refused(
            &|t| {
                t.get_mut("int8.stages.0.1.pw_conv.input_max")
                    .unwrap()
                    .bytes = vec![128]
            },
            "input_max is 128",
        );
        refused(
            &|t| {
                t.get_mut("int8.stages.0.1.pw_conv.input_max")
                    .unwrap()
                    .shape = vec![1]
            },
            "expected U8 of rank 0",
        );
        let no_summary = read_int8(&good, &HashMap::new()).unwrap_err();
        assert!(
            no_summary.contains("no quantization metadata"),
            "{no_summary}"
        );
    }
}
