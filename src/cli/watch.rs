//! `kineto watch SOURCE [--window-s 2] [--every-s 0.5] [--top-k 5] [--duration S]
//! [--format jsonl|table] [--record FILE.mkv]`: labels on a camera, a stream or a file as it
//! plays, one line per prediction, flushed; `--record` writes what was received to a Matroska
//! file, finished on Ctrl-C before the exit (130). `--list-cameras` prints the cameras
//! GStreamer sees.

use std::io::Write;

use anyhow::anyhow;
use kineto::infer::watch::{WatchError, WatchEvent, WatchRequest, watch};
use kineto::video::VideoError;
use kineto::video::live_source::{LiveOptions, Source, cameras};
use kineto::video::record::Recorder;

use super::model::{ModelArgs, load_engine};
use super::{CliResult, Failure, GlobalArgs, interrupt_token};

#[derive(clap::Args, Debug)]
pub struct WatchArgs {
    /// A video file, a camera (/dev/videoN or v4l2:///dev/videoN), or a URL: rtsp(s)://,
    /// http(s):// (progressive files, HLS playlists), srt://, udp://, file://. Credentials in a
    /// URL are used to connect and never printed.
    #[arg(required_unless_present = "list_cameras")]
    pub source: Option<String>,
    /// Print the cameras GStreamer's device monitor sees and exit.
    #[arg(long)]
    pub list_cameras: bool,
    /// Window length in seconds (0.01 to 86400).
    #[arg(long, default_value_t = 2.0, value_parser = super::parse_seconds)]
    pub window_s: f64,
    /// Step between predictions in seconds of stream time (0.01 to 86400).
    #[arg(long, default_value_t = 0.5, value_parser = super::parse_seconds)]
    pub every_s: f64,
    #[arg(long, default_value_t = 5, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub top_k: usize,
    /// Stop after this many seconds of stream time.
    #[arg(long, value_parser = super::parse_seconds)]
    pub duration: Option<f64>,
    /// Reconnection attempts in a row before a dropped network stream ends the watch.
    #[arg(long, default_value_t = 5)]
    pub reconnects: u32,
    /// jsonl: one JSON object per prediction (`t_s`, `wall_time`, `latency_ms`, `top_k`);
    /// table: one line per prediction.
    #[arg(long, default_value = "jsonl", value_parser = ["jsonl", "table"])]
    pub format: String,
    /// Write every frame received to FILE (Matroska, `.mkv`; an existing file is refused),
    /// remuxed as it came when the source is compressed (H.264/H.265/VP8/VP9/MJPEG), else
    /// encoded with x264. Written as it arrives: a killed watch leaves a playable file; the end
    /// of the stream, --duration or Ctrl-C finish it.
    #[arg(long, value_name = "FILE")]
    pub record: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
}

pub fn run(args: &WatchArgs, global: &GlobalArgs) -> CliResult {
    if args.list_cameras {
        let found = cameras().map_err(Failure::fatal)?;
        if found.is_empty() && !global.quiet {
            eprintln!("kineto: no camera found");
        }
        for camera in found {
            println!(
                "{}\t{}",
                camera.device.as_deref().unwrap_or("-"),
                camera.name
            );
        }
        return Ok(());
    }
    let text = args.source.as_deref().unwrap_or_default();
    let source = Source::parse(text).map_err(source_failure)?;
    let name = source.display();
    let (engine, labels, num_seg) = load_engine(&args.model, global)?;
    let record = match &args.record {
        Some(path) => Some(Recorder::create(path).map_err(Failure::fatal)?),
        None => None,
    };
    let req = WatchRequest {
        window_s: args.window_s,
        every_s: args.every_s,
        num_seg,
        k: args.top_k,
        labels,
        duration_s: args.duration,
        reconnect: LiveOptions {
            max_reconnects: args.reconnects,
            record,
            ..LiveOptions::default()
        },
        display: None,
    };
    let cancel = interrupt_token();
    let stdout = std::io::stdout();
    let mut write_failed = None;
    let outcome = watch(&engine, source, &req, &cancel, |event| match event {
        WatchEvent::Prediction(p) => {
            let line = match args.format.as_str() {
                "table" => {
                    let top = p.top_k.first();
                    format!(
                        "{:>9.2}s  {:<32} {:>6.3}  ({:.0} ms)",
                        p.t_s,
                        top.map_or("-", |r| r.label.as_str()),
                        top.map_or(0.0, |r| r.score),
                        p.latency_ms
                    )
                }
                _ => serde_json::to_string(&p).unwrap_or_default(),
            };
            let mut out = stdout.lock();
            if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
                write_failed.get_or_insert(e);
                cancel.cancel();
            }
        }
        WatchEvent::Reconnecting {
            attempt,
            max,
            wait,
            detail,
        } => {
            if !global.quiet {
                eprintln!(
                    "kineto: {name}: the stream dropped ({detail}); reconnecting in {:.1} s \
                     (attempt {attempt} of {max})",
                    wait.as_secs_f64()
                );
            }
        }
    });
    if let Some(e) = write_failed {
        return Err(Failure::input(anyhow!("cannot write the predictions: {e}")));
    }
    let summary = outcome.map_err(watch_failure)?;
    if !global.quiet {
        eprintln!(
            "kineto: {name}: {} predictions over {} frames at {:.2} fps{}",
            summary.predictions,
            summary.frames,
            summary.fps,
            if summary.dropped > 0 {
                format!(
                    "; {} windows dropped while the model was behind",
                    summary.dropped
                )
            } else {
                String::new()
            }
        );
        if let Some(recording) = &summary.recording {
            eprintln!(
                "kineto: recorded {} frames to {} ({})",
                recording.frames,
                recording.path.display(),
                if recording.remuxed {
                    "remuxed"
                } else {
                    "encoded with x264"
                }
            );
        }
    }
    if cancel.is_cancelled() {
        return Err(Failure::interrupted());
    }
    Ok(())
}

/// A scheme outside the allow-list is a usage error (2); a source that cannot be read, 1.
fn source_failure(error: VideoError) -> Failure {
    match error {
        VideoError::SchemeNotAllowed { .. } => Failure::fatal(error),
        e if e.is_missing_plugin() => Failure::fatal(e),
        e => Failure::input(e),
    }
}

fn watch_failure(error: WatchError) -> Failure {
    match error {
        WatchError::Video(e) => source_failure(e),
        WatchError::BadWindow(_) => Failure::fatal(error),
        e => Failure::input(e),
    }
}
