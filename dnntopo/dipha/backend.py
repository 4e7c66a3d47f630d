"""DIPHA as a persistent-homology backend, and the export/import of epochs in its formats.

The handoff: the ranks that own the rows of the thresholded distance write DIPHA's sparse
matrix (type 8) together with MPI-IO, DIPHA runs over the job's communicator (spawned, or a
separate mpiexec), and rank 0 reads the diagram back in distance units (DIPHA reports half
distances). DIPHA is called with `--dual` (the same diagrams, 3.6x faster on the LeNet graph), and
its diagram is read only after DIPHA has finished (`hpc.launch`: DIPHA writes the header before
it sorts the pairs in place). Import replaces an epoch's diagrams, curves and summaries by a
DIPHA diagram, through `storage`, the one writer of epoch files, once the diagram is checked to
fit the epoch (`check_fits`); export never overwrites a run's own files.
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
    launch = Launch(binary, ["--dual", "--upper_dim", spec.max_dim + 1, src, out], procs=spec.dipha_procs,
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


def export_epoch(run: storage.Run, epoch: int, out: Path | None, full: bool,
                 overwrite: bool = False) -> Path:
    """Write an epoch's distance in DIPHA's format: sparse (type 8) from the stored edges, or
    full (type 7) from the stored dense matrix (computed with --save-dense). `out` must end in
    .complex and may replace only a DIPHA file (never one of the run's own files)."""
    path = run.epoch_file(epoch)
    if not path.exists():
        raise UserError(f"{path} does not exist; compute it with `dnntopo topology --run {run.root} --epochs {epoch}`")
    out = Path(out) if out else path.with_suffix(".full.complex" if full else ".complex")
    out = storage.check_output(out, kinds=(".complex",), mine=storage.starts_with(formats.MAGIC_BYTES),
                               overwrite=overwrite)
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


#: Relative slack for values at the threshold: the stored distances are float32 and DIPHA's
#: values are their float64 halves, so a value at --max-distance may exceed it by a float32 ulp.
THRESHOLD_SLACK = 1e-6


def _components(n: int, i, j) -> int:
    """Connected components of the graph of edges (i, j) over n vertices."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    i, j = np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64)
    adj = coo_matrix((np.ones(i.size, dtype=np.int8), (i, j)), shape=(n, n))
    return int(connected_components(adj, directed=False)[0])


def _has_classes(dg) -> bool:
    dg = np.asarray(dg, dtype=np.float64).reshape(-1, 2)
    return bool(np.any(dg[:, 1] > dg[:, 0]))


def check_fits(diagram_path, dims, births, deaths, ep: dict, max_dim: int):
    """Refuse, with one line naming the diagram file (UserError), a DIPHA diagram (its triples,
    in DIPHA's units) that cannot be the diagram of the epoch `ep` (storage.read_epoch with
    edges) in dimensions 0..max_dim."""
    attrs = ep["attrs"]
    n, max_distance = int(attrs["n_nodes"]), float(attrs["max_distance"])
    i, j, dist = (np.asarray(x) for x in ep["edges"])
    bad = (f"{diagram_path} does not fit epoch {attrs.get('epoch', '?')} ({n} nodes, --max-distance "
           f"{max_distance:g}, --max-dim {int(attrs['max_dim'])})")
    k_of = np.where(dims < 0, -dims - 1, dims)
    odd = ~(np.isfinite(births) & np.isfinite(deaths))
    if odd.any():
        raise UserError(f"{bad}: {int(odd.sum())} pairs have a non-finite birth or death (NaN or inf; "
                        f"DIPHA writes finite values)")
    if np.any(births > deaths):
        raise UserError(f"{bad}: {int((births > deaths).sum())} pairs are born after they die "
                        f"(birth > death)")
    if np.any(births < 0):
        raise UserError(f"{bad}: {int((births < 0).sum())} pairs have a negative birth "
                        f"(distances are 0 or more)")
    limit = max(max_distance, float(np.max(dist)) if dist.size else 0.0)
    top = 2 * float(np.max(deaths)) if deaths.size else 0.0
    if top > limit * (1 + THRESHOLD_SLACK):
        raise UserError(f"{bad}: its values reach distance {top:.6g} (DIPHA's {top / 2:.6g}, doubled), "
                        f"beyond the epoch's --max-distance {max_distance:g}: it is the diagram of "
                        f"another matrix")
    deepest = int(k_of.max()) if k_of.size else 0
    if deepest > max_dim:
        raise UserError(f"{bad}: it has classes of dimension {deepest}, the epoch holds dimensions "
                        f"0..{max_dim}; recompute the epoch with --max-dim {deepest} first")
    zero = dist == 0
    want0 = _components(n, i[zero], j[zero])
    got0 = int(np.sum(k_of == 0))
    if got0 != want0:
        raise UserError(f"{bad}: it has {got0} classes of dimension 0, the epoch's graph needs {want0} "
                        f"(one per vertex, less the vertices joined at distance 0): it is the diagram "
                        f"of another matrix")
    want_ess = _components(n, i, j)
    got_ess = int(np.sum(dims == -1))
    if got_ess != want_ess:
        raise UserError(f"{bad}: it has {got_ess} essential classes of dimension 0, the epoch's graph "
                        f"has {want_ess} connected components: it is the diagram of another matrix")
    for k in range(1, max_dim + 1):
        if not np.any(k_of == k) and _has_classes(ep["diagrams"].get(k, np.empty((0, 2)))):
            raise UserError(f"{bad}: it has no class of dimension {k}, where the epoch has some (DIPHA "
                            f"run with --upper_dim {k}?); rerun DIPHA with --upper_dim {max_dim + 1}, or "
                            f"import dimensions 0..{k - 1} only with --max-dim {k - 1}")


def import_epoch(run: storage.Run, epoch: int, diagram_path, max_dim: int | None = None) -> Path:
    """Replace an epoch's diagrams (and curves and summaries) by a DIPHA diagram file, once the
    diagram is checked to fit the epoch (`check_fits`); otherwise the epoch file is untouched.

    `max_dim` None imports the epoch's dimensions 0..max_dim; a smaller `max_dim` D imports
    dimensions 0..D only (the diagram's classes above D are left out) and the epoch's max_dim
    becomes D."""
    from dnntopo.spec import TopologySpec
    path = run.epoch_file(epoch)
    if not path.exists():
        raise UserError(f"{path} does not exist: compute the epoch first (its graph is needed)")
    dims, births, deaths = formats.read_diagram(diagram_path)
    ep = storage.read_epoch(path, edges=True)
    attrs = ep["attrs"]
    have = int(attrs["max_dim"])
    if max_dim is None:
        max_dim = have
    elif not 0 <= max_dim <= have:
        raise UserError(f"--max-dim {max_dim}: {path} holds dimensions 0..{have}; import fewer "
                        f"(--max-dim 0..{have}), or recompute the epoch with --max-dim {max_dim}")
    else:
        keep = np.where(dims < 0, -dims - 1, dims) <= max_dim
        dims, births, deaths = dims[keep], births[keep], deaths[keep]
    check_fits(diagram_path, dims, births, deaths, ep, max_dim)
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
