//! Validation during full fine-tuning: the fused form of the trainer's current weights
//! (eval-mode BatchNorm) on the test pipeline's clips, at the run's scale.

use std::path::PathBuf;

use burn::tensor::{Tensor, TensorData};

use super::TrainError;
use super::dataset::Sample;
use super::loader::{ClipSpec, Loader, decode_workers};
use super::metrics::Evaluation;
use super::trainer::FullTrainer;
use crate::infer::device::ComputeDevice;
use crate::model::Recognizer;
use crate::model::fuse::fuse_store;
use crate::progress::CancelToken;
use crate::progress::panic_text;

/// Logits of the fused form of the trainer's current weights on `samples` (eval-mode
/// BatchNorm, the validation pipeline). `None` when cancelled.
pub(crate) fn evaluate(
    trainer: &FullTrainer,
    device: &ComputeDevice,
    samples: &[Sample],
    spec: ClipSpec,
    batch_size: usize,
    cancel: &CancelToken,
    broken: &mut Vec<(PathBuf, String)>,
) -> Result<Option<Evaluation>, TrainError> {
    let classes = trainer.classes();
    let fused = fuse_store(&trainer.to_store()).map_err(TrainError::Evaluation)?;
    let model = Recognizer::from_store(&fused, &device.device)
        .map_err(|e| TrainError::Evaluation(format!("the evaluation model: {e}")))?;
    let clips = samples.iter().map(|s| (s.path.clone(), None)).collect();
    let mut loader = Loader::spawn(
        clips,
        spec,
        decode_workers(device.threads),
        batch_size.max(2),
    )?;
    let (mut logits, mut labels) = (Vec::new(), Vec::new());
    for chunk in samples.chunks(batch_size.max(1)) {
        if cancel.is_cancelled() {
            return Ok(None);
        }
        let mut data = Vec::with_capacity(chunk.len() * spec.values());
        let mut chunk_labels = Vec::with_capacity(chunk.len());
        for sample in chunk {
            match loader.next() {
                Some(Ok(clip)) if clip.len() == spec.values() => {
                    data.extend(clip);
                    chunk_labels.push(sample.label);
                }
                Some(Ok(clip)) => broken.push((
                    sample.path.clone(),
                    format!("prepared {} values, expected {}", clip.len(), spec.values()),
                )),
                Some(Err(e)) => broken.push((sample.path.clone(), e)),
                None => broken.push((sample.path.clone(), "the decode queue ended early".into())),
            }
        }
        if chunk_labels.is_empty() {
            continue;
        }
        let size = spec.size as usize;
        let dims = [chunk_labels.len(), spec.num_seg, 3, size, size];
        model
            .check_input(&dims)
            .map_err(|e| TrainError::Evaluation(e.to_string()))?;
        let run = || {
            let clips = Tensor::<5>::from_data(TensorData::new(data, dims), &device.device);
            model.forward(clips).try_into_data()
        };
        let out = device.install(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)));
        let values = match out {
            Ok(Ok(d)) => d
                .convert::<f32>()
                .try_into_vec::<f32>()
                .map_err(|e| TrainError::Evaluation(format!("{e:?}")))?,
            Ok(Err(e)) => return Err(TrainError::Evaluation(format!("{e:?}"))),
            Err(p) => {
                return Err(TrainError::Crashed {
                    what: "evaluation",
                    message: panic_text(p.as_ref()),
                });
            }
        };
        logits.extend(values);
        labels.extend(chunk_labels);
    }
    Ok(Some(Evaluation::of(&logits, classes, &labels)))
}
