#!/usr/bin/env python
"""Calibrate the PH pre-flight estimate (`dnntopo.topology.estimate`) on real functional graphs.

Takes the edges of one epoch file, makes graphs of varied size and density from them (edges up
to several distances, on all the vertices or on a random share of them), and measures, each in
a fresh process: the edge collapse (seconds, peak RSS growth, edges left) and the reduction in
dims 0-1, 0-2 and 0-3 with and without the collapse (the reduction after the collapse is
measured on, and fitted against, the collapsed graph); dims 0-1 and 0-2 twice, giotto-ph's
(direct1/2, after1/2: still the engine of sparse graphs) and dnntopo.lowdim's (lowdim, lowdim2, on
the graphs it takes).
Then it fits the power laws the estimate uses,
    seconds or bytes = exp(a) * edges^b * degree^c        (degree = 2 edges / vertices)
by least squares in log space, and prints the measurements, the fitted constants (to paste into
`topology.COST`) and each measurement beside the estimate of the constants now in the code.

    python scripts/bench_preflight.py --epoch-file RUN/topology/epoch_0012.h5 [--extra alexnet.csv]

`--extra` adds measurements taken elsewhere (columns stage,edges,degree,seconds,bytes), e.g. of a
graph too big to measure in one sitting.
"""
from __future__ import annotations

import argparse
import csv
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_topology import peak_mb, reset_peak, rss_mb  # noqa: E402  (this folder is on sys.path)
from dnntopo import storage, topology  # noqa: E402


STAGES = ("collapse", "direct1", "direct2", "direct3", "after1", "after2", "after3", "lowdim", "lowdim2")


def _child(q, n, i, j, d, stage):
    """One measurement in a fresh process: (seconds, peak bytes, edges after)."""
    reset_peak()
    base = rss_mb()
    t = time.perf_counter()
    if stage == "collapse":
        out = topology.edge_collapse(n, i, j, d)[0].size
    elif stage in ("lowdim", "lowdim2"):  # dnntopo.lowdim: giotto's dims 0-1 / 0-2 of a dense graph
        topology.persistence(n, i, j, d, 1 if stage == "lowdim" else 2, collapse="off")
        out = i.size
    else:
        topology.use_lowdim = lambda *args: False      # this child measures giotto-ph itself
        dim = int(stage[-1])
        if stage.startswith("after"):     # the reduction of the collapsed graph: its own cost
            i, j, d = topology.edge_collapse(n, i, j, d)
            reset_peak()                  # its own peak too: restart the counter after the collapse
            t = time.perf_counter()
            base = rss_mb()
        topology.persistence(n, i, j, d, dim, collapse="off")
        out = i.size                      # the edges the reduction saw
    q.put((time.perf_counter() - t, (peak_mb() - base) * 2.0**20, out))


def measure(n, i, j, d, stage):
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(q, n, i, j, d, stage))
    p.start()
    res = q.get()
    p.join()
    return res


def fit(rows):
    """(a, b, c) of log y = a + b log edges + c log degree, least squares."""
    A = np.array([[1.0, np.log(r["edges"]), np.log(r["degree"])] for r in rows])
    y = np.log([r["y"] for r in rows])
    return np.linalg.lstsq(A, y, rcond=None)[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epoch-file", required=True, help="an epoch file of `dnntopo topology` (holds the edges)")
    ap.add_argument("--distances", type=float, nargs="+", default=[0.35, 0.45, 0.55, 0.6])
    ap.add_argument("--shares", type=float, nargs="+", default=[0.5, 1.0], help="shares of the vertices kept")
    ap.add_argument("--extra", default=None, help="CSV of measurements made elsewhere")
    ap.add_argument("--from-table", default=None,
                    help="fit the table this script printed before (its first block) instead of measuring")
    ap.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES,
                    help="measure only these stages (e.g. direct1 after1 after a change to that engine)")
    ap.add_argument("--direct3-max-edges", type=int, default=60000,
                    help="measure dims 0-3 without the collapse only up to this many edges (minutes above)")
    a = ap.parse_args()
    if a.from_table:
        return report(read_table(a.from_table), a.extra)
    # warm up in this process (imports, thread pools) so that each forked measurement is the work only
    topology.persistence(3, np.array([0, 1]), np.array([1, 2]), np.array([0.1, 0.2], np.float32), 2, collapse="on")
    ep = storage.read_epoch(a.epoch_file, edges=True)
    i0, j0, d0 = (np.asarray(x) for x in ep["edges"])
    n0 = int(ep["attrs"]["n_nodes"])
    rng = np.random.default_rng(0)
    stages = a.stages
    rows = []
    print(f"{'stage':<9} {'vertices':>8} {'edges':>9} {'degree':>7} {'seconds':>8} {'peak MB':>8} {'after':>8}")
    for share in a.shares:
        keep = np.zeros(n0, dtype=bool)
        keep[rng.choice(n0, int(round(share * n0)), replace=False)] = True
        relabel = np.cumsum(keep) - 1
        for dist in a.distances:
            sel = keep[i0] & keep[j0] & (d0 <= dist)
            n = int(keep.sum())
            i, j, d = relabel[i0[sel]], relabel[j0[sel]], d0[sel]
            m = int(np.unique(np.r_[i, j]).size)      # the vertices with edges, as persistence() counts
            for stage in stages:
                if stage == "direct3" and i.size > a.direct3_max_edges:
                    continue
                if stage.startswith("lowdim") and not topology.use_lowdim("giotto", 2 if stage == "lowdim2" else 1,
                                                                          m, i.size):
                    continue
                sec, peak, seen = measure(n, i, j, d, stage)
                e = seen if stage.startswith("after") else i.size      # the stage's input
                rows.append({"stage": stage, "edges": e, "degree": 2 * e / m, "seconds": sec, "bytes": peak,
                             "after": seen})
                print(f"{stage:<9} {m:>8} {e:>9} {2 * e / m:>7.1f} {sec:>8.3f} {peak / 2**20:>8.1f} {seen:>8}",
                      flush=True)
    report(rows, a.extra)


def read_table(path) -> list[dict]:
    """The measurement rows of a table printed by this script (up to the first blank line)."""
    rows = []
    for line in Path(path).read_text().splitlines()[1:]:
        if not line.strip():
            break
        stage, n, e, deg, sec, mb, after = line.split()
        rows.append({"stage": stage, "edges": int(e), "degree": float(deg), "seconds": float(sec),
                     "bytes": float(mb) * 2**20, "after": int(after)})
    return rows


def report(rows, extra=None):
    """The fitted constants and each measurement beside the estimate of the code's constants."""
    stages = STAGES
    if extra:
        with open(extra, newline="") as fh:
            for r in csv.DictReader(fh):
                rows.append({"stage": r["stage"], "edges": float(r["edges"]), "degree": float(r["degree"]),
                             "seconds": float(r["seconds"]), "bytes": float(r["bytes"] or "nan"),
                             "after": float(r.get("after") or "nan")})
    print("\nfitted: log y = a + b log(edges) + c log(degree)   (paste into dnntopo/topology.py COST)")
    for stage in stages:
        for what in ("seconds", "bytes"):
            pts = [dict(r, y=max(r[what], 1e-3 if what == "seconds" else 2**20)) for r in rows
                   if r["stage"] == stage and np.isfinite(r[what])]
            if len(pts) >= 3:
                print(f"    ({stage!r}, {what!r}): ({', '.join(f'{v:.3f}' for v in fit(pts))}),")
    kept = [dict(r, y=r["after"] / r["edges"]) for r in rows if r["stage"] == "collapse" and r["after"] > 0]
    if len(kept) >= 3:
        print(f"    ('collapse', 'kept'): ({', '.join(f'{v:.3f}' for v in fit(kept))}),")
    print("\nmeasured against the estimate of the constants in the code:")
    print(f"{'stage':<9} {'edges':>9} {'degree':>7} {'seconds':>8} {'estimate':>8} {'peak MB':>8} {'estimate':>8}")
    for r in rows:
        est_s, est_b = topology.stage_cost(r["stage"], r["edges"], r["degree"])
        print(f"{r['stage']:<9} {int(r['edges']):>9} {r['degree']:>7.1f} {r['seconds']:>8.3f} {est_s:>8.3f} "
              f"{r['bytes'] / 2**20:>8.1f} {est_b / 2**20:>8.1f}")


if __name__ == "__main__":
    main()
