"""Exact persistent homology in dimensions 0 and 1 of a dense flag filtration, compiled (numba).

Dimension 0 is a union-find over the edges in filtration order. Dimension 1 is ripser's
cohomology reduction with its two shortcuts, made cheap on dense graphs: an edge with a
common neighbour through two earlier edges is in an apparent pair (zero persistence, never a
column), which on the functional graphs of the zoo is all but a few thousand of the edges
(conv_2: 6,304 columns of 13.9M edges), found with one AND of two rows of bits per edge; and
the columns left are reduced with a radix heap (the pivot only grows), with cofacets
enumerated from the same bit rows. giotto-ph spends its time on the enumeration over every
edge's sorted neighbour lists and on binary heaps; the diagrams are the same (tests compare
with ripser.py and giotto-ph). The price is memory: the m x m int32 edge ranks (683 MB for
conv_2's 12,696 vertices) and the working column, which depends on the graph (about 0.7 GB on
AlexNet at 0.6, 10 GB on conv_2, about what giotto-ph needs there; the pre-flight models it).
"""
from __future__ import annotations

import numpy as np

from dnntopo.collapse import _DEBRUIJN, fits as collapse_fits


#: Edge ranks are int32 (the largest is the "no edge" mark) and keys pack two of them in 64 bits.
MAX_EDGES = 2**31 - 2


def fits(m: int, n_edges: int) -> bool:
    """Dense enough for the bit rows? The m x m int32 ranks and two bit matrices are the
    collapse's own memory (`dnntopo.collapse.fits`: within 128 bytes an edge or 256 MiB; without
    numba, no graph), and the edges must fit int32 ranks."""
    return n_edges <= MAX_EDGES and collapse_fits(m, n_edges)


def diagrams(m: int, i: np.ndarray, j: np.ndarray, d: np.ndarray, info: dict | None = None) -> list[np.ndarray]:
    """Diagrams of dims 0 and 1 (float64 (k, 2), birth and death, inf when essential) of the
    flag filtration of the graph of `m` vertices with edges i-j at filtration values d, as
    ripser.py gives them (pairs of zero persistence left out; every vertex is born at 0). The
    edges are a simple graph, as dnntopo.graph makes them: each pair once, no loops."""
    d = np.asarray(d, dtype=np.float32)
    if d.size > MAX_EDGES:
        raise ValueError(f"lowdim: {d.size} edges, at most {MAX_EDGES} (int32 ranks)")
    if d.size and (min(np.min(i), np.min(j)) < 0 or max(np.max(i), np.max(j)) >= m):
        raise ValueError(f"lowdim: a vertex index outside 0..{m - 1}")
    # the filtration order as a permutation (4 bytes an edge): the edges stay in one copy
    order = np.argsort(d, kind="stable").astype(np.int32)
    if order.size:
        from dnntopo.lowdim_kernels import run
        ends, births, deaths, n_cols, stored = run(int(m), np.ascontiguousarray(i, dtype=np.int32),
                                           np.ascontiguousarray(j, dtype=np.int32), order, _DEBRUIJN)
    else:
        ends = births = deaths = np.empty(0, np.int64)
        n_cols = stored = 0
    if info is not None:
        info.update(dim1_columns=int(n_cols), dim1_stored=int(stored))
    dg0 = np.zeros((m, 2))                    # edge ranks to values: d[order[rank]]
    dg0[:ends.size, 1] = d[order[ends]]
    dg0[ends.size:, 1] = np.inf               # one essential class per component
    dg1 = np.column_stack([d[order[births]].astype(np.float64),
                           np.where(deaths >= 0, d[order[np.maximum(deaths, 0)]], np.inf)])
    return [dg[dg[:, 1] > dg[:, 0]] for dg in (dg0, dg1)]
