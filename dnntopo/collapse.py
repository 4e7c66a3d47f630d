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

try:
    import numba as nb
except ImportError:  # pragma: no cover - numba is a dependency; without it GUDHI collapses all
    nb = None

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
    return nb is not None and pass_bytes(m) <= max(128 * n_edges, 2**28)


if nb is not None:
    _jit = nb.njit(cache=True, nogil=True)
    _inline = nb.njit(cache=True, inline="always")

    @_inline
    def _low(x, tab):
        """Index of the lowest set bit of a nonzero uint64."""
        return tab[((x ^ (x - np.uint64(1))) * np.uint64(0x03f79d71b4cb0a89)) >> np.uint64(58)]

    @_inline
    def _has(A, x, c):
        return (A[x, c >> 6] >> np.uint64(c & 63)) & np.uint64(1)

    @_inline
    def _set(A, x, c):
        A[x, c >> 6] |= np.uint64(1) << np.uint64(c & 63)

    @_inline
    def _clear(A, x, c):
        A[x, c >> 6] &= ~(np.uint64(1) << np.uint64(c & 63))

    @_jit
    def _dominator_now(now, common, ngb, k, W):
        """A vertex of ngb[:k] adjacent (in `now`) to all of them, or -1."""
        for a in range(k):
            c = ngb[a]
            ok = True
            for w in range(W):
                if common[w] & ~now[c, w]:
                    ok = False
                    break
            if ok:
                return c
        return -1

    @_jit
    def _dominator_at(now, alive, T, common, ngb, k, W, time, tab, narrow):
        """A vertex of ngb[:k] adjacent by `time` to all of them, or -1. `now` holds the edges
        up to the pass's current time (below `time`), `alive` every edge, T their times."""
        for w in range(W):                      # candidates: neighbours of the last to join
            narrow[w] = common[w]
        for a in range(k - 1, max(k - 1 - _NARROW, -1), -1):
            x = ngb[a]
            left = np.uint64(0)
            for w in range(W):
                narrow[w] &= alive[x, w]
                left |= narrow[w]
            if left == 0:
                return -1
        for cw in range(W):
            bits = narrow[cw]
            while bits:
                c = (cw << 6) + _low(bits, tab)
                bits &= bits - np.uint64(1)
                ok = True
                for w in range(W):
                    if common[w] & ~alive[c, w]:
                        ok = False
                        break
                if not ok:
                    continue
                for w in range(W):              # edges after `now`: compare their times
                    miss = common[w] & ~now[c, w]
                    while miss:
                        x = (w << 6) + _low(miss, tab)
                        miss &= miss - np.uint64(1)
                        if T[c, x] > time:
                            ok = False
                            break
                    if not ok:
                        break
                if ok:
                    return c
        return -1

    @_jit
    def _pass(m, ei, ej, et, tab):
        """New time of every edge (inf: removed) after one pass over the m-vertex graph."""
        n_e = ei.size
        W = (m + 63) >> 6
        inf = np.float32(np.inf)
        T = np.full((m, m), inf, np.float32)
        alive = np.zeros((m, W), np.uint64)     # edges not removed (any time)
        now = np.zeros((m, W), np.uint64)       # edges at times <= the current one
        for e in range(n_e):
            u, v = ei[e], ej[e]
            T[u, v] = et[e]
            T[v, u] = et[e]
            _set(alive, u, v); _set(alive, v, u); _set(now, u, v); _set(now, v, u)
        for x in range(m):                      # closed neighbourhoods
            T[x, x] = -inf
            _set(alive, x, x); _set(now, x, x)
        out = np.empty(n_e, np.float32)
        kept = np.empty(n_e, np.int64)          # edges kept at the current time (until it drops)
        n_kept = 0
        current = inf
        ngb = np.empty(m, np.int64)
        later = np.empty(m, np.int64)
        joins = np.empty(m, np.float32)
        common = np.zeros(W, np.uint64)
        narrow = np.zeros(W, np.uint64)
        for e in np.argsort(-et, kind="mergesort"):
            u, v, t = ei[e], ej[e], et[e]
            if t < current:
                for p in range(n_kept):
                    q = kept[p]
                    _clear(now, ei[q], ej[q]); _clear(now, ej[q], ei[q])
                n_kept = 0
                current = t
            k = 0
            n_later = 0
            for w in range(W):                  # common neighbours by t, and those joining later
                both = now[u, w] & now[v, w]
                late = alive[u, w] & alive[v, w] & ~both
                common[w] = both
                while both:
                    b = (w << 6) + _low(both, tab)
                    both &= both - np.uint64(1)
                    if b != u and b != v:
                        ngb[k] = b
                        k += 1
                while late:
                    later[n_later] = (w << 6) + _low(late, tab)
                    late &= late - np.uint64(1)
                    n_later += 1
            common[u >> 6] &= ~(np.uint64(1) << np.uint64(u & 63))
            common[v >> 6] &= ~(np.uint64(1) << np.uint64(v & 63))
            dom = _dominator_now(now, common, ngb, k, W) if k else -1
            time = t
            dead = False
            if dom >= 0:
                for a in range(n_later):
                    w = later[a]
                    joins[a] = max(T[u, w], T[v, w])
                while True:
                    # the first time a common neighbour joins that the dominator does not reach
                    first = inf
                    for a in range(n_later):
                        if joins[a] > time and joins[a] < first and T[dom, later[a]] > joins[a]:
                            first = joins[a]
                    if first == inf:
                        dead = True
                        break
                    for a in range(n_later):
                        if joins[a] > time and joins[a] <= first:
                            w = later[a]
                            ngb[k] = w
                            k += 1
                            common[w >> 6] |= np.uint64(1) << np.uint64(w & 63)
                    time = first
                    dom = _dominator_at(now, alive, T, common, ngb, k, W, time, tab, narrow)
                    if dom < 0:
                        break
            if dead:
                out[e] = inf
                T[u, v] = inf
                T[v, u] = inf
                _clear(alive, u, v); _clear(alive, v, u); _clear(now, u, v); _clear(now, v, u)
            elif time > t:
                out[e] = time
                T[u, v] = time
                T[v, u] = time
                _clear(now, u, v); _clear(now, v, u)
            else:
                out[e] = t
                kept[n_kept] = e
                n_kept += 1
        return out


def collapse_pass(m: int, i: np.ndarray, j: np.ndarray, d: np.ndarray):
    """One exact collapse pass over the graph of `m` vertices with edges (i, j) at times d:
    the edges that remain and their (possibly later) times, in input order."""
    if nb is None:  # pragma: no cover
        raise ImportError("the bit-matrix edge collapse needs numba: pip install numba")
    i = np.ascontiguousarray(i, dtype=np.int32)
    j = np.ascontiguousarray(j, dtype=np.int32)
    d = np.ascontiguousarray(d, dtype=np.float32)
    if i.size == 0:
        return i, j, d
    out = _pass(int(m), i, j, d, _DEBRUIJN)
    keep = np.isfinite(out)
    return i[keep], j[keep], out[keep]
