//! One full fine-tuning run from start to finish (`kineto train DATA` without `--head-only`),
//! parallel to [`run_head_only`](super::head_only_job::run_head_only) and sharing its pieces:
//! the data check and summary, the split, the run folder (`settings.json`, `metrics.jsonl`, the
//! report, `confusion.csv`), the [`JobEvent`]s, the warm-up + cosine schedule and the step of
//! [`FullTrainer`] (PaddleVideo's train-mode step, verified against Paddle). The pieces it
//! drives live apart: [`super::loader`] (decode workers and augmentation),
//! [`super::mixup`], [`super::seeds`], [`super::evaluate`], [`super::checkpoints`]
//! (start-weight checks, `latest`/`best`, resume) and [`super::teacher`] (DML / KD).
//!
//! - **Model**: the start checkpoint in its *training* form (BatchNorm layers, rep branches;
//!   a fused checkpoint is refused): PP-TSMv2, PP-TSM ResNet-50/101 or PP-TSM MobileNetV2/V3,
//!   with its fc replaced by a fresh one for the new classes (Paddle's `Linear` default:
//!   Xavier-uniform weight, zero bias; `ppTSMHead`'s N(0, 0.01²) for the ResNet; seeded),
//!   trained by PaddleVideo's recipe for that model ([`FullStepOptions::recipe`]: the same
//!   Momentum, schedule and L2 for all four configs; each model's decay exemptions and lr
//!   multipliers; the ResNet's label smoothing 0.1).
//! - **Data**: PaddleVideo's `PIPELINE.train` (fixtures README, "Training recipe"): one random
//!   frame per segment, `Scale(256)`, `MultiScaleCrop(256)`, `RandomCrop(224)`, `RandomFlip`,
//!   normalisation; with `size` < 224 every length is scaled by `size/224` (Scale and
//!   MultiScaleCrop to `round(size·256/224)`, RandomCrop to `size`). Validation: the test
//!   pipeline (middle frame of each segment, Scale, CenterCrop) at the same scale, run on the
//!   fused form of the current weights (eval-mode BatchNorm). Decode workers feed a bounded
//!   prefetch queue, so decoding overlaps the steps. The last short batch is kept (small sets
//!   would lose clips; PaddleVideo drops it).
//! - **Mixup** as configured (alpha 0.2, per batch), unless switched off.
//! - **Schedule**: [`WarmupCosine::recipe`] per iteration. Without `lr`, PaddleVideo's base lr
//!   0.01 for its global batch of 128 (8 GPUs x 16 clips) scaled linearly to the batch size,
//!   as its PP-TSM docs say: `lr = 0.01·B/128`, warm-up from half of it over 1/12 of the
//!   epochs.
//! - **Determinism**: the epoch's clip order, each clip's random choices and each batch's Mixup
//!   are functions of (seed, epoch, clip / batch), not of a stream, so a run resumed from a
//!   checkpoint (taken at an epoch end, or mid-epoch by time or on cancel) computes the same
//!   steps as an uninterrupted run with the same seed (the kill test: bit-identical weights).
//! - **Checkpoints** in the run folder ([`super::checkpoints`]): `latest` is the training-form
//!   weights (with the class names), the optimiser's f64 velocities and `latest.state.json`
//!   (epoch, batch, step, partial epoch sums, the files and their sha256), each checkpoint a
//!   new generation of files committed by renaming the state, so a crash at any instant
//!   leaves a whole one; written at every epoch end, after every
//!   [`TrainJob::checkpoint_minutes`] of training (at a step end) and when cancelled;
//!   `best.safetensors` by val top-1. The final model is
//!   `model.safetensors` in the fused form with the class names (what `kineto classify` runs).
//! - **Distillation** ([`super::spec::DistillJob`]): `Dml` trains a teacher (training form: PP-TSM
//!   ResNet-50 as in PaddleVideo's recipe, or another PP-TSMv2) with
//!   the student, both on the same mixed batch, by PaddleVideo's DML loss ([`super::trainer::dml_step`]; each
//!   model its own velocities, one schedule); the teacher is checkpointed with `latest` as
//!   `latest_teacher-<generation>.safetensors` + `.optim.bin` (named in the state), and
//!   resumed with it. `Kd` runs a frozen teacher (any form, PP-TSMv2 or ResNet-50, with the
//!   data's classes) through the fused inference [`crate::infer::engine::Engine`] and trains the student by
//!   [`super::trainer::kd_step`]. The step events carry each term (`ce`, `ce_teacher`, `dml` / `ce`, `kd`);
//!   `loss` is the total. Validation and the exported model are the student's.

use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::{FloatDType, TensorData};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;

use super::TrainError;
use super::checkpoints::{
    BEST, MODEL, RunSettings, RunState, Saver, check_teacher, file_sha256, is_complete,
    open_teacher_checkpoint, open_training_checkpoint, read_latest, read_settings, remove_latest,
    save_latest,
};
use super::data_check::{open_split, probe_and_report};
use super::evaluate::evaluate;
use super::loader::{ClipSpec, Loader, decode_workers, short_side_for};
use super::losses::Targets;
use super::metrics::{Evaluation, TrainEvent, argmax};
use super::mixup::mixup;
use super::model_file::start_model;
use super::optim::WarmupCosine;
use super::run_folder::{
    MetricsLog, REPORT, RunEnd, SETTINGS, check_fresh_run_dir, finish_run, prepare_run_dir,
    run_dir_of, write_run_file, write_settings,
};
use super::seeds::{TAG_CLIP, TAG_MIXUP, derive_seed, epoch_order};
use super::spec::{
    DataCheck, DistillMode, JobEvent, MIXUP_ALPHA, TrainJob, TrainOutcome, freeze_description,
    resolve_num_seg,
};
use super::teacher::{Distiller, distill_step, start_teacher};
use super::trainer::{FullStepOptions, FullTrainer};
use crate::checkpoint::file::open_checkpoint;
use crate::checkpoint::keys::Role;
use crate::model::{Arch, Form, Recognizer};
use crate::progress::CancelToken;
use crate::progress::panic_text;

/// Runs a full fine-tuning job (see the module doc). Every check that needs no decoding comes
/// before any decoding. Cancelling stops at the next step boundary (a step in flight ends
/// first; a batch being decoded is dropped) or in validation, commits `latest` (resumable
/// with [`super::checkpoints::resume_job`]) and returns an outcome with `cancelled` set.
pub fn run_full(
    job: &TrainJob,
    cancel: &CancelToken,
    mut on_event: impl FnMut(JobEvent),
) -> Result<TrainOutcome, TrainError> {
    let session = Instant::now();
    let job = &job.with_absolute_paths();
    job.validate_full()?;
    let (dataset, train, val) = open_split(job)?;
    let run_dir = run_dir_of(job)?;
    let weights = job.weights_path.clone();
    let checkpoint = open_training_checkpoint(&weights)?;
    let teacher_checkpoint = match &job.distill {
        Some(d) => Some(open_teacher_checkpoint(&d.teacher_path)?),
        None => None,
    };
    let num_seg = resolve_num_seg(job.frames, checkpoint.arch.num_seg, &weights)?;
    if let (Some(d), Some(t)) = (&job.distill, &teacher_checkpoint) {
        check_teacher(d, t, &dataset.classes, num_seg)?;
    }
    if !job.resume {
        check_fresh_run_dir(&run_dir, job.force)?;
    }
    prepare_run_dir(&run_dir)?;
    let mut recorded = job.clone();
    if let Some(d) = &mut recorded.distill {
        d.teacher_sha256 = file_sha256(&d.teacher_path)?;
    }
    let settings = RunSettings {
        job: recorded,
        weights_sha256: file_sha256(&weights)?,
        num_seg,
    };
    let is_dml = job.distill.as_ref().map(|d| d.mode) == Some(DistillMode::Dml);
    let resumed = if job.resume {
        let stored = read_settings(&run_dir)?;
        if stored.numbers() != settings.numbers() {
            return Err(TrainError::Target {
                path: run_dir.join(SETTINGS),
                problem: format!(
                    "this run was started with other settings ({}); resume it with its own",
                    first_difference(&stored.numbers(), &settings.numbers())
                ),
            });
        }
        let latest = read_latest(&run_dir, is_dml)?;
        // A run whose last epoch is saved and whose model and report are written has nothing
        // left to do.
        if latest.0.epoch >= job.epochs && is_complete(&run_dir) {
            return Err(TrainError::AlreadyComplete {
                path: run_dir,
                epochs: job.epochs,
            });
        }
        Some(latest)
    } else {
        // A forced new run starts clean: no earlier checkpoint may be resumed with its settings.
        remove_checkpoints(&run_dir)?;
        None
    };
    let device = job.device.resolve()?;
    let classes = dataset.classes.len();
    let outcome = |cancelled: bool, epochs_done: usize, best: Option<f64>| TrainOutcome {
        run_dir: run_dir.clone(),
        cancelled,
        model_path: None,
        output: None,
        epochs_done,
        best_val_top1: best,
        class_names: dataset.classes.clone(),
        num_seg,
    };
    if cancel.is_cancelled() {
        return Ok(outcome(true, 0, None));
    }

    // Broken clips: a quick probe of every clip, listed and skipped.
    let DataCheck {
        dataset,
        train,
        val,
        broken: probed_broken,
        summary,
    } = probe_and_report(job, dataset.clone(), train, val, &mut on_event)?;
    if cancel.is_cancelled() {
        // Nothing trained in this session: the last committed checkpoint stands.
        let done = resumed.as_ref().map_or(0, |(s, _)| s.epoch);
        let best = resumed.as_ref().and_then(|(s, _)| s.best_val_top1);
        return Ok(outcome(true, done, best));
    }

    // The model and the optimiser state.
    let open_latest = |file: &str| -> Result<Recognizer, TrainError> {
        let path = run_dir.join(file);
        let latest = open_checkpoint(&path, Role::Student)?;
        if latest.class_names.as_deref() != Some(dataset.classes.as_slice()) {
            return Err(TrainError::Classes {
                path,
                problem: format!(
                    "its classes are not the data's ({})",
                    dataset.classes.join(", ")
                ),
            });
        }
        Recognizer::from_store(&latest.store, &device.device)
            .map_err(|e| TrainError::model(&latest.path, e))
    };
    let (recognizer, teacher_model, mut state, velocity, teacher_velocity) = match resumed {
        Some((state, (velocity, teacher_velocity))) => {
            let files = state.files();
            let teacher = match &files.teacher {
                Some(file) if is_dml => Some(open_latest(file)?),
                _ => None,
            };
            (
                open_latest(&files.model)?,
                teacher,
                state,
                Some(velocity),
                teacher_velocity,
            )
        }
        None => {
            let teacher = match &teacher_checkpoint {
                Some(t) if is_dml => Some(start_teacher(t, &dataset.classes, job.seed, &device)?),
                _ => None,
            };
            (
                start_model(&checkpoint, classes, job.seed, &device)?,
                teacher,
                RunState::fresh(),
                None,
                None,
            )
        }
    };
    let arch = recognizer.arch;
    let options = FullStepOptions::recipe(arch.model);
    let mut trainer = FullTrainer::new(recognizer, FloatDType::F32, options)
        .map_err(|e| TrainError::model(&weights, e))?;
    trainer.set_freeze_stages(job.freeze_stages)?;
    let files = state.files();
    if let Some(velocity) = velocity {
        trainer
            .set_velocities(velocity)
            .map_err(|e| TrainError::model(run_dir.join(&files.optim), e))?;
    }
    let teacher_arch = teacher_model.as_ref().map(|t| t.arch);
    let mut distiller = Distiller::new(
        job.distill.as_ref(),
        teacher_model,
        teacher_velocity,
        &run_dir.join(files.teacher_optim.as_deref().unwrap_or_default()),
        teacher_checkpoint.as_ref(),
        &device,
    )?;
    drop(teacher_checkpoint);
    let mut broken = probed_broken;
    for b in &state.broken {
        if !broken.iter().any(|(p, _)| *p == b.0) {
            broken.push(b.clone());
        }
    }
    if let Some(lr) = job.new_lr {
        record_lr_change(&run_dir, lr, state.step, state.epoch)?;
    }
    let schedule = WarmupCosine::recipe(job.epochs, job.batch_size, job.new_lr.or(job.lr));
    let mut log = if job.resume {
        let (epoch, step) = (state.epoch, state.step);
        let (log, history) = MetricsLog::resume(&run_dir, |v| match v["event"].as_str() {
            Some("step") => v["step"].as_u64().is_some_and(|s| s as usize <= step),
            Some("epoch") => v["epoch"].as_u64().is_some_and(|e| e as usize <= epoch),
            _ => false,
        })?;
        on_event(JobEvent::History(history));
        log
    } else {
        let settings_json = json!({
            "mode": "full",
            "job": settings,
            "device": format!("{:?}", device),
            "dtype": "f32",
            "schedule": schedule,
            "mixup_alpha": if job.mixup { Some(MIXUP_ALPHA) } else { None },
            "short_side": short_side_for(job.size),
            "optimizer": {"momentum": 0.9, "nesterov": true, "weight_decay": 1e-4},
            "model": arch.model.as_str(),
            "label_smoothing": options.label_smoothing,
            "distill_loss": match &distiller {
                Distiller::None => serde_json::Value::Null,
                Distiller::Dml { weights, .. } => json!({
                    "mode": "dml",
                    "total": "ce_student·CE(student) + ce_teacher·CE(teacher) + dml·symmetric KL",
                    "weights": {
                        "ce_student": weights.ce_student,
                        "ce_teacher": weights.ce_teacher,
                        "dml": weights.dml,
                    },
                }),
                Distiller::Kd { temperature, weights, .. } => json!({
                    "mode": "kd",
                    "total": "ce·CE(student) + kd·T²·KL(teacher_T || student_T)",
                    "weights": {"ce": weights.ce, "kd": weights.kd},
                    "temperature": temperature,
                }),
            },
        });
        write_settings(&run_dir, settings_json, &dataset.classes, &summary, &broken)?;
        let labels_text = dataset.classes.join("\n") + "\n";
        write_run_file(&run_dir, "labels.txt", labels_text.as_bytes())?;
        MetricsLog::create(&run_dir)?
    };
    let saver = Saver {
        run_dir: &run_dir,
        arch: Arch {
            form: Form::Training,
            ..arch
        },
        class_names: &dataset.classes,
        weights: &weights,
        weights_sha256: &settings.weights_sha256,
        data: &job.data,
        num_seg,
        parent: checkpoint.meta.as_ref().map(|m| m.provenance.clone()),
    };
    let teacher_sha256 = settings
        .job
        .distill
        .as_ref()
        .map(|d| d.teacher_sha256.clone())
        .unwrap_or_default();
    let teacher_saver = match (&job.distill, teacher_arch) {
        (Some(d), Some(arch)) => Some(Saver {
            run_dir: &run_dir,
            arch: Arch {
                form: Form::Training,
                ..arch
            },
            class_names: &dataset.classes,
            weights: &d.teacher_path,
            weights_sha256: &teacher_sha256,
            data: &job.data,
            num_seg,
            parent: None,
        }),
        _ => None,
    };
    let save = |trainer: &FullTrainer, distiller: &Distiller, state: &mut RunState| {
        let teacher = teacher_saver.as_ref().zip(distiller.dml_teacher());
        save_latest(&saver, trainer, teacher, state)
    };

    let spec = ClipSpec {
        num_seg,
        size: job.size,
        short: short_side_for(job.size),
    };
    let batch = job.batch_size;
    let iterations = train.len().div_ceil(batch);
    let workers = decode_workers(device.threads);
    let prior_elapsed = state.elapsed_s;
    let elapsed = |session: &Instant| prior_elapsed + session.elapsed().as_secs_f64();
    let mut session_clips = 0usize;
    let mut last_eval: Option<Evaluation> = None;
    let mut log_error = None;
    let mut emit = |event: TrainEvent, on_event: &mut dyn FnMut(JobEvent)| {
        if let Err(e) = log.write(&event) {
            log_error.get_or_insert(e);
        }
        on_event(JobEvent::Train(event));
    };

    let checkpoint_every = job.checkpoint_interval();
    let mut last_checkpoint = Instant::now();
    while state.epoch < job.epochs {
        let epoch = state.epoch;
        let order = epoch_order(train.len(), job.seed, epoch);
        let first = state.batch.min(iterations);
        let clips: Vec<(PathBuf, Option<u64>)> = order
            .iter()
            .skip(first * batch)
            .map(|&i| {
                let seed = derive_seed(job.seed, &[TAG_CLIP, epoch as u64, i as u64]);
                (train[i].path.clone(), Some(seed))
            })
            .collect();
        let mut loader = Loader::spawn(clips, spec, workers, batch.max(2))?;
        for b in first..iterations {
            cancel.wait_while_paused();
            if cancel.is_cancelled() {
                drop(loader);
                state.batch = b;
                state.elapsed_s = elapsed(&session);
                state.broken = broken.clone();
                save(&trainer, &distiller, &mut state)?;
                return Ok(outcome(true, epoch, state.best_val_top1));
            }
            let members = &order[b * batch..((b + 1) * batch).min(order.len())];
            let mut data = Vec::with_capacity(members.len() * spec.values());
            let mut labels = Vec::with_capacity(members.len());
            let broken_before = broken.len();
            for &i in members {
                if cancel.is_cancelled() {
                    // Cancelled while the batch decodes: the batch is not trained, and the
                    // checkpoint is of where the run stands (before it).
                    drop(loader);
                    broken.truncate(broken_before);
                    state.batch = b;
                    state.elapsed_s = elapsed(&session);
                    state.broken = broken.clone();
                    save(&trainer, &distiller, &mut state)?;
                    return Ok(outcome(true, epoch, state.best_val_top1));
                }
                match loader.next() {
                    Some(Ok(clip)) if clip.len() == spec.values() => {
                        data.extend(clip);
                        labels.push(train[i].label);
                    }
                    Some(Ok(clip)) => broken.push((
                        train[i].path.clone(),
                        format!("prepared {} values, expected {}", clip.len(), spec.values()),
                    )),
                    Some(Err(e)) => {
                        if !broken.iter().any(|(p, _)| *p == train[i].path) {
                            broken.push((train[i].path.clone(), e));
                        }
                    }
                    None => {
                        broken.push((train[i].path.clone(), "the decode queue ended early".into()))
                    }
                }
            }
            let n = labels.len();
            if n == 0 {
                state.batch = b + 1;
                continue;
            }
            let targets = if job.mixup {
                let mut rng = StdRng::seed_from_u64(derive_seed(
                    job.seed,
                    &[TAG_MIXUP, epoch as u64, b as u64],
                ));
                mixup(&mut data, &labels, MIXUP_ALPHA, &mut rng)
            } else {
                Targets::Hard(labels.clone())
            };
            let lr = schedule.lr(epoch as f64 + b as f64 / iterations as f64);
            let size = spec.size as usize;
            let dims = [n, num_seg, 3, size, size];
            let teacher_logits = distiller.kd_logits(&data, dims)?;
            let clips = TensorData::new(data, dims);
            let stepped = device.install(|| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    distill_step(
                        &mut trainer,
                        &mut distiller,
                        teacher_logits.as_deref(),
                        clips,
                        &targets,
                        lr,
                    )
                }))
            });
            let outcome_step = match stepped {
                Ok(Ok(o)) => o,
                Ok(Err(e)) => return Err(e.into()),
                Err(p) => {
                    return Err(TrainError::Crashed {
                        what: "the training step",
                        message: panic_text(p.as_ref()),
                    });
                }
            };
            if !outcome_step.loss.is_finite() {
                // Nothing of this step is saved: `latest` stays the last good checkpoint.
                return Err(TrainError::NonFiniteLoss {
                    step: state.step + 1,
                    epoch: epoch + 1,
                    lr,
                });
            }
            let logits: Vec<f32> = outcome_step.logits.iter().map(|&v| v as f32).collect();
            let correct = logits
                .chunks_exact(classes)
                .zip(&labels)
                .filter(|(row, y)| argmax(row) == **y)
                .count();
            state.loss_sum += outcome_step.loss * n as f64;
            state.correct += correct;
            state.seen += n;
            state.step += 1;
            state.batch = b + 1;
            session_clips += n;
            let terms = outcome_step
                .terms
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect();
            let session_s = session.elapsed().as_secs_f64();
            emit(
                TrainEvent::Step {
                    epoch: epoch + 1,
                    step: state.step,
                    loss: outcome_step.loss,
                    terms,
                    lr,
                    clips_per_s: session_clips as f64 / session_s.max(1e-9),
                    elapsed_s: elapsed(&session),
                },
                &mut on_event,
            );
            // A checkpoint once `checkpoint_every` has passed since the last one (unless the
            // epoch's own follows at once: no validation in between).
            let epoch_end_next = b + 1 == iterations && val.is_empty();
            if !epoch_end_next && last_checkpoint.elapsed() >= checkpoint_every {
                state.elapsed_s = elapsed(&session);
                state.broken = broken.clone();
                save(&trainer, &distiller, &mut state)?;
                last_checkpoint = Instant::now();
            }
        }
        drop(loader);
        if state.seen == 0 {
            return Err(TrainError::NoTrainingClips);
        }

        // Validation (the fused form of the current weights).
        let val_eval = if val.is_empty() {
            None
        } else {
            match evaluate(&trainer, &device, &val, spec, batch, cancel, &mut broken)? {
                Some(e) => Some(e),
                None => {
                    state.elapsed_s = elapsed(&session);
                    state.broken = broken.clone();
                    save(&trainer, &distiller, &mut state)?;
                    return Ok(outcome(true, epoch, state.best_val_top1));
                }
            }
        };
        let seen = state.seen as f64;
        emit(
            TrainEvent::Epoch {
                epoch: epoch + 1,
                train_loss: state.loss_sum / seen,
                train_top1: state.correct as f64 / seen,
                val_loss: val_eval.as_ref().map(|v| v.loss),
                val_top1: val_eval.as_ref().map(|v| v.top1),
                val_top5: val_eval.as_ref().map(|v| v.top5),
                elapsed_s: elapsed(&session),
            },
            &mut on_event,
        );
        state.epoch = epoch + 1;
        state.batch = 0;
        state.loss_sum = 0.0;
        state.correct = 0;
        state.seen = 0;
        if let Some(v) = &val_eval
            && state.best_val_top1.is_none_or(|b| v.top1 > b)
        {
            state.best_val_top1 = Some(v.top1);
            saver.write(&trainer, Form::Training, state.epoch, &run_dir.join(BEST))?;
        }
        state.elapsed_s = elapsed(&session);
        state.broken = broken.clone();
        save(&trainer, &distiller, &mut state)?;
        last_checkpoint = Instant::now();
        last_eval = val_eval;
    }
    if let Some(e) = log_error.take() {
        return Err(e);
    }

    // The final model (fused, with class names), the confusion matrix, the report.
    let evaluation = match last_eval {
        Some(e) => e,
        None => {
            let set = if val.is_empty() { &train } else { &val };
            match evaluate(&trainer, &device, set, spec, batch, cancel, &mut broken)? {
                Some(e) => e,
                None => return Ok(outcome(true, state.epoch, state.best_val_top1)),
            }
        }
    };
    let model_path = run_dir.join(MODEL);
    saver.write(&trainer, Form::Fused, state.epoch, &model_path)?;
    if let Some(out) = &job.output {
        saver.write(&trainer, Form::Fused, state.epoch, out)?;
    }
    let mut preface = String::new();
    if let Some(line) = freeze_description(job.freeze_stages) {
        preface.push_str(&line);
        preface.push('\n');
    }
    if val.is_empty() {
        preface.push_str(
            "no validation clips: the numbers below are on the training set (test pipeline)\n",
        );
    }
    let output = finish_run(
        job,
        RunEnd {
            run_dir: &run_dir,
            classes: &dataset.classes,
            evaluation: &evaluation,
            preface,
            model_path: &model_path,
            epochs: state.epoch,
            best_val_top1: state.best_val_top1,
            elapsed_s: elapsed(&session),
        },
        &mut log,
        &mut on_event,
    )?;
    Ok(TrainOutcome {
        model_path: Some(model_path),
        output: Some(output),
        ..outcome(false, state.epoch, state.best_val_top1)
    })
}

/// Removes an earlier run's checkpoints, model and report from `run_dir` (a forced new run).
fn remove_checkpoints(run_dir: &std::path::Path) -> Result<(), TrainError> {
    remove_latest(run_dir)?;
    for name in [BEST, MODEL, REPORT, "confusion.csv"] {
        let path = run_dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(TrainError::io(path, e)),
        }
    }
    Ok(())
}

/// A resumed run's new base learning rate: `job.lr` becomes it and `lr_changes` records where
/// it changed, in `settings.json`.
fn record_lr_change(
    run_dir: &std::path::Path,
    lr: f64,
    step: usize,
    epoch: usize,
) -> Result<(), TrainError> {
    let path = run_dir.join(SETTINGS);
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
    let mut settings: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| TrainError::Encode {
            path: path.clone(),
            source,
        })?;
    let previous = settings["job"]["lr"].clone();
    settings["job"]["lr"] = json!(lr);
    let change = json!({"step": step, "epoch": epoch, "from": previous, "to": lr});
    match settings["lr_changes"].as_array_mut() {
        Some(changes) => changes.push(change),
        None => settings["lr_changes"] = json!([change]),
    }
    let text = serde_json::to_string_pretty(&settings).map_err(|source| TrainError::Encode {
        path: path.clone(),
        source,
    })?;
    write_run_file(run_dir, SETTINGS, text.as_bytes())?;
    Ok(())
}

/// `key = stored vs given` of the first field that differs.
fn first_difference(stored: &serde_json::Value, given: &serde_json::Value) -> String {
    if let (Some(a), Some(b)) = (stored.as_object(), given.as_object()) {
        for (k, v) in a {
            if b.get(k) != Some(v) {
                let other = b.get(k).cloned().unwrap_or(serde_json::Value::Null);
                return format!("{k} = {v}, not {other}");
            }
        }
    }
    "settings differ".into()
}
