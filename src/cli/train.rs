//! `kineto train DATA --head-only [--weights W] [--epochs N] [--batch-size B] [--lr LR]
//! [--frames 8|16] [--val DATA | --val-split F] [--labels FILE] [--output OUT] [--run-dir DIR]
//! [--seed S] [--json]`
//!
//! Head-only training (frozen backbone, cached features, a new fc). Full fine-tuning is not
//! implemented yet and says so. The dataset summary and progress go to stderr; `--json` prints
//! the run's events (JSON Lines) on stdout. The run folder gets `settings.json`,
//! `metrics.jsonl`, the feature cache, `model.safetensors`, `confusion.csv` and `report.txt`.

use std::cell::RefCell;
use std::path::PathBuf;

use anyhow::anyhow;
use kineto::train::TrainError;
use kineto::train::job::{JobDevice, JobEvent, TrainJob, default_run_dir_for, run_head_only};
use kineto::train::metrics::TrainEvent;

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
    // The library checks the data and the run folder before any decoding; the weights and
    // the device are resolved here (a catalog name may download).
    let run_dir = match &args.run_dir {
        Some(d) => d.clone(),
        None => {
            default_run_dir_for(&args.data, global.cache_dir.as_deref()).map_err(Failure::fatal)?
        }
    };
    let weights = resolve_weights(&args.weights, global)?.path;
    let device = resolve_device(global)?;
    let job = TrainJob {
        data: args.data.clone(),
        val: args.val.clone(),
        val_split: args.val_split,
        labels: args.labels.clone(),
        weights: args.weights.clone(),
        weights_path: weights,
        frames: args.frames,
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        seed: args.seed,
        run_dir: Some(run_dir),
        output: args.output.clone(),
        device: JobDevice::Resolved(device),
    };

    let cancel = interrupt_token();
    let progress: RefCell<Option<Progress>> = RefCell::new(None);
    let outcome = run_head_only(&job, &cancel, |event| match event {
        JobEvent::Summary {
            data,
            notes,
            summary,
            broken,
        } => {
            say(global, &format!("kineto: dataset {}", data.display()));
            for note in &notes {
                say(global, &format!("kineto: note: {note}"));
            }
            say(global, summary.to_text().trim_end());
            report_broken(global, &broken);
            let total = (summary.train + summary.val) as u64;
            *progress.borrow_mut() = Some(Progress::new(total, "clips", global.quiet));
        }
        JobEvent::Extract { done, path, .. } => {
            if let Some(p) = progress.borrow().as_ref() {
                p.update(done as u64, &path.display().to_string());
            }
        }
        JobEvent::Extracted {
            decoded,
            cached,
            elapsed_s,
            broken,
        } => {
            if let Some(p) = progress.borrow_mut().take() {
                p.finish();
            }
            let per_clip = if decoded > 0 {
                let ms = 1e3 * elapsed_s / decoded as f64;
                format!(" ({ms:.0} ms per clip)")
            } else {
                String::new()
            };
            say(
                global,
                &format!(
                    "kineto: features: {decoded} clips decoded{per_clip}, {cached} from the cache, {elapsed_s:.1} s"
                ),
            );
            report_broken(global, &broken);
        }
        JobEvent::Train(event) => {
            if args.json {
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
                        args.epochs,
                        100.0 * train_top1
                    ),
                );
            }
        }
        JobEvent::Report { text, .. } => say(global, text.trim_end()),
        JobEvent::Failed(_) | JobEvent::Cancelled => {}
    });
    if let Some(p) = progress.borrow_mut().take() {
        p.finish();
    }
    let outcome = outcome.map_err(fatal)?;
    if outcome.cancelled {
        return Err(Failure::interrupted());
    }
    let output = outcome.output.unwrap_or_default();
    say(
        global,
        &format!(
            "kineto: wrote {} (run folder {})",
            output.display(),
            outcome.run_dir.display()
        ),
    );
    Ok(())
}

fn fatal(e: TrainError) -> Failure {
    Failure::fatal(e)
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
