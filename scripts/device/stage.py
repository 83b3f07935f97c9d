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


def run_steps(steps, t0, deadline, summary, rec):
    """Runs each step until `deadline` seconds after t0 (later ones are skipped and said so), a
    step's exception recorded rather than ending the run; then prints the summary."""
    import time
    for step in steps:
        name = getattr(step, "__name__", "?")
        if time.time() - t0 > deadline:
            summary.append(f"SKIPPED {name}: past the deadline")
            continue
        try:
            step()
        except Exception as e:  # noqa: BLE001
            rec({"step": "exception", "where": name, "err": repr(e)})
            summary.append(f"EXCEPTION in {name}: {e!r}")
    print("\n==== SUMMARY ({:.0f} s) ====".format(time.time() - t0))
    for line in summary:
        print(line)


def recorder(path, t0):
    """A function that prints a dict as a JSON line (with seconds since t0) and appends it to
    `path`."""
    import json
    import time
    log = open(path, "a")

    def rec(d):
        d["t"] = round(time.time() - t0, 1)
        line = json.dumps(d)
        print(line, flush=True)
        log.write(line + "\n")
        log.flush()

    return rec
