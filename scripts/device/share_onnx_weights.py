"""Rewrite the anchor's two ONNX files (fixtures/anchor/make_onnx.py: pptsmv2_{8,16}f.onnx, ~23.5 MB
each, the same weights under different names) as two small graphs reading one external weight
file, so that both fit a device-machine call. Checks both against the fixture logits.
Usage: python share_onnx_weights.py ONNX_CACHE OUT_DIR FIXTURES   (needs onnx, onnxruntime)"""
import hashlib
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import external_data_helper, numpy_helper

WEIGHTS = "pptsmv2_w.bin"


def digest(t):
    a = numpy_helper.to_array(t)
    return hashlib.sha256(a.tobytes() + str(a.shape).encode() + str(a.dtype).encode()).hexdigest()


def main(cache, out, fixtures):
    os.makedirs(out, exist_ok=True)
    m8 = onnx.load(os.path.join(cache, "pptsmv2_8f.onnx"))
    m16 = onnx.load(os.path.join(cache, "pptsmv2_16f.onnx"))
    names = {t.name: digest(t) for t in m8.graph.initializer}
    external_data_helper.convert_model_to_external_data(
        m8, all_tensors_to_one_file=True, location=WEIGHTS, size_threshold=1024)
    onnx.save(m8, os.path.join(out, "pptsmv2_8f.onnx"))
    saved = onnx.load(os.path.join(out, "pptsmv2_8f.onnx"), load_external_data=False)
    where = {names[t.name]: list(t.external_data) for t in saved.graph.initializer
             if t.data_location == onnx.TensorProto.EXTERNAL}
    for t in m16.graph.initializer:
        entries = where.get(digest(t)) if len(t.raw_data) >= 1024 else None
        if entries:
            t.ClearField("raw_data")
            t.data_location = onnx.TensorProto.EXTERNAL
            del t.external_data[:]
            for e in entries:
                t.external_data.add(key=e.key, value=e.value)
    with open(os.path.join(out, "pptsmv2_16f.onnx"), "wb") as f:
        f.write(m16.SerializeToString())
    for frames in (8, 16):
        s = ort.InferenceSession(os.path.join(out, f"pptsmv2_{frames}f.onnx"),
                                 providers=["CPUExecutionProvider"])
        x = np.load(os.path.join(fixtures, "video", f"example_{frames}f_input.npy"))[None]
        y = s.run(None, {s.get_inputs()[0].name: x})[0]
        ref = np.load(os.path.join(fixtures, "pptsmv2", f"logits224_{frames}f.npy"))
        print(f"pptsmv2_{frames}f.onnx: max |onnx - fixture logits| = {np.abs(y - ref).max():.2e}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
