//! Labelling: accept the predicted label or pick another (number keys pick among the shown
//! top-k, Enter accepts, `L` opens a searchable picker over the whole label set), clear; custom
//! label sets from a file; exports of the project (list file, CSV, class folders). Every change
//! goes to the project saver at once.

use std::path::{Path, PathBuf};

use eframe::egui;

use super::Shared;
use super::Tab;
use super::batch_panel::{BatchPanel, status_name};
use super::dialogs::ProjectExport;
use crate::labels::export::{FolderMode, export_class_folders_with, export_csv, export_list};
use crate::labels::project::Project;
use crate::labels::read_label_file;
use crate::labels::segment_export::{
    SegmentClipsSummary, SegmentRow, export_activitynet, export_kinetics_csv, export_segment_clips,
    export_segments_csv, project_segment_rows,
};
use crate::progress::{Task, TaskMsg};
use crate::report::Ranked;
use crate::video::cut::CutMode;

/// An export running on its worker: clips done of the total, then a line for the toast.
type ExportTask = Task<Result<String, String>, (usize, usize)>;

#[derive(Default)]
pub struct Labelling {
    picker_open: bool,
    /// The picker labels this segment of the clip in the player, not the clip.
    picker_segment: Option<usize>,
    search: String,
    folder_mode: Option<FolderMode>,
    include_predicted: bool,
    /// Trimmed segment clips are re-encoded (frame-accurate) rather than cut on key frames.
    reencode: bool,
    /// The export in progress (class folders may copy gigabytes) and its last progress.
    exporting: Option<(ExportTask, Option<(usize, usize)>)>,
}

/// The clip being labelled: the one in the player, or the selected row of the batch table.
pub fn target_clip(shared: &Shared, tab: Tab, batch: &BatchPanel) -> Option<PathBuf> {
    match tab {
        Tab::Player => shared.current_clip.clone(),
        Tab::Batch => batch.selected.and_then(|i| batch.files.get(i).cloned()),
        Tab::Train => None,
    }
}

/// `1`-`9`: pick among the shown top-k (of a clip, or of a selected segment).
pub const DIGIT_KEYS: [egui::Key; 9] = [
    egui::Key::Num1,
    egui::Key::Num2,
    egui::Key::Num3,
    egui::Key::Num4,
    egui::Key::Num5,
    egui::Key::Num6,
    egui::Key::Num7,
    egui::Key::Num8,
    egui::Key::Num9,
];

impl Labelling {
    fn clip_index(shared: &Shared, path: &Path) -> Option<usize> {
        shared.project.as_ref()?.clip_index(path)
    }

    fn prediction(shared: &Shared, index: usize) -> Vec<Ranked> {
        shared
            .project
            .as_ref()
            .and_then(|p| p.clips.get(index))
            .and_then(|c| c.prediction.as_ref())
            .map(|p| p.top_k.clone())
            .unwrap_or_default()
    }

    /// Labels clip `index` with the label called `name` (a model class shown in the top-k).
    fn correct_by_name(shared: &mut Shared, index: usize, name: &str) {
        let Some(project) = shared.project.as_mut() else {
            return;
        };
        let Some(id) = project.label_set.labels.iter().position(|l| l == name) else {
            shared.error(format!("'{name}' is not in the project's label set"));
            return;
        };
        Self::correct(shared, index, id);
    }

    fn correct(shared: &mut Shared, index: usize, label_id: usize) {
        let Some(project) = shared.project.as_mut() else {
            return;
        };
        // Picking the predicted top-1 is an acceptance, anything else a correction.
        let predicted_top1 = project
            .clips
            .get(index)
            .and_then(|c| c.prediction.as_ref())
            .and_then(|p| p.top_k.first())
            .map(|t| t.label.clone());
        let name = project.label_set.labels.get(label_id).cloned();
        let outcome = if predicted_top1.is_some() && predicted_top1 == name {
            project.accept(index)
        } else {
            project.correct(index, label_id)
        };
        match outcome {
            Ok(()) => shared.save_project(),
            Err(e) => shared.error(e.to_string()),
        }
    }

    pub fn keys(&mut self, ctx: &egui::Context, shared: &mut Shared, tab: Tab, batch: &BatchPanel) {
        let Some(path) = target_clip(shared, tab, batch) else {
            return;
        };
        let Some(index) = Self::clip_index(shared, &path) else {
            return;
        };
        let (digit, enter, picker) = ctx.input_mut(|i| {
            let mut digit = None;
            for (n, key) in DIGIT_KEYS.iter().enumerate() {
                if i.consume_key(egui::Modifiers::NONE, *key) {
                    digit = Some(n + 1);
                }
            }
            (
                digit,
                i.consume_key(egui::Modifiers::NONE, egui::Key::Enter),
                i.consume_key(egui::Modifiers::NONE, egui::Key::L),
            )
        });
        if let Some(n) = digit {
            let top_k = Self::prediction(shared, index);
            if let Some(r) = top_k.get(n - 1) {
                let name = r.label.clone();
                Self::correct_by_name(shared, index, &name);
            }
        }
        if enter && let Some(project) = shared.project.as_mut() {
            match project.accept(index) {
                Ok(()) => shared.save_project(),
                Err(e) => shared.error(e.to_string()),
            }
        }
        if picker {
            self.open_picker(None);
        }
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared, tab: Tab, batch: &BatchPanel) {
        ui.heading("Label");
        self.export_progress_ui(ui);
        if let Some(load) = &shared.project_load {
            // Labelling waits for the project: a label given now would have nowhere to go.
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("loading project…")
                    .on_hover_text(load.root.join(Project::FILE_NAME).display().to_string());
            });
            return;
        }
        let Some(project) = &shared.project else {
            ui.weak("open a clip or a folder to label it");
            return;
        };
        let counts = project.counts();
        ui.label(
            egui::RichText::new(format!(
                "{} · {} accepted · {} corrected · {} predicted · {} unlabelled",
                project.label_set.name,
                counts.accepted,
                counts.corrected,
                counts.predicted,
                counts.unlabelled
            ))
            .small(),
        );
        let Some(path) = target_clip(shared, tab, batch) else {
            ui.weak("select a clip");
            return;
        };
        let Some(index) = Self::clip_index(shared, &path) else {
            ui.weak("this clip is outside the project folder");
            return;
        };
        let Some(clip) = project.clips.get(index) else {
            return;
        };
        ui.label(egui::RichText::new(&clip.path).monospace());
        ui.horizontal(|ui| {
            ui.label("status:");
            ui.strong(status_name(Some(clip.status)));
            if let Some(label) = &clip.label {
                ui.label(format!("· {label}"));
            }
        });
        let top_k = Self::prediction(shared, index);
        if top_k.is_empty() {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.weak("clip prediction…");
            });
        }
        let mut pick: Option<String> = None;
        for r in &top_k {
            let chosen = clip.label.as_deref() == Some(r.label.as_str());
            let text = format!("{}  {}  {:.1}%", r.rank, r.label, r.score * 100.0);
            if ui
                .selectable_label(chosen, text)
                .on_hover_text(format!("press {}", r.rank))
                .clicked()
            {
                pick = Some(r.label.clone());
            }
        }
        let mut accept = false;
        let mut clear = false;
        ui.horizontal(|ui| {
            accept = ui
                .add_enabled(!top_k.is_empty(), egui::Button::new("Accept"))
                .on_hover_text("Enter")
                .clicked();
            if ui.button("Other label…").on_hover_text("L").clicked() {
                self.open_picker(None);
            }
            clear = ui.button("Clear").clicked();
        });
        if let Some(name) = pick {
            Self::correct_by_name(shared, index, &name);
        }
        if accept && let Some(project) = shared.project.as_mut() {
            match project.accept(index) {
                Ok(()) => shared.save_project(),
                Err(e) => shared.error(e.to_string()),
            }
        }
        if clear && let Some(project) = shared.project.as_mut() {
            match project.clear(index) {
                Ok(()) => shared.save_project(),
                Err(e) => shared.error(e.to_string()),
            }
        }
    }

    fn open_picker(&mut self, segment: Option<usize>) {
        self.picker_open = true;
        self.picker_segment = segment;
        self.search.clear();
    }

    /// Opens the label picker for segment `seg` of the clip in the player.
    pub fn open_picker_for_segment(&mut self, seg: usize) {
        self.open_picker(Some(seg));
    }

    /// The searchable picker over the whole label set. A label picked for a segment is
    /// returned as `(segment, label id)` for the segment track to apply.
    pub fn picker_window_ui(
        &mut self,
        ctx: &egui::Context,
        shared: &mut Shared,
        tab: Tab,
        batch: &BatchPanel,
    ) -> Option<(usize, usize)> {
        if !self.picker_open {
            return None;
        }
        let target = target_clip(shared, tab, batch).and_then(|p| Self::clip_index(shared, &p));
        let labels = shared
            .project
            .as_ref()
            .map(|p| p.label_set.labels.clone())
            .unwrap_or_default();
        let mut open = true;
        let mut chosen = None;
        let title = match self.picker_segment {
            Some(seg) => format!("Pick a label for segment {}", seg + 1),
            None => "Pick a label".to_string(),
        };
        egui::Window::new(title)
            .open(&mut open)
            .default_size([320.0, 420.0])
            .show(ctx, |ui| {
                let search = ui.add(
                    egui::TextEdit::singleline(&mut self.search)
                        .hint_text("search")
                        .desired_width(f32::INFINITY),
                );
                search.request_focus();
                let needle = self.search.to_lowercase();
                let matches: Vec<(usize, &String)> = labels
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| l.to_lowercase().contains(&needle))
                    .collect();
                if search.lost_focus()
                    && ui.input(|i| i.key_pressed(egui::Key::Enter))
                    && let Some((id, _)) = matches.first()
                {
                    chosen = Some(*id);
                }
                egui::ScrollArea::vertical().show(ui, |ui| {
                    for (id, label) in matches {
                        if ui.selectable_label(false, label).clicked() {
                            chosen = Some(id);
                        }
                    }
                });
            });
        let mut for_segment = None;
        if let Some(id) = chosen {
            match (self.picker_segment, target) {
                (Some(seg), _) => for_segment = Some((seg, id)),
                (None, Some(index)) => Self::correct(shared, index, id),
                (None, None) => {}
            }
            open = false;
        }
        self.picker_open = open;
        for_segment
    }

    /// Replaces the project's label set with the one in `path` (refused once a label was
    /// accepted or corrected: its id would mean another class; predictions are dropped).
    pub fn load_label_file(&mut self, shared: &mut Shared, path: &Path) {
        let labels = match read_label_file(path) {
            Ok(labels) => labels,
            Err(e) => return shared.error(e.to_string()),
        };
        if shared.project_loading() {
            return shared
                .error("the project is still loading; load the label set once it is open");
        }
        let Some(project) = shared.project.as_mut() else {
            return shared.error("open a clip or a folder first");
        };
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "custom".into());
        let count = labels.len();
        if let Err(e) = project.replace_label_set(name, labels) {
            return shared.error(e.to_string());
        }
        shared.settings.label_file = Some(path.to_path_buf());
        shared.save_project();
        shared.toast(format!("label set: {count} labels from {}", path.display()));
    }

    pub fn export_menu_ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        let enabled = shared.project.is_some();
        ui.add_enabled_ui(enabled, |ui| {
            ui.checkbox(
                &mut self.include_predicted,
                "Exports include predicted labels",
            );
            if ui.button("Export list file (path label_id)…").clicked() {
                shared.dialogs.export_project(ProjectExport::ListFile);
            }
            if ui.button("Export labels CSV…").clicked() {
                shared.dialogs.export_project(ProjectExport::Csv);
            }
            ui.menu_button("Export segments", |ui| {
                if ui.button("Segments CSV…").clicked() {
                    shared.dialogs.export_project(ProjectExport::SegmentsCsv);
                }
                if ui.button("ActivityNet JSON…").clicked() {
                    shared.dialogs.export_project(ProjectExport::ActivityNet);
                }
                if ui.button("Kinetics CSV…").clicked() {
                    shared.dialogs.export_project(ProjectExport::KineticsCsv);
                }
                if ui.button("Trimmed clips in class folders…").clicked() {
                    shared.dialogs.export_project(ProjectExport::SegmentClips);
                }
                ui.checkbox(
                    &mut self.reencode,
                    "Cut frame-accurately (re-encode; else on key frames)",
                );
            });
            ui.menu_button("Export class folders", |ui| {
                for (mode, name) in [
                    (FolderMode::Copy, "Copy clips…"),
                    (FolderMode::HardLink, "Hard-link clips…"),
                    (FolderMode::SymLink, "Symlink clips…"),
                ] {
                    if ui.button(name).clicked() {
                        self.folder_mode = Some(mode);
                        shared.dialogs.export_project(ProjectExport::ClassFolders);
                    }
                }
            });
        });
    }

    /// Exports a snapshot of the project on a worker (the window goes on; progress and cancel
    /// in the label panel).
    pub fn export(&mut self, shared: &mut Shared, kind: ProjectExport, out: &Path) {
        let Some(project) = shared.project.clone() else {
            return;
        };
        if self.exporting.is_some() {
            shared.error("an export is already running");
            return;
        }
        let include = self.include_predicted;
        let mode = self.folder_mode.unwrap_or(FolderMode::Copy);
        let cut = if self.reencode {
            CutMode::Reencode
        } else {
            CutMode::KeyFrames
        };
        let out = out.to_path_buf();
        let spawned = Task::spawn("kineto-export", shared.repaint.clone(), move |ctx| {
            let rows = || project_segment_rows(&project, include);
            let segments_to = |n: usize| format!("{n} segments written to {}", out.display());
            let outcome = match kind {
                ProjectExport::SegmentsCsv => export_segments_csv(&rows(), &out).map(segments_to),
                ProjectExport::ActivityNet => export_activitynet(&rows(), &out).map(segments_to),
                ProjectExport::KineticsCsv => {
                    export_kinetics_csv(&rows(), &out, "train").map(segments_to)
                }
                ProjectExport::SegmentClips => {
                    let rows = rows();
                    let mut progress = |done, total| ctx.send((done, total));
                    export_segment_clips(&rows, &out, cut, ctx.cancel(), &mut progress)
                        .map(|s| segment_clips_line(&s, &rows, &out))
                }
                ProjectExport::ListFile => export_list(&project, &out, include)
                    .map(|n| format!("{n} clips written to {}", out.display())),
                ProjectExport::Csv => export_csv(&project, &out)
                    .map(|n| format!("{n} clips written to {}", out.display())),
                ProjectExport::ClassFolders => {
                    let mut progress = |done, total| {
                        ctx.send((done, total));
                        !ctx.cancel().is_cancelled()
                    };
                    export_class_folders_with(&project, &out, mode, include, &mut progress).map(
                        |s| {
                            let renamed = match s.renamed.as_slice() {
                                [] => String::new(),
                                names => format!(
                                    "; renamed so that training sees them: {}",
                                    names.join(", ")
                                ),
                            };
                            format!(
                                "{} clips in {} class folders under {}{renamed}",
                                s.clips,
                                s.classes,
                                out.display()
                            )
                        },
                    )
                }
            };
            outcome.map_err(|e| e.to_string())
        });
        match spawned {
            Ok(task) => self.exporting = Some((task, None)),
            Err(e) => shared.error(format!("cannot start the export: {e}")),
        }
    }

    /// Applies the export's messages (called every frame).
    pub fn poll_export(&mut self, shared: &mut Shared) {
        let Some((task, progress)) = self.exporting.as_mut() else {
            return;
        };
        for message in task.drain(64) {
            match message {
                TaskMsg::Progress(p) => *progress = Some(p),
                TaskMsg::Done(outcome) => {
                    self.exporting = None;
                    match outcome.and_then(|r| r) {
                        Ok(text) => shared.toast(text),
                        Err(e) => shared.error(e),
                    }
                    return;
                }
            }
        }
    }

    /// "exporting 120 / 400 clips" with a Cancel button, while an export runs.
    fn export_progress_ui(&mut self, ui: &mut egui::Ui) {
        let Some((task, progress)) = &self.exporting else {
            return;
        };
        ui.horizontal(|ui| {
            ui.spinner();
            match progress {
                Some((done, total)) => ui.label(format!("exporting {done} / {total} clips")),
                None => ui.label("exporting…"),
            };
            if ui.button("Cancel").clicked() {
                task.cancel_token().cancel();
            }
        });
    }
}

/// One line for the toast after a trimmed-clips export: written, kept, failed, and how far
/// key-frame cuts moved.
fn segment_clips_line(s: &SegmentClipsSummary, rows: &[SegmentRow], out: &Path) -> String {
    let existing = s.clips.len() - s.written() - s.failed();
    let mut line = format!(
        "{} segment clips in {} class folders under {}",
        s.written(),
        s.classes,
        out.display()
    );
    if existing > 0 {
        line.push_str(&format!("; {existing} already there, left as they were"));
    }
    if s.failed() > 0 {
        line.push_str(&format!("; {} could not be cut", s.failed()));
    }
    let shift = s.max_shift_s(rows);
    if shift > 0.0005 {
        line.push_str(&format!("; key-frame cuts moved up to {shift:.3} s"));
    }
    line
}
