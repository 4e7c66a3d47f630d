#!/usr/bin/env python
"""Benchmark one epoch of the topology pipeline on the LeNet / Fashion-MNIST functional graph.

Prints, side by side in one run, the medians of: activation extraction, correlation + edges
(against numpy's corrcoef alone), persistent homology through dnntopo (dims 0-2 and 0-3), the
same PH by a direct gph.ripser_parallel call on the dense matrix (with and without its own
collapse_edges) and by ripser.py; the peak memory of each (growth of the process's peak RSS);
a check that all diagrams are equal; the whole epoch; and a sweep of --collapse on/off over
thresholds and dimensions (the data behind `--collapse auto`).

    python scripts/bench_topology.py [--run RUN --epoch E] [--reps 3] [--quick] [--ranks 1 2]

`--ranks K ...` also times `mpiexec -n K --bind-to core dnntopo topology` on a copy of the run
(the PH step as the log line reports it: rank 0 borrows the cores of the ranks waiting).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dnntopo import activations, data, models, storage, summaries, topology  # noqa: E402
from dnntopo.graph import functional_graph  # noqa: E402
from dnntopo.errors import UserError  # noqa: E402
from dnntopo.spec import TopologySpec  # noqa: E402
from dnntopo.train import TrainConfig, train  # noqa: E402
from hpc.comm import SerialComm, usable_cores  # noqa: E402


def rss_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak():
    """Return freed heap to the system, then restart the peak-RSS counter at the current RSS."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def peak_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(fn, reps):
    """Median seconds over `reps` calls, peak RSS growth (MB) over them, and the last result."""
    times, peaks, out = [], [], None
    for _ in range(reps):
        out = None
        reset_peak()
        base = rss_mb()
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
        peaks.append(peak_mb() - base)
    return statistics.median(times), max(peaks), out


def same(a, b, tol=1e-6):
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        x, y = (np.asarray(z, dtype=np.float64) for z in (x, y))
        x, y = x[x[:, 1] > x[:, 0]], y[y[:, 1] > y[:, 0]]      # zero persistence: either way
        x = x[np.lexsort((x[:, 1], x[:, 0]))]
        y = y[np.lexsort((y[:, 1], y[:, 0]))]
        if x.shape != y.shape:
            return False
        fx = np.isfinite(x)
        if not (np.array_equal(fx, np.isfinite(y)) and np.allclose(x[fx], y[fx], atol=tol)):
            return False
    return True


def whole_epoch(comm, model, ds, spec, cpu):
    """One epoch as the pipeline computes it: extraction, graph, PH, curves and summaries."""
    xx, lay = activations.extract(comm, model, ds, list(spec.layers), max_nodes=spec.max_nodes, device=cpu)
    e = functional_graph(comm, xx, spec.max_distance, 100).edges
    dg = topology.persistence(lay.n_nodes, e.i, e.j, e.distance, spec.max_dim, collapse=spec.collapse)
    return summaries.curves_and_summaries(dg, e.distance, lay.n_nodes, spec)


def print_table(rows, title: str):
    """The measurements as a table under a one-line title."""
    print(f"\n{title}\n")
    w = max(len(r[0]) for r in rows)
    print(f"{'step':<{w}}  {'seconds':>8}  {'peak MB':>8}  note")
    for name, sec, mem, note in rows:
        print(f"{name:<{w}}  {sec:8.2f}  {mem:8.0f}  {note}")


def by_ranks(a, run, epoch, dim, t):
    """`mpiexec -n K --bind-to core dnntopo topology` on a copy of the run for each K of
    `a.ranks`: wall seconds and the PH seconds and threads of its log line."""
    import os
    import re
    import shutil
    import subprocess
    exe = shutil.which("mpiexec")
    if not a.ranks:
        return
    if exe is None:
        print("\n--ranks: no mpiexec here, skipped")
        return
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    dnn = str(Path(sys.executable).parent / "dnntopo")
    print(f"\nK ranks (mpiexec -n K --bind-to core), dims 0-{dim}, distance <= {t}: the whole `dnntopo topology`")
    print(f"{'K':>2}  {'wall s':>7}  {'PH s':>7}  {'threads':>7}")
    with tempfile.TemporaryDirectory(prefix="bench_ranks_") as tmp:
        copy = Path(tmp) / "run"
        shutil.copytree(run.root, copy, ignore=shutil.ignore_patterns("topology", "logs", "plots"))
        for k in a.ranks:
            cmd = [exe, "-n", str(k), "--bind-to", "core", dnn, "topology", "--run", str(copy), "--epochs",
                   str(epoch), "--samples", str(a.samples), "--max-dim", str(dim), "--max-distance", str(t),
                   "--force"]
            t0 = time.perf_counter()
            p = subprocess.run(cmd, capture_output=True, text=True, env=env)
            wall = time.perf_counter() - t0
            m = re.search(r"PH ([0-9.]+)s on (\d+) threads", p.stderr)
            if p.returncode != 0 or m is None:
                print(f"{k:>2}  failed: {p.stderr.strip().splitlines()[-1:] or p.returncode}")
                continue
            print(f"{k:>2}  {wall:7.1f}  {float(m.group(1)):7.1f}  {m.group(2):>7}", flush=True)


def big_net(a, rows, n, i, j, d, t, threads, ripser_parallel, model, ds, spec, comm, cpu):
    """The measurements that finish on a big net: the collapse alone, giotto-ph's dims
    0-1 (the reference of the target), dnntopo's dims 0-2 (collapse auto and on), the whole epoch."""
    reps = a.reps
    mat = sp.coo_matrix((d, (i, j)), shape=(n, n))
    sec1, mem, ref = measure(lambda: ripser_parallel(mat, maxdim=1, metric="precomputed", n_threads=threads)["dgms"],
                             reps)
    rows.append(("PH dims 0-1: gph.ripser_parallel direct", sec1, mem, ""))
    del mat
    info = {}
    sec, mem, dg = measure(lambda: topology.persistence(n, i, j, d, 1, info=info), reps)
    rows.append(("PH dims 0-1: dnntopo", sec, mem, f"{info.get('engine', 'giotto')}, "
                 f"{info.get('dim1_columns', '?')} columns; " + ("same diagrams" if same(dg, ref) else "DIFFERENT")))
    if a.big_max_dim == 1:
        sec3 = rows[0][1] + rows[1][1] + sec
        print_table(rows, f"{n} nodes, {i.size} edges, {a.samples} samples, distance <= {t}, {threads} threads; "
                          f"medians of {reps}")
        print(f"\nPH dims 0-1 giotto-ph / dnntopo: {sec1 / sec:.1f}x; whole epoch in dims 0-1 (extract + graph "
              f"+ PH): {sec3:.0f} s")
        return
    if not a.quick:
        sec, mem, left = measure(lambda: topology.edge_collapse(n, i, j, d)[0].size, 1)
        rows.append(("edge collapse: dnntopo, every pass (1 run)", sec, mem, f"{left} edges left"))
    info = {}
    heard = []
    try:
        sec, mem, dg2 = measure(lambda: topology.persistence(n, i, j, d, 2, info=info, progress=heard.append), reps)
        note = (f"{heard[0]}; {info.get('engine', 'giotto')}; {info['collapsed_edges']} edges after the collapse; "
                f"{info.get('dim2_columns', '?')} dim-2 columns of {info.get('dim2_triangles', '?')} triangles")
        rows.append(("PH dims 0-2: dnntopo (collapse auto)", sec, mem, note))
    except UserError as exc:   # the pre-flight refused: that is the measurement
        print_table(rows, f"{n} nodes, {i.size} edges, {a.samples} samples, distance <= {t}, {threads} threads")
        print(f"\nPH dims 0-2: dnntopo refused: {exc}")
        return
    if not a.quick:
        sec2, mem, _ = measure(lambda: topology.persistence(n, i, j, d, 2, collapse="on"), reps)
        rows.append(("PH dims 0-2: dnntopo (collapse on)", sec2, mem, ""))
    if a.big_check:   # an independent reference: dnntopo's collapse, then giotto-ph (not lowdim)
        use = topology.use_lowdim
        topology.use_lowdim = lambda *args: False
        try:
            sec2, mem, ref = measure(lambda: topology.persistence(n, i, j, d, 2, collapse="on"), 1)
        finally:
            topology.use_lowdim = use
        rows.append(("PH dims 0-2: collapse + gph.ripser_parallel (1 run)", sec2, mem,
                     "same diagrams" if same(dg2, ref) else "DIFFERENT"))

    if a.quick:   # the whole epoch: extraction and graph (measured above) plus the PH step
        sec3 = rows[0][1] + rows[1][1] + next(r[1] for r in rows if r[0].startswith("PH dims 0-2: dnntopo (collapse auto)"))
    else:
        sec3, mem, _ = measure(lambda: whole_epoch(comm, model, ds, spec, cpu), reps)
        rows.append(("whole epoch (extract + graph + PH 0-2 + summaries)", sec3, mem, ""))
    print_table(rows, f"{n} nodes, {i.size} edges, {a.samples} samples, distance <= {t}, {threads} threads; "
                      f"medians of {reps}")
    print(f"\nwhole epoch in dims 0-2 / giotto-ph alone in dims 0-1: {sec3 / sec1:.1f}x (target: at most 3x)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", help="a LeNet / Fashion-MNIST run (default: train one for 2 epochs)")
    ap.add_argument("--epoch", type=int, default=2)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--max-distance", type=float, default=0.6)
    ap.add_argument("--reps", type=int, default=3, help="repetitions of the fast measurements")
    ap.add_argument("--quick", action="store_true", help="skip the direct dims 0-3 call (minutes)")
    ap.add_argument("--ranks", type=int, nargs="*", default=[],
                    help="also time `mpiexec -n K dnntopo topology` for these K (dims 0-2)")
    ap.add_argument("--big-max-dim", type=int, default=2, choices=(1, 2),
                    help="with --big: 1 stops after dims 0-1 (giotto-ph against dnntopo), 2 goes on to dims 0-2")
    ap.add_argument("--big-check", action="store_true",
                    help="with --big: also dnntopo's collapse then giotto-ph in dims 0-2 (minutes), the diagrams compared")
    ap.add_argument("--big", action="store_true",
                    help="a big net (AlexNet and up): the collapse engines, dims 0-1 direct and dnntopo's "
                         "dims 0-2 only (the direct dims 0-2/0-3 calls and ripser.py take hours there)")
    a = ap.parse_args()
    threads = usable_cores()
    torch.set_num_threads(threads)

    if a.run is None:
        tmp = tempfile.mkdtemp(prefix="bench_topology_")
        print(f"training LeNet on Fashion-MNIST for {a.epoch} epochs in {tmp} ...", file=sys.stderr)
        run = train(TrainConfig(epochs=a.epoch, lr=0.01, save_epochs=[a.epoch], run_dir=tmp,
                                data_root=a.data_root), quiet=True)
    else:
        run = storage.open_run(a.run)
    cfg = storage.read_config(run)
    ds = activations.sample_set(data.load(cfg["dataset"], cfg.get("data_root") or a.data_root, "test"),
                                a.samples, "test")
    model = models.build(cfg["net"], tuple(cfg["input_shape"]), cfg["num_classes"])
    models.load_state(model, run.checkpoint(a.epoch), cfg["net"])
    layers = models.DEFAULT_LAYERS[cfg["net"]]
    comm = SerialComm()
    t = a.max_distance
    # the spec of the whole-epoch measurement (dims 0-2, default grid and persistence floor)
    spec = TopologySpec(samples=a.samples, layers=tuple(layers), max_distance=t, max_dim=2)
    cpu = torch.device("cpu")

    rows = []
    sec, mem, (x, layout) = measure(lambda: activations.extract(comm, model, ds, layers, device=cpu), a.reps)
    rows.append(("activation extraction", sec, mem, ""))
    n = layout.n_nodes
    sec, mem, edges = measure(lambda: functional_graph(comm, x.copy(), t, 100).edges, a.reps)
    rows.append(("correlation + edges (dnntopo)", sec, mem, f"{len(edges)} edges"))
    i, j, d = edges.i, edges.j, edges.distance
    from gph import ripser_parallel
    if a.big:   # no dense n x n matrices on a big net
        del x, edges
        big_net(a, rows, n, i, j, d, t, threads, ripser_parallel, model, ds, spec, comm, cpu)
        return by_ranks(a, run, a.epoch, a.big_max_dim, t)
    x64 = x.T.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        sec_np, mem_np, _ = measure(lambda: np.corrcoef(x64), a.reps)
    rows.append(("numpy corrcoef alone (float64 n x n)", sec_np, mem_np, ""))
    dense = np.ones((n, n), dtype=np.float32)
    dense[i, j] = d
    dense[j, i] = d
    np.fill_diagonal(dense, 0)

    results = {}
    for dim in (2, 3):
        def ours(dim=dim):
            return topology.persistence(n, i, j, d, dim)
        reps = a.reps if dim == 2 else 1
        sec, mem, dg = measure(ours, reps)
        results[(dim, "ours")] = dg
        rows.append((f"PH dims 0-{dim}: dnntopo (collapse auto)", sec, mem, ""))
        for coll in (False, True):
            if dim == 3 and not coll and a.quick:
                continue
            def direct(dim=dim, coll=coll):
                return ripser_parallel(dense, maxdim=dim, thresh=t, metric="precomputed",
                                       collapse_edges=coll, n_threads=threads)["dgms"]
            sec, mem, dg = measure(direct, reps if dim == 2 else 1)
            results[(dim, f"gph{coll}")] = dg
            rows.append((f"PH dims 0-{dim}: gph.ripser_parallel direct" + (" + collapse_edges" if coll else ""),
                         sec, mem, "same diagrams" if same(results[(dim, "ours")], dg) else "DIFFERENT"))
    try:
        from ripser import ripser
        sec, mem, dg = measure(lambda: ripser(sp.coo_matrix((d, (i, j)), shape=(n, n)), maxdim=2,
                                              distance_matrix=True)["dgms"], 1)
        rows.append(("PH dims 0-2: ripser.py (sparse)", sec, mem,
                     "same diagrams" if same(results[(2, "ours")], dg) else "DIFFERENT"))
    except ImportError:
        pass

    sec, mem, _ = measure(lambda: whole_epoch(comm, model, ds, spec, cpu), a.reps)
    rows.append(("whole epoch (extract + graph + PH 0-2 + summaries)", sec, mem, ""))
    print_table(rows, f"LeNet / Fashion-MNIST, epoch {a.epoch}: {n} nodes, {a.samples} samples, distance <= {t}, "
                      f"{threads} threads; medians of {a.reps} (dims 0-3: 1 run)")
    get = {r[0]: r[1] for r in rows}
    print(f"\nspeed-up of dnntopo PH over the direct giotto-ph call: dims 0-2 "
          f"{get['PH dims 0-2: gph.ripser_parallel direct'] / get['PH dims 0-2: dnntopo (collapse auto)']:.1f}x",
          end="")
    if "PH dims 0-3: gph.ripser_parallel direct" in get:
        print(f", dims 0-3 {get['PH dims 0-3: gph.ripser_parallel direct'] / get['PH dims 0-3: dnntopo (collapse auto)']:.1f}x")
    else:
        print()
    print(f"correlation + edges / numpy corrcoef: {get['correlation + edges (dnntopo)'] / sec_np:.2f}")

    print("\n--collapse on vs off (medians, seconds of the PH step)")
    print(f"{'distance':>8}  {'dims':>4}  {'edges':>8}  {'off':>7}  {'on':>7}  {'on/off':>6}")
    for thr in (0.3, 0.45, 0.6):
        keep = d <= thr
        for dim in (1, 2, 3):
            if dim == 3 and thr == 0.6 and a.quick:
                continue
            tt = {}
            for coll in ("off", "on"):
                r = a.reps if not (dim == 3 and coll == "off" and thr >= 0.45) else 1
                tt[coll] = measure(lambda: topology.persistence(
                    n, i[keep], j[keep], d[keep], dim, collapse=coll), r)[0]
            print(f"{thr:8.2f}  {dim:>4}  {int(keep.sum()):8d}  {tt['off']:7.2f}  {tt['on']:7.2f}  {tt['on'] / tt['off']:6.2f}")
    by_ranks(a, run, a.epoch, 2, t)


if __name__ == "__main__":
    main()
