//! The app's video player: a GStreamer `playbin` owned by a control thread.
//!
//! The UI thread only sends [`PlayerCmd`]s and reads snapshots ([`Player::status`],
//! [`Player::latest_frame`], the [`FrameRing`]); it never changes states, seeks or waits. The
//! control thread owns the playbin, polls its bus and the position, and publishes a
//! [`PlayerStatus`]; GStreamer's streaming thread copies every displayed frame into a one-slot
//! mailbox (tight RGBA rows) and, when a live grid is set, the frames that cross a grid point into
//! the [`FrameRing`] (tight RGB rows). Every change ends with `Notify::notify()`.
//!
//! Video output: playbin's `video-sink` is a bin `videoconvert ! videoscale !
//! capsfilter(video/x-raw,format=RGBA[,width,height]) ! appsink(sync, max-buffers=2, drop)`, the
//! size capped at [`MAX_DISPLAY_SIDE`] on the longer side. Audio goes to `autoaudiosink`, or to a
//! synchronised `fakesink` when audio is off ([`PlayerOptions::audio`], `KINETO_NO_AUDIO=1`) or
//! no audio sink exists, so the clock still paces playback.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_pbutils as gst_pbutils;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;

use super::VideoError;
use super::frame::RgbFrame;
use super::pipeline::{self, BusState};
use super::probe::{self, VideoInfo};
use crate::progress::{Notify, lock};

/// Longest side of the frames handed to the UI (larger videos are scaled down).
pub const MAX_DISPLAY_SIDE: u32 = 1280;

/// How many grid entries the [`FrameRing`] keeps.
pub const FRAME_RING_CAPACITY: usize = 64;

/// Playback rates the player accepts ([`PlayerCmd::SetRate`] is clamped to this range).
pub const MIN_RATE: f64 = 0.25;
pub const MAX_RATE: f64 = 4.0;

/// Position poll interval while playing.
const POSITION_POLL: Duration = Duration::from_millis(50);

/// Control-thread tick while a file is open (bus polling).
const TICK: Duration = Duration::from_millis(10);

/// A step back seeks this far after the previous frame's start (see `Control::step`).
const STEP_BACK_MARGIN_S: f64 = 1e-6;

/// How long `shutdown` waits for the control thread.
const JOIN_TIMEOUT: Duration = Duration::from_secs(2);

/// What the control thread is asked to do.
#[derive(Clone, Debug, PartialEq)]
pub enum PlayerCmd {
    /// Probe and open a file (paused on its first frame).
    Open(PathBuf),
    Play,
    Pause,
    TogglePlay,
    /// Flushing seek; `accurate` decodes up to the exact position, otherwise the nearest
    /// key frame before it is shown.
    Seek {
        position_s: f64,
        accurate: bool,
    },
    /// One frame forward (a step event while paused) or back (an accurate seek to the
    /// previous frame). Pauses first when playing.
    StepFrame {
        forward: bool,
    },
    /// Playback rate, clamped to `MIN_RATE..=MAX_RATE`; the position is kept.
    SetRate(f64),
    /// Volume 0..1 (playbin `volume`).
    SetVolume(f64),
    SetMuted(bool),
    /// Store frames on a grid of fixed times for live inference (None: stop).
    SetLiveGrid(Option<LiveGrid>),
    /// Unload the file (back to `Idle`).
    Close,
}

/// Player state as the playbin's bus reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PlayState {
    /// No file.
    #[default]
    Idle,
    /// Probing / prerolling a file.
    Opening,
    Paused,
    Playing,
    /// End of stream reached (position at the duration).
    Ended,
    /// The file could not be opened or played; see `PlayerStatus::error`.
    Error,
}

/// Snapshot of the player, published by the control thread.
#[derive(Clone, Debug, PartialEq)]
pub struct PlayerStatus {
    pub path: Option<PathBuf>,
    pub state: PlayState,
    /// Stream time of the displayed frame (paused) or the pipeline position (playing).
    pub position_s: f64,
    pub duration_s: Option<f64>,
    pub fps: Option<f64>,
    /// Size of the video (the displayed frames may be smaller, see [`MAX_DISPLAY_SIDE`]).
    pub width: u32,
    pub height: u32,
    pub has_audio: bool,
    pub rate: f64,
    pub volume: f64,
    pub muted: bool,
    /// One line naming the file (missing plugins name the element and the Debian package).
    pub error: Option<String>,
    /// Bumped on every open, seek and step: work started for an older generation is stale.
    pub generation: u64,
}

impl Default for PlayerStatus {
    fn default() -> Self {
        PlayerStatus {
            path: None,
            state: PlayState::Idle,
            position_s: 0.0,
            duration_s: None,
            fps: None,
            width: 0,
            height: 0,
            has_audio: false,
            rate: 1.0,
            volume: 1.0,
            muted: false,
            error: None,
            generation: 0,
        }
    }
}

/// A frame for the screen: tightly packed RGBA rows.
#[derive(Clone, Debug, PartialEq)]
pub struct DisplayFrame {
    pub width: u32,
    pub height: u32,
    pub rgba: Vec<u8>,
    /// Stream time of the frame, in seconds.
    pub pts_s: f64,
    /// Increases with every frame the player shows (upload the texture when it changed).
    pub seq: u64,
}

/// The live sampling grid: grid index `g = floor(pts_s / step_s)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LiveGrid {
    pub step_s: f64,
}

impl LiveGrid {
    /// Grid index of a stream time (None for a non-positive step or a negative time).
    pub fn index(&self, pts_s: f64) -> Option<u64> {
        if self.step_s.is_nan() || self.step_s <= 0.0 || !pts_s.is_finite() || pts_s < 0.0 {
            return None;
        }
        // A tiny tolerance so that 0.75 / 0.25 lands on 3, not 2.999...
        Some(((pts_s + 1e-9) / self.step_s).floor() as u64)
    }
}

/// Frames for live inference, one per grid index (the most recent one stored for it), at
/// most [`FRAME_RING_CAPACITY`] entries; the oldest entry is evicted first.
#[derive(Debug)]
pub struct FrameRing {
    capacity: usize,
    entries: Mutex<VecDeque<(u64, RgbFrame)>>,
}

impl Default for FrameRing {
    fn default() -> Self {
        Self::with_capacity(FRAME_RING_CAPACITY)
    }
}

impl FrameRing {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(capacity: usize) -> Self {
        FrameRing {
            capacity: capacity.max(1),
            entries: Mutex::new(VecDeque::new()),
        }
    }

    /// Store `frame` for `grid`, replacing what was stored for it.
    pub fn insert(&self, grid: u64, frame: RgbFrame) {
        let mut entries = lock(&self.entries);
        entries.retain(|(g, _)| *g != grid);
        entries.push_back((grid, frame));
        while entries.len() > self.capacity {
            entries.pop_front();
        }
    }

    /// The frame stored for each grid index, in the order asked; None if any is missing.
    pub fn frames_for(&self, grid_indices: &[u64]) -> Option<Vec<RgbFrame>> {
        let entries = lock(&self.entries);
        grid_indices
            .iter()
            .map(|g| {
                entries
                    .iter()
                    .rev()
                    .find(|(k, _)| k == g)
                    .map(|(_, f)| f.clone())
            })
            .collect()
    }

    /// Grid index of the most recently stored frame.
    pub fn latest_grid(&self) -> Option<u64> {
        lock(&self.entries).back().map(|(g, _)| *g)
    }

    /// Grid indices held, oldest entry first.
    pub fn grid_indices(&self) -> Vec<u64> {
        lock(&self.entries).iter().map(|(g, _)| *g).collect()
    }

    pub fn len(&self) -> usize {
        lock(&self.entries).len()
    }

    pub fn is_empty(&self) -> bool {
        lock(&self.entries).is_empty()
    }

    pub fn clear(&self) {
        lock(&self.entries).clear();
    }
}

/// How the player is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlayerOptions {
    /// Play audio through `autoaudiosink`; when false (or `KINETO_NO_AUDIO=1`) audio goes to a
    /// synchronised `fakesink`.
    pub audio: bool,
}

impl Default for PlayerOptions {
    fn default() -> Self {
        PlayerOptions { audio: true }
    }
}

/// State shared by the UI, the control thread and the streaming thread.
struct Shared {
    notify: Notify,
    status: Mutex<PlayerStatus>,
    frame: Mutex<Option<Arc<DisplayFrame>>>,
    seq: AtomicU64,
    ring: Arc<FrameRing>,
    live: Mutex<Option<LiveGrid>>,
    /// Stream time of the last frame shown (None after an open or seek until one arrives).
    last_pts: Mutex<Option<f64>>,
}

/// Handle to the player; dropping it shuts the control thread down.
pub struct Player {
    tx: Option<Sender<PlayerCmd>>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    done: Receiver<()>,
}

impl std::fmt::Debug for Player {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Player")
            .field("running", &self.tx.is_some())
            .finish()
    }
}

impl Player {
    /// Start the control thread with default options (audio on unless `KINETO_NO_AUDIO=1`).
    pub fn spawn(notify: Notify) -> Player {
        Self::spawn_with(notify, PlayerOptions::default())
    }

    /// Start the control thread.
    pub fn spawn_with(notify: Notify, options: PlayerOptions) -> Player {
        let shared = Arc::new(Shared {
            notify,
            status: Mutex::new(PlayerStatus::default()),
            frame: Mutex::new(None),
            seq: AtomicU64::new(0),
            ring: Arc::new(FrameRing::new()),
            live: Mutex::new(None),
            last_pts: Mutex::new(None),
        });
        let (tx, rx) = crossbeam_channel::unbounded();
        let (done_tx, done) = crossbeam_channel::bounded::<()>(0);
        let audio = options.audio && std::env::var("KINETO_NO_AUDIO").as_deref() != Ok("1");
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("kineto-player".into())
            .spawn(move || {
                // Dropped when the thread ends, panic or not: `shutdown` sees Disconnected.
                let _done = done_tx;
                Control::new(thread_shared, rx, audio).run();
            });
        let (tx, thread) = match thread {
            Ok(t) => (Some(tx), Some(t)),
            Err(e) => {
                let mut st = lock(&shared.status);
                st.state = PlayState::Error;
                st.error = Some(format!("cannot start the player thread: {e}"));
                (None, None)
            }
        };
        Player {
            tx,
            shared,
            thread,
            done,
        }
    }

    /// Send any command (never blocks).
    pub fn send(&self, cmd: PlayerCmd) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(cmd);
        }
    }

    pub fn open(&self, path: impl Into<PathBuf>) {
        self.send(PlayerCmd::Open(path.into()));
    }

    pub fn play(&self) {
        self.send(PlayerCmd::Play);
    }

    pub fn pause(&self) {
        self.send(PlayerCmd::Pause);
    }

    pub fn toggle_play(&self) {
        self.send(PlayerCmd::TogglePlay);
    }

    pub fn seek(&self, position_s: f64, accurate: bool) {
        self.send(PlayerCmd::Seek {
            position_s,
            accurate,
        });
    }

    pub fn step_frame(&self, forward: bool) {
        self.send(PlayerCmd::StepFrame { forward });
    }

    pub fn set_rate(&self, rate: f64) {
        self.send(PlayerCmd::SetRate(rate));
    }

    pub fn set_volume(&self, volume: f64) {
        self.send(PlayerCmd::SetVolume(volume));
    }

    pub fn set_muted(&self, muted: bool) {
        self.send(PlayerCmd::SetMuted(muted));
    }

    pub fn set_live_grid(&self, grid: Option<LiveGrid>) {
        self.send(PlayerCmd::SetLiveGrid(grid));
    }

    /// Unload the file.
    pub fn close(&self) {
        self.send(PlayerCmd::Close);
    }

    /// Snapshot of the status.
    pub fn status(&self) -> PlayerStatus {
        lock(&self.shared.status).clone()
    }

    /// The latest displayed frame.
    pub fn latest_frame(&self) -> Option<Arc<DisplayFrame>> {
        lock(&self.shared.frame).clone()
    }

    /// The live frames (shared with the inference service).
    pub fn frame_ring(&self) -> Arc<FrameRing> {
        Arc::clone(&self.shared.ring)
    }

    /// Close the file, stop the control thread and join it (at most 2 s; a thread that does
    /// not finish in time is left detached).
    pub fn shutdown(&mut self) {
        let Some(tx) = self.tx.take() else { return };
        let _ = tx.send(PlayerCmd::Close);
        drop(tx);
        match self.done.recv_timeout(JOIN_TIMEOUT) {
            Err(RecvTimeoutError::Timeout) => {
                self.thread.take(); // detached
            }
            _ => {
                if let Some(t) = self.thread.take() {
                    let _ = t.join();
                }
            }
        }
    }
}

impl Drop for Player {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Something to do once the pipeline is paused and prerolled.
#[derive(Clone, Copy, Debug)]
enum Deferred {
    Seek { position_s: f64, accurate: bool },
    Step,
}

/// One open file.
struct Session {
    path: PathBuf,
    playbin: gst::Element,
    bus: gst::Bus,
    appsink: gst_app::AppSink,
    bus_state: BusState,
    info: VideoInfo,
    /// Reached PAUSED once (first frame shown).
    prerolled: bool,
    /// The state we last asked for.
    target: gst::State,
    /// Play once prerolled (a Play while opening).
    play_after_preroll: bool,
    deferred: Vec<Deferred>,
    /// EOS reached and not seeked since.
    at_eos: bool,
    /// Seconds per frame.
    frame_dur: f64,
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.playbin.set_state(gst::State::Null);
    }
}

struct Control {
    shared: Arc<Shared>,
    rx: Receiver<PlayerCmd>,
    audio: bool,
    status: PlayerStatus,
    published: PlayerStatus,
    session: Option<Session>,
    last_poll: Instant,
}

impl Control {
    fn new(shared: Arc<Shared>, rx: Receiver<PlayerCmd>, audio: bool) -> Self {
        let status = lock(&shared.status).clone();
        Control {
            shared,
            rx,
            audio,
            published: status.clone(),
            status,
            session: None,
            last_poll: Instant::now(),
        }
    }

    fn run(mut self) {
        loop {
            let cmd = if self.session.is_some() {
                match self.rx.recv_timeout(TICK) {
                    Ok(c) => Some(c),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match self.rx.recv() {
                    Ok(c) => Some(c),
                    Err(_) => break,
                }
            };
            if let Some(cmd) = cmd {
                self.guarded(|c| c.handle(cmd));
                // Serve every queued command before polling.
                while let Ok(cmd) = self.rx.try_recv() {
                    self.guarded(|c| c.handle(cmd));
                }
            }
            self.guarded(|c| c.poll_bus());
            self.guarded(|c| c.update_position());
            self.publish();
        }
        self.unload();
        self.publish();
    }

    /// Drop the file: pipeline to Null, status back to Idle (volume, mute and rate kept).
    fn unload(&mut self) {
        self.session = None;
        self.status = PlayerStatus {
            generation: self.status.generation + 1,
            rate: self.status.rate,
            volume: self.status.volume,
            muted: self.status.muted,
            ..PlayerStatus::default()
        };
        self.clear_frames();
    }

    /// Run `f`, turning a panic into an error state (the thread keeps serving).
    fn guarded(&mut self, f: impl FnOnce(&mut Self)) {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| f(self))) {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            let name = self
                .status
                .path
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "player".into());
            self.session = None;
            self.status.state = PlayState::Error;
            self.status.error = Some(one_line(&format!("{name}: internal error: {what}")));
        }
    }

    fn publish(&mut self) {
        if self.status != self.published {
            self.published = self.status.clone();
            *lock(&self.shared.status) = self.status.clone();
            self.shared.notify.notify();
        }
    }

    fn clear_frames(&self) {
        *lock(&self.shared.frame) = None;
        *lock(&self.shared.last_pts) = None;
        self.shared.ring.clear();
    }

    fn handle(&mut self, cmd: PlayerCmd) {
        match cmd {
            PlayerCmd::Open(path) => self.open(path),
            PlayerCmd::Play => self.play(),
            PlayerCmd::Pause => self.pause(),
            PlayerCmd::TogglePlay => {
                let playing = self
                    .session
                    .as_ref()
                    .is_some_and(|s| wants_playing(s) && !s.at_eos);
                if playing { self.pause() } else { self.play() }
            }
            PlayerCmd::Seek {
                position_s,
                accurate,
            } => self.seek(position_s, accurate),
            PlayerCmd::StepFrame { forward } => self.step(forward),
            PlayerCmd::SetRate(rate) => self.set_rate(rate),
            PlayerCmd::SetVolume(v) => {
                let v = if v.is_finite() {
                    v.clamp(0.0, 1.0)
                } else {
                    1.0
                };
                self.status.volume = v;
                if let Some(s) = &self.session {
                    s.playbin.set_property("volume", v);
                }
            }
            PlayerCmd::SetMuted(m) => {
                self.status.muted = m;
                if let Some(s) = &self.session {
                    s.playbin.set_property("mute", m);
                }
            }
            PlayerCmd::SetLiveGrid(grid) => {
                let grid = grid.filter(|g| g.step_s.is_finite() && g.step_s > 0.0);
                let mut live = lock(&self.shared.live);
                if *live != grid {
                    *live = grid;
                    self.shared.ring.clear();
                }
            }
            PlayerCmd::Close => self.unload(),
        }
    }

    fn open(&mut self, path: PathBuf) {
        // The old file goes to Null first: no frame of it arrives after this.
        self.unload();
        self.status.path = Some(path.clone());
        self.status.state = PlayState::Opening;
        self.publish();
        match self.start(&path) {
            Ok(session) => {
                let info = &session.info;
                self.status.fps = (info.fps() > 0.0).then(|| info.fps());
                self.status.duration_s = (info.duration_s > 0.0).then_some(info.duration_s);
                self.status.width = info.width;
                self.status.height = info.height;
                self.session = Some(session);
            }
            Err(e) => self.fail(e),
        }
    }

    fn fail(&mut self, e: VideoError) {
        self.session = None;
        self.status.state = PlayState::Error;
        self.status.error = Some(one_line(&e.to_string()));
    }

    /// Probe, build the playbin and start prerolling.
    fn start(&mut self, path: &Path) -> Result<Session, VideoError> {
        let info = probe::probe(path)?;
        pipeline::init(path)?;
        let gerr = |detail: String| VideoError::Gstreamer {
            path: path.to_path_buf(),
            detail,
        };
        let abs = std::path::absolute(path).map_err(|e| gerr(format!("bad path: {e}")))?;
        let uri = gst::glib::filename_to_uri(&abs, None)
            .map_err(|e| gerr(format!("cannot make a URI: {e}")))?;

        let playbin = pipeline::make("playbin", path)?;
        let (video_sink, appsink) = self.video_sink(path, &info)?;
        playbin.set_property("uri", uri.as_str());
        playbin.set_property("video-sink", &video_sink);
        playbin.set_property("audio-sink", &self.audio_sink(path)?);
        playbin.set_property("volume", self.status.volume);
        playbin.set_property("mute", self.status.muted);
        let bus = playbin
            .bus()
            .ok_or_else(|| gerr("playbin has no bus".into()))?;

        let fps = info.fps();
        let frame_dur = if fps > 0.0 { 1.0 / fps } else { 1.0 / 25.0 };
        let mut session = Session {
            path: path.to_path_buf(),
            playbin,
            bus,
            appsink,
            bus_state: BusState::new(path),
            info,
            prerolled: false,
            target: gst::State::Paused,
            play_after_preroll: false,
            deferred: Vec::new(),
            at_eos: false,
            frame_dur,
        };
        if session.playbin.set_state(gst::State::Paused).is_err() {
            // The reason is on the bus.
            let deadline = Instant::now() + Duration::from_millis(500);
            while let Some(msg) = session.bus.timed_pop(gst::ClockTime::from_mseconds(50)) {
                if let Some(e) = note_message(&mut session.bus_state, &msg) {
                    return Err(e);
                }
                if Instant::now() > deadline {
                    break;
                }
            }
            return Err(VideoError::Corrupt {
                path: path.to_path_buf(),
                detail: "the player could not start".into(),
            });
        }
        Ok(session)
    }

    fn audio_sink(&self, path: &Path) -> Result<gst::Element, VideoError> {
        if self.audio
            && let Ok(sink) = gst::ElementFactory::make("autoaudiosink").build()
        {
            return Ok(sink);
        }
        let sink = pipeline::make("fakesink", path)?;
        sink.set_property("sync", true);
        Ok(sink)
    }

    /// `videoconvert ! videoscale ! capsfilter(RGBA) ! appsink` in a bin, frames to the mailbox.
    fn video_sink(
        &self,
        path: &Path,
        info: &VideoInfo,
    ) -> Result<(gst::Element, gst_app::AppSink), VideoError> {
        let gerr = |detail: &str| VideoError::Gstreamer {
            path: path.to_path_buf(),
            detail: detail.to_string(),
        };
        let convert = pipeline::make("videoconvert", path)?;
        let scale = pipeline::make("videoscale", path)?;
        let filter = pipeline::make("capsfilter", path)?;
        let sink = pipeline::make("appsink", path)?;
        let mut caps = gst::Caps::builder("video/x-raw").field("format", "RGBA");
        if let Some((w, h)) = display_size(info.width, info.height) {
            caps = caps
                .field("width", w as i32)
                .field("height", h as i32)
                .field("pixel-aspect-ratio", gst::Fraction::new(1, 1));
        }
        filter.set_property("caps", caps.build());
        sink.set_property("sync", true);
        sink.set_property("max-buffers", 2u32);
        sink.set_property("drop", true);
        let bin = gst::Bin::new();
        bin.add_many([&convert, &scale, &filter, &sink])
            .map_err(|_| gerr("cannot build the video sink"))?;
        gst::Element::link_many([&convert, &scale, &filter, &sink])
            .map_err(|_| gerr("cannot link the video sink"))?;
        let pad = convert
            .static_pad("sink")
            .ok_or_else(|| gerr("videoconvert has no sink pad"))?;
        let ghost = gst::GhostPad::with_target(&pad)
            .map_err(|_| gerr("cannot make the video sink's pad"))?;
        bin.add_pad(&ghost)
            .map_err(|_| gerr("cannot add the video sink's pad"))?;
        let appsink = sink
            .downcast::<gst_app::AppSink>()
            .map_err(|_| gerr("appsink is not an AppSink"))?;

        let fps = info.fps();
        let on_preroll = FrameTaker::new(Arc::clone(&self.shared), fps);
        let on_sample = on_preroll.clone();
        appsink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_preroll(move |s| {
                    if let Ok(sample) = s.pull_preroll() {
                        on_preroll.take(&sample);
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    on_sample.take(&sample);
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        Ok((bin.upcast(), appsink))
    }

    fn play(&mut self) {
        let rate = self.status.rate;
        let Some(s) = self.session.as_mut() else {
            return;
        };
        if !s.prerolled {
            s.play_after_preroll = true;
            return;
        }
        let restart = s.at_eos;
        if restart {
            do_seek(s, 0.0, true, rate);
            self.after_seek(0.0, true);
        }
        let Some(s) = self.session.as_mut() else {
            return;
        };
        if !s.deferred.is_empty() && s.target == gst::State::Paused {
            // A step is on its way: play once it is done.
            s.play_after_preroll = true;
            return;
        }
        s.target = gst::State::Playing;
        if s.playbin.set_state(gst::State::Playing).is_err() {
            self.bus_error_or("cannot play");
            return;
        }
        if restart || s.playbin.current_state() == gst::State::Playing {
            // Already PLAYING (at EOS): the bus will not report a change.
            self.status.state = PlayState::Playing;
        }
    }

    fn pause(&mut self) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        s.play_after_preroll = false;
        if !s.prerolled || s.target == gst::State::Paused {
            return;
        }
        s.target = gst::State::Paused;
        if s.playbin.set_state(gst::State::Paused).is_err() {
            self.bus_error_or("cannot pause");
        }
    }

    fn seek(&mut self, position_s: f64, accurate: bool) {
        let rate = self.status.rate;
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let mut position_s = if position_s.is_finite() {
            position_s.max(0.0)
        } else {
            0.0
        };
        if let Some(d) = self.status.duration_s {
            position_s = position_s.min(d);
        }
        if !s.prerolled {
            s.deferred.retain(|d| !matches!(d, Deferred::Seek { .. }));
            s.deferred.push(Deferred::Seek {
                position_s,
                accurate,
            });
        } else {
            if s.at_eos && s.target == gst::State::Playing {
                // Seeking after the end leaves the player paused at the target.
                s.target = gst::State::Paused;
                let _ = s.playbin.set_state(gst::State::Paused);
            }
            do_seek(s, position_s, accurate, rate);
        }
        self.after_seek(position_s, true);
    }

    /// Bookkeeping after a (possibly deferred) flushing seek.
    fn after_seek(&mut self, position_s: f64, clear_ring: bool) {
        self.status.generation += 1;
        self.status.position_s = position_s;
        if self.status.state == PlayState::Ended {
            self.status.state = PlayState::Paused;
        }
        *lock(&self.shared.last_pts) = None;
        if clear_ring {
            self.shared.ring.clear();
        }
        if let Some(s) = self.session.as_mut() {
            s.at_eos = false;
        }
    }

    fn step(&mut self, forward: bool) {
        let current = lock(&self.shared.last_pts).unwrap_or(self.status.position_s);
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let frame_dur = s.frame_dur;
        let action = if forward {
            if s.at_eos {
                return;
            }
            Deferred::Step
        } else {
            // The previous frame starts one frame duration back. An accurate seek clips the
            // first frame to the target (its pts becomes the target), and a target a hair
            // early would keep the frame before (it would end after the target): aim 1 us
            // after the previous frame's start.
            Deferred::Seek {
                position_s: (current - frame_dur + STEP_BACK_MARGIN_S).max(0.0),
                accurate: true,
            }
        };
        s.play_after_preroll = false;
        if s.prerolled && s.target == gst::State::Paused {
            match action {
                Deferred::Seek {
                    position_s,
                    accurate,
                } => {
                    do_seek(s, position_s, accurate, self.status.rate);
                    // Report the previous frame's time until it arrives (a second step back
                    // before then starts from it).
                    self.after_seek((current - frame_dur).max(0.0), true);
                }
                Deferred::Step => self.apply(action),
            }
            return;
        }
        if s.prerolled {
            s.target = gst::State::Paused;
            let _ = s.playbin.set_state(gst::State::Paused);
        }
        s.deferred.push(action);
        if forward {
            self.status.generation += 1;
        } else {
            self.after_seek((current - frame_dur).max(0.0), true);
        }
    }

    fn apply(&mut self, action: Deferred) {
        let rate = self.status.rate;
        let Some(s) = self.session.as_mut() else {
            return;
        };
        match action {
            Deferred::Seek {
                position_s,
                accurate,
            } => {
                do_seek(s, position_s, accurate, rate);
                self.after_seek(position_s, true);
            }
            Deferred::Step => {
                let step = gst::event::Step::new(gst::format::Buffers::ONE, 1.0, true, false);
                s.appsink.send_event(step);
                self.status.generation += 1;
            }
        }
    }

    fn set_rate(&mut self, rate: f64) {
        let rate = if rate.is_finite() {
            rate.clamp(MIN_RATE, MAX_RATE)
        } else {
            1.0
        };
        if rate == self.status.rate {
            return;
        }
        self.status.rate = rate;
        let position = self.current_position();
        let Some(s) = self.session.as_mut() else {
            return;
        };
        if s.prerolled && !s.at_eos {
            // A flushing seek to where we are, at the new rate: frames keep their times, so
            // the generation and the live frames stay.
            do_seek(s, position, true, rate);
        }
    }

    /// Best current position: the pipeline's while playing, the shown frame's when paused.
    fn current_position(&self) -> f64 {
        if let Some(s) = &self.session
            && s.target == gst::State::Playing
            && let Some(p) = s.playbin.query_position::<gst::ClockTime>()
        {
            return p.nseconds() as f64 / 1e9;
        }
        lock(&self.shared.last_pts).unwrap_or(self.status.position_s)
    }

    /// Report the error the bus holds, or `what`.
    fn bus_error_or(&mut self, what: &str) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let mut found = None;
        while let Some(msg) = s.bus.timed_pop(gst::ClockTime::from_mseconds(100)) {
            if let Some(e) = note_message(&mut s.bus_state, &msg) {
                found = Some(e);
                break;
            }
        }
        let e = found.unwrap_or_else(|| VideoError::Corrupt {
            path: s.path.clone(),
            detail: what.to_string(),
        });
        self.fail(e);
    }

    fn poll_bus(&mut self) {
        loop {
            let Some(s) = self.session.as_mut() else {
                return;
            };
            let Some(msg) = s.bus.pop() else { return };
            use gst::MessageView;
            match msg.view() {
                MessageView::Error(_) | MessageView::Element(_) => {
                    if let Some(e) = note_message(&mut s.bus_state, &msg) {
                        self.fail(e);
                        return;
                    }
                }
                MessageView::Eos(_) => {
                    s.at_eos = true;
                    self.status.state = PlayState::Ended;
                    if let Some(d) = self.status.duration_s {
                        self.status.position_s = d;
                    }
                }
                MessageView::StateChanged(sc) => {
                    let from_playbin = msg
                        .src()
                        .is_some_and(|src| src == s.playbin.upcast_ref::<gst::Object>());
                    if !from_playbin || sc.pending() != gst::State::VoidPending {
                        continue;
                    }
                    match sc.current() {
                        gst::State::Paused => self.on_paused(),
                        gst::State::Playing if !s.at_eos => {
                            self.status.state = PlayState::Playing;
                        }
                        _ => {}
                    }
                }
                MessageView::DurationChanged(_) => {
                    if let Some(d) = s.playbin.query_duration::<gst::ClockTime>() {
                        self.status.duration_s = Some(d.nseconds() as f64 / 1e9);
                    }
                }
                _ => {}
            }
        }
    }

    /// The playbin is paused and prerolled.
    fn on_paused(&mut self) {
        let rate = self.status.rate;
        let Some(s) = self.session.as_mut() else {
            return;
        };
        if !s.prerolled {
            s.prerolled = true;
            if let Some(d) = s.playbin.query_duration::<gst::ClockTime>()
                && d.nseconds() > 0
            {
                self.status.duration_s = Some(d.nseconds() as f64 / 1e9);
            }
            let n_audio = s.playbin.property::<i32>("n-audio");
            self.status.has_audio = n_audio > 0;
            if rate != 1.0
                && !s
                    .deferred
                    .iter()
                    .any(|d| matches!(d, Deferred::Seek { .. }))
            {
                do_seek(s, 0.0, true, rate);
            }
        }
        if s.target == gst::State::Playing {
            // A flushing seek while playing passes through PAUSED; nothing to report.
            return;
        }
        if !s.at_eos {
            self.status.state = PlayState::Paused;
        }
        // Seeks and steps asked for while opening or pausing, in order.
        for action in std::mem::take(&mut s.deferred) {
            match action {
                Deferred::Seek {
                    position_s,
                    accurate,
                } => {
                    do_seek(s, position_s, accurate, rate);
                    // The bookkeeping was done when the command came.
                    s.at_eos = false;
                    *lock(&self.shared.last_pts) = None;
                }
                Deferred::Step => {
                    let step = gst::event::Step::new(gst::format::Buffers::ONE, 1.0, true, false);
                    s.appsink.send_event(step);
                }
            }
        }
        if s.play_after_preroll {
            s.play_after_preroll = false;
            self.play();
        }
    }

    fn update_position(&mut self) {
        let Some(s) = &self.session else { return };
        match self.status.state {
            PlayState::Playing
                if s.target == gst::State::Playing && self.last_poll.elapsed() >= POSITION_POLL =>
            {
                self.last_poll = Instant::now();
                if let Some(p) = s.playbin.query_position::<gst::ClockTime>() {
                    let mut p = p.nseconds() as f64 / 1e9;
                    if let Some(d) = self.status.duration_s {
                        p = p.min(d);
                    }
                    self.status.position_s = p;
                }
            }
            PlayState::Paused | PlayState::Opening => {
                if let Some(p) = *lock(&self.shared.last_pts) {
                    self.status.position_s = p;
                }
            }
            _ => {}
        }
    }
}

fn wants_playing(s: &Session) -> bool {
    if s.prerolled {
        s.target == gst::State::Playing
    } else {
        s.play_after_preroll
    }
}

/// A flushing seek at `rate` (position kept in stream time).
fn do_seek(s: &Session, position_s: f64, accurate: bool, rate: f64) {
    let flags = gst::SeekFlags::FLUSH
        | if accurate {
            gst::SeekFlags::ACCURATE
        } else {
            gst::SeekFlags::KEY_UNIT | gst::SeekFlags::SNAP_BEFORE
        };
    let pos = gst::ClockTime::from_nseconds((position_s.max(0.0) * 1e9).round() as u64);
    let _ = s.playbin.seek(
        rate,
        flags,
        gst::SeekType::Set,
        pos,
        gst::SeekType::None,
        gst::ClockTime::NONE,
    );
}

/// Record missing-plugin notes; return the error an error message means.
fn note_message(bus_state: &mut BusState, msg: &gst::Message) -> Option<VideoError> {
    use gst::MessageView;
    match msg.view() {
        MessageView::Element(_) => {
            if let Ok(m) = gst_pbutils::MissingPluginMessage::parse(msg) {
                bus_state.missing.push((
                    m.description().to_string(),
                    m.installer_detail().to_string(),
                ));
            }
            None
        }
        MessageView::Error(e) => Some(bus_state.map_error(e)),
        _ => None,
    }
}

/// Display size for a `width x height` video: None when it fits in [`MAX_DISPLAY_SIDE`],
/// otherwise the scaled size (aspect kept, even dimensions).
pub fn display_size(width: u32, height: u32) -> Option<(u32, u32)> {
    let long = width.max(height);
    if width == 0 || height == 0 || long <= MAX_DISPLAY_SIDE {
        return None;
    }
    let scale = MAX_DISPLAY_SIDE as f64 / long as f64;
    let even = |v: u32| -> u32 {
        let s = (v as f64 * scale / 2.0).round() as u32 * 2;
        s.clamp(2, MAX_DISPLAY_SIDE)
    };
    Some((even(width), even(height)))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Turns samples into display frames and live frames (runs on the streaming thread).
#[derive(Clone)]
struct FrameTaker {
    shared: Arc<Shared>,
    fps: f64,
    /// (buffer address, pts) of the last frame taken: the preroll buffer is rendered again
    /// when playback starts.
    last: Arc<Mutex<Option<FrameKey>>>,
}

/// (buffer address, pts in ns) of a frame.
type FrameKey = (usize, Option<u64>);

impl FrameTaker {
    fn new(shared: Arc<Shared>, fps: f64) -> Self {
        FrameTaker {
            shared,
            fps,
            last: Arc::new(Mutex::new(None)),
        }
    }

    fn take(&self, sample: &gst::Sample) {
        let Some(buffer) = sample.buffer() else {
            return;
        };
        let pts = buffer.pts();
        let key = (buffer.as_ptr() as usize, pts.map(|p| p.nseconds()));
        {
            let mut last = lock(&self.last);
            if *last == Some(key) {
                return;
            }
            *last = Some(key);
        }
        let Some((width, height, rgba)) = copy_rgba(sample) else {
            return;
        };
        let stream_time = pts.and_then(|p| {
            sample
                .segment()
                .and_then(|seg| seg.downcast_ref::<gst::ClockTime>())
                .and_then(|seg| seg.to_stream_time(p))
                .or(Some(p))
        });
        let pts_s = match stream_time {
            Some(t) => t.nseconds() as f64 / 1e9,
            None => lock(&self.shared.last_pts).unwrap_or(0.0),
        };

        let grid = *lock(&self.shared.live);
        if let Some(g) = grid.and_then(|g| g.index(pts_s))
            && self.shared.ring.latest_grid() != Some(g)
        {
            let mut rgb = Vec::with_capacity(rgba.len() / 4 * 3);
            for px in rgba.chunks_exact(4) {
                rgb.extend_from_slice(&px[..3]);
            }
            let index = if self.fps > 0.0 {
                (pts_s * self.fps).round() as u32
            } else {
                0
            };
            self.shared.ring.insert(
                g,
                RgbFrame {
                    index,
                    pts_ns: stream_time.map(|t| t.nseconds()),
                    width,
                    height,
                    data: rgb,
                },
            );
        }

        let seq = self.shared.seq.fetch_add(1, Ordering::SeqCst) + 1;
        *lock(&self.shared.last_pts) = Some(pts_s);
        *lock(&self.shared.frame) = Some(Arc::new(DisplayFrame {
            width,
            height,
            rgba,
            pts_s,
            seq,
        }));
        self.shared.notify.notify();
    }
}

/// Copy an RGBA sample into tight rows (GStreamer may pad them).
fn copy_rgba(sample: &gst::Sample) -> Option<(u32, u32, Vec<u8>)> {
    let info = gst_video::VideoInfo::from_caps(sample.caps()?).ok()?;
    if info.format() != gst_video::VideoFormat::Rgba {
        return None;
    }
    let buffer = sample.buffer()?;
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info).ok()?;
    let (w, h) = (info.width(), info.height());
    let row = w as usize * 4;
    let stride = usize::try_from(*frame.plane_stride().first()?).ok()?;
    let data = frame.plane_data(0).ok()?;
    if h == 0 || stride < row || data.len() < (h as usize - 1) * stride + row {
        return None;
    }
    let mut rgba = Vec::with_capacity(row * h as usize);
    for y in 0..h as usize {
        rgba.extend_from_slice(&data[y * stride..y * stride + row]);
    }
    Some((w, h, rgba))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::synth::{ClipSpec, Codec, Container, synth_clip};
    use std::sync::atomic::AtomicUsize;

    const DEADLINE: Duration = Duration::from_secs(20);

    /// A unique temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            static N: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "kineto-player-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            std::fs::create_dir_all(&dir).expect("temp dir");
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn clip(dir: &TempDir, frames: u32) -> PathBuf {
        let path = dir.0.join("clip.mp4");
        synth_clip(&path, &ClipSpec::new(Container::Mp4, Codec::H264, frames))
            .unwrap_or_else(|e| panic!("{e}"));
        path
    }

    fn player() -> Player {
        Player::spawn_with(Notify::none(), PlayerOptions { audio: false })
    }

    /// Poll the status until `pred` holds (panics with the last status after the deadline).
    fn wait_for(p: &Player, what: &str, pred: impl Fn(&PlayerStatus) -> bool) -> PlayerStatus {
        let start = Instant::now();
        loop {
            let st = p.status();
            if pred(&st) {
                return st;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "timed out waiting for {what}: {st:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn wait_frame(
        p: &Player,
        what: &str,
        pred: impl Fn(&DisplayFrame) -> bool,
    ) -> Arc<DisplayFrame> {
        let start = Instant::now();
        loop {
            if let Some(f) = p.latest_frame()
                && pred(&f)
            {
                return f;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "timed out waiting for {what}: {:?}",
                p.status()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Open `path` and wait until it is paused (or failed); waits for this open's status,
    /// not the one before it.
    fn open_paused(p: &Player, path: &Path) -> PlayerStatus {
        let g0 = p.status().generation;
        p.open(path);
        wait_for(p, "paused", |s| {
            s.generation > g0
                && s.path.as_deref() == Some(path)
                && matches!(s.state, PlayState::Paused | PlayState::Error)
        })
    }

    #[test]
    fn opens_paused_on_the_first_frame() {
        let dir = TempDir::new("open");
        let path = clip(&dir, 75);
        let p = player();
        let st = open_paused(&p, &path);
        assert_eq!(st.state, PlayState::Paused, "{st:?}");
        assert_eq!(st.path.as_deref(), Some(path.as_path()));
        let d = st.duration_s.expect("duration");
        assert!((d - 3.0).abs() < 0.05, "duration {d}");
        assert!((st.fps.expect("fps") - 25.0).abs() < 1e-9);
        assert_eq!((st.width, st.height), (320, 240));
        assert!(!st.has_audio);
        assert!(st.generation >= 1);
        assert!(st.error.is_none());
        let f = wait_frame(&p, "first frame", |_| true);
        assert_eq!((f.width, f.height), (320, 240));
        assert_eq!(f.rgba.len(), 320 * 240 * 4);
        assert!(f.pts_s.abs() < 1e-3, "first pts {}", f.pts_s);
        assert!(st.position_s.abs() < 1e-3);
    }

    #[test]
    fn plays_then_ends_and_restarts() {
        let dir = TempDir::new("play");
        let path = clip(&dir, 50);
        let p = player();
        let st = open_paused(&p, &path);
        assert_eq!(st.state, PlayState::Paused, "{st:?}");
        let first = wait_frame(&p, "first frame", |_| true).seq;
        p.play();
        wait_for(&p, "playing", |s| s.state == PlayState::Playing);
        wait_for(&p, "position to advance", |s| s.position_s > 0.3);
        let f = wait_frame(&p, "more frames", |f| f.seq >= first + 5);
        assert!(f.pts_s > 0.1, "pts {}", f.pts_s);

        // Faster to the end.
        p.set_rate(4.0);
        let st = wait_for(&p, "end", |s| s.state == PlayState::Ended);
        assert_eq!(st.rate, 4.0);
        assert!((st.position_s - 2.0).abs() < 0.05, "{st:?}");

        // Play after the end starts again from 0.
        let gen_ended = st.generation;
        p.set_rate(1.0);
        p.play();
        let st = wait_for(&p, "playing again", |s| {
            s.state == PlayState::Playing && s.generation > gen_ended
        });
        assert!(st.position_s < 1.0, "{st:?}");
        p.toggle_play();
        wait_for(&p, "paused by toggle", |s| s.state == PlayState::Paused);
    }

    #[test]
    fn seeks_and_steps_while_paused() {
        let dir = TempDir::new("seek");
        let path = clip(&dir, 75);
        let p = player();
        let st = open_paused(&p, &path);
        assert_eq!(st.state, PlayState::Paused, "{st:?}");
        wait_frame(&p, "first frame", |_| true);

        let g0 = st.generation;
        p.seek(1.0, true);
        let st = wait_for(&p, "seek", |s| {
            s.generation > g0 && s.state == PlayState::Paused && (s.position_s - 1.0).abs() < 0.02
        });
        let f = wait_frame(&p, "frame at 1 s", |f| (f.pts_s - 1.0).abs() < 0.02);
        let dur = 1.0 / st.fps.expect("fps");

        let g1 = st.generation;
        p.step_frame(true);
        let stepped = wait_frame(&p, "stepped frame", |g| g.seq > f.seq);
        assert!(
            (stepped.pts_s - f.pts_s - dur).abs() < 0.005,
            "step forward {} -> {}",
            f.pts_s,
            stepped.pts_s
        );
        let st = wait_for(&p, "position after step", |s| {
            (s.position_s - stepped.pts_s).abs() < 1e-6
        });
        assert!(st.generation > g1);
        assert_eq!(st.state, PlayState::Paused);

        let g2 = st.generation;
        p.step_frame(false);
        let back = wait_frame(&p, "stepped back", |g| g.seq > stepped.seq);
        eprintln!(
            "step back: {:.7} -> {:.7} (expected {:.7})",
            stepped.pts_s,
            back.pts_s,
            stepped.pts_s - dur
        );
        assert!(
            (back.pts_s - (stepped.pts_s - dur)).abs() < 0.005,
            "step back {} -> {}",
            stepped.pts_s,
            back.pts_s
        );
        let st = wait_for(&p, "position after step back", |s| {
            s.state == PlayState::Paused && (s.position_s - back.pts_s).abs() < 1e-6
        });
        assert!(st.generation > g2);
    }

    #[test]
    fn step_while_playing_pauses_and_audio_is_reported() {
        let dir = TempDir::new("step-play");
        let path = dir.0.join("av.mp4");
        let spec = ClipSpec {
            audio: true,
            ..ClipSpec::new(Container::Mp4, Codec::H264, 50)
        };
        synth_clip(&path, &spec).unwrap_or_else(|e| panic!("{e}"));
        let p = player();
        let st = open_paused(&p, &path);
        assert_eq!(st.state, PlayState::Paused, "{st:?}");
        assert!(st.has_audio, "{st:?}");
        p.set_volume(0.5);
        p.set_muted(true);
        p.play();
        wait_for(&p, "playing", |s| {
            s.state == PlayState::Playing && s.position_s > 0.2
        });
        let g = p.status().generation;
        p.step_frame(false);
        let st = wait_for(&p, "paused by the step", |s| {
            s.state == PlayState::Paused && s.generation > g
        });
        assert_eq!((st.volume, st.muted), (0.5, true));
        let back = wait_frame(&p, "frame after the step", |f| {
            (f.pts_s - st.position_s).abs() < 1e-3
        });
        // Two more steps back land exactly one frame apart each.
        let dur = 1.0 / st.fps.expect("fps");
        let mut prev = back;
        for _ in 0..2 {
            p.step_frame(false);
            let f = wait_frame(&p, "step back", |f| f.seq > prev.seq);
            assert!(
                (prev.pts_s - f.pts_s - dur).abs() < 0.001,
                "{} -> {}",
                prev.pts_s,
                f.pts_s
            );
            prev = f;
        }
    }

    #[test]
    fn live_grid_collects_consecutive_frames() {
        let dir = TempDir::new("live");
        let path = clip(&dir, 50);
        let p = player();
        let ring = p.frame_ring();
        p.set_live_grid(Some(LiveGrid { step_s: 0.25 }));
        let st = open_paused(&p, &path);
        assert_eq!(st.state, PlayState::Paused, "{st:?}");
        p.play();
        let start = Instant::now();
        while ring.latest_grid().unwrap_or(0) < 4 {
            assert!(start.elapsed() < DEADLINE, "ring {:?}", ring.grid_indices());
            std::thread::sleep(Duration::from_millis(5));
        }
        let frames = ring.frames_for(&[1, 2, 3]).expect("frames 1..3");
        for (g, f) in [1u64, 2, 3].iter().zip(&frames) {
            assert_eq!((f.width, f.height), (320, 240));
            f.validate().expect("rgb frame");
            let pts = f.pts_ns.expect("pts") as f64 / 1e9;
            let lo = *g as f64 * 0.25;
            assert!(pts >= lo - 1e-6 && pts < lo + 0.25, "grid {g}: pts {pts}");
        }
        assert!(ring.frames_for(&[1, 1000]).is_none());

        // A seek clears the ring.
        p.pause();
        wait_for(&p, "paused", |s| s.state == PlayState::Paused);
        p.seek(0.0, true);
        let start = Instant::now();
        while ring.frames_for(&[1]).is_some() {
            assert!(start.elapsed() < DEADLINE, "ring not cleared");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn bad_files_are_errors_and_the_player_recovers() {
        let dir = TempDir::new("bad");
        let text = dir.0.join("notes.mp4");
        std::fs::write(&text, "this is not a video\n".repeat(50)).expect("write");
        let p = player();
        p.open(&text);
        let st = wait_for(&p, "error", |s| s.state == PlayState::Error);
        let msg = st.error.expect("message");
        assert!(!msg.contains('\n'), "{msg}");
        assert!(msg.contains("notes.mp4"), "{msg}");

        let missing = dir.0.join("missing.mp4");
        p.open(&missing);
        let st = wait_for(&p, "error", |s| {
            s.state == PlayState::Error && s.path.as_deref() == Some(missing.as_path())
        });
        let msg = st.error.expect("message");
        assert!(msg.contains("missing.mp4") && !msg.contains('\n'), "{msg}");

        let path = clip(&dir, 50);
        let st = open_paused(&p, &path);
        assert_eq!(st.state, PlayState::Paused, "{st:?}");
        assert!(st.error.is_none());
        wait_frame(&p, "frame", |f| f.width == 320);
    }

    #[test]
    fn close_and_shutdown_are_quick() {
        let dir = TempDir::new("close");
        let path = clip(&dir, 50);
        let mut p = player();
        open_paused(&p, &path);
        p.play();
        p.close();
        wait_for(&p, "idle", |s| {
            s.state == PlayState::Idle && s.path.is_none()
        });
        assert!(p.latest_frame().is_none());
        p.open(&path);
        p.play();
        let t = Instant::now();
        p.shutdown();
        assert!(t.elapsed() < JOIN_TIMEOUT, "{:?}", t.elapsed());
        p.play(); // ignored after shutdown
    }

    #[test]
    fn large_videos_are_scaled_for_display() {
        let dir = TempDir::new("large");
        let path = dir.0.join("large.mp4");
        let spec = ClipSpec {
            width: 1600,
            height: 900,
            ..ClipSpec::new(Container::Mp4, Codec::H264, 5)
        };
        synth_clip(&path, &spec).unwrap_or_else(|e| panic!("{e}"));
        let p = player();
        let st = open_paused(&p, &path);
        assert_eq!(st.state, PlayState::Paused, "{st:?}");
        assert_eq!((st.width, st.height), (1600, 900));
        let f = wait_frame(&p, "frame", |_| true);
        assert_eq!((f.width, f.height), (1280, 720));
        assert_eq!(f.rgba.len(), 1280 * 720 * 4);
    }

    #[test]
    fn missing_plugins_name_the_package() {
        let path = Path::new("/videos/clip.mp4");
        pipeline::init(path).unwrap_or_else(|e| panic!("{e}"));
        let missing = gst::message::Error::builder(
            gst::CoreError::MissingPlugin,
            "Your GStreamer installation is missing a plug-in.",
        )
        .build();

        let mut bus_state = BusState::new(path);
        let caps = gst::Caps::builder("video/x-h265").build();
        let bin = gst::Bin::new();
        let note = gst_pbutils::MissingPluginMessage::builder_for_decoder(&caps)
            .src(&bin)
            .build();
        assert!(note_message(&mut bus_state, &note).is_none());
        let e = note_message(&mut bus_state, &missing).expect("an error");
        let text = one_line(&e.to_string());
        assert!(e.is_missing_plugin(), "{text}");
        assert!(
            text.starts_with("/videos/clip.mp4: ")
                && text.contains("video/x-h265")
                && text.contains("gstreamer1.0-libav"),
            "{text}"
        );

        let mut bus_state = BusState::new(path);
        let note = gst_pbutils::MissingPluginMessage::builder_for_element("x264enc")
            .src(&bin)
            .build();
        assert!(note_message(&mut bus_state, &note).is_none());
        let text = note_message(&mut bus_state, &missing)
            .expect("an error")
            .to_string();
        assert!(
            text.contains("x264enc") && text.contains("gstreamer1.0-plugins-ugly"),
            "{text}"
        );
    }

    #[test]
    fn display_size_caps_the_long_side() {
        assert_eq!(display_size(320, 240), None);
        assert_eq!(display_size(1280, 720), None);
        assert_eq!(display_size(1920, 1080), Some((1280, 720)));
        assert_eq!(display_size(1080, 1920), Some((720, 1280)));
        let (w, h) = display_size(3001, 1001).expect("scaled");
        assert_eq!(w, 1280);
        assert_eq!(h % 2, 0);
    }

    #[test]
    fn ring_keeps_the_newest_entries() {
        let ring = FrameRing::with_capacity(3);
        let frame = |i: u32| RgbFrame {
            index: i,
            pts_ns: None,
            width: 1,
            height: 1,
            data: vec![i as u8; 3],
        };
        for g in 0..5u64 {
            ring.insert(g, frame(g as u32));
        }
        assert_eq!(ring.grid_indices(), vec![2, 3, 4]);
        assert_eq!(ring.latest_grid(), Some(4));
        assert!(ring.frames_for(&[1, 2]).is_none());
        ring.insert(3, frame(30));
        let got = ring.frames_for(&[2, 3]).expect("frames");
        assert_eq!(got[1].index, 30);
        assert_eq!(ring.latest_grid(), Some(3));
        ring.clear();
        assert!(ring.is_empty());
        assert_eq!(LiveGrid { step_s: 0.25 }.index(0.75), Some(3));
        assert_eq!(LiveGrid { step_s: 0.25 }.index(0.74), Some(2));
    }
}
