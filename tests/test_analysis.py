"""Early stopping and the generalization-gap model against hand-built cases."""
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, dnntopo
from dnntopo import analysis
from dnntopo.errors import UserError


def bump(grid, centre, height=10.0, width=0.05):
    return height * np.exp(-((grid - centre) / width) ** 2)


def test_peak_moves_right_then_left():
    grid = np.linspace(0, 0.2, 201)
    centres = [0.05, 0.08, 0.11, 0.12, 0.09, 0.06]            # right, right, right, left, left
    epochs = [0, 1, 2, 5, 10, 20]
    peaks = analysis.peak_positions(grid, np.array([bump(grid, c) for c in centres]))
    assert np.allclose(peaks, centres, atol=1e-3)
    stop, delta = analysis.stopping_epoch(epochs, peaks, epsilon=0.005)
    assert stop == 10 and np.isnan(delta[0]) and np.isclose(delta[4], -0.03, atol=1e-3)
    # a smaller regression than epsilon does not fire
    stop, _ = analysis.stopping_epoch(epochs, [0.05, 0.08, 0.079, 0.081], epsilon=0.005)
    assert stop is None


def test_ties_and_flat_curves():
    grid = np.array([0.0, 0.1, 0.2, 0.3])
    # a tie takes the first (lowest) position; a flat zero curve has no peak
    peaks = analysis.peak_positions(grid, np.array([[0, 3, 3, 1], [0, 0, 0, 0], [0, 1, 0, 0], [5, 0, 0, 0]]))
    assert peaks[0] == 0.1 and np.isnan(peaks[1]) and peaks[2] == 0.1 and peaks[3] == 0.0
    stop, delta = analysis.stopping_epoch([1, 2, 3, 4], peaks, epsilon=0.01)
    assert np.isnan(delta[1]) and np.isnan(delta[2])       # nothing fires across the flat epoch
    assert stop == 4


def synthetic_rows(rng, runs=5, per_run=6, coef=(0.3, -0.5, 0.2), intercept=0.05, noise=0.0):
    rows = []
    for r in range(runs):
        for e in range(per_run):
            f = rng.uniform(0, 1, 3)
            gap = intercept + f @ np.array(coef) + noise * rng.standard_normal()
            acc_train = rng.uniform(0.8, 1.0)
            rows.append({"run": f"r{r}", "group": "g", "epoch": e, "a": f[0], "b": f[1], "c": f[2],
                         "acc_train": acc_train, "acc_test": acc_train - gap, "gap": gap})
    return rows


def test_fit_recovers_known_coefficients():
    rows = synthetic_rows(np.random.default_rng(0))
    model = analysis.fit(rows, ["a", "b", "c"])
    assert np.isclose(model["intercept"], 0.05) and model["train_mae"] < 1e-10
    assert np.allclose([model["coefficients"][k] for k in "abc"], [0.3, -0.5, 0.2])


def test_leave_one_run_out_equals_hand_computation():
    rows = synthetic_rows(np.random.default_rng(1), noise=0.02)
    got, mae = analysis.evaluate(rows, ["a", "c"])
    errors = []
    for held in sorted({r["run"] for r in rows}):
        tr = [r for r in rows if r["run"] != held]
        te = [r for r in rows if r["run"] == held]
        A = np.array([[1, r["a"], r["c"]] for r in tr])
        w = np.linalg.solve(A.T @ A, A.T @ np.array([r["gap"] for r in tr]))   # normal equations
        for r in te:
            pred_acc = r["acc_train"] - (w[0] + w[1] * r["a"] + w[2] * r["c"])
            errors.append(abs(pred_acc - r["acc_test"]))
    assert np.isclose(mae, np.mean(errors)) and len(got) == len(rows)
    # the features carry the gap here: far better than the other runs' mean gap
    base = np.mean([abs(r["gap"] - np.mean([q["gap"] for q in rows if q["run"] != r["run"]])) for r in rows])
    assert np.isclose(analysis.baseline_error(rows), base)
    assert analysis.evaluate(rows, ["a", "b", "c"])[1] < base / 2


def test_predict_refuses_missing_features():
    rows = synthetic_rows(np.random.default_rng(2))
    model = analysis.fit(rows, ["a", "b"])
    with pytest.raises(UserError, match="lacks the features b"):
        analysis.predict(model, [{k: v for k, v in r.items() if k != "b"} for r in rows])


def test_commands_on_real_runs(module_run, tmp_path):
    trained_run = module_run
    dnntopo("-q", "topology", "--run", trained_run, "--epochs", "0", "1", "2", "--samples", "300",
            "--max-dim", "1", check=True)
    p = dnntopo("early-stop", "--run", trained_run, "--dim", "1", "--out", tmp_path / "es.png", check=True)
    assert "proposed stopping epoch" in p.stdout and (tmp_path / "es.png").read_bytes()[:4] == b"\x89PNG"
    feats = tmp_path / "f.csv"
    dnntopo("gengap", "features", "--runs", trained_run, "--out", feats, check=True)
    header = feats.read_text().splitlines()[0].split(",")
    assert {"run", "epoch", "gap", "life_1", "midlife_1", "betti_max_1"} <= set(header)
    p = dnntopo("gengap", "fit", "--features", feats, "--use", "life_1", "--out", tmp_path / "m.json")
    assert p.returncode == 0, p.stderr
    p = dnntopo("gengap", "predict", "--model", tmp_path / "m.json", "--run", trained_run, "--format", "csv", check=True)
    assert p.stdout.splitlines()[0] == "run,epoch,acc_train,gap_pred,acc_test_pred"
    p = dnntopo("gengap", "fit", "--features", feats, "--use", "nope_1", "--out", tmp_path / "m2.json")
    assert p.returncode == 2 and "lacks the features nope_1" in p.stderr
    p = dnntopo("gengap", "evaluate", "--features", feats)
    assert p.returncode == 2 and "at least two runs" in p.stderr


def test_analyses_refuse_mixed_specs(module_run, tmp_path):
    """Epochs of different specs are never combined silently (regression: the proposed stop
    moved when one epoch had been recomputed with other --samples)."""
    run = module_run
    dnntopo("-q", "topology", "--run", run, "--epochs", "0", "1", "2", "--samples", "300", "--max-dim", "1",
            check=True)
    dnntopo("-q", "topology", "--run", run, "--epochs", "2", "--samples", "200", "--max-dim", "1", check=True)
    for args in (["early-stop", "--run", run, "--out", tmp_path / "e.png"],
                 ["summary", "--run", run],
                 ["plot", "--run", run, "--kind", "summary", "--out", tmp_path / "s.png"],
                 ["plot", "--run", run, "--out", tmp_path / "b.png"],
                 ["gengap", "features", "--runs", run, "--out", tmp_path / "f.csv"]):
        p = dnntopo(*args)
        lines = p.stderr.strip().splitlines()
        assert p.returncode == 2 and len(lines) == 1, (args, p.stderr)
        assert "different topology specs" in lines[0] and "--samples 300" in lines[0] and "--samples 200" in lines[0]
        assert "--allow-mixed-specs" in lines[0]
    assert not (tmp_path / "f.csv").exists() and not (tmp_path / "s.png").exists()
    # the epochs that agree are fine, and the explicit flag lets the user combine them
    p = dnntopo("plot", "--run", run, "--epochs", "0", "1", "--out", tmp_path / "b.png", check=True)
    p = dnntopo("early-stop", "--run", run, "--allow-mixed-specs", "--out", tmp_path / "e.png", check=True)
    assert "proposed stopping epoch" in p.stdout
    p = dnntopo("summary", "--run", run, "--allow-mixed-specs", "--format", "csv", check=True)
    assert len(p.stdout.splitlines()) == 4


def test_quick_study_end_to_end(tmp_path, fmnist_root):
    p = subprocess.run([sys.executable, str(REPO / "scripts" / "study_fashion_mnist.py"), "--quick",
                        "--run-dir", str(tmp_path / "study"), "--data-root", str(fmnist_root)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    line = [l for l in p.stdout.splitlines() if l.startswith("mean absolute error")][0]
    mae = float(line.split(":")[1])
    assert np.isfinite(mae) and 0 <= mae < 1
    assert "proposed stop" in p.stdout
