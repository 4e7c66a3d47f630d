"""Figures from synthetic epoch files: the data drawn is the data stored."""
import numpy as np
import pytest

from dnntopo import plots, storage
from dnntopo.errors import UserError
from dnntopo.spec import TopologySpec


@pytest.fixture
def run(tmp_path):
    run = storage.Run(tmp_path / "lenet_fashion_mnist" / "trial_0")
    storage.write_config(run, {"net": "lenet", "dataset": "fashion_mnist", "trial": 0, "input_shape": [1, 28, 28],
                               "num_classes": 10})
    grid = np.linspace(0, 0.6, 7)
    for e, scale in ((1, 0.5), (2, 1.0)):
        attrs = dict(TopologySpec(max_dim=1, grid_points=7).attrs(), net="lenet", dataset="fashion_mnist",
                     trial=0, epoch=e, n_nodes=4)
        dens = scale * grid / 0.6                            # each epoch its own density axis
        contents = storage.epoch_contents(attrs, np.zeros(4, np.int32), {}, (np.array([0]), np.array([1]),
                                          np.array([0.1], np.float32)), [np.empty((0, 2)), np.empty((0, 2))],
                                          grid, dens, [np.arange(7), np.arange(7) * e], [{}, {}])
        storage.write_epoch_file(run.epoch_file(e), *contents)
    return run


def drawn(monkeypatch):
    figs = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, out: figs.append(fig) or out)
    return figs


def test_betti_curves_against_each_epochs_density(run, monkeypatch, tmp_path):
    figs = drawn(monkeypatch)
    plots.betti_curves(run, [1, 2], 1, tmp_path / "b.png", axis="density")
    lines = figs[0].axes[0].get_lines()
    for line, e, scale in zip(lines, (1, 2), (0.5, 1.0)):
        assert np.allclose(line.get_xdata(), scale * np.linspace(0, 0.6, 7) / 0.6)
        assert np.allclose(line.get_ydata(), np.arange(7) * e / 4)        # per node
    plots.betti_curves(run, [1, 2], 1, tmp_path / "b.png")                 # distance axis
    assert np.allclose(figs[1].axes[0].get_lines()[0].get_xdata(), np.linspace(0, 0.6, 7))
    with pytest.raises(UserError, match="--axis width"):
        plots.betti_curves(run, [1, 2], 1, tmp_path / "b.png", axis="width")


def test_output_checks(run, tmp_path):
    with pytest.raises(UserError, match="unsupported file type .xyz"):
        plots.check_out(tmp_path / "x.xyz")
    (tmp_path / "notes.png").write_text("my notes")
    with pytest.raises(UserError, match="exists and was not written by this command"):
        plots.check_out(tmp_path / "notes.png")
    assert plots.check_out(tmp_path / "notes.png", overwrite=True).name == "notes.png"
    out = plots.betti_curves(run, [1, 2], 1, tmp_path / "b.png")
    assert out.read_bytes()[:4] == b"\x89PNG" and plots.check_out(out) == out     # a figure: may be redrawn
