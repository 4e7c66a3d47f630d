#!/usr/bin/env python
"""A small study on Fashion-MNIST: several LeNet runs of varied difficulty (permuted labels,
training subsets), their topology at several epochs, the early-stopping rule per run, and the
generalization gap predicted without a test set (leave-one-run-out), beside the baselines a
reviewer asks for (the other runs' mean gap; train accuracy, epoch, train loss alone; topology
plus train accuracy).

The graphs are built from training images (`sample_split="train"`: the first N images of the
training file), so the gap model never sees test data; the test accuracy is used only as the
target and to score the predictions.

    python scripts/study_fashion_mnist.py [--quick] [--run-dir study_runs] [--cluster slurm|local]

Without --cluster everything runs in this process; with it, each run goes through
`dnntopo submit`'s machinery (SLURM or local jobs). --quick finishes in a few minutes on
2 cores; the default study in well under 30.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dnntopo import analysis, pipeline, report, storage  # noqa: E402
from dnntopo.spec import TopologySpec  # noqa: E402
from dnntopo.train import TrainConfig, train  # noqa: E402
from hpc.comm import SerialComm  # noqa: E402

QUICK = dict(runs=[(0.0, 0.1), (0.25, 0.1), (0.5, 0.1), (0.0, 0.05)], epochs=3,
             topo_epochs=[0, 1, 2, 3], samples=300, max_dim=1)
FULL = dict(runs=[(p, s) for s in (0.25, 1.0) for p in (0.0, 0.25, 0.5)], epochs=10,
            topo_epochs=[0, 1, 2, 4, 6, 8, 10], samples=1000, max_dim=2)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="4 small runs of 3 epochs (a few minutes)")
    ap.add_argument("--run-dir", default="study_runs")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--cluster", default=None, choices=("slurm", "local"))
    ap.add_argument("--lr", type=float, default=0.01)
    a = ap.parse_args()
    plan = QUICK if a.quick else FULL
    t0 = time.time()
    # one topology spec for every run and epoch (the analyses refuse mixed specs), on training
    # images: the gap model promises no test set
    spec = TopologySpec(samples=plan["samples"], sample_split="train", max_distance=0.6, max_dim=plan["max_dim"])
    opts = pipeline.TopologyOptions(epochs=tuple(plan["topo_epochs"]), quiet=True)
    runs = []
    for trial, (permute, subset) in enumerate(plan["runs"]):
        tcfg = TrainConfig(epochs=plan["epochs"], lr=a.lr, save_epochs=plan["topo_epochs"], permute_labels=permute,
                           subset=subset, seed=trial, trial=trial, run_dir=a.run_dir, data_root=a.data_root)
        print(f"run {trial}: permuted labels {permute:.2f}, training subset {subset:.2f}", file=sys.stderr, flush=True)
        if a.cluster:
            from dnntopo import jobs
            from hpc.submit import Scheduler
            jobs.submit_run(tcfg, spec, Scheduler(None, a.cluster), topology_epochs=plan["topo_epochs"],
                            opts=opts, wait=True)
            run = storage.Run(storage.run_path(a.run_dir, tcfg.net, tcfg.dataset, trial))
        else:
            run = train(tcfg, quiet=True)
            pipeline.run_topology(SerialComm(), run, spec, opts)
        runs.append((run, permute, subset))

    print("\nearly stopping (Betti-1 peak density; stop at the first move back toward higher density "
          "by more than epsilon 0.005)")
    for run, permute, subset in runs:
        rows, stop = analysis.early_stop_table(run, 1)
        best = max(rows, key=lambda r: r["acc_test"])
        edge = [str(r["epoch"]) for r in rows if r["at_threshold"]]
        print(f"  {run.root.name} (permuted {permute:.2f}, subset {subset:.2f}): proposed stop "
              f"{stop if stop is not None else '-'}, best test accuracy at epoch {best['epoch']}"
              + (f" (peak at the threshold, no position: epochs {' '.join(edge)})" if edge else ""))

    feats = analysis.feature_rows([r.root for r, _, _ in runs])
    rows, mae = analysis.evaluate(feats, list(analysis.DEFAULT_FEATURES))
    table = [{"run": Path(r["run"]).name, "epoch": int(r["epoch"]), "gap": r["gap"], "gap_pred": r["gap_pred"],
              "error": r["error"]} for r in rows]
    print("\ngeneralization gap predicted without a test set (leave-one-run-out)")
    sys.stdout.write(report.render(table, "table"))
    print(f"mean absolute error of the predicted test accuracy: {mae:.4f}")
    print(f"(baseline, the other runs' mean gap: {analysis.baseline_error(feats):.4f})")
    print(f"\nbaselines, leave-one-run-out on the same folds (predicted test accuracy: MAE, R², Kendall's tau "
          f"over all {len(rows)} run-epochs)")
    sys.stdout.write(report.render(analysis.compare(feats, list(analysis.DEFAULT_FEATURES)), "table"))
    print(f"({len(runs)} runs, {len(rows)} epochs, {time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
