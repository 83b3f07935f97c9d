//! One head-only training run from start to finish: check the options and the data, prepare
//! the run folder, load the frozen backbone, probe the clips (broken ones listed and skipped),
//! cache the features, train the classifier, write the model, the confusion matrix and the
//! report. Everything it has to say goes out as [`JobEvent`]s; it never prints.
use std::time::Instant;

use serde_json::json;

use super::TrainError;
use super::data_check::{open_split, probe_and_report};
use super::features::{cache_key, extract_features};
use super::head::{HeadOnlyOptions, train_head};
use super::model_file::{ModelOrigin, write_model};
use super::run_folder::{
    MetricsLog, RunEnd, check_fresh_run_dir, finish_run, prepare_run_dir, run_dir_of,
    write_run_file, write_settings,
};
use super::spec::{DataCheck, JobEvent, TrainJob, TrainOutcome, resolve_num_seg};
use crate::checkpoint::file::open_checkpoint;
use crate::checkpoint::keys::Role;
use crate::infer::engine::Engine;
use crate::model::Form;
use crate::progress::CancelToken;

/// Runs a head-only job (see the module doc). Every check that needs no decoding comes before
/// any decoding. Cancelling stops between clips and epochs and returns an outcome with
/// `cancelled` set (and no model).
pub fn run_head_only(
    job: &TrainJob,
    cancel: &CancelToken,
    mut on_event: impl FnMut(JobEvent),
) -> Result<TrainOutcome, TrainError> {
    let start = Instant::now();
    let job = &job.with_absolute_paths();
    job.validate()?;
    if job.distill.is_some() {
        return Err(TrainError::bad_option(
            "--distill",
            "needs full fine-tuning; it cannot be used with head-only training",
        ));
    }
    let (dataset, train, val) = open_split(job)?;
    let run_dir = run_dir_of(job)?;
    check_fresh_run_dir(&run_dir, job.force)?;
    prepare_run_dir(&run_dir)?;
    let weights = job.weights_path.clone();
    let device = job.device.resolve()?;
    let engine = Engine::load(&weights, Role::Student, Form::Fused, device)?;
    let checkpoint = open_checkpoint(&weights, Role::Student)?;
    let num_seg = resolve_num_seg(job.frames, engine.model.arch.num_seg, &weights)?;
    let outcome = |cancelled: bool| TrainOutcome {
        run_dir: run_dir.clone(),
        cancelled,
        model_path: None,
        output: None,
        epochs_done: 0,
        best_val_top1: None,
        class_names: dataset.classes.clone(),
        num_seg,
    };
    if cancel.is_cancelled() {
        return Ok(outcome(true));
    }

    // Broken clips: a quick probe of every clip, listed and skipped.
    let DataCheck {
        dataset,
        train,
        val,
        mut broken,
        summary,
    } = probe_and_report(job, dataset.clone(), train, val, &mut on_event)?;

    let opts = HeadOnlyOptions {
        epochs: job.epochs,
        batch_size: job.batch_size,
        lr: job.lr,
        seed: job.seed,
        ..HeadOnlyOptions::default()
    };
    let settings = json!({
        "mode": "head_only",
        "data": job.data.display().to_string(),
        "val": job.val.as_ref().map(|v| v.display().to_string()),
        "val_split": if job.val.is_some() { None } else { Some(job.val_split) },
        "labels": job.labels.as_ref().map(|v| v.display().to_string()),
        "weights": job.weights,
        "weights_path": weights.display().to_string(),
        "frames": num_seg,
        "device": format!("{:?}", engine.device),
        "options": opts,
    });
    write_settings(&run_dir, settings, &dataset.classes, &summary, &broken)?;
    let mut log = MetricsLog::create(&run_dir)?;

    // Features: decode each clip once (or take it from the run folder's cache).
    let key = cache_key(&engine, &weights, num_seg)?;
    let extracted = extract_features(&engine, &key, &run_dir, &train, &val, cancel, |p| {
        on_event(JobEvent::Extract {
            done: p.done,
            total: p.total,
            cached: p.cached,
            path: p.path.to_path_buf(),
        })
    })?;
    if cancel.is_cancelled() {
        return Ok(outcome(true));
    }
    on_event(JobEvent::Extracted {
        decoded: extracted.decoded,
        cached: extracted.cached,
        elapsed_s: extracted.elapsed_s,
        broken: extracted.broken.clone(),
    });
    broken.extend(extracted.broken.iter().cloned());

    // The classifier.
    let classes = dataset.classes.len();
    let mut log_error = None;
    let result = train_head(
        &extracted.train,
        &extracted.val,
        classes,
        &opts,
        cancel,
        |event| {
            if let Err(e) = log.write(event) {
                log_error.get_or_insert(e);
            }
            on_event(JobEvent::Train(event.clone()));
        },
    )?;
    if let Some(e) = log_error {
        return Err(e);
    }
    if result.cancelled {
        return Ok(TrainOutcome {
            epochs_done: result.epochs_done,
            ..outcome(true)
        });
    }

    // The model, the confusion matrix, the report.
    let model_path = run_dir.join("model.safetensors");
    let origin = ModelOrigin {
        weights: &weights,
        weights_sha256: &key.weights_sha256,
        data: &job.data,
        epochs: result.epochs_done,
        num_seg,
    };
    write_model(
        &checkpoint,
        &result.head,
        &dataset.classes,
        &origin,
        &model_path,
    )?;
    if let Some(out) = &job.output {
        write_model(&checkpoint, &result.head, &dataset.classes, &origin, out)?;
    }
    let labels_text = dataset.classes.join("\n") + "\n";
    write_run_file(&run_dir, "labels.txt", labels_text.as_bytes())?;
    let preface = if result.val.is_none() {
        "no validation clips: the numbers below are on the training set\n".to_string()
    } else {
        String::new()
    };
    let output = finish_run(
        job,
        RunEnd {
            run_dir: &run_dir,
            classes: &dataset.classes,
            evaluation: result.val.as_ref().unwrap_or(&result.train),
            preface,
            model_path: &model_path,
            epochs: result.epochs_done,
            best_val_top1: result.best_val_top1,
            elapsed_s: start.elapsed().as_secs_f64(),
        },
        &mut log,
        &mut on_event,
    )?;
    Ok(TrainOutcome {
        model_path: Some(model_path),
        output: Some(output),
        epochs_done: result.epochs_done,
        best_val_top1: result.best_val_top1,
        ..outcome(false)
    })
}
