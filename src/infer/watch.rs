//! Labels on a live source as it plays (`kineto watch`): windows of `window_s` seconds every
//! `every_s`, the spans `timeline` uses with its stride set to `every_s` (a file or a download
//! gives timeline's windows, the last one ending at the end as there), each sampled the uniform
//! way over its frames `[floor(start * fps), floor(end * fps))`.
//!
//! Three threads: `kineto-live-source` decodes (`video::live_source`); `kineto-watch-windows`
//! transforms the frames some window samples as they arrive (the others are dropped at once)
//! and hands each complete window on; the caller's thread runs the model. A live source hands
//! windows over through a latest-wins slot, so a model that falls behind drops windows (counted),
//! never frames; a file or a download waits for the model instead, and is played at its own
//! pace (decoding is not throttled to real time).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::InferError;
use super::classify::transform_frame;
use super::engine::Engine;
use super::timeline::{Span, window_indices};
use super::topk::top_k;
use crate::progress::{CancelToken, LatestSlot};
use crate::report::Ranked;
use crate::video::VideoError;
use crate::video::frame::{FrameError, RgbFrame};
use crate::video::live_source::{
    LiveEvent, LiveHandle, LiveOptions, LiveThread, Source, open_live,
};
use crate::video::record::Recording;
use crate::video::transform::{Normalize, to_clip_tensor};

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(transparent)]
    Video(#[from] VideoError),
    #[error("{source_name}: {source}")]
    Frame {
        source_name: String,
        source: FrameError,
    },
    #[error("{source_name}: {source}")]
    Infer {
        source_name: String,
        source: InferError,
    },
    #[error("{source_name}: the stream declares no frame rate and gave no timestamps")]
    NoRate { source_name: String },
    #[error("{0}: window and step must be positive seconds")]
    BadWindow(String),
}

#[derive(Clone, Debug)]
pub struct WatchRequest {
    pub window_s: f64,
    pub every_s: f64,
    pub num_seg: usize,
    pub k: usize,
    pub labels: Vec<String>,
    /// Stop after this much stream time.
    pub duration_s: Option<f64>,
    pub reconnect: LiveOptions,
    /// Every decoded frame, latest wins (the window shows the stream from here).
    pub display: Option<Arc<LatestSlot<RgbFrame>>>,
}

/// One prediction, as `watch --format jsonl` prints it.
#[derive(Clone, Debug, Serialize)]
pub struct WatchPrediction {
    /// The window's end in stream time (seconds from the first frame).
    pub t_s: f64,
    pub window_start_s: f64,
    /// When the prediction was made: seconds since the Unix epoch.
    pub wall_time: f64,
    /// From the window's last frame arriving to its prediction.
    pub latency_ms: f64,
    pub indices: Vec<u32>,
    pub top_k: Vec<Ranked>,
}

/// What the watcher reports to its caller.
#[derive(Debug)]
pub enum WatchEvent {
    Prediction(WatchPrediction),
    Reconnecting {
        attempt: u32,
        max: u32,
        wait: Duration,
        detail: String,
    },
}

/// How a watch ended.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WatchSummary {
    pub predictions: u64,
    /// Windows dropped because the model was behind (live sources only).
    pub dropped: u64,
    pub frames: u64,
    pub fps: f64,
    /// True when the stream ended by itself (not `--duration`, not cancelled).
    pub ended: bool,
    /// The recording, finished, when `reconnect.record` asked for one.
    #[serde(skip)]
    pub recording: Option<Recording>,
}

/// A window ready for the model.
struct Job {
    span: Span,
    indices: Vec<u32>,
    frames: Vec<RgbFrame>,
    ready_at: Instant,
}

enum Handoff {
    Latest(Arc<LatestSlot<Job>>),
    Queue(Receiver<Job>),
}

enum HandoffTx {
    Latest(Arc<LatestSlot<Job>>),
    Queue(SyncSender<Job>),
}

impl HandoffTx {
    /// False when the consumer is gone.
    fn send(&self, job: Job) -> bool {
        match self {
            HandoffTx::Latest(slot) => {
                slot.put(job);
                true
            }
            HandoffTx::Queue(tx) => tx.send(job).is_ok(),
        }
    }
}

/// What the window thread found out, for the summary.
#[derive(Default)]
struct Outcome {
    error: Option<WatchError>,
    frames: u64,
    fps: f64,
    ended: bool,
}

/// Watches `source` until it ends, `duration_s` of stream time passed, or `cancel`.
pub fn watch(
    engine: &Engine,
    source: Source,
    req: &WatchRequest,
    cancel: &CancelToken,
    mut on_event: impl FnMut(WatchEvent),
) -> Result<WatchSummary, WatchError> {
    let name = source.display();
    if !(req.window_s > 0.0 && req.every_s > 0.0 && req.window_s.is_finite()) {
        return Err(WatchError::BadWindow(name));
    }
    let live = source.is_live();
    // The source thread stops on this token once the watch is over (or the caller's cancel
    // ended it): it finishes the recording, and the watch returns only after that.
    let stop = CancelToken::new();
    let LiveHandle {
        events: frames,
        thread,
    } = open_live(source, req.reconnect.clone(), stop.clone())?;
    let source_thread = SourceGuard {
        stop,
        thread: Some(thread),
    };
    let (handoff, handoff_tx) = if live {
        let slot = Arc::new(LatestSlot::new());
        (Handoff::Latest(slot.clone()), HandoffTx::Latest(slot))
    } else {
        let (tx, rx) = sync_channel(1);
        (Handoff::Queue(rx), HandoffTx::Queue(tx))
    };
    let finished = Arc::new(AtomicBool::new(false));
    let (events_tx, events_rx) = std::sync::mpsc::channel();
    let (outcome_tx, outcome_rx) = sync_channel(1);
    let windows = Windows {
        live,
        window_s: req.window_s,
        every_s: req.every_s,
        num_seg: req.num_seg,
        duration_s: req.duration_s,
        name: name.clone(),
        display: req.display.clone(),
    };
    let thread_finished = finished.clone();
    let thread_cancel = cancel.clone();
    std::thread::Builder::new()
        .name("kineto-watch-windows".into())
        .spawn(move || {
            let outcome = windows.run(&frames, &handoff_tx, &events_tx, &thread_cancel);
            let _ = outcome_tx.send(outcome);
            thread_finished.store(true, Ordering::SeqCst);
        })
        .map_err(|e| VideoError::Gstreamer {
            path: PathBuf::from("kineto-watch-windows"),
            detail: format!("cannot start the window thread: {e}"),
        })?;

    let norm = Normalize::imagenet();
    let label_of = |id: usize| {
        req.labels
            .get(id)
            .cloned()
            .unwrap_or_else(|| format!("class_{id}"))
    };
    let mut summary = WatchSummary::default();
    loop {
        while let Ok(event) = events_rx.try_recv() {
            on_event(event);
        }
        let job = match &handoff {
            Handoff::Latest(slot) => slot.take_timeout(Duration::from_millis(50)),
            Handoff::Queue(rx) => match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(job) => Some(job),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => {
                    if finished.load(Ordering::SeqCst) {
                        break;
                    }
                    None
                }
            },
        };
        let job = match job {
            Some(job) => job,
            // A last window may have come just before the flag.
            None if finished.load(Ordering::SeqCst) => {
                let last = match &handoff {
                    Handoff::Latest(slot) => slot.try_take(),
                    Handoff::Queue(rx) => rx.try_recv().ok(),
                };
                match last {
                    Some(job) => job,
                    None => break,
                }
            }
            None if cancel.is_cancelled() => break,
            None => continue,
        };
        predict(
            engine,
            &job,
            req,
            &norm,
            &label_of,
            &name,
            &mut summary,
            &mut on_event,
        )?;
    }
    while let Ok(event) = events_rx.try_recv() {
        on_event(event);
    }
    if let Handoff::Latest(slot) = &handoff {
        summary.dropped = slot.skipped();
    }
    let outcome = outcome_rx
        .recv_timeout(Duration::from_secs(5))
        .unwrap_or_default();
    let recording = source_thread.finish();
    if let Some(e) = outcome.error {
        return Err(e);
    }
    summary.recording = recording.transpose()?;
    summary.frames = outcome.frames;
    summary.fps = outcome.fps;
    summary.ended = outcome.ended;
    Ok(summary)
}

/// Stops the source thread and waits for it (and its recording) however `watch` returns.
struct SourceGuard {
    stop: CancelToken,
    thread: Option<LiveThread>,
}

impl SourceGuard {
    fn finish(mut self) -> Option<Result<Recording, VideoError>> {
        self.stop.cancel();
        self.thread.take().and_then(LiveThread::finish)
    }
}

impl Drop for SourceGuard {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.finish();
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn predict(
    engine: &Engine,
    job: &Job,
    req: &WatchRequest,
    norm: &Normalize,
    label_of: &impl Fn(usize) -> String,
    name: &str,
    summary: &mut WatchSummary,
    on_event: &mut impl FnMut(WatchEvent),
) -> Result<(), WatchError> {
    let clip = to_clip_tensor(&job.frames, norm).map_err(|source| WatchError::Frame {
        source_name: name.to_string(),
        source,
    })?;
    let dims = [1, req.num_seg, 3, clip.height, clip.width];
    let logits = engine
        .logits(clip.data, dims)
        .map_err(|source| WatchError::Infer {
            source_name: name.to_string(),
            source,
        })?;
    let wall_time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    summary.predictions += 1;
    on_event(WatchEvent::Prediction(WatchPrediction {
        t_s: job.span.end_s,
        window_start_s: job.span.start_s,
        wall_time,
        latency_ms: job.ready_at.elapsed().as_secs_f64() * 1e3,
        indices: job.indices.clone(),
        top_k: top_k(&logits, req.k, label_of),
    }));
    Ok(())
}

/// The window thread's state.
struct Windows {
    live: bool,
    window_s: f64,
    every_s: f64,
    num_seg: usize,
    duration_s: Option<f64>,
    name: String,
    display: Option<Arc<LatestSlot<RgbFrame>>>,
}

impl Windows {
    fn span(&self, k: u64) -> Span {
        let start_s = k as f64 * self.every_s;
        Span {
            start_s,
            end_s: start_s + self.window_s,
        }
    }

    fn run(
        &self,
        frames: &Receiver<LiveEvent>,
        handoff: &HandoffTx,
        events: &std::sync::mpsc::Sender<WatchEvent>,
        cancel: &CancelToken,
    ) -> Outcome {
        let mut outcome = Outcome::default();
        let mut declared_fps = 0.0;
        let mut fps = 0.0;
        let mut first_pts: Option<u64> = None;
        // Transformed frames by index, for the windows not yet handed over.
        let mut kept: BTreeMap<u32, RgbFrame> = BTreeMap::new();
        let mut next_window = 0u64;
        let mut last_frame: Option<u32> = None;
        loop {
            if cancel.is_cancelled() {
                return outcome;
            }
            let event = match frames.recv_timeout(Duration::from_millis(100)) {
                Ok(e) => e,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return outcome,
            };
            let frame = match event {
                LiveEvent::Rate(r) => {
                    declared_fps = r;
                    continue;
                }
                LiveEvent::Reconnecting {
                    attempt,
                    max,
                    wait,
                    detail,
                } => {
                    let _ = events.send(WatchEvent::Reconnecting {
                        attempt,
                        max,
                        wait,
                        detail,
                    });
                    continue;
                }
                LiveEvent::Failed(e) => {
                    outcome.error = Some(e.into());
                    return outcome;
                }
                LiveEvent::End => {
                    outcome.ended = true;
                    // timeline's last window: ending at the end when the last full one stops
                    // short, or the whole stream when it is shorter than a window.
                    if let Some(last) = last_frame
                        && fps > 0.0
                    {
                        let count = last + 1;
                        let duration = f64::from(count) / fps;
                        let done_end = if next_window == 0 {
                            0.0
                        } else {
                            self.span(next_window - 1).end_s
                        };
                        if done_end < duration - 1e-9 {
                            let span = Span {
                                start_s: (duration - self.window_s).max(0.0),
                                end_s: duration,
                            };
                            let indices = window_indices(span, fps, count, self.num_seg);
                            if let Some(job) = self.job(span, indices, &kept) {
                                handoff.send(job);
                            }
                        }
                    }
                    return outcome;
                }
                LiveEvent::Frame(f) => f,
            };
            if fps == 0.0 {
                fps = if declared_fps > 0.0 {
                    declared_fps
                } else {
                    match (first_pts, frame.pts_ns) {
                        (None, Some(p)) => {
                            first_pts = Some(p);
                            0.0
                        }
                        (Some(p0), Some(p)) if frame.index >= 10 && p > p0 => {
                            f64::from(frame.index) / ((p - p0) as f64 * 1e-9)
                        }
                        _ => 0.0,
                    }
                };
                outcome.fps = fps;
                if fps == 0.0 && frame.index >= 50 {
                    outcome.error = Some(WatchError::NoRate {
                        source_name: self.name.clone(),
                    });
                    return outcome;
                }
            }
            outcome.frames += 1;
            last_frame = Some(frame.index);
            if fps == 0.0 {
                continue;
            }
            if let Some(limit) = self.duration_s
                && f64::from(frame.index) / fps >= limit
            {
                return outcome;
            }
            let index = frame.index;
            // Keep the frame if a window still to come samples it; a source that ends keeps
            // every frame of the last window_s seconds too, for the window ending at its end.
            if !self.live || self.sampled_later(index, fps, next_window) {
                match transform_frame(&frame) {
                    Ok(small) => {
                        kept.insert(index, small);
                    }
                    Err(source) => {
                        outcome.error = Some(WatchError::Frame {
                            source_name: self.name.clone(),
                            source,
                        });
                        return outcome;
                    }
                }
            }
            // The frame as decoded goes on to whoever shows the stream (the window).
            if let Some(display) = &self.display {
                display.put(frame);
            }
            // Every window whose frames are all in goes to the model.
            loop {
                let span = self.span(next_window);
                if f64::from(index + 1) < (span.end_s * fps).floor() {
                    break;
                }
                let indices = window_indices(span, fps, index + 1, self.num_seg);
                if let Some(job) = self.job(span, indices, &kept)
                    && !handoff.send(job)
                {
                    return outcome;
                }
                next_window += 1;
            }
            let mut first_needed = (self.span(next_window).start_s * fps).floor() as u32;
            if !self.live {
                let trailing = (self.window_s * fps).ceil() as u32 + 1;
                first_needed = first_needed.min(index.saturating_sub(trailing));
            }
            while let Some((&i, _)) = kept.first_key_value() {
                if i >= first_needed {
                    break;
                }
                kept.pop_first();
            }
        }
    }

    /// Whether window `from` or a later one samples frame `index`.
    fn sampled_later(&self, index: u32, fps: f64, from: u64) -> bool {
        let mut k = from;
        loop {
            let span = self.span(k);
            let first = (span.start_s * fps).floor();
            if first > f64::from(index) {
                return false; // later windows start later still
            }
            let end = (span.end_s * fps).floor() as u32;
            let indices = window_indices(span, fps, end.max(index + 1), self.num_seg);
            if indices.contains(&index) {
                return true;
            }
            k += 1;
            if k > from + 64 {
                return false;
            }
        }
    }

    fn job(&self, span: Span, indices: Vec<u32>, kept: &BTreeMap<u32, RgbFrame>) -> Option<Job> {
        let frames: Vec<RgbFrame> = indices
            .iter()
            .filter_map(|i| kept.get(i).cloned())
            .collect();
        (frames.len() == indices.len()).then(|| Job {
            span,
            indices,
            frames,
            ready_at: Instant::now(),
        })
    }
}
