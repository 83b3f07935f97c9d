//! `kineto weights info W [--json]`

use std::path::PathBuf;

use kineto::checkpoint::file::open_checkpoint;
use kineto::checkpoint::keys::Role;
use serde_json::json;

use super::{CliResult, Failure, GlobalArgs};

#[derive(clap::Subcommand, Debug)]
pub enum WeightsCommand {
    /// What a weights file holds: model, depth, num_seg, classes, attention, form, parameters.
    Info(InfoArgs),
}

#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    /// A .pdparams checkpoint.
    pub weights: PathBuf,
    /// Describe the teacher of a DML checkpoint.
    #[arg(long)]
    pub teacher: bool,
    /// One JSON object instead of `key: value` lines.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: &WeightsCommand, _global: &GlobalArgs) -> CliResult {
    match cmd {
        WeightsCommand::Info(args) => info(args),
    }
}

fn info(args: &InfoArgs) -> CliResult {
    let role = if args.teacher {
        Role::Teacher
    } else {
        Role::Student
    };
    let ckpt = open_checkpoint(&args.weights, role).map_err(Failure::input)?;
    let arch = ckpt.arch;
    let report = json!({
        "path": ckpt.path.display().to_string(),
        "format": ckpt.format.as_str(),
        "layout": ckpt.layout.as_str(),
        "model": arch.model.as_str(),
        "depth": arch.depth,
        "num_seg": arch.num_seg,
        "classes": arch.num_classes,
        "attention": arch.attention,
        "form": arch.form.as_str(),
        "parameters": ckpt.store.num_values(),
        "class_names": serde_json::Value::Null,
    });
    if args.json {
        println!("{report:#}");
    } else if let Some(fields) = report.as_object() {
        for (key, value) in fields {
            let shown = match value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => "-".to_string(),
                other => other.to_string(),
            };
            println!("{key}: {shown}");
        }
    }
    Ok(())
}
