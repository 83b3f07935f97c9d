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
            // The rate and ETA are ours (see `rate_and_eta`): indicatif's estimate of the first
            // update, which may report many items at once, read 16393442.62/s.
            let style =
                ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed_precise}]")
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

    /// Counts time from `start` (when the work began, before the first item was known).
    pub fn started_at(mut self, start: Instant) -> Self {
        self.start = start;
        self
    }

    /// `done` items of `total` finished; `note` names the last one.
    pub fn update(&self, done: u64, note: &str) {
        let rate = self.rate_and_eta(done);
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            bar.set_message(format!("{note} {rate}"));
        } else if self.plain {
            eprintln!("kineto: {done}/{} {} {rate} {note}", self.total, self.what);
        }
    }

    /// "(2.41/s, ETA 12 s)" once a second has passed (a rate over less is noise), else "".
    fn rate_and_eta(&self, done: u64) -> String {
        let elapsed = self.start.elapsed().as_secs_f64();
        if elapsed < 1.0 || done == 0 {
            return String::new();
        }
        let rate = done as f64 / elapsed;
        let eta = (self.total.saturating_sub(done)) as f64 / rate;
        format!("({rate:.2}/s, ETA {eta:.0} s)")
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
