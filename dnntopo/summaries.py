"""Betti curves and per-dimension summaries of persistence diagrams.

Betti curve: the number of classes alive (birth <= t < death) at each value t of a fixed
distance grid, with the matching edge-density axis. Summaries per dimension: life =
mean(death - birth) and midlife = mean((birth + death) / 2) over finite pairs whose
persistence exceeds the floor; `max_at_threshold` (1 when the maximum lies on the last grid
point, the threshold: then Betti max and its position measure the cutoff, not the network);
Betti max, the distance and density where it occurs (the first
such grid point), and the area under the Betti curve (trapezoids over distance).

A distance window [lo, hi] reads an epoch over part of its filtration (`windowed`): the curves
on the grid points inside it, and the summaries of those curves and of the pairs born and dead
inside it; a maximum on the window's last point is flagged like one at the threshold.
"""
from __future__ import annotations

import numpy as np

from dnntopo.graph import edge_density

SUMMARY_KEYS = ("life", "midlife", "betti_max", "distance_at_max", "density_at_max", "area",
                "max_at_threshold")


def distance_grid(max_distance: float, points: int) -> np.ndarray:
    """Evenly spaced distances 0..max_distance, rounded to float32 like the edge distances."""
    return np.linspace(0.0, max_distance, points).astype(np.float32).astype(np.float64)


def betti_curve(diagram: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Number of classes with birth <= t < death for each t of the grid."""
    diagram = np.asarray(diagram, dtype=np.float64).reshape(-1, 2)
    born = np.searchsorted(np.sort(diagram[:, 0]), grid, side="right")
    dead = np.searchsorted(np.sort(diagram[:, 1]), grid, side="right")
    return (born - dead).astype(np.int64)


def summarize(diagram: np.ndarray, grid: np.ndarray, betti: np.ndarray, density: np.ndarray,
              min_persistence: float) -> dict:
    """The summary numbers of one dimension (NaN life/midlife when no pair passes the floor)."""
    diagram = np.asarray(diagram, dtype=np.float64).reshape(-1, 2)
    finite = diagram[np.isfinite(diagram[:, 1])]
    keep = finite[(finite[:, 1] - finite[:, 0]) > min_persistence]
    k = int(np.argmax(betti)) if betti.size else 0
    return {
        "life": float(np.mean(keep[:, 1] - keep[:, 0])) if len(keep) else float("nan"),
        "midlife": float(np.mean((keep[:, 0] + keep[:, 1]) / 2)) if len(keep) else float("nan"),
        "betti_max": int(betti[k]) if betti.size else 0,
        "distance_at_max": float(grid[k]),
        "density_at_max": float(density[k]),
        "area": float(np.trapezoid(betti, grid)) if hasattr(np, "trapezoid") else float(np.trapz(betti, grid)),
        # the maximum lies on the last grid point, the threshold: it measures the cutoff, not the net
        "max_at_threshold": int(betti.size > 1 and k == betti.size - 1 and betti[k] > 0),
    }


def curves_and_summaries(diagrams: list, distances: np.ndarray, n_nodes: int, spec):
    """Grid, density, Betti curve per dimension, and summary per dimension, with the grid,
    threshold and persistence floor of the topology spec."""
    grid = distance_grid(spec.max_distance, spec.grid_points)
    density = edge_density(distances, n_nodes, grid.astype(np.float32))
    bettis = [betti_curve(dg, grid) for dg in diagrams]
    sums = [summarize(dg, grid, b, density, spec.min_persistence) for dg, b in zip(diagrams, bettis)]
    return grid, density, bettis, sums


def check_window(window, max_distance: float | None = None, where: str = "") -> tuple[float, float] | None:
    """A validated distance window (lo, hi) for --range, or None for the whole filtration."""
    if window is None:
        return None
    from dnntopo.errors import UserError
    lo, hi = (float(v) for v in window)
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 <= lo < hi):
        raise UserError(f"--range {lo:g} {hi:g}: needs 0 <= LO < HI (distances, 1 - |correlation|)")
    if max_distance is not None and lo >= max_distance:
        raise UserError(f"--range {lo:g} {hi:g}: {where or 'the epoch'} was computed up to distance "
                        f"{max_distance:g} (--max-distance); choose LO below it")
    return lo, hi


def windowed(ep: dict, window, where: str = "") -> dict:
    """Per dimension, the summaries of an epoch (as `storage.read_epoch` returns it) over the
    distance window (lo, hi): its curve on the grid points inside, the pairs born at or after lo
    and dead by hi. The window ends at the epoch's threshold at most."""
    from dnntopo.errors import UserError
    lo, hi = check_window(window, float(ep["attrs"]["max_distance"]), where)
    grid, density = ep["betti"]["distance"], ep["betti"]["density"]
    inside = (grid >= lo) & (grid <= hi)
    if not inside.any():
        raise UserError(f"--range {lo:g} {hi:g} holds no point of {where or 'the'} distance grid "
                        f"(step {grid[1] - grid[0]:.4g}); widen it")
    out = {}
    for d, dg in ep["diagrams"].items():
        dg = np.asarray(dg, dtype=np.float64).reshape(-1, 2)
        dg = dg[(dg[:, 0] >= lo) & (dg[:, 1] <= hi)]
        out[d] = summarize(dg, grid[inside], np.asarray(ep["betti"][d])[inside], density[inside],
                           float(ep["attrs"]["min_persistence"]))
    return out
