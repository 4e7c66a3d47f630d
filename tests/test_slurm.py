"""A real one-node SLURM cluster (started here, once): job arrays, pipeline.sh, submitit,
cancellation and resubmission. Every wait is bounded."""
import json
import os
import shutil
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from conftest import REPO, copy_run, dnntopo
from dnntopo import storage

pytestmark = pytest.mark.slurm
TOPO = ["--samples", "200", "--max-dim", "1", "--max-distance", "0.5"]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    if os.geteuid() != 0 or shutil.which("slurmctld") is None:
        pytest.fail("the SLURM tests need root and Debian's slurm-wlm and munge (scripts/setup.sh --slurm)")
    state = tmp_path_factory.mktemp("slurm")
    p = subprocess.run(["bash", str(REPO / "scripts" / "slurm_local.sh"), "start", str(state)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    env = {"SLURM_CONF": str(state / "slurm.conf"), "DNNTOPO_VENV": sys.prefix, "DNNTOPO_HOME": str(REPO),
           "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    subprocess.run(["scancel", "-u", "root"], capture_output=True)
    subprocess.run(["bash", str(REPO / "scripts" / "slurm_local.sh"), "stop", str(state)], capture_output=True)
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def wait_jobs(ids, limit=300):
    """Wait until none of the job ids is queued or running; fail after `limit` seconds."""
    t = time.monotonic()
    while time.monotonic() - t < limit:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i"], capture_output=True, text=True).stdout.split()
        if not any(o == i or o.startswith(f"{i}_") for o in out for i in ids):
            return
        time.sleep(1)
    pytest.fail(f"jobs {ids} still queued after {limit} s")


def sbatch(*args, env=None):
    p = subprocess.run(["sbatch", "--parsable", *map(str, args)], capture_output=True, text=True,
                       env=dict(os.environ, **(env or {})), timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip().split(";")[0]


def serial_reference(trained_run, tmp_path, epochs):
    ref = copy_run(trained_run, tmp_path / "serial")
    dnntopo("-q", "topology", "--run", ref, "--epochs", *epochs, *TOPO, check=True)
    return storage.Run(ref)


def same_numbers(a, b):
    with h5py.File(a) as fa, h5py.File(b) as fb:
        for key in ("graph/edges/i", "graph/edges/j", "graph/edges/distance", "diagrams/dim_0",
                    "diagrams/dim_1", "betti/dim_1"):
            assert np.array_equal(fa[key][()], fb[key][()]), key


def test_array_over_three_epochs(slurm, trained_run, tmp_path):
    run = storage.Run(copy_run(trained_run, tmp_path / "run"))
    (run.root / "logs").mkdir()
    job = sbatch("--array=0,1,2", "--ntasks=2", "--output", run.root / "logs" / "%x_%A_%a.out",
                 REPO / "slurm" / "topology_array.sbatch",
                 env={"DNNTOPO_RUN": str(run.root), "DNNTOPO_TOPOLOGY_ARGS": " ".join(TOPO)})
    wait_jobs([job])
    ref = serial_reference(trained_run, tmp_path, ["0", "1", "2"])
    assert run.topology_epochs() == [0, 1, 2], list((run.root / "logs").iterdir())
    for e in (0, 1, 2):
        same_numbers(run.epoch_file(e), ref.epoch_file(e))
    logs = sorted(p.name for p in (run.root / "logs").iterdir())
    assert logs == [f"dnntopo-topology_{job}_{e}.out" for e in (0, 1, 2)]


def test_pipeline_script_trains_then_runs_the_array(slurm, tmp_path, fmnist_root):
    p = subprocess.run(["bash", str(REPO / "slurm" / "pipeline.sh"), "--run-dir", str(tmp_path / "runs"),
                        "--epochs", "1", "--save-epochs", "0 1", "--ntasks", "2", "--venv", sys.prefix,
                        "--train-args", f"--lr 0.01 --subset 0.05 --data-root {fmnist_root}",
                        "--topology-args", " ".join(TOPO)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    ids = [w.rstrip(",") for w in p.stdout.split() if w.rstrip(",").isdigit()]
    assert len(ids) == 2
    wait_jobs(ids)
    run = storage.Run(tmp_path / "runs" / "lenet_fashion_mnist" / "trial_0")
    assert run.saved_epochs() == [0, 1] and run.topology_epochs() == [0, 1]
    assert [r["epoch"] for r in storage.read_stats(run)] == [0, 1]


def test_submit_through_submitit(slurm, tmp_path, fmnist_root):
    p = dnntopo("-q", "submit", "--cluster", "slurm", "--run-dir", tmp_path / "runs", "--data-root", fmnist_root,
                "--epochs", "1", "--lr", "0.01", "--subset", "0.05", "--save-epochs", "0", "1", "--ntasks", "2",
                *TOPO, "--wait", timeout=400)
    assert p.returncode == 0, p.stderr
    run = storage.Run(tmp_path / "runs" / "lenet_fashion_mnist" / "trial_0")
    assert run.topology_epochs() == [0, 1]
    st = dnntopo("status", "--run", run.root, check=True).stdout
    assert st.count(" done ") == 2
    # resubmitting submits nothing: training's checkpoints and both epochs are current
    same = ["-q", "submit", "--cluster", "slurm", "--run-dir", tmp_path / "runs", "--data-root", fmnist_root,
            "--epochs", "1", "--lr", "0.01", "--subset", "0.05", "--save-epochs", "0", "1", "--ntasks", "2", *TOPO]
    p = dnntopo(*same, timeout=120)
    assert "not resubmitted" in p.stdout and "every epoch is current" in p.stdout, p.stderr
    # other training parameters are another run: refused, nothing submitted
    p = dnntopo(*[a if a != "0.01" else "0.02" for a in same], timeout=120)
    assert p.returncode == 2 and "holds another training (--lr 0.01 (0.02 asked))" in p.stderr


def test_python_api_and_local_cluster(trained_run, tmp_path, fmnist_root):
    from dnntopo import jobs
    from dnntopo.spec import TopologySpec
    from dnntopo.train import TrainConfig
    from hpc.submit import Scheduler
    runs = tmp_path / "runs"
    copy_run(trained_run, runs / "lenet_fashion_mnist" / "trial_0")
    tcfg = TrainConfig(data_root=str(fmnist_root), epochs=2, lr=0.01, subset=0.1, save_epochs=[0, 1, 2],
                       run_dir=str(runs))
    spec = TopologySpec(samples=200, max_dim=1, max_distance=0.5)
    train_job, topo = jobs.submit_run(tcfg, spec, Scheduler(folder=None, cluster="local"), [1, 2], wait=True)
    assert train_job is None and sorted(topo) == [1, 2]
    run = storage.Run(runs / "lenet_fashion_mnist" / "trial_0")
    ref = serial_reference(trained_run, tmp_path, ["1", "2"])
    for e in (1, 2):
        same_numbers(run.epoch_file(e), ref.epoch_file(e))


def test_cancelled_task_leaves_nothing_and_is_redone(slurm, trained_run, tmp_path, fmnist_root):
    runs = tmp_path / "runs"
    run = storage.Run(copy_run(trained_run, runs / "lenet_fashion_mnist" / "trial_0"))
    common = ["-q", "submit", "--cluster", "slurm", "--run-dir", runs, "--data-root", fmnist_root,
              "--epochs", "2", "--lr", "0.01", "--subset", "0.1", "--save-epochs", "0", "1", "2",
              "--ntasks", "1", *TOPO]
    # epoch 1 pauses with its file half-written (under a temporary name); cancel it there
    p = dnntopo(*common, env={"DNNTOPO_PAUSE_STAGE": "write", "DNNTOPO_PAUSE_EPOCH": "1",
                              "DNNTOPO_PAUSE_SECONDS": "120"}, timeout=120)
    assert p.returncode == 0, p.stderr
    job1 = [w.split(":")[1] for w in p.stdout.split() if w.startswith("1:")][0]
    t = time.monotonic()
    while not list(run.topology.glob(".epoch_0001.h5.tmp-*")):
        assert time.monotonic() - t < 180, "epoch 1 never reached its write"
        assert not run.epoch_file(1).exists()
        time.sleep(0.5)
    subprocess.run(["scancel", job1], check=True)
    wait_jobs([job1.split("_")[0]])
    assert not run.epoch_file(1).exists()                       # never a partial epoch file
    assert run.epoch_file(0).exists() and run.epoch_file(2).exists()
    kept = {e: run.epoch_file(e).stat().st_mtime_ns for e in (0, 2)}
    st = dnntopo("status", "--run", run.root, check=True).stdout
    assert "    1  missing" in st
    p = dnntopo(*common, "--wait", timeout=300)
    assert p.returncode == 0, p.stderr
    assert "topology: 1:" in p.stdout and "0:" not in p.stdout.split("topology:")[1]
    assert run.epoch_file(1).exists()
    assert {e: run.epoch_file(e).stat().st_mtime_ns for e in (0, 2)} == kept
    assert not list(run.topology.glob(".*tmp-*"))               # the stale temporary was cleaned


def test_training_job_requeued_midway_resumes(slurm, tmp_path, fmnist_root):
    runs = tmp_path / "runs"
    (runs / "logs").mkdir(parents=True)
    run = storage.Run(runs / "lenet_fashion_mnist" / "trial_0")
    job = sbatch("--output", runs / "logs" / "%x_%j.out", REPO / "slurm" / "train.sbatch",
                 env={"DNNTOPO_TRAIN_ARGS": f"--epochs 4 --lr 0.01 --subset 0.1 --save-epochs 0 4 "
                                            f"--run-dir {runs} --data-root {fmnist_root}"})
    t = time.monotonic()
    while len(storage.read_stats(run)) < 2:          # epochs 0 and 1 done
        assert time.monotonic() - t < 120, "training did not progress"
        time.sleep(0.3)
    subprocess.run(["scontrol", "requeue", job], check=True)   # as preemption or node failure would
    before = storage.read_stats(run)
    # wait for the requeued job to train to the end (not for the queue to look empty: between the
    # requeue and the job's return to PENDING, squeue may briefly not list it); while it waits out
    # SLURM's delay before a requeued job may start again, move its start to now
    t = time.monotonic()
    while max((r["epoch"] for r in storage.read_stats(run)), default=-1) < 4:
        state = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True).stdout
        assert time.monotonic() - t < 300, f"the requeued training did not finish (queue state {state.strip()!r})"
        if "PENDING" in state:
            subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], capture_output=True)
        time.sleep(1)
    wait_jobs([job], limit=120)
    rows = storage.read_stats(run)
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3, 4]
    assert rows[:len(before)] == before                        # resumed, not restarted
    assert run.saved_epochs() == [0, 4]
    assert "DUE TO JOB REQUEUE" in (runs / "logs" / f"dnntopo-train_{job}.out").read_text()


def test_study_through_slurm(slurm, tmp_path, fmnist_root):
    """A tiny study file through the real cluster: training of both runs as one job array, each
    run's topology as an array after its own training; a rerun submits nothing."""
    f = tmp_path / "s.toml"
    f.write_text(f"""name = "slurmstudy"
run_dir = "runs"
[grid]
permute_labels = [0.0, 0.5]
[train]
epochs = 1
lr = 0.01
subset = 0.02
save_epochs = [0, 1]
data_root = "{fmnist_root}"
[topology]
samples = 200
max_dim = 1
sample_split = "own"
epochs = [1]
""")
    p = dnntopo("-q", "study", "run", f, "--cluster", "slurm", timeout=400)
    assert p.returncode == 0, p.stderr
    trains = []
    for k in (0, 1):
        run = storage.Run(tmp_path / "runs" / "lenet_fashion_mnist" / f"trial_{k}")
        assert run.topology_epochs() == [1] and storage.read_config(run)["permute_labels"] == [0.0, 0.5][k]
        trains += json.loads((run.root / "logs" / "jobs.json").read_text())["train"]
    # one array: the same array job id, tasks 0 and 1
    assert len({t.split("_")[0] for t in trains}) == 1 and sorted(t.split("_")[1] for t in trains) == ["0", "1"]
    p = dnntopo("-q", "study", "run", f, "--cluster", "slurm", "--no-wait", timeout=120)
    assert p.returncode == 0 and "2 runs" in p.stdout
    assert subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout.strip() == ""
