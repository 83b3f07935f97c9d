//! Training as a service: a [`TrainRequest`] runs on a named thread (a [`Task`]) with a cancel
//! token that also pauses it; what the job says comes back as [`TrainUpdate`]s (the job as it
//! runs, its events, its outcome), each followed by the caller's [`Notify`]. The CLI waits on
//! the updates, the Train tab drains them a bounded number per frame. A panic in the job
//! becomes a [`TrainError::Crashed`] outcome.

use std::path::PathBuf;
use std::time::Duration;

use super::TrainError;
use super::checkpoints::resume_job;
use super::full_job::run_full;
use super::head_only_job::run_head_only;
use super::spec::{JobDevice, JobEvent, TrainJob, TrainOutcome};
use crate::progress::{CancelToken, Notify, Task, TaskMsg};

/// How long dropping a running service waits for the job to stop (a full run saves `latest`
/// when it sees the cancel, between steps).
const STOP_GRACE: Duration = Duration::from_secs(2);

/// What to run.
#[derive(Clone, Debug)]
pub enum TrainRequest {
    /// A new classifier on the frozen backbone's cached features.
    HeadOnly(Box<TrainJob>),
    /// Every layer, PaddleVideo's recipe (with its distillation, if any).
    Full(Box<TrainJob>),
    /// A full run continued from its `latest` checkpoint, with its own settings (the device
    /// and the time between checkpoints are the caller's).
    Resume {
        run_dir: PathBuf,
        device: Box<JobDevice>,
        checkpoint_minutes: f64,
    },
}

/// What the job kind is, as the job runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobKind {
    HeadOnly,
    Full,
    Resumed,
}

/// A progress message of the service's thread.
#[derive(Clone, Debug)]
pub enum TrainMsg {
    /// The job about to run (a resumed run's from its own settings).
    Started(Box<TrainJob>, JobKind),
    Event(JobEvent),
}

/// What the driver sees: the messages, then the outcome once.
#[derive(Debug)]
pub enum TrainUpdate {
    Started(Box<TrainJob>, JobKind),
    Event(JobEvent),
    Finished(Result<TrainOutcome, TrainError>),
}

/// Runs `request` on the calling thread: the job's own settings first, then its events.
pub fn run(
    request: TrainRequest,
    cancel: &CancelToken,
    mut on_msg: impl FnMut(TrainMsg),
) -> Result<TrainOutcome, TrainError> {
    let (job, kind) = match request {
        TrainRequest::HeadOnly(job) => (job, JobKind::HeadOnly),
        TrainRequest::Full(job) => (job, JobKind::Full),
        TrainRequest::Resume {
            run_dir,
            device,
            checkpoint_minutes,
        } => {
            let mut job = resume_job(&run_dir, *device)?;
            job.checkpoint_minutes = checkpoint_minutes;
            (Box::new(job), JobKind::Resumed)
        }
    };
    on_msg(TrainMsg::Started(job.clone(), kind));
    let on_event = |event| on_msg(TrainMsg::Event(event));
    match kind {
        JobKind::HeadOnly => run_head_only(&job, cancel, on_event),
        JobKind::Full | JobKind::Resumed => run_full(&job, cancel, on_event),
    }
}

/// A running training job. Dropping it cancels the job.
pub struct TrainingService {
    task: Task<Result<TrainOutcome, TrainError>, TrainMsg>,
}

impl TrainingService {
    /// Starts `request` on the `kineto-train` thread; `cancel` stops (or pauses) it.
    pub fn start(
        request: TrainRequest,
        cancel: CancelToken,
        notify: Notify,
    ) -> Result<Self, TrainError> {
        let task = Task::spawn_with("kineto-train", cancel, notify, move |ctx| {
            run(request, ctx.cancel(), |msg| ctx.send(msg))
        })
        .map_err(|source| TrainError::Thread {
            what: "the training thread",
            source,
        })?;
        Ok(Self {
            task: task.with_grace(STOP_GRACE),
        })
    }

    pub fn cancel_token(&self) -> &CancelToken {
        self.task.cancel_token()
    }

    /// Up to `max` updates that arrived, without waiting.
    pub fn try_updates(&self, max: usize) -> Vec<TrainUpdate> {
        self.task.drain(max).into_iter().map(update).collect()
    }

    /// The next update, waiting for it; `None` after the outcome.
    pub fn wait_update(&self) -> Option<TrainUpdate> {
        self.task.recv().map(update)
    }
}

fn update(msg: TaskMsg<Result<TrainOutcome, TrainError>, TrainMsg>) -> TrainUpdate {
    match msg {
        TaskMsg::Progress(TrainMsg::Started(job, kind)) => TrainUpdate::Started(job, kind),
        TaskMsg::Progress(TrainMsg::Event(event)) => TrainUpdate::Event(event),
        TaskMsg::Done(Ok(outcome)) => TrainUpdate::Finished(outcome),
        TaskMsg::Done(Err(message)) => TrainUpdate::Finished(Err(TrainError::Crashed {
            what: "the training job",
            message,
        })),
    }
}
