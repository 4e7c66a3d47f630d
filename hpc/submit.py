"""Scheduling of Python callables through submitit, and the site values of SLURM jobs.

`Site` is the one definition of the site values (partition, account, QoS, times, nodes, ranks,
CPUs and GPUs, memory, modules, the srun MPI plugin, the environment): the `KEY=value` file
(`slurm/site.conf.example` is generated from it), the command-line flags, the sbatch arguments
of the shell templates (`python -m hpc.submit shell`, used by `slurm/pipeline.sh`) and the
submitit parameters all come from its fields. `Scheduler` submits one callable or a job array
of them, optionally after another job (afterok); on a local or debug cluster, where submitit
has no dependencies, it waits for that job first.
"""
from __future__ import annotations

import argparse
import re
import shlex
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

_TIME = re.compile(r"^(\d+-)?\d+(:\d+){0,2}$")


def _site_field(default, help: str, example: str = ""):
    return field(default=default, metadata={"help": help, "example": example})


@dataclass(frozen=True)
class Site:
    """Site values for SLURM jobs; empty ones are left to the cluster's defaults."""
    partition: str = _site_field("", "partition", "gpu")
    account: str = _site_field("", "account to charge")
    qos: str = _site_field("", "quality of service")
    time_train: str = _site_field("02:00:00", "wall time of the training job")
    time_topology: str = _site_field("00:30:00", "wall time of each epoch's task")
    nodes: int = _site_field(1, "nodes per epoch task")
    ntasks: int = _site_field(1, "MPI ranks per epoch task")
    cpus_per_task: int = _site_field(1, "cores per rank (the PH step uses them on rank 0)")
    gpus_per_task: int = _site_field(0, "GPUs for training (0: none)", "1")
    mem: str = _site_field("", "memory per job", "8G")
    modules: str = _site_field("", "modules loaded in each job", "openmpi/4.1 python/3.11")
    mpi: str = _site_field("pmix", "srun --mpi plugin (pmix, pmi2 or none)")
    venv: str = _site_field("", "environment activated in each job (default: the one submitting)")

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if f.type in ("int", int):
                if isinstance(v, bool) or not isinstance(v, int):
                    raise ValueError(f"{flag(f.name)} {v!r}: must be a whole number")
                low = 0 if f.name == "gpus_per_task" else 1
                if v < low:
                    raise ValueError(f"{flag(f.name)} {v}: must be {low} or more")
            elif not isinstance(v, str) or "\n" in v:
                raise ValueError(f"{flag(f.name)} {v!r}: must be one line of text")
        if self.ntasks % self.nodes:
            raise ValueError(f"--ntasks {self.ntasks} over --nodes {self.nodes}: the ranks must "
                             f"split evenly over the nodes")
        for name in ("time_train", "time_topology"):
            if not _TIME.match(getattr(self, name)):
                raise ValueError(f"{flag(name)} {getattr(self, name)!r}: not a SLURM time limit "
                                 f"(MM, MM:SS, HH:MM:SS or D-HH:MM:SS)")

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def parse(cls, name: str, text: str):
        """A value of field `name` from text (a file line or a flag)."""
        f = {f.name: f for f in fields(cls)}[name]
        if f.type in ("int", int):
            try:
                return int(text)
            except ValueError:
                raise ValueError(f"{flag(name)} {text!r}: must be a whole number") from None
        return text

    @classmethod
    def from_file(cls, path, base: "Site | None" = None) -> "Site":
        """Read KEY=value lines (shell syntax, comments allowed) such as slurm/site.conf; keys
        are the field names in upper case; empty values keep `base`'s (default: the defaults)."""
        names = {n.upper(): n for n in cls.names()}
        values = {}
        for raw in Path(path).read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, value = (part.strip() for part in line.split("=", 1))
            if key.upper() not in names:
                raise ValueError(f"{path}: unknown key {key} (known: {', '.join(names)})")
            value = " ".join(shlex.split(value, comments=True))
            if value:
                values[names[key.upper()]] = cls.parse(names[key.upper()], value)
        return replace(base or cls(), **values)

    def updated(self, **values) -> "Site":
        """A copy with the given values; None and "" keep the current ones; unknown names are
        refused with the list of valid ones (as submitit's update_parameters does)."""
        unknown = sorted(set(values) - set(self.names()))
        if unknown:
            raise ValueError(f"unknown site values {', '.join(unknown)} (valid: {', '.join(self.names())})")
        return replace(self, **{k: v for k, v in values.items() if v not in (None, "")})

    @classmethod
    def example_text(cls) -> str:
        """The commented KEY=value file of every site value with its default (site.conf.example)."""
        lines = ["# Site values of SLURM jobs: copy this file and fill in what your cluster needs.",
                 "# Empty values are left out of the sbatch command; flags of the same names",
                 "# (--partition, --time-train, ...) override the file.",
                 "# Generated from hpc.submit.Site: python -m hpc.submit example"]
        for f in fields(cls):
            value = f"{f.name.upper()}={f.default}"
            eg = f" (e.g. {f.metadata['example']})" if f.metadata["example"] else ""
            lines.append(f"{value:<27}# {f.metadata['help']}{eg}")
        return "\n".join(lines) + "\n"

    def sbatch_args(self, role: str) -> list[str]:
        """sbatch options of a job of `role` ("train" or "topology") at this site."""
        args = []
        for name in ("partition", "account", "qos", "mem"):
            if getattr(self, name):
                args += [f"--{name}", getattr(self, name)]
        if role == "train":
            args += ["--ntasks", "1", "--cpus-per-task", str(self.cpus_per_task),
                     "--time", self.time_train]
            if self.gpus_per_task:
                args += ["--gpus-per-task", str(self.gpus_per_task)]
        elif role == "topology":
            args += ["--nodes", str(self.nodes), "--ntasks", str(self.ntasks),
                     "--cpus-per-task", str(self.cpus_per_task), "--time", self.time_topology]
        else:
            raise ValueError(f"unknown role {role!r} (train or topology)")
        return args

    def setup_lines(self) -> list[str]:
        """Shell lines run first in each job: modules, then the environment."""
        out = []
        if self.modules:
            out.append(f"module load {self.modules}")
        if self.venv:
            out.append(f"source {shlex.quote(self.venv)}/bin/activate")
        return out

    def submitit_parameters(self, role: str, name: str, cluster: str, after: str | None = None) -> dict:
        """The parameters given to submitit's executor for a job of `role` on `cluster`."""
        time = self.time_train if role == "train" else self.time_topology
        ntasks = self.ntasks if role == "topology" else 1
        nodes = self.nodes if (ntasks > 1 and cluster == "slurm") else 1
        params = dict(name=name, timeout_min=minutes(time), nodes=nodes,
                      tasks_per_node=max(1, ntasks // nodes) if cluster == "slurm" else 1,
                      cpus_per_task=self.cpus_per_task)
        if cluster != "slurm":
            return params
        slurm = dict(slurm_partition=self.partition or None, slurm_account=self.account or None,
                     slurm_qos=self.qos or None, slurm_mem=self.mem or None,
                     slurm_srun_args=[f"--mpi={self.mpi}"] if ntasks > 1 and self.mpi else [],
                     slurm_additional_parameters={"dependency": f"afterok:{after}"} if after else {},
                     slurm_setup=self.setup_lines())
        if role == "train" and self.gpus_per_task:
            slurm["slurm_gpus_per_task"] = self.gpus_per_task
        params.update({k: v for k, v in slurm.items() if v is not None})
        return params


def flag(name: str) -> str:
    """The command-line flag of a site value."""
    return "--" + name.replace("_", "-")


def add_site_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup):
    """One flag per Site field (default None: keep the file's or the default value)."""
    for f in fields(Site):
        parser.add_argument(flag(f.name), dest=f.name, type=int if f.type in ("int", int) else str,
                            default=None, help=f"{f.metadata['help']} (default {f.default!r})")


def site_from(config: str = "", **flags) -> Site:
    """Site values from the defaults, then the config file (if any), then the flags."""
    site = Site.from_file(config) if config else Site()
    return site.updated(**{k: v for k, v in flags.items() if k in Site.names()})


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

    def executor(self, role: str, name: str, after=None):
        import submitit
        ex = submitit.AutoExecutor(folder=str(self.folder), cluster=self.cluster)
        if ex.cluster != "slurm" and after is not None:
            after.result()  # no dependencies off SLURM: wait for it here
        ex.update_parameters(**self.site.submitit_parameters(
            role, name, ex.cluster, after.job_id if (after is not None and ex.cluster == "slurm") else None))
        return ex

    def submit(self, fn, *args, role: str = "train", name: str, after=None):
        return self.executor(role, name, after).submit(fn, *args)

    def map_array(self, fn, args: list, *, role: str = "topology", name: str, after=None):
        if not args:
            return []
        return self.executor(role, name, after).map_array(fn, args)


def _shell(argv=None) -> int:
    """`python -m hpc.submit shell|example`: the site values as bash for the sbatch templates."""
    p = argparse.ArgumentParser(prog="python -m hpc.submit",
                                description="site values for the sbatch templates")
    p.add_argument("what", choices=("shell", "example"),
                   help="shell: bash assignments of the sbatch arguments; example: site.conf.example")
    p.add_argument("--config", default="", help="KEY=value site file")
    add_site_flags(p)
    a = p.parse_args(argv)
    if a.what == "example":
        sys.stdout.write(Site.example_text())
        return 0
    try:
        site = site_from(a.config, **{k: getattr(a, k) for k in Site.names()})
    except (OSError, ValueError) as exc:
        print(f"site values: {exc}", file=sys.stderr)
        return 2
    if not site.venv:
        site = replace(site, venv=sys.prefix)
    q = shlex.quote
    print(f"train_site=({' '.join(map(q, site.sbatch_args('train')))})")
    print(f"topo_site=({' '.join(map(q, site.sbatch_args('topology')))})")
    for k in ("MODULES", "MPI", "VENV"):
        print(f"{k}={q(getattr(site, k.lower()))}")
    return 0


if __name__ == "__main__":
    sys.exit(_shell())
