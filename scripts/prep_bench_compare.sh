#!/usr/bin/env bash
# Decode + preprocess side by side: the anchors' prep_bench.py (decord + Pillow, one thread)
# and `kineto bench --case preprocess` (1 and 2 threads), interleaved round by round so that
# both see the same machine load. Each round runs every configuration once (a median of
# --runs after --warmup); the summary is the median over rounds of those medians.
#
# usage: scripts/prep_bench_compare.sh [options] VIDEO...
#   --kineto BIN     kineto binary (default: $CARGO_TARGET_DIR/release/kineto, else debug)
#   --python PY      python of the anchor venv (default /root/.cache/kineto/anchor-venv/bin/python)
#   --anchor DIR     folder of prep_bench.py (default ../shared/fixtures/anchor)
#   --rounds N       rounds (default 3)
#   --runs N         timed runs per configuration and round (default 15)
#   --warmup N       untimed runs first (default 3)
#   --frames LIST    num_seg values (default 8,16)
#   --threads LIST   Kineto thread counts (default 1,2)
#   --out FILE       raw JSON lines (default: a temporary file)
# Long clips (10 minutes of 720p H.264, see prep_bench.py's docstring) take seconds per run:
# use e.g. --runs 3 --warmup 1 for them.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$here/target}"
kineto=""
python="/root/.cache/kineto/anchor-venv/bin/python"
anchor="$here/../shared/fixtures/anchor"
rounds=3 runs=15 warmup=3 frames="8,16" threads="1,2" out=""
videos=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --kineto) kineto="$2"; shift 2 ;;
    --python) python="$2"; shift 2 ;;
    --anchor) anchor="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    --frames) frames="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) videos+=("$1"); shift ;;
  esac
done
if [[ -z "$kineto" ]]; then
  for c in "$target/release/kineto" "$target/debug/kineto"; do
    [[ -x "$c" ]] && { kineto="$c"; break; }
  done
fi
[[ -x "$kineto" ]] || { echo "no kineto binary (build it, or pass --kineto)" >&2; exit 2; }
[[ ${#videos[@]} -gt 0 ]] || videos=("$here/../shared/fixtures/video/example.avi")
[[ -n "$out" ]] || out="$(mktemp /tmp/prep_bench_compare.XXXXXX.jsonl)"
: > "$out"
echo "kineto: $kineto; raw results: $out" >&2

for ((r = 1; r <= rounds; r++)); do
  for v in "${videos[@]}"; do
    for t in ${frames//,/ }; do
      "$python" "$anchor/prep_bench.py" "$v" --frames "$t" --runs "$runs" --warmup "$warmup" \
        | sed "s/^{/{\"tool\": \"reference\", \"round\": $r, \"threads\": 1, /" >> "$out"
      for th in ${threads//,/ }; do
        "$kineto" bench --case preprocess --video "$v" --frames "$t" --threads "$th" \
          --runs "$runs" --warmup "$warmup" --json \
          | sed "s/^{/{\"tool\":\"kineto\",\"round\":$r,/" >> "$out"
      done
    done
  done
  echo "round $r done" >&2
done

"$python" - "$out" <<'EOF'
import json, os, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
groups = {}
for r in rows:
    video = os.path.basename(r["video"])
    key = (video, r["frames"], r["tool"], r["threads"])
    total = r.get("median_ms", r.get("total_ms"))
    decode = r.get("decode_median_ms", r.get("decode_ms"))
    prep = r.get("transform_median_ms", r.get("preprocess_ms"))
    groups.setdefault(key, []).append((total, decode, prep))
print(f"{'video':<22} {'frames':>6} {'tool':<10} {'threads':>7} {'total ms':>9} {'decode':>8} {'prep':>8}  rounds (total)")
for key in sorted(groups):
    v = groups[key]
    med = [statistics.median(x[i] for x in v) for i in range(3)]
    print(f"{key[0]:<22} {key[1]:>6} {key[2]:<10} {key[3]:>7} {med[0]:>9.1f} {med[1]:>8.1f} {med[2]:>8.1f}  "
          + " ".join(f"{x[0]:.1f}" for x in v))
EOF
