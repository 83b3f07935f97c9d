#!/usr/bin/env bash
# Stage in .dev/ (ignored by git) what scripts/device/check.py needs on a device machine, and
# the Vulkan loader packages in .gl/: the stripped kineto and parity_nhwc binaries, the
# GStreamer libraries they link, the fixture weights, inputs and logits, and the anchor's ONNX
# files with one shared weight file. Compressed, it is about 58 MB of the 64 MiB a call carries.
# Usage: scripts/device/pack.sh ONNX_CACHE PYTHON
#   ONNX_CACHE: the folder fixtures/anchor/make_onnx.py wrote; PYTHON: one with onnx + onnxruntime.
set -euo pipefail
cd "$(dirname "$0")/../.."
onnx_cache=${1:?usage: pack.sh ONNX_CACHE PYTHON}
python=${2:?usage: pack.sh ONNX_CACHE PYTHON}
target=${CARGO_TARGET_DIR:-target}
fixtures=${KINETO_FIXTURES:-../shared/fixtures}
exclude="$(git rev-parse --git-dir)/info/exclude"
mkdir -p "$(dirname "$exclude")"
for path in /.dev/ /.gl/; do grep -qxF "$path" "$exclude" 2>/dev/null || echo "$path" >>"$exclude"; done

cargo build --locked
test_bin=$(cargo test --locked --no-run --test parity_nhwc 2>&1 | sed -n 's/.*Executable .*(\(.*\))/\1/p')
rm -rf .dev && mkdir -p .dev/fx/pptsmv2 .dev/fx/video .dev/fx/anchor .dev/onnx .dev/lib
strip -o .dev/kineto "$target/debug/kineto"
strip -o .dev/parity_nhwc "$test_bin"
ldd .dev/kineto | awk '/=>/ {print $3}' | grep -vE 'lib(c|m|gcc_s)\.so|ld-linux' |
  xargs -I{} cp -L {} .dev/lib/
tar -C .dev -cJf .dev/lib.tar.xz lib && rm -rf .dev/lib
cp "$fixtures"/pptsmv2/{w8.pdparams,att16_extra.pdparams,act64_8f.npz,act64_16f_att.npz} \
  "$fixtures"/pptsmv2/logits224_*.npy .dev/fx/pptsmv2/
cp "$fixtures"/video/example_{8,16}f_input.npy .dev/fx/video/
cp "$fixtures"/anchor/ort_bench.py .dev/fx/anchor/
"$python" scripts/device/share_onnx_weights.py "$onnx_cache" .dev/onnx "$fixtures"
xz -T0 -6 .dev/kineto .dev/parity_nhwc .dev/fx/pptsmv2/w8.pdparams .dev/fx/video/*.npy \
  .dev/onnx/pptsmv2_w.bin
cp scripts/device/check.py scripts/device/stage.py .dev/

# The Vulkan loader (the device machine has NVIDIA's driver but no loader).
if [ ! -d .gl ]; then
  mkdir -p .gl /tmp/amd64/partial
  apt_opts=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
  apt-get "${apt_opts[@]}" update >/dev/null
  (cd .gl && apt-get "${apt_opts[@]}" download libvulkan1 >/dev/null)
fi
du -sh .dev .gl
