"""Kineto on a real GPU (issue 24), in one call: logits against the fixtures at several batch
sizes, `kineto bench --device gpu` over batch sizes, CubeCL's per-kernel profile of one batched
forward, and `kineto classify --device gpu` of a folder with its end-to-end rate beside the
decode-only rate. Run from .gpu-base/ (a baseline build alone), it times and profiles that
build only. Runs from the folder pack_gpu.sh staged; writes JSON lines to $OUT/gpu.jsonl, the
profiles to $OUT, and prints a summary last. DEADLINE_S (default 420) skips the steps that
would start later."""
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

SRC = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, SRC)
from stage import decompress, maxabs, recorder, run_steps, unpack  # noqa: E402
D = "/tmp/kgpu"
OUT = os.environ.get("OUT", "/tmp/out")
DEADLINE = float(os.environ.get("DEADLINE_S", "420"))
T0 = time.time()
SUMMARY = []
rec = recorder(f"{OUT}/gpu.jsonl", T0)


def unpack_all():
    unpack(SRC, D, ("kineto", "lib/gst-plugin-scanner"))
    # A baseline staged beside this folder (.gpu-base/) comes along when the call carried it.
    base = os.path.join(os.path.dirname(SRC), ".gpu-base", "kineto-base.xz")
    if os.path.exists(base) and not os.path.exists(f"{D}/kineto-base"):
        decompress(base, f"{D}/kineto-base", remove=False)
    if os.path.exists(f"{D}/kineto-base"):
        os.chmod(f"{D}/kineto-base", 0o755)


unpack_all()
FX = f"{D}/fx"
W = f"{FX}/w8.pdparams"
BINS = {name: f"{D}/{file}" for name, file in (("new", "kineto"), ("base", "kineto-base"))
        if os.path.exists(f"{D}/{file}")}
ENV = dict(os.environ, LD_LIBRARY_PATH=f"{D}/lib", XDG_RUNTIME_DIR="/tmp",
           KINETO_CACHE_DIR="/tmp/kcache", GST_PLUGIN_SYSTEM_PATH=f"{D}/lib/gst",
           GST_PLUGIN_PATH=f"{D}/lib/gst", GST_REGISTRY="/tmp/gst-registry.bin",
           GST_PLUGIN_SCANNER=f"{D}/lib/gst-plugin-scanner")


def run(cmd, env=None, timeout=180, cwd=None):
    try:
        p = subprocess.run(cmd, env=env or ENV, capture_output=True, text=True, timeout=timeout,
                           cwd=cwd)
        return p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        return 124, "", f"TIMEOUT after {timeout} s"
    except Exception as e:  # noqa: BLE001
        return 1, "", repr(e)


def info():
    rc, gpu, _ = run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                      "--format=csv,noheader"])
    rec({"step": "gpu", "out": gpu.strip()})
    for name, k in BINS.items():
        rc, out, err = run([k, "--version"])
        rec({"step": "version", "bin": name, "out": out.strip(), "err": err.strip()[-300:]})
    SUMMARY.append(f"GPU: {gpu.strip()}; cores: {os.cpu_count()}")


def logits(k, x, tag):
    inp, outp = f"/tmp/in_{tag}.npy", f"/tmp/out_{tag}.npy"
    np.save(inp, x.astype(np.float32))
    t = time.time()
    rc, out, err = run([k, "logits", "--device", "gpu", "--weights", W, "--input", inp,
                        "--output", outp], timeout=240)
    if rc != 0:
        return None, err.strip()[-400:], time.time() - t
    return np.load(outp).reshape(x.shape[0], -1), err.strip()[-200:], time.time() - t


def parity():
    """Rows alternate the fixture clip and its mirror image: each row must match its own
    single-clip answer (no cross-talk in a batch), the fixture rows PaddleVideo's logits."""
    for T in (8,):
        x = np.load(f"{FX}/example_{T}f_input.npy").reshape(1, T, 3, 224, 224)
        ref = np.load(f"{FX}/logits224_{T}f_fused.npy").reshape(-1)
        flip = x[..., ::-1].copy()
        y1, err, dt = logits(BINS["new"], x, f"{T}b1")
        if y1 is None:
            rec({"step": "parity", "frames": T, "batch": 1, "err": err})
            SUMMARY.append(f"parity {T}f b1: FAILED {err}")
            continue
        yf, _, _ = logits(BINS["new"], flip, f"{T}flip")
        d1 = maxabs(y1[0], ref)
        rec({"step": "parity", "frames": T, "batch": 1, "max_abs": d1, "secs": round(dt, 1)})
        SUMMARY.append(f"parity {T}f b1: max_abs {d1:.2e} vs PaddleVideo ({dt:.1f} s incl. start)")
        for B in ((2, 3, 8, 32) if T == 8 else (2, 16)):
            xb = np.concatenate([x if i % 2 == 0 else flip for i in range(B)])
            yb, err, dt = logits(BINS["new"], xb, f"{T}b{B}")
            if yb is None:
                rec({"step": "parity", "frames": T, "batch": B, "err": err})
                SUMMARY.append(f"parity {T}f b{B}: FAILED {err}")
                continue
            d_ref = max(maxabs(yb[i], ref) for i in range(0, B, 2))
            d_flip = max(maxabs(yb[i], yf[0]) for i in range(1, B, 2)) if yf is not None else None
            rec({"step": "parity", "frames": T, "batch": B, "max_abs": d_ref,
                 "mirror_vs_alone": d_flip, "secs": round(dt, 1)})
            SUMMARY.append(f"parity {T}f b{B}: max_abs {d_ref:.2e} vs PaddleVideo, mirrored rows "
                           f"{d_flip if d_flip is None else f'{d_flip:.2e}'} vs alone")


def bench(name, T, B, runs=10, warmup=3, extra_env=None, cwd=None):
    env = dict(ENV, **(extra_env or {}))
    # Random weights (the same network): a baseline call carries no weights file.
    rc, out, err = run([BINS[name], "bench", "--device", "gpu", "--frames", str(T), "--batch",
                        str(B), "--runs", str(runs), "--warmup", str(warmup), "--json", "-q"],
                       env=env, cwd=cwd, timeout=240)
    if rc != 0:
        rec({"step": "bench", "bin": name, "frames": T, "batch": B, "err": err.strip()[-400:]})
        return None
    j = json.loads(out.strip().splitlines()[-1])
    ms = j["median_ms"]
    rec({"step": "bench", "bin": name, "frames": T, "batch": B, "median_ms": ms,
         "min_ms": j.get("min_ms"), "clips_per_s": round(B * 1000 / ms, 1),
         "adapter": j.get("adapter")})
    return ms


def sweep(name, pairs):
    line = []
    for T, B in pairs:
        if time.time() - T0 > DEADLINE:
            line.append(f"{T}f b{B}: skipped (deadline)")
            continue
        ms = bench(name, T, B, runs=5 if name == "base" and B >= 16 else 10)
        line.append(f"{T}f b{B} {ms} ms = {round(B * 1000 / ms, 1) if ms else None} clips/s")
    SUMMARY.append(f"bench {name}: " + "; ".join(line))


def profile(name, T, B):
    """CubeCL's own profiler: every kernel timed (synchronised, so slower than the bench),
    with a summary per kernel name at each read-back."""
    cwd = f"/tmp/prof_{name}"
    os.makedirs(cwd, exist_ok=True)
    log = f"{OUT}/profile_{name}_{T}f_b{B}.log"
    with open(f"{cwd}/cubecl.toml", "w") as f:
        f.write(f'[profiling.logger]\nlevel = "basic"\nfile = "{log}"\nappend = false\n')
    t = time.time()
    ms = bench(name, T, B, runs=1, warmup=1, cwd=cwd)
    size = os.path.getsize(log) if os.path.exists(log) else 0
    top = summarise(log) if size else []
    rec({"step": "profile", "bin": name, "frames": T, "batch": B, "log_bytes": size,
         "secs": round(time.time() - t, 1), "median_ms_profiled": ms, "top": top})
    SUMMARY.append(f"profile {name} {T}f b{B}: {ms} ms profiled; by kernel (launches, ms): "
                   + "; ".join(f"{k} x{n} {t:.1f}" for k, n, t in top[:10]))
    if size > 12 << 20:
        subprocess.run(["gzip", "-f", log])


UNITS = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1e3}


def summarise(log):
    """Kernel launches and time (ms) per kernel family, largest first; the profile covers the
    warm-up and the timed forward (and, with autotune, its first trials)."""
    import re
    total = {}
    for line in open(log, errors="replace"):
        m = re.match(r"\|\s*([0-9.]+)(ns|µs|us|ms|s)\s*\|\s*(.*)", line)
        if not m:
            continue
        name = re.sub(r"_[0-9a-f]{8}$", "", m.group(3).strip()).split(" | ")[0][:40]
        n, t = total.get(name, (0, 0.0))
        total[name] = (n + 1, t + float(m.group(1)) * UNITS[m.group(2)])
    return sorted(((k, n, round(t, 2)) for k, (n, t) in total.items()), key=lambda x: -x[2])


def classify():
    """A folder of 256 VP8 clips (copies of the staged 16) classified on the GPU."""
    folder = "/tmp/clips256"
    os.makedirs(folder, exist_ok=True)
    clips = sorted(os.listdir(f"{D}/clips"))
    for i in range(256):
        shutil.copy(f"{D}/clips/{clips[i % len(clips)]}", f"{folder}/c{i:03d}.webm")
    for args in ([], ["--decoders", "1", "--batch", "1"]):
        t = time.time()
        rc, out, err = run([BINS["new"], "classify", "--device", "gpu", "--weights", W,
                            "--format", "csv", folder] + args, timeout=300)
        wall = time.time() - t
        rows = max(0, len(out.strip().splitlines()) - 1)
        line = [l for l in err.splitlines() if "clips/s" in l]
        rec({"step": "classify", "args": args, "rc": rc, "rows": rows, "wall_s": round(wall, 1),
             "line": line[-1] if line else None, "err": None if rc == 0 else err[-600:]})
        SUMMARY.append(f"classify {args or 'defaults'}: rc {rc}, {rows} rows, {wall:.1f} s: "
                       f"{line[-1] if line else err.strip()[-300:]}")


def main():
    if "new" in BINS:
        steps = [
            info,
            parity,
            lambda: sweep("new", [(8, 1), (8, 8), (8, 32), (16, 1), (16, 32)]),
            lambda: profile("new", 8, 32),
            lambda: sweep("base", [(8, 1), (8, 8), (8, 32)]) if "base" in BINS else None,
            classify,
            lambda: profile("base", 8, 8) if "base" in BINS else None,
            lambda: sweep("new", [(8, 2), (8, 4), (8, 16), (8, 64), (16, 8), (16, 16)]),
        ]
    else:
        steps = [
            info,
            lambda: sweep("base", [(8, 1), (8, 8), (8, 32), (16, 1)]),
            lambda: profile("base", 8, 8),
        ]
    run_steps(steps, T0, DEADLINE, SUMMARY, rec)

if __name__ == "__main__":
    main()
