"""The `dnntopo` command line: one subcommand per stage, one clear line per user error.

Under MPI an error on any rank is printed with the rank's number and the whole job is aborted,
so that no rank waits forever in a collective.
"""
from __future__ import annotations

import argparse
import os
import sys

from dnntopo import __version__
from dnntopo.errors import UserError


def _add_train_args(p):
    g = p.add_argument_group("training")
    g.add_argument("--net", default="lenet", help="architecture (default lenet)")
    g.add_argument("--dataset", default="fashion_mnist", help="dataset (default fashion_mnist)")
    g.add_argument("--data-root", default=None,
                   help="folder of the dataset's standard files (default: per dataset, "
                        "/usr/share/datasets/fashion-mnist for fashion_mnist)")
    g.add_argument("--trial", type=int, default=0, help="trial number (run folder trial_<k>)")
    g.add_argument("--epochs", type=int, default=50, help="epochs to train (default 50)")
    g.add_argument("--lr", type=float, default=0.0005, help="learning rate (default 0.0005)")
    g.add_argument("--batch-size", type=int, default=128, help="training batch size (default 128)")
    g.add_argument("--save-epochs", type=int, nargs="+", default=None,
                   help="epochs to checkpoint, 0 = untrained (default 0 1 5 10 20 30 40 50 within --epochs)")
    g.add_argument("--permute-labels", type=float, default=0.0, help="fraction of training labels permuted")
    g.add_argument("--binarize-labels", type=int, default=None, help="class C against the rest, balanced")
    g.add_argument("--subset", type=float, default=1.0, help="fraction of the training set used")
    g.add_argument("--seed", type=int, default=0, help="random seed")
    g.add_argument("--augment", action="store_true", help="random crop and flip while training")
    g.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:k]")
    g.add_argument("--run-dir", default="runs", help="folder of all runs (default ./runs)")
    g.add_argument("--resume", action="store_true", help="continue from the last completed epoch")


def _train_config(a):
    from dnntopo.train import TrainConfig
    save = a.save_epochs
    if save is None:
        save = sorted({e for e in (0, 1, 5, 10, 20, 30, 40, 50) if e <= a.epochs} | {a.epochs})
    return TrainConfig(net=a.net, dataset=a.dataset, data_root=a.data_root, trial=a.trial,
                       epochs=a.epochs, lr=a.lr, batch_size=a.batch_size, save_epochs=list(save),
                       permute_labels=a.permute_labels, binarize_labels=a.binarize_labels,
                       subset=a.subset, seed=a.seed, augment=a.augment, device=a.device,
                       run_dir=a.run_dir)


def cmd_train(a):
    from dnntopo.train import train
    run = train(_train_config(a), resume=a.resume, quiet=a.quiet)
    print(run.root)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dnntopo",
        description="Topology of deep neural networks: train, compute the persistent homology of "
                    "each saved epoch's functional graph, summarize, plot, analyse.")
    p.add_argument("--version", action="version", version=f"dnntopo {__version__}")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or messages")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    t = sub.add_parser("train", help="train a net, checkpointing the requested epochs")
    _add_train_args(t)
    t.set_defaults(func=cmd_train)
    return p


def main(argv=None):
    """Entry point of the `dnntopo` console script."""
    from hpc.comm import get_comm
    parser = build_parser()
    args = parser.parse_args(argv)
    comm = None
    try:
        comm = get_comm()
        args.comm = comm
        args.func(args)
    except UserError as exc:
        _fail(comm, f"error: {exc}", 2)
    except KeyboardInterrupt:
        _fail(comm, "interrupted", 130)
    except Exception as exc:  # a bug, or an environment problem we did not foresee
        if os.environ.get("DNNTOPO_DEBUG"):
            raise
        first = (str(exc).splitlines() or [""])[0]
        _fail(comm, f"internal error: {type(exc).__name__}: {first} "
                    f"(set DNNTOPO_DEBUG=1 for the traceback)", 1)


def _fail(comm, msg: str, code: int):
    size = comm.Get_size() if comm is not None else 1
    where = f" on rank {comm.Get_rank()} of {size}" if size > 1 else ""
    print(f"dnntopo{where}: {msg}", file=sys.stderr, flush=True)
    if size > 1:
        comm.Abort(code)
    sys.exit(code)
