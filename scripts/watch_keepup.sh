#!/usr/bin/env bash
# Does `kineto watch` keep up with a live 720p25 stream? Streams a 30-second 1280x720 25 fps
# H.264 clip from GStreamer's RTSP server (tests/python/rtsp_server.py, system python3 with
# python3-gi and gir1.2-gst-rtsp-server-1.0) and watches it for 20 s of stream time with the
# 8-frame PP-TSMv2 on the CPU, every 0.5 s: prints predictions per second of stream time, the
# windows dropped while the model was behind, and the median and worst latency; the stream is
# recorded (`--record`) meanwhile, and the frames the recording holds are printed (20 s at
# 25 fps is about 500: predictions may be dropped, frames of the recording never).
# Usage: scripts/watch_keepup.sh [WEIGHTS] [THREADS]   (KINETO_BIN: the binary, default: target/debug)
set -euo pipefail
cd "$(dirname "$0")/.."
weights="${1:-${KINETO_FIXTURES:-../shared/fixtures}/pptsmv2/w8.pdparams}"
threads="${2:-0}"
bin="${KINETO_BIN:-${CARGO_TARGET_DIR:-target}/debug/kineto}"
dir="$(mktemp -d)"
trap 'kill "${server:-0}" 2>/dev/null || true; rm -rf "$dir"' EXIT
gst-launch-1.0 -q videotestsrc num-buffers=750 pattern=ball ! \
  video/x-raw,width=1280,height=720,framerate=25/1 ! videoconvert ! \
  x264enc key-int-max=50 speed-preset=veryfast ! mp4mux faststart=true ! filesink location="$dir/clip.mp4"
port=$((20000 + RANDOM % 20000))
/usr/bin/python3 tests/python/rtsp_server.py "$port" "$dir/clip.mp4" > "$dir/server.log" &
server=$!
for _ in $(seq 100); do grep -q ready "$dir/server.log" 2>/dev/null && break; sleep 0.1; done
"$bin" watch "rtspt://127.0.0.1:$port/clip" --weights "$weights" --device cpu --threads "$threads" \
  --every-s 0.5 --duration 20 --top-k 1 --record "$dir/rec.mkv" > "$dir/out.jsonl" 2> "$dir/err.txt"
cat "$dir/err.txt"
python3 - "$dir/out.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
lat = sorted(r["latency_ms"] for r in rows)
span = rows[-1]["t_s"] - rows[0]["t_s"] if len(rows) > 1 else 0
print(f"predictions: {len(rows)} over {span:.1f} s of stream -> {len(rows) / max(span, 1e-9):.2f} per second"
      f" (every 0.5 s would be 2.00); latency median {statistics.median(lat):.0f} ms, worst {lat[-1]:.0f} ms")
PY
