"""Buffer-based gathers of row-sharded arrays (uppercase mpi4py collectives, no pickled arrays).

Counts are sent in rows of a contiguous row datatype, so arrays beyond 2**31 elements gather
as long as the row count fits an int.
"""
from __future__ import annotations

import numpy as np

from hpc.comm import SerialComm
from hpc.shard import counts_displs


def _row_type(comm, arr: np.ndarray):
    """An MPI datatype for one row of `arr` (committed; the caller frees it)."""
    from mpi4py import MPI
    base = MPI._typedict[arr.dtype.char]
    row = int(np.prod(arr.shape[1:], dtype=np.int64)) or 1
    dtype = base.Create_contiguous(row)
    dtype.Commit()
    return dtype


def _row_counts(comm, n_local: int) -> np.ndarray:
    counts = np.zeros(comm.Get_size(), dtype=np.int64)
    comm.Allgather(np.array([n_local], dtype=np.int64), counts)
    return counts


def _empty_rows(local: np.ndarray) -> bool:
    """Rows of no elements (a zero-size trailing dimension): nothing to send but the counts."""
    return local.ndim > 1 and int(np.prod(local.shape[1:], dtype=np.int64)) == 0


def allgather_rows(comm, local: np.ndarray) -> np.ndarray:
    """Concatenate every rank's `local` along axis 0, on every rank."""
    local = np.ascontiguousarray(local)
    if isinstance(comm, SerialComm) or comm.Get_size() == 1:
        return local
    if _empty_rows(local):
        return np.empty((int(_row_counts(comm, local.shape[0]).sum()),) + local.shape[1:], local.dtype)
    counts, displs = counts_displs(_row_counts(comm, local.shape[0]))
    out = np.empty((int(counts.sum()),) + local.shape[1:], dtype=local.dtype)
    rt = _row_type(comm, local)
    try:
        comm.Allgatherv([local, local.shape[0], rt], [out, (counts, displs), rt])
    finally:
        rt.Free()
    return out


def gather_rows(comm, local: np.ndarray, root: int = 0):
    """Concatenate every rank's `local` along axis 0 on `root`; other ranks get None."""
    local = np.ascontiguousarray(local)
    if isinstance(comm, SerialComm) or comm.Get_size() == 1:
        return local
    if _empty_rows(local):
        total = int(_row_counts(comm, local.shape[0]).sum())
        return np.empty((total,) + local.shape[1:], local.dtype) if comm.Get_rank() == root else None
    counts, displs = counts_displs(_row_counts(comm, local.shape[0]))
    rt = _row_type(comm, local)
    try:
        if comm.Get_rank() == root:
            out = np.empty((int(counts.sum()),) + local.shape[1:], dtype=local.dtype)
            comm.Gatherv([local, local.shape[0], rt], [out, (counts, displs), rt], root=root)
            return out
        comm.Gatherv([local, local.shape[0], rt], None, root=root)
        return None
    finally:
        rt.Free()


def sum_in_order(comm, partials: np.ndarray) -> np.ndarray:
    """Sum row-sharded partial results in global row order, identically on every rank.

    A deterministic reduction: the result does not depend on how rows were split over ranks.
    """
    return allgather_rows(comm, partials).sum(axis=0)


def quiet_barrier(comm, poll: float = 0.005):
    """A barrier that waits by sleeping, so ranks idle while one rank computes with every core."""
    if isinstance(comm, SerialComm) or comm.Get_size() == 1:
        return
    import time
    req = comm.Ibarrier()
    while not req.Test():
        time.sleep(poll)
