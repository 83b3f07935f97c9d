#!/usr/bin/env python3
"""Checks that PaddlePaddle itself loads a .pdparams written by `kineto export`, and that every
array equals the reference bit for bit.

usage: check_pdparams.py EXPORT.pdparams REFERENCE [REFERENCE ...]

Each REFERENCE is a .pdparams (loaded with paddle.load as well) or a .npz; later references add
keys to earlier ones (e.g. w8.pdparams + att16_extra.pdparams). Paddle's non-parameter entry
`StructuredToParameterName@@` is ignored. The export is loaded three ways: paddle.load (Tensors,
as PaddleVideo does), paddle.load(return_numpy=True), and a plain pickle.load with this numpy.
Exit status 0 only when the key sets are equal and every array has the same dtype (float32),
shape and bits; otherwise 1, with one line per difference.
"""
import pickle
import sys

import numpy as np
import paddle

SKIP = "StructuredToParameterName@@"


def as_numpy(value):
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "numpy"):
        return value.numpy()
    return np.asarray(value)


def load_pdparams(path, **kwargs):
    obj = paddle.load(path, **kwargs)
    if not isinstance(obj, dict):
        raise SystemExit(f"{path}: paddle.load gave {type(obj).__name__}, not a dict")
    return {k: as_numpy(v) for k, v in obj.items() if k != SKIP}


def load_reference(paths):
    ref = {}
    for path in paths:
        if path.endswith(".npz"):
            with np.load(path) as z:
                ref.update({k: z[k] for k in z.files})
        else:
            ref.update(load_pdparams(path))
    return ref


def compare(label, ours, ref):
    problems = []
    for key in sorted(set(ref) - set(ours)):
        problems.append(f"{label}: missing {key}")
    for key in sorted(set(ours) - set(ref)):
        problems.append(f"{label}: unexpected {key}")
    for key in sorted(set(ours) & set(ref)):
        a, b = ours[key], ref[key]
        if a.dtype != np.float32:
            problems.append(f"{label}: {key} has dtype {a.dtype}, expected float32")
            continue
        if a.shape != b.shape:
            problems.append(f"{label}: {key} has shape {a.shape}, expected {b.shape}")
            continue
        b32 = b.astype(np.float32)
        same = np.array_equal(
            np.ascontiguousarray(a).view(np.uint32), np.ascontiguousarray(b32).view(np.uint32)
        )
        if not same:
            diff = float(np.max(np.abs(a.astype(np.float64) - b32.astype(np.float64))))
            problems.append(f"{label}: {key} differs (max abs diff {diff:g})")
    return problems


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    export, refs = argv[1], argv[2:]
    ref = load_reference(refs)
    with open(export, "rb") as f:
        raw = pickle.load(f)
    loads = {
        "paddle.load": load_pdparams(export),
        "paddle.load(return_numpy=True)": load_pdparams(export, return_numpy=True),
        "pickle.load": {k: as_numpy(v) for k, v in raw.items() if k != SKIP},
    }
    problems = []
    for label, ours in loads.items():
        problems += compare(label, ours, ref)
    values = sum(int(v.size) for v in ref.values())
    print(
        f"{export}: {len(ref)} keys, {values} values; paddle {paddle.__version__}, "
        f"numpy {np.__version__}; {len(problems)} differences"
    )
    for p in problems[:50]:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
