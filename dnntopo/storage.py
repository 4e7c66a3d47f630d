"""The run folder and its files (DESIGN.md's storage contract), all written atomically.

RUN = RUNS/<net>_<dataset>/trial_<k>/ holding config.json, stats.csv, checkpoints/,
topology/epoch_XXXX.h5 and plots/.
"""
from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dnntopo import __version__
from dnntopo.errors import UserError
from hpc.io import atomic_path, clean_stale, write_text_atomic

STATS_FIELDS = ("epoch", "loss_train", "loss_test", "acc_train", "acc_test")


def run_path(run_dir, net: str, dataset: str, trial: int) -> Path:
    return Path(run_dir) / f"{net}_{dataset}" / f"trial_{trial}"


@dataclass(frozen=True)
class Run:
    """Paths inside one run folder."""
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def stats(self) -> Path:
        return self.root / "stats.csv"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def topology(self) -> Path:
        return self.root / "topology"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def resume_state(self) -> Path:
        return self.checkpoints / "resume.pt"

    def checkpoint(self, epoch: int) -> Path:
        return self.checkpoints / f"epoch_{epoch:04d}.pt"

    def epoch_file(self, epoch: int) -> Path:
        return self.topology / f"epoch_{epoch:04d}.h5"

    def saved_epochs(self) -> list[int]:
        return sorted(int(p.stem.split("_")[1]) for p in self.checkpoints.glob("epoch_*.pt"))

    def topology_epochs(self) -> list[int]:
        return sorted(int(p.stem.split("_")[1]) for p in self.topology.glob("epoch_*.h5"))


def open_run(path) -> Run:
    """An existing run folder (one with config.json), or one clear error."""
    run = Run(Path(path))
    if not run.config.exists():
        raise UserError(f"--run {path}: no run there (config.json missing); give the folder "
                        f"RUNS/<net>_<dataset>/trial_<k> that `dnntopo train` made")
    return run


def read_config(run: Run) -> dict:
    try:
        return json.loads(run.config.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read {run.config}: {exc}; rerun `dnntopo train` for this run") from None


def write_config(run: Run, config: dict):
    data = dict(config, version=__version__)
    write_text_atomic(run.config, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_stats(run: Run) -> list[dict]:
    """Rows of stats.csv as dicts of numbers (empty when there is none yet)."""
    if not run.stats.exists():
        return []
    with open(run.stats, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [{k: (int(v) if k == "epoch" else float(v)) for k, v in r.items()} for r in rows]


def write_stats(run: Run, rows: list[dict]):
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=STATS_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in sorted(rows, key=lambda r: r["epoch"]):
        w.writerow({k: (r[k] if k == "epoch" else f"{r[k]:.6f}") for k in STATS_FIELDS})
    write_text_atomic(run.stats, buf.getvalue())


def h5_file(path, mode="r"):
    """h5py.File with file locking off when HDF5_USE_FILE_LOCKING=FALSE (NFS/Lustre sites)."""
    import h5py
    try:
        return h5py.File(path, mode)
    except OSError as exc:
        msg = str(exc)
        if "unable to lock file" in msg.lower() or "file locking" in msg.lower():
            raise UserError(f"cannot open {path}: HDF5 file locking failed ({msg}); on a shared "
                            f"filesystem set HDF5_USE_FILE_LOCKING=FALSE") from None
        if not Path(path).exists() and mode == "r":
            raise UserError(f"{path} does not exist") from None
        why = "truncated or not an HDF5 file" if "signature" in msg or "truncated" in msg or \
            "superblock" in msg or "sblock" in msg else msg
        raise UserError(f"cannot open {path}: {why}; remove it and recompute the epoch "
                        f"(dnntopo topology ... --force)") from None


def write_epoch_file(path, attrs: dict, arrays: dict, group_attrs: dict | None = None,
                     before_close=None):
    """Write one epoch file atomically: root `attrs`, datasets `arrays` by path, group attributes.

    The one writer of epoch files. `before_close()` runs with everything written but the file
    not yet renamed (a test hook). Stale temporaries of this file are removed first.
    """
    path = Path(path)
    clean_stale(path)
    with atomic_path(path) as tmp:
        with h5_file(tmp, "w") as f:
            for k, v in attrs.items():
                f.attrs[k] = v
            for key, arr in arrays.items():
                f.create_dataset(key, data=arr)
            for gname, gattrs in (group_attrs or {}).items():
                g = f.require_group(gname)
                for k, v in gattrs.items():
                    g.attrs[k] = v
            if before_close is not None:
                before_close()


def epoch_contents(attrs: dict, node_layer, graph_attrs: dict, edges, diagrams, grid, density,
                   bettis, summaries, dense=None, activations=None):
    """(attrs, arrays, group attributes) of an epoch file, in the storage contract's layout."""
    arrays = {"graph/edges/i": edges[0], "graph/edges/j": edges[1], "graph/edges/distance": edges[2],
              "graph/layer": node_layer, "betti/distance": grid, "betti/density": density}
    if dense is not None:
        arrays["graph/distance"] = dense
    if activations is not None:
        arrays["activations"] = activations
    for k, (dg, b) in enumerate(zip(diagrams, bettis)):
        arrays[f"diagrams/dim_{k}"] = dg
        arrays[f"betti/dim_{k}"] = b
    gattrs = {"graph": dict(graph_attrs)}
    gattrs.update({f"summary/dim_{k}": s for k, s in enumerate(summaries)})
    return dict(attrs, version=__version__), arrays, gattrs


def inspect_epoch(path) -> tuple[dict, set]:
    """(root attributes, every group and dataset path) of an epoch file; unreadable -> UserError."""
    with h5_file(path) as f:
        keys = []
        try:
            f.visit(keys.append)
            attrs = {k: _py(v) for k, v in f.attrs.items()}
        except (OSError, RuntimeError, KeyError) as exc:
            raise UserError(f"cannot read {path}: {exc}; remove it and recompute the epoch") from None
    return attrs, set(keys)


def read_attrs(path) -> dict:
    with h5_file(path) as f:
        return {k: _py(v) for k, v in f.attrs.items()}


def _py(v):
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, bytes):
        return v.decode()
    return v


def runs_under(folder) -> list[Run]:
    """Every run folder below `folder` (or `folder` itself when it is a run)."""
    folder = Path(folder)
    return [Run(p.parent) for p in sorted(folder.rglob("config.json"))] if folder.is_dir() else []


def ensure_dirs(run: Run):
    for d in (run.root, run.checkpoints, run.topology, run.plots):
        os.makedirs(d, exist_ok=True)


def read_epoch(path, edges: bool = False) -> dict:
    """An epoch file as plain arrays: attrs, diagrams, betti curves, summaries (edges if asked)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} does not exist; compute it with `dnntopo topology --run ... "
                        f"--epochs {path.stem.split('_')[-1].lstrip('0') or '0'}`")
    with h5_file(path) as f:
        try:
            out = {"attrs": {k: _py(v) for k, v in f.attrs.items()}, "diagrams": {}, "betti": {},
                   "summary": {}}
            for name, ds in f["diagrams"].items():
                out["diagrams"][int(name.split("_")[1])] = ds[()]
            for name, ds in f["betti"].items():
                key = int(name.split("_")[1]) if name.startswith("dim_") else name
                out["betti"][key] = ds[()]
            for name, g in f["summary"].items():
                out["summary"][int(name.split("_")[1])] = {k: _py(v) for k, v in g.attrs.items()}
            if edges:
                e = f["graph/edges"]
                out["edges"] = (e["i"][()], e["j"][()], e["distance"][()])
                out["layer"] = f["graph/layer"][()]
                out["graph_attrs"] = {k: _py(v) for k, v in f["graph"].attrs.items()}
                for key in ("graph/distance", "activations"):
                    if key in f:
                        out[key] = f[key][()]
        except (KeyError, OSError) as exc:
            raise UserError(f"{path} lacks {exc}; it was not written by this version of dnntopo, "
                            f"recompute it with --force") from None
    return out
