//! `kineto quantize`: post-training quantization of a PP-TSMv2 to int8 on the user's clips.
//!
//! The calibration clips (a folder of videos or class folders, a list file, one video) are
//! decoded and preprocessed as PaddleVideo's test pipeline does (`infer::classify::prepare`),
//! run in float32 while every 1x1 convolution records its input (`model::nhwc::quant`), and
//! each of those layers gets per-output-channel int8 weights and an input scale from the
//! chosen estimator. With smoothing, the first pass only measures each input channel's range;
//! the clips run again in float32 to record the inputs as smoothed (`quant::smoothing`). The
//! same clips then run in int8 beside their float32 logits, so the file
//! says how much the answers moved. The output is the fused model's float tensors plus the
//! int8 layers and a `quantization` summary (`checkpoint::int8`), written atomically; the same
//! inputs give the same bytes.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::TrainError;
use crate::checkpoint::file::open_checkpoint;
use crate::checkpoint::int8::{METADATA_KEY, int8_tensors};
use crate::checkpoint::keys::Role;
use crate::checkpoint::safetensors::write_safetensors_with;
use crate::infer::batch::{expand_inputs, is_clip_file};
use crate::infer::classify::{Sampling, prepare};
use crate::infer::device::ComputeDevice;
use crate::infer::engine::{Engine, Precision, store_in_form};
use crate::model::Form;
use crate::model::nhwc::quant::{Estimator, QuantBits, QuantLayers};
use crate::progress::CancelToken;
use crate::weights::export::{ExportRequest, metadata};

/// What to quantize and how.
#[derive(Clone, Debug)]
pub struct QuantizeRequest<'a> {
    /// The float32 checkpoint (a local file).
    pub weights: &'a Path,
    /// The catalog or cache name it was given by, for provenance.
    pub source_name: Option<&'a str>,
    /// A folder of videos or class folders, a list file (a clip path first on each line), or
    /// one video.
    pub calib: &'a Path,
    /// Calibration clips at most, spread over the sorted list.
    pub clips: usize,
    /// Frames per clip; `None`: the checkpoint's fixed num_seg, else its metadata's, else 8.
    pub num_seg: Option<usize>,
    pub estimator: Estimator,
    /// SmoothQuant's alpha in (0, 1]; 0: no smoothing.
    pub smoothing: f64,
    /// The layers smoothed (by name); empty: all.
    pub smooth_layers: &'a [String],
    /// The weights' and inputs' widths: 7-bit weights or 7-bit inputs run on every kernel;
    /// 8 bits of both on the VNNI kernels only (AVX2 runs such layers in portable code).
    pub bits: QuantBits,
    /// Quantizable layers to keep in float32 (by name, e.g. `stem.1.pw_conv`).
    pub keep_fp32: &'a [String],
    pub output: &'a Path,
    pub device: ComputeDevice,
}

/// How a quantization went.
#[derive(Clone, Debug)]
pub struct QuantizeReport {
    pub output: PathBuf,
    pub clips: usize,
    /// Calibration clips that could not be read, with why.
    pub skipped: Vec<(PathBuf, String)>,
    pub int8_layers: usize,
    pub fp32_layers: Vec<String>,
    /// Calibration clips whose int8 top-1 class is the float32 one.
    pub top1_agreement: f64,
    /// The largest change of a class's softmax probability over the calibration clips.
    pub max_probability_change: f64,
}

/// Per calibration clip: `done` of `total` clips through a pass.
pub type Progress<'a> = dyn Fn(Pass, usize, usize, &Path) + 'a;

/// The passes over the calibration clips.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// Float32, recording each layer's inputs.
    Calibrate,
    /// Float32 again, recording the smoothed inputs (with smoothing only).
    Smooth,
    /// Int8 against float32.
    Check,
}

/// The layers that stay float32 whatever is asked (the file says so).
const FLOAT_PARTS: [&str; 6] = [
    "stem.0 (the first convolution)",
    "the depthwise convolutions",
    "squeeze-and-excitation",
    "global_attention",
    "last_conv (on pooled features)",
    "fc",
];

/// The calibration clips of `calib`: at most `wanted`, spread evenly over the sorted list.
pub fn calibration_clips(calib: &Path, wanted: usize) -> Result<Vec<PathBuf>, TrainError> {
    if !calib.exists() {
        return Err(TrainError::NotFound {
            path: calib.to_path_buf(),
        });
    }
    let mut clips = if calib.is_dir() || is_clip_file(calib) {
        expand_inputs(&[calib.to_path_buf()], None)
    } else {
        list_file_clips(calib)?
    };
    clips.sort();
    clips.dedup();
    if clips.is_empty() {
        return Err(TrainError::NoCalibrationClips {
            path: calib.to_path_buf(),
            problem: "holds no video or frame folder".into(),
        });
    }
    let n = clips.len();
    if n > wanted {
        clips = (0..wanted).map(|i| clips[i * n / wanted].clone()).collect();
    }
    Ok(clips)
}

/// A list file's clips: the first field of each non-empty line, relative to the file's folder
/// (PaddleVideo's `path label` and `frame_dir frames label`, or paths alone).
fn list_file_clips(list: &Path) -> Result<Vec<PathBuf>, TrainError> {
    let text = crate::files::read_to_string(list).map_err(|e| TrainError::io(list, e))?;
    let base = list.parent().unwrap_or(Path::new("."));
    Ok(text
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(|file| base.join(file))
        .collect())
}

/// Calibrates, quantizes, checks and writes. `progress` hears of every clip.
pub fn quantize(
    request: &QuantizeRequest<'_>,
    progress: &Progress<'_>,
    cancel: &CancelToken,
) -> Result<QuantizeReport, TrainError> {
    if request.clips == 0 {
        return Err(TrainError::bad_option("--clips", "must be at least 1"));
    }
    let checkpoint = open_checkpoint(request.weights, Role::Student)?;
    if checkpoint.int8.is_some() {
        return Err(TrainError::model(
            request.weights,
            "is already quantized; quantize its float32 source",
        ));
    }
    let num_seg = request
        .num_seg
        .or(checkpoint.arch.num_seg)
        .or(checkpoint.meta.as_ref().map(|m| m.num_seg))
        .unwrap_or(8);
    let clips = calibration_clips(request.calib, request.clips)?;
    let mut engine = Engine::from_checkpoint(
        &checkpoint,
        Form::Fused,
        request.device.clone(),
        Some(Precision::Fp32),
    )?;
    engine.start_calibration()?;
    let known = engine.quantizable_layers();
    for (option, names) in [
        ("--keep-fp32", request.keep_fp32),
        ("--smooth-layers", request.smooth_layers),
    ] {
        if let Some(unknown) = names.iter().find(|name| !known.contains(name)) {
            return Err(TrainError::bad_option(
                option,
                format!(
                    "{unknown:?} is not a 1x1 convolution of this model ({})",
                    known.join(", ")
                ),
            ));
        }
    }
    let sampling = Sampling {
        num_seg,
        dense: false,
    };

    // Pass 1: float32 logits of every readable clip, recording each layer's inputs.
    let mut float_logits: Vec<(PathBuf, Vec<f32>)> = Vec::new();
    let mut skipped = Vec::new();
    for (i, clip) in clips.iter().enumerate() {
        if cancel.is_cancelled() {
            return Err(TrainError::Cancelled);
        }
        progress(Pass::Calibrate, i, clips.len(), clip);
        let run = || -> Result<Vec<f32>, String> {
            let prepared = prepare(clip, sampling, false).map_err(|e| e.problem(clip))?;
            engine
                .logits(prepared.tensor, prepared.dims)
                .map_err(|e| e.to_string())
        };
        match run() {
            Ok(logits) => float_logits.push((clip.clone(), logits)),
            Err(problem) => skipped.push((clip.clone(), problem)),
        }
    }
    if float_logits.is_empty() {
        let problem = match skipped.first() {
            Some((clip, why)) => format!(
                "no calibration clip could be read ({} tried; {}: {why})",
                skipped.len(),
                clip.display()
            ),
            None => "no calibration clip could be read".into(),
        };
        return Err(TrainError::NoCalibrationClips {
            path: request.calib.to_path_buf(),
            problem,
        });
    }

    // Pass 1b: with smoothing, the inputs again, each channel divided by its factor.
    if request.smoothing > 0.0 {
        let chosen = request.smooth_layers;
        engine.smooth_calibration(request.smoothing, |name| {
            chosen.is_empty() || chosen.iter().any(|c| c == name)
        })?;
        let again = (Pass::Smooth, progress, cancel);
        rerun(&engine, &float_logits, sampling, again, |_, _| ())?;
    }

    let calibrated = engine.calibrated(request.estimator, request.bits);
    let mut layers = QuantLayers::new();
    let mut ranges = serde_json::Map::new();
    for (name, layer, stats) in &calibrated {
        let (lower, upper) = stats.range(request.estimator, request.bits.input_max());
        let factors = &layer.smoothing;
        let smoothing = (!factors.is_empty()).then(|| {
            let (min, max) = factors
                .iter()
                .fold((f32::INFINITY, 0f32), |(lo, hi), &s| (lo.min(s), hi.max(s)));
            json!({"min": min, "max": max})
        });
        ranges.insert(
            name.clone(),
            json!({
                "min": stats.min, "max": stats.max, "lower": lower, "upper": upper,
                "scale": layer.input.scale, "zero_point": layer.input.zero_point,
                "smoothing": smoothing, "int8": !request.keep_fp32.contains(name),
            }),
        );
        if !request.keep_fp32.contains(name) {
            layers.insert(name.clone(), layer.clone());
        }
    }

    // Pass 2: the same clips in int8, against their float32 logits.
    engine.set_int8(&layers)?;
    let (mut agree, mut compared, mut max_change) = (0usize, 0usize, 0f64);
    let check = (Pass::Check, progress, cancel);
    rerun(&engine, &float_logits, sampling, check, |float, int8| {
        compared += 1;
        agree += usize::from(argmax(float) == argmax(int8));
        max_change = max_change.max(max_probability_change(float, int8));
    })?;
    let top1_agreement = agree as f64 / compared.max(1) as f64;

    let store = store_in_form(&checkpoint, Form::Fused)?;
    let export = ExportRequest {
        source: request.weights,
        source_name: request.source_name,
        catalog_num_seg: Some(num_seg),
        output: request.output,
        format: None,
        fused: true,
        teacher: false,
        labels: None,
    };
    let mut meta = metadata(&export, &checkpoint, Form::Fused)?;
    // The file is a function of its inputs: the same ones write the same bytes.
    if let Some(provenance) = meta.provenance.as_object_mut() {
        provenance.insert("date".into(), serde_json::Value::Null);
    }
    let fp32_layers: Vec<String> = request.keep_fp32.to_vec();
    let summary = json!({
        "scheme": "int8",
        "version": 1,
        "weights": format!(
            "per output channel, symmetric, integers within ±{}",
            request.bits.weight_max()
        ),
        "activations": format!(
            "per tensor, asymmetric, unsigned {} bits",
            request.bits.input
        ),
        "smoothing": match request.smoothing > 0.0 {
            true => json!({
                "method": "SmoothQuant, per input channel",
                "alpha": request.smoothing,
                "layers": match request.smooth_layers {
                    [] => json!("all"),
                    names => json!(names),
                },
            }),
            false => serde_json::Value::Null,
        },
        "estimator": request.estimator.name(),
        "percentile": match request.estimator {
            Estimator::Percentile(p) => json!(p),
            Estimator::MinMax | Estimator::Mse => serde_json::Value::Null,
        },
        "int8_layers": layers.keys().collect::<Vec<_>>(),
        "fp32_layers": fp32_layers,
        "fp32_parts": FLOAT_PARTS,
        "calibration": {
            "source": request.calib.display().to_string(),
            "clips": float_logits.len(),
            "skipped": skipped.len(),
            "frames_per_clip": num_seg,
            "sampling": "uniform, center crop 224 (PaddleVideo's test pipeline)",
            "top1_agreement": top1_agreement,
            "max_probability_change": max_change,
            "ranges": ranges,
        },
    });
    let mut table = meta.to_map();
    table.insert(METADATA_KEY.into(), summary.to_string());
    write_safetensors_with(&store, &int8_tensors(&layers), table, request.output)?;
    Ok(QuantizeReport {
        output: request.output.to_path_buf(),
        clips: float_logits.len(),
        skipped,
        int8_layers: layers.len(),
        fp32_layers: request.keep_fp32.to_vec(),
        top1_agreement,
        max_probability_change: max_change,
    })
}

/// Runs the clips that pass 1 read again, as the engine now is, handing `each` a clip's pass-1
/// logits and its new ones (a clip that no longer reads is skipped).
fn rerun(
    engine: &Engine,
    clips: &[(PathBuf, Vec<f32>)],
    sampling: Sampling,
    (pass, progress, cancel): (Pass, &Progress<'_>, &CancelToken),
    mut each: impl FnMut(&[f32], &[f32]),
) -> Result<(), TrainError> {
    for (i, (clip, first)) in clips.iter().enumerate() {
        if cancel.is_cancelled() {
            return Err(TrainError::Cancelled);
        }
        progress(pass, i, clips.len(), clip);
        let Ok(prepared) = prepare(clip, sampling, false) else {
            continue;
        };
        each(first, &engine.logits(prepared.tensor, prepared.dims)?);
    }
    Ok(())
}

/// The index of the largest value (the first of equals).
pub fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 { (i, v) } else { best }
        })
        .0
}

/// The largest change of one class's softmax probability between two logit vectors.
pub fn max_probability_change(a: &[f32], b: &[f32]) -> f64 {
    let (pa, pb) = (softmax(a), softmax(b));
    pa.iter()
        .zip(&pb)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits
        .iter()
        .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
    let exp: Vec<f64> = logits.iter().map(|&v| (f64::from(v) - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.iter().map(|e| e / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probability_change_and_argmax() {
        assert_eq!(argmax(&[0.0, 3.0, 3.0, -1.0]), 1);
        assert_eq!(max_probability_change(&[1.0, 2.0], &[1.0, 2.0]), 0.0);
        let change = max_probability_change(&[0.0, 0.0], &[0.0, 100.0]);
        assert!((change - 0.5).abs() < 1e-12, "{change}");
    }
}
