"""Exact persistent homology in dimensions 0-1 and 0-2 of a dense flag filtration, compiled (numba).

Dimension 0 is a union-find over the edges in filtration order. Dimension 1 is ripser's
cohomology reduction with its two shortcuts, made cheap on dense graphs: an edge with a
common neighbour through two earlier edges is in an apparent pair (zero persistence, never a
column), which on the functional graphs of the zoo is all but a few thousand of the edges
(conv_2: 6,304 columns of 13.9M edges), found with one AND of two rows of bits per edge; and
the columns left are reduced with a radix heap (the pivot only grows), with cofacets
enumerated from the same bit rows. Dimension 2 is the same reduction with clearing, the
tetrahedra ordered so that a triangle's apparent pair is a question about bit rows too
(lowdim_kernels, "Dimension 2"): AlexNet at 0.6 leaves 10,136 columns of 1.36 billion
triangles, found by a pass over the triangles on every thread. giotto-ph spends its time on
the enumeration over sorted neighbour lists and on binary heaps; the diagrams are the same
(tests compare with ripser.py and giotto-ph). The price is memory: the m x m int32 edge ranks
(683 MB for conv_2's 12,696 vertices) and dim 1's working column, which depends on the graph
(about 0.7 GB on AlexNet at 0.6, 10 GB on conv_2, about what giotto-ph needs there; the
pre-flight models it).
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from dnntopo.collapse import _DEBRUIJN, fits as collapse_fits


#: Edge ranks are int32 (the largest is the "no edge" mark) and keys pack two of them in 64 bits.
MAX_EDGES = 2**31 - 2


def key_bits(m: int, n_edges: int) -> tuple[int, int]:
    """Bits of an edge rank and of a vertex index in dim 2's tetrahedron keys (rank, rank, vertex)."""
    return max(1, int(n_edges - 1).bit_length()), max(1, int(m - 1).bit_length())


def fits(m: int, n_edges: int, max_dim: int = 1) -> bool:
    """Dense enough for the bit rows? The m x m int32 ranks and two bit matrices are the
    collapse's own memory (`dnntopo.collapse.fits`: within 128 bytes an edge or 256 MiB; without
    numba, no graph), and the edges must fit int32 ranks; dim 2's tetrahedron keys must fit 63
    bits (AlexNet's 2.9M edges on 4,682 vertices: 57; resnet18's 25M on 20,871: 65, no)."""
    if max_dim >= 3 or not (n_edges <= MAX_EDGES and collapse_fits(m, n_edges)):
        return False
    br, bv = key_bits(m, n_edges)
    return max_dim < 2 or 2 * br + bv <= 63


def _blocks(link_sizes, n_e: int, threads: int) -> np.ndarray:
    """Blocks of edge ranks for dim 2's triangle pass, about equal in triangles: their count
    by rank is sampled (`link_sizes(ranks)`, 1,024 edges) and the blocks cut at its quantiles,
    16 per thread, handed to numba's threads one at a time as they finish (`_threads`). The
    triangles crowd into the last edges (an edge's link fills as the graph does), so equal
    ranges of ranks would leave one thread with most of the work."""
    k = 16 * max(1, threads)
    ranks = np.unique(np.linspace(0, n_e - 1, min(n_e, 1024)).astype(np.int64))
    work = np.cumsum(link_sizes(ranks).astype(np.float64) + 1.0)   # + 1: the edge's own scan
    cuts = np.interp(np.linspace(0.0, work[-1], k + 1), np.r_[0.0, work], np.r_[ranks, n_e])
    return np.unique(np.r_[0, cuts.astype(np.int64)[1:-1], n_e])


@contextmanager
def _threads(threads: int):
    """numba's threads for dim 2's parallel loops: `threads` of them (at most numba's own
    count, fixed at its import), each taking the next part of a loop as it finishes; numba's
    setting is restored after. Yields the number in use."""
    import numba
    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        with numba.parallel_chunksize(1):
            yield numba.get_num_threads()
    finally:
        numba.set_num_threads(before)


def diagrams(m: int, i: np.ndarray, j: np.ndarray, d: np.ndarray, info: dict | None = None,
             max_dim: int = 1, threads: int = 1) -> list[np.ndarray]:
    """Diagrams of dims 0..max_dim (1 or 2; float64 (k, 2), birth and death, inf when essential)
    of the flag filtration of the graph of `m` vertices with edges i-j at filtration values d,
    as ripser.py gives them (pairs of zero persistence left out; every vertex is born at 0).
    The edges are a simple graph, as dnntopo.graph makes them: each pair once, no loops. Dim
    2's pass over the triangles and its reduction by apparent pairs run on `threads` of numba's
    threads."""
    d = np.asarray(d, dtype=np.float32)
    if not 1 <= max_dim <= 2:
        raise ValueError(f"lowdim: dims 0-1 or 0-2, not 0-{max_dim}")
    if d.size > MAX_EDGES:
        raise ValueError(f"lowdim: {d.size} edges, at most {MAX_EDGES} (int32 ranks)")
    if d.size and (min(np.min(i), np.min(j)) < 0 or max(np.max(i), np.max(j)) >= m):
        raise ValueError(f"lowdim: a vertex index outside 0..{m - 1}")
    br, bv = key_bits(m, d.size)
    if max_dim == 2 and 2 * br + bv > 63:
        raise ValueError(f"lowdim: dim 2's keys need {2 * br + bv} bits, more than 63")
    # the filtration order as a permutation (4 bytes an edge): the edges stay in one copy
    order = np.argsort(d, kind="stable").astype(np.int32)
    births2 = deaths2 = np.empty(0, np.int64)
    if order.size:
        from dnntopo import lowdim_kernels as k
        i = np.ascontiguousarray(i, dtype=np.int32)
        j = np.ascontiguousarray(j, dtype=np.int32)
        R, adj = k.tables(int(m), i, j, order)
        ends, births, deaths, n_cols, stored, pivots = k.run(int(m), i, j, order, R, adj, _DEBRUIJN)
        if max_dim == 2:
            with _threads(threads) as used:
                blocks = _blocks(lambda ranks: k.link_sizes(int(m), i, j, order, R, ranks), order.size, used)
                cols, n_tri = k.triangle_columns(int(m), i, j, order, blocks, R, _DEBRUIJN)
                cols = np.ascontiguousarray(np.setdiff1d(cols, pivots)[::-1])   # dim 1's pivots cleared; last first
                first = k.reduce_apparent(int(m), i, j, order, R, adj, cols, br, bv, _DEBRUIJN, 8 * used)
            births2, deaths2, stored2, again = k.run2(int(m), i, j, order, R, adj, cols, br, bv, _DEBRUIJN, *first)
            del first
            if info is not None:
                info.update(dim2_triangles=int(n_tri), dim2_columns=int(cols.size), dim2_stored=int(stored2),
                            dim2_again=int(again), dim2_threads=used)
        del R, adj
    else:
        ends = births = deaths = np.empty(0, np.int64)
        n_cols = stored = 0
    if info is not None:
        info.update(dim1_columns=int(n_cols), dim1_stored=int(stored))
    dg0 = np.zeros((m, 2))                    # edge ranks to values: d[order[rank]]
    dg0[:ends.size, 1] = d[order[ends]]
    dg0[ends.size:, 1] = np.inf               # one essential class per component
    out = [dg0]
    for b, e in ((births, deaths), (births2, deaths2))[:max_dim]:
        out.append(np.column_stack([d[order[b]].astype(np.float64),
                                    np.where(e >= 0, d[order[np.maximum(e, 0)]], np.inf)]))
    return [dg[dg[:, 1] > dg[:, 0]] for dg in out]
