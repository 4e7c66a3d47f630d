"""hpc.correlation against numpy's corrcoef (float64), on random and on real activations."""
import numpy as np

from hpc.comm import SerialComm
from hpc.correlation import correlation_edges, row_block_size
from hpc.shard import block_bounds, split_blocks_by_cost, split_blocks_even


def reference_edges(x, t):
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.corrcoef(x.T.astype(np.float64))
    d = 1 - np.abs(np.nan_to_num(c, nan=0.0))
    np.fill_diagonal(d, 0.0)
    iu = np.triu_indices(x.shape[1], 1)
    return d, iu


def check_against_numpy(x, t, tol=2e-5):
    """float32 products: within 2e-5 of float64 corrcoef; pairs that close to t may go either way."""
    d, (ri, rj) = reference_edges(x, t)
    e = correlation_edges(SerialComm(), x.copy(), t, sample_block=64, dense=True)
    got = {(a, b) for a, b in zip(e.i.tolist(), e.j.tolist())}
    ref_d = d[ri, rj]
    sure = {(a, b) for a, b, v in zip(ri.tolist(), rj.tolist(), ref_d) if v <= t - tol}
    maybe = {(a, b) for a, b, v in zip(ri.tolist(), rj.tolist(), ref_d) if v <= t + tol}
    assert sure <= got <= maybe
    assert np.all(e.i < e.j)
    assert np.allclose(e.distance, d[e.i, e.j], atol=tol, rtol=0)
    assert np.allclose(e.dense, d, atol=tol, rtol=0)
    order = np.lexsort((e.j, e.i))
    assert np.array_equal(order, np.arange(len(order)))   # row-major order
    return e


def test_random_with_structure_and_constant_units():
    rng = np.random.default_rng(0)
    s, n = 300, 700                      # several row blocks of 256
    latent = rng.standard_normal((s, 20))
    x = (latent @ rng.standard_normal((20, n)) + 0.7 * rng.standard_normal((s, n))).astype(np.float32)
    x[:, 5] = 3.0                        # zero variance: correlates with nothing
    x[:, 600] = 0.0
    e = check_against_numpy(x, 0.6)
    assert len(e) > 1000
    assert not np.any((e.i == 5) | (e.j == 5) | (e.i == 600) | (e.j == 600))
    assert np.allclose(e.dense[5, np.arange(n) != 5], 1.0)
    full = correlation_edges(SerialComm(), x.copy(), 1.0, sample_block=64)
    assert len(full) == n * (n - 1) // 2  # threshold 1 keeps every pair, constant units at distance 1


def test_real_activations(fmnist_root):
    import torch
    from dnntopo import activations, data, models
    model = models.build("lenet", (1, 28, 28), 10)
    torch.manual_seed(0)
    ds = activations.sample_set(data.load("fashion_mnist", fmnist_root, "test"), 400, "test")
    x, _ = activations.extract(SerialComm(), model, ds, models.DEFAULT_LAYERS["lenet"])
    check_against_numpy(x, 0.6)


def test_sharding_arithmetic():
    assert block_bounds(10, 4).tolist() == [0, 4, 8, 10]
    assert [split_blocks_even(7, 3, r) for r in range(3)] == [(0, 3), (3, 5), (5, 7)]
    assert [split_blocks_even(2, 4, r) for r in range(4)] == [(0, 1), (1, 2), (2, 2), (2, 2)]
    costs = np.array([10, 8, 6, 4, 2, 1])
    parts = [split_blocks_by_cost(costs, 3, r) for r in range(3)]
    assert parts[0][0] == 0 and parts[-1][1] == 6
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
    assert row_block_size(1820) == 256 and row_block_size(10**6) == 16


def test_torch_product_path_matches_numpy():
    """The GPU path's code (torch products and thresholds), run here on torch's CPU device."""
    from hpc.correlation import _NumpyProduct, _TorchProduct
    rng = np.random.default_rng(3)
    z = rng.standard_normal((200, 600)).astype(np.float32)
    z /= np.linalg.norm(z, axis=0)
    cpu, tor = _NumpyProduct(z, 2), _TorchProduct(z, "cpu")
    for a, b in ((0, 256), (256, 512), (512, 600)):
        dn, dt = cpu.block(a, b, a), tor.to_numpy(tor.block(a, b, a))
        assert np.allclose(dn, dt, atol=1e-6)
        en, et = cpu.edges(dn, a, b, 0.9), tor.edges(tor.block(a, b, a), a, b, 0.9)
        assert np.array_equal(en[0], et[0]) and np.array_equal(en[1], et[1])
        assert np.allclose(en[2], et[2], atol=1e-6)
