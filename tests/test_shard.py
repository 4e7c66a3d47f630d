"""hpc/shard.py: blocks, even and cost-balanced contiguous splits, v-collective counts."""
import math

import numpy as np
import pytest

from hpc.shard import block_bounds, counts_displs, split_blocks_by_cost, split_blocks_even


# ---------------------------------------------------------------- block_bounds

@pytest.mark.parametrize("n,block,expected", [
    (10, 3, [0, 3, 6, 9, 10]),
    (9, 3, [0, 3, 6, 9]),
    (2, 5, [0, 2]),
    (1, 1, [0, 1]),
    (5, 1, [0, 1, 2, 3, 4, 5]),
    (0, 4, [0]),
])
def test_block_bounds_by_hand(n, block, expected):
    b = block_bounds(n, block)
    assert b.dtype == np.int64
    assert b.tolist() == expected


@pytest.mark.parametrize("block", [0, -3])
def test_block_bounds_refuses_a_non_positive_block(block):
    with pytest.raises(ValueError):
        block_bounds(10, block)


def test_block_bounds_cover_every_index_once():
    for n in range(0, 40):
        for block in range(1, 9):
            b = block_bounds(n, block)
            assert b[0] == 0 and b[-1] == n
            assert len(b) - 1 == math.ceil(n / block)
            sizes = np.diff(b)
            assert np.all(sizes[:-1] == block) if len(sizes) else True
            assert np.all((sizes > 0) & (sizes <= block))
            covered = [i for lo, hi in zip(b[:-1], b[1:]) for i in range(lo, hi)]
            assert covered == list(range(n))


def test_block_bounds_beyond_32_bits():
    b = block_bounds(3 * 2**31 + 5, 2**31)
    assert b.tolist() == [0, 2**31, 2**32, 3 * 2**31, 3 * 2**31 + 5]


# ---------------------------------------------------------------- split_blocks_even

@pytest.mark.parametrize("n_blocks,size,expected", [
    (10, 3, [(0, 4), (4, 7), (7, 10)]),
    (9, 3, [(0, 3), (3, 6), (6, 9)]),
    (2, 4, [(0, 1), (1, 2), (2, 2), (2, 2)]),
    (0, 3, [(0, 0), (0, 0), (0, 0)]),
    (7, 1, [(0, 7)]),
])
def test_split_blocks_even_by_hand(n_blocks, size, expected):
    assert [split_blocks_even(n_blocks, size, r) for r in range(size)] == expected


def test_split_blocks_even_covers_once_and_balances():
    for n_blocks in range(0, 30):
        for size in range(1, 10):
            ranges = [split_blocks_even(n_blocks, size, r) for r in range(size)]
            covered = [i for lo, hi in ranges for i in range(lo, hi)]
            assert covered == list(range(n_blocks)), (n_blocks, size)
            sizes = [hi - lo for lo, hi in ranges]
            assert min(sizes) >= 0 and max(sizes) - min(sizes) <= 1, (n_blocks, size, sizes)
            assert sum(sizes) == n_blocks


# ---------------------------------------------------------------- split_blocks_by_cost

def by_cost(costs, size):
    return [split_blocks_by_cost(costs, size, r) for r in range(size)]


@pytest.mark.parametrize("costs,size,expected", [
    ([1] * 8, 4, [(0, 2), (2, 4), (4, 6), (6, 8)]),
    ([10, 1, 1, 1], 2, [(0, 1), (1, 4)]),
    ([0, 0, 5, 5], 2, [(0, 3), (3, 4)]),
    ([4, 4], 1, [(0, 2)]),
    ([], 3, [(0, 0), (0, 0), (0, 0)]),
])
def test_split_blocks_by_cost_by_hand(costs, size, expected):
    assert by_cost(costs, size) == expected


def check_cover(ranges, n):
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    for (lo, hi), (lo2, _) in zip(ranges, ranges[1:]):
        assert lo <= hi == lo2  # contiguous, in rank order
    assert [i for lo, hi in ranges for i in range(lo, hi)] == list(range(n))


@pytest.mark.parametrize("seed", range(6))
def test_split_blocks_by_cost_covers_once_and_balances(seed):
    rng = np.random.default_rng(seed)
    for n in (1, 2, 5, 17, 100):
        costs = rng.exponential(size=n) ** 2  # skewed costs
        costs[rng.random(n) < 0.2] = 0.0      # and some free blocks
        total, biggest = costs.sum(), costs.max()
        for size in (1, 2, 3, 7, n + 3):
            ranges = by_cost(costs, size)
            check_cover(ranges, n)
            # no rank gets more than its share plus one block (the bound of a greedy contiguous cut)
            for lo, hi in ranges:
                assert costs[lo:hi].sum() <= total / size + biggest + 1e-9 * total, (n, size, lo, hi)


@pytest.mark.parametrize("costs,best", [([1, 1, 1, 10], 10), ([1, 100], 100)])
def test_split_blocks_by_cost_gives_a_dominant_last_block_its_own_rank(costs, best):
    ranges = by_cost(costs, 2)
    check_cover(ranges, len(costs))
    assert max(sum(costs[lo:hi]) for lo, hi in ranges) == best


def test_split_blocks_by_cost_with_more_ranks_than_blocks():
    for size in (3, 5):
        ranges = by_cost([1, 1], size)
        check_cover(ranges, 2)
        assert sorted(hi - lo for lo, hi in ranges) == [0] * (size - 2) + [1, 1]


def test_split_blocks_by_cost_of_all_free_blocks_still_covers():
    ranges = by_cost(np.zeros(5), 3)
    check_cover(ranges, 5)


def test_split_blocks_by_cost_beats_even_split_on_skewed_costs():
    # row block k of a triangular matrix costs about n - k
    costs = np.arange(40, 0, -1, dtype=float)
    share = costs.sum() / 4
    worst = max(costs[lo:hi].sum() for lo, hi in by_cost(costs, 4))
    worst_even = max(costs[lo:hi].sum() for lo, hi in (split_blocks_even(40, 4, r) for r in range(4)))
    assert worst <= share + costs.max()
    assert worst < worst_even


# ---------------------------------------------------------------- counts_displs

@pytest.mark.parametrize("counts,displs", [
    ([3, 0, 2], [0, 3, 3]),
    ([0, 0, 0], [0, 0, 0]),
    ([5], [0]),
    ([0, 4], [0, 0]),
    ([2**40, 1, 2**33], [0, 2**40, 2**40 + 1]),
])
def test_counts_displs_by_hand(counts, displs):
    c, d = counts_displs(counts)
    assert c.dtype == np.int64 and d.dtype == np.int64
    assert c.tolist() == counts and d.tolist() == displs


def test_counts_displs_accepts_an_array():
    c, d = counts_displs(np.array([1, 2, 3], dtype=np.int32))
    assert c.dtype == np.int64 and d.tolist() == [0, 1, 3]


def test_counts_displs_of_no_counts():
    c, d = counts_displs([])
    assert len(c) == 0 and len(d) == 0
