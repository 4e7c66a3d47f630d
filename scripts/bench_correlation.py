#!/usr/bin/env python
"""Benchmark the blocked, sharded correlation (hpc.correlation) against numpy's corrcoef.

Synthetic activations with realistic correlation structure (units driven by shared latent
factors in groups, plus noise, a few dead units), n units x 1000 samples. For K ranks
(mpiexec) it prints the wall time of the correlation + thresholding (median of --reps), the
peak RSS of the busiest rank, the edge count, and numpy's float64 corrcoef on the same data
as the baseline (where it fits in memory).

    python scripts/bench_correlation.py [--sizes 2000 20000] [--ranks 1 2] [--reps 3]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hpc.comm import NO_MPI_VAR  # noqa: E402

SAMPLES, FACTORS, GROUP = 1000, 64, 200


def synthetic(n: int, rows: slice, seed: int = 0) -> np.ndarray:
    """Rows `rows` of the (samples x n) float32 activations; identical whichever rank asks."""
    rng = np.random.default_rng(seed)
    w = np.zeros((FACTORS, n), dtype=np.float32)
    groups = np.arange(n) // GROUP
    for f in range(FACTORS):   # each group of units loads on three factors
        members = (groups % FACTORS == f) | (groups % FACTORS == (f + 1) % FACTORS) | \
                  (groups % FACTORS == (f + 7) % FACTORS)
        w[f, members] = rng.uniform(0.5, 1.5, members.sum())
    out = np.empty((rows.stop - rows.start, n), dtype=np.float32)
    for k, s in enumerate(range(rows.start, rows.stop)):
        r = np.random.default_rng([seed, s])
        out[k] = np.maximum(r.standard_normal(FACTORS).astype(np.float32) @ w
                            + 0.8 * r.standard_normal(n).astype(np.float32), 0)
    out[:, ::997] = 0.0      # dead units
    return out


def peak_rss_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker(n: int, reps: int, threshold: float, threads: int = 0):
    from hpc.comm import get_comm
    from hpc.correlation import correlation_edges
    from hpc.shard import block_bounds, split_blocks_even
    comm = get_comm()
    bounds = block_bounds(SAMPLES, 100)
    lo, hi = split_blocks_even(len(bounds) - 1, comm.Get_size(), comm.Get_rank())
    base = synthetic(n, slice(int(bounds[lo]), int(bounds[hi])))
    times, edges = [], 0
    for _ in range(reps):
        x = base.copy()
        comm.Barrier()
        t = time.perf_counter()
        e = correlation_edges(comm, x, threshold, sample_block=100, threads=threads)
        comm.Barrier()
        times.append(time.perf_counter() - t)
        edges = len(e) if e is not None else edges
        del x, e
    peaks = comm.gather(peak_rss_mb(), root=0)
    if comm.Get_rank() == 0:
        print(json.dumps({"seconds": statistics.median(times), "peak_mb": max(peaks), "edges": edges}))


def numpy_baseline(n: int, reps: int, threshold: float):
    x = synthetic(n, slice(0, SAMPLES))
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        c = np.corrcoef(x.T)
        times.append(time.perf_counter() - t)
        del c
    print(json.dumps({"seconds": statistics.median(times), "peak_mb": peak_rss_mb()}))


def run(cmd, env=None):
    p = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, **(env or {})))
    if p.returncode != 0:
        return {"error": (p.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threshold", type=float, default=0.6)
    ap.add_argument("--no-numpy", action="store_true", help="skip the corrcoef baseline")
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--numpy", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        return worker(a.worker, a.reps, a.threshold, a.threads)
    if a.numpy:
        return numpy_baseline(a.numpy, a.reps, a.threshold)
    me = [sys.executable, str(Path(__file__).resolve())]
    mpi_env = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    print(f"{'units':>7} {'method':<28} {'seconds':>8} {'peak RSS/rank MB':>17} {'edges':>10}  vs numpy")
    for n in a.sizes:
        base, label = None, "numpy corrcoef (float64)"
        if not a.no_numpy:
            base = run(me + ["--numpy", str(n), "--reps", str(a.reps)])
            if "error" in base:   # numpy's OpenBLAS crashes on large multi-threaded dgemm here
                base = run(me + ["--numpy", str(n), "--reps", str(a.reps)], env={"OPENBLAS_NUM_THREADS": "1"})
                label = "numpy corrcoef, 1 thread*"
        if base and "error" not in base:
            print(f"{n:7d} {label:<28} {base['seconds']:8.2f} {base['peak_mb']:17.0f} {'':>10}")
        elif base:
            print(f"{n:7d} numpy corrcoef: {base['error']}")
        for k, threads in [(k, 0) for k in a.ranks] + [(1, 1)]:
            name = f"dnntopo blocked, K={k}" + (", 1 thread" if threads == 1 else "")
            cmd = me + ["--worker", str(n), "--reps", str(a.reps), "--threshold", str(a.threshold),
                        "--threads", str(threads)]
            if k == 1:
                res = run(cmd, env={NO_MPI_VAR: "1"})   # one rank, even under a launcher
            else:
                mpiexec = shutil.which("mpiexec")
                if mpiexec is None:
                    print(f"{n:7d} dnntopo K={k}: mpiexec not found")
                    continue
                res = run([mpiexec, "-n", str(k), "--oversubscribe", "--bind-to", "none"] + cmd, env=mpi_env)
            if "error" in res:
                print(f"{n:7d} {name}: {res['error']}")
                continue
            ratio = f"{res['seconds'] / base['seconds']:.2f}x" if base and "error" not in base else ""
            print(f"{n:7d} {name:<28} {res['seconds']:8.2f} {res['peak_mb']:17.0f} {res['edges']:10d}  {ratio}")
    print("* numpy's bundled OpenBLAS segfaults on this dgemm with 2 threads; rerun with one.")


if __name__ == "__main__":
    main()
