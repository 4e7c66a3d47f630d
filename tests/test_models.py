"""Every architecture builds for grey 28x28 and colour 32x32 inputs and exposes its node count."""
import pytest
import torch

from dnntopo import activations, models
from dnntopo.errors import UserError

# Node counts worked out by hand from the architectures (units of the default layers).
EXPECTED_NODES = {
    ("lenet", 28): 10 * 12 * 12 + 20 * 4 * 4 + 50 + 10,                 # 1,820
    ("lenet", 32): 10 * 14 * 14 + 20 * 5 * 5 + 50 + 10,
    ("lenet_300_100", 28): 300 + 100 + 10,
    ("lenetext", 28): 1440 + 320 + 120 + 120 + 84 + 10,
    ("conv_2", 28): 64 * 14 * 14 + 256 + 256 + 10,
    ("conv_4", 32): 64 * 16 * 16 + 128 * 8 * 8 + 256 + 256 + 10,
    ("conv_6", 28): 256 * 7 * 7 + 256 * 3 * 3 + 256 + 256 + 10,
    ("alexnet", 32): 256 * 4 * 4 + 384 + 192 + 10,
    ("vgg16", 32): 512 * 2 * 2 + 512 + 10,
    ("resnet18", 32): 256 * 8 * 8 + 512 * 4 * 4 + 512 + 10,
    ("resnet50", 32): 1024 * 8 * 8 + 2048 * 4 * 4 + 2048 + 10,
    ("densenet121", 32): 512 * 4 * 4 + 1024 * 4 * 4 + 1024 + 10,
    ("inception", 32): 832 * 8 * 8 + 1024 * 8 * 8 + 1024 + 10,
}


def observed_units(model, layers, x):
    sizes = {}
    hooks = [dict(model.named_modules())[l].register_forward_hook(
        lambda m, i, o, l=l: sizes.__setitem__(l, o[0].numel())) for l in layers]
    with torch.no_grad():
        out = model(x)
    for h in hooks:
        h.remove()
    return out, sum(sizes.values())


@pytest.mark.parametrize("name", models.MODELS)
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_builds_and_forwards(name, shape):
    model = models.build(name, shape, 10).eval()
    out, n = observed_units(model, models.DEFAULT_LAYERS[name], torch.randn((2,) + shape))
    assert out.shape == (2, 10)
    assert torch.allclose(out.exp().sum(1), torch.ones(2), atol=1e-4)  # log-probabilities
    if (name, shape[-1]) in EXPECTED_NODES:
        assert n == EXPECTED_NODES[(name, shape[-1])]


def test_hooks_collect_in_the_one_forward(fmnist_root):
    from dnntopo import data
    from hpc.comm import SerialComm
    model = models.build("lenet", (1, 28, 28), 10)
    ds = activations.sample_set(data.load("fashion_mnist", fmnist_root, "test"), 30, "test")
    steps = []
    x, layout = activations.extract(SerialComm(), model, ds, models.DEFAULT_LAYERS["lenet"], batch_size=7,
                                    progress=steps.append)
    assert len(steps) == 5      # ceil(30 / 7) batches, each reported
    assert x.shape == (30, 1820) and layout.n_nodes == 1820
    # the last 10 nodes are the log-softmax output of the same forward pass
    with torch.no_grad():
        ref = model.eval()(ds.batch(slice(0, 30))[0]).numpy()
    assert abs(x[:, -10:] - ref).max() < 1e-5
    assert layout.node_layer().tolist() == [0] * 1440 + [1] * 320 + [2] * 50 + [3] * 10


def test_grouping_into_chunk_averages():
    units = [1440, 320, 50, 10]
    nodes = activations.allocate_nodes(units, 182)
    assert nodes.sum() == 182 and all(1 <= n <= u for n, u in zip(nodes, units))
    assert list(activations.allocate_nodes(units, 0)) == units
    with pytest.raises(UserError, match="--max-nodes 3"):
        activations.allocate_nodes(units, 3)


def test_grouped_activations_average_chunks():
    from dnntopo.data import ImageSet
    from hpc.comm import SerialComm
    model = models.build("lenet_300_100", (1, 28, 28), 10)
    imgs = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    ds = ImageSet(imgs, torch.zeros(5, dtype=torch.long), (0.5,), (0.5,), 10)
    full, _ = activations.extract(SerialComm(), model, ds, ["fc1", "fc2", "out"])
    grouped, lay = activations.extract(SerialComm(), model, ds, ["fc1", "fc2", "out"], max_nodes=41)
    assert lay.n_nodes == 41 and list(lay.units) == [300, 100, 10]
    # first node of fc1 = mean of its first chunk of units
    k = lay.units[0] // lay.nodes[0] + (lay.units[0] % lay.nodes[0] > 0)
    assert abs(grouped[:, 0] - full[:, :k].mean(1)).max() < 1e-5


def test_bad_layer_and_checkpoint(tmp_path):
    model = models.build("lenet", (1, 28, 28), 10)
    with pytest.raises(UserError, match="--layers nope: no such layer in lenet"):
        models.check_layers(model, "lenet", ["nope"])
    other = models.build("lenet_300_100", (1, 28, 28), 10)
    torch.save(other.state_dict(), tmp_path / "e.pt")
    with pytest.raises(UserError, match="does not match the lenet net for this dataset .missing"):
        models.load_state(model, tmp_path / "e.pt", "lenet")
    with pytest.raises(UserError, match="does not exist"):
        models.load_state(model, tmp_path / "none.pt", "lenet")
    with pytest.raises(UserError, match="--net 'nope' is not known"):
        models.build("nope", (1, 28, 28), 10)
