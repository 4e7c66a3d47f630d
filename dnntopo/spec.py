"""The topology spec: how an epoch's topology is computed, validated once and immutable.

Samples and their split, observed layers, grouping, threshold, dimensions, backend and its
options, collapse, and the summary parameters. A spec is built from CLI flags
(`from_flags`), from Python (`TopologySpec(...)`) or from an epoch file (`from_attrs`); it
alone produces the file's attributes (`attrs`) and alone decides whether an existing epoch
file is current (`epoch_state`). Analyses use `require_same` so that epochs of different
specs are never mixed silently.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from pathlib import Path

from dnntopo.errors import UserError
from dnntopo.params import add_arguments, flag_of, given, param

SPLITS = ("test", "train", "own")
BACKENDS = ("giotto", "ripser", "dipha")
COLLAPSE = ("auto", "on", "off")
LAUNCH = ("auto", "spawn", "mpiexec")
MAX_GRID_POINTS = 100_000
GROUP_TITLES = {"activations": "activations (topology spec)",
                "ph": "graph and persistent homology (topology spec)",
                "summaries": "summaries (topology spec)"}


@dataclass(frozen=True)
class TopologySpec:
    """How the topology of an epoch is computed. Fields with `result=False` (engine options)
    do not change the numbers and so do not make an existing epoch file stale."""
    samples: int = param(1000, "samples forwarded", type=int, group="activations")
    sample_split: str = param("test", "the first samples of the test images, of the training file, or "
                                      "of the run's own training samples (own: its subset, order and "
                                      "labels as trained)", type=str, choices=SPLITS, group="activations")
    layers: tuple = param((), "observed layers (default: the model's)", type=str, nargs="+",
                          group="activations")
    max_nodes: int = param(0, "group units (chunk averages per layer) down to this many nodes "
                              "(0: no grouping)", type=int, group="activations")
    max_distance: float = param(0.6, "keep edges with 1-|corr| <= this (0.6 = DIPHA's MAX_EPSILON 0.3)",
                                type=float, group="ph")
    max_dim: int = param(2, "homology dimensions 0..max-dim", type=int, group="ph")
    backend: str = param("giotto", "persistent-homology engine", type=str, choices=BACKENDS, group="ph")
    collapse: str = param("auto", "exact edge collapse before the reduction (giotto, ripser; see README)",
                          type=str, choices=COLLAPSE, group="ph", result=False)
    threads: int = param(0, "PH threads (0: all cores)", type=int, group="ph", result=False)
    max_memory: float = param(0.0, "refuse, before the heavy work, an epoch whose PH the pre-flight "
                                   "estimates above this many GiB (0: the machine's available memory, "
                                   "its cgroup limit, or the SLURM allocation)", type=float, group="ph",
                              result=False)
    dipha: str = param("", "DIPHA binary for --backend dipha (default $DIPHA)", type=str, group="ph",
                       result=False)
    dipha_launch: str = param("auto", "start DIPHA by MPI spawn, a separate mpiexec, or spawn with "
                                      "fallback", type=str, choices=LAUNCH, group="ph", result=False)
    dipha_procs: int = param(0, "DIPHA processes (0: the job's ranks)", type=int, group="ph", result=False)
    dipha_timeout: float = param(3600.0, "seconds to wait for DIPHA", type=float, group="ph", result=False)
    min_persistence: float = param(0.02, "persistence floor of life/midlife", type=float, group="summaries")
    grid_points: int = param(121, "points of the Betti-curve grid", type=int, group="summaries")

    def __post_init__(self):
        layers = self.layers
        if isinstance(layers, str):
            layers = tuple(x for x in layers.split(",") if x)
        object.__setattr__(self, "layers", tuple(str(x) for x in (layers or ())))
        for f in fields(self):
            kind = f.metadata["type"]
            v = getattr(self, f.name)
            if kind is int:
                if isinstance(v, bool) or not isinstance(v, int):
                    if isinstance(v, float) and v.is_integer():
                        object.__setattr__(self, f.name, int(v))
                    elif hasattr(v, "item") and float(v.item()).is_integer():  # numpy scalars
                        object.__setattr__(self, f.name, int(v.item()))
                    else:
                        _bad(f.name, v, "must be a whole number")
            elif kind is float:
                try:
                    object.__setattr__(self, f.name, float(v))
                except (TypeError, ValueError):
                    _bad(f.name, v, "must be a number")
                if not math.isfinite(getattr(self, f.name)):
                    _bad(f.name, v, "must be a finite number")
            elif kind is str and f.name != "layers" and not isinstance(v, str):
                _bad(f.name, v, "must be text")
            if f.metadata["choices"] and v not in f.metadata["choices"]:
                _bad(f.name, v, f"choose one of {', '.join(f.metadata['choices'])}")
        self._check()

    def _check(self):
        if self.samples < 2:
            _bad("samples", self.samples, "must be at least 2 (a correlation needs two samples)")
        if any(not x for x in self.layers):
            _bad("layers", " ".join(self.layers), "layer names must not be empty")
        dup = sorted({x for x in self.layers if self.layers.count(x) > 1})
        if dup:
            _bad("layers", " ".join(self.layers), f"{' '.join(dup)} given twice (each node once)")
        if self.max_nodes < 0 or self.max_nodes == 1:
            _bad("max_nodes", self.max_nodes, "must be 0 (no grouping) or at least 2")
        if not 0 < self.max_distance <= 1:
            _bad("max_distance", self.max_distance, "must lie in (0, 1] (distance is 1 - |corr|)")
        if self.max_dim < 0:
            _bad("max_dim", self.max_dim, "must be 0 or more")
        if self.threads < 0:
            _bad("threads", self.threads, "must be 0 (all cores) or more")
        if not (math.isfinite(self.max_memory) and self.max_memory >= 0):
            _bad("max_memory", self.max_memory, "must be a finite number of GiB >= 0 (0: what the machine leaves)")
        if not 0 <= self.min_persistence < self.max_distance:
            _bad("min_persistence", self.min_persistence,
                 f"must lie in [0, --max-distance {self.max_distance:g})")
        if not 2 <= self.grid_points <= MAX_GRID_POINTS:
            _bad("grid_points", self.grid_points, f"must lie in 2..{MAX_GRID_POINTS}")
        if self.dipha_procs < 0:
            _bad("dipha_procs", self.dipha_procs, "must be 0 (the job's ranks) or more")
        if self.dipha_timeout <= 0:
            _bad("dipha_timeout", self.dipha_timeout, "must be positive")
        if self.backend == "dipha":
            if self.collapse == "on":
                raise UserError("--collapse on: DIPHA reduces the whole complex; the collapse applies "
                                "to --backend giotto or ripser")
        else:
            extra = [f for f in ("dipha", "dipha_launch", "dipha_procs", "dipha_timeout")
                     if getattr(self, f) != _default(f)]
            if extra:
                raise UserError(f"{' '.join(_flag(f) for f in extra)}: only with --backend dipha "
                                f"(the backend is {self.backend})")

    # ---------------------------------------------------------------- building
    @classmethod
    def from_flags(cls, ns, base: "TopologySpec | None" = None) -> "TopologySpec":
        """The spec of parsed flags; with `base`, only the flags present override it."""
        values = given(ns, cls)
        if "layers" in values and values["layers"] is None:
            values["layers"] = ()
        return replace(base, **values) if base is not None else cls(**values)

    @classmethod
    def from_attrs(cls, attrs: dict) -> "TopologySpec":
        """The spec an epoch file was written with (fields it lacks take their defaults)."""
        names = {f.name for f in fields(cls)}
        values = {k: attrs[k] for k in names if k in attrs}
        if "samples" not in values and "n_samples" in attrs:
            values["samples"] = attrs["n_samples"]
        return cls(**values)

    @staticmethod
    def add_arguments(parser, suppress: bool = False):
        """The spec's flags, in argument groups (one place defines each parameter)."""
        add_arguments(parser, TopologySpec, suppress=suppress, titles=GROUP_TITLES)

    def resolved(self, net: str) -> "TopologySpec":
        """The spec with the default layers of `net` filled in (what an epoch file records)."""
        if self.layers:
            return self
        from dnntopo.models import DEFAULT_LAYERS
        return replace(self, layers=tuple(DEFAULT_LAYERS[net]))

    # ---------------------------------------------------------------- the file
    def attrs(self) -> dict:
        """Root attributes of an epoch file (with `n_samples`, the storage contract's name)."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = ",".join(v) if f.name == "layers" else v
        out["n_samples"] = self.samples
        return out

    def result_fields(self) -> dict:
        """The fields that change the numbers of an epoch (what must match to reuse a file)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("result", True)}

    def differences(self, other: "TopologySpec") -> list[tuple]:
        """(flag, this value, other's value) for each result field that differs."""
        out = []
        mine, theirs = self.result_fields(), other.result_fields()
        for k in mine:
            a, b = mine[k], theirs[k]
            same = math.isclose(a, b, rel_tol=0, abs_tol=1e-12) if isinstance(a, float) else a == b
            if not same:
                out.append((_flag(k), _show(a), _show(b)))
        return out

    def describe(self) -> str:
        """The result fields as flags (for messages)."""
        return " ".join(f"{_flag(k)} {_show(v)}" for k, v in self.result_fields().items())


def _default(name: str):
    return {f.name: f.default for f in fields(TopologySpec)}[name]


def _flag(name: str) -> str:
    return flag_of({f.name: f for f in fields(TopologySpec)}[name])


def _show(v) -> str:
    if isinstance(v, tuple):
        return " ".join(v) or "(default)"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _bad(name: str, value, why: str):
    raise UserError(f"{_flag(name)} {_show(value) if not isinstance(value, str) else value}: {why}")


# -------------------------------------------------------------------- epoch files

#: Datasets every complete epoch file holds (per dimension: diagrams/dim_k, betti/dim_k, summary/dim_k).
REQUIRED = ("graph/edges/i", "graph/edges/j", "graph/edges/distance", "graph/layer",
            "betti/distance", "betti/density")
RUN_KEYS = ("net", "dataset", "trial")


@dataclass(frozen=True)
class EpochState:
    """Whether an epoch's file is current for a spec, and if not, why."""
    epoch: int
    state: str          # current | missing | stale | unreadable | incomplete | no checkpoint
    reason: str = ""

    @property
    def current(self) -> bool:
        return self.state == "current"

    def __str__(self):
        return self.state if not self.reason else f"{self.state} ({self.reason})"


def epoch_state(run, epoch: int, spec: TopologySpec, config: dict, extras=()) -> EpochState:
    """The one rule for "this epoch file is current": it exists, is readable and complete
    (plus the `extras` datasets asked for), was written for this run and epoch with the same
    spec (result fields), and is newer than its checkpoint."""
    from dnntopo import storage
    path, ckpt = run.epoch_file(epoch), run.checkpoint(epoch)
    if not ckpt.exists():
        return EpochState(epoch, "no checkpoint", f"{ckpt.name} missing")
    if not path.exists():
        return EpochState(epoch, "missing")
    try:
        attrs, keys = storage.inspect_epoch(path)
    except UserError as exc:
        return EpochState(epoch, "unreadable", str(exc).split(";")[0])
    try:
        have = TopologySpec.from_attrs(attrs)
        max_dim = int(attrs["max_dim"])
    except (UserError, KeyError, TypeError, ValueError) as exc:
        return EpochState(epoch, "stale", f"its spec is not readable: {exc}")
    need = list(REQUIRED) + [f"{g}/dim_{k}" for g in ("diagrams", "betti", "summary")
                             for k in range(max_dim + 1)] + list(extras)
    lacking = [k for k in need if k not in keys]
    if lacking:
        return EpochState(epoch, "incomplete", f"lacks {', '.join(lacking[:3])}")
    run_diff = [f"{k} {attrs.get(k)} ({config.get(k)} in config.json)" for k in RUN_KEYS
                if str(attrs.get(k)) != str(config.get(k))]
    if str(attrs.get("epoch")) != str(epoch):
        run_diff.append(f"epoch {attrs.get('epoch')}")
    if run_diff:
        return EpochState(epoch, "stale", "written for another run: " + ", ".join(run_diff))
    diff = have.differences(spec.resolved(config["net"]))
    if diff:
        return EpochState(epoch, "stale", "; ".join(f"file has {f} {a}, {b} asked" for f, a, b in diff))
    if ckpt.stat().st_mtime > path.stat().st_mtime:
        return EpochState(epoch, "stale", "older than its checkpoint")
    return EpochState(epoch, "current")


def record(run, spec: TopologySpec):
    """Remember `spec` as the run's requested topology spec (RUN/topology/spec.json), which
    `dnntopo status` compares epoch files with."""
    import json
    from hpc.io import write_text_atomic
    write_text_atomic(Path(run.topology) / "spec.json",
                      json.dumps({k: (list(v) if isinstance(v, tuple) else v)
                                  for k, v in spec.attrs().items() if k != "n_samples"}, indent=1) + "\n")


def recorded(run) -> TopologySpec | None:
    """The run's last requested spec (None when no topology was requested yet)."""
    import json
    path = Path(run.topology) / "spec.json"
    if not path.exists():
        return None
    try:
        return TopologySpec(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise UserError(f"{path}: not a topology spec ({exc}); remove it, then run "
                        f"`dnntopo topology` again") from None


def require_same(items: list, allow: bool = False, what: str = "epochs",
                 flag: str = "--allow-mixed-specs") -> TopologySpec | None:
    """Refuse to combine epoch files of different specs: `items` are (label, attrs) pairs.

    Returns the common spec (None when `allow` lets different ones through)."""
    groups: dict = {}
    for label, attrs in items:
        spec = TopologySpec.from_attrs(attrs)
        key = tuple(sorted((k, str(v)) for k, v in spec.result_fields().items()))
        groups.setdefault(key, (spec, []))[1].append(str(label))
    if len(groups) <= 1:
        return next(iter(groups.values()))[0] if groups else None
    if allow:
        return None
    (first, a), *rest = groups.values()
    parts = [f"{what} {' '.join(a)} with " + ", ".join(f"{f} {x}" for f, x, _ in first.differences(rest[0][0]))]
    for spec, labels in rest:
        parts.append(f"{what} {' '.join(labels)} with " +
                     ", ".join(f"{f} {x}" for f, x, _ in spec.differences(first)))
    raise UserError(f"different topology specs: {'; '.join(parts)}; recompute them with the same "
                    f"flags, or pass {flag} to combine them anyway")


def check_epochs(run, epochs, allow: bool = False) -> TopologySpec | None:
    """`require_same` over the epoch files of `epochs` of one run."""
    from dnntopo import storage
    return require_same([(e, storage.read_attrs(run.epoch_file(e))) for e in epochs], allow)
