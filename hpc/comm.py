"""The communicator: mpi4py's COMM_WORLD when launched by mpiexec/srun, else a one-rank stand-in.

The stand-in implements the subset of mpi4py's Comm API the project uses, with the same
semantics for K = 1, so that the serial run and the MPI run are one code path.
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager


# Environment variables that launchers set in every rank they start.
_LAUNCH_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "PMI_RANK", "MPI_LOCALNRANKS",
                "HYDRA_CONTROL_FD")


#: Set (to anything but empty or 0) to run as one rank even under an MPI launcher.
NO_MPI_VAR = "HPC_NO_MPI"


def is_mpi_launch() -> bool:
    """True when this process was started by an MPI launcher (mpiexec, srun --mpi, -m mpi4py)
    and $HPC_NO_MPI does not ask for one rank."""
    if os.environ.get(NO_MPI_VAR, "") not in ("", "0"):
        return False
    if any(v in os.environ for v in _LAUNCH_VARS):
        return True
    return "mpi4py" in sys.modules and "mpi4py.MPI" in sys.modules


def get_comm(serial: bool = False):
    """COMM_WORLD under an MPI launcher (mpi4py required then), else (or with `serial`) the
    one-rank stand-in."""
    if not serial and is_mpi_launch():
        try:
            from mpi4py import MPI
        except ImportError as exc:  # pragma: no cover - depends on the site
            raise RuntimeError(
                "launched under MPI but mpi4py does not import "
                f"({exc}); install it with `pip install mpi4py` after Open MPI") from exc
        return MPI.COMM_WORLD
    return SerialComm()


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity: what SLURM or mpiexec binding left it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def node_cores(comm) -> set[int]:
    """The cores of every rank on this rank's node (collective): what one rank may take while
    the others sleep in a quiet barrier (mpiexec and srun bind each rank to its own cores)."""
    import socket
    try:
        mine = sorted(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return set()
    host = socket.gethostname()
    return {c for h, cores in comm.allgather((host, mine)) if h == host for c in cores}


@contextmanager
def borrowed_cores(cores: set[int]):
    """Run the block with this process's CPU affinity widened to `cores` (threads started in
    it, such as a PH engine's, inherit it), then restore it."""
    try:
        old = os.sched_getaffinity(0)
    except AttributeError:  # pragma: no cover - not Linux
        yield
        return
    wide = set(cores) | old
    if wide != old:
        os.sched_setaffinity(0, wide)
    try:
        yield
    finally:
        if wide != old:
            os.sched_setaffinity(0, old)


def usable_memory() -> int:
    """Bytes this process may use: the SLURM allocation (SLURM_MEM_PER_NODE, or
    SLURM_MEM_PER_CPU times the allocated CPUs, in MB) when inside a job, else the machine's
    available memory (MemAvailable) or the cgroup's limit when lower."""
    env = os.environ
    if env.get("SLURM_MEM_PER_NODE", "").isdigit() and int(env["SLURM_MEM_PER_NODE"]) > 0:
        return int(env["SLURM_MEM_PER_NODE"]) * 2**20
    if env.get("SLURM_MEM_PER_CPU", "").isdigit():
        cpus = int(env.get("SLURM_CPUS_ON_NODE", "") or usable_cores())
        return int(env["SLURM_MEM_PER_CPU"]) * 2**20 * cpus
    avail = 0
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:   # a container's limit (cgroup v2, then v1) when it is below what the machine has
            text = open(path).read().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < (avail or 1 << 62):
            return int(text)
    return avail


def abort_with(comm, prog: str, msg: str, code: int):
    """Print one line naming the rank, then end the whole job: MPI_Abort with several ranks
    (as mpi4py's `-m mpi4py` runner does), a plain exit with one."""
    size = comm.Get_size() if comm is not None else 1
    where = f" on rank {comm.Get_rank()} of {size}" if size > 1 else ""
    print(f"{prog}{where}: {msg}", file=sys.stderr, flush=True)
    if size > 1:
        comm.Abort(code)
    sys.exit(code)


class SerialComm:
    """One-rank communicator with the mpi4py methods the code calls on it. The buffer
    collectives of hpc/ return the local arrays themselves for one rank, without a call."""

    def Get_rank(self) -> int:
        return 0

    def Get_size(self) -> int:
        return 1

    rank = property(Get_rank)
    size = property(Get_size)

    def Barrier(self):
        return None

    barrier = Barrier

    def bcast(self, obj, root=0):
        return obj

    def allreduce(self, obj, op=None):
        return obj

    def gather(self, obj, root=0):
        return [obj]

    def allgather(self, obj):
        return [obj]

    def Abort(self, errorcode=1):
        os._exit(errorcode)
