//! `kineto classify PATHS... [--top-k K] [--format table|json|csv|jsonl] [--frames N]
//! [--dense] [--shard I/N] [--resume]`
//!
//! `--format jsonl` writes each record as its clip finishes (one line, flushed), so that a run
//! killed midway keeps what it did; `--resume` reads that file back and classifies only the
//! files it lacks.

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use kineto::infer::batch::{
    ClassifyOptions, Feed, FeedStats, Shard, classify_files, expand_inputs,
};
use kineto::infer::classify::Sampling;
use kineto::progress::CancelToken;
use kineto::report::{
    ClassifyRecord, classify_csv, classify_json, classify_jsonl_line, classify_table, read_jsonl,
};

use super::model::{ModelArgs, load_engine};
use super::progress::Progress;
use super::{CliResult, Failure, GlobalArgs, OutputArgs, interrupt_token, write_output};

#[derive(clap::Args, Debug)]
pub struct ClassifyArgs {
    /// Video files and folders (searched recursively for video files).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Labels per clip.
    #[arg(long, default_value_t = 5, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub top_k: usize,
    /// PaddleVideo's dense test mode: 10 clips x 3 crops, logits averaged.
    #[arg(long)]
    pub dense: bool,
    /// Views per forward at most (a clip is one view, a dense clip 30); default 1 on the CPU,
    /// 16 on a GPU. Results do not depend on it.
    #[arg(long, value_name = "N", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    pub batch: Option<usize>,
    /// Files decoded at once; default 1 on the CPU (the model uses every core), all cores on
    /// a GPU.
    #[arg(long, value_name = "N", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=256))]
    pub decoders: Option<usize>,
    /// Classify only shard I of N (I from 0 to N-1): the files at positions I, I+N, I+2N, ...
    /// of the sorted list, so that N processes (a Slurm array's SLURM_ARRAY_TASK_ID, a
    /// Kubernetes Indexed Job's JOB_COMPLETION_INDEX) share the work; `kineto merge` joins
    /// their outputs.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Shard>,
    /// Go on with an interrupted --format jsonl run: files already in --output are skipped (a
    /// line cut short by a kill is dropped and its file classified again). A missing --output
    /// starts afresh.
    #[arg(long)]
    pub resume: bool,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub fn run(args: &ClassifyArgs, global: &GlobalArgs) -> CliResult {
    let files = expand_inputs(&args.paths, None);
    if files.is_empty() {
        return Err(Failure::fatal(anyhow!(
            "no video files found in {}",
            args.paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let format = args
        .output
        .format_among("table", &["table", "json", "csv", "jsonl"])?;
    args.output.check_writable()?;
    let jsonl_file = match (format.as_str(), &args.output.output) {
        ("jsonl", Some(path)) => Some(path.as_path()),
        _ => None,
    };
    if args.resume && jsonl_file.is_none() {
        return Err(Failure::fatal(anyhow!(
            "--resume goes on with a --format jsonl file: give --format jsonl --output FILE"
        )));
    }
    let files = match args.shard {
        Some(shard) => shard.take(&files),
        None => files,
    };
    // What an earlier run of a resumed one finished (its records stay in the file).
    let done = match jsonl_file {
        Some(path) if args.resume => finished_records(path, global.quiet)?,
        _ => Vec::new(),
    };
    let done_paths: HashSet<&str> = done.iter().map(|r| r.path.as_str()).collect();
    let todo: Vec<PathBuf> = files
        .iter()
        .filter(|f| !done_paths.contains(f.display().to_string().as_str()))
        .cloned()
        .collect();
    if !global.quiet && (args.shard.is_some() || args.resume) {
        let shard = args
            .shard
            .map(|s| format!("shard {}/{}: ", s.index, s.count))
            .unwrap_or_default();
        eprintln!(
            "kineto: {shard}{} files, {} already done, {} to classify",
            files.len(),
            files.len() - todo.len(),
            todo.len()
        );
    }
    let mut sink = match jsonl_file {
        Some(path) => JsonLines::file(path, args.resume)?,
        None if format == "jsonl" => JsonLines::stdout(),
        None => JsonLines::none(),
    };
    if todo.is_empty() {
        return finish(args, &format, &done, &[], files.len(), false);
    }
    let (engine, labels, num_seg) = load_engine(&args.model, global)?;
    let sampling = Sampling {
        num_seg,
        dense: args.dense,
    };
    let defaults = Feed::for_engine(&engine);
    let feed = Feed {
        batch: args.batch.unwrap_or(defaults.batch),
        decoders: args.decoders.unwrap_or(defaults.decoders),
    };
    let progress = Progress::new(todo.len() as u64, "clips", global.quiet);
    let cancel = interrupt_token();
    let how = ClassifyOptions {
        sampling,
        top_k: args.top_k,
        labels: &labels,
        feed,
    };
    let classified = classify_files(&engine, &todo, &how, &cancel, |i, r| {
        sink.write(r, &cancel);
        progress.update(i as u64 + 1, &r.path)
    });
    progress.finish();
    if let Some(e) = sink.error.take() {
        return Err(Failure::fatal(e));
    }
    if !global.quiet && classified.stats.clips > 1 {
        eprintln!("kineto: {}", throughput_line(&classified.stats, feed));
    }
    finish(
        args,
        &format,
        &done,
        &classified.records,
        files.len(),
        cancel.is_cancelled(),
    )
}

/// Writes what the format writes at the end (jsonl is already written) and turns the outcome
/// into the exit status: 130 interrupted, 1 when a file failed.
fn finish(
    args: &ClassifyArgs,
    format: &str,
    done: &[ClassifyRecord],
    new: &[ClassifyRecord],
    total: usize,
    interrupted: bool,
) -> CliResult {
    let records: Vec<ClassifyRecord> = done.iter().chain(new).cloned().collect();
    let text = match format {
        "jsonl" => None,
        "json" => Some(classify_json(&records)),
        "csv" => Some(classify_csv(&records)),
        _ => Some(classify_table(&records)),
    };
    if let Some(text) = text {
        write_output(&args.output, &text)?;
    }
    if interrupted {
        let again = if args.output.output.is_some() && format == "jsonl" {
            " (rerun with --resume to go on)"
        } else {
            " (their results were written)"
        };
        eprintln!(
            "kineto: interrupted after {} of {total} files{again}",
            records.len(),
        );
        return Err(Failure::interrupted());
    }
    let failed = records.iter().filter(|r| !r.is_ok()).count();
    if failed > 0 {
        return Err(Failure::partial(anyhow!(
            "{failed} of {} files could not be classified",
            records.len()
        )));
    }
    Ok(())
}

/// The records a resumed run keeps from `path` (none when it does not exist yet). A torn last
/// line is cut off the file here, so that the next record starts on a line of its own.
fn finished_records(path: &Path, quiet: bool) -> Result<Vec<ClassifyRecord>, Failure> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = kineto::files::read_to_string(path)
        .map_err(|e| Failure::input(anyhow!("{}: cannot read: {e}", path.display())))?;
    let read = read_jsonl(&text, path).map_err(Failure::input)?;
    if let Some(line) = read.torn {
        let cut = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|f| f.set_len(read.complete_len as u64));
        cut.map_err(|e| Failure::fatal(anyhow!("{}: cannot write: {e}", path.display())))?;
        if !quiet {
            eprintln!(
                "kineto: {}: line {line} was cut short (the run was killed while writing it); \
                 dropped, its file is classified again",
                path.display()
            );
        }
    }
    Ok(read.records)
}

/// Where `--format jsonl` writes each record as it finishes: a file (appended to when
/// resuming), stdout, or nowhere (other formats). The first write error stops the run.
struct JsonLines {
    out: Option<Box<dyn Write>>,
    path: Option<PathBuf>,
    error: Option<anyhow::Error>,
}

impl JsonLines {
    fn file(path: &Path, append: bool) -> Result<Self, Failure> {
        let mut open = std::fs::OpenOptions::new();
        if append {
            open.append(true).create(true);
        } else {
            open.write(true).create(true).truncate(true);
        }
        let file: File = open
            .open(path)
            .map_err(|e| Failure::fatal(anyhow!("{}: cannot write: {e}", path.display())))?;
        Ok(Self {
            out: Some(Box::new(file)),
            path: Some(path.to_path_buf()),
            error: None,
        })
    }

    fn stdout() -> Self {
        Self {
            out: Some(Box::new(std::io::stdout())),
            path: None,
            error: None,
        }
    }

    fn none() -> Self {
        Self {
            out: None,
            path: None,
            error: None,
        }
    }

    /// One line, written whole and flushed; on failure the run is cancelled.
    fn write(&mut self, record: &ClassifyRecord, cancel: &CancelToken) {
        let Some(out) = self.out.as_mut() else {
            return;
        };
        let line = classify_jsonl_line(record);
        if let Err(e) = out.write_all(line.as_bytes()).and_then(|()| out.flush()) {
            let name = self
                .path
                .as_ref()
                .map_or("stdout".to_string(), |p| p.display().to_string());
            self.error = Some(anyhow!("{name}: cannot write: {e}"));
            self.out = None;
            cancel.cancel();
        }
    }
}

/// One line on where the time went: end to end beside what each stage alone would do.
fn throughput_line(stats: &FeedStats, feed: Feed) -> String {
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    format!(
        "{} clips in {:.1} s, {:.1} clips/s; the model alone {:.1} clips/s ({} of up to {}), \
         decoding alone {:.1} clips/s ({}): {} is the bottleneck",
        stats.clips,
        stats.wall_s,
        stats.clips_per_s(),
        stats.model_clips_per_s(),
        plural(stats.forwards, "forward"),
        plural(feed.batch, "view"),
        stats.decode_clips_per_s(),
        plural(stats.decoders, "decoder"),
        stats.bottleneck()
    )
}
