#!/usr/bin/env bash
# Regenerate README.md's CLI reference (between <!-- cli-reference:start --> and
# <!-- cli-reference:end -->) from the clap definition: `kineto generate cli-reference`.
# tests/cli_generate.rs fails when the README's section differs from it.
#
#   packaging/update-readme.sh                  # builds/runs with `cargo run`
#   KINETO_BIN=path/to/kineto packaging/update-readme.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -n "${KINETO_BIN:-}" ]]; then
  reference="$("$KINETO_BIN" generate cli-reference)"
else
  reference="$(cargo run --quiet --locked -- generate cli-reference)"
fi

tmp="$(mktemp README.md.XXXXXX)"
trap 'rm -f "$tmp"' EXIT
REFERENCE="$reference" awk '
  /^<!-- cli-reference:start -->$/ { print; print ""; print ENVIRON["REFERENCE"]; print ""; skip = 1; found = 1; next }
  /^<!-- cli-reference:end -->$/ { skip = 0 }
  !skip { print }
  END { if (!found) { print "update-readme.sh: README.md has no <!-- cli-reference:start --> marker" > "/dev/stderr"; exit 2 } }
' README.md >"$tmp"
chmod --reference=README.md "$tmp"
mv "$tmp" README.md
trap - EXIT
echo "README.md: CLI reference updated"
