"""The functional graph of sharded activations against numpy, and the edge density."""
import numpy as np

from dnntopo import graph
from hpc.comm import SerialComm


def test_functional_graph_equals_numpy():
    rng = np.random.default_rng(5)
    latent = rng.standard_normal((300, 4))
    x = (latent @ rng.standard_normal((4, 60)) + 0.5 * rng.standard_normal((300, 60))).astype(np.float32)
    x[:, 7] = 2.0                                                   # a dead unit
    with np.errstate(invalid="ignore", divide="ignore"):
        ref = 1 - np.abs(np.nan_to_num(np.corrcoef(x.T.astype(np.float64)), nan=0.0))
    steps = []
    g = graph.functional_graph(SerialComm(), x.copy(), 0.5, 64, dense=True, progress=steps.append)
    e = g.edges
    assert g.n == 60 and np.all(e.i < e.j) and len(e) == len(g.rows)
    iu, ju = np.triu_indices(60, 1)
    want = ref[iu, ju] <= 0.5
    assert set(zip(e.i.tolist(), e.j.tolist())) == set(zip(iu[want].tolist(), ju[want].tolist()))
    assert np.allclose(e.distance, ref[e.i, e.j], atol=2e-6)
    assert not np.any((e.i == 7) | (e.j == 7))                       # distance 1: never an edge
    assert np.allclose(e.dense, np.where(np.eye(60, dtype=bool), 0, ref), atol=2e-6)
    assert g.rows.row_bounds.tolist() == [0, 60] and sum(steps) >= 1


def test_edge_density_by_hand():
    # 4 nodes: 6 pairs; edges at 0.1, 0.2, 0.2
    # (the grid is compared in float32, as the stored edge distances)
    dens = graph.edge_density(np.array([0.2, 0.1, 0.2], np.float32), 4,
                              np.array([0.0, 0.1, 0.15, 0.2, 0.5], np.float32))
    assert np.allclose(dens, [0, 1 / 6, 1 / 6, 3 / 6, 3 / 6])
    assert np.all(graph.edge_density(np.empty(0), 1, np.array([0.3])) == 0)
