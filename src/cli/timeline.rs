//! `kineto timeline VIDEO [--window-s 2] [--stride-s 1] [--top-k 5] [--format json|csv]`

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use kineto::infer::timeline::{TimelineRecord, TimelineRequest, timeline};
use kineto::report::{csv_field, top_k_cell};

use super::model::{ModelArgs, load_engine};
use super::progress::Progress;
use super::{CliResult, Failure, GlobalArgs, OutputArgs, interrupt_token, write_output};

#[derive(clap::Args, Debug)]
pub struct TimelineArgs {
    pub video: PathBuf,
    /// Window length in seconds (0.01 to 86400).
    #[arg(long, default_value_t = 2.0, value_parser = super::parse_seconds)]
    pub window_s: f64,
    /// Step between window starts in seconds (0.01 to 86400).
    #[arg(long, default_value_t = 1.0, value_parser = super::parse_seconds)]
    pub stride_s: f64,
    #[arg(long, default_value_t = 5, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub top_k: usize,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub fn run(args: &TimelineArgs, global: &GlobalArgs) -> CliResult {
    let format = args.output.format("json")?;
    args.output.check_writable()?;
    if format == "table" {
        return Err(Failure::fatal(anyhow!("timeline writes json or csv")));
    }
    let record = run_timeline(
        &args.model,
        &args.video,
        args.window_s,
        args.stride_s,
        args.top_k,
        global,
    )?;
    let text = match format.as_str() {
        "csv" => timeline_csv(&record),
        _ => serde_json::to_string_pretty(&record).unwrap_or_default(),
    };
    write_output(&args.output, &text)
}

/// Loads the model and runs it over the windows of `video`, with a progress bar and Ctrl-C
/// (`timeline` and `segments` share it).
pub fn run_timeline(
    model: &ModelArgs,
    video: &Path,
    window_s: f64,
    stride_s: f64,
    top_k: usize,
    global: &GlobalArgs,
) -> Result<TimelineRecord, Failure> {
    let (engine, labels, num_seg) = load_engine(model, global)?;
    let req = TimelineRequest {
        window_s,
        stride_s,
        num_seg,
        k: top_k,
        labels: &labels,
        batch: kineto::infer::timeline::WINDOWS_PER_BATCH,
    };
    let mut progress: Option<Progress> = None;
    let cancel = interrupt_token();
    let start = std::time::Instant::now();
    let outcome = timeline(&engine, video, &req, &cancel, |_, done, total| {
        let bar = progress.get_or_insert_with(|| {
            Progress::new(total as u64, "windows", global.quiet).started_at(start)
        });
        bar.update(done as u64, "");
    });
    if cancel.is_cancelled() {
        return Err(Failure::interrupted());
    }
    let record = outcome.map_err(Failure::input)?;
    if let Some(bar) = &progress {
        bar.finish();
    }
    Ok(record)
}

fn timeline_csv(record: &TimelineRecord) -> String {
    let mut out = String::from("start_s,end_s,label,label_id,score,top_k\n");
    for w in &record.windows {
        let top = w.top_k.first();
        let _ = writeln!(
            out,
            "{:.3},{:.3},{},{},{},{}",
            w.start_s,
            w.end_s,
            csv_field(top.map_or("", |t| t.label.as_str())),
            top.map_or(String::new(), |t| t.label_id.to_string()),
            top.map_or(String::new(), |t| format!("{:.6}", t.score)),
            csv_field(&top_k_cell(&w.top_k)),
        );
    }
    out
}
