//! clap definitions, global flags, dispatch and exit codes.
//!
//! Exit codes: 0 success; 1 the input could not be processed (a malformed checkpoint, a bad
//! .npy); 2 usage or environment errors (bad arguments, unavailable device, unwritable output).
//! Errors print one line: `kineto: error: <file>: <problem>`.

mod bench;
mod logits;
mod weights;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kineto::infer::device::{ComputeDevice, DeviceChoice};

#[derive(Parser, Debug)]
#[command(
    name = "kineto",
    version,
    about = "Classify and label video with PaddleVideo's PP-TSMv2 and PP-TSM models"
)]
#[command(arg_required_else_help = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Args, Debug, Clone)]
pub struct GlobalArgs {
    /// Where inference runs: cpu, gpu (any wgpu adapter, software ones included) or auto (a
    /// hardware GPU if present, else the CPU).
    #[arg(long, global = true, default_value = "auto", value_parser = parse_device)]
    pub device: DeviceChoice,
    /// CPU threads for inference (0 = all cores).
    #[arg(long, global = true, default_value_t = 0)]
    pub threads: usize,
    /// Print nothing but results and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

fn parse_device(s: &str) -> Result<DeviceChoice, String> {
    s.parse()
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Raw logits of a model on a preprocessed clip tensor (.npy in, .npy out).
    Logits(logits::LogitsArgs),
    /// Inspect weights files.
    #[command(subcommand)]
    Weights(weights::WeightsCommand),
    /// Time the model's forward pass (median of N runs after warm-up).
    Bench(bench::BenchArgs),
}

/// An error with the exit code it maps to.
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl Failure {
    /// The input could not be processed.
    pub fn input(error: impl Into<anyhow::Error>) -> Self {
        Self {
            code: 1,
            error: error.into(),
        }
    }

    /// Usage or environment.
    pub fn fatal(error: impl Into<anyhow::Error>) -> Self {
        Self {
            code: 2,
            error: error.into(),
        }
    }
}

pub type CliResult = Result<(), Failure>;

pub fn resolve_device(global: &GlobalArgs) -> Result<ComputeDevice, Failure> {
    let device = ComputeDevice::resolve(global.device, global.threads).map_err(Failure::fatal)?;
    if device.software_adapter && !global.quiet {
        eprintln!(
            "kineto: note: --device gpu runs on a software adapter ({}); expect it to be slow",
            device.adapter
        );
    }
    Ok(device)
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Logits(args) => logits::run(args, &cli.global),
        Command::Weights(cmd) => weights::run(cmd, &cli.global),
        Command::Bench(args) => bench::run(args, &cli.global),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { code, error }) => {
            eprintln!("kineto: error: {error:#}");
            ExitCode::from(code)
        }
    }
}
