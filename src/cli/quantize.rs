//! `kineto quantize --weights W --calib DATA [--clips 64] [--estimator percentile|minmax|mse]
//! [--percentile P] [--smoothing ALPHA] [--smooth-layers LAYER,...|all] [--keep-fp32
//! LAYER,...|none] [--weight-bits 7|8] [--input-bits 7|8] [--frames N] --output
//! W_int8.safetensors`

use std::cell::OnceCell;
use std::path::PathBuf;

use anyhow::anyhow;
use kineto::infer::device::{ComputeDevice, DeviceChoice};
use kineto::model::nhwc::quant::{DEFAULT_PERCENTILE, DEFAULT_SMOOTHING, Estimator, QuantBits};
use kineto::train::TrainError;
use kineto::train::quantize::{Pass, QuantizeRequest, quantize};

use super::progress::Progress;
use super::{CliResult, Failure, GlobalArgs, check_output_writable, interrupt_token};

#[derive(clap::Args, Debug)]
pub struct QuantizeArgs {
    /// The float32 PP-TSMv2 to quantize: a catalog name, a .pdparams / .safetensors file or a
    /// PaddleVideo inference model.
    #[arg(long, value_name = "NAME|FILE")]
    pub weights: String,
    /// Calibration clips, like the ones the model will see: a folder (videos, class folders,
    /// frame folders), a list file (a clip path first on each line, relative to the file) or
    /// one video.
    #[arg(long, value_name = "DATA")]
    pub calib: PathBuf,
    /// Calibration clips at most, spread evenly over DATA's sorted clips.
    #[arg(long, default_value_t = 64)]
    pub clips: usize,
    /// How each layer's input range is chosen: `percentile` (the largest value cut at
    /// --percentile of the values seen), `minmax` (everything seen) or `mse` (the cut with the
    /// least expected squared error).
    #[arg(long, value_enum, default_value = "percentile")]
    pub estimator: EstimatorArg,
    /// The percentile of `--estimator percentile`.
    #[arg(long, default_value_t = DEFAULT_PERCENTILE)]
    pub percentile: f64,
    /// Per-input-channel smoothing (SmoothQuant's alpha, 0 to 1; 0 = none): each layer's
    /// input channels are divided by factors its weights absorb, so that channels of small
    /// range keep their precision beside wide ones. Costs one more float32 pass over the clips
    /// and nothing at inference. Measured on a trained head, every layer in int8 at the default
    /// widths: 92.3% of 639 windows kept their float32 top-1 class unsmoothed, 99.4% at 0.6.
    #[arg(long, value_name = "ALPHA", default_value_t = DEFAULT_SMOOTHING)]
    pub smoothing: f64,
    /// The layers --smoothing applies to, by name, comma-separated; `all`: every int8 layer.
    /// Measured on a trained head: `stem.1.pw_conv` alone in int8 kept the float32 top-1
    /// class of 97.2% of 639 windows, 99.4% smoothed, while smoothing stages 0-1 cost windows.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "LAYER",
        default_value = "all"
    )]
    pub smooth_layers: Vec<String>,
    /// 1x1 convolutions to keep in float32, by name (`stem.1.pw_conv`, `stages.2.0.pw_conv_1`;
    /// the file's metadata lists them all), comma-separated; `none` (the default) quantizes
    /// them all. Unsmoothed, int8's error grows most in the five before the temporal shift at
    /// high resolution (stem.1 and stages 0-1): keeping those in float32 was the earlier
    /// default, a third slower with AVX512-VNNI.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "LAYER",
        default_value = "none"
    )]
    pub keep_fp32: Vec<String>,
    /// Bits of the weights: 8 (within ±127) or 7 (±63). Measured on a trained head with every
    /// layer in int8 and `--smoothing 0.5`: 8-bit weights and 7-bit inputs kept the float32
    /// top-1 class of 99.4% of 639 windows, 8 bits of both 99.1%, 7-bit weights and 8-bit
    /// inputs 96.2%.
    #[arg(long, default_value_t = QuantBits::DEFAULT.weight, value_parser = clap::value_parser!(u8).range(7..=8))]
    pub weight_bits: u8,
    /// Bits of each int8 layer's input: 7 (codes 0-127) or 8 (0-255). 8 bits of both weights
    /// and inputs run at full speed on AVX512-VNNI and AVX-VNNI only: where AVX2 is the
    /// widest, its pairs of byte products could saturate, so such layers run portable code,
    /// slower than float32 (the file's own precision there is float32). Any other pair runs at
    /// full speed everywhere.
    #[arg(long, default_value_t = QuantBits::DEFAULT.input, value_parser = clap::value_parser!(u8).range(7..=8))]
    pub input_bits: u8,
    /// Frames per clip; default: the checkpoint's (its attention's, its metadata's), else 8.
    #[arg(long)]
    pub frames: Option<usize>,
    /// The quantized model (.safetensors; temporary name, then renamed).
    #[arg(long)]
    pub output: PathBuf,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum EstimatorArg {
    Percentile,
    Minmax,
    Mse,
}

/// Calibration data that holds nothing readable, or a weights file that cannot be quantized,
/// is the input's fault (exit 1); options and the environment exit 2.
fn failure(error: TrainError) -> Failure {
    match error {
        TrainError::NotFound { .. } | TrainError::BadOption { .. } | TrainError::Write(_) => {
            Failure::fatal(error)
        }
        TrainError::Infer(kineto::infer::InferError::Device(_)) => Failure::fatal(error),
        _ => Failure::input(error),
    }
}

pub fn run(args: &QuantizeArgs, global: &GlobalArgs) -> CliResult {
    let is_safetensors = args
        .output
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
    if !is_safetensors {
        return Err(Failure::fatal(anyhow!(
            "{}: a quantized model is written as .safetensors; name the output so",
            args.output.display()
        )));
    }
    if !(args.percentile > 0.0 && args.percentile <= 100.0) {
        return Err(Failure::fatal(anyhow!(
            "--percentile must be in (0, 100], not {}",
            args.percentile
        )));
    }
    if !(0.0..=1.0).contains(&args.smoothing) {
        return Err(Failure::fatal(anyhow!(
            "--smoothing must be in [0, 1], not {}",
            args.smoothing
        )));
    }
    if global.device == DeviceChoice::Gpu {
        return Err(Failure::fatal(anyhow!(
            "int8 runs on the CPU: quantize without --device gpu"
        )));
    }
    check_output_writable(&args.output)?;
    let resolved = super::resolve_weights(&args.weights, global)?;
    let device =
        ComputeDevice::resolve(DeviceChoice::Cpu, global.threads).map_err(Failure::fatal)?;
    let estimator = match args.estimator {
        EstimatorArg::Percentile => Estimator::Percentile(args.percentile),
        EstimatorArg::Minmax => Estimator::MinMax,
        EstimatorArg::Mse => Estimator::Mse,
    };
    // `none` (kept in float32) and `all` (smoothed) are empty lists to the library.
    let names = |names: &[String], word: &str| match names {
        [one] if one == word => Vec::new(),
        names => names.to_vec(),
    };
    let keep_fp32 = names(&args.keep_fp32, "none");
    let smooth_layers = names(&args.smooth_layers, "all");
    let request = QuantizeRequest {
        weights: &resolved.path,
        source_name: resolved.name.as_deref(),
        calib: &args.calib,
        clips: args.clips,
        num_seg: args.frames,
        estimator,
        smoothing: args.smoothing,
        bits: QuantBits {
            weight: args.weight_bits,
            input: args.input_bits,
        },
        smooth_layers: &smooth_layers,
        keep_fp32: &keep_fp32,
        output: &args.output,
        device,
    };
    // The bar is made at the first clip, when quantize knows how many it takes: two passes,
    // three with smoothing.
    let passes = if args.smoothing > 0.0 { 3 } else { 2 };
    let bar: OnceCell<(Progress, usize)> = OnceCell::new();
    let progress = |pass: Pass, done: usize, total: usize, clip: &std::path::Path| {
        let (bar, first_pass) = bar.get_or_init(|| {
            let bar = Progress::new((passes * total) as u64, "clips", global.quiet);
            (bar, total)
        });
        let (before, doing) = match pass {
            Pass::Calibrate => (0, "calibrating"),
            Pass::Smooth => (1, "smoothing"),
            Pass::Check => (passes - 1, "checking"),
        };
        bar.update(
            (before * first_pass + done) as u64,
            &format!("{doing} {}", clip.display()),
        );
    };
    let cancel = interrupt_token();
    let result = quantize(&request, &progress, &cancel);
    if let Some((bar, _)) = bar.get() {
        bar.finish();
    }
    let report = match result {
        Err(TrainError::Cancelled) => return Err(Failure::interrupted()),
        other => other.map_err(failure)?,
    };
    if !global.quiet {
        for (clip, problem) in &report.skipped {
            eprintln!("kineto: note: skipped {}: {problem}", clip.display());
        }
        eprintln!(
            "kineto: wrote {} ({} layers in int8{}; calibrated on {} clip{}, {} estimator); \
             on those clips int8 keeps the float32 top-1 class for {:.1}%, largest \
             probability change {:.4}",
            report.output.display(),
            report.int8_layers,
            match report.fp32_layers.len() {
                0 => String::new(),
                n => format!(", {n} kept in float32"),
            },
            report.clips,
            if report.clips == 1 { "" } else { "s" },
            estimator.name(),
            100.0 * report.top1_agreement,
            report.max_probability_change,
        );
    }
    Ok(())
}
