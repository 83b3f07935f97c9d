"""Kineto's ONNX export beside Paddle2ONNX's, timed by ONNX Runtime in the same process.

Paddle2ONNX's files are what the fixtures' `anchor/make_onnx.py CACHE` writes (PaddleVideo's
export_model.py steps + paddle2onnx, opset 13: CACHE/pptsmv2_{8,16}f.onnx, PP-TSMv2 with the
fixture weights w8.pdparams). Kineto's are exported here from the same weights with
`kineto export --format onnx --frames T`. Both run with the anchors' `ort_bench.py` protocol
(CPU EP, intra_op threads = --threads, inter_op 1, ORT_ENABLE_ALL, batch 1, input
video/example_{T}f_input.npy, warm-up runs, then the median of N runs), interleaved round by
round so that both see the same machine load; the summary is the median over rounds.

Usage (a python with onnxruntime and numpy, e.g. the anchors' venv):
  python scripts/onnx_bench_compare.py --kineto BIN --cache CACHE [--fixtures DIR]
      [--frames 8,16] [--threads 1] [--rounds 3] [--runs 20] [--warmup 3] [--out DIR]
Prints one JSON line per (export, frames, threads, round), then one summary line per
(export, frames, threads) with the max |logits - fixture| of each file.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort

HERE = os.path.dirname(os.path.abspath(__file__))


def session(path, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def time_runs(s, x, runs, warmup):
    feed = {s.get_inputs()[0].name: x}
    for _ in range(warmup):
        s.run(None, feed)
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        s.run(None, feed)
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts), min(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kineto", required=True)
    ap.add_argument("--cache", required=True, help="anchor/make_onnx.py's output folder")
    ap.add_argument("--fixtures", default=os.path.join(HERE, "..", "..", "shared", "fixtures"))
    ap.add_argument("--frames", default="8,16")
    ap.add_argument("--threads", default="1")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--out", default=None, help="where Kineto's exports go (default: temp)")
    a = ap.parse_args()
    out = a.out or tempfile.mkdtemp(prefix="kineto-onnx-bench-")
    frames = [int(v) for v in a.frames.split(",")]
    threads = [int(v) for v in a.threads.split(",")]
    files = {}
    for t in frames:
        kineto_file = os.path.join(out, f"kineto_pptsmv2_{t}f.onnx")
        subprocess.run([a.kineto, "export", "--weights",
                        os.path.join(a.fixtures, "pptsmv2", "w8.pdparams"), "--format", "onnx",
                        "--frames", str(t), "--output", kineto_file, "--quiet"], check=True)
        files[("kineto", t)] = kineto_file
        files[("paddle2onnx", t)] = os.path.join(a.cache, f"pptsmv2_{t}f.onnx")
    inputs = {t: np.load(os.path.join(a.fixtures, "video", f"example_{t}f_input.npy"))[None]
              for t in frames}
    diffs = {}
    for (name, t), path in files.items():
        s = session(path, 1)
        y = s.run(None, {s.get_inputs()[0].name: inputs[t]})[0]
        ref = np.load(os.path.join(a.fixtures, "pptsmv2", f"logits224_{t}f.npy"))
        diffs[(name, t)] = float(np.abs(y - ref).max())
    medians = {}
    for r in range(1, a.rounds + 1):
        for t in frames:
            for th in threads:
                for name in ("paddle2onnx", "kineto"):
                    s = session(files[(name, t)], th)
                    med, low = time_runs(s, inputs[t], a.runs, a.warmup)
                    medians.setdefault((name, t, th), []).append(med)
                    print(json.dumps({"export": name, "round": r, "frames": t, "threads": th,
                                      "batch": 1, "size": 224, "runs": a.runs,
                                      "median_ms": round(med, 2), "min_ms": round(low, 2)}),
                          flush=True)
    for (name, t, th), meds in medians.items():
        print(json.dumps({"summary": True, "export": name, "frames": t, "threads": th,
                          "engine": "onnxruntime " + ort.__version__, "rounds": a.rounds,
                          "median_of_medians_ms": round(statistics.median(meds), 2),
                          "max_abs_diff_fixture": diffs[(name, t)],
                          "file_mb": round(os.path.getsize(files[(name, t)]) / 1e6, 2)}),
              flush=True)


if __name__ == "__main__":
    sys.exit(main())
