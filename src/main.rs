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

/// Output piped into a program that stops reading (`kineto weights list | head -1`) ends the
/// command quietly, as command-line tools do, instead of a panic in `println!` (Rust ignores
/// SIGPIPE by default). The window keeps Rust's default.
fn restore_sigpipe() {
    // SAFETY: runs first in `main`, before any other thread exists; `SIG_DFL` is a valid
    // disposition for `SIGPIPE` and no handler of ours is replaced.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// The GPU probe of `--device auto` loads Mesa's Vulkan drivers, whose Wayland part prints
/// `error: XDG_RUNTIME_DIR is invalid or not set` (twice) when that folder is missing, which
/// reads as Kineto's error. The command line needs no Wayland session: when the variable is
/// unset or not a folder, it points at a private folder of our own, and the probe is quiet.
fn quiet_gpu_probe() {
    let valid = std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|d| !d.is_empty())
        .is_some_and(|d| std::path::Path::new(&d).is_dir());
    if valid {
        return;
    }
    // SAFETY: `getuid` has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    let dir = std::env::temp_dir().join(format!("kineto-runtime-{uid}"));
    let mut builder = std::fs::DirBuilder::new();
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    if builder.create(&dir).is_ok() || dir.is_dir() {
        // SAFETY: runs in `main` before any other thread exists, so nothing reads the
        // environment concurrently.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", &dir) };
    }
}

/// The subcommand a mistyped word most likely meant (at most two edits away), if any.
fn nearest_subcommand(word: &str) -> Option<String> {
    let command = cli::Cli::command();
    let names: Vec<&str> = command.get_subcommands().map(|c| c.get_name()).collect();
    kineto::text::nearest(word, names).map(str::to_string)
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match window_request(&args) {
        Some(video) => {
            if let Some(path) = &video
                && !path.exists()
            {
                let hint = nearest_subcommand(&path.to_string_lossy())
                    .map(|name| format!(" (did you mean `kineto {name}`?)"))
                    .unwrap_or_default();
                eprintln!("kineto: error: {}: no such file{hint}", path.display());
                return ExitCode::from(2);
            }
            match kineto::app::run(video) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("kineto: error: {}", cli::one_line(&e));
                    ExitCode::from(2)
                }
            }
        }
        None => {
            restore_sigpipe();
            quiet_gpu_probe();
            cli::run()
        }
    }
}
