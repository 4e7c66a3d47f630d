"""The two applications of the topology (Corneanu et al., CVPR 2019 and CVPR 2020).

Early stopping: for each computed epoch t, the edge density (or distance) k̂_t where the Betti
curve of dimension n peaks. Learning moves the peak from higher to lower density; memorizing
makes it regress toward higher densities. With Δk_t = k̂_t − k̂_(t−1) between consecutive
computed epochs (optionally of k̂ averaged over the last K computed epochs), the proposed
stopping epoch is the first t with Δk_t > ε: the first move back up beyond ε (on the distance
axis the same sign: toward larger distances). Ties in the curve take the first (lowest) peak
position. An epoch whose curve is flat zero has no peak, and one whose peak lies on the last
grid point (the threshold) has no position either (the peak measures the cutoff): their k̂ is
NaN for the rule, and neither they nor the next epoch can fire it.

Generalization gap: a linear model (least squares with intercept) from topological summaries
to gap = train accuracy − test accuracy; the predicted test accuracy of a run with no test set
is its train accuracy minus the predicted gap. The epochs must be computed on training samples
(`--sample-split own` or `train`), and no feature may be the target or come from the test set.
Evaluated by leave-one-run-out (or leave-one-out by group or by any run parameter)
cross-validation, beside baselines under the same folds (the mean gap of the other runs; train
accuracy, epoch or train loss alone; topology plus train accuracy) with the MAE and R² of the
predicted test accuracy and Kendall's τ between predicted and true test accuracy.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from dnntopo import storage
from dnntopo.errors import UserError
from dnntopo.spec import check_epochs
from dnntopo.summaries import SUMMARY_KEYS

DEFAULT_EPSILON = 0.005
#: Features of the generalization-gap model when --use is not given.
DEFAULT_FEATURES = ("life_1", "midlife_1", "betti_max_1", "density_at_max_1")


def peak_positions(grid: np.ndarray, curves: np.ndarray) -> np.ndarray:
    """Position (on `grid`) of the maximum of each curve (rows); NaN for an all-zero curve."""
    curves = np.atleast_2d(np.asarray(curves, dtype=np.float64))
    k = np.argmax(curves, axis=1)
    pos = np.asarray(grid, dtype=np.float64)[k] if np.ndim(grid) == 1 else \
        np.asarray(grid, dtype=np.float64)[np.arange(len(k)), k]
    return np.where(curves.max(axis=1) > 0, pos, np.nan)


def peaks_at_threshold(curves: np.ndarray) -> np.ndarray:
    """True for each curve (row) whose maximum (the first, on ties) lies on the last grid point,
    the threshold: its position measures the cutoff, not the network."""
    curves = np.atleast_2d(np.asarray(curves, dtype=np.float64))
    k = np.argmax(curves, axis=1)
    return (curves.shape[1] > 1) & (k == curves.shape[1] - 1) & (curves.max(axis=1) > 0)


def smooth_peaks(peaks, k: int = 1) -> np.ndarray:
    """Trailing moving average of the peak positions over `k` computed epochs (the epoch and the
    k − 1 before it: the rule never looks ahead); NaN while fewer than `k` epochs are available
    or when one of the window's peaks is NaN."""
    peaks = np.asarray(peaks, dtype=np.float64)
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise UserError(f"--smooth-epochs {k}: must be a whole number of epochs >= 1")
    k = int(k)
    if k == 1:
        return peaks.copy()
    out = np.full(len(peaks), np.nan)
    for t in range(k - 1, len(peaks)):
        out[t] = np.mean(peaks[t - k + 1:t + 1])          # NaN in the window gives NaN
    return out


def stopping_epoch(epochs, peaks, epsilon: float = DEFAULT_EPSILON, smooth: int = 1):
    """(stop epoch or None, Δk per epoch with NaN for the first): the first t with Δk_t > ε,
    the first regression of the peak toward higher density (or distance) beyond ε.

    `peaks` are k̂_t (NaN where there is no position); with `smooth` = K > 1, Δk is taken
    between trailing K-epoch averages of k̂ (see `smooth_peaks`)."""
    k = smooth_peaks(peaks, smooth)
    delta = np.concatenate([[np.nan], np.diff(k)])
    with np.errstate(invalid="ignore"):
        fired = np.flatnonzero(delta > epsilon)          # NaN never fires
    return (int(epochs[fired[0]]) if fired.size else None), delta


def early_stop_table(run: storage.Run, dim: int, axis: str = "density", epsilon: float = DEFAULT_EPSILON,
                     allow_mixed: bool = False, smooth: int = 1, window=None):
    """Rows per computed epoch: peak density and distance, whether the peak lies at the
    threshold (then it is no position and cannot fire the rule), Δk on `axis` (of the
    `smooth`-epoch average when `smooth` > 1), accuracies; and the stop. With a distance
    `window` (lo, hi) the peak is sought inside it, and its last point acts as the threshold.

    Epochs computed with different topology specs are refused unless `allow_mixed`."""
    if not (math.isfinite(epsilon) and epsilon >= 0):
        raise UserError(f"--epsilon {epsilon}: must be a finite number >= 0")
    smooth_peaks([], smooth)                               # validates --smooth-epochs
    from dnntopo.summaries import check_window
    window = check_window(window)
    epochs = run.topology_epochs()
    if len(epochs) < 2:
        raise UserError(f"early stopping needs at least two computed epochs in {run.topology} "
                        f"(found {len(epochs)}); run `dnntopo topology` for more epochs")
    check_epochs(run, epochs, allow_mixed)
    dens, dist, edge = [], [], []
    for e in epochs:
        ep = storage.read_epoch(run.epoch_file(e))
        if dim not in ep["betti"]:
            raise UserError(f"--dim {dim}: epoch {e} was computed up to dimension {ep['attrs']['max_dim']}")
        grid, density, curve = ep["betti"]["distance"], ep["betti"]["density"], ep["betti"][dim]
        if window is not None:
            from dnntopo.summaries import windowed
            windowed(ep, window, str(run.epoch_file(e)))           # validates the window for this file
            inside = (grid >= window[0]) & (grid <= window[1])
            grid, density, curve = grid[inside], density[inside], curve[inside]
        dens.append(peak_positions(density, curve)[0])
        dist.append(peak_positions(grid, curve)[0])
        edge.append(bool(peaks_at_threshold(curve)[0]))
    peaks = np.array(dens if axis == "density" else dist)
    peaks[np.array(edge, dtype=bool)] = np.nan             # the cutoff is not a position
    stop, delta = stopping_epoch(epochs, peaks, epsilon, smooth)
    smoothed = smooth_peaks(peaks, smooth)
    stats = {r["epoch"]: r for r in storage.read_stats(run)}
    rows = []
    for k, e in enumerate(epochs):
        row = {"epoch": e, "peak_density": dens[k], "peak_distance": dist[k], "at_threshold": edge[k]}
        if smooth > 1:
            row[f"peak_{axis}_mean{smooth}"] = smoothed[k]
        row.update({"delta": delta[k], "acc_train": stats.get(e, {}).get("acc_train", math.nan),
                    "acc_test": stats.get(e, {}).get("acc_test", math.nan), "stop": e == stop})
        rows.append(row)
    return rows, stop


def patience_stop(stats, patience: int = 5):
    """The validation baseline of early stopping: (kept epoch, epoch training stops) from the
    per-epoch validation accuracy (`acc_val`, of `--val-samples`). Training stops once
    `patience` epochs pass without a better validation accuracy, and keeps the best epoch seen;
    a run that never runs out of patience keeps its best epoch at the end. (None, None) when the
    run has no validation accuracy."""
    if isinstance(patience, bool) or int(patience) != patience or patience < 1:
        raise UserError(f"--patience {patience}: must be a whole number of epochs >= 1")
    rows = sorted((r for r in stats if not math.isnan(r.get("acc_val", math.nan))), key=lambda r: r["epoch"])
    if not rows:
        return None, None
    acc = np.array([r["acc_val"] for r in rows])
    best = np.maximum.accumulate(acc)
    improved = np.concatenate([[True], acc[1:] > best[:-1]])
    since = np.arange(len(acc)) - np.maximum.accumulate(np.where(improved, np.arange(len(acc)), 0))
    out = np.flatnonzero(since >= patience)
    end = int(out[0]) if out.size else len(acc) - 1
    keep = int(np.argmax(acc[:end + 1]))                 # first best on ties
    return int(rows[keep]["epoch"]), int(rows[end]["epoch"])


def stopping_regret(run: storage.Run, stop, patience: int = 5) -> list[dict]:
    """The test accuracy each stopping rule gives up against the epoch of best test accuracy
    (its regret): the topology rule's proposed epoch (`stop`; None: it never fired, so training
    runs to the end), the validation rule (`patience_stop`, when the run has `--val-samples`),
    and never stopping (the last trained epoch). One row per rule: rule, epoch, acc_test,
    best_epoch, best_acc_test, lost."""
    stats = {r["epoch"]: r for r in storage.read_stats(run)}
    if not stats:
        raise UserError(f"{run.stats}: no training statistics; the regret needs the run's test accuracy")
    scored = {e: r["acc_test"] for e, r in stats.items() if not math.isnan(r["acc_test"])}
    if not scored:
        raise UserError(f"{run.stats}: no epoch has a test accuracy; the regret needs one")
    best = max(scored, key=lambda e: (scored[e], -e))
    last = max(stats)
    rules = [("topology (Betti peak)", stop if stop is not None else last)]
    keep, _ = patience_stop(stats.values(), patience)
    rules.append((f"validation (patience {patience})", keep))
    rules.append(("never stop", last))
    out = []
    for name, e in rules:
        acc = scored.get(e, math.nan) if e is not None else math.nan
        out.append({"rule": name, "epoch": e if e is not None else "no --val-samples", "acc_test": acc,
                    "best_epoch": best, "best_acc_test": scored[best], "lost": scored[best] - acc})
    return out


def plot_early_stop(rows, stop, out, title: str, axis: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ep = [r["epoch"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 4))
    ax.plot(ep, [math.nan if r["at_threshold"] else r[f"peak_{axis}"] for r in rows], marker="o",
            label=f"Betti peak ({axis})")
    edge = [r for r in rows if r["at_threshold"]]
    if edge:
        ax.scatter([r["epoch"] for r in edge], [r[f"peak_{axis}"] for r in edge], marker="x", color="tab:blue",
                   label="peak at the threshold (no position)")
    ax.set_xlabel("epoch"), ax.set_ylabel(f"{axis} at the Betti-curve peak"), ax.grid(alpha=0.3)
    tw = ax.twinx()
    tw.plot(ep, [r["acc_train"] for r in rows], ls="--", color="tab:green", label="train accuracy")
    tw.plot(ep, [r["acc_test"] for r in rows], ls="--", color="tab:red", label="test accuracy")
    tw.set_ylabel("accuracy")
    if stop is not None:
        ax.axvline(stop, color="black", lw=1, ls=":", label=f"proposed stop: epoch {stop}")
    lines = ax.get_legend_handles_labels()[0] + tw.get_legend_handles_labels()[0]
    ax.legend(lines, [ln.get_label() for ln in lines], fontsize=8, loc="best")
    ax.set_title(title)
    from dnntopo.plots import save_figure
    return save_figure(fig, out)


# ---------------------------------------------------------------- generalization gap

#: Columns every features table has (`dnntopo gengap features`).
FEATURE_COLUMNS = ("run", "group", "epoch", "acc_train", "acc_test", "gap")
#: The run's parameters written as columns (leave-one-out by any of them: `--by subset`).
RUN_PARAMS = ("net", "dataset", "subset", "permute_labels", "binarize_labels", "seed", "lr", "batch_size")
#: Columns that hold text, not numbers.
TEXT_COLUMNS = ("run", "group", "sample_split", "net", "dataset", "range")
#: Columns computed from the test set (never a feature of a model that promises no test set).
TEST_COLUMNS = ("gap", "acc_test", "loss_test")
ALLOW_TEST = "--allow-test-split"


def _name_epochs(pairs) -> str:
    """'RUN (epochs 0 1 2), RUN2 (epochs 3)' from (run, epoch) pairs, in order."""
    by_run: dict = {}
    for run, e in pairs:
        by_run.setdefault(str(run), []).append(str(int(e)))
    return ", ".join(f"{r} (epochs {' '.join(es)})" for r, es in by_run.items())


def feature_rows(folders, allow_mixed: bool = False, allow_test_split: bool = False,
                 window=None) -> list[dict]:
    """Per (run, epoch): the sample split of the epoch's graph, the run's parameters, the
    accuracies, train loss and gap, and the summary table's numbers (`betti_max` and `area` per
    node; over the distance `window` (lo, hi) when given).

    Every epoch of every run must share one topology spec unless `allow_mixed`, and none may be
    computed on the test split unless `allow_test_split` (the model promises no test set)."""
    from dnntopo import report
    from dnntopo.spec import require_same
    rows = []
    runs = [r for f in folders for r in storage.runs_under(f)]
    if not runs:
        raise UserError(f"no run folders (config.json) under {' '.join(map(str, folders))}")
    attrs = {(run.root, e): storage.read_attrs(run.epoch_file(e)) for run in runs for e in run.topology_epochs()}
    require_same([(f"{root}:{e}", a) for (root, e), a in attrs.items()], allow_mixed, what="run:epoch")
    # files written before the split was an attribute were computed on the test split (the default)
    splits = {key: str(a.get("sample_split", "test")) for key, a in attrs.items()}
    on_test = [key for key, split in splits.items() if split == "test"]
    if on_test and not allow_test_split:
        raise UserError(f"epochs computed on the test split: {_name_epochs(on_test)}; the gap model promises "
                        f"no test set: recompute them with --sample-split own or train, or pass "
                        f"{ALLOW_TEST} to use them anyway")
    for run in runs:
        if not run.topology_epochs():
            continue
        cfg = storage.read_config(run)
        stats = {r["epoch"]: r for r in storage.read_stats(run)}
        for r in report.rows(run, allow_mixed=True, window=window):
            if math.isnan(r["acc_test"]):
                continue
            row = {"run": str(run.root), "group": f"{cfg['net']}_{cfg['dataset']}", "epoch": r["epoch"],
                   "sample_split": splits[(run.root, r["epoch"])],
                   "range": "all" if window is None else f"{window[0]:g}-{window[1]:g}"}
            row.update({k: cfg.get(k, math.nan) for k in RUN_PARAMS})
            row.update({"acc_train": r["acc_train"], "acc_test": r["acc_test"],
                        "gap": r["acc_train"] - r["acc_test"],
                        "loss_train": stats.get(r["epoch"], {}).get("loss_train", math.nan)})
            for key, v in r.items():
                name = key.rsplit("_", 1)[0]
                if name in SUMMARY_KEYS:
                    row[key] = v / r["n_nodes"] if name in ("betti_max", "area") else v
            rows.append(row)
    return rows


def require_no_test(rows, allow_test_split: bool = False, source: str = "the features"):
    """Refuse rows whose graph was computed on the test split (or whose split is not recorded)
    unless `allow_test_split`."""
    if allow_test_split:
        return
    if rows and "sample_split" not in rows[0]:
        raise UserError(f"{source} records no sample_split (written before the split was recorded); remake it "
                        f"with `dnntopo gengap features` from epochs computed with --sample-split own or "
                        f"train, or pass {ALLOW_TEST} to use it anyway")
    bad = [(r["run"], r["epoch"]) for r in rows if r.get("sample_split") in ("test", "", None)]
    if bad:
        raise UserError(f"{source} has rows computed on the test split: {_name_epochs(bad)}; the gap model "
                        f"promises no test set: recompute them with --sample-split own or train, or pass "
                        f"{ALLOW_TEST} to use them anyway")


def check_use(features, target: str = "gap"):
    """Refuse, as features, the target, anything computed from the test set (`gap`,
    `acc_test`, `loss_test`, any name containing `test`) and text columns."""
    leak = [f for f in features if f == target or f in TEST_COLUMNS or "test" in f.lower()]
    if leak:
        raise UserError(f"--use {' '.join(leak)}: the target or computed from the test set; a model that "
                        f"promises no test set cannot use them as features")
    text = [f for f in features if f in TEXT_COLUMNS]
    if text:
        raise UserError(f"--use {' '.join(text)}: not a number; leave-one-out by it is `--by`, not a feature")
    if len(set(features)) != len(features):
        raise UserError(f"--use {' '.join(features)}: a feature given twice")


def is_features_csv(path) -> bool:
    """True for a table `gengap features` wrote (so that writing it again is no loss)."""
    with open(path, newline="") as fh:
        return next(csv.reader(fh), [])[:3] == list(FEATURE_COLUMNS[:3])


def is_model_json(path) -> bool:
    return '"coefficients"' in Path(path).read_text()


def write_csv(rows: list[dict], path):
    from dnntopo.report import render
    from hpc.io import write_text_atomic
    with storage.writing(path):
        write_text_atomic(path, render(rows, "csv"))


def read_csv(path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--features {path} does not exist; make it with `dnntopo gengap features`")
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        missing = [c for c in FEATURE_COLUMNS if not rows or c not in rows[0]]
        if missing:
            raise ValueError(f"no column {', '.join(missing)}" if rows else "no rows")
        out = [{k: (v if k in TEXT_COLUMNS else float(v) if v not in ("", "nan") else math.nan)
                for k, v in r.items()} for r in rows]
    except (OSError, UnicodeDecodeError, csv.Error, ValueError, TypeError, AttributeError) as exc:
        raise UserError(f"--features {path} is not a features table of `dnntopo gengap features` "
                        f"({exc})") from None
    return out


def design(rows, features, source: str) -> np.ndarray:
    ranges = sorted({str(r.get("range", "all")) for r in rows})
    if len(ranges) > 1:
        raise UserError(f"{source} mixes summaries read over distance ranges {', '.join(ranges)}; make the "
                        f"features with one --range")
    missing = [f for f in features if not rows or f not in rows[0]]
    if missing:
        have = [k for k in (rows[0] if rows else {})
                if k not in ("run", "group", "epoch", "gap", "acc_test", "loss_test", *TEXT_COLUMNS)]
        raise UserError(f"{source} lacks the features {' '.join(missing)} the model needs; "
                        f"available: {' '.join(have)}")
    try:
        x = np.array([[r[f] for f in features] for r in rows], dtype=np.float64).reshape(len(rows), len(features))
    except (TypeError, ValueError):
        text = [f for f in features if any(isinstance(r[f], str) for r in rows)]
        raise UserError(f"{source}: the features {' '.join(text)} are not numbers") from None
    dead = [f for k, f in enumerate(features) if not np.isfinite(x[:, k]).any()]
    if dead:
        raise UserError(f"{source}: the features {' '.join(dead)} have no finite value in any row "
                        f"(e.g. no pair above --min-persistence); leave them out of --use")
    return np.nan_to_num(x, nan=0.0)


def fit(rows, features: list, target: str = "gap", allow_test_split: bool = False) -> dict:
    """Least-squares coefficients (intercept first) from `features` to `target`.

    The features may not be the target or come from the test set; the rows must come from
    epochs computed on training samples unless `allow_test_split`."""
    check_use(features, target)
    x = design(rows, features, "the features file")
    require_no_test(rows, allow_test_split, "the features file")
    if len(rows) <= len(features):
        raise UserError(f"{len(rows)} rows cannot fit {len(features)} features and an intercept; "
                        f"add runs or epochs, or use fewer --use features")
    y = np.array([r[target] for r in rows], dtype=np.float64)
    a = np.c_[np.ones(len(x)), x]
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    pred = a @ coef
    return {"features": list(features), "target": target, "intercept": float(coef[0]),
            "coefficients": {f: float(c) for f, c in zip(features, coef[1:])},
            "train_mae": float(np.mean(np.abs(pred - y))), "n_rows": len(rows),
            "range": str(rows[0].get("range", "all"))}


def predict(model: dict, rows) -> np.ndarray:
    """Predicted gap for each row; rows read over another distance range than the model's
    training rows are refused."""
    want, have = str(model.get("range", "all")), str(rows[0].get("range", "all")) if rows else "all"
    if want != have:
        raise UserError(f"the model was fitted on summaries read over distance range {want}, the input "
                        f"is read over {have}; make the features with --range as the model's"
                        + ("" if want == "all" else f" (--range {want.replace('-', ' ')})"))
    x = design(rows, model["features"], "the input")
    w = np.array([model["coefficients"][f] for f in model["features"]])
    return model["intercept"] + x @ w


def check_by(rows, by: str):
    """Refuse a --by that is not a run parameter of the table, or that some rows lack."""
    allowed = ("run", "group", *RUN_PARAMS)
    if by not in allowed or (rows and by not in rows[0]):
        have = [c for c in allowed if rows and c in rows[0]]
        raise UserError(f"--by {by}: not a run parameter of the features table; one of {' '.join(have)}")
    empty = [r for r in rows if r[by] is None or r[by] == "" or (isinstance(r[by], float) and math.isnan(r[by]))]
    if empty:
        raise UserError(f"--by {by}: {len(empty)} rows have no value (e.g. {empty[0]['run']}); "
                        f"remake the features with `dnntopo gengap features`")


def evaluate(rows, features: list, by: str = "run", allow_test_split: bool = False):
    """Leave-one-`by`-out predictions of the test accuracy: (rows with predictions, MAE).

    `by` is `run`, `group` or a run parameter column (`subset`, `permute_labels`, `seed`, `lr`,
    `net`, `dataset`): each value's rows are predicted by a model fitted on the other values'."""
    check_use(features)
    design(rows, features, "the features file")
    require_no_test(rows, allow_test_split, "the features file")
    check_by(rows, by)
    keys = sorted({r[by] for r in rows})
    if len(keys) < 2:
        raise UserError(f"leave-one-{by}-out needs at least two {by}s; the features have {len(keys)}")
    out = []
    for k in keys:
        train_rows = [r for r in rows if r[by] != k]
        test_rows = [r for r in rows if r[by] == k]
        model = fit(train_rows, features, allow_test_split=True)   # checked above
        for r, g in zip(test_rows, predict(model, test_rows)):
            out.append(dict(r, gap_pred=float(g), acc_test_pred=r["acc_train"] - float(g),
                            error=abs(r["acc_train"] - float(g) - r["acc_test"])))
    return out, float(np.mean([r["error"] for r in out]))


def baseline_error(rows, by: str = "run") -> float:
    """Leave-one-out MAE of the test accuracy when the gap is predicted by the mean gap of the
    other runs: what a topological model must beat to be worth anything."""
    errors = []
    for k in sorted({r[by] for r in rows}):
        mean_gap = float(np.mean([r["gap"] for r in rows if r[by] != k]))
        errors += [abs(r["gap"] - mean_gap) for r in rows if r[by] == k]
    return float(np.mean(errors))


def scores(acc_test, acc_test_pred) -> dict:
    """MAE and R² of the predicted test accuracy, and Kendall's τ (τ-b) between predicted and
    true test accuracy over all rows."""
    from scipy.stats import kendalltau
    y, p = np.asarray(acc_test, dtype=np.float64), np.asarray(acc_test_pred, dtype=np.float64)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum((p - y) ** 2)) / ss_tot if ss_tot > 0 else math.nan
    tau = kendalltau(p, y).statistic if len(y) > 1 and np.ptp(p) > 0 and np.ptp(y) > 0 else math.nan
    return {"mae": float(np.mean(np.abs(p - y))), "r2": r2, "kendall_tau": float(tau)}


def _mi_bits(tables: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per 2 x 2 contingency table (K, 2, 2) of (V_gap, V_measure) counts: the mutual
    information and the entropy of V_gap, in bits."""
    p = tables / tables.sum(axis=(1, 2), keepdims=True)
    pa, pb = p.sum(axis=2), p.sum(axis=1)
    outer = pa[:, :, None] * pb[:, None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        mi = np.where(p > 0, p * np.log2(p / outer), 0.0).sum(axis=(1, 2))
        h = -np.where(pa > 0, pa * np.log2(pa), 0.0).sum(axis=1)
    return mi, h


#: Run parameters that are not hyperparameters to condition on (a measure need not be robust to them).
NOT_HYPERPARAMS = ("seed",)


def cmi_score(rows, measure: str = "gap_pred", conditions=None) -> float:
    """The conditional mutual-information score of the NeurIPS 2020 "Predicting Generalization
    in Deep Learning" competition, between a measure and the generalization gap.

    The models are the runs, each at its last epoch in `rows`. Over ordered pairs of distinct
    runs (i, j), V_gap = [gap_i > gap_j] and V_measure = [measure_i > measure_j]. For a set S
    of hyperparameters the pairs are grouped by the values of S in both runs; the score for S is
    the mean over groups of I(V_gap; V_measure) divided by the mean over groups of H(V_gap)
    (bits). As in the competition, S runs over the pairs of the study's hyperparameters
    (`conditions`, default: the run parameters with two or more values, but the seed), or over
    the single one when only one varies, and the result is the minimum. 1: the measure orders
    every pair as the gap does, or exactly reversed; 0: no information. NaN with fewer than two
    runs."""
    last = {}
    for r in rows:
        if r["run"] not in last or r["epoch"] > last[r["run"]]["epoch"]:
            last[r["run"]] = r
    models = list(last.values())
    if len(models) < 2:
        return math.nan
    if conditions is None:
        conditions = [k for k in RUN_PARAMS if k not in NOT_HYPERPARAMS and k in models[0]
                      and len({m[k] for m in models}) >= 2]
    g = np.array([m["gap"] for m in models], dtype=np.float64)
    v = np.array([m[measure] for m in models], dtype=np.float64)
    i, j = np.nonzero(~np.eye(len(models), dtype=bool))
    vg, vm = g[i] > g[j], v[i] > v[j]
    import itertools
    codes = {h: np.unique(np.array([str(m[h]) for m in models]), return_inverse=True)[1] for h in conditions}
    sets = list(itertools.combinations(conditions, 2)) if len(conditions) >= 2 else [tuple(conditions)]
    scores = []
    for group in sets:
        keys = np.zeros(len(i), dtype=np.int64)
        for h in group:                      # the values of the group's hyperparameters in both runs
            c = codes[h]
            keys = (keys * (c.max() + 1) + c[i]) * (c.max() + 1) + c[j]
        _, group_of = np.unique(keys, return_inverse=True)      # one 2 x 2 table per group of pairs
        cell = (group_of * 2 + vg) * 2 + vm
        tables = np.bincount(cell, minlength=4 * (group_of.max() + 1)).reshape(-1, 2, 2).astype(np.float64)
        mi, h = _mi_bits(tables)
        scores.append(mi.mean() / h.mean() if h.mean() > 0 else math.nan)
    return float(np.nanmin(scores)) if not all(map(math.isnan, scores)) else math.nan


def baseline_models(features) -> list[tuple[str, list]]:
    """(name, features) of the models compared under the same folds: the mean gap of the other
    runs (no feature), train accuracy, epoch, train loss alone, the topology (`features`), and
    the topology plus train accuracy."""
    features = list(features)
    return [("mean gap", []), ("train accuracy", ["acc_train"]), ("epoch", ["epoch"]),
            ("train loss", ["loss_train"]), ("topology", features),
            ("topology + train accuracy", features + [f for f in ["acc_train"] if f not in features])]


def compare(rows, features, by: str = "run", allow_test_split: bool = False) -> list[dict]:
    """One row per model of `baseline_models(features)`, each evaluated leave-one-`by`-out on
    the same folds: model, features, MAE, R² and Kendall's τ of the predicted test accuracy
    over all (run, epoch) rows, and the competition's conditional mutual information between
    the predicted and true gap of the runs at their last epoch (`cmi_score`). A baseline whose
    column the table lacks (e.g. `loss_train` in an older table) is NaN."""
    require_no_test(rows, allow_test_split, "the features file")
    table = []
    for name, feats in baseline_models(features):
        row = {"model": name, "features": " ".join(feats) or "(intercept: mean gap)"}
        if any(f not in rows[0] for f in feats):
            table.append(dict(row, mae=math.nan, r2=math.nan, kendall_tau=math.nan, cmi=math.nan))
            continue
        got, _ = evaluate(rows, feats, by, allow_test_split=True)
        table.append(dict(row, **scores([r["acc_test"] for r in got], [r["acc_test_pred"] for r in got]),
                          # the mean gap's measure is one constant for every run (its fold's
                          # intercept is an artefact of leaving the run out, not a measure)
                          cmi=cmi_score(got if feats else [dict(r, gap_pred=0.0) for r in got])))
    return table


def describe_model(model: dict) -> str:
    """The fitted formula in one line."""
    return f"gap = {model['intercept']:.4g} + " + " + ".join(
        f"{c:.4g} {f}" for f, c in model["coefficients"].items())


def prediction_table(model: dict, rows) -> list[dict]:
    """Per row: the predicted gap and test accuracy (no test set used)."""
    gaps = predict(model, rows)
    return [{"run": r["run"], "epoch": int(r["epoch"]), "acc_train": r["acc_train"], "gap_pred": g,
             "acc_test_pred": r["acc_train"] - g} for r, g in zip(rows, gaps)]


def evaluation_table(rows) -> list[dict]:
    """The columns of `evaluate`'s rows that a report shows."""
    return [{"run": r["run"], "epoch": int(r["epoch"]), "gap": r["gap"], "gap_pred": r["gap_pred"],
             "acc_test": r["acc_test"], "acc_test_pred": r["acc_test_pred"], "error": r["error"]}
            for r in rows]


def scatter(rows, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(4.8, 4.8))
    groups = sorted({r["run"] for r in rows})
    for g in groups:
        sel = [r for r in rows if r["run"] == g]
        ax.scatter([r["acc_test"] for r in sel], [r["acc_test_pred"] for r in sel], s=18,
                   label=f"{Path(g).parent.name}/{Path(g).name}")
    lo = min(min(r["acc_test"] for r in rows), min(r["acc_test_pred"] for r in rows))
    hi = max(max(r["acc_test"] for r in rows), max(r["acc_test_pred"] for r in rows))
    ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
    ax.set_xlabel("true test accuracy"), ax.set_ylabel("predicted test accuracy (no test set)")
    ax.set_title("leave-one-run-out prediction"), ax.grid(alpha=0.3)
    if len(groups) <= 10:
        ax.legend(fontsize=6)
    from dnntopo.plots import save_figure
    return save_figure(fig, out)


def save_model(model: dict, path):
    from hpc.io import write_text_atomic
    with storage.writing(path):
        write_text_atomic(path, json.dumps(model, indent=1) + "\n")


def load_model(path) -> dict:
    try:
        model = json.loads(Path(path).read_text())
        if not isinstance(model, dict):
            raise ValueError(f"a JSON {type(model).__name__}, not an object")
        feats, coefs = model["features"], model["coefficients"]
        if not isinstance(feats, list) or not isinstance(coefs, dict) or set(feats) != set(coefs):
            raise ValueError("features and coefficients do not match")
        for v in [model["intercept"], *coefs.values()]:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"coefficient {v!r} is not a finite number")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"--model {path}: not a gengap model ({exc}); make one with `dnntopo gengap fit`") from None
    return model
