//! The Train tab: a folder of class folders in, a classifier out, in one of two modes:
//! head-only (the backbone stays frozen, its features are cached, a new classifier is trained)
//! or full fine-tuning (every layer, PaddleVideo's recipe; a cancel saves the `latest`
//! checkpoint and "Resume" continues the run; with a teacher, DML or KD). The panel draws the
//! form and sends requests: the run is the library's [`TrainingService`], the data check and
//! the export are [`Task`]s, and their updates are drained a bounded number per frame, so the
//! UI never waits on them; every refusal is the library's message. After a finished run
//! "Export..." writes the model (`.safetensors`) or PaddleVideo's `.pdparams` (from the run's
//! training-form `latest`); the teacher and export files come from the panel's own
//! [`Dialogs`] (the app's backend). Closing the window cancels a run and waits until it has
//! saved (the app's close guard); dropping the panel cancels it without waiting.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use eframe::egui;
use egui_plot::{Legend, Line, Plot, Points};

use super::dialogs::Dialogs;
use super::workers::Shared;
use crate::checkpoint::file::Format;
use crate::progress::{CancelToken, Notify, Task};
use crate::train::checkpoints::{is_resumable, latest_files};
use crate::train::data_check::check_data;
use crate::train::dataset::DatasetSummary;
use crate::train::loader::short_side_for;
use crate::train::metrics::TrainEvent;
use crate::train::run_folder::default_run_dir_for;
use crate::train::service::{JobKind, TrainRequest, TrainUpdate, TrainingService};
use crate::train::spec::{
    CHECKPOINT_MINUTES, DML_WEIGHT, DistillJob, DistillMode, FULL_SIZE, JobDevice, JobEvent,
    KD_TEMPERATURE, KD_WEIGHT, MIN_SIZE, TrainJob,
};
use crate::train::trainer::MAX_FREEZE_STAGES;
use crate::weights::export::{ExportRequest, export};

/// At most this many job messages are applied per frame.
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

/// What a run trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Frozen backbone, cached features, a new classifier.
    HeadOnly,
    /// Every layer, PaddleVideo's recipe for the model (PP-TSMv2, PP-TSM ResNet, MobileNets).
    Full,
}

/// Full fine-tuning's teacher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Distill {
    None,
    /// PaddleVideo's DML: the teacher is trained with the student.
    Dml,
    /// Classic KD from a frozen teacher.
    Kd,
}

/// What the panel's own file dialog was opened for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Asked {
    Teacher,
    Export,
}

/// The form's settings.
#[derive(Clone, Debug)]
struct Form {
    mode: Mode,
    /// Start weights (a file); empty: the loaded model's.
    weights: String,
    frames: usize,
    epochs: usize,
    /// Clips per step of each mode (`kineto train`'s defaults: head-only 16, full 4).
    batch_head: usize,
    batch_full: usize,
    auto_lr: bool,
    lr: f64,
    val_split: f64,
    seed: u64,
    /// Empty: the default location (next to the weights cache).
    run_dir: String,
    /// Full fine-tuning: the training crop (PaddleVideo: 224; smaller is faster).
    size: u32,
    /// Full fine-tuning: PaddleVideo's Mixup on every batch.
    mixup: bool,
    /// Full fine-tuning: the stem and this many stages keep their weights (0: train all).
    freeze_stages: usize,
    /// Full fine-tuning: distillation, its teacher (a file), KD's temperature and weight,
    /// DML's KL weight.
    distill: Distill,
    teacher: String,
    temperature: f64,
    kd_weight: f64,
    dml_weight: f64,
    /// Full fine-tuning: minutes of training between `latest` checkpoints (also on Resume).
    checkpoint_minutes: f64,
}

impl Default for Form {
    fn default() -> Self {
        Self {
            mode: Mode::HeadOnly,
            weights: String::new(),
            frames: 8,
            epochs: 10,
            batch_head: 16,
            batch_full: 4,
            auto_lr: true,
            lr: 0.01,
            val_split: 0.25,
            seed: 0,
            run_dir: String::new(),
            size: FULL_SIZE,
            mixup: true,
            freeze_stages: 0,
            distill: Distill::None,
            teacher: String::new(),
            temperature: KD_TEMPERATURE,
            kd_weight: KD_WEIGHT,
            dml_weight: DML_WEIGHT,
            checkpoint_minutes: CHECKPOINT_MINUTES,
        }
    }
}

impl Form {
    fn batch(&self) -> usize {
        match self.mode {
            Mode::HeadOnly => self.batch_head,
            Mode::Full => self.batch_full,
        }
    }

    fn batch_mut(&mut self) -> &mut usize {
        match self.mode {
            Mode::HeadOnly => &mut self.batch_head,
            Mode::Full => &mut self.batch_full,
        }
    }

    /// The base learning rate of a run started without one (as `kineto train` chooses it).
    fn default_lr(&self) -> f64 {
        match self.mode {
            Mode::HeadOnly => 0.01,
            Mode::Full => 0.01 * self.batch_full as f64 / 128.0,
        }
    }

    /// The distillation of a full run (`Ok(None)`: none, or head-only).
    fn distill_job(&self) -> Result<Option<DistillJob>, String> {
        let mode = match (self.mode, self.distill) {
            (Mode::HeadOnly, _) | (_, Distill::None) => return Ok(None),
            (Mode::Full, Distill::Dml) => DistillMode::Dml,
            (Mode::Full, Distill::Kd) => DistillMode::Kd,
        };
        let teacher = self.teacher.trim();
        if teacher.is_empty() {
            return Err("distillation needs a teacher: choose its weights file".into());
        }
        Ok(Some(DistillJob {
            mode,
            teacher: teacher.to_string(),
            teacher_path: PathBuf::from(teacher),
            teacher_sha256: String::new(),
            temperature: self.temperature,
            kd_weight: self.kd_weight,
            dml_weight: self.dml_weight,
        }))
    }
}

/// One line per distillation mode: what it does, what teacher it needs.
fn distill_hint(distill: Distill) -> &'static str {
    match distill {
        Distill::None => "plain cross-entropy on the data's labels",
        Distill::Dml => {
            "DML (PaddleVideo's PP-TSMv2 recipe): student and teacher are trained together, \
             each by its own cross-entropy plus the symmetric KL of their predictions (about \
             twice the work per step with a PP-TSMv2 teacher; a PP-TSM ResNet-50 teacher, as \
             PaddleVideo uses, costs about ten times the student's step). The teacher must be \
             in the training form (a .pdparams, or a .safetensors saved without fusing); its \
             classifier is replaced for the data's classes unless it already has them."
        }
        Distill::Kd => {
            "KD: a frozen teacher's softened predictions guide the student: loss = (1 - A) CE + \
             A T^2 KL(teacher_T || student_T). The teacher may be PP-TSMv2 or PP-TSM ResNet-50 \
             in any form, but must already know the data's classes (e.g. a model trained here)."
        }
    }
}

/// The run as the worker set it up (for a resumed run: from the run's own settings).
#[derive(Clone, Debug)]
struct Plan {
    full: bool,
    resumed: bool,
    epochs: usize,
    batch: usize,
    frames: Option<usize>,
    size: u32,
    mixup: bool,
    freeze_stages: usize,
    /// "KD from teacher.safetensors (T 4, A 0.5)", "DML with ...".
    distill: Option<String>,
    run_dir: PathBuf,
}

impl Plan {
    fn of(job: &TrainJob, kind: JobKind) -> Self {
        Self {
            full: kind != JobKind::HeadOnly,
            resumed: kind == JobKind::Resumed,
            epochs: job.epochs,
            batch: job.batch_size,
            frames: job.frames,
            size: job.size,
            mixup: job.mixup,
            freeze_stages: job.freeze_stages,
            distill: job.distill.as_ref().map(DistillJob::describe),
            run_dir: job.run_dir.clone().unwrap_or_default(),
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
    class_names: Vec<String>,
}

/// The last step event.
#[derive(Clone, Copy, Debug)]
struct StepView {
    epoch: usize,
    step: usize,
    loss: f64,
    clips_per_s: f64,
}

/// The plotted series: per step (x = the run's global step) and per epoch (x = epoch).
#[derive(Clone, Debug, Default)]
struct Curves {
    step_loss: Vec<[f64; 2]>,
    /// The loss terms (`ce`, and with distillation `ce_teacher`, `dml`, `kd`), by name.
    step_terms: BTreeMap<String, Vec<[f64; 2]>>,
    step_lr: Vec<[f64; 2]>,
    epoch_train_loss: Vec<[f64; 2]>,
    val_loss: Vec<[f64; 2]>,
    val_top1: Vec<[f64; 2]>,
}

pub struct TrainingPanel {
    data: String,
    form: Form,
    state: TrainState,
    check: Option<Task<Result<SummaryView, String>>>,
    check_error: Option<String>,
    summary: Option<SummaryView>,
    job: Option<TrainingService>,
    plan: Option<Plan>,
    /// The run folder of the running / last run.
    run_folder: Option<PathBuf>,
    /// A full run folder whose `latest` checkpoint can be continued ("Resume").
    resumable: Option<PathBuf>,
    /// Training clips of the running / last run (after its probe).
    run_train_clips: Option<usize>,
    /// (done, total, from the cache)
    extract: Option<(usize, usize, usize)>,
    extract_note: Option<String>,
    last_step: Option<StepView>,
    curves: Curves,
    epochs_seen: usize,
    report: Option<ReportView>,
    /// num_seg of the running / finished job.
    frames: usize,
    /// The panel's own file dialogs (teacher weights, export), made at the first frame.
    dialogs: Option<Dialogs>,
    asked: Option<Asked>,
    /// A running export: its one-line outcome comes back here.
    exporting: Option<Task<Result<String, String>>>,
    /// The last export's outcome (one line).
    export_outcome: Option<Result<String, String>>,
    /// Wakes the UI (set at the first frame).
    notify: Option<Notify>,
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
            plan: None,
            run_folder: None,
            resumable: None,
            run_train_clips: None,
            extract: None,
            extract_note: None,
            last_step: None,
            curves: Curves::default(),
            epochs_seen: 0,
            report: None,
            frames: 8,
            dialogs: None,
            asked: None,
            exporting: None,
            export_outcome: None,
            notify: None,
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
        self.refresh_resumable();
    }

    /// Start weights of the next run (empty: the loaded model's).
    pub fn set_weights(&mut self, path: &Path) {
        self.form.weights = path.display().to_string();
    }

    /// Epochs and batch size of the next run (the batch size of the mode chosen now).
    pub fn set_epochs(&mut self, epochs: usize, batch_size: usize) {
        self.form.epochs = epochs.max(1);
        *self.form.batch_mut() = batch_size.max(1);
    }

    /// Full fine-tuning's training crop (clamped to what it accepts) and Mixup.
    pub fn set_full_options(&mut self, size: u32, mixup: bool) {
        self.form.size = size.clamp(MIN_SIZE, FULL_SIZE);
        self.form.mixup = mixup;
    }

    /// The distillation teacher of the next full run (the mode is chosen in the form).
    pub fn set_teacher(&mut self, path: &Path) {
        self.form.teacher = path.display().to_string();
    }

    /// The teacher field's text.
    pub fn teacher(&self) -> &str {
        &self.form.teacher
    }

    /// Names of the per-step loss terms received so far (`ce`, `kd`, ...).
    pub fn loss_terms(&self) -> Vec<String> {
        self.curves.step_terms.keys().cloned().collect()
    }

    /// Whether an export is being written.
    pub fn is_exporting(&self) -> bool {
        self.exporting.is_some()
    }

    /// The last export's one-line outcome.
    pub fn export_outcome(&self) -> Option<&Result<String, String>> {
        self.export_outcome.as_ref()
    }

    /// Whether "Full fine-tuning" is chosen.
    pub fn full_mode(&self) -> bool {
        self.form.mode == Mode::Full
    }

    pub fn state(&self) -> &TrainState {
        &self.state
    }

    /// Epoch events received so far (points of each per-epoch curve).
    pub fn epoch_points(&self) -> usize {
        self.epochs_seen
    }

    /// Step events received so far (points of the per-step loss and lr curves).
    pub fn step_points(&self) -> usize {
        self.curves.step_loss.len()
    }

    /// The global step of the last step event.
    pub fn last_step(&self) -> Option<usize> {
        self.last_step.map(|s| s.step)
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

    /// The run folder of the running or last run.
    pub fn run_folder(&self) -> Option<&Path> {
        self.run_folder.as_deref()
    }

    /// The run folder "Resume" would continue.
    pub fn resumable(&self) -> Option<&Path> {
        self.resumable.as_deref()
    }

    pub fn is_running(&self) -> bool {
        self.job.is_some()
    }

    /// The folder a Resume would look at: the form's run folder, else the last run's.
    fn refresh_resumable(&mut self) {
        let candidate = if self.form.run_dir.trim().is_empty() {
            self.run_folder.clone()
        } else {
            Some(PathBuf::from(self.form.run_dir.trim()))
        };
        self.resumable = candidate.filter(|d| is_resumable(d));
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
        job.batch_size = self.form.batch();
        job.lr = (!self.form.auto_lr).then_some(self.form.lr);
        job.val_split = self.form.val_split;
        job.seed = self.form.seed;
        // The default folder is named here, so that the panel can say where the run is.
        let run_dir = match self.form.run_dir.trim() {
            "" => default_run_dir_for(Path::new(data), None).map_err(|e| e.to_string())?,
            dir => PathBuf::from(dir),
        };
        job.run_dir = Some(run_dir);
        job.device = self.device(shared);
        job.size = self.form.size;
        job.mixup = self.form.mixup;
        job.freeze_stages = self.form.freeze_stages;
        job.checkpoint_minutes = self.form.checkpoint_minutes;
        job.distill = self.form.distill_job()?;
        Ok(job)
    }

    fn device(&self, shared: &Shared) -> JobDevice {
        JobDevice::Choose {
            choice: shared.settings.device.choice(),
            threads: shared.settings.threads,
        }
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
        let spawned = Task::spawn("kineto-train-check", notify, move |_| {
            check_data(&job)
                .map(|c| SummaryView {
                    summary: c.summary,
                    broken: c.broken,
                    notes: c.dataset.notes,
                })
                .map_err(|e| e.to_string())
        });
        match spawned {
            Ok(task) => {
                self.check = Some(task);
                self.check_error = None;
            }
            Err(e) => shared.error(format!("cannot start the data check: {e}")),
        }
    }

    /// Starts a run of the chosen mode on its own thread.
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
        let request = match self.form.mode {
            Mode::HeadOnly => TrainRequest::HeadOnly(Box::new(job)),
            Mode::Full => TrainRequest::Full(Box::new(job)),
        };
        self.frames = self.form.frames;
        self.reset_run(false);
        // Named by the worker's plan, once the start weights are accepted.
        self.run_folder = None;
        self.spawn(request, notify);
    }

    /// Continues the full run in the resumable run folder from its `latest` checkpoint, with
    /// that run's own settings.
    pub fn resume(&mut self, shared: &mut Shared, notify: Notify) {
        if self.job.is_some() {
            return;
        }
        let Some(run_dir) = self.resumable.clone() else {
            return;
        };
        // The curves of the same run go on (step numbers continue); another run's are cleared.
        let same = self.run_folder.as_deref() == Some(run_dir.as_path());
        self.reset_run(same);
        self.run_folder = Some(run_dir.clone());
        let device = Box::new(self.device(shared));
        let checkpoint_minutes = self.form.checkpoint_minutes;
        self.spawn(
            TrainRequest::Resume {
                run_dir,
                device,
                checkpoint_minutes,
            },
            notify,
        );
    }

    /// Clears what the last run showed (its curves too unless `keep_curves`).
    fn reset_run(&mut self, keep_curves: bool) {
        if !keep_curves {
            self.curves = Curves::default();
            self.epochs_seen = 0;
            self.last_step = None;
        }
        self.plan = None;
        self.run_train_clips = None;
        self.report = None;
        self.extract = None;
        self.extract_note = None;
        self.resumable = None;
        self.export_outcome = None;
    }

    fn spawn(&mut self, request: TrainRequest, notify: Notify) {
        match TrainingService::start(request, CancelToken::new(), notify) {
            Ok(service) => {
                self.job = Some(service);
                self.state = TrainState::Running;
            }
            Err(e) => self.state = TrainState::Failed(e.to_string()),
        }
    }

    /// Asks the running job to stop (head-only: between clips and epochs; full fine-tuning:
    /// between steps, after which it saves `latest`).
    pub fn cancel(&mut self) {
        if let Some(job) = &self.job {
            job.cancel_token().cancel();
            self.state = TrainState::Cancelling;
        }
    }

    /// Whether the running job is paused (it stops at its next step until continued).
    pub fn is_paused(&self) -> bool {
        self.job
            .as_ref()
            .is_some_and(|job| job.cancel_token().is_paused())
    }

    /// Pauses the running job at its next step, or lets a paused one go on.
    pub fn toggle_pause(&mut self) {
        if let Some(job) = &self.job {
            if job.cancel_token().is_paused() {
                job.cancel_token().resume();
            } else {
                job.cancel_token().pause();
            }
        }
    }

    /// Applies the worker messages that arrived since the last frame.
    pub fn drain(&mut self) {
        let picked = self.dialogs.as_mut().map(Dialogs::poll).unwrap_or_default();
        for answer in picked {
            let asked = self.asked.take();
            let Some(path) = answer.paths.into_iter().next() else {
                continue;
            };
            match asked {
                Some(Asked::Teacher) => self.form.teacher = path.display().to_string(),
                Some(Asked::Export) => self.export_to(&path),
                None => {}
            }
        }
        if let Some(outcome) = self.exporting.as_ref().and_then(Task::try_outcome) {
            self.exporting = None;
            self.export_outcome = Some(outcome.and_then(|r| r));
        }
        if let Some(outcome) = self.check.as_ref().and_then(Task::try_outcome) {
            self.check = None;
            match outcome.and_then(|r| r) {
                Ok(view) => self.summary = Some(view),
                Err(e) => self.check_error = Some(e),
            }
        }
        let Some(job) = &self.job else {
            return;
        };
        let mut finished = false;
        for update in job.try_updates(EVENTS_PER_FRAME) {
            match update {
                TrainUpdate::Started(job, kind) => {
                    let plan = Plan::of(&job, kind);
                    if let Some(frames) = plan.frames {
                        self.frames = frames;
                    }
                    self.run_folder = Some(plan.run_dir.clone());
                    self.plan = Some(plan);
                }
                TrainUpdate::Event(event) => self.on_event(event),
                TrainUpdate::Finished(outcome) => {
                    self.state = match outcome {
                        Ok(o) if o.cancelled => TrainState::Cancelled,
                        Ok(_) => TrainState::Done,
                        Err(e) => TrainState::Failed(e.to_string()),
                    };
                    finished = true;
                }
            }
        }
        if finished {
            self.job = None;
            self.refresh_resumable();
        }
    }

    /// Applies one event of the running job.
    fn on_event(&mut self, event: JobEvent) {
        match event {
            JobEvent::Summary {
                summary,
                broken,
                notes,
                ..
            } => {
                self.run_train_clips = Some(summary.train);
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
            JobEvent::History(events) => {
                // The resumed run's curves from its start, whatever this panel showed before.
                self.curves = Curves::default();
                self.epochs_seen = 0;
                for event in events {
                    self.on_event(JobEvent::Train(event));
                }
            }
            JobEvent::Train(TrainEvent::Step {
                epoch,
                step,
                loss,
                terms,
                lr,
                clips_per_s,
                ..
            }) => {
                let x = step as f64;
                self.curves.step_loss.push([x, loss]);
                for (name, value) in terms {
                    self.curves
                        .step_terms
                        .entry(name)
                        .or_default()
                        .push([x, value]);
                }
                self.curves.step_lr.push([x, lr]);
                self.last_step = Some(StepView {
                    epoch,
                    step,
                    loss,
                    clips_per_s,
                });
            }
            JobEvent::Train(TrainEvent::Epoch {
                epoch,
                train_loss,
                val_loss,
                val_top1,
                ..
            }) => {
                let x = epoch as f64;
                self.curves.epoch_train_loss.push([x, train_loss]);
                if let Some(l) = val_loss {
                    self.curves.val_loss.push([x, l]);
                }
                if let Some(t) = val_top1 {
                    self.curves.val_top1.push([x, 100.0 * t]);
                }
                self.epochs_seen += 1;
            }
            JobEvent::Train(TrainEvent::Done { .. }) => self.state = TrainState::Done,
            JobEvent::Report {
                text,
                class_names,
                model_path,
                run_dir,
                ..
            } => {
                self.run_folder = Some(run_dir);
                self.report = Some(ReportView {
                    text,
                    model_path,
                    class_names,
                });
            }
        }
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

    /// Writes the trained model to `output` on a worker: `.safetensors` the run's model (the
    /// fused form, with the class names); `.pdparams` PaddleVideo's training-form layout, from
    /// the run's `latest` checkpoint (a full run's training form; the model itself is fused).
    pub fn export_to(&mut self, output: &Path) {
        if self.exporting.is_some() {
            return;
        }
        let Some(report) = &self.report else {
            return;
        };
        let format = match Format::from_path(output) {
            Some(f) => f,
            None => {
                self.export_outcome = Some(Err(format!(
                    "{}: name the file .safetensors or .pdparams",
                    output.display()
                )));
                return;
            }
        };
        let latest = self
            .run_folder
            .as_ref()
            .and_then(|d| latest_files(d).map(|f| d.join(f.model)));
        let source = match (format, latest) {
            (Format::Pdparams, Some(latest)) if latest.is_file() => latest,
            _ => report.model_path.clone(),
        };
        let output = output.to_path_buf();
        let notify = self.notify.clone().unwrap_or_else(Notify::none);
        let spawned = Task::spawn("kineto-train-export", notify, move |_| {
            let request = ExportRequest {
                source: &source,
                source_name: None,
                catalog_num_seg: None,
                output: &output,
                format: Some(format),
                fused: false,
                teacher: false,
                labels: None,
            };
            export(&request).map_err(|e| e.to_string()).map(|r| {
                let names = r
                    .class_names
                    .map(|n| format!(", {n} class names"))
                    .unwrap_or_default();
                format!(
                    "wrote {} ({}, {} form, {} tensors{names})",
                    r.output.display(),
                    r.format.as_str(),
                    r.form.as_str(),
                    r.tensors
                )
            })
        });
        match spawned {
            Ok(task) => {
                self.exporting = Some(task);
                self.export_outcome = None;
            }
            Err(e) => self.export_outcome = Some(Err(format!("cannot start the export: {e}"))),
        }
    }

    /// Steps of the whole run, once the run's probe has counted the training clips.
    fn total_steps(&self) -> Option<usize> {
        let plan = self.plan.as_ref()?;
        let clips = self.run_train_clips?;
        Some(plan.epochs * clips.div_ceil(plan.batch.max(1)))
    }

    /// "epoch e/E, step s/S, loss, rate, time left" of the last step event.
    pub fn progress_text(&self) -> Option<String> {
        let step = self.last_step?;
        let plan = self.plan.as_ref()?;
        let total = self.total_steps();
        let mut text = format!("epoch {}/{}, step {}", step.epoch, plan.epochs, step.step);
        if let Some(total) = total {
            text.push_str(&format!("/{total}"));
        }
        text.push_str(&format!(
            ", loss {:.4}, {:.1} clips/s",
            step.loss, step.clips_per_s
        ));
        if let Some(total) = total
            && self.job.is_some()
            && step.clips_per_s > 0.0
        {
            let clips_left = total.saturating_sub(step.step) * plan.batch;
            let secs = clips_left as f64 / step.clips_per_s;
            text.push_str(&format!(", about {} left", duration_text(secs)));
        }
        Some(text)
    }
}

/// "42 s", "3 min", "1.5 h".
fn duration_text(secs: f64) -> String {
    if secs < 90.0 {
        format!("{secs:.0} s")
    } else if secs < 5400.0 {
        format!("{:.0} min", secs / 60.0)
    } else {
        format!("{:.1} h", secs / 3600.0)
    }
}

/// The drawing.
impl TrainingPanel {
    pub fn ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        let notify = {
            let ctx = ui.ctx().clone();
            Notify::new(move || ctx.request_repaint())
        };
        if self.notify.is_none() {
            self.notify = Some(notify.clone());
        }
        if self.dialogs.is_none() {
            self.dialogs = Some(Dialogs::new(shared.dialogs.backend(), notify.clone()));
        }
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
                    self.run_folder_ui(ui);
                    self.progress_ui(ui);
                    self.use_model_ui(ui, shared);
                    self.export_ui(ui);
                    if !self.curves.step_loss.is_empty() || !self.curves.epoch_train_loss.is_empty()
                    {
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
                    ui.label("Mode");
                    ui.vertical(|ui| {
                        ui.radio_value(&mut self.form.mode, Mode::HeadOnly, "Head only (fast)")
                            .on_hover_text(
                                "the backbone stays frozen, its features are cached once, a new \
                                 classifier is trained in seconds per epoch",
                            );
                        ui.radio_value(&mut self.form.mode, Mode::Full, "Full fine-tuning")
                            .on_hover_text(
                                "every layer is trained with PaddleVideo's recipe for the model \
                                 (PP-TSMv2, PP-TSM ResNet-50/101, MobileNetV2/V3: Mixup, \
                                 Momentum, warm-up + cosine); slow on a CPU",
                            );
                    });
                    ui.end_row();
                    // Read after the choice, so that a click shows its settings at once.
                    let full = self.form.mode == Mode::Full;
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
                    if full {
                        ui.label("");
                        ui.label(
                            egui::RichText::new(
                                "full fine-tuning needs the training form: a .pdparams, or a \
                                 .safetensors saved without fusing",
                            )
                            .small(),
                        );
                        ui.end_row();
                    }
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
                    ui.add(egui::DragValue::new(self.form.batch_mut()).range(1..=1024));
                    ui.end_row();
                    if full {
                        ui.label("Crop size");
                        ui.horizontal(|ui| {
                            ui.add(
                                egui::DragValue::new(&mut self.form.size)
                                    .range(MIN_SIZE..=FULL_SIZE)
                                    .suffix(" px"),
                            );
                            ui.label(
                                egui::RichText::new(format!(
                                    "scale {} px; 224 is PaddleVideo's, smaller is faster",
                                    short_side_for(self.form.size)
                                ))
                                .small(),
                            );
                        });
                        ui.end_row();
                        ui.label("Mixup");
                        ui.checkbox(&mut self.form.mixup, "mix pairs of clips (alpha 0.2)");
                        ui.end_row();
                        ui.label("Freeze stages");
                        ui.horizontal(|ui| {
                            ui.add(
                                egui::DragValue::new(&mut self.form.freeze_stages)
                                    .range(0..=MAX_FREEZE_STAGES),
                            );
                            ui.label(
                                egui::RichText::new(
                                    "the stem and this many of the 4 stages keep their weights \
                                     (BatchNorm there in eval mode); faster, 0 trains all",
                                )
                                .small(),
                            );
                        });
                        ui.end_row();
                        ui.label("Checkpoint every");
                        ui.horizontal(|ui| {
                            ui.add(
                                egui::DragValue::new(&mut self.form.checkpoint_minutes)
                                    .range(0.5..=1440.0)
                                    .speed(0.5)
                                    .suffix(" min"),
                            );
                            ui.label(
                                egui::RichText::new(
                                    "of training, besides every epoch end (also for Resume)",
                                )
                                .small(),
                            );
                        });
                        ui.end_row();
                    }
                    ui.label("Learning rate");
                    ui.vertical(|ui| {
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
                        let rule = match self.form.mode {
                            Mode::HeadOnly => "default: 0.01".to_string(),
                            Mode::Full => format!(
                                "default: 0.01 x batch / 128 = {:.6} (PaddleVideo's 0.01 for 8 \
                                 GPUs x 16 clips, scaled to the batch size)",
                                self.form.default_lr()
                            ),
                        };
                        ui.label(
                            egui::RichText::new(format!(
                                "{rule}; warm-up from half of it, then cosine"
                            ))
                            .small(),
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
                    let edit = ui.add(
                        egui::TextEdit::singleline(&mut self.form.run_dir)
                            .desired_width(240.0)
                            .hint_text("default: runs/ next to the weights cache"),
                    );
                    // The folder is looked at once typing is done, not on every keystroke.
                    if edit.lost_focus() {
                        self.refresh_resumable();
                    }
                    ui.end_row();
                });
            if self.form.mode == Mode::Full {
                ui.separator();
                self.distill_ui(ui);
            }
        });
    }

    /// Full fine-tuning's teacher: none, DML or KD, its weights, KD's T and weight.
    fn distill_ui(&mut self, ui: &mut egui::Ui) {
        ui.strong("Distillation");
        ui.horizontal(|ui| {
            ui.radio_value(&mut self.form.distill, Distill::None, "None");
            ui.radio_value(
                &mut self.form.distill,
                Distill::Dml,
                "DML (teacher trained too)",
            );
            ui.radio_value(&mut self.form.distill, Distill::Kd, "KD (frozen teacher)");
        });
        ui.label(egui::RichText::new(distill_hint(self.form.distill)).small());
        if self.form.distill == Distill::None {
            return;
        }
        egui::Grid::new("kineto.train.distill")
            .num_columns(2)
            .spacing([12.0, 6.0])
            .show(ui, |ui| {
                ui.label("Teacher weights");
                ui.horizontal(|ui| {
                    ui.add(
                        egui::TextEdit::singleline(&mut self.form.teacher)
                            .desired_width(200.0)
                            .hint_text(".pdparams or .safetensors"),
                    );
                    if ui.button("Choose...").clicked()
                        && let Some(dialogs) = &mut self.dialogs
                    {
                        self.asked = Some(Asked::Teacher);
                        dialogs.import_weights();
                    }
                });
                ui.end_row();
                if self.form.distill == Distill::Kd {
                    ui.label("Temperature");
                    ui.add(
                        egui::DragValue::new(&mut self.form.temperature)
                            .range(0.1..=100.0)
                            .speed(0.1)
                            .max_decimals(2),
                    );
                    ui.end_row();
                    ui.label("KD weight");
                    ui.add(
                        egui::DragValue::new(&mut self.form.kd_weight)
                            .range(0.0..=1.0)
                            .speed(0.01)
                            .max_decimals(3),
                    );
                    ui.end_row();
                }
                if self.form.distill == Distill::Dml {
                    ui.label("KL weight");
                    ui.add(
                        egui::DragValue::new(&mut self.form.dml_weight)
                            .range(0.0..=100.0)
                            .speed(0.01)
                            .max_decimals(3),
                    )
                    .on_hover_text(
                        "the weight of the symmetric KL term; both cross-entropies weigh 1 \
                         (PaddleVideo: 1)",
                    );
                    ui.end_row();
                }
            });
    }

    /// "Export..." once a run is done, and the last export's outcome.
    fn export_ui(&mut self, ui: &mut egui::Ui) {
        if self.state != TrainState::Done || self.report.is_none() {
            return;
        }
        ui.horizontal(|ui| {
            let idle = self.exporting.is_none();
            if ui
                .add_enabled(idle, egui::Button::new("Export..."))
                .on_hover_text(
                    ".safetensors: the trained model with its class names; .pdparams: \
                     PaddleVideo's training-form layout",
                )
                .clicked()
                && let Some(dialogs) = &mut self.dialogs
            {
                self.asked = Some(Asked::Export);
                dialogs.save_weights("kineto-model.safetensors");
            }
            if !idle {
                ui.spinner();
                ui.label("exporting");
            }
        });
        match &self.export_outcome {
            Some(Ok(line)) => {
                ui.label(line);
            }
            Some(Err(e)) => {
                ui.colored_label(ui.visuals().error_fg_color, format!("export failed: {e}"));
            }
            None => {}
        }
    }

    fn controls_ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared, notify: Notify) {
        ui.horizontal(|ui| {
            let running = self.job.is_some();
            let can_start = !running && !self.data.trim().is_empty();
            if ui
                .add_enabled(can_start, egui::Button::new("Start"))
                .clicked()
            {
                self.start(shared, notify.clone());
            }
            let can_cancel = running && self.state != TrainState::Cancelling;
            let paused = self.is_paused();
            let pause_label = if paused { "Continue" } else { "Pause" };
            if ui
                .add_enabled(can_cancel, egui::Button::new(pause_label))
                .on_hover_text("stop after the current step and keep everything in memory")
                .clicked()
            {
                self.toggle_pause();
            }
            if ui
                .add_enabled(can_cancel, egui::Button::new("Cancel"))
                .clicked()
            {
                self.cancel();
            }
            if !running && let Some(dir) = &self.resumable {
                let hover = format!(
                    "continue the run in {} from its latest checkpoint, with that run's own \
                     settings",
                    dir.display()
                );
                if ui.button("Resume").on_hover_text(hover).clicked() {
                    self.resume(shared, notify);
                }
            }
            match &self.state {
                TrainState::Idle => {}
                TrainState::Running if paused => {
                    ui.label("paused (Continue goes on, Cancel stops)");
                }
                TrainState::Running => {
                    ui.spinner();
                    let what = match &self.plan {
                        Some(p) if p.resumed => "resuming full fine-tuning",
                        Some(p) if p.full => "full fine-tuning",
                        _ => "training",
                    };
                    ui.label(what);
                }
                TrainState::Cancelling => {
                    ui.spinner();
                    let what = if self.plan.as_ref().is_some_and(|p| p.full) {
                        "cancelling (saving the latest checkpoint)"
                    } else {
                        "cancelling"
                    };
                    ui.label(what);
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

    /// Where the run is, and after a cancelled full run what was saved.
    fn run_folder_ui(&self, ui: &mut egui::Ui) {
        let Some(dir) = &self.run_folder else {
            return;
        };
        ui.horizontal_wrapped(|ui| {
            ui.label("Run folder:");
            ui.label(egui::RichText::new(dir.display().to_string()).monospace());
        });
        let full = self.plan.as_ref().is_some_and(|p| p.full);
        if full && self.state == TrainState::Cancelled {
            if self.resumable.as_deref() == Some(dir.as_path()) {
                ui.label(
                    "The latest checkpoint is saved in the run folder; Resume continues the run.",
                );
            } else {
                ui.label("Cancelled before the first checkpoint: nothing to resume.");
            }
        }
        if let Some(plan) = self.plan.as_ref().filter(|p| p.full) {
            let distill = plan
                .distill
                .as_ref()
                .map(|d| format!(", {d}"))
                .unwrap_or_default();
            ui.label(
                egui::RichText::new(format!(
                    "full fine-tuning: epochs {}, batch {}, crop {} px, Mixup {}{}{distill}",
                    plan.epochs,
                    plan.batch,
                    plan.size,
                    if plan.mixup { "on" } else { "off" },
                    match plan.freeze_stages {
                        0 => String::new(),
                        n => format!(", stem + {n} stage(s) frozen"),
                    }
                ))
                .small(),
            );
        }
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
        match (self.progress_text(), self.last_step) {
            (Some(text), Some(step)) => {
                let fraction = self
                    .total_steps()
                    .filter(|&t| t > 0)
                    .map_or(0.0, |t| (step.step as f32 / t as f32).min(1.0));
                ui.add(
                    egui::ProgressBar::new(fraction)
                        .text(text)
                        .desired_width(420.0),
                );
            }
            _ => {
                if self.job.is_some() && self.plan.as_ref().is_some_and(|p| p.full) {
                    ui.label("preparing: checking the clips, building the model");
                }
            }
        }
    }

    fn plots_ui(&self, ui: &mut egui::Ui) {
        let height = 150.0;
        let loss_color = egui::Color32::from_rgb(0x3b, 0x82, 0xd6);
        let val_color = egui::Color32::from_rgb(0xe0, 0x7b, 0x28);
        let lr_color = egui::Color32::from_rgb(0x4c, 0xaf, 0x50);
        // The x axes span the whole run once its length is known, so the curves grow into it.
        let last_step = self.total_steps().unwrap_or(1).max(1) as f64;
        let last_epoch = self.plan.as_ref().map_or(1, |p| p.epochs).max(1) as f64;
        ui.columns(2, |cols| {
            cols[0].label("train loss (per step)");
            // The terms are drawn when there is more than one (distillation).
            let terms = self.curves.step_terms.len() > 1;
            let mut plot = Plot::new("kineto.train.loss")
                .height(height)
                .allow_scroll(false);
            if terms {
                plot = plot.legend(Legend::default());
            }
            plot.x_axis_label("step")
                .include_x(0.0)
                .include_x(last_step)
                .include_y(0.0)
                .show(&mut cols[0], |plot| {
                    plot.line(
                        Line::new("train loss", self.curves.step_loss.clone()).color(loss_color),
                    );
                    if terms {
                        for (name, series) in &self.curves.step_terms {
                            plot.line(Line::new(name.as_str(), series.clone()));
                        }
                    }
                    if self.curves.step_loss.len() < 2 {
                        plot.points(
                            Points::new("train loss", self.curves.step_loss.clone())
                                .color(loss_color)
                                .radius(3.0),
                        );
                    }
                });
            cols[1].label("learning rate (per step)");
            Plot::new("kineto.train.lr")
                .height(height)
                .allow_scroll(false)
                .x_axis_label("step")
                .include_x(0.0)
                .include_x(last_step)
                .include_y(0.0)
                .show(&mut cols[1], |plot| {
                    plot.line(Line::new("lr", self.curves.step_lr.clone()).color(lr_color));
                });
        });
        ui.columns(2, |cols| {
            cols[0].label("loss (per epoch)");
            Plot::new("kineto.train.epoch_loss")
                .height(height)
                .legend(Legend::default())
                .allow_scroll(false)
                .x_axis_label("epoch")
                .include_x(0.0)
                .include_x(last_epoch)
                .include_y(0.0)
                .show(&mut cols[0], |plot| {
                    let train = self.curves.epoch_train_loss.clone();
                    plot.line(Line::new("train loss", train.clone()).color(loss_color));
                    plot.points(
                        Points::new("train loss", train)
                            .color(loss_color)
                            .radius(3.0),
                    );
                    if !self.curves.val_loss.is_empty() {
                        let val = self.curves.val_loss.clone();
                        plot.line(Line::new("val loss", val.clone()).color(val_color));
                        plot.points(Points::new("val loss", val).color(val_color).radius(3.0));
                    }
                });
            cols[1].label("val top-1 (%, per epoch)");
            Plot::new("kineto.train.top1")
                .height(height)
                .allow_scroll(false)
                .x_axis_label("epoch")
                .include_x(0.0)
                .include_x(last_epoch)
                .include_y(0.0)
                .include_y(100.0)
                .show(&mut cols[1], |plot| {
                    let top1 = self.curves.val_top1.clone();
                    plot.line(Line::new("val top-1", top1.clone()).color(val_color));
                    plot.points(Points::new("val top-1", top1).color(val_color).radius(3.0));
                });
        });
    }

    /// "Use this model", once a model is written.
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
