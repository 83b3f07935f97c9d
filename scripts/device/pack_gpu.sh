#!/usr/bin/env bash
# Stage in .gpu/ (ignored by git) what scripts/device/gpu.py needs on a device machine: the
# stripped kineto binary, the GStreamer libraries and the few plugins that decode VP8 WebM
# clips, the fixture weights, input and logits, and a folder of short VP8 clips made here
# (about 50 MB compressed; a call carries at most 64 MiB). A baseline build to compare with, if
# given, goes in .gpu-base/ with the libraries, for a second call (only its bench and profile
# run there). The Vulkan loader goes in .gl/ as for pack.sh.
# Usage: scripts/device/pack_gpu.sh [BASELINE_KINETO_BINARY]
set -euo pipefail
cd "$(dirname "$0")/../.."
baseline=${1:-}
target=${CARGO_TARGET_DIR:-target}
fixtures=${KINETO_FIXTURES:-../shared/fixtures}
exclude="$(git rev-parse --git-dir)/info/exclude"
mkdir -p "$(dirname "$exclude")"
for path in /.gpu/ /.gpu-base/ /.gl/; do grep -qxF "$path" "$exclude" 2>/dev/null || echo "$path" >>"$exclude"; done

cargo build --locked
rm -rf .gpu .gpu-base && mkdir -p .gpu/fx .gpu/lib/gst .gpu/clips
strip -o .gpu/kineto "$target/debug/kineto"

# Libraries: kineto's own, then the plugins a VP8 WebM needs and theirs.
plugins=/usr/lib/x86_64-linux-gnu/gstreamer-1.0
for p in coreelements typefindfunctions app playback videoconvertscale matroska vpx; do
  cp -L "$plugins/libgst$p.so" .gpu/lib/gst/
done
{ ldd .gpu/kineto; for so in .gpu/lib/gst/*.so; do ldd "$so"; done; } |
  awk '/=>/ {print $3}' | grep -vE 'lib(c|m|gcc_s)\.so|ld-linux' | sort -u |
  xargs -I{} cp -L {} .gpu/lib/
cp -L /usr/lib/x86_64-linux-gnu/gstreamer1.0/gstreamer-1.0/gst-plugin-scanner .gpu/lib/ 2>/dev/null || true
tar -C .gpu -cJf .gpu/lib.tar.xz lib && rm -rf .gpu/lib

cp "$fixtures"/pptsmv2/w8.pdparams "$fixtures"/pptsmv2/logits224_8f_fused.npy \
  "$fixtures"/video/example_8f_input.npy .gpu/fx/

# Sixteen 5 s 640x360 VP8 clips of moving test patterns; gpu.py copies them into a folder of 256.
patterns=(ball smpte pinwheel gamut)
for i in $(seq 0 15); do
  gst-launch-1.0 -q videotestsrc num-buffers=150 pattern="${patterns[$((i % 4))]}" \
    horizontal-speed=$((i % 5 + 1)) ! video/x-raw,width=640,height=360,framerate=30/1 ! \
    vp8enc target-bitrate=800000 deadline=1 cpu-used=8 keyframe-max-dist=60 ! webmmux ! \
    filesink location=".gpu/clips/clip$i.webm"
done
xz -T0 -6 .gpu/kineto .gpu/fx/w8.pdparams .gpu/fx/*.npy
cp scripts/device/gpu.py scripts/device/stage.py .gpu/
if [ -n "$baseline" ]; then
  mkdir -p .gpu-base
  strip -o .gpu-base/kineto-base "$baseline"
  xz -T0 -6 .gpu-base/kineto-base
  cp .gpu/lib.tar.xz scripts/device/gpu.py scripts/device/stage.py .gpu-base/
fi

# The Vulkan loader (the device machine has NVIDIA's driver but no loader).
if [ ! -d .gl ]; then
  mkdir -p .gl /tmp/amd64/partial
  apt_opts=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
  apt-get "${apt_opts[@]}" update >/dev/null
  (cd .gl && apt-get "${apt_opts[@]}" download libvulkan1 >/dev/null)
fi
du -sh .gpu .gl; [ -d .gpu-base ] && du -sh .gpu-base
