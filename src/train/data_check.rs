//! The data half of a run: open the dataset (and a separate validation set), split it, probe
//! every clip once so that broken ones are listed and skipped before any work. The app's
//! "Check data" is [`check_data`] on its own.

use super::TrainError;
use super::dataset::{
    Dataset, DatasetSummary, Sample, check_decodable, split_explicit, split_stratified,
};
use super::spec::{DataCheck, JobEvent, TrainJob};

/// Opens `data` (and `val`), splits it as a run would.
pub(crate) fn open_split(
    job: &TrainJob,
) -> Result<(Dataset, Vec<Sample>, Vec<Sample>), TrainError> {
    let dataset = Dataset::open(&job.data, job.labels.as_deref())?;
    let (train, val) = match &job.val {
        Some(v) => {
            let val_set = Dataset::open(v, None)?;
            split_explicit(&dataset, &val_set)?
        }
        None => split_stratified(&dataset, job.val_split, job.seed),
    };
    Ok((dataset, train, val))
}

/// `probe`, then the Summary event; a class left without training clips is an error.
pub(crate) fn probe_and_report(
    job: &TrainJob,
    dataset: Dataset,
    train: Vec<Sample>,
    val: Vec<Sample>,
    on_event: &mut impl FnMut(JobEvent),
) -> Result<DataCheck, TrainError> {
    let check = probe(dataset, train, val);
    on_event(JobEvent::Summary {
        data: job.data.clone(),
        notes: check.dataset.notes.clone(),
        summary: check.summary.clone(),
        broken: check.broken.clone(),
    });
    if let Some(empty) = check.empty_class() {
        return Err(TrainError::EmptyClass {
            path: job.data.clone(),
            class: empty.to_string(),
        });
    }
    Ok(check)
}

/// Probes every clip and drops the broken ones from both halves.
fn probe(dataset: Dataset, train: Vec<Sample>, val: Vec<Sample>) -> DataCheck {
    let all: Vec<Sample> = train.iter().chain(&val).cloned().collect();
    let (_, broken) = check_decodable(&all, |_, _| {});
    let is_broken = |s: &Sample| broken.iter().any(|(p, _)| *p == s.path);
    let train: Vec<Sample> = train.into_iter().filter(|s| !is_broken(s)).collect();
    let val: Vec<Sample> = val.into_iter().filter(|s| !is_broken(s)).collect();
    let summary = DatasetSummary::new(&dataset.classes, &train, &val);
    DataCheck {
        dataset,
        train,
        val,
        broken,
        summary,
    }
}

/// The data half of a run on its own (the app's "Check data"): open, split, probe.
pub fn check_data(job: &TrainJob) -> Result<DataCheck, TrainError> {
    job.validate()?;
    let (dataset, train, val) = open_split(job)?;
    Ok(probe(dataset, train, val))
}
