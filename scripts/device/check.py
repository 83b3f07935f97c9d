"""Kineto's checks on a device machine, in one call (see README.md beside this file): the
parity suite and the fixture logits on the CPU with every kernel width the CPU has, ONNX
Runtime beside `kineto bench` (alternating, pinned to the same cores), the live update and a
training step, then the fixture logits and a bench on the GPU (wgpu over Vulkan).
Runs from the folder pack.sh staged; writes JSON lines to $OUT/results.jsonl and prints a
summary last. ROUNDS (default 3) sets the speed rounds, DEADLINE_S (default 460) skips the
steps that would start later."""
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

SRC = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, SRC)
from stage import maxabs, recorder, run_steps, unpack  # noqa: E402
D = os.environ.get("KDEV", "/tmp/kdev")
OUT = os.environ.get("OUT", "/tmp/out")
ROUNDS = int(os.environ.get("ROUNDS", "3"))


unpack(SRC, D, ("kineto", "parity_nhwc"))
FX = f"{D}/fx"
W = f"{FX}/pptsmv2/w8.pdparams"
K = f"{D}/kineto"

T0 = time.time()
BASE_ENV = dict(os.environ, LD_LIBRARY_PATH=f"{D}/lib", XDG_RUNTIME_DIR="/tmp",
                KINETO_FIXTURES=FX, KINETO_CACHE_DIR="/tmp/kcache")
SUMMARY = []
rec = recorder(f"{OUT}/results.jsonl", T0)


def run(cmd, env=None, timeout=240):
    try:
        p = subprocess.run(cmd, env=env or BASE_ENV, capture_output=True, text=True, timeout=timeout)
        return p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        return 124, e.stdout or "", (e.stderr or "") + " TIMEOUT"
    except Exception as e:  # noqa: BLE001
        return 1, "", repr(e)


def pick_cpus():
    """Two CPUs on different physical cores (not 0)."""
    rc, out, _ = run(["lscpu", "-p=CPU,CORE"])
    seen, cpus = set(), []
    for line in out.splitlines():
        if line.startswith("#"):
            continue
        cpu, core = line.split(",")[:2]
        if cpu == "0" or core in seen:
            continue
        seen.add(core)
        cpus.append(cpu)
    return cpus[:2]


CPUS = pick_cpus()
HAVE_TASKSET = shutil.which("taskset") is not None


def pinned(cmd, threads):
    if not HAVE_TASKSET or len(CPUS) < threads:
        return cmd
    return ["taskset", "-c", ",".join(CPUS[:threads])] + cmd


def simd_env(simd):
    return dict(BASE_ENV, KINETO_CPU_SIMD=simd)


def info():
    rc, out, _ = run(["lscpu"])
    open(f"{OUT}/lscpu.txt", "w").write(out)
    model = [l for l in out.splitlines() if l.startswith("Model name")]
    flags = [l for l in out.splitlines() if l.startswith("Flags")]
    f = flags[0] if flags else ""
    rec({"step": "info", "cpu": model[0] if model else "?", "avx512f": " avx512f" in f,
         "avx512_fp16": "avx512_fp16" in f, "nproc": os.cpu_count(), "pinned_cpus": CPUS,
         "taskset": HAVE_TASKSET})
    rc, out, err = run(["nvidia-smi", "-L"])
    rec({"step": "gpu", "out": out.strip()[:300]})
    rc, out, err = run([K, "--version"])
    rec({"step": "kineto", "rc": rc, "out": out.strip(), "err": err.strip()[-500:]})
    import onnxruntime as ort
    rec({"step": "ort", "version": ort.__version__})


def parity_suite():
    for simd in ("avx512", "avx2"):
        rc, out, err = run([f"{D}/parity_nhwc", "--test-threads", "2"], env=simd_env(simd), timeout=300)
        tail = (out + err).strip().splitlines()[-3:]
        rec({"step": "parity_nhwc", "simd": simd, "rc": rc, "tail": tail})
        SUMMARY.append(f"parity_nhwc ({simd}): {'PASS' if rc == 0 else 'FAIL rc=' + str(rc)}")
        if rc != 0:
            open(f"{OUT}/parity_{simd}.log", "w").write(out + err)


def logits(device, T, threads, env, batch2=False, timeout=150):
    x = np.load(f"{FX}/video/example_{T}f_input.npy")
    inp = f"/tmp/in_{T}f_{'b2' if batch2 else 'b1'}.npy"
    if not os.path.exists(inp):
        np.save(inp, np.stack([x, x]) if batch2 else x)
    outp = f"/tmp/logits_{device}_{T}.npy"
    t = time.time()
    rc, out, err = run([K, "logits", "--device", device, "--threads", str(threads), "--weights", W,
                        "--input", inp, "--output", outp], env=env, timeout=timeout)
    dt = time.time() - t
    if rc != 0:
        return None, err.strip()[-400:], dt
    y = np.load(outp)
    ref = np.load(f"{FX}/pptsmv2/logits224_{T}f_fused.npy").reshape(-1)
    rows = y.reshape(2 if batch2 else 1, -1)
    return max(maxabs(r, ref) for r in rows), err.strip()[-300:], dt


def parity_cli():
    for simd in ("avx512", "avx2"):
        for T in (8, 16):
            for th in (1, 2):
                d, err, dt = logits("cpu", T, th, simd_env(simd))
                rec({"step": "logits", "device": "cpu", "simd": simd, "frames": T, "threads": th,
                     "max_abs": d, "err": None if d is not None else err})
                SUMMARY.append(f"cpu {simd} {T}f {th}t max_abs {d}")
        d, err, dt = logits("cpu", 8, 2, simd_env(simd), batch2=True)
        rec({"step": "logits", "device": "cpu", "simd": simd, "frames": 8, "batch": 2, "max_abs": d,
             "err": None if d is not None else err})
        SUMMARY.append(f"cpu {simd} 8f batch2 max_abs {d}")


def parity_gpu():
    for T in (8, 16):
        d, err, dt = logits("gpu", T, 0, BASE_ENV)
        rec({"step": "logits", "device": "gpu", "frames": T, "max_abs": d, "secs": round(dt, 1),
             "log": err})
        SUMMARY.append(f"gpu {T}f max_abs {d} ({dt:.1f} s incl. start)")
    d, err, dt = logits("gpu", 8, 0, BASE_ENV, batch2=True)
    rec({"step": "logits", "device": "gpu", "frames": 8, "batch": 2, "max_abs": d, "log": err})
    SUMMARY.append(f"gpu 8f batch2 max_abs {d}")


def ort_time(T, th):
    rc, out, err = run(pinned([sys.executable, f"{FX}/anchor/ort_bench.py", f"{D}/onnx", "--frames",
                               str(T), "--threads", str(th)], th), env=dict(os.environ))
    if rc != 0:
        return None, err.strip()[-300:]
    j = json.loads(out.strip().splitlines()[-1])
    return j, None


def kineto_time(T, th, simd, device="cpu", batch=1, case="infer", extra=()):
    cmd = [K, "bench", "--case", case, "--device", device, "--frames", str(T), "--batch", str(batch),
           "--weights", W, "--json", "-q"] + list(extra)
    if device == "cpu":
        cmd += ["--threads", str(th)]
        cmd = pinned(cmd, th)
    rc, out, err = run(cmd, env=simd_env(simd) if simd else BASE_ENV,
                       timeout=300 if device == "cpu" else 120)
    if rc != 0:
        return None, err.strip()[-300:]
    return json.loads(out.strip().splitlines()[-1]), None


def speed(rounds):
    res = {}
    for r in range(rounds):
        for T, th in ((8, 1), (16, 1), (8, 2), (16, 2)):
            j, e = ort_time(T, th)
            res.setdefault((T, th, "ort"), []).append(j["median_ms"] if j else None)
            rec({"step": "time", "engine": "ort", "round": r, "frames": T, "threads": th,
                 "median_ms": j and j["median_ms"], "min_ms": j and j["min_ms"], "err": e})
            for simd in ("avx512", "avx2"):
                j, e = kineto_time(T, th, simd)
                res.setdefault((T, th, simd), []).append(j["median_ms"] if j else None)
                rec({"step": "time", "engine": "kineto", "simd": simd,
                     "cpu_simd": j and j.get("cpu_simd"), "round": r, "frames": T, "threads": th,
                     "median_ms": j and j["median_ms"], "min_ms": j and j.get("min_ms"), "err": e})
    for T, th in ((8, 1), (16, 1), (8, 2), (16, 2)):
        o = res[(T, th, "ort")]
        a = res[(T, th, "avx512")]
        b = res[(T, th, "avx2")]
        ratios = [round(x / y, 2) if x and y else None for x, y in zip(a, o)]
        SUMMARY.append(f"{T}f {th}t  ORT {o}  kineto-avx512 {a}  kineto-avx2 {b}  ratio512/ORT {ratios}")


def gpu_bench():
    for T, batch in ((8, 1), (8, 8), (16, 1)):
        j, e = kineto_time(T, 0, None, device="gpu", batch=batch)
        rec({"step": "gpu_bench", "frames": T, "batch": batch, "report": j, "err": e})
        SUMMARY.append(f"gpu bench {T}f b{batch}: median {j and j['median_ms']} ms adapter "
                       f"{j and j.get('adapter')} {e or ''}")


def cpu_extra():
    j, e = kineto_time(8, 1, "avx512", case="live")
    rec({"step": "live", "report": j, "err": e})
    SUMMARY.append(f"live 8f 1t avx512: {j and j['median_ms']} ms (full {j and j.get('full_forward_median_ms')}) {e or ''}")
    for simd in ("avx512", "avx2"):
        j, e = kineto_time(8, 1, simd, case="train", extra=("--runs", "3", "--warmup", "1"))
        rec({"step": "train", "simd": simd, "report": j, "err": e})
        SUMMARY.append(f"train step 224 8f 1t {simd}: {j and j['median_ms']} ms {e or ''}")


def main():
    steps = [info, parity_suite, parity_cli, lambda: speed(ROUNDS), cpu_extra,
             parity_gpu, gpu_bench]
    run_steps(steps, T0, float(os.environ.get("DEADLINE_S", "460")), SUMMARY, rec)

if __name__ == "__main__":
    main()
