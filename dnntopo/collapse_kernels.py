"""The compiled kernels of dnntopo.collapse (numba), imported on the first dense collapse so
that a process that never collapses does not pay numba's import."""
import numba as nb
import numpy as np

from dnntopo.collapse import _NARROW

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
def run_pass(m, ei, ej, et, tab):
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
