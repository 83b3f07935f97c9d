//! `kineto classify PATHS... [--top-k K] [--format table|json|csv] [--frames N] [--dense]`

use std::path::PathBuf;

use anyhow::anyhow;
use kineto::infer::batch::{ClassifyOptions, Feed, FeedStats, classify_files, expand_inputs};
use kineto::infer::classify::Sampling;
use kineto::report::{classify_csv, classify_json, classify_table};

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
    let format = args.output.format("table")?;
    args.output.check_writable()?;
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
    let progress = Progress::new(files.len() as u64, "clips", global.quiet);
    let cancel = interrupt_token();
    let how = ClassifyOptions {
        sampling,
        top_k: args.top_k,
        labels: &labels,
        feed,
    };
    let classified = classify_files(&engine, &files, &how, &cancel, |i, r| {
        progress.update(i as u64 + 1, &r.path)
    });
    progress.finish();
    let records = classified.records;
    if !global.quiet && classified.stats.clips > 1 {
        eprintln!("kineto: {}", throughput_line(&classified.stats, feed));
    }
    let text = match format.as_str() {
        "json" => classify_json(&records),
        "csv" => classify_csv(&records),
        _ => classify_table(&records),
    };
    write_output(&args.output, &text)?;
    if cancel.is_cancelled() {
        eprintln!(
            "kineto: interrupted after {} of {} files (their results were written)",
            records.len(),
            files.len()
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
