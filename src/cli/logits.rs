//! `kineto logits --weights W --input X.npy --output Y.npy`

use std::path::PathBuf;

use anyhow::anyhow;
use kineto::checkpoint::keys::Role;
use kineto::infer::InferError;
use kineto::infer::engine::{Engine, Precision};
use kineto::model::{Form, ModelError};
use kineto::npy::{read_npy_f32, write_npy_f32};

use super::model::{PrecisionArg, check_precision};
use super::{CliResult, Failure, GlobalArgs, resolve_device, resolve_weights};

#[derive(clap::Args, Debug)]
pub struct LogitsArgs {
    /// A catalog name (fetched into the cache on demand), a .pdparams (plain, DML or
    /// extracted student) / .safetensors file, or a PaddleVideo inference model (.pdiparams
    /// beside its .pdmodel or .json).
    #[arg(long, value_name = "NAME|FILE")]
    pub weights: String,
    /// f32 clips: [T, 3, H, W] (one clip) or [N, T, 3, H, W]; num_seg = T.
    #[arg(long)]
    pub input: PathBuf,
    /// f32 raw logits [N, classes].
    #[arg(long)]
    pub output: PathBuf,
    /// Use the teacher of a DML checkpoint.
    #[arg(long)]
    pub teacher: bool,
    /// Run the training form (BatchNorm and rep branches) instead of the fused inference form.
    #[arg(long, value_enum, default_value = "fused")]
    pub form: FormArg,
    /// fp32 (exact), or int8: a model made by `kineto quantize`, on the CPU. Default: int8 for
    /// such a model on the CPU, else fp32.
    #[arg(long, value_enum)]
    pub precision: Option<PrecisionArg>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum FormArg {
    Fused,
    Training,
}

pub fn run(args: &LogitsArgs, global: &GlobalArgs) -> CliResult {
    check_precision(args.precision, global)?;
    super::check_output_writable(&args.output)?;
    let input = read_npy_f32(&args.input).map_err(Failure::input)?;
    let dims: [usize; 5] = match input.shape.as_slice() {
        &[t, c, h, w] => [1, t, c, h, w],
        &[n, t, c, h, w] => [n, t, c, h, w],
        other => {
            return Err(Failure::input(anyhow!(
                "{}: input has shape {other:?}; expected [T, 3, H, W] or [N, T, 3, H, W]",
                args.input.display()
            )));
        }
    };
    let weights = resolve_weights(&args.weights, global)?.path;
    let device = resolve_device(global)?;
    let role = if args.teacher {
        Role::Teacher
    } else {
        Role::Student
    };
    let form = match args.form {
        FormArg::Fused => Form::Fused,
        FormArg::Training => Form::Training,
    };
    let precision = args.precision.map(Precision::from);
    let engine = Engine::load_in(&weights, role, form, device, precision)
        .map_err(super::model::engine_failure)?;
    let logits = engine.logits(input.data, dims).map_err(|e| match e {
        // A fixed num_seg is the checkpoint's rule, not a broken input.
        InferError::Input(ModelError::NumSeg { .. }) => {
            Failure::fatal(anyhow!("{}: {e}", weights.display()))
        }
        InferError::Input(_) => Failure::input(anyhow!("{}: {e}", args.input.display())),
        other => Failure::input(other),
    })?;
    write_npy_f32(&args.output, &[dims[0], engine.num_classes()], &logits).map_err(Failure::fatal)
}
