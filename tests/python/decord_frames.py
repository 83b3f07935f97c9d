#!/usr/bin/env python3
"""Reads frames of a video with decord 0.6.0 (PaddleVideo's reader) for Kineto's tests.

usage: decord_frames.py VIDEO OUT.npy [INDEX ...]

Without indices: every frame, read in order (`get_batch(range(len))`: decord decodes straight
through from the first frame and counts, no seek). With indices: one `get_batch(indices)` on a
fresh reader, as PaddleVideo's decord pipeline calls it (decord seeks to key frames).
Writes the frames as uint8 [N, H, W, 3] to OUT.npy and prints one JSON line:
{"len": len(VideoReader), "fps": get_avg_fps(), "indices": [...]}.
"""
import json
import sys

import decord
import numpy as np


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    video, out = sys.argv[1], sys.argv[2]
    vr = decord.VideoReader(video)
    n = len(vr)
    indices = [int(i) for i in sys.argv[3:]] or list(range(n))
    frames = vr.get_batch(indices).asnumpy()
    np.save(out, np.ascontiguousarray(frames, dtype=np.uint8))
    print(json.dumps({"len": n, "fps": vr.get_avg_fps(), "indices": indices}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
