//! The desktop window: a player with live labels and a timeline, batch classification,
//! labelling and training. The UI thread only draws and sends commands: the player, the
//! inference service, the project saver and the training service are library services, and
//! one-off work (file dialogs, the data check, exports, the demo set) runs in
//! [`crate::progress::Task`]s; each wakes the UI through `Notify` (a repaint request) after
//! every message. No file here starts a thread (ARCHITECTURE.md). Closing the window while a
//! training job runs keeps it open ("Saving the training run…") until the job has stopped and
//! saved its checkpoint, unless "Quit now".

mod batch_panel;
mod dialogs;
mod labelling;
mod live_panel;
mod player_view;
pub mod segment_track;
pub mod settings;
mod stream_view;
mod timeline_strip;
mod training_panel;
mod workers;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use eframe::egui;

pub use dialogs::DialogBackend;
use settings::{STORAGE_KEY, Settings, SettingsOverride, SettingsWindow};
pub use stream_view::StreamState;
pub use training_panel::TrainState;
use workers::Toast;
pub use workers::{ModelState, ProjectSaveState, Shared};

/// Options that tests and the command line set; the window itself reads the rest from storage.
#[derive(Clone, Debug)]
pub struct AppOptions {
    /// A clip to open at start.
    pub video: Option<PathBuf>,
    /// Settings to use instead of the stored ones (tests).
    pub settings: Option<Settings>,
    /// Command-line settings applied over the stored ones.
    pub overrides: SettingsOverride,
    /// Play audio (tests and machines without a sound device turn it off).
    pub audio: bool,
    pub dialogs: DialogBackend,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            video: None,
            settings: None,
            overrides: SettingsOverride::default(),
            audio: std::env::var_os("KINETO_NO_AUDIO").is_none(),
            dialogs: DialogBackend::Native,
        }
    }
}

/// Opens the window (blocks until it is closed).
pub fn run(video: Option<PathBuf>) -> anyhow::Result<()> {
    run_with(AppOptions {
        video,
        ..AppOptions::default()
    })
}

/// Opens the window with `app_options` (blocks until it is closed).
pub fn run_with(app_options: AppOptions) -> anyhow::Result<()> {
    if cfg!(target_os = "linux")
        && std::env::var_os("WAYLAND_DISPLAY").is_none()
        && std::env::var_os("DISPLAY").is_none()
    {
        anyhow::bail!(
            "no display (neither WAYLAND_DISPLAY nor DISPLAY is set): run Kineto under X11 or \
             Wayland, or use the command line (kineto --help)"
        );
    }
    let viewport = egui::ViewportBuilder::default()
        .with_title("Kineto")
        .with_app_id("kineto")
        .with_inner_size([1180.0, 760.0])
        .with_min_inner_size([720.0, 480.0])
        .with_drag_and_drop(true);
    let options = eframe::NativeOptions {
        viewport,
        renderer: eframe::Renderer::Wgpu,
        persist_window: true,
        ..Default::default()
    };
    eframe::run_native(
        "Kineto",
        options,
        Box::new(move |cc| Ok(Box::new(KinetoApp::new(cc, app_options)))),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tab {
    Player,
    Batch,
    Train,
}

pub struct KinetoApp {
    pub shared: Shared,
    pub tab: Tab,
    player_view: player_view::PlayerView,
    live: live_panel::LivePanel,
    timeline: timeline_strip::TimelineStrip,
    segments: segment_track::SegmentTrack,
    pub batch: batch_panel::BatchPanel,
    /// The Train tab.
    pub train: training_panel::TrainingPanel,
    labelling: labelling::Labelling,
    settings_window: SettingsWindow,
    /// A live source (URL, camera) in place of the player's file.
    stream: stream_view::StreamView,
    closing: Closing,
}

/// Where closing the window stands (a running training job is stopped and saved first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Closing {
    /// No close asked, or one that needed no wait.
    Open,
    /// A close was asked while work was unsaved: a training job stopping and saving its
    /// checkpoint, project snapshots being written, or a failed project write to ask about.
    Saving,
    /// Closing: no further wait.
    Quit,
}

impl KinetoApp {
    pub fn new(cc: &eframe::CreationContext<'_>, options: AppOptions) -> Self {
        let stored = cc
            .storage
            .and_then(|s| eframe::get_value::<Settings>(s, STORAGE_KEY));
        let mut settings = (options.settings.clone().or(stored))
            .map(Settings::clamped)
            .unwrap_or_default();
        options.overrides.apply(&mut settings);
        cc.egui_ctx
            .options_mut(|o| o.theme_preference = egui::ThemePreference::System);
        let shared = Shared::new(&cc.egui_ctx, settings, &options);
        let mut app = Self {
            shared,
            tab: Tab::Player,
            player_view: player_view::PlayerView::default(),
            live: live_panel::LivePanel::default(),
            timeline: timeline_strip::TimelineStrip::default(),
            segments: segment_track::SegmentTrack::default(),
            batch: batch_panel::BatchPanel::default(),
            train: training_panel::TrainingPanel::default(),
            labelling: labelling::Labelling::default(),
            settings_window: SettingsWindow::default(),
            stream: stream_view::StreamView::default(),
            closing: Closing::Open,
        };
        if let Some(video) = options.video {
            app.open_paths(vec![video]);
        }
        app
    }

    /// Opens what the user dropped or picked: one video plays; folders or several files go
    /// to the batch.
    pub fn open_paths(&mut self, paths: Vec<PathBuf>) {
        // Made absolute once, here at the edge: a clip given as `clip.mp4` from a terminal
        // belongs to the project of its folder like any other.
        let paths: Vec<PathBuf> = (paths.into_iter())
            .map(|p| std::path::absolute(&p).unwrap_or(p))
            .collect();
        let single_video = paths.len() == 1 && paths[0].is_file();
        if single_video {
            let path = paths[0].clone();
            self.open_clip(&path);
        } else if !paths.is_empty() {
            self.batch.start(&mut self.shared, paths);
            self.tab = Tab::Batch;
        }
    }

    /// Plays `path`, computes its timeline and its clip-level prediction.
    pub fn open_clip(&mut self, path: &Path) {
        self.stream.stop(&mut self.shared);
        self.shared.open_clip(path);
        self.live.reset();
        self.segments.reset();
        self.timeline.start(&mut self.shared, path);
        self.tab = Tab::Player;
    }

    /// Watches a stream URL or camera in the player (File > Open stream… / Open camera…).
    pub fn open_stream(&mut self, url: &str) {
        self.stream.open(&mut self.shared, url);
        self.tab = Tab::Player;
    }

    /// The stream's newest top-1 label.
    pub fn stream_top1(&self) -> Option<String> {
        self.stream.top1()
    }

    /// The latency of the stream's newest labels (from the window's last frame to its labels).
    pub fn stream_latency_ms(&self) -> Option<f64> {
        self.stream.latency_ms()
    }

    /// The stream end time of the labels shown (frozen labels keep theirs).
    pub fn stream_label_t_s(&self) -> Option<f64> {
        self.stream.label_t_s()
    }

    /// The stream's state (`None`: no stream open).
    pub fn stream_state(&self) -> Option<StreamState> {
        self.stream.state().cloned()
    }

    /// Starts or stops recording the stream.
    pub fn toggle_stream_recording(&mut self) {
        self.stream.toggle_record(&mut self.shared);
    }

    /// The file the stream is being recorded to.
    pub fn stream_recording(&self) -> Option<PathBuf> {
        self.stream.recording().map(Path::to_path_buf)
    }

    /// The live panel's current top-1 label.
    pub fn live_top1(&self) -> Option<String> {
        self.live.top1()
    }

    /// Windows of the finished timeline of the clip in the player.
    pub fn timeline_windows(&self) -> Option<usize> {
        self.timeline.finished_windows()
    }

    /// Whether a close of the window is waiting for work to be saved ("Saving…" shows).
    pub fn is_closing(&self) -> bool {
        self.closing == Closing::Saving
    }

    /// A close of the window never leaves work behind. While a training job runs, the close
    /// is cancelled, the job asked to stop (full fine-tuning commits a checkpoint of where it
    /// stands, at most a step away) and "Saving the training run…" shows until it has
    /// stopped. While the project saver still writes, "Saving the labelling project…" shows;
    /// if the last write failed (a full disk, a folder made read-only), the window says so
    /// and offers "Try again". Then the window closes. "Quit now" closes without waiting
    /// (a run resumes from its last committed checkpoint).
    fn close_guard(&mut self, ctx: &egui::Context) {
        let asked = ctx.input(|i| i.viewport().close_requested());
        if asked && self.closing != Closing::Quit && self.must_save_before_closing() {
            ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
            self.train.cancel();
            self.closing = Closing::Saving;
        }
        if self.closing != Closing::Saving {
            return;
        }
        let project = self.shared.project_save_state();
        let waiting = if self.train.is_running() {
            Some((
                "Saving the training run…",
                "the job stops after its current step and saves a checkpoint; the window \
                 closes then",
            ))
        } else if project == ProjectSaveState::Writing {
            Some((
                "Saving the labelling project…",
                "the last labels are being written; the window closes then",
            ))
        } else {
            None
        };
        let unsaved = match project {
            ProjectSaveState::Failed { path, error } => Some((path, error)),
            _ => None,
        };
        if waiting.is_none() && unsaved.is_none() {
            self.closing = Closing::Quit;
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            return;
        }
        let (mut quit, mut retry) = (false, false);
        egui::Modal::new(egui::Id::unique("kineto.closing")).show(ctx, |ui| {
            if let Some((heading, what)) = waiting {
                ui.heading(heading);
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label(what);
                });
                quit = ui
                    .button("Quit now")
                    .on_hover_text(
                        "close without waiting: a training run resumes from its last saved \
                         checkpoint; labels not yet written are lost",
                    )
                    .clicked();
            } else if let Some((path, error)) = &unsaved {
                ui.heading("The labelling project could not be saved");
                ui.label(format!("{}: {error}", path.display()));
                ui.label("Free some space or fix the folder's permissions, then try again.");
                ui.horizontal(|ui| {
                    retry = ui.button("Try again").clicked();
                    quit = ui
                        .button("Quit without saving")
                        .on_hover_text("the labels since the last good save are lost")
                        .clicked();
                });
            }
        });
        if retry {
            self.shared.retry_project_save();
        }
        if quit {
            self.closing = Closing::Quit;
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
        ctx.request_repaint_after(Duration::from_millis(200));
    }

    /// Whether closing now would leave work unsaved: a training job running, project
    /// snapshots not yet written, or a project write that failed.
    fn must_save_before_closing(&mut self) -> bool {
        self.train.is_running() || self.shared.project_save_state() != ProjectSaveState::Saved
    }

    /// The segment track of the clip in the player (tests read its selection).
    pub fn segment_track(&mut self) -> &mut segment_track::SegmentTrack {
        &mut self.segments
    }

    /// Stores the model's segment proposals for the clip in the player (the timeline's, once
    /// it is done; tests give their own).
    pub fn offer_segment_proposals(
        &mut self,
        proposals: Vec<crate::labels::segments::ProposedSegment>,
        duration_s: f64,
        fps: f64,
    ) {
        (self.segments).offer_proposals(&mut self.shared, proposals, duration_s, fps, false);
    }

    /// The Train tab's panel (tests drive it).
    pub fn training(&mut self) -> &mut training_panel::TrainingPanel {
        &mut self.train
    }

    /// Applies one frame's worth of worker messages.
    fn drain(&mut self) {
        for event in self.shared.drain_service() {
            use crate::infer::service::ServiceEvent as E;
            match event {
                E::Live(result) => self.live.on_result(&self.shared, result),
                E::LiveFailed { generation, error } => self.live.on_error(generation, error),
                E::Batch(event) => self.batch.on_event(&mut self.shared, event),
                E::Stream(event) => self.stream.on_event(&mut self.shared, event),
                E::Timeline(event) => {
                    if let Some(record) = self.timeline.on_event(event) {
                        self.segments.propose_from(&mut self.shared, record, false);
                    }
                }
                E::Loaded(model) => {
                    self.shared.model = ModelState::Ready(model);
                    self.live.reset();
                    if let Some(path) = self.shared.current_clip.clone() {
                        // The clip's own label first (one forward), then its timeline.
                        self.shared.classify_current();
                        self.timeline.start(&mut self.shared, &path);
                    }
                }
                E::Loading { weights } => {
                    self.shared.model = ModelState::Loading {
                        weights,
                        done: 0,
                        total: None,
                    }
                }
                E::Download {
                    weights,
                    done,
                    total,
                } => {
                    self.shared.model = ModelState::Loading {
                        weights,
                        done,
                        total,
                    }
                }
                E::Crashed { during, error } => {
                    let text = format!(
                        "the inference worker failed while {during} ({error}); it carries on"
                    );
                    self.shared.error(text.clone());
                    self.shared.worker_crash = Some(text);
                }
                E::LoadFailed { weights, error } => {
                    self.shared.model = ModelState::Failed { weights, error }
                }
            }
        }
        self.shared.drain_saver();
        self.shared.flush_project_if_due();
        // Before the batch's poll: a batch waiting for its project finds its clips in the
        // same frame as the project opens.
        self.shared.poll_project_load();
        self.batch.poll(&mut self.shared);
        self.labelling.poll_export(&mut self.shared);
        self.train.drain();
        for picked in self.shared.dialogs.poll() {
            self.on_dialog(picked);
        }
        if let Some(dir) = self.shared.demo_ready() {
            self.shared.toast(format!(
                "demo clips (one folder per class) in {}",
                dir.display()
            ));
            let first = crate::infer::batch::expand_inputs(std::slice::from_ref(&dir), None)
                .into_iter()
                .next();
            if let Some(clip) = first {
                self.open_clip(&clip);
            }
        }
    }

    fn on_dialog(&mut self, picked: dialogs::Picked) {
        use dialogs::Purpose as P;
        let dialogs::Picked { purpose, paths } = picked;
        let Some(first) = paths.first().cloned() else {
            return;
        };
        match purpose {
            P::Open => self.open_paths(paths),
            P::ImportWeights => {
                self.shared.settings.model = first.display().to_string();
                self.shared.reload_model();
            }
            P::LabelFile => self.labelling.load_label_file(&mut self.shared, &first),
            P::ExportResults(format) => self.batch.export(&mut self.shared, format, &first),
            P::ExportProject(kind) => self.labelling.export(&mut self.shared, kind, &first),
            P::TrainData => self.train.set_data(&first),
            // Asked by the Train tab through its own `Dialogs`, which routes the answer.
            P::ExportWeights => {}
        }
    }

    fn handle_input(&mut self, ctx: &egui::Context) {
        let dropped: Vec<PathBuf> = ctx.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        });
        if self.tab == Tab::Train && dropped.len() == 1 && !dropped[0].is_file() {
            // A folder dropped on the Train tab is training data.
            self.train.set_data(&dropped[0]);
        } else if !dropped.is_empty() {
            self.open_paths(dropped);
        }
        if ctx.egui_wants_keyboard_input() {
            return;
        }
        if ctx.input_mut(|i| i.consume_key(egui::Modifiers::COMMAND, egui::Key::O)) {
            self.shared.dialogs.open_media();
        }
        if self.tab == Tab::Player {
            self.player_view.keys(ctx, &mut self.shared);
            // A selected segment takes the labelling keys before the clip does.
            if let Some(segment_track::PickFor(seg)) = self.segments.keys(ctx, &mut self.shared) {
                self.labelling.open_picker_for_segment(seg);
            }
        }
        self.labelling
            .keys(ctx, &mut self.shared, self.tab, &self.batch);
    }

    fn menu_ui(&mut self, ui: &mut egui::Ui) {
        egui::MenuBar::new().ui(ui, |ui| {
            ui.menu_button("File", |ui| {
                if ui.button("Open…").clicked() {
                    self.shared.dialogs.open_media();
                }
                if ui.button("Open folder…").clicked() {
                    self.shared.dialogs.open_folder();
                }
                if ui.button("Open stream…").clicked() {
                    self.stream.ask_url();
                }
                if ui.button("Open camera…").clicked() {
                    self.stream.ask_camera(&mut self.shared);
                }
                let recent = self.shared.settings.recent.clone();
                ui.menu_button("Recent", |ui| {
                    if recent.is_empty() {
                        ui.label("nothing yet");
                    }
                    for path in recent {
                        if ui.button(path.display().to_string()).clicked() {
                            self.open_paths(vec![path]);
                        }
                    }
                });
                ui.separator();
                if ui.button("Import weights…").clicked() {
                    self.shared.dialogs.import_weights();
                }
                if ui.button("Load label set…").clicked() {
                    self.shared.dialogs.label_file();
                }
                ui.separator();
                self.batch.export_menu_ui(ui, &mut self.shared);
                self.labelling.export_menu_ui(ui, &mut self.shared);
                ui.separator();
                if ui.button("Quit").clicked() {
                    ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
                }
            });
            ui.menu_button("View", |ui| {
                ui.selectable_value(&mut self.tab, Tab::Player, "Player");
                ui.selectable_value(&mut self.tab, Tab::Batch, "Batch");
                ui.selectable_value(&mut self.tab, Tab::Train, "Train");
                ui.separator();
                egui::widgets::global_theme_preference_buttons(ui);
            });
            if ui.button("Settings").clicked() {
                self.settings_window.show(&self.shared.settings);
            }
            ui.separator();
            ui.selectable_value(&mut self.tab, Tab::Player, "Player");
            ui.selectable_value(&mut self.tab, Tab::Batch, "Batch");
            ui.selectable_value(&mut self.tab, Tab::Train, "Train");
        });
    }

    fn status_bar_ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            match &self.shared.model {
                ModelState::Ready(m) => {
                    ui.label(format!("{} · {} frames · {}", m.name, m.num_seg, m.device));
                }
                ModelState::Loading {
                    weights,
                    done,
                    total,
                } => {
                    ui.spinner();
                    match total {
                        Some(t) if *t > 0 => ui.label(format!(
                            "downloading {weights}: {:.1} / {:.1} MB",
                            *done as f64 / 1e6,
                            *t as f64 / 1e6
                        )),
                        _ => ui.label(format!("loading {weights}…")),
                    };
                }
                ModelState::Failed { .. } => {
                    ui.colored_label(ui.visuals().error_fg_color, "no model");
                }
                ModelState::None => {
                    ui.label("no model");
                }
            }
            ui.separator();
            self.stream.status_ui(ui);
            if let Some(ms) = self.live.last_infer_ms() {
                ui.label(format!("inference {ms:.0} ms"));
                ui.separator();
            }
            ui.label(format!(
                "live requests skipped: {}",
                self.shared.service.live_skipped()
            ));
            if let Some(save) = &self.shared.save_status {
                ui.separator();
                ui.label(save);
            }
            if let Some(crash) = &self.shared.worker_crash {
                ui.separator();
                ui.colored_label(ui.visuals().error_fg_color, "⚠ worker restarted")
                    .on_hover_text(crash);
            }
        });
    }

    fn toasts_ui(&mut self, ctx: &egui::Context) {
        self.shared
            .toasts
            .retain(|t| t.shown_at.elapsed() < Duration::from_secs(8));
        if self.shared.toasts.is_empty() {
            return;
        }
        egui::Area::new(egui::Id::unique("kineto.toasts"))
            .anchor(egui::Align2::RIGHT_BOTTOM, [-12.0, -36.0])
            .show(ctx, |ui| {
                for Toast { text, error, .. } in &self.shared.toasts {
                    egui::Frame::popup(ui.style()).show(ui, |ui| {
                        ui.set_max_width(420.0);
                        if *error {
                            ui.colored_label(ui.visuals().error_fg_color, text);
                        } else {
                            ui.label(text);
                        }
                    });
                }
            });
        ctx.request_repaint_after(Duration::from_millis(500));
    }
}

impl eframe::App for KinetoApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        self.drain();
        self.close_guard(&ctx);
        self.handle_input(&ctx);
        self.player_view.upload_frame(&ctx, &self.shared);
        self.stream.upload_frame(&ctx);
        self.stream.dialogs_ui(&ctx, &mut self.shared);
        if let Some(new) = self
            .settings_window
            .window_ui(&ctx, &self.shared.catalog_names)
        {
            self.shared.apply_settings(new);
            self.live.reset();
        }
        if std::mem::take(&mut self.shared.settings_requested) {
            self.settings_window.show(&self.shared.settings);
        }
        if let Some((seg, label_id)) =
            self.labelling
                .picker_window_ui(&ctx, &mut self.shared, self.tab, &self.batch)
        {
            self.segments.label(&mut self.shared, seg, label_id);
        }

        egui::Panel::top("menu").show(ui, |ui| self.menu_ui(ui));
        egui::Panel::bottom("status").show(ui, |ui| self.status_bar_ui(ui));
        egui::Panel::right("side")
            .resizable(true)
            .default_size(300.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| {
                    if self.tab == Tab::Player && self.stream.is_active() {
                        self.stream.labels_ui(ui);
                        ui.separator();
                    } else if self.tab == Tab::Player {
                        self.live.ui(ui, &mut self.shared);
                        ui.separator();
                    }
                    self.labelling
                        .ui(ui, &mut self.shared, self.tab, &self.batch);
                    if self.tab == Tab::Player && self.shared.current_clip.is_some() {
                        ui.separator();
                        (self.segments).list_ui(ui, &mut self.shared, self.timeline.record());
                    }
                });
            });
        egui::CentralPanel::default().show(ui, |ui| {
            if let ModelState::Failed { weights, error } = &self.shared.model {
                let (weights, error) = (weights.clone(), error.clone());
                first_run_ui(ui, &mut self.shared, &weights, &error);
                ui.separator();
            }
            match self.tab {
                Tab::Player => {
                    if self.stream.is_active() {
                        self.stream.video_ui(ui, &mut self.shared);
                    } else if self.shared.current_clip.is_none() {
                        empty_ui(ui, &mut self.shared);
                    } else {
                        egui::Panel::bottom("timeline")
                            .exact_size(70.0 + segment_track::TRACK_HEIGHT)
                            .show(ui, |ui| {
                                let duration = self.timeline.duration(&self.shared);
                                let view = self.segments.view(duration);
                                self.timeline.ui(ui, &mut self.shared, view);
                                self.segments.track_ui(ui, &mut self.shared, duration);
                            });
                        self.player_view.ui(ui, &mut self.shared);
                    }
                }
                Tab::Batch => self.batch.ui(ui, &mut self.shared, &mut self.tab),
                Tab::Train => self.train.ui(ui, &mut self.shared),
            }
        });
        // A double-click in the batch table asks to open a clip.
        if let Some(path) = self.batch.take_open_request() {
            self.open_clip(&path);
        }
        self.toasts_ui(&ctx);
        self.live.request(&mut self.shared, Instant::now());
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, STORAGE_KEY, &self.shared.settings);
    }

    fn on_exit(&mut self) {
        // A recording is finished by the service as the watch is cancelled.
        self.stream.stop(&mut self.shared);
        self.shared.shutdown();
    }
}

fn empty_ui(ui: &mut egui::Ui, shared: &mut Shared) {
    ui.vertical_centered(|ui| {
        ui.add_space(ui.available_height() * 0.3);
        ui.heading("Drop a video to play it with live action labels");
        ui.label("or drop a folder to classify every clip in it");
        ui.add_space(8.0);
        ui.horizontal(|ui| {
            ui.add_space((ui.available_width() - 220.0).max(0.0) / 2.0);
            if ui.button("Open video…").clicked() {
                shared.dialogs.open_media();
            }
            if ui.button("Open folder…").clicked() {
                shared.dialogs.open_folder();
            }
        });
    });
}

/// What to do when the model cannot be loaded (first run without weights, offline, a bad
/// file): say it in one sentence and offer the ways out.
fn first_run_ui(ui: &mut egui::Ui, shared: &mut Shared, weights: &str, error: &str) {
    egui::Frame::group(ui.style()).show(ui, |ui| {
        ui.colored_label(
            ui.visuals().warn_fg_color,
            format!("The model {weights} could not be loaded, so clips cannot be labelled yet."),
        );
        ui.label(egui::RichText::new(error).small());
        ui.horizontal(|ui| {
            if ui.button("Import weights…").clicked() {
                shared.dialogs.import_weights();
            }
            if ui.button("Retry (download)").clicked() {
                shared.settings.offline = false;
                shared.reload_model();
            }
            if ui.button("Settings…").clicked() {
                shared.settings_requested = true;
            }
            let making = shared.demo.is_some();
            if ui
                .add_enabled(!making, egui::Button::new("Try the demo data"))
                .on_hover_text(
                    "write a small set of synthetic clips (one folder per class) and play one",
                )
                .clicked()
            {
                shared.make_demo_data();
            }
            if making {
                ui.spinner();
            }
        });
    });
}
