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
    [[override]]                      # training parameters for the runs that match `when`
    when = { subset = 0.1 }           #   (grid values); later overrides win
    epochs = 3

A run's topology epochs beyond its own --epochs are dropped, and so are those after a training
stopped by its rule (--stop-at-acc): they have no checkpoint.

Runs are numbered in grid order (trial k of `<net>_<dataset>`). A rerun does only what is
missing: training that is complete is reused, epoch files that are current are kept.
"""
from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from dnntopo.errors import UserError
from dnntopo.spec import TopologySpec
from dnntopo.train import TrainConfig

#: Training parameters a grid may vary.
GRID_KEYS = ("net", "dataset", "subset", "permute_labels", "binarize_labels", "seed", "lr", "batch_size")
SECTIONS = ("name", "run_dir", "grid", "train", "topology", "override")


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
    overrides: tuple = ()           # ((when: dict, train values: dict), ...)

    def runs(self) -> list[TrainConfig]:
        """One training config per grid point, numbered in grid order."""
        keys = list(self.grid)
        out = []
        for k, values in enumerate(itertools.product(*(self.grid[key] for key in keys))):
            point = dict(zip(keys, values))
            cfg = dict(self.train, **point, trial=k, run_dir=str(self.run_dir))
            for when, values_ in self.overrides:
                if all(point.get(key) == v for key, v in when.items()):
                    cfg.update(values_)
            try:
                tcfg = TrainConfig(**cfg)
                tcfg.validate()
            except TypeError as exc:
                raise UserError(f"{self.path}: {exc}") from None
            except UserError as exc:
                raise UserError(f"{self.path}, run {k} ({_point(keys, values)}): {exc}") from None
            out.append(tcfg)
        return out

    def epochs_of(self, tcfg: TrainConfig) -> tuple:
        """The topology epochs of one run: the study's, within the run's own --epochs (none
        when every one lies beyond; the run's saved epochs when the study names none)."""
        return tuple(e for e in self.topology_epochs if e <= tcfg.epochs)

    def plan(self, tcfg: TrainConfig, opts):
        """The run's plan (jobs.plan_run) with its topology epochs."""
        from dnntopo import jobs
        epochs = self.epochs_of(tcfg)
        p = jobs.plan_run(tcfg, self.spec, epochs, opts)
        return replace(p, todo=[]) if self.topology_epochs and not epochs else p


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
    overrides = []
    raw = doc.get("override", [])
    if not isinstance(raw, list):
        raise UserError(f"{path}: override must be written [[override]] (a list of tables)")
    for n, o in enumerate(raw, 1):
        if not isinstance(o, dict):
            raise UserError(f"{path}: [[override]] {n} must be a table (when = {{...}} and training keys)")
        o = dict(o)
        when = o.pop("when", None)
        if not isinstance(when, dict) or not when:
            raise UserError(f"{path}: [[override]] {n} needs when = {{ KEY = value }} naming grid values")
        bad = sorted(set(when) - set(grid))
        if bad:
            raise UserError(f"{path}: [[override]] {n}: when names {', '.join(bad)}, not a [grid] key "
                            f"(grid keys: {', '.join(grid) or 'none'})")
        nowhere = [f"{k}={v!r}" for k, v in when.items() if v not in grid[k]]
        if nowhere:
            raise UserError(f"{path}: [[override]] {n}: when {', '.join(nowhere)} matches no grid value")
        bad = sorted(set(o) - train_names)
        if bad or not o:
            raise UserError(f"{path}: [[override]] {n}: " + (f"unknown training key {', '.join(bad)}" if bad
                            else "sets nothing") + f" (valid: {', '.join(sorted(train_names))})")
        both = sorted(set(o) & set(grid))
        if both:
            raise UserError(f"{path}: [[override]] {n} sets {', '.join(both)}, which [grid] varies")
        overrides.append((when, o))
    study = Study(path, name, run_dir, grid, train, spec, tuple(epochs), tuple(overrides))
    study.runs()   # validate every grid point now
    return study


def _one_run(p, spec: TopologySpec, quiet: bool) -> str:
    """Train one planned run (if needed) and compute its epoch files, in this process."""
    from dnntopo import jobs, pipeline
    from hpc.comm import SerialComm
    if p.need_train:
        pipeline.train_run(SerialComm(), p.tcfg, quiet=quiet, resume=True)
    todo = jobs.trained_epochs(p.run, p.todo)
    if todo:
        pipeline.run_topology(SerialComm(), p.run, spec, replace(p.opts, epochs=tuple(todo), quiet=quiet))
    return str(p.run.root)


def share(plans: list, spec: TopologySpec, parallel: int) -> tuple[list, TopologySpec]:
    """Plans and spec for `parallel` runs side by side: each run on its share of the cores
    (torch and PH threads) and of the memory (the PH pre-flight's limit), unless the study set
    them itself."""
    from hpc.comm import usable_cores, usable_memory
    side = max(1, min(parallel, len(plans)))
    each = max(1, usable_cores() // side)
    plans = [replace(p, tcfg=p.tcfg if p.tcfg.torch_threads else replace(p.tcfg, torch_threads=each))
             for p in plans]
    if not spec.threads:
        spec = replace(spec, threads=each)
    if not spec.max_memory and usable_memory():
        spec = replace(spec, max_memory=usable_memory() / 2**30 / side)
    return plans, spec


def run_local(plans: list, spec: TopologySpec, parallel: int = 1, quiet: bool = True):
    """Every planned run on this machine, `parallel` at a time (separate processes, each on its
    share of the cores). A failing run does not stop the others; the failures are raised at the
    end, one line each."""
    import concurrent.futures as cf
    import multiprocessing
    import traceback
    todo = [p for p in plans if p.need_train or p.todo]
    failed = []

    def failure(p, exc):
        if not isinstance(exc, UserError):   # a bug, not bad input: keep its traceback
            traceback.print_exception(exc, file=sys.stderr)
        failed.append(f"{p.run.root}: {exc}")

    if parallel <= 1 or len(todo) <= 1:
        for p in todo:
            try:
                _one_run(p, spec, quiet)
            except Exception as exc:   # noqa: BLE001 - reported below, the other runs go on
                failure(p, exc)
    else:
        todo, spec = share(todo, spec, parallel)
        with cf.ProcessPoolExecutor(min(parallel, len(todo)),
                                    mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_one_run, p, spec, True): p for p in todo}
            for f in cf.as_completed(futures):
                try:
                    done = f.result()
                    if not quiet:
                        print(f"done: {done}", file=sys.stderr, flush=True)
                except Exception as exc:   # noqa: BLE001 - reported below, the other runs go on
                    failure(futures[f], exc)
    if failed:
        raise UserError(f"{len(failed)} of {len(todo)} runs failed: " + "; ".join(failed))


def run(study: Study, scheduler=None, wait: bool = True, quiet: bool = True, parallel: int = 1) -> list:
    """Train and compute every run of the study: through `scheduler` (submitit, SLURM or local:
    training as one job array, each run's topology as an array after its training), or on this
    machine when `scheduler` is None, `parallel` runs side by side. Returns the run folders."""
    from dnntopo import jobs, pipeline
    opts = pipeline.TopologyOptions(quiet=quiet)
    plans = [study.plan(t, opts) for t in study.runs()]
    if scheduler is None:
        run_local(plans, study.spec, parallel, quiet)
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
    changed = sorted({k for _, o in study.overrides for k in o})
    lines = [f"trial {t.trial}: " + ", ".join(f"{k}={getattr(t, k)}" for k in keys + changed) for t in runs]
    files = sum(len(study.epochs_of(t) if study.topology_epochs else t.save_epochs) for t in runs)
    lines.append(f"{len(runs)} runs, up to {files} epoch files (fewer where a training stops by its "
                 f"rule), spec: {study.spec.describe()}")
    return lines



def report(study: Study, out=None, features=None, by: str | None = None, patience: int = 5) -> list[Path]:
    """The study's report in one folder (default RUN_DIR/report_<name>): the features table,
    the evaluation of the gap model beside its baselines (leave-one-`by`-out; default: by run,
    then by each varied hyperparameter), the early-stopping table of every run (each rule's
    epoch and the test accuracy it loses against the best epoch), and the figures (predicted
    against true test accuracy; Betti curves and the peak against epoch per condition)."""
    import numpy as np
    from dnntopo import analysis, report as reports, storage
    out = Path(out) if out else study.run_dir / f"report_{study.name}"
    out.mkdir(parents=True, exist_ok=True)
    tcfg = {storage.run_path(t.run_dir, t.net, t.dataset, t.trial): t for t in study.runs()}
    runs = [storage.Run(root) for root in tcfg]
    missing = [str(r.root) for r in runs if not r.config.exists() or not r.topology_epochs()]
    if missing:
        raise UserError(f"the study {study.path} is not computed yet ({len(missing)} runs without epoch "
                        f"files, e.g. {missing[0]}); run `dnntopo study run {study.path}` first")
    test_split = study.spec.sample_split == "test"
    rows = analysis.feature_rows([r.root for r in runs], allow_test_split=test_split)
    for r in rows:     # runs named inside the study's folder: the report reads the same anywhere
        r["run"] = Path(r["run"]).resolve().relative_to(study.run_dir.resolve()).as_posix()
    made = [out / "features.csv"]
    analysis.write_csv(rows, made[-1])
    feats = list(features or analysis.DEFAULT_FEATURES)
    lines = [f"study {study.name}: {len(runs)} runs, {len(rows)} (run, epoch) rows, spec "
             f"{study.spec.describe()}", ""]
    if by:
        analysis.check_by(rows, by)
    bys = [by] if by else ["run"] + [k for k in study.grid if len(study.grid[k]) >= 2 and k != "seed"]
    for k, by_ in enumerate(bys):
        try:
            pred, mae = analysis.evaluate(rows, feats, by_, allow_test_split=test_split)
            table = analysis.compare(rows, feats, by_, allow_test_split=test_split)
        except UserError as exc:    # too few runs or rows in a fold: said in the report
            lines.append(f"generalization gap, leave-one-{by_}-out: skipped ({exc})")
            continue
        lines += [f"generalization gap, leave-one-{by_}-out (no test data: split {study.spec.sample_split}; "
                  f"MAE, R2, Kendall's tau of the predicted test accuracy over {len(rows)} run-epochs; "
                  f"cmi over {len({r['run'] for r in rows})} runs)", reports.render(table, "table")]
        if k == 0:
            made.append(out / f"gengap_predictions_by_{by_}.csv")
            analysis.write_csv(analysis.evaluation_table(pred), made[-1])
            made.append(analysis.scatter(pred, out / f"gengap_scatter_by_{by_}.png"))
    es = []
    for run in runs:
        if len(run.topology_epochs()) < 2:
            continue
        _, stop = analysis.early_stop_table(run, 1)
        rules = analysis.stopping_regret(run, stop, patience)
        params = {k: getattr(tcfg[run.root], k) for k in study.grid}
        row = {"run": run.root.name, **params,
               "best_epoch": rules[0]["best_epoch"], "best_acc_test": rules[0]["best_acc_test"]}
        for tag, r in zip(("topology", "validation", "never"), rules):
            row[f"{tag}_epoch"] = r["epoch"] if not (tag == "topology" and stop is None) else "none"
            row[f"{tag}_lost"] = r["lost"]
        es.append(row)
    if es:
        lines += ["", f"early stopping: test accuracy lost against each run's best epoch (regret); topology: "
                      f"the Betti-1 peak density rule (epsilon {analysis.DEFAULT_EPSILON}, 'none': never fired, "
                      f"the last epoch); validation: patience {patience} on the held-out --val-samples; "
                      f"never: the last trained epoch",
                  reports.render(es, "table")]
        lost = {tag: np.array([r[f"{tag}_lost"] for r in es], dtype=float) for tag in ("topology", "validation", "never")}
        lines.append("mean regret: " + ", ".join(
            f"{k} {np.mean(v[np.isfinite(v)]):.4f}" if np.isfinite(v).any() else f"{k} n/a"
            for k, v in lost.items()))
        made.append(out / "early_stop.csv")
        analysis.write_csv(es, made[-1])
    made += _condition_figures(study, tcfg, out)
    made.append(out / "report.txt")
    from hpc.io import write_text_atomic
    write_text_atomic(made[-1], "\n".join(lines) + "\n")
    return made


def _condition_figures(study: Study, tcfg: dict, out: Path) -> list[Path]:
    """Betti curves and the peak against epoch, one panel per condition (the first seed's run of
    each combination of the varied hyperparameters)."""
    from dnntopo import plots, storage
    varied = [k for k in study.grid if len(study.grid[k]) >= 2 and k != "seed"]
    row_key, col_keys = (varied[0], varied[1:]) if varied else ("net", [])
    cells = {}
    for root, t in tcfg.items():
        run = storage.Run(root)
        key = (getattr(t, row_key), " ".join(str(getattr(t, k)) for k in col_keys) or "-")
        if run.topology_epochs() and (key not in cells or t.seed < cells[key][0]):
            cells[key] = (t.seed, run)
    cells = {k: run for k, (_, run) in cells.items()}
    if not cells:
        return []
    names = (row_key, " ".join(col_keys))
    return [plots.condition_grid(cells, out / "betti_curves_by_condition.png", "betti", 1, *names),
            plots.condition_grid(cells, out / "peak_vs_epoch_by_condition.png", "summary", 1, *names)]
