"""The summary table of a run: per epoch, accuracy and the summaries of each dimension."""
from __future__ import annotations

import csv
import io
import json
import math

from dnntopo import storage
from dnntopo.errors import UserError
from dnntopo.spec import check_epochs
from dnntopo.summaries import SUMMARY_KEYS


def rows(run: storage.Run, allow_mixed: bool = False, window=None) -> list[dict]:
    """One dict per computed epoch: epoch, accuracies, and `<key>_<dim>` for each summary
    (over the distance `window` (lo, hi) when given, see `summaries.windowed`).

    Epochs computed with different topology specs are refused unless `allow_mixed`."""
    from dnntopo.summaries import check_window, windowed
    window = check_window(window)
    stats = {r["epoch"]: r for r in storage.read_stats(run)}
    out = []
    epochs = run.topology_epochs()
    check_epochs(run, epochs, allow_mixed)
    for e in epochs:
        ep = storage.read_epoch(run.epoch_file(e))
        if window is not None:
            ep["summary"] = windowed(ep, window, str(run.epoch_file(e)))
        r = {"epoch": e, "acc_train": stats.get(e, {}).get("acc_train", math.nan),
             "acc_test": stats.get(e, {}).get("acc_test", math.nan), "n_nodes": ep["attrs"]["n_nodes"],
             # files written before the split was recorded were computed on the test split
             "sample_split": str(ep["attrs"].get("sample_split", "test"))}
        for d in sorted(ep["summary"]):
            for k in SUMMARY_KEYS:
                r[f"{k}_{d}"] = ep["summary"][d].get(k, math.nan)   # older files lack newer keys
        out.append(r)
    if not out:
        raise UserError(f"no epoch files in {run.topology}; run `dnntopo topology --run {run.root}` first")
    return out


def render(table: list[dict], fmt: str) -> str:
    cols = list(table[0])
    for r in table[1:]:
        cols += [c for c in r if c not in cols]
    if fmt == "json":
        return json.dumps([{c: (None if isinstance(r.get(c), float) and math.isnan(r[c]) else r.get(c))
                            for c in cols} for r in table], indent=1) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        w.writerows(table)
        return buf.getvalue()
    cells = [[_fmt(r.get(c)) for c in cols] for r in table]
    widths = [max(len(c), *(len(row[k]) for row in cells)) for k, c in enumerate(cols)]
    line = lambda vals: "  ".join(v.rjust(w) for v, w in zip(vals, widths))  # noqa: E731
    return "\n".join([line(cols), line(["-" * w for w in widths])] + [line(r) for r in cells]) + "\n"


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    return str(v)
