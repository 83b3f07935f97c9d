//! The InferenceService thread: owns the Engine; serves the live slot (latest request wins)
//! before every queued job step, so live labels wait at most one forward behind a batch or a
//! timeline. Talks to its owner only through channels and a `Notify`.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, unbounded};

use super::batch::{ClassifyOptions, Feed, classify_files};
use super::classify::Sampling;
use super::device::{ComputeDevice, DeviceChoice};
use super::engine::{Engine, Precision};
use super::live::{LiveCache, LiveRequest, LiveResult, serve};
use super::timeline::{TimelineRecord, TimelineRequest, TimelineWindow, timeline};
use super::watch::{WatchEvent, WatchPrediction, WatchRequest, watch};
use crate::checkpoint::file::open_checkpoint;
use crate::checkpoint::keys::Role;
use crate::labels::{kinetics400, read_label_file};
use crate::model::Form;
use crate::progress::{CancelToken, LatestSlot, Notify, panic_text};
use crate::report::ClassifyRecord;
use crate::video::frame::RgbFrame;
use crate::video::live_source::{LiveOptions, Source};
use crate::video::record::{Recorder, Recording};
use crate::weights::download::{FetchOptions, Progress};
use crate::weights::resolve::resolve;

/// Which model to load and how.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    /// A catalog name or a `.pdparams` / `.safetensors` path.
    pub weights: String,
    /// num_seg; `None`: what the checkpoint's attention fixes, else 8.
    pub frames: Option<usize>,
    pub device: DeviceChoice,
    /// Inference threads; 0 = all cores but one (at least one).
    pub threads: usize,
    /// Class names file; default: the checkpoint's own names, else Kinetics-400.
    pub labels: Option<PathBuf>,
    pub cache_dir: Option<PathBuf>,
    pub offline: bool,
    /// `None`: int8 for a quantized model on the CPU, else float32.
    pub precision: Option<Precision>,
}

/// A model the service has loaded.
#[derive(Clone, Debug)]
pub struct LoadedModel {
    pub weights: String,
    pub path: PathBuf,
    pub name: String,
    pub num_seg: usize,
    pub labels: Arc<Vec<String>>,
    /// e.g. "cpu (flex, 1 thread)".
    pub device: String,
}

#[derive(Clone, Debug)]
pub enum BatchEvent {
    Started {
        job: u64,
        total: usize,
    },
    Record {
        job: u64,
        index: usize,
        record: ClassifyRecord,
    },
    Finished {
        job: u64,
        cancelled: bool,
    },
}

#[derive(Clone, Debug)]
pub enum TimelineEvent {
    Window {
        job: u64,
        path: PathBuf,
        window: TimelineWindow,
        done: usize,
        total: usize,
    },
    Finished {
        job: u64,
        path: PathBuf,
        result: Result<TimelineRecord, String>,
    },
}

/// What a watched stream (`InferenceService::watch`) reports.
#[derive(Clone, Debug)]
pub enum StreamEvent {
    /// The stream's first prediction, or a later one (window end in stream time, latency).
    Prediction {
        job: u64,
        prediction: WatchPrediction,
    },
    /// The stream dropped; attempt `attempt` of `max` follows after `wait`.
    Reconnecting {
        job: u64,
        attempt: u32,
        max: u32,
        wait: Duration,
        detail: String,
    },
    /// The stream ended, was stopped, or failed (`error`); `recording` is the finished file.
    Finished {
        job: u64,
        error: Option<String>,
        recording: Option<Recording>,
        /// Windows dropped while the model was behind.
        dropped: u64,
    },
}

/// A stream to watch (see `InferenceService::watch`).
#[derive(Clone, Debug)]
pub struct StreamRequest {
    pub source: Source,
    pub window_s: f64,
    pub every_s: f64,
    pub k: usize,
    pub record: Option<Arc<Recorder>>,
    /// Every decoded frame, latest wins.
    pub display: Arc<LatestSlot<RgbFrame>>,
}

#[derive(Clone, Debug)]
pub enum ServiceEvent {
    Loading {
        weights: String,
    },
    Download {
        weights: String,
        done: u64,
        total: Option<u64>,
    },
    Loaded(LoadedModel),
    LoadFailed {
        weights: String,
        error: String,
    },
    Live(LiveResult),
    LiveFailed {
        generation: u64,
        error: String,
    },
    Batch(BatchEvent),
    Timeline(TimelineEvent),
    Stream(StreamEvent),
    /// The worker panicked `during` a load, a live update or a job; it carries on (the job or
    /// load is failed and reported in its own event too; a model lost with it is reloaded).
    Crashed {
        during: &'static str,
        error: String,
    },
}

enum Job {
    Batch {
        job: u64,
        files: Vec<PathBuf>,
        k: usize,
        cancel: CancelToken,
    },
    Timeline {
        job: u64,
        path: PathBuf,
        window_s: f64,
        stride_s: f64,
        k: usize,
        cancel: CancelToken,
    },
    /// A live source, watched until it ends or `cancel`; the inference thread runs it (jobs
    /// queued meanwhile wait; a file's live labels are still served between predictions).
    Watch {
        job: u64,
        request: Box<StreamRequest>,
        cancel: CancelToken,
    },
}

enum Command {
    Load(ModelSpec),
    Job(Job),
    SetTopK(usize),
    Shutdown,
}

/// Handle to the service thread. Dropping it stops the thread (jobs are cancelled).
pub struct InferenceService {
    commands: Sender<Command>,
    events: Receiver<ServiceEvent>,
    live: Arc<LatestSlot<LiveRequest>>,
    next_job: u64,
    cancels: Vec<CancelToken>,
    thread: Option<JoinHandle<()>>,
}

impl InferenceService {
    pub fn spawn(notify: Notify) -> Self {
        let (commands, command_rx) = unbounded();
        let (event_tx, events) = unbounded();
        let live = Arc::new(LatestSlot::new());
        let worker = Worker {
            commands: command_rx,
            events: event_tx,
            notify,
            live: Arc::clone(&live),
            spec: None,
            #[cfg(test)]
            panic_in_next_job: false,
            model: None,
            cache: LiveCache::default(),
            k: 5,
            queue: VecDeque::new(),
        };
        let thread = std::thread::Builder::new()
            .name("kineto-inference".into())
            .spawn(move || worker.run())
            .ok();
        Self {
            commands,
            events,
            live,
            next_job: 0,
            cancels: Vec::new(),
            thread,
        }
    }

    pub fn events(&self) -> &Receiver<ServiceEvent> {
        &self.events
    }

    pub fn load(&self, spec: ModelSpec) {
        let _ = self.commands.send(Command::Load(spec));
    }

    pub fn set_top_k(&self, k: usize) {
        let _ = self.commands.send(Command::SetTopK(k.max(1)));
    }

    /// Replaces any live request not yet served.
    pub fn request_live(&self, request: LiveRequest) {
        self.live.put(request);
    }

    /// Live requests replaced before the service got to them.
    pub fn live_skipped(&self) -> u64 {
        self.live.skipped()
    }

    /// Queues a batch; returns its job id and cancel token.
    pub fn classify(&mut self, files: Vec<PathBuf>, k: usize) -> (u64, CancelToken) {
        let (job, cancel) = self.new_job();
        let _ = self.commands.send(Command::Job(Job::Batch {
            job,
            files,
            k,
            cancel: cancel.clone(),
        }));
        (job, cancel)
    }

    /// Queues a timeline of `path`.
    pub fn timeline(
        &mut self,
        path: PathBuf,
        window_s: f64,
        stride_s: f64,
        k: usize,
    ) -> (u64, CancelToken) {
        let (job, cancel) = self.new_job();
        let _ = self.commands.send(Command::Job(Job::Timeline {
            job,
            path,
            window_s,
            stride_s,
            k,
            cancel: cancel.clone(),
        }));
        (job, cancel)
    }

    /// Watches a live source (a URL, a camera): predictions, reconnections and the end come
    /// as [`ServiceEvent::Stream`]; frames go to `request.display`. Cancel the token to stop
    /// (a recording is finished first).
    pub fn watch(&mut self, request: StreamRequest) -> (u64, CancelToken) {
        let (job, cancel) = self.new_job();
        let _ = self.commands.send(Command::Job(Job::Watch {
            job,
            request: Box::new(request),
            cancel: cancel.clone(),
        }));
        (job, cancel)
    }

    fn new_job(&mut self) -> (u64, CancelToken) {
        self.next_job += 1;
        let cancel = CancelToken::new();
        self.cancels.retain(|c| !c.is_cancelled());
        self.cancels.push(cancel.clone());
        (self.next_job, cancel)
    }

    /// Stops the thread, waiting at most `timeout` for the current forward to end.
    pub fn shutdown(&mut self, timeout: Duration) {
        for cancel in &self.cancels {
            cancel.cancel();
        }
        let _ = self.commands.send(Command::Shutdown);
        self.live.close();
        if let Some(thread) = self.thread.take() {
            let deadline = std::time::Instant::now() + timeout;
            while !thread.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for InferenceService {
    fn drop(&mut self) {
        self.shutdown(Duration::from_secs(2));
    }
}

struct Ready {
    engine: Engine,
    info: LoadedModel,
}

struct Worker {
    commands: Receiver<Command>,
    events: Sender<ServiceEvent>,
    notify: Notify,
    live: Arc<LatestSlot<LiveRequest>>,
    /// The model last asked for (reloaded after a panic lost it).
    spec: Option<ModelSpec>,
    /// Tests: the next job panics.
    #[cfg(test)]
    panic_in_next_job: bool,
    model: Option<Ready>,
    cache: LiveCache,
    k: usize,
    queue: VecDeque<Job>,
}

impl Worker {
    fn send(&self, event: ServiceEvent) {
        let _ = self.events.send(event);
        self.notify.notify();
    }

    fn run(mut self) {
        loop {
            loop {
                match self.commands.try_recv() {
                    Ok(Command::Shutdown) => return,
                    Ok(Command::Load(spec)) => self.guarded_load(spec),
                    Ok(Command::Job(job)) => self.queue.push_back(job),
                    Ok(Command::SetTopK(k)) => self.k = k,
                    Err(crossbeam_channel::TryRecvError::Empty) => break,
                    Err(crossbeam_channel::TryRecvError::Disconnected) => return,
                }
            }
            if self.live.is_closed() {
                return;
            }
            // One pending live request, then the next job (which serves live requests between
            // its forwards): while a clip plays there is nearly always a live request waiting,
            // so serving live first and jobs only when idle would starve the jobs.
            if let Some(request) = self.live.try_take() {
                self.guarded_live(&request);
            }
            if let Some(job) = self.queue.pop_front() {
                self.guarded_job(job);
                continue;
            }
            if let Some(request) = self.live.take_timeout(Duration::from_millis(25)) {
                self.guarded_live(&request);
            }
        }
    }

    /// Reports a panic to the window; the worker goes on with the next command.
    fn crashed(&self, during: &'static str, payload: Box<dyn std::any::Any + Send>) -> String {
        let error = format!("internal error: {}", panic_text(payload.as_ref()));
        self.send(ServiceEvent::Crashed {
            during,
            error: error.clone(),
        });
        error
    }

    fn guarded_load(&mut self, spec: ModelSpec) {
        self.spec = Some(spec.clone());
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| self.load(&spec))) {
            self.model = None;
            let error = self.crashed("loading the model", payload);
            self.send(ServiceEvent::LoadFailed {
                weights: spec.weights.clone(),
                error,
            });
        }
    }

    fn guarded_live(&mut self, request: &LiveRequest) {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| self.serve_live(request))) {
            self.cache = LiveCache::default();
            let error = self.crashed("computing a live label", payload);
            self.send(ServiceEvent::LiveFailed {
                generation: request.generation,
                error,
            });
        }
    }

    /// Runs `job`; a panic fails it (its rows so far stay) and reloads the model it took.
    fn guarded_job(&mut self, job: Job) {
        let (id, timeline_path, is_watch) = match &job {
            Job::Batch { job, .. } => (*job, None, false),
            Job::Timeline { job, path, .. } => (*job, Some(path.clone()), false),
            Job::Watch { job, .. } => (*job, None, true),
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            #[cfg(test)]
            if std::mem::take(&mut self.panic_in_next_job) {
                panic!("a test's panic");
            }
            self.run_job(job)
        }));
        if let Err(payload) = outcome {
            let error = self.crashed("running a job", payload);
            self.send(match timeline_path {
                _ if is_watch => ServiceEvent::Stream(StreamEvent::Finished {
                    job: id,
                    error: Some(error),
                    recording: None,
                    dropped: 0,
                }),
                Some(path) => ServiceEvent::Timeline(TimelineEvent::Finished {
                    job: id,
                    path,
                    result: Err(error),
                }),
                None => ServiceEvent::Batch(BatchEvent::Finished {
                    job: id,
                    cancelled: false,
                }),
            });
            if self.model.is_none()
                && let Some(spec) = self.spec.clone()
            {
                self.guarded_load(spec);
            }
        }
    }

    fn load(&mut self, spec: &ModelSpec) {
        self.send(ServiceEvent::Loading {
            weights: spec.weights.clone(),
        });
        self.model = None;
        self.cache = LiveCache::default();
        match self.try_load(spec) {
            Ok(ready) => {
                self.send(ServiceEvent::Loaded(ready.info.clone()));
                self.model = Some(ready);
            }
            Err(error) => self.send(ServiceEvent::LoadFailed {
                weights: spec.weights.clone(),
                error,
            }),
        }
    }

    fn try_load(&self, spec: &ModelSpec) -> Result<Ready, String> {
        let options = FetchOptions {
            offline: spec.offline,
            ..FetchOptions::from_env().map_err(|e| e.to_string())?
        };
        let events = self.events.clone();
        let notify = self.notify.clone();
        let weights = spec.weights.clone();
        let mut progress = move |p: Progress| {
            if let Progress::Bytes { done, total } = p {
                let _ = events.send(ServiceEvent::Download {
                    weights: weights.clone(),
                    done,
                    total,
                });
                notify.notify();
            }
        };
        let resolved = resolve(
            &spec.weights,
            spec.cache_dir.as_deref(),
            &options,
            &mut progress,
        )
        .map_err(|e| e.to_string())?;
        let threads = if spec.threads == 0 {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .saturating_sub(1)
                .max(1)
        } else {
            spec.threads
        };
        let device = ComputeDevice::resolve(spec.device, threads).map_err(|e| e.to_string())?;
        let checkpoint =
            open_checkpoint(&resolved.path, Role::Student).map_err(|e| e.to_string())?;
        let engine = Engine::from_checkpoint(&checkpoint, Form::Fused, device, spec.precision)
            .map_err(|e| e.to_string())?;
        let arch = engine.model.arch;
        let num_seg = match (spec.frames, arch.num_seg) {
            (Some(f), Some(t)) if f != t => {
                return Err(format!(
                    "{}: this checkpoint's temporal attention fixes {t} frames; {f} cannot be used",
                    resolved.path.display()
                ));
            }
            (Some(f), _) if f > 0 => f,
            (_, Some(t)) => t,
            _ => 8,
        };
        let labels = match (&spec.labels, checkpoint.class_names.clone()) {
            (Some(file), _) => read_label_file(file).map_err(|e| e.to_string())?,
            (None, Some(names)) => names,
            (None, None) if arch.num_classes == 400 => kinetics400(),
            (None, None) => (0..arch.num_classes)
                .map(|i| format!("class_{i}"))
                .collect(),
        };
        if labels.len() != arch.num_classes {
            return Err(format!(
                "{} labels for a model with {} classes",
                labels.len(),
                arch.num_classes
            ));
        }
        let device = &engine.device;
        let info = LoadedModel {
            weights: spec.weights.clone(),
            path: resolved.path.clone(),
            name: arch.display_name(),
            num_seg,
            labels: Arc::new(labels),
            device: format!(
                "{} ({}, {} thread{}, {})",
                device.kind,
                device.adapter,
                device.threads,
                if device.threads == 1 { "" } else { "s" },
                engine.precision.as_str()
            ),
        };
        Ok(Ready { engine, info })
    }

    fn serve_live(&mut self, request: &LiveRequest) {
        if let Some(ready) = self.model.take() {
            self.live_with(&ready, request);
            self.model = Some(ready);
        }
    }

    /// Serves a pending live request between two steps of a job.
    fn live_between_steps(&mut self, ready: &Ready) {
        if let Some(request) = self.live.try_take() {
            self.live_with(ready, &request);
        }
    }

    fn live_with(&mut self, ready: &Ready, request: &LiveRequest) {
        let outcome = serve(
            &ready.engine,
            ready.info.num_seg,
            &ready.info.labels,
            self.k,
            request,
            &mut self.cache,
        );
        self.send(match outcome {
            Ok(result) => ServiceEvent::Live(result),
            Err(error) => ServiceEvent::LiveFailed {
                generation: request.generation,
                error,
            },
        });
    }

    fn run_job(&mut self, job: Job) {
        // Taken out so that the live path (which needs `&mut self`) can run between steps.
        let Some(ready) = self.model.take() else {
            let (id, message) = match &job {
                Job::Batch { job, .. } | Job::Timeline { job, .. } | Job::Watch { job, .. } => {
                    (*job, "no model loaded")
                }
            };
            self.fail_job(&job, id, message);
            return;
        };
        match job {
            Job::Batch {
                job,
                files,
                k,
                cancel,
            } => {
                self.send(ServiceEvent::Batch(BatchEvent::Started {
                    job,
                    total: files.len(),
                }));
                let sampling = Sampling {
                    num_seg: ready.info.num_seg,
                    dense: false,
                };
                let how = ClassifyOptions {
                    sampling,
                    top_k: k,
                    labels: &ready.info.labels,
                    feed: Feed::for_engine(&ready.engine),
                };
                classify_files(&ready.engine, &files, &how, &cancel, |index, record| {
                    self.send(ServiceEvent::Batch(BatchEvent::Record {
                        job,
                        index,
                        record: record.clone(),
                    }));
                    self.live_between_steps(&ready);
                });
                self.send(ServiceEvent::Batch(BatchEvent::Finished {
                    job,
                    cancelled: cancel.is_cancelled(),
                }));
            }
            Job::Timeline {
                job,
                path,
                window_s,
                stride_s,
                k,
                cancel,
            } => {
                let request = TimelineRequest {
                    window_s,
                    stride_s,
                    num_seg: ready.info.num_seg,
                    k,
                    labels: &ready.info.labels,
                    // One window per forward: a live request waits at most one forward.
                    batch: 1,
                };
                let result = timeline(
                    &ready.engine,
                    &path,
                    &request,
                    &cancel,
                    |window, done, total| {
                        self.send(ServiceEvent::Timeline(TimelineEvent::Window {
                            job,
                            path: path.clone(),
                            window: window.clone(),
                            done,
                            total,
                        }));
                        self.live_between_steps(&ready);
                    },
                )
                .map_err(|e| e.to_string());
                self.send(ServiceEvent::Timeline(TimelineEvent::Finished {
                    job,
                    path,
                    result,
                }));
            }
            Job::Watch {
                job,
                request,
                cancel,
            } => self.run_watch(&ready, job, *request, &cancel),
        }
        self.model = Some(ready);
    }

    fn run_watch(&mut self, ready: &Ready, job: u64, request: StreamRequest, cancel: &CancelToken) {
        let StreamRequest {
            source,
            window_s,
            every_s,
            k,
            record,
            display,
        } = request;
        let req = WatchRequest {
            window_s,
            every_s,
            num_seg: ready.info.num_seg,
            k,
            labels: ready.info.labels.to_vec(),
            duration_s: None,
            reconnect: LiveOptions {
                record,
                ..LiveOptions::default()
            },
            display: Some(display),
        };
        let outcome = watch(&ready.engine, source, &req, cancel, |event| {
            self.send(ServiceEvent::Stream(match event {
                WatchEvent::Prediction(prediction) => StreamEvent::Prediction { job, prediction },
                WatchEvent::Reconnecting {
                    attempt,
                    max,
                    wait,
                    detail,
                } => StreamEvent::Reconnecting {
                    job,
                    attempt,
                    max,
                    wait,
                    detail,
                },
            }));
            self.live_between_steps(ready);
        });
        self.send(ServiceEvent::Stream(match outcome {
            Ok(summary) => StreamEvent::Finished {
                job,
                error: None,
                recording: summary.recording,
                dropped: summary.dropped,
            },
            Err(e) => StreamEvent::Finished {
                job,
                error: Some(e.to_string()),
                recording: None,
                dropped: 0,
            },
        }));
    }

    fn fail_job(&self, job: &Job, id: u64, message: &str) {
        match job {
            Job::Batch { files, .. } => {
                self.send(ServiceEvent::Batch(BatchEvent::Started {
                    job: id,
                    total: files.len(),
                }));
                for (index, path) in files.iter().enumerate() {
                    self.send(ServiceEvent::Batch(BatchEvent::Record {
                        job: id,
                        index,
                        record: ClassifyRecord::failed(path, 0, message.to_string()),
                    }));
                }
                self.send(ServiceEvent::Batch(BatchEvent::Finished {
                    job: id,
                    cancelled: false,
                }));
            }
            Job::Timeline { path, .. } => {
                self.send(ServiceEvent::Timeline(TimelineEvent::Finished {
                    job: id,
                    path: path.clone(),
                    result: Err(message.to_string()),
                }))
            }
            Job::Watch { .. } => self.send(ServiceEvent::Stream(StreamEvent::Finished {
                job: id,
                error: Some(message.to_string()),
                recording: None,
                dropped: 0,
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_job_is_reported_failed_and_the_worker_carries_on() {
        let (_commands, command_rx) = unbounded();
        let (events, event_rx) = unbounded();
        let mut worker = Worker {
            commands: command_rx,
            events,
            notify: Notify::none(),
            live: Arc::new(LatestSlot::new()),
            spec: None,
            panic_in_next_job: true,
            model: None,
            cache: LiveCache::default(),
            k: 5,
            queue: VecDeque::new(),
        };
        let timeline_job = |job| Job::Timeline {
            job,
            path: PathBuf::from("clip.mp4"),
            window_s: 2.0,
            stride_s: 1.0,
            k: 5,
            cancel: CancelToken::new(),
        };
        worker.guarded_job(timeline_job(1));
        let seen: Vec<ServiceEvent> = event_rx.try_iter().collect();
        assert!(
            matches!(&seen[0], ServiceEvent::Crashed { error, .. } if error.contains("a test's panic")),
            "{seen:?}"
        );
        assert!(
            matches!(
                &seen[1],
                ServiceEvent::Timeline(TimelineEvent::Finished {
                    job: 1,
                    result: Err(_),
                    ..
                })
            ),
            "{seen:?}"
        );
        // The next job runs as usual (here: failed for want of a model, without a panic).
        worker.guarded_job(timeline_job(2));
        let seen: Vec<ServiceEvent> = event_rx.try_iter().collect();
        assert!(
            matches!(&seen[..], [ServiceEvent::Timeline(TimelineEvent::Finished { job: 2, result: Err(e), .. })] if e == "no model loaded"),
            "{seen:?}"
        );
    }
}
