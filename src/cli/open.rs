//! `kineto open [VIDEO] [--weights W] [--frames N]`: the window, with model settings given on
//! the command line (they win over the stored ones). `kineto` and `kineto VIDEO` do the same
//! with the stored settings.

use std::path::PathBuf;

use anyhow::anyhow;
use kineto::app::settings::{DeviceSetting, SettingsOverride};
use kineto::app::{AppOptions, run_with};
use kineto::infer::device::DeviceChoice;

use super::{CliResult, Failure, GlobalArgs};

#[derive(clap::Args, Debug)]
pub struct OpenArgs {
    /// A video to play.
    pub video: Option<PathBuf>,
    /// Weights: a catalog name, a .pdparams / .safetensors file or a PaddleVideo inference
    /// model (.pdiparams).
    #[arg(long)]
    pub weights: Option<String>,
    /// Frames per clip (num_seg).
    #[arg(long)]
    pub frames: Option<usize>,
}

pub fn run(args: &OpenArgs, global: &GlobalArgs) -> CliResult {
    if let Some(video) = &args.video
        && !video.exists()
    {
        return Err(Failure::fatal(anyhow!("{}: no such file", video.display())));
    }
    // Only flags given on the command line override the stored settings.
    let explicit =
        |name: &str| std::env::args().any(|a| a == name || a.starts_with(&format!("{name}=")));
    let overrides = SettingsOverride {
        model: args.weights.clone(),
        frames: args.frames,
        device: explicit("--device").then_some(match global.device {
            DeviceChoice::Cpu => DeviceSetting::Cpu,
            DeviceChoice::Gpu => DeviceSetting::Gpu,
            DeviceChoice::Auto => DeviceSetting::Auto,
        }),
        threads: explicit("--threads").then_some(global.threads),
        offline: global.offline.then_some(true),
    };
    run_with(AppOptions {
        video: args.video.clone(),
        overrides,
        ..AppOptions::default()
    })
    .map_err(Failure::fatal)
}
