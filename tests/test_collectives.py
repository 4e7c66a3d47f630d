"""hpc/collectives.py: row gathers of uneven shards, order-independent sums, the sleeping barrier."""
import json

import numpy as np
import pytest

from hpc.collectives import allgather_rows, gather_rows, quiet_barrier, sum_in_order
from hpc.comm import SerialComm
from mpirun import check, run_mpi

# rows per rank of each array: every case has a rank without rows
CASES = {
    "vec_f8": ((), "<f8", [4, 0, 7]),
    "mat_i8": ((3,), "<i8", [2, 5, 0]),
    "cube_f4": ((2, 2), "<f4", [0, 1, 3]),
    "mat_u1": ((5,), "u1", [3, 3, 0]),
    "no_cols": ((0,), "<f8", [2, 0, 3]),        # rows of no elements: only the counts travel
}


def pieces(seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for name, (tail, dtype, counts) in CASES.items():
        for r, n in enumerate(counts):
            shape = (n,) + tail
            if np.dtype(dtype).kind == "f":
                a = rng.standard_normal(shape).astype(dtype)
            else:
                a = rng.integers(0, 250 if dtype == "u1" else 2**40, size=shape).astype(dtype)
            out[f"{name}_{r}"] = a
    return out


def partials(n=60, m=4, seed=1):
    """Rows whose sum depends on the order of additions (magnitudes 1e-8 .. 1e8)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, m)) * 10.0 ** rng.integers(-8, 9, size=(n, m))


# ---------------------------------------------------------------- one rank

def test_one_rank_returns_the_array_itself():
    a = np.arange(12.0).reshape(4, 3)
    assert allgather_rows(SerialComm(), a) is a
    assert gather_rows(SerialComm(), a) is a
    assert gather_rows(SerialComm(), a, root=0) is a


def test_one_rank_makes_a_strided_array_contiguous():
    a = np.arange(24).reshape(4, 6)[:, ::2]
    for out in (allgather_rows(SerialComm(), a), gather_rows(SerialComm(), a)):
        assert out.flags.c_contiguous and np.array_equal(out, a)


def test_one_rank_sum_in_order_is_numpys_sum():
    p = partials()
    assert sum_in_order(SerialComm(), p).tobytes() == p.sum(axis=0).tobytes()


def test_one_rank_quiet_barrier_returns():
    assert quiet_barrier(SerialComm()) is None


# ---------------------------------------------------------------- real mpiexec

GATHER_SCRIPT = """
    import sys
    import numpy as np
    from hpc.collectives import allgather_rows, gather_rows
    from hpc.comm import get_comm
    comm = get_comm()
    r = comm.Get_rank()
    inp = np.load(sys.argv[1])
    names = sys.argv[2].split(",")
    out = {}
    for name in names:
        local = inp[f"{name}_{r}"]
        out[f"all_{name}"] = allgather_rows(comm, local)
        for root in (0, comm.Get_size() - 1):
            g = gather_rows(comm, local, root=root)
            out[f"root{root}_{name}"] = np.array([g is None])
            if g is not None:
                out[f"g{root}_{name}"] = g
    np.savez(f"out_{r}.npz", **out)
"""


@pytest.mark.mpi
def test_gather_rows_of_uneven_shards_equal_numpys_concatenation(tmp_path):
    np.savez(tmp_path / "in.npz", **pieces())
    check(run_mpi(3, GATHER_SCRIPT, tmp_path / "in.npz", ",".join(CASES), cwd=tmp_path))
    data = pieces()
    for name, (tail, dtype, counts) in CASES.items():
        expected = np.concatenate([data[f"{name}_{r}"] for r in range(3)])
        assert expected.shape == (sum(counts),) + tail
        for r in range(3):
            with np.load(tmp_path / f"out_{r}.npz") as out:
                got = out[f"all_{name}"]
                assert got.dtype == np.dtype(dtype) and got.shape == expected.shape, (name, r)
                assert np.array_equal(got, expected), (name, r)
                for root in (0, 2):
                    assert bool(out[f"root{root}_{name}"][0]) == (r != root), (name, r, root)
                    if r == root:
                        assert np.array_equal(out[f"g{root}_{name}"], expected), (name, root)


SUM_SCRIPT = """
    import json, sys
    import numpy as np
    from hpc.collectives import quiet_barrier, sum_in_order
    from hpc.comm import get_comm
    comm = get_comm()
    r = comm.Get_rank()
    p = np.load(sys.argv[1])
    counts = json.loads(sys.argv[2])
    lo = sum(counts[:r])
    s = sum_in_order(comm, p[lo:lo + counts[r]])
    np.save(f"sum_{r}.npy", s)
"""


@pytest.mark.mpi
@pytest.mark.parametrize("counts", [[25, 35], [0, 60], [17, 0, 43]])
def test_sum_in_order_is_bit_identical_for_any_split(tmp_path, counts):
    p = partials()
    reference = p.sum(axis=0)
    # the data is order-sensitive: adding per-rank sums instead would differ somewhere
    splits = np.cumsum(counts)[:-1]
    naive = sum(part.sum(axis=0) for part in np.split(p, splits))
    one = sum_in_order(SerialComm(), p)
    assert one.tobytes() == reference.tobytes()
    np.save(tmp_path / "p.npy", p)
    check(run_mpi(len(counts), SUM_SCRIPT, tmp_path / "p.npy", json.dumps(counts), cwd=tmp_path))
    for r in range(len(counts)):
        got = np.load(tmp_path / f"sum_{r}.npy")
        assert got.tobytes() == reference.tobytes(), (counts, r)
    if counts[0] not in (0, len(p)):
        assert not np.array_equal(naive, reference), "test data does not show order sensitivity"


@pytest.mark.mpi
def test_quiet_barrier_waits_for_every_rank_while_sleeping(tmp_path):
    check(run_mpi(3, """
        import json, time
        from hpc.collectives import quiet_barrier
        from hpc.comm import get_comm
        comm = get_comm()
        r = comm.Get_rank()
        comm.Barrier()
        if r == 0:
            time.sleep(1.0)
        entered = time.time()
        cpu = time.process_time()
        quiet_barrier(comm)
        left, cpu = time.time(), time.process_time() - cpu
        last_entry = comm.allreduce(entered, op=__import__("mpi4py").MPI.MAX)
        with open(f"barrier_{r}.json", "w") as fh:
            json.dump({"rank": r, "left": left, "last_entry": last_entry, "cpu": cpu}, fh)
        """, cwd=tmp_path))
    rows = [json.loads((tmp_path / f"barrier_{r}.json").read_text()) for r in range(3)]
    assert sorted(x["rank"] for x in rows) == [0, 1, 2]
    for x in rows:
        assert x["left"] >= x["last_entry"], x  # nobody left before the last one came in
        if x["rank"] != 0:
            assert x["cpu"] < 0.2, x  # waited 1 s without spinning (a plain Barrier: ~0.5 s here)
