"""Real Open MPI ranks under mpiexec: the same epoch file whatever K, and prompt failure."""
import os
import shutil
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from conftest import BIN, copy_run, dnntopo
from dnntopo import storage

pytestmark = pytest.mark.mpi
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_rmaps_base_oversubscribe": "1", "OMPI_MCA_btl_vader_single_copy_mechanism": "none"}


def mpiexec(k, *args, env=None, timeout=300, module=False):
    exe = shutil.which("mpiexec")
    if exe is None:
        pytest.fail("mpiexec not found: install Open MPI (scripts/setup.sh does on Debian)")
    cmd = [exe, "-n", str(k), "--oversubscribe"]
    for key in (env or {}):
        cmd += ["-x", key]
    prog = [sys.executable, "-m", "mpi4py", "-m", "dnntopo"] if module else [str(BIN / "dnntopo")]
    full = dict(os.environ, **MPI_ENV, **(env or {}))
    return subprocess.run(cmd + prog + [str(a) for a in args], capture_output=True, text=True,
                          env=full, timeout=timeout)


def compute(run_src, tmp_path, name, k, args, module=False):
    """Epoch 1 of a copy of the run, computed with k ranks (k=0: plain serial command)."""
    dst = copy_run(run_src, tmp_path / name)
    common = ["-q", "topology", "--run", dst, "--epochs", "1", *args]
    p = dnntopo(*common) if k == 0 else mpiexec(k, *common, module=module)
    assert p.returncode == 0, p.stderr
    return storage.Run(dst).epoch_file(1)


def assert_same_file(a, b):
    with h5py.File(a) as fa, h5py.File(b) as fb:
        ka, kb = [], []
        fa.visit(ka.append), fb.visit(kb.append)
        assert ka == kb
        for key in ka:
            if isinstance(fa[key], h5py.Dataset):
                x, y = fa[key][()], fb[key][()]
                if key == "graph/edges/distance":
                    assert x.shape == y.shape and np.allclose(x, y, atol=1e-6, rtol=0)
                else:
                    assert np.array_equal(x, y, equal_nan=True), key
            assert dict(fa[key].attrs) .keys() == dict(fb[key].attrs).keys()
            for at in fa[key].attrs:
                assert np.array_equal(np.asarray(fa[key].attrs[at]), np.asarray(fb[key].attrs[at]),
                                      equal_nan=fa[key].attrs[at].dtype.kind == "f"
                                      if hasattr(fa[key].attrs[at], "dtype") else False), (key, at)
        assert {k: v for k, v in fa.attrs.items()}.keys() == {k: v for k, v in fb.attrs.items()}.keys()
        for at in fa.attrs:
            assert np.array_equal(np.asarray(fa.attrs[at]), np.asarray(fb.attrs[at])), at


ARGS = ["--samples", "500", "--max-dim", "2", "--max-distance", "0.5"]


def test_same_file_for_1_2_3_ranks(trained_run, tmp_path):
    serial = compute(trained_run, tmp_path, "serial", 0, ARGS)
    for k in (1, 2, 3):
        assert_same_file(serial, compute(trained_run, tmp_path, f"k{k}", k, ARGS))


def test_uneven_splits_and_idle_ranks(trained_run, tmp_path):
    # 333 samples in batches of 50: 7 batches over 2 or 3 ranks; 1,820 nodes over 3 ranks
    uneven = ["--samples", "333", "--batch-size", "50", "--max-dim", "1", "--max-distance", "0.5"]
    serial = compute(trained_run, tmp_path, "s1", 0, uneven)
    assert_same_file(serial, compute(trained_run, tmp_path, "u3", 3, uneven))
    # 300 nodes = 2 row blocks and 100 samples = 2 batches, over 3 ranks: one rank has neither
    idle = ["--samples", "100", "--batch-size", "50", "--max-nodes", "300", "--max-dim", "1", "--max-distance", "0.5"]
    serial = compute(trained_run, tmp_path, "s2", 0, idle)
    assert_same_file(serial, compute(trained_run, tmp_path, "i3", 3, idle))


def test_mpi4py_runner(trained_run, tmp_path):
    serial = compute(trained_run, tmp_path, "s", 0, ["--samples", "200", "--max-dim", "1"])
    assert_same_file(serial, compute(trained_run, tmp_path, "m2", 2, ["--samples", "200", "--max-dim", "1"], module=True))


@pytest.mark.parametrize("rank,stage", [(1, "graph"), (0, "topology"), (1, "extract")])
def test_failing_rank_ends_the_job(trained_run, tmp_path, rank, stage):
    dst = copy_run(trained_run, tmp_path / "run")
    t = time.monotonic()
    p = mpiexec(2, "-q", "topology", "--run", dst, "--epochs", "1", *ARGS, timeout=60,
                env={"DNNTOPO_FAIL_RANK": str(rank), "DNNTOPO_FAIL_STAGE": stage})
    assert time.monotonic() - t < 30
    assert p.returncode != 0
    assert f"dnntopo on rank {rank} of 2:" in p.stderr and f"stage {stage}" in p.stderr
    assert not list((dst / "topology").glob("*epoch_0001*"))
