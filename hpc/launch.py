"""Start an external MPI program (such as DIPHA) from inside an MPI job and wait for its output.

Two paths: `spawn` (MPI_Comm_spawn from the job's own communicator, as many processes as
ranks unless told otherwise) and `mpiexec` (rank 0 runs a separate `mpiexec -n P` step, or
the program directly when P is 1, with the launcher's variables removed so that Open MPI
allows it). `auto` tries spawn and falls back to mpiexec when spawning is refused (Open MPI 4
singletons, `srun` allocations without free slots). Either way the wait is bounded: the output
must be complete (as judged by `ready(path)`) within `timeout` seconds.

The output is accepted only once the program has finished, never while it may still be writing
(a program may write a complete-looking file first and then rewrite parts of it in place):
with mpiexec, once its process has exited; with spawn, once every spawned process has finished
(called MPI_Finalize). The spawn wait has two phases, both inside `timeout`: rank 0 polls
`ready(output)` (a program that never writes its output ends in the timeout error without
touching the intercommunicator), then every rank disconnects the intercommunicator
(MPI_Comm_disconnect returns when the children have finalized) and only then is `ready(output)`
checked. The disconnect runs in a helper thread (MPI_THREAD_MULTIPLE) while the calling thread
sleeps, so that a program that writes its output but never finalizes still ends in the timeout
error; the helper thread then stays blocked in the disconnect, and the caller must end the job
(MPI_Abort, which also ends the spawned processes): MPI_Finalize would wait for them forever.
Without MPI_THREAD_MULTIPLE the disconnect waits in the calling thread, unbounded. Open MPI 4.1
fails the disconnect when the children finalize while it waits ("ORTE_ERROR_LOG: Server not
available in file .../dpm.c", one line per rank on stderr, then MPI_ERR_COMM); it fails only
after they have ended, so the error is taken as their end and the output check that follows
decides. That line is left out of stderr (stderr goes to a temporary file while the disconnect
waits and is copied back without it).
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import sys
import threading
import time
from dataclasses import dataclass

from hpc.collectives import quiet_barrier
from hpc.comm import SerialComm

LAUNCHER_PREFIXES = ("OMPI_", "PMIX_", "PMI_", "ORTE_", "OPAL_", "HYDRA_", "MPI_LOCAL")


class LaunchError(RuntimeError):
    """The external program could not be started, failed, or did not deliver in time.

    `kind` says which: "spawn-refused", "no-mpiexec", "failed", "incomplete", "timeout" or
    "start" (the caller may translate it into its own words)."""

    def __init__(self, msg: str, kind: str = "failed"):
        super().__init__(msg)
        self.kind = kind


@dataclass
class Launch:
    """How to run the external program."""
    command: str
    args: list
    procs: int = 0            # 0: as many as the job has ranks
    mode: str = "auto"        # auto | spawn | mpiexec
    timeout: float = 3600.0
    mpiexec: str = "mpiexec"
    mpiexec_args: tuple = ("--oversubscribe",)


#: Open MPI variables that are the user's settings, not the launcher's: they are kept.
USER_KEEP = ("OMPI_ALLOW_", "OMPI_MCA_")
LAUNCHER_MCA = ("orte_", "ess", "pmix", "initial_wdir", "shmem_", "hnp", "mpi_yield_when_idle")


def clean_env() -> dict:
    """This process's environment without the MPI launcher's variables (user settings kept)."""
    def keep(k):
        if k.startswith(USER_KEEP):
            return not (k.startswith("OMPI_MCA_") and k[9:].startswith(LAUNCHER_MCA))
        return not k.startswith(LAUNCHER_PREFIXES)
    return {k: v for k, v in os.environ.items() if keep(k)}


def _stop(proc):
    """End the program: SIGTERM first (mpiexec then stops its ranks), SIGKILL if it lingers."""
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _wait_ready(ready, output, timeout, proc=None, progress=None, errfile=None):
    t0 = time.monotonic()
    last = 0
    while True:
        if progress is not None and int(time.monotonic() - t0) > last:
            last = int(time.monotonic() - t0)
            progress(last)
        if proc is not None:
            code = proc.poll()
            if code is not None:
                if code != 0:
                    text = b""
                    if errfile is not None:
                        errfile.seek(0)
                        text = errfile.read()
                    err = [ln.strip() for ln in text.decode(errors="replace").splitlines()
                           if ln.strip().strip("-")]
                    raise LaunchError(f"exited with status {code}" + (f": {err[-1]}" if err else ""), "failed")
                if not ready(output):
                    raise LaunchError(f"exited without writing a complete {output}", "incomplete")
                return
        elif ready(output):
            return
        if time.monotonic() - t0 > timeout:
            if proc is not None:
                _stop(proc)
            raise LaunchError(f"no complete {output} after {timeout:g} s (timeout)", "timeout")
        time.sleep(0.05)


#: What Open MPI 4.1 prints when a disconnect meets children that finalized without it.
DISCONNECT_NOISE = re.compile(rb"ORTE_ERROR_LOG: Server not available in file \S*dpm\.c")


@contextlib.contextmanager
def _stderr_without(noise: re.Pattern):
    """Meanwhile this process's stderr (fd 2) goes to a temporary file; afterwards it is copied
    back without the lines that match `noise`."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to filter
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = b"".join(ln for ln in tmp.read().splitlines(keepends=True) if not noise.search(ln))
            if text:
                os.write(2, text)


def _disconnect(inter, seconds: float, tick=None) -> bool:
    """Disconnect the intercommunicator (returns once the spawned processes have finalized);
    False when that has not happened within `seconds` (the helper thread stays blocked then).
    The calling thread sleeps meanwhile, calling `tick()` about every 0.2 s."""
    from mpi4py import MPI

    def run():
        try:
            inter.Disconnect()
        except MPI.Exception:
            pass  # Open MPI 4.1: an error once the children have ended (see the module docstring)

    if MPI.Query_thread() < MPI.THREAD_MULTIPLE:
        run()
        return True
    helper = threading.Thread(target=run, name="disconnect", daemon=True)
    helper.start()
    deadline = time.monotonic() + max(seconds, 0.0)
    while helper.is_alive() and time.monotonic() < deadline:
        helper.join(min(0.2, max(deadline - time.monotonic(), 0.0)))
        if tick is not None:
            tick()
    return not helper.is_alive()


def _wait_spawned(comm, inter, launch: Launch, output, ready, progress=None):
    """After a spawn: wait (bounded by the timeout) until the output looks complete and every
    spawned process has finished, then check the output. Raises LaunchError on every rank."""
    t0 = time.monotonic()
    rank = comm.Get_rank()
    last = [0]

    def tick():
        if progress is not None and rank == 0 and int(time.monotonic() - t0) > last[0]:
            last[0] = int(time.monotonic() - t0)
            progress(last[0])

    err = None
    if rank == 0:
        try:
            _wait_ready(ready, output, launch.timeout, progress=progress)
        except LaunchError as exc:
            err = (str(exc), exc.kind)
    quiet_barrier(comm)
    err = comm.bcast(err, root=0)
    if err:
        # no output: no disconnect (it would wait for a program that may never finish); the
        # caller ends the job, and with it the spawned processes
        inter.Free()
        raise LaunchError(*err)
    last[0] = int(time.monotonic() - t0)
    with _stderr_without(DISCONNECT_NOISE):
        done = _disconnect(inter, launch.timeout - (time.monotonic() - t0), tick)
    if rank == 0:
        if not done:
            err = (f"wrote {output} but did not finish within {launch.timeout:g} s (timeout)", "timeout")
        elif not ready(output):
            err = (f"finished without leaving a complete {output}", "incomplete")
    quiet_barrier(comm)
    err = comm.bcast(err, root=0)
    if err:
        raise LaunchError(*err)


def run_external(comm, launch: Launch, output, ready, progress=None) -> str:
    """Run the program collectively; return the path that ran ('spawn' or 'mpiexec').

    Raises LaunchError on every rank when it fails or times out. Ranks other than 0 wait in a
    sleeping barrier; `progress(seconds)` is called on rank 0 about once a second while waiting.
    """
    size = comm.Get_size()
    procs = launch.procs or size
    mode = launch.mode
    serial = isinstance(comm, SerialComm)
    if mode in ("auto", "spawn") and not serial:
        try:
            inter = comm.Spawn(launch.command, args=[str(a) for a in launch.args], maxprocs=procs, root=0)
        except Exception as exc:  # mpi4py.MPI.Exception: spawn refused
            if mode == "spawn":
                raise LaunchError(f"MPI_Comm_spawn of {launch.command} failed: {exc}",
                                  "spawn-refused") from None
        else:
            _wait_spawned(comm, inter, launch, output, ready, progress)
            return "spawn"
    elif mode == "spawn":
        raise LaunchError("spawning needs an MPI launch (mpiexec or srun); use mode mpiexec",
                          "spawn-refused")
    err = None
    if comm.Get_rank() == 0:
        exe = shutil.which(launch.mpiexec) if procs > 1 else None
        if procs > 1 and exe is None:
            err = (f"{launch.mpiexec} not found to start {procs} processes", "no-mpiexec")
        else:
            cmd = ([exe, "-n", str(procs), *launch.mpiexec_args] if exe else []) + [launch.command] + \
                  [str(a) for a in launch.args]
            try:
                # stderr goes to a file, not a pipe: a chatty program never blocks on a full pipe
                with tempfile.TemporaryFile() as errfile:
                    proc = subprocess.Popen(cmd, env=clean_env(), stdout=subprocess.DEVNULL,
                                            stderr=errfile)
                    _wait_ready(ready, output, launch.timeout, proc, progress=progress, errfile=errfile)
            except OSError as exc:
                err = (str(exc), "start")
            except LaunchError as exc:
                err = (str(exc), exc.kind)
    quiet_barrier(comm)
    err = comm.bcast(err, root=0)
    if err:
        raise LaunchError(*err)
    return "mpiexec"
