//! `kineto`: the command line (and, later, the window) over the Kineto library.

mod cli;

fn main() -> std::process::ExitCode {
    cli::run()
}
