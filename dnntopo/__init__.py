"""dnntopo: topology of deep neural networks, epoch by epoch, from a laptop to a SLURM cluster."""
__version__ = "0.1.0"
