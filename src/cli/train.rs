//! `kineto train DATA --head-only [--weights W] [--epochs N] [--batch-size B] [--lr LR]
//! [--frames 8|16] [--val DATA | --val-split F] [--labels FILE] [--output OUT] [--run-dir DIR]
//! [--seed S] [--json]`
//!
//! Head-only training (frozen backbone, cached features, a new fc). Full fine-tuning is not
//! implemented yet and says so. The dataset summary and progress go to stderr; `--json` prints
//! the run's events (JSON Lines) on stdout. The run folder gets `settings.json`,
//! `metrics.jsonl`, the feature cache, `model.safetensors`, `confusion.csv` and `report.txt`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::anyhow;
use kineto::checkpoint::file::open_checkpoint;
use kineto::checkpoint::keys::Role;
use kineto::infer::engine::Engine;
use kineto::model::Form;
use kineto::train::TrainError;
use kineto::train::dataset::{
    Dataset, DatasetSummary, Sample, check_decodable, split_explicit, split_stratified,
};
use kineto::train::head_only::{
    HeadOnlyOptions, ModelOrigin, cache_key, extract_features, train_head, write_model,
};
use kineto::train::metrics::TrainEvent;
use kineto::train::run::{MetricsLog, default_run_dir, prepare_run_dir, write_run_file};
use kineto::weights::cache::Cache;
use serde_json::json;

use super::progress::Progress;
use super::{CliResult, Failure, GlobalArgs, interrupt_token, resolve_device, resolve_weights};

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// A folder of class folders, or a PaddleVideo list file (`path label_id` per line).
    pub data: PathBuf,
    /// Freeze the backbone: cache its features once, train only a new classifier.
    #[arg(long)]
    pub head_only: bool,
    /// Start weights: a catalog name or a .pdparams / .safetensors file.
    #[arg(long, default_value = kineto::weights::DEFAULT_WEIGHTS)]
    pub weights: String,
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Base learning rate of the warm-up + cosine schedule (head-only default: 0.01, warm-up
    /// from half of it).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Frames per clip (num_seg); default: what the checkpoint's attention fixes, else 8.
    #[arg(long)]
    pub frames: Option<usize>,
    /// A separate validation set (class folders or list file).
    #[arg(long, conflicts_with = "val_split")]
    pub val: Option<PathBuf>,
    /// Fraction of each class held out for validation (seeded).
    #[arg(long, default_value_t = 0.1)]
    pub val_split: f64,
    /// Class names of a list file (or the class order of class folders).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Also write the model here (it is always written into the run folder).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// The run folder (default: <data dir>/runs/<UTC time>-<DATA name>). Reusing one reuses
    /// its feature cache.
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// JSON Lines events on stdout.
    #[arg(long)]
    pub json: bool,
}

fn say(global: &GlobalArgs, text: &str) {
    if !global.quiet {
        eprintln!("{text}");
    }
}

pub fn run(args: &TrainArgs, global: &GlobalArgs) -> CliResult {
    let start = Instant::now();
    if !args.head_only {
        return Err(Failure::fatal(anyhow!(
            "full fine-tuning is not implemented yet; pass --head-only to train a new classifier \
             on the frozen backbone"
        )));
    }
    if args.epochs == 0 || args.batch_size == 0 {
        return Err(Failure::fatal(anyhow!(
            "--epochs and --batch-size must be at least 1"
        )));
    }
    if let Some(lr) = args.lr
        && !(lr.is_finite() && lr > 0.0)
    {
        return Err(Failure::fatal(anyhow!("--lr must be a positive number")));
    }
    if !(0.0..1.0).contains(&args.val_split) {
        return Err(Failure::fatal(anyhow!("--val-split must be in [0, 1)")));
    }
    // Everything that can be checked is checked before any decoding.
    let dataset = Dataset::open(&args.data, args.labels.as_deref()).map_err(Failure::fatal)?;
    let (train, val) = match &args.val {
        Some(v) => {
            let val_set = Dataset::open(v, None).map_err(Failure::fatal)?;
            split_explicit(&dataset, &val_set).map_err(Failure::fatal)?
        }
        None => split_stratified(&dataset, args.val_split, args.seed),
    };
    let run_dir = match &args.run_dir {
        Some(d) => d.clone(),
        None => {
            let cache = Cache::locate(global.cache_dir.as_deref()).map_err(Failure::fatal)?;
            let data_dir = cache
                .weights_dir()
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."));
            default_run_dir(&data_dir, &args.data)
        }
    };
    prepare_run_dir(&run_dir).map_err(Failure::fatal)?;
    let weights = resolve_weights(&args.weights, global)?.path;
    let device = resolve_device(global)?;
    let engine =
        Engine::load(&weights, Role::Student, Form::Fused, device).map_err(Failure::fatal)?;
    let checkpoint = open_checkpoint(&weights, Role::Student).map_err(Failure::fatal)?;
    let num_seg = match (args.frames, engine.model.arch.num_seg) {
        (Some(f), Some(t)) if f != t => {
            return Err(Failure::fatal(anyhow!(
                "{}: this checkpoint's temporal attention fixes num_seg = {t}; --frames {f} cannot be used",
                weights.display()
            )));
        }
        (Some(0), _) => return Err(Failure::fatal(anyhow!("--frames must be at least 1"))),
        (Some(f), _) => f,
        (None, Some(t)) => t,
        (None, None) => 8,
    };

    // Broken clips: a quick probe of every clip, listed and skipped.
    let all: Vec<Sample> = train.iter().chain(&val).cloned().collect();
    let (_, mut broken) = check_decodable(&all, |_, _| {});
    let is_broken = |s: &Sample| broken.iter().any(|(p, _)| *p == s.path);
    let train: Vec<Sample> = train.iter().filter(|s| !is_broken(s)).cloned().collect();
    let val: Vec<Sample> = val.iter().filter(|s| !is_broken(s)).cloned().collect();
    let summary = DatasetSummary::new(&dataset.classes, &train, &val);
    say(global, &format!("kineto: dataset {}", args.data.display()));
    for note in &dataset.notes {
        say(global, &format!("kineto: note: {note}"));
    }
    say(global, summary.to_text().trim_end());
    report_broken(global, &broken);
    if let Some(empty) = summary.classes.iter().find(|c| c.train == 0) {
        return Err(Failure::fatal(TrainError::EmptyClass {
            path: args.data.clone(),
            class: empty.name.clone(),
        }));
    }

    let opts = HeadOnlyOptions {
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        seed: args.seed,
        ..HeadOnlyOptions::default()
    };
    let settings = json!({
        "mode": "head_only",
        "data": args.data.display().to_string(),
        "val": args.val.as_ref().map(|v| v.display().to_string()),
        "val_split": if args.val.is_some() { None } else { Some(args.val_split) },
        "labels": args.labels.as_ref().map(|v| v.display().to_string()),
        "weights": args.weights,
        "weights_path": weights.display().to_string(),
        "frames": num_seg,
        "device": format!("{:?}", engine.device),
        "options": opts,
        "classes": dataset.classes,
        "summary": summary,
        "broken": broken.iter().map(|(p, e)| json!({"path": p, "error": e})).collect::<Vec<_>>(),
        "kineto_version": env!("CARGO_PKG_VERSION"),
    });
    let settings_text = serde_json::to_string_pretty(&settings).map_err(Failure::fatal)?;
    write_run_file(&run_dir, "settings.json", settings_text.as_bytes()).map_err(Failure::fatal)?;
    let mut log = MetricsLog::create(&run_dir).map_err(Failure::fatal)?;

    // Features: decode each clip once (or take it from the run folder's cache).
    let cancel = interrupt_token();
    let key = cache_key(&engine, &weights, num_seg).map_err(Failure::fatal)?;
    let progress = Progress::new((train.len() + val.len()) as u64, "clips", global.quiet);
    let extracted = extract_features(&engine, &key, &run_dir, &train, &val, &cancel, |p| {
        progress.update(p.done as u64, &p.path.display().to_string());
    })
    .map_err(Failure::fatal)?;
    progress.finish();
    if cancel.is_cancelled() {
        return Err(Failure::interrupted());
    }
    let per_clip = if extracted.decoded > 0 {
        let ms = 1e3 * extracted.elapsed_s / extracted.decoded as f64;
        format!(" ({ms:.0} ms per clip)")
    } else {
        String::new()
    };
    say(
        global,
        &format!(
            "kineto: features: {} clips decoded{per_clip}, {} from the cache, {:.1} s",
            extracted.decoded, extracted.cached, extracted.elapsed_s
        ),
    );
    if !extracted.broken.is_empty() {
        report_broken(global, &extracted.broken);
        broken.extend(extracted.broken.iter().cloned());
    }

    // The classifier.
    let classes = dataset.classes.len();
    let mut log_error = None;
    let json_out = args.json;
    let result = train_head(
        &extracted.train,
        &extracted.val,
        classes,
        &opts,
        &cancel,
        |event| {
            if let Err(e) = log.write(event) {
                log_error.get_or_insert(e);
            }
            if json_out {
                println!("{}", event.to_json_line());
            }
            if let TrainEvent::Epoch {
                epoch,
                train_loss,
                train_top1,
                val_loss,
                val_top1,
                elapsed_s,
                ..
            } = event
            {
                let val = match (val_loss, val_top1) {
                    (Some(l), Some(t)) => format!(", val loss {l:.4}, val top-1 {:.1}%", 100.0 * t),
                    _ => String::new(),
                };
                say(
                    global,
                    &format!(
                        "kineto: epoch {epoch}/{}: train loss {train_loss:.4}, train top-1 {:.1}%{val} ({elapsed_s:.2} s)",
                        opts.epochs,
                        100.0 * train_top1
                    ),
                );
            }
        },
    )
    .map_err(Failure::fatal)?;
    if let Some(e) = log_error {
        return Err(Failure::fatal(e));
    }
    if result.cancelled {
        return Err(Failure::interrupted());
    }

    // The model, the confusion matrix, the report.
    let model_path = run_dir.join("model.safetensors");
    let origin = ModelOrigin {
        weights: &weights,
        weights_sha256: &key.weights_sha256,
        data: &args.data,
        epochs: result.epochs_done,
        num_seg,
    };
    write_model(
        &checkpoint,
        &result.head,
        &dataset.classes,
        &origin,
        &model_path,
    )
    .map_err(Failure::fatal)?;
    if let Some(out) = &args.output {
        write_model(&checkpoint, &result.head, &dataset.classes, &origin, out)
            .map_err(Failure::fatal)?;
    }
    let labels_text = dataset.classes.join("\n") + "\n";
    write_run_file(&run_dir, "labels.txt", labels_text.as_bytes()).map_err(Failure::fatal)?;
    let evaluation = result.val.as_ref().unwrap_or(&result.train);
    let csv = evaluation.confusion.to_csv(&dataset.classes);
    write_run_file(&run_dir, "confusion.csv", csv.as_bytes()).map_err(Failure::fatal)?;
    let mut report = String::new();
    if result.val.is_none() {
        report.push_str("no validation clips: the numbers below are on the training set\n");
    }
    report.push_str(&evaluation.report(&dataset.classes));
    write_run_file(&run_dir, "report.txt", report.as_bytes()).map_err(Failure::fatal)?;
    say(global, report.trim_end());
    let output = args.output.clone().unwrap_or_else(|| model_path.clone());
    let done = TrainEvent::Done {
        output: output.clone(),
        run_dir: run_dir.clone(),
        epochs: result.epochs_done,
        best_val_top1: result.best_val_top1,
        elapsed_s: start.elapsed().as_secs_f64(),
    };
    log.write(&done).map_err(Failure::fatal)?;
    if args.json {
        println!("{}", done.to_json_line());
    }
    say(
        global,
        &format!(
            "kineto: wrote {} (run folder {})",
            output.display(),
            run_dir.display()
        ),
    );
    Ok(())
}

fn report_broken(global: &GlobalArgs, broken: &[(PathBuf, String)]) {
    if broken.is_empty() {
        return;
    }
    say(
        global,
        &format!(
            "kineto: {} clips cannot be decoded and are skipped:",
            broken.len()
        ),
    );
    for (path, problem) in broken {
        say(global, &format!("  {}: {problem}", path.display()));
    }
}
