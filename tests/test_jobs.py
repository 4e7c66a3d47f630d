"""`dnntopo status` and resubmission decide with the spec's one rule (regressions: status said
"done" for an epoch that submit would redo, and for a truncated file)."""
import json

from conftest import dnntopo
from dnntopo import jobs, storage
from dnntopo.spec import TopologySpec

TOPO = ["--samples", "200", "--max-dim", "1", "--max-distance", "0.5"]


def status(run, *args):
    p = dnntopo("status", "--run", run, *args)
    assert p.returncode == 0, p.stderr
    return {int(line.split()[0]): line.split(None, 1)[1] for line in p.stdout.splitlines()[1:]}


def test_status_follows_the_spec(module_run):
    run = storage.Run(module_run)
    before = status(run.root)
    assert set(before) == {0, 1, 2} and all(v.startswith("missing") for v in before.values())
    dnntopo("-q", "topology", "--run", run.root, "--epochs", "1", "2", *TOPO, check=True)
    assert json.loads((run.topology / "spec.json").read_text())["samples"] == 200
    st = status(run.root)
    assert st[1].startswith("done") and st[2].startswith("done") and st[0].startswith("missing")
    # the same question with another parameter: the files are stale, and say why
    st = status(run.root, "--samples", "300")
    assert st[1].startswith("stale") and "file has --samples 200, 300 asked" in st[1]
    # a parameter change through `topology` changes the run's spec: the other epoch is now stale
    dnntopo("-q", "topology", "--run", run.root, "--epochs", "1", *TOPO[:-2], "--max-distance", "0.45",
            check=True)
    st = status(run.root)
    assert st[1].startswith("done")
    assert st[2].startswith("stale") and "--max-distance 0.5, 0.45 asked" in st[2]
    # and submit would redo exactly the epochs status does not call done
    spec = TopologySpec(samples=200, max_dim=1, max_distance=0.45)
    assert jobs.pending_epochs(run, [0, 1, 2], spec.resolved("lenet")) == [0, 2]


def test_status_on_a_truncated_file(module_run, tmp_path):
    run = storage.Run(module_run)
    dnntopo("-q", "topology", "--run", run.root, "--epochs", "0", *TOPO, check=True)
    data = run.epoch_file(0).read_bytes()
    run.epoch_file(0).write_bytes(data[:4096])
    st = status(run.root, *TOPO)
    assert st[0].startswith("unreadable") and "truncated" in st[0]
    spec = TopologySpec(samples=200, max_dim=1, max_distance=0.5)
    assert 0 in jobs.pending_epochs(run, [0], spec)
    # recomputing replaces it
    dnntopo("-q", "topology", "--run", run.root, "--epochs", "0", *TOPO, check=True)
    assert status(run.root, *TOPO)[0].startswith("done")


def test_plan_covers_topology_epochs():
    from dnntopo.pipeline import plan
    from dnntopo.train import TrainConfig
    tcfg, topo = plan(TrainConfig(epochs=10, save_epochs=[0, 10]), (3, 5), every=4)
    assert tcfg.save_epochs == [0, 3, 4, 5, 8, 10] and topo == [3, 5]
    tcfg, topo = plan(TrainConfig(epochs=7))
    assert tcfg.save_epochs == [0, 1, 5, 7] and topo == [0, 1, 5, 7]
