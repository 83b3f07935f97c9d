//! `kineto export --weights W --output OUT [--format safetensors|pdparams|onnx] [--fused]
//! [--teacher] [--labels FILE] [--frames N]`

use std::path::PathBuf;

use anyhow::anyhow;
use kineto::checkpoint::file::Format;
use kineto::labels::read_label_file;
use kineto::weights::export::{ExportRequest, Labels, export};
use kineto::weights::onnx::export_onnx;

use super::{CliResult, Failure, GlobalArgs, resolve_weights, weights_failure};

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// A catalog name, a .pdparams / .safetensors file (a model trained with `kineto train`
    /// too) or a PaddleVideo inference model (.pdiparams beside its .pdmodel or .json).
    #[arg(long, value_name = "NAME|FILE")]
    pub weights: String,
    /// The file to write (temporary name, then renamed).
    #[arg(long)]
    pub output: PathBuf,
    /// Default: from OUT's extension (.safetensors, .pdparams, .onnx). `onnx` writes the fused
    /// inference graph (opset 13, input `clips` [batch, T, 3, H, W] float32, output `logits`
    /// [batch, classes], class names in the metadata); PP-TSMv2 and PP-TSM ResNet.
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// ONNX only: frames per clip (T) of the exported graph. Default: the temporal attention's
    /// num_seg, else the checkpoint's or the catalog's, else 8.
    #[arg(long, value_name = "N")]
    pub frames: Option<usize>,
    /// Write the fused inference form (BatchNorm folded, rep branches merged); safetensors only
    /// (ONNX is always fused).
    #[arg(long)]
    pub fused: bool,
    /// Export the teacher of a DML checkpoint.
    #[arg(long)]
    pub teacher: bool,
    /// Class names, one per line (line i = class i), stored in the safetensors metadata.
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum FormatArg {
    Safetensors,
    Pdparams,
    Onnx,
}

pub fn run(args: &ExportArgs, global: &GlobalArgs) -> CliResult {
    let onnx = match args.format {
        Some(f) => matches!(f, FormatArg::Onnx),
        None => args
            .output
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("onnx")),
    };
    let format = args.format.and_then(|f| match f {
        FormatArg::Safetensors => Some(Format::Safetensors),
        FormatArg::Pdparams => Some(Format::Pdparams),
        FormatArg::Onnx => None,
    });
    if args.frames.is_some() && !onnx {
        return Err(Failure::fatal(anyhow!(
            "--frames applies to --format onnx only: a checkpoint holds no frame count"
        )));
    }
    if onnx && args.teacher {
        return Err(Failure::fatal(anyhow!(
            "--teacher does not apply to --format onnx: export the teacher to safetensors \
             first (`kineto export --teacher --output teacher.safetensors`), then that file"
        )));
    }
    if args.fused
        && (format == Some(Format::Pdparams)
            || (format.is_none() && Format::from_path(&args.output) == Some(Format::Pdparams)))
    {
        return Err(Failure::fatal(anyhow!(
            "--fused applies to safetensors only: .pdparams is always PaddleVideo's unfused \
             Recognizer2D layout"
        )));
    }
    let labels = match &args.labels {
        Some(path) => Some(Labels {
            names: read_label_file(path).map_err(Failure::input)?,
            set: path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "custom".into()),
            path: path.clone(),
        }),
        None => None,
    };
    let resolved = resolve_weights(&args.weights, global)?;
    let request = ExportRequest {
        source: &resolved.path,
        source_name: resolved.name.as_deref(),
        catalog_num_seg: resolved.entry.as_ref().and_then(|e| e.num_seg),
        output: &args.output,
        format,
        fused: args.fused,
        teacher: args.teacher,
        labels,
    };
    if onnx {
        let report = export_onnx(&request, args.frames).map_err(weights_failure)?;
        if !global.quiet {
            eprintln!(
                "kineto: wrote {} (onnx, opset {}, {} {}f, fused graph of {} nodes, {} \
                 parameters{}, {:.1} MB)",
                report.output.display(),
                kineto::weights::onnx::OPSET,
                report.model,
                report.frames,
                report.nodes,
                report.parameters,
                report
                    .class_names
                    .map(|n| format!(", {n} class names"))
                    .unwrap_or_default(),
                report.bytes as f64 / 1e6
            );
        }
        return Ok(());
    }
    let report = export(&request).map_err(|e| match e {
        // An output that cannot be written is the environment's problem.
        kineto::weights::WeightsError::Write(_) => Failure::fatal(e),
        other => weights_failure(other),
    })?;
    if !global.quiet {
        if args.labels.is_some() && report.format == Format::Pdparams {
            eprintln!("kineto: note: .pdparams carries no class names; --labels was not stored");
        }
        eprintln!(
            "kineto: wrote {} ({}, {} form, {} tensors, {} parameters{})",
            report.output.display(),
            report.format.as_str(),
            report.form.as_str(),
            report.tensors,
            report.parameters,
            report
                .class_names
                .map(|n| format!(", {n} class names"))
                .unwrap_or_default()
        );
    }
    Ok(())
}
