//! `kineto eval DATA --weights W [--dense] [--frames N] [--format table|json] [--output
//! per_clip.csv] [--class-index classInd.txt] [--root DIR]`

use std::path::PathBuf;

use anyhow::anyhow;
use kineto::checkpoint::write_file_atomic;
use kineto::infer::batch::{ClassifyOptions, Feed, classify_files};
use kineto::infer::classify::Sampling;
use kineto::train::TrainError;
use kineto::train::dataset::read_ucf_class_index;
use kineto::train::eval::{EvalReport, TOP_K, TestSet, TestSetSource};

use super::model::{ModelArgs, load_engine_with};
use super::progress::Progress;
use super::{CliResult, Failure, GlobalArgs, check_output_writable, interrupt_token};

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// The test set: a folder of class folders (names matched to the model's classes), a
    /// PaddleVideo list file (`path label_id`, 0-based ids in the model's order), or with
    /// --class-index a UCF-101 split file (trainlist01.txt, testlist01.txt).
    pub data: PathBuf,
    /// UCF-101's classInd.txt (`1 ApplyEyeMakeup`, 1-based): DATA is then an official split
    /// file, its classes matched to the model's by name.
    #[arg(long, value_name = "FILE")]
    pub class_index: Option<PathBuf>,
    /// The folder a list file's paths are relative to (UCF-101: the UCF-101 folder); default:
    /// the list file's folder.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// PaddleVideo's dense test mode: 10 clips x 3 crops, logits averaged.
    #[arg(long)]
    pub dense: bool,
    /// table or json (top1, top5, top5_k, mean_class_top1, per_class, confusion, the broken
    /// clips).
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
    /// Also write one CSV line per clip here: path,true,predicted,score,correct,error.
    #[arg(long, short, value_name = "CSV")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// A test set that cannot be read is the input's fault (exit 1); one that does not exist, or
/// names classes the model lacks, a usage error (exit 2).
fn data_failure(error: TrainError) -> Failure {
    match error {
        TrainError::NotFound { .. } | TrainError::Classes { .. } => Failure::fatal(error),
        _ => Failure::input(error),
    }
}

pub fn run(args: &EvalArgs, global: &GlobalArgs) -> CliResult {
    if let Some(path) = &args.output {
        check_output_writable(path)?;
    }
    if args.class_index.is_some() && args.data.is_dir() {
        return Err(Failure::fatal(anyhow!(
            "--class-index reads UCF-101's split files; {} is a folder (class folders need no \
             index)",
            args.data.display()
        )));
    }
    let index_names = match &args.class_index {
        Some(path) => Some(read_ucf_class_index(path).map_err(data_failure)?),
        None => None,
    };
    let (engine, labels, num_seg) = load_engine_with(&args.model, global, index_names)?;
    let source = TestSetSource {
        data: &args.data,
        class_index: args.class_index.as_deref(),
        root: args.root.as_deref(),
    };
    let test = TestSet::open(source, &labels).map_err(data_failure)?;
    if !global.quiet {
        for note in &test.notes {
            eprintln!("kineto: note: {note}");
        }
    }
    let files = test.paths();
    let progress = Progress::new(files.len() as u64, "clips", global.quiet);
    let cancel = interrupt_token();
    let how = ClassifyOptions {
        sampling: Sampling {
            num_seg,
            dense: args.dense,
        },
        top_k: TOP_K.min(labels.len()).max(1),
        labels: &labels,
        feed: Feed::for_engine(&engine),
    };
    let classified = classify_files(&engine, &files, &how, &cancel, |i, r| {
        progress.update(i as u64 + 1, &r.path)
    });
    progress.finish();
    let report = EvalReport::new(&test, &classified.records, &labels);
    let text = match args.format.as_str() {
        "json" => report.to_json(),
        _ => report.to_text(),
    };
    print!("{text}");
    if !text.ends_with('\n') {
        println!();
    }
    if let Some(path) = &args.output {
        write_file_atomic(path, report.per_clip_csv(&labels).as_bytes())
            .map_err(|e| Failure::fatal(anyhow!("{}: cannot write: {e}", path.display())))?;
    }
    if cancel.is_cancelled() {
        eprintln!(
            "kineto: interrupted after {} of {} clips (the report covers those)",
            classified.records.len(),
            files.len()
        );
        return Err(Failure::interrupted());
    }
    if report.errors > 0 {
        return Err(Failure::partial(anyhow!(
            "{} of {} clips could not be classified (listed in the report; not scored)",
            report.errors,
            files.len()
        )));
    }
    Ok(())
}
