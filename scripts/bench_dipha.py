#!/usr/bin/env python
"""Benchmark dnntopo-dipha (and a real DIPHA binary, when given) on the LeNet graph.

Exports the functional graph of a LeNet / Fashion-MNIST epoch (1,820 nodes, distance <= 0.6)
as DIPHA's sparse matrix and runs `--upper_dim 2` (dims 0-1) and `--upper_dim 3` (dims 0-2)
with K = 1 and 2 processes; prints the median wall time and the peak RSS of the largest
process. With `--dipha PATH`, the real DIPHA runs side by side on the same file.

    python scripts/bench_dipha.py --run RUN --epoch E [--dipha PATH] [--reps 3]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dnntopo import dipha, storage  # noqa: E402
from dnntopo.dipha.backend import export_epoch  # noqa: E402

MEASURE = ("import json, resource, subprocess, sys, time\n"
           "t = time.perf_counter(); p = subprocess.run(sys.argv[1:], capture_output=True)\n"
           "print(json.dumps({'rc': p.returncode, 'seconds': time.perf_counter() - t,\n"
           "  'peak_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,\n"
           "  'err': p.stderr.decode()[-300:]}))\n")


def measure(cmd, reps):
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    runs = []
    for _ in range(reps):
        p = subprocess.run([sys.executable, "-c", MEASURE, *cmd], capture_output=True, text=True, env=env)
        r = json.loads(p.stdout)
        if r["rc"] != 0:
            return {"error": r["err"].strip().splitlines()[-1] if r["err"].strip() else f"exit {r['rc']}"}
        runs.append(r)
    return {"seconds": statistics.median(r["seconds"] for r in runs), "peak_mb": max(r["peak_mb"] for r in runs)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="run folder with a computed epoch (distance <= 0.6)")
    ap.add_argument("--epoch", type=int, required=True)
    ap.add_argument("--dipha", default=os.environ.get("DIPHA", ""), help="a real DIPHA binary, to compare")
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    run = storage.open_run(a.run)
    tmp = Path(tempfile.mkdtemp(prefix="bench_dipha_"))
    src = export_epoch(run, a.epoch, tmp / "graph.complex", full=False)
    n, _, _, d = dipha.edges_from_file(src)
    ours = shutil.which("dnntopo-dipha") or str(Path(sys.executable).parent / "dnntopo-dipha")
    mpiexec = shutil.which("mpiexec")
    print(f"LeNet graph, epoch {a.epoch}: {n} vertices, {d.size} edges, distance <= {d.max():.3f}; "
          f"medians of {a.reps}\n")
    print(f"{'program':<16} {'dims':>5} {'K':>2} {'seconds':>8} {'peak RSS MB':>12}")
    for name, exe in [("dnntopo-dipha", ours)] + ([("DIPHA", a.dipha)] if a.dipha else []):
        for upper in (2, 3):
            for k in (1, 2):
                cmd = ([mpiexec, "-n", str(k), "--oversubscribe"] if k > 1 else []) + \
                      [exe, "--upper_dim", str(upper), str(src), str(tmp / "out.diagram")]
                if k > 1 and not mpiexec:
                    continue
                r = measure(cmd, a.reps)
                dims = f"0-{upper - 1}"
                if "error" in r:
                    print(f"{name:<16} {dims:>5} {k:>2}  failed: {r['error']}")
                else:
                    print(f"{name:<16} {dims:>5} {k:>2} {r['seconds']:8.2f} {r['peak_mb']:12.0f}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
