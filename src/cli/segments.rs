//! `kineto segments VIDEO [--window-s 2] [--stride-s 1] [--min-s 2] [--min-score S] [--top-k 5]
//! [--format json|csv] [--output FILE] [--cut DIR [--reencode]]`

use std::path::PathBuf;

use anyhow::anyhow;
use kineto::checkpoint::check_dir_writable;
use kineto::infer::segments::{SegmentOptions, propose_segments};
use kineto::labels::segment_export::{ClipStatus, SegmentRow, export_segment_clips};
use kineto::report::segments_csv;
use kineto::video::cut::{CutContainer, CutMode};

use super::model::ModelArgs;
use super::progress::Progress;
use super::timeline::run_timeline;
use super::{CliResult, Failure, GlobalArgs, OutputArgs, interrupt_token, write_output};

#[derive(clap::Args, Debug)]
pub struct SegmentsArgs {
    pub video: PathBuf,
    /// Window length in seconds (0.01 to 86400).
    #[arg(long, default_value_t = 2.0, value_parser = super::parse_seconds)]
    pub window_s: f64,
    /// Step between window starts in seconds (0.01 to 86400); boundaries land within one
    /// stride of a change.
    #[arg(long, default_value_t = 1.0, value_parser = super::parse_seconds)]
    pub stride_s: f64,
    /// Segments shorter than this (seconds, 0 to 86400) join a neighbour.
    #[arg(long, default_value_t = 2.0, value_parser = parse_min_s)]
    pub min_s: f64,
    /// Windows whose top-1 scores below this (0 to 1) are background: no segment covers them.
    /// Without it the segments cover the whole video.
    #[arg(long, value_parser = parse_score)]
    pub min_score: Option<f32>,
    /// Windows a new label must win in a row before a segment starts.
    #[arg(long, default_value_t = 2, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1000))]
    pub hysteresis: usize,
    /// Classes in each segment's top-k (scores averaged over its windows).
    #[arg(long, default_value_t = 5, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub top_k: usize,
    /// Also write each segment as a clip into DIR/<label>/<stem>_<start>-<end>.<ext> (class
    /// folders for `kineto train`); cut on key frames without re-encoding: a clip may start
    /// earlier, at the key frame before the segment (the largest move is printed).
    #[arg(long, value_name = "DIR")]
    pub cut: Option<PathBuf>,
    /// With --cut: decode and encode again, frame-accurate (slower).
    #[arg(long, requires = "cut")]
    pub reencode: bool,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Seconds from 0 (no minimum) to a day.
fn parse_min_s(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..=86_400.0).contains(&v) => Ok(v),
        _ => Err("expected seconds from 0 to 86400".to_string()),
    }
}

/// A score from 0 to 1.
fn parse_score(s: &str) -> Result<f32, String> {
    match s.trim().parse::<f32>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err("expected a score from 0 to 1".to_string()),
    }
}

pub fn run(args: &SegmentsArgs, global: &GlobalArgs) -> CliResult {
    let format = args.output.format("json")?;
    args.output.check_writable()?;
    if format == "table" {
        return Err(Failure::fatal(anyhow!("segments writes json or csv")));
    }
    if let Some(dir) = &args.cut {
        // Refused before any work: a container that cannot be written, a folder that cannot.
        CutContainer::of(&args.video).map_err(Failure::input)?;
        if dir.exists() && !dir.is_dir() {
            return Err(Failure::fatal(anyhow!(
                "{}: --cut needs a folder; this is a file",
                dir.display()
            )));
        }
        std::fs::create_dir_all(dir)
            .and_then(|()| check_dir_writable(dir))
            .map_err(|e| Failure::fatal(anyhow!("{}: cannot write: {e}", dir.display())))?;
    }
    // At least 5 classes per window, so that the segments' averaged top-k has them.
    let record = run_timeline(
        &args.model,
        &args.video,
        args.window_s,
        args.stride_s,
        args.top_k.max(5),
        global,
    )?;
    let cancel = interrupt_token();
    let opts = SegmentOptions {
        hysteresis: args.hysteresis,
        min_s: args.min_s,
        min_score: args.min_score,
        top_k: args.top_k,
    };
    let segments = propose_segments(&record, &opts);
    let text = match format.as_str() {
        "csv" => segments_csv(&record.path, &segments),
        _ => serde_json::to_string_pretty(&segments).unwrap_or_else(|_| "[]".to_string()),
    };
    write_output(&args.output, &text)?;

    let Some(dir) = &args.cut else {
        return Ok(());
    };
    let rows: Vec<SegmentRow> = segments
        .iter()
        .map(|s| SegmentRow {
            video: args.video.clone(),
            duration_s: record.duration_s,
            start_s: s.start_s,
            end_s: s.end_s,
            label_id: s.label_id,
            label: s.label.clone(),
            score: Some(s.score),
        })
        .collect();
    let mode = if args.reencode {
        CutMode::Reencode
    } else {
        CutMode::KeyFrames
    };
    let bar = Progress::new(rows.len() as u64, "clips", global.quiet);
    let summary = export_segment_clips(&rows, dir, mode, &cancel, &mut |done, _| {
        bar.update(done as u64, "")
    });
    bar.finish();
    let summary = match summary {
        Ok(s) => s,
        Err(e) if cancel.is_cancelled() => {
            eprintln!("kineto: {e}");
            return Err(Failure::interrupted());
        }
        Err(e) => return Err(Failure::input(e)),
    };
    for c in &summary.clips {
        if let ClipStatus::Failed(problem) = &c.status {
            eprintln!("kineto: error: {problem}");
        }
    }
    if !global.quiet {
        for line in &summary.renamed {
            eprintln!("kineto: note: {line}");
        }
        let existing = summary
            .clips
            .iter()
            .filter(|c| c.status == ClipStatus::Existing)
            .count();
        let kept = if existing > 0 {
            format!(" ({existing} already there, left as they were)")
        } else {
            String::new()
        };
        let moved = if args.reencode {
            "re-encoded, frame-accurate".to_string()
        } else {
            format!(
                "cut on key frames: a clip moved at most {:.3} s from its segment",
                summary.max_shift_s(&rows)
            )
        };
        eprintln!(
            "kineto: {} of {} clips written into {} ({} classes){kept}; {moved}",
            summary.written(),
            rows.len(),
            dir.display(),
            summary.classes
        );
    }
    let failed = summary.failed();
    if failed > 0 {
        return Err(Failure::partial(anyhow!(
            "{failed} of {} clips could not be cut",
            rows.len()
        )));
    }
    Ok(())
}
