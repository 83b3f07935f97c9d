"""PaddlePaddle CPU full fine-tuning step, timed the way `kineto bench --case train` times
Kineto's: one step = train-mode forward through PaddleVideo's Recognizer2D, the config's loss,
backward, the config's optimizer update (Momentum 0.9 Nesterov, L2 1e-4, the ParamAttrs' lr
multipliers and exemptions), clear_grad; warm-up step(s), then the median of N steps.

Models (fixture weights, ../shared/fixtures): `r50` = PP-TSM ResNet-50 (ResNetTweaksTSM +
ppTSMHead, label smoothing 0.1 as pptsm_k400_frames_uniform.yaml; its head's dropout 0.5 runs,
Kineto's step has dropout off), `v2` = PP-TSMv2 8f (plain CE). The same batch of seeded random
frames as the anchors' (`common.random_input`), labels i % 400.

This is the anchors' `paddle_train_bench.py` (PP-TSMv2, SGD) widened to the ResNet and to the
recipe's optimizer; it needs the fixtures' `make/` helpers and the venv of `.ci/run`
(paddlepaddle 3.3.1, ppvideo 2.3.1). scripts/train_bench_compare.sh runs it beside Kineto.

Usage: python paddle_train_bench.py [--model r50] [--frames 8] [--size 112] [--batch 1]
       [--steps 5] [--warmup 1] [--threads 2] [--fixtures DIR]
"""
import argparse
import json
import os
import sys

ap = argparse.ArgumentParser()
ap.add_argument("--model", choices=["r50", "v2"], default="r50")
ap.add_argument("--frames", type=int, default=8)
ap.add_argument("--size", type=int, default=112)
ap.add_argument("--batch", type=int, default=1)
ap.add_argument("--steps", type=int, default=5)
ap.add_argument("--warmup", type=int, default=1)
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--fixtures", default=os.environ.get(
    "KINETO_FIXTURES",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "fixtures")))
a = ap.parse_args()
for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[v] = str(a.threads)

import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

FX = os.path.abspath(a.fixtures)
sys.path.insert(0, os.path.join(FX, "make"))
import paddle  # noqa: E402
import paddle.nn.functional as F  # noqa: E402

import common  # noqa: E402
import models  # noqa: E402
import ppv  # noqa: E402


def main():
    paddle.set_device("cpu")
    if a.model == "r50":
        cfg, weights, eps = ppv.PPTSM_R50, os.path.join(FX, "pptsm_r50", "w.pdparams"), 0.1
        cfg = dict(cfg, backbone=dict(cfg["backbone"], num_seg=a.frames),
                   head=dict(cfg["head"], num_seg=a.frames))
    else:
        cfg, weights, eps = ppv.PPTSMV2_8F, os.path.join(FX, "pptsmv2", "w8.pdparams"), 0.0
        cfg = dict(cfg, backbone=dict(cfg["backbone"], num_seg=a.frames))
    sd = {k: np.asarray(v) for k, v in paddle.load(weights).items()}
    m = models.build(cfg)
    models.load_np(m, sd)
    m.train()
    opt = paddle.optimizer.Momentum(learning_rate=1e-3, momentum=0.9, use_nesterov=True,
                                    weight_decay=paddle.regularizer.L2Decay(1e-4),
                                    parameters=m.parameters())
    x = np.stack([common.random_input(7 + i, a.frames, a.size, a.size) for i in range(a.batch)])
    x = paddle.to_tensor(x)
    labels = np.array([[i % 400] for i in range(a.batch)], np.int64)
    y = paddle.to_tensor(labels)
    soft = None
    if eps > 0:
        soft = F.label_smooth(F.one_hot(paddle.to_tensor(labels[:, 0]), 400), epsilon=eps)
    ts = []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        logits = m([x.clone()], mode="test")
        if soft is None:
            loss = F.cross_entropy(logits, y)
        else:
            loss = F.cross_entropy(logits, soft, soft_label=True)
        loss.backward()
        opt.step()
        opt.clear_grad()
        dt = (time.perf_counter() - t0) * 1e3
        if i >= a.warmup:
            ts.append(dt)
    print(json.dumps({"tool": "paddle", "engine": "paddle " + paddle.__version__
                      + " dygraph cpu train step", "model": a.model, "frames": a.frames,
                      "size": a.size, "batch": a.batch, "threads": a.threads,
                      "steps": a.steps, "median_ms": round(statistics.median(ts), 1),
                      "min_ms": round(min(ts), 1)}), flush=True)


if __name__ == "__main__":
    main()
