//! The video: texture upload of the player's latest frame, transport controls (play/pause,
//! seek bar with time, frame step, speed, volume), keyboard shortcuts, fit/zoom.

use eframe::egui;

use super::Shared;
use crate::video::player::{PlayState, PlayerCmd};

const RATES: &[f64] = &[0.25, 0.5, 1.0, 1.5, 2.0, 4.0];

#[derive(Default)]
pub struct PlayerView {
    texture: Option<egui::TextureHandle>,
    shown_seq: Option<u64>,
    /// Pixel scale; `None` fits the frame to the panel.
    zoom: Option<f32>,
    /// Position the seek bar is being dragged to.
    scrub: Option<f64>,
}

pub fn format_time(seconds: f64) -> String {
    let total_ms = (seconds.max(0.0) * 1000.0).round() as u64;
    let (m, s, ms) = (total_ms / 60_000, (total_ms / 1000) % 60, total_ms % 1000);
    format!("{m}:{s:02}.{:01}", ms / 100)
}

impl PlayerView {
    /// Uploads the player's newest frame when it changed (one upload per new frame).
    pub fn upload_frame(&mut self, ctx: &egui::Context, shared: &Shared) {
        let Some(frame) = shared.player.latest_frame() else {
            return;
        };
        if self.shown_seq == Some(frame.seq) {
            return;
        }
        self.shown_seq = Some(frame.seq);
        let size = [frame.width as usize, frame.height as usize];
        if frame.rgba.len() != size[0] * size[1] * 4 {
            return;
        }
        let image = egui::ColorImage::from_rgba_unmultiplied(size, &frame.rgba);
        match &mut self.texture {
            Some(texture) => texture.set(image, egui::TextureOptions::LINEAR),
            None => {
                self.texture = Some(ctx.load_texture("video", image, egui::TextureOptions::LINEAR));
            }
        }
    }

    pub fn keys(&mut self, ctx: &egui::Context, shared: &mut Shared) {
        let status = shared.player.status();
        let (space, left, right, comma, period, up, down) = ctx.input_mut(|i| {
            let none = egui::Modifiers::NONE;
            (
                i.consume_key(none, egui::Key::Space),
                i.consume_key(none, egui::Key::ArrowLeft),
                i.consume_key(none, egui::Key::ArrowRight),
                i.consume_key(none, egui::Key::Comma),
                i.consume_key(none, egui::Key::Period),
                i.consume_key(none, egui::Key::ArrowUp),
                i.consume_key(none, egui::Key::ArrowDown),
            )
        });
        if space {
            shared.player.send(PlayerCmd::TogglePlay);
        }
        let seek = |delta: f64| {
            let end = status.duration_s.unwrap_or(f64::MAX);
            (status.position_s + delta).clamp(0.0, end)
        };
        if left {
            shared.player.send(PlayerCmd::Seek {
                position_s: seek(-5.0),
                accurate: true,
            });
        }
        if right {
            shared.player.send(PlayerCmd::Seek {
                position_s: seek(5.0),
                accurate: true,
            });
        }
        if comma {
            shared.player.send(PlayerCmd::StepFrame { forward: false });
        }
        if period {
            shared.player.send(PlayerCmd::StepFrame { forward: true });
        }
        if up || down {
            let step = if up { 0.1 } else { -0.1 };
            shared.settings.volume = (shared.settings.volume + step).clamp(0.0, 1.0);
            shared
                .player
                .send(PlayerCmd::SetVolume(shared.settings.volume));
        }
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        egui::Panel::bottom("transport").show(ui, |ui| self.transport_ui(ui, shared));
        egui::CentralPanel::default().show(ui, |ui| self.video_ui(ui, shared));
    }

    fn video_ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        let status = shared.player.status();
        if let Some(error) = &status.error {
            ui.vertical_centered(|ui| {
                ui.add_space(40.0);
                ui.colored_label(ui.visuals().error_fg_color, error);
            });
            return;
        }
        let Some(texture) = &self.texture else {
            ui.centered_and_justified(|ui| {
                ui.spinner();
            });
            return;
        };
        let available = ui.available_size();
        let frame_size = texture.size_vec2();
        let scale = match self.zoom {
            Some(z) => z,
            None => (available.x / frame_size.x)
                .min(available.y / frame_size.y)
                .max(0.01),
        };
        let size = frame_size * scale;
        egui::ScrollArea::both().show(ui, |ui| {
            ui.centered_and_justified(|ui| {
                let response = ui.add(
                    egui::Image::new(texture)
                        .fit_to_exact_size(size)
                        .sense(egui::Sense::click()),
                );
                if response.clicked() {
                    shared.player.send(PlayerCmd::TogglePlay);
                }
            });
        });
    }

    fn transport_ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared) {
        let status = shared.player.status();
        let duration = status.duration_s.unwrap_or(0.0);
        ui.horizontal(|ui| {
            let playing = status.state == PlayState::Playing;
            let label = if playing { "Pause" } else { "Play" };
            if ui.button(label).on_hover_text("Space").clicked() {
                shared.player.send(PlayerCmd::TogglePlay);
            }
            if ui
                .button("< Frame")
                .on_hover_text("Previous frame (,)")
                .clicked()
            {
                shared.player.send(PlayerCmd::StepFrame { forward: false });
            }
            if ui
                .button("Frame >")
                .on_hover_text("Next frame (.)")
                .clicked()
            {
                shared.player.send(PlayerCmd::StepFrame { forward: true });
            }
            let mut position = self.scrub.unwrap_or(status.position_s);
            ui.label(format!(
                "{} / {}",
                format_time(position),
                format_time(duration)
            ));
            let width = (ui.available_width() - 330.0).max(80.0);
            ui.spacing_mut().slider_width = width;
            let slider = ui.add_enabled(
                duration > 0.0,
                egui::Slider::new(&mut position, 0.0..=duration.max(0.001))
                    .show_value(false)
                    .trailing_fill(true),
            );
            if slider.dragged() || slider.changed() {
                self.scrub = Some(position);
                shared.player.send(PlayerCmd::Seek {
                    position_s: position,
                    accurate: false,
                });
            }
            if slider.drag_stopped() || (slider.changed() && !slider.dragged()) {
                shared.player.send(PlayerCmd::Seek {
                    position_s: position,
                    accurate: true,
                });
                self.scrub = None;
            }
            egui::ComboBox::from_id_salt("rate")
                .width(64.0)
                .selected_text(format!("{}×", status.rate))
                .show_ui(ui, |ui| {
                    for &rate in RATES {
                        if ui
                            .selectable_label((status.rate - rate).abs() < 1e-9, format!("{rate}×"))
                            .clicked()
                        {
                            shared.player.send(PlayerCmd::SetRate(rate));
                        }
                    }
                });
            let mut volume = shared.settings.volume;
            let muted = status.muted;
            if ui
                .button(if muted { "Unmute" } else { "Mute" })
                .on_hover_text("Sound on/off")
                .clicked()
            {
                shared.player.send(PlayerCmd::SetMuted(!muted));
            }
            ui.spacing_mut().slider_width = 70.0;
            if ui
                .add(egui::Slider::new(&mut volume, 0.0..=1.0).show_value(false))
                .on_hover_text("Volume (Up/Down arrows)")
                .changed()
            {
                shared.settings.volume = volume;
                shared.player.send(PlayerCmd::SetVolume(volume));
            }
            let fit = self.zoom.is_none();
            if ui.selectable_label(fit, "Fit").clicked() {
                self.zoom = None;
            }
            if ui.selectable_label(self.zoom == Some(1.0), "1:1").clicked() {
                self.zoom = Some(1.0);
            }
        });
        ui.horizontal(|ui| {
            ui.label(egui::RichText::new(state_text(&status)).small().weak());
        });
    }
}

/// The pipeline's state as its bus reported it.
fn state_text(status: &crate::video::player::PlayerStatus) -> String {
    let name = status
        .path
        .as_ref()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let state = match status.state {
        PlayState::Idle => "idle",
        PlayState::Opening => "opening",
        PlayState::Paused => "paused",
        PlayState::Playing => "playing",
        PlayState::Ended => "ended",
        PlayState::Error => "error",
    };
    let mut text = format!("{name} · {state}");
    if let Some(fps) = status.fps {
        text.push_str(&format!(
            " · {}x{} · {fps:.2} fps",
            status.width, status.height
        ));
    }
    if status.has_audio {
        text.push_str(" · audio");
    }
    text
}
