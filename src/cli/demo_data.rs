//! `kineto demo-data DIR [--classes N] [--clips-per-class K] [--seconds S] [--seed S]
//! [--force]`: a labelled set of synthetic clips, one folder per class, ready for
//! `kineto train DIR`. Progress on stderr, a JSON summary on stdout.

use std::path::PathBuf;

use anyhow::anyhow;
use kineto::train::demo::{DemoOptions, generate};

use super::progress::Progress;
use super::{CliResult, Failure, GlobalArgs};

#[derive(clap::Args, Debug)]
pub struct DemoDataArgs {
    /// The folder to write (created if missing): one sub-folder per class.
    pub dir: PathBuf,
    /// Number of classes (2 to 10: ball_wavy, bars_scroll, zoneplate_rings, checkers_scroll,
    /// pinwheel_spin, snow, gradient_colours, ball_sweep, circular_scroll, ball_hsweep).
    #[arg(long, default_value_t = 4)]
    pub classes: usize,
    /// Clips per class.
    #[arg(long, default_value_t = 12)]
    pub clips_per_class: usize,
    /// Mean clip length in seconds (each clip within ±20%).
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// The same seed gives the same clips.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write into a non-empty folder that is not a previous demo-data output.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: &DemoDataArgs, global: &GlobalArgs) -> CliResult {
    let opts = DemoOptions {
        classes: args.classes,
        clips_per_class: args.clips_per_class,
        seconds: args.seconds,
        seed: args.seed,
        force: args.force,
    };
    opts.validate().map_err(Failure::fatal)?;
    let total = (opts.classes * opts.clips_per_class) as u64;
    let progress = Progress::new(total, "clips", global.quiet);
    let work = || {
        generate(&args.dir, &opts, |class, done, _| {
            progress.update(done as u64, &class.name);
        })
    };
    let result = if global.threads > 0 {
        rayon::ThreadPoolBuilder::new()
            .num_threads(global.threads)
            .build()
            .map_err(|e| Failure::fatal(anyhow!("cannot start {} threads: {e}", global.threads)))?
            .install(work)
    } else {
        work()
    };
    progress.finish();
    let summary = result.map_err(Failure::fatal)?;
    let text = serde_json::to_string(&summary).map_err(Failure::fatal)?;
    println!("{text}");
    Ok(())
}
