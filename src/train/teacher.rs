//! Distillation during full fine-tuning: PaddleVideo's DML (the teacher, a second
//! [`FullTrainer`], is trained by the same step with its own velocities) or classic KD (a
//! frozen teacher run through the fused inference [`Engine`]). The step events carry each
//! loss term (`ce`, `ce_teacher`, `dml` / `ce`, `kd`); `loss` is the total.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::{FloatDType, TensorData};

use super::TrainError;
use super::losses::{DmlWeights, KdWeights, Targets};
use super::model_file::start_model;
use super::seeds::{TAG_TEACHER_HEAD, derive_seed};
use super::spec::{DistillJob, DistillMode};
use super::trainer::{FullStepOptions, FullTrainError, FullTrainer, dml_step, kd_step};
use crate::checkpoint::file::Checkpoint;
use crate::infer::device::ComputeDevice;
use crate::infer::engine::{Engine, store_in_form};
use crate::model::{Form, Recognizer};

/// The DML teacher to start from: its own fc when it already has the data's classes (by
/// name), else a fresh one (seeded apart from the student's).
pub(crate) fn start_teacher(
    checkpoint: &Checkpoint,
    class_names: &[String],
    seed: u64,
    device: &ComputeDevice,
) -> Result<Recognizer, TrainError> {
    if checkpoint.class_names.as_deref() == Some(class_names) {
        return Recognizer::from_store(&checkpoint.store, &device.device)
            .map_err(|e| TrainError::model(&checkpoint.path, e));
    }
    start_model(
        checkpoint,
        class_names.len(),
        derive_seed(seed, &[TAG_TEACHER_HEAD]),
        device,
    )
}

/// The frozen KD teacher as an inference engine (the fused form: eval-mode BatchNorm; on the
/// CPU a fused PP-TSMv2 runs Kineto's channels-last path).
fn kd_engine(checkpoint: &Checkpoint, device: &ComputeDevice) -> Result<Engine, TrainError> {
    let store = store_in_form(checkpoint, Form::Fused)?;
    let model = Recognizer::from_store(&store, &device.device)
        .map_err(|e| TrainError::model(&checkpoint.path, e))?;
    Ok(Engine::from_model(model, device.clone()))
}

/// What trains the student besides its own labels.
pub(crate) enum Distiller {
    None,
    /// The teacher is trained by the same step.
    Dml {
        teacher: Box<FullTrainer>,
        weights: DmlWeights,
    },
    /// Frozen: its logits come from `engine`.
    Kd {
        temperature: f64,
        weights: KdWeights,
        engine: Box<Engine>,
        path: PathBuf,
    },
}

impl Distiller {
    /// The distiller of `distill`: DML from the teacher `model` (with its velocities when
    /// resumed, from `optim_path`), KD from the frozen `checkpoint`.
    pub fn new(
        distill: Option<&DistillJob>,
        model: Option<Recognizer>,
        velocity: Option<HashMap<String, Vec<f64>>>,
        optim_path: &Path,
        checkpoint: Option<&Checkpoint>,
        device: &ComputeDevice,
    ) -> Result<Self, TrainError> {
        Ok(match (distill, model, checkpoint) {
            (Some(d), Some(model), _) if d.mode == DistillMode::Dml => {
                let mut teacher =
                    FullTrainer::new(model, FloatDType::F32, FullStepOptions::default())
                        .map_err(|e| TrainError::model(&d.teacher_path, e))?;
                if let Some(velocity) = velocity {
                    teacher
                        .set_velocities(velocity)
                        .map_err(|e| TrainError::model(optim_path, e))?;
                }
                Distiller::Dml {
                    teacher: Box::new(teacher),
                    weights: DmlWeights {
                        dml: d.dml_weight,
                        ..DmlWeights::default()
                    },
                }
            }
            (Some(d), _, Some(checkpoint)) if d.mode == DistillMode::Kd => Distiller::Kd {
                temperature: d.temperature,
                weights: KdWeights {
                    ce: 1.0 - d.kd_weight,
                    kd: d.kd_weight,
                },
                engine: Box::new(kd_engine(checkpoint, device)?),
                path: checkpoint.path.clone(),
            },
            _ => Distiller::None,
        })
    }

    /// The DML teacher being trained.
    pub fn dml_teacher(&self) -> Option<&FullTrainer> {
        match self {
            Distiller::Dml { teacher, .. } => Some(teacher),
            _ => None,
        }
    }

    /// The frozen KD teacher's logits on a batch (`None` without one).
    pub fn kd_logits(
        &self,
        data: &[f32],
        dims: [usize; 5],
    ) -> Result<Option<Vec<f64>>, TrainError> {
        let Distiller::Kd { engine, path, .. } = self else {
            return Ok(None);
        };
        let logits = engine
            .logits(data.to_vec(), dims)
            .map_err(|e| TrainError::Teacher {
                path: path.clone(),
                problem: e.to_string(),
            })?;
        Ok(Some(logits.into_iter().map(f64::from).collect()))
    }
}

/// One step's numbers for the log.
pub(crate) struct Stepped {
    pub loss: f64,
    pub terms: Vec<(&'static str, f64)>,
    /// The student's logits `[N, classes]`.
    pub logits: Vec<f64>,
}

/// One step of the student (and the DML teacher): plain CE (Mixup form with Mixup targets),
/// DML, or KD against `teacher_logits`.
pub(crate) fn distill_step(
    trainer: &mut FullTrainer,
    distiller: &mut Distiller,
    teacher_logits: Option<&[f64]>,
    clips: TensorData,
    targets: &Targets,
    lr: f64,
) -> Result<Stepped, FullTrainError> {
    match distiller {
        Distiller::None => {
            let o = trainer.step_targets(clips, targets, lr)?;
            Ok(Stepped {
                loss: o.loss,
                terms: vec![("ce", o.loss)],
                logits: o.logits.data,
            })
        }
        Distiller::Dml { teacher, weights } => {
            let d = dml_step(trainer, teacher, clips, targets, *weights, lr)?;
            Ok(Stepped {
                loss: d.total,
                terms: vec![
                    ("ce", d.ce_student),
                    ("ce_teacher", d.ce_teacher),
                    ("dml", d.dml),
                ],
                logits: d.student.logits.data,
            })
        }
        Distiller::Kd {
            temperature,
            weights,
            ..
        } => {
            let k = kd_step(
                trainer,
                teacher_logits.unwrap_or(&[]),
                clips,
                targets,
                *temperature,
                *weights,
                lr,
            )?;
            Ok(Stepped {
                loss: k.total,
                terms: vec![("ce", k.ce), ("kd", k.kd)],
                logits: k.student.logits.data,
            })
        }
    }
}
