"""DIPHA as a persistent-homology backend, and the export/import of epochs in its formats.

The handoff: the ranks that own the rows of the thresholded distance write DIPHA's sparse
matrix (type 8) together with MPI-IO, DIPHA runs over the job's communicator (spawned, or a
separate mpiexec), and rank 0 reads the diagram back in distance units (DIPHA reports half
distances). Import replaces an epoch's diagrams, curves and summaries by a DIPHA diagram,
through `storage`, the one writer of epoch files.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np

from dnntopo import storage, summaries
from dnntopo.dipha import formats
from dnntopo.errors import UserError
from dnntopo.topology import Backend

#: What the launcher's failures mean for a user of `--backend dipha`.
_ADVICE = {"spawn-refused": "spawning was refused; use --dipha-launch mpiexec (or give the job "
                            "free slots: --oversubscribe on a full node)",
           "no-mpiexec": "put Open MPI's mpiexec on PATH, or use --dipha-procs 1",
           "timeout": "raise --dipha-timeout",
           "incomplete": "check DIPHA's own output above",
           "failed": "check DIPHA's own output above",
           "start": "check --dipha"}


class DiphaBackend(Backend):
    """Runs a DIPHA binary (or the `dnntopo-dipha` drop-in) on the job's communicator."""
    name = "dipha"

    def __init__(self, spec):
        binary = spec.dipha or os.environ.get("DIPHA", "")
        if not binary:
            raise UserError("--backend dipha needs the DIPHA binary: --dipha PATH or $DIPHA "
                            "(dnntopo-dipha is a drop-in)")
        found = shutil.which(binary)
        if not found:
            raise UserError(f"--dipha {binary}: not an executable file")
        self.binary = found

    def diagrams(self, comm, graph, spec, scratch: Path, info: dict, progress=None):
        return handoff(comm, graph, spec, self.binary, scratch, info, progress)


def handoff(comm, graph, spec, binary: str, scratch: Path, info: dict, progress=None):
    """Write the sparse distance collectively (MPI-IO), run DIPHA on it over the job's
    communicator, and read its diagram back in distance units (on rank 0)."""
    from hpc.launch import Launch, LaunchError, run_external
    from hpc.mpiio import symmetric_rows, write_rows
    rows = graph.rows
    n, rank, bounds = rows.n, comm.Get_rank(), rows.row_bounds
    lo, hi = int(bounds[rank]), int(bounds[rank + 1])
    r, c, v = symmetric_rows(comm, bounds, rows.i, rows.j, rows.distance)
    stem = Path(scratch).with_name(f".{Path(scratch).stem}.dipha")
    src, out = stem.with_suffix(".complex"), stem.with_suffix(".diagram")
    if rank == 0 and out.exists():
        out.unlink()
    write_rows(comm, src, [formats.MAGIC, formats.SPARSE, n], n, lo, hi, r, c, v)
    del r, c, v
    launch = Launch(binary, ["--upper_dim", spec.max_dim + 1, src, out], procs=spec.dipha_procs,
                    mode=spec.dipha_launch, timeout=spec.dipha_timeout)
    t0 = time.perf_counter()
    tick = (lambda s: progress(f"waiting for DIPHA: {s} s")) if progress is not None else None
    try:
        how = run_external(comm, launch, out, formats.file_size_ok, progress=tick)
    except LaunchError as exc:
        if rank == 0:
            src.unlink(missing_ok=True), out.unlink(missing_ok=True)
        raise UserError(f"--dipha {binary}: {exc}; {_ADVICE.get(exc.kind, '')}".rstrip("; ")) from None
    info.update(dipha_launch=how, seconds_dipha=time.perf_counter() - t0,
                dipha_procs=launch.procs or comm.Get_size())
    if rank != 0:
        return None
    try:
        return formats.from_dipha(*formats.read_diagram(out), max_dim=spec.max_dim)
    finally:
        src.unlink(missing_ok=True), out.unlink(missing_ok=True)


def export_epoch(run: storage.Run, epoch: int, out: Path | None, full: bool) -> Path:
    """Write an epoch's distance in DIPHA's format: sparse (type 8) from the stored edges, or
    full (type 7) from the stored dense matrix (computed with --save-dense)."""
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
            formats.write_full(out, f["graph/distance"][()].astype(np.float64))
        else:
            e = f["graph/edges"]
            counts, cols, vals, _ = formats.symmetric_lists(n, e["i"][()], e["j"][()], e["distance"][()])
            formats.write_sparse(out, n, counts, cols, vals)
    return out


def import_epoch(run: storage.Run, epoch: int, diagram_path) -> Path:
    """Replace an epoch's diagrams (and curves and summaries) by a DIPHA diagram file."""
    from dnntopo.spec import TopologySpec
    path = run.epoch_file(epoch)
    if not path.exists():
        raise UserError(f"{path} does not exist: compute the epoch first (its graph is needed)")
    dims, births, deaths = formats.read_diagram(diagram_path)
    ep = storage.read_epoch(path, edges=True)
    attrs = ep["attrs"]
    max_dim = int(attrs["max_dim"])
    top = int(np.max(np.where(dims < 0, -dims - 1, dims))) if dims.size else 0
    max_dim = max(max_dim, top)
    spec = TopologySpec.from_attrs(dict(attrs, backend="dipha", max_dim=max_dim, collapse="auto"))
    dgms = formats.from_dipha(dims, births, deaths, max_dim=max_dim)
    n_nodes = int(attrs["n_nodes"])
    grid, density, bettis, sums = summaries.curves_and_summaries(dgms, ep["edges"][2], n_nodes, spec)
    keep = {k: v for k, v in attrs.items() if k not in spec.attrs() and k != "version"}
    keep["imported_from"] = str(Path(diagram_path).resolve())
    contents = storage.epoch_contents(dict(keep, **spec.attrs()), ep["layer"], ep["graph_attrs"],
                                      ep["edges"], dgms, grid, density, bettis, sums,
                                      dense=ep.get("graph/distance"), activations=ep.get("activations"))
    storage.write_epoch_file(path, *contents)
    return path
