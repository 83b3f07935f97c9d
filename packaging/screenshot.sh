#!/usr/bin/env bash
# Remakes assets/screenshot.png: the real window under Xvfb, a generated clip playing with live
# labels from the fixture weights (the official weights are not downloadable here).
#
#   packaging/screenshot.sh [KINETO_BINARY]
#
# Needs: xvfb, imagemagick (import), gstreamer1.0-tools, the fixtures (KINETO_FIXTURES or
# ../shared/fixtures), mesa-vulkan-drivers (lavapipe renders the window without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-${CARGO_TARGET_DIR:-target}/debug/kineto}"
FIXTURES="${KINETO_FIXTURES:-$(pwd)/../shared/fixtures}"
WORK="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

# A 120 s clip: a bouncing ball over a moving zone plate, 640x360.
gst-launch-1.0 -q videotestsrc num-buffers=3000 pattern=ball motion=sweep \
  ! video/x-raw,width=640,height=360,framerate=25/1 ! videoconvert \
  ! x264enc speed-preset=ultrafast ! mp4mux ! filesink location="$WORK/ball-sweep.mp4"

export XDG_RUNTIME_DIR="$WORK/run" HOME="$WORK/home" KINETO_NO_AUDIO=1
mkdir -p "$XDG_RUNTIME_DIR" "$HOME"
chmod 700 "$XDG_RUNTIME_DIR"
Xvfb :97 -screen 0 1280x800x24 >/dev/null 2>&1 &
sleep 1
DISPLAY=:97 "$BIN" open --weights "$FIXTURES/pptsmv2/w8.pdparams" --frames 8 --device cpu \
  "$WORK/ball-sweep.mp4" &
# Model load, first live label and part of the timeline.
sleep "${SCREENSHOT_WAIT:-25}"
DISPLAY=:97 import -window root "$WORK/shot.png"
mkdir -p assets
/usr/bin/convert "$WORK/shot.png" -trim +repage -resize '1200x>' assets/screenshot.png
echo "wrote assets/screenshot.png"
