"""`dnntopo topology` end to end on a real checkpoint, checked against independent computations."""
import json
import os

import h5py
import numpy as np
import pytest
import scipy.sparse as sp
from ripser import ripser

from conftest import dnntopo
from dnntopo import storage

ARGS = ["--samples", "500", "--max-dim", "2", "--max-distance", "0.5"]


@pytest.fixture(scope="module")
def epoch1(module_run):
    dnntopo("-q", "topology", "--run", module_run, "--epochs", "1", "--save-activations", *ARGS, check=True)
    return storage.Run(module_run).epoch_file(1)


def keys(f):
    out = []
    f.visit(out.append)
    return sorted(out)


def test_epoch_file_layout(epoch1):
    with h5py.File(epoch1) as f:
        assert keys(f) == sorted([
            "activations", "betti", "betti/density", "betti/dim_0", "betti/dim_1", "betti/dim_2",
            "betti/distance", "diagrams", "diagrams/dim_0", "diagrams/dim_1", "diagrams/dim_2",
            "graph", "graph/edges", "graph/edges/distance", "graph/edges/i", "graph/edges/j",
            "graph/layer", "summary", "summary/dim_0", "summary/dim_1", "summary/dim_2"])
        a = f.attrs
        for k in ("net", "dataset", "trial", "epoch", "n_nodes", "n_samples", "max_dim", "max_distance",
                  "backend", "version", "layers", "max_nodes", "sample_split", "min_persistence"):
            assert k in a, k
        assert a["n_nodes"] == 1820 and a["n_samples"] == 500 and a["epoch"] == 1
        assert f["activations"].shape == (1820, 500) and f["activations"].dtype == np.float32
        assert f["diagrams/dim_1"].dtype == np.float64 and f["diagrams/dim_1"].shape[1] == 2
        assert set(f["summary/dim_1"].attrs) == {"life", "midlife", "betti_max", "distance_at_max",
                                                 "density_at_max", "area", "max_at_threshold"}
    assert not [p for p in os.listdir(epoch1.parent) if p.startswith(".")]   # no temporaries left


def test_graph_recomputed_from_stored_activations(epoch1):
    with h5py.File(epoch1) as f:
        x = f["activations"][()].astype(np.float64)
        i, j, d = f["graph/edges/i"][()], f["graph/edges/j"][()], f["graph/edges/distance"][()]
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.nan_to_num(np.corrcoef(x), nan=0.0)
    ref = 1 - np.abs(c)
    iu, ju = np.triu_indices(1820, 1)
    sure = set(zip(*(a[ref[iu, ju] <= 0.5 - 3e-5] for a in (iu, ju))))
    maybe = set(zip(*(a[ref[iu, ju] <= 0.5 + 3e-5] for a in (iu, ju))))
    got = set(zip(i.tolist(), j.tolist()))
    assert sure <= got <= maybe and len(got) > 10000
    assert np.allclose(d, ref[i, j], atol=3e-5)


def test_diagrams_and_curves_match_ripser(epoch1):
    with h5py.File(epoch1) as f:
        i, j, d = f["graph/edges/i"][()], f["graph/edges/j"][()], f["graph/edges/distance"][()]
        dg = {k: f[f"diagrams/dim_{k}"][()] for k in range(3)}
        grid = f["betti/distance"][()]
        curves = {k: f[f"betti/dim_{k}"][()] for k in range(3)}
        life1 = f["summary/dim_1"].attrs["life"]
        midlife2 = f["summary/dim_2"].attrs["midlife"]
    ref = ripser(sp.coo_matrix((d, (i, j)), shape=(1820, 1820)), maxdim=2, distance_matrix=True)["dgms"]
    for k in range(3):
        a = dg[k][np.lexsort((dg[k][:, 1], dg[k][:, 0]))]
        b = ref[k][np.lexsort((ref[k][:, 1], ref[k][:, 0]))]
        assert a.shape == b.shape
        fin = np.isfinite(a)
        assert np.array_equal(fin, np.isfinite(b)) and np.allclose(a[fin], b[fin], atol=1e-6)
        assert curves[k].tolist() == [int(((a[:, 0] <= t) & (t < a[:, 1])).sum()) for t in grid]
    f1 = dg[1][np.isfinite(dg[1][:, 1])]
    f1 = f1[f1[:, 1] - f1[:, 0] > 0.02]
    assert np.isclose(life1, np.mean(f1[:, 1] - f1[:, 0]))
    f2 = dg[2][np.isfinite(dg[2][:, 1])]
    f2 = f2[f2[:, 1] - f2[:, 0] > 0.02]
    assert np.isclose(midlife2, np.mean((f2[:, 0] + f2[:, 1]) / 2))


def test_rerun_skips_and_force_recomputes(epoch1, module_run):
    before = epoch1.stat().st_mtime_ns
    p = dnntopo("topology", "--run", module_run, "--epochs", "1", "--save-activations", *ARGS)
    assert p.returncode == 0 and "up to date" in p.stderr and epoch1.stat().st_mtime_ns == before
    p = dnntopo("-q", "topology", "--run", module_run, "--epochs", "1", "--save-activations", "--force", *ARGS)
    assert p.returncode == 0 and epoch1.stat().st_mtime_ns != before
    # other parameters are another computation: not skipped
    p = dnntopo("topology", "--run", module_run, "--epochs", "1", "--samples", "400", "--max-dim", "1")
    assert p.returncode == 0 and "up to date" not in p.stderr
    assert storage.read_attrs(epoch1)["n_samples"] == 400


def test_crash_while_writing_leaves_no_file(module_run):
    path = storage.Run(module_run).epoch_file(2)
    assert not path.exists()
    p = dnntopo("topology", "--run", module_run, "--epochs", "2", *ARGS,
                env={"DNNTOPO_FAIL_RANK": "0", "DNNTOPO_FAIL_STAGE": "write"})
    assert p.returncode != 0 and "failure injected" in p.stderr
    assert not path.exists()
    assert not [q for q in os.listdir(path.parent) if q.startswith(".")]


@pytest.mark.parametrize("args,needle", [
    (["--epochs", "7"], "--epochs 7: no checkpoint"),
    (["--epochs", "1", "--max-dim", "40"], "--max-dim 40"),
    (["--epochs", "1", "--max-distance", "1.5"], "--max-distance 1.5"),
    (["--epochs", "1", "--max-distance", "0.0001", "--min-persistence", "0"], "no edge with distance <= 0.0001"),
    (["--epochs", "1", "--max-distance", "0.01"], "--min-persistence 0.02: must lie in [0, --max-distance 0.01)"),
    (["--epochs", "1", "--min-persistence", "nan"], "--min-persistence nan: must be a finite number"),
    (["--epochs", "1", "1"], "--epochs 1 1: 1 given twice"),
    (["--epochs", "1", "--layers", "fc1", "fc1"], "--layers fc1 fc1: fc1 given twice"),
    (["--epochs", "1", "--grid-points", "100000000"], "--grid-points 100000000: must lie in 2..100000"),
    (["--epochs", "1", "--threads", "-2"], "--threads -2: must be 0 (all cores) or more"),
    (["--epochs", "1", "--dipha-procs", "2"], "--dipha-procs: only with --backend dipha"),
    (["--epochs", "1", "--layers", "conv9"], "--layers conv9"),
])
def test_bad_input_is_one_line(module_run, args, needle):
    p = dnntopo("topology", "--run", module_run, "--samples", "200", *args)
    lines = p.stderr.strip().splitlines()
    assert p.returncode != 0 and len(lines) == 1 and needle in lines[0], p.stderr
    assert "Traceback" not in p.stderr


def test_missing_run_folder(tmp_path):
    p = dnntopo("topology", "--run", tmp_path / "nothing")
    assert p.returncode == 2 and "no run there" in p.stderr


def test_summary_and_plots(epoch1, module_run, tmp_path):
    p = dnntopo("summary", "--run", module_run, "--format", "json", check=True)
    rows = json.loads(p.stdout)
    assert rows[0]["epoch"] == 1 and "life_1" in rows[0] and 0 <= rows[0]["acc_test"] <= 1
    p = dnntopo("summary", "--run", module_run, "--format", "csv", check=True)
    assert p.stdout.splitlines()[0].startswith("epoch,acc_train,acc_test,n_nodes,sample_split,life_0")
    p = dnntopo("summary", "--run", module_run, check=True)
    assert "midlife_1" in p.stdout.splitlines()[0]
    for kind, name in (("betti", "b.png"), ("diagram", "d.pdf"), ("summary", "s.png")):
        out = tmp_path / name
        dnntopo("plot", "--run", module_run, "--epochs", "1", "--kind", kind, "--out", out, check=True)
        head = out.read_bytes()[:8]
        assert head.startswith(b"\x89PNG") or head.startswith(b"%PDF")
    p = dnntopo("plot", "--run", module_run, "--epochs", "1", "--dim", "5")
    assert p.returncode != 0 and "--dim 5" in p.stderr


def test_own_split_is_the_runs_training_samples(module_run, fmnist_root):
    """--sample-split own forwards the first samples of the subset the run trained on (here a
    10% subset drawn with seed 0), not the first images of the training file."""
    import torch
    from dnntopo import data, models
    dnntopo("-q", "topology", "--run", module_run, "--epochs", "2", "--sample-split", "own", "--samples", "300",
            "--max-dim", "1", "--save-activations", "--force", check=True)
    path = storage.Run(module_run).epoch_file(2)
    with h5py.File(path) as f:
        assert f.attrs["sample_split"] == "own" and f.attrs["n_samples"] == 300
        out = f["activations"][-10:]                        # the output layer's 10 nodes x 300 samples
    full = data.load("fashion_mnist", fmnist_root, "train")
    keep = np.sort(np.random.default_rng(0).choice(60000, 6000, replace=False))[:300]   # by hand
    model = models.build("lenet", (1, 28, 28), 10)
    model.load_state_dict(torch.load(storage.Run(module_run).checkpoint(2), weights_only=True))
    with torch.no_grad():
        ref = model.eval()(full.subset(keep).batch(slice(0, 300))[0]).numpy().T
        first = model(full.subset(np.arange(300)).batch(slice(0, 300))[0]).numpy().T
    assert np.abs(out - ref).max() < 1e-4 and np.abs(out - first).max() > 1e-2
    # a run whose recorded training samples no longer match its data is refused in one line
    cfg = json.loads((module_run / "config.json").read_text())
    bad = dict(cfg, train_digest="0" * 40)
    (module_run / "config.json").write_text(json.dumps(bad))
    try:
        p = dnntopo("topology", "--run", module_run, "--epochs", "1", "--sample-split", "own", "--samples", "300")
        lines = p.stderr.strip().splitlines()
        assert p.returncode == 2 and len(lines) == 1 and "--sample-split own" in lines[0] and "differ" in lines[0]
    finally:
        (module_run / "config.json").write_text(json.dumps(cfg))
