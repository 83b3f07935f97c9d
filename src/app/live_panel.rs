//! Live labels: posts a request whenever the playhead reaches a new grid point (or after a
//! seek), shows the newest result's top-k as score bars with its age and window.

use std::time::Instant;

use eframe::egui;

use super::Shared;
use super::player_view::format_time;
use crate::infer::live::{LiveRequest, LiveResult, window_grid};
use crate::video::player::{LiveGrid, PlayState};

#[derive(Default)]
pub struct LivePanel {
    result: Option<LiveResult>,
    error: Option<String>,
    /// (generation, last grid point, window length bits) of the last request.
    requested: Option<(u64, u64, u64)>,
    grid_step: Option<f64>,
}

impl LivePanel {
    pub fn reset(&mut self) {
        self.result = None;
        self.error = None;
        self.requested = None;
        self.grid_step = None;
    }

    pub fn top1(&self) -> Option<String> {
        self.result
            .as_ref()
            .and_then(|r| r.top_k.first())
            .map(|t| t.label.clone())
    }

    pub fn last_infer_ms(&self) -> Option<f64> {
        self.result.as_ref().map(|r| r.infer_ms)
    }

    pub fn on_result(&mut self, shared: &Shared, result: LiveResult) {
        // Results for another clip are stale; those of an older generation of the same clip
        // (before a seek) are still right for their window, so they are kept until replaced.
        if shared.current_clip.as_deref() == Some(result.path.as_path()) {
            self.error = None;
            self.result = Some(result);
        }
    }

    pub fn on_error(&mut self, generation: u64, error: String) {
        if self.requested.is_some_and(|(g, _, _)| g == generation) {
            self.error = Some(error);
        }
    }

    /// Posts a live request when the window moved to a new grid point.
    pub fn request(&mut self, shared: &mut Shared, now: Instant) {
        let (Some(path), Some(model)) = (shared.current_clip.clone(), shared.model()) else {
            return;
        };
        let num_seg = model.num_seg;
        let window_s = shared.settings.live_window_s;
        let step = window_s / num_seg as f64;
        if self.grid_step != Some(step) {
            shared
                .player
                .send(crate::video::player::PlayerCmd::SetLiveGrid(Some(
                    LiveGrid { step_s: step },
                )));
            self.grid_step = Some(step);
            self.requested = None;
        }
        let status = shared.player.status();
        if !matches!(
            status.state,
            PlayState::Playing | PlayState::Paused | PlayState::Ended
        ) || status.path.as_deref() != Some(path.as_path())
        {
            return;
        }
        let duration = status.duration_s.unwrap_or(0.0);
        let grid = window_grid(status.position_s, window_s, num_seg, duration);
        let last = grid.last().copied().unwrap_or(0);
        let key = (status.generation, last, window_s.to_bits());
        if self.requested == Some(key) {
            return;
        }
        self.requested = Some(key);
        shared.service.request_live(LiveRequest {
            generation: status.generation,
            path,
            window_end_s: status.position_s,
            window_s,
            ring: Some(shared.player.frame_ring()),
            requested_at: now,
        });
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        ui.heading("Live labels");
        let window_s = shared.settings.live_window_s;
        ui.horizontal(|ui| {
            ui.label("window");
            let mut w = window_s;
            if ui
                .add(
                    egui::DragValue::new(&mut w)
                        .range(0.5..=8.0)
                        .speed(0.1)
                        .suffix(" s"),
                )
                .changed()
            {
                shared.settings.live_window_s = w;
            }
        });
        if shared.model().is_none() {
            ui.weak("waiting for the model…");
            return;
        }
        if let Some(error) = &self.error {
            ui.colored_label(ui.visuals().error_fg_color, error);
        }
        let Some(result) = &self.result else {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.weak("first prediction…");
            });
            return;
        };
        let position = shared.player.status().position_s;
        // Stale: the playhead has moved more than one timeline stride past the window.
        let lag_s = (position - result.window_end_s).abs();
        let stale = lag_s > shared.settings.timeline_stride_s.max(0.25);
        ui.add_enabled_ui(!stale, |ui| {
            for ranked in &result.top_k {
                ui.horizontal(|ui| {
                    ui.label(format!("{}", ranked.rank));
                    ui.add(
                        egui::ProgressBar::new(ranked.score)
                            .desired_width(ui.available_width())
                            .text(format!("{}  {:.1}%", ranked.label, ranked.score * 100.0)),
                    );
                });
            }
        });
        let age = result.finished_at.elapsed().as_secs_f64();
        ui.label(
            egui::RichText::new(format!(
                "window {}–{} · {:.0} ms · {} · updated {age:.1} s ago",
                format_time(result.window_start_s),
                format_time(result.window_end_s),
                result.latency_ms,
                if stale { "stale" } else { "fresh" },
            ))
            .small()
            .weak(),
        );
        ui.ctx()
            .request_repaint_after(std::time::Duration::from_millis(250));
    }
}
