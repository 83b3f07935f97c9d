//! What every panel shares: the settings, the worker handles (player, inference service,
//! project saver, dialogs), the model's state and the labelling project. Channels are drained
//! here a bounded number of messages per frame, so a flood of events never stalls drawing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use eframe::egui;

use super::AppOptions;
use super::dialogs::Dialogs;
use super::settings::Settings;
use crate::infer::service::{InferenceService, LoadedModel, ServiceEvent};
use crate::labels::project::{Project, ProjectError, ProjectSaver, SaveEvent};
use crate::progress::{Notify, Task};
use crate::report::Ranked;
use crate::train::demo::{DemoOptions, generate};
use crate::video::player::{Player, PlayerCmd, PlayerOptions};
use crate::weights::catalog::{Catalog, EntryKind};

/// At most this many worker messages are applied per frame (the rest wait for the next one).
const EVENTS_PER_FRAME: usize = 256;
/// The longest a change waits before its project snapshot goes to the saver.
pub const SAVE_INTERVAL: Duration = Duration::from_millis(250);
/// How long a project load waits for the saver to write the snapshots handed to it before the
/// switch (the project being opened may be one of them: it is read once they are written).
const LOAD_WAITS_FOR_SAVES: Duration = Duration::from_secs(60);
/// How long closing the window waits for the saver to write the last snapshot.
const SHUTDOWN_SAVE_WAIT: Duration = Duration::from_secs(2);

/// Where saving the labelling project stands ([`Shared::project_save_state`]).
#[derive(Clone, Debug, PartialEq)]
pub enum ProjectSaveState {
    /// Every snapshot is written (or nothing needed writing).
    Saved,
    /// The saver is still writing.
    Writing,
    /// The last write of this file failed.
    Failed { path: PathBuf, error: String },
}

/// What a project load gives back: its generation, its root, the project (`None`: there is no
/// project file yet) or why it could not be read.
type LoadOutcome = (u64, PathBuf, Result<Option<Project>, ProjectError>);

/// The labelling project being read on its `kineto-project-load` worker. While it loads,
/// `Shared::project` is `None` (labelling shows "loading project…" and is disabled); what
/// arrives meanwhile for the project (the clip opened, a batch's files, predictions) waits in
/// `pending_*` and is applied once it is open.
pub struct ProjectLoad {
    pub root: PathBuf,
    generation: u64,
    task: Task<LoadOutcome>,
}

#[derive(Clone, Debug)]
pub enum ModelState {
    None,
    Loading {
        weights: String,
        done: u64,
        total: Option<u64>,
    },
    Ready(LoadedModel),
    Failed {
        weights: String,
        error: String,
    },
}

pub struct Toast {
    pub text: String,
    pub error: bool,
    pub shown_at: Instant,
}

pub struct Shared {
    pub settings: Settings,
    pub player: Player,
    pub service: InferenceService,
    pub saver: ProjectSaver,
    pub dialogs: Dialogs,
    pub model: ModelState,
    pub project: Option<Project>,
    /// The project being opened (see [`ProjectLoad`]).
    pub project_load: Option<ProjectLoad>,
    /// Counts project switches: a load's outcome is applied only if no switch came after it.
    project_generation: u64,
    /// Clips to add to the project being loaded once it is open (in order).
    pending_clips: Vec<PathBuf>,
    /// Predictions made while the project was loading (path, top-k), stored once it is open.
    pending_predictions: Vec<(PathBuf, Vec<Ranked>)>,
    pub current_clip: Option<PathBuf>,
    /// Job id of the one-clip classification of the clip in the player.
    pub clip_job: Option<u64>,
    pub toasts: Vec<Toast>,
    pub save_status: Option<String>,
    /// The project file whose last write failed, and why (cleared by its next good write):
    /// closing the window asks before it leaves those labels unsaved.
    pub unsaved_project: Option<(PathBuf, String)>,
    /// The last panic of a worker (shown in the status bar).
    pub worker_crash: Option<String>,
    /// The project changed since its last snapshot (see `save_project_soon`).
    project_dirty: bool,
    project_saved_at: Instant,
    pub catalog_names: Vec<String>,
    pub settings_requested: bool,
    /// Demo clips being written (first run without weights); the answer is the folder.
    pub demo: Option<Task<Result<PathBuf, String>>>,
    /// Wakes the window (given to one-off tasks started by panels).
    pub repaint: Notify,
}

impl Shared {
    pub fn new(ctx: &egui::Context, settings: Settings, options: &AppOptions) -> Self {
        let repaint = |ctx: &egui::Context| {
            let ctx = ctx.clone();
            Notify::new(move || ctx.request_repaint())
        };
        let player = Player::spawn_with(
            repaint(ctx),
            PlayerOptions {
                audio: options.audio,
            },
        );
        let service = InferenceService::spawn(repaint(ctx));
        service.set_top_k(settings.top_k);
        service.load(settings.model_spec());
        let catalog_names = Catalog::load()
            .map(|c| {
                c.entries
                    .iter()
                    .filter(|e| e.kind != EntryKind::Imagenet)
                    .map(|e| e.name.clone())
                    .collect()
            })
            .unwrap_or_default();
        let shared = Self {
            player,
            service,
            saver: ProjectSaver::spawn(repaint(ctx)),
            dialogs: Dialogs::new(options.dialogs.clone(), repaint(ctx)),
            model: ModelState::None,
            project: None,
            project_load: None,
            project_generation: 0,
            pending_clips: Vec::new(),
            pending_predictions: Vec::new(),
            current_clip: None,
            clip_job: None,
            toasts: Vec::new(),
            save_status: None,
            unsaved_project: None,
            worker_crash: None,
            project_dirty: false,
            project_saved_at: Instant::now(),
            catalog_names,
            settings_requested: false,
            demo: None,
            repaint: repaint(ctx),
            settings,
        };
        shared
            .player
            .send(PlayerCmd::SetVolume(shared.settings.volume));
        shared
    }

    pub fn toast(&mut self, text: impl Into<String>) {
        self.toasts.push(Toast {
            text: text.into(),
            error: false,
            shown_at: Instant::now(),
        });
    }

    pub fn error(&mut self, text: impl Into<String>) {
        self.toasts.push(Toast {
            text: text.into(),
            error: true,
            shown_at: Instant::now(),
        });
    }

    pub fn model(&self) -> Option<&LoadedModel> {
        match &self.model {
            ModelState::Ready(m) => Some(m),
            _ => None,
        }
    }

    pub fn reload_model(&mut self) {
        self.service.set_top_k(self.settings.top_k);
        self.service.load(self.settings.model_spec());
    }

    pub fn apply_settings(&mut self, new: Settings) {
        let reload = new.model_spec() != self.settings.model_spec();
        self.settings = new;
        self.service.set_top_k(self.settings.top_k);
        if reload {
            self.reload_model();
        }
    }

    /// Plays `path` and makes sure the project of its folder knows it.
    pub fn open_clip(&mut self, path: &Path) {
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let path = absolute.as_path();
        self.current_clip = Some(path.to_path_buf());
        self.settings.push_recent(path.to_path_buf());
        self.player.send(PlayerCmd::Open(path.to_path_buf()));
        self.player.send(PlayerCmd::Play);
        let root = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        self.ensure_project(&root);
        self.add_clips_to_project(std::slice::from_ref(&absolute));
        self.classify_current();
    }

    /// Adds `paths` to the project (now, or once the project being loaded is open) and saves.
    pub fn add_clips_to_project(&mut self, paths: &[PathBuf]) {
        if self.project_load.is_some() {
            self.pending_clips.extend_from_slice(paths);
            return;
        }
        let Some(project) = self.project.as_mut() else {
            return;
        };
        if let Some(Err(e)) = project.add_clips(paths).into_iter().find(Result::is_err) {
            self.error(e.to_string());
        }
        // Soon rather than now: one snapshot for a burst of additions (a batch's files and
        // the clip opened with it), not one per call.
        self.save_project_soon();
    }

    /// Whether a project is being read (the label panel says "loading project…").
    pub fn project_loading(&self) -> bool {
        self.project_load.is_some()
    }

    /// Stores a prediction of the clip at `path` (`clip`: its index in the project when known);
    /// kept until the project is open while one is loading.
    pub fn record_prediction(&mut self, path: &Path, top_k: &[Ranked], clip: Option<usize>) {
        if self.project_load.is_some() {
            self.pending_predictions
                .push((path.to_path_buf(), top_k.to_vec()));
            return;
        }
        if let Some(project) = self.project.as_mut()
            && let Some(index) = clip.or_else(|| project.clip_index(path))
        {
            match project.set_prediction(index, top_k.to_vec()) {
                Ok(()) => self.save_project_soon(),
                Err(e) => self.error(e.to_string()),
            }
        }
    }

    /// The clip-level prediction of the clip in the player (PaddleVideo's uniform sampling).
    pub fn classify_current(&mut self) {
        if let (Some(path), Some(_)) = (self.current_clip.clone(), self.model()) {
            let (job, _) = self.service.classify(vec![path], self.settings.top_k);
            self.clip_job = Some(job);
        }
    }

    /// Opens (or creates) the labelling project of `root` unless it is the open one (or the
    /// one being opened). The switch never waits: the open project's last snapshot goes to the
    /// saver, and the new one is read on a `kineto-project-load` worker that first waits for the
    /// saver to have written what it was given (switching back to a project whose last snapshot
    /// is still being written reads that snapshot, not the file before it). A project file that
    /// cannot be read is reported and left untouched (a new one is not written over it).
    pub fn ensure_project(&mut self, root: &Path) {
        if self.project.as_ref().is_some_and(|p| p.root == root)
            || self.project_load.as_ref().is_some_and(|l| l.root == root)
        {
            return;
        }
        self.save_project_if_dirty();
        self.project = None;
        // What waited for a load that is given up belonged to that project.
        self.pending_clips.clear();
        self.pending_predictions.clear();
        self.project_generation += 1;
        let generation = self.project_generation;
        let fence = self.saver.fence();
        let loaded_root = root.to_path_buf();
        let spawned = Task::spawn("kineto-project-load", self.repaint.clone(), move |_| {
            let outcome = if fence.wait(LOAD_WAITS_FOR_SAVES) {
                Project::load(&loaded_root)
            } else {
                Err(ProjectError::Invalid {
                    path: loaded_root.join(Project::FILE_NAME),
                    problem: "the previous save of the projects has not finished; not read"
                        .to_string(),
                })
            };
            (generation, loaded_root, outcome)
        });
        // Replacing a load drops its task: its outcome is never read (and the generation
        // check below refuses one that would be).
        self.project_load = match spawned {
            Ok(task) => Some(ProjectLoad {
                root: root.to_path_buf(),
                generation,
                task,
            }),
            Err(e) => {
                self.error(format!(
                    "labelling disabled: cannot start the project load: {e}"
                ));
                None
            }
        };
    }

    /// Opens the project once its load has ended (called every frame): a new project takes
    /// the model's classes; what waited for it is added; an outcome of a load that a later
    /// switch replaced is dropped.
    pub fn poll_project_load(&mut self) {
        let Some(outcome) = self
            .project_load
            .as_ref()
            .and_then(|l| l.task.try_outcome())
        else {
            return;
        };
        let Some(load) = self.project_load.take() else {
            return;
        };
        let (generation, root, loaded) = match outcome {
            Ok(outcome) => outcome,
            Err(panic) => (
                load.generation,
                load.root.clone(),
                Err(ProjectError::Invalid {
                    path: load.root.join(Project::FILE_NAME),
                    problem: format!("the project load failed: {panic}"),
                }),
            ),
        };
        self.apply_project_load(generation, &root, loaded);
    }

    /// Opens a loaded project unless a switch came after its load started (its generation is
    /// not the last): a late outcome is dropped, never applied to the project of another
    /// folder.
    pub fn apply_project_load(
        &mut self,
        generation: u64,
        root: &Path,
        loaded: Result<Option<Project>, ProjectError>,
    ) {
        if generation != self.project_generation || self.project.is_some() {
            return;
        }
        self.project_load = None;
        self.open_loaded_project(root, loaded);
    }

    /// The generation of the last project switch (a load started now would carry it).
    pub fn project_generation(&self) -> u64 {
        self.project_generation
    }

    fn open_loaded_project(&mut self, root: &Path, loaded: Result<Option<Project>, ProjectError>) {
        let pending_clips = std::mem::take(&mut self.pending_clips);
        let pending_predictions = std::mem::take(&mut self.pending_predictions);
        // An existing project keeps its own label set; a new one takes the model's classes.
        let loaded = loaded.map(|existing| {
            existing.unwrap_or_else(|| {
                let labels = self
                    .model()
                    .map(|m| m.labels.as_ref().clone())
                    .unwrap_or_else(crate::labels::kinetics400);
                let name = if labels == crate::labels::kinetics400() {
                    "kinetics400"
                } else {
                    "model"
                };
                Project::new(root, name, labels)
            })
        });
        match loaded {
            Ok(project) => {
                if let Some(first) = project.warnings.first() {
                    let text = format!(
                        "{}: {} part(s) could not be read and were left out (first: {first}); {}",
                        project.path().display(),
                        project.warnings.len() - 1,
                        project.warnings.last().map_or("", String::as_str)
                    );
                    self.error(text);
                }
                self.project = Some(project);
                if !pending_clips.is_empty() {
                    self.add_clips_to_project(&pending_clips);
                }
                if !pending_predictions.is_empty() {
                    self.store_predictions(pending_predictions);
                }
            }
            Err(e) => {
                self.project = None;
                let text = format!("labelling disabled: {e}");
                self.error(text);
            }
        }
    }

    /// Stores predictions made while the project was loading (one pass: no search per clip).
    fn store_predictions(&mut self, predictions: Vec<(PathBuf, Vec<Ranked>)>) {
        let Some(project) = self.project.as_mut() else {
            return;
        };
        let paths: Vec<PathBuf> = predictions.iter().map(|(p, _)| p.clone()).collect();
        let indices = project.add_clips(&paths);
        let mut failed = None;
        for (index, (_, top_k)) in indices.into_iter().zip(predictions) {
            if let Ok(index) = index
                && let Err(e) = project.set_prediction(index, top_k)
            {
                failed.get_or_insert(e.to_string());
            }
        }
        if let Some(e) = failed {
            self.error(e);
        }
        self.save_project_soon();
    }

    /// Hands the project's current state to the saver thread (written atomically) now.
    /// Nothing is written for a project that holds no label a person gave and has no file yet:
    /// opening or classifying a clip leaves no `kineto-project.json` behind.
    pub fn save_project(&mut self) {
        self.project_dirty = false;
        self.project_saved_at = Instant::now();
        if let Some(project) = &self.project {
            let counts = project.counts();
            if counts.accepted + counts.corrected > 0
                || project.has_confirmed_segments()
                || project.path().exists()
            {
                self.saver.save(project.clone());
            }
        }
    }

    /// Saves soon rather than now: a batch stores a prediction per clip, and a snapshot per
    /// prediction of a project of 100,000 clips would be 100,000 copies. At most one snapshot
    /// per [`SAVE_INTERVAL`]; [`Shared::flush_project_if_due`] writes the last one.
    pub fn save_project_soon(&mut self) {
        self.project_dirty = true;
        self.flush_project_if_due();
    }

    /// Writes a project left dirty by [`Shared::save_project_soon`] once it is due (called
    /// every frame).
    pub fn flush_project_if_due(&mut self) {
        if !self.project_dirty {
            return;
        }
        if self.project_saved_at.elapsed() >= SAVE_INTERVAL {
            self.save_project();
        } else {
            self.repaint.notify();
        }
    }

    /// Writes a project left dirty by [`Shared::save_project_soon`] now (before the project
    /// changes or the window closes).
    /// Where the project's saving stands; a change not yet handed to the saver is handed now.
    /// Never waits.
    pub fn project_save_state(&mut self) -> ProjectSaveState {
        self.save_project_if_dirty();
        if !self.saver.flush(Duration::ZERO) {
            return ProjectSaveState::Writing;
        }
        // Everything handed over is written or failed, and reported before that: read the
        // reports now, not next frame.
        self.drain_saver();
        match &self.unsaved_project {
            Some((path, error)) => ProjectSaveState::Failed {
                path: path.clone(),
                error: error.clone(),
            },
            None => ProjectSaveState::Saved,
        }
    }

    /// Hands the open project to the saver again (after a failed write: "Try again").
    pub fn retry_project_save(&mut self) {
        self.unsaved_project = None;
        if let Some(project) = &self.project {
            self.saver.save(project.clone());
        }
    }

    fn save_project_if_dirty(&mut self) {
        if self.project_dirty {
            self.save_project();
        }
    }

    pub fn drain_service(&mut self) -> Vec<ServiceEvent> {
        self.service
            .events()
            .try_iter()
            .take(EVENTS_PER_FRAME)
            .collect()
    }

    pub fn drain_saver(&mut self) {
        let events: Vec<SaveEvent> = self.saver.events().try_iter().take(64).collect();
        for event in events {
            match event {
                SaveEvent::Saved { path, clips } => {
                    if self
                        .unsaved_project
                        .as_ref()
                        .is_some_and(|(p, _)| *p == path)
                    {
                        self.unsaved_project = None;
                    }
                    self.save_status = Some(format!(
                        "saved {} ({clips} clips)",
                        path.file_name()
                            .map(|n| n.to_string_lossy().to_string())
                            .unwrap_or_default()
                    ));
                }
                SaveEvent::Failed { path, error } => {
                    self.save_status = Some("project NOT saved".into());
                    self.error(format!("{}: {error}", path.display()));
                    self.unsaved_project = Some((path, error));
                }
            }
        }
    }

    /// Writes a small demo set (`kineto demo-data`'s generator) under the user's data folder on
    /// a worker thread.
    pub fn make_demo_data(&mut self) {
        if self.demo.is_some() {
            return;
        }
        let dir = directories::ProjectDirs::from("", "", "kineto")
            .map(|d| d.data_dir().join("demo-data"))
            .unwrap_or_else(|| std::env::temp_dir().join("kineto-demo-data"));
        let repaint = self.repaint.clone();
        let progress = repaint.clone();
        let spawned = Task::spawn("kineto-demo-data", repaint, move |_| {
            let options = DemoOptions {
                classes: 4,
                clips_per_class: 6,
                seconds: 3.0,
                seed: 0,
                force: false,
            };
            if dir.join(crate::train::demo::MANIFEST).exists() {
                return Ok(dir);
            }
            generate(&dir, &options, |_, _, _| progress.notify())
                .map(|summary| summary.dir)
                .map_err(|e| e.to_string())
        });
        match spawned {
            Ok(task) => {
                self.demo = Some(task);
                self.toast("writing demo clips…");
            }
            Err(e) => self.error(format!("cannot start the demo-data worker: {e}")),
        }
    }

    /// The demo folder once it is written.
    pub fn demo_ready(&mut self) -> Option<PathBuf> {
        let outcome = self.demo.as_ref()?.try_outcome()?;
        self.demo = None;
        match outcome.and_then(|r| r) {
            Ok(dir) => Some(dir),
            Err(e) => {
                self.error(e);
                None
            }
        }
    }

    pub fn shutdown(&mut self) {
        self.save_project_if_dirty();
        // The one wait for the saver on the UI thread, bounded: the window is closing, and
        // the last snapshot must be on disk before the process ends (the saver's own drop
        // waits for it too, a few seconds at most).
        self.saver.flush(SHUTDOWN_SAVE_WAIT);
        self.service.shutdown(Duration::from_secs(2));
        self.player.shutdown();
    }
}
