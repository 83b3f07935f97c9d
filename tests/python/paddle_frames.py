#!/usr/bin/env python3
"""A frame dataset made and read the way PaddleVideo does, for Kineto's tests.

usage: paddle_frames.py VIDEO OUT_DIR [QUALITY]

1. Extraction: every frame of VIDEO read by decord 0.6.0 (PaddleVideo's video reader), saved
   with Pillow as OUT_DIR/clip/img_{:05}.jpg, numbered from 1 (FrameDataset's default suffix),
   JPEG quality QUALITY (default 95).
2. PaddleVideo's own test pipeline on that folder (FrameDecoder -> Sampler(8, 1,
   valid_mode=True) -> Scale(256) -> CenterCrop(224) -> Image2Array -> Normalization), with
   every file the Sampler opens recorded: OUT_DIR/frames_u8.npy (the sampled RGB frames, uint8
   [8,H,W,3]), OUT_DIR/input.npy (float32 [8,3,224,224]).
3. The dense sampler (Sampler(8, 1, valid_mode=True, dense_sample=True)) on the same folder:
   the files it opens.
Prints one JSON line: {"frames_len", "uniform_files", "dense_files"}.
Deterministic: nothing random is drawn (valid mode).
"""
import json
import os
import sys

import decord
import numpy as np
from PIL import Image

sys.path.insert(0, os.path.join(os.environ.get("KINETO_FIXTURES", "../shared/fixtures"), "make"))
import ppv  # noqa: E402

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    video, out = sys.argv[1], sys.argv[2]
    quality = int(sys.argv[3]) if len(sys.argv) > 3 else 95
    clip = os.path.join(out, "clip")
    os.makedirs(clip, exist_ok=True)
    vr = decord.VideoReader(video)
    n = len(vr)
    for i in range(n):
        Image.fromarray(vr[i].asnumpy()).save(os.path.join(clip, "img_{:05}.jpg".format(i + 1)),
                                              quality=quality)

    dec = ppv.mod("loader.pipelines.decode")
    smp = ppv.mod("loader.pipelines.sample")
    aug = ppv.mod("loader.pipelines.augmentations")
    opened = []
    real_open = Image.open

    def recording_open(path, *a, **k):
        opened.append(os.path.basename(path))
        return real_open(path, *a, **k)

    smp.Image.open = recording_open

    def results():
        # FrameDataset.load_file's dict for the list line `clip n 0`
        return {"frame_dir": clip, "suffix": "img_{:05}.jpg", "frames_len": str(n), "labels": 0}

    r = dec.FrameDecoder()(results())
    r = smp.Sampler(8, 1, valid_mode=True)(r)
    uniform_files = list(opened)
    np.save(os.path.join(out, "frames_u8.npy"),
            np.stack([np.asarray(im) for im in r["imgs"]]).astype(np.uint8))
    r = aug.Scale(256)(r)
    r = aug.CenterCrop(224)(r)
    r = aug.Image2Array()(r)
    r = aug.Normalization(MEAN, STD)(r)
    np.save(os.path.join(out, "input.npy"), np.ascontiguousarray(r["imgs"], dtype=np.float32))

    opened.clear()
    r = dec.FrameDecoder()(results())
    smp.Sampler(8, 1, valid_mode=True, dense_sample=True)(r)
    dense_files = list(opened)
    print(json.dumps({"frames_len": n, "uniform_files": uniform_files,
                      "dense_files": dense_files}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
