"""The stages chained for each epoch: activations -> graph -> topology -> summaries -> epoch file.

Every stage runs on the communicator: the samples are sharded for extraction, the correlation
row blocks are shared, the PH step is collective (rank 0 reduces with all its cores while the
others wait without spinning), and rank 0 writes the epoch file atomically. With one rank this
is the serial run. What is computed is the `TopologySpec`; `TopologyOptions` say which epochs,
whether to recompute, what extras to store and where the forwards run. `main_job` is the
original `main.py`: train (with the topology hook if asked), then topology, then plots.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from dnntopo import activations, data, graph, models, storage, summaries, topology
from dnntopo.errors import UserError
from dnntopo.params import param
from dnntopo.progress import Progress
from dnntopo.spec import TopologySpec, epoch_state, record
from dnntopo.train import TrainConfig, resolve_device, train
from hpc.collectives import gather_rows, quiet_barrier


@dataclass(frozen=True)
class TopologyOptions:
    """Around the spec: which epochs, recompute or not, extras to store, where forwards run."""
    epochs: tuple = param((), "epochs to compute (default: every saved checkpoint)", type=int, nargs="+")
    force: bool = param(False, "recompute epochs whose file is current", type=bool, group="storage")
    save_activations: bool = param(False, "store the activations too (activations, nodes x samples)",
                                   type=bool, group="storage")
    save_dense: bool = param(False, "store the full distance matrix too (graph/distance)", type=bool,
                             group="storage")
    batch_size: int = param(100, "samples per forward batch", type=int, group="storage",
                            dest="act_batch")
    device: str = param("auto", "auto, cpu or cuda[:k] for forwards and products", type=str,
                        group="storage")
    quiet: bool = False

    def __post_init__(self):
        epochs = tuple(int(e) for e in (self.epochs or ()))
        object.__setattr__(self, "epochs", epochs)
        twice = sorted({e for e in epochs if epochs.count(e) > 1})
        if twice:
            raise UserError(f"--epochs {' '.join(map(str, epochs))}: "
                            f"{' '.join(map(str, twice))} given twice")
        if any(e < 0 for e in epochs):
            raise UserError(f"--epochs {' '.join(map(str, epochs))}: epochs are 0 or more")
        if self.batch_size <= 0:
            raise UserError(f"--batch-size {self.batch_size}: must be positive")

    def extras(self) -> tuple:
        """Datasets an existing epoch file must hold to be reused with these options."""
        return (("activations",) if self.save_activations else ()) + \
               (("graph/distance",) if self.save_dense else ())


def _maybe_fail(comm, stage: str, epoch: int | None = None):
    """Test hooks: DNNTOPO_FAIL_RANK=r [DNNTOPO_FAIL_STAGE=s] makes rank r raise at stage s;
    DNNTOPO_PAUSE_STAGE=s [DNNTOPO_PAUSE_EPOCH=e] [DNNTOPO_PAUSE_SECONDS=t] pauses there
    (at stage write: with the file half-written under its temporary name)."""
    env = os.environ
    if env.get("DNNTOPO_PAUSE_STAGE") == stage and env.get("DNNTOPO_PAUSE_EPOCH", str(epoch)) == str(epoch):
        time.sleep(float(env.get("DNNTOPO_PAUSE_SECONDS", "30")))
    rank = env.get("DNNTOPO_FAIL_RANK")
    if rank is not None and int(rank) == comm.Get_rank() and env.get("DNNTOPO_FAIL_STAGE", "graph") == stage:
        raise RuntimeError(f"failure injected at stage {stage} (DNNTOPO_FAIL_RANK={rank})")


@dataclass
class _Job:
    """What every epoch of one `run_topology` call shares."""
    comm: object
    run: storage.Run
    spec: TopologySpec
    opts: TopologyOptions
    backend: topology.Backend
    model: object
    samples: data.ImageSet
    device: object
    config: dict


def run_topology(comm, run: storage.Run, spec: TopologySpec,
                 opts: TopologyOptions = TopologyOptions()) -> list[Path]:
    """Compute (or reuse) the epoch file of every requested epoch; return their paths."""
    cfg = storage.read_config(run)
    net, dataset = cfg["net"], cfg["dataset"]
    epochs = list(opts.epochs) or run.saved_epochs()
    missing = [e for e in epochs if not run.checkpoint(e).exists()]
    if missing:
        have = run.saved_epochs()
        raise UserError(f"--epochs {' '.join(map(str, missing))}: no checkpoint in "
                        f"{run.checkpoints} (saved epochs: {' '.join(map(str, have)) or 'none'}); "
                        f"train with --save-epochs including them")
    engine = topology.backend(spec)
    device = resolve_device(opts.device)
    model = models.build(net, tuple(cfg["input_shape"]), int(cfg["num_classes"]))
    spec = replace(spec, layers=tuple(models.check_layers(model, net, spec.layers)))
    rank0 = comm.Get_rank() == 0
    if rank0:   # before any heavy work: the folder must take the files
        need = spec.samples * 4 * 4096 if opts.save_activations else 0   # a rough bound per epoch
        storage.check_space(run.topology, need, "the epoch files")
    comm.Barrier()
    try:
        if spec.sample_split == "own":
            from dnntopo.train import own_samples
            split_set = own_samples(cfg, run.config)
        else:
            split_set = data.load(dataset, cfg.get("data_root"), spec.sample_split)
    except UserError as exc:
        raise UserError(f"the run's data ({dataset}, data_root {cfg.get('data_root') or 'default'} in "
                        f"{run.config}): {exc}") from None
    samples = activations.sample_set(split_set, spec.samples, spec.sample_split)
    del split_set
    job = _Job(comm, run, spec, opts, engine, model, samples, device, cfg)
    out = []
    for epoch in epochs:
        path = run.epoch_file(epoch)
        state = epoch_state(run, epoch, spec, cfg, opts.extras()) if (rank0 and not opts.force) else None
        if comm.bcast(state is not None and state.current, root=0):
            out.append(path)
            _say(opts.quiet or not rank0, f"epoch {epoch}: {path} is up to date (--force recomputes)")
            continue
        info = _one_epoch(job, epoch)
        out.append(path)
        if rank0:
            collapsed = (f" ({info['collapsed_edges']} after collapse)"
                         if info.get("collapsed_edges", info["n_edges"]) != info["n_edges"] else "")
            _say(opts.quiet, f"epoch {epoch}: {info['n_nodes']} nodes, {info['n_edges']} edges"
                 f"{collapsed}, diagrams {info['pairs']} | extract {info['t_extract']:.1f}s "
                 f"graph {info['t_graph']:.1f}s PH {info['t_ph']:.1f}s"
                 f"{' on %d threads' % info['threads'] if 'threads' in info else ''} -> {path}")
            if "dipha_launch" in info:
                _say(opts.quiet, f"DIPHA ran through {info['dipha_launch']} ({info['dipha_procs']} "
                                 f"processes, {info['seconds_dipha']:.1f} s)")
    if rank0:
        record(run, spec)   # the run's spec, for `status`: the last one computed
    return out


def _one_epoch(job: _Job, epoch: int) -> dict:
    comm, spec, opts = job.comm, job.spec, job.opts
    rank0 = comm.Get_rank() == 0
    with Progress(f"epoch {epoch}", enabled=rank0 and not opts.quiet) as bar:
        models.load_state(job.model, job.run.checkpoint(epoch), job.config["net"])
        t0 = time.perf_counter()
        _maybe_fail(comm, "extract")
        n_batches = -(-spec.samples // opts.batch_size)
        bar.stage("activations", -(-n_batches // comm.Get_size()))
        try:
            x, layout = activations.extract(comm, job.model, job.samples, list(spec.layers),
                                            max_nodes=spec.max_nodes, batch_size=opts.batch_size,
                                            device=job.device, progress=bar.step)
        except UserError as exc:
            raise UserError(f"epoch {epoch} ({job.run.checkpoint(epoch)}): {exc}") from None
        raw = gather_rows(comm, x) if opts.save_activations else None
        if raw is x:
            raw = x.copy()
        t1 = time.perf_counter()
        _maybe_fail(comm, "graph")
        bar.stage("correlation", 0)
        g = graph.functional_graph(comm, x, spec.max_distance, opts.batch_size,
                                   device="cpu" if job.device.type == "cpu" else str(job.device),
                                   dense=opts.save_dense, progress=bar.step)
        del x
        t2 = time.perf_counter()
        _maybe_fail(comm, "topology")
        empty = comm.bcast(len(g.edges) == 0 if rank0 else None, root=0)
        if empty:
            raise UserError(f"epoch {epoch}: the graph has no edge with distance <= "
                            f"{spec.max_distance:g} ({layout.n_nodes} nodes); raise --max-distance")
        info = {}
        bar.stage(f"persistent homology ({job.backend.name})", 0)
        dgms = job.backend.diagrams(comm, g, spec, job.run.epoch_file(epoch), info, progress=bar.note)
        if rank0:
            t3 = time.perf_counter()
            bar.stage("summaries and file", 0)
            e = g.edges
            grid, density, bettis, sums = summaries.curves_and_summaries(dgms, e.distance, layout.n_nodes, spec)
            attrs = dict(spec.attrs(), net=job.config["net"], dataset=job.config["dataset"],
                         trial=int(job.config["trial"]), epoch=int(epoch), n_nodes=layout.n_nodes,
                         n_units=layout.n_units)
            graph_attrs = {"layers": ",".join(spec.layers), "layer_units": layout.units,
                           "layer_nodes": layout.nodes,
                           "grouping": "contiguous chunks of units averaged within each layer"}
            contents = storage.epoch_contents(
                attrs, layout.node_layer(), graph_attrs, (e.i, e.j, e.distance), dgms, grid, density,
                bettis, sums, dense=e.dense,
                activations=np.ascontiguousarray(raw.T) if raw is not None else None)
            storage.write_epoch_file(job.run.epoch_file(epoch), *contents,
                                     before_close=lambda: _maybe_fail(comm, "write", epoch))
            info.update(n_nodes=layout.n_nodes, n_edges=len(e), pairs="/".join(str(len(d)) for d in dgms),
                        t_extract=t1 - t0, t_graph=t2 - t1, t_ph=t3 - t2)
        del g
    quiet_barrier(comm)
    return info


def _say(quiet, msg):
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ training with topology

@dataclass(frozen=True)
class EarlyStop:
    """The early-stopping rule applied while training (see `analysis.early_stop_table`)."""
    dim: int = 1
    epsilon: float = 0.005
    axis: str = "density"


def topology_hook(run_root, spec: TopologySpec, every: int, early_stop: EarlyStop | None = None,
                  device: str = "auto", quiet: bool = True):
    """The per-epoch hook of `train --topology-every N [--early-stop]`: the topology of every
    N-th epoch with the user's spec (in the training process), and the stopping rule."""
    from dnntopo import analysis
    from hpc.comm import SerialComm
    if every <= 0:
        raise UserError(f"--topology-every {every}: must be positive")
    if early_stop is not None and early_stop.dim > spec.max_dim:
        raise UserError(f"--early-stop-dim {early_stop.dim}: the topology is computed up to "
                        f"--max-dim {spec.max_dim}; raise --max-dim")

    def hook(epoch, model, row):
        if epoch % every:
            return False
        run = storage.Run(Path(run_root))
        run_topology(SerialComm(), run, spec, TopologyOptions(epochs=(epoch,), device=device, quiet=quiet))
        if early_stop is None or len(run.topology_epochs()) < 2:
            return False
        _, stop = analysis.early_stop_table(run, early_stop.dim, early_stop.axis, early_stop.epsilon)
        if stop is not None:
            print(f"early stop: the Betti-{early_stop.dim} peak regressed at epoch {stop}; "
                  f"training ends after epoch {epoch}", file=sys.stderr)
            return True
        return False
    return hook


def plan(tcfg: TrainConfig, topology_epochs=(), every: int = 0) -> tuple[TrainConfig, list[int]]:
    """The training config whose checkpoints cover the topology epochs (and every N-th epoch
    with `every`), and the topology epochs (default: the saved ones)."""
    tcfg.validate()
    topo = sorted(set(topology_epochs or tcfg.save_epochs))
    extra = set(range(0, tcfg.epochs + 1, every)) if every > 0 else set()
    bad = [e for e in topo if not 0 <= e <= tcfg.epochs]
    if bad:
        raise UserError(f"--topology-epochs {' '.join(map(str, bad))}: beyond --epochs {tcfg.epochs}")
    return replace(tcfg, save_epochs=sorted(set(tcfg.save_epochs) | set(topo) | extra)), topo


def train_run(comm, tcfg: TrainConfig, spec: TopologySpec | None = None, every: int = 0,
              early_stop: EarlyStop | None = None, resume: bool = False, quiet: bool = False,
              restart: bool = False) -> storage.Run:
    """Train on rank 0 (with the topology hook every `every` epochs); every rank gets the run.
    An existing run is reused, continued (`resume`) or trained anew (`restart`), never mixed."""
    tcfg, _ = plan(tcfg, (), every)
    hook = None
    if every:
        hook = topology_hook(storage.run_path(tcfg.run_dir, tcfg.net, tcfg.dataset, tcfg.trial),
                             spec or TopologySpec(), every, early_stop, tcfg.device)
    elif early_stop is not None:
        raise UserError("--early-stop needs --topology-every N")
    root = None
    if comm.Get_rank() == 0:  # training is one process: under mpiexec/srun, rank 0 trains
        root = train(tcfg, resume=resume, quiet=quiet, on_epoch=hook, restart_run=restart).root
    quiet_barrier(comm)
    return storage.Run(Path(comm.bcast(str(root) if root else None, root=0)))


def main_job(comm, tcfg: TrainConfig, spec: TopologySpec, opts: TopologyOptions, every: int = 0,
             early_stop: EarlyStop | None = None, resume: bool = False,
             restart: bool = False) -> tuple[storage.Run, list]:
    """Train, the topology of the requested epochs, then the plots (rank 0); return the run
    and the plots made."""
    tcfg, epochs = plan(tcfg, opts.epochs, every)
    run = train_run(comm, tcfg, spec, every, early_stop, resume, opts.quiet, restart)
    run_topology(comm, run, spec, replace(opts, epochs=tuple(epochs)))
    made = []
    if comm.Get_rank() == 0:
        from dnntopo import plots
        made = plots.plot_run(run, epochs, range(spec.max_dim + 1))
    return run, made
