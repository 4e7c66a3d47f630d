"""Runs through a scheduler: training (checkpointable, requeued on timeout or preemption),
then the topology of each epoch as one job array that depends on it; and the status of a run.

Resubmitting a run submits only the epochs whose file is missing or stale. Submitted job ids
are recorded in RUN/logs/jobs.json for `dnntopo status`.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

from dnntopo import pipeline, storage
from dnntopo.spec import EpochState, TopologySpec, epoch_state, record, recorded
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
    spec: TopologySpec
    opts: pipeline.TopologyOptions = pipeline.TopologyOptions(quiet=True)

    def __call__(self, epoch: int) -> str | None:
        from hpc.comm import abort_with, get_comm
        run = storage.Run(Path(self.run))
        if not trained_epochs(run, [epoch]):
            return None    # after the epoch its training stopped at (--stop-at-acc): nothing to do
        comm = get_comm()
        try:
            return str(pipeline.run_topology(comm, storage.Run(Path(self.run)), self.spec,
                                             replace(self.opts, epochs=(epoch,)))[0])
        except Exception as exc:
            if comm.Get_size() > 1:  # one failing rank must not leave the others in a collective
                abort_with(comm, "dnntopo", f"error: {exc}", 1)
            raise


def trained_epochs(run: storage.Run, epochs) -> list[int]:
    """The `epochs` a run's training reached: all of them, but those after the epoch where a
    training rule (--stop-at-acc, --early-stop) stopped it, which have no checkpoint."""
    stopped = storage.read_config(run).get("stopped_at") if run.config.exists() else None
    return [e for e in epochs if stopped is None or e <= stopped]


def epoch_states(run: storage.Run, epochs, spec: TopologySpec, extras=()) -> list[EpochState]:
    """The state of each epoch's file for `spec` (the one rule, `spec.epoch_state`)."""
    if not run.config.exists():
        return [EpochState(e, "missing", "no run yet") for e in epochs]
    cfg = storage.read_config(run)
    return [epoch_state(run, e, spec, cfg, extras) for e in epochs]


def pending_epochs(run: storage.Run, epochs, spec: TopologySpec, extras=()) -> list[int]:
    """Epochs whose file is not current for `spec` (missing, stale, unreadable, incomplete)."""
    return [s.epoch for s in epoch_states(run, epochs, spec, extras) if not s.current]


def _record(run: storage.Run, update: dict):
    path = run.root / "logs" / "jobs.json"
    data = json.loads(path.read_text()) if path.exists() else {"train": [], "topology": {}}
    if "train" in update:
        data["train"].append(update["train"])
    data["topology"].update({str(k): v for k, v in update.get("topology", {}).items()})
    write_text_atomic(path, json.dumps(data, indent=1) + "\n")


@dataclass
class RunPlan:
    """What a submission of one run has to do: train or not, and which epochs."""
    run: storage.Run
    tcfg: TrainConfig
    spec: TopologySpec
    opts: pipeline.TopologyOptions
    need_train: bool
    todo: list


def plan_run(tcfg: TrainConfig, spec: TopologySpec, topology_epochs=(), opts=None,
             retrain: bool = False) -> RunPlan:
    """Decide, before anything is submitted, whether the run needs training and which epoch
    files are not current; refuse a run folder that holds another training."""
    tcfg, epochs = pipeline.plan(tcfg, topology_epochs)
    opts = replace(opts or pipeline.TopologyOptions(), quiet=True, epochs=())
    run = storage.Run(storage.run_path(tcfg.run_dir, tcfg.net, tcfg.dataset, tcfg.trial))
    from dnntopo import topology
    topology.backend(spec)  # refuse a missing engine before anything is submitted
    if retrain:   # once, here: the requeued training task itself always resumes
        from dnntopo.train import restart
        restart(run)
    state = "new"
    if run.config.exists():  # an existing run is reused or continued, never mixed (refused here)
        from dnntopo.train import check_existing
        state = check_existing(run, tcfg, resume=True)
    need_train = state != "reuse"   # "reuse": trained to --epochs, or stopped by its rule
    resolved = spec.resolved(tcfg.net)
    todo = list(epochs) if need_train else \
        pending_epochs(run, trained_epochs(run, epochs), resolved, opts.extras())
    return RunPlan(run, tcfg, spec, opts, need_train, todo)


def submit_plans(plans: list, scheduler: Scheduler, name: str, wait: bool = False) -> list:
    """Training of every plan that needs it as one job array, then each run's topology as an
    array that depends on its own training. Returns [(train job or None, {epoch: job})]."""
    trainees = [p for p in plans if p.need_train]
    train_jobs = dict(zip((id(p) for p in trainees), scheduler.map_array(
        TrainTask(), [p.tcfg for p in trainees], role="train", name=f"dnntopo-train-{name}")))
    out = []
    for p in plans:
        (p.run.root / "logs").mkdir(parents=True, exist_ok=True)
        train_job = train_jobs.get(id(p))
        if train_job is not None:
            _record(p.run, {"train": str(train_job.job_id)})
        p.run.topology.mkdir(parents=True, exist_ok=True)
        record(p.run, p.spec.resolved(p.tcfg.net))
        task = TopologyTask(str(p.run.root), p.spec, p.opts)
        topo = scheduler.map_array(task, p.todo, role="topology", name=f"dnntopo-topology-{name}",
                                   after=train_job)
        _record(p.run, {"topology": {e: str(j.job_id) for e, j in zip(p.todo, topo)}})
        out.append((train_job, dict(zip(p.todo, topo))))
    if wait:
        for train_job, topo in out:
            if train_job is not None:
                train_job.result()
            for j in topo.values():
                j.results()  # one result per task (rank)
    return out


def submit_run(tcfg: TrainConfig, spec: TopologySpec, scheduler: Scheduler, topology_epochs=(),
               opts: pipeline.TopologyOptions | None = None, wait: bool = False, retrain: bool = False):
    """Submit training (unless its checkpoints are all there) and, after it, the topology of
    the epochs whose file is not current as one job array. Returns (train job, {epoch: job})."""
    p = plan_run(tcfg, spec, topology_epochs, opts, retrain)
    (p.run.root / "logs").mkdir(parents=True, exist_ok=True)
    scheduler.folder = p.run.root / "logs"
    return submit_plans([p], scheduler, p.run.root.parent.name, wait)[0]


def status(run: storage.Run, spec: TopologySpec | None = None) -> list[dict]:
    """Per saved or requested epoch: its file's state for `spec` (default: the run's last
    requested spec) or the queue state of its job, and the job id."""
    jobs_path = run.root / "logs" / "jobs.json"
    jobs = json.loads(jobs_path.read_text()) if jobs_path.exists() else {"train": [], "topology": {}}
    cfg = storage.read_config(run)
    spec = spec or recorded(run) or TopologySpec()
    epochs = sorted(set(cfg.get("save_epochs", [])) | set(run.saved_epochs()) | set(run.topology_epochs())
                    | {int(e) for e in jobs["topology"]})
    queued = _queue_states(list(jobs["topology"].values()) + jobs["train"])
    reached = set(trained_epochs(run, epochs))
    rows = []
    for st in epoch_states(run, epochs, spec):
        job = jobs["topology"].get(str(st.epoch), "")
        if st.current:
            state = "done"
        elif st.epoch not in reached:
            state = f"after the stop (training stopped at epoch {cfg['stopped_at']})"
        elif job and queued.get(job):
            state = queued[job].lower()
        else:
            state = str(st)
        rows.append({"epoch": st.epoch, "state": state, "job": job})
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
