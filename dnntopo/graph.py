"""The functional graph: |Pearson correlation| between units over the samples, distance 1 - |corr|.

Only pairs with distance <= max_distance are kept (the sparse edge list every backend reads).
A unit with zero variance correlates with nothing (distance 1). The blocked, sharded product
itself lives in `hpc.correlation`; this module fixes the domain's choices and checks them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dnntopo.errors import UserError
from hpc.correlation import Edges, correlation_edges


@dataclass
class GraphConfig:
    """Threshold of the functional graph and where its products run."""
    max_distance: float = 0.6
    save_dense: bool = False
    device: str = "cpu"

    def validate(self):
        if not 0 < self.max_distance <= 1:
            raise UserError(f"--max-distance {self.max_distance}: must lie in (0, 1] "
                            f"(distance is 1 - |corr|)")
        return self


def functional_graph(comm, activations: np.ndarray, cfg: GraphConfig, sample_block: int,
                     keep_local: bool = False, progress=None) -> Edges | None:
    """Edges of the functional graph on rank 0 (None elsewhere, unless `keep_local`: then
    every rank also gets its own rows' edges); `activations` is consumed."""
    return correlation_edges(comm, activations, cfg.max_distance, sample_block=sample_block,
                             device=cfg.device, dense=cfg.save_dense, keep_local=keep_local,
                             progress=progress)


def edge_density(distances: np.ndarray, n_nodes: int, grid: np.ndarray) -> np.ndarray:
    """Fraction of all node pairs joined by an edge of distance <= t, for each t of the grid."""
    pairs = n_nodes * (n_nodes - 1) / 2
    if pairs == 0:
        return np.zeros_like(grid, dtype=np.float64)
    d = np.sort(np.asarray(distances))
    return np.searchsorted(d, grid, side="right") / pairs
