"""Betti curves and summaries against direct counts and a hand-worked diagram."""
import numpy as np

from dnntopo.graph import edge_density
from dnntopo.summaries import betti_curve, distance_grid, summarize


def test_betti_curve_equals_direct_count():
    rng = np.random.default_rng(0)
    b = rng.uniform(0, 0.5, 200)
    d = b + rng.uniform(0, 0.3, 200)
    d[::17] = np.inf
    dg = np.c_[b, d]
    grid = distance_grid(0.6, 61)
    direct = [sum(1 for bb, dd in dg if bb <= t < dd) for t in grid]
    assert betti_curve(dg, grid).tolist() == direct


def test_hand_worked_summary():
    dg = np.array([[0.1, 0.3], [0.2, 0.21], [0.05, np.inf], [0.4, 0.5]])
    grid = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    betti = betti_curve(dg, grid)
    # alive: t=0: none; .1: (.1,.3),(.05,inf); .2: +(.2,.21); .3: (.05,inf); .4: +(.4,.5); .5: inf only
    assert betti.tolist() == [0, 2, 3, 1, 2, 1, 1]
    dens = edge_density(np.array([0.1, 0.2, 0.2, 0.5]), 4, grid)
    assert dens.tolist() == [0, 1 / 6, 3 / 6, 3 / 6, 3 / 6, 4 / 6, 4 / 6]
    s = summarize(dg, grid, betti, dens, min_persistence=0.02)
    # pairs above the floor: (.1,.3) and (.4,.5); (.2,.21) is noise; the essential one is not finite
    assert np.isclose(s["life"], (0.2 + 0.1) / 2)
    assert np.isclose(s["midlife"], (0.2 + 0.45) / 2)        # not mean(death + birth / 2)
    assert s["betti_max"] == 3 and np.isclose(s["distance_at_max"], 0.2) and np.isclose(s["density_at_max"], 0.5)
    assert np.isclose(s["area"], 0.1 * (0 + 2 * 2 + 2 * 3 + 2 * 1 + 2 * 2 + 2 * 1 + 1) / 2)
    assert s["max_at_threshold"] == 0


def test_maximum_at_the_threshold_is_flagged():
    grid = np.array([0.0, 0.1, 0.2, 0.3])
    rising = np.array([[0.05, np.inf], [0.15, np.inf], [0.25, np.inf], [0.3, np.inf]])   # still rising at 0.3
    b = betti_curve(rising, grid)
    assert b.tolist() == [0, 1, 2, 4]
    s = summarize(rising, grid, b, np.zeros(4), 0.02)
    assert s["max_at_threshold"] == 1 and s["distance_at_max"] == 0.3
    peaked = np.array([[0.05, 0.25], [0.15, 0.25]])                                       # peak inside
    s = summarize(peaked, grid, betti_curve(peaked, grid), np.zeros(4), 0.02)
    assert s["max_at_threshold"] == 0


def test_empty_diagram():
    grid = distance_grid(0.6, 5)
    s = summarize(np.empty((0, 2)), grid, betti_curve(np.empty((0, 2)), grid), np.zeros(5), 0.02)
    assert np.isnan(s["life"]) and s["betti_max"] == 0 and s["area"] == 0


def test_window_reads_part_of_the_filtration():
    import pytest
    from dnntopo.errors import UserError
    from dnntopo.summaries import windowed
    dg = np.array([[0.1, 0.3], [0.2, 0.21], [0.05, np.inf], [0.4, 0.5]])
    grid = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    dens = np.array([0, 1, 3, 3, 3, 4, 4]) / 6
    ep = {"attrs": {"max_distance": 0.6, "min_persistence": 0.02}, "diagrams": {1: dg},
          "betti": {"distance": grid, "density": dens, 1: betti_curve(dg, grid)}}
    s = windowed(ep, (0.25, 0.5))[1]
    # grid points .3 .4 .5: curve 1 2 1; pairs inside the window: (.4,.5) only
    assert (s["betti_max"], s["distance_at_max"], s["density_at_max"]) == (2, 0.4, 0.5)
    assert np.isclose(s["life"], 0.1) and np.isclose(s["midlife"], 0.45)
    assert np.isclose(s["area"], (1 + 2) / 2 * 0.1 + (2 + 1) / 2 * 0.1)
    assert s["max_at_threshold"] == 0
    # a maximum on the window's last point is flagged like one at the threshold
    assert windowed(ep, (0.0, 0.2))[1]["max_at_threshold"] == 1
    for window, needle in [((0.5, 0.2), "0 <= LO < HI"), ((0.7, 0.9), "computed up to distance 0.6"),
                           ((0.31, 0.39), "holds no point")]:
        with pytest.raises(UserError, match=needle):
            windowed(ep, window)
