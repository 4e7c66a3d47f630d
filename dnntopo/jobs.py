"""Runs through a scheduler: training (checkpointable, requeued on timeout or preemption),
then the topology of each epoch as one job array that depends on it; and the status of a run.

Resubmitting a run submits only the epochs whose file is missing or stale. Submitted job ids
are recorded in RUN/logs/jobs.json for `dnntopo status`.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from dnntopo import models, pipeline, storage
from dnntopo.activations import ActivationConfig
from dnntopo.graph import GraphConfig
from dnntopo.summaries import SummaryConfig
from dnntopo.topology import PHConfig
from dnntopo.train import TrainConfig, train
from hpc.io import write_text_atomic
from hpc.submit import Scheduler

try:
    from submitit.helpers import Checkpointable
except ImportError:  # pragma: no cover - submitit is an extra
    Checkpointable = object


class TrainTask(Checkpointable):
    """Training as a submitit task: on timeout or preemption it is requeued with the same
    arguments, and always resumes after the last completed epoch."""

    def __call__(self, cfg: TrainConfig) -> str:
        return str(train(cfg, resume=True, quiet=True).root)


@dataclass
class TopologyTask:
    """The topology of one epoch, run by every rank of the task (MPI under srun --mpi)."""
    run: str
    acfg: ActivationConfig
    gcfg: GraphConfig
    pcfg: PHConfig
    scfg: SummaryConfig

    def __call__(self, epoch: int) -> str:
        from hpc.comm import abort_with, get_comm
        comm = get_comm()
        opts = pipeline.TopologyOptions(epochs=[epoch], quiet=True)
        try:
            return str(pipeline.run_topology(comm, storage.Run(Path(self.run)), opts, self.acfg,
                                             self.gcfg, self.pcfg, self.scfg)[0])
        except Exception as exc:
            if comm.Get_size() > 1:  # one failing rank must not leave the others in a collective
                abort_with(comm, "dnntopo", f"error: {exc}", 1)
            raise


def planned_params(run: storage.Run, cfg: dict, acfg, pcfg, scfg, epoch: int) -> dict:
    """The parameters an epoch file would be written with (to tell current from stale)."""
    layers = acfg.layers or models.DEFAULT_LAYERS[cfg["net"]]
    return dict(net=cfg["net"], dataset=cfg["dataset"], trial=int(cfg["trial"]), epoch=int(epoch),
                n_samples=acfg.samples, sample_split=acfg.sample_split, layers=",".join(layers),
                max_nodes=acfg.max_nodes, max_dim=pcfg.max_dim, max_distance=float(pcfg.max_distance),
                backend=pcfg.backend, min_persistence=float(scfg.min_persistence),
                grid_points=scfg.grid_points)


def pending_epochs(run: storage.Run, epochs, acfg, pcfg, scfg) -> list[int]:
    """Epochs whose file is missing or stale (older than its checkpoint, other parameters)."""
    if not run.config.exists():
        return list(epochs)
    cfg = storage.read_config(run)
    return [e for e in epochs
            if not pipeline.is_current(run.epoch_file(e), run.checkpoint(e),
                                       planned_params(run, cfg, acfg, pcfg, scfg, e))]


def _record(run: storage.Run, update: dict):
    path = run.root / "logs" / "jobs.json"
    data = json.loads(path.read_text()) if path.exists() else {"train": [], "topology": {}}
    if "train" in update:
        data["train"].append(update["train"])
    data["topology"].update({str(k): v for k, v in update.get("topology", {}).items()})
    write_text_atomic(path, json.dumps(data, indent=1) + "\n")


def submit_run(tcfg: TrainConfig, epochs: list, acfg, gcfg, pcfg, scfg, scheduler: Scheduler,
               wait: bool = False, retrain: bool = False):
    """Submit training (unless its checkpoints are all there) and, after it, the topology of
    the epochs still missing or stale as one job array. Returns (train job, topology jobs)."""
    run = storage.Run(storage.run_path(tcfg.run_dir, tcfg.net, tcfg.dataset, tcfg.trial))
    (run.root / "logs").mkdir(parents=True, exist_ok=True)
    scheduler.folder = run.root / "logs"
    for c in (acfg, gcfg, pcfg, scfg):
        c.validate()
    tcfg.validate()
    need_train = retrain or any(not run.checkpoint(e).exists() for e in tcfg.save_epochs)
    train_job = None
    if need_train:
        train_job = scheduler.submit(TrainTask(), tcfg, name=f"dnntopo-train-{run.root.parent.name}",
                                     time=scheduler.site.time_train, gpus=scheduler.site.gpus_per_task)
        _record(run, {"train": str(train_job.job_id)})
    todo = list(epochs) if need_train else pending_epochs(run, epochs, acfg, pcfg, scfg)
    task = TopologyTask(str(run.root), acfg, gcfg, pcfg, scfg)
    topo_jobs = scheduler.map_array(task, todo, name=f"dnntopo-topology-{run.root.parent.name}",
                                    time=scheduler.site.time_topology, ntasks=scheduler.site.ntasks,
                                    after=train_job)
    _record(run, {"topology": {e: str(j.job_id) for e, j in zip(todo, topo_jobs)}})
    if wait:
        if train_job is not None:
            train_job.result()
        for j in topo_jobs:
            j.results()  # one result per task (rank)
    return train_job, dict(zip(todo, topo_jobs))


def status(run: storage.Run) -> list[dict]:
    """Per saved or requested epoch: done / missing / running (or pending), and the job id."""
    jobs_path = run.root / "logs" / "jobs.json"
    jobs = json.loads(jobs_path.read_text()) if jobs_path.exists() else {"train": [], "topology": {}}
    cfg = storage.read_config(run) if run.config.exists() else {}
    epochs = sorted(set(cfg.get("save_epochs", [])) | set(run.saved_epochs()) | set(run.topology_epochs())
                    | {int(e) for e in jobs["topology"]})
    states = _queue_states(list(jobs["topology"].values()) + jobs["train"])
    rows = []
    for e in epochs:
        job = jobs["topology"].get(str(e), "")
        path = run.epoch_file(e)
        if path.exists() and not (run.checkpoint(e).exists() and
                                  run.checkpoint(e).stat().st_mtime > path.stat().st_mtime):
            state = "done"
        elif job and states.get(job):
            state = states[job].lower()
        else:
            state = "missing" + ("" if run.checkpoint(e).exists() else " (no checkpoint)")
        rows.append({"epoch": e, "state": state, "job": job})
    return rows


def _queue_states(ids: list) -> dict:
    """SLURM states of the given job ids that are still queued or running ({} without squeue)."""
    if not ids or shutil.which("squeue") is None:
        return {}
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i %T"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    found = dict(line.split(None, 1) for line in out.splitlines() if line.strip())
    return {i: found[i] for i in ids if i in found}
