//! Batch classification: a queue of files with overall and per-file progress, cancel, a
//! sortable and filterable results table, double-click to play, CSV/JSON export in the same
//! shapes as `kineto classify`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use eframe::egui;

use super::Shared;
use super::dialogs::ResultsFormat;
use crate::checkpoint::write_file_atomic;
use crate::infer::batch::expand_inputs;
use crate::infer::service::BatchEvent;
use crate::labels::project::ClipStatus;
use crate::progress::{CancelToken, Task};
use crate::report::{ClassifyRecord, classify_csv, classify_json};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    File,
    Label,
    Score,
    Status,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StatusFilter {
    #[default]
    All,
    Errors,
    Unlabelled,
    Predicted,
    Accepted,
    Corrected,
}

pub struct BatchPanel {
    /// The folder walk of a batch being started (the dropped paths; the files found).
    finding: Option<(Vec<PathBuf>, Task<Vec<PathBuf>>)>,
    job: Option<(u64, CancelToken)>,
    pub files: Vec<PathBuf>,
    pub records: Vec<Option<ClassifyRecord>>,
    started: Option<Instant>,
    finished: Option<Instant>,
    cancelled: bool,
    sort: (SortKey, bool),
    filter: String,
    status_filter: StatusFilter,
    /// Index into `files` of the selected row.
    pub selected: Option<usize>,
    /// Each file's clip index in the project of `project_root` (computed once: the table is
    /// redrawn every frame and must stay cheap for thousands of rows).
    project_clips: Vec<Option<usize>>,
    project_root: Option<PathBuf>,
    open_request: Option<PathBuf>,
}

impl Default for BatchPanel {
    fn default() -> Self {
        Self {
            finding: None,
            job: None,
            files: Vec::new(),
            records: Vec::new(),
            started: None,
            finished: None,
            cancelled: false,
            sort: (SortKey::File, true),
            filter: String::new(),
            status_filter: StatusFilter::All,
            selected: None,
            project_clips: Vec::new(),
            project_root: None,
            open_request: None,
        }
    }
}

/// The folder a batch's project lives in: the dropped folder, else the files' common parent.
fn project_root(inputs: &[PathBuf]) -> PathBuf {
    if let [single] = inputs
        && single.is_dir()
    {
        return single.clone();
    }
    let mut parents = inputs.iter().map(|p| {
        if p.is_dir() {
            p.clone()
        } else {
            p.parent().map(Path::to_path_buf).unwrap_or_default()
        }
    });
    let Some(mut common) = parents.next() else {
        return PathBuf::from(".");
    };
    for parent in parents {
        while !parent.starts_with(&common) {
            if !common.pop() {
                return PathBuf::from("/");
            }
        }
    }
    common
}

impl BatchPanel {
    pub fn is_running(&self) -> bool {
        self.job.is_some() && self.finished.is_none()
    }

    /// Queues every video under `inputs` (recursive, sorted): folders are walked on a worker,
    /// then [`BatchPanel::poll`] starts the batch.
    pub fn start(&mut self, shared: &mut Shared, inputs: Vec<PathBuf>) {
        let walked = inputs.clone();
        let spawned = Task::spawn("kineto-batch-walk", shared.repaint.clone(), move |ctx| {
            expand_inputs(&walked, Some(ctx.cancel()))
        });
        match spawned {
            // A walk still running is cancelled by dropping its task.
            Ok(task) => self.finding = Some((inputs, task)),
            Err(e) => shared.error(format!("cannot start the folder walk: {e}")),
        }
    }

    /// Whether a folder walk is running (the panel shows "finding videos…").
    pub fn is_finding(&self) -> bool {
        self.finding.is_some()
    }

    /// Starts the batch once its folder walk has ended.
    pub fn poll(&mut self, shared: &mut Shared) {
        self.attach_project(shared);
        let Some(outcome) = self.finding.as_ref().and_then(|(_, t)| t.try_outcome()) else {
            return;
        };
        let Some((inputs, task)) = self.finding.take() else {
            return;
        };
        match outcome {
            Ok(_) if task.cancel_token().is_cancelled() => {}
            Ok(files) if files.is_empty() => shared.error("no video files in what was dropped"),
            Ok(files) => self.begin(shared, &inputs, files),
            Err(e) => shared.error(format!("the folder walk failed: {e}")),
        }
    }

    fn begin(&mut self, shared: &mut Shared, inputs: &[PathBuf], files: Vec<PathBuf>) {
        if let Some((_, cancel)) = self.job.take() {
            cancel.cancel();
        }
        let root = project_root(inputs);
        shared.ensure_project(&root);
        self.project_clips = Vec::new();
        // The files join the project now if it is open, else once it is (`poll`).
        self.project_root = Some(root);
        let k = shared.settings.top_k;
        self.job = Some(shared.service.classify(files.clone(), k));
        self.records = vec![None; files.len()];
        self.files = files;
        self.started = Some(Instant::now());
        self.finished = None;
        self.cancelled = false;
        self.selected = None;
        self.attach_project(shared);
    }

    /// Finds the batch's files in its project (adding them) once that project is open: each
    /// file's clip index, computed once in one pass.
    fn attach_project(&mut self, shared: &mut Shared) {
        if !self.project_clips.is_empty() || self.files.is_empty() {
            return;
        }
        let Some(project) = shared.project.as_mut() else {
            return;
        };
        if self.project_root.as_ref() != Some(&project.root) {
            return;
        }
        self.project_clips = project
            .add_clips(&self.files)
            .into_iter()
            .map(Result::ok)
            .collect();
        // Soon, not now: the snapshot of a project of 100,000 clips is a copy of them all,
        // and this frame already added them.
        shared.save_project_soon();
    }

    pub fn cancel(&mut self) {
        if let Some((_, task)) = &self.finding {
            task.cancel_token().cancel();
        }
        if let Some((_, cancel)) = &self.job {
            cancel.cancel();
        }
    }

    pub fn take_open_request(&mut self) -> Option<PathBuf> {
        self.open_request.take()
    }

    pub fn on_event(&mut self, shared: &mut Shared, event: BatchEvent) {
        let job = match &event {
            BatchEvent::Started { job, .. }
            | BatchEvent::Record { job, .. }
            | BatchEvent::Finished { job, .. } => *job,
        };
        if Some(job) == shared.clip_job {
            if let BatchEvent::Record { record, .. } = event {
                record_prediction(shared, &record, None);
            }
            return;
        }
        if self.job.as_ref().is_none_or(|(j, _)| *j != job) {
            return;
        }
        match event {
            BatchEvent::Started { .. } => {}
            BatchEvent::Record { index, record, .. } => {
                let clip = (self.project_root.as_ref())
                    .filter(|root| shared.project.as_ref().is_some_and(|p| &p.root == *root))
                    .and_then(|_| self.project_clips.get(index).copied().flatten());
                record_prediction(shared, &record, clip);
                if let Some(slot) = self.records.get_mut(index) {
                    *slot = Some(record);
                }
            }
            BatchEvent::Finished { cancelled, .. } => {
                self.finished = Some(Instant::now());
                self.cancelled = cancelled;
            }
        }
    }

    fn done(&self) -> usize {
        self.records.iter().filter(|r| r.is_some()).count()
    }

    pub fn export_menu_ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        let any = self.done() > 0;
        if ui
            .add_enabled(any, egui::Button::new("Export results CSV…"))
            .clicked()
        {
            shared.dialogs.export_results(ResultsFormat::Csv);
        }
        if ui
            .add_enabled(any, egui::Button::new("Export results JSON…"))
            .clicked()
        {
            shared.dialogs.export_results(ResultsFormat::Json);
        }
    }

    /// Writes the finished rows (in input order) as `kineto classify` would.
    pub fn export(&mut self, shared: &mut Shared, format: ResultsFormat, path: &Path) {
        let records: Vec<ClassifyRecord> = self.records.iter().flatten().cloned().collect();
        let text = match format {
            ResultsFormat::Csv => classify_csv(&records),
            ResultsFormat::Json => classify_json(&records),
        };
        match write_file_atomic(path, text.as_bytes()) {
            Ok(()) => shared.toast(format!(
                "exported {} rows to {}",
                records.len(),
                path.display()
            )),
            Err(e) => shared.error(format!("{}: cannot write: {e}", path.display())),
        }
    }

    fn status_of(&self, shared: &Shared, i: usize) -> Option<ClipStatus> {
        let project = shared.project.as_ref()?;
        if self.project_root.as_ref() != Some(&project.root) {
            return None;
        }
        let index = (*self.project_clips.get(i)?)?;
        project.clips.get(index).map(|c| c.status)
    }

    fn visible_rows(&self, shared: &Shared) -> Vec<usize> {
        // The usual view (no filter, by file name) needs no work per row: the files are in
        // sorted order already. A batch of 100,000 files redraws every frame.
        if self.filter.is_empty()
            && self.status_filter == StatusFilter::All
            && self.sort == (SortKey::File, true)
        {
            return (0..self.files.len()).collect();
        }
        let needle = self.filter.to_lowercase();
        let mut rows: Vec<usize> = (0..self.files.len())
            .filter(|&i| {
                let record = self.records[i].as_ref();
                let text_ok = needle.is_empty()
                    || self.files[i]
                        .display()
                        .to_string()
                        .to_lowercase()
                        .contains(&needle)
                    || record.is_some_and(|r| {
                        r.top_k
                            .first()
                            .is_some_and(|t| t.label.to_lowercase().contains(&needle))
                    });
                let status = self.status_of(shared, i);
                let status_ok = match self.status_filter {
                    StatusFilter::All => true,
                    StatusFilter::Errors => record.is_some_and(|r| !r.is_ok()),
                    StatusFilter::Unlabelled => {
                        matches!(status, None | Some(ClipStatus::Unlabelled))
                    }
                    StatusFilter::Predicted => status == Some(ClipStatus::Predicted),
                    StatusFilter::Accepted => status == Some(ClipStatus::Accepted),
                    StatusFilter::Corrected => status == Some(ClipStatus::Corrected),
                };
                text_ok && status_ok
            })
            .collect();
        let (key, ascending) = self.sort;
        let top1 = |i: usize| self.records[i].as_ref().and_then(|r| r.top_k.first());
        rows.sort_by(|&a, &b| {
            let order = match key {
                SortKey::File => self.files[a].cmp(&self.files[b]),
                SortKey::Label => top1(a).map(|t| &t.label).cmp(&top1(b).map(|t| &t.label)),
                SortKey::Score => top1(a)
                    .map(|t| t.score)
                    .partial_cmp(&top1(b).map(|t| t.score))
                    .unwrap_or(std::cmp::Ordering::Equal),
                SortKey::Status => self.records[a]
                    .as_ref()
                    .map(|r| r.status)
                    .cmp(&self.records[b].as_ref().map(|r| r.status)),
            };
            if ascending { order } else { order.reverse() }
        });
        rows
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared, _tab: &mut super::Tab) {
        if self.finding.is_some() {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("finding videos…");
                if ui.button("Cancel").clicked() {
                    self.cancel();
                }
            });
        }
        if self.files.is_empty() {
            ui.vertical_centered(|ui| {
                ui.add_space(60.0);
                ui.heading("Drop files or folders here to classify them");
                if ui.button("Open folder…").clicked() {
                    shared.dialogs.open_folder();
                }
            });
            return;
        }
        self.progress_ui(ui);
        ui.horizontal(|ui| {
            ui.label("Filter");
            ui.add(
                egui::TextEdit::singleline(&mut self.filter)
                    .hint_text("file or label")
                    .desired_width(180.0),
            );
            for (filter, name) in [
                (StatusFilter::All, "All"),
                (StatusFilter::Errors, "Errors"),
                (StatusFilter::Unlabelled, "Unlabelled"),
                (StatusFilter::Predicted, "Predicted"),
                (StatusFilter::Accepted, "Accepted"),
                (StatusFilter::Corrected, "Corrected"),
            ] {
                ui.selectable_value(&mut self.status_filter, filter, name);
            }
            ui.separator();
            if ui.button("Export CSV…").clicked() {
                shared.dialogs.export_results(ResultsFormat::Csv);
            }
            if ui.button("Export JSON…").clicked() {
                shared.dialogs.export_results(ResultsFormat::Json);
            }
        });
        ui.separator();
        self.table_ui(ui, shared);
    }

    fn progress_ui(&mut self, ui: &mut egui::Ui) {
        let total = self.files.len();
        let done = self.done();
        let failed = self.records.iter().flatten().filter(|r| !r.is_ok()).count();
        ui.horizontal(|ui| {
            let elapsed = match (self.started, self.finished) {
                (Some(s), Some(f)) => f.duration_since(s).as_secs_f64(),
                (Some(s), None) => s.elapsed().as_secs_f64(),
                _ => 0.0,
            };
            let rate = done as f64 / elapsed.max(1e-3);
            let eta = if done > 0 && done < total {
                format!(" · ETA {:.0} s", (total - done) as f64 / rate)
            } else {
                String::new()
            };
            let text = format!(
                "{done} / {total} clips · {failed} errors · {rate:.2} clips/s{eta}{}",
                if self.cancelled { " · cancelled" } else { "" }
            );
            ui.add(
                egui::ProgressBar::new(done as f32 / total.max(1) as f32)
                    .desired_width((ui.available_width() - 90.0).max(100.0))
                    .text(text),
            );
            if self.is_running() {
                if ui.button("Cancel").clicked() {
                    self.cancel();
                }
                ui.ctx()
                    .request_repaint_after(std::time::Duration::from_millis(500));
            }
        });
    }

    fn header_ui(&mut self, ui: &mut egui::Ui, key: SortKey, name: &str, width: f32) {
        let arrow = match self.sort {
            (k, true) if k == key => " ^",
            (k, false) if k == key => " v",
            _ => "",
        };
        if ui
            .add_sized(
                [width, 18.0],
                egui::Button::new(egui::RichText::new(format!("{name}{arrow}")).strong())
                    .frame(false),
            )
            .clicked()
        {
            self.sort = if self.sort.0 == key {
                (key, !self.sort.1)
            } else {
                (key, true)
            };
        }
    }

    fn table_ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        let widths = [260.0, 170.0, 60.0, 90.0];
        ui.horizontal(|ui| {
            self.header_ui(ui, SortKey::File, "File", widths[0]);
            self.header_ui(ui, SortKey::Label, "Top-1", widths[1]);
            self.header_ui(ui, SortKey::Score, "Score", widths[2]);
            self.header_ui(ui, SortKey::Status, "Status", widths[3]);
            ui.label(egui::RichText::new("Top-5 / error").strong());
        });
        let rows = self.visible_rows(shared);
        let row_height = 20.0;
        let running_index = if self.is_running() {
            self.records.iter().position(Option::is_none)
        } else {
            None
        };
        egui::ScrollArea::vertical()
            .auto_shrink([false, false])
            .show_rows(ui, row_height, rows.len(), |ui, range| {
                for &i in &rows[range] {
                    let path = &self.files[i];
                    let name = path
                        .file_name()
                        .map(|n| n.to_string_lossy().to_string())
                        .unwrap_or_else(|| path.display().to_string());
                    let record = self.records[i].as_ref();
                    let status = self.status_of(shared, i);
                    let selected = self.selected == Some(i);
                    let row = ui.horizontal(|ui| {
                        let file = ui
                            .add_sized(
                                [widths[0], row_height],
                                egui::Button::selectable(selected, name).truncate(),
                            )
                            .on_hover_text(path.display().to_string());
                        if file.clicked() {
                            self.selected = Some(i);
                        }
                        if file.double_clicked() {
                            self.open_request = Some(path.clone());
                        }
                        match record {
                            None if running_index == Some(i) => {
                                ui.add_sized(
                                    [widths[1], row_height],
                                    egui::ProgressBar::new(0.5).animate(true).text("running"),
                                );
                            }
                            None => {
                                ui.add_sized([widths[1], row_height], egui::Label::new("queued"));
                            }
                            Some(r) if !r.is_ok() => {
                                ui.colored_label(
                                    ui.visuals().error_fg_color,
                                    format!("ERROR {}", r.error.as_deref().unwrap_or("")),
                                );
                            }
                            Some(r) => {
                                let top = r.top_k.first();
                                ui.add_sized(
                                    [widths[1], row_height],
                                    egui::Label::new(top.map_or("", |t| t.label.as_str()))
                                        .truncate(),
                                );
                                ui.add_sized(
                                    [widths[2], row_height],
                                    egui::Label::new(
                                        top.map_or(String::new(), |t| format!("{:.3}", t.score)),
                                    ),
                                );
                                ui.add_sized(
                                    [widths[3], row_height],
                                    egui::Label::new(status_name(status)),
                                );
                                ui.add(
                                    egui::Label::new(crate::report::top_k_cell(&r.top_k))
                                        .truncate(),
                                );
                            }
                        }
                    });
                    if selected {
                        ui.painter().rect_stroke(
                            row.response.rect,
                            2.0,
                            ui.visuals().selection.stroke,
                            egui::StrokeKind::Inside,
                        );
                    }
                }
            });
    }
}

pub fn status_name(status: Option<ClipStatus>) -> &'static str {
    match status {
        None | Some(ClipStatus::Unlabelled) => "unlabelled",
        Some(ClipStatus::Predicted) => "predicted",
        Some(ClipStatus::Accepted) => "accepted",
        Some(ClipStatus::Corrected) => "corrected",
    }
}

/// Stores a clip's prediction in the project (and saves it); `clip` is its index in the
/// project when known (a batch knows it: no search per record).
fn record_prediction(shared: &mut Shared, record: &ClassifyRecord, clip: Option<usize>) {
    if record.is_ok() {
        shared.record_prediction(Path::new(&record.path), &record.top_k, clip);
    }
}
