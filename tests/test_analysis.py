"""Early stopping and the generalization-gap model against hand-built cases."""
import numpy as np
import pytest

from conftest import dnntopo
from dnntopo import analysis
from dnntopo.errors import UserError


def bump(grid, centre, height=10.0, width=0.05):
    return height * np.exp(-((grid - centre) / width) ** 2)


@pytest.fixture
def cli(capsys, monkeypatch):
    """`dnntopo ARGS` in this process (the console script's `main`, one rank; no second start of
    torch): (exit status, stdout, stderr)."""
    from dnntopo.cli import main
    monkeypatch.setenv("DNNTOPO_NO_MPI", "1")

    def run(*args):
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            rc = 0
        except SystemExit as exc:
            rc = exc.code
        got = capsys.readouterr()
        return rc, got.out, got.err
    return run


def test_peak_moves_down_while_learning_then_back_up():
    """Learning moves the peak to lower density, memorizing back up: the rule fires at the
    first move up beyond epsilon, never while the peak moves down."""
    grid = np.linspace(0, 0.2, 201)
    centres = [0.12, 0.09, 0.06, 0.05, 0.08, 0.11]            # down, down, down, up, up
    epochs = [0, 1, 2, 5, 10, 20]
    peaks = analysis.peak_positions(grid, np.array([bump(grid, c) for c in centres]))
    assert np.allclose(peaks, centres, atol=1e-3)
    stop, delta = analysis.stopping_epoch(epochs, peaks, epsilon=0.005)
    assert stop == 10 and np.isnan(delta[0])
    assert np.allclose(delta[1:], [-0.03, -0.03, -0.01, 0.03, 0.03], atol=1e-3)
    # only learning (the peak moves down): nothing fires, however far it moves
    assert analysis.stopping_epoch(epochs[:4], peaks[:4], epsilon=0.005)[0] is None
    # a wobble smaller than epsilon does not fire; one just beyond it does
    assert analysis.stopping_epoch([0, 1, 2, 3], [0.12, 0.09, 0.094, 0.091], epsilon=0.005)[0] is None
    assert analysis.stopping_epoch([0, 1, 2, 3], [0.12, 0.09, 0.094, 0.1], epsilon=0.005)[0] == 3
    # the distance axis has the same sign: toward larger distances
    assert analysis.stopping_epoch([0, 1, 2], [0.5, 0.3, 0.45], epsilon=0.01)[0] == 2


def test_ties_and_flat_curves():
    grid = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    curves = np.array([[0, 3, 3, 1, 0, 0],      # tie: the first (lowest) position, 0.1
                       [0, 0, 0, 0, 0, 0],      # flat zero: no peak
                       [0, 0, 0, 2, 1, 0],      # 0.3: +0.2 from 0.1, but across the flat epoch
                       [0, 0, 0, 1, 0, 0],      # 0.3 again
                       [0, 0, 0, 0, 4, 1]])     # 0.4: +0.1, fires
    peaks = analysis.peak_positions(grid, curves)
    assert peaks[0] == 0.1 and np.isnan(peaks[1]) and peaks[2] == 0.3 and peaks[4] == 0.4
    stop, delta = analysis.stopping_epoch([1, 2, 3, 4, 5], peaks, epsilon=0.01)
    assert np.isnan(delta[1]) and np.isnan(delta[2])       # nothing fires across the flat epoch
    assert stop == 5
    # flat zero curves can never fire
    flat = analysis.peak_positions(grid, np.zeros((4, 6)))
    assert np.isnan(flat).all() and analysis.stopping_epoch([0, 1, 2, 3], flat, epsilon=0.0)[0] is None


def test_smoothing_over_epochs():
    peaks = [0.12, 0.10, 0.08, 0.095, 0.08, 0.07, 0.09, 0.11, 0.13]   # a one-epoch spike at 3
    epochs = list(range(len(peaks)))
    assert analysis.stopping_epoch(epochs, peaks, epsilon=0.005)[0] == 3
    # by hand: trailing means of 3 epochs, np.convolve, then the first rise beyond epsilon
    means = np.convolve(peaks, np.ones(3) / 3, mode="valid")           # epochs 2..8
    first = 2 + 1 + int(np.flatnonzero(np.diff(means) > 0.005)[0])
    stop, delta = analysis.stopping_epoch(epochs, peaks, epsilon=0.005, smooth=3)
    assert stop == first == 7
    assert np.isnan(delta[:3]).all() and np.allclose(delta[3:], np.diff(means))
    # a NaN (no position) anywhere in the window blanks the mean
    assert np.isnan(analysis.smooth_peaks([0.1, np.nan, 0.2, 0.3, 0.4], 2)[1:3]).all()
    with pytest.raises(UserError, match="--smooth-epochs 0"):
        analysis.smooth_peaks(peaks, 0)


class FakeRun:
    """Stands for a run folder: epochs whose curves are hand-built (see test below)."""
    topology = "RUN/topology"

    def __init__(self, epochs):
        self.epochs = epochs

    def topology_epochs(self):
        return list(self.epochs)

    def epoch_file(self, e):
        return e


def test_peak_at_threshold_is_no_position(monkeypatch):
    grid = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    density = np.array([0.0, 0.01, 0.03, 0.06, 0.1, 0.15])
    peak_at = {0: 3, 1: 2, 2: 1, 3: 5, 4: 2, 5: 4}        # epoch 3 peaks at the threshold
    curves = {e: np.where(np.arange(6) == k, 5, 1) for e, k in peak_at.items()}
    assert list(analysis.peaks_at_threshold(np.array(list(curves.values())))) == [0, 0, 0, 1, 0, 0]
    # a tie with an earlier point is not at the threshold; a flat zero curve has no maximum
    assert not analysis.peaks_at_threshold([[0, 3, 1, 3]])[0] and not analysis.peaks_at_threshold([[0, 0, 0]])[0]
    monkeypatch.setattr(analysis.storage, "read_epoch", lambda e: {
        "betti": {1: curves[e], "distance": grid, "density": density}, "attrs": {"max_dim": 1}})
    monkeypatch.setattr(analysis.storage, "read_stats", lambda run: [
        {"epoch": e, "acc_train": 0.5 + e / 20, "acc_test": 0.5} for e in peak_at])
    monkeypatch.setattr(analysis, "check_epochs", lambda *a: None)
    rows, stop = analysis.early_stop_table(FakeRun(peak_at), 1, "density", 0.005)
    assert [r["at_threshold"] for r in rows] == [False, False, False, True, False, False]
    # as a position, epoch 3 (0.15 after 0.01) would have fired; it is NaN for the rule, so is
    # the step after it; the peak moving up from 0.03 to 0.1 at epoch 5 fires
    assert np.isnan(rows[3]["delta"]) and np.isnan(rows[4]["delta"])
    assert np.isclose(rows[5]["delta"], density[4] - density[2])
    assert stop == 5 and [r["stop"] for r in rows] == [False] * 5 + [True]
    assert rows[3]["peak_density"] == density[5]           # the value is shown, flagged
    rows, stop = analysis.early_stop_table(FakeRun(peak_at), 1, "distance", 0.005, smooth=2)
    assert stop is None and "peak_distance_mean2" in rows[0]   # windows with the NaN epoch: no rise


def synthetic_rows(rng, runs=5, per_run=6, coef=(0.3, -0.5, 0.2), intercept=0.05, noise=0.0):
    rows = []
    for r in range(runs):
        for e in range(per_run):
            f = rng.uniform(0, 1, 3)
            gap = intercept + f @ np.array(coef) + noise * rng.standard_normal()
            acc_train = rng.uniform(0.8, 1.0)
            rows.append({"run": f"r{r}", "group": "g", "epoch": e, "sample_split": "train",
                         "subset": (0.1, 0.2, 0.5)[r % 3], "net": "lenet", "a": f[0], "b": f[1], "c": f[2],
                         "acc_train": acc_train, "loss_train": rng.uniform(0.1, 1.0),
                         "acc_test": acc_train - gap, "gap": gap})
    return rows


def loo_hand(rows, feats, by="run"):
    """Leave-one-`by`-out predicted test accuracies by the normal equations, in row order."""
    pred = {}
    for held in {r[by] for r in rows}:
        tr = [r for r in rows if r[by] != held]
        A = np.array([[1.0] + [r[f] for f in feats] for r in tr])
        w = np.linalg.solve(A.T @ A, A.T @ np.array([r["gap"] for r in tr]))
        for k, r in enumerate(rows):
            if r[by] == held:
                pred[k] = r["acc_train"] - (w[0] + sum(w[j + 1] * r[f] for j, f in enumerate(feats)))
    return np.array([pred[k] for k in range(len(rows))])


def kendall_by_hand(x, y):
    """τ-a over all pairs (no ties in these continuous values, where it equals τ-b)."""
    n, s = len(x), 0
    for i in range(n):
        for j in range(i + 1, n):
            s += np.sign(x[i] - x[j]) * np.sign(y[i] - y[j])
    return s / (n * (n - 1) / 2)


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


@pytest.mark.parametrize("use", [["gap"], ["a", "acc_test"], ["loss_test"], ["b", "ent_test_x"], ["net"]])
def test_use_refuses_the_target_and_test_data(use):
    rows = synthetic_rows(np.random.default_rng(3))
    for r in rows:
        r.update(loss_test=0.5, ent_test_x=0.1)
    with pytest.raises(UserError, match=f"--use {use[-1]}"):
        analysis.fit(rows, use)
    with pytest.raises(UserError, match=f"--use {use[-1]}"):
        analysis.evaluate(rows, use)


def test_test_split_rows_are_refused():
    rows = synthetic_rows(np.random.default_rng(4), runs=3)
    for r in rows[6:9]:
        r["sample_split"] = "test"                      # run r1, epochs 0 1 2
    with pytest.raises(UserError, match=r"test split: r1 \(epochs 0 1 2\).*--allow-test-split"):
        analysis.fit(rows, ["a"])
    with pytest.raises(UserError, match="test split"):
        analysis.evaluate(rows, ["a"])
    with pytest.raises(UserError, match="test split"):
        analysis.compare(rows, ["a"])
    assert analysis.fit(rows, ["a"], allow_test_split=True)["n_rows"] == len(rows)
    # a table that does not record the split is refused too (written before it was recorded)
    with pytest.raises(UserError, match="records no sample_split"):
        analysis.fit([{k: v for k, v in r.items() if k != "sample_split"} for r in rows], ["a"])


def test_baselines_equal_hand_computation():
    rows = synthetic_rows(np.random.default_rng(5), runs=6, noise=0.05)
    table = {t["model"]: t for t in analysis.compare(rows, ["a", "b"])}
    assert list(table) == ["mean gap", "train accuracy", "epoch", "train loss", "topology",
                           "topology + train accuracy"]
    y = np.array([r["acc_test"] for r in rows])
    for name, feats in [("mean gap", []), ("train accuracy", ["acc_train"]), ("epoch", ["epoch"]),
                        ("train loss", ["loss_train"]), ("topology", ["a", "b"]),
                        ("topology + train accuracy", ["a", "b", "acc_train"])]:
        pred = loo_hand(rows, feats)
        r2 = 1 - np.sum((pred - y) ** 2) / np.sum((y - y.mean()) ** 2)
        assert np.isclose(table[name]["mae"], np.mean(np.abs(pred - y))), name
        assert np.isclose(table[name]["r2"], r2), name
        assert np.isclose(table[name]["kendall_tau"], kendall_by_hand(pred, y)), name
    # the mean-gap row is the other runs' mean gap
    assert np.isclose(table["mean gap"]["mae"], analysis.baseline_error(rows))
    # the gap is linear in a, b (and noise): the topology beats every baseline here
    assert table["topology"]["mae"] < min(table[m]["mae"] for m in ("mean gap", "train accuracy", "epoch",
                                                                     "train loss"))


def cmi_by_hand(runs, condition_sets):
    """The competition's score with loops and dictionaries: runs are (gap, measure, params),
    each condition set a tuple of hyperparameters whose values in both runs key the groups."""
    from collections import Counter
    best = float("inf")
    for hs in condition_sets:
        groups = {}
        for a, (ga, ma, pa) in enumerate(runs):
            for b, (gb, mb, pb) in enumerate(runs):
                if a != b:
                    key = tuple((pa[h], pb[h]) for h in hs)
                    groups.setdefault(key, []).append((ga > gb, ma > mb))
        mis, hs = [], []
        for pairs in groups.values():
            n, joint = len(pairs), Counter(pairs)
            pg, pm = Counter(x for x, _ in pairs), Counter(y for _, y in pairs)
            mis.append(sum(c / n * np.log2((c / n) / (pg[x] / n * pm[y] / n)) for (x, y), c in joint.items()))
            hs.append(-sum(c / n * np.log2(c / n) for c in pg.values()))
        best = min(best, np.mean(mis) / np.mean(hs))
    return best


def runs_of(rows):
    return [(r["gap"], r["gap_pred"], r) for r in rows if r["epoch"] == 3]


def test_patience_rule_by_hand():
    rows = lambda acc: [{"epoch": e, "acc_val": a} for e, a in enumerate(acc)]  # noqa: E731
    # no better value for 3 epochs after epoch 2: stops at 5, keeps 2
    assert analysis.patience_stop(rows([.1, .5, .6, .55, .58, .59, .7]), 3) == (2, 5)
    # patience 4 never runs out: the best epoch at the end
    assert analysis.patience_stop(rows([.1, .5, .6, .55, .58, .59, .7]), 4) == (6, 6)
    assert analysis.patience_stop(rows([.1, .5, .5, .5]), 2) == (1, 3)        # a tie is no gain
    assert analysis.patience_stop([{"epoch": 0, "acc_test": 1.0}], 2) == (None, None)
    with pytest.raises(UserError, match="--patience 0"):
        analysis.patience_stop(rows([.1]), 0)


def test_cmi_score_against_hand_computation():
    rng = np.random.default_rng(8)
    params = [{"subset": s, "permute_labels": p, "seed": k} for s in (0.1, 0.5) for p in (0.0, 0.2, 0.5)
              for k in (0, 1)]
    gap = rng.uniform(0, 0.4, len(params))
    rows = [dict(p, run=f"r{i}", epoch=e, gap=gap[i] if e == 3 else 9.0, gap_pred=m)
            for i, p in enumerate(params) for e, m in ((1, -5.0), (3, gap[i] + rng.normal(0, 0.1)))]
    got = analysis.cmi_score(rows)            # each run at its last epoch (3); the seed is no condition
    runs = [(r["gap"], r["gap_pred"], r) for r in rows if r["epoch"] == 3]
    assert np.isclose(got, cmi_by_hand(runs, [("subset", "permute_labels")])) and 0 < got < 1
    # with a third hyperparameter, every pair of them conditions and the minimum is taken
    lr_rows = [dict(r, lr=[0.1, 0.01][int(r["run"][1:]) % 2]) for r in rows]
    sets = [("subset", "permute_labels"), ("subset", "lr"), ("permute_labels", "lr")]
    assert np.isclose(analysis.cmi_score(lr_rows), cmi_by_hand(runs_of(lr_rows), sets))
    # one hyperparameter alone conditions by itself
    one = analysis.cmi_score(rows, conditions=["subset"])
    assert np.isclose(one, cmi_by_hand(runs, [("subset",)]))
    exact = [dict(r, gap_pred=r["gap"]) for r in rows]
    assert np.isclose(analysis.cmi_score(exact), 1.0)                       # the same order
    assert np.isclose(analysis.cmi_score([dict(r, gap_pred=-r["gap"]) for r in rows]), 1.0)  # reversed
    assert analysis.cmi_score([dict(r, gap_pred=0.0) for r in rows]) == 0.0  # a constant tells nothing
    table = {t["model"]: t for t in analysis.compare(synthetic_rows(rng, runs=6, noise=0.05), ["a", "b"])}
    assert table["mean gap"]["cmi"] == 0.0 and 0 <= table["topology"]["cmi"] <= 1


def test_leave_one_out_by_a_run_parameter():
    rows = synthetic_rows(np.random.default_rng(6), runs=6, noise=0.02)
    got, mae = analysis.evaluate(rows, ["a", "c"], by="subset")       # three folds: 0.1, 0.2, 0.5
    y = np.array([r["acc_test"] for r in rows])
    order = {(r["run"], r["epoch"]): k for k, r in enumerate(rows)}
    pred = np.array([r["acc_test_pred"] for r in sorted(got, key=lambda r: order[(r["run"], r["epoch"])])])
    assert np.allclose(pred, loo_hand(rows, ["a", "c"], by="subset"))
    assert np.isclose(mae, np.mean(np.abs(pred - y)))
    # not leave-one-run-out: a fold holds two runs
    assert not np.allclose(pred, loo_hand(rows, ["a", "c"], by="run"))
    for by in ("epoch", "nope"):
        with pytest.raises(UserError, match=f"--by {by}: not a run parameter"):
            analysis.evaluate(rows, ["a"], by=by)
    with pytest.raises(UserError, match="at least two nets"):
        analysis.evaluate(rows, ["a"], by="net")


def test_evaluate_command_prints_the_baselines(tmp_path, cli):
    rows = synthetic_rows(np.random.default_rng(7), runs=4, noise=0.03)
    f = tmp_path / "f.csv"
    analysis.write_csv(rows, f)
    rc, out, err = cli("gengap", "evaluate", "--features", f, "--use", "a", "b", "--by", "subset", "--format", "csv")
    assert rc == 0, err
    lines = out.splitlines()
    head = lines.index("model,features,mae,r2,kendall_tau,cmi")
    printed = {line.split(",")[0]: [float(v) for v in line.split(",")[2:5]] for line in lines[head + 1:head + 7]}
    assert len(printed) == 6 and "topology + train accuracy" in printed
    y = np.array([r["acc_test"] for r in rows])
    pred = loo_hand(rows, ["a", "b", "acc_train"], by="subset")
    assert np.allclose(printed["topology + train accuracy"],
                       [np.mean(np.abs(pred - y)), 1 - np.sum((pred - y) ** 2) / np.sum((y - y.mean()) ** 2),
                        kendall_by_hand(pred, y)])
    for use in (["gap"], ["acc_test"], ["life_1", "loss_test"]):
        rc, _, err = cli("gengap", "evaluate", "--features", f, "--use", *use)
        assert rc == 2 and len(err.strip().splitlines()) == 1 and f"--use {use[-1]}" in err


def test_commands_on_real_runs(module_run, tmp_path, cli):
    import csv
    import json
    trained_run = module_run
    dnntopo("-q", "topology", "--run", trained_run, "--epochs", "0", "1", "2", "--samples", "300",
            "--max-dim", "1", "--sample-split", "train", check=True)
    p = dnntopo("early-stop", "--run", trained_run, "--dim", "1", "--smooth-epochs", "2",
                "--out", tmp_path / "es.png", check=True)
    assert "proposed stopping epoch" in p.stdout and (tmp_path / "es.png").read_bytes()[:4] == b"\x89PNG"
    assert p.stdout.splitlines()[0].split()[:5] == ["epoch", "peak_density", "peak_distance", "at_threshold",
                                                   "peak_density_mean2"]
    rc, _, err = cli("early-stop", "--run", trained_run, "--smooth-epochs", "0", "--out", tmp_path / "es.png")
    assert rc == 2 and "--smooth-epochs 0" in err
    # the regret of each rule beside the topology's (no --val-samples here: the validation row says so)
    assert "never stop" in p.stdout and "no --val-samples" in p.stdout
    # read over a distance window: the same table from the curves' points inside it
    p = dnntopo("summary", "--run", trained_run, "--range", "0.1", "0.4", "--format", "csv", check=True)
    from dnntopo import storage
    from dnntopo.analysis import peak_positions
    for line in list(csv.DictReader(p.stdout.splitlines())):
        ep = storage.read_epoch(trained_run / "topology" / f"epoch_{int(line['epoch']):04d}.h5")
        grid, curve = ep["betti"]["distance"], ep["betti"][1]
        inside = (grid >= 0.1) & (grid <= 0.4)
        assert int(line["betti_max_1"]) == curve[inside].max() and line["sample_split"] == "train"
        assert float(line["distance_at_max_1"]) == pytest.approx(peak_positions(grid[inside], curve[inside])[0])
    rc, _, err = cli("summary", "--run", trained_run, "--range", "0.4", "0.1")
    assert rc == 2 and "--range 0.4 0.1" in err
    # a model fitted over a window refuses input read over the whole filtration, and the reverse
    dnntopo("gengap", "features", "--runs", trained_run, "--range", "0.1", "0.4", "--out", tmp_path / "fw.csv",
            check=True)
    dnntopo("gengap", "fit", "--features", tmp_path / "fw.csv", "--use", "life_1", "--out", tmp_path / "mw.json",
            check=True)
    rc, _, err = cli("gengap", "predict", "--model", tmp_path / "mw.json", "--run", trained_run)
    assert rc == 2 and "range 0.1-0.4" in err and "--range 0.1 0.4" in err
    assert cli("gengap", "predict", "--model", tmp_path / "mw.json", "--run", trained_run, "--range", "0.1",
               "0.4")[0] == 0
    rc, _, err = cli("gengap", "fit", "--features", tmp_path / "fw.csv", "--range", "0.1", "0.4",
                     "--out", tmp_path / "mx.json")
    assert rc == 2 and "--range goes with" in err
    feats = tmp_path / "f.csv"
    dnntopo("gengap", "features", "--runs", trained_run, "--out", feats, check=True)
    with open(feats, newline="") as fh:
        table = list(csv.DictReader(fh))
    assert {"run", "epoch", "gap", "life_1", "midlife_1", "betti_max_1", "loss_train"} <= set(table[0])
    # the split of every epoch, the run's parameters and the train loss, as the run's files hold them
    cfg = json.loads((trained_run / "config.json").read_text())
    with open(trained_run / "stats.csv", newline="") as fh:
        stats = {int(r["epoch"]): r for r in csv.DictReader(fh)}
    assert [int(r["epoch"]) for r in table] == [0, 1, 2]
    for r in table:
        assert r["sample_split"] == "train" and r["net"] == "lenet" and r["dataset"] == "fashion_mnist"
        assert float(r["subset"]) == cfg["subset"] == 0.1 and float(r["lr"]) == cfg["lr"]
        assert float(r["seed"]) == cfg["seed"] and float(r["permute_labels"]) == cfg["permute_labels"]
        assert np.isclose(float(r["loss_train"]), float(stats[int(r["epoch"])]["loss_train"]))
    p = dnntopo("gengap", "fit", "--features", feats, "--use", "life_1", "--out", tmp_path / "m.json")
    assert p.returncode == 0, p.stderr
    p = dnntopo("gengap", "predict", "--model", tmp_path / "m.json", "--run", trained_run, "--format", "csv", check=True)
    assert p.stdout.splitlines()[0] == "run,epoch,acc_train,gap_pred,acc_test_pred"
    p = dnntopo("gengap", "fit", "--features", feats, "--use", "nope_1", "--out", tmp_path / "m2.json")
    assert p.returncode == 2 and "lacks the features nope_1" in p.stderr
    rc, _, err = cli("gengap", "fit", "--features", feats, "--use", "life_1", "acc_test", "--out", tmp_path / "m2.json")
    assert rc == 2 and "--use acc_test" in err and not (tmp_path / "m2.json").exists()
    p = dnntopo("gengap", "evaluate", "--features", feats)
    assert p.returncode == 2 and "at least two runs" in p.stderr


def test_analyses_refuse_mixed_specs(module_run, tmp_path, cli):
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
    # these epochs were computed on the test split (the default): no gap model from them, unless asked
    rc, _, err = cli("gengap", "features", "--runs", run, "--allow-mixed-specs", "--out", tmp_path / "f.csv")
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1, err
    assert f"test split: {run} (epochs 0 1 2)" in lines[0] and "--allow-test-split" in lines[0]
    assert not (tmp_path / "f.csv").exists()
    assert cli("gengap", "features", "--runs", run, "--allow-mixed-specs", "--allow-test-split",
               "--out", tmp_path / "f.csv")[0] == 0
    assert {line.split(",")[3] for line in (tmp_path / "f.csv").read_text().splitlines()} == {"sample_split", "test"}
    assert cli("gengap", "fit", "--use", "life_1", "--out", tmp_path / "m.json", "--features", tmp_path / "f.csv",
               "--allow-test-split")[0] == 0
    for args in (["fit", "--use", "life_1", "--out", tmp_path / "m2.json", "--features", tmp_path / "f.csv"],
                 ["evaluate", "--features", tmp_path / "f.csv"],
                 ["predict", "--model", tmp_path / "m.json", "--features", tmp_path / "f.csv"],
                 ["predict", "--model", tmp_path / "m.json", "--run", run, "--allow-mixed-specs"]):
        rc, _, err = cli("gengap", *args)
        lines = err.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and "test split" in lines[0], (args, err)
    assert not (tmp_path / "m2.json").exists()
