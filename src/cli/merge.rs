//! `kineto merge OUT... [--format json|csv|jsonl|table] [--output FILE]`: the outputs of
//! sharded `classify` runs (jsonl or json) as one list, in the order one run prints.

use std::path::PathBuf;

use anyhow::anyhow;
use kineto::report::{
    classify_csv, classify_json, classify_jsonl, classify_table, merge_records, read_records,
};

use super::{CliResult, Failure, GlobalArgs, OutputArgs, write_output};

#[derive(clap::Args, Debug)]
pub struct MergeArgs {
    /// Outputs of `kineto classify --format jsonl` or `--format json` (one per shard).
    #[arg(required = true, value_name = "OUT")]
    pub inputs: Vec<PathBuf>,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub fn run(args: &MergeArgs, global: &GlobalArgs) -> CliResult {
    let format = args
        .output
        .format_among("json", &["json", "csv", "jsonl", "table"])?;
    args.output.check_writable()?;
    let mut runs = Vec::with_capacity(args.inputs.len());
    for path in &args.inputs {
        let text = kineto::files::read_to_string(path)
            .map_err(|e| Failure::input(anyhow!("{}: cannot read: {e}", path.display())))?;
        let read = read_records(&text, path).map_err(Failure::input)?;
        if let Some(line) = read.torn {
            eprintln!(
                "kineto: warning: {}: line {line} was cut short (its run was killed while \
                 writing it) and is left out; rerun that shard with --resume to complete it",
                path.display()
            );
        }
        runs.push(read.records);
    }
    let (records, duplicates) = merge_records(runs);
    if duplicates > 0 && !global.quiet {
        eprintln!(
            "kineto: note: {duplicates} record{} of a path met before left out (a path's \
             successful record is kept)",
            if duplicates == 1 { "" } else { "s" }
        );
    }
    let text = match format.as_str() {
        "csv" => classify_csv(&records),
        "jsonl" => classify_jsonl(&records),
        "table" => classify_table(&records),
        _ => classify_json(&records),
    };
    write_output(&args.output, &text)?;
    if !global.quiet {
        let failed = records.iter().filter(|r| !r.is_ok()).count();
        eprintln!(
            "kineto: {} records from {} files{}",
            records.len(),
            args.inputs.len(),
            if failed > 0 {
                format!(" ({failed} are errors)")
            } else {
                String::new()
            }
        );
    }
    Ok(())
}
