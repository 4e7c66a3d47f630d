"""The compiled kernels of dnntopo.lowdim (numba), imported on first use so that a process
that never computes dims 0-1 or 0-2 this way does not pay numba's import."""
import numba as nb
import numpy as np

from dnntopo.collapse_kernels import _clear, _has, _inline, _jit, _low, _set   # the bit-row helpers

_NONE = np.int32(2**31 - 1)         # rank of a missing edge in the dense rank matrix
_WITNESSES = 4                      # dim 2's triangle pass: vertices tried before a row scan


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
def _heap():
    """An empty working column: 65 buckets, their sizes, the last minimum."""
    return [np.empty(64, np.int64) for _ in range(65)], np.zeros(65, np.int64), np.zeros(1, np.int64)


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
def _no_owner():
    """An empty pivot -> column table (typed for numba)."""
    owner = {np.int64(0): np.int64(0)}
    owner.pop(np.int64(0))
    return owner


@_jit
def _store(vflat, at, src, n):
    """vflat[at:at + n] = src[:n], doubling vflat first while it is short; the array to keep."""
    while vflat.size < at + n:
        grown = np.empty(2 * vflat.size, np.int64)
        grown[:at] = vflat[:at]
        vflat = grown
    vflat[at:at + n] = src[:n]
    return vflat


@_jit
def tables(m, ei, ej, order):
    """The dense m x m edge ranks (R[u, v] = rank of edge uv, _NONE when absent) and the
    adjacency as bit rows, shared by every dimension."""
    W = (m + 63) >> 6
    R = np.full((m, m), _NONE, np.int32)
    adj = np.zeros((m, W), np.uint64)
    for r in range(order.size):
        u, v = ei[order[r]], ej[order[r]]
        R[u, v] = r
        R[v, u] = r
        _set(adj, u, v)
        _set(adj, v, u)
    return R, adj


@_jit
def run(m, ei, ej, order, R, adj, tab):
    """Persistence pairs in dims 0 and 1 of the flag filtration of the m-vertex graph with
    edges ei-ej, whose filtration order is `order` (edge rank r is edge order[r]). Returns the
    ranks of the edges that end a component (dim 0), and dim 1's births and deaths as edge
    ranks (death: the rank of the killing triangle's largest edge; -1 essential), the number
    of columns reduced, the number of edges their stored sums hold, and the triangles that
    are the pivots of reduced columns (the apparent pairs' are known without a list): dim 2
    clears them."""
    n_e = order.size
    W = (m + 63) >> 6
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
    owner = _no_owner()                      # pivot -> index of its reduced column
    vstart = np.zeros(n_cols + 1, np.int64)  # each reduced column's sum of edges, stored flat
    vflat = np.empty(16, np.int64)
    births = np.empty(n_cols, np.int64)
    deaths = np.empty(n_cols, np.int64)
    n_pairs = 0
    B, S, last = _heap()
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
            vflat = _store(vflat, vstart[k], mine, n_mine)
            vstart[k + 1] = vstart[k] + n_mine
            break
        if deaths[n_pairs - 1] < 0:          # essential: no stored column, keep vstart flat
            vstart[n_pairs] = vstart[n_pairs - 1]
    pivots = np.empty(len(owner), np.int64)
    q = 0
    for p in owner.keys():
        pivots[q] = p
        q += 1
    return ends[:n_ends], births[:n_pairs], deaths[:n_pairs], n_cols, vstart[n_pairs], pivots


# Dimension 2. A triangle is keyed as in dim 1, (largest edge rank r, middle rank); a
# tetrahedron uvxy whose largest edge is uv (rank r) by (r, M, z): M the larger of the middle
# ranks of its triangles uvx and uvy, z the third vertex of the other one, packed in BR + BR + BV
# bits (`lowdim.fits` checks they fit 63). Any order refining the filtration gives the same
# diagrams; this one makes the apparent pairs easy to see: a triangle uvx (middle rank mx) and
# a tetrahedron of the same largest edge uv are an apparent pair exactly when some y, adjacent
# to u, v and x by edges before uv, has its middle rank (on uv) below mx; the triangle with the
# smallest middle rank on uv is the dim-1 apparent pair of uv's edge (cleared).

@_inline
def _third(ei, ej, order, u, v, e):
    """The end of edge rank e that is neither u nor v (e shares one vertex with uv)."""
    a = ei[order[e]]
    return ej[order[e]] if a == u or a == v else a


@_inline
def _key6(a, b, c, d, ab, ac, ad, bc, bd, cd, BR, BV):
    """Key of the tetrahedron abcd from its six edge ranks (see above)."""
    hi = max(max(max(ab, ac), max(ad, bc)), max(bd, cd))
    if hi == ab:
        s, t, ms, mt = c, d, max(ac, bc), max(ad, bd)
    elif hi == cd:
        s, t, ms, mt = a, b, max(ac, ad), max(bc, bd)
    elif hi == ac:
        s, t, ms, mt = b, d, max(ab, bc), max(ad, cd)
    elif hi == bd:
        s, t, ms, mt = a, c, max(ab, ad), max(bc, cd)
    elif hi == ad:
        s, t, ms, mt = b, c, max(ab, bd), max(ac, cd)
    else:
        s, t, ms, mt = a, d, max(ab, ac), max(bd, cd)
    if ms > mt:
        big, z = ms, t
    else:
        big, z = mt, s
    return (np.int64(hi) << (BR + BV)) | (np.int64(big) << BV) | np.int64(z)


@_jit
def _add_coboundary2(B, S, last, W, adj, R, ei, ej, order, t, BR, BV, tab):
    """Push the cofacets of triangle t (key (r << 32) | mid): tetrahedra uvxy for the y
    adjacent to all three."""
    r = t >> 32
    u, v = ei[order[r]], ej[order[r]]
    x = _third(ei, ej, order, u, v, t & 0xFFFFFFFF)
    ux, vx = R[u, x], R[v, x]
    for w in range(W):
        all3 = adj[u, w] & adj[v, w] & adj[x, w]
        while all3:
            y = (w << 6) + _low(all3, tab)
            all3 &= all3 - np.uint64(1)
            _push(B, S, last, _key6(u, v, x, y, r, ux, R[u, y], vx, R[v, y], R[x, y], BR, BV))


@_jit
def _apparent_tetra(W, adj, R, ei, ej, order, key, BR, BV, tab):
    """The triangle key of the apparent pair that tetrahedron `key` is in, or -1: its largest
    facet uvx (middle rank M) has it as its smallest cofacet when z is the smallest vertex y
    adjacent to u, v and x with middle rank (on uv) below M and edge xy before uv."""
    r = key >> (BR + BV)
    big = (key >> BV) & ((np.int64(1) << BR) - 1)
    z = key & ((np.int64(1) << BV) - 1)
    u, v = ei[order[r]], ej[order[r]]
    x = _third(ei, ej, order, u, v, big)
    for w in range(W):
        all3 = adj[u, w] & adj[v, w] & adj[x, w]
        while all3:
            y = (w << 6) + _low(all3, tab)
            all3 &= all3 - np.uint64(1)
            if R[u, y] < big and R[v, y] < big and R[x, y] < r:
                return (r << 32) | big if y == z else np.int64(-1)
    return np.int64(-1)


@_jit
def _triangle_block(m, ei, ej, order, r0, r1, R, tab):
    """The triangles whose largest edge has a rank in [r0, r1) that are in no apparent pair
    (dim 2's columns, with the dim-1 pivots of reduced columns among them), and the number of
    triangles seen. The bit rows `now` hold the edges before the current one, so a triangle's
    check is one pass over the AND of three rows that stops at the first witness."""
    W = (m + 63) >> 6
    now = np.zeros((m, W), np.uint64)
    for r in range(r1):
        u, v = ei[order[r]], ej[order[r]]
        _set(now, u, v)
        _set(now, v, u)
    link = np.empty(W, np.uint64)
    mid = np.empty(m, np.int64)
    wit = np.empty(_WITNESSES, np.int64)     # the link's first vertices by middle rank
    out = np.empty(64, np.int64)
    n_out = 0
    n_tri = 0
    for r in range(r1 - 1, r0 - 1, -1):
        u, v = ei[order[r]], ej[order[r]]
        _clear(now, u, v)
        _clear(now, v, u)
        n_wit = 0
        for w in range(W):              # the link of uv before it: its triangles
            both = now[u, w] & now[v, w]
            link[w] = both
            while both:
                x = (w << 6) + _low(both, tab)
                both &= both - np.uint64(1)
                mx = max(R[u, x], R[v, x])
                mid[x] = mx
                n_tri += 1
                if n_wit < _WITNESSES or mx < mid[wit[n_wit - 1]]:   # insert, sorted by rank
                    q = min(n_wit, _WITNESSES - 1)
                    while q > 0 and mid[wit[q - 1]] > mx:
                        wit[q] = wit[q - 1]
                        q -= 1
                    wit[q] = x
                    n_wit = min(n_wit + 1, _WITNESSES)
        if n_wit == 0:
            continue
        x0 = wit[0]
        for w in range(W):
            bits = link[w]
            while bits:
                x = (w << 6) + _low(bits, tab)
                bits &= bits - np.uint64(1)
                if x == x0:             # dim 1's apparent pair with edge uv: cleared
                    continue
                mx = mid[x]
                hit = False
                for q in range(n_wit):  # the witnesses first: their rows stay in cache
                    y = wit[q]
                    if mid[y] >= mx:
                        break
                    if _has(now, y, x):
                        hit = True
                        break
                if not hit:
                    for w2 in range(W):
                        c = link[w2] & now[x, w2]
                        while c:
                            if mid[(w2 << 6) + _low(c, tab)] < mx:
                                hit = True
                                break
                            c &= c - np.uint64(1)
                        if hit:
                            break
                if not hit:
                    out = _append(out, n_out, (np.int64(r) << 32) | mx)
                    n_out += 1
    return out[:n_out], n_tri


@_jit
def link_sizes(m, ei, ej, order, R, ranks):
    """Triangles whose largest edge is each of `ranks`: the common neighbours of its ends
    through earlier edges (a sample that shapes the triangle pass's blocks)."""
    out = np.zeros(ranks.size, np.int64)
    for q in range(ranks.size):
        r = ranks[q]
        u, v = ei[order[r]], ej[order[r]]
        c = 0
        for x in range(m):
            if R[u, x] < r and R[v, x] < r:
                c += 1
        out[q] = c
    return out


@nb.njit(cache=True, nogil=True, parallel=True)
def triangle_columns(m, ei, ej, order, bounds, R, tab):
    """_triangle_block over the blocks of edge ranks bounds[k]..bounds[k+1], on numba's
    threads; the columns of every block (concatenated) and the number of triangles."""
    nb_ = bounds.size - 1
    parts = [np.empty(0, np.int64) for _ in range(nb_)]
    counts = np.zeros(nb_, np.int64)
    for k in nb.prange(nb_):
        parts[k], counts[k] = _triangle_block(m, ei, ej, order, bounds[k], bounds[k + 1], R, tab)
    total = 0
    for k in range(nb_):
        total += parts[k].size
    cols = np.empty(total, np.int64)
    q = 0
    for k in range(nb_):
        cols[q:q + parts[k].size] = parts[k]
        q += parts[k].size
    return cols, counts.sum()


@_jit
def _reduce(W, adj, R, ei, ej, order, t, BR, BV, tab, B, S, last, mine, owner, vstart, vflat):
    """Reduce column t by the apparent pairs and the stored columns of `owner` (pivot ->
    column k, whose triangles are vflat[vstart[k]:vstart[k + 1]]), up to the first pivot that
    neither claims: that pivot (-1: the column is zero), the column's triangles (mine, with
    repeats) and their count."""
    S[:] = 0
    last[0] = 0
    _add_coboundary2(B, S, last, W, adj, R, ei, ej, order, t, BR, BV, tab)
    mine[0] = t
    n_mine = 1
    while True:
        p = _pivot(B, S, last)
        if p < 0:
            return p, mine, n_mine
        if p in owner:
            k = owner[p]
            for q in range(vstart[k], vstart[k + 1]):
                mine = _append(mine, n_mine, vflat[q])
                n_mine += 1
                _add_coboundary2(B, S, last, W, adj, R, ei, ej, order, vflat[q], BR, BV, tab)
            continue
        s = _apparent_tetra(W, adj, R, ei, ej, order, p, BR, BV, tab)
        if s < 0:
            return p, mine, n_mine
        mine = _append(mine, n_mine, s)
        n_mine += 1
        _add_coboundary2(B, S, last, W, adj, R, ei, ej, order, s, BR, BV, tab)


@_jit
def _reduce_part(W, adj, R, ei, ej, order, cols, BR, BV, tab, part, n_parts, pivots, counts):
    """Columns part, part + n_parts, ... reduced by the apparent pairs alone: their triangles,
    flat (one function, so that numba's prange does not hoist these buffers out of its loop
    and share them)."""
    B, S, last = _heap()
    mine = np.empty(16, np.int64)
    flat = np.empty(16, np.int64)
    owner, vstart = _no_owner(), np.zeros(1, np.int64)
    n_flat = 0
    for c in range(part, cols.size, n_parts):
        p, mine, n_mine = _reduce(W, adj, R, ei, ej, order, cols[c], BR, BV, tab, B, S, last, mine,
                                  owner, vstart, flat)
        n_mine = _cancel(mine, n_mine)
        pivots[c] = p
        counts[c] = n_mine
        for q in range(n_mine):
            flat = _append(flat, n_flat, mine[q])
            n_flat += 1
    return flat[:n_flat]


@nb.njit(cache=True, nogil=True, parallel=True)
def reduce_apparent(m, ei, ej, order, R, adj, cols, BR, BV, tab, n_parts):
    """_reduce_apparent of every column, on numba's threads (the columns dealt round in
    `n_parts` parts, each with its own working column): the pivots, and each column's
    triangles (flat, from starts[c] to starts[c + 1], Z/2-cancelled)."""
    W = (m + 63) >> 6
    n = cols.size
    pivots = np.empty(n, np.int64)
    counts = np.zeros(n, np.int64)
    parts = [np.empty(0, np.int64) for _ in range(n_parts)]
    for k in nb.prange(n_parts):
        parts[k] = _reduce_part(W, adj, R, ei, ej, order, cols, BR, BV, tab, k, n_parts, pivots, counts)
    starts = np.zeros(n + 1, np.int64)
    for c in range(n):
        starts[c + 1] = starts[c] + counts[c]
    out = np.empty(starts[n], np.int64)
    at = np.zeros(n_parts, np.int64)
    for c in range(n):
        part = c % n_parts
        out[starts[c]:starts[c + 1]] = parts[part][at[part]:at[part] + counts[c]]
        at[part] += counts[c]
    return pivots, starts, out


@_jit
def run2(m, ei, ej, order, R, adj, cols, BR, BV, tab, pivots0, starts0, mine0):
    """Dim 2's persistence pairs: ripser's cohomology reduction of the triangle columns `cols`
    (sorted, last first; the apparent and cleared ones left out), as run's dim 1 with
    tetrahedra for triangles. reduce_apparent has taken each column as far as the apparent
    pairs go (pivots0, and its triangles in mine0[starts0[c]:starts0[c + 1]]); a column whose
    pivot there is no earlier column's is done, the few others are reduced again here with the
    earlier columns. Returns births and deaths as edge ranks (-1: essential), the number of
    triangles the stored columns hold and the number of columns reduced again."""
    W = (m + 63) >> 6
    n_cols = cols.size
    owner = _no_owner()
    vstart = np.zeros(n_cols + 1, np.int64)
    vflat = np.empty(16, np.int64)
    births = np.empty(n_cols, np.int64)
    deaths = np.empty(n_cols, np.int64)
    n_again = 0
    B, S, last = _heap()
    mine = np.empty(16, np.int64)
    for k in range(n_cols):
        t = cols[k]
        p = pivots0[k]
        src, lo, n_mine = mine0, starts0[k], starts0[k + 1] - starts0[k]
        if p >= 0 and p in owner:            # an earlier column has that pivot: again, with it
            n_again += 1
            p, mine, n_mine = _reduce(W, adj, R, ei, ej, order, t, BR, BV, tab, B, S, last, mine,
                                      owner, vstart, vflat)
            src, lo, n_mine = mine, 0, _cancel(mine, n_mine)
        births[k] = t >> 32
        deaths[k] = p >> (BR + BV) if p >= 0 else -1
        if p < 0:                            # a cocycle: essential class, nothing stored
            vstart[k + 1] = vstart[k]
            continue
        owner[p] = k
        vflat = _store(vflat, vstart[k], src[lo:], n_mine)
        vstart[k + 1] = vstart[k] + n_mine
    return births, deaths, vstart[n_cols], n_again
