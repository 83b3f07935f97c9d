"""What check.py and gpu.py share: unpacking the folder a pack script staged."""
import lzma
import os
import shutil
import tarfile

import numpy as np


def unpack(src, dst, executables):
    """Copy src to dst, decompressing the .xz files (what travelled is compressed) and
    extracting lib.tar.xz; `executables` (paths under dst) are made executable if present."""
    if os.path.exists(dst):
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    for root, _, files in os.walk(dst):
        for f in files:
            if f.endswith(".xz") and not f.endswith(".tar.xz"):
                decompress(os.path.join(root, f), os.path.join(root, f[:-3]))
    with tarfile.open(f"{dst}/lib.tar.xz") as t:
        t.extractall(dst)
    for name in executables:
        if os.path.exists(f"{dst}/{name}"):
            os.chmod(f"{dst}/{name}", 0o755)


def decompress(xz, out, remove=True):
    with lzma.open(xz) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    if remove:
        os.remove(xz)


def maxabs(a, b):
    return float(np.abs(np.asarray(a, np.float64).reshape(-1)
                        - np.asarray(b, np.float64).reshape(-1)).max())
