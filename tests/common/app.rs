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
