//! Settings (serde, kept in eframe's storage), the settings window and the status bar.

use std::path::PathBuf;

use eframe::egui;
use serde::{Deserialize, Serialize};

use crate::infer::device::DeviceChoice;
use crate::infer::engine::Precision;
use crate::infer::service::ModelSpec;
use crate::video::live_source::redact;
use crate::weights::DEFAULT_WEIGHTS;

pub const STORAGE_KEY: &str = "kineto.settings";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceSetting {
    Auto,
    Cpu,
    Gpu,
}

impl DeviceSetting {
    pub fn choice(self) -> DeviceChoice {
        match self {
            Self::Auto => DeviceChoice::Auto,
            Self::Cpu => DeviceChoice::Cpu,
            Self::Gpu => DeviceChoice::Gpu,
        }
    }
}

/// The window's precision: the model's own (int8 for a quantized model on the CPU), or one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PrecisionSetting {
    #[default]
    Auto,
    Fp32,
    Int8,
}

impl PrecisionSetting {
    pub fn precision(self) -> Option<Precision> {
        match self {
            Self::Auto => None,
            Self::Fp32 => Some(Precision::Fp32),
            Self::Int8 => Some(Precision::Int8),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Catalog name or weights file.
    pub model: String,
    /// 0 = the checkpoint's own (attention fixes it), else 8.
    pub frames: usize,
    pub device: DeviceSetting,
    /// int8 needs a model made by `kineto quantize` and the CPU.
    pub precision: PrecisionSetting,
    /// 0 = all cores but one.
    pub threads: usize,
    pub top_k: usize,
    /// Live window length in seconds.
    pub live_window_s: f64,
    /// Timeline stride in seconds.
    pub timeline_stride_s: f64,
    /// Custom label set for labelling (None: the model's classes).
    pub label_file: Option<PathBuf>,
    pub recent: Vec<PathBuf>,
    /// Stream URLs opened lately, credentials replaced by `***` (never stored).
    pub recent_streams: Vec<String>,
    pub volume: f64,
    pub offline: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            model: DEFAULT_WEIGHTS.to_string(),
            frames: 0,
            device: DeviceSetting::Auto,
            precision: PrecisionSetting::Auto,
            threads: 0,
            top_k: 5,
            live_window_s: 2.0,
            timeline_stride_s: 1.0,
            label_file: None,
            recent: Vec::new(),
            recent_streams: Vec::new(),
            volume: 0.8,
            offline: false,
        }
    }
}

/// The ranges the settings window offers; restored settings are brought into them.
pub const TOP_K_RANGE: std::ops::RangeInclusive<usize> = 1..=10;
pub const THREADS_RANGE: std::ops::RangeInclusive<usize> = 0..=64;
pub const LIVE_WINDOW_RANGE_S: std::ops::RangeInclusive<f64> = 0.5..=8.0;
pub const STRIDE_RANGE_S: std::ops::RangeInclusive<f64> = 0.25..=4.0;
const MAX_RECENT: usize = 10;

impl Settings {
    /// These settings with every number in the range the settings window offers (a stored
    /// file edited by hand, or from another version, may hold anything: NaN, 0, 10^9).
    pub fn clamped(mut self) -> Self {
        let clamp_f64 = |v: f64, range: &std::ops::RangeInclusive<f64>, default: f64| {
            if v.is_finite() {
                v.clamp(*range.start(), *range.end())
            } else {
                default
            }
        };
        let defaults = Settings::default();
        self.top_k = self.top_k.clamp(*TOP_K_RANGE.start(), *TOP_K_RANGE.end());
        self.threads = self.threads.min(*THREADS_RANGE.end());
        if ![0, 8, 16].contains(&self.frames) {
            self.frames = defaults.frames;
        }
        self.live_window_s = clamp_f64(
            self.live_window_s,
            &LIVE_WINDOW_RANGE_S,
            defaults.live_window_s,
        );
        self.timeline_stride_s = clamp_f64(
            self.timeline_stride_s,
            &STRIDE_RANGE_S,
            defaults.timeline_stride_s,
        );
        self.volume = clamp_f64(self.volume, &(0.0..=1.0), defaults.volume);
        self.recent.truncate(MAX_RECENT);
        // Whatever an older or hand-edited file holds, credentials go.
        for url in &mut self.recent_streams {
            *url = redact(url);
        }
        self.recent_streams.truncate(MAX_RECENT);
        self
    }

    pub fn model_spec(&self) -> ModelSpec {
        ModelSpec {
            weights: self.model.clone(),
            frames: (self.frames > 0).then_some(self.frames),
            device: self.device.choice(),
            threads: self.threads,
            labels: None,
            cache_dir: None,
            offline: self.offline,
            precision: self.precision.precision(),
        }
    }

    /// Remembers `path` first in the recent list (at most 10).
    /// Remembers a stream URL without its credentials (`rtsp://***@host/…`).
    pub fn push_recent_stream(&mut self, url: &str) {
        let url = redact(url);
        self.recent_streams.retain(|u| u != &url);
        self.recent_streams.insert(0, url);
        self.recent_streams.truncate(MAX_RECENT);
    }

    pub fn push_recent(&mut self, path: PathBuf) {
        self.recent.retain(|p| p != &path);
        self.recent.insert(0, path);
        self.recent.truncate(MAX_RECENT);
    }
}

/// Settings given on the command line (`kineto open --weights ...`): they win over the stored
/// ones for this session and are saved like any change made in the window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SettingsOverride {
    pub model: Option<String>,
    pub frames: Option<usize>,
    pub device: Option<DeviceSetting>,
    pub threads: Option<usize>,
    pub offline: Option<bool>,
}

impl SettingsOverride {
    pub fn apply(&self, settings: &mut Settings) {
        if let Some(model) = &self.model {
            settings.model.clone_from(model);
        }
        if let Some(frames) = self.frames {
            settings.frames = frames;
        }
        if let Some(device) = self.device {
            settings.device = device;
        }
        if let Some(threads) = self.threads {
            settings.threads = threads;
        }
        if let Some(offline) = self.offline {
            settings.offline = offline;
        }
    }
}

/// The settings window: edits a draft; "Apply" hands it back.
#[derive(Default)]
pub struct SettingsWindow {
    pub open: bool,
    draft: Option<Settings>,
}

impl SettingsWindow {
    pub fn show(&mut self, current: &Settings) {
        self.draft = Some(current.clone());
        self.open = true;
    }

    /// Draws the window; returns new settings when the user applies them.
    pub fn window_ui(&mut self, ctx: &egui::Context, catalog: &[String]) -> Option<Settings> {
        if !self.open {
            return None;
        }
        let mut applied = None;
        let mut open = self.open;
        let mut close = false;
        egui::Window::new("Settings")
            .open(&mut open)
            .resizable(false)
            .collapsible(false)
            .show(ctx, |ui| {
                let Some(draft) = self.draft.as_mut() else {
                    return;
                };
                egui::Grid::new("settings_grid")
                    .num_columns(2)
                    .spacing([12.0, 6.0])
                    .show(ui, |ui| {
                        ui.label("Model");
                        ui.horizontal(|ui| {
                            ui.add(
                                egui::TextEdit::singleline(&mut draft.model)
                                    .desired_width(260.0)
                                    .hint_text("catalog name or weights file"),
                            );
                            egui::ComboBox::from_id_salt("catalog")
                                .selected_text("Catalog")
                                .show_ui(ui, |ui| {
                                    for name in catalog {
                                        ui.selectable_value(&mut draft.model, name.clone(), name);
                                    }
                                });
                        });
                        ui.end_row();
                        ui.label("Frames");
                        ui.horizontal(|ui| {
                            ui.selectable_value(&mut draft.frames, 0, "Model's");
                            ui.selectable_value(&mut draft.frames, 8, "8");
                            ui.selectable_value(&mut draft.frames, 16, "16");
                        });
                        ui.end_row();
                        ui.label("Device");
                        ui.horizontal(|ui| {
                            ui.selectable_value(&mut draft.device, DeviceSetting::Auto, "Auto");
                            ui.selectable_value(&mut draft.device, DeviceSetting::Cpu, "CPU");
                            ui.selectable_value(&mut draft.device, DeviceSetting::Gpu, "GPU");
                        });
                        ui.end_row();
                        ui.label("Precision").on_hover_text(
                            "int8 runs a model made by `kineto quantize` on the CPU, 1.7-2.2x \
                             as fast (measured), its answers within the figures its file \
                             records; fp32 is exact. Model's: int8 for such a model on the CPU \
                             (fp32 for a file of 8-bit weights and 8-bit inputs on a CPU \
                             without VNNI), else fp32.",
                        );
                        ui.horizontal(|ui| {
                            let p = &mut draft.precision;
                            ui.selectable_value(p, PrecisionSetting::Auto, "Model's");
                            ui.selectable_value(p, PrecisionSetting::Fp32, "fp32");
                            ui.selectable_value(p, PrecisionSetting::Int8, "int8");
                        });
                        ui.end_row();
                        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                        let why = format!(
                            "Inference threads on the CPU. auto = all cores but one ({} of {cores} \
                             here): the remaining core draws the window and decodes the video, so \
                             playback stays smooth while labels update. The command line has no \
                             window and uses all cores.",
                            cores.saturating_sub(1).max(1)
                        );
                        ui.label("Threads").on_hover_text(&why);
                        ui.add(
                            egui::DragValue::new(&mut draft.threads)
                                .range(THREADS_RANGE)
                                .custom_formatter(|v, _| {
                                    if v == 0.0 {
                                        "auto".into()
                                    } else {
                                        format!("{v}")
                                    }
                                }),
                        )
                        .on_hover_text(why);
                        ui.end_row();
                        ui.label("Top-k");
                        ui.add(egui::Slider::new(&mut draft.top_k, TOP_K_RANGE));
                        ui.end_row();
                        ui.label("Live window");
                        ui.add(
                            egui::Slider::new(&mut draft.live_window_s, LIVE_WINDOW_RANGE_S)
                                .suffix(" s"),
                        );
                        ui.end_row();
                        ui.label("Timeline stride");
                        ui.add(
                            egui::Slider::new(&mut draft.timeline_stride_s, STRIDE_RANGE_S)
                                .suffix(" s"),
                        );
                        ui.end_row();
                        ui.label("Offline");
                        ui.checkbox(&mut draft.offline, "never download weights");
                        ui.end_row();
                    });
                ui.separator();
                ui.horizontal(|ui| {
                    if ui.button("Apply").clicked() {
                        applied = Some(draft.clone());
                        close = true;
                    }
                    if ui.button("Cancel").clicked() {
                        close = true;
                    }
                });
            });
        self.open = open && !close;
        applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_urls_are_remembered_without_credentials() {
        let mut settings = Settings::default();
        settings.push_recent_stream("rtsp://admin:hunter2@10.0.0.5:554/live");
        settings.push_recent_stream("http://127.0.0.1:8000/a.mp4");
        settings.push_recent_stream("rtsp://other:pw@10.0.0.5:554/live");
        assert_eq!(
            settings.recent_streams,
            [
                "rtsp://***@10.0.0.5:554/live",
                "http://127.0.0.1:8000/a.mp4"
            ]
        );
        // A file written by hand (or by an older version) loses them on load.
        let restored = Settings {
            recent_streams: vec!["srt://u:p@h:9000".into()],
            ..Settings::default()
        }
        .clamped();
        assert_eq!(restored.recent_streams, ["srt://***@h:9000"]);
    }

    #[test]
    fn restored_settings_are_brought_into_range() {
        let hostile: Settings = serde_json::from_str(
            r#"{"top_k": 0, "threads": 100000, "frames": 7, "live_window_s": 1e300,
                "timeline_stride_s": 1e-9, "volume": -3}"#,
        )
        .unwrap();
        let s = hostile.clamped();
        assert_eq!((s.top_k, s.threads, s.frames), (1, 64, 0));
        assert_eq!(
            (s.live_window_s, s.timeline_stride_s, s.volume),
            (8.0, 0.25, 0.0)
        );
        let nan = Settings {
            live_window_s: f64::NAN,
            ..Settings::default()
        };
        assert_eq!(
            nan.clamped().live_window_s,
            Settings::default().live_window_s
        );
        assert_eq!(Settings::default().clamped(), Settings::default());
    }
}
