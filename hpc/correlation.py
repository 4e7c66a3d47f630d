"""Blocked Pearson correlation of sample-sharded observations into thresholded sparse edges.

Each rank holds a contiguous shard of the observations (rows = samples, columns = variables),
made of whole sample blocks. Per-variable means and centred sums of squares are reduced over
ranks block by block in a fixed order, so every statistic is bit-identical whatever the
number of ranks. The standardized shards are gathered (s x n float32, never n x n), then each
rank multiplies the row blocks it owns against the columns to their right and keeps, at once,
the pairs with distance 1 - |corr| <= threshold. No rank ever holds the n x n matrix.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from hpc.comm import usable_cores
from hpc.collectives import allgather_rows, gather_rows, sum_in_order
from hpc.shard import block_bounds, split_blocks_by_cost

#: Bytes one row-block product may take (float32); bounds memory whatever n is.
BLOCK_BYTES = 16 * 2**20


@dataclass
class Edges:
    """Pairs i < j with their distance 1 - |corr|, in row-major (i, then j) order."""
    i: np.ndarray          # int32
    j: np.ndarray          # int32
    distance: np.ndarray   # float32
    n: int
    dense: np.ndarray | None = None  # full distance matrix (float32), only when asked

    def __len__(self):
        return int(self.i.size)


@dataclass
class RowEdges:
    """One rank's share of the edges: those whose row i lies in its contiguous range.

    `row_bounds` holds the first row of every rank's range, then n (for collective writes
    of the rows, such as `hpc.mpiio.write_rows`); `dense_rows` the rows of the full matrix
    when asked.
    """
    i: np.ndarray
    j: np.ndarray
    distance: np.ndarray
    n: int
    row_bounds: np.ndarray
    dense_rows: np.ndarray | None = None

    def __len__(self):
        return int(self.i.size)


def row_block_size(n: int) -> int:
    """Rows per block: 256, fewer when n is so large that a block would pass BLOCK_BYTES."""
    return int(max(16, min(256, BLOCK_BYTES // (4 * max(n, 1)))))


def _block_partials(x: np.ndarray, sample_block: int, fn) -> np.ndarray:
    """Per sample block, the float64 column sums of fn(block); shape (n_blocks, n)."""
    starts = block_bounds(x.shape[0], sample_block)
    out = np.empty((len(starts) - 1, x.shape[1]), dtype=np.float64)
    for k in range(len(starts) - 1):
        out[k] = fn(x[starts[k]:starts[k + 1]]).sum(axis=0, dtype=np.float64)
    return out


def standardize_inplace(comm, x: np.ndarray, sample_block: int) -> np.ndarray:
    """Turn this rank's float32 shard into z with z.T @ z = correlation (zero for constant columns).

    Returns the boolean mask of columns with zero variance.
    """
    n_total = comm.allreduce(int(x.shape[0]))
    if n_total < 2:
        raise ValueError("correlation needs at least 2 samples")
    mean = sum_in_order(comm, _block_partials(x, sample_block, lambda b: b))
    mean /= n_total
    css = sum_in_order(comm, _block_partials(
        x, sample_block, lambda b: np.square(b.astype(np.float64) - mean)))
    constant = ~(css > 0)
    scale = np.zeros_like(css)
    scale[~constant] = 1.0 / np.sqrt(css[~constant])
    starts = block_bounds(x.shape[0], sample_block)
    for k in range(len(starts) - 1):
        blk = slice(starts[k], starts[k + 1])
        x[blk] = (x[blk].astype(np.float64) - mean) * scale
    return constant


class _NumpyProduct:
    """Row-block products on the CPU with numpy/BLAS (float32 sgemm).

    Every product is cut into tiles of COL_TILE columns, each computed by single-threaded BLAS,
    the tiles spread over a pool of threads. Each value therefore comes from the same tile
    shape whatever the number of threads or ranks: the results are bit-identical for any K.
    """

    COL_TILE = 512

    def __init__(self, z, threads):
        self.z = z
        self.pool = ThreadPoolExecutor(max_workers=max(threads, 1))

    def block(self, a, b, col0):
        n = self.z.shape[1]
        c = np.empty((b - a, n - col0), dtype=np.float32)
        left = self.z[:, a:b].T

        def tile(c0):
            c1 = min(c0 + self.COL_TILE, n)
            out = c[:, c0 - col0:c1 - col0]
            np.matmul(left, self.z[:, c0:c1], out=out)
            np.abs(out, out=out)
            np.subtract(np.float32(1), out, out=out)
            np.maximum(out, 0, out=out)

        list(self.pool.map(tile, range(col0, n, self.COL_TILE)))
        return c

    def edges(self, d, a, b, threshold):
        mask = d <= np.float32(threshold)
        mask[:, : b - a] &= np.triu(np.ones((b - a, b - a), dtype=bool), 1)
        r, c = np.nonzero(mask)
        return (r + a).astype(np.int32), (c + a).astype(np.int32), d[r, c]

    def to_numpy(self, d):
        return d


class _TorchProduct:
    """Row-block products in torch on a GPU (or any torch device)."""

    def __init__(self, z, device):
        import torch
        self.torch = torch
        self.z = torch.from_numpy(z).to(device)

    def block(self, a, b, col0):
        c = self.z[:, a:b].T @ self.z[:, col0:]
        return (1 - c.abs_()).clamp_(min=0)

    def edges(self, d, a, b, threshold):
        torch = self.torch
        mask = d <= threshold
        tri = torch.ones((b - a, b - a), dtype=torch.bool, device=d.device).triu_(1)
        mask[:, : b - a] &= tri
        r, c = torch.nonzero(mask, as_tuple=True)
        vals = d[r, c]
        return ((r + a).to(torch.int32).cpu().numpy(), (c + a).to(torch.int32).cpu().numpy(),
                vals.cpu().numpy())

    def to_numpy(self, d):
        return d.cpu().numpy()


def correlation_rows(comm, x_local: np.ndarray, threshold: float, *, sample_block: int,
                     device: str = "cpu", dense: bool = False, threads: int = 0,
                     progress=None) -> RowEdges:
    """This rank's edges (distance 1 - |corr| <= threshold) between the columns of the sharded
    samples: the rows of the row blocks it owns (balanced by cost).

    `x_local` (float32, samples x variables) is overwritten with its standardized values.
    `progress(k)` is called with the number of row blocks done; `threads` (0: the cores this
    process may use) compute the tiles of each block. With `dense`, the rank's rows of the full
    float32 distance matrix come too.
    """
    if x_local.dtype != np.float32:
        raise TypeError("x_local must be float32")
    n = int(x_local.shape[1])
    threads = threads or usable_cores()
    standardize_inplace(comm, x_local, sample_block)
    z = allgather_rows(comm, x_local)
    del x_local
    bounds = block_bounds(n, row_block_size(n))
    starts, stops = bounds[:-1], bounds[1:]
    costs = (stops - starts) * (n - starts)
    size = comm.Get_size()
    lo, hi = split_blocks_by_cost(costs, size, comm.Get_rank())
    ii, jj, dd, rows = [], [], [], []
    with threadpool_limits(1, user_api="blas"):
        prod = _NumpyProduct(z, threads) if device == "cpu" else _TorchProduct(z, device)
        for k in range(lo, hi):
            a, b = int(starts[k]), int(stops[k])
            d = prod.block(a, b, a)
            i, j, v = prod.edges(d, a, b, threshold)
            ii.append(i), jj.append(j), dd.append(v)
            if dense:
                rows.append(prod.to_numpy(prod.block(a, b, 0)))
            del d
            if progress is not None:
                progress(1)
    cat = (lambda parts, dt: np.concatenate(parts) if parts else np.empty(0, dt))
    firsts = [split_blocks_by_cost(costs, size, r)[0] for r in range(size)]
    row_bounds = np.array([int(bounds[f]) for f in firsts] + [n], dtype=np.int64)
    dense_rows = (np.concatenate(rows) if rows else np.empty((0, n), np.float32)) if dense else None
    return RowEdges(cat(ii, np.int32), cat(jj, np.int32), cat(dd, np.float32), n, row_bounds,
                    dense_rows)


def gather_edges(comm, rows: RowEdges, root: int = 0) -> Edges | None:
    """Every rank's RowEdges concatenated in row order on `root` (None elsewhere).

    With one rank the arrays are not copied."""
    i = gather_rows(comm, rows.i, root)
    j = gather_rows(comm, rows.j, root)
    v = gather_rows(comm, rows.distance, root)
    dmat = gather_rows(comm, rows.dense_rows, root) if rows.dense_rows is not None else None
    if comm.Get_rank() != root:
        return None
    if dmat is not None:
        np.fill_diagonal(dmat, 0)
    return Edges(i, j, v, rows.n, dmat)


def correlation_edges(comm, x_local: np.ndarray, threshold: float, *, sample_block: int,
                      device: str = "cpu", dense: bool = False, root: int = 0,
                      threads: int = 0, progress=None) -> Edges | None:
    """`correlation_rows` gathered on `root`: all edges there (and, with `dense`, the full
    float32 distance matrix); other ranks get None."""
    rows = correlation_rows(comm, x_local, threshold, sample_block=sample_block, device=device,
                            dense=dense, threads=threads, progress=progress)
    return gather_edges(comm, rows, root)
