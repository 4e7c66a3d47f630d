"""The run folder and the one writer of epoch files."""
import os

import h5py
import numpy as np
import pytest

from dnntopo import storage
from dnntopo.errors import UserError
from dnntopo.spec import TopologySpec


def contents(n=4):
    i, j = np.array([0, 1], np.int32), np.array([1, 3], np.int32)
    d = np.array([0.1, 0.3], np.float32)
    dgms = [np.array([[0, 0.1], [0, np.inf]]), np.empty((0, 2))]
    attrs = dict(TopologySpec(max_dim=1).attrs(), net="lenet", dataset="fashion_mnist", trial=0, epoch=3,
                 n_nodes=n)
    return storage.epoch_contents(attrs, np.zeros(n, np.int32), {"layers": "fc1"}, (i, j, d), dgms,
                                  np.array([0.0, 0.3]), np.array([0.0, 0.33]), [np.array([4, 2]), np.array([0, 0])],
                                  [{"life": 0.1}, {"life": float("nan")}])


def test_epoch_file_layout_and_atomic_write(tmp_path):
    path = tmp_path / "topology" / "epoch_0003.h5"
    storage.write_epoch_file(path, *contents())
    with h5py.File(path) as f:
        keys = []
        f.visit(keys.append)
        assert {"graph/edges/i", "graph/edges/j", "graph/edges/distance", "graph/layer", "diagrams/dim_0",
                "diagrams/dim_1", "betti/dim_0", "betti/distance", "betti/density", "summary/dim_1"} <= set(keys)
        assert f.attrs["version"] and f.attrs["layers"] == "block1,block2,fc1,out" or f.attrs["layers"] == ""
        assert f["graph"].attrs["layers"] == "fc1"
    attrs, keys = storage.inspect_epoch(path)
    assert attrs["epoch"] == 3 and "diagrams/dim_1" in keys
    ep = storage.read_epoch(path, edges=True)
    assert ep["edges"][1].tolist() == [1, 3] and np.isinf(ep["diagrams"][0][1, 1])
    assert np.isnan(ep["summary"][1]["life"])
    # a failing writer leaves the old file untouched and no temporary behind
    before = path.read_bytes()

    def boom():
        raise RuntimeError("killed")
    with pytest.raises(RuntimeError):
        storage.write_epoch_file(path, *contents(n=9), before_close=boom)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["epoch_0003.h5"]


def test_stale_temporary_is_removed_by_the_next_write(tmp_path):
    path = tmp_path / "epoch_0001.h5"
    stale = tmp_path / ".epoch_0001.h5.tmp-otherhost-123"
    stale.write_bytes(b"half")
    storage.write_epoch_file(path, *contents())
    assert not stale.exists() and path.exists()


def test_unreadable_files_name_the_cause(tmp_path):
    path = tmp_path / "epoch_0001.h5"
    storage.write_epoch_file(path, *contents())
    data = path.read_bytes()
    path.write_bytes(data[:200])
    with pytest.raises(UserError) as err:
        storage.inspect_epoch(path)
    assert "truncated or not an HDF5 file" in str(err.value) and "lock" not in str(err.value).lower()
    path.write_bytes(b"")
    with pytest.raises(UserError, match="truncated or not an HDF5 file"):
        storage.read_epoch(path)
    with pytest.raises(UserError, match="does not exist"):
        storage.read_epoch(tmp_path / "epoch_0009.h5")


def test_run_paths(tmp_path):
    run = storage.Run(storage.run_path(tmp_path, "lenet", "fashion_mnist", 2))
    assert run.root == tmp_path / "lenet_fashion_mnist" / "trial_2"
    storage.ensure_dirs(run)
    for e in (5, 0):
        run.checkpoint(e).write_bytes(b"x")
    assert run.saved_epochs() == [0, 5] and run.epoch_file(5).name == "epoch_0005.h5"
    with pytest.raises(UserError, match="no run there"):
        storage.open_run(tmp_path / "nothing")
    cfg = {"net": "lenet", "dataset": "fashion_mnist", "trial": 2, "input_shape": [1, 28, 28], "num_classes": 10}
    storage.write_config(run, cfg)
    assert storage.read_config(run)["net"] == "lenet" and os.path.exists(run.config)
    for bad, needle in (("[]", "lacks net"), ("{}", "lacks net, dataset"), ("{", "cannot read"),
                        ('{"net": "lenet"}', "lacks dataset")):
        run.config.write_text(bad)
        with pytest.raises(UserError, match=needle):
            storage.read_config(run)
    storage.write_config(run, cfg)
    storage.write_stats(run, [{"epoch": 1, "loss_train": 1.0, "loss_test": 2.0, "acc_train": 0.5, "acc_test": 0.25}])
    assert storage.read_stats(run) == [{"epoch": 1, "loss_train": 1.0, "loss_test": 2.0, "acc_train": 0.5,
                                        "acc_test": 0.25}]
    run.stats.write_text("epoch,acc\n1,x\n")
    with pytest.raises(UserError, match="stats.csv: not the stats of `dnntopo train`"):
        storage.read_stats(run)
