//! clap definitions, global flags, dispatch and exit codes.
//!
//! Exit codes: 0 success; 1 the input could not be processed (a malformed checkpoint, a bad
//! .npy); 2 usage or environment errors (bad arguments, unavailable device, unwritable output).
//! Errors print one line: `kineto: error: <file>: <problem>`.

mod bench;
mod classify;
mod demo_data;
mod eval;
mod export;
mod export_segments;
mod extract_frames;
mod generate;
mod logits;
mod merge;
mod model;
mod open;
mod preprocess;
mod progress;
mod quantize;
mod segments;
mod timeline;
mod train;
mod watch;
mod weights;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::anyhow;

use clap::{Parser, Subcommand};
use kineto::checkpoint::{check_dir_writable, write_file_atomic};
use kineto::infer::device::{ComputeDevice, DeviceChoice};
use kineto::weights::WeightsError;
use kineto::weights::download::{FetchOptions, Progress};
use kineto::weights::resolve::{ResolvedWeights, resolve};

#[derive(Parser, Debug)]
#[command(
    name = "kineto",
    version,
    about = "Classify and label video with PaddleVideo's PP-TSMv2 and PP-TSM models",
    after_help = "Run `kineto` with no arguments to open the window, or `kineto VIDEO` to open \
                  it with that clip."
)]
#[command(arg_required_else_help = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Args, Debug, Clone)]
pub struct GlobalArgs {
    /// Where inference runs: cpu, gpu (any wgpu adapter, software ones included) or auto (a
    /// hardware GPU if present, else the CPU).
    #[arg(long, global = true, default_value = "auto", value_parser = parse_device)]
    pub device: DeviceChoice,
    /// CPU threads for inference (0 = all cores).
    #[arg(long, global = true, default_value_t = 0)]
    pub threads: usize,
    /// Print nothing but results and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// The weights cache folder (default: KINETO_CACHE_DIR, else the user's data directory).
    #[arg(long, global = true, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Never download: weights missing from the cache are an error that says what to fetch.
    #[arg(long, global = true)]
    pub offline: bool,
}

fn parse_device(s: &str) -> Result<DeviceChoice, String> {
    s.parse()
}

/// A span of video in seconds: a number from 0.01 (shorter than any frame) to a day.
pub fn parse_seconds(s: &str) -> Result<f64, String> {
    const RANGE: std::ops::RangeInclusive<f64> = 0.01..=86_400.0;
    match s.trim().parse::<f64>() {
        Ok(v) if RANGE.contains(&v) => Ok(v),
        _ => Err(format!(
            "expected seconds from {} to {}",
            RANGE.start(),
            RANGE.end()
        )),
    }
}

#[derive(Subcommand, Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "one value per process, parsed once: boxing the arguments would only add a step"
)]
pub enum Command {
    /// Top-k labels for video files and folders (PaddleVideo's test pipeline).
    #[command(mut_arg("format", |a| a
        .help("table, json, csv or jsonl (a line per clip, written as it finishes); default: \
               from --output's extension, else table")))]
    Classify(classify::ClassifyArgs),
    /// Measure a model on a labelled test set: top-1, top-5, mean class accuracy, per-class
    /// accuracy, the confusion matrix (PaddleVideo's `main.py --test`).
    Eval(eval::EvalArgs),
    /// Join the outputs of sharded classify runs (jsonl or json) into one list, in the order
    /// one run prints.
    #[command(mut_arg("format", |a| a
        .help("json, csv, jsonl or table; default: from --output's extension, else json")))]
    Merge(merge::MergeArgs),
    /// Predictions over sliding windows of one video.
    #[command(mut_arg("format", |a| a
        .help("json or csv; default: from --output's extension, else json")
        .value_parser(["json", "csv"])))]
    Timeline(timeline::TimelineArgs),
    /// Labels on a camera, a network stream (RTSP, HTTP(S), HLS, SRT, UDP) or a file as it
    /// plays: one line per prediction, flushed.
    Watch(watch::WatchArgs),
    /// Labelled segments of a long video from the sliding-window timeline (and, with --cut,
    /// each segment as a clip in class folders).
    #[command(mut_arg("format", |a| a
        .help("json or csv; default: from --output's extension, else json")
        .value_parser(["json", "csv"])))]
    Segments(segments::SegmentsArgs),
    /// Write the exact tensor classify feeds the model (.npy), and report the sampled frames.
    Preprocess(preprocess::PreprocessArgs),
    /// Raw logits of a model on a preprocessed clip tensor (.npy in, .npy out).
    Logits(logits::LogitsArgs),
    /// The weights catalog and cache: list, info, fetch, import.
    #[command(subcommand)]
    Weights(weights::WeightsCommand),
    /// Write a checkpoint as safetensors (Kineto's format), .pdparams (PaddleVideo's layout) or
    /// ONNX (the fused inference graph).
    Export(export::ExportArgs),
    /// Export the segments labelled in a folder's project: CSV, ActivityNet JSON, Kinetics CSV
    /// or trimmed clips in class folders (what `kineto train` reads).
    ExportSegments(export_segments::ExportSegmentsArgs),
    /// Time the model's forward pass (median of N runs after warm-up).
    Bench(bench::BenchArgs),
    /// Quantize a PP-TSMv2 to int8 on your own clips (post-training quantization): a
    /// .safetensors that `--precision int8` runs on the CPU.
    Quantize(quantize::QuantizeArgs),
    /// Open the window, optionally with a clip and model settings (`kineto` and `kineto VIDEO`
    /// open it with the stored settings).
    Open(open::OpenArgs),
    /// Write a labelled set of synthetic clips (one folder per class) for `kineto train`.
    DemoData(demo_data::DemoDataArgs),
    /// Turn a video dataset into PaddleVideo's frame format (a folder of JPEGs per clip and a
    /// `frame_dir num_frames label` list file), resumable.
    ExtractFrames(extract_frames::ExtractFramesArgs),
    /// Fine-tune a model for your own classes on a folder of class folders (full
    /// fine-tuning, or --head-only: frozen backbone, cached features).
    Train(train::TrainArgs),
    /// Generate man pages, shell completions and the Markdown CLI reference (packaging).
    #[command(hide = true, subcommand)]
    Generate(generate::GenerateCommand),
}

/// An error with the exit code it maps to.
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl Failure {
    /// The input could not be processed.
    pub fn input(error: impl Into<anyhow::Error>) -> Self {
        Self {
            code: 1,
            error: error.into(),
        }
    }

    /// Some inputs of a batch failed (the rest were processed).
    pub fn partial(error: impl Into<anyhow::Error>) -> Self {
        Self::input(error)
    }

    /// Usage or environment.
    pub fn fatal(error: impl Into<anyhow::Error>) -> Self {
        Self {
            code: 2,
            error: error.into(),
        }
    }

    /// Stopped by Ctrl-C (after writing what was finished).
    pub fn interrupted() -> Self {
        Self {
            code: 130,
            error: anyhow::anyhow!("interrupted"),
        }
    }
}

/// A token that Ctrl-C sets (the first press; a second press kills as usual). Long commands
/// check it between files or windows, write what they finished, and exit 130.
pub fn interrupt_token() -> kineto::progress::CancelToken {
    static TOKEN: std::sync::OnceLock<kineto::progress::CancelToken> = std::sync::OnceLock::new();
    TOKEN
        .get_or_init(|| {
            let token = kineto::progress::CancelToken::new();
            let setter = token.clone();
            let pressed = std::sync::atomic::AtomicBool::new(false);
            // If a handler cannot be installed, Ctrl-C keeps its default behaviour.
            let _ = ctrlc::set_handler(move || {
                if pressed.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    std::process::exit(130);
                }
                setter.cancel();
            });
            token
        })
        .clone()
}

pub type CliResult = Result<(), Failure>;

pub fn resolve_device(global: &GlobalArgs) -> Result<ComputeDevice, Failure> {
    let device = ComputeDevice::resolve(global.device, global.threads).map_err(Failure::fatal)?;
    if device.software_adapter && !global.quiet {
        eprintln!(
            "kineto: note: --device gpu runs on a software adapter ({}); expect it to be slow",
            device.adapter
        );
    }
    Ok(device)
}

/// `--format` and `--output`, shared by the commands that print results.
#[derive(clap::Args, Debug)]
pub struct OutputArgs {
    /// table, json or csv; default: from --output's extension, else the command's default.
    #[arg(long)]
    pub format: Option<String>,
    /// Write results to this file (written to a temporary name, then renamed).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

impl OutputArgs {
    /// `--format` wins, then the extension of `--output`, then `default`.
    pub fn format(&self, default: &str) -> Result<String, Failure> {
        self.format_among(default, &["table", "json", "csv"])
    }

    /// [`OutputArgs::format`] for a command that writes the formats `allowed` (an extension of
    /// `--output` names a format only if it is allowed).
    pub fn format_among(&self, default: &str, allowed: &[&str]) -> Result<String, Failure> {
        let chosen = match (&self.format, &self.output) {
            (Some(f), _) => f.to_ascii_lowercase(),
            (None, Some(path)) => match path.extension().and_then(|e| e.to_str()) {
                Some(e) if allowed.iter().any(|a| a.eq_ignore_ascii_case(e)) => {
                    e.to_ascii_lowercase()
                }
                _ => default.into(),
            },
            (None, None) => default.into(),
        };
        if allowed.contains(&chosen.as_str()) {
            return Ok(chosen);
        }
        let (last, rest) = allowed.split_last().unwrap_or((&"table", &[]));
        Err(Failure::fatal(anyhow!(
            "unknown --format {chosen}; use {} or {last}",
            rest.join(", ")
        )))
    }

    /// Checks before any work that `--output` can be written: its folder exists and takes a
    /// file (so that a long run never ends in a result that cannot be saved).
    pub fn check_writable(&self) -> CliResult {
        match &self.output {
            Some(path) => check_output_writable(path),
            None => Ok(()),
        }
    }
}

/// Checks before any work that a file can be written at `path`: its folder exists and takes a
/// file (so that a long run never ends in a result that cannot be saved).
pub fn check_output_writable(path: &Path) -> CliResult {
    let cannot = |problem: String| Failure::fatal(anyhow!("{}: {problem}", path.display()));
    if path.is_dir() {
        return Err(cannot("is a folder; name a file".into()));
    }
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !folder.is_dir() {
        return Err(cannot(format!(
            "cannot write: the folder {} does not exist",
            folder.display()
        )));
    }
    check_dir_writable(folder)
        .map_err(|e| cannot(format!("cannot write into {}: {e}", folder.display())))
}

/// Results to `--output` (atomically) or stdout.
pub fn write_output(args: &OutputArgs, text: &str) -> CliResult {
    match &args.output {
        Some(path) => write_file_atomic(path, text.as_bytes())
            .map_err(|e| Failure::fatal(anyhow!("{}: cannot write: {e}", path.display()))),
        None => {
            print!("{text}");
            if !text.ends_with('\n') {
                println!();
            }
            Ok(())
        }
    }
}

/// Exit code 1 when the weights themselves cannot be used, 2 for usage and environment errors.
pub fn weights_failure(error: WeightsError) -> Failure {
    if error.is_input_error() {
        Failure::input(error)
    } else {
        Failure::fatal(error)
    }
}

/// Download progress on stderr: a line updated in place on a terminal, a line per 10% otherwise.
pub fn progress_printer(global: &GlobalArgs, what: String) -> impl FnMut(Progress) {
    let quiet = global.quiet;
    let terminal = std::io::stderr().is_terminal();
    let mut last_decile = None;
    move |p| {
        if quiet {
            return;
        }
        let mb = |b: u64| b as f64 / 1_048_576.0;
        match p {
            Progress::Start {
                resumed_from,
                total,
            } => {
                let size = total
                    .map(|t| format!(" ({:.1} MiB)", mb(t)))
                    .unwrap_or_default();
                if resumed_from > 0 {
                    eprintln!(
                        "kineto: resuming {what}{size} from {:.1} MiB",
                        mb(resumed_from)
                    );
                } else {
                    eprintln!("kineto: downloading {what}{size}");
                }
            }
            Progress::Bytes { done, total } => {
                let Some(total) = total.filter(|t| *t > 0) else {
                    return;
                };
                let percent = done.saturating_mul(100) / total;
                if terminal {
                    eprint!("\r  {percent:3}%  {:.1} / {:.1} MiB", mb(done), mb(total));
                } else if last_decile != Some(percent / 10) {
                    last_decile = Some(percent / 10);
                    eprintln!("  {percent}% ({:.1} / {:.1} MiB)", mb(done), mb(total));
                }
            }
            Progress::Verifying => {
                if terminal {
                    eprintln!();
                }
                eprintln!("kineto: checking {what}");
            }
        }
    }
}

/// Download options from the global flags and `KINETO_HTTP_TIMEOUT`.
pub fn fetch_options(global: &GlobalArgs) -> Result<FetchOptions, Failure> {
    Ok(FetchOptions {
        offline: global.offline,
        ..FetchOptions::from_env().map_err(weights_failure)?
    })
}

/// `--weights NAME|FILE` -> a local file (fetching a catalog name on demand).
pub fn resolve_weights(spec: &str, global: &GlobalArgs) -> Result<ResolvedWeights, Failure> {
    let mut progress = progress_printer(global, spec.to_string());
    resolve(
        spec,
        global.cache_dir.as_deref(),
        &fetch_options(global)?,
        &mut progress,
    )
    .map_err(weights_failure)
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Classify(args) => classify::run(args, &cli.global),
        Command::Eval(args) => eval::run(args, &cli.global),
        Command::Merge(args) => merge::run(args, &cli.global),
        Command::Timeline(args) => timeline::run(args, &cli.global),
        Command::Watch(args) => watch::run(args, &cli.global),
        Command::Segments(args) => segments::run(args, &cli.global),
        Command::Preprocess(args) => preprocess::run(args, &cli.global),
        Command::Logits(args) => logits::run(args, &cli.global),
        Command::Weights(cmd) => weights::run(cmd, &cli.global),
        Command::Export(args) => export::run(args, &cli.global),
        Command::ExportSegments(args) => export_segments::run(args, &cli.global),
        Command::Bench(args) => bench::run(args, &cli.global),
        Command::Quantize(args) => quantize::run(args, &cli.global),
        Command::Open(args) => open::run(args, &cli.global),
        Command::DemoData(args) => demo_data::run(args, &cli.global),
        Command::ExtractFrames(args) => extract_frames::run(args, &cli.global),
        Command::Train(args) => train::run(args, &cli.global),
        Command::Generate(cmd) => generate::run(cmd, &cli.global),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { code, error }) => {
            eprintln!("kineto: error: {}", one_line(&error));
            ExitCode::from(code)
        }
    }
}

/// The error and its causes on one line, each said once: a message that already quotes its
/// cause (most of the library's do) does not repeat it.
pub fn one_line(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    in_users_words(&text)
}

/// The system's wording of file errors in a user's: "No such file or directory (os error 2)"
/// -> "no such file or folder", "Permission denied (os error 13)" -> "permission denied"; any
/// other " (os error N)" is dropped.
fn in_users_words(text: &str) -> String {
    let mut out = text
        .replace(
            "No such file or directory (os error 2)",
            "no such file or folder",
        )
        .replace("Permission denied (os error 13)", "permission denied")
        .replace("Is a directory (os error 21)", "is a folder, not a file")
        .replace(
            "No space left on device (os error 28)",
            "no space left on the disk",
        );
    while let Some(at) = out.find(" (os error ") {
        let Some(end) = out[at..].find(')') else {
            break;
        };
        out.replace_range(at..at + end + 1, "");
    }
    out
}
