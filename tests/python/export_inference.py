"""PaddleVideo inference models made the way its tools/export_model.py makes them (eval, rep()
on every RepDepthwiseSeparable, to_static with InputSpec [None, T, 3, 224, 224], jit.save), from
the fixtures' weights, for tests/inference_models.rs.

Usage: export_inference.py FIXTURES OUT pir|legacy
  pir     Paddle 3's format (NAME.json + NAME.pdiparams): pptsmv2_8f, pptsmv2_16f_att, pptsm_r50,
          and linear (a graph that is no Kineto model)
  legacy  Paddle 2's format (NAME.pdmodel + NAME.pdiparams + NAME.pdiparams.info): pptsm_r50
          (paddle 3.3.1's legacy program mode; PP-TSMv2's tensor methods do not trace there)
"""
import os
import sys

FX, OUT, MODE = sys.argv[1], sys.argv[2], sys.argv[3]
if MODE == "legacy":
    os.environ["FLAGS_enable_pir_api"] = "0"  # read when paddle is imported

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(FX, "make"))
import paddle  # noqa: E402
from paddle.static import InputSpec  # noqa: E402

import models  # noqa: E402
import ppv  # noqa: E402


def load(*rel):
    sd = {}
    for r in rel:
        sd.update({k: np.asarray(v) for k, v in paddle.load(os.path.join(FX, r)).items()})
    return sd


def export(name, cfg, sd, t):
    m = models.build(cfg)
    models.load_np(m, sd)
    m.eval()
    models.rep(m)
    st = paddle.jit.to_static(m, input_spec=[[InputSpec([None, t, 3, 224, 224], "float32")]])
    paddle.jit.save(st, os.path.join(OUT, name))


def main():
    os.makedirs(OUT, exist_ok=True)
    r50 = load("pptsm_r50/w.pdparams")
    if MODE == "legacy":
        export("pptsm_r50", ppv.PPTSM_R50, r50, 8)
    else:
        w8 = load("pptsmv2/w8.pdparams")
        export("pptsmv2_8f", ppv.PPTSMV2_8F, w8, 8)
        att = load("pptsmv2/w8.pdparams", "pptsmv2/att16_extra.pdparams")
        export("pptsmv2_16f_att", ppv.PPTSMV2_16F_ATT, att, 16)
        export("pptsm_r50", ppv.PPTSM_R50, r50, 8)
        paddle.seed(0)
        lin = paddle.jit.to_static(paddle.nn.Linear(4, 3),
                                   input_spec=[InputSpec([None, 4], "float32")])
        paddle.jit.save(lin, os.path.join(OUT, "linear"))
    print(" ".join(sorted(os.listdir(OUT))))


if __name__ == "__main__":
    main()
