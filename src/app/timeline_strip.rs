//! The strip under the player: per-window top-1 labels over the whole clip (`kineto timeline`'s
//! windows, computed in the background), coloured by label; hover for top-k, click to seek.

use std::path::{Path, PathBuf};

use eframe::egui;

use super::Shared;
use super::player_view::format_time;
use crate::infer::service::TimelineEvent;
use crate::infer::timeline::{TimelineRecord, TimelineWindow};
use crate::progress::CancelToken;
use crate::video::player::PlayerCmd;

#[derive(Default)]
pub struct TimelineStrip {
    job: Option<(u64, CancelToken)>,
    path: Option<PathBuf>,
    windows: Vec<TimelineWindow>,
    total: usize,
    error: Option<String>,
    done: bool,
    record: Option<TimelineRecord>,
}

/// The span of the clip the timeline and the segment track show, in seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TimeView {
    pub start_s: f64,
    pub end_s: f64,
}

impl TimeView {
    /// The whole clip.
    pub fn all(duration_s: f64) -> Self {
        Self {
            start_s: 0.0,
            end_s: duration_s.max(1e-3),
        }
    }

    /// The x of time `t` in `rect` (clamped to its edges).
    pub fn x_of(&self, t: f64, rect: egui::Rect) -> f32 {
        let f = ((t - self.start_s) / (self.end_s - self.start_s)).clamp(0.0, 1.0);
        rect.left() + rect.width() * f as f32
    }

    /// The time at `x` in `rect`.
    pub fn t_of(&self, x: f32, rect: egui::Rect) -> f64 {
        let f = f64::from((x - rect.left()) / rect.width()).clamp(0.0, 1.0);
        self.start_s + f * (self.end_s - self.start_s)
    }
}

/// A stable, distinct colour per label id (golden-ratio hue steps).
pub fn label_color(label_id: usize, dark: bool) -> egui::Color32 {
    let hue = (label_id as f32 * 0.618_034).fract();
    let value = if dark { 0.75 } else { 0.85 };
    egui::ecolor::Hsva::new(hue, 0.55, value, 1.0).into()
}

impl TimelineStrip {
    pub fn start(&mut self, shared: &mut Shared, path: &Path) {
        if let Some((_, cancel)) = self.job.take() {
            cancel.cancel();
        }
        *self = Self {
            path: Some(path.to_path_buf()),
            ..Self::default()
        };
        if shared.model().is_none() {
            return;
        }
        let settings = &shared.settings;
        let (window_s, stride_s, k) = (
            settings.live_window_s,
            settings.timeline_stride_s,
            settings.top_k,
        );
        self.job = Some(
            shared
                .service
                .timeline(path.to_path_buf(), window_s, stride_s, k),
        );
    }

    pub fn finished_windows(&self) -> Option<usize> {
        (self.done && self.error.is_none()).then_some(self.windows.len())
    }

    fn is_current(&self, job: u64) -> bool {
        self.job.as_ref().is_some_and(|(j, _)| *j == job)
    }

    /// Applies a timeline event; a finished timeline of the current clip is also returned,
    /// for the segment track's proposals.
    pub fn on_event(&mut self, event: TimelineEvent) -> Option<&TimelineRecord> {
        match event {
            TimelineEvent::Window {
                job, window, total, ..
            } if self.is_current(job) => {
                self.total = total;
                self.windows.push(window);
            }
            TimelineEvent::Finished { job, result, .. } if self.is_current(job) => {
                self.done = true;
                match result {
                    Ok(record) => {
                        self.total = record.windows.len();
                        self.windows = record.windows.clone();
                        self.record = Some(record);
                        return self.record.as_ref();
                    }
                    Err(error) => self.error = Some(error),
                }
            }
            _ => {}
        }
        None
    }

    /// The finished timeline of the clip in the player.
    pub fn record(&self) -> Option<&TimelineRecord> {
        self.record.as_ref()
    }

    /// The clip's length: the player's, else the timeline's end.
    pub fn duration(&self, shared: &Shared) -> f64 {
        (shared.player.status().duration_s)
            .or_else(|| self.windows.last().map(|w| w.end_s))
            .unwrap_or(0.0)
    }

    /// Draws the strip over `view` (the part of the clip shown, in seconds: all of it, or
    /// what the segment track zoomed to).
    pub fn ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared, view: TimeView) {
        let status = shared.player.status();
        let duration = self.duration(shared);
        ui.horizontal(|ui| {
            ui.label(egui::RichText::new("Timeline").strong());
            if let Some(error) = &self.error {
                ui.colored_label(ui.visuals().error_fg_color, error);
            } else if !self.done && self.path.is_some() {
                ui.spinner();
                ui.weak(format!("{} / {} windows", self.windows.len(), self.total));
            }
        });
        let (rect, response) =
            ui.allocate_exact_size(egui::vec2(ui.available_width(), 26.0), egui::Sense::click());
        let painter = ui.painter_at(rect);
        painter.rect_filled(rect, 2.0, ui.visuals().extreme_bg_color);
        if duration <= 0.0 {
            return;
        }
        let x_of = |t: f64| view.x_of(t, rect);
        let dark = ui.visuals().dark_mode;
        // Each window is drawn over its stride (the part not covered by the next window), so
        // overlapping windows tile the strip.
        for (i, w) in self.windows.iter().enumerate() {
            let end = self
                .windows
                .get(i + 1)
                .map_or(w.end_s, |next| next.start_s.max(w.start_s));
            let Some(top) = w.top_k.first() else {
                continue;
            };
            if end <= view.start_s || w.start_s >= view.end_s {
                continue;
            }
            let r = egui::Rect::from_min_max(
                egui::pos2(x_of(w.start_s), rect.top()),
                egui::pos2(x_of(end).max(x_of(w.start_s) + 1.0), rect.bottom()),
            );
            painter.rect_filled(r, 0.0, label_color(top.label_id, dark));
            if r.width() > 60.0 {
                painter.text(
                    r.left_center() + egui::vec2(3.0, 0.0),
                    egui::Align2::LEFT_CENTER,
                    &top.label,
                    egui::FontId::proportional(11.0),
                    egui::Color32::BLACK,
                );
            }
        }
        let playhead = x_of(status.position_s);
        painter.line_segment(
            [
                egui::pos2(playhead, rect.top()),
                egui::pos2(playhead, rect.bottom()),
            ],
            egui::Stroke::new(2.0, ui.visuals().strong_text_color()),
        );
        if let Some(pos) = response.hover_pos() {
            let t = view.t_of(pos.x, rect);
            let window = self
                .windows
                .iter()
                .rev()
                .find(|w| w.start_s <= t)
                .or(self.windows.first());
            if let Some(w) = window {
                response.clone().on_hover_ui_at_pointer(|ui| {
                    ui.label(format!(
                        "{} – {}",
                        format_time(w.start_s),
                        format_time(w.end_s)
                    ));
                    for r in &w.top_k {
                        ui.label(format!("{}. {}  {:.1}%", r.rank, r.label, r.score * 100.0));
                    }
                });
            }
            if response.clicked() {
                shared.player.send(PlayerCmd::Seek {
                    position_s: t,
                    accurate: true,
                });
            }
        }
    }
}
