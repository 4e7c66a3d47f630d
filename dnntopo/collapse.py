"""Exact edge collapse of a flag filtration, compiled (numba) for dense functional graphs.

One pass is Glisse and Pritam's "swap, shift and trim" (the algorithm of GUDHI's
`collapse_edges`): edges from the last to the first; an edge dominated by a vertex at its
time is moved later, to the first time it is no longer dominated, or removed when it stays
dominated to the end. The persistent homology of the flag filtration is unchanged, and a
pass gives the edges and times GUDHI gives (tests/test_collapse.py). What differs is how
domination is decided: each vertex's neighbourhood is a row of bits, so "the common
neighbours of uv are all neighbours of c" is a few dozen word operations instead of a merge
of sorted lists, and the candidates c are first narrowed by intersecting the rows of the
vertices that joined last. That is what makes dense graphs (mean degree in the hundreds or
thousands) fast; the price is memory quadratic in the vertices (`pass_bytes`), so very
sparse graphs with many vertices go to GUDHI's sparse collapser instead (`fits`).
"""
from __future__ import annotations

import numpy as np

from importlib.util import find_spec

#: numba compiles the kernels (dnntopo.collapse_kernels, imported on first use); without it
#: (it is a dependency, so only in a stripped environment) GUDHI collapses every graph.
HAVE_NUMBA = find_spec("numba") is not None

#: de Bruijn table for the index of a word's lowest set bit.
_DEBRUIJN = np.array([0, 47, 1, 56, 48, 27, 2, 60, 57, 49, 41, 37, 28, 16, 3, 61,
                      54, 58, 35, 52, 50, 42, 21, 44, 38, 32, 29, 23, 17, 11, 4, 62,
                      46, 55, 26, 59, 40, 36, 15, 53, 34, 51, 20, 43, 31, 22, 10, 45,
                      25, 39, 14, 33, 19, 30, 9, 24, 13, 18, 8, 12, 7, 6, 5, 63], np.int64)
#: How many of the last-joined common neighbours have their rows intersected before the
#: remaining candidates are tested one by one (AlexNet: 3, 8 and 20 within 3% of each other).
_NARROW = 8


def pass_bytes(m: int) -> int:
    """Memory of one pass over a graph of `m` vertices: the m x m float32 filtration values
    and two m x m bit matrices (the edges now, and the edges at the current time)."""
    return 4 * m * m + 2 * m * ((m + 63) // 64) * 8


def fits(m: int, n_edges: int) -> bool:
    """Is this graph dense enough for the bit-matrix collapse? Its quadratic memory must stay
    within 128 bytes per edge (a density of about 3%; resnet18's graph at 0.6 has 9%) or
    256 MiB; sparser graphs are left to GUDHI's sorted neighbour lists, which are faster there
    too (the bit rows would be mostly zero words). Without numba, no graph."""
    return HAVE_NUMBA and pass_bytes(m) <= max(128 * n_edges, 2**28)


def collapse_pass(m: int, i: np.ndarray, j: np.ndarray, d: np.ndarray):
    """One exact collapse pass over the graph of `m` vertices with edges (i, j) at times d:
    the edges that remain and their (possibly later) times, in input order."""
    i = np.ascontiguousarray(i, dtype=np.int32)
    j = np.ascontiguousarray(j, dtype=np.int32)
    d = np.ascontiguousarray(d, dtype=np.float32)
    if i.size == 0:
        return i, j, d
    from dnntopo.collapse_kernels import run_pass
    out = run_pass(int(m), i, j, d, _DEBRUIJN)
    keep = np.isfinite(out)
    return i[keep], j[keep], out[keep]
