//! `kineto bench`: median forward time, the same protocol as the anchors' `ort_bench.py`
//! (input ready in memory, warm-up runs, then the median of N timed runs).
//!
//! `--case preprocess --video FILE` times what `classify` does before inference instead
//! (open, count, sample, decode, Scale/CenterCrop/normalise; the anchors' `prep_bench.py`
//! times the same with decord + Pillow), in this process, so GStreamer's initialisation is
//! paid once in the warm-up, as decord's import is.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::anyhow;
use kineto::checkpoint::keys::Role;
use kineto::infer::classify::{Sampling, prepare};
use kineto::infer::engine::Engine;
use kineto::model::init::random_store;
use kineto::model::{Arch, Form, ModelKind, Recognizer};
use serde_json::json;

use super::{CliResult, Failure, GlobalArgs, resolve_device, resolve_weights};

/// What `kineto bench` times.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BenchCase {
    /// One forward pass of the model on a clip already in memory.
    #[default]
    Infer,
    /// Decode + preprocess of `--video` (PaddleVideo's uniform test pipeline), as classify
    /// does it; `--threads` sets the worker threads (0 = all cores).
    Preprocess,
}

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// What to time.
    #[arg(long, value_enum, default_value_t = BenchCase::Infer)]
    pub case: BenchCase,
    /// The video for `--case preprocess`.
    #[arg(long, value_name = "FILE", required_if_eq("case", "preprocess"))]
    pub video: Option<PathBuf>,
    /// Frames per clip (num_seg).
    #[arg(long, default_value_t = 8)]
    pub frames: usize,
    /// Timed runs.
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// Untimed runs first.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Clips per forward.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Input height and width.
    #[arg(long, default_value_t = 224)]
    pub size: usize,
    /// Time this checkpoint (a catalog name or a file; fused form) instead of the plain
    /// PP-TSMv2 with random weights.
    #[arg(long, value_name = "NAME|FILE")]
    pub weights: Option<String>,
    /// One JSON object instead of a line of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &BenchArgs, global: &GlobalArgs) -> CliResult {
    if args.case == BenchCase::Preprocess {
        return run_preprocess(args, global);
    }
    if args.runs == 0 || args.frames == 0 || args.batch == 0 || args.size < 32 {
        return Err(Failure::fatal(anyhow!(
            "--runs, --frames and --batch must be at least 1 and --size at least 32"
        )));
    }
    let weights = match &args.weights {
        Some(spec) => Some(resolve_weights(spec, global)?.path),
        None => None,
    };
    let device = resolve_device(global)?;
    let engine = match &weights {
        Some(path) => {
            Engine::load(path, Role::Student, Form::Fused, device).map_err(Failure::input)?
        }
        None => {
            let arch = Arch {
                model: ModelKind::PptsmV2,
                depth: None,
                num_seg: None,
                num_classes: 400,
                attention: false,
                form: Form::Fused,
            };
            let store = random_store(arch, 2024);
            let model = Recognizer::from_store(&store, &device.device)
                .map_err(|e| Failure::fatal(anyhow!("building the bench model: {e}")))?;
            Engine::from_model(model, device)
        }
    };
    let dims = [args.batch, args.frames, 3, args.size, args.size];
    let input = synthetic_clip(dims.iter().product());
    let mut times = Vec::with_capacity(args.runs);
    for i in 0..args.warmup + args.runs {
        let data = input.clone();
        let start = Instant::now();
        engine.logits(data, dims).map_err(Failure::fatal)?;
        if i >= args.warmup {
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    let median = if times.len() % 2 == 1 {
        times[times.len() / 2]
    } else {
        (times[times.len() / 2 - 1] + times[times.len() / 2]) / 2.0
    };
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    let round = |x: f64| (x * 100.0).round() / 100.0;
    let report = json!({
        "case": "infer",
        "model": engine.model.arch.display_name(),
        "frames": args.frames,
        "batch": args.batch,
        "size": args.size,
        "device": engine.device.kind,
        "backend": engine.device.backend,
        "adapter": engine.device.adapter,
        "threads": engine.device.threads,
        "runs": args.runs,
        "warmup": args.warmup,
        "median_ms": round(median),
        "mean_ms": round(mean),
        "min_ms": round(times[0]),
        "max_ms": round(times[times.len() - 1]),
        "kineto_version": env!("CARGO_PKG_VERSION"),
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "{} {}f batch {} {}x{} on {} ({}, {} threads): median {:.1} ms (min {:.1}, max {:.1}) over {} runs",
            report["model"].as_str().unwrap_or(""),
            args.frames,
            args.batch,
            args.size,
            args.size,
            engine.device.kind,
            engine.device.adapter,
            engine.device.threads,
            median,
            times[0],
            times[times.len() - 1],
            args.runs
        );
    }
    Ok(())
}

/// Median of a non-empty list.
fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    let n = times.len();
    if n % 2 == 1 {
        times[n / 2]
    } else {
        (times[n / 2 - 1] + times[n / 2]) / 2.0
    }
}

/// `--case preprocess`: `prepare` (uniform sampling, `--frames` segments) on `--video`,
/// `--warmup` untimed runs then the medians of `--runs`, on a pool of `--threads` threads.
fn run_preprocess(args: &BenchArgs, global: &GlobalArgs) -> CliResult {
    let Some(video) = &args.video else {
        return Err(Failure::fatal(anyhow!(
            "--case preprocess needs --video FILE"
        )));
    };
    if args.runs == 0 || args.frames == 0 {
        return Err(Failure::fatal(anyhow!(
            "--runs and --frames must be at least 1"
        )));
    }
    let threads = if global.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        global.threads
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("kineto-prep-{i}"))
        .build()
        .map_err(|e| Failure::fatal(anyhow!("cannot start {threads} threads: {e}")))?;
    let sampling = Sampling {
        num_seg: args.frames,
        dense: false,
    };
    let (mut decode, mut preprocess, mut total) = (Vec::new(), Vec::new(), Vec::new());
    let mut last = None;
    for i in 0..args.warmup + args.runs {
        let start = Instant::now();
        let clip = pool
            .install(|| prepare(video, sampling, false))
            .map_err(Failure::input)?;
        let elapsed = start.elapsed().as_secs_f64() * 1e3;
        if i >= args.warmup {
            decode.push(clip.decode_ms);
            preprocess.push(clip.preprocess_ms);
            total.push(elapsed);
        }
        last = Some(clip);
    }
    let Some(clip) = last else {
        return Err(Failure::fatal(anyhow!("no run")));
    };
    let round = |x: f64| (x * 100.0).round() / 100.0;
    let min_total = total.iter().copied().fold(f64::INFINITY, f64::min);
    let (decode_ms, preprocess_ms, total_ms) = (median(decode), median(preprocess), median(total));
    let report = json!({
        "case": "preprocess",
        "video": video.display().to_string(),
        "frames": args.frames,
        "frame_count": clip.info.frame_count,
        "size": [clip.info.width, clip.info.height],
        "indices": clip.view_indices.first(),
        "threads": threads,
        "runs": args.runs,
        "warmup": args.warmup,
        "decode_ms": round(decode_ms),
        "preprocess_ms": round(preprocess_ms),
        "total_ms": round(total_ms),
        "min_total_ms": round(min_total),
        "kineto_version": env!("CARGO_PKG_VERSION"),
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "decode + preprocess of {} ({} frames, {} threads): median {:.1} ms (decode {:.1}, preprocess {:.1}; min {:.1}) over {} runs",
            video.display(),
            args.frames,
            threads,
            total_ms,
            decode_ms,
            preprocess_ms,
            min_total,
            args.runs
        );
    }
    Ok(())
}

/// A smooth, deterministic stand-in for a normalised clip (values in about [-2, 2]).
fn synthetic_clip(len: usize) -> Vec<f32> {
    (0..len).map(|i| ((i as f32) * 0.001).sin() * 2.0).collect()
}
