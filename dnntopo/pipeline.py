"""The stages chained for each epoch: activations -> graph -> topology -> summaries -> epoch file.

Every stage runs on the communicator: the samples are sharded for extraction, the correlation
row blocks are shared, the PH step is collective (rank 0 reduces with all its cores while the
others wait without spinning), and rank 0 writes the epoch file atomically. With one rank this
is the serial run.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dnntopo import __version__, activations, data, graph, models, storage, summaries, topology
from dnntopo.errors import UserError
from dnntopo.train import resolve_device
from hpc.collectives import gather_rows, quiet_barrier

#: Root attributes that must match for an existing epoch file to be reused.
MATCH_KEYS = ("net", "dataset", "trial", "epoch", "n_samples", "sample_split", "layers",
              "max_nodes", "max_dim", "max_distance", "backend", "min_persistence", "grid_points")


@dataclass
class TopologyOptions:
    """What to do around the stages: which epochs, recompute or not, extras to store."""
    epochs: list = field(default_factory=list)
    force: bool = False
    save_activations: bool = False
    quiet: bool = False


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


def is_current(path: Path, checkpoint: Path, params: dict) -> bool:
    """True when the epoch file exists, is newer than its checkpoint and has the same parameters."""
    if not path.exists():
        return False
    if checkpoint.exists() and checkpoint.stat().st_mtime > path.stat().st_mtime:
        return False
    try:
        attrs = storage.read_attrs(path)
    except (UserError, OSError):
        return False
    for k in MATCH_KEYS:
        a, b = attrs.get(k), params.get(k)
        if isinstance(b, float) and isinstance(a, (int, float)):
            if not np.isclose(a, b, rtol=0, atol=1e-12):
                return False
        elif a != b:
            return False
    return True


def run_topology(comm, run: storage.Run, opts: TopologyOptions, acfg: activations.ActivationConfig,
             gcfg: graph.GraphConfig, pcfg: topology.PHConfig,
             scfg: summaries.SummaryConfig) -> list[Path]:
    """Compute (or reuse) the epoch file of every requested epoch; return their paths."""
    for c in (acfg, gcfg, pcfg, scfg):
        c.validate()
    if gcfg.max_distance != pcfg.max_distance:
        raise ValueError("graph and PH thresholds differ")
    cfg = storage.read_config(run)
    net, dataset = cfg["net"], cfg["dataset"]
    epochs = list(opts.epochs) or run.saved_epochs()
    missing = [e for e in epochs if not run.checkpoint(e).exists()]
    if missing:
        have = run.saved_epochs()
        raise UserError(f"--epochs {' '.join(map(str, missing))}: no checkpoint in "
                        f"{run.checkpoints} (saved epochs: {' '.join(map(str, have)) or 'none'}); "
                        f"train with --save-epochs including them")
    device = resolve_device(acfg.device)
    gcfg = replace(gcfg, device="cpu" if device.type == "cpu" else str(device))
    rank0 = comm.Get_rank() == 0
    if rank0:
        run.topology.mkdir(parents=True, exist_ok=True)
    comm.Barrier()
    split_set = data.load(dataset, cfg.get("data_root"), acfg.sample_split)
    samples = activations.sample_set(split_set, acfg.samples, acfg.sample_split)
    del split_set
    model = models.build(net, tuple(cfg["input_shape"]), int(cfg["num_classes"]))
    layers = models.check_layers(model, net, acfg.layers)
    base = dict(net=net, dataset=dataset, trial=int(cfg["trial"]), n_samples=acfg.samples,
                sample_split=acfg.sample_split, layers=",".join(layers), max_nodes=acfg.max_nodes,
                max_dim=pcfg.max_dim, max_distance=float(pcfg.max_distance), backend=pcfg.backend,
                min_persistence=float(scfg.min_persistence), grid_points=scfg.grid_points)
    out = []
    bar = tqdm(epochs, desc="topology", unit="epoch", disable=True if (opts.quiet or not rank0) else None,
               file=sys.stderr)
    for epoch in bar:
        path = run.epoch_file(epoch)
        params = dict(base, epoch=int(epoch))
        skip = is_current(path, run.checkpoint(epoch), params) if (rank0 and not opts.force) else False
        if comm.bcast(skip, root=0):
            out.append(path)
            _say(opts.quiet or not rank0, f"epoch {epoch}: {path} is up to date (--force recomputes)")
            continue
        bar.set_postfix_str(f"epoch {epoch}")
        info = _one_epoch(comm, run, epoch, model, samples, layers, params, opts, device, acfg, gcfg, pcfg, scfg)
        out.append(path)
        if rank0:
            collapsed = f" ({info['collapsed_edges']} after collapse)" if "collapsed_edges" in info else ""
            _say(opts.quiet, f"epoch {epoch}: {info['n_nodes']} nodes, {info['n_edges']} edges"
                 f"{collapsed}, diagrams "
                 f"{info['pairs']} | extract {info['t_extract']:.1f}s graph {info['t_graph']:.1f}s "
                 f"PH {info['t_ph']:.1f}s -> {path}")
    return out


def _one_epoch(comm, run, epoch, model, samples, layers, params, opts, device, acfg, gcfg, pcfg, scfg) -> dict:
    models.load_state(model, run.checkpoint(epoch), params["net"])
    t0 = time.perf_counter()
    _maybe_fail(comm, "extract")
    x, layout = activations.extract(comm, model, samples, layers, acfg, device)
    raw = None
    if opts.save_activations:
        raw = gather_rows(comm, x)
        if raw is x:
            raw = x.copy()
    t1 = time.perf_counter()
    _maybe_fail(comm, "graph")
    use_dipha = pcfg.backend == "dipha"
    edges = graph.functional_graph(comm, x, gcfg, acfg.batch_size, keep_local=use_dipha)
    del x
    t2 = time.perf_counter()
    _maybe_fail(comm, "topology")
    info = {}
    empty = comm.bcast(len(edges) == 0 if comm.Get_rank() == 0 else None, root=0)
    if empty:
        raise UserError(f"epoch {epoch}: the graph has no edge with distance <= "
                        f"{pcfg.max_distance} ({layout.n_nodes} nodes); raise --max-distance")
    dipha_dgms = handoff_dipha(comm, run.epoch_file(epoch), edges, pcfg, info) if use_dipha else None
    if comm.Get_rank() == 0:
        if use_dipha:
            dgms = dipha_dgms
        else:
            dgms = topology.persistence(layout.n_nodes, edges.i, edges.j, edges.distance, pcfg, info)
        t3 = time.perf_counter()
        grid, density, bettis, sums = summaries.curves_and_summaries(
            dgms, edges.distance, layout.n_nodes, pcfg.max_distance, scfg)
        _write(run.epoch_file(epoch), params, layout, edges, raw, dgms, grid, density, bettis, sums,
               before_close=lambda: _maybe_fail(comm, "write", epoch))
        info.update(n_nodes=layout.n_nodes, n_edges=len(edges), pairs="/".join(str(len(d)) for d in dgms),
                    t_extract=t1 - t0, t_graph=t2 - t1, t_ph=t3 - t2)
    quiet_barrier(comm)
    return info


def handoff_dipha(comm, epoch_path: Path, edges, pcfg, info: dict):
    """Write the sparse distance collectively (MPI-IO), run DIPHA on it over the job's
    communicator, and read its diagram back in distance units (on rank 0)."""
    from dnntopo import dipha
    from hpc.launch import Launch, LaunchError, run_external
    from hpc.mpiio import symmetric_rows, write_rows
    n, rank, bounds = edges.n, comm.Get_rank(), edges.row_bounds
    lo, hi = int(bounds[rank]), int(bounds[rank + 1])
    rows, cols, vals = symmetric_rows(comm, bounds, *edges.local)
    stem = epoch_path.with_name(f".{epoch_path.stem}.dipha")
    src, out = stem.with_suffix(".complex"), stem.with_suffix(".diagram")
    if rank == 0 and out.exists():
        out.unlink()
    write_rows(comm, src, [dipha.MAGIC, dipha.SPARSE, n], n, lo, hi, rows, cols, vals)
    del rows, cols, vals
    launch = Launch(pcfg.dipha, ["--upper_dim", pcfg.max_dim + 1, src, out], procs=pcfg.dipha_procs,
                    mode=pcfg.dipha_launch, timeout=pcfg.dipha_timeout)
    t0 = time.perf_counter()
    try:
        how = run_external(comm, launch, out, dipha.file_size_ok)
    except LaunchError as exc:
        if rank == 0:
            src.unlink(missing_ok=True), out.unlink(missing_ok=True)
        raise UserError(f"--dipha {pcfg.dipha}: {exc}") from None
    info.update(dipha_launch=how, seconds_dipha=time.perf_counter() - t0)
    if rank != 0:
        return None
    _say(False, f"DIPHA ran through {how} ({launch.procs or comm.Get_size()} processes, "
                f"{time.perf_counter() - t0:.1f} s)")
    try:
        dgms = dipha.from_dipha(*dipha.read_diagram(out), max_dim=pcfg.max_dim)
    finally:
        src.unlink(missing_ok=True), out.unlink(missing_ok=True)
    return dgms


def _write(path, params, layout, edges, raw, dgms, grid, density, bettis, sums, before_close=None):
    attrs = dict(params, n_nodes=layout.n_nodes, n_units=layout.n_units, version=__version__)
    arrays = {"graph/edges/i": edges.i, "graph/edges/j": edges.j,
              "graph/edges/distance": edges.distance, "graph/layer": layout.node_layer(),
              "betti/distance": grid, "betti/density": density}
    if edges.dense is not None:
        arrays["graph/distance"] = edges.dense
    if raw is not None:
        arrays["activations"] = np.ascontiguousarray(raw.T)
    for k, (dg, b) in enumerate(zip(dgms, bettis)):
        arrays[f"diagrams/dim_{k}"] = dg
        arrays[f"betti/dim_{k}"] = b
    gattrs = {"graph": {"layers": params["layers"], "layer_units": layout.units,
                        "layer_nodes": layout.nodes,
                        "grouping": "contiguous chunks of units averaged within each layer"}}
    gattrs.update({f"summary/dim_{k}": s for k, s in enumerate(sums)})
    storage.write_epoch_file(path, attrs, arrays, gattrs, before_close=before_close)


def _say(quiet, msg):
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def export_dipha(run: storage.Run, epoch: int, out: Path | None, full: bool) -> Path:
    """Write an epoch's distance in DIPHA's format: sparse (type 8) from the stored edges, or
    full (type 7) from the stored dense matrix (computed with --save-dense)."""
    from dnntopo import dipha
    path = run.epoch_file(epoch)
    if not path.exists():
        raise UserError(f"{path} does not exist; compute it with `dnntopo topology --run {run.root} --epochs {epoch}`")
    out = Path(out) if out else path.with_suffix(".full.complex" if full else ".complex")
    with storage.h5_file(path) as f:
        n = int(f.attrs["n_nodes"])
        if full:
            if "graph/distance" not in f:
                raise UserError(f"{path} holds no full distance matrix; recompute the epoch with "
                                f"--save-dense --force, or export the sparse matrix (no --full)")
            dipha.write_full(out, f["graph/distance"][()].astype(np.float64))
        else:
            e = f["graph/edges"]
            counts, cols, vals, _ = dipha.symmetric_lists(n, e["i"][()], e["j"][()], e["distance"][()])
            dipha.write_sparse(out, n, counts, cols, vals)
    return out


def import_dipha(run: storage.Run, epoch: int, diagram_path) -> Path:
    """Replace an epoch's diagrams (and curves and summaries) by a DIPHA diagram file."""
    import h5py
    from dnntopo import dipha
    path = run.epoch_file(epoch)
    if not path.exists():
        raise UserError(f"{path} does not exist: compute the epoch first (its graph is needed)")
    dims, births, deaths = dipha.read_diagram(diagram_path)
    with storage.h5_file(path) as f:
        attrs = {k: f.attrs[k] for k in f.attrs}
        distances = f["graph/edges/distance"][()]
    max_dim = int(attrs["max_dim"])
    top = int(np.max(np.where(dims < 0, -dims - 1, dims))) if dims.size else 0
    if top > max_dim:
        max_dim = top
    dgms = dipha.from_dipha(dims, births, deaths, max_dim=max_dim)
    scfg = summaries.SummaryConfig(grid_points=int(attrs["grid_points"]),
                                   min_persistence=float(attrs["min_persistence"]))
    grid, density, bettis, sums = summaries.curves_and_summaries(
        dgms, distances, int(attrs["n_nodes"]), float(attrs["max_distance"]), scfg)
    from hpc.io import atomic_path
    with atomic_path(path) as tmp:
        with storage.h5_file(path) as src, h5py.File(tmp, "w") as dst:
            for k, v in src.attrs.items():
                dst.attrs[k] = v
            dst.attrs["backend"], dst.attrs["max_dim"] = "dipha", max_dim
            dst.attrs["imported_from"] = str(Path(diagram_path).resolve())
            for name in src:
                if name not in ("diagrams", "betti", "summary"):
                    src.copy(src[name], dst, name=name)
            dst["betti/distance"], dst["betti/density"] = grid, density
            for k, (dg, b, s) in enumerate(zip(dgms, bettis, sums)):
                dst[f"diagrams/dim_{k}"], dst[f"betti/dim_{k}"] = dg, b
                g = dst.require_group(f"summary/dim_{k}")
                for key, val in s.items():
                    g.attrs[key] = val
    return path
