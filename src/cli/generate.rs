//! `kineto generate man|completions|cli-reference` (hidden): files generated from the clap
//! definition for packaging (man pages, shell completions) and for the README (the CLI
//! reference). Nothing here is written by hand, so none of it can drift from `--help`.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use clap::CommandFactory;
use clap_complete::Shell;

use super::{Cli, CliResult, Failure, GlobalArgs};

#[derive(clap::Subcommand, Debug)]
pub enum GenerateCommand {
    /// Write man pages into DIR: kineto.1 and one page per subcommand (kineto-classify.1, ...).
    Man(ManArgs),
    /// Print (or write) a shell completion script: bash, zsh or fish.
    Completions(CompletionsArgs),
    /// Print the CLI reference in Markdown: every command's `--help`, in a fixed order.
    CliReference,
}

#[derive(clap::Args, Debug)]
pub struct ManArgs {
    /// The folder to write the pages into (created if missing).
    pub dir: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh or fish.
    #[arg(value_parser = parse_shell)]
    pub shell: Shell,
    /// Write the script to this file instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

fn parse_shell(s: &str) -> Result<Shell, String> {
    match s.to_ascii_lowercase().as_str() {
        "bash" => Ok(Shell::Bash),
        "zsh" => Ok(Shell::Zsh),
        "fish" => Ok(Shell::Fish),
        other => Err(format!("unsupported shell {other}; use bash, zsh or fish")),
    }
}

pub fn run(cmd: &GenerateCommand, global: &GlobalArgs) -> CliResult {
    match cmd {
        GenerateCommand::Man(args) => {
            let written = write_man_pages(&args.dir).map_err(|e| {
                Failure::fatal(anyhow!("{}: cannot write: {e}", args.dir.display()))
            })?;
            if !global.quiet {
                eprintln!(
                    "kineto: wrote {} man pages into {}",
                    written.len(),
                    args.dir.display()
                );
            }
            Ok(())
        }
        GenerateCommand::Completions(args) => {
            let script = completions(args.shell);
            super::write_output(
                &super::OutputArgs {
                    format: None,
                    output: args.output.clone(),
                },
                &script,
            )
        }
        GenerateCommand::CliReference => {
            print!("{}", cli_reference());
            Ok(())
        }
    }
}

/// The command tree as the user sees it: built (global flags propagated, bin names set).
fn built_command() -> clap::Command {
    let mut cmd = Cli::command();
    cmd.build();
    cmd
}

/// The visible subcommands, depth first, in definition order, without clap's `help`.
fn visible_subcommands(cmd: &clap::Command) -> impl Iterator<Item = &clap::Command> {
    cmd.get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
}

/// Environment variables Kineto reads, for the top-level man page.
const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "KINETO_CACHE_DIR",
        "The weights cache folder (overridden by --cache-dir). Default: the user's data \
         directory, ~/.local/share/kineto.",
    ),
    (
        "KINETO_CATALOG",
        "A weights catalog file in configs/catalog.toml's format, used instead of the built-in \
         one (for a mirror).",
    ),
    (
        "KINETO_HTTP_TIMEOUT",
        "Seconds before a stalled weights download gives up.",
    ),
];

/// Writes kineto.1 and kineto-SUB[-SUBSUB].1 for every visible subcommand; returns the paths.
pub fn write_man_pages(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let version = cmd.get_version().unwrap_or_default().to_string();
    let mut written = Vec::new();
    write_man_page(&cmd, dir, &version, true, &mut written)?;
    Ok(written)
}

fn write_man_page(
    cmd: &clap::Command,
    dir: &Path,
    version: &str,
    top: bool,
    written: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone())
        .source(format!("kineto {version}"))
        .manual("Kineto Manual");
    let mut page = Vec::new();
    man.render(&mut page)?;
    if top {
        page.extend_from_slice(b".SH ENVIRONMENT\n");
        for (name, text) in ENVIRONMENT {
            page.extend_from_slice(
                format!(".TP\n\\fB{name}\\fR\n{}\n", roff_text(text)).as_bytes(),
            );
        }
    }
    let path = dir.join(man.get_filename());
    std::fs::write(&path, page)?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_man_page(sub, dir, version, false, written)?;
    }
    Ok(())
}

/// Plain text as a roff text line: backslashes and hyphens escaped, no leading control char.
fn roff_text(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with('.') || escaped.starts_with('\'') {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

/// The completion script for `shell`.
pub fn completions(shell: Shell) -> String {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "kineto", &mut out);
    // clap_complete writes UTF-8 (the definition's strings); lossy only guards the type.
    String::from_utf8_lossy(&out).into_owned()
}

/// The Markdown CLI reference: `kineto --help`, then every visible subcommand's `--help`
/// (depth first, in definition order), each in a fenced block under a heading.
pub fn cli_reference() -> String {
    let cmd = built_command();
    let mut out = String::from(
        "Generated from the CLI definition by `kineto generate cli-reference` \
         (`packaging/update-readme.sh` refreshes this section; a test checks it matches \
         `--help`).\n",
    );
    let mut path = Vec::new();
    reference_section(&cmd, &mut path, &mut out);
    out
}

/// Exactly what `kineto PATH... --help` prints: clap decides between the short and the long
/// form (the long one only where some argument has a long help), so ask clap itself.
fn help_text(path: &[String]) -> String {
    let args = std::iter::once("kineto".to_string())
        .chain(path.iter().cloned())
        .chain(std::iter::once("--help".to_string()));
    match Cli::command().try_get_matches_from(args) {
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => e.render().to_string(),
        other => panic!("`{} --help` did not print help: {other:?}", path.join(" ")),
    }
}

/// Each line without its trailing spaces.
pub fn strip_line_ends(text: &str) -> String {
    text.lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
}

fn reference_section(cmd: &clap::Command, path: &mut Vec<String>, out: &mut String) {
    let title = std::iter::once("kineto".to_string())
        .chain(path.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    // Line-end spaces (clap indents the blank lines of long help) are dropped: editors and
    // `git diff --check` would fight them in the README.
    let help = strip_line_ends(&help_text(path));
    out.push_str(&format!(
        "\n### `{title}`\n\n```text\n{}\n```\n",
        help.trim_end()
    ));
    for sub in visible_subcommands(cmd) {
        path.push(sub.get_name().to_string());
        reference_section(sub, path, out);
        path.pop();
    }
}
