"""hpc: a distributed runtime for batch analyses on MPI and SLURM (MPI communicator, sharding, blocked correlation,
collective file writes). It knows nothing of networks or topology."""
from hpc.comm import SerialComm, get_comm, is_mpi_launch  # noqa: F401
