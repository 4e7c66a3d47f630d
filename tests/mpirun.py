"""Helper of the hpc/ tests: run a small Python script under a real `mpiexec -n K`."""
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO

MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_rmaps_base_oversubscribe": "1", "OMPI_MCA_btl_vader_single_copy_mechanism": "none"}


def mpi_env(extra=None) -> dict:
    """This environment plus what Open MPI needs here (root, oversubscription), hpc importable."""
    env = dict(os.environ, **MPI_ENV, **(extra or {}))
    env.pop("HPC_NO_MPI", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def run_mpi(k: int, script: str, *args, cwd, timeout: float = 60, env=None, name: str = "script"):
    """Write `script` (dedented) into `cwd` and run it with k ranks; return the CompletedProcess."""
    exe = shutil.which("mpiexec")
    if exe is None:
        pytest.fail("mpiexec not found: install Open MPI (scripts/setup.sh does on Debian)")
    path = cwd / f"{name}_{k}.py"
    path.write_text(textwrap.dedent(script))
    cmd = [exe, "-n", str(k), "--oversubscribe", sys.executable, str(path), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=mpi_env(env), timeout=timeout, cwd=cwd)


def check(proc):
    """Assert that an mpiexec run succeeded, showing its output otherwise."""
    assert proc.returncode == 0, f"rc={proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc
