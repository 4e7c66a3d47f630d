"""The command line as a user meets it, and the main job end to end."""
import subprocess
import sys

from conftest import dnntopo


def test_help_lists_subcommands():
    for cmd in ([sys.executable, "-m", "dnntopo", "--help"],):
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        for sub in ("train", "topology", "plot", "summary", "run"):
            assert f"    {sub} " in out


def test_main_job_end_to_end(tmp_path, fmnist_root):
    p = dnntopo("-q", "run", "--data-root", fmnist_root, "--epochs", "1", "--lr", "0.01", "--subset", "0.05",
                "--save-epochs", "0", "1", "--samples", "300", "--max-dim", "1", "--run-dir", tmp_path, timeout=300)
    assert p.returncode == 0, p.stderr
    run = tmp_path / "lenet_fashion_mnist" / "trial_0"
    assert "run folder:" in p.stdout and "life_1" in p.stdout
    for name in ("betti_dim0.png", "betti_dim1.png", "diagram_epoch0001.png", "summaries.png"):
        assert (run / "plots" / name).read_bytes()[:4] == b"\x89PNG"
    assert sorted(q.name for q in (run / "topology").iterdir()) == ["epoch_0000.h5", "epoch_0001.h5", "spec.json"]
