"""Exact edge collapse of a flag filtration, compiled (numba), for dense graphs.

The rule is Glisse and Pritam's ("Swap, Shift and Trim to Edge Collapse a Filtration", SoCG
2022), the one GUDHI implements: the edges are visited from the latest to the earliest; at the
time t of edge uv, the common neighbours of u and v present at t form its link; if one of them
is adjacent at t to all the others (it dominates the edge), the edge adds nothing to the
homology at t, and its time moves on to the next time a later common neighbour joins the link,
until no dominator is left (the edge enters the filtration then) or none joins any more (the
edge is removed). The persistent homology of the flag filtration is unchanged.

What differs from GUDHI is the data structure: the filtration values sit in a dense float32
matrix, so "is c adjacent to x by time t" is one load and a failing candidate is rejected at
its first non-neighbour, where a merge of sorted neighbour lists walks c's whole list. It
needs n^2 x 4 bytes (88 MB for AlexNet's 4,682 nodes), so `fits` decides per graph.
"""
from __future__ import annotations

import numpy as np

try:
    import numba
except ImportError:  # pragma: no cover - numba is a dependency; GUDHI's collapse is the fallback
    numba = None


def available() -> bool:
    return numba is not None


def fits(n: int, limit_bytes: float) -> bool:
    """Whether the dense matrix of `n` vertices takes at most a quarter of `limit_bytes` (0: no
    limit given: at most 4 GiB)."""
    need = 4.0 * n * n
    return need <= (limit_bytes / 4 if limit_bytes else 4 * 2**30)


def _kernel(n, u, v, f, adj_ptr, adj, out_f):
    """One pass over the edges (sorted by decreasing f). out_f[k] becomes the edge's new time,
    or +inf when it is removed."""
    inf = np.float32(np.inf)
    F = np.full((n, n), inf, dtype=np.float32)
    for k in range(u.size):
        F[u[k], v[k]] = f[k]
        F[v[k], u[k]] = f[k]
    for x in range(n):
        F[x, x] = -inf
    now = np.empty(n, dtype=np.int64)
    cand = np.empty(n, dtype=np.int64)
    last = np.full(n, -1, dtype=np.int64)
    later_w = np.empty(n, dtype=np.int64)
    later_t = np.empty(n, dtype=np.float32)
    for k in range(u.size):
        a, b, t0 = u[k], v[k], f[k]
        if adj_ptr[a + 1] - adj_ptr[a] > adj_ptr[b + 1] - adj_ptr[b]:
            a, b = b, a
        n_now, n_later = 0, 0
        for p in range(adj_ptr[a], adj_ptr[a + 1]):
            w = adj[p]
            if w == b:
                continue
            fw = max(F[a, w], F[b, w])
            if fw == inf:
                continue
            if fw <= t0:
                now[n_now] = w
                n_now += 1
            else:
                later_w[n_later] = w
                later_t[n_later] = fw
                n_later += 1
        t = t0
        dead = False
        sorted_later = False
        nxt = 0
        while True:
            dom = -1
            # first the last dominator found at this endpoint, then the first hub: a row each
            for c in (last[a], now[0] if n_now else -1):
                if c < 0 or c == a or c == b or F[c, a] > t or F[c, b] > t:
                    continue
                ok = True
                for xi in range(n_now - 1, -1, -1):   # the least connected first: the likeliest misses
                    if F[c, now[xi]] > t:
                        ok = False
                        break
                if ok:
                    dom = c
                    break
            if dom < 0 and n_now:
                # the others by elimination: each member x of the link, least connected first,
                # strikes the candidates not adjacent to it by t (reads stay in x's row)
                n_c = n_now
                cand[:n_c] = now[:n_now]
                for xi in range(n_now - 1, -1, -1):
                    row = F[now[xi]]
                    k2 = 0
                    for ci in range(n_c):
                        c = cand[ci]
                        if row[c] <= t:
                            cand[k2] = c
                            k2 += 1
                    n_c = k2
                    if n_c == 0:
                        break
                if n_c:
                    dom = cand[0]
            if dom < 0:
                break
            last[a] = dom
            if not sorted_later:
                order = np.argsort(later_t[:n_later], kind="mergesort")
                later_w[:n_later] = later_w[:n_later][order]
                later_t[:n_later] = later_t[:n_later][order]
                sorted_later = True
            still = True
            while still:
                if nxt == n_later:
                    dead = True
                    break
                t = later_t[nxt]
                while nxt < n_later and later_t[nxt] <= t:
                    w = later_w[nxt]
                    if F[dom, w] > later_t[nxt]:
                        still = False
                    now[n_now] = w
                    n_now += 1
                    nxt += 1
            if dead:
                break
        if dead:
            F[u[k], v[k]] = inf
            F[v[k], u[k]] = inf
            out_f[k] = inf
        else:
            if t != t0:
                F[u[k], v[k]] = t
                F[v[k], u[k]] = t
            out_f[k] = t


_compiled = None


def _get_kernel():
    global _compiled
    if _compiled is None:
        _compiled = numba.njit(cache=True, nogil=True)(_kernel)
    return _compiled


def collapse_pass(n: int, i: np.ndarray, j: np.ndarray, d: np.ndarray):
    """One pass of the collapse: the surviving edges (i < j) with their (possibly later) times."""
    i, j = np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64)
    # label vertices by decreasing degree, so that each adjacency list (sorted by label) offers
    # the hubs, the likeliest dominators, first
    deg = np.bincount(i, minlength=n) + np.bincount(j, minlength=n)
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(-deg, kind="stable")] = np.arange(n)
    order = np.argsort(-np.asarray(d, dtype=np.float32), kind="stable")
    u, v = rank[i[order]], rank[j[order]]
    f = np.asarray(d, dtype=np.float32)[order]
    both = np.concatenate([u, v])
    other = np.concatenate([v, u])
    srt = np.lexsort((other, both))
    adj = other[srt]
    adj_ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(both, minlength=n), out=adj_ptr[1:])
    out_f = np.empty_like(f)
    _get_kernel()(n, u, v, f, adj_ptr, adj, out_f)
    keep = np.isfinite(out_f)
    back = np.argsort(rank)                       # label -> vertex
    a, b = back[u[keep]], back[v[keep]]
    return np.minimum(a, b), np.maximum(a, b), out_f[keep]
