"""The compiled dims 0-1 and 0-2 reductions against ripser.py and giotto-ph: random clouds with
and without ties, random weights, disconnected graphs, hand-worked cycles and a sphere, a real
epoch; and their place in topology.persistence."""
import numpy as np
import pytest
import scipy.sparse as sp
from gph import ripser_parallel
from ripser import ripser

from conftest import epoch_edges
from dnntopo import lowdim, topology


def cloud_edges(seed, n, dim, quantile, ties):
    rng = np.random.default_rng(seed)
    p = rng.standard_normal((n, dim))
    d = np.sqrt(((p[:, None] - p[None]) ** 2).sum(-1))
    d /= d.max()
    if ties:
        d = np.round(d, 1)                  # many equal distances: the order among them matters
    iu, ju = np.triu_indices(n, 1)
    t = np.quantile(d[iu, ju], quantile)
    keep = d[iu, ju] <= t
    return iu[keep].astype(np.int32), ju[keep].astype(np.int32), d[iu, ju][keep].astype(np.float32)


def reference(n, i, j, d, engine="ripser", max_dim=1):
    mat = sp.coo_matrix((np.asarray(d, dtype=np.float32), (i, j)), shape=(n, n))
    if engine == "ripser":
        dgms = ripser(mat, maxdim=max_dim, distance_matrix=True)["dgms"]
    else:
        dgms = ripser_parallel(mat, maxdim=max_dim, metric="precomputed", n_threads=2)["dgms"]
    return [np.asarray(x, dtype=np.float64) for x in dgms]


def same(a, b):
    b = b[b[:, 1] > b[:, 0]]                # ripser.py leaves zero persistence out too; be sure
    if a.shape != b.shape:
        return False
    a, b = a[np.lexsort((a[:, 1], a[:, 0]))], b[np.lexsort((b[:, 1], b[:, 0]))]
    fa, fb = np.isfinite(a), np.isfinite(b)
    return np.array_equal(fa, fb) and np.allclose(a[fa], b[fb], atol=1e-6)


@pytest.mark.parametrize("seed", range(12))
def test_random_clouds_give_ripsers_diagrams(seed):
    """Dense and sparse thresholds (some graphs disconnected), with and without ties."""
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(20, 90))
    i, j, d = cloud_edges(seed, n, 2 + seed % 3, rng.uniform(0.05, 1.0), ties=seed % 2 == 1)
    ours, ref = lowdim.diagrams(n, i, j, d), reference(n, i, j, d)
    assert same(ours[0], ref[0]) and same(ours[1], ref[1])


def test_many_cycles_and_essential_classes():
    """Points on 3 separate circles, edges only to near neighbours: each circle is a component
    with one essential 1-cycle; with the edges up to the circle's width the holes die."""
    t = np.linspace(0, 2 * np.pi, 13)[:-1]
    p = np.concatenate([np.c_[np.cos(t) + 5 * k, np.sin(t)] for k in range(3)])
    n = len(p)
    dist = np.sqrt(((p[:, None] - p[None]) ** 2).sum(-1))
    iu, ju = np.triu_indices(n, 1)
    for thr, essential in ((0.6, 3), (2.1, 0)):
        keep = dist[iu, ju] <= thr
        i, j, d = iu[keep], ju[keep], dist[iu, ju][keep].astype(np.float32)
        ours = lowdim.diagrams(n, i, j, d)
        assert np.isinf(ours[0][:, 1]).sum() == 3 and np.isinf(ours[1][:, 1]).sum() == essential
        assert same(ours[1], reference(n, i, j, d)[1]) and same(ours[0], reference(n, i, j, d)[0])


def test_hand_worked_square():
    """A 4-cycle at 1 with its diagonals at 2: one hole born at 1 (the last side) and killed at
    2 (the first diagonal makes two triangles); the components die at 1, one lives."""
    i, j = np.array([0, 1, 2, 0, 0, 1]), np.array([1, 2, 3, 3, 2, 3])
    d = np.array([1, 1, 1, 1, 2, 2], dtype=np.float32)
    dg0, dg1 = lowdim.diagrams(4, i, j, d)
    assert np.array_equal(dg1, [[1.0, 2.0]])
    assert np.array_equal(np.sort(dg0[:, 1]), [1.0, 1.0, 1.0, np.inf]) and np.all(dg0[:, 0] == 0)


@pytest.fixture(scope="module")
def real_edges(module_run):
    """The functional graph of a real LeNet epoch (400 samples, distance <= 0.5)."""
    return epoch_edges(module_run, 0.5)


def test_real_epoch_gives_giottos_diagrams(real_edges):
    """A real LeNet epoch (hundreds of thousands of edges): giotto-ph's diagrams, and through
    topology.persistence (which takes this path for giotto's dims 0-1) the same again."""
    n, i, j, d = real_edges
    assert i.size > 50_000 and lowdim.fits(n, i.size)
    ref = reference(n, i, j, d, "giotto")
    info = {}
    ours = lowdim.diagrams(n, i, j, d, info)
    assert same(ours[0], ref[0]) and same(ours[1], ref[1]) and len(ref[1]) > 10
    assert 0 < info["dim1_columns"] < i.size / 20          # apparent pairs: few columns left
    info = {}
    full = topology.persistence(n, i, j, d, 1, engine="giotto", info=info)
    assert info["engine"] == "lowdim" and info.get("collapsed_edges") == i.size   # no collapse
    assert same(full[1], ref[1]) and same(full[0], ref[0])


def test_persistence_takes_it_only_for_dense_dims_0_1_and_0_2():
    """ripser.py stays ripser.py; dim 0 alone, dims 0-3, small or sparse graphs, and dims 0-2
    of graphs whose tetrahedron keys would not fit 63 bits go to the engine asked."""
    assert topology.use_lowdim("giotto", 1, 4682, 2_906_150)
    assert topology.use_lowdim("giotto", 2, 4682, 2_906_150)             # keys of 22 + 22 + 13 bits
    assert not topology.use_lowdim("giotto", 0, 4682, 2_906_150)          # a union-find: giotto-ph
    assert not topology.use_lowdim("ripser", 1, 4682, 2_906_150)
    assert not topology.use_lowdim("giotto", 3, 4682, 2_906_150)
    assert topology.use_lowdim("giotto", 1, 20_871, 25_046_772)          # resnet18 at 0.6
    assert not topology.use_lowdim("giotto", 2, 20_871, 25_046_772)      # 25 + 25 + 15 bits
    assert not topology.use_lowdim("giotto", 1, 100, 1000)            # small: giotto-ph at once
    assert not topology.use_lowdim("giotto", 1, 100_000, 500_000)     # sparse: 40 GB of ranks
    assert not lowdim.fits(70_000, 2**31)                              # beyond int32 ranks


def random_graph(seed, n, p, zero_share=0.0):
    """A random graph with random weights (no metric behind them), some at distance 0."""
    rng = np.random.default_rng(seed)
    iu, ju = np.triu_indices(n, 1)
    keep = rng.random(iu.size) < p
    d = rng.random(int(keep.sum())).astype(np.float32)
    d[rng.random(d.size) < zero_share] = 0.0
    return iu[keep].astype(np.int32), ju[keep].astype(np.int32), d


@pytest.mark.parametrize("seed", range(6))
def test_random_weighted_graphs_give_ripsers_diagrams(seed):
    """Weights that satisfy no triangle inequality, zero-distance edges, and vertices with no
    edge at all (each its own essential component), passed as they are."""
    n = 40 + 10 * seed
    i, j, d = random_graph(seed, n, 0.1 + 0.1 * (seed % 4), zero_share=0.05)
    n_all = n + 3                                # three vertices without edges
    ours, ref = lowdim.diagrams(n_all, i, j, d), reference(n_all, i, j, d)
    assert same(ours[0], ref[0]) and same(ours[1], ref[1]) and len(ref[1]) > 0


def test_long_reductions_stay_small():
    """A random weighted graph whose columns are reduced by many stored columns: the stored
    sums are kept mod 2 (without that, this graph stored lists of 965k edges and ran out of
    memory), and the diagrams are ripser.py's."""
    i, j, d = random_graph(7, 150, 0.3)
    info = {}
    ours = lowdim.diagrams(150, i, j, d, info)
    ref = reference(150, i, j, d)
    assert info["dim1_columns"] > 100 and same(ours[0], ref[0]) and same(ours[1], ref[1])
    assert info["dim1_stored"] < 100 * info["dim1_columns"]      # it was 4.5M edges in all


def test_dim_0_alone_and_bad_indices():
    """Dim 0 alone stays giotto-ph's (no m x m ranks for a union-find); an edge naming a vertex
    outside 0..m-1 is refused rather than read out of bounds."""
    i, j, d = random_graph(8, 200, 0.3)
    info = {}
    dg = topology.persistence(200, i, j, d, 0, engine="giotto", info=info)
    assert "engine" not in info and same(dg[0], reference(200, i, j, d)[0])
    with pytest.raises(ValueError, match="outside"):
        lowdim.diagrams(2, np.array([0, 1]), np.array([1, 2]), np.array([0.1, 0.2], np.float32))


def same3(ours, ref):
    return len(ours) == 3 and all(same(ours[k], np.asarray(ref[k], dtype=np.float64)) for k in range(3))


@pytest.mark.parametrize("seed", range(10))
def test_dims_0_2_random_graphs_give_ripsers_diagrams(seed):
    """Clouds with and without tied distances, and random weights with zero distances and
    vertices without edges, at thresholds from sparse (disconnected) to complete."""
    rng = np.random.default_rng(200 + seed)
    n = int(rng.integers(25, 60))
    if seed % 2 == 0:
        i, j, d = cloud_edges(seed, n, 2 + seed % 4, rng.uniform(0.1, 1.0), ties=seed % 4 == 2)
        n_all = n
    else:
        i, j, d = random_graph(seed, n, rng.uniform(0.15, 0.8), zero_share=0.05 * (seed % 3))
        n_all = n + 2
    info = {}
    ours = lowdim.diagrams(n_all, i, j, d, info, max_dim=2, threads=2)
    assert same3(ours, reference(n_all, i, j, d, max_dim=2))
    assert info["dim2_columns"] < info["dim2_triangles"]


def octahedron():
    """The six points +-e1, +-e2, +-e3: neighbours at sqrt(2), opposite points at 2."""
    p = np.vstack([np.eye(3), -np.eye(3)])
    dist = np.sqrt(((p[:, None] - p[None]) ** 2).sum(-1))
    iu, ju = np.triu_indices(6, 1)
    return iu, ju, dist[iu, ju].astype(np.float32)


def test_octahedron_is_a_sphere():
    """Hand-worked: at sqrt(2) the 12 sides and 8 faces make a 2-sphere (no 1-cycle is left:
    every square is filled), which the three diagonals at 2 fill: one class [sqrt(2), 2) in
    dim 2. Without the diagonals the sphere is essential."""
    i, j, d = octahedron()
    dg0, dg1, dg2 = lowdim.diagrams(6, i, j, d, max_dim=2)
    r2 = np.float32(np.sqrt(2))
    assert np.allclose(dg2, [[r2, 2.0]]) and dg1.size == 0
    assert np.allclose(np.sort(dg0[:, 1]), [r2] * 5 + [np.inf])
    keep = d < 2
    dg2 = lowdim.diagrams(6, i[keep], j[keep], d[keep], max_dim=2)[2]
    assert np.allclose(dg2[:, 0], r2) and np.isinf(dg2[:, 1]).all() and len(dg2) == 1


def test_dims_0_2_threads_and_long_reductions():
    """A random weighted graph with thousands of dim-2 columns, many of them reduced by the
    columns before them: 1 and 2 threads give the same columns and ripser.py's diagrams."""
    import numba
    i, j, d = random_graph(11, 70, 0.5)
    runs = []
    before = numba.get_num_threads()
    for threads in (1, 2):
        info = {}
        runs.append((lowdim.diagrams(70, i, j, d, info, max_dim=2, threads=threads), info))
        assert info.pop("dim2_threads") == min(threads, numba.config.NUMBA_NUM_THREADS)
        assert numba.get_num_threads() == before                  # numba's own setting restored
    (a, ia), (b, ib) = runs
    assert ia == ib and ia["dim2_columns"] > 1000 and ia["dim2_again"] > 0
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert same3(a, reference(70, i, j, d, max_dim=2)) and len(a[2]) > 10


def test_real_epoch_dims_0_2(real_edges):
    """The real LeNet epoch in dims 0-2: giotto-ph's diagrams, directly and through
    topology.persistence (with the collapse off; `auto` may collapse first, which the
    topology tests cover), and almost every triangle in an apparent pair."""
    n, i, j, d = real_edges
    ref = reference(n, i, j, d, "giotto", max_dim=2)
    info = {}
    ours = lowdim.diagrams(n, i, j, d, info, max_dim=2, threads=2)
    assert same3(ours, ref) and len(ref[2]) > 0
    assert info["dim2_columns"] < info["dim2_triangles"] / 100
    info = {}
    full = topology.persistence(n, i, j, d, 2, collapse="off", info=info)
    assert info["engine"] == "lowdim" and same3(full, ref)
