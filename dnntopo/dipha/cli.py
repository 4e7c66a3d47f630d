"""`dnntopo-dipha`: a drop-in for DIPHA's command line on distance matrices, computed by dnntopo.

    dnntopo-dipha [--upper_dim D] [--dual] [--benchmark] IN OUT
    mpiexec -n K dnntopo-dipha --upper_dim 3 IN OUT

IN is a DIPHA full (type 7) or sparse (type 8) distance matrix, OUT the persistence diagram
(type 2) with DIPHA's conventions: dimensions 0..D-1 (correct below --upper_dim, as DIPHA),
values half the distance, essential classes as dim -k-1 with the largest value in the complex,
no zero-persistence pairs. The values written are the float64 values of the input, not the
engine's float32 ones. Under K ranks, rank 0 reduces with all its cores while the others wait.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from dnntopo import dipha, topology
from dnntopo.errors import UserError
from hpc.collectives import quiet_barrier


def compute(path_in, path_out, upper_dim: int, benchmark: bool = False, log=sys.stdout):
    """Read IN, compute dims 0..upper_dim-1, write OUT; return the number of pairs written."""
    t0 = time.perf_counter()
    n, i, j, d = dipha.edges_from_file(path_in)
    t1 = time.perf_counter()
    max_dim = max(upper_dim - 1, 0)
    top = float(d.max()) if d.size else 0.0
    info = {}
    dgms = topology.persistence(n, i, j, d.astype(np.float32), max_dim, info=info)
    dgms = [dipha.exact_values(dg, d) for dg in dgms]
    t2 = time.perf_counter()
    dims, births, deaths = dipha.to_dipha(dgms, top)
    dipha.write_diagram(path_out, dims, births, deaths)
    if benchmark:
        print(f"dnntopo-dipha: {n} vertices, {d.size} edges ({info.get('collapsed_edges', d.size)} after "
              f"collapse), dims 0..{max_dim}: read {t1 - t0:.3f} s, reduce {t2 - t1:.3f} s, "
              f"write {time.perf_counter() - t2:.3f} s, {len(dims)} pairs", file=log, flush=True)
    return len(dims)


def main(argv=None):
    from hpc.comm import abort_with, get_comm
    p = argparse.ArgumentParser(prog="dnntopo-dipha", description=__doc__.split("\n\n")[0])
    p.add_argument("--upper_dim", type=int, default=3,
                   help="homology is right in dimensions < upper_dim (default 3: dims 0-2)")
    p.add_argument("--dual", action="store_true", help="accepted for compatibility (same result)")
    p.add_argument("--benchmark", action="store_true", help="print timings")
    p.add_argument("input", help="DIPHA distance matrix (type 7 or 8)")
    p.add_argument("output", help="DIPHA persistence diagram to write (type 2)")
    a = p.parse_args(argv)
    comm = get_comm()
    try:
        if a.upper_dim < 1:
            raise UserError("--upper_dim must be at least 1")
        if comm.Get_rank() == 0:
            compute(a.input, a.output, a.upper_dim, a.benchmark)
        quiet_barrier(comm)
    except UserError as exc:
        abort_with(comm, "dnntopo-dipha", f"error: {exc}", 2)
    except Exception as exc:  # pragma: no cover - bugs
        abort_with(comm, "dnntopo-dipha", f"internal error: {type(exc).__name__}: {exc}", 1)



if __name__ == "__main__":
    main()
