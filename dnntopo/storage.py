"""The run folder and its files (DESIGN.md's storage contract), all written atomically.

RUN = RUNS/<net>_<dataset>/trial_<k>/ holding config.json, stats.csv, checkpoints/,
topology/epoch_XXXX.h5 and plots/.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dnntopo import __version__
from dnntopo.errors import UserError
from hpc.io import atomic_path, clean_stale, write_text_atomic

STATS_FIELDS = ("epoch", "loss_train", "loss_test", "acc_train", "acc_test")
#: Columns written only by runs trained with --val-samples.
VAL_FIELDS = ("loss_val", "acc_val")


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


#: Keys every run's config.json holds (written by `dnntopo train`).
CONFIG_KEYS = ("net", "dataset", "trial", "input_shape", "num_classes")


def read_config(run: Run) -> dict:
    try:
        cfg = json.loads(run.config.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read {run.config}: {exc}; it is damaged: train the run again "
                        f"(dnntopo train ... --restart)") from None
    missing = [k for k in CONFIG_KEYS if not isinstance(cfg, dict) or k not in cfg]
    if missing:
        raise UserError(f"{run.config} is not a run's config (it lacks {', '.join(missing)}); it is "
                        f"damaged: train the run again (dnntopo train ... --restart)")
    return cfg


def write_config(run: Run, config: dict):
    data = dict(config, version=__version__)
    with writing(run.config):
        write_text_atomic(run.config, json.dumps(data, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def writing(path):
    """Turn a failed write (read-only folder, full disk, ...) into one line naming the file."""
    try:
        yield
    except OSError as exc:
        why = exc.strerror or str(exc) or type(exc).__name__
        raise UserError(f"cannot write {path}: {why}; check the folder's permissions and free space") from None


def check_space(folder, need: int, what: str):
    """Before heavy work: the folder must be writable and hold `need` bytes (and 16 MB more)."""
    folder = Path(folder)
    probe = folder / f".write-test-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write in {folder}: {exc.strerror or exc}; check its permissions") from None
    free = shutil.disk_usage(folder).free
    if free < need + 16 * 2**20:
        raise UserError(f"{folder} has {free / 2**20:.0f} MB free, {what} need about "
                        f"{(need + 16 * 2**20) / 2**20:.0f} MB; free some space or choose another folder")


def read_stats(run: Run) -> list[dict]:
    """Rows of stats.csv as dicts of numbers (empty when there is none yet)."""
    if not run.stats.exists():
        return []
    try:
        with open(run.stats, newline="") as fh:
            rows = list(csv.DictReader(fh))
        keys = STATS_FIELDS + tuple(k for k in VAL_FIELDS if rows and k in rows[0])
        out = [{k: (int(r[k]) if k == "epoch" else float(r[k])) for k in keys} for r in rows]
    except (OSError, UnicodeDecodeError, csv.Error, KeyError, TypeError, ValueError) as exc:
        raise UserError(f"cannot read {run.stats}: not the stats of `dnntopo train` ({exc}); it is "
                        f"damaged: train the run again (dnntopo train ... --restart)") from None
    return out


def write_stats(run: Run, rows: list[dict]):
    buf = io.StringIO()
    keys = STATS_FIELDS + tuple(k for k in VAL_FIELDS if rows and all(k in r for r in rows))
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for r in sorted(rows, key=lambda r: r["epoch"]):
        w.writerow({k: (r[k] if k == "epoch" else f"{r[k]:.6f}") for k in keys})
    with writing(run.stats):
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
    with writing(path), atomic_path(path) as tmp:
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


#: Files of a run that no command's --out may overwrite (they are the run's record).
PROTECTED = ("config.json", "stats.csv")


def check_output(path, kinds: tuple = (), mine=None, overwrite: bool = False, what: str = "--out") -> Path:
    """Refuse an output path that would overwrite a run's own files (config.json, stats.csv,
    checkpoints, epoch files, logs, spec.json), one whose suffix is not among `kinds`, or an
    existing file that is not of the kind this command writes (`mine(path)` false), unless
    `overwrite`; return it as a Path."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} {path} is a folder; give a file name")
    parts = path.resolve().parts
    in_run = any((Path(*parts[:k]) / "config.json").is_file() for k in range(1, len(parts)))
    if in_run and (path.name in PROTECTED or path.suffix in (".pt", ".h5") or path.name == "spec.json"
                   or "checkpoints" in parts or "logs" in parts):
        raise UserError(f"{what} {path} is one of its run's own files; choose another name")
    if kinds and path.suffix.lower() not in kinds:
        raise UserError(f"{what} {path}: unsupported file type {path.suffix or '(none)'}; use "
                        f"{', '.join(kinds)}")
    if path.exists() and not overwrite and not (mine is not None and _safe(mine, path)):
        raise UserError(f"{what} {path} exists and was not written by this command; remove it, "
                        f"choose another name, or pass --overwrite")
    return path


def _safe(test, path) -> bool:
    try:
        return bool(test(path))
    except (OSError, ValueError, UnicodeDecodeError):
        return False


def starts_with(*heads: bytes):
    """A `mine` test for check_output: the existing file begins with one of `heads`."""
    def test(path):
        with open(path, "rb") as fh:
            first = fh.read(max(len(h) for h in heads))
        return any(first.startswith(h) for h in heads)
    return test
