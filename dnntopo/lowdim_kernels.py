"""The compiled kernels of dnntopo.lowdim (numba), imported on first use so that a process
that never computes dims 0-1 this way does not pay numba's import."""
import numpy as np

from dnntopo.collapse_kernels import _inline, _jit, _low, _set   # the bit-row helpers

_NONE = np.int32(2**31 - 1)         # rank of a missing edge in the dense rank matrix


@_jit
def _find(parent, a):
    while parent[a] != a:
        parent[a] = parent[parent[a]]
        a = parent[a]
    return a


@_inline
def _bitlen(x):
    """Number of bits of a uint64 (0 for 0), by halving."""
    n = 0
    for shift in (32, 16, 8, 4, 2, 1):
        if x >> np.uint64(shift):
            x >>= np.uint64(shift)
            n += shift
    return n + int(x)


# The working column is a priority queue of triangle keys: a radix heap (65 buckets by the
# highest bit in which a key differs from the last minimum). Pushes are appends, and a key moves
# down a few buckets in its life, instead of a binary heap's log(size) cache misses per pop (the
# long columns hold hundreds of millions of keys). The pivot only grows, as a radix heap needs,
# with one exception that is harmless: a stored column's coboundaries are pushed edge by edge,
# and their entries below its pivot (which cancel in the sum) land below the minimum, always in
# pairs; all copies of a key share a bucket, so such pairs cancel when their bucket is popped.
# Pairs are cancelled (Z/2) only when they reach the minimum: sorting full buckets to cancel them
# earlier saved 4-13% of the memory on AlexNet and conv_2 and cost AlexNet 70% more time.

@_jit
def _grow(B, b):
    """Double bucket b (out of the inlined push: the rare path)."""
    grown = np.empty(2 * B[b].size, np.int64)
    grown[:B[b].size] = B[b]
    B[b] = grown


@_inline
def _push(B, S, last, k):
    b = _bitlen(np.uint64(k ^ last[0]))
    if S[b] == B[b].size:
        _grow(B, b)
    B[b][S[b]] = k
    S[b] += 1


@_jit
def _pivot(B, S, last):
    """The smallest key of odd multiplicity (Z/2: pairs cancel), kept once in the queue; -1
    when the column is zero."""
    while True:
        if S[0] == 0:
            b = 1
            while b < 65 and S[b] == 0:
                b += 1
            if b == 65:
                return np.int64(-1)
            keys = B[b]
            low = keys[0]
            for q in range(1, S[b]):
                if keys[q] < low:
                    low = keys[q]
            last[0] = low
            cnt = S[b]
            S[b] = 0
            for q in range(cnt):            # every key goes to a lower bucket
                _push(B, S, last, keys[q])
        if S[0] & 1:                         # bucket 0: the copies of the minimum
            S[0] = 1
            return last[0]
        S[0] = 0


@_jit
def _append(arr, n, x):
    """arr[n] = x, doubling arr first when full; the array to keep."""
    if n == arr.size:
        grown = np.empty(2 * arr.size, arr.dtype)
        grown[:n] = arr
        arr = grown
    arr[n] = x
    return arr


@_jit
def _cancel(keys, s):
    """Sort keys[:s] in place and keep the values of odd multiplicity once (Z/2); their count.
    Without it an edge added twice to a column stays twice in the stored sum, and the sums
    compound from column to column (a random graph of 3,341 edges stored lists of 965k)."""
    keys[:s].sort()
    out, q = 0, 0
    while q < s:
        q2 = q + 1
        while q2 < s and keys[q2] == keys[q]:
            q2 += 1
        if (q2 - q) & 1:
            keys[out] = keys[q]
            out += 1
        q = q2
    return out


@_jit
def _add_coboundary(B, S, last, W, adj, R, u, v, r, tab):
    """Push the cofacets of edge r = uv: triangles uvx keyed (largest edge rank, middle one);
    two edges determine a triangle, and this order refines the filtration."""
    for w in range(W):
        both = adj[u, w] & adj[v, w]
        while both:
            x = (w << 6) + _low(both, tab)
            both &= both - np.uint64(1)
            a, b = R[u, x], R[v, x]
            if a > b:
                a, b = b, a
            if r > b:
                hi, mid = r, b
            elif r > a:
                hi, mid = b, r
            else:
                hi, mid = b, a
            _push(B, S, last, (np.int64(hi) << 32) | np.int64(mid))


@_jit
def _first_cofacet_mid(W, adj, R, u, v, r, tab):
    """Middle rank of the smallest cofacet of edge r = uv whose largest edge is r itself (-1:
    none): with it, edge r and that triangle are an apparent pair."""
    best = np.int64(-1)
    for w in range(W):
        both = adj[u, w] & adj[v, w]
        while both:
            x = (w << 6) + _low(both, tab)
            both &= both - np.uint64(1)
            mid = max(R[u, x], R[v, x])
            if mid < r and (best < 0 or mid < best):
                best = mid
    return best


@_jit
def run(m, ei, ej, order, tab):
    """Persistence pairs in dims 0 and 1 of the flag filtration of the m-vertex graph with
    edges ei-ej, whose filtration order is `order` (edge rank r is edge order[r]). Returns the
    ranks of the edges that end a component (dim 0), and dim 1's births and deaths as edge
    ranks (death: the rank of the killing triangle's largest edge; -1 essential), the number
    of columns reduced and the number of edges their stored sums hold."""
    n_e = order.size
    W = (m + 63) >> 6
    R = np.full((m, m), _NONE, np.int32)
    adj = np.zeros((m, W), np.uint64)
    for r in range(n_e):
        u, v = ei[order[r]], ej[order[r]]
        R[u, v] = r
        R[v, u] = r
        _set(adj, u, v)
        _set(adj, v, u)
    # dim 0 (union-find) and the apparent pairs of dim 1, in filtration order: an edge with a
    # common neighbour through two earlier edges is the largest edge of its first cofacet, an
    # apparent (zero-persistence) pair that no reduction can change
    now = np.zeros((m, W), np.uint64)
    parent = np.arange(m)
    ends = np.empty(m, np.int64)
    n_ends = 0
    cols = np.empty(n_e, np.int64)
    n_cols = 0
    for r in range(n_e):
        u, v = ei[order[r]], ej[order[r]]
        a, b = _find(parent, u), _find(parent, v)
        if a != b:
            parent[a] = b
            ends[n_ends] = r
            n_ends += 1
        else:
            hit = False
            for w in range(W):
                if now[u, w] & now[v, w]:
                    hit = True
                    break
            if not hit:
                cols[n_cols] = r
                n_cols += 1
        _set(now, u, v)
        _set(now, v, u)
    # dim 1: ripser's cohomology reduction of the other columns, last to first (the edges that
    # end a component are cleared); a pivot is claimed by a reduced column or, when it is an
    # apparent pair's triangle, by that pair's edge (whose coboundary is its column, unreduced)
    owner = {np.int64(0): np.int64(0)}       # pivot -> index of its reduced column
    owner.pop(np.int64(0))
    vstart = np.zeros(n_cols + 1, np.int64)  # each reduced column's sum of edges, stored flat
    vflat = np.empty(16, np.int64)
    births = np.empty(n_cols, np.int64)
    deaths = np.empty(n_cols, np.int64)
    n_pairs = 0
    B = [np.empty(64, np.int64) for _ in range(65)]
    S = np.zeros(65, np.int64)
    last = np.zeros(1, np.int64)
    mine = np.empty(16, np.int64)
    for c in range(n_cols - 1, -1, -1):
        r = cols[c]
        S[:] = 0
        last[0] = 0
        _add_coboundary(B, S, last, W, adj, R, ei[order[r]], ej[order[r]], r, tab)
        mine[0] = r
        n_mine = 1
        while True:
            p = _pivot(B, S, last)
            if p < 0:                         # a cocycle: essential class
                births[n_pairs] = r
                deaths[n_pairs] = -1
                n_pairs += 1
                break
            if p in owner:
                k = owner[p]
                for q in range(vstart[k], vstart[k + 1]):
                    e2 = vflat[q]
                    mine = _append(mine, n_mine, e2)
                    n_mine += 1
                    _add_coboundary(B, S, last, W, adj, R, ei[order[e2]], ej[order[e2]], e2, tab)
                continue
            hi = p >> 32                     # the triangle's largest edge (never a tree edge)
            if _first_cofacet_mid(W, adj, R, ei[order[hi]], ej[order[hi]], hi, tab) == (p & 0xFFFFFFFF):
                mine = _append(mine, n_mine, hi)
                n_mine += 1
                _add_coboundary(B, S, last, W, adj, R, ei[order[hi]], ej[order[hi]], hi, tab)
                continue
            births[n_pairs] = r
            deaths[n_pairs] = hi
            n_mine = _cancel(mine, n_mine)    # store the column's edges mod 2, once each
            k = n_pairs
            n_pairs += 1
            owner[p] = k
            while vflat.size < vstart[k] + n_mine:
                grown = np.empty(2 * vflat.size, np.int64)
                grown[:vstart[k]] = vflat[:vstart[k]]
                vflat = grown
            vflat[vstart[k]:vstart[k] + n_mine] = mine[:n_mine]
            vstart[k + 1] = vstart[k] + n_mine
            break
        if deaths[n_pairs - 1] < 0:          # essential: no stored column, keep vstart flat
            vstart[n_pairs] = vstart[n_pairs - 1]
    return ends[:n_ends], births[:n_pairs], deaths[:n_pairs], n_cols, vstart[n_pairs]
