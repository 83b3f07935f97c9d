//! The Train tab: a folder of class folders in, a classifier out. The data check and the run
//! itself ([`crate::train::job::run_head_only`]) go on their own threads; their events come back
//! through crossbeam channels (with a repaint request after each) and are drained a bounded
//! number per frame, so the UI never waits on them. Dropping the panel (closing the window)
//! cancels a run.

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, bounded, unbounded};
use eframe::egui;
use egui_plot::{Legend, Line, Plot};

use super::workers::Shared;
use crate::progress::{CancelToken, Notify};
use crate::train::dataset::DatasetSummary;
use crate::train::job::{JobDevice, JobEvent, TrainJob, check_data, run_head_only};
use crate::train::metrics::TrainEvent;

/// At most this many job events are applied per frame.
const EVENTS_PER_FRAME: usize = 256;

/// Where the run stands.
#[derive(Clone, Debug, PartialEq)]
pub enum TrainState {
    Idle,
    Running,
    Cancelling,
    Done,
    Cancelled,
    Failed(String),
}

/// The form's settings.
#[derive(Clone, Debug)]
struct Form {
    /// Start weights (a file); empty: the loaded model's.
    weights: String,
    frames: usize,
    epochs: usize,
    batch_size: usize,
    auto_lr: bool,
    lr: f64,
    val_split: f64,
    seed: u64,
    /// Empty: the default location (next to the weights cache).
    run_dir: String,
}

impl Default for Form {
    fn default() -> Self {
        Self {
            weights: String::new(),
            frames: 8,
            epochs: 10,
            batch_size: 16,
            auto_lr: true,
            lr: 0.01,
            val_split: 0.25,
            seed: 0,
            run_dir: String::new(),
        }
    }
}

/// A running job: dropping it cancels it (and waits a moment for its thread).
struct RunningJob {
    rx: Receiver<JobEvent>,
    cancel: CancelToken,
    thread: Option<JoinHandle<()>>,
}

impl Drop for RunningJob {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(thread) = self.thread.take() {
            let deadline = Instant::now() + Duration::from_secs(2);
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

/// The class table of "Check data" (or of the run's own probe).
#[derive(Clone, Debug)]
struct SummaryView {
    summary: DatasetSummary,
    broken: Vec<(PathBuf, String)>,
    notes: Vec<String>,
}

/// The end of a run.
#[derive(Clone, Debug)]
struct ReportView {
    text: String,
    model_path: PathBuf,
    run_dir: PathBuf,
    class_names: Vec<String>,
}

#[derive(Clone, Debug, Default)]
struct Curves {
    train_loss: Vec<[f64; 2]>,
    val_loss: Vec<[f64; 2]>,
    val_top1: Vec<[f64; 2]>,
    lr: Vec<[f64; 2]>,
}

pub struct TrainingPanel {
    data: String,
    form: Form,
    state: TrainState,
    check: Option<Receiver<Result<SummaryView, String>>>,
    check_error: Option<String>,
    summary: Option<SummaryView>,
    job: Option<RunningJob>,
    /// (done, total, from the cache)
    extract: Option<(usize, usize, usize)>,
    extract_note: Option<String>,
    curves: Curves,
    epochs_seen: usize,
    report: Option<ReportView>,
    /// num_seg of the running / finished job.
    frames: usize,
}

impl Default for TrainingPanel {
    fn default() -> Self {
        Self {
            data: String::new(),
            form: Form::default(),
            state: TrainState::Idle,
            check: None,
            check_error: None,
            summary: None,
            job: None,
            extract: None,
            extract_note: None,
            curves: Curves::default(),
            epochs_seen: 0,
            report: None,
            frames: 8,
        }
    }
}

impl TrainingPanel {
    /// The data folder (class folders) or list file.
    pub fn set_data(&mut self, path: &Path) {
        self.data = path.display().to_string();
        self.summary = None;
        self.check_error = None;
    }

    pub fn data(&self) -> &str {
        &self.data
    }

    /// Where the run folder goes (empty: the default location).
    pub fn set_run_dir(&mut self, path: &Path) {
        self.form.run_dir = path.display().to_string();
    }

    /// Epochs and batch size of the next run.
    pub fn set_epochs(&mut self, epochs: usize, batch_size: usize) {
        self.form.epochs = epochs.max(1);
        self.form.batch_size = batch_size.max(1);
    }

    pub fn state(&self) -> &TrainState {
        &self.state
    }

    /// Epoch events received so far (points of each curve).
    pub fn epoch_points(&self) -> usize {
        self.epochs_seen
    }

    /// (clips done, clips in all) of the feature extraction.
    pub fn extract_progress(&self) -> Option<(usize, usize)> {
        self.extract.map(|(d, t, _)| (d, t))
    }

    /// Classes of the last data check (or the run's own).
    pub fn summary_classes(&self) -> Option<Vec<String>> {
        self.summary
            .as_ref()
            .map(|s| s.summary.classes.iter().map(|c| c.name.clone()).collect())
    }

    /// The final report text.
    pub fn report_text(&self) -> Option<&str> {
        self.report.as_ref().map(|r| r.text.as_str())
    }

    /// The trained model (in its run folder).
    pub fn trained_model(&self) -> Option<&Path> {
        self.report.as_ref().map(|r| r.model_path.as_path())
    }

    pub fn is_running(&self) -> bool {
        self.job.is_some()
    }

    fn job_for(&self, shared: &Shared) -> Result<TrainJob, String> {
        let data = self.data.trim();
        if data.is_empty() {
            return Err("choose a data folder first".into());
        }
        let weights = if self.form.weights.trim().is_empty() {
            shared
                .model()
                .map(|m| m.path.clone())
                .ok_or("no start weights: load a model or name a weights file")?
        } else {
            PathBuf::from(self.form.weights.trim())
        };
        let mut job = TrainJob::new(PathBuf::from(data), weights.clone());
        job.frames = Some(self.form.frames);
        job.epochs = self.form.epochs;
        job.batch_size = self.form.batch_size;
        job.lr = (!self.form.auto_lr).then_some(self.form.lr);
        job.val_split = self.form.val_split;
        job.seed = self.form.seed;
        job.run_dir =
            (!self.form.run_dir.trim().is_empty()).then(|| PathBuf::from(self.form.run_dir.trim()));
        job.device = JobDevice::Choose {
            choice: shared.settings.device.choice(),
            threads: shared.settings.threads,
        };
        Ok(job)
    }

    /// Reads the data folder on a worker: classes, clips per class, broken clips.
    pub fn check_data(&mut self, shared: &mut Shared, notify: Notify) {
        if self.check.is_some() {
            return;
        }
        let data = self.data.trim();
        if data.is_empty() {
            self.check_error = Some("choose a data folder first".into());
            return;
        }
        let mut job = TrainJob::new(PathBuf::from(data), PathBuf::new());
        job.val_split = self.form.val_split;
        job.seed = self.form.seed;
        let (tx, rx) = bounded(1);
        let spawned = std::thread::Builder::new()
            .name("kineto-train-check".into())
            .spawn(move || {
                let outcome =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check_data(&job)))
                        .map_err(|_| "the data check crashed".to_string())
                        .and_then(|r| r.map_err(|e| e.to_string()))
                        .map(|c| SummaryView {
                            summary: c.summary,
                            broken: c.broken,
                            notes: c.dataset.notes,
                        });
                let _ = tx.send(outcome);
                notify.notify();
            });
        match spawned {
            Ok(_) => {
                self.check = Some(rx);
                self.check_error = None;
            }
            Err(e) => shared.error(format!("cannot start the data check: {e}")),
        }
    }

    /// Starts a head-only run on its own thread.
    pub fn start(&mut self, shared: &mut Shared, notify: Notify) {
        if self.job.is_some() {
            return;
        }
        let job = match self.job_for(shared) {
            Ok(job) => job,
            Err(e) => {
                self.state = TrainState::Failed(e);
                return;
            }
        };
        self.frames = self.form.frames;
        self.curves = Curves::default();
        self.epochs_seen = 0;
        self.report = None;
        self.extract = None;
        self.extract_note = None;
        let (tx, rx) = unbounded();
        let cancel = CancelToken::new();
        let token = cancel.clone();
        let spawned = std::thread::Builder::new()
            .name("kineto-train".into())
            .spawn(move || {
                let send = |event: JobEvent| {
                    let _ = tx.send(event);
                    notify.notify();
                };
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run_head_only(&job, &token, &send)
                }));
                match outcome {
                    Ok(Ok(o)) if o.cancelled => send(JobEvent::Cancelled),
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => send(JobEvent::Failed(e.to_string())),
                    Err(_) => send(JobEvent::Failed("the training job crashed".into())),
                }
            });
        match spawned {
            Ok(thread) => {
                self.job = Some(RunningJob {
                    rx,
                    cancel,
                    thread: Some(thread),
                });
                self.state = TrainState::Running;
            }
            Err(e) => self.state = TrainState::Failed(format!("cannot start training: {e}")),
        }
    }

    /// Asks the running job to stop (it stops between clips and epochs).
    pub fn cancel(&mut self) {
        if let Some(job) = &self.job {
            job.cancel.cancel();
            self.state = TrainState::Cancelling;
        }
    }

    /// Applies the worker messages that arrived since the last frame.
    pub fn drain(&mut self) {
        if let Some(rx) = &self.check
            && let Ok(outcome) = rx.try_recv()
        {
            self.check = None;
            match outcome {
                Ok(view) => self.summary = Some(view),
                Err(e) => self.check_error = Some(e),
            }
        }
        let Some(job) = &self.job else {
            return;
        };
        let events: Vec<JobEvent> = job.rx.try_iter().take(EVENTS_PER_FRAME).collect();
        let mut finished = false;
        for event in events {
            finished |= self.on_event(event);
        }
        if finished {
            self.job = None;
        }
    }

    /// Applies one event; true when the job is over.
    fn on_event(&mut self, event: JobEvent) -> bool {
        match event {
            JobEvent::Summary {
                summary,
                broken,
                notes,
                ..
            } => {
                self.summary = Some(SummaryView {
                    summary,
                    broken,
                    notes,
                });
            }
            JobEvent::Extract {
                done,
                total,
                cached,
                ..
            } => {
                let from_cache = self.extract.map_or(0, |e| e.2) + usize::from(cached);
                self.extract = Some((done, total, from_cache));
            }
            JobEvent::Extracted {
                decoded,
                cached,
                elapsed_s,
                broken,
            } => {
                let mut note = format!(
                    "features: {decoded} clips decoded, {cached} from the cache, {elapsed_s:.1} s"
                );
                if !broken.is_empty() {
                    note.push_str(&format!("; {} clips skipped", broken.len()));
                }
                self.extract_note = Some(note);
            }
            JobEvent::Train(TrainEvent::Step { epoch, lr, .. }) => {
                self.curves.lr.push([epoch as f64, lr]);
            }
            JobEvent::Train(TrainEvent::Epoch {
                epoch,
                train_loss,
                val_loss,
                val_top1,
                ..
            }) => {
                let x = epoch as f64;
                self.curves.train_loss.push([x, train_loss]);
                if let Some(l) = val_loss {
                    self.curves.val_loss.push([x, l]);
                }
                if let Some(t) = val_top1 {
                    self.curves.val_top1.push([x, 100.0 * t]);
                }
                self.epochs_seen += 1;
            }
            JobEvent::Train(TrainEvent::Done { .. }) => {
                self.state = TrainState::Done;
                return true;
            }
            JobEvent::Report {
                text,
                class_names,
                model_path,
                run_dir,
                ..
            } => {
                self.report = Some(ReportView {
                    text,
                    model_path,
                    run_dir,
                    class_names,
                });
            }
            JobEvent::Failed(e) => {
                self.state = TrainState::Failed(e);
                return true;
            }
            JobEvent::Cancelled => {
                self.state = TrainState::Cancelled;
                return true;
            }
        }
        false
    }

    /// Makes the trained model the app's model (the player's live labels switch to it).
    pub fn use_model(&mut self, shared: &mut Shared) {
        let Some(report) = &self.report else {
            return;
        };
        shared.settings.model = report.model_path.display().to_string();
        shared.settings.frames = self.frames;
        shared.reload_model();
        shared.toast(format!(
            "using the trained model ({} classes)",
            report.class_names.len()
        ));
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        let notify = {
            let ctx = ui.ctx().clone();
            Notify::new(move || ctx.request_repaint())
        };
        let running = self.job.is_some();
        // The form on the left, the run (controls, progress, curves, report) on the right.
        ui.columns_const(|[left, right]: &mut [egui::Ui; 2]| {
            let ui = left;
            egui::ScrollArea::vertical()
                .id_salt("kineto.train.form.scroll")
                .show(ui, |ui| {
                    ui.heading("Train a classifier on your clips");
                    ui.label(
                        "Drop a folder with one sub-folder of clips per class on this tab, \
                             or choose one:",
                    );
                    let edit = ui.add_enabled(
                        !running,
                        egui::TextEdit::singleline(&mut self.data)
                            .desired_width(f32::INFINITY)
                            .hint_text("folder of class folders, or a list file"),
                    );
                    if edit.changed() {
                        self.summary = None;
                    }
                    ui.horizontal(|ui| {
                        if ui
                            .add_enabled(!running, egui::Button::new("Choose folder…"))
                            .clicked()
                        {
                            shared.dialogs.train_data();
                        }
                        let checking = self.check.is_some();
                        if ui
                            .add_enabled(!running && !checking, egui::Button::new("Check data"))
                            .clicked()
                        {
                            self.check_data(shared, notify.clone());
                        }
                        if checking {
                            ui.spinner();
                        }
                    });
                    if let Some(e) = &self.check_error {
                        ui.colored_label(ui.visuals().error_fg_color, e);
                    }
                    if let Some(view) = &self.summary {
                        summary_ui(ui, view);
                    }
                    ui.separator();
                    self.settings_ui(ui, shared, running);
                });
            let ui = right;
            egui::ScrollArea::vertical()
                .id_salt("kineto.train.run.scroll")
                .show(ui, |ui| {
                    self.controls_ui(ui, shared, notify);
                    self.progress_ui(ui);
                    self.use_model_ui(ui, shared);
                    if !self.curves.train_loss.is_empty() || !self.curves.lr.is_empty() {
                        self.plots_ui(ui);
                    }
                    if let Some(report) = &self.report {
                        ui.separator();
                        ui.label(egui::RichText::new(&report.text).monospace());
                    }
                });
        });
    }

    fn settings_ui(&mut self, ui: &mut egui::Ui, shared: &Shared, running: bool) {
        ui.add_enabled_ui(!running, |ui| {
            egui::Grid::new("kineto.train.settings")
                .num_columns(2)
                .spacing([12.0, 6.0])
                .show(ui, |ui| {
                    ui.label("Start weights");
                    let hint = shared
                        .model()
                        .map(|m| m.path.display().to_string())
                        .unwrap_or_else(|| "the loaded model's weights".into());
                    ui.add(
                        egui::TextEdit::singleline(&mut self.form.weights)
                            .desired_width(240.0)
                            .hint_text(hint),
                    );
                    ui.end_row();
                    ui.label("Frames");
                    ui.horizontal(|ui| {
                        ui.radio_value(&mut self.form.frames, 8, "8");
                        ui.radio_value(&mut self.form.frames, 16, "16");
                    });
                    ui.end_row();
                    ui.label("Epochs");
                    ui.add(egui::DragValue::new(&mut self.form.epochs).range(1..=1000));
                    ui.end_row();
                    ui.label("Batch size");
                    ui.add(egui::DragValue::new(&mut self.form.batch_size).range(1..=1024));
                    ui.end_row();
                    ui.label("Learning rate");
                    ui.horizontal(|ui| {
                        ui.checkbox(&mut self.form.auto_lr, "default");
                        ui.add_enabled(
                            !self.form.auto_lr,
                            egui::DragValue::new(&mut self.form.lr)
                                .range(1e-6..=1.0)
                                .speed(0.0005)
                                .max_decimals(6),
                        );
                    });
                    ui.end_row();
                    ui.label("Validation split");
                    ui.add(
                        egui::DragValue::new(&mut self.form.val_split)
                            .range(0.0..=0.9)
                            .speed(0.01),
                    );
                    ui.end_row();
                    ui.label("Seed");
                    ui.add(egui::DragValue::new(&mut self.form.seed));
                    ui.end_row();
                    ui.label("Run folder");
                    ui.add(
                        egui::TextEdit::singleline(&mut self.form.run_dir)
                            .desired_width(240.0)
                            .hint_text("default: runs/ next to the weights cache"),
                    );
                    ui.end_row();
                    ui.label("Mode");
                    ui.label(
                        "head-only: the backbone stays frozen, its features are cached, a new \
                         classifier is trained. Full fine-tuning and distillation are not \
                         available yet.",
                    );
                    ui.end_row();
                });
        });
    }

    fn controls_ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared, notify: Notify) {
        ui.horizontal(|ui| {
            let running = self.job.is_some();
            let can_start = !running && !self.data.trim().is_empty();
            if ui
                .add_enabled(can_start, egui::Button::new("Start"))
                .clicked()
            {
                self.start(shared, notify);
            }
            let can_cancel = running && self.state != TrainState::Cancelling;
            if ui
                .add_enabled(can_cancel, egui::Button::new("Cancel"))
                .clicked()
            {
                self.cancel();
            }
            match &self.state {
                TrainState::Idle => {}
                TrainState::Running => {
                    ui.spinner();
                    ui.label("training…");
                }
                TrainState::Cancelling => {
                    ui.spinner();
                    ui.label("cancelling…");
                }
                TrainState::Done => {
                    ui.label("done");
                }
                TrainState::Cancelled => {
                    ui.label("cancelled");
                }
                TrainState::Failed(e) => {
                    ui.colored_label(ui.visuals().error_fg_color, format!("failed: {e}"));
                }
            }
        });
    }

    fn progress_ui(&self, ui: &mut egui::Ui) {
        if let Some((done, total, cached)) = self.extract {
            let fraction = if total > 0 {
                done as f32 / total as f32
            } else {
                1.0
            };
            ui.add(
                egui::ProgressBar::new(fraction)
                    .text(format!(
                        "features {done} / {total} clips ({cached} from the cache)"
                    ))
                    .desired_width(420.0),
            );
        }
        if let Some(note) = &self.extract_note {
            ui.label(note);
        }
    }

    fn plots_ui(&self, ui: &mut egui::Ui) {
        let height = 160.0;
        ui.columns(3, |cols| {
            cols[0].label("loss");
            Plot::new("kineto.train.loss")
                .height(height)
                .legend(Legend::default())
                .allow_scroll(false)
                .show(&mut cols[0], |plot| {
                    plot.line(Line::new("train loss", self.curves.train_loss.clone()));
                    if !self.curves.val_loss.is_empty() {
                        plot.line(Line::new("val loss", self.curves.val_loss.clone()));
                    }
                });
            cols[1].label("val top-1 (%)");
            Plot::new("kineto.train.top1")
                .height(height)
                .allow_scroll(false)
                .include_y(0.0)
                .include_y(100.0)
                .show(&mut cols[1], |plot| {
                    plot.line(Line::new("val top-1", self.curves.val_top1.clone()));
                });
            cols[2].label("learning rate");
            Plot::new("kineto.train.lr")
                .height(height)
                .allow_scroll(false)
                .include_y(0.0)
                .show(&mut cols[2], |plot| {
                    plot.line(Line::new("lr", self.curves.lr.clone()));
                });
        });
    }

    /// The run folder and "Use this model", once a model is written.
    fn use_model_ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        let Some(report) = &self.report else {
            return;
        };
        let in_use = shared.model().is_some_and(|m| m.path == report.model_path);
        let mut clicked = false;
        ui.horizontal(|ui| {
            clicked = ui
                .add_enabled(!in_use, egui::Button::new("Use this model"))
                .on_hover_text("the player's live labels switch to the new classes")
                .clicked();
            if in_use {
                ui.label("in use");
            }
            ui.label("Run folder:");
            ui.label(egui::RichText::new(report.run_dir.display().to_string()).monospace());
        });
        if clicked {
            self.use_model(shared);
        }
    }
}

fn summary_ui(ui: &mut egui::Ui, view: &SummaryView) {
    let s = &view.summary;
    ui.label(format!(
        "{} classes, {} training clips, {} validation clips",
        s.classes.len(),
        s.train,
        s.val
    ));
    egui::Grid::new("kineto.train.summary")
        .striped(true)
        .num_columns(4)
        .show(ui, |ui| {
            ui.strong("id");
            ui.strong("class");
            ui.strong("train");
            ui.strong("val");
            ui.end_row();
            for c in &s.classes {
                ui.label(c.label.to_string());
                ui.label(&c.name);
                ui.label(c.train.to_string());
                ui.label(c.val.to_string());
                ui.end_row();
            }
        });
    for note in &view.notes {
        ui.label(format!("note: {note}"));
    }
    if !view.broken.is_empty() {
        ui.colored_label(
            ui.visuals().warn_fg_color,
            format!(
                "{} clips cannot be decoded and will be skipped:",
                view.broken.len()
            ),
        );
        for (path, problem) in &view.broken {
            ui.label(egui::RichText::new(format!("{}: {problem}", path.display())).small());
        }
    }
}
