#!/usr/bin/env python
"""How the Betti curves and summaries of one epoch change with the node budget (--max-nodes).

For each budget the epoch's topology is computed by `dnntopo topology` in a scratch copy of the
run (its config, stats and the one checkpoint), and the table puts beside the full graph: the
nodes and edges, the seconds of the whole epoch, the dimension-1 summaries (Betti max per node,
the distance and density of the peak, life, midlife) and how close the Betti-1 curve per node
stays to the full one (Pearson correlation over the distance grid, and the largest gap).

    python scripts/bench_max_nodes.py --run RUN --epoch 1 [--budgets 0 4000 2000 1000]
        [--max-dim 1] [--samples 1000] [--max-distance 0.6]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dnntopo import storage  # noqa: E402


def compute(run: Path, epoch: int, budget: int, args, scratch: Path) -> tuple[dict, float]:
    """The epoch file (as read_epoch gives it) of one budget, and the seconds it took."""
    copy = scratch / f"nodes_{budget}" / run.parent.name / run.name
    (copy / "checkpoints").mkdir(parents=True)
    for name in ("config.json", "stats.csv"):
        shutil.copy(run / name, copy / name)
    src = storage.Run(run).checkpoint(epoch)
    os.symlink(src.resolve(), copy / "checkpoints" / src.name)
    cmd = [sys.executable, "-m", "dnntopo", "-q", "topology", "--run", str(copy), "--epochs", str(epoch),
           "--max-nodes", str(budget), "--max-dim", str(args.max_dim), "--samples", str(args.samples),
           "--max-distance", str(args.max_distance), "--sample-split", "train"]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=dict(os.environ, HPC_NO_MPI="1"))
    took = time.perf_counter() - t
    return storage.read_epoch(storage.Run(copy).epoch_file(epoch), edges=True), took


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True)
    ap.add_argument("--epoch", type=int, required=True)
    ap.add_argument("--budgets", type=int, nargs="+", default=[0, 4000, 2000, 1000], help="0: every unit")
    ap.add_argument("--max-dim", type=int, default=1)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--max-distance", type=float, default=0.6)
    args = ap.parse_args()
    run = Path(args.run).resolve()
    rows, full = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for budget in args.budgets:
            ep, took = compute(run, args.epoch, budget, args, Path(tmp))
            n = ep["attrs"]["n_nodes"]
            curve = ep["betti"][1] / n
            full = full if full is not None else curve
            s = ep["summary"][1]
            corr = float(np.corrcoef(curve, full)[0, 1]) if np.ptp(curve) > 0 and np.ptp(full) > 0 else float("nan")
            rows.append((budget or "all", n, len(ep["edges"][0]), took, s["betti_max"] / n, s["distance_at_max"],
                         s["density_at_max"], s["life"], s["midlife"], corr, float(np.max(np.abs(curve - full)))))
            print(f"budget {rows[-1][0]}: {took:.1f} s", file=sys.stderr, flush=True)
    cfg = storage.read_config(storage.Run(run))
    print(f"{cfg['net']} on {cfg['dataset']}, epoch {args.epoch}: {args.samples} training samples, distance "
          f"<= {args.max_distance}, dims 0-{args.max_dim} (seconds: the whole epoch, extraction to file)")
    head = ("budget", "nodes", "edges", "seconds", "b1max/node", "dist@max", "dens@max", "life_1", "midlife_1",
            "corr(curve)", "max|diff|")
    print("  ".join(f"{h:>11}" for h in head))
    for r in rows:
        print("  ".join(f"{v:>11}" if isinstance(v, (int, str)) else f"{v:>11.4g}" for v in r))


if __name__ == "__main__":
    main()
