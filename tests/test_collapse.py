"""The exact edge collapse: one pass against GUDHI's (edges and times), every pass against
ripser.py's diagrams (random clouds, a real epoch, a hand-built graph), both collapsers."""
import gudhi
import numpy as np
import pytest
import scipy.sparse as sp
from ripser import ripser

from conftest import epoch_edges
from dnntopo import collapse, topology


def cloud_edges(seed, n, dim, t, ties=False):
    rng = np.random.default_rng(seed)
    p = rng.standard_normal((n, dim))
    d = np.sqrt(((p[:, None] - p[None]) ** 2).sum(-1))
    d /= d.max()
    if ties:
        d = np.round(d, 2)
    iu, ju = np.triu_indices(n, 1)
    keep = d[iu, ju] <= t
    return iu[keep], ju[keep], d[iu, ju][keep].astype(np.float32)


def diagrams(n, i, j, d, dim):
    mat = sp.coo_matrix((np.asarray(d, dtype=np.float32), (i, j)), shape=(n, n))
    return [np.asarray(x) for x in ripser(mat, maxdim=dim, distance_matrix=True)["dgms"]]


def same(a, b):
    if a.shape != b.shape:
        return False
    a, b = a[np.lexsort((a[:, 1], a[:, 0]))], b[np.lexsort((b[:, 1], b[:, 0]))]
    fa, fb = np.isfinite(a), np.isfinite(b)
    return np.array_equal(fa, fb) and np.allclose(a[fa], b[fb], atol=1e-6)


@pytest.mark.parametrize("seed,ties", [(0, False), (1, True), (2, False), (3, True)])
def test_collapse_keeps_the_diagrams(seed, ties):
    n = 60 + 10 * seed
    i, j, d = cloud_edges(seed, n, 3 + seed % 2, 0.55, ties)
    ci, cj, cd = topology.edge_collapse(n, i, j, d)       # every pass
    assert ci.size < i.size / 2 and np.all(ci < cj)
    full, small = diagrams(n, i, j, d, 2), diagrams(n, ci, cj, cd, 2)
    assert all(same(a, b) for a, b in zip(full, small))
    assert sum(len(x) for x in full[1:]) > 0                # the graphs have cycles and cavities


def gudhi_pass(n, i, j, d):
    st = gudhi.SimplexTree()
    st.insert_batch(np.arange(n, dtype=np.int32)[None, :], np.zeros(n))
    st.insert_batch(np.vstack([i, j]).astype(np.int32), np.asarray(d, dtype=np.float64))
    st.collapse_edges(nb_iterations=1)
    return {(min(s), max(s)): f for s, f in st.get_skeleton(1) if len(s) == 2}


@pytest.mark.parametrize("seed,n,t", [(4, 80, 0.5), (5, 150, 0.8), (6, 200, 1.0)])
def test_one_pass_gives_gudhis_edges_and_times(seed, n, t):
    """Distinct distances (no ties, where the order of equal edges could differ): the same
    edges as GUDHI's pass with the same, sometimes delayed, times."""
    i, j, d = cloud_edges(seed, n, 4, t)
    d = ((np.argsort(np.argsort(d, kind="stable")) + 1) / d.size).astype(np.float32)   # ranks: distinct
    assert np.unique(d).size == d.size
    ci, cj, cd = collapse.collapse_pass(n, i, j, d)
    ours = {(a, b): f for a, b, f in zip(ci.tolist(), cj.tolist(), cd.tolist())}
    theirs = gudhi_pass(n, i, j, d)
    assert ours.keys() == theirs.keys() and ci.size < i.size
    assert all(ours[e] == np.float32(theirs[e]) for e in ours)
    assert sum(ours[e] > d0 for e, d0 in zip(zip(i.tolist(), j.tolist()), d.tolist()) if e in ours) > 0


@pytest.fixture(scope="module")
def real_edges(module_run):
    """The functional graph of a real LeNet epoch (400 samples, distance <= 0.45)."""
    return epoch_edges(module_run, 0.45)


@pytest.mark.parametrize("dense", [True, False])
def test_real_epoch_keeps_the_diagrams(real_edges, dense, monkeypatch):
    """Both collapsers (the bit matrices for dense graphs, GUDHI's for sparse ones) on a real
    epoch: ripser.py's diagrams of the collapsed graph equal those of the whole graph."""
    n, i, j, d = real_edges
    monkeypatch.setattr(topology, "collapse_fits", lambda m, e: dense)
    ci, cj, cd = topology.edge_collapse(n, i, j, d)
    assert 0 < ci.size < i.size / 3
    full, small = diagrams(n, i, j, d, 2), diagrams(n, ci, cj, cd, 2)
    assert all(same(a, b) for a, b in zip(full, small))
    assert len(full[1]) > 0


def test_dense_graphs_go_to_the_bit_matrices():
    """The bit-matrix collapse holds 4.25 m^2 bytes: taken for dense graphs, not for sparse."""
    assert collapse.pass_bytes(1000) == 4 * 10**6 + 2 * 1000 * 16 * 8
    assert collapse.fits(4682, 2_900_000)           # AlexNet at 0.6: 93 MB for 2.9M edges
    assert collapse.fits(21258, 19_853_150)         # resnet18 at 0.6: 1.9 GB for 19.9M edges
    assert not collapse.fits(100_000, 500_000)      # 40 GB for half a million edges


def test_hand_built_square_with_diagonals():
    """A 4-cycle at time 1 whose diagonals come at 2: the diagonal edges are dominated at once
    (each by a vertex of the square) and go; the square's hole (1, 2) survives in what is left."""
    i = np.array([0, 1, 2, 0, 0, 1])
    j = np.array([1, 2, 3, 3, 2, 3])
    d = np.array([1, 1, 1, 1, 2, 2], dtype=np.float32) / 4
    ci, cj, cd = topology.edge_collapse(4, i, j, d)
    assert same(diagrams(4, ci, cj, cd, 1)[1], np.array([[0.25, 0.5]]))
    assert ci.size < 6


def test_another_pass_weighs_the_saving_against_the_pass(monkeypatch):
    """By hand, with a model where a reduction costs 1e-6 s per edge (any degree) and a pass
    scales linearly: a pass of 1 s that halved 1e6 edges saves 0.25 s next time for about 0.5 s
    of work: stop; at 1e-5 s per edge it saves 2.5 s: go on. Too small a gain always stops."""
    log = np.log
    monkeypatch.setattr(topology, "COST", {("collapse", "seconds"): (0.0, 1.0, 0.0),
                                           ("after2", "seconds"): (log(1e-6), 1.0, 0.0)})
    assert not topology.another_pass(1.0, 1_000_000, 500_000, 1000, 2)
    topology.COST[("after2", "seconds")] = (log(1e-5), 1.0, 0.0)
    assert topology.another_pass(1.0, 1_000_000, 500_000, 1000, 2)
    assert not topology.another_pass(0.001, 1_000_000, 990_000, 1000, 2)     # under 5% removed
    assert topology.another_pass(9.0, 1_000_000, 500_000, 1000, None)      # no dimension: gain only
