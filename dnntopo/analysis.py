"""The two applications of the topology (Corneanu et al., CVPR 2019 and CVPR 2020).

Early stopping: for each computed epoch t, the edge density (or distance) k̂_t where the Betti
curve of dimension n peaks; Δk_t = k̂_t − k̂_(t−1) between consecutive computed epochs; the
proposed stopping epoch is the first t with Δk_t < −ε. Ties in the curve take the first
(lowest) peak position; an epoch whose curve is flat zero has no peak (k̂ = NaN) and neither
it nor the next epoch can fire the rule.

Generalization gap: a linear model (least squares with intercept) from topological summaries
to gap = train accuracy − test accuracy; the predicted test accuracy of a run with no test set
is its train accuracy minus the predicted gap. Evaluated by leave-one-run-out (or
leave-one-group-out) cross-validation.
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


def stopping_epoch(epochs, peaks, epsilon: float = DEFAULT_EPSILON):
    """(stop epoch or None, Δk per epoch with NaN for the first): first t with Δk_t < −ε."""
    peaks = np.asarray(peaks, dtype=np.float64)
    delta = np.concatenate([[np.nan], np.diff(peaks)])
    fired = np.flatnonzero(delta < -epsilon)
    return (int(epochs[fired[0]]) if fired.size else None), delta


def early_stop_table(run: storage.Run, dim: int, axis: str = "density", epsilon: float = DEFAULT_EPSILON,
                     allow_mixed: bool = False):
    """Rows per computed epoch: peak density and distance, Δk on `axis`, accuracies; and the stop.

    Epochs computed with different topology specs are refused unless `allow_mixed`."""
    if not (math.isfinite(epsilon) and epsilon >= 0):
        raise UserError(f"--epsilon {epsilon}: must be a finite number >= 0")
    epochs = run.topology_epochs()
    if len(epochs) < 2:
        raise UserError(f"early stopping needs at least two computed epochs in {run.topology} "
                        f"(found {len(epochs)}); run `dnntopo topology` for more epochs")
    check_epochs(run, epochs, allow_mixed)
    dens, dist = [], []
    for e in epochs:
        ep = storage.read_epoch(run.epoch_file(e))
        if dim not in ep["betti"]:
            raise UserError(f"--dim {dim}: epoch {e} was computed up to dimension {ep['attrs']['max_dim']}")
        curve = ep["betti"][dim]
        dens.append(peak_positions(ep["betti"]["density"], curve)[0])
        dist.append(peak_positions(ep["betti"]["distance"], curve)[0])
    peaks = np.array(dens if axis == "density" else dist)
    stop, delta = stopping_epoch(epochs, peaks, epsilon)
    stats = {r["epoch"]: r for r in storage.read_stats(run)}
    rows = [{"epoch": e, "peak_density": dn, "peak_distance": ds, "delta": dk,
             "acc_train": stats.get(e, {}).get("acc_train", math.nan),
             "acc_test": stats.get(e, {}).get("acc_test", math.nan), "stop": e == stop}
            for e, dn, ds, dk in zip(epochs, dens, dist, delta)]
    return rows, stop


def plot_early_stop(rows, stop, out, title: str, axis: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ep = [r["epoch"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 4))
    ax.plot(ep, [r[f"peak_{axis}"] for r in rows], marker="o", label=f"Betti peak ({axis})")
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

def feature_rows(folders, allow_mixed: bool = False) -> list[dict]:
    """Per (run, epoch): the summary table's numbers (`betti_max` and `area` per node), the gap.

    Every epoch of every run must share one topology spec unless `allow_mixed`."""
    from dnntopo import report
    from dnntopo.spec import require_same
    rows = []
    runs = [r for f in folders for r in storage.runs_under(f)]
    if not runs:
        raise UserError(f"no run folders (config.json) under {' '.join(map(str, folders))}")
    require_same([(f"{run.root}:{e}", storage.read_attrs(run.epoch_file(e)))
                  for run in runs for e in run.topology_epochs()], allow_mixed, what="run:epoch")
    for run in runs:
        if not run.topology_epochs():
            continue
        cfg = storage.read_config(run)
        for r in report.rows(run, allow_mixed=True):
            if math.isnan(r["acc_test"]):
                continue
            row = {"run": str(run.root), "group": f"{cfg['net']}_{cfg['dataset']}", "epoch": r["epoch"],
                   "acc_train": r["acc_train"], "acc_test": r["acc_test"],
                   "gap": r["acc_train"] - r["acc_test"]}
            for key, v in r.items():
                name = key.rsplit("_", 1)[0]
                if name in SUMMARY_KEYS:
                    row[key] = v / r["n_nodes"] if name in ("betti_max", "area") else v
            rows.append(row)
    return rows


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


#: Columns every features table has (`dnntopo gengap features`).
FEATURE_COLUMNS = ("run", "group", "epoch", "acc_train", "acc_test", "gap")


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
        out = [{k: (v if k in ("run", "group") else float(v) if v not in ("", "nan") else math.nan)
                for k, v in r.items()} for r in rows]
    except (OSError, UnicodeDecodeError, csv.Error, ValueError, TypeError, AttributeError) as exc:
        raise UserError(f"--features {path} is not a features table of `dnntopo gengap features` "
                        f"({exc})") from None
    return out


def design(rows, features, source: str) -> np.ndarray:
    missing = [f for f in features if not rows or f not in rows[0]]
    if missing:
        have = [k for k in (rows[0] if rows else {}) if k not in ("run", "group", "epoch", "gap", "acc_test")]
        raise UserError(f"{source} lacks the features {' '.join(missing)} the model needs; "
                        f"available: {' '.join(have)}")
    x = np.array([[r[f] for f in features] for r in rows], dtype=np.float64)
    dead = [f for k, f in enumerate(features) if not np.isfinite(x[:, k]).any()]
    if dead:
        raise UserError(f"{source}: the features {' '.join(dead)} have no finite value in any row "
                        f"(e.g. no pair above --min-persistence); leave them out of --use")
    return np.nan_to_num(x, nan=0.0)


def fit(rows, features: list, target: str = "gap") -> dict:
    """Least-squares coefficients (intercept first) from `features` to `target`."""
    if len(rows) <= len(features):
        raise UserError(f"{len(rows)} rows cannot fit {len(features)} features and an intercept; "
                        f"add runs or epochs, or use fewer --use features")
    x = design(rows, features, "the features file")
    y = np.array([r[target] for r in rows], dtype=np.float64)
    a = np.c_[np.ones(len(x)), x]
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    pred = a @ coef
    return {"features": list(features), "target": target, "intercept": float(coef[0]),
            "coefficients": {f: float(c) for f, c in zip(features, coef[1:])},
            "train_mae": float(np.mean(np.abs(pred - y))), "n_rows": len(rows)}


def predict(model: dict, rows) -> np.ndarray:
    """Predicted gap for each row."""
    x = design(rows, model["features"], "the input")
    w = np.array([model["coefficients"][f] for f in model["features"]])
    return model["intercept"] + x @ w


def evaluate(rows, features: list, by: str = "run"):
    """Leave-one-`by`-out predictions of the test accuracy: (rows with predictions, MAE)."""
    keys = sorted({r[by] for r in rows})
    if len(keys) < 2:
        raise UserError(f"leave-one-{by}-out needs at least two {by}s; the features have {len(keys)}")
    out = []
    for k in keys:
        train_rows = [r for r in rows if r[by] != k]
        test_rows = [r for r in rows if r[by] == k]
        model = fit(train_rows, features)
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
