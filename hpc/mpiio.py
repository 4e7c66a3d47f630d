"""Collective writes of row-sharded sparse matrices into one file (MPI-IO).

File layout (DIPHA's sparse matrix and similar formats): a header of int64 words, then the
n row lengths (int64), then every column index (int64), then every value (float64), rows in
order. Each rank owns a contiguous range of rows; offsets come from an exclusive scan of the
rows' sizes, and all ranks write their parts at once with `Write_at_all`. The file appears
under its final name only when complete.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from hpc.comm import SerialComm
from hpc.io import temp_name


def symmetric_rows(comm, bounds: np.ndarray, i: np.ndarray, j: np.ndarray, d: np.ndarray):
    """From this rank's edges i < j (i in its rows), the entries (row, col, value) of both
    ends that fall in this rank's rows [bounds[rank], bounds[rank+1]), sorted by (row, col).

    `bounds` are the row boundaries of all ranks (length size + 1). Buffer-based Alltoallv.
    """
    rows = np.concatenate([i, j]).astype(np.int64)
    cols = np.concatenate([j, i]).astype(np.int64)
    vals = np.concatenate([d, d]).astype(np.float64)
    size = comm.Get_size()
    if size > 1 and not isinstance(comm, SerialComm):
        from mpi4py import MPI
        dest = np.searchsorted(bounds, rows, side="right") - 1
        order = np.argsort(dest, kind="stable")
        rows, cols, vals, dest = rows[order], cols[order], vals[order], dest[order]
        send = np.bincount(dest, minlength=size).astype(np.int64)
        recv = np.empty(size, dtype=np.int64)
        comm.Alltoall(send, recv)
        sd = np.concatenate([[0], np.cumsum(send)[:-1]])
        rd = np.concatenate([[0], np.cumsum(recv)[:-1]])
        out = []
        for arr, mt in ((rows, MPI.INT64_T), (cols, MPI.INT64_T), (vals, MPI.DOUBLE)):
            buf = np.empty(int(recv.sum()), dtype=arr.dtype)
            comm.Alltoallv([arr, (send, sd), mt], [buf, (recv, rd), mt])
            out.append(buf)
        rows, cols, vals = out
    order = np.lexsort((cols, rows))
    return rows[order], cols[order], vals[order]


def write_rows(comm, path, head: np.ndarray, n: int, lo: int, hi: int,
               rows: np.ndarray, cols: np.ndarray, vals: np.ndarray):
    """Write header, row lengths, indices and values of rows [lo, hi) of every rank into `path`."""
    path = Path(path)
    counts = np.bincount(rows - lo, minlength=hi - lo).astype(np.int64) if hi > lo else np.zeros(0, np.int64)
    head = np.asarray(head, dtype="<i8")
    if isinstance(comm, SerialComm) or comm.Get_size() == 1:
        tmp = temp_name(path)
        with open(tmp, "wb") as fh:
            for arr in (head, counts, cols.astype("<i8"), vals.astype("<f8")):
                arr.tofile(fh)
        os.replace(tmp, path)
        return
    from mpi4py import MPI
    nnz = np.array([rows.size], dtype=np.int64)
    total = np.zeros(1, dtype=np.int64)
    before = np.zeros(1, dtype=np.int64)
    comm.Allreduce(nnz, total, op=MPI.SUM)
    comm.Exscan(nnz, before, op=MPI.SUM)
    if comm.Get_rank() == 0:
        before[0] = 0
    tmp = comm.bcast(str(temp_name(path)) if comm.Get_rank() == 0 else None, root=0)
    base = head.nbytes
    fh = MPI.File.Open(comm, tmp, MPI.MODE_WRONLY | MPI.MODE_CREATE)
    try:
        fh.Set_size(0)
        fh.Write_at_all(0, head if comm.Get_rank() == 0 else head[:0])
        fh.Write_at_all(base + 8 * lo, counts)
        fh.Write_at_all(base + 8 * n + 8 * int(before[0]), np.ascontiguousarray(cols, dtype="<i8"))
        fh.Write_at_all(base + 8 * n + 8 * int(total[0]) + 8 * int(before[0]),
                        np.ascontiguousarray(vals, dtype="<f8"))
    finally:
        fh.Close()
    if comm.Get_rank() == 0:
        os.replace(tmp, path)
    comm.Barrier()
