"""hpc/comm.py: the one-rank stand-in, launcher detection, cores, and aborting a real MPI job."""
import json
import os
import subprocess
import sys
import time
import types

import numpy as np
import pytest

from hpc.comm import SerialComm, abort_with, get_comm, is_mpi_launch, usable_cores
from mpirun import check, run_mpi

# the variables that Open MPI, PMIx, PMI (SLURM) and Hydra (MPICH) set in every rank
LAUNCH_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "PMI_RANK", "MPI_LOCALNRANKS",
               "HYDRA_CONTROL_FD")


@pytest.fixture
def plain_env(monkeypatch):
    """No launcher variables, no $HPC_NO_MPI, and mpi4py.MPI not imported (as seen by hpc.comm)."""
    for var in LAUNCH_VARS + ("HPC_NO_MPI",):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delitem(sys.modules, "mpi4py.MPI", raising=False)
    return monkeypatch


# ---------------------------------------------------------------- SerialComm

def test_serial_comm_rank_and_size():
    c = SerialComm()
    assert (c.Get_rank(), c.Get_size()) == (0, 1)
    assert (c.rank, c.size) == (0, 1)


def test_serial_comm_collectives_are_identities():
    c = SerialComm()
    obj = {"a": [1, 2, 3]}
    assert c.bcast(obj) is obj
    assert c.bcast(obj, root=0) is obj
    assert c.allreduce(7) == 7
    arr = np.array([1.5, -2.0])
    assert np.array_equal(c.allreduce(arr, op=None), arr)
    gathered = c.gather(obj)
    assert gathered == [obj] and gathered[0] is obj
    assert c.gather(5, root=0) == [5]
    assert c.Barrier() is None and c.barrier() is None


def test_serial_abort_exits_the_process_with_the_code():
    p = subprocess.run([sys.executable, "-c",
                        "from hpc.comm import SerialComm\nSerialComm().Abort(7)\nprint('still here')"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 7
    assert "still here" not in p.stdout


@pytest.mark.parametrize("comm", [SerialComm(), None])
def test_abort_with_one_rank_prints_one_line_and_exits(comm, capsys):
    with pytest.raises(SystemExit) as exc:
        abort_with(comm, "myprog", "disk full", 4)
    assert exc.value.code == 4
    assert capsys.readouterr().err == "myprog: disk full\n"


# ---------------------------------------------------------------- launcher detection

def test_no_launcher_means_one_rank(plain_env):
    assert is_mpi_launch() is False
    assert isinstance(get_comm(), SerialComm)


@pytest.mark.parametrize("var", LAUNCH_VARS)
def test_each_launcher_variable_means_mpi(plain_env, var):
    plain_env.setenv(var, "2")
    assert is_mpi_launch() is True


def test_mpi4py_runner_means_mpi(plain_env):
    # `python -m mpi4py prog` (a singleton without launcher variables) has mpi4py.MPI imported
    plain_env.setitem(sys.modules, "mpi4py", sys.modules.get("mpi4py") or types.ModuleType("mpi4py"))
    plain_env.setitem(sys.modules, "mpi4py.MPI", types.ModuleType("mpi4py.MPI"))
    assert is_mpi_launch() is True
    plain_env.setenv("HPC_NO_MPI", "1")
    assert is_mpi_launch() is False


def test_serial_flag_gives_the_stand_in_under_a_launcher(plain_env):
    plain_env.setenv("OMPI_COMM_WORLD_SIZE", "2")
    plain_env.setenv("PMIX_RANK", "1")
    assert is_mpi_launch() is True
    comm = get_comm(serial=True)
    assert isinstance(comm, SerialComm) and comm.Get_size() == 1
    assert "mpi4py.MPI" not in sys.modules  # MPI was not initialised for it


@pytest.mark.parametrize("value", ["1", "yes", "true"])
def test_hpc_no_mpi_set_forces_one_rank(plain_env, value):
    plain_env.setenv("OMPI_COMM_WORLD_SIZE", "2")
    plain_env.setenv("PMI_RANK", "0")
    plain_env.setenv("HPC_NO_MPI", value)
    assert is_mpi_launch() is False
    assert isinstance(get_comm(), SerialComm)
    assert "mpi4py.MPI" not in sys.modules


@pytest.mark.parametrize("value", ["0", ""])
def test_hpc_no_mpi_zero_or_empty_does_not(plain_env, value):
    plain_env.setenv("OMPI_COMM_WORLD_SIZE", "2")
    plain_env.setenv("HPC_NO_MPI", value)
    assert is_mpi_launch() is True


# ---------------------------------------------------------------- cores

def test_usable_cores_is_the_affinity():
    assert usable_cores() == len(os.sched_getaffinity(0))


def test_usable_cores_follows_a_narrowed_affinity():
    one = min(os.sched_getaffinity(0))
    p = subprocess.run([sys.executable, "-c",
                        f"import os\nos.sched_setaffinity(0, {{{one}}})\n"
                        "from hpc.comm import usable_cores\nprint(usable_cores())"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["1"]


def test_borrowed_cores_widens_then_restores():
    """One process narrowed to one core borrows all: inside, every core; after, one again."""
    allc = sorted(os.sched_getaffinity(0))
    p = subprocess.run([sys.executable, "-c",
                        f"import os\nos.sched_setaffinity(0, {{{allc[0]}}})\n"
                        "from hpc.comm import borrowed_cores, node_cores, SerialComm, usable_cores\n"
                        f"assert node_cores(SerialComm()) == {{{allc[0]}}}\n"
                        f"with borrowed_cores(set({allc})):\n    print(usable_cores())\n"
                        "print(usable_cores())"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [str(len(allc)), "1"]


# ---------------------------------------------------------------- real mpiexec

@pytest.mark.mpi
def test_node_cores_are_every_ranks_binding(tmp_path):
    """mpiexec binds each of 2 ranks to its own core; node_cores gives both to each rank."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.fail("this test needs 2 cores")
    check(run_mpi(2, """
        import json, os
        from hpc.comm import get_comm, node_cores, borrowed_cores
        comm = get_comm()
        own = sorted(os.sched_getaffinity(0))
        allc = sorted(node_cores(comm))
        with borrowed_cores(set(allc)):
            inside = sorted(os.sched_getaffinity(0))
        with open(f"rank_{comm.Get_rank()}.json", "w") as fh:
            json.dump({"own": own, "all": allc, "inside": inside,
                       "after": sorted(os.sched_getaffinity(0))}, fh)
        """, cwd=tmp_path, env={"OMPI_MCA_hwloc_base_binding_policy": "core"}))
    rows = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("rank_*.json"))]
    assert len(rows) == 2 and all(len(r["own"]) == 1 for r in rows)
    assert rows[0]["own"] != rows[1]["own"]
    assert all(r["all"] == sorted(rows[0]["own"] + rows[1]["own"]) == r["inside"] for r in rows)
    assert all(r["after"] == r["own"] for r in rows)


@pytest.mark.mpi
def test_get_comm_is_comm_world_under_mpiexec(tmp_path):
    check(run_mpi(2, """
        import json
        from hpc.comm import SerialComm, get_comm, is_mpi_launch
        comm = get_comm()
        from mpi4py import MPI
        serial = get_comm(serial=True)
        row = {"launch": is_mpi_launch(), "world": comm is MPI.COMM_WORLD,
               "rank": comm.Get_rank(), "size": comm.Get_size(),
               "sum": comm.allreduce(comm.Get_rank() + 1),
               "serial": [isinstance(serial, SerialComm), serial.Get_size()]}
        with open(f"rank_{MPI.COMM_WORLD.Get_rank()}.json", "w") as fh:
            json.dump(row, fh)
        """, cwd=tmp_path))
    rows = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("rank_*.json"))]
    assert len(rows) == 2
    assert sorted(r["rank"] for r in rows) == [0, 1]
    for r in rows:
        assert r["launch"] is True and r["world"] is True
        assert r["size"] == 2 and r["sum"] == 3
        assert r["serial"] == [True, 1]


@pytest.mark.mpi
def test_abort_with_on_one_rank_ends_the_whole_job(tmp_path):
    t0 = time.monotonic()
    p = run_mpi(2, """
        import time
        from hpc.comm import abort_with, get_comm
        comm = get_comm()
        if comm.Get_rank() == 1:
            time.sleep(0.2)
            abort_with(comm, "myprog", "disk full", 3)
        comm.Barrier()  # rank 0 waits here for a rank that never comes
        print("rank", comm.Get_rank(), "passed the barrier", flush=True)
        """, cwd=tmp_path, timeout=60)
    elapsed = time.monotonic() - t0
    assert elapsed < 20, f"abort took {elapsed:.1f} s"
    assert p.returncode != 0
    assert "myprog on rank 1 of 2: disk full" in p.stderr
    assert "passed the barrier" not in p.stdout


def test_usable_memory_follows_the_slurm_allocation(monkeypatch):
    from hpc.comm import usable_memory
    for k in ("SLURM_MEM_PER_NODE", "SLURM_MEM_PER_CPU", "SLURM_CPUS_ON_NODE"):
        monkeypatch.delenv(k, raising=False)
    meminfo = {line.split(":")[0]: int(line.split()[1]) for line in open("/proc/meminfo")}
    want = meminfo["MemAvailable"] * 1024
    import os
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        if os.path.exists(path) and open(path).read().strip().isdigit():
            want = min(want, int(open(path).read()))
            break
    assert abs(usable_memory() - want) < 2**28      # MemAvailable moves a little
    monkeypatch.setenv("SLURM_MEM_PER_NODE", "1536")
    assert usable_memory() == 1536 * 2**20
    monkeypatch.delenv("SLURM_MEM_PER_NODE")
    monkeypatch.setenv("SLURM_MEM_PER_CPU", "512")
    monkeypatch.setenv("SLURM_CPUS_ON_NODE", "3")
    assert usable_memory() == 3 * 512 * 2**20
