//! `kineto export --weights W --output OUT [--format safetensors|pdparams] [--fused] [--teacher]
//! [--labels FILE]`

use std::path::PathBuf;

use anyhow::anyhow;
use kineto::checkpoint::file::Format;
use kineto::labels::read_label_file;
use kineto::weights::export::{ExportRequest, Labels, export};

use super::{CliResult, Failure, GlobalArgs, resolve_weights, weights_failure};

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// A catalog name or a .pdparams / .safetensors file.
    #[arg(long, value_name = "NAME|FILE")]
    pub weights: String,
    /// The file to write (temporary name, then renamed).
    #[arg(long)]
    pub output: PathBuf,
    /// Default: from OUT's extension.
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// Write the fused inference form (BatchNorm folded, rep branches merged); safetensors only.
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
}

pub fn run(args: &ExportArgs, global: &GlobalArgs) -> CliResult {
    let format = args.format.map(|f| match f {
        FormatArg::Safetensors => Format::Safetensors,
        FormatArg::Pdparams => Format::Pdparams,
    });
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
