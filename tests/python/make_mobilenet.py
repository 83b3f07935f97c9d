#!/usr/bin/env python3
"""Reference outputs of PP-TSM MobileNetV2 and MobileNetV3 from PaddleVideo's own code, with
seeded, realistic random weights (made here at test time, never committed).

usage: make_mobilenet.py FIXTURES OUT_DIR [mv2|mv3 ...]

FIXTURES is Kineto's fixture folder (its make/ppv.py imports PaddleVideo's modules from the
installed ppvideo 2.3.1 wheel; video/example_{8,16}f_input.npy are PaddleVideo's preprocessed
example clip). For each model NAME it writes into OUT_DIR:

  NAME.pdparams         paddle.save(Recognizer2D.state_dict()): backbone.* keys, float32 values
                        rounded to bfloat16-representable floats
  NAME_act64.npz        `input` [1,8,3,64,64] and every block's output (names as the Rust trace
                        records them: PaddleVideo's attribute paths under `backbone`), `features`
                        (the fc's input) and `logits`
  NAME_io64_16f.npz     `input` [1,16,3,64,64], `logits`: the same weights at num_seg 16
  NAME_logits224.npy    [1,400] logits on video/example_8f_input.npy (num_seg 8)
  NAME_logits224_16f.npy [1,400] logits on video/example_16f_input.npy (num_seg 16)
  NAME_top5.json        PaddleVideo's top-5 class ids and softmax scores on the 8f example

Weights: convolutions keep PaddleVideo's own init (KaimingNormal, from the backbone's
init_weights), BatchNorm gamma ~ U[0.5, 1.5], beta ~ U[-0.2, 0.2], every bias ~ U[-0.1, 0.1];
each BatchNorm's running mean and variance are its input's statistics on a calibration batch
(the example clip and a noisy copy), the mean shifted by -U[0.5, 1]·std so most outputs are
positive, the variance floored at 5% of the layer's median. Everything is seeded.
"""
import json
import os
import sys
import tempfile

import numpy as np
import paddle
import paddle.nn as nn

SEEDS = {"mv2": 7202, "mv3": 7303}
CONFIGS = {
    # The MODEL sections of pptsm_mv2_k400_videos_uniform.yaml and
    # pptsm_mv3_k400_frames_uniform.yaml (pretrained dropped; class_num defaults to 400).
    "mv2": {"framework": "Recognizer2D",
            "backbone": {"name": "PPTSM_MobileNetV2", "num_seg": 8},
            "head": {"name": "MoViNetHead"}},
    "mv3": {"framework": "Recognizer2D",
            "backbone": {"name": "PPTSM_MobileNetV3", "num_seg": 8},
            "head": {"name": "MoViNetHead"}},
}


def bf16_round(a):
    a = np.ascontiguousarray(a, dtype=np.float32)
    u = a.view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32).reshape(a.shape)


def is_bn(layer):
    return isinstance(layer, (nn.BatchNorm, nn.BatchNorm2D))


def randomise(model, rng):
    for layer in model.sublayers():
        if is_bn(layer):
            c = layer.weight.shape[0]
            layer.weight.set_value(rng.uniform(0.5, 1.5, c).astype(np.float32))
            layer.bias.set_value(rng.uniform(-0.2, 0.2, c).astype(np.float32))
        elif isinstance(layer, (nn.Conv2D, nn.Linear)) and layer.bias is not None:
            n = layer.bias.shape[0]
            layer.bias.set_value(rng.uniform(-0.1, 0.1, n).astype(np.float32))


def calibrate(model, x, rng):
    model.eval()

    def hook(layer, inp):
        v = inp[0].numpy().astype(np.float64)
        mean = v.mean(axis=(0, 2, 3))
        var = v.var(axis=(0, 2, 3))
        var = np.maximum(var, 0.05 * np.median(var))
        mean = mean - rng.uniform(0.5, 1.0, mean.shape) * np.sqrt(var)
        layer._mean.set_value(mean.astype(np.float32))
        layer._variance.set_value(var.astype(np.float32))

    handles = [l.register_forward_pre_hook(hook) for l in model.sublayers() if is_bn(l)]
    with paddle.no_grad():
        model([paddle.to_tensor(np.ascontiguousarray(x, np.float32))], mode="test")
    for h in handles:
        h.remove()


def set_num_seg(model, num_seg):
    """num_seg is a plain attribute of the backbone and of every block (shift ratio, mean)."""
    for layer in [model] + model.sublayers():
        if hasattr(layer, "num_seg"):
            layer.num_seg = num_seg


def forward(model, x):
    with paddle.no_grad():
        return model([paddle.to_tensor(np.ascontiguousarray(x, np.float32))],
                     mode="infer").numpy()


def probe_layers(name, backbone):
    """(trace name, layer, post|pre) in forward order."""
    if name == "mv2":
        from paddlevideo.modeling.backbones.pptsm_mv2 import InvertedResidualUnit
        probes = [("conv1", backbone.conv1, "post")]
        probes += [(n, l, "post") for n, l in backbone.named_sublayers()
                   if isinstance(l, InvertedResidualUnit)]
        probes += [("conv9", backbone.conv9, "post"),
                   ("pool2d_avg", backbone.pool2d_avg, "post"),
                   ("features", backbone.out, "pre"),
                   ("logits", backbone.out, "post")]
    else:
        probes = [("conv", backbone.conv, "post")]
        probes += [(f"blocks.{i}", b, "post") for i, b in enumerate(backbone.blocks)]
        probes += [("last_second_conv", backbone.last_second_conv, "post"),
                   ("avg_pool", backbone.avg_pool, "post"),
                   ("hardswish", backbone.hardswish, "post"),
                   ("features", backbone.fc, "pre"),
                   ("logits", backbone.fc, "post")]
    return probes


def activations(name, model, x):
    acts, handles = {}, []
    for trace_name, layer, kind in probe_layers(name, model.backbone):
        if kind == "post":
            def hook(l, inp, out, n=trace_name):
                acts[n] = np.array(out.numpy(), np.float32)
            handles.append(layer.register_forward_post_hook(hook))
        else:
            def hook(l, inp, n=trace_name):
                acts[n] = np.array(inp[0].numpy(), np.float32)
            handles.append(layer.register_forward_pre_hook(hook))
    forward(model, x)
    for h in handles:
        h.remove()
    return acts


def random_clip(rng, t, size):
    """A smooth random clip, normalised like PaddleVideo's pipeline output."""
    coarse = rng.uniform(0, 255, (t, 3, 8, 8))
    up = np.kron(coarse, np.ones((1, 1, size // 8, size // 8)))
    u8 = np.clip(np.rint(up + rng.normal(0, 6, up.shape)), 0, 255) / 255.0
    mean = np.array([0.485, 0.456, 0.406]).reshape(3, 1, 1)
    std = np.array([0.229, 0.224, 0.225]).reshape(3, 1, 1)
    return ((u8 - mean) / std).astype(np.float32)[None]


def make(name, fixtures, out):
    import ppv
    seed = SEEDS[name]
    rng = np.random.default_rng(seed)
    paddle.seed(seed)
    model = ppv.build_recognizer(CONFIGS[name])
    randomise(model, rng)
    x8 = np.load(os.path.join(fixtures, "video", "example_8f_input.npy"))[None]
    x16 = np.load(os.path.join(fixtures, "video", "example_16f_input.npy"))[None]
    calib = np.concatenate([x8, x8 + rng.normal(0, 0.25, x8.shape).astype(np.float32)], 0)
    calibrate(model, calib, rng)
    model.set_state_dict({k: bf16_round(v.numpy()) for k, v in model.state_dict().items()})
    model.eval()
    paddle.save(model.state_dict(), os.path.join(out, f"{name}.pdparams"))

    x64 = random_clip(rng, 8, 64)
    acts = activations(name, model, x64)
    np.savez(os.path.join(out, f"{name}_act64.npz"), input=x64, **acts)
    logits224 = forward(model, x8)
    np.save(os.path.join(out, f"{name}_logits224.npy"), logits224.astype(np.float32))
    e = np.exp(logits224[0].astype(np.float64) - logits224[0].max())
    p = e / e.sum()
    top = np.argsort(-p, kind="stable")[:5]
    with open(os.path.join(out, f"{name}_top5.json"), "w") as f:
        json.dump({"class_ids": [int(i) for i in top], "scores": [float(p[i]) for i in top]}, f)

    set_num_seg(model, 16)
    x64_16 = random_clip(rng, 16, 64)
    np.savez(os.path.join(out, f"{name}_io64_16f.npz"), input=x64_16,
             logits=forward(model, x64_16).astype(np.float32))
    np.save(os.path.join(out, f"{name}_logits224_16f.npy"),
            forward(model, x16).astype(np.float32))


def main():
    fixtures, out = sys.argv[1], sys.argv[2]
    names = sys.argv[3:] or ["mv2", "mv3"]
    paddle.set_device("cpu")
    sys.path.insert(0, os.path.join(fixtures, "make"))
    import ppv
    ppv.setup()
    # PaddleVideo's logger writes ./paddlevideo/.log.txt on import: import from a temp dir.
    cwd = os.getcwd()
    os.chdir(tempfile.gettempdir())
    try:
        ppv._load("paddlevideo.modeling.backbones.pptsm_mv2")
        ppv._load("paddlevideo.modeling.backbones.pptsm_mv3")
    finally:
        os.chdir(cwd)
    for name in names:
        make(name, fixtures, out)
    print(json.dumps({"made": names}))


if __name__ == "__main__":
    main()
