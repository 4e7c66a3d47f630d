"""Training on real Fashion-MNIST: accuracy, checkpoints, stats, resume, label manipulations, errors."""
import json
import shutil

import numpy as np
import torch

from conftest import dnntopo
from dnntopo import data, storage, train


def test_short_run_learns(trained_run):
    run = storage.Run(trained_run)
    assert run.saved_epochs() == [0, 1, 2]
    rows = storage.read_stats(run)
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert rows[0]["acc_test"] < 0.2              # untrained: chance level
    assert rows[-1]["acc_test"] > 0.6             # well above chance after 2 epochs on 6,000 images
    cfg = json.loads(run.config.read_text())
    assert cfg["net"] == "lenet" and cfg["n_train"] == 6000 and "version" in cfg
    state = torch.load(run.checkpoint(2), weights_only=True)
    assert set(state) == set(train.models.build("lenet", (1, 28, 28), 10).state_dict())


def test_resume_continues_the_epoch_count(trained_run, tmp_path, fmnist_root):
    runs = tmp_path / "runs"
    shutil.copytree(trained_run.parents[1], runs)
    run = storage.Run(runs / "lenet_fashion_mnist" / "trial_0")
    before = storage.read_stats(run)
    p = dnntopo("train", "--net", "lenet", "--data-root", fmnist_root, "--epochs", "3", "--lr", "0.01",
                "--subset", "0.1", "--save-epochs", "0", "1", "2", "3", "--run-dir", runs, "--resume")
    assert p.returncode == 0, p.stderr
    assert "resuming" in p.stderr and "after epoch 2" in p.stderr
    assert "epoch 1:" not in p.stderr               # epochs 1-2 were not trained again
    after = storage.read_stats(run)
    assert [r["epoch"] for r in after] == [0, 1, 2, 3]
    assert after[:3] == before
    assert run.checkpoint(3).exists()


def test_label_manipulations(fmnist_root):
    cfg = train.TrainConfig(dataset="fashion_mnist", data_root=str(fmnist_root), permute_labels=0.5,
                            subset=0.5, seed=3)
    tr, te, val = train.prepare_data(cfg)
    assert val is None
    clean = data.load("fashion_mnist", fmnist_root, "train")
    assert len(tr) == 30000 and len(te) == 10000
    # same images as the clean set at the chosen indices: find how many labels changed
    rng = np.random.default_rng(3)
    keep = np.sort(rng.choice(60000, 30000, replace=False))
    assert torch.equal(tr.images[:5], clean.images[keep[:5]])
    changed = (tr.labels != clean.labels[keep]).float().mean().item()
    assert 0.4 < changed < 0.5                     # 50% shuffled, ~10% land on their own class
    assert np.array_equal(np.sort(tr.labels.numpy()), np.sort(clean.labels[keep].numpy()))
    b_tr, b_te, _ = train.prepare_data(train.TrainConfig(data_root=str(fmnist_root), binarize_labels=3))
    assert b_tr.num_classes == 2 and len(b_tr) == 12000 and int(b_tr.labels.sum()) == 6000
    assert len(b_te) == 2000 and int(b_te.labels.sum()) == 1000
    # --val-samples: the last N of the same samples, labels as trained, held out of training
    import dataclasses
    h_tr, _, h_val = train.prepare_data(dataclasses.replace(cfg, val_samples=100))
    assert len(h_tr) == 29900 and len(h_val) == 100
    assert torch.equal(h_tr.labels, tr.labels[:29900]) and torch.equal(h_val.labels, tr.labels[29900:])
    assert torch.equal(h_val.images, tr.images[29900:])


def test_bad_inputs_give_one_line(tmp_path):
    p = dnntopo("train", "--dataset", "mnist", "--data-root", "/nonexistent", "--epochs", "1",
                "--run-dir", tmp_path)
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "/nonexistent/train-images-idx3-ubyte" in lines[0]
    assert "Traceback" not in p.stderr
    for args, needle in [(["--permute-labels", "2"], "--permute-labels"),
                         (["--save-epochs", "0", "9"], "--save-epochs"),
                         (["--net", "nope"], "--net 'nope'"),
                         (["--device", "cuda"], "--device cuda")]:
        p = dnntopo("train", "--epochs", "2", "--run-dir", tmp_path, *args)
        if args[0] == "--device" and torch.cuda.is_available():
            continue
        assert p.returncode != 0 and needle in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_same_training_twice_reuses_the_run(trained_run, tmp_path, fmnist_root):
    """The same command over a complete run trains nothing; other parameters are refused and
    leave the run as it was; --restart trains anew."""
    runs = tmp_path / "runs"
    shutil.copytree(trained_run.parents[1], runs)
    run = storage.Run(runs / "lenet_fashion_mnist" / "trial_0")
    same = ["train", "--net", "lenet", "--data-root", fmnist_root, "--epochs", "2", "--lr", "0.01",
            "--subset", "0.1", "--save-epochs", "0", "1", "2", "--run-dir", runs]
    stamps = {p.name: p.stat().st_mtime_ns for p in sorted(run.root.rglob("*")) if p.is_file()}
    p = dnntopo(*same)
    assert p.returncode == 0 and "nothing to train" in p.stderr, p.stderr
    assert {p.name: p.stat().st_mtime_ns for p in sorted(run.root.rglob("*")) if p.is_file()} == stamps
    p = dnntopo(*[a if a != "0.1" else "0.2" for a in same])
    assert p.returncode == 2 and "--subset 0.1 (0.2 asked)" in p.stderr
    anew = ["train", "--net", "lenet", "--data-root", fmnist_root, "--epochs", "1", "--lr", "0.01",
            "--subset", "0.05", "--save-epochs", "0", "1", "--run-dir", runs]
    p = dnntopo("-q", *anew, "--restart")
    assert p.returncode == 0, p.stderr
    cfg = json.loads(run.config.read_text())
    assert cfg["subset"] == 0.05 and cfg["n_train"] == 3000 and run.saved_epochs() == [0, 1]
    assert [r["epoch"] for r in storage.read_stats(run)] == [0, 1]      # the old epoch 2 is gone


def test_study_options_eval_samples_and_stop_at_accuracy(tmp_path, fmnist_root):
    args = ["train", "--data-root", fmnist_root, "--epochs", "6", "--lr", "0.05", "--subset", "0.05",
            "--save-epochs", "0", "--eval-samples", "400", "--stop-at-acc", "0.5", "--torch-threads", "1",
            "--run-dir", tmp_path]
    p = dnntopo("-q", *args)
    assert p.returncode == 0, p.stderr
    run = storage.Run(tmp_path / "lenet_fashion_mnist" / "trial_0")
    rows = storage.read_stats(run)
    last = rows[-1]
    # accuracies on 400 fixed samples: multiples of 1/400; stopped at the first epoch >= 0.5
    assert all(abs(r[k] * 400 - round(r[k] * 400)) < 1e-3 for r in rows for k in ("acc_train", "acc_test"))
    assert last["acc_train"] >= 0.5 and all(r["acc_train"] < 0.5 for r in rows[1:-1]) and len(rows) < 7
    assert json.loads(run.config.read_text())["stopped_at"] == last["epoch"]
    p = dnntopo(*args)                                   # stopped by its rule: complete, reused
    assert p.returncode == 0 and "nothing to train" in p.stderr, p.stderr
    p = dnntopo("train", "--epochs", "1", "--stop-at-acc", "1.5", "--run-dir", tmp_path / "x")
    assert p.returncode == 2 and "--stop-at-acc 1.5" in p.stderr
