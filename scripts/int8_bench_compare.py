"""Kineto's int8 and fp32 CPU forward beside ONNX Runtime's fp32 and int8, interleaved round by
round in one run: PP-TSMv2 (the fixtures' pptsmv2/w8.pdparams) at 8 and 16 frames.

The int8 models are made from the same calibration clips: Kineto's by `kineto quantize --weights
W --calib CALIB --clips N --frames T`, ONNX Runtime's by `onnxruntime.quantization.
quantize_static` (QDQ format, per-channel int8 weights, uint8 activations, the same N clips
preprocessed by `kineto preprocess`, MinMax calibration) on Kineto's ONNX export of W. Timing
follows the anchors' `ort_bench.py` protocol (CPU EP, intra_op threads N, inter_op 1,
ORT_ENABLE_ALL, batch 1, input video/example_{T}f_input.npy, warm-up, then the median of --runs)
and `kineto --device cpu --threads N bench --weights F --precision P --json` (the same protocol,
input in memory). Each engine's int8 logits are compared with its fp32 logits on the example
clip (top-1 and the largest softmax-probability change).

Usage (a python with onnxruntime, numpy, and ml_dtypes and sympy, which onnxruntime.quantization
imports):
  python scripts/int8_bench_compare.py --kineto BIN --calib DIR [--clips 32] [--fixtures DIR]
      [--work DIR] [--frames 8,16] [--threads 1,2] [--rounds 3] [--runs 20] [--warmup 3]
Prints one JSON line per (engine, precision, frames, threads, round), then one summary line per
(frames, threads) with each median and the ratios to ORT fp32.
"""
import argparse
import glob
import json
import os
import statistics
import subprocess
import sys

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                      QuantType, quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from onnx_bench_compare import session, time_runs  # noqa: E402

VIDEO_EXT = (".mp4", ".avi", ".mkv", ".mov", ".webm")


def run(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def calibration_clips(calib, wanted):
    """The clips `kineto quantize` picks: sorted, spread evenly."""
    clips = sorted(p for p in glob.glob(os.path.join(calib, "**", "*"), recursive=True)
                   if p.lower().endswith(VIDEO_EXT))
    if len(clips) > wanted:
        clips = [clips[i * len(clips) // wanted] for i in range(wanted)]
    return clips


class Clips(CalibrationDataReader):
    def __init__(self, name, tensors):
        self.items = iter([{name: t} for t in tensors])

    def get_next(self):
        return next(self.items, None)


def softmax(v):
    e = np.exp(v - v.max())
    return e / e.sum()


def agreement(a, b):
    a, b = a.reshape(-1), b.reshape(-1)
    return {"top1_same": bool(a.argmax() == b.argmax()),
            "max_probability_change": float(np.abs(softmax(a) - softmax(b)).max())}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kineto", required=True)
    ap.add_argument("--calib", required=True, help="a folder of calibration videos")
    ap.add_argument("--clips", type=int, default=32)
    ap.add_argument("--fixtures", default=os.path.join(HERE, "..", "..", "shared", "fixtures"))
    ap.add_argument("--work", default="/tmp/kineto-int8-bench")
    ap.add_argument("--frames", default="8,16")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    w = os.path.join(a.fixtures, "pptsmv2", "w8.pdparams")
    clips = calibration_clips(a.calib, a.clips)
    frames = [int(v) for v in a.frames.split(",")]
    threads = [int(v) for v in a.threads.split(",")]
    models = {}
    for t in frames:
        x = np.load(os.path.join(a.fixtures, "video", f"example_{t}f_input.npy"))[None]
        kq = os.path.join(a.work, f"pptsmv2_{t}f_int8.safetensors")
        run([a.kineto, "quantize", "--weights", w, "--calib", a.calib, "--clips", str(a.clips),
             "--frames", str(t), "--output", kq, "--quiet"])
        fp32 = os.path.join(a.work, f"pptsmv2_{t}f.onnx")
        run([a.kineto, "export", "--weights", w, "--format", "onnx", "--frames", str(t),
             "--output", fp32, "--quiet"])
        tensors = []
        for i, clip in enumerate(clips):
            npy = os.path.join(a.work, f"calib_{t}f_{i}.npy")
            run([a.kineto, "preprocess", clip, "--frames", str(t), "--output", npy])
            tensors.append(np.load(npy)[None].astype(np.float32))
        pre = os.path.join(a.work, f"pptsmv2_{t}f_pre.onnx")
        quant_pre_process(fp32, pre)
        q = os.path.join(a.work, f"pptsmv2_{t}f_int8_qdq.onnx")
        name = ort.InferenceSession(fp32, providers=["CPUExecutionProvider"]).get_inputs()[0].name
        quantize_static(pre, q, Clips(name, tensors), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
        # Accuracy on the example clip, each engine's int8 against its own fp32.
        example = os.path.join(a.work, f"example_{t}f.npy")
        np.save(example, x)
        logits = {}
        for prec, weights in (("fp32", w), ("int8", kq)):
            out = os.path.join(a.work, f"kineto_{t}f_{prec}_logits.npy")
            run([a.kineto, "logits", "--device", "cpu", "--weights", weights, "--input", example,
                 "--output", out, "--precision", prec])
            logits[("kineto", prec)] = np.load(out)
        for prec, path in (("fp32", fp32), ("int8", q)):
            logits[("ort", prec)] = session(path, 1).run(None, {name: x})[0]
        print(json.dumps({"frames": t, "example_clip": {
            "kineto_int8_vs_fp32": agreement(logits[("kineto", "fp32")], logits[("kineto", "int8")]),
            "ort_int8_vs_fp32": agreement(logits[("ort", "fp32")], logits[("ort", "int8")]),
        }}), flush=True)
        models[t] = {"x": x, "kineto": {"fp32": w, "int8": kq}, "ort": {"fp32": fp32, "int8": q}}

    results = {}
    for t in frames:
        for th in threads:
            for r in range(a.rounds):
                for prec in ("fp32", "int8"):
                    out = run([a.kineto, "--device", "cpu", "--threads", str(th), "bench",
                               "--weights", models[t]["kineto"][prec], "--precision", prec,
                               "--frames", str(t), "--runs", str(a.runs), "--warmup",
                               str(a.warmup), "--json"])
                    k = json.loads(out.strip().splitlines()[-1])
                    line = {"engine": "kineto", "precision": prec, "frames": t, "threads": th,
                            "round": r, "median_ms": k["median_ms"], "cpu_simd": k["cpu_simd"],
                            "int8_simd": k.get("int8_simd")}
                    print(json.dumps(line), flush=True)
                    results.setdefault((t, th, "kineto", prec), []).append(k["median_ms"])
                    s = session(models[t]["ort"][prec], th)
                    med, _ = time_runs(s, models[t]["x"], a.runs, a.warmup)
                    line = {"engine": "onnxruntime " + ort.__version__, "precision": prec,
                            "frames": t, "threads": th, "round": r, "median_ms": round(med, 2)}
                    print(json.dumps(line), flush=True)
                    results.setdefault((t, th, "ort", prec), []).append(med)
            m = {f"{e}_{p}": statistics.median(results[(t, th, e, p)])
                 for e in ("kineto", "ort") for p in ("fp32", "int8")}
            base = m["ort_fp32"]
            print(json.dumps({"summary": True, "frames": t, "threads": th,
                              **{k: round(v, 2) for k, v in m.items()},
                              **{f"{k}_over_ort_fp32": round(v / base, 3) for k, v in m.items()},
                              "kineto_int8_over_ort_int8": round(m["kineto_int8"] / m["ort_int8"], 3)}),
                  flush=True)


if __name__ == "__main__":
    main()
