"""How far int8 moves Kineto's answers: top-1 agreement with fp32 and the largest change of a
class's softmax probability over every timeline window of real clips, for two models, plus the
classification accuracy of a trained model before and after quantization.

Clips: the fixtures' video/example.avi and two demo sets made by `kineto demo-data` (different
seeds: one to calibrate and train on, one to measure on; the measuring set is never seen by
calibration or training). Models: (a) the fixtures' pptsmv2/w8.pdparams; (b) a head-only model
trained on the first demo set (`kineto train --head-only`). Each is quantized with `kineto
quantize --calib` on the first demo set, then `kineto timeline --top-k 400` (every class's
probability) runs each measured clip in fp32 and in int8 (window 1 s, stride 0.25 s), and `kineto
eval` scores (b) on the measuring set in both precisions.

Usage: python scripts/int8_accuracy.py --kineto BIN [--fixtures DIR] [--work DIR]
    [--clips-per-class 16] [--estimator percentile] [--percentile 99.99] [--smoothing ALPHA]
    [--keep-fp32 LAYER,...|none] [--smooth-layers LAYER,...|all] [--weight-bits 7|8]
    [--input-bits 7|8] [--models fixture_w8,head_only_demo]
(--smoothing, --smooth-layers, --keep-fp32, --weight-bits and --input-bits are passed to
`kineto quantize`; absent, its defaults.)
Prints one JSON line per model and a summary line.
"""
import argparse
import glob
import json
import os
import subprocess

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def run(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def windows(kineto, weights, clip, precision, out):
    run([kineto, "--device", "cpu", "timeline", clip, "--weights", weights, "--precision",
         precision, "--window-s", "1", "--stride-s", "0.25", "--top-k", "400", "--format", "json",
         "--output", out, "--quiet"])
    with open(out) as f:
        record = json.load(f)
    probs = []
    for w in record["windows"]:
        p = np.zeros(len(w["top_k"]))
        for r in w["top_k"]:
            p[r["label_id"]] = r["score"]
        probs.append(p)
    return probs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kineto", required=True)
    ap.add_argument("--fixtures", default=os.path.join(HERE, "..", "..", "shared", "fixtures"))
    ap.add_argument("--work", default="/tmp/kineto-int8-accuracy")
    ap.add_argument("--clips-per-class", type=int, default=16)
    ap.add_argument("--estimator", default="percentile")
    ap.add_argument("--percentile", default="99.99")
    ap.add_argument("--smoothing")
    ap.add_argument("--keep-fp32")
    ap.add_argument("--smooth-layers")
    ap.add_argument("--weight-bits")
    ap.add_argument("--input-bits")
    ap.add_argument("--models", default="fixture_w8,head_only_demo",
                    help="which of the two models to measure")
    a = ap.parse_args()
    options = []
    for flag, value in (("--smoothing", a.smoothing), ("--keep-fp32", a.keep_fp32),
                        ("--smooth-layers", a.smooth_layers), ("--weight-bits", a.weight_bits),
                        ("--input-bits", a.input_bits)):
        if value is not None:
            options += [flag, value]
    k = a.kineto
    os.makedirs(a.work, exist_ok=True)
    train, test = os.path.join(a.work, "demo_train"), os.path.join(a.work, "demo_test")
    for folder, seed in ((train, "0"), (test, "1")):
        if not os.path.isdir(folder):
            run([k, "demo-data", folder, "--classes", "4", "--clips-per-class",
                 str(a.clips_per_class), "--seed", seed, "--quiet"])
    w8 = os.path.join(a.fixtures, "pptsmv2", "w8.pdparams")
    head = os.path.join(a.work, "head_only.safetensors")
    if not os.path.exists(head):
        run([k, "--device", "cpu", "train", train, "--head-only", "--weights", w8, "--output",
             head, "--run-dir", os.path.join(a.work, "run"), "--force", "--quiet"])
    clips = sorted(p for p in glob.glob(os.path.join(test, "*", "*"))
                   if p.lower().endswith((".mp4", ".mkv", ".avi", ".mov", ".webm")))
    clips.append(os.path.join(a.fixtures, "video", "example.avi"))
    summary = {}
    models = [(n, w) for n, w in (("fixture_w8", w8), ("head_only_demo", head))
              if n in a.models.split(",")]
    for name, weights in models:
        quantized = os.path.join(a.work, f"{name}_int8.safetensors")
        run([k, "--device", "cpu", "quantize", "--weights", weights, "--calib", train,
             "--clips", "64", "--estimator", a.estimator, "--percentile", a.percentile,
             *options, "--output", quantized, "--quiet"])
        same, total, worst = 0, 0, 0.0
        for i, clip in enumerate(clips):
            fp32 = windows(k, weights, clip, "fp32", os.path.join(a.work, f"{name}_{i}_fp32.json"))
            int8 = windows(k, quantized, clip, "int8", os.path.join(a.work, f"{name}_{i}_int8.json"))
            for p, q in zip(fp32, int8):
                total += 1
                same += int(p.argmax() == q.argmax())
                worst = max(worst, float(np.abs(p - q).max()))
        line = {"model": name, "windows": total, "clips": len(clips),
                "top1_agreement": round(same / total, 4), "max_probability_change": round(worst, 4),
                "estimator": a.estimator, "options": options}
        if name == "head_only_demo":
            for prec, file in (("fp32", weights), ("int8", quantized)):
                report = json.loads(run([k, "--device", "cpu", "eval", test, "--weights", file,
                                         "--precision", prec, "--format", "json", "--quiet"]))
                line[f"demo_top1_{prec}"] = report["top1"]
        print(json.dumps(line), flush=True)
        summary[name] = line
    print(json.dumps({"summary": summary}), flush=True)


if __name__ == "__main__":
    main()
