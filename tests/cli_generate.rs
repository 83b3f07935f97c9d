//! `kineto generate man|completions|cli-reference`: the packaging files generated from the clap
//! definition, and the README's CLI reference, which must match `--help` exactly.

// Test code: a failed unwrap/expect is the test failing (clippy.toml exempts only #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

mod common;
use common::ScratchDir;

const START: &str = "<!-- cli-reference:start -->";
const END: &str = "<!-- cli-reference:end -->";

fn kineto(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kineto"))
        .args(args)
        .output()
        .expect("run kineto");
    assert!(
        out.status.success(),
        "kineto {}: {}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// The subcommands a `--help` lists under "Commands:" (without clap's `help`).
fn listed_subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// Every visible command path, depth first: [], ["classify"], ..., ["weights", "list"], ...
fn command_paths() -> Vec<Vec<String>> {
    fn walk(path: Vec<String>, out: &mut Vec<Vec<String>>) {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let help = kineto(&args);
        out.push(path.clone());
        for sub in listed_subcommands(&help) {
            let mut child = path.clone();
            child.push(sub);
            walk(child, out);
        }
    }
    let mut out = Vec::new();
    walk(Vec::new(), &mut out);
    out
}

fn temp_dir(name: &str) -> ScratchDir {
    ScratchDir::new(name)
}

#[test]
fn the_top_level_help_lists_the_commands_but_not_generate() {
    let subs = listed_subcommands(&kineto(&["--help"]));
    assert!(subs.iter().any(|s| s == "classify"), "{subs:?}");
    assert!(!subs.iter().any(|s| s == "generate"), "{subs:?}");
}

#[test]
fn man_pages_are_written_for_every_subcommand() {
    let dir = temp_dir("man");
    kineto(&["generate", "man", dir.to_str().unwrap(), "--quiet"]);
    let top = std::fs::read_to_string(dir.join("kineto.1")).expect("kineto.1");
    assert!(top.contains(".TH kineto 1"), "kineto.1 has no title line");
    assert!(
        top.contains(".SH ENVIRONMENT"),
        "kineto.1 has no ENVIRONMENT"
    );
    for path in command_paths().into_iter().filter(|p| !p.is_empty()) {
        let name = path.join("-");
        // roff escapes hyphens: kineto\-demo\-data(1).
        let roff_name = format!("kineto-{}(1)", path[0]).replace('-', "\\-");
        assert!(
            top.contains(&roff_name),
            "kineto.1 does not mention {roff_name}"
        );
        let page = dir.join(format!("kineto-{name}.1"));
        let text =
            std::fs::read_to_string(&page).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
        assert!(text.contains(".SH NAME"), "{}", page.display());
    }
    assert!(
        !dir.join("kineto-generate.1").exists(),
        "the hidden generate command got a man page"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn completions_for_bash_zsh_and_fish_know_the_commands() {
    for shell in ["bash", "zsh", "fish"] {
        let script = kineto(&["generate", "completions", shell]);
        assert!(!script.trim().is_empty(), "{shell}: empty");
        assert!(script.contains("classify"), "{shell}: no classify");
        assert!(script.contains("top-k"), "{shell}: no --top-k");
    }
    let dir = temp_dir("completions");
    let file = dir.join("kineto.fish");
    kineto(&[
        "generate",
        "completions",
        "fish",
        "--output",
        file.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        kineto(&["generate", "completions", "fish"])
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_kineto"))
        .args(["generate", "completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_cli_reference_holds_every_help_text_exactly() {
    let reference = kineto(&["generate", "cli-reference"]);
    let mut last = 0;
    for path in command_paths() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let help = kineto(&args);
        let title = std::iter::once("kineto")
            .chain(path.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ");
        // Exact, except for spaces at line ends (clap indents blank lines of long help).
        let help: Vec<&str> = help.trim_end().lines().map(str::trim_end).collect();
        let block = format!("### `{title}`\n\n```text\n{}\n```\n", help.join("\n"));
        let at = reference.find(&block).unwrap_or_else(|| {
            panic!(
                "the CLI reference lacks `{title} --help` as printed:\n{}",
                help.join("\n")
            )
        });
        assert!(at >= last, "`{title}` is out of order in the CLI reference");
        last = at;
    }
}

#[test]
fn the_readme_cli_reference_is_up_to_date() {
    let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap();
    let start = readme
        .find(START)
        .unwrap_or_else(|| panic!("README.md has no {START}"))
        + START.len();
    let end = readme
        .find(END)
        .unwrap_or_else(|| panic!("README.md has no {END}"));
    let section = readme[start..end].trim();
    let generated = kineto(&["generate", "cli-reference"]);
    assert!(
        section == generated.trim(),
        "README.md's CLI reference differs from `kineto generate cli-reference`: \
         run packaging/update-readme.sh"
    );
}
