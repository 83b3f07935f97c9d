#!/usr/bin/env bash
# Build kineto's .deb from the binary `cargo test` / `cargo build` already built, without a second
# build: (a) a stripped copy of that binary, the man pages and the shell completions it generates
# are staged in target/packaging/, (b) `cargo deb --no-build --no-strip` packs them with the
# metadata in Cargo.toml's [package.metadata.deb]. Prints the path of the .deb on stdout (the last
# line); the .deb lands in target/packaging/ of this checkout.
#
#   packaging/build-deb.sh                              # $CARGO_TARGET_DIR/debug/kineto
#   KINETO_DEB_PROFILE=release packaging/build-deb.sh   # after `cargo build --release`
#
# Needs cargo-deb (`cargo install cargo-deb --locked`), binutils (strip) and dpkg-dev
# (dpkg-shlibdeps, for the `$auto` dependencies).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$(pwd)/target}"
case "${KINETO_DEB_PROFILE:-dev}" in
  dev | test | debug) profile_dir=debug ;;
  *) profile_dir="$KINETO_DEB_PROFILE" ;;
esac
bin="$CARGO_TARGET_DIR/$profile_dir/kineto"
if [[ ! -x "$bin" ]]; then
  echo "build-deb.sh: $bin is missing: run \`cargo build\` (or \`cargo test\`) first" >&2
  exit 2
fi
if ! cargo deb --version >/dev/null 2>&1; then
  echo "build-deb.sh: cargo-deb is missing: cargo install cargo-deb --locked" >&2
  exit 2
fi

# (a) The binary (stripped into the staging dir: the one in the target dir stays as cargo left
# it), and the files it generates from its own CLI definition.
stage=target/packaging
rm -rf "$stage/bin" "$stage/man" "$stage/completions" "$stage"/kineto_*.deb
mkdir -p "$stage/bin" "$stage/man" "$stage/completions"
strip --remove-section=.comment --remove-section=.note -o "$stage/bin/kineto" "$bin"
"$stage/bin/kineto" generate man "$stage/man" --quiet
"$stage/bin/kineto" generate completions bash --output "$stage/completions/kineto.bash"
"$stage/bin/kineto" generate completions zsh --output "$stage/completions/_kineto"
"$stage/bin/kineto" generate completions fish --output "$stage/completions/kineto.fish"

# (b) The package.
cargo deb --no-build --no-strip --output "$stage/" >&2
ls "$stage"/kineto_*.deb
