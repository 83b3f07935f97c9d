//! A live source in the window: File > Open stream… (a URL, the recent ones) and File > Open
//! camera… (GStreamer's device list, fetched on a `kineto-cameras` task). The stream is watched
//! by the inference service (`InferenceService::watch`: `video::live_source` decodes on its own
//! thread, the model runs on `kineto-inference`); this panel only shows its newest frame (from
//! a latest-wins slot), its labels and their latency, and sends commands. A live source has no
//! seek bar; Freeze keeps the frame and the labels on screen while the stream goes on; Record
//! restarts the watch with a recorder (`video::record`) writing into the project's folder (or
//! next to the settings), and Stop recording hands the finished file to the project.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use eframe::egui;

use super::Shared;
use super::player_view::format_time;
use crate::infer::service::{StreamEvent, StreamRequest};
use crate::infer::watch::WatchPrediction;
use crate::progress::{CancelToken, LatestSlot, Task};
use crate::video::frame::RgbFrame;
use crate::video::live_source::{Camera, Source, cameras};
use crate::video::player::PlayerCmd;
use crate::video::record::Recorder;

/// Where the stream stands, for the status bar.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamState {
    Connecting,
    Live,
    Reconnecting {
        attempt: u32,
        max: u32,
        wait: Duration,
    },
    Ended,
    Failed(String),
}

struct Active {
    source: Source,
    job: u64,
    cancel: CancelToken,
    display: Arc<LatestSlot<RgbFrame>>,
    texture: Option<egui::TextureHandle>,
    /// The frame and the labels stay as they are; the stream goes on underneath.
    frozen: bool,
    prediction: Option<WatchPrediction>,
    state: StreamState,
    /// The file being recorded.
    recording: Option<PathBuf>,
}

#[derive(Default)]
pub struct StreamView {
    active: Option<Active>,
    /// The Open stream… window's URL field, while it is open.
    url_field: Option<String>,
    /// The Open camera… window, while it is open: the list once fetched.
    camera_list: Option<CameraList>,
}

enum CameraList {
    Fetching(Task<Result<Vec<Camera>, String>>),
    Fetched(Result<Vec<Camera>, String>),
}

impl StreamView {
    pub fn is_active(&self) -> bool {
        self.active.is_some()
    }

    pub fn top1(&self) -> Option<String> {
        let active = self.active.as_ref()?;
        let prediction = active.prediction.as_ref()?;
        prediction.top_k.first().map(|r| r.label.clone())
    }

    pub fn latency_ms(&self) -> Option<f64> {
        let active = self.active.as_ref()?;
        active.prediction.as_ref().map(|p| p.latency_ms)
    }

    pub fn label_t_s(&self) -> Option<f64> {
        let active = self.active.as_ref()?;
        active.prediction.as_ref().map(|p| p.t_s)
    }

    pub fn state(&self) -> Option<&StreamState> {
        self.active.as_ref().map(|a| &a.state)
    }

    pub fn recording(&self) -> Option<&Path> {
        self.active.as_ref()?.recording.as_deref()
    }

    /// Shows the Open stream… window.
    pub fn ask_url(&mut self) {
        self.url_field.get_or_insert_with(String::new);
    }

    /// Shows the Open camera… window; the device list is fetched on a task.
    pub fn ask_camera(&mut self, shared: &mut Shared) {
        let fetch = Task::spawn("kineto-cameras", shared.repaint.clone(), |_| {
            cameras().map_err(|e| e.to_string())
        });
        self.camera_list = Some(match fetch {
            Ok(task) => CameraList::Fetching(task),
            Err(e) => CameraList::Fetched(Err(format!("cannot list the cameras: {e}"))),
        });
    }

    /// Opens `text` (a URL of an allowed scheme, a camera, a file) as a live source. A URL is
    /// kept in the recent list with its credentials replaced by `***`.
    pub fn open(&mut self, shared: &mut Shared, text: &str) {
        let source = match Source::parse(text) {
            Ok(source) => source,
            Err(e) => {
                shared.error(e.to_string());
                return;
            }
        };
        if let Source::Url { uri, .. } = &source {
            shared.settings.push_recent_stream(uri);
        }
        self.stop(shared);
        shared.player.send(PlayerCmd::Close);
        shared.current_clip = None;
        self.start(shared, source, None);
    }

    /// Stops the stream (a recording is finished by the service and reported when done).
    pub fn stop(&mut self, _shared: &mut Shared) {
        if let Some(active) = self.active.take() {
            active.cancel.cancel();
        }
    }

    fn start(&mut self, shared: &mut Shared, source: Source, record: Option<Arc<Recorder>>) {
        let display = Arc::new(LatestSlot::new());
        let recording = record.as_ref().map(|r| r.path().to_path_buf());
        let (job, cancel) = shared.service.watch(StreamRequest {
            source: source.clone(),
            window_s: shared.settings.live_window_s,
            every_s: 0.5,
            k: shared.settings.top_k,
            record,
            display: display.clone(),
        });
        self.active = Some(Active {
            source,
            job,
            cancel,
            display,
            texture: None,
            frozen: false,
            prediction: None,
            state: StreamState::Connecting,
            recording,
        });
    }

    /// Starts recording (the watch restarts with a recorder) or stops it.
    pub fn toggle_record(&mut self, shared: &mut Shared) {
        let Some(active) = self.active.take() else {
            return;
        };
        active.cancel.cancel();
        let source = active.source.clone();
        if active.recording.is_some() {
            self.start(shared, source, None);
            return;
        }
        let path = recording_path(shared);
        match Recorder::create(&path) {
            Ok(recorder) => self.start(shared, source, Some(recorder)),
            Err(e) => {
                shared.error(e.to_string());
                self.start(shared, source, None);
            }
        }
    }

    pub fn on_event(&mut self, shared: &mut Shared, event: StreamEvent) {
        let current = self.active.as_ref().map(|a| a.job);
        match event {
            StreamEvent::Prediction { job, prediction } => {
                if let Some(active) = self.active.as_mut()
                    && current == Some(job)
                {
                    active.state = StreamState::Live;
                    if !active.frozen {
                        active.prediction = Some(prediction);
                    }
                }
            }
            StreamEvent::Reconnecting {
                job,
                attempt,
                max,
                wait,
                ..
            } => {
                if let Some(active) = self.active.as_mut()
                    && current == Some(job)
                {
                    active.state = StreamState::Reconnecting { attempt, max, wait };
                }
            }
            StreamEvent::Finished {
                job,
                error,
                recording,
                ..
            } => {
                if let Some(recording) = recording {
                    shared.toast(format!(
                        "recorded {} frames to {}",
                        recording.frames,
                        recording.path.display()
                    ));
                    // Recorded into the open project's folder: the project takes it, to be
                    // labelled like any clip.
                    let root = recording.path.parent();
                    let open = shared.project.as_ref().map(|p| p.root.as_path());
                    let loading = shared.project_load.as_ref().map(|l| l.root.as_path());
                    if root.is_some() && (root == open || root == loading) {
                        shared.add_clips_to_project(std::slice::from_ref(&recording.path));
                    }
                }
                if let Some(active) = self.active.as_mut()
                    && current == Some(job)
                {
                    active.state = match error {
                        Some(e) => StreamState::Failed(e),
                        None => StreamState::Ended,
                    };
                } else if let Some(e) = error {
                    shared.error(e);
                }
            }
        }
    }

    /// The newest frame to the texture (not while frozen).
    pub fn upload_frame(&mut self, ctx: &egui::Context) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        if active.frozen {
            return;
        }
        let Some(frame) = active.display.try_take() else {
            return;
        };
        let size = [frame.width as usize, frame.height as usize];
        if frame.data.len() != size[0] * size[1] * 3 {
            return;
        }
        let image = egui::ColorImage::from_rgb(size, &frame.data);
        match &mut active.texture {
            Some(texture) => texture.set(image, egui::TextureOptions::LINEAR),
            None => {
                active.texture =
                    Some(ctx.load_texture("stream", image, egui::TextureOptions::LINEAR))
            }
        }
    }

    /// The stream and its controls (no seek bar: a live source has no timeline).
    pub fn video_ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let (mut freeze, mut record, mut close) = (false, false, false);
        egui::Panel::bottom("stream-controls").show(ui, |ui| {
            ui.horizontal(|ui| {
                let label = if active.frozen { "Resume" } else { "Freeze" };
                freeze = ui
                    .button(label)
                    .on_hover_text("freeze the picture and the labels; the stream goes on")
                    .clicked();
                let label = if active.recording.is_some() {
                    "Stop recording"
                } else {
                    "Record"
                };
                record = ui
                    .button(label)
                    .on_hover_text("record the stream to a file in the project's folder")
                    .clicked();
                close = ui.button("Close stream").clicked();
                ui.label(active.source.display());
                if let Some(path) = &active.recording {
                    ui.colored_label(ui.visuals().error_fg_color, "REC")
                        .on_hover_text(path.display().to_string());
                }
            });
        });
        egui::CentralPanel::default().show(ui, |ui| match &active.texture {
            Some(texture) => {
                let available = ui.available_size();
                let frame_size = texture.size_vec2();
                let scale = (available.x / frame_size.x)
                    .min(available.y / frame_size.y)
                    .max(0.01);
                ui.centered_and_justified(|ui| {
                    ui.add(egui::Image::new(texture).fit_to_exact_size(frame_size * scale));
                });
            }
            None => {
                ui.centered_and_justified(|ui| match &active.state {
                    StreamState::Failed(e) => {
                        ui.colored_label(ui.visuals().error_fg_color, e);
                    }
                    _ => {
                        ui.spinner();
                    }
                });
            }
        });
        if freeze {
            active.frozen = !active.frozen;
        }
        if record {
            self.toggle_record(shared);
        }
        if close {
            self.stop(shared);
        }
        ui.ctx().request_repaint_after(Duration::from_millis(40));
    }

    /// The side panel: the stream's labels.
    pub fn labels_ui(&self, ui: &mut egui::Ui) {
        ui.heading("Live labels");
        let Some(active) = &self.active else {
            return;
        };
        let Some(prediction) = &active.prediction else {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.weak("first prediction…");
            });
            return;
        };
        for ranked in &prediction.top_k {
            ui.horizontal(|ui| {
                ui.label(format!("{}", ranked.rank));
                ui.add(
                    egui::ProgressBar::new(ranked.score)
                        .desired_width(ui.available_width())
                        .text(format!("{}  {:.1}%", ranked.label, ranked.score * 100.0)),
                );
            });
        }
        ui.label(
            egui::RichText::new(format!(
                "window {}–{} of the stream{}",
                format_time(prediction.window_start_s),
                format_time(prediction.t_s),
                if active.frozen { " · frozen" } else { "" },
            ))
            .small()
            .weak(),
        );
    }

    /// The status bar's part: the stream's state and the labels' latency.
    pub fn status_ui(&self, ui: &mut egui::Ui) {
        let Some(active) = &self.active else {
            return;
        };
        match &active.state {
            StreamState::Connecting => {
                ui.spinner();
                ui.label("stream: connecting…");
            }
            StreamState::Live => {
                ui.label("stream: live");
            }
            StreamState::Reconnecting { attempt, max, wait } => {
                ui.colored_label(
                    ui.visuals().warn_fg_color,
                    format!(
                        "stream dropped: reconnecting in {:.1} s (attempt {attempt} of {max})",
                        wait.as_secs_f64()
                    ),
                );
            }
            StreamState::Ended => {
                ui.label("stream: ended");
            }
            StreamState::Failed(e) => {
                ui.colored_label(ui.visuals().error_fg_color, "stream: failed")
                    .on_hover_text(e);
            }
        }
        if let Some(p) = &active.prediction {
            ui.label(format!("label latency {:.0} ms", p.latency_ms));
        }
        ui.separator();
    }

    /// The Open stream… and Open camera… windows.
    pub fn dialogs_ui(&mut self, ctx: &egui::Context, shared: &mut Shared) {
        let mut open = None;
        if let Some(field) = &mut self.url_field {
            let mut keep = true;
            egui::Window::new("Open stream")
                .collapsible(false)
                .resizable(false)
                .show(ctx, |ui| {
                    ui.label("URL (rtsp://, http(s)://, srt://, udp://):");
                    let response = ui.add(
                        egui::TextEdit::singleline(field)
                            .hint_text("rtsp://camera.local:554/stream")
                            .desired_width(360.0),
                    );
                    let entered =
                        response.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                    ui.horizontal(|ui| {
                        if ui.button("Open").clicked() || entered {
                            open = Some(field.clone());
                        }
                        if ui.button("Cancel").clicked() {
                            keep = false;
                        }
                    });
                    let recent = shared.settings.recent_streams.clone();
                    if !recent.is_empty() {
                        ui.separator();
                        ui.label("Recent:");
                        for url in recent {
                            if ui.button(&url).clicked() {
                                if url.contains("***@") {
                                    // Stored without its credentials: type them again.
                                    *field = url;
                                } else {
                                    open = Some(url);
                                }
                            }
                        }
                    }
                });
            if !keep {
                self.url_field = None;
            }
        }
        if let Some(CameraList::Fetching(task)) = &self.camera_list
            && let Some(outcome) = task.try_outcome()
        {
            self.camera_list = Some(CameraList::Fetched(outcome.and_then(|r| r)));
        }
        if let Some(list) = &self.camera_list {
            let mut keep = true;
            egui::Window::new("Open camera")
                .collapsible(false)
                .resizable(false)
                .show(ctx, |ui| {
                    match list {
                        CameraList::Fetching(_) => {
                            ui.horizontal(|ui| {
                                ui.spinner();
                                ui.label("looking for cameras…");
                            });
                        }
                        CameraList::Fetched(Err(e)) => {
                            ui.colored_label(ui.visuals().error_fg_color, e);
                        }
                        CameraList::Fetched(Ok(found)) if found.is_empty() => {
                            ui.label("no camera found");
                        }
                        CameraList::Fetched(Ok(found)) => {
                            for camera in found {
                                let Some(device) = &camera.device else {
                                    ui.weak(format!("{} (no device path)", camera.name));
                                    continue;
                                };
                                if ui.button(format!("{} ({device})", camera.name)).clicked() {
                                    open = Some(device.clone());
                                }
                            }
                        }
                    }
                    if ui.button("Cancel").clicked() {
                        keep = false;
                    }
                });
            if !keep {
                self.camera_list = None;
            }
        }
        if let Some(text) = open {
            self.url_field = None;
            self.camera_list = None;
            self.open(shared, &text);
        }
    }
}

/// `recording-<unix seconds>.mkv` in the project's folder, else next to the settings, else in
/// the temporary folder; a number is added when the name is taken.
fn recording_path(shared: &Shared) -> PathBuf {
    let dir = shared
        .project
        .as_ref()
        .map(|p| p.root.clone())
        .or_else(|| eframe::storage_dir("Kineto"))
        .unwrap_or_else(std::env::temp_dir);
    // The settings' folder may not be there yet (nothing saved so far).
    let _ = std::fs::create_dir_all(&dir);
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut path = dir.join(format!("recording-{secs}.mkv"));
    let mut n = 1;
    while path.exists() {
        n += 1;
        path = dir.join(format!("recording-{secs}-{n}.mkv"));
    }
    path
}
