"""hpc: the distributed runtime beneath dnntopo (MPI communicator, sharding, blocked correlation,
collective file writes). It knows nothing of networks or topology."""
from hpc.comm import SerialComm, get_comm, is_mpi_launch  # noqa: F401
