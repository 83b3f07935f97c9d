"""Kineto's CPU forward (`kineto bench`) beside ONNX Runtime on the same models' own ONNX exports,
interleaved round by round in one run: PP-TSMv2 and the PP-TSM MobileNetV2 / MobileNetV3.

Weights: PP-TSMv2 is the fixtures' pptsmv2/w8.pdparams; the MobileNets are the seeded random
weights of tests/python/make_mobilenet.py (what tests/parity_mobilenet.rs makes), written into
--weights-dir if they are not there yet (which needs PaddleVideo's venv, the python running
this). Nothing is committed. Each model is exported with `kineto export --format onnx --frames
T`, checked once (ONNX Runtime's logits against `kineto logits` on the example clip), then timed:
`kineto --device cpu --threads N bench --weights W --json` (fused form, the engine's CPU path:
median of --runs after --warmup, input in memory) and, in this process, ONNX Runtime with the
anchors' `ort_bench.py` protocol (`onnx_bench_compare.py`'s session: CPU EP, intra_op threads N,
inter_op 1, ORT_ENABLE_ALL, batch 1, video/example_{T}f_input.npy). The summary is the median
over rounds, and Kineto's time over ORT's.

Usage (a python with onnxruntime and numpy, and paddle + ppvideo to make the MobileNets):
  python scripts/cpu_bench_compare.py --kineto BIN [--fixtures DIR] [--weights-dir DIR]
      [--models pptsmv2,mv2,mv3] [--frames 8] [--threads 1,2] [--rounds 3] [--runs 20]
      [--warmup 3]
Prints one JSON line per (model, threads, round, engine), then one summary line per (model,
threads).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

import numpy as np
import onnxruntime as ort

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from onnx_bench_compare import session, time_runs  # noqa: E402


def weights_of(model, fixtures, weights_dir):
    if model == "pptsmv2":
        return os.path.join(fixtures, "pptsmv2", "w8.pdparams")
    path = os.path.join(weights_dir, f"{model}.pdparams")
    if not os.path.exists(path):
        os.makedirs(weights_dir, exist_ok=True)
        script = os.path.join(HERE, "..", "tests", "python", "make_mobilenet.py")
        subprocess.run([sys.executable, script, fixtures, weights_dir, model], check=True)
    return path


def kineto_bench(kineto, weights, frames, threads, runs, warmup):
    out = subprocess.run([kineto, "--device", "cpu", "--threads", str(threads), "bench",
                          "--weights", weights, "--frames", str(frames), "--runs", str(runs),
                          "--warmup", str(warmup), "--json"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kineto", required=True)
    ap.add_argument("--fixtures", default=os.path.join(HERE, "..", "..", "shared", "fixtures"))
    ap.add_argument("--weights-dir", default="/tmp/kineto-cpu-bench")
    ap.add_argument("--models", default="pptsmv2,mv2,mv3")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    a = ap.parse_args()
    models = a.models.split(",")
    threads = [int(v) for v in a.threads.split(",")]
    t = a.frames
    clip = os.path.join(a.fixtures, "video", f"example_{t}f_input.npy")
    x = np.load(clip)[None]
    weights, onnx_files, diffs = {}, {}, {}
    for m in models:
        weights[m] = weights_of(m, a.fixtures, a.weights_dir)
        onnx_files[m] = os.path.join(a.weights_dir, f"{m}_{t}f.onnx")
        subprocess.run([a.kineto, "export", "--weights", weights[m], "--format", "onnx",
                        "--frames", str(t), "--output", onnx_files[m], "--quiet"], check=True)
        ours = os.path.join(a.weights_dir, f"{m}_{t}f_logits.npy")
        subprocess.run([a.kineto, "logits", "--device", "cpu", "--weights", weights[m],
                        "--input", clip, "--output", ours], check=True, capture_output=True)
        s = session(onnx_files[m], 1)
        y = s.run(None, {s.get_inputs()[0].name: x})[0]
        diffs[m] = float(np.abs(y - np.load(ours).reshape(y.shape)).max())
    medians = {}
    for r in range(1, a.rounds + 1):
        for m in models:
            for th in threads:
                k = kineto_bench(a.kineto, weights[m], t, th, a.runs, a.warmup)
                medians.setdefault((m, th, "kineto"), []).append(k["median_ms"])
                print(json.dumps({"engine": "kineto", "model": m, "round": r, "frames": t,
                                  "threads": th, "path": k.get("path"),
                                  "cpu_simd": k.get("cpu_simd"), "median_ms": k["median_ms"],
                                  "min_ms": k["min_ms"]}), flush=True)
                med, low = time_runs(session(onnx_files[m], th), x, a.runs, a.warmup)
                medians.setdefault((m, th, "ort"), []).append(med)
                print(json.dumps({"engine": "onnxruntime", "model": m, "round": r, "frames": t,
                                  "threads": th, "median_ms": round(med, 2),
                                  "min_ms": round(low, 2)}), flush=True)
    for m in models:
        for th in threads:
            ours = statistics.median(medians[(m, th, "kineto")])
            theirs = statistics.median(medians[(m, th, "ort")])
            print(json.dumps({"summary": True, "model": m, "frames": t, "threads": th,
                              "size": 224, "batch": 1, "rounds": a.rounds,
                              "kineto_ms": round(ours, 2), "ort_ms": round(theirs, 2),
                              "kineto_over_ort": round(ours / theirs, 3),
                              "ort": "onnxruntime " + ort.__version__,
                              "max_abs_diff_ort_vs_kineto": diffs[m]}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
