"""The functional graph: |Pearson correlation| between units over the samples, distance 1 - |corr|.

Only pairs with distance <= max_distance are kept (the sparse edge list every backend reads).
A unit with zero variance correlates with nothing (distance 1). The blocked, sharded product
itself lives in `hpc.correlation`; this module fixes the domain's choices and checks them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hpc.correlation import Edges, RowEdges, correlation_rows, gather_edges


@dataclass
class FunctionalGraph:
    """The thresholded graph of one epoch: every rank's own rows (`rows`, for collective
    writes) and, on rank 0, all edges (`edges`; None elsewhere)."""
    rows: RowEdges
    edges: Edges | None

    @property
    def n(self) -> int:
        return self.rows.n


def functional_graph(comm, activations: np.ndarray, max_distance: float, sample_block: int, *,
                     device: str = "cpu", dense: bool = False, progress=None) -> FunctionalGraph:
    """Edges with distance 1 - |corr| <= max_distance between the nodes; `activations` (this
    rank's samples x nodes, float32) is consumed. With `dense`, rank 0 also gets the full
    float32 distance matrix (`edges.dense`)."""
    rows = correlation_rows(comm, activations, max_distance, sample_block=sample_block,
                            device=device, dense=dense, progress=progress)
    return FunctionalGraph(rows, gather_edges(comm, rows))


def edge_density(distances: np.ndarray, n_nodes: int, grid: np.ndarray) -> np.ndarray:
    """Fraction of all node pairs joined by an edge of distance <= t, for each t of the grid."""
    pairs = n_nodes * (n_nodes - 1) / 2
    if pairs == 0:
        return np.zeros_like(grid, dtype=np.float64)
    d = np.sort(np.asarray(distances))
    return np.searchsorted(d, grid, side="right") / pairs
