//! Helpers for the window's egui_kittest tests.

use std::time::{Duration, Instant};

use egui_kittest::Harness;
use kineto::app::KinetoApp;

/// Runs frames in real time until `done` holds; panics with `what` after `timeout`.
pub fn run_until(
    harness: &mut Harness<'static, KinetoApp>,
    timeout: Duration,
    what: &str,
    mut done: impl FnMut(&mut Harness<'static, KinetoApp>) -> bool,
) {
    let deadline = Instant::now() + timeout;
    loop {
        harness.step();
        if done(harness) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(30));
    }
}

/// Asks the window to close, as the window manager's close button does.
pub fn request_close(harness: &mut Harness<'static, KinetoApp>) {
    harness
        .input_mut()
        .viewports
        .entry(eframe::egui::ViewportId::ROOT)
        .or_default()
        .events
        .push(eframe::egui::ViewportEvent::Close);
}

/// The commands the app sent to its window in the last frame (close, cancel close...).
pub fn viewport_commands(
    harness: &Harness<'static, KinetoApp>,
) -> Vec<eframe::egui::ViewportCommand> {
    harness
        .output()
        .viewport_output
        .get(&eframe::egui::ViewportId::ROOT)
        .map(|v| v.commands.clone())
        .unwrap_or_default()
}
