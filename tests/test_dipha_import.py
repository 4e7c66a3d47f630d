"""import-dipha checks that a diagram fits its epoch before writing anything; export-dipha never
overwrites a run's own files. On a small epoch written here (10 nodes, one edge of distance 0,
a 4-cycle, an isolated node), so that every count is known."""
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import dnntopo
from dnntopo import dipha, storage, summaries, topology
from dnntopo.dipha import backend, cli
from dnntopo.errors import UserError
from dnntopo.spec import TopologySpec

# 0-1 at distance 0, 1-2 at 0.2 | 3-4 at 0.3 | 4-cycle 5-6-7-8, sides 0.1, diagonals 0.4 | 9 alone
EDGES = [(0, 1, 0.0), (1, 2, 0.2), (3, 4, 0.3), (5, 6, 0.1), (6, 7, 0.1), (7, 8, 0.1), (5, 8, 0.1),
         (5, 7, 0.4), (6, 8, 0.4)]
N = 10
MAX_DISTANCE = 0.4   # float32(0.4) > 0.4: the diagonals lie a float32 ulp beyond the threshold


def make_epoch(root: Path, max_dim: int = 1) -> storage.Run:
    """An epoch file as the pipeline writes it (giotto), for a run folder of its own."""
    run = storage.Run(root)
    storage.ensure_dirs(run)
    run.config.write_text("{}\n")
    i, j, d = (np.array(x, dtype=t) for x, t in zip(zip(*EDGES), (np.int32, np.int32, np.float32)))
    spec = TopologySpec(samples=10, layers=("a",), max_distance=MAX_DISTANCE, max_dim=max_dim)
    dgms = topology.persistence(N, i, j, d, max_dim)
    grid, density, bettis, sums = summaries.curves_and_summaries(dgms, d, N, spec)
    attrs = dict(spec.attrs(), net="lenet", dataset="fashion_mnist", trial=0, epoch=1, n_nodes=N, n_units=N)
    graph_attrs = {"layers": "a", "layer_units": [N], "layer_nodes": [N], "grouping": "none"}
    storage.write_epoch_file(run.epoch_file(1), *storage.epoch_contents(
        attrs, np.zeros(N, np.int32), graph_attrs, (i, j, d), dgms, grid, density, bettis, sums))
    return run


@pytest.fixture
def epoch(tmp_path):
    """(run, the diagram DIPHA gives for the epoch's exported matrix (dims 0-1), its triples)."""
    run = make_epoch(tmp_path / "run")
    src = backend.export_epoch(run, 1, tmp_path / "g.complex", full=False)
    right = tmp_path / "right.diagram"
    cli.compute(src, right, upper_dim=2)
    return run, right, dipha.read_diagram(right)


def diagrams(path, max_dim):
    with h5py.File(path) as f:
        return [f[f"diagrams/dim_{k}"][()] for k in range(max_dim + 1)]


def test_the_right_diagram_is_imported(epoch):
    run, right, (dims, b, d) = epoch
    # what DIPHA writes for it: no pair for the edge of distance 0, 4 components, one dim-1 pair
    assert (dims == 0).sum() == 5 and (dims == -1).sum() == 4 and (dims == 1).sum() == 1
    assert b[dims == 1] == float(np.float32(0.1)) / 2 and d[dims == 1] == float(np.float32(0.4)) / 2
    path = run.epoch_file(1)
    before = diagrams(path, 1)
    assert backend.import_epoch(run, 1, right) == path
    with h5py.File(path) as f:
        assert f.attrs["backend"] == "dipha" and f.attrs["max_dim"] == 1
    for x, y in zip(before, diagrams(path, 1)):
        assert np.array_equal(x, y)


def _pop(arrs, sel):
    return tuple(a[~sel] for a in arrs)


# each: how a wrong diagram is made from the right one, and the words the refusal must hold
BAD = {
    "nan": (lambda dims, b, d: (dims, np.where(dims == 1, np.nan, b), d), "non-finite birth or death"),
    "inf": (lambda dims, b, d: (dims, b, np.where(dims == -1, np.inf, d)), "non-finite birth or death"),
    "birth after death": (lambda dims, b, d: (dims, np.where(dims == 1, d, b), np.where(dims == 1, b, d)),
                          "birth > death"),
    "beyond the threshold": (lambda dims, b, d: (dims, b, np.where(dims == -1, 0.3, d)),
                             "beyond the epoch's --max-distance 0.4"),
    "dimension above max_dim": (lambda dims, b, d: (np.r_[dims, 2], np.r_[b, 0.1], np.r_[d, 0.15]),
                                "classes of dimension 2, the epoch holds dimensions 0..1"),
    # a pair of zero persistence kept, as for 11 vertices
    "vertex count": (lambda dims, b, d: (np.r_[dims, 0], np.r_[b, 0.0], np.r_[d, 0.0]),
                     "10 classes of dimension 0, the epoch's graph needs 9"),
    "components": (lambda dims, b, d: (np.where((dims == 0) & (d == d[dims == 0].max()), -1, dims), b,
                                       np.where((dims == 0) & (d == d[dims == 0].max()), 0.2, d)),
                   "5 essential classes of dimension 0, the epoch's graph has 4 connected components"),
    "upper_dim too small": (lambda dims, b, d: _pop((dims, b, d), (dims == 1) | (dims == -2)),
                            "no class of dimension 1, where the epoch has some"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_a_diagram_that_does_not_fit_leaves_the_epoch_untouched(epoch, tmp_path, name):
    run, _, triples = epoch
    make, words = BAD[name]
    bad = tmp_path / f"{name.replace(' ', '_')}.diagram"
    dipha.write_diagram(bad, *make(*triples))
    path = run.epoch_file(1)
    raw = path.read_bytes()
    with pytest.raises(UserError) as exc:
        backend.import_epoch(run, 1, bad)
    msg = str(exc.value)
    assert str(bad) in msg and words in msg and "\n" not in msg, msg
    assert path.read_bytes() == raw
    assert os.listdir(path.parent) == ["epoch_0001.h5"]


def test_max_dim_imports_fewer_dimensions(epoch, tmp_path):
    run, right, (dims, b, d) = epoch
    path = run.epoch_file(1)
    before = diagrams(path, 1)
    raw = path.read_bytes()
    with pytest.raises(UserError, match="--max-dim 2: .* holds dimensions 0..1"):
        backend.import_epoch(run, 1, right, max_dim=2)
    assert path.read_bytes() == raw
    # DIPHA run with --upper_dim 1: dimension 0 only, imported as such on purpose
    low = tmp_path / "low.diagram"
    cli.compute(tmp_path / "g.complex", low, upper_dim=1)
    with pytest.raises(UserError, match="no class of dimension 1"):
        backend.import_epoch(run, 1, low)
    assert path.read_bytes() == raw
    backend.import_epoch(run, 1, low, max_dim=0)
    with h5py.File(path) as f:
        assert f.attrs["max_dim"] == 0 and "diagrams/dim_1" not in f and "betti/dim_1" not in f
        assert np.array_equal(f["diagrams/dim_0"][()], before[0])
    # the full diagram with --max-dim 0: its dimension-1 classes are left out
    run2 = make_epoch(tmp_path / "run2")
    backend.import_epoch(run2, 1, right, max_dim=0)
    with h5py.File(run2.epoch_file(1)) as f:
        assert f.attrs["max_dim"] == 0 and np.array_equal(f["diagrams/dim_0"][()], before[0])


def test_import_dipha_refusal_is_one_line(epoch, tmp_path):
    run, _, (dims, b, d) = epoch
    bad = tmp_path / "bad.diagram"
    dipha.write_diagram(bad, dims, b, np.where(dims == -1, np.nan, d))
    raw = run.epoch_file(1).read_bytes()
    p = dnntopo("import-dipha", "--run", run.root, "--epoch", "1", "--diagram", bad)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and str(bad) in p.stderr, p.stderr
    assert run.epoch_file(1).read_bytes() == raw


def test_export_never_overwrites_the_runs_files(tmp_path):
    run = make_epoch(tmp_path / "run")
    other = tmp_path / "notes.complex"
    other.write_text("mine\n")
    for out, words in [(run.config, "unsupported file type|own files"), (run.epoch_file(1), "own files"),
                       (tmp_path / "g.txt", "unsupported file type .txt"),
                       (other, "exists and was not written by this command")]:
        raw = out.read_bytes() if out.exists() else None
        with pytest.raises(UserError, match=words):
            backend.export_epoch(run, 1, out, full=False)
        assert (out.read_bytes() if out.exists() else None) == raw
    # an earlier export (a DIPHA file) is replaced; the default name lies beside the epoch file
    first = backend.export_epoch(run, 1, None, full=False)
    assert first == run.topology / "epoch_0001.complex"
    assert backend.export_epoch(run, 1, None, full=False) == first and dipha.header(first) == (dipha.SPARSE, N)
    assert backend.export_epoch(run, 1, other, full=False, overwrite=True) == other
    assert other.read_bytes() == first.read_bytes()
