"""Shared fixtures: the real Fashion-MNIST files and one short real training run."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

FMNIST = Path(os.environ.get("DNNTOPO_FMNIST", "/usr/share/datasets/fashion-mnist"))
REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def fmnist_root():
    if not (FMNIST / "train-images-idx3-ubyte.gz").exists() and not (FMNIST / "train-images-idx3-ubyte").exists():
        pytest.fail(f"Fashion-MNIST is not in {FMNIST}: run scripts/setup.sh (Debian package "
                    f"dataset-fashion-mnist) or set DNNTOPO_FMNIST")
    return FMNIST


def dnntopo(*args, env=None, check=False, timeout=600, cwd=None):
    """Run the dnntopo console script; return the CompletedProcess."""
    full_env = dict(os.environ, **(env or {}))
    proc = subprocess.run([str(BIN / "dnntopo"), *map(str, args)], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f"dnntopo {' '.join(map(str, args))} failed:\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, fmnist_root):
    """A real LeNet run on a 10% slice of Fashion-MNIST: epochs 0..2 checkpointed."""
    runs = tmp_path_factory.mktemp("runs")
    dnntopo("-q", "train", "--net", "lenet", "--dataset", "fashion_mnist", "--data-root", fmnist_root,
            "--epochs", "2", "--lr", "0.01", "--subset", "0.1", "--save-epochs", "0", "1", "2",
            "--run-dir", runs, check=True)
    return runs / "lenet_fashion_mnist" / "trial_0"


def copy_run(src, dst):
    """A copy of a run folder without its topology and logs (tests must not share results)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("topology", "logs"))
    return Path(dst)


@pytest.fixture(scope="module")
def module_run(trained_run, tmp_path_factory):
    """This test module's own copy of the trained run."""
    return copy_run(trained_run, tmp_path_factory.mktemp("run") / "lenet_fashion_mnist" / "trial_0")


def epoch_edges(run, max_distance):
    """The functional graph of epoch 2 of a real LeNet run (400 samples, edges up to
    `max_distance`): (n_nodes, i, j, distance)."""
    from dnntopo import storage
    dnntopo("-q", "topology", "--run", run, "--epochs", "2", "--samples", "400", "--max-dim", "0",
            "--max-distance", str(max_distance), check=True)
    ep = storage.read_epoch(storage.Run(run).epoch_file(2), edges=True)
    return (int(ep["attrs"]["n_nodes"]), *(np.asarray(x) for x in ep["edges"]))
