#!/usr/bin/env bash
# Set up (with the test extras and a SLURM to start) and run the whole test suite.
# Extra arguments go to pytest (e.g. -m "not slurm", -k topology).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test --slurm
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
exec .venv/bin/python -m pytest -ra tests "$@"
