"""The `dnntopo` command line: one subcommand per stage, one clear line per user error.

Under MPI an error on any rank is printed with the rank's number and the whole job is aborted,
so that no rank waits forever in a collective.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from dnntopo import __version__
from dnntopo.errors import UserError


def _add_train_args(p):
    g = p.add_argument_group("training")
    g.add_argument("--net", default="lenet", help="architecture (default lenet)")
    g.add_argument("--dataset", default="fashion_mnist", help="dataset (default fashion_mnist)")
    g.add_argument("--data-root", default=None,
                   help="folder of the dataset's standard files (default: per dataset, "
                        "/usr/share/datasets/fashion-mnist for fashion_mnist)")
    g.add_argument("--trial", type=int, default=0, help="trial number (run folder trial_<k>)")
    g.add_argument("--epochs", type=int, default=50, help="epochs to train (default 50)")
    g.add_argument("--lr", type=float, default=0.0005, help="learning rate (default 0.0005)")
    g.add_argument("--batch-size", type=int, default=128, help="training batch size (default 128)")
    g.add_argument("--save-epochs", type=int, nargs="+", default=None,
                   help="epochs to checkpoint, 0 = untrained (default 0 1 5 10 20 30 40 50 within --epochs)")
    g.add_argument("--permute-labels", type=float, default=0.0, help="fraction of training labels permuted")
    g.add_argument("--binarize-labels", type=int, default=None, help="class C against the rest, balanced")
    g.add_argument("--subset", type=float, default=1.0, help="fraction of the training set used")
    g.add_argument("--seed", type=int, default=0, help="random seed")
    g.add_argument("--augment", action="store_true", help="random crop and flip while training")
    g.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:k]")
    g.add_argument("--run-dir", default="runs", help="folder of all runs (default ./runs)")
    g.add_argument("--resume", action="store_true", help="continue from the last completed epoch")
    g.add_argument("--topology-every", type=int, default=0,
                   help="compute the topology every N epochs while training (checkpointed)")
    g.add_argument("--early-stop", action="store_true",
                   help="with --topology-every: stop when the Betti-peak rule fires (see early-stop)")
    g.add_argument("--early-stop-dim", type=int, default=1, help="dimension of the rule (default 1)")
    g.add_argument("--epsilon", type=float, default=0.005, help="epsilon of the rule (default 0.005)")


def _add_job_args(p):
    """Training, then topology: the arguments of `run` and `submit`."""
    _add_train_args(p)
    p.add_argument("--topology-epochs", type=int, nargs="+", default=None,
                   help="epochs to compute the topology of (default: --save-epochs)")
    _add_topology_args(p, with_run=False)


def _train_config(a):
    from dnntopo.train import TrainConfig
    save = a.save_epochs
    if save is None:
        save = sorted({e for e in (0, 1, 5, 10, 20, 30, 40, 50) if e <= a.epochs} | {a.epochs})
    return TrainConfig(net=a.net, dataset=a.dataset, data_root=a.data_root, trial=a.trial,
                       epochs=a.epochs, lr=a.lr, batch_size=a.batch_size, save_epochs=list(save),
                       permute_labels=a.permute_labels, binarize_labels=a.binarize_labels,
                       subset=a.subset, seed=a.seed, augment=a.augment, device=a.device,
                       run_dir=a.run_dir)


def cmd_train(a):
    from dnntopo.train import train
    from hpc.collectives import quiet_barrier
    tcfg = _train_config(a)
    on_epoch = None
    if a.topology_every:
        if a.topology_every < 0:
            raise UserError("--topology-every must be positive")
        tcfg.save_epochs = sorted(set(tcfg.save_epochs) | set(range(0, tcfg.epochs + 1, a.topology_every)))
        on_epoch = _topology_while_training(a)
    elif a.early_stop:
        raise UserError("--early-stop needs --topology-every N")
    if a.comm.Get_rank() != 0:  # training is one process: under mpiexec/srun, rank 0 trains
        return quiet_barrier(a.comm)
    run = train(tcfg, resume=a.resume, quiet=a.quiet, on_epoch=on_epoch)
    quiet_barrier(a.comm)
    print(run.root)


def _topology_while_training(a):
    """The per-epoch hook of `train --topology-every N [--early-stop]` (in the training process)."""
    from dnntopo import analysis, pipeline, storage
    from hpc.comm import SerialComm
    from dnntopo.activations import ActivationConfig
    from dnntopo.graph import GraphConfig
    from dnntopo.summaries import SummaryConfig
    from dnntopo.topology import PHConfig

    def hook(epoch, model, row):
        if epoch % a.topology_every:
            return False
        run = storage.Run(storage.run_path(a.run_dir, a.net, a.dataset, a.trial))
        pipeline.run_topology(SerialComm(), run, pipeline.TopologyOptions(epochs=[epoch], quiet=True),
                              ActivationConfig(device=a.device), GraphConfig(), PHConfig(max_dim=max(1, a.early_stop_dim)),
                              SummaryConfig())
        if not a.early_stop or len(run.topology_epochs()) < 2:
            return False
        _, stop = analysis.early_stop_table(run, a.early_stop_dim, "density", a.epsilon)
        if stop is not None:
            print(f"early stop: the Betti-{a.early_stop_dim} peak regressed at epoch {stop}; "
                  f"training ends after epoch {epoch}", file=sys.stderr)
            return True
        return False
    return hook


def _add_topology_args(p, with_run=True):
    if with_run:  # `dnntopo run` has these from training (--device, --batch-size) or sets them
        p.add_argument("--run", required=True, help="run folder RUNS/<net>_<dataset>/trial_<k>")
        p.add_argument("--epochs", type=int, nargs="+", default=None,
                       help="epochs to compute (default: every saved checkpoint)")
    g = p.add_argument_group("activations")
    g.add_argument("--samples", type=int, default=1000, help="samples forwarded (default 1000)")
    g.add_argument("--sample-split", default="test", choices=("test", "train"),
                   help="take the first samples of the test (default) or training images")
    g.add_argument("--layers", nargs="+", default=None, help="observed layers (default: the model's)")
    g.add_argument("--max-nodes", type=int, default=0,
                   help="group units (chunk averages per layer) down to this many nodes (0: no grouping)")
    if with_run:
        g.add_argument("--batch-size", dest="act_batch", type=int, default=100,
                       help="samples per forward batch (default 100)")
        g.add_argument("--device", default="auto", help="auto, cpu or cuda[:k] for forwards and products")
    else:
        p.set_defaults(act_batch=100)
    g = p.add_argument_group("graph and persistent homology")
    g.add_argument("--max-distance", type=float, default=0.6,
                   help="keep edges with 1-|corr| <= this (default 0.6 = DIPHA's MAX_EPSILON 0.3)")
    g.add_argument("--max-dim", type=int, default=2, help="homology dimensions 0..max-dim (default 2)")
    g.add_argument("--backend", default="giotto", help="giotto (default), ripser or dipha")
    g.add_argument("--dipha", default="", help="DIPHA binary for --backend dipha (default $DIPHA)")
    g.add_argument("--dipha-launch", default="auto", choices=("auto", "spawn", "mpiexec"),
                   help="start DIPHA by MPI spawn, a separate mpiexec, or spawn with fallback (auto)")
    g.add_argument("--dipha-procs", type=int, default=0, help="DIPHA processes (default: the job's ranks)")
    g.add_argument("--dipha-timeout", type=float, default=3600, help="seconds to wait for DIPHA")
    g.add_argument("--collapse", default="auto", choices=("auto", "on", "off"),
                   help="exact edge collapse before the reduction (default auto, see README)")
    g.add_argument("--threads", type=int, default=0, help="PH threads (default: all cores)")
    g = p.add_argument_group("summaries and storage")
    g.add_argument("--min-persistence", type=float, default=0.02,
                   help="persistence floor of life/midlife (default 0.02)")
    g.add_argument("--grid-points", type=int, default=121, help="points of the Betti-curve grid")
    g.add_argument("--save-activations", action="store_true", help="store the activations too")
    g.add_argument("--save-dense", action="store_true", help="store the full distance matrix too")
    g.add_argument("--force", action="store_true", help="recompute epochs whose file is current")


def _topology_configs(a):
    from dnntopo.activations import ActivationConfig
    from dnntopo.graph import GraphConfig
    from dnntopo.pipeline import TopologyOptions
    from dnntopo.summaries import SummaryConfig
    from dnntopo.topology import PHConfig
    return (TopologyOptions(epochs=a.epochs or [], force=a.force,
                            save_activations=a.save_activations, quiet=a.quiet),
            ActivationConfig(samples=a.samples, sample_split=a.sample_split, layers=a.layers or [],
                             max_nodes=a.max_nodes, batch_size=a.act_batch, device=a.device),
            GraphConfig(max_distance=a.max_distance, save_dense=a.save_dense),
            PHConfig(max_dim=a.max_dim, max_distance=a.max_distance, backend=a.backend,
                     collapse=a.collapse, n_threads=a.threads, dipha=a.dipha,
                     dipha_launch=a.dipha_launch, dipha_procs=a.dipha_procs,
                     dipha_timeout=a.dipha_timeout),
            SummaryConfig(grid_points=a.grid_points, min_persistence=a.min_persistence))


def cmd_topology(a):
    from dnntopo import pipeline, storage
    run = storage.open_run(a.run)
    paths = pipeline.run_topology(a.comm, run, *_topology_configs(a))
    if a.comm.Get_rank() == 0:
        for p in paths:
            print(p)


def _plot_all(run, epochs, dims):
    from dnntopo import plots
    made = []
    for d in dims:
        made.append(plots.betti_curves(run, epochs, d, run.plots / f"betti_dim{d}.png"))
    made.append(plots.diagram(run, epochs[-1], run.plots / f"diagram_epoch{epochs[-1]:04d}.png"))
    made.append(plots.summaries_vs_epoch(run, run.plots / "summaries.png"))
    return made


def cmd_plot(a):
    from dnntopo import plots, storage
    run = storage.open_run(a.run)
    epochs = a.epochs or run.topology_epochs()
    if not epochs:
        raise UserError(f"no epoch files in {run.topology}; run `dnntopo topology --run {a.run}` first")
    if a.kind == "betti":
        out = a.out or run.plots / f"betti_dim{a.dim}.png"
        path = plots.betti_curves(run, epochs, a.dim, out, smooth=a.smooth)
    elif a.kind == "diagram":
        out = a.out or run.plots / f"diagram_epoch{epochs[-1]:04d}.png"
        path = plots.diagram(run, epochs[-1], out, dims=None if a.dim is None else [a.dim])
    else:
        path = plots.summaries_vs_epoch(run, a.out or run.plots / "summaries.png")
    print(path)


def cmd_summary(a):
    from dnntopo import report, storage
    run = storage.open_run(a.run)
    sys.stdout.write(report.render(report.rows(run), a.format))


def cmd_run(a):
    from dnntopo import pipeline, report, storage
    from dnntopo.train import train
    tcfg = _train_config(a)
    topo_epochs = a.topology_epochs or tcfg.save_epochs
    tcfg.save_epochs = sorted(set(tcfg.save_epochs) | set(topo_epochs))
    run = None
    if a.comm.Get_rank() == 0:
        if a.topology_every:
            tcfg.save_epochs = sorted(set(tcfg.save_epochs) | set(range(0, tcfg.epochs + 1, a.topology_every)))
        hook = _topology_while_training(a) if a.topology_every else None
        run = train(tcfg, resume=a.resume, quiet=a.quiet, on_epoch=hook)
    run = storage.Run(a.comm.bcast(run.root if run else None, root=0))
    a.epochs = topo_epochs
    pipeline.run_topology(a.comm, run, *_topology_configs(a))
    if a.comm.Get_rank() == 0:
        made = _plot_all(run, sorted(topo_epochs), range(a.max_dim + 1))
        sys.stdout.write(report.render(report.rows(run), "table"))
        print(f"\nrun folder: {run.root}")
        print("plots:\n" + "\n".join(f"  {p}" for p in made))


def cmd_export_dipha(a):
    from dnntopo import pipeline, storage
    run = storage.open_run(a.run)
    out = pipeline.export_dipha(run, a.epoch, a.out, a.full)
    attrs = storage.read_attrs(run.epoch_file(a.epoch))
    print(out)
    if not a.quiet:
        print(f"run DIPHA on it, e.g.: mpiexec -n 4 dipha --upper_dim {attrs['max_dim'] + 1} {out} "
              f"{out.with_suffix('.diagram')}\nthen: dnntopo import-dipha --run {a.run} --epoch {a.epoch} "
              f"--diagram {out.with_suffix('.diagram')}", file=sys.stderr)


def cmd_import_dipha(a):
    from dnntopo import pipeline, storage
    print(pipeline.import_dipha(storage.open_run(a.run), a.epoch, a.diagram))


def _site(a):
    from hpc.submit import Site
    path = a.slurm_config or os.environ.get("DNNTOPO_SLURM_CONFIG", "")
    try:
        site = Site.from_file(path) if path else Site()
    except (OSError, ValueError) as exc:
        raise UserError(f"--slurm-config {path}: {exc}") from None
    for key in ("partition", "account", "qos", "time_train", "time_topology", "nodes", "ntasks",
                "cpus_per_task", "gpus_per_task", "mem", "modules", "mpi", "venv"):
        value = getattr(a, key)
        if value not in (None, ""):
            setattr(site, key, value)
    if not site.venv:  # jobs use the environment this command runs in
        site.venv = str(Path(sys.executable).parents[1])
    return site


def cmd_submit(a):
    from dnntopo import jobs
    from hpc.submit import Scheduler
    tcfg = _train_config(a)
    epochs = a.topology_epochs or tcfg.save_epochs
    tcfg.save_epochs = sorted(set(tcfg.save_epochs) | set(epochs))
    a.epochs = epochs
    _, acfg, gcfg, pcfg, scfg = _topology_configs(a)
    if a.cluster == "slurm" and shutil.which("sbatch") is None:
        raise UserError("--cluster slurm: sbatch not found; use --cluster local, or load SLURM's module")
    import logging
    logging.getLogger("submitit").setLevel(logging.ERROR)  # sacct is often off on small clusters
    sched = Scheduler(folder=None, cluster=a.cluster, site=_site(a))
    train_job, topo = jobs.submit_run(tcfg, epochs, acfg, gcfg, pcfg, scfg, sched, wait=a.wait,
                                      retrain=a.retrain)
    print(f"training: {train_job.job_id if train_job else 'checkpoints present, not resubmitted'}")
    print(f"topology: {' '.join(f'{e}:{j.job_id}' for e, j in topo.items()) or 'every epoch is current'}")


def cmd_status(a):
    from dnntopo import jobs, storage
    run = storage.open_run(a.run)
    rows = jobs.status(run)
    print(f"{'epoch':>5}  {'state':<24} job")
    for r in rows:
        print(f"{r['epoch']:>5}  {r['state']:<24} {r['job']}")


DEFAULT_FEATURES = ["life_1", "midlife_1", "betti_max_1", "density_at_max_1"]


def cmd_early_stop(a):
    from dnntopo import analysis, report, storage
    run = storage.open_run(a.run)
    rows, stop = analysis.early_stop_table(run, a.dim, a.axis, a.epsilon)
    sys.stdout.write(report.render([{k: ("<- stop" if v is True else "" if v is False else v)
                                     for k, v in r.items()} for r in rows], "table"))
    print(f"proposed stopping epoch (dim {a.dim}, {a.axis}, epsilon {a.epsilon}): "
          f"{stop if stop is not None else 'none yet (the peak has not regressed)'}")
    cfg = storage.read_config(run)
    out = analysis.plot_early_stop(rows, stop, a.out or run.plots / f"early_stop_dim{a.dim}.png",
                                   f"{cfg['net']} on {cfg['dataset']}: Betti-{a.dim} peak", a.axis)
    print(f"plot: {out}")


def cmd_gengap(a):
    from dnntopo import analysis, report
    if a.action == "predict":
        if bool(a.run) == bool(a.features):
            raise UserError("gengap predict: give one of --run RUN or --features FILE")
    else:
        a.features = a.features or "gengap_features.csv"
    if a.action == "features":
        rows = analysis.feature_rows(a.runs)
        out = a.out or a.features
        analysis.write_csv(rows, out)
        print(f"{len(rows)} rows from {len({r['run'] for r in rows})} runs -> {out}")
    elif a.action == "fit":
        model = analysis.fit(analysis.read_csv(a.features), a.use or DEFAULT_FEATURES)
        a.out = a.out or a.model
        analysis.save_model(model, a.out)
        print(f"gap = {model['intercept']:.4g} + " + " + ".join(f"{c:.4g} {f}" for f, c in model["coefficients"].items()))
        print(f"training MAE of the gap {model['train_mae']:.4f} on {model['n_rows']} rows -> {a.out}")
    elif a.action == "predict":
        model = analysis.load_model(a.model)
        rows = analysis.feature_rows([a.run]) if a.run else analysis.read_csv(a.features)
        gaps = analysis.predict(model, rows)
        table = [{"run": r["run"], "epoch": int(r["epoch"]), "acc_train": r["acc_train"], "gap_pred": g,
                  "acc_test_pred": r["acc_train"] - g} for r, g in zip(rows, gaps)]
        sys.stdout.write(report.render(table, a.format))
    else:
        feats = analysis.read_csv(a.features)
        rows, mae = analysis.evaluate(feats, a.use or DEFAULT_FEATURES, a.by)
        table = [{"run": r["run"], "epoch": int(r["epoch"]), "gap": r["gap"], "gap_pred": r["gap_pred"],
                  "acc_test": r["acc_test"], "acc_test_pred": r["acc_test_pred"], "error": r["error"]}
                 for r in rows]
        sys.stdout.write(report.render(table, a.format))
        print(f"leave-one-{a.by}-out mean absolute error of the test accuracy: {mae:.4f} "
              f"(predicting the other {a.by}s' mean gap instead: {analysis.baseline_error(feats, a.by):.4f})")
        if a.plot:
            print(f"plot: {analysis.scatter(rows, a.plot)}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dnntopo",
        description="Topology of deep neural networks: train, compute the persistent homology of "
                    "each saved epoch's functional graph, summarize, plot, analyse.")
    p.add_argument("--version", action="version", version=f"dnntopo {__version__}")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or messages")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    t = sub.add_parser("train", help="train a net, checkpointing the requested epochs")
    _add_train_args(t)
    t.set_defaults(func=cmd_train)

    t = sub.add_parser("topology", help="functional graph, persistent homology and summaries of saved epochs")
    _add_topology_args(t)
    t.set_defaults(func=cmd_topology)

    t = sub.add_parser("plot", help="Betti curves of epochs, a persistence diagram, or summaries against epoch")
    t.add_argument("--run", required=True, help="run folder")
    t.add_argument("--epochs", type=int, nargs="+", default=None, help="epochs (default: all computed)")
    t.add_argument("--dim", type=int, default=1, help="homology dimension (default 1)")
    t.add_argument("--kind", default="betti", choices=("betti", "diagram", "summary"),
                   help="betti curves (default), diagram of the last epoch, or summaries")
    t.add_argument("--smooth", type=int, default=0, help="moving-average width for the curves")
    t.add_argument("--out", default=None, help="output file (.png, .pdf, .svg); default RUN/plots/")
    t.set_defaults(func=cmd_plot)

    t = sub.add_parser("summary", help="table of accuracy and topological summaries per epoch")
    t.add_argument("--run", required=True, help="run folder")
    t.add_argument("--format", default="table", choices=("table", "csv", "json"))
    t.set_defaults(func=cmd_summary)

    t = sub.add_parser("run", help="the main job: train, topology of the chosen epochs, plots, summary")
    _add_job_args(t)
    t.set_defaults(func=cmd_run)

    t = sub.add_parser("submit", help="the main job through SLURM or locally (submitit): training, then an epoch array")
    _add_job_args(t)
    g = t.add_argument_group("scheduling (site values: --slurm-config FILE, then these flags)")
    g.add_argument("--cluster", default=None, choices=("slurm", "local", "debug"),
                   help="slurm where sbatch exists, else local (default: auto)")
    g.add_argument("--slurm-config", default="", help="KEY=value file like slurm/site.conf.example")
    for flag, typ, hlp in (("--partition", str, "partition"), ("--account", str, "account"),
                           ("--qos", str, "quality of service"), ("--time-train", str, "training time limit"),
                           ("--time-topology", str, "time limit of each epoch task"),
                           ("--nodes", int, "nodes per epoch task"), ("--ntasks", int, "MPI ranks per epoch task"),
                           ("--cpus-per-task", int, "cores per rank"), ("--gpus-per-task", int, "GPUs for training"),
                           ("--mem", str, "memory per job"), ("--modules", str, "modules to load in each job"),
                           ("--mpi", str, "srun --mpi plugin (default pmix)"), ("--venv", str, "environment to activate")):
        g.add_argument(flag, type=typ, default=None, help=hlp)
    g.add_argument("--wait", action="store_true", help="wait for every job to finish")
    g.add_argument("--retrain", action="store_true", help="submit training even if its checkpoints exist")
    t.set_defaults(func=cmd_submit)

    t = sub.add_parser("status", help="per epoch: done, missing, pending or running, with the job ids")
    t.add_argument("--run", required=True, help="run folder")
    t.set_defaults(func=cmd_status)

    t = sub.add_parser("early-stop", help="stopping epoch from the drift of the Betti-curve peak")
    t.add_argument("--run", required=True, help="run folder")
    t.add_argument("--dim", type=int, default=1, help="homology dimension (default 1)")
    t.add_argument("--axis", default="density", choices=("density", "distance"),
                   help="where the peak is measured (default density)")
    t.add_argument("--epsilon", type=float, default=0.005,
                   help="stop at the first epoch whose peak moved by less than -epsilon (default 0.005)")
    t.add_argument("--out", default=None, help="plot file (default RUN/plots/early_stop_dim<d>.png)")
    t.set_defaults(func=cmd_early_stop)

    t = sub.add_parser("gengap", help="generalization gap from topology: features, fit, predict, evaluate")
    t.add_argument("action", choices=("features", "fit", "predict", "evaluate"))
    t.add_argument("--runs", nargs="+", default=["runs"], help="features: run folders or folders of runs")
    t.add_argument("--features", default=None, help="the features CSV (default gengap_features.csv)")
    t.add_argument("--use", nargs="+", default=None,
                   help=f"fit/evaluate: features (default {' '.join(DEFAULT_FEATURES)})")
    t.add_argument("--model", default="gengap_model.json", help="predict: the fitted model")
    t.add_argument("--run", default=None, help="predict: a run folder (instead of --features)")
    t.add_argument("--by", default="run", choices=("run", "group"), help="evaluate: leave one run or group out")
    t.add_argument("--plot", default=None, help="evaluate: scatter plot of predicted against true")
    t.add_argument("--out", default=None, help="features: CSV to write; fit: model JSON to write")
    t.add_argument("--format", default="table", choices=("table", "csv", "json"))
    t.set_defaults(func=cmd_gengap)

    t = sub.add_parser("export-dipha", help="write an epoch's distance matrix in DIPHA's format")
    t.add_argument("--run", required=True, help="run folder")
    t.add_argument("--epoch", type=int, required=True, help="epoch")
    t.add_argument("--out", default=None, help="output file (default topology/epoch_XXXX.complex)")
    t.add_argument("--full", action="store_true", help="full matrix (type 7; needs --save-dense) instead of sparse")
    t.set_defaults(func=cmd_export_dipha)

    t = sub.add_parser("import-dipha", help="put a DIPHA persistence diagram into an epoch file")
    t.add_argument("--run", required=True, help="run folder")
    t.add_argument("--epoch", type=int, required=True, help="epoch")
    t.add_argument("--diagram", required=True, help="DIPHA diagram file (type 2)")
    t.set_defaults(func=cmd_import_dipha)
    return p


def main(argv=None):
    """Entry point of the `dnntopo` console script."""
    from hpc.comm import abort_with, get_comm
    parser = build_parser()
    args = parser.parse_args(argv)
    comm = None
    try:
        comm = get_comm()
        args.comm = comm
        args.func(args)
    except UserError as exc:
        abort_with(comm, "dnntopo", f"error: {exc}", 2)
    except KeyboardInterrupt:
        abort_with(comm, "dnntopo", "interrupted", 130)
    except Exception as exc:  # a bug, or an environment problem we did not foresee
        if os.environ.get("DNNTOPO_DEBUG"):
            raise
        first = (str(exc).splitlines() or [""])[0]
        abort_with(comm, "dnntopo", f"internal error: {type(exc).__name__}: {first} "
                    f"(set DNNTOPO_DEBUG=1 for the traceback)", 1)


