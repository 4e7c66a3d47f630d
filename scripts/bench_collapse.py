#!/usr/bin/env python
"""Benchmark the exact edge collapse: dnntopo's bit-matrix pass against GUDHI's on the same edges.

For each distance, side by side in one run: one pass of each (seconds, edges left, whether
the edges and times agree: all of them when no two edges share a distance, else all but the
order of equal edges), then dnntopo's passes until one removes under 5% (every pass, as the
cost model's calibration measures it) with the peak memory of each (growth of peak RSS).

    python scripts/bench_collapse.py --epoch-file RUN/topology/epoch_0001.h5 [--distances 0.5 0.6]
        [--no-gudhi]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_topology import peak_mb, reset_peak, rss_mb  # noqa: E402  (this folder is on sys.path)
from dnntopo import collapse, storage, topology  # noqa: E402


def gudhi_pass(n, i, j, d):
    """GUDHI's one pass (as dnntopo called it before): {(i, j): time}."""
    import gudhi
    st = gudhi.SimplexTree()
    st.insert_batch(np.arange(n, dtype=np.int32)[None, :], np.zeros(n))
    st.insert_batch(np.vstack([i, j]).astype(np.int32), d.astype(np.float64))
    st.collapse_edges(nb_iterations=1)
    return {(min(s), max(s)): f for s, f in st.get_skeleton(1) if len(s) == 2}


def timed(fn):
    reset_peak()
    base = rss_mb()
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, peak_mb() - base, out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epoch-file", required=True, help="an epoch file of `dnntopo topology` (holds the edges)")
    ap.add_argument("--distances", type=float, nargs="+", default=[0.6])
    ap.add_argument("--no-gudhi", action="store_true", help="skip GUDHI's pass (minutes on big graphs)")
    a = ap.parse_args()
    ep = storage.read_epoch(a.epoch_file, edges=True)
    i0, j0, d0 = (np.asarray(x) for x in ep["edges"])
    n = int(ep["attrs"]["n_nodes"])
    collapse.collapse_pass(3, np.array([0, 1]), np.array([1, 2]), np.array([0.1, 0.2], np.float32))  # compile
    print(f"{a.epoch_file}: {n} nodes\n")
    print(f"{'distance':>8} {'edges':>9} {'degree':>7} {'step':<22} {'seconds':>8} {'peak MB':>8} {'left':>9}  note")
    for t in a.distances:
        keep = d0 <= t
        i, j, d = i0[keep].astype(np.int64), j0[keep].astype(np.int64), d0[keep]
        deg = 2 * i.size / max(np.unique(np.r_[i, j]).size, 1)
        head = f"{t:8.2f} {i.size:9d} {deg:7.0f}"
        sec, mem, (ci, cj, cd) = timed(lambda: collapse.collapse_pass(n, i, j, d))
        print(f"{head} {'pass 1: dnntopo':<22} {sec:8.2f} {mem:8.0f} {ci.size:9d}", flush=True)
        if not a.no_gudhi:
            gsec, gmem, theirs = timed(lambda: gudhi_pass(n, i, j, d))
            ours = dict(zip(zip(ci.tolist(), cj.tolist()), cd.tolist()))
            agree = sum(1 for e, f in ours.items() if e in theirs and np.float32(theirs[e]) == f)
            ties = i.size - np.unique(d).size
            print(f"{head} {'pass 1: GUDHI':<22} {gsec:8.2f} {gmem:8.0f} {len(theirs):9d}  "
                  f"{agree} of the edges agree in time ({ties} tied distances); dnntopo {gsec / sec:.1f}x faster",
                  flush=True)
        log = []
        sec, mem, (ci, cj, cd) = timed(lambda: topology.edge_collapse(n, i, j, d, progress=log.append))
        print(f"{head} {'every pass: dnntopo':<22} {sec:8.2f} {mem:8.0f} {ci.size:9d}  {len(log)} passes",
              flush=True)


if __name__ == "__main__":
    main()
