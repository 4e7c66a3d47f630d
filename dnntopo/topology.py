"""Persistent homology of the clique (Vietoris-Rips) filtration of a sparse distance graph.

Before the reduction the graph is shrunk by the exact edge collapse (Glisse-Pritam, in
`dnntopo.collapse` for dense graphs, GUDHI's for sparse ones; the persistent homology of the
flag filtration is unchanged). Dimensions 0-1 of dense graphs are reduced by dnntopo.lowdim
(apparent pairs on bit rows) instead of giotto-ph. Isolated vertices are answered
directly (an essential class of dimension 0 each) and the rest is split into connected
components, packed into batches whose simplex index fits the backend, and relabelled
compactly, so the index never counts vertices that play no part.

The engines sit behind one small interface, `Backend`, chosen by name with `backend(spec)`:
giotto-ph and ripser.py in this process, DIPHA through `dnntopo.dipha.backend`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from math import comb

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from dnntopo import lowdim
from dnntopo.collapse import collapse_pass, fits as collapse_fits
from dnntopo.errors import UserError
from hpc.comm import borrowed_cores, node_cores, usable_cores

#: Largest simplex index of giotto-ph and ripser.py (64-bit index less the coefficient bits).
MAX_SIMPLEX_INDEX = 2 ** 55 - 1
#: `--collapse auto` collapses when the reduction reaches dimension >= 2 and the graph has at
#: least this many edges (measured by scripts/bench_topology.py; see the README).
AUTO_COLLAPSE_MIN_EDGES = 5000
#: giotto's dims 0-1 of a dense graph (`lowdim.fits`) with at least this many edges are computed
#: by dnntopo.lowdim (same diagrams; conv_2: 146 s against giotto-ph's 518-548 s, README).
LOWDIM_MIN_EDGES = 5000
#: Edge collapse iterations stop once one removes less than this share of the simplices.
COLLAPSE_MIN_GAIN = 0.05


class Backend:
    """A persistent-homology engine, chosen by name (`backend(spec)`).

    `diagrams` is called collectively by every rank with the functional graph (every rank holds
    its rows' edges, rank 0 all of them) and returns the diagrams of dimensions 0..max_dim in
    distance units on rank 0 (None elsewhere). `scratch` is a path whose folder the backend may
    use for hidden temporary files; `info` collects sizes and timings; `progress(text)` hears
    the steps."""
    name = ""

    def diagrams(self, comm, graph, spec, scratch, info: dict, progress=None):
        raise NotImplementedError


class InProcess(Backend):
    """giotto-ph or ripser.py on rank 0, after the exact edge collapse; other ranks go on to
    wait (in the pipeline's sleeping barrier), and rank 0 borrows the cores their binding gave
    them on its node for the reduction's threads."""

    def __init__(self, name: str):
        self.name = name
        if name == "ripser":
            try:
                import ripser  # noqa: F401
            except ImportError:
                raise UserError("--backend ripser needs ripser.py: pip install ripser") from None

    def diagrams(self, comm, graph, spec, scratch, info: dict, progress=None):
        cores = node_cores(comm)
        if comm.Get_rank() != 0:
            return None
        e = graph.edges
        with borrowed_cores(cores):
            return persistence(graph.n, e.i, e.j, e.distance, spec.max_dim, engine=self.name,
                               collapse=spec.collapse, threads=spec.threads, info=info, progress=progress,
                               max_bytes=memory_limit(spec.max_memory))


def backend(spec) -> Backend:
    """The engine of `spec.backend`, checked before any heavy work (module, binary)."""
    if spec.backend == "dipha":
        from dnntopo.dipha.backend import DiphaBackend
        return DiphaBackend(spec)
    return InProcess(spec.backend)


def max_vertices(max_dim: int) -> int:
    """The most vertices one backend call may see for homology up to `max_dim`."""
    k = max_dim + 2
    lo, hi = k, 1 << 40
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if comb(mid, k) <= MAX_SIMPLEX_INDEX:
            lo = mid
        else:
            hi = mid - 1
    return lo


#: The pre-flight's cost model, fitted by scripts/bench_preflight.py (2 cores; README,
#: Performance): (stage, seconds|bytes) -> (a, b, c) of y = exp(a) edges^b degree^c, where a
#: stage's edges and degree (2 edges / vertices) are those of its input graph. Stages: the
#: collapse (every pass); the reduction in dims 0-k of the graph as it is (directk) or once
#: collapsed (afterk) by giotto-ph, and in dims 0-1 / 0-2 by dnntopo.lowdim (lowdim, lowdim2,
#: either graph); ("collapse", "kept") is the share of the edges the collapse keeps.
#: Fitted on 8 LeNet graphs of 13k-480k edges (scripts/calibration/lenet_measured.txt),
#: AlexNet graphs of 2.0M-2.9M edges, conv_2's 13.9M (dims 0-1, 0-2) and resnet18's 25M (dims 0-1)
#: (extra_points.csv);
#: an estimate, within 2.6x of the measured seconds and memory. `another_pass` may
#: stop the collapse earlier, leaving more edges to the reduction than the model's "kept"
#: share (and saving more than that costs).
COST = {
    ("collapse", "seconds"): (-19.513, 1.515, 0.088),
    ("collapse", "bytes"): (4.304, 1.666, -1.370),
    ("direct1", "seconds"): (-19.339, 1.653, -0.255),
    ("direct1", "bytes"): (4.136, 1.344, -0.459),
    ("direct2", "seconds"): (-21.213, 1.972, -0.209),
    ("direct2", "bytes"): (0.208, 1.731, -0.508),
    ("direct3", "seconds"): (-18.656, 1.614, 0.664),
    ("direct3", "bytes"): (6.574, 0.819, 0.568),
    ("after1", "seconds"): (-12.540, 1.033, -0.422),
    ("after1", "bytes"): (11.800, 0.389, 0.035),
    ("after2", "seconds"): (-15.903, 1.200, 0.693),
    ("after2", "bytes"): (9.946, 0.265, 1.231),
    ("after3", "seconds"): (-15.328, 0.990, 1.474),
    ("after3", "bytes"): (9.461, 0.543, 0.542),
    ("lowdim", "seconds"): (-16.244, 1.537, -0.651),
    ("lowdim", "bytes"): (5.140, 1.640, -1.274),
    ("lowdim2", "seconds"): (-16.684, 1.658, -0.678),
    ("lowdim2", "bytes"): (5.306, 1.769, -1.573),
    ("collapse", "kept"): (-0.627, -0.054, -0.179),
}


#: The pre-flight refuses when this many times its memory estimate exceeds the limit: the model
#: underestimated giotto-ph's peak on the largest graph measured (AlexNet, 2.94M edges, dims
#: 0-2) by 2.4x before that graph joined the fit, and still by 1.6x after.
MEMORY_MARGIN = 2.5


def stage_cost(stage: str, edges: float, degree: float) -> tuple[float, float]:
    """(seconds, bytes) the cost model gives one stage on a graph of `edges` edges of mean
    `degree` (NaN for a stage the model does not know)."""
    out = []
    for what in ("seconds", "bytes"):
        a, b, c = COST.get((stage, what), (np.nan,) * 3)
        out.append(float(np.exp(a + b * np.log(max(edges, 1.0)) + c * np.log(max(degree, 1e-3)))))
    return out[0], out[1]


@dataclass(frozen=True)
class Estimate:
    """The pre-flight estimate of one graph's PH: seconds, peak bytes, whether it collapses."""
    seconds: float
    bytes: float
    collapse: bool
    edges_after: int

    def text(self) -> str:
        mins = self.seconds / 60
        took = f"{self.seconds:.0f} s" if mins < 2 else f"{mins:.0f} min" if mins < 120 else f"{mins / 60:.1f} h"
        return f"about {took}, {self.bytes / 2**30:.3g} GiB"


def estimate(m: int, n_edges: int, max_dim: int, collapse: bool, collapsed: bool = False,
             engine: str = "giotto") -> Estimate:
    """The cost model's seconds and peak memory for PH up to `max_dim` of a graph of `m`
    vertices (with edges) and `n_edges` edges, collapsed first or not (`collapsed`: the graph
    is the collapse's output, only its reduction is left), reduced by `engine` (or by
    dnntopo.lowdim where `use_lowdim` says so). Beyond the calibrated dimensions (3) each
    further dimension multiplies the reduction by the mean degree."""
    deg = 2.0 * n_edges / max(m, 1)
    base = 16.0 * n_edges                      # the edge arrays themselves (int32 x2, float32, index)
    k = min(max(max_dim, 1), 3)
    extra = max(0, max_dim - 3)

    def reduction(stage, edges, degree):
        if use_lowdim(engine, max_dim, m, int(edges)):
            t, b = stage_cost("lowdim", edges, degree)
            if max_dim == 2:    # dims 0-2 do all of dims 0-1's work first: never less than that
                t2, b2 = stage_cost("lowdim2", edges, degree)
                t, b = max(t, t2), max(b, b2)
            return t, b
        t, b = stage_cost(stage, edges, degree)
        return t * degree ** extra, b * degree ** extra
    if collapsed:
        t, b = reduction(f"after{k}", n_edges, deg)
        return Estimate(t, base + b, True, int(n_edges))
    if not collapse:
        t, b = reduction(f"direct{k}", n_edges, deg)
        return Estimate(t, base + b, False, int(n_edges))
    tc, bc = stage_cost("collapse", n_edges, deg)
    kept = min(1.0, _kept(n_edges, deg))
    e2 = max(1.0, kept * n_edges)
    tr, br = reduction(f"after{k}", e2, 2.0 * e2 / max(m, 1))
    return Estimate(tc + tr, base + max(bc, br), True, int(e2))


def _kept(edges: float, degree: float) -> float:
    a, b, c = COST.get(("collapse", "kept"), (np.log(0.12), 0.0, 0.0))
    return float(np.exp(a + b * np.log(max(edges, 1.0)) + c * np.log(max(degree, 1e-3))))


def use_collapse(collapse: str, max_dim: int, n_edges: int, m: int | None = None, limit: float = 0.0,
                 engine: str = "giotto") -> bool:
    """Collapse first? `on`/`off` as asked; `auto`: when the cost model says the collapse and
    the reduction of the collapsed graph take less time than the reduction alone, or when only
    the collapsed path fits in `limit` bytes (graphs under AUTO_COLLAPSE_MIN_EDGES edges: never,
    either way takes well under a second)."""
    if collapse != "auto":
        return collapse == "on"
    if n_edges < AUTO_COLLAPSE_MIN_EDGES:
        return False
    if not (m and COST):
        return max_dim >= 2
    on = estimate(m, n_edges, max_dim, True, engine=engine)
    off = estimate(m, n_edges, max_dim, False, engine=engine)
    if not (np.isfinite(on.seconds) and np.isfinite(off.seconds)):   # no model: the measured rule
        return max_dim >= 2
    fit_on, fit_off = MEMORY_MARGIN * on.bytes <= limit, MEMORY_MARGIN * off.bytes <= limit
    if limit and fit_on != fit_off:
        return fit_on
    return on.seconds < off.seconds


def another_pass(seconds: float, before: int, now: int, m: int, max_dim: int | None) -> bool:
    """After a collapse pass that took `seconds` and left `now` of `before` edges: is one more
    worth it? It must remove COLLAPSE_MIN_GAIN of the edges, and (with `max_dim` and the cost
    model) the reduction time it saves, if it shrinks the graph as this pass did, must exceed
    its own time, taken as this pass's scaled by the cost model's exponent of the edges."""
    if before - now <= COLLAPSE_MIN_GAIN * before:
        return False
    if max_dim is None or ("collapse", "seconds") not in COST or now == 0:
        return True
    k = f"after{min(max(max_dim, 1), 3)}"
    nxt = now * now / before
    saved = stage_cost(k, now, 2.0 * now / m)[0] - stage_cost(k, nxt, 2.0 * nxt / m)[0]
    cost = seconds * (now / before) ** COST[("collapse", "seconds")][1]
    return not np.isfinite(saved) or saved > cost


def edge_collapse(n: int, i: np.ndarray, j: np.ndarray, d: np.ndarray, progress=None, max_dim=None):
    """Edge-collapse the flag filtration of the graph, pass after pass while a pass is worth
    its time (`another_pass`: with `max_dim`, from the measured pass and the cost model;
    without, while it removes COLLAPSE_MIN_GAIN); the persistent homology is unchanged. Dense
    graphs go to dnntopo.collapse (bit matrices), sparse ones (`collapse.fits`) to GUDHI."""
    i, j = np.asarray(i), np.asarray(j)
    dense = collapse_fits(n, i.size)
    # vertex labels by degree, mapped back below: descending puts the likely dominators first
    # in the bit rows (AlexNet pass 1: 64 s, against 127 s ascending); GUDHI's sorted lists run
    # about 7% faster ascending (LeNet: 1.96 s against 2.11 s)
    deg = np.bincount(i, minlength=n) + np.bincount(j, minlength=n)
    order = np.argsort(-deg if dense else deg, kind="stable")
    rank = np.empty(n, dtype=np.int32)
    rank[order] = np.arange(n, dtype=np.int32)
    ri, rj = rank[i], rank[j]                   # the one relabelled copy (int32)
    swap = ri > rj
    ri[swap], rj[swap] = rj[swap], ri[swap]
    del swap
    d = np.asarray(d, dtype=np.float32)
    if dense:
        def one_pass():
            nonlocal ri, rj, d
            ri, rj, d = collapse_pass(n, ri, rj, d)
            return ri.size
    else:
        import gudhi
        st = gudhi.SimplexTree()
        st.insert_batch(np.arange(n, dtype=np.int32)[None, :], np.zeros(n))
        st.insert_batch(np.vstack([ri, rj]).astype(np.int32), d.astype(np.float64))

        def one_pass():
            st.collapse_edges(nb_iterations=1)
            return st.num_simplices() - n
    before, passes = ri.size, 0
    while True:
        if progress is not None:
            progress(f"collapse pass {passes + 1}: {before} edges")
        t0 = time.perf_counter()
        now = one_pass()
        passes += 1
        if not another_pass(time.perf_counter() - t0, before, now, n, max_dim):
            break
        before = now
    if not dense:
        e = np.array([(s[0], s[1], f) for s, f in st.get_skeleton(1) if len(s) == 2],
                     dtype=np.float64).reshape(-1, 3)
        ri, rj, d = e[:, 0].astype(np.int64), e[:, 1].astype(np.int64), e[:, 2].astype(np.float32)
    a, b = order[ri], order[rj]
    return np.minimum(a, b).astype(np.int32), np.maximum(a, b).astype(np.int32), d


def use_lowdim(engine: str, max_dim: int, m: int, n_edges: int) -> bool:
    """Does dnntopo.lowdim reduce this graph? giotto's dims 0-1 and 0-2 of dense graphs
    (`lowdim.fits`) from LOWDIM_MIN_EDGES edges; dim 0 alone stays giotto-ph's (a union-find,
    without lowdim's dense m x m ranks), dims 0-3 giotto-ph's after the collapse, and ripser.py
    stays itself (the reference)."""
    return (engine == "giotto" and max_dim in (1, 2) and n_edges >= LOWDIM_MIN_EDGES
            and lowdim.fits(m, n_edges, max_dim))


def _backend_call(backend: str, m: int, i, j, d, max_dim: int, threads: int) -> list:
    mat = sp.coo_matrix((np.asarray(d, dtype=np.float32), (i, j)), shape=(m, m))
    if backend == "giotto":
        from gph import ripser_parallel
        res = ripser_parallel(mat, maxdim=max_dim, metric="precomputed", n_threads=threads)
    else:
        from ripser import ripser
        res = ripser(mat, maxdim=max_dim, distance_matrix=True)
    return [np.asarray(x, dtype=np.float64).reshape(-1, 2) for x in res["dgms"]]


def _batches(labels: np.ndarray, sizes: np.ndarray, limit: int, max_dim: int):
    """Groups of components, each with at most `limit` vertices in total."""
    order = np.argsort(-sizes, kind="stable")
    if sizes[order[0]] > limit:
        raise UserError(
            f"--max-dim {max_dim}: a connected component of the graph has {sizes[order[0]]} "
            f"vertices, but homology up to dimension {max_dim} can index at most {limit} "
            f"vertices (simplex index limit 2**55); lower --max-dim, --max-distance or --max-nodes")
    batch, total = [], 0
    for c in order:
        if batch and total + sizes[c] > limit:
            yield batch
            batch, total = [], 0
        batch.append(c)
        total += sizes[c]
    if batch:
        yield batch


def memory_limit(max_memory_gb: float = 0.0) -> float:
    """Bytes the PH step may use: `--max-memory` GiB when given, else what the SLURM
    allocation or the machine leaves (hpc.comm.usable_memory)."""
    from hpc.comm import usable_memory
    return max_memory_gb * 2**30 if max_memory_gb > 0 else float(usable_memory())


def preflight(m: int, n_edges: int, max_dim: int, collapse: bool, limit: float,
              collapsed: bool = False, engine: str = "giotto") -> Estimate:
    """The estimate of a graph's PH, refused in one line (with the numbers and the ways out)
    when MEMORY_MARGIN times its memory exceeds `limit` bytes (0: no limit). `collapsed`: the
    check again once the collapse has said how many edges are left, before the reduction."""
    est = estimate(m, n_edges, max_dim, collapse, collapsed, engine)
    what = "the reduction of the collapsed graph" if collapsed else "PH of this graph"
    if limit and MEMORY_MARGIN * est.bytes > limit:
        raise UserError(
            f"{what} ({m} vertices, {n_edges} edges, mean degree {2 * n_edges / max(m, 1):.0f}, "
            f"dims 0-{max_dim}{', collapsed first' if collapse and not collapsed else ''}) needs {est.text()} by the "
            f"pre-flight estimate, and up to {MEMORY_MARGIN:g} times that is over the {limit / 2**30:.3g} GiB "
            f"allowed; lower --max-dim, "
            f"--max-distance or --max-nodes (fewer, grouped units), or allow more with --max-memory GiB "
            f"(or a bigger allocation)")
    return est


def persistence(n: int, i: np.ndarray, j: np.ndarray, d: np.ndarray, max_dim: int, *,
                engine: str = "giotto", collapse: str = "auto", threads: int = 0,
                info: dict | None = None, progress=None, max_bytes: float = 0.0) -> list[np.ndarray]:
    """Diagrams of dimensions 0..max_dim (float64 (m, 2), birth and death; inf when essential).

    `i < j` index the n vertices; `d` are the edge filtration values. Rows are sorted by
    (birth, death). `engine` is giotto or ripser; `collapse` auto, on or off; `threads` 0 for
    every usable core. Before the heavy work the pre-flight estimate is taken (added to `info`,
    told to `progress`) and a graph whose estimate exceeds `max_bytes` (0: no limit) refused.
    Timing and sizes are added to `info`; `progress(text)` hears the steps.
    """
    info = {} if info is None else info
    i, j = np.asarray(i), np.asarray(j)       # int32 from the graph: no wider copies
    d = np.asarray(d, dtype=np.float32)
    threads = threads if threads > 0 else usable_cores()
    dgms = [[] for _ in range(max_dim + 1)]
    used = np.zeros(n, dtype=bool)
    used[i], used[j] = True, True
    n_isolated = int(n - used.sum())
    dgms[0].append(np.tile([0.0, np.inf], (n_isolated, 1)))
    info.update(n_edges=int(i.size), n_isolated=n_isolated, threads=threads)
    if i.size:
        # compact the vertices that have edges
        m = int(used.sum())
        if m == n:                              # every vertex has an edge: the arrays as they are
            ci, cj = i, j
        else:
            relabel = (np.cumsum(used) - 1).astype(np.int32)
            ci, cj = relabel[i], relabel[j]
        # components of the graph (an edge collapse keeps them); refuse before any heavy work
        adj = sp.coo_matrix((np.ones(ci.size, dtype=np.int8), (ci, cj)), shape=(m, m))
        n_comp, labels = connected_components(adj, directed=False)
        sizes = np.bincount(labels, minlength=n_comp)
        info.update(n_components=int(n_comp))
        batches = list(_batches(labels, sizes, max_vertices(max_dim), max_dim))
        collapsing = use_collapse(collapse, max_dim, ci.size, m, max_bytes, engine)
        est = preflight(m, ci.size, max_dim, collapsing, max_bytes, engine=engine) if COST else None
        if est is not None:
            info.update(estimate_seconds=est.seconds, estimate_bytes=est.bytes)
            if progress is not None:
                progress(f"PH estimate: {est.text()}")
        t0 = time.perf_counter()
        if collapsing:
            ci, cj, d = edge_collapse(m, ci, cj, d, progress=progress, max_dim=max_dim)
            if COST:   # the model's share of edges kept is rough on dense graphs: check again
                est = preflight(m, ci.size, max_dim, True, max_bytes, collapsed=True, engine=engine)
                info.update(estimate_reduction_seconds=est.seconds, estimate_reduction_bytes=est.bytes)
                if progress is not None:
                    progress(f"PH estimate after the collapse: {est.text()}")
        info.update(collapsed_edges=int(ci.size), seconds_collapse=time.perf_counter() - t0)
        t0 = time.perf_counter()
        lowdim_here = use_lowdim(engine, max_dim, m, ci.size)
        if progress is not None:
            progress(f"reduction ({'dnntopo.lowdim' if lowdim_here else engine}, dims 0-{max_dim}, {ci.size} edges)")
        if lowdim_here:     # one call for the whole graph: no simplex index, no batches
            for k, dg in enumerate(lowdim.diagrams(m, ci, cj, d, info, max_dim, threads)):
                dgms[k].append(dg)
            # dims 0-1 are single-threaded, dim 2's triangles and columns use numba's threads: the log says so
            info.update(engine="lowdim", threads=info.get("dim2_threads", 1))
        else:
            for batch in batches:
                if len(batch) == n_comp:
                    size, vi, vj, vd = m, ci, cj, d
                else:
                    inb = np.isin(labels, batch)
                    local = np.cumsum(inb) - 1
                    keep = inb[ci]
                    size, vi, vj, vd = int(inb.sum()), local[ci[keep]], local[cj[keep]], d[keep]
                for k, dg in enumerate(_backend_call(engine, size, vi, vj, vd, max_dim, threads)):
                    dgms[k].append(dg)
        info.update(seconds_reduction=time.perf_counter() - t0)
    out = []
    for parts in dgms:
        dg = np.concatenate(parts) if parts else np.empty((0, 2))
        dg = dg[np.lexsort((dg[:, 1], dg[:, 0]))] if dg.size else dg.reshape(0, 2)
        out.append(np.ascontiguousarray(dg, dtype=np.float64))
    return out
