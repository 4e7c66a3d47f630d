"""Persistent homology against ripser.py and against spaces whose homology is known by hand."""
import numpy as np
import pytest
import scipy.sparse as sp
from ripser import ripser

from dnntopo import topology
from dnntopo.errors import UserError
from dnntopo.topology import persistence


def sparse_edges(dist, t):
    iu, ju = np.triu_indices(dist.shape[0], 1)
    keep = dist[iu, ju] <= t
    return iu[keep], ju[keep], dist[iu, ju][keep].astype(np.float32)


def same_diagram(a, b, tol=1e-6):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return False
    key = lambda d: d[np.lexsort((d[:, 1], d[:, 0]))]  # noqa: E731
    a, b = key(a), key(b)
    fa, fb = np.isfinite(a), np.isfinite(b)
    return np.array_equal(fa, fb) and np.allclose(a[fa], b[fb], atol=tol)


def points_distance(p, scale):
    d = np.sqrt(((p[:, None] - p[None]) ** 2).sum(-1))
    return d / scale


@pytest.mark.parametrize("collapse", ["on", "off"])
@pytest.mark.parametrize("backend", ["giotto", "ripser"])
def test_equals_ripser_py(collapse, backend):
    rng = np.random.default_rng(4)
    p = rng.standard_normal((70, 4))
    d = points_distance(p, 6.0)
    t = 0.45
    i, j, v = sparse_edges(d, t)
    ours = persistence(70, i, j, v, 2, collapse=collapse, engine=backend)
    ref = ripser(sp.coo_matrix((v, (i, j)), shape=(70, 70)), maxdim=2, distance_matrix=True)["dgms"]
    assert [len(x) for x in ours] == [len(x) for x in ref]
    for a, b in zip(ours, ref):
        assert same_diagram(a, b)
    assert sum(len(x) for x in ours[1:]) > 0      # the test exercises higher dimensions


def test_circle_has_one_long_class():
    ang = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    d = points_distance(np.c_[np.cos(ang), np.sin(ang)], 2.5)   # diameter 0.8
    i, j, v = sparse_edges(d, 1.0)
    dg = persistence(24, i, j, v, 1)
    life = dg[1][:, 1] - dg[1][:, 0]
    assert len(dg[1]) == 1 and life[0] > 0.3
    assert np.isclose(dg[1][0, 0], d[0, 1], atol=1e-6)           # born when the ring closes
    assert dg[0].shape == (24, 2) and np.sum(np.isinf(dg[0][:, 1])) == 1


def test_octahedron_has_one_cavity():
    p = np.vstack([np.eye(3), -np.eye(3)])
    d = points_distance(p, 2.0)          # adjacent vertices sqrt(2)/2, antipodes 1
    i, j, v = sparse_edges(d, 0.9)
    for collapse in ("on", "off"):
        dg = persistence(6, i, j, v, 2, collapse=collapse)
        assert len(dg[1]) == 0 and len(dg[2]) == 1
        assert np.isclose(dg[2][0, 0], np.sqrt(2) / 2, atol=1e-6) and np.isinf(dg[2][0, 1])


def test_two_clusters_and_isolated_vertices():
    rng = np.random.default_rng(1)
    p = np.vstack([rng.normal(0, 0.05, (10, 2)), rng.normal(5, 0.05, (10, 2)), [[50, 50], [-50, 50]]])
    d = points_distance(p, 1.0)
    i, j, v = sparse_edges(d, 0.6)
    info = {}
    dg = persistence(22, i, j, v, 1, info=info)
    ess = dg[0][np.isinf(dg[0][:, 1])]
    assert len(ess) == 4 and np.all(ess[:, 0] == 0)  # two clusters + two isolated vertices
    assert info["n_isolated"] == 2 and info["n_components"] == 2
    ref = ripser(sp.coo_matrix((v, (i, j)), shape=(22, 22)), maxdim=1, distance_matrix=True)["dgms"]
    assert same_diagram(dg[0], ref[0])


def test_components_are_split_when_the_index_overflows(monkeypatch):
    """Two disjoint cliques: batched per component, the union is the same diagram."""
    rng = np.random.default_rng(2)
    p = np.vstack([rng.normal(0, 1, (12, 3)), rng.normal(100, 1, (12, 3))])
    d = points_distance(p, 12.0)
    i, j, v = sparse_edges(d, 0.6)
    whole = persistence(24, i, j, v, 2, collapse="off")
    monkeypatch.setattr(topology, "MAX_SIMPLEX_INDEX", topology.comb(12, 4))
    parts = persistence(24, i, j, v, 2, collapse="off")
    for a, b in zip(whole, parts):
        assert same_diagram(a, b)


def test_index_limit_is_refused():
    n = 3000
    i, j = np.triu_indices(n, 1)
    keep = (j - i) < 3
    with pytest.raises(UserError, match=r"--max-dim 5: .* at most \d+ vertices"):
        persistence(n, i[keep], j[keep], np.full(keep.sum(), 0.1, np.float32), 5)
    assert topology.comb(topology.max_vertices(2), 4) <= topology.MAX_SIMPLEX_INDEX
    assert topology.comb(topology.max_vertices(2) + 1, 4) > topology.MAX_SIMPLEX_INDEX


def test_backends_by_name(monkeypatch, tmp_path):
    from dnntopo.spec import TopologySpec
    assert topology.backend(TopologySpec()).name == "giotto"
    assert topology.backend(TopologySpec(backend="ripser")).name == "ripser"
    monkeypatch.delenv("DIPHA", raising=False)
    with pytest.raises(UserError, match="--backend dipha needs the DIPHA binary"):
        topology.backend(TopologySpec(backend="dipha"))
    with pytest.raises(UserError, match=f"--dipha {tmp_path}/none: not an executable"):
        topology.backend(TopologySpec(backend="dipha", dipha=str(tmp_path / "none")))


def test_progress_hears_collapse_and_reduction():
    rng = np.random.default_rng(4)
    d = points_distance(rng.standard_normal((70, 4)), 6.0)
    i, j, v = sparse_edges(d, 0.45)
    heard = []
    persistence(70, i, j, v, 2, collapse="on", progress=heard.append)
    assert heard[0].startswith("PH estimate: about ") and "GiB" in heard[0]      # the pre-flight first
    assert heard[1].startswith("collapse pass 1: ") and heard[-1].startswith("reduction (giotto, dims 0-2")


def test_preflight_estimate_by_hand_and_refusal(monkeypatch):
    """The cost model's numbers against a hand computation; a graph over the limit is refused
    in one line before the collapse or the reduction starts."""
    log = np.log
    monkeypatch.setattr(topology, "COST", {
        ("direct1", "seconds"): (log(1e-6), 1.0, 1.0), ("direct1", "bytes"): (log(100.0), 1.0, 0.0),
        ("collapse", "seconds"): (log(1e-9), 1.0, 2.0), ("collapse", "bytes"): (log(50.0), 1.0, 0.0),
        ("collapse", "kept"): (log(0.1), 0.0, 0.0),
        ("after1", "seconds"): (log(1e-6), 1.0, 1.0), ("after1", "bytes"): (log(100.0), 1.0, 0.0),
        ("lowdim", "seconds"): (log(1e-7), 1.0, 0.0), ("lowdim", "bytes"): (log(1000.0), 1.0, 0.0),
        ("lowdim2", "seconds"): (log(1e-8), 1.0, 0.0), ("lowdim2", "bytes"): (log(2000.0), 1.0, 0.0)})
    est = topology.estimate(100, 5000, 1, collapse=False, engine="ripser")       # degree 100
    assert np.isclose(est.seconds, 1e-6 * 5000 * 100) and np.isclose(est.bytes, 16 * 5000 + 100 * 5000)
    est = topology.estimate(100, 5000, 1, collapse=True, engine="ripser")        # 500 edges left, degree 10
    assert est.edges_after == 500
    assert np.isclose(est.seconds, 1e-9 * 5000 * 100 ** 2 + 1e-6 * 500 * 10)
    assert np.isclose(est.bytes, 16 * 5000 + max(50 * 5000, 100 * 500))
    # auto follows the model: collapsing costs 0.05 + 0.005 s against 0.5 s directly
    assert topology.use_collapse("auto", 1, 5000, 100, engine="ripser")
    assert not topology.use_collapse("off", 1, 5000, 100, engine="ripser")
    # giotto's dims 0-1 of this dense graph are dnntopo.lowdim's (its own stage): 0.0005 s
    # directly, so auto does not collapse; the 500 edges left would go to giotto-ph (after1)
    est = topology.estimate(100, 5000, 1, collapse=False)
    assert np.isclose(est.seconds, 1e-7 * 5000) and np.isclose(est.bytes, 16 * 5000 + 1000 * 5000)
    assert np.isclose(topology.estimate(100, 5000, 1, collapse=True).seconds, 1e-9 * 5000 * 100 ** 2 + 1e-6 * 500 * 10)
    assert not topology.use_collapse("auto", 1, 5000, 100)
    # ... unless only the collapsed path fits the memory limit (0.33 MB against 5.1 MB)
    assert topology.use_collapse("auto", 1, 5000, 100, limit=topology.MEMORY_MARGIN * (16 * 5000 + 50 * 5000) + 1)
    # dims 0-2 on lowdim do dims 0-1's work first: each of time and memory is the larger of the two stages
    est = topology.estimate(100, 5000, 2, collapse=False)
    assert np.isclose(est.seconds, 1e-7 * 5000) and np.isclose(est.bytes, 16 * 5000 + 2000 * 5000)
    rng = np.random.default_rng(0)
    p = rng.standard_normal((120, 3))
    i, j, v = sparse_edges(points_distance(p, 8.0), 0.5)
    info = {}
    with pytest.raises(UserError) as err:
        persistence(120, i, j, v, 1, collapse="on", info=info, max_bytes=1000)
    msg = str(err.value)
    assert "pre-flight estimate" in msg and "--max-memory" in msg and "--max-nodes" in msg and "\n" not in msg
    assert "seconds_collapse" not in info                       # refused before the heavy work
    got = persistence(120, i, j, v, 1, collapse="on", info=info)  # no limit: computed, estimate kept
    assert info["estimate_bytes"] > 0 and same_diagram(got[1], ripser(
        sp.coo_matrix((v, (i, j)), shape=(120, 120)), maxdim=1, distance_matrix=True)["dgms"][1])



def test_preflight_checks_again_after_the_collapse(monkeypatch):
    """A model that expects the collapse to leave almost nothing passes the first check; the
    collapse leaves more, whose reduction (1000 bytes an edge by this model) is over the limit:
    refused before the reduction, in one line that says it is the collapsed graph."""
    log = np.log
    monkeypatch.setattr(topology, "COST", {("collapse", "seconds"): (log(1e-9), 1.0, 0.0),
                                           ("collapse", "bytes"): (0.0, 0.0, 0.0),
                                           ("collapse", "kept"): (log(1e-9), 0.0, 0.0),
                                           ("after1", "seconds"): (log(1e-9), 1.0, 0.0),
                                           ("after1", "bytes"): (log(1000.0), 1.0, 0.0)})
    rng = np.random.default_rng(1)
    i, j, v = sparse_edges(points_distance(rng.standard_normal((120, 3)), 8.0), 0.5)
    first = topology.estimate(120, i.size, 1, True)
    limit = 2 * topology.MEMORY_MARGIN * first.bytes
    info = {}
    with pytest.raises(UserError) as err:
        persistence(120, i, j, v, 1, collapse="on", info=info, max_bytes=limit)
    msg = str(err.value)
    assert msg.startswith("the reduction of the collapsed graph") and "\n" not in msg
    import re
    left = int(re.search(r"vertices, (\d+) edges", msg).group(1))
    assert 0 < left < i.size                               # the collapsed graph, not the input
    assert info["estimate_bytes"] == first.bytes and "seconds_reduction" not in info

@pytest.mark.mpi
def test_rank0_reduces_with_the_cores_of_the_waiting_ranks(tmp_path):
    """Under mpiexec -n 2 each rank is bound to one core; rank 0's reduction runs with 2
    threads (it borrows rank 1's core while rank 1 waits) and gives ripser.py's diagrams."""
    import json
    import os

    from mpirun import check, run_mpi
    if len(os.sched_getaffinity(0)) < 2:
        pytest.fail("this test needs 2 cores")
    check(run_mpi(2, """
        import json, os
        import numpy as np
        from dnntopo import graph, topology
        from dnntopo.spec import TopologySpec
        from hpc.comm import get_comm
        comm = get_comm()
        rng = np.random.default_rng(comm.Get_rank())
        x = rng.standard_normal((100, 40)).astype(np.float32)
        x[:, 20:] += x[:, :20]
        g = graph.functional_graph(comm, x, 0.9, 50)
        info = {}
        spec = TopologySpec(max_dim=1, max_distance=0.9)
        dg = topology.backend(spec).diagrams(comm, g, spec, str(tmp), info)
        if comm.Get_rank() == 0:
            e = g.edges
            with open("rank0.json", "w") as fh:
                json.dump({"threads": info["threads"], "own": len(os.sched_getaffinity(0)),
                           "n": g.n, "i": e.i.tolist(), "j": e.j.tolist(), "d": e.distance.tolist(),
                           "h1": dg[1].tolist()}, fh)
        """.replace("str(tmp)", repr(str(tmp_path / "scratch"))), cwd=tmp_path,
        env={"OMPI_MCA_hwloc_base_binding_policy": "core"}))
    got = json.loads((tmp_path / "rank0.json").read_text())
    assert got["own"] == 1 and got["threads"] == 2
    i, j, d = np.array(got["i"]), np.array(got["j"]), np.array(got["d"], dtype=np.float32)
    ref = ripser(sp.coo_matrix((d, (i, j)), shape=(got["n"],) * 2), maxdim=1, distance_matrix=True)["dgms"]
    assert same_diagram(np.array(got["h1"]).reshape(-1, 2), ref[1]) and len(ref[1]) > 0
