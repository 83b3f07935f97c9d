//! `kineto weights list|info|fetch|import`

use std::path::PathBuf;

use kineto::checkpoint::file::open_checkpoint;
use kineto::checkpoint::keys::Role;
use kineto::weights::cache::{Cache, import};
use kineto::weights::download::{FetchOptions, fetch};
use kineto::weights::{Catalog, WeightsError};
use serde_json::json;

use super::{
    CliResult, Failure, GlobalArgs, fetch_options, progress_printer, resolve_weights,
    weights_failure,
};

#[derive(clap::Subcommand, Debug)]
pub enum WeightsCommand {
    /// The catalog of PaddleVideo's checkpoints and what is cached.
    List(ListArgs),
    /// What a weights file holds: model, depth, num_seg, classes, attention, form, parameters.
    Info(InfoArgs),
    /// Download a catalog entry into the cache, verify it, print its path.
    Fetch(FetchArgs),
    /// Verify a checkpoint you already have and copy it into the cache.
    Import(ImportArgs),
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// A JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    /// A catalog name, a .pdparams / .safetensors file or a PaddleVideo inference model
    /// (.pdiparams beside its .pdmodel or .json).
    #[arg(value_name = "NAME|FILE")]
    pub weights: String,
    /// Describe the teacher of a DML checkpoint.
    #[arg(long)]
    pub teacher: bool,
    /// One JSON object instead of `key: value` lines.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct FetchArgs {
    /// A catalog name (`kineto weights list`).
    pub name: String,
    /// Download again even when a verified copy is cached.
    #[arg(long)]
    pub force: bool,
}

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// A .pdparams (plain, DML or student) or .safetensors checkpoint, or a PaddleVideo
    /// inference model (.pdiparams beside its .pdmodel or .json; stored converted to
    /// .safetensors).
    pub file: PathBuf,
    /// The name to file it under (default: the file's stem); a catalog name is verified
    /// against the catalog entry.
    #[arg(long)]
    pub name: Option<String>,
}

pub fn run(cmd: &WeightsCommand, global: &GlobalArgs) -> CliResult {
    match cmd {
        WeightsCommand::List(args) => list(args, global),
        WeightsCommand::Info(args) => info(args, global),
        WeightsCommand::Fetch(args) => fetch_cmd(args, global),
        WeightsCommand::Import(args) => import_cmd(args, global),
    }
}

fn list(args: &ListArgs, global: &GlobalArgs) -> CliResult {
    let catalog = Catalog::load().map_err(weights_failure)?;
    let cache = Cache::locate(global.cache_dir.as_deref()).map_err(weights_failure)?;
    let index = cache.read_index().map_err(weights_failure)?;
    let mut rows = Vec::new();
    for entry in &catalog.entries {
        let cached = index
            .iter()
            .find(|e| e.name == entry.name && e.file_name == entry.file_name);
        let path = cache.file_path(&entry.file_name);
        let present = cached.is_some() && path.is_file();
        rows.push(json!({
            "name": entry.name,
            "kind": entry.kind,
            "arch": entry.arch,
            "layout": entry.layout,
            "num_seg": entry.num_seg,
            "top1": entry.top1,
            "url": entry.url,
            "file_name": entry.file_name,
            "cached": present,
            "path": present.then(|| path.display().to_string()),
            "sha256": cached.filter(|_| present).map(|e| e.sha256.clone()),
        }));
    }
    // Names imported under a name the catalog does not know.
    for e in index.iter().filter(|e| catalog.get(&e.name).is_none()) {
        let path = cache.file_path(&e.file_name);
        rows.push(json!({
            "name": e.name,
            "kind": "imported",
            "arch": null,
            "layout": null,
            "num_seg": null,
            "top1": null,
            "url": e.url,
            "file_name": e.file_name,
            "cached": path.is_file(),
            "path": path.display().to_string(),
            "sha256": e.sha256,
        }));
    }
    if args.json {
        println!("{:#}", serde_json::Value::Array(rows));
        return Ok(());
    }
    println!(
        "{:<32} {:<13} {:>4} {:>6}  {:<7} file",
        "name", "arch", "f", "top1", "cached"
    );
    for row in &rows {
        let s = |k: &str| row[k].as_str().unwrap_or("-").to_string();
        let num_seg = row["num_seg"]
            .as_u64()
            .map(|n| n.to_string())
            .unwrap_or("-".into());
        let top1 = row["top1"]
            .as_f64()
            .map(|t| format!("{t:.2}"))
            .unwrap_or("-".into());
        let cached = if row["cached"].as_bool() == Some(true) {
            "yes"
        } else {
            "no"
        };
        println!(
            "{:<32} {:<13} {:>4} {:>6}  {:<7} {}",
            s("name"),
            s("arch"),
            num_seg,
            top1,
            cached,
            s("file_name")
        );
    }
    if !global.quiet {
        eprintln!("cache: {}", cache.weights_dir().display());
    }
    Ok(())
}

fn info(args: &InfoArgs, global: &GlobalArgs) -> CliResult {
    let role = if args.teacher {
        Role::Teacher
    } else {
        Role::Student
    };
    let resolved = resolve_weights(&args.weights, global)?;
    let ckpt = open_checkpoint(&resolved.path, role).map_err(Failure::input)?;
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
        "class_names": ckpt.class_names,
    });
    if args.json {
        println!("{report:#}");
    } else if let Some(fields) = report.as_object() {
        for (key, value) in fields {
            let shown = match value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => "-".to_string(),
                serde_json::Value::Array(names) if names.len() > 5 => {
                    let first: Vec<String> = names.iter().take(5).map(|n| n.to_string()).collect();
                    format!("[{}, ... ({} names)]", first.join(", "), names.len())
                }
                other => other.to_string(),
            };
            println!("{key}: {shown}");
        }
    }
    Ok(())
}

fn fetch_cmd(args: &FetchArgs, global: &GlobalArgs) -> CliResult {
    let catalog = Catalog::load().map_err(weights_failure)?;
    let Some(entry) = catalog.get(&args.name) else {
        return Err(weights_failure(WeightsError::Usage(format!(
            "{}: not a catalog name (known: {})",
            args.name,
            catalog.names().join(", ")
        ))));
    };
    let cache = Cache::locate(global.cache_dir.as_deref()).map_err(weights_failure)?;
    let options = FetchOptions {
        force: args.force,
        ..fetch_options(global)?
    };
    let mut progress = progress_printer(global, entry.file_name.clone());
    let path = fetch(entry, &cache, &options, &mut progress).map_err(weights_failure)?;
    println!("{}", path.display());
    Ok(())
}

fn import_cmd(args: &ImportArgs, global: &GlobalArgs) -> CliResult {
    let cache = Cache::locate(global.cache_dir.as_deref()).map_err(weights_failure)?;
    let entry = import(&cache, &args.file, args.name.as_deref()).map_err(weights_failure)?;
    if !global.quiet {
        eprintln!(
            "kineto: imported {} as {} (sha256 {})",
            args.file.display(),
            entry.name,
            entry.sha256
        );
    }
    println!("{}", cache.file_path(&entry.file_name).display());
    Ok(())
}
