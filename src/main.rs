//! `kineto`: the window (no arguments, or one video path) or the command line (a subcommand)
//! over the Kineto library.

mod cli;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::CommandFactory;

/// `Some(video)` when the arguments ask for the window: none at all, or a single path that is
/// not a subcommand or a flag.
fn window_request(args: &[OsString]) -> Option<Option<PathBuf>> {
    match args {
        [] => Some(None),
        [single] => {
            let text = single.to_string_lossy();
            let is_subcommand = cli::Cli::command().find_subcommand(&*text).is_some();
            (!text.starts_with('-') && !is_subcommand).then(|| Some(PathBuf::from(single)))
        }
        _ => None,
    }
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match window_request(&args) {
        Some(video) => {
            if let Some(path) = &video
                && !path.exists()
            {
                eprintln!("kineto: error: {}: no such file", path.display());
                return ExitCode::from(2);
            }
            match kineto::app::run(video) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("kineto: error: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        None => cli::run(),
    }
}
