"""Bad input, table-driven: each case runs the real command on a copy of a real run and must end
with exit status 2, one line naming the file or flag, no traceback, and the run folder unchanged
(every file hashed before and after)."""
import hashlib
import shutil

import numpy as np
import pytest
import torch

from conftest import dnntopo
from dnntopo import models

TOPO = ["--samples", "200", "--max-dim", "1", "--max-distance", "0.5"]


@pytest.fixture(scope="module")
def base_run(module_run):
    dnntopo("-q", "topology", "--run", module_run, "--epochs", "0", "1", *TOPO, check=True)
    return module_run


def snapshot(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


# ------------------------------------------------ damage done to the copy before the command
def zero_checkpoint(run):
    (run / "checkpoints" / "epoch_0002.pt").write_bytes(b"")


def garbage_checkpoint(run):
    (run / "checkpoints" / "epoch_0002.pt").write_bytes(np.random.default_rng(0).bytes(5000))


def pickled_checkpoint(run):
    import argparse       # an arbitrary Python object: refused by weights-only loading
    torch.save({"epoch": 2, "note": argparse.Namespace(a=1)}, run / "checkpoints" / "epoch_0002.pt")


def other_net_checkpoint(run):
    torch.save(models.build("lenet_300_100", (1, 28, 28), 10).state_dict(), run / "checkpoints" / "epoch_0002.pt")


def nan_weights(run):
    path = run / "checkpoints" / "epoch_0002.pt"
    state = torch.load(path, weights_only=True)
    state["block1.0.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, path)


def config_list(run):
    (run / "config.json").write_text("[]")


def config_empty(run):
    (run / "config.json").write_text("{}")


def garbage_stats(run):
    (run / "stats.csv").write_text("epoch;what\n1;x\n")


def truncated_epoch(run):
    f = run / "topology" / "epoch_0001.h5"
    f.write_bytes(f.read_bytes()[:3000])


def topology_is_a_file(run):
    shutil.rmtree(run / "topology")
    (run / "topology").write_text("not a folder")


def features(run, text):
    (run.parents[2] / "f.csv").write_text(text)


def no_gap_features(run):
    features(run, "run,group,epoch,acc_train,acc_test,life_1\nr,g,1,0.9,0.8,0.1\n")


def nan_features(run):
    features(run, "run,group,epoch,acc_train,acc_test,gap,life_1,midlife_1\n" +
             "".join(f"r{k % 3},g,{k},0.9,0.8,0.1,nan,0.{k}\n" for k in range(9)))


def model(run, text):
    (run.parents[2] / "m.json").write_text(text)


def model_list(run):
    model(run, "[1, 2]")


def model_strings(run):
    model(run, '{"features": ["life_1"], "coefficients": {"life_1": "big"}, "intercept": 0}')


def data_folder_instead_of_file(run):
    d = run.parents[2] / "data"
    (d / "train-images-idx3-ubyte").mkdir(parents=True)


R, P = "{run}", "{parent}"
CASES = [
    # (name, damage, command, words the one line must contain)
    ("train over another training", None,
     ["train", "--epochs", "2", "--lr", "0.05", "--subset", "0.1", "--save-epochs", "0", "1", "2", "--run-dir", "{runs}"],
     ["holds another training", "--lr 0.01 (0.05 asked)", "--restart"]),
    ("train further without --resume", None,
     ["train", "--epochs", "3", "--lr", "0.01", "--subset", "0.1", "--save-epochs", "0", "1", "2", "--run-dir", "{runs}"],
     ["up to epoch 2 of 3", "--resume"]),
    ("min-persistence nan", None, ["topology", "--run", R, "--min-persistence", "nan"], ["--min-persistence nan"]),
    ("epochs twice", None, ["topology", "--run", R, "--epochs", "2", "2"], ["--epochs 2 2", "given twice"]),
    ("threads negative", None, ["topology", "--run", R, "--threads", "-2"], ["--threads -2"]),
    ("huge grid", None, ["topology", "--run", R, "--grid-points", "100000000"], ["--grid-points 100000000"]),
    ("layer twice", None, ["topology", "--run", R, "--layers", "fc1", "fc1"], ["--layers fc1 fc1"]),
    ("no checkpoint", None, ["topology", "--run", R, "--epochs", "7"], ["--epochs 7: no checkpoint"]),
    ("PH over the memory limit", None, ["topology", "--run", R, "--epochs", "2", "--max-memory", "0.00001", *TOPO],
     ["pre-flight estimate", "GiB allowed", "--max-nodes", "--max-memory"]),
    ("max-memory negative", None, ["topology", "--run", R, "--max-memory", "-1"], ["--max-memory -1"]),
    ("epsilon nan", None, ["early-stop", "--run", R, "--epsilon", "nan"], ["--epsilon nan"]),
    ("epsilon negative", None, ["early-stop", "--run", R, "--epsilon", "-1"], ["--epsilon -1"]),
    ("smooth negative", None, ["plot", "--run", R, "--smooth", "-3", *TOPO[:0]], ["--smooth -3"]),
    ("plot to an unknown format", None, ["plot", "--run", R, "--out", P + "/x.xyz"], ["x.xyz", "unsupported file type .xyz"]),
    ("features over config.json", None, ["gengap", "features", "--runs", R, "--out", R + "/config.json"],
     ["config.json", "run's own files"]),
    ("plot over a checkpoint", None, ["plot", "--run", R, "--out", R + "/checkpoints/epoch_0001.png"],
     ["epoch_0001.png", "run's own files"]),
    ("export over an epoch file", None, ["export-dipha", "--run", R, "--epoch", "1", "--out", R + "/topology/epoch_0001.h5"],
     ["epoch_0001.h5"]),
    ("empty checkpoint", zero_checkpoint, ["topology", "--run", R, "--epochs", "2", *TOPO], ["epoch_0002.pt", "empty"]),
    ("garbage checkpoint", garbage_checkpoint, ["topology", "--run", R, "--epochs", "2", *TOPO],
     ["epoch_0002.pt", "not a PyTorch checkpoint"]),
    ("pickled objects", pickled_checkpoint, ["topology", "--run", R, "--epochs", "2", *TOPO],
     ["epoch_0002.pt", "not only tensors"]),
    ("checkpoint of another net", other_net_checkpoint, ["topology", "--run", R, "--epochs", "2", *TOPO],
     ["epoch_0002.pt", "does not match the lenet net", "missing block1"]),
    ("NaN weights", nan_weights, ["topology", "--run", R, "--epochs", "2", *TOPO],
     ["epoch 2", "layer block1", "units have NaN or infinite activations"]),
    ("config.json a list", config_list, ["status", "--run", R], ["config.json", "not a run's config"]),
    ("config.json empty", config_empty, ["topology", "--run", R, "--epochs", "1"], ["config.json", "lacks net"]),
    ("garbage stats", garbage_stats, ["summary", "--run", R], ["stats.csv"]),
    ("truncated epoch file", truncated_epoch, ["summary", "--run", R], ["epoch_0001.h5", "truncated"]),
    ("topology folder is a file", topology_is_a_file, ["topology", "--run", R, "--epochs", "2", *TOPO],
     ["cannot write in", "topology"]),
    ("features without gap", no_gap_features, ["gengap", "evaluate", "--features", P + "/f.csv"],
     ["f.csv", "no column gap"]),
    ("all-NaN feature", nan_features, ["gengap", "fit", "--features", P + "/f.csv", "--use", "life_1", "midlife_1",
                                       "--out", P + "/m.json"], ["life_1", "no finite value"]),
    ("model is a list", model_list, ["gengap", "predict", "--model", P + "/m.json", "--run", R], ["--model", "m.json"]),
    ("model with text coefficients", model_strings, ["gengap", "predict", "--model", P + "/m.json", "--run", R],
     ["--model", "'big' is not a finite number"]),
    ("a folder where a data file belongs", data_folder_instead_of_file,
     ["train", "--epochs", "1", "--data-root", P + "/data", "--run-dir", P + "/other"],
     ["train-images-idx3-ubyte", "is not a file"]),
]


@pytest.mark.parametrize("name,damage,args,needles", CASES, ids=[c[0] for c in CASES])
def test_bad_input(base_run, tmp_path, name, damage, args, needles):
    runs = tmp_path / "runs"
    run = runs / "lenet_fashion_mnist" / "trial_0"
    shutil.copytree(base_run, run)
    if damage is not None:
        damage(run)
    before = snapshot(runs)
    args = [a.replace("{run}", str(run)).replace("{parent}", str(tmp_path)).replace("{runs}", str(runs))
            for a in args]
    p = dnntopo(*args)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert snapshot(runs) == before                      # nothing written, nothing removed


@pytest.fixture
def tiny_disk(tmp_path):
    """A 2 MB filesystem (tmpfs, mounted as root): a full disk the tests can make."""
    import subprocess
    where = tmp_path / "tiny"
    where.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2M", "tmpfs", str(where)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({p.stderr.strip()}); needs root")
    yield where
    subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_full_disk_is_refused_before_the_work(base_run, tiny_disk, fmnist_root):
    # training into a folder without room for its checkpoints
    p = dnntopo("train", "--epochs", "1", "--data-root", fmnist_root, "--subset", "0.05", "--run-dir", tiny_disk)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and "MB free" in lines[0] and str(tiny_disk) in lines[0], p.stderr
    assert not list((tiny_disk / "lenet_fashion_mnist" / "trial_0" / "checkpoints").glob("*.pt"))
    # the topology of a run whose topology folder is full: refused before any forward pass
    runs = tiny_disk.parent / "runs"
    run = runs / "lenet_fashion_mnist" / "trial_0"
    shutil.copytree(base_run, run, ignore=shutil.ignore_patterns("topology"))
    (run / "topology").symlink_to(tiny_disk)
    (tiny_disk / "filler").write_bytes(b"\0" * (2 * 2**20 - 64 * 1024))
    before = snapshot(runs)
    p = dnntopo("topology", "--run", run, "--epochs", "2", *TOPO)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and "MB free" in lines[0], p.stderr
    assert snapshot(runs) == before
