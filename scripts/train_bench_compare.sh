#!/usr/bin/env bash
# One full fine-tuning step side by side: `kineto bench --case train` (burn autodiff on the CPU
# for the PP-TSM ResNet, f32, the model's recipe) and PaddlePaddle's dygraph step of the same
# model with the same weights, batch, frames and size (scripts/paddle_train_bench.py), both with
# the same number of threads, interleaved round by round so that both see the same machine
# load. Each round runs each tool once (a median of --runs steps after --warmup); the summary
# is the median over rounds of those medians.
#
# usage: scripts/train_bench_compare.sh [options]
#   --kineto BIN     kineto binary (default: $CARGO_TARGET_DIR/release/kineto, else debug)
#   --python PY      python with paddlepaddle 3.3.1 + ppvideo 2.3.1
#                    (default: $KINETO_PADDLE_PYTHON, else /root/.cache/kineto/paddle-venv/bin/python)
#   --fixtures DIR   the fixtures (default: $KINETO_FIXTURES, else ../shared/fixtures)
#   --model M        r50 (default) or v2
#   --rounds N       rounds (default 2)
#   --runs N         timed steps per tool and round (default 3)
#   --warmup N       untimed steps first (default 1)
#   --frames N       num_seg (default 8)
#   --size N         crop size (default 112)
#   --batch N        clips per step (default 1)
#   --threads N      threads of both (default 2)
#   --out FILE       raw JSON lines (default: a temporary file)
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$here/target}"
kineto=""
python="${KINETO_PADDLE_PYTHON:-/root/.cache/kineto/paddle-venv/bin/python}"
fixtures="${KINETO_FIXTURES:-$here/../shared/fixtures}"
model=r50 rounds=2 runs=3 warmup=1 frames=8 size=112 batch=1 threads=2 out=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --kineto) kineto="$2"; shift 2 ;;
    --python) python="$2"; shift 2 ;;
    --fixtures) fixtures="$2"; shift 2 ;;
    --model) model="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    --frames) frames="$2"; shift 2 ;;
    --size) size="$2"; shift 2 ;;
    --batch) batch="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
if [[ -z "$kineto" ]]; then
  for c in "$target/release/kineto" "$target/debug/kineto"; do
    [[ -x "$c" ]] && { kineto="$c"; break; }
  done
fi
[[ -x "$kineto" ]] || { echo "no kineto binary (build it, or pass --kineto)" >&2; exit 2; }
case "$model" in
  r50) weights="$fixtures/pptsm_r50/w.pdparams" ;;
  v2) weights="$fixtures/pptsmv2/w8.pdparams" ;;
  *) echo "--model is r50 or v2, not $model" >&2; exit 2 ;;
esac
[[ -n "$out" ]] || out="$(mktemp /tmp/train_bench_compare.XXXXXX.jsonl)"
: > "$out"
echo "kineto: $kineto; raw results: $out" >&2

for ((r = 1; r <= rounds; r++)); do
  "$python" "$here/scripts/paddle_train_bench.py" --fixtures "$fixtures" --model "$model" \
    --frames "$frames" --size "$size" --batch "$batch" --threads "$threads" \
    --steps "$runs" --warmup "$warmup" 2>/dev/null \
    | grep '^{' | sed "s/^{/{\"round\": $r, /" >> "$out"
  "$kineto" --device cpu --threads "$threads" bench --case train --weights "$weights" \
    --frames "$frames" --size "$size" --batch "$batch" --runs "$runs" --warmup "$warmup" --json \
    | sed "s/^{/{\"tool\":\"kineto\",\"round\":$r,/" >> "$out"
  echo "round $r done" >&2
done

"$python" - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
groups = {}
for r in rows:
    groups.setdefault(r["tool"], []).append(r)
print(f"{'tool':<8} {'frames':>6} {'size':>5} {'batch':>5} {'threads':>7} {'median ms':>10}  rounds")
for tool, v in sorted(groups.items()):
    med = statistics.median(x["median_ms"] for x in v)
    r0 = v[0]
    print(f"{tool:<8} {r0['frames']:>6} {r0['size']:>5} {r0['batch']:>5} {r0['threads']:>7} "
          f"{med:>10.1f}  " + " ".join(f"{x['median_ms']:.1f}" for x in v))
PY
