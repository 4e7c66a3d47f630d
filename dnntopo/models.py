"""The architectures of the original research code, built for a dataset's channels, size and classes.

Every model is a chain of named blocks ending in `out` (log-softmax). The units observed for the
functional graph are the outputs of named blocks (`DEFAULT_LAYERS`, matching the original
`forward_features` choices), collected by forward hooks during the ordinary forward pass.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from dnntopo.errors import UserError


def _flat_size(module: nn.Module, in_shape) -> int:
    with torch.no_grad():
        return int(module(torch.zeros((1,) + tuple(in_shape))).numel())


def conv_block(cin, cout, k, pool=1, pad=0, drop=False, bn=False):
    layers = [nn.Conv2d(cin, cout, kernel_size=k, padding=pad)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    if drop:
        layers.append(nn.Dropout2d())
    if pool > 1:
        layers.append(nn.MaxPool2d(pool))
    layers.append(nn.ReLU(inplace=False))
    return nn.Sequential(*layers)


def fc_block(cin, cout, relu=True):
    return nn.Sequential(nn.Linear(cin, cout), nn.ReLU()) if relu else nn.Linear(cin, cout)


def _finish(net: nn.Module, convs: list, fcs: list, in_shape, classes):
    """Add conv blocks, a flatten, fully connected blocks sized from a dummy pass, and `out`."""
    conv_part = nn.Sequential(*[m for _, m in convs])
    width = _flat_size(conv_part, in_shape)
    for name, m in convs:
        net.add_module(name, m)
    net.add_module("flatten", nn.Flatten(1))
    sizes = [width] + [h for _, h in fcs]
    for k, (name, _) in enumerate(fcs):
        net.add_module(name, fc_block(sizes[k], sizes[k + 1]))
    net.add_module(f"fc{len(fcs) + 1}", nn.Linear(sizes[-1], classes))
    net.add_module("out", nn.LogSoftmax(dim=1))
    return net


def lenet(c, s, k):
    return _finish(nn.Sequential(), [("block1", conv_block(c, 10, 5, 2)),
                             ("block2", conv_block(10, 20, 5, 2, drop=True))],
                   [("fc1", 50)], (c, s, s), k)


def lenet_300_100(c, s, k):
    return _finish(nn.Sequential(), [], [("fc1", 300), ("fc2", 100)], (c, s, s), k)


def lenetext(c, s, k):
    return _finish(nn.Sequential(), [("block1", conv_block(c, 10, 5, 2)),
                             ("block2", conv_block(10, 20, 5, 2, drop=True))],
                   [("fc1", 120), ("fc2", 120), ("fc3", 84)], (c, s, s), k)


def conv_x(depth):
    widths = [64, 64, 128, 128, 256, 256][:depth]

    def build(c, s, k):
        convs, cin = [], c
        for d, w in enumerate(widths):
            convs.append((f"block{d + 1}", conv_block(cin, w, 3, 2 if d % 2 else 1, pad=1)))
            cin = w
        return _finish(nn.Sequential(), convs, [("fc1", 256), ("fc2", 256)], (c, s, s), k)
    return build


def alexnet(c, s, k):
    convs = [("block1", nn.Sequential(nn.Conv2d(c, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2, 1))),
             ("block2", nn.Sequential(nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2, 1))),
             ("block3", nn.Sequential(nn.Conv2d(192, 384, 3, padding=1), nn.ReLU())),
             ("block4", nn.Sequential(nn.Conv2d(384, 256, 3, padding=1), nn.ReLU())),
             ("block5", nn.Sequential(nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, 1)))]
    return _finish(nn.Sequential(), convs, [("fc1", 384), ("fc2", 192)], (c, s, s), k)


VGG16 = [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]]


def vgg16(c, s, k):
    net, cin = nn.Sequential(), c
    for st, widths in enumerate(VGG16):
        layers = []
        for w in widths:
            layers += [nn.Conv2d(cin, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU()]
            cin = w
        layers.append(nn.MaxPool2d(2) if s >= 2 ** (st + 1) else nn.Identity())
        net.add_module(f"stage{st + 1}", nn.Sequential(*layers))
    net.add_module("pool", nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1)))
    net.add_module("fc", nn.Linear(512, k))
    net.add_module("out", nn.LogSoftmax(dim=1))
    return net


class Residual(nn.Module):
    """A basic (two 3x3) or bottleneck (1x1, 3x3, 1x1) residual block."""

    def __init__(self, cin, planes, stride, bottleneck):
        super().__init__()
        cout = planes * (4 if bottleneck else 1)
        if bottleneck:
            self.body = nn.Sequential(
                nn.Conv2d(cin, planes, 1, bias=False), nn.BatchNorm2d(planes), nn.ReLU(),
                nn.Conv2d(planes, planes, 3, stride, 1, bias=False), nn.BatchNorm2d(planes), nn.ReLU(),
                nn.Conv2d(planes, cout, 1, bias=False), nn.BatchNorm2d(cout))
        else:
            self.body = nn.Sequential(
                nn.Conv2d(cin, planes, 3, stride, 1, bias=False), nn.BatchNorm2d(planes), nn.ReLU(),
                nn.Conv2d(planes, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))
        self.cout = cout

    def forward(self, x):
        return torch.relu(self.body(x) + self.shortcut(x))


def resnet(blocks, bottleneck):
    def build(c, s, k):
        net = nn.Sequential()
        net.add_module("stem", nn.Sequential(nn.Conv2d(c, 64, 3, 1, 1, bias=False),
                                             nn.BatchNorm2d(64), nn.ReLU()))
        cin = 64
        for st, (n, planes) in enumerate(zip(blocks, (64, 128, 256, 512))):
            layers = []
            for b in range(n):
                blk = Residual(cin, planes, 2 if (st > 0 and b == 0) else 1, bottleneck)
                layers.append(blk)
                cin = blk.cout
            net.add_module(f"layer{st + 1}", nn.Sequential(*layers))
        net.add_module("pool", nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1)))
        net.add_module("fc", nn.Linear(cin, k))
        net.add_module("out", nn.LogSoftmax(dim=1))
        return net
    return build


class DenseLayer(nn.Module):
    def __init__(self, cin, growth):
        super().__init__()
        self.body = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, 4 * growth, 1, bias=False),
                                  nn.BatchNorm2d(4 * growth), nn.ReLU(),
                                  nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False))

    def forward(self, x):
        return torch.cat([self.body(x), x], 1)


def densenet121(c, s, k, growth=32, blocks=(6, 12, 24, 16)):
    net, cin = nn.Sequential(), 2 * growth
    net.add_module("stem", nn.Conv2d(c, cin, 3, padding=1, bias=False))
    for d, n in enumerate(blocks):
        layers = []
        for _ in range(n):
            layers.append(DenseLayer(cin, growth))
            cin += growth
        if d < len(blocks) - 1:
            cout = cin // 2
            layers += [nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, cout, 1, bias=False), nn.AvgPool2d(2)]
            cin = cout
        else:
            layers += [nn.BatchNorm2d(cin), nn.ReLU()]
        net.add_module(f"dense{d + 1}", nn.Sequential(*layers))
    net.add_module("pool", nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1)))
    net.add_module("fc", nn.Linear(cin, k))
    net.add_module("out", nn.LogSoftmax(dim=1))
    return net


class InceptionModule(nn.Module):
    """GoogLeNet's four-branch module: 1x1, 1x1-3x3, 1x1-3x3-3x3 (the 5x5), pool-1x1."""

    def __init__(self, cin, n1, r3, n3, r5, n5, pp):
        super().__init__()

        def cbr(a, b, ksz):
            return [nn.Conv2d(a, b, ksz, padding=ksz // 2), nn.BatchNorm2d(b), nn.ReLU()]
        self.b1 = nn.Sequential(*cbr(cin, n1, 1))
        self.b2 = nn.Sequential(*cbr(cin, r3, 1), *cbr(r3, n3, 3))
        self.b3 = nn.Sequential(*cbr(cin, r5, 1), *cbr(r5, n5, 3), *cbr(n5, n5, 3))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), *cbr(cin, pp, 1))
        self.cout = n1 + n3 + n5 + pp

    def forward(self, x):
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)


INCEPTION = {"a3": (64, 96, 128, 16, 32, 32), "b3": (128, 128, 192, 32, 96, 64),
             "a4": (192, 96, 208, 16, 48, 64), "b4": (160, 112, 224, 24, 64, 64),
             "c4": (128, 128, 256, 24, 64, 64), "d4": (112, 144, 288, 32, 64, 64),
             "e4": (256, 160, 320, 32, 128, 128), "a5": (256, 160, 320, 32, 128, 128),
             "b5": (384, 192, 384, 48, 128, 128)}


def inception(c, s, k):
    net = nn.Sequential()
    net.add_module("stem", nn.Sequential(nn.Conv2d(c, 192, 3, padding=1), nn.BatchNorm2d(192), nn.ReLU()))
    cin = 192
    for name, cfg in INCEPTION.items():
        mod = InceptionModule(cin, *cfg)
        net.add_module(name, mod)
        cin = mod.cout
        if name in ("b3", "e4"):
            net.add_module(f"pool_{name}", nn.MaxPool2d(3, 2, 1))
    net.add_module("pool", nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1)))
    net.add_module("fc", nn.Linear(cin, k))
    net.add_module("out", nn.LogSoftmax(dim=1))
    return net


BUILDERS = {
    "lenet": lenet, "lenet_300_100": lenet_300_100, "lenetext": lenetext,
    "conv_2": conv_x(2), "conv_4": conv_x(4), "conv_6": conv_x(6), "alexnet": alexnet,
    "vgg16": vgg16, "resnet18": resnet((2, 2, 2, 2), False), "resnet34": resnet((3, 4, 6, 3), False),
    "resnet50": resnet((3, 4, 6, 3), True), "densenet121": densenet121, "inception": inception,
}

#: Observed layers per model (the original `forward_features` choices, duplicates dropped).
DEFAULT_LAYERS = {
    "lenet": ["block1", "block2", "fc1", "out"],
    "lenet_300_100": ["fc1", "fc2", "out"],
    "lenetext": ["block1", "block2", "fc1", "fc2", "fc3", "out"],
    "conv_2": ["block2", "fc1", "fc2", "out"],
    "conv_4": ["block2", "block4", "fc1", "fc2", "out"],
    "conv_6": ["block5", "block6", "fc1", "fc2", "out"],
    "alexnet": ["block5", "fc1", "fc2", "out"],
    "vgg16": ["stage4", "stage5", "out"],
    "resnet18": ["layer3", "layer4", "pool", "out"],
    "resnet34": ["layer3", "layer4", "pool", "out"],
    "resnet50": ["layer3", "layer4", "pool", "out"],
    "densenet121": ["dense3", "dense4", "pool", "out"],
    "inception": ["a5", "b5", "pool", "out"],
}

MODELS = tuple(BUILDERS)


def check_name(name: str) -> str:
    if name not in BUILDERS:
        raise UserError(f"--net {name!r} is not known; choose one of {', '.join(MODELS)}")
    return name


def build(name: str, in_shape, num_classes: int) -> nn.Module:
    """Model `name` for inputs of shape (C, H, W) and `num_classes` outputs."""
    check_name(name)
    c, h, w = in_shape
    if h != w:
        raise UserError(f"--net {name} needs square images, the dataset gives {h}x{w}")
    return BUILDERS[name](c, h, num_classes)


def check_layers(model: nn.Module, name: str, layers) -> list[str]:
    """The observed layer names (default for the model when `layers` is empty), validated."""
    layers = list(layers) if layers else list(DEFAULT_LAYERS[name])
    known = dict(model.named_modules())
    bad = [l for l in layers if l not in known or l == ""]
    if bad:
        top = [n for n, _ in model.named_children()]
        raise UserError(f"--layers {' '.join(bad)}: no such layer in {name}; its blocks are "
                        f"{', '.join(top)} (sub-modules by dotted name)")
    return layers


def read_checkpoint(path) -> dict:
    """A checkpoint's contents, loaded with weights_only=True; one clear error otherwise."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"checkpoint {path} does not exist; train that epoch first "
                        f"(dnntopo train ... --save-epochs)") from None
    except IsADirectoryError:
        raise UserError(f"checkpoint {path} is a folder, not a file") from None
    except Exception as exc:
        msg = (str(exc).splitlines() or [""])[0]
        if "Unsupported global" in str(exc) or "allowlist" in str(exc):
            why = "it holds Python objects, not only tensors: not a state_dict saved by dnntopo"
        elif not Path(path).stat().st_size:
            why = "the file is empty"
        else:
            why = ("not a PyTorch checkpoint (damaged, or another kind of file)" if "Weights only load failed" in msg
                   else f"not a PyTorch checkpoint ({type(exc).__name__}{': ' + msg[:120] if msg else ''})")
        raise UserError(f"cannot load checkpoint {path}: {why}; train that epoch again") from None


def load_state(model: nn.Module, path, net: str, state: dict | None = None):
    """Load a state-dict checkpoint (or the `model` entry of a resume state, already read)."""
    state = read_checkpoint(path) if state is None else state
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise UserError(f"checkpoint {path} is not a state_dict (it holds a {type(state).__name__})")
    want = model.state_dict()
    missing = [k for k in want if k not in state]
    extra = [k for k in state if k not in want]
    shapes = [k for k in want if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(want[k].shape)]
    if missing or extra or shapes:
        parts = [f"{label} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}" for label, keys in
                 (("missing", missing), ("unexpected", extra), ("other shapes of", shapes)) if keys]
        raise UserError(f"checkpoint {path} does not match the {net} net for this dataset "
                        f"({'; '.join(parts)}); it was trained with another net or dataset") from None
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as exc:
        first = (str(exc).splitlines() or [""])[0]
        raise UserError(f"checkpoint {path} does not match the {net} net ({first[:200]})") from None
    return model
