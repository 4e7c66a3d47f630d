"""The `dnntopo` command line: parse, build the spec and configs, call the domain.

The flags come from the fields that define them (`TrainConfig`, `TopologySpec`,
`TopologyOptions`, `hpc.submit.Site`), so a parameter is added in one place. Every user error
ends in one clear line; under MPI an error on any rank is printed with the rank's number and
the whole job is aborted, so that no rank waits forever in a collective.
"""
from __future__ import annotations

import argparse
import os
import sys

from dnntopo import __version__
from dnntopo.errors import UserError
from dnntopo.params import add_arguments, given
from dnntopo.spec import TopologySpec

ALLOW_MIXED = "--allow-mixed-specs"


def _configs():
    """TrainConfig and TopologyOptions (imported when a parser is built: they bring torch)."""
    from dnntopo.pipeline import TopologyOptions
    from dnntopo.train import TrainConfig
    return TrainConfig, TopologyOptions


def _add_train(p):
    TrainConfig, _ = _configs()
    add_arguments(p, TrainConfig, titles={"training": "training"})
    g = p.add_argument_group("topology while training")
    g.add_argument("--resume", action="store_true", help="continue from the last completed epoch")
    g.add_argument("--restart", action="store_true",
                   help="remove the run's checkpoints, stats, topology and plots, and train anew")
    g.add_argument("--topology-every", type=int, default=0,
                   help="compute the topology every N epochs while training, with the topology "
                        "spec's flags")
    g.add_argument("--early-stop", action="store_true",
                   help="with --topology-every: stop when the Betti-peak rule fires (see early-stop)")
    g.add_argument("--early-stop-dim", type=int, default=1, help="dimension of the rule (default 1)")
    g.add_argument("--epsilon", type=float, default=0.005, help="epsilon of the rule (default 0.005)")


def _add_job(p):
    """Training, then topology: the arguments of `run` and `submit`."""
    _, TopologyOptions = _configs()
    _add_train(p)
    p.add_argument("--topology-epochs", type=int, nargs="+", default=None,
                   help="epochs to compute the topology of (default: --save-epochs)")
    TopologySpec.add_arguments(p)
    add_arguments(p, TopologyOptions, skip=JOB_SKIP,
                  titles={"storage": "storage"})


def _train_config(a):
    TrainConfig, _ = _configs()
    return TrainConfig(**given(a, TrainConfig))


def _early_stop(a):
    from dnntopo.pipeline import EarlyStop
    return EarlyStop(dim=a.early_stop_dim, epsilon=a.epsilon) if a.early_stop else None


JOB_SKIP = ("epochs", "batch_size", "device")  # `run` and `submit` take these from training


def _options(a, skip=(), **over):
    _, TopologyOptions = _configs()
    return TopologyOptions(**dict(given(a, TopologyOptions, skip), quiet=a.quiet, **over))


def cmd_train(a):
    from dnntopo import pipeline
    spec = TopologySpec.from_flags(a)
    run = pipeline.train_run(a.comm, _train_config(a), spec, a.topology_every, _early_stop(a),
                             a.resume, a.quiet, a.restart)
    if a.comm.Get_rank() == 0:
        print(run.root)


def cmd_topology(a):
    from dnntopo import pipeline, storage
    paths = pipeline.run_topology(a.comm, storage.open_run(a.run), TopologySpec.from_flags(a), _options(a))
    if a.comm.Get_rank() == 0:
        for p in paths:
            print(p)


def cmd_run(a):
    from dnntopo import pipeline, report
    tcfg = _train_config(a)
    opts = _options(a, JOB_SKIP, epochs=tuple(a.topology_epochs or ()), device=tcfg.device)
    run, made = pipeline.main_job(a.comm, tcfg, TopologySpec.from_flags(a), opts, a.topology_every,
                                  _early_stop(a), a.resume, a.restart)
    if a.comm.Get_rank() == 0:
        sys.stdout.write(report.render(report.rows(run, allow_mixed=True), "table"))
        print(f"\nrun folder: {run.root}")
        print("plots:\n" + "\n".join(f"  {p}" for p in made))


def _scheduler(a):
    """The submitit scheduler of the scheduling flags (site values: file, then flags)."""
    import shutil
    from pathlib import Path
    from hpc.submit import Scheduler, Site, site_from
    if a.cluster == "slurm" and shutil.which("sbatch") is None:
        raise UserError("--cluster slurm: sbatch not found; use --cluster local, or load SLURM's module")
    config = a.slurm_config or os.environ.get("DNNTOPO_SLURM_CONFIG", "")
    try:
        site = site_from(config, **{k: getattr(a, k) for k in Site.names()})
    except (OSError, ValueError) as exc:
        raise UserError(f"--slurm-config {config}: {exc}" if config else str(exc)) from None
    if not site.venv:  # jobs use the environment this command runs in
        site = site.updated(venv=str(Path(sys.executable).parents[1]))
    import logging
    logging.getLogger("submitit").setLevel(logging.ERROR)  # sacct is often off on small clusters
    return Scheduler(folder=None, cluster=a.cluster, site=site)


def cmd_submit(a):
    from dnntopo import jobs
    train_job, topo = jobs.submit_run(_train_config(a), TopologySpec.from_flags(a), _scheduler(a),
                                      a.topology_epochs or (), _options(a, JOB_SKIP), wait=a.wait,
                                      retrain=a.retrain)
    print(f"training: {train_job.job_id if train_job else 'checkpoints present, not resubmitted'}")
    print(f"topology: {' '.join(f'{e}:{j.job_id}' for e, j in topo.items()) or 'every epoch is current'}")


def cmd_study(a):
    from dnntopo import study as studies
    from hpc.comm import usable_cores
    st = studies.load(a.file)
    if a.action == "show":
        print("\n".join(studies.summary_lines(st)))
    elif a.action == "run":
        sched = None if a.cluster == "none" else _scheduler(a)
        if a.parallel is not None and (a.parallel < 1 or sched is not None):
            raise UserError(f"--parallel {a.parallel}: " + ("must be 1 or more" if a.parallel < 1 else
                            "runs side by side on this machine; it goes with --cluster none"))
        runs = studies.run(st, sched, wait=not a.no_wait, quiet=a.quiet,
                           parallel=a.parallel if a.parallel is not None else usable_cores())
        print(f"{len(runs)} runs in {st.run_dir}" + ("" if sched is None or not a.no_wait else " (submitted)"))
    else:
        for path in studies.report(st, a.out, by=a.by, patience=a.patience):
            print(path)


def cmd_status(a):
    from dnntopo import jobs, spec as specs, storage
    run = storage.open_run(a.run)
    base = specs.recorded(run) or TopologySpec()
    rows = jobs.status(run, TopologySpec.from_flags(a, base=base))
    print(f"{'epoch':>5}  {'state':<24} job")
    for r in rows:
        print(f"{r['epoch']:>5}  {r['state']:<24} {r['job']}")


def cmd_plot(a):
    from dnntopo import plots, storage
    run = storage.open_run(a.run)
    epochs = a.epochs or run.topology_epochs()
    if not epochs:
        raise UserError(f"no epoch files in {run.topology}; run `dnntopo topology --run {a.run}` first")
    default = {"betti": f"betti_dim{a.dim}.png", "diagram": f"diagram_epoch{epochs[-1]:04d}.png",
               "summary": "summaries.png"}[a.kind]
    out = plots.check_out(a.out or run.plots / default, a.overwrite)
    if a.kind == "betti":
        path = plots.betti_curves(run, epochs, a.dim, out, smooth=a.smooth, allow_mixed=a.allow_mixed,
                                  axis=a.axis)
    elif a.kind == "diagram":
        path = plots.diagram(run, epochs[-1], out, dims=None if a.dim is None else [a.dim])
    else:
        path = plots.summaries_vs_epoch(run, out, epochs=a.epochs, allow_mixed=a.allow_mixed)
    print(path)


def cmd_summary(a):
    from dnntopo import report, storage
    sys.stdout.write(report.render(report.rows(storage.open_run(a.run), a.allow_mixed, a.range), a.format))


def cmd_early_stop(a):
    from dnntopo import analysis, report, storage
    from dnntopo import plots
    run = storage.open_run(a.run)
    analysis.patience_stop([], a.patience)                    # validates --patience before any work
    out = plots.check_out(a.out or run.plots / f"early_stop_dim{a.dim}.png", a.overwrite)
    rows, stop = analysis.early_stop_table(run, a.dim, a.axis, a.epsilon, a.allow_mixed, a.smooth_epochs,
                                           a.range)
    sys.stdout.write(report.render([dict(r, stop="<- stop" if r["stop"] else "") for r in rows], "table"))
    edge = [str(r["epoch"]) for r in rows if r["at_threshold"]]
    if edge:
        print(f"epochs {' '.join(edge)}: the Betti-{a.dim} peak lies at the threshold (the last grid point), "
              f"which measures the cutoff, not a position; they cannot fire the rule")
    smooth = f", mean of {a.smooth_epochs} epochs" if a.smooth_epochs > 1 else ""
    print(f"proposed stopping epoch (dim {a.dim}, {a.axis}, epsilon {a.epsilon}{smooth}; the first move of the "
          f"peak back toward higher {a.axis} by more than epsilon): "
          f"{stop if stop is not None else 'none yet (the peak has not regressed toward higher ' + a.axis + ')'}")
    print("beside the baselines (test accuracy lost against the epoch of best test accuracy):")
    sys.stdout.write(report.render(analysis.stopping_regret(run, stop, a.patience), "table"))
    cfg = storage.read_config(run)
    out = analysis.plot_early_stop(rows, stop, out, f"{cfg['net']} on {cfg['dataset']}: Betti-{a.dim} peak",
                                   a.axis)
    print(f"plot: {out}")


def cmd_gengap(a):
    from dnntopo import analysis, plots, report, storage
    features = a.features or "gengap_features.csv"
    use = a.use or list(analysis.DEFAULT_FEATURES)
    if a.use:
        analysis.check_use(use)
    src = f"--features {features}"
    if a.range is not None and not (a.action == "features" or (a.action == "predict" and a.run)):
        raise UserError(f"--range goes with `gengap features` and `gengap predict --run`: {a.action} reads "
                        f"a features table, which records the range it was read over")
    if a.action == "features":
        out = storage.check_output(a.out or features, (".csv",), analysis.is_features_csv, a.overwrite)
        rows = analysis.feature_rows(a.runs, a.allow_mixed, a.allow_test_split, a.range)
        analysis.write_csv(rows, out)
        print(f"{len(rows)} rows from {len({r['run'] for r in rows})} runs "
              f"(sample split {' '.join(sorted({r['sample_split'] for r in rows}))}) -> {out}")
    elif a.action == "fit":
        out = storage.check_output(a.out or a.model, (".json",), analysis.is_model_json, a.overwrite)
        rows = analysis.read_csv(features)
        analysis.design(rows, use, "the features file")
        analysis.require_no_test(rows, a.allow_test_split, src)
        model = analysis.fit(rows, use, allow_test_split=a.allow_test_split)
        analysis.save_model(model, out)
        print(analysis.describe_model(model))
        print(f"training MAE of the gap {model['train_mae']:.4f} on {model['n_rows']} rows -> {out}")
    elif a.action == "predict":
        if bool(a.run) == bool(a.features):
            raise UserError("gengap predict: give one of --run RUN or --features FILE")
        model = analysis.load_model(a.model)
        if a.run:
            rows = analysis.feature_rows([a.run], a.allow_mixed, a.allow_test_split, a.range)
        else:
            rows = analysis.read_csv(a.features)
            analysis.require_no_test(rows, a.allow_test_split, src)
        sys.stdout.write(report.render(analysis.prediction_table(model, rows), a.format))
    else:
        if a.plot:
            plots.check_out(a.plot, a.overwrite)
        feats = analysis.read_csv(features)
        analysis.design(feats, use, "the features file")
        analysis.require_no_test(feats, a.allow_test_split, src)
        rows, mae = analysis.evaluate(feats, use, a.by, a.allow_test_split)
        sys.stdout.write(report.render(analysis.evaluation_table(rows), a.format))
        print(f"leave-one-{a.by}-out mean absolute error of the test accuracy: {mae:.4f} "
              f"(predicting the other {a.by}s' mean gap instead: {analysis.baseline_error(feats, a.by):.4f})")
        print(f"\nbaselines, leave-one-{a.by}-out on the same folds (predicted test accuracy: MAE, R², "
              f"Kendall's tau over all {len(rows)} run-epochs):")
        sys.stdout.write(report.render(analysis.compare(feats, use, a.by, a.allow_test_split), a.format))
        if a.plot:
            print(f"plot: {analysis.scatter(rows, a.plot)}")


def cmd_export_dipha(a):
    from dnntopo import storage
    from dnntopo.dipha import backend
    run = storage.open_run(a.run)
    out = backend.export_epoch(run, a.epoch, a.out, a.full, overwrite=a.overwrite)
    max_dim = storage.read_attrs(run.epoch_file(a.epoch))["max_dim"]
    print(out)
    if not a.quiet:
        print(f"run DIPHA on it, e.g.: mpiexec -n 4 dipha --dual --upper_dim {max_dim + 1} {out} "
              f"{out.with_suffix('.diagram')}\nthen: dnntopo import-dipha --run {a.run} --epoch {a.epoch} "
              f"--diagram {out.with_suffix('.diagram')}", file=sys.stderr)


def cmd_import_dipha(a):
    from dnntopo import storage
    from dnntopo.dipha import backend
    print(backend.import_epoch(storage.open_run(a.run), a.epoch, a.diagram, max_dim=a.max_dim))


def _range(p):
    p.add_argument("--range", nargs=2, type=float, default=None, metavar=("LO", "HI"),
                   help="read the Betti curves and summaries over distances LO..HI only (e.g. away from "
                        "the threshold, where a maximum measures the cutoff)")


def _mixed(p):
    p.add_argument(ALLOW_MIXED, dest="allow_mixed", action="store_true",
                   help="combine epochs computed with different topology specs")
    p.add_argument("--overwrite", action="store_true",
                   help="write over an existing output file that this command did not write")


def _add_scheduling(t, none: bool = False):
    from hpc.submit import add_site_flags
    g = t.add_argument_group("scheduling (site values: --slurm-config FILE, then these flags)")
    g.add_argument("--cluster", default=None, choices=("slurm", "local", "debug") + (("none",) if none else ()),
                   help="slurm where sbatch exists, else local (default: auto)" +
                        ("; none: on this machine without a scheduler (see --parallel)" if none else ""))
    g.add_argument("--slurm-config", default="", help="KEY=value file like slurm/site.conf.example")
    add_site_flags(g)
    return g


def build_parser() -> argparse.ArgumentParser:
    from dnntopo.analysis import DEFAULT_FEATURES
    _, TopologyOptions = _configs()
    p = argparse.ArgumentParser(
        prog="dnntopo",
        description="Topology of deep neural networks: train, compute the persistent homology of "
                    "each saved epoch's functional graph, summarize, plot, analyse.")
    p.add_argument("--version", action="version", version=f"dnntopo {__version__}")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or messages")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    t = sub.add_parser("train", help="train a net, checkpointing the requested epochs")
    _add_train(t)
    TopologySpec.add_arguments(t)
    t.set_defaults(func=cmd_train)

    t = sub.add_parser("topology", help="functional graph, persistent homology and summaries of saved epochs")
    t.add_argument("--run", required=True, help="run folder RUNS/<net>_<dataset>/trial_<k>")
    add_arguments(t, TopologyOptions, titles={"storage": "storage and execution"})
    TopologySpec.add_arguments(t)
    t.set_defaults(func=cmd_topology)

    t = sub.add_parser("plot", help="Betti curves of epochs, a persistence diagram, or summaries against epoch")
    t.add_argument("--run", required=True, help="run folder")
    t.add_argument("--epochs", type=int, nargs="+", default=None, help="epochs (default: all computed)")
    t.add_argument("--dim", type=int, default=1, help="homology dimension (default 1)")
    t.add_argument("--kind", default="betti", choices=("betti", "diagram", "summary"),
                   help="betti curves (default), diagram of the last epoch, or summaries")
    t.add_argument("--smooth", type=int, default=0, help="moving-average width for the curves")
    t.add_argument("--axis", default="distance", choices=("distance", "density"),
                   help="x axis of the Betti curves: distance, or each epoch's own edge density")
    t.add_argument("--out", default=None, help="output file (.png, .pdf, .svg); default RUN/plots/")
    _mixed(t)
    t.set_defaults(func=cmd_plot)

    t = sub.add_parser("summary", help="table of accuracy and topological summaries per epoch")
    t.add_argument("--run", required=True, help="run folder")
    t.add_argument("--format", default="table", choices=("table", "csv", "json"))
    _range(t)
    _mixed(t)
    t.set_defaults(func=cmd_summary)

    t = sub.add_parser("run", help="the main job: train, topology of the chosen epochs, plots, summary")
    _add_job(t)
    t.set_defaults(func=cmd_run)

    t = sub.add_parser("submit", help="the main job through SLURM or locally (submitit): training, then an epoch array")
    _add_job(t)
    g = _add_scheduling(t)
    g.add_argument("--wait", action="store_true", help="wait for every job to finish")
    g.add_argument("--retrain", action="store_true",
                   help="remove the run's training and results, and submit training anew")
    t.set_defaults(func=cmd_submit)

    t = sub.add_parser("study", help="a grid of runs from one TOML file: show, run (through the scheduler), report",
                       description="See dnntopo/study.py's docstring (or the README) for the study file.")
    t.add_argument("action", choices=("show", "run", "report"))
    t.add_argument("file", help="the study file (TOML)")
    t.add_argument("--out", default=None, help="report: folder of the report (default RUN_DIR/report_<name>)")
    t.add_argument("--no-wait", action="store_true", help="run: submit and return without waiting")
    t.add_argument("--parallel", type=int, default=None, metavar="P",
                   help="run with --cluster none: P runs side by side, each on its share of the cores "
                        "(default: one per core)")
    t.add_argument("--patience", type=int, default=5,
                   help="report: the validation early-stopping baseline's patience (default 5)")
    t.add_argument("--by", default=None,
                   help="report: leave-one-out by this run parameter only (default: by run, then by each "
                        "varied hyperparameter)")
    _add_scheduling(t, none=True)
    t.set_defaults(func=cmd_study)

    t = sub.add_parser("status", help="per epoch: done, missing, stale (and why), pending or running, with job ids",
                       description="The state of each epoch's file for the run's last requested topology "
                                   "spec (RUN/topology/spec.json); spec flags given here override it.")
    t.add_argument("--run", required=True, help="run folder")
    TopologySpec.add_arguments(t, suppress=True)
    t.set_defaults(func=cmd_status)

    t = sub.add_parser("early-stop", help="stopping epoch from the drift of the Betti-curve peak")
    t.add_argument("--run", required=True, help="run folder")
    t.add_argument("--dim", type=int, default=1, help="homology dimension (default 1)")
    t.add_argument("--axis", default="density", choices=("density", "distance"),
                   help="where the peak is measured (default density)")
    t.add_argument("--epsilon", type=float, default=0.005,
                   help="stop at the first epoch whose peak moved back toward higher density (distance) "
                        "by more than epsilon (default 0.005)")
    t.add_argument("--smooth-epochs", type=int, default=1, metavar="K",
                   help="average the peak position over the last K computed epochs before taking the "
                        "change (default 1: no smoothing)")
    t.add_argument("--patience", type=int, default=5,
                   help="the validation baseline's patience in epochs (runs trained with --val-samples; "
                        "default 5)")
    t.add_argument("--out", default=None, help="plot file (default RUN/plots/early_stop_dim<d>.png)")
    _range(t)
    _mixed(t)
    t.set_defaults(func=cmd_early_stop)

    t = sub.add_parser("gengap", help="generalization gap from topology: features, fit, predict, evaluate")
    t.add_argument("action", choices=("features", "fit", "predict", "evaluate"))
    t.add_argument("--runs", nargs="+", default=["runs"], help="features: run folders or folders of runs")
    t.add_argument("--features", default=None, help="the features CSV (default gengap_features.csv)")
    t.add_argument("--use", nargs="+", default=None,
                   help=f"fit/evaluate: features (default {' '.join(DEFAULT_FEATURES)}); never the gap "
                        f"or anything from the test set")
    t.add_argument("--model", default="gengap_model.json", help="predict: the fitted model")
    t.add_argument("--run", default=None, help="predict: a run folder (instead of --features)")
    t.add_argument("--by", default="run",
                   help="evaluate: leave one out by run (default), group, or a run parameter: subset, "
                        "permute_labels, seed, lr, net, dataset")
    t.add_argument("--plot", default=None, help="evaluate: scatter plot of predicted against true")
    t.add_argument("--out", default=None, help="features: CSV to write; fit: model JSON to write")
    t.add_argument("--format", default="table", choices=("table", "csv", "json"))
    _range(t)
    t.add_argument("--allow-test-split", action="store_true",
                   help="use epochs computed on the test split (--sample-split test): the prediction then "
                        "uses test data")
    _mixed(t)
    t.set_defaults(func=cmd_gengap)

    t = sub.add_parser("export-dipha", help="write an epoch's distance matrix in DIPHA's format")
    t.add_argument("--run", required=True, help="run folder")
    t.add_argument("--epoch", type=int, required=True, help="epoch")
    t.add_argument("--out", default=None, help="output file (default topology/epoch_XXXX.complex)")
    t.add_argument("--full", action="store_true", help="full matrix (type 7; needs --save-dense) instead of sparse")
    t.add_argument("--overwrite", action="store_true", help="replace an existing --out that is not DIPHA's")
    t.set_defaults(func=cmd_export_dipha)

    t = sub.add_parser("import-dipha", help="put a DIPHA persistence diagram into an epoch file")
    t.add_argument("--run", required=True, help="run folder")
    t.add_argument("--epoch", type=int, required=True, help="epoch")
    t.add_argument("--diagram", required=True, help="DIPHA diagram file (type 2)")
    t.add_argument("--max-dim", type=int, default=None,
                   help="import dimensions 0..D only (fewer than the epoch holds; its max_dim becomes D)")
    t.set_defaults(func=cmd_import_dipha)
    return p


def main(argv=None):
    """Entry point of the `dnntopo` console script."""
    from hpc.comm import abort_with, get_comm
    parser = build_parser()
    args = parser.parse_args(argv)
    comm = None
    try:
        # DNNTOPO_NO_MPI=1: one rank even under a launcher (hpc's own switch is HPC_NO_MPI)
        comm = get_comm(serial=os.environ.get("DNNTOPO_NO_MPI", "") not in ("", "0"))
        args.comm = comm
        args.func(args)
    except UserError as exc:
        abort_with(comm, "dnntopo", f"error: {exc}", 2)
    except KeyboardInterrupt:
        abort_with(comm, "dnntopo", "interrupted", 130)
    except Exception as exc:  # a bug, or an environment problem we did not foresee
        if os.environ.get("DNNTOPO_DEBUG"):
            raise
        first = (str(exc).splitlines() or [""])[0] or "(no message)"
        abort_with(comm, "dnntopo", f"internal error: {type(exc).__name__}: {first} "
                    f"(set DNNTOPO_DEBUG=1 for the traceback)", 1)
