#!/usr/bin/env bash
# Peak memory (RSS) of `kineto timeline` and `kineto classify --dense` on a 10-s 3840x2160 H.264
# clip made with GStreamer: the check that decoding holds a bounded number of full-resolution
# frames (issue 18, finding 6; goal: under 1.5 GB). Prints one line per command.
#
# usage: scripts/rss_4k.sh [options]
#   --kineto BIN    kineto binary (default: $CARGO_TARGET_DIR/release/kineto, else debug)
#   --weights FILE  weights (default: ../shared/fixtures/pptsmv2/w8.pdparams, or
#                   $KINETO_FIXTURES/pptsmv2/w8.pdparams)
#   --clip FILE     the 4K clip (made when missing; default: a file in the temp dir, kept for
#                   later runs)
#   --frames N      seconds x 25 fps frames of the clip (default 250)
# Compare builds of the same profile: a debug (dev-profile) binary and a release one differ.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$here/target}"
fixtures="${KINETO_FIXTURES:-$here/../shared/fixtures}"
kineto="" weights="$fixtures/pptsmv2/w8.pdparams"
clip="${TMPDIR:-/tmp}/kineto-rss-4k.mp4" frames=250
while [[ $# -gt 0 ]]; do
  case "$1" in
    --kineto) kineto="$2"; shift 2 ;;
    --weights) weights="$2"; shift 2 ;;
    --clip) clip="$2"; shift 2 ;;
    --frames) frames="$2"; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
if [[ -z "$kineto" ]]; then
  if [[ -x "$target/release/kineto" ]]; then kineto="$target/release/kineto"; else kineto="$target/debug/kineto"; fi
fi
[[ -x "$kineto" ]] || { echo "no kineto binary at $kineto (build it, or pass --kineto)" >&2; exit 2; }
[[ -f "$weights" ]] || { echo "no weights at $weights" >&2; exit 2; }
[[ -x /usr/bin/time ]] || { echo "needs GNU time (/usr/bin/time; apt-get install time)" >&2; exit 2; }

if [[ ! -s "$clip" ]]; then
  echo "making $clip ($frames frames of 3840x2160 H.264)" >&2
  gst-launch-1.0 -q videotestsrc num-buffers="$frames" pattern=ball \
    ! video/x-raw,width=3840,height=2160,framerate=25/1,format=I420 \
    ! x264enc speed-preset=ultrafast key-int-max=250 ! mp4mux ! filesink location="$clip.part"
  mv "$clip.part" "$clip"
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
run() {
  local name="$1"; shift
  if ! /usr/bin/time -v -o "$log" "$kineto" "$@" >/dev/null 2>"$log.err"; then
    echo "$name: failed:" >&2; cat "$log.err" >&2; rm -f "$log.err"; exit 1
  fi
  rm -f "$log.err"
  local kb wall
  kb="$(awk -F': ' '/Maximum resident set size/ {print $2}' "$log")"
  wall="$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$log")"
  printf '%-18s peak RSS %6d MB  (%s kB)  wall %s\n' "$name" "$((kb / 1024))" "$kb" "$wall"
}
echo "kineto: $kineto" >&2
run "timeline" timeline --device cpu --weights "$weights" "$clip"
run "classify --dense" classify --device cpu --dense --format json --weights "$weights" "$clip"
