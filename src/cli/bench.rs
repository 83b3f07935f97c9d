//! `kineto bench`: median forward time, the same protocol as the anchors' `ort_bench.py`
//! (input ready in memory, warm-up runs, then the median of N timed runs).
//!
//! `--case live` times the player's sliding-window update (one new frame's per-frame layers +
//! the temporal part, from cached per-frame maps) beside the full forward; `--case train` times
//! one full fine-tuning step (train-mode forward, backward, update by the model's recipe; f32;
//! on the CPU path for PP-TSMv2, `KINETO_CPU_PATH=burn` for burn's autodiff; burn's autodiff
//! for the PP-TSM ResNets and MobileNets, `scripts/train_bench_compare.sh` times PaddlePaddle's
//! step beside it); `--case all`
//! runs inference (8f/16f, threads 1 and 2, batch 1 and 8), the live update and training steps
//! (224 and 112), as one JSON array with `--json`.
//!
//! `--case preprocess --video FILE` times what `classify` does before inference instead
//! (open, count, sample, decode, Scale/CenterCrop/normalise; the anchors' `prep_bench.py`
//! times the same with decord + Pillow), in this process, so GStreamer's initialisation is
//! paid once in the warm-up, as decord's import is.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::anyhow;
use burn::tensor::{FloatDType, TensorData};
use kineto::checkpoint::file::open_checkpoint;
use kineto::checkpoint::keys::Role;
use kineto::infer::classify::{Sampling, prepare};
use kineto::infer::device::{ComputeDevice, DeviceChoice};
use kineto::infer::engine::{Engine, Precision, store_in_form};
use kineto::model::init::random_store;
use kineto::model::nhwc::FrameMaps;
use kineto::model::nhwc::qgemm::QSimd;
use kineto::model::nhwc::quant::{DEFAULT_PERCENTILE, Estimator, QuantBits};
use kineto::model::{Arch, Form, ModelKind, Recognizer};
use kineto::train::trainer::{FullStepOptions, FullTrainer};
use serde_json::json;

use super::model::{PrecisionArg, check_precision};
use super::{CliResult, Failure, GlobalArgs, resolve_device, resolve_weights};

/// What `kineto bench` times.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BenchCase {
    /// One forward pass of the model on a clip already in memory.
    #[default]
    Infer,
    /// The live player's window update: per-frame layers on one new frame + the temporal
    /// part over the window (CPU path), beside a full forward of the same window.
    Live,
    /// One full fine-tuning step (train-mode forward, cross-entropy, backward, Momentum
    /// update) in float32 on `--batch` clips.
    Train,
    /// Everything above but preprocess: inference 8f/16f x threads 1, 2 x batch 1, 8; live
    /// 8f/16f; training steps at 224 and 112 (`--json`: one JSON array).
    All,
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
    /// `--case train`: freeze the stem and the first N stages, as `kineto train
    /// --freeze-stages N` does.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub freeze_stages: usize,
    /// Time this checkpoint (a catalog name or a file) instead of the plain PP-TSMv2 with
    /// random weights (fused form for inference; training form for `--case train`).
    #[arg(long, value_name = "NAME|FILE")]
    pub weights: Option<String>,
    /// fp32, or int8 (inference and live, CPU): a model made by `kineto quantize` with
    /// --weights, else the random PP-TSMv2 calibrated on the bench's own clip. Default: int8
    /// for a quantized --weights, else fp32.
    #[arg(long, value_enum)]
    pub precision: Option<PrecisionArg>,
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
    check_precision(args.precision, global)?;
    if args.precision == Some(PrecisionArg::Int8) && args.case == BenchCase::Train {
        return Err(Failure::fatal(anyhow!(
            "--precision int8 times inference (--case infer, live or all); training is fp32"
        )));
    }
    let weights = match &args.weights {
        Some(spec) => Some(resolve_weights(spec, global)?.path),
        None => None,
    };
    let config = Config {
        frames: args.frames,
        batch: args.batch,
        size: args.size,
        threads: global.threads,
    };
    match args.case {
        BenchCase::Infer => {
            let report = bench_infer(args, global, weights.as_deref(), config)?;
            print_report(&report, args.json);
        }
        BenchCase::Live => {
            let report = bench_live(args, global, weights.as_deref(), config)?;
            print_report(&report, args.json);
        }
        BenchCase::Train => {
            let report = bench_train(args, weights.as_deref(), config)?;
            print_report(&report, args.json);
        }
        BenchCase::All => {
            let mut reports = Vec::new();
            for config in suite_configs(args) {
                let report = match config {
                    SuiteCase::Infer(c) => bench_infer(args, global, weights.as_deref(), c)?,
                    SuiteCase::Live(c) => bench_live(args, global, weights.as_deref(), c)?,
                    SuiteCase::Train(c) => bench_train(args, None, c)?,
                };
                if !args.json {
                    print_report(&report, false);
                }
                reports.push(report);
            }
            if args.json {
                println!("{}", serde_json::Value::Array(reports));
            }
        }
        BenchCase::Preprocess => unreachable!("handled above"),
    }
    Ok(())
}

/// The shape and threads of one measurement.
#[derive(Clone, Copy, Debug)]
struct Config {
    frames: usize,
    batch: usize,
    size: usize,
    threads: usize,
}

enum SuiteCase {
    Infer(Config),
    Live(Config),
    Train(Config),
}

/// `--case all`: what issue-level comparisons need, at the input size of `--size`.
fn suite_configs(args: &BenchArgs) -> Vec<SuiteCase> {
    let base = Config {
        frames: 8,
        batch: 1,
        size: args.size,
        threads: 1,
    };
    let mut cases = Vec::new();
    for frames in [8, 16] {
        for threads in [1, 2] {
            for batch in [1, 8] {
                cases.push(SuiteCase::Infer(Config {
                    frames,
                    threads,
                    batch,
                    ..base
                }));
            }
        }
    }
    for frames in [8, 16] {
        cases.push(SuiteCase::Live(Config { frames, ..base }));
    }
    for size in [224, 112] {
        cases.push(SuiteCase::Train(Config { size, ..base }));
    }
    cases
}

/// `warmup` untimed calls of `f`, then the times (ms) of `runs` calls.
fn time_runs(
    warmup: usize,
    runs: usize,
    mut f: impl FnMut() -> Result<(), Failure>,
) -> Result<Vec<f64>, Failure> {
    let mut times = Vec::with_capacity(runs);
    for i in 0..warmup + runs {
        let start = Instant::now();
        f()?;
        if i >= warmup {
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(times)
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// median/mean/min/max of a non-empty list of times, as JSON fields.
fn stats(times: &[f64]) -> serde_json::Value {
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    json!({
        "median_ms": round(median(sorted.clone())),
        "mean_ms": round(sorted.iter().sum::<f64>() / sorted.len() as f64),
        "min_ms": round(sorted[0]),
        "max_ms": round(sorted[sorted.len() - 1]),
    })
}

/// The engine of a bench: the checkpoint if given, else the plain PP-TSMv2 with random weights
/// (in int8: calibrated on `clip`, the bench's input, as `kineto quantize` would on clips).
fn bench_engine(
    global: &GlobalArgs,
    weights: Option<&Path>,
    threads: usize,
    precision: Option<PrecisionArg>,
    (clip, dims): (&[f32], [usize; 5]),
) -> Result<Engine, Failure> {
    let device = resolve_device(&GlobalArgs {
        threads,
        ..global.clone()
    })?;
    let precision = precision.map(Precision::from);
    match weights {
        Some(path) => Engine::load_in(path, Role::Student, Form::Fused, device, precision)
            .map_err(super::model::engine_failure),
        None => {
            let model = random_model(Form::Fused, &device.device)?;
            let mut engine = Engine::from_model(model, device);
            if precision == Some(Precision::Int8) {
                engine.start_calibration().map_err(Failure::fatal)?;
                engine.logits(clip.to_vec(), dims).map_err(Failure::fatal)?;
                let layers = engine
                    .calibrated(
                        Estimator::Percentile(DEFAULT_PERCENTILE),
                        QuantBits::DEFAULT,
                    )
                    .into_iter()
                    .map(|(name, layer, _)| (name, layer))
                    .collect();
                engine.set_int8(&layers).map_err(Failure::fatal)?;
            }
            Ok(engine)
        }
    }
}

fn random_model(form: Form, device: &burn::tensor::Device) -> Result<Recognizer, Failure> {
    let arch = Arch {
        model: ModelKind::PptsmV2,
        depth: None,
        num_seg: None,
        num_classes: 400,
        attention: false,
        form,
    };
    let store = random_store(arch, 2024);
    Recognizer::from_store(&store, device)
        .map_err(|e| Failure::fatal(anyhow!("building the bench model: {e}")))
}

fn bench_infer(
    args: &BenchArgs,
    global: &GlobalArgs,
    weights: Option<&Path>,
    c: Config,
) -> Result<serde_json::Value, Failure> {
    let dims = [c.batch, c.frames, 3, c.size, c.size];
    let input = synthetic_clip(dims.iter().product());
    let engine = bench_engine(global, weights, c.threads, args.precision, (&input, dims))?;
    let times = time_runs(args.warmup, args.runs, || {
        engine
            .logits(input.clone(), dims)
            .map(drop)
            .map_err(Failure::fatal)
    })?;
    Ok(report("infer", &engine, c, args, &times, json!({})))
}

/// The live update as the player's next grid step runs it: the window's frames' maps and shares
/// are cached; each timed run computes the new frame's maps, the shares of the three frames
/// whose neighbours changed (the new first, the previous last, the new last) and the classifier
/// (with temporal attention: the whole part after the shift).
fn bench_live(
    args: &BenchArgs,
    global: &GlobalArgs,
    weights: Option<&Path>,
    c: Config,
) -> Result<serde_json::Value, Failure> {
    let c = Config { batch: 1, ..c };
    let dims = [1, c.frames, 3, c.size, c.size];
    let input = synthetic_clip(dims.iter().product());
    let engine = bench_engine(global, weights, c.threads, args.precision, (&input, dims))?;
    if !engine.splits_at_shift() {
        return Err(Failure::fatal(anyhow!(
            "--case live needs the CPU path (--device cpu, a fused PP-TSMv2)"
        )));
    }
    let cannot = || Failure::fatal(anyhow!("the engine cannot split at the temporal shift"));
    let frame_len = 3 * c.size * c.size;
    let clip = input;
    let maps_of = |frame: &[f32]| {
        engine
            .frame_maps(frame, c.size, c.size)
            .ok_or_else(cannot)?
            .map_err(Failure::fatal)
    };
    let share_of = |maps: &VecDeque<FrameMaps>, i: usize| {
        let previous = (i > 0).then(|| &maps[i - 1]);
        let next = maps.get(i + 1);
        engine
            .frame_share(previous, &maps[i], next, maps.len())
            .ok_or_else(cannot)?
            .map_err(Failure::fatal)
    };
    let mut maps = clip
        .chunks_exact(frame_len)
        .map(maps_of)
        .collect::<Result<VecDeque<_>, _>>()?;
    let local = engine.has_local_shares();
    let mut shares = VecDeque::new();
    if local {
        for i in 0..maps.len() {
            shares.push_back(share_of(&maps, i)?);
        }
    }
    let mut next = 0;
    let times = time_runs(args.warmup, args.runs, || {
        let frame = &clip[next * frame_len..(next + 1) * frame_len];
        next = (next + 1) % c.frames;
        maps.pop_front();
        maps.push_back(maps_of(frame)?);
        let logits = if local {
            let last = maps.len() - 1;
            shares.pop_front();
            shares.push_back(share_of(&maps, last)?);
            for i in [0, last.saturating_sub(1)] {
                shares[i] = share_of(&maps, i)?;
            }
            let refs: Vec<&[f32]> = shares.iter().map(Vec::as_slice).collect();
            engine.logits_from_shares(&refs)
        } else {
            let refs: Vec<&FrameMaps> = maps.iter().collect();
            engine.logits_from_frames(&refs)
        };
        logits.ok_or_else(cannot)?.map(drop).map_err(Failure::fatal)
    })?;
    let dims = [1, c.frames, 3, c.size, c.size];
    let full = time_runs(args.warmup.min(1), args.runs.div_ceil(2), || {
        engine
            .logits(clip.clone(), dims)
            .map(drop)
            .map_err(Failure::fatal)
    })?;
    let full_median = median(full);
    Ok(report(
        "live",
        &engine,
        c,
        args,
        &times,
        json!({
            "full_forward_median_ms": round(full_median),
            "frame_shares_cached": local,
        }),
    ))
}

/// One full fine-tuning step in float32 (batch `--batch`, one label per clip).
fn bench_train(
    args: &BenchArgs,
    weights: Option<&Path>,
    c: Config,
) -> Result<serde_json::Value, Failure> {
    let device = ComputeDevice::resolve(DeviceChoice::Cpu, c.threads).map_err(Failure::fatal)?;
    let model = match weights {
        Some(path) => {
            let checkpoint = open_checkpoint(path, Role::Student).map_err(Failure::input)?;
            let store = store_in_form(&checkpoint, Form::Training).map_err(Failure::input)?;
            Recognizer::from_store(&store, &device.device)
                .map_err(|e| Failure::input(anyhow!("{}: {e}", path.display())))?
        }
        None => random_model(Form::Training, &device.device)?,
    };
    let name = model.arch.display_name();
    let classes = model.arch.num_classes;
    let options = FullStepOptions::recipe(model.arch.model);
    let mut trainer = FullTrainer::new(model, FloatDType::F32, options)
        .map_err(|e| Failure::fatal(anyhow!("{e}")))?;
    trainer
        .set_freeze_stages(args.freeze_stages)
        .map_err(|e| Failure::fatal(anyhow!("{e}")))?;
    let dims = [c.batch, c.frames, 3, c.size, c.size];
    let input = synthetic_clip(dims.iter().product());
    let labels: Vec<usize> = (0..c.batch).map(|i| i % classes).collect();
    let times = device.install(|| {
        time_runs(args.warmup.min(1), args.runs.min(5), || {
            trainer
                .step(TensorData::new(input.clone(), dims), &labels, 1e-3)
                .map(drop)
                .map_err(|e| Failure::fatal(anyhow!("{e}")))
        })
    })?;
    let mut out = json!({
        "case": "train",
        "model": name,
        "frames": c.frames,
        "batch": c.batch,
        "size": c.size,
        "device": "cpu",
        "backend": if trainer.path_name() == "nhwc" { "cpu" } else { "flex (autodiff)" },
        "path": trainer.path_name(),
        "freeze_stages": trainer.freeze_stages(),
        "precision": "f32",
        "threads": device.threads,
        "runs": times.len(),
        "kineto_version": env!("CARGO_PKG_VERSION"),
    });
    merge(&mut out, stats(&times));
    Ok(out)
}

fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
    if let (Some(into), serde_json::Value::Object(from)) = (into.as_object_mut(), from) {
        into.extend(from);
    }
}

fn report(
    case: &str,
    engine: &Engine,
    c: Config,
    args: &BenchArgs,
    times: &[f64],
    extra: serde_json::Value,
) -> serde_json::Value {
    let mut out = json!({
        "case": case,
        "model": engine.model.arch.display_name(),
        "frames": c.frames,
        "batch": c.batch,
        "size": c.size,
        "device": engine.device.kind,
        "backend": engine.device.backend,
        "path": engine.path_name(),
        "cpu_simd": kineto::model::nhwc::simd().name(),
        "precision": engine.precision.as_str(),
        "int8_simd": engine.int8_kernel().map(QSimd::name),
        "adapter": engine.device.adapter,
        "threads": engine.device.threads,
        "runs": args.runs,
        "warmup": args.warmup,
        "kineto_version": env!("CARGO_PKG_VERSION"),
    });
    merge(&mut out, stats(times));
    merge(&mut out, extra);
    out
}

fn print_report(report: &serde_json::Value, as_json: bool) {
    if as_json {
        println!("{report}");
        return;
    }
    let field = |k: &str| report[k].to_string().trim_matches('"').to_string();
    let what = match field("case").as_str() {
        "live" => format!(
            "live window update (full forward {} ms)",
            field("full_forward_median_ms")
        ),
        "train" => format!("training step (f32, {} path)", field("path")),
        _ => format!("forward ({})", field("precision")),
    };
    println!(
        "{} {}f batch {} {}x{} on {} ({} threads): {what}: median {} ms (min {}, max {}) over {} runs",
        field("model"),
        field("frames"),
        field("batch"),
        field("size"),
        field("size"),
        field("device"),
        field("threads"),
        field("median_ms"),
        field("min_ms"),
        field("max_ms"),
        field("runs"),
    );
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
