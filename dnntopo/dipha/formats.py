"""DIPHA's binary files: full distance matrix (type 7), sparse distance matrix (type 8) and
persistence diagram (type 2); little-endian int64 and float64, after the magic number.

Readers map the file (numpy.memmap) instead of loading it twice and check that the header's
counts add up to the file's size; each problem is one clear line naming the file.
DIPHA's conventions: Rips values are half the distance; an essential class of dimension k is
written with dim -k-1 and the largest value in the complex as its "death"; pairs with zero
persistence are not written; pairs are written sorted by (dim, birth, death), dim signed (the
essential classes, negative, first), which is DIPHA's byte order.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dnntopo.errors import UserError
from hpc.io import atomic_path

MAGIC = 8067171840
#: How every DIPHA file begins: the magic number as 8 little-endian bytes.
MAGIC_BYTES = int(MAGIC).to_bytes(8, "little")
FULL, SPARSE, DIAGRAM = 7, 8, 2
NAMES = {FULL: "full distance matrix (type 7)", SPARSE: "sparse distance matrix (type 8)",
         DIAGRAM: "persistence diagram (type 2)"}
PAIR = np.dtype([("dim", "<i8"), ("birth", "<f8"), ("death", "<f8")])


class DiphaFormatError(UserError):
    """A DIPHA file that is not what it should be."""


def header(path) -> tuple[int, int]:
    """(file type, n or p) of a DIPHA file; wrong magic or a short header is refused."""
    path = Path(path)
    if not path.exists():
        raise DiphaFormatError(f"DIPHA file {path} does not exist")
    size = path.stat().st_size
    if size < 24:
        raise DiphaFormatError(f"{path} is truncated: {size} bytes, a DIPHA header needs 24")
    magic, kind, n = np.fromfile(path, dtype="<i8", count=3)
    if magic != MAGIC:
        raise DiphaFormatError(f"{path} is not a DIPHA file (magic number {magic}, expected {MAGIC})")
    if kind not in NAMES:
        raise DiphaFormatError(f"{path}: unknown DIPHA file type {kind} (expected 7, 8 or 2)")
    if n < 0:
        raise DiphaFormatError(f"{path}: negative count {n} in the header")
    return int(kind), int(n)


def _expect(path, want):
    got, n = header(path)
    if got != want:
        raise DiphaFormatError(f"{path} is a {NAMES[got]}, expected a {NAMES[want]}")
    return n


def _check_size(path, need: int, what: str):
    size = Path(path).stat().st_size
    if size != need:
        state = "truncated" if size < need else "longer than its header says"
        raise DiphaFormatError(f"{path} is {state}: {size} bytes, {what} needs {need}")


def read_full(path) -> np.ndarray:
    """The n x n distance matrix (read-only memmap, float64)."""
    n = _expect(path, FULL)
    _check_size(path, 24 + 8 * n * n, f"a {n} x {n} matrix")
    return np.memmap(path, dtype="<f8", mode="r", offset=24, shape=(n, n))


def read_sparse(path):
    """(n, counts, indices, values) of a sparse distance matrix; arrays are memmaps."""
    n = _expect(path, SPARSE)
    size = Path(path).stat().st_size
    if size < 24 + 8 * n:
        raise DiphaFormatError(f"{path} is truncated: {size} bytes, the {n} neighbour counts alone need {24 + 8 * n}")
    counts = np.memmap(path, dtype="<i8", mode="r", offset=24, shape=(n,))
    if n and counts.min() < 0:
        raise DiphaFormatError(f"{path}: negative neighbour count")
    total = int(counts.sum())
    _check_size(path, 24 + 8 * n + 16 * total, f"{total} neighbours (the sum of its counts)")
    idx = np.memmap(path, dtype="<i8", mode="r", offset=24 + 8 * n, shape=(total,))
    val = np.memmap(path, dtype="<f8", mode="r", offset=24 + 8 * n + 8 * total, shape=(total,))
    if total and (idx.min() < 0 or idx.max() >= n):
        raise DiphaFormatError(f"{path}: a neighbour index lies outside 0..{n - 1}")
    return n, counts, idx, val


def read_diagram(path):
    """(dims, births, deaths) of a persistence diagram in DIPHA's units and signs."""
    p = _expect(path, DIAGRAM)
    _check_size(path, 24 + PAIR.itemsize * p, f"{p} pairs")
    rec = np.fromfile(path, dtype=PAIR, count=p, offset=24)
    return rec["dim"].astype(np.int64), rec["birth"].astype(np.float64), rec["death"].astype(np.float64)


def _write(path, kind, n, parts):
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.array([MAGIC, kind, n], dtype="<i8").tofile(fh)
            for arr in parts:
                np.ascontiguousarray(arr).tofile(fh)


def write_full(path, dist: np.ndarray):
    dist = np.asarray(dist, dtype="<f8")
    if dist.ndim != 2 or dist.shape[0] != dist.shape[1]:
        raise ValueError("a full distance matrix is square")
    _write(path, FULL, dist.shape[0], [dist])


def write_sparse(path, n: int, counts, indices, values):
    _write(path, SPARSE, n, [np.asarray(counts, "<i8"), np.asarray(indices, "<i8"), np.asarray(values, "<f8")])


def write_diagram(path, dims, births, deaths):
    rec = np.empty(len(dims), dtype=PAIR)
    rec["dim"], rec["birth"], rec["death"] = dims, births, deaths
    _write(path, DIAGRAM, len(rec), [rec])


def symmetric_lists(n: int, i, j, d):
    """Neighbour lists of both ends of every edge i < j, sorted by (vertex, neighbour)."""
    rows = np.concatenate([i, j]).astype(np.int64)
    cols = np.concatenate([j, i]).astype(np.int64)
    vals = np.concatenate([d, d]).astype(np.float64)
    order = np.lexsort((cols, rows))
    return np.bincount(rows, minlength=n), cols[order], vals[order], rows[order]


def edges_from_file(path):
    """(n, i, j, d) with i < j of a full or sparse distance matrix file (d in float64)."""
    kind, _ = header(path)
    if kind == FULL:
        dist = read_full(path)
        n = dist.shape[0]
        i, j = np.triu_indices(n, 1)
        return n, i, j, np.asarray(dist[i, j], dtype=np.float64)
    if kind == SPARSE:
        n, counts, idx, val = read_sparse(path)
        rows = np.repeat(np.arange(n, dtype=np.int64), counts)
        up = rows < idx
        i, j, d = rows[up], np.asarray(idx[up]), np.asarray(val[up])
        # an edge listed from both ends (as DIPHA writes them) counts once
        key = i * n + j
        key, first = np.unique(key, return_index=True)
        return n, i[first], j[first], d[first]
    raise DiphaFormatError(f"{path} is a {NAMES[kind]}, expected a distance matrix (type 7 or 8)")


def to_dipha(diagrams: list, top: float):
    """Diagrams in distance units -> DIPHA's triples: values halved, essential dim -k-1 with
    `top` (the largest distance in the complex) as death, zero-persistence pairs dropped, in
    DIPHA's order (`sort_pairs`)."""
    dims, births, deaths = [], [], []
    for k, dg in enumerate(diagrams):
        dg = np.asarray(dg, dtype=np.float64).reshape(-1, 2)
        ess = ~np.isfinite(dg[:, 1])
        keep = ess | (dg[:, 1] > dg[:, 0])
        dg, ess = dg[keep], ess[keep]
        dims.append(np.where(ess, -k - 1, k))
        births.append(dg[:, 0] / 2)
        deaths.append(np.where(ess, top / 2, dg[:, 1] / 2))
    cat = lambda x, t: np.concatenate(x) if x else np.empty(0, t)  # noqa: E731
    return sort_pairs(cat(dims, np.int64), cat(births, np.float64), cat(deaths, np.float64))


def sort_pairs(dims, births, deaths):
    """The triples in DIPHA's order: by (dim, birth, death), dim as the signed int64 written
    (so essential classes of dimension 2, 1, 0 (-3, -2, -1) come before the finite pairs)."""
    dims, births, deaths = (np.asarray(dims, np.int64), np.asarray(births, np.float64),
                            np.asarray(deaths, np.float64))
    order = np.lexsort((deaths, births, dims))
    return dims[order], births[order], deaths[order]


def from_dipha(dims, births, deaths, max_dim: int | None = None) -> list[np.ndarray]:
    """DIPHA's triples -> diagrams in distance units (essential classes die at inf)."""
    dims = np.asarray(dims)
    k_of = np.where(dims < 0, -dims - 1, dims)
    top = int(k_of.max()) if k_of.size else 0
    max_dim = top if max_dim is None else max_dim
    out = []
    for k in range(max_dim + 1):
        sel = k_of == k
        b = np.asarray(births)[sel] * 2
        d = np.where(dims[sel] < 0, np.inf, np.asarray(deaths)[sel] * 2)
        dg = np.c_[b, d]
        out.append(dg[np.lexsort((dg[:, 1], dg[:, 0]))])
    return out


def exact_values(dg: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Replace float32-rounded diagram values by the float64 edge values they came from."""
    uniq = np.unique(np.asarray(values, dtype=np.float64))
    if uniq.size == 0:
        return dg
    as32 = uniq.astype(np.float32)
    out = dg.copy()
    fin = np.isfinite(out) & (out != 0)
    pos = np.clip(np.searchsorted(as32, out[fin].astype(np.float32)), 0, uniq.size - 1)
    hit = as32[pos] == out[fin].astype(np.float32)
    vals = out[fin]
    vals[hit] = uniq[pos[hit]]
    out[fin] = vals
    return out


def file_size_ok(path) -> bool:
    """True when a diagram file is complete (its size matches its header)."""
    try:
        p = _expect(path, DIAGRAM)
        return os.path.getsize(path) == 24 + PAIR.itemsize * p
    except UserError:
        return False
