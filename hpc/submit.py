"""Scheduling of Python callables through submitit: SLURM where `sbatch` exists, else local.

`Site` holds the site values (partition, account, QoS, times, nodes, ranks, CPUs and GPUs,
memory, modules, the srun MPI plugin), read from the same small file `slurm/pipeline.sh`
sources (KEY=value lines) and overridable by flags. `Scheduler` submits one callable or a job
array of them, optionally after another job (afterok); on a local or debug cluster, where
submitit has no dependencies, it waits for that job first.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field, fields
from pathlib import Path


@dataclass
class Site:
    """Site values for SLURM jobs; empty ones are left to the cluster's defaults."""
    partition: str = ""
    account: str = ""
    qos: str = ""
    time_train: str = "02:00:00"
    time_topology: str = "00:30:00"
    nodes: int = 1
    ntasks: int = 1
    cpus_per_task: int = 1
    gpus_per_task: int = 0
    mem: str = ""
    modules: str = ""
    mpi: str = "pmix"
    venv: str = ""

    @classmethod
    def from_file(cls, path) -> "Site":
        """Read KEY=value lines (shell syntax, comments allowed) such as slurm/site.conf."""
        site = cls()
        names = {f.name.upper(): f for f in fields(cls)}
        for raw in Path(path).read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, value = (part.strip() for part in line.split("=", 1))
            if key.upper() not in names:
                raise ValueError(f"{path}: unknown key {key} (known: {', '.join(names)})")
            value = " ".join(shlex.split(value, comments=True))
            f = names[key.upper()]
            if value:
                setattr(site, f.name, int(value) if f.type in ("int", int) else value)
        return site


def minutes(limit: str) -> int:
    """A SLURM time limit ('MM', 'MM:SS', 'HH:MM:SS', 'D-HH[:MM[:SS]]') in whole minutes."""
    days, rest = limit.split("-", 1) if "-" in limit else ("0", limit)
    parts = [int(p) for p in rest.split(":")]
    if "-" in limit:
        h, m, s = (parts + [0, 0])[:3]
    else:
        h, m, s = ([0, 0] + parts)[-3:] if len(parts) == 3 else (0, parts[0], parts[1] if len(parts) > 1 else 0)
    return max(1, int(days) * 1440 + h * 60 + m + (1 if s else 0))


@dataclass
class Scheduler:
    """submitit's AutoExecutor behind one small interface."""
    folder: Path
    cluster: str | None = None          # slurm | local | debug | None (auto)
    site: Site = field(default_factory=Site)

    def executor(self, name: str, time: str, ntasks: int = 1, gpus: int = 0, after=None):
        import submitit
        ex = submitit.AutoExecutor(folder=str(self.folder), cluster=self.cluster)
        params = dict(name=name, timeout_min=minutes(time), nodes=self.site.nodes if ntasks > 1 else 1,
                      tasks_per_node=max(1, ntasks // max(self.site.nodes, 1)) if ex.cluster == "slurm" else 1,
                      cpus_per_task=self.site.cpus_per_task)
        if ex.cluster == "slurm":
            slurm = dict(slurm_partition=self.site.partition or None, slurm_account=self.site.account or None,
                         slurm_qos=self.site.qos or None, slurm_mem=self.site.mem or None,
                         slurm_srun_args=[f"--mpi={self.site.mpi}"] if ntasks > 1 and self.site.mpi else [],
                         slurm_additional_parameters={"dependency": f"afterok:{after.job_id}"} if after else {})
            setup = []
            if self.site.modules:
                setup.append(f"module load {self.site.modules}")
            if self.site.venv:
                setup.append(f"source {shlex.quote(self.site.venv)}/bin/activate")
            slurm["slurm_setup"] = setup
            if gpus:
                slurm["slurm_gpus_per_task"] = gpus
            params.update({k: v for k, v in slurm.items() if v is not None})
        elif after is not None:
            after.result()  # no dependencies off SLURM: wait for it here
        ex.update_parameters(**params)
        return ex

    def submit(self, fn, *args, name: str, time: str, ntasks: int = 1, gpus: int = 0, after=None):
        return self.executor(name, time, ntasks, gpus, after).submit(fn, *args)

    def map_array(self, fn, args: list, *, name: str, time: str, ntasks: int = 1, after=None):
        if not args:
            return []
        return self.executor(name, time, ntasks, 0, after).map_array(fn, args)
