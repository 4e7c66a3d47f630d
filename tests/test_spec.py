"""The topology spec: validation once, flags from its fields, the file's attributes, and the one
rule that says whether an epoch file is current."""
import argparse
import math
import os
import shutil

import h5py
import pytest

from conftest import dnntopo
from dnntopo import spec as specs, storage
from dnntopo.errors import UserError
from dnntopo.spec import TopologySpec, epoch_state, require_same

SMALL = dict(samples=200, max_dim=1, max_distance=0.5)


@pytest.mark.parametrize("values,needle", [
    (dict(samples=1), "--samples 1: must be at least 2"),
    (dict(samples=2.5), "--samples 2.5: must be a whole number"),
    (dict(sample_split="valid"), "--sample-split valid: choose one of test, train"),
    (dict(layers=("fc1", "fc1")), "--layers fc1 fc1: fc1 given twice"),
    (dict(max_nodes=1), "--max-nodes 1: must be 0"),
    (dict(max_distance=float("nan")), "--max-distance nan: must be a finite number"),
    (dict(max_distance=0.0), "--max-distance 0: must lie in (0, 1]"),
    (dict(max_distance=1.5), "--max-distance 1.5: must lie in (0, 1]"),
    (dict(max_dim=-1), "--max-dim -1: must be 0 or more"),
    (dict(backend="nope"), "--backend nope: choose one of giotto, ripser, dipha"),
    (dict(collapse="maybe"), "--collapse maybe: choose one of auto, on, off"),
    (dict(threads=-2), "--threads -2: must be 0"),
    (dict(min_persistence=float("nan")), "--min-persistence nan: must be a finite number"),
    (dict(min_persistence=-0.1), "--min-persistence -0.1: must lie in [0, --max-distance 0.6)"),
    (dict(min_persistence=0.7), "--min-persistence 0.7: must lie in [0, --max-distance 0.6)"),
    (dict(grid_points=1), "--grid-points 1: must lie in 2..100000"),
    (dict(grid_points=10**8), "--grid-points 100000000: must lie in 2..100000"),
    (dict(dipha_timeout=float("inf"), backend="dipha"), "--dipha-timeout inf: must be a finite number"),
    (dict(dipha_timeout=0, backend="dipha"), "--dipha-timeout 0: must be positive"),
    (dict(backend="dipha", collapse="on"), "--collapse on: DIPHA reduces the whole complex"),
    (dict(dipha_launch="spawn"), "--dipha-launch: only with --backend dipha"),
])
def test_invalid_values_are_refused_naming_the_flag(values, needle):
    with pytest.raises(UserError) as err:
        TopologySpec(**values)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_immutable_and_normalized():
    s = TopologySpec(layers=["fc1", "out"], samples=300.0, max_distance=1)
    assert s.layers == ("fc1", "out") and s.samples == 300 and isinstance(s.max_distance, float)
    with pytest.raises(AttributeError):
        s.samples = 5
    assert TopologySpec(layers="block1,fc1").layers == ("block1", "fc1")


def test_attrs_round_trip_and_result_fields():
    s = TopologySpec(samples=300, sample_split="train", layers=("fc1", "out"), max_nodes=20,
                     max_distance=0.4, max_dim=1, collapse="off", threads=2, min_persistence=0.01,
                     grid_points=50)
    a = s.attrs()
    assert a["layers"] == "fc1,out" and a["n_samples"] == 300 and a["sample_split"] == "train"
    assert TopologySpec.from_attrs(a) == s
    # engine options are not part of what an epoch *is*
    assert "collapse" not in s.result_fields() and "threads" not in s.result_fields()
    assert TopologySpec(collapse="on").differences(TopologySpec(collapse="off")) == []
    assert TopologySpec(samples=300).differences(TopologySpec()) == [("--samples", "300", "1000")]


def test_flags_come_from_the_fields():
    p = argparse.ArgumentParser()
    TopologySpec.add_arguments(p)
    a = p.parse_args(["--samples", "300", "--layers", "fc1", "out", "--max-dim", "1"])
    assert TopologySpec.from_flags(a) == TopologySpec(samples=300, layers=("fc1", "out"), max_dim=1)
    flags = {o for act in p._actions for o in act.option_strings}
    from dataclasses import fields
    assert {"--" + f.name.replace("_", "-") for f in fields(TopologySpec)} <= flags
    # overlay: only the flags given change a base spec
    q = argparse.ArgumentParser()
    TopologySpec.add_arguments(q, suppress=True)
    base = TopologySpec(samples=300, max_dim=1)
    assert TopologySpec.from_flags(q.parse_args(["--max-dim", "2"]), base=base) == TopologySpec(samples=300)


def test_require_same():
    a, b = TopologySpec(samples=300).attrs(), TopologySpec(samples=1000, max_dim=1).attrs()
    assert require_same([(0, a), (1, a)]) == TopologySpec(samples=300)
    with pytest.raises(UserError) as err:
        require_same([(0, a), (1, a), (2, b)])
    msg = str(err.value)
    assert "epochs 0 1 with --samples 300, --max-dim 2" in msg and "epochs 2 with --samples 1000, --max-dim 1" in msg
    assert "--allow-mixed-specs" in msg
    assert require_same([(0, a), (2, b)], allow=True) is None


@pytest.fixture(scope="module")
def computed(module_run):
    dnntopo("-q", "topology", "--run", module_run, "--epochs", "1", "2", *[f"--{k.replace('_', '-')}={v}" for k, v in SMALL.items()],
            check=True)
    return storage.Run(module_run)


def state(run, epoch, **values):
    cfg = storage.read_config(run)
    return epoch_state(run, epoch, TopologySpec(**dict(SMALL, **values)), cfg)


def test_epoch_state_current_and_stale(computed, tmp_path):
    run = computed
    assert state(run, 1).current and str(state(run, 1)) == "current"
    st = state(run, 1, samples=300)
    assert st.state == "stale" and "file has --samples 200, 300 asked" in st.reason
    assert state(run, 1, collapse="off").current                  # an engine option: same numbers
    assert state(run, 1, layers=("block1", "block2", "fc1", "out")).current   # lenet's default layers
    assert state(run, 1, layers=("fc1", "out")).state == "stale"
    assert state(run, 0).state == "missing"
    assert epoch_state(run, 9, TopologySpec(**SMALL), storage.read_config(run)).state == "no checkpoint"
    # with extras asked for, a file without them is not current
    cfg = storage.read_config(run)
    assert epoch_state(run, 1, TopologySpec(**SMALL), cfg, ("activations",)).state == "incomplete"


def test_epoch_state_damaged_files(computed, tmp_path):
    run = computed
    path = run.epoch_file(2)
    backup = tmp_path / "backup.h5"
    shutil.copy2(path, backup)
    try:
        # a checkpoint newer than the file
        os.utime(run.checkpoint(2), (path.stat().st_mtime + 10,) * 2)
        st = state(run, 2)
        assert st.state == "stale" and st.reason == "older than its checkpoint"
        os.utime(run.checkpoint(2), (path.stat().st_mtime - 10,) * 2)
        assert state(run, 2).current
        # a dataset missing (a file from an interrupted import, or another tool)
        with h5py.File(path, "a") as f:
            del f["diagrams/dim_1"]
        st = state(run, 2)
        assert st.state == "incomplete" and "diagrams/dim_1" in st.reason
        # truncated
        data = backup.read_bytes()
        path.write_bytes(data[: len(data) // 3])
        st = state(run, 2)
        assert st.state == "unreadable" and "truncated or not an HDF5 file" in st.reason
        assert "lock" not in st.reason.lower()
        # written for another run
        shutil.copy2(backup, path)
        with h5py.File(path, "a") as f:
            f.attrs["trial"] = 7
        st = state(run, 2)
        assert st.state == "stale" and "another run" in st.reason
    finally:
        shutil.copy2(backup, path)
        os.utime(run.checkpoint(2), (path.stat().st_mtime - 10,) * 2)
    assert state(run, 2).current


def test_recorded_spec(computed):
    rec = specs.recorded(computed)
    assert rec == TopologySpec(**SMALL).resolved("lenet")
    assert not math.isnan(rec.max_distance)
