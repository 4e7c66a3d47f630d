# Shared by the sbatch templates: load modules, activate the environment.
# DNNTOPO_MODULES and DNNTOPO_VENV are exported by slurm/pipeline.sh (or by the user).
if [ -n "${DNNTOPO_MODULES:-}" ]; then
  # shellcheck disable=SC2086
  module load $DNNTOPO_MODULES
fi
if [ -n "${DNNTOPO_VENV:-}" ] && [ -f "$DNNTOPO_VENV/bin/activate" ]; then
  # shellcheck disable=SC1091
  source "$DNNTOPO_VENV/bin/activate"
fi
export HDF5_USE_FILE_LOCKING="${HDF5_USE_FILE_LOCKING:-FALSE}"   # NFS/Lustre/GPFS
