"""hpc/launch.py: the launcher-free environment and running an external program with a bounded wait."""
import json
import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hpc.comm import SerialComm
from hpc.launch import Launch, LaunchError, clean_env, run_external
from mpirun import MPI_ENV, check, run_mpi


def fake_program(folder: Path, name: str, body: str) -> Path:
    """An executable Python script (`#!` this interpreter) with `body`; argv[1] is the output."""
    path = folder / name
    path.write_text(f"#!{sys.executable}\nimport os, sys, time\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return path


def launch_error(prog, out, mode="mpiexec", timeout=30) -> LaunchError:
    """The LaunchError that running `prog` (writing `out`) through `mode` raises."""
    with pytest.raises(LaunchError) as exc:
        run_external(SerialComm(), Launch(str(prog), [out], mode=mode, timeout=timeout), out, exists)
    return exc.value


def exists(path) -> bool:
    return os.path.exists(path)


def running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def still_running(pids, within: float = 2.0) -> list:
    """The `pids` still running after up to `within` seconds (signals are delivered asynchronously)."""
    deadline = time.monotonic() + within
    while True:
        left = [pid for pid in pids if running(pid)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


# ---------------------------------------------------------------- clean_env

def test_clean_env_drops_launcher_variables_and_keeps_user_settings(monkeypatch):
    launcher = {"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_LOCAL_RANK": "1",
                "OMPI_UNIVERSE_SIZE": "2", "OMPI_FILE_LOCATION": "/tmp/x", "PMIX_RANK": "1",
                "PMIX_NAMESPACE": "123", "PMIX_SERVER_URI41": "uri", "PMI_RANK": "1", "PMI_SIZE": "2",
                "OMPI_MCA_orte_hnp_uri": "uri", "OMPI_MCA_ess_base_jobid": "7", "OMPI_MCA_ess": "^singleton",
                "OMPI_MCA_pmix": "^s1", "OMPI_MCA_initial_wdir": "/tmp", "OMPI_MCA_shmem_RUNTIME_QUERY_hint": "mmap",
                "HYDRA_CONTROL_FD": "5", "MPI_LOCALNRANKS": "2"}
    user = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
            "OMPI_MCA_btl": "self,vader", "OMPI_MCA_rmaps_base_oversubscribe": "1",
            "HPC_NO_MPI": "0", "MY_SETTING": "x y", "PATH": os.environ["PATH"]}
    for k, v in {**launcher, **user}.items():
        monkeypatch.setenv(k, v)
    before = dict(os.environ)
    env = clean_env()
    assert dict(os.environ) == before  # a copy: this process keeps its environment
    assert not set(launcher) & set(env)
    assert {k: env.get(k) for k in user} == user
    assert not [k for k in env if k.startswith(("OMPI_COMM_WORLD_", "PMIX_"))]


@pytest.mark.mpi
def test_clean_env_under_a_real_mpiexec_is_not_an_mpi_launch(tmp_path):
    p = check(run_mpi(1, """
        import json
        from hpc.launch import clean_env
        print(json.dumps(clean_env()))
        """, cwd=tmp_path))
    env = json.loads(p.stdout)
    left = [k for k in env if k.startswith(("OMPI_COMM_WORLD_", "PMIX_", "PMI_", "OMPI_MCA_orte_",
                                            "OMPI_MCA_ess", "OMPI_MCA_pmix"))]
    assert not left
    assert env["OMPI_ALLOW_RUN_AS_ROOT"] == "1"
    assert env["OMPI_MCA_btl_vader_single_copy_mechanism"] == "none"  # the user's MCA setting


# ---------------------------------------------------------------- run_external, one rank

@pytest.mark.parametrize("mode", ["mpiexec", "auto"])
def test_program_that_writes_its_output(tmp_path, mode):
    prog = fake_program(tmp_path, "ok.py", """
        open(sys.argv[1], "w").write(" ".join(sys.argv[2:]))
        """)
    out = tmp_path / "out.txt"
    path = run_external(SerialComm(), Launch(str(prog), [out, "a b", 3], mode=mode, timeout=30), out, exists)
    assert path == "mpiexec"
    assert out.read_text() == "a b 3"


def test_program_that_fails(tmp_path):
    prog = fake_program(tmp_path, "fail.py", """
        print("-" * 20, file=sys.stderr)
        print("error: bad input", file=sys.stderr)
        print("-" * 20, file=sys.stderr)
        sys.exit(3)
        """)
    out = tmp_path / "out.txt"
    err = launch_error(prog, out)
    assert err.kind == "failed"
    assert "status 3" in str(err) and "error: bad input" in str(err)


def test_program_that_exits_without_output(tmp_path):
    prog = fake_program(tmp_path, "lazy.py", "pass\n")
    out = tmp_path / "out.txt"
    err = launch_error(prog, out)
    assert err.kind == "incomplete"


def test_program_that_never_writes_times_out_and_is_killed(tmp_path):
    prog = fake_program(tmp_path, "hang.py", """
        open(sys.argv[1] + ".pid", "w").write(str(os.getpid()))
        time.sleep(60)
        """)
    out = tmp_path / "out.txt"
    t0 = time.monotonic()
    err = launch_error(prog, out, timeout=2)
    elapsed = time.monotonic() - t0
    assert err.kind == "timeout"
    assert 2 <= elapsed < 6, elapsed
    pid = int(Path(str(out) + ".pid").read_text())
    assert still_running([pid]) == []


def test_progress_is_called_with_increasing_whole_seconds(tmp_path):
    prog = fake_program(tmp_path, "slow.py", """
        time.sleep(2.5)
        open(sys.argv[1], "w").write("done")
        """)
    out = tmp_path / "out.txt"
    seen = []
    assert run_external(SerialComm(), Launch(str(prog), [out], mode="mpiexec", timeout=30), out, exists,
                        progress=seen.append) == "mpiexec"
    assert seen[:2] == [1, 2] and seen == list(range(1, len(seen) + 1)) and len(seen) <= 4, seen
    assert all(type(s) is int for s in seen)


def test_spawn_needs_an_mpi_launch(tmp_path):
    prog = fake_program(tmp_path, "ok.py", "open(sys.argv[1], 'w').write('x')\n")
    out = tmp_path / "out.txt"
    err = launch_error(prog, out, mode="spawn")
    assert err.kind == "spawn-refused"
    assert not out.exists()  # nothing was started


def test_missing_mpiexec_for_several_processes(tmp_path):
    prog = fake_program(tmp_path, "ok.py", "open(sys.argv[1], 'w').write('x')\n")
    out = tmp_path / "out.txt"
    launch = Launch(str(prog), [out], procs=2, mode="mpiexec", timeout=30, mpiexec=str(tmp_path / "no-mpiexec"))
    with pytest.raises(LaunchError) as exc:
        run_external(SerialComm(), launch, out, exists)
    assert exc.value.kind == "no-mpiexec"


def test_missing_program_cannot_start(tmp_path):
    out = tmp_path / "out.txt"
    assert launch_error(tmp_path / "nowhere", out).kind == "start"


def test_program_with_much_stderr_is_not_blocked(tmp_path):
    prog = fake_program(tmp_path, "noisy.py", """
        for _ in range(2000):
            print("warning: " + "w" * 100, file=sys.stderr)
        open(sys.argv[1], "w").write("done")
        """)
    out = tmp_path / "out.txt"
    assert run_external(SerialComm(), Launch(str(prog), [out], mode="mpiexec", timeout=2), out, exists) == "mpiexec"


# ---------------------------------------------------------------- run_external under mpiexec

NESTED = """
    import json, os, sys
    from hpc.comm import get_comm
    from hpc.launch import Launch, LaunchError, run_external
    comm = get_comm()
    prog, out = sys.argv[1], sys.argv[2]
    ready = lambda p: all(os.path.exists(f"{p}.{r}") for r in range(2))
    try:
        res = run_external(comm, Launch(prog, [out], procs=int(sys.argv[3]), mode="mpiexec", timeout=30),
                           out, ready)
    except LaunchError as exc:
        res = "error " + exc.kind
    with open(f"{sys.argv[4]}_{comm.Get_rank()}.json", "w") as fh:
        json.dump({"rank": comm.Get_rank(), "result": res}, fh)
"""


def results(folder, tag):
    return sorted((r["rank"], r["result"]) for r in
                  (json.loads(p.read_text()) for p in folder.glob(f"{tag}_*.json")))


@pytest.mark.mpi
def test_nested_mpiexec_from_an_mpi_job(tmp_path):
    prog = fake_program(tmp_path, "ranks.py", """
        env = os.environ
        open(sys.argv[1] + "." + env["OMPI_COMM_WORLD_RANK"], "w").write(env["OMPI_COMM_WORLD_SIZE"])
        """)
    fail = fake_program(tmp_path, "fail.py", "sys.exit(3)\n")
    out = tmp_path / "out"
    check(run_mpi(2, NESTED, prog, out, 2, "ok", cwd=tmp_path))
    assert results(tmp_path, "ok") == [(0, "mpiexec"), (1, "mpiexec")]
    assert [(tmp_path / f"out.{r}").read_text() for r in range(2)] == ["2", "2"]  # a 2-process job of its own
    # a failure of the program is raised on every rank of the job
    check(run_mpi(2, NESTED, fail, tmp_path / "never", 2, "fail", cwd=tmp_path))
    assert results(tmp_path, "fail") == [(0, "error failed"), (1, "error failed")]


@pytest.mark.mpi
def test_timeout_ends_every_process_of_the_external_job(tmp_path, monkeypatch):
    for k, v in MPI_ENV.items():
        monkeypatch.setenv(k, v)
    pids = tmp_path / "pids"
    pids.mkdir()
    # a shell script starts in milliseconds; the timeout leaves mpiexec room on a loaded machine
    prog = tmp_path / "hang.sh"
    prog.write_text(f"#!/bin/sh\ntouch {str(pids)!r}/$$\nexec sleep 60\n")
    prog.chmod(0o755)
    out = tmp_path / "out.txt"
    launch = Launch(str(prog), [out], procs=2, mode="mpiexec", timeout=6)
    try:
        with pytest.raises(LaunchError) as exc:
            run_external(SerialComm(), launch, out, exists)
        assert exc.value.kind == "timeout"
        started = [int(p.name) for p in pids.iterdir()]
        assert len(started) == 2
        assert still_running(started) == []
    finally:
        for p in pids.iterdir():  # the test's own processes, by id
            if running(int(p.name)):
                os.kill(int(p.name), signal.SIGKILL)
