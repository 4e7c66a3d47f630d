"""The command line as a user meets it, and the main job end to end."""
import subprocess
import sys

from conftest import dnntopo
from dnntopo import storage


def test_help_lists_subcommands():
    for cmd in ([sys.executable, "-m", "dnntopo", "--help"],):
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        for sub in ("train", "topology", "plot", "summary", "run"):
            assert f"    {sub} " in out


def test_main_job_with_topology_while_training(tmp_path, fmnist_root):
    """Regression: the training hook used default topology flags, so `run --topology-every`
    left epochs at max_dim 1 and 2 and `plot --kind summary` ended in an internal KeyError."""
    p = dnntopo("-q", "run", "--data-root", fmnist_root, "--epochs", "3", "--lr", "0.01", "--subset", "0.05",
                "--topology-every", "1", "--max-dim", "2", "--samples", "300", "--save-epochs", "0", "3",
                "--run-dir", tmp_path, timeout=400)
    assert p.returncode == 0, p.stderr
    run = storage.Run(tmp_path / "lenet_fashion_mnist" / "trial_0")
    assert "run folder:" in p.stdout and "life_2" in p.stdout
    assert run.topology_epochs() == [0, 1, 2, 3]
    for e in range(4):
        a = storage.read_attrs(run.epoch_file(e))
        assert (a["max_dim"], a["n_samples"], a["max_distance"]) == (2, 300, 0.6), (e, a)
    for name in ("betti_dim0.png", "betti_dim1.png", "betti_dim2.png", "diagram_epoch0003.png", "summaries.png"):
        assert (run.plots / name).read_bytes()[:4] == b"\x89PNG"
    assert sorted(q.name for q in run.topology.iterdir()) == [f"epoch_{e:04d}.h5" for e in range(4)] + ["spec.json"]
    p = dnntopo("plot", "--run", run.root, "--kind", "summary", "--out", tmp_path / "s.png")
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    st = dnntopo("status", "--run", run.root, check=True).stdout
    assert all(f"    {e}  done" in st for e in range(4)), st
    # the same command again: nothing retrained, nothing recomputed
    stamps = {q: q.stat().st_mtime_ns for q in list(run.checkpoints.iterdir()) + list(run.topology.glob("*.h5"))}
    p = dnntopo("-q", "run", "--data-root", fmnist_root, "--epochs", "3", "--lr", "0.01", "--subset", "0.05",
                "--topology-every", "1", "--max-dim", "2", "--samples", "300", "--save-epochs", "0", "3",
                "--run-dir", tmp_path, timeout=400)
    assert p.returncode == 0, p.stderr
    assert {q: q.stat().st_mtime_ns for q in stamps} == stamps
