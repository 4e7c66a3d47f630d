"""hpc/mpiio.py: the symmetric sparse-matrix file is the same bytes whatever the number of ranks."""
import json
import os
import struct

import numpy as np
import pytest

from hpc.comm import SerialComm
from hpc.mpiio import symmetric_rows, write_rows
from mpirun import check, run_mpi

N = 11
HEAD = [8067171840, 2, N]  # any int64 words (DIPHA: magic, file type, n)


def edge_list(seed=3):
    """Unique edges i < j over N nodes (node 5 isolated, node 10 only an end), shuffled."""
    rng = np.random.default_rng(seed)
    pairs = sorted({(int(a), int(b)) for a, b in rng.integers(0, N, size=(60, 2))
                    if a < b and 5 not in (a, b)} | {(0, 10), (9, 10)})
    pairs = [pairs[k] for k in rng.permutation(len(pairs))]
    i = np.array([p[0] for p in pairs], dtype=np.int64)
    j = np.array([p[1] for p in pairs], dtype=np.int64)
    d = rng.standard_normal(len(pairs)) * 10.0 ** rng.integers(-5, 5, size=len(pairs))
    return i, j, d


def entries_by_row(i, j, d):
    """Row r's (column, value) pairs of the symmetric matrix, by column, in plain Python."""
    rows = [[] for _ in range(N)]
    for a, b, v in zip(i.tolist(), j.tolist(), d.tolist()):
        rows[a].append((b, v))
        rows[b].append((a, v))
    return [sorted(r) for r in rows]


def expected_bytes(i, j, d):
    rows = entries_by_row(i, j, d)
    cols = [c for r in rows for c, _ in r]
    vals = [v for r in rows for _, v in r]
    return (struct.pack(f"<{len(HEAD)}q", *HEAD) + struct.pack(f"<{N}q", *map(len, rows))
            + struct.pack(f"<{len(cols)}q", *cols) + struct.pack(f"<{len(vals)}d", *vals))


def test_expected_file_is_what_the_layout_says():
    # guard the hand-written reference itself on a 3-node example
    i, j, d = np.array([0, 1]), np.array([2, 2]), np.array([0.5, -1.0])
    rows = entries_by_row(i, j, d)
    assert rows[:3] == [[(2, 0.5)], [(2, -1.0)], [(0, 0.5), (1, -1.0)]]


def test_serial_symmetric_rows_are_both_ends_sorted():
    i, j, d = edge_list()
    rows, cols, vals = symmetric_rows(SerialComm(), np.array([0, N]), i, j, d)
    expected = [(r, c, v) for r, entries in enumerate(entries_by_row(i, j, d)) for c, v in entries]
    assert list(zip(rows.tolist(), cols.tolist(), vals.tolist())) == expected
    assert rows.dtype == np.int64 and cols.dtype == np.int64 and vals.dtype == np.float64


def test_serial_write_rows_writes_the_layout(tmp_path):
    i, j, d = edge_list()
    out = tmp_path / "out"
    out.mkdir()
    path = out / "m.bin"
    path.write_bytes(b"\xff" * 100_000)  # an older, longer file is replaced
    rows, cols, vals = symmetric_rows(SerialComm(), np.array([0, N]), i, j, d)
    write_rows(SerialComm(), path, np.array(HEAD), N, 0, N, rows, cols, vals)
    assert path.read_bytes() == expected_bytes(i, j, d)
    assert os.listdir(out) == ["m.bin"]


SCRIPT = """
    import json, sys
    import numpy as np
    from hpc.comm import get_comm
    from hpc.mpiio import symmetric_rows, write_rows
    comm = get_comm()
    r = comm.Get_rank()
    e = np.load(sys.argv[1])
    bounds = np.array(json.loads(sys.argv[2]), dtype=np.int64)
    lo, hi = int(bounds[r]), int(bounds[r + 1])
    mine = (e["i"] >= lo) & (e["i"] < hi)
    rows, cols, vals = symmetric_rows(comm, bounds, e["i"][mine], e["j"][mine], e["d"][mine])
    np.savez(f"rows_{r}.npz", rows=rows, cols=cols, vals=vals)
    write_rows(comm, sys.argv[3], e["head"], int(e["n"]), lo, hi, rows, cols, vals)
"""


@pytest.mark.mpi
@pytest.mark.parametrize("bounds", [[0, 6, N], [0, 4, 8, N], [0, 5, 5, N], [0, 0, 9, N]],
                         ids=["k2", "k3", "k3-idle-middle", "k3-idle-first"])
def test_ranks_write_the_same_bytes(tmp_path, bounds):
    i, j, d = edge_list()
    np.savez(tmp_path / "edges.npz", i=i, j=j, d=d, head=np.array(HEAD), n=N)
    out = tmp_path / "out"
    out.mkdir()
    path = out / "m.bin"
    path.write_bytes(b"\xff" * 100_000)
    k = len(bounds) - 1
    check(run_mpi(k, SCRIPT, tmp_path / "edges.npz", json.dumps(bounds), path, cwd=tmp_path))
    assert path.read_bytes() == expected_bytes(i, j, d)
    assert os.listdir(out) == ["m.bin"]  # no temporary left behind
    # each rank received exactly the entries of its own rows
    by_row = entries_by_row(i, j, d)
    for r in range(k):
        with np.load(tmp_path / f"rows_{r}.npz") as got:
            triples = list(zip(got["rows"].tolist(), got["cols"].tolist(), got["vals"].tolist()))
        assert triples == [(row, c, v) for row in range(bounds[r], bounds[r + 1]) for c, v in by_row[row]]
