"""`dnntopo-dipha`: a drop-in for DIPHA's command line on distance matrices, computed by dnntopo.

    dnntopo-dipha [--dual] [--benchmark] --upper_dim D IN OUT
    mpiexec -n K dnntopo-dipha --upper_dim 3 IN OUT

The command line is DIPHA's: the last two arguments are IN and OUT, every argument before them
is an option (`--upper_dim N`, `--dual`, `--benchmark`, `--help`); anything else is refused with
one usage line and a non-zero exit. A distance matrix needs `--upper_dim`; `--upper_dim 0` writes
a diagram with no pair. `--dual` changes nothing here (DIPHA's dualization gives the same
diagram).

IN is a DIPHA full (type 7) or sparse (type 8) distance matrix, OUT the persistence diagram
(type 2) with DIPHA's conventions and bytes: dimensions 0..D-1 (correct below --upper_dim, as
DIPHA), values half the distance, essential classes as dim -k-1 with the largest value in the
complex, no zero-persistence pairs, pairs sorted by (dim, birth, death) as DIPHA writes them.
The values written are the float64 values of the input, not the engine's float32 ones. When
float32 would merge distinct input values (and so could lose pairs of tiny persistence), the
diagram is computed in float64 by GUDHI instead (slower and more memory, exact). Under K ranks,
rank 0 reduces with all its cores while the others wait.
"""
from __future__ import annotations

import importlib.util
import sys
import time

import numpy as np

from dnntopo import dipha, topology
from dnntopo.errors import UserError
from hpc.collectives import quiet_barrier

PROG = "dnntopo-dipha"
USAGE = f"usage: {PROG} [--dual] [--benchmark] --upper_dim N input_filename output_filename"


class UsageError(UserError):
    """A command line DIPHA would refuse."""


def parse(argv: list) -> dict:
    """DIPHA's command line: options, then IN OUT (the last two arguments)."""
    argv = [str(a) for a in argv]
    if "--help" in argv[:-2] or argv in (["--help"], ["-h"]) or "-h" in argv[:-2]:
        return {"help": True}
    if len(argv) < 2:
        raise UsageError("give the input and output files")
    opts = {"upper_dim": None, "dual": False, "benchmark": False,
            "input": argv[-2], "output": argv[-1], "help": False}
    k, head = 0, argv[:-2]
    while k < len(head):
        a = head[k]
        if a == "--dual":
            opts["dual"] = True
        elif a == "--benchmark":
            opts["benchmark"] = True
        elif a == "--upper_dim":
            k += 1
            if k >= len(head):
                raise UsageError("--upper_dim needs a number before the input and output files")
            v = head[k]
            if not (v.isascii() and v.isdigit()):
                raise UsageError(f"--upper_dim {v}: not a whole number 0 or more")
            opts["upper_dim"] = int(v)
        elif a.startswith("-"):
            raise UsageError(f"unknown option {a}")
        else:
            raise UsageError(f"unexpected argument {a} (the input and output files come last)")
        k += 1
    if opts["upper_dim"] is None:
        raise UsageError("a distance matrix needs --upper_dim N (homology in dimensions < N)")
    return opts


def float32_merges(d: np.ndarray) -> bool:
    """True when distinct float64 values would become equal in float32."""
    d = np.asarray(d, dtype=np.float64)
    return np.unique(d.astype(np.float32)).size < np.unique(d).size


def persistence_float64(n: int, i, j, d, max_dim: int) -> list[np.ndarray]:
    """Diagrams of dims 0..max_dim in float64 (GUDHI's simplex tree, Z/2, after its exact edge
    collapse), rows sorted by (birth, death), essential classes dying at inf."""
    import gudhi
    st = gudhi.SimplexTree()
    # C-contiguous int64 arrays: GUDHI 3.13 reads a [None, :] view of int32 vertices as filtration inf
    st.insert_batch(np.arange(n, dtype=np.int64).reshape(1, n), np.zeros(n))
    if len(d):
        st.insert_batch(np.ascontiguousarray(np.vstack([i, j]), dtype=np.int64),
                        np.ascontiguousarray(d, dtype=np.float64))
        if max_dim >= 1:
            before = st.num_simplices()
            while True:
                st.collapse_edges(nb_iterations=1)
                now = st.num_simplices()
                if now == before:
                    break
                before = now
    st.expansion(max_dim + 1)
    # persistence_dim_max: the top dimension counts too when the complex stops at or below max_dim
    st.compute_persistence(homology_coeff_field=2, persistence_dim_max=True)
    out = []
    for k in range(max_dim + 1):
        dg = np.asarray(st.persistence_intervals_in_dimension(k), dtype=np.float64).reshape(-1, 2)
        out.append(dg[np.lexsort((dg[:, 1], dg[:, 0]))])
    return out


def compute(path_in, path_out, upper_dim: int, benchmark: bool = False, log=sys.stdout):
    """Read IN, compute dims 0..upper_dim-1, write OUT; return the number of pairs written."""
    t0 = time.perf_counter()
    n, i, j, d = dipha.edges_from_file(path_in)
    t1 = time.perf_counter()
    max_dim = upper_dim - 1
    top = float(d.max()) if d.size else 0.0
    info = {}
    if upper_dim <= 0:
        engine, dgms = "none", []
    elif float32_merges(d):
        if importlib.util.find_spec("gudhi") is None:
            raise UserError(f"{path_in}: distinct distances of this input are equal in float32 and "
                            f"no float64 engine (GUDHI) is installed: the diagram could lose pairs; "
                            f"pip install gudhi")
        engine = "gudhi, float64 (float32 would merge distinct distances)"
        dgms = persistence_float64(n, i, j, d, max_dim)
    else:
        engine = "giotto, float32 (values written in float64)"
        dgms = topology.persistence(n, i, j, d.astype(np.float32), max_dim, info=info)
        dgms = [dipha.exact_values(dg, d) for dg in dgms]
    t2 = time.perf_counter()
    dims, births, deaths = dipha.to_dipha(dgms, top)
    dipha.write_diagram(path_out, dims, births, deaths)
    if benchmark:
        print(f"{PROG}: {n} vertices, {d.size} edges ({info.get('collapsed_edges', d.size)} after "
              f"collapse), dims 0..{max_dim}, {engine}: read {t1 - t0:.3f} s, reduce {t2 - t1:.3f} s, "
              f"write {time.perf_counter() - t2:.3f} s, {len(dims)} pairs", file=log, flush=True)
    return len(dims)


def main(argv=None):
    from hpc.comm import abort_with, get_comm
    argv = sys.argv[1:] if argv is None else argv
    try:
        a = parse(argv)
    except UsageError as exc:
        comm = get_comm()
        if comm.Get_rank() == 0:
            abort_with(comm, PROG, f"error: {exc}; {USAGE}", 2)
        quiet_barrier(comm)  # rank 0 ends the job
        sys.exit(2)
    if a["help"]:
        print(__doc__.strip())
        return
    comm = get_comm()
    try:
        if comm.Get_rank() == 0:
            compute(a["input"], a["output"], a["upper_dim"], a["benchmark"])
        quiet_barrier(comm)
    except UserError as exc:
        abort_with(comm, PROG, f"error: {exc}", 2)
    except Exception as exc:  # pragma: no cover - bugs
        abort_with(comm, PROG, f"internal error: {type(exc).__name__}: {exc}", 1)


if __name__ == "__main__":
    main()
