//! File dialogs without blocking the UI: rfd runs in a [`Task`] (a short-lived named thread)
//! and its answer comes back through a channel. Tests script the answers instead.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender, unbounded};

use crate::progress::{Notify, Task, lock};

/// Export formats of batch results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResultsFormat {
    Csv,
    Json,
}

/// Exports of the labelling project.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProjectExport {
    ListFile,
    Csv,
    ClassFolders,
    /// Segments: `path,start_s,end_s,label_id,label,score`.
    SegmentsCsv,
    /// Segments as ActivityNet-style JSON.
    ActivityNet,
    /// Segments as a Kinetics-style CSV.
    KineticsCsv,
    /// Segments cut into trimmed clips in class folders.
    SegmentClips,
}

/// Why a dialog was opened: decides what its answer does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Open,
    ImportWeights,
    LabelFile,
    ExportResults(ResultsFormat),
    ExportProject(ProjectExport),
    /// The Train tab's data folder.
    TrainData,
    /// A weights file to write (the Train tab's export).
    ExportWeights,
}

#[derive(Debug)]
pub struct Picked {
    pub purpose: Purpose,
    pub paths: Vec<PathBuf>,
}

/// Where answers come from.
#[derive(Clone, Debug, Default)]
pub enum DialogBackend {
    /// The platform's dialogs (rfd: xdg-desktop-portal or zenity).
    #[default]
    Native,
    /// Answers taken in order, one per dialog (tests); an empty queue answers "cancelled".
    Scripted(Arc<Mutex<VecDeque<Vec<PathBuf>>>>),
}

impl DialogBackend {
    pub fn scripted(answers: Vec<Vec<PathBuf>>) -> Self {
        Self::Scripted(Arc::new(Mutex::new(answers.into())))
    }

    /// Adds an answer for the next dialog (tests).
    pub fn push_answer(&self, paths: Vec<PathBuf>) {
        if let Self::Scripted(queue) = self {
            lock(queue).push_back(paths);
        }
    }
}

enum Kind {
    PickFiles,
    PickFolder,
    Save(&'static str),
}

pub struct Dialogs {
    backend: DialogBackend,
    tx: Sender<Picked>,
    rx: Receiver<Picked>,
    notify: Notify,
    /// One dialog at a time.
    open: bool,
    /// The native dialog's thread while it is open.
    native: Option<Task<()>>,
}

const VIDEO_EXTENSIONS: &[&str] = &[
    "mp4", "m4v", "mov", "avi", "mkv", "webm", "mpg", "mpeg", "wmv", "flv", "3gp", "ts",
];

impl Dialogs {
    pub fn new(backend: DialogBackend, notify: Notify) -> Self {
        let (tx, rx) = unbounded();
        Self {
            backend,
            tx,
            rx,
            notify,
            open: false,
            native: None,
        }
    }

    pub fn open_media(&mut self) {
        self.ask(Purpose::Open, Kind::PickFiles);
    }

    pub fn open_folder(&mut self) {
        self.ask(Purpose::Open, Kind::PickFolder);
    }

    pub fn import_weights(&mut self) {
        self.ask(Purpose::ImportWeights, Kind::PickFiles);
    }

    pub fn label_file(&mut self) {
        self.ask(Purpose::LabelFile, Kind::PickFiles);
    }

    /// A folder of class folders for training.
    pub fn train_data(&mut self) {
        self.ask(Purpose::TrainData, Kind::PickFolder);
    }

    /// A weights file to write.
    pub fn save_weights(&mut self, name: &'static str) {
        self.ask(Purpose::ExportWeights, Kind::Save(name));
    }

    /// The backend, for a panel that keeps its own [`Dialogs`].
    pub fn backend(&self) -> DialogBackend {
        self.backend.clone()
    }

    pub fn export_results(&mut self, format: ResultsFormat) {
        let name = match format {
            ResultsFormat::Csv => "kineto-results.csv",
            ResultsFormat::Json => "kineto-results.json",
        };
        self.ask(Purpose::ExportResults(format), Kind::Save(name));
    }

    pub fn export_project(&mut self, kind: ProjectExport) {
        match kind {
            ProjectExport::ListFile => {
                self.ask(Purpose::ExportProject(kind), Kind::Save("train_list.txt"))
            }
            ProjectExport::Csv => self.ask(Purpose::ExportProject(kind), Kind::Save("labels.csv")),
            ProjectExport::ClassFolders | ProjectExport::SegmentClips => {
                self.ask(Purpose::ExportProject(kind), Kind::PickFolder)
            }
            ProjectExport::SegmentsCsv => {
                self.ask(Purpose::ExportProject(kind), Kind::Save("segments.csv"))
            }
            ProjectExport::ActivityNet => {
                self.ask(Purpose::ExportProject(kind), Kind::Save("activitynet.json"))
            }
            ProjectExport::KineticsCsv => {
                self.ask(Purpose::ExportProject(kind), Kind::Save("kinetics.csv"))
            }
        }
    }

    /// Answers that arrived since the last frame.
    pub fn poll(&mut self) -> Vec<Picked> {
        let picked: Vec<Picked> = self.rx.try_iter().collect();
        if !picked.is_empty() {
            self.open = false;
            self.native = None;
        }
        // A dialog whose thread died answers nothing; the next one may open.
        if let Some(Err(_)) = self.native.as_ref().and_then(Task::try_outcome) {
            self.open = false;
            self.native = None;
        }
        picked
    }

    fn ask(&mut self, purpose: Purpose, kind: Kind) {
        if self.open {
            return;
        }
        match &self.backend {
            DialogBackend::Scripted(queue) => {
                let paths = lock(queue).pop_front().unwrap_or_default();
                let _ = self.tx.send(Picked { purpose, paths });
                self.open = true;
                self.notify.notify();
            }
            DialogBackend::Native => {
                let tx = self.tx.clone();
                let spawned = Task::spawn("kineto-dialog", self.notify.clone(), move |_| {
                    let paths = native_dialog(purpose, kind);
                    let _ = tx.send(Picked { purpose, paths });
                });
                self.open = spawned.is_ok();
                self.native = spawned.ok();
            }
        }
    }
}

fn native_dialog(purpose: Purpose, kind: Kind) -> Vec<PathBuf> {
    let dialog = rfd::FileDialog::new();
    let dialog = match purpose {
        Purpose::Open => dialog.add_filter("Videos", VIDEO_EXTENSIONS),
        Purpose::ImportWeights | Purpose::ExportWeights => {
            dialog.add_filter("Weights", &["pdparams", "safetensors"])
        }
        Purpose::LabelFile => dialog.add_filter("Label lists", &["txt", "csv"]),
        Purpose::ExportResults(ResultsFormat::Csv)
        | Purpose::ExportProject(
            ProjectExport::Csv | ProjectExport::SegmentsCsv | ProjectExport::KineticsCsv,
        ) => dialog.add_filter("CSV", &["csv"]),
        Purpose::ExportResults(ResultsFormat::Json)
        | Purpose::ExportProject(ProjectExport::ActivityNet) => {
            dialog.add_filter("JSON", &["json"])
        }
        Purpose::ExportProject(_) | Purpose::TrainData => dialog,
    };
    match kind {
        Kind::PickFiles => dialog.pick_files().unwrap_or_default(),
        Kind::PickFolder => dialog.pick_folder().into_iter().collect(),
        Kind::Save(name) => dialog.set_file_name(name).save_file().into_iter().collect(),
    }
}
