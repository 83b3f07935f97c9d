#!/usr/bin/env bash
# Peak memory (RSS) of `kineto timeline` and `kineto classify --dense` on a 10-s 3840x2160 H.264
# clip made with GStreamer: the check that decoding holds a bounded number of full-resolution
# frames (issue 18, finding 6; goal: under 1.5 GB). Prints one line per command. With --window,
# also the window playing the clip with live labels for --window-s seconds under Xvfb (xvfb-run;
# apt-get install xvfb xauth), its peak read from /proc while it runs.
#
# usage: scripts/rss_4k.sh [options]
#   --kineto BIN    kineto binary (default: $CARGO_TARGET_DIR/release/kineto, else debug)
#   --weights FILE  weights (default: ../shared/fixtures/pptsmv2/w8.pdparams, or
#                   $KINETO_FIXTURES/pptsmv2/w8.pdparams)
#   --clip FILE     the 4K clip (made when missing; default: a file in the temp dir, kept for
#                   later runs)
#   --frames N      seconds x 25 fps frames of the clip (default 250)
#   --window        also measure the window (needs xvfb-run)
#   --window-s S    how long the window plays (default 30)
# Compare builds of the same profile: a debug (dev-profile) binary and a release one differ.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$here/target}"
fixtures="${KINETO_FIXTURES:-$here/../shared/fixtures}"
kineto="" weights="$fixtures/pptsmv2/w8.pdparams"
clip="${TMPDIR:-/tmp}/kineto-rss-4k.mp4" frames=250 window=0 window_s=30
while [[ $# -gt 0 ]]; do
  case "$1" in
    --kineto) kineto="$2"; shift 2 ;;
    --weights) weights="$2"; shift 2 ;;
    --clip) clip="$2"; shift 2 ;;
    --frames) frames="$2"; shift 2 ;;
    --window) window=1; shift ;;
    --window-s) window_s="$2"; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
if [[ -z "$kineto" ]]; then
  if [[ -x "$target/release/kineto" ]]; then kineto="$target/release/kineto"; else kineto="$target/debug/kineto"; fi
fi
[[ -x "$kineto" ]] || { echo "no kineto binary at $kineto (build it, or pass --kineto)" >&2; exit 2; }
[[ -f "$weights" ]] || { echo "no weights at $weights" >&2; exit 2; }
[[ $window == 0 ]] || command -v xvfb-run >/dev/null || { echo "--window needs xvfb-run (apt-get install xvfb xauth)" >&2; exit 2; }
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

if [[ $window == 1 ]]; then
  # A throwaway home, so that no stored window setting applies; the peak is read from /proc
  # while the window plays (it is killed at the end, so GNU time cannot report it).
  home="$(mktemp -d)"
  cat >"$home/play.sh" <<PLAY
#!/usr/bin/env bash
export HOME="$home" XDG_RUNTIME_DIR="$home"
"$kineto" open --device cpu --weights "$weights" "$clip" >"$home/log" 2>&1 &
pid=\$!
end=\$((SECONDS + $window_s))
hwm=0
while (( SECONDS < end )) && [[ -d /proc/\$pid ]]; do
  sleep 0.5
  hwm="\$(awk '/VmHWM/ {print \$2}' /proc/\$pid/status 2>/dev/null || echo \$hwm)"
done
if [[ -d /proc/\$pid ]]; then kill \$pid; wait \$pid 2>/dev/null; echo "\$hwm"
else echo "the window exited early:" >&2; cat "$home/log" >&2; exit 1; fi
PLAY
  chmod +x "$home/play.sh"
  kb="$(xvfb-run -a -s "-screen 0 1600x1000x24" "$home/play.sh")"
  rm -rf "$home"
  printf '%-18s peak RSS %6d MB  (%s kB)  playing %s s\n' "window" "$((kb / 1024))" "$kb" "$window_s"
fi
