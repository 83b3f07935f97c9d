//! `kineto train DATA [--head-only] [--weights W] [--epochs N] [--batch-size B] [--lr LR]
//! [--frames 8|16] [--size S] [--no-mixup] [--val DATA | --val-split F] [--labels FILE]
//! [--output OUT] [--run-dir DIR [--force]] [--resume DIR [--lr LR]] [--seed S] [--json]
//! [--distill dml|kd --teacher W [--temperature T] [--kd-weight A] [--dml-weight W]] [--freeze-stages N]
//! [--checkpoint-minutes M]`
//!
//! Full fine-tuning of PP-TSMv2, PP-TSM ResNet-50/101 or PP-TSM MobileNetV2/V3 (PaddleVideo's
//! recipe for the model: training-form model, train-mode BatchNorm, Mixup, Momentum with
//! Nesterov and L2 with the model's exemptions and lr multipliers, the ResNet's label
//! smoothing, warm-up and cosine), or with `--head-only` a new
//! classifier on the frozen backbone's cached features. The dataset summary and progress go
//! to stderr; `--json` prints the run's events (JSON Lines) on stdout. The run folder gets
//! `settings.json`, `metrics.jsonl`, `model.safetensors`, `confusion.csv` and `report.txt`;
//! full fine-tuning adds the `latest` and `best` checkpoints, head-only its feature cache.
//! Full fine-tuning saves `latest` at every epoch end, every `--checkpoint-minutes` (5) and on
//! Ctrl-C (then exits 130); `--resume RUN_DIR` continues.
//! `--distill` adds a teacher to full fine-tuning: DML (PaddleVideo's PP-TSMv2 recipe, the
//! teacher trained too and saved as `latest_teacher`) or classic KD (frozen teacher).
//! `--freeze-stages N` freezes the stem and the first N backbone stages in full fine-tuning.

use std::cell::RefCell;
use std::path::PathBuf;

use anyhow::anyhow;
use kineto::progress::Notify;
use kineto::train::TrainError;
use kineto::train::checkpoints::resume_job;
use kineto::train::metrics::TrainEvent;
use kineto::train::run_folder::default_run_dir_for;
use kineto::train::service::{TrainRequest, TrainUpdate, TrainingService};
use kineto::train::spec::{
    CHECKPOINT_MINUTES, DML_WEIGHT, DistillJob, DistillMode, FULL_SIZE, JobDevice, JobEvent,
    KD_TEMPERATURE, KD_WEIGHT, TrainJob, check_checkpoint_minutes, same_path,
};

use super::progress::Progress;
use super::{CliResult, Failure, GlobalArgs, interrupt_token, resolve_device, resolve_weights};

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// A folder of class folders, or a PaddleVideo list file (`path label_id` per line).
    /// Optional with --resume.
    #[arg(required_unless_present = "resume")]
    pub data: Option<PathBuf>,
    /// Freeze the backbone: cache its features once, train only a new classifier (fast).
    /// Without it: full fine-tuning of every layer (needs training-form weights).
    #[arg(long)]
    pub head_only: bool,
    /// Start weights: a catalog name or a .pdparams / .safetensors file (full fine-tuning:
    /// the training form, not a fused export) [default: PPTSMv2_k400_16f_dml_student].
    #[arg(long)]
    pub weights: Option<String>,
    /// [default: 10]
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Clips per step [default: 4, head-only 16].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Base learning rate of the warm-up + cosine schedule (warm-up from half of it over the
    /// first 1/12 of the epochs). Default: full fine-tuning 0.01·B/128, PaddleVideo's 0.01
    /// for its 8 GPUs x 16 clips scaled linearly to the batch size B as its docs say;
    /// head-only 0.01. With --resume: the new base learning rate from the checkpoint on
    /// (recorded in the run's settings.json), e.g. after a loss that was not a finite number.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Frames per clip (num_seg); default: what the checkpoint's attention fixes, else 8.
    #[arg(long)]
    pub frames: Option<usize>,
    /// Full fine-tuning: the training crop in pixels (PaddleVideo: 224; Scale and
    /// MultiScaleCrop shrink with it). Smaller is faster; `classify` still runs at 224.
    #[arg(long, value_name = "PIXELS")]
    pub size: Option<u32>,
    /// Full fine-tuning: no Mixup (PaddleVideo mixes every batch, alpha 0.2).
    #[arg(long)]
    pub no_mixup: bool,
    /// Continue the full fine-tuning run in this run folder from its `latest` checkpoint,
    /// with the run's own settings (same numbers as an uninterrupted run).
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["head_only", "run_dir"])]
    pub resume: Option<PathBuf>,
    /// A separate validation set (class folders or list file).
    #[arg(long, conflicts_with = "val_split")]
    pub val: Option<PathBuf>,
    /// Fraction of each class held out for validation (seeded) [default: 0.1].
    #[arg(long)]
    pub val_split: Option<f64>,
    /// Class names of a list file (or the class order of class folders).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Also write the model here (it is always written into the run folder).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// The run folder (default: runs/<UTC time>-<DATA name> beside the weights cache, in
    /// Kineto's data folder). A folder that holds an earlier run is refused unless --force.
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Write a new run into a --run-dir that holds an earlier one: full fine-tuning replaces
    /// its checkpoints, model and report; head-only reuses its feature cache.
    #[arg(long, conflicts_with = "resume")]
    pub force: bool,
    /// [default: 0]
    #[arg(long)]
    pub seed: Option<u64>,
    /// JSON Lines events on stdout.
    #[arg(long)]
    pub json: bool,
    /// Full fine-tuning with a teacher (needs --teacher). `dml`: PaddleVideo's PP-TSMv2 DML,
    /// student and teacher trained together, each by its own Momentum state at the same lr:
    /// loss = CE(student) + CE(teacher) + symmetric KL of their softmaxes (weights 1; with
    /// Mixup each CE takes the mixed labels). `kd`: classic distillation from a frozen teacher
    /// (eval mode): loss = (1 - A)·CE(student) + A·T²·KL(teacher_T || student_T).
    #[arg(long, value_enum, value_name = "MODE")]
    pub distill: Option<DistillArg>,
    /// The --distill teacher: a catalog name or a .pdparams / .safetensors file (of a DML
    /// .pdparams, its Teacher). dml: PP-TSMv2 or PP-TSM ResNet-50 (PaddleVideo's teacher) in the
    /// training form (its classifier is replaced for the data's classes unless it already has
    /// them by name); kd: PP-TSMv2 or PP-TSM
    /// ResNet-50, any form, already trained on the data's classes (e.g. a kineto train model).
    #[arg(long, value_name = "WEIGHTS")]
    pub teacher: Option<String>,
    /// --distill kd: the softmax temperature T [default: 4].
    #[arg(long, value_name = "T")]
    pub temperature: Option<f64>,
    /// --distill kd: the weight A of the KD term, in [0, 1] [default: 0.5].
    #[arg(long, value_name = "A")]
    pub kd_weight: Option<f64>,
    /// --distill dml: the weight W of the symmetric KL term, >= 0 (both cross-entropies weigh
    /// 1; PaddleVideo's recipe is 1) [default: 1].
    #[arg(long, value_name = "W")]
    pub dml_weight: Option<f64>,
    /// Full fine-tuning: freeze the stem and the first N of the backbone's 4 stages
    /// (PP-TSMv2: stages.0 to stages.N-1, from N = 3 on also the 16-frame temporal attention,
    /// which runs before stages.2; ResNet: bb_0_* to bb_{N-1}_*; MobileNets: their blocks
    /// grouped by resolution, 1/4 to 1/32). Frozen layers get no updates and no weight decay,
    /// their BatchNorm uses and keeps its running statistics (eval mode), and the backward
    /// stops before them, so steps are faster. 0 trains everything; 4 trains only what follows
    /// the last stage (PP-TSMv2's last_conv, the MobileNets' last convs, the classifier). With
    /// --distill only the student is frozen [default: 0].
    #[arg(long, value_name = "N")]
    pub freeze_stages: Option<usize>,
    /// Full fine-tuning: save the `latest` checkpoint after at most this many minutes of
    /// training (at the next step end), besides every epoch end and Ctrl-C; a positive number,
    /// fractions allowed. Also with --resume [default: 5].
    #[arg(long, value_name = "M")]
    pub checkpoint_minutes: Option<f64>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DistillArg {
    Dml,
    Kd,
}

fn say(global: &GlobalArgs, text: &str) {
    if !global.quiet {
        eprintln!("{text}");
    }
}

/// The distillation options' checks that need no file (one-line errors).
fn check_distill_args(args: &TrainArgs) -> Result<(), Failure> {
    let fail = |text: &str| Err(Failure::fatal(anyhow!("{text}")));
    let kd_only = args.temperature.is_some() || args.kd_weight.is_some();
    match args.distill {
        Some(_) if args.head_only => fail(
            "--distill needs full fine-tuning (the teacher is run on every training batch); \
             it cannot be used with --head-only",
        ),
        Some(_) if args.resume.is_some() => {
            fail("--resume continues a run with its own settings; leave out --distill")
        }
        Some(_) if args.teacher.is_none() => fail("--distill needs --teacher WEIGHTS"),
        Some(DistillArg::Dml) if kd_only => {
            fail("--temperature and --kd-weight apply to --distill kd, not dml")
        }
        Some(DistillArg::Kd) if args.dml_weight.is_some() => {
            fail("--dml-weight applies to --distill dml, not kd")
        }
        None if args.teacher.is_some() || kd_only || args.dml_weight.is_some() => {
            fail("--teacher, --temperature, --kd-weight and --dml-weight need --distill dml|kd")
        }
        _ => {
            if let Some(t) = args.temperature
                && !(t.is_finite() && t > 0.0)
            {
                return fail("--temperature must be a positive number");
            }
            if let Some(a) = args.kd_weight
                && !(0.0..=1.0).contains(&a)
            {
                return fail("--kd-weight must be in [0, 1]");
            }
            if let Some(w) = args.dml_weight
                && !(w.is_finite() && w >= 0.0)
            {
                return fail("--dml-weight must be a number >= 0");
            }
            Ok(())
        }
    }
}

/// `--freeze-stages`' checks (one-line errors).
fn check_freeze_args(args: &TrainArgs) -> Result<(), Failure> {
    let Some(n) = args.freeze_stages else {
        return Ok(());
    };
    let max = kineto::train::trainer::MAX_FREEZE_STAGES;
    let text = if args.head_only {
        "--freeze-stages applies to full fine-tuning; --head-only already freezes the whole \
         backbone"
            .to_string()
    } else if args.resume.is_some() {
        "--resume continues a run with its own settings; leave out --freeze-stages".to_string()
    } else if n > max {
        format!("--freeze-stages takes 0 to {max} stages, not {n}")
    } else {
        return Ok(());
    };
    Err(Failure::fatal(anyhow!("{text}")))
}

/// The options a resumed run takes from its own settings: given with --resume, they are refused
/// rather than ignored.
fn check_resume_args(args: &TrainArgs) -> Result<(), Failure> {
    if args.resume.is_none() {
        return Ok(());
    }
    let given: Vec<&str> = [
        ("--weights", args.weights.is_some()),
        ("--epochs", args.epochs.is_some()),
        ("--batch-size", args.batch_size.is_some()),
        ("--frames", args.frames.is_some()),
        ("--size", args.size.is_some()),
        ("--no-mixup", args.no_mixup),
        ("--val", args.val.is_some()),
        ("--val-split", args.val_split.is_some()),
        ("--labels", args.labels.is_some()),
        ("--output", args.output.is_some()),
        ("--seed", args.seed.is_some()),
    ]
    .into_iter()
    .filter_map(|(flag, set)| set.then_some(flag))
    .collect();
    if given.is_empty() {
        return Ok(());
    }
    Err(Failure::fatal(anyhow!(
        "--resume continues a run with its own settings; leave out {} (a resume takes DATA, \
         --lr, --json and the global options)",
        given.join(", ")
    )))
}

pub fn run(args: &TrainArgs, global: &GlobalArgs) -> CliResult {
    check_resume_args(args)?;
    check_distill_args(args)?;
    check_freeze_args(args)?;
    if args.head_only && (args.size.is_some() || args.no_mixup) {
        return Err(Failure::fatal(anyhow!(
            "--size and --no-mixup apply to full fine-tuning, not --head-only"
        )));
    }
    if args.head_only && args.checkpoint_minutes.is_some() {
        return Err(Failure::fatal(anyhow!(
            "--checkpoint-minutes applies to full fine-tuning, not --head-only"
        )));
    }
    let checkpoint_minutes = args.checkpoint_minutes.unwrap_or(CHECKPOINT_MINUTES);
    check_checkpoint_minutes(checkpoint_minutes).map_err(fatal)?;
    let batch_size = args
        .batch_size
        .unwrap_or(if args.head_only { 16 } else { 4 });
    let epochs = args.epochs.unwrap_or(10);
    let val_split = args.val_split.unwrap_or(0.1);
    if epochs == 0 || batch_size == 0 {
        return Err(Failure::fatal(anyhow!(
            "--epochs and --batch-size must be at least 1"
        )));
    }
    if let Some(lr) = args.lr
        && !(lr.is_finite() && lr > 0.0)
    {
        return Err(Failure::fatal(anyhow!("--lr must be a positive number")));
    }
    if !(0.0..1.0).contains(&val_split) {
        return Err(Failure::fatal(anyhow!("--val-split must be in [0, 1)")));
    }
    let job = match &args.resume {
        Some(run_dir) => {
            let device = resolve_device(global)?;
            let mut job = resume_job(run_dir, JobDevice::Resolved(device)).map_err(fatal)?;
            job.new_lr = args.lr;
            job.checkpoint_minutes = checkpoint_minutes;
            if let Some(data) = &args.data
                && !same_path(data, &job.data)
            {
                return Err(Failure::fatal(anyhow!(
                    "{}: this run trains on {}, not {}",
                    run_dir.display(),
                    job.data.display(),
                    data.display()
                )));
            }
            say(
                global,
                &format!(
                    "kineto: resuming {} with its own settings ({} epochs, batch {}, size {}, seed {}{}{}{})",
                    run_dir.display(),
                    job.epochs,
                    job.batch_size,
                    job.size,
                    job.seed,
                    if job.mixup { "" } else { ", no Mixup" },
                    if job.freeze_stages > 0 {
                        format!(", --freeze-stages {}", job.freeze_stages)
                    } else {
                        String::new()
                    },
                    match &job.distill {
                        Some(d) =>
                            format!(", --distill {} --teacher {}", d.mode.as_str(), d.teacher),
                        None => String::new(),
                    }
                ),
            );
            job
        }
        None => {
            let data = args
                .data
                .clone()
                .ok_or_else(|| Failure::fatal(anyhow!("DATA is required")))?;
            // The library checks the data and the run folder before any decoding; the
            // weights and the device are resolved here (a catalog name may download).
            let run_dir = match &args.run_dir {
                Some(d) => d.clone(),
                None => default_run_dir_for(&data, global.cache_dir.as_deref())
                    .map_err(Failure::fatal)?,
            };
            let weights_name = args
                .weights
                .clone()
                .unwrap_or_else(|| kineto::weights::DEFAULT_WEIGHTS.to_string());
            let weights = resolve_weights(&weights_name, global)?.path;
            let distill = match (args.distill, &args.teacher) {
                (Some(mode), Some(teacher)) => Some(DistillJob {
                    mode: match mode {
                        DistillArg::Dml => DistillMode::Dml,
                        DistillArg::Kd => DistillMode::Kd,
                    },
                    teacher: teacher.clone(),
                    teacher_path: resolve_weights(teacher, global)?.path,
                    teacher_sha256: String::new(),
                    temperature: args.temperature.unwrap_or(KD_TEMPERATURE),
                    kd_weight: args.kd_weight.unwrap_or(KD_WEIGHT),
                    dml_weight: args.dml_weight.unwrap_or(DML_WEIGHT),
                }),
                _ => None,
            };
            let device = resolve_device(global)?;
            TrainJob {
                data,
                val: args.val.clone(),
                val_split,
                labels: args.labels.clone(),
                weights: weights_name,
                weights_path: weights,
                frames: args.frames,
                epochs,
                batch_size,
                lr: args.lr,
                seed: args.seed.unwrap_or(0),
                run_dir: Some(run_dir),
                output: args.output.clone(),
                device: JobDevice::Resolved(device),
                size: args.size.unwrap_or(FULL_SIZE),
                mixup: !args.no_mixup,
                resume: false,
                new_lr: None,
                force: args.force,
                distill,
                freeze_stages: args.freeze_stages.unwrap_or(0),
                checkpoint_minutes,
            }
        }
    };

    let cancel = interrupt_token();
    let progress: RefCell<Option<Progress>> = RefCell::new(None);
    let epochs = job.epochs;
    let on_event = |event: JobEvent| match event {
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
            let total = if args.head_only {
                (summary.train + summary.val) as u64
            } else {
                (epochs * summary.train.div_ceil(job.batch_size)) as u64
            };
            let what = if args.head_only { "clips" } else { "steps" };
            *progress.borrow_mut() = Some(Progress::new(total, what, global.quiet));
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
            if let TrainEvent::Step {
                epoch,
                step,
                loss,
                lr,
                clips_per_s,
                ..
            } = &event
                && !args.head_only
                && let Some(p) = progress.borrow().as_ref()
            {
                p.update(
                    *step as u64,
                    &format!(
                        "epoch {epoch}/{epochs} loss {loss:.4} lr {lr:.2e} {clips_per_s:.2} clips/s"
                    ),
                );
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
                        "kineto: epoch {epoch}/{epochs}: train loss {train_loss:.4}, train top-1 {:.1}%{val} ({elapsed_s:.2} s)",
                        100.0 * train_top1
                    ),
                );
            }
        }
        JobEvent::Report { text, .. } => say(global, text.trim_end()),
        // The history is in metrics.jsonl already; the terminal shows the new steps.
        JobEvent::History(_) => {}
    };
    let request = if args.head_only {
        TrainRequest::HeadOnly(Box::new(job.clone()))
    } else {
        TrainRequest::Full(Box::new(job.clone()))
    };
    let outcome = follow(
        TrainingService::start(request, cancel, Notify::none()).map_err(fatal)?,
        on_event,
    );
    if let Some(p) = progress.borrow_mut().take() {
        p.finish();
    }
    let outcome = outcome.map_err(fatal)?;
    if outcome.cancelled {
        if !args.head_only {
            say(
                global,
                &format!(
                    "kineto: saved the latest checkpoint; continue with: kineto train --resume {}",
                    outcome.run_dir.display()
                ),
            );
        }
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

/// Hands the service's events to `on_event` until the job's outcome.
fn follow(
    service: TrainingService,
    mut on_event: impl FnMut(JobEvent),
) -> Result<kineto::train::spec::TrainOutcome, TrainError> {
    while let Some(update) = service.wait_update() {
        match update {
            TrainUpdate::Started(..) => {}
            TrainUpdate::Event(event) => on_event(event),
            TrainUpdate::Finished(outcome) => return outcome,
        }
    }
    Err(TrainError::Crashed {
        what: "the training job",
        message: "its thread ended without an outcome".into(),
    })
}

/// Exit 1 for a weights file that cannot be read as a checkpoint (the same rule in every
/// command), else 2: training that cannot start or go on is a usage or environment error.
fn fatal(e: TrainError) -> Failure {
    match &e {
        TrainError::Checkpoint(_) => Failure::input(e),
        TrainError::Weights(w) if w.is_input_error() => Failure::input(e),
        _ => Failure::fatal(e),
    }
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
