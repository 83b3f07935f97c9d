#!/usr/bin/env python3
"""Runs an ONNX file written by `kineto export --format onnx` in ONNX Runtime (CPU).

usage: ort_logits.py MODEL.onnx INPUT.npy OUT.npy [INPUT.npy OUT.npy ...]

Each INPUT is float32 [N, T, 3, H, W]; its OUT gets the float32 logits. The model is first checked with
onnx's checker (full check: shape inference included). Prints one JSON line: the opset, the
input and output names and shapes as declared (symbolic dimensions by name), the metadata
(`metadata_props`) and the ONNX Runtime version.
"""
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort


def dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def main():
    model_path, pairs = sys.argv[1], sys.argv[2:]
    model = onnx.load(model_path)
    onnx.checker.check_model(model, full_check=True)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    session = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
    shapes = []
    for input_path, out_path in zip(pairs[0::2], pairs[1::2]):
        x = np.load(input_path).astype(np.float32, copy=False)
        (y,) = session.run(None, {session.get_inputs()[0].name: x})
        np.save(out_path, np.ascontiguousarray(y, dtype=np.float32))
        shapes.append(list(y.shape))
    print(json.dumps({
        "onnxruntime": ort.__version__,
        "opset": [[o.domain, o.version] for o in model.opset_import],
        "ir_version": model.ir_version,
        "inputs": [[i.name, dims(i)] for i in model.graph.input],
        "outputs": [[o.name, dims(o)] for o in model.graph.output],
        "ops": sorted({n.op_type for n in model.graph.node}),
        "metadata": {p.key: p.value for p in model.metadata_props},
        "output_shapes": shapes,
    }))


if __name__ == "__main__":
    main()
