"""Figures a researcher puts in a paper: Betti curves of several epochs, persistence diagrams,
and the summaries against epoch beside test accuracy. PNG by default, any matplotlib format."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from dnntopo import storage  # noqa: E402
from dnntopo.errors import UserError  # noqa: E402
from dnntopo.spec import check_epochs  # noqa: E402


def _smooth(y: np.ndarray, width: int) -> np.ndarray:
    if width <= 1:
        return y
    k = np.ones(width) / width
    return np.convolve(np.pad(y, (width // 2, width - 1 - width // 2), mode="edge"), k, mode="valid")


def formats() -> tuple:
    """File suffixes matplotlib can write (.png, .pdf, .svg, ...)."""
    from matplotlib.backend_bases import FigureCanvasBase
    return tuple(f".{k}" for k in FigureCanvasBase.get_supported_filetypes())


def is_figure(path) -> bool:
    """True for a file that is already a figure (writing a figure over it loses nothing)."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    return head.startswith((b"\x89PNG", b"%PDF", b"%!PS", b"\xff\xd8", b"GIF8", b"RIFF", b"II*", b"MM\x00*")) \
        or b"<svg" in head


def check_out(out, overwrite: bool = False):
    """A figure path that is safe to write (see storage.check_output)."""
    return storage.check_output(out, kinds=formats(), mine=is_figure, overwrite=overwrite)


def save_figure(fig, out):
    """Save atomically (temporary name, then rename), creating the folder."""
    out = Path(out)
    with storage.writing(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")
        try:
            fig.savefig(tmp, dpi=150, bbox_inches="tight")
            tmp.replace(out)
        finally:
            plt.close(fig)
            tmp.unlink(missing_ok=True)
    return out


def betti_curves(run: storage.Run, epochs: list, dim: int, out, smooth: int = 0,
                 allow_mixed: bool = False, axis: str = "distance"):
    """Betti curves (cavities per node) of `dim` for the epochs, against distance (with the last
    epoch's density on the top axis) or against each epoch's own edge density (the papers' axis)."""
    check_epochs(run, epochs, allow_mixed)
    if smooth < 0:
        raise UserError(f"--smooth {smooth}: must be 0 (none) or a positive width")
    if axis not in ("distance", "density"):
        raise UserError(f"--axis {axis}: choose distance or density")
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    cmap = plt.get_cmap("viridis")
    last = None
    for k, e in enumerate(epochs):
        ep = storage.read_epoch(run.epoch_file(e))
        if dim not in ep["betti"]:
            raise UserError(f"--dim {dim}: epoch {e} was computed up to dimension "
                            f"{ep['attrs']['max_dim']}")
        x = ep["betti"][axis]
        y = _smooth(ep["betti"][dim] / ep["attrs"]["n_nodes"], smooth)
        ax.plot(x, y, color=cmap(k / max(len(epochs) - 1, 1)), lw=1.8, label=f"epoch {e}")
        last = ep
    a = last["attrs"]
    ax.set_xlabel("distance  1 − |corr|" if axis == "distance" else "edge density (each epoch's own)")
    ax.set_ylabel(f"Betti {dim} / node")
    ax.set_title(f"{a['net']} on {a['dataset']}, trial {a['trial']}: dimension {dim}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2 if len(epochs) > 6 else 1)
    if axis == "distance":
        xs, dens = last["betti"]["distance"], last["betti"]["density"]
        top = ax.twiny()
        top.set_xlim(ax.get_xlim())
        ticks = [t for t in ax.get_xticks() if xs[0] <= t <= xs[-1]]
        top.set_xticks(ticks)
        top.set_xticklabels([f"{np.interp(t, xs, dens):.3g}" for t in ticks], fontsize=8)
        top.set_xlabel(f"edge density at that distance (epoch {epochs[-1]} only)")
    return save_figure(fig, out)


def diagram(run: storage.Run, epoch: int, out, dims=None):
    """Persistence diagram of one epoch; classes alive at the threshold drawn on the top line."""
    ep = storage.read_epoch(run.epoch_file(epoch))
    a = ep["attrs"]
    top = a["max_distance"] * 1.05
    fig, ax = plt.subplots(figsize=(5, 5))
    for k in sorted(dims if dims is not None else ep["diagrams"]):
        dg = ep["diagrams"][k]
        inf = ~np.isfinite(dg[:, 1])
        ax.scatter(dg[~inf, 0], dg[~inf, 1], s=8, alpha=0.6, label=f"H{k} ({len(dg)})")
        if inf.any():
            ax.scatter(dg[inf, 0], np.full(inf.sum(), top), s=14, marker="^", alpha=0.8,
                       label=f"H{k} alive at {a['max_distance']:g}")
    ax.plot([0, top], [0, top], color="grey", lw=0.8)
    ax.axhline(top, color="grey", lw=0.5, ls=":")
    ax.set_xlim(0, top), ax.set_ylim(0, top * 1.02)
    ax.set_xlabel("birth (distance)"), ax.set_ylabel("death (distance)")
    ax.set_title(f"{a['net']} on {a['dataset']}: epoch {epoch}")
    ax.legend(fontsize=8, loc="lower right")
    return save_figure(fig, out)


def summaries_vs_epoch(run: storage.Run, out, dims=None, epochs=None, allow_mixed: bool = False):
    """Life, midlife and Betti max against epoch, each beside test accuracy (the dimensions
    every epoch has)."""
    epochs = epochs or run.topology_epochs()
    if not epochs:
        raise UserError(f"no epoch files in {run.topology}; run `dnntopo topology` first")
    check_epochs(run, epochs, allow_mixed)
    eps = [storage.read_epoch(run.epoch_file(e)) for e in epochs]
    common = set.intersection(*(set(ep["summary"]) for ep in eps))
    dims = sorted(common if dims is None else set(dims) & common)
    acc = {r["epoch"]: r["acc_test"] for r in storage.read_stats(run)}
    keys = [("life", "life"), ("midlife", "midlife"), ("betti_max", "Betti max / node")]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, (key, label) in zip(axes, keys):
        for d in dims:
            v = [ep["summary"][d][key] / (ep["attrs"]["n_nodes"] if key == "betti_max" else 1) for ep in eps]
            ax.plot(epochs, v, marker="o", label=f"dim {d}")
        ax.set_xlabel("epoch"), ax.set_ylabel(label), ax.grid(alpha=0.3)
        if acc:
            tw = ax.twinx()
            tw.plot(epochs, [acc.get(e, np.nan) for e in epochs], color="black", ls="--", lw=1,
                    label="test accuracy")
            tw.set_ylabel("test accuracy")
        ax.legend(fontsize=8, loc="upper left")
    a = eps[0]["attrs"]
    fig.suptitle(f"{a['net']} on {a['dataset']}, trial {a['trial']}: summaries against epoch")
    fig.tight_layout()
    return save_figure(fig, out)


def plot_run(run: storage.Run, epochs: list, dims) -> list:
    """The main job's figures: Betti curves per dimension, the last epoch's diagram, summaries."""
    epochs = sorted(epochs)
    made = [betti_curves(run, epochs, d, run.plots / f"betti_dim{d}.png") for d in dims]
    made.append(diagram(run, epochs[-1], run.plots / f"diagram_epoch{epochs[-1]:04d}.png"))
    made.append(summaries_vs_epoch(run, run.plots / "summaries.png", epochs=epochs))
    return made


def condition_grid(cells: dict, out, kind: str = "betti", dim: int = 1, row_name: str = "", col_name: str = ""):
    """One panel per condition of a study, `cells` mapping (row value, column value) to a run:
    `betti`: the Betti-`dim` curves (cavities per node) of every computed epoch against each
    epoch's own edge density (the papers' axis), coloured by epoch; `summary`: the density of
    the curve's peak against epoch beside train and test accuracy (the early-stopping view)."""
    rows = sorted({r for r, _ in cells}, key=_order)
    cols = sorted({c for _, c in cells}, key=_order)
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(3.3 * len(cols), 2.7 * len(rows)), squeeze=False)
    cmap = plt.get_cmap("viridis")
    for (r, c), run in cells.items():
        ax = axes[rows.index(r), cols.index(c)]
        epochs = run.topology_epochs()
        eps = [storage.read_epoch(run.epoch_file(e)) for e in epochs]
        if kind == "betti":
            for k, (e, ep) in enumerate(zip(epochs, eps)):
                ax.plot(ep["betti"]["density"], ep["betti"][dim] / ep["attrs"]["n_nodes"], lw=1,
                        color=cmap(k / max(1, len(epochs) - 1)), label=f"epoch {e}")
            ax.set_xlabel("edge density"), ax.set_ylabel(f"Betti-{dim} / node")
        else:
            from dnntopo.analysis import peak_positions, peaks_at_threshold
            # as the early-stopping rule reads them: no peak (flat zero) or one at the threshold is NaN
            peak = [np.nan if peaks_at_threshold(ep["betti"][dim])[0] else
                    peak_positions(ep["betti"]["density"], ep["betti"][dim])[0] for ep in eps]
            ax.plot(epochs, peak, marker="o", ms=3, label=f"peak density (dim {dim})")
            ax.set_xlabel("epoch"), ax.set_ylabel("peak density")
            stats = {s["epoch"]: s for s in storage.read_stats(run)}
            tw = ax.twinx()
            for key, style in (("acc_train", ":"), ("acc_test", "--")):
                xs = sorted(stats)
                tw.plot(xs, [stats[e][key] for e in xs], color="black", ls=style, lw=1, label=key)
            tw.set_ylim(0, 1)
        ax.set_title(f"{row_name} {r}, {col_name} {c}", fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes.flat:
        if not ax.lines:
            ax.set_visible(False)
    axes[0, 0].legend(fontsize=6, loc="best")
    if kind != "betti":
        fig.suptitle("right axis: train accuracy (dotted, on the labels as trained) and test accuracy (dashed)",
                     fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out)


def _order(v):
    return (0, float(v), "") if isinstance(v, (int, float)) else (1, 0.0, str(v))
