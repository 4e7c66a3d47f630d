"""Activations of the observed units for a fixed set of samples, collected by forward hooks.

The samples are cut into fixed batches; with K ranks each rank forwards a contiguous run of
whole batches, so every sample is computed in the same batch whatever K is. With --max-nodes
the units of each layer are grouped into contiguous chunks and averaged (as the original code
did for big nets), batch by batch, so the full activation matrix is never held ungrouped.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dnntopo.data import ImageSet
from dnntopo.errors import UserError
from hpc.shard import block_bounds, split_blocks_even


@dataclass
class Layout:
    """Where each observed layer's units land among the nodes."""
    layers: list
    units: np.ndarray        # units per layer before grouping
    nodes: np.ndarray        # nodes per layer after grouping

    @property
    def n_nodes(self) -> int:
        return int(self.nodes.sum())

    @property
    def n_units(self) -> int:
        return int(self.units.sum())

    def node_layer(self) -> np.ndarray:
        """Layer index of each node."""
        return np.repeat(np.arange(len(self.layers), dtype=np.int32), self.nodes)


def allocate_nodes(units: np.ndarray, max_nodes: int) -> np.ndarray:
    """Nodes per layer: all units when they fit, else shares of max_nodes proportional to size.

    Every layer keeps at least one node and never more nodes than units.
    """
    units = np.asarray(units, dtype=np.int64)
    if max_nodes <= 0 or units.sum() <= max_nodes:
        return units.copy()
    if max_nodes < units.size:
        raise UserError(f"--max-nodes {max_nodes} is fewer than the {units.size} observed layers; "
                        f"raise it or observe fewer --layers")
    share = units / units.sum() * max_nodes
    nodes = np.clip(np.floor(share).astype(np.int64), 1, units)
    order = np.argsort(-(share - np.floor(share)), kind="stable")
    k = 0
    while nodes.sum() < max_nodes and k < 10 * units.size:
        l = order[k % units.size]
        if nodes[l] < units[l]:
            nodes[l] += 1
        k += 1
    while nodes.sum() > max_nodes:
        l = int(np.argmax(nodes))
        nodes[l] -= 1
    return nodes


def sample_set(ds: ImageSet, n: int, split: str) -> ImageSet:
    """The first `n` images of the split: the same samples for every epoch."""
    if n > len(ds):
        raise UserError(f"--samples {n}: the {split} split has only {len(ds)} images")
    return ds.subset(np.arange(n))


def extract(comm, model: torch.nn.Module, samples: ImageSet, layers: list, *, max_nodes: int = 0,
            batch_size: int = 100, device: torch.device = torch.device("cpu"),
            progress=None) -> tuple[np.ndarray, Layout]:
    """This rank's activations (float32, its samples x nodes) and the node layout.

    The rank's samples are the whole batches [lo, hi) of `split_blocks_even` of batches of
    `batch_size`; with `max_nodes` the units are grouped (chunk averages per layer).
    `progress(k)` is called after each batch.
    """
    modules = dict(model.named_modules())
    model.eval().to(device)
    with torch.no_grad():
        sizes = {}
        hooks = [modules[l].register_forward_hook(
            lambda m, i, o, l=l: sizes.__setitem__(l, int(o[0].numel()))) for l in layers]
        model(samples.batch(slice(0, 1), device)[0])
        for h in hooks:
            h.remove()
    units = np.array([sizes[l] for l in layers], dtype=np.int64)
    layout = Layout(list(layers), units, allocate_nodes(units, max_nodes))
    col = np.concatenate([[0], np.cumsum(layout.nodes)])
    starts = [np.array([int(a[0]) for a in np.array_split(np.arange(u), m)], dtype=np.int64)
              for u, m in zip(layout.units, layout.nodes)]
    counts = [np.diff(np.append(s, u)).astype(np.float32) for s, u in zip(starts, layout.units)]

    bounds = block_bounds(len(samples), batch_size)
    lo, hi = split_blocks_even(len(bounds) - 1, comm.Get_size(), comm.Get_rank())
    first, last = int(bounds[lo]), int(bounds[hi])
    out = np.empty((last - first, layout.n_nodes), dtype=np.float32)
    rows = slice(0, 0)

    def hook(k):
        def fn(module, inputs, output):
            a = output.detach().reshape(output.shape[0], -1).float().cpu().numpy()
            bad = ~np.isfinite(a)
            if bad.any():
                units = int(bad.any(axis=0).sum())
                raise UserError(f"layer {layers[k]}: {units} of {a.shape[1]} units have NaN or infinite "
                                f"activations; the checkpoint's weights are not finite (a diverged "
                                f"training?): lower --lr and train again")
            if layout.nodes[k] != layout.units[k]:
                a = np.add.reduceat(a, starts[k], axis=1) / counts[k]
            out[rows, col[k]:col[k + 1]] = a
        return fn

    handles = [modules[l].register_forward_hook(hook(k)) for k, l in enumerate(layers)]
    try:
        with torch.no_grad():
            for b in range(lo, hi):
                a, z = int(bounds[b]), int(bounds[b + 1])
                rows = slice(a - first, z - first)
                model(samples.batch(slice(a, z), device)[0])
                if progress is not None:
                    progress(1)
    finally:
        for h in handles:
            h.remove()
    return out, layout

