//! `kineto bench`: median forward time, the same protocol as the anchors' `ort_bench.py`
//! (input ready in memory, warm-up runs, then the median of N timed runs).

use std::time::Instant;

use anyhow::anyhow;
use kineto::checkpoint::keys::Role;
use kineto::infer::engine::Engine;
use kineto::model::init::random_store;
use kineto::model::{Arch, Form, ModelKind, Recognizer};
use serde_json::json;

use super::{CliResult, Failure, GlobalArgs, resolve_device, resolve_weights};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
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

/// A smooth, deterministic stand-in for a normalised clip (values in about [-2, 2]).
fn synthetic_clip(len: usize) -> Vec<f32> {
    (0..len).map(|i| ((i as f32) * 0.001).sin() * 2.0).collect()
}
