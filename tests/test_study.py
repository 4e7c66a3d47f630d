"""Study files: validation in one line, a tiny grid run in this process, reruns that do nothing."""
import os

import pytest

from conftest import dnntopo
from dnntopo import storage
from dnntopo import study as studies
from dnntopo.errors import UserError

TINY = """
name = "t"
run_dir = "runs"
[grid]
subset = [0.02]
permute_labels = [0.0, 0.5]
[train]
epochs = 1
lr = 0.01
save_epochs = [0, 1]
val_samples = 200
data_root = "{data}"
[topology]
samples = 200
max_dim = 1
sample_split = "own"
epochs = [0, 1, 2]
[[override]]
when = { permute_labels = 0.5 }
epochs = 2
save_epochs = [0, 1, 2]
"""


@pytest.mark.parametrize("text,needle", [
    ("[grid]\nsubset = 0.1\n", "[grid] subset must be a non-empty list"),
    ("[grid]\nmomentum = [0.9]\n", "[grid] cannot vary momentum"),
    ("[train]\nepoch = 3\n", "[train] unknown key epoch"),
    ("[grid]\nlr = [0.1]\n[train]\nlr = 0.2\n", "lr given in both [grid] and [train]"),
    ("[topology]\nmax_distance = 2.0\n", "[topology] --max-distance 2: must lie in (0, 1]"),
    ("[topology]\nsamplez = 3\n", "[topology] unknown key samplez"),
    ("[grid]\nsubset = [0.5, 2.0]\n", "run 1 (subset=2.0): --subset must be a fraction"),
    ("colour = 3\n", "unknown key colour"),
    ("[grid\n", "not valid TOML"),
    ("[grid]\nseed = [0]\n[[override]]\nwhen = { seed = 1 }\nepochs = 2\n", "when seed=1 matches no grid value"),
    ("[grid]\nseed = [0]\n[[override]]\nwhen = { lr = 1 }\nepochs = 2\n", "when names lr, not a [grid] key"),
    ("[grid]\nseed = [0]\n[[override]]\nwhen = { seed = 0 }\nepoch = 2\n", "unknown training key epoch"),
    ("override = [1]\n", "[[override]] 1 must be a table"),
])
def test_bad_study_files(tmp_path, text, needle):
    f = tmp_path / "s.toml"
    f.write_text(text)
    with pytest.raises(UserError) as err:
        studies.load(f)
    assert needle in str(err.value) and str(f) in str(err.value) and "\n" not in str(err.value)


def test_tiny_study_in_this_process(tmp_path, fmnist_root):
    f = tmp_path / "s.toml"
    f.write_text(TINY.replace("{data}", str(fmnist_root)))
    st = studies.load(f)
    assert [(t.trial, t.permute_labels, t.subset, t.epochs) for t in st.runs()] == \
        [(0, 0.0, 0.02, 1), (1, 0.5, 0.02, 2)]          # the override trains the noisy run longer
    # two runs side by side (--parallel 2), each on its share of the cores
    p = dnntopo("-q", "study", "run", f, "--cluster", "none", "--parallel", "2", timeout=300)
    assert p.returncode == 0, p.stderr
    runs = [storage.Run(tmp_path / "runs" / "lenet_fashion_mnist" / f"trial_{k}") for k in (0, 1)]
    for run, noise, epochs in zip(runs, (0.0, 0.5), ([0, 1], [0, 1, 2])):
        cfg = storage.read_config(run)
        assert (cfg["permute_labels"], cfg["subset"], cfg["n_train"]) == (noise, 0.02, 1000)  # 200 held out
        assert cfg["torch_threads"] == max(1, len(os.sched_getaffinity(0)) // 2)
        assert run.topology_epochs() == epochs          # epoch 2 is beyond run 0's training
        assert storage.read_attrs(run.epoch_file(1))["sample_split"] == "own"
        assert all(0 <= r["acc_val"] <= 1 for r in storage.read_stats(run))
    before = {r.root: (r.epoch_file(1).stat().st_mtime_ns, r.checkpoint(1).stat().st_mtime_ns) for r in runs}
    p = dnntopo("-q", "study", "run", f, "--cluster", "none", timeout=120)      # a rerun does nothing
    assert p.returncode == 0, p.stderr
    assert {r.root: (r.epoch_file(1).stat().st_mtime_ns, r.checkpoint(1).stat().st_mtime_ns) for r in runs} == before

    # the report: features (own split), early stopping beside the best epoch, figures
    p = dnntopo("study", "report", f, timeout=300)
    assert p.returncode == 0, p.stderr
    folder = tmp_path / "runs" / "report_t"
    feats = (folder / "features.csv").read_text().splitlines()
    assert len(feats) == 1 + 5 and "sample_split" in feats[0] and all(",own," in line for line in feats[1:])
    assert all(line.startswith("lenet_fashion_mnist/trial_") for line in feats[1:])   # no machine paths
    import csv
    with open(folder / "early_stop.csv") as fh:
        es = list(csv.DictReader(fh))
    assert len(es) == 2
    for row, run in zip(es, runs):
        stats = storage.read_stats(run)
        best = max(stats, key=lambda r: r["acc_test"])
        assert int(row["best_epoch"]) == best["epoch"]
        last = stats[-1]
        assert int(row["never_epoch"]) == last["epoch"]
        assert float(row["never_lost"]) == pytest.approx(best["acc_test"] - last["acc_test"], abs=1e-9)
        val = max(stats, key=lambda r: r["acc_val"])      # patience 5 never runs out in 3 epochs
        assert int(row["validation_epoch"]) == val["epoch"]
    assert (folder / "betti_curves_by_condition.png").read_bytes()[:4] == b"\x89PNG"
    assert "early stopping" in (folder / "report.txt").read_text()
