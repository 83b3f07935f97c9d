//! The model options classify, timeline and preprocess share, and loading them.

use std::path::PathBuf;

use anyhow::anyhow;
use kineto::checkpoint::keys::Role;
use kineto::infer::InferError;
use kineto::infer::device::DeviceChoice;
use kineto::infer::engine::{Engine, Precision};
use kineto::labels::{kinetics400, read_label_file};
use kineto::model::Form;

use super::{Failure, GlobalArgs, resolve_device, resolve_weights};

#[derive(clap::Args, Debug)]
pub struct ModelArgs {
    /// Weights: a catalog name (fetched into the cache on first use), a .pdparams /
    /// .safetensors file, or a PaddleVideo inference model (.pdiparams beside its .pdmodel or
    /// .json).
    #[arg(long, default_value = kineto::weights::DEFAULT_WEIGHTS)]
    pub weights: String,
    /// Frames per clip (num_seg); default: what the checkpoint's attention fixes, else 8.
    #[arg(long)]
    pub frames: Option<usize>,
    /// Class names, one per line (`name`, `id name`, or CSV `id,name`); default Kinetics-400.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// fp32 (exact), or int8: a model made by `kineto quantize`, on the CPU. Default: int8 for
    /// such a model on the CPU, else fp32.
    #[arg(long, value_enum)]
    pub precision: Option<PrecisionArg>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrecisionArg {
    Fp32,
    Int8,
}

impl From<PrecisionArg> for Precision {
    fn from(arg: PrecisionArg) -> Self {
        match arg {
            PrecisionArg::Fp32 => Precision::Fp32,
            PrecisionArg::Int8 => Precision::Int8,
        }
    }
}

/// `--precision int8` with `--device gpu` is a usage error (int8 runs on the CPU).
pub fn check_precision(
    precision: Option<PrecisionArg>,
    global: &GlobalArgs,
) -> Result<(), Failure> {
    if precision == Some(PrecisionArg::Int8) && global.device == DeviceChoice::Gpu {
        return Err(Failure::fatal(anyhow!(
            "--precision int8 runs on the CPU: drop --device gpu (or use --device cpu)"
        )));
    }
    Ok(())
}

/// A weights file that cannot be read as a checkpoint is exit 1 in every command (the file is
/// the problem); a device that cannot run it is exit 2.
pub fn engine_failure(error: InferError) -> Failure {
    match error {
        InferError::Device(_) | InferError::Backend { .. } => Failure::fatal(error),
        _ => Failure::input(error),
    }
}

/// The engine, its class names, and the num_seg to use.
pub fn load_engine(
    args: &ModelArgs,
    global: &GlobalArgs,
) -> Result<(Engine, Vec<String>, usize), Failure> {
    load_engine_with(args, global, None)
}

/// [`load_engine`] with the class names to use when neither --labels nor the checkpoint names
/// them (instead of Kinetics-400), e.g. `eval --class-index`'s.
pub fn load_engine_with(
    args: &ModelArgs,
    global: &GlobalArgs,
    fallback_labels: Option<Vec<String>>,
) -> Result<(Engine, Vec<String>, usize), Failure> {
    check_precision(args.precision, global)?;
    let weights = resolve_weights(&args.weights, global)?.path;
    let device = resolve_device(global)?;
    let precision = args.precision.map(Precision::from);
    let engine = Engine::load_in(&weights, Role::Student, Form::Fused, device, precision)
        .map_err(engine_failure)?;
    let fixed = engine.model.arch.num_seg;
    let num_seg = match (args.frames, fixed) {
        (Some(f), Some(t)) if f != t => {
            return Err(Failure::fatal(anyhow!(
                "{}: this checkpoint's temporal attention fixes num_seg = {t}; --frames {f} cannot be used",
                weights.display()
            )));
        }
        (Some(0), _) => return Err(Failure::fatal(anyhow!("--frames must be at least 1"))),
        (Some(f), _) => f,
        (None, Some(t)) => t,
        (None, None) => 8,
    };
    // --labels, else the names the checkpoint carries, else Kinetics-400.
    let labels = match (&args.labels, &engine.class_names) {
        (Some(path), _) => read_label_file(path).map_err(Failure::fatal)?,
        (None, Some(names)) => names.clone(),
        (None, None) => fallback_labels.unwrap_or_else(kinetics400),
    };
    let classes = engine.num_classes();
    if labels.len() != classes {
        let message = match &args.labels {
            Some(path) => format!(
                "{}: {} labels, but the model has {classes} classes: give a file with one \
                 name per class, in the model's class order",
                path.display(),
                labels.len()
            ),
            None => format!(
                "the model has {classes} classes and names none of them: pass --labels FILE \
                 (one name per class; Kinetics-400's {} names fit only 400-class models)",
                labels.len()
            ),
        };
        return Err(Failure::fatal(anyhow!(message)));
    }
    Ok((engine, labels, num_seg))
}
