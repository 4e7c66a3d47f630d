"""Persistent homology of the clique (Vietoris-Rips) filtration of a sparse distance graph.

Before the reduction the graph is shrunk by GUDHI's exact edge collapse (Glisse-Pritam; the
persistent homology of the flag filtration is unchanged). Isolated vertices are answered
directly (an essential class of dimension 0 each) and the rest is split into connected
components, packed into batches whose simplex index fits the backend, and relabelled
compactly, so the index never counts vertices that play no part.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from math import comb

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from dnntopo.errors import UserError
from hpc.comm import usable_cores

BACKENDS = ("giotto", "ripser", "dipha")
#: Largest simplex index of giotto-ph and ripser.py (64-bit index less the coefficient bits).
MAX_SIMPLEX_INDEX = 2 ** 55 - 1
#: `--collapse auto` collapses when the reduction reaches dimension >= 2 and the graph has at
#: least this many edges (measured by scripts/bench_topology.py; see the README).
AUTO_COLLAPSE_MIN_EDGES = 5000
#: Edge collapse iterations stop once one removes less than this share of the simplices.
COLLAPSE_MIN_GAIN = 0.05


@dataclass
class PHConfig:
    """Dimensions, threshold and engine of the persistent homology step."""
    max_dim: int = 2
    max_distance: float = 0.6
    backend: str = "giotto"
    collapse: str = "auto"
    n_threads: int = 0     # 0: every core this process may use
    dipha: str = ""        # DIPHA binary for backend dipha (default $DIPHA)
    dipha_launch: str = "auto"
    dipha_procs: int = 0   # 0: as many as ranks
    dipha_timeout: float = 3600.0

    def validate(self):
        if self.max_dim < 0:
            raise UserError("--max-dim must be 0 or more")
        if self.backend not in BACKENDS:
            raise UserError(f"--backend {self.backend!r}: choose one of {', '.join(BACKENDS)}")
        if self.collapse not in ("auto", "on", "off"):
            raise UserError("--collapse must be auto, on or off")
        if not 0 < self.max_distance <= 1:
            raise UserError(f"--max-distance {self.max_distance}: must lie in (0, 1]")
        if self.backend == "dipha":
            import shutil
            self.dipha = self.dipha or os.environ.get("DIPHA", "")
            if not self.dipha:
                raise UserError("--backend dipha needs the DIPHA binary: --dipha PATH or $DIPHA "
                                "(dnntopo-dipha is a drop-in)")
            found = shutil.which(self.dipha)
            if not found:
                raise UserError(f"--dipha {self.dipha}: not an executable file")
            self.dipha = found
            if self.dipha_launch not in ("auto", "spawn", "mpiexec"):
                raise UserError("--dipha-launch must be auto, spawn or mpiexec")
        if self.backend == "ripser":
            try:
                import ripser  # noqa: F401
            except ImportError:
                raise UserError("--backend ripser needs ripser.py: pip install ripser") from None
        return self

    def threads(self) -> int:
        return self.n_threads if self.n_threads > 0 else usable_cores()


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


def use_collapse(cfg: PHConfig, n_edges: int) -> bool:
    if cfg.collapse == "auto":
        return cfg.max_dim >= 2 and n_edges >= AUTO_COLLAPSE_MIN_EDGES
    return cfg.collapse == "on"


def collapse(n: int, i: np.ndarray, j: np.ndarray, d: np.ndarray):
    """Edge-collapse the flag filtration of the graph (GUDHI) until no edge goes; same PH."""
    import gudhi
    # label vertices by ascending degree: GUDHI's collapser runs about 7% faster on the LeNet
    # graph (measured 1.96 s against 2.11 s); the labels are mapped back below
    deg = np.bincount(i, minlength=n) + np.bincount(j, minlength=n)
    order = np.argsort(deg, kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    ri, rj = rank[i], rank[j]
    st = gudhi.SimplexTree()
    st.insert_batch(np.arange(n, dtype=np.int32)[None, :], np.zeros(n))
    st.insert_batch(np.vstack([np.minimum(ri, rj), np.maximum(ri, rj)]).astype(np.int32),
                    np.asarray(d, dtype=np.float64))
    before = st.num_simplices()
    while True:  # iterate while an iteration still removes a noticeable share of the edges
        st.collapse_edges(nb_iterations=1)
        now = st.num_simplices()
        if before - now <= COLLAPSE_MIN_GAIN * before:
            break
        before = now
    edges = [(s[0], s[1], f) for s, f in st.get_skeleton(1) if len(s) == 2]
    if not edges:
        return (np.empty(0, np.int32),) * 2 + (np.empty(0, np.float32),)
    e = np.array(edges, dtype=np.float64)
    a, b = order[e[:, 0].astype(np.int64)], order[e[:, 1].astype(np.int64)]
    return (np.minimum(a, b).astype(np.int32), np.maximum(a, b).astype(np.int32),
            e[:, 2].astype(np.float32))


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


def persistence(n: int, i: np.ndarray, j: np.ndarray, d: np.ndarray, cfg: PHConfig,
                info: dict | None = None) -> list[np.ndarray]:
    """Diagrams of dimensions 0..max_dim (float64 (m, 2), birth and death; inf when essential).

    `i < j` index the n vertices; `d` are the edge filtration values. Rows are sorted by
    (birth, death). Timing and sizes are added to `info` when given.
    """
    info = {} if info is None else info
    i, j = np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64)
    d = np.asarray(d, dtype=np.float32)
    dgms = [[] for _ in range(cfg.max_dim + 1)]
    used = np.zeros(n, dtype=bool)
    used[i], used[j] = True, True
    n_isolated = int(n - used.sum())
    dgms[0].append(np.tile([0.0, np.inf], (n_isolated, 1)))
    info.update(n_edges=int(i.size), n_isolated=n_isolated)
    if i.size:
        # compact the vertices that have edges
        relabel = np.cumsum(used) - 1
        m = int(used.sum())
        ci, cj = relabel[i], relabel[j]
        # components of the graph (an edge collapse keeps them); refuse before any heavy work
        adj = sp.coo_matrix((np.ones(ci.size, dtype=np.int8), (ci, cj)), shape=(m, m))
        n_comp, labels = connected_components(adj, directed=False)
        sizes = np.bincount(labels, minlength=n_comp)
        info.update(n_components=int(n_comp))
        batches = list(_batches(labels, sizes, max_vertices(cfg.max_dim), cfg.max_dim))
        t0 = time.perf_counter()
        if use_collapse(cfg, ci.size):
            ci, cj, d = collapse(m, ci, cj, d)
        info.update(collapsed_edges=int(ci.size), seconds_collapse=time.perf_counter() - t0)
        t0 = time.perf_counter()
        for batch in batches:
            if len(batch) == n_comp:
                size, vi, vj, vd = m, ci, cj, d
            else:
                inb = np.isin(labels, batch)
                local = np.cumsum(inb) - 1
                keep = inb[ci]
                size, vi, vj, vd = int(inb.sum()), local[ci[keep]], local[cj[keep]], d[keep]
            for k, dg in enumerate(_backend_call(cfg.backend, size, vi, vj, vd,
                                                 cfg.max_dim, cfg.threads())):
                dgms[k].append(dg)
        info.update(seconds_reduction=time.perf_counter() - t0)
    out = []
    for parts in dgms:
        dg = np.concatenate(parts) if parts else np.empty((0, 2))
        dg = dg[np.lexsort((dg[:, 1], dg[:, 0]))] if dg.size else dg.reshape(0, 2)
        out.append(np.ascontiguousarray(dg, dtype=np.float64))
    return out
