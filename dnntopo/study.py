"""A study: a grid of runs (nets x datasets x subsets x label noise x seeds x rates) from one
TOML file, trained and computed through the same scheduler as `dnntopo submit` (or in this
process), then reported with the analyses.

    name = "fmnist-noise"
    run_dir = "study_runs"            # relative to the study file's folder
    [grid]                            # every combination is one run (lists of values)
    net = ["lenet"]
    dataset = ["fashion_mnist"]
    subset = [0.05, 0.1]
    permute_labels = [0.0, 0.5]
    seed = [0, 1]
    lr = [0.01]
    [train]                           # training parameters shared by every run
    epochs = 5
    save_epochs = [0, 1, 2, 3, 4, 5]
    [topology]                        # the topology spec (TopologySpec fields) and its epochs
    samples = 300
    max_dim = 1
    sample_split = "own"
    epochs = [0, 1, 2, 3, 4, 5]

Runs are numbered in grid order (trial k of `<net>_<dataset>`). A rerun does only what is
missing: training that is complete is reused, epoch files that are current are kept.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from dnntopo.errors import UserError
from dnntopo.spec import TopologySpec
from dnntopo.train import TrainConfig

#: Training parameters a grid may vary.
GRID_KEYS = ("net", "dataset", "subset", "permute_labels", "binarize_labels", "seed", "lr", "batch_size")
SECTIONS = ("name", "run_dir", "grid", "train", "topology")


@dataclass(frozen=True)
class Study:
    """A validated study file."""
    path: Path
    name: str
    run_dir: Path
    grid: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    spec: TopologySpec = TopologySpec()
    topology_epochs: tuple = ()

    def runs(self) -> list[TrainConfig]:
        """One training config per grid point, numbered in grid order."""
        keys = list(self.grid)
        out = []
        for k, values in enumerate(itertools.product(*(self.grid[key] for key in keys))):
            cfg = dict(self.train, **dict(zip(keys, values)), trial=k, run_dir=str(self.run_dir))
            try:
                tcfg = TrainConfig(**cfg)
                tcfg.validate()
            except TypeError as exc:
                raise UserError(f"{self.path}: {exc}") from None
            except UserError as exc:
                raise UserError(f"{self.path}, run {k} ({_point(keys, values)}): {exc}") from None
            out.append(tcfg)
        return out


def _point(keys, values) -> str:
    return ", ".join(f"{k}={v}" for k, v in zip(keys, values))


def load(path) -> Study:
    """Read and validate a study file; every problem is one line naming the file and the key."""
    import tomllib
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"study file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"study file {path}: not valid TOML ({exc})") from None
    unknown = sorted(set(doc) - set(SECTIONS))
    if unknown:
        raise UserError(f"{path}: unknown key {', '.join(unknown)} (valid: {', '.join(SECTIONS)})")
    grid = doc.get("grid", {})
    train = dict(doc.get("train", {}))
    topo = dict(doc.get("topology", {}))
    for section, value in (("grid", grid), ("train", train), ("topology", topo)):
        if not isinstance(value, dict):
            raise UserError(f"{path}: [{section}] must be a table")
    bad = sorted(set(grid) - set(GRID_KEYS))
    if bad:
        raise UserError(f"{path}: [grid] cannot vary {', '.join(bad)} (it can vary {', '.join(GRID_KEYS)})")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise UserError(f"{path}: [grid] {key} must be a non-empty list of values")
    train_names = {f.name for f in fields(TrainConfig)} - {"trial", "run_dir"}
    bad = sorted(set(train) - train_names)
    if bad:
        raise UserError(f"{path}: [train] unknown key {', '.join(bad)} (valid: {', '.join(sorted(train_names))})")
    both = sorted(set(train) & set(grid))
    if both:
        raise UserError(f"{path}: {', '.join(both)} given in both [grid] and [train]; keep one")
    epochs = topo.pop("epochs", [])
    if not isinstance(epochs, list) or not all(isinstance(e, int) for e in epochs):
        raise UserError(f"{path}: [topology] epochs must be a list of whole numbers")
    spec_names = {f.name for f in fields(TopologySpec)}
    bad = sorted(set(topo) - spec_names)
    if bad:
        raise UserError(f"{path}: [topology] unknown key {', '.join(bad)} (valid: epochs, "
                        f"{', '.join(sorted(spec_names))})")
    try:
        spec = TopologySpec(**topo)
    except UserError as exc:
        raise UserError(f"{path}: [topology] {exc}") from None
    name = doc.get("name", path.stem)
    if not isinstance(name, str) or not name or "/" in name:
        raise UserError(f"{path}: name must be a plain word")
    run_dir = Path(doc.get("run_dir", "study_runs"))
    if not run_dir.is_absolute():
        run_dir = (path.resolve().parent / run_dir).resolve()
    study = Study(path, name, run_dir, grid, train, spec, tuple(epochs))
    study.runs()   # validate every grid point now
    return study


def run(study: Study, scheduler=None, wait: bool = True, quiet: bool = True) -> list:
    """Train and compute every run of the study: through `scheduler` (submitit, SLURM or local:
    training as one job array, each run's topology as an array after its training), or in this
    process when `scheduler` is None. Returns the run folders."""
    from dnntopo import jobs, pipeline
    opts = pipeline.TopologyOptions(quiet=quiet)
    plans = [jobs.plan_run(t, study.spec, study.topology_epochs, opts) for t in study.runs()]
    if scheduler is None:
        from hpc.comm import SerialComm
        for p in plans:
            if p.need_train:
                pipeline.train_run(SerialComm(), p.tcfg, quiet=quiet, resume=True)
            if p.todo:
                pipeline.run_topology(SerialComm(), p.run, study.spec, replace(opts, epochs=tuple(p.todo)))
    else:
        logs = study.run_dir / "logs" / study.name
        logs.mkdir(parents=True, exist_ok=True)
        scheduler.folder = logs
        jobs.submit_plans(plans, scheduler, study.name, wait=wait)
    return [p.run for p in plans]


def summary_lines(study: Study) -> list[str]:
    """What the study will do, one line per run."""
    keys = list(study.grid)
    runs = study.runs()
    lines = [f"trial {t.trial}: " + ", ".join(f"{k}={getattr(t, k)}" for k in keys) for t in runs]
    n = len(runs)
    e = len(study.topology_epochs) or len(runs[0].save_epochs)
    lines.append(f"{n} runs, {n * e} epoch files, spec: {study.spec.describe()}")
    return lines



def report(study: Study, out=None, features=None, by: str = "run") -> list[Path]:
    """The study's report in one folder (default RUN_DIR/report_<name>): the features table,
    the evaluation of the gap model beside its baselines, the early-stopping table of every
    run (proposed stop beside the epoch of best test accuracy and the accuracy lost), and the
    figures (predicted against true test accuracy; summaries against epoch per run)."""
    import math
    from dnntopo import analysis, plots, report as reports, storage
    out = Path(out) if out else study.run_dir / f"report_{study.name}"
    out.mkdir(parents=True, exist_ok=True)
    runs = [storage.Run(storage.run_path(t.run_dir, t.net, t.dataset, t.trial)) for t in study.runs()]
    missing = [str(r.root) for r in runs if not r.config.exists() or not r.topology_epochs()]
    if missing:
        raise UserError(f"the study {study.path} is not computed yet ({len(missing)} runs without epoch "
                        f"files, e.g. {missing[0]}); run `dnntopo study run {study.path}` first")
    test_split = study.spec.sample_split == "test"
    rows = analysis.feature_rows([r.root for r in runs], allow_test_split=test_split)
    made = [out / "features.csv"]
    analysis.write_csv(rows, made[-1])
    feats = list(features or analysis.DEFAULT_FEATURES)
    lines = [f"study {study.name}: {len(runs)} runs, {len(rows)} (run, epoch) rows, spec "
             f"{study.spec.describe()}", ""]
    by_ok = len({r.get(by) for r in rows}) >= 2
    if by_ok and len(rows) > len(feats) + 2:
        pred, mae = analysis.evaluate(rows, feats, by, allow_test_split=test_split)
        table = analysis.compare(rows, feats, by, allow_test_split=test_split)
        lines += [f"generalization gap, leave-one-{by}-out (no test data: split {study.spec.sample_split})",
                  reports.render(table, "table")]
        made.append(out / "gengap_predictions.csv")
        analysis.write_csv(analysis.evaluation_table(pred), made[-1])
        made.append(analysis.scatter(pred, out / "gengap_scatter.png"))
    else:
        lines.append(f"generalization gap: too few {by}s or rows to cross-validate; skipped")
    es = []
    for run in runs:
        if len(run.topology_epochs()) < 2:
            continue
        table, stop = analysis.early_stop_table(run, 1)
        best = max(table, key=lambda r: -math.inf if math.isnan(r["acc_test"]) else r["acc_test"])
        at = {r["epoch"]: r for r in table}
        lost = best["acc_test"] - at[stop]["acc_test"] if stop is not None else 0.0
        es.append({"run": run.root.name, "proposed_stop": stop if stop is not None else "none",
                   "best_epoch": best["epoch"], "best_acc_test": best["acc_test"],
                   "acc_test_at_stop": at[stop]["acc_test"] if stop is not None else table[-1]["acc_test"],
                   "lost": lost})
        made.append(plots.summaries_vs_epoch(run, out / f"summaries_{run.root.name}.png"))
    if es:
        lines += ["", "early stopping (Betti-1 peak density, epsilon 0.005; never stopping: the last epoch)",
                  reports.render(es, "table")]
        made.append(out / "early_stop.csv")
        analysis.write_csv(es, made[-1])
    made.append(out / "report.txt")
    from hpc.io import write_text_atomic
    write_text_atomic(made[-1], "\n".join(lines) + "\n")
    return made
