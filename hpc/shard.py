"""Sharding: which rank owns which samples, rows and blocks. Pure arithmetic, no MPI calls."""
from __future__ import annotations

import numpy as np


def block_bounds(n: int, block: int) -> np.ndarray:
    """Start offsets of fixed-size blocks covering range(n), plus n at the end."""
    if block <= 0:
        raise ValueError("block size must be positive")
    return np.append(np.arange(0, n, block, dtype=np.int64), np.int64(n))


def split_blocks_even(n_blocks: int, size: int, rank: int) -> tuple[int, int]:
    """Contiguous range [lo, hi) of whole blocks owned by `rank` (sizes differ by at most one)."""
    base, extra = divmod(n_blocks, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def split_blocks_by_cost(costs: np.ndarray, size: int, rank: int) -> tuple[int, int]:
    """Contiguous range [lo, hi) of blocks for `rank` so that each rank's summed cost is balanced.

    Contiguous ranges keep the gathered result in block order whatever the number of ranks.
    """
    costs = np.asarray(costs, dtype=np.float64)
    if costs.size == 0:
        return 0, 0
    cum = np.concatenate([[0.0], np.cumsum(costs)])
    targets = cum[-1] * np.arange(size + 1) / size
    above = np.clip(np.searchsorted(cum, targets, side="left"), 0, costs.size)
    below = np.maximum(above - 1, 0)
    # the block boundary nearest to each target (not always the one past it)
    cuts = np.where(np.abs(cum[below] - targets) <= np.abs(cum[above] - targets), below, above)
    cuts[0], cuts[-1] = 0, costs.size
    cuts = np.maximum.accumulate(cuts)
    return int(cuts[rank]), int(cuts[rank + 1])


def counts_displs(counts) -> tuple[np.ndarray, np.ndarray]:
    """Counts and displacements (exclusive prefix sums) for a v-collective."""
    counts = np.asarray(counts, dtype=np.int64)
    displs = np.zeros_like(counts)
    np.cumsum(counts[:-1], out=displs[1:])
    return counts, displs
