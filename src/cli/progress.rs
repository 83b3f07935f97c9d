//! Progress on stderr: a bar with rate and ETA when stderr is a terminal, plain lines otherwise
//! (so logs stay readable), nothing with `--quiet`.

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
    plain: bool,
    total: u64,
    start: Instant,
    what: &'static str,
}

impl Progress {
    pub fn new(total: u64, what: &'static str, quiet: bool) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let bar = (!quiet && terminal && total > 1).then(|| {
            let bar = ProgressBar::new(total);
            let style = ProgressStyle::with_template(
                "{bar:30} {pos}/{len} {msg} [{elapsed_precise}, {per_sec}, ETA {eta}]",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar
        });
        Self {
            bar,
            plain: !quiet && !terminal && total > 1,
            total,
            start: Instant::now(),
            what,
        }
    }

    /// `done` items of `total` finished; `note` names the last one.
    pub fn update(&self, done: u64, note: &str) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            bar.set_message(note.to_string());
        } else if self.plain {
            let elapsed = self.start.elapsed().as_secs_f64();
            let rate = done as f64 / elapsed.max(1e-9);
            let eta = (self.total.saturating_sub(done)) as f64 / rate.max(1e-9);
            eprintln!(
                "kineto: {done}/{} {} ({rate:.2}/s, ETA {eta:.0} s) {note}",
                self.total, self.what
            );
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
