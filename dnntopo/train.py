"""Training: SGD (momentum 0.9, weight decay 5e-4), learning rate halved on plateau, as the original.

Checkpoints (state dict only) at the requested epochs, epoch 0 being the untrained net;
stats.csv with train/test loss and accuracy for every epoch; --resume continues from the
last completed epoch (model, optimizer and scheduler state in checkpoints/resume.pt).
"""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from dnntopo import data, models, storage
from dnntopo.errors import UserError
from dnntopo.params import param
from hpc.io import atomic_path


#: Checkpointed epochs when --save-epochs is not given (those within --epochs, and the last).
DEFAULT_SAVE_EPOCHS = (0, 1, 5, 10, 20, 30, 40, 50)


def default_save_epochs(epochs: int) -> list[int]:
    return sorted({e for e in DEFAULT_SAVE_EPOCHS if e <= epochs} | {epochs})


@dataclass
class TrainConfig:
    """Every parameter of a training run (written to config.json)."""
    net: str = param("lenet", "architecture", type=str, group="training")
    dataset: str = param("fashion_mnist", "dataset", type=str, group="training")
    data_root: str | None = param(None, "folder of the dataset's standard files (default: per dataset, "
                                        "/usr/share/datasets/fashion-mnist for fashion_mnist)",
                                  type=str, group="training")
    trial: int = param(0, "trial number (run folder trial_<k>)", type=int, group="training")
    epochs: int = param(50, "epochs to train", type=int, group="training")
    lr: float = param(0.0005, "learning rate", type=float, group="training")
    batch_size: int = param(128, "training batch size", type=int, group="training")
    save_epochs: list | None = param(None, "epochs to checkpoint, 0 = untrained (default 0 1 5 10 20 "
                                           "30 40 50 within --epochs, and the last)", type=int,
                                     nargs="+", group="training")
    permute_labels: float = param(0.0, "fraction of training labels permuted", type=float, group="training")
    binarize_labels: int | None = param(None, "class C against the rest, balanced", type=int,
                                        group="training")
    subset: float = param(1.0, "fraction of the training set used", type=float, group="training")
    seed: int = param(0, "random seed", type=int, group="training")
    augment: bool = param(False, "random crop and flip while training", type=bool, group="training")
    device: str = param("auto", "auto (CUDA when present), cpu or cuda[:k]", type=str, group="training")
    run_dir: str = param("runs", "folder of all runs", type=str, group="training")
    eval_samples: int = param(0, "per-epoch accuracies on the first N training and N test samples "
                                 "(0: all; studies of small subsets)", type=int, group="training")
    torch_threads: int = param(0, "torch threads for training (0: torch's default; several runs side "
                                  "by side)", type=int, group="training")
    stop_at_acc: float = param(0.0, "stop once the training accuracy reaches this (0: never; "
                                    "memorization studies)", type=float, group="training")
    val_samples: int = param(0, "hold out the last N of the run's training samples (labels as "
                                "trained) and record their accuracy each epoch: the validation "
                                "baseline of early stopping (0: none)", type=int, group="training")
    patience: int = 3

    def __post_init__(self):
        if self.save_epochs is None:
            self.save_epochs = default_save_epochs(self.epochs)
        self.save_epochs = sorted({int(e) for e in self.save_epochs})

    def validate(self):
        if self.epochs < 0:
            raise UserError("--epochs must be 0 or more")
        if not (self.lr > 0 and self.lr < float("inf")):
            raise UserError(f"--lr {self.lr}: must be a positive finite number")
        if self.batch_size <= 0:
            raise UserError("--batch-size must be positive")
        if not 0 <= self.permute_labels <= 1:
            raise UserError("--permute-labels must be a fraction in [0, 1]")
        if not 0 < self.subset <= 1:
            raise UserError("--subset must be a fraction in (0, 1]")
        if self.eval_samples < 0:
            raise UserError(f"--eval-samples {self.eval_samples}: must be 0 (all) or more")
        if self.torch_threads < 0:
            raise UserError(f"--torch-threads {self.torch_threads}: must be 0 (default) or more")
        if not 0 <= self.stop_at_acc <= 1:
            raise UserError(f"--stop-at-acc {self.stop_at_acc}: must be an accuracy in [0, 1] (0: never)")
        if self.val_samples < 0:
            raise UserError(f"--val-samples {self.val_samples}: must be 0 (none) or more")
        bad = [e for e in self.save_epochs if e < 0 or e > self.epochs]
        if bad:
            raise UserError(f"--save-epochs {bad}: each must lie in 0..--epochs ({self.epochs})")
        data.split_name(self.dataset)
        models.check_name(self.net)
        resolve_device(self.device)
        return self


def _checkpoint_bytes(cfg: TrainConfig, train_set) -> int:
    model = models.build(cfg.net, train_set.shape, train_set.num_classes)
    return sum(p.numel() * p.element_size() for p in model.state_dict().values())


def resolve_device(device: str) -> torch.device:
    """'auto' is CUDA when present (as the original did), else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device}: no CUDA device here; use --device cpu or auto")
    if device != "cpu" and not device.startswith("cuda"):
        raise UserError(f"--device {device!r}: choose auto, cpu or cuda[:k]")
    return torch.device(device)


def prepare_data(cfg: TrainConfig):
    """Train, test and validation sets with the label manipulations of the config applied
    (seeded); the validation set (None without --val-samples) is the last N of the run's
    training samples, held out of training, with their labels as they would have been trained."""
    train = data.load(cfg.dataset, cfg.data_root, "train")
    test = data.load(cfg.dataset, cfg.data_root, "test")
    rng = np.random.default_rng(cfg.seed)
    if cfg.binarize_labels is not None:
        c = cfg.binarize_labels
        if not 0 <= c < train.num_classes:
            raise UserError(f"--binarize-labels {c}: the dataset has classes 0..{train.num_classes - 1}")
        train, test = binarize(train, c, rng), binarize(test, c, rng)
    if cfg.subset < 1:
        keep = np.sort(rng.choice(len(train), max(1, int(round(cfg.subset * len(train)))), replace=False))
        train = train.subset(keep)
    if cfg.permute_labels > 0:
        train.labels = permute_labels(train.labels, cfg.permute_labels, rng)
    val = None
    if cfg.val_samples:
        n = len(train) - cfg.val_samples
        if n < 1:
            raise UserError(f"--val-samples {cfg.val_samples}: the run has {len(train)} training samples "
                            f"(--subset {cfg.subset}); hold out fewer")
        train, val = train.subset(np.arange(n)), train.subset(np.arange(n, len(train)))
    return train, test, val


def samples_digest(ds: data.ImageSet) -> str:
    """A fingerprint of a sample set (its images and labels, in order)."""
    import hashlib
    h = hashlib.sha1()
    h.update(ds.images.numpy().tobytes())
    h.update(ds.labels.numpy().astype("<i8").tobytes())
    return h.hexdigest()


def own_samples(config: dict, where="config.json") -> data.ImageSet:
    """The samples a run trained on (its subset, in its order, with its labels as trained:
    permuted or binarized), rebuilt from its config and checked against the fingerprint the
    training recorded."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in config.items() if k in names})
    want = config.get("train_digest")
    if not want:
        raise UserError(f"--sample-split own: {where} does not record the run's training samples "
                        f"(trained by an older dnntopo); use --sample-split train, or train again "
                        f"with --restart")
    train_set = prepare_data(cfg)[0]
    if samples_digest(train_set) != want:
        raise UserError(f"--sample-split own: the training samples rebuilt from {cfg.dataset} "
                        f"(data root {cfg.data_root or 'default'}) differ from those the run trained on "
                        f"({where}); point the run at the data files it was trained with")
    return train_set


def binarize(ds: data.ImageSet, c: int, rng) -> data.ImageSet:
    """Class `c` against the rest, balanced: all of `c` and as many others drawn at random."""
    labels = ds.labels.numpy()
    pos = np.flatnonzero(labels == c)
    neg = rng.choice(np.flatnonzero(labels != c), size=min(pos.size, int((labels != c).sum())), replace=False)
    keep = np.sort(np.concatenate([pos, neg]))
    out = ds.subset(keep)
    out.labels = (out.labels == c).long()
    out.num_classes = 2
    return out


def permute_labels(labels: torch.Tensor, fraction: float, rng) -> torch.Tensor:
    """Shuffle the labels of a random `fraction` of the samples among themselves."""
    labels = labels.clone()
    idx = rng.choice(labels.shape[0], int(round(fraction * labels.shape[0])), replace=False)
    labels[torch.from_numpy(idx)] = labels[torch.from_numpy(rng.permutation(idx))]
    return labels


def augment_batch(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random crop (padding 4) and horizontal flip, as the original training transforms."""
    n, _, h, w = x.shape
    padded = F.pad(x, (4, 4, 4, 4))
    dy, dx = torch.randint(0, 9, (2,), generator=gen).tolist()
    x = padded[:, :, dy:dy + h, dx:dx + w]
    flip = torch.rand(n, generator=gen) < 0.5
    x[flip] = x[flip].flip(-1)
    return x


@torch.no_grad()
def evaluate(model, ds: data.ImageSet, device, batch=1000) -> tuple[float, float]:
    """Mean loss and accuracy of `model` on `ds` (eval mode)."""
    model.eval()
    loss, correct = 0.0, 0
    for a in range(0, len(ds), batch):
        x, y = ds.batch(slice(a, a + batch), device)
        out = model(x)
        loss += F.nll_loss(out, y, reduction="sum").item()
        correct += (out.argmax(1) == y).sum().item()
    return loss / max(len(ds), 1), correct / max(len(ds), 1)


def save_atomic(obj, path):
    with storage.writing(path), atomic_path(path) as tmp:
        try:
            torch.save(obj, tmp)
        except RuntimeError as exc:   # torch's own writer reports a full disk this way
            raise OSError(28 if "write" in str(exc).lower() else 5,
                          (str(exc).splitlines() or ["write failed"])[0][:120]) from None


#: Fields that say how far, where and on what a run is trained, not what the run is.
NOT_IDENTITY = ("epochs", "save_epochs", "device", "run_dir", "data_root", "torch_threads")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_existing(run: storage.Run, cfg: TrainConfig, resume: bool) -> str:
    """What to do with a run folder that may hold a training: "new", "reuse" (the same training,
    complete: nothing to do) or "resume". A different training, or an incomplete one without
    --resume, is refused: an existing run is never overwritten or mixed."""
    if not run.config.exists():
        if run.stats.exists() or run.saved_epochs():
            raise UserError(f"{run.root} holds checkpoints or stats but no config.json; remove the "
                            f"folder or pass --restart")
        return "new"
    old = storage.read_config(run)
    new = dataclasses.asdict(cfg)
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    diff = [f"{_flag(k)} {old.get(k, defaults[k])!r} ({new[k]!r} asked)"
            for k in new if k not in NOT_IDENTITY and old.get(k, defaults[k]) != new[k]]
    if diff:
        raise UserError(f"{run.root} holds another training ({', '.join(diff)}); use another --trial "
                        f"or --run-dir, or pass --restart to remove its checkpoints, topology and stats "
                        f"and train anew")
    done = max((r["epoch"] for r in storage.read_stats(run)), default=-1)
    stopped = old.get("stopped_at")
    lost = [e for e in cfg.save_epochs if e <= done and not run.checkpoint(e).exists()]
    if lost:
        raise UserError(f"--save-epochs {' '.join(map(str, lost))}: {run.root} was trained past them "
                        f"without checkpointing them; pass --restart to train anew with them")
    if done >= cfg.epochs or (stopped is not None and done >= stopped):
        return "reuse"      # complete, or stopped by its rule (--stop-at-acc, --early-stop)
    if not resume:
        raise UserError(f"{run.root} holds this training up to epoch {done} of {cfg.epochs}; continue "
                        f"it with --resume, or pass --restart to train anew")
    return "resume"


def restart(run: storage.Run):
    """Remove a run's training and everything computed from it (checkpoints, stats, config,
    topology, plots) before it is trained anew."""
    import shutil
    for d in (run.checkpoints, run.topology, run.plots):
        shutil.rmtree(d, ignore_errors=True)
    for f in (run.stats, run.config, run.root / "logs" / "jobs.json"):
        f.unlink(missing_ok=True)


def train(cfg: TrainConfig, resume: bool = False, quiet: bool = False, on_epoch=None,
          restart_run: bool = False) -> storage.Run:
    """Train one run; return its folder. `on_epoch(epoch, model, row)` may return True to stop.

    An existing run is reused when it holds this training already, continued with `resume`, and
    removed first only with `restart_run`; anything else is refused (see `check_existing`)."""
    cfg.validate()
    run = storage.Run(storage.run_path(cfg.run_dir, cfg.net, cfg.dataset, cfg.trial))
    if restart_run:
        restart(run)
    todo = check_existing(run, cfg, resume)
    if todo == "reuse":
        _say(quiet, f"{run.root}: trained to epoch {cfg.epochs} with these parameters already; "
                    f"nothing to train (--restart trains anew)")
        return run
    if todo == "resume":
        old = storage.read_config(run)
        cfg = dataclasses.replace(cfg, save_epochs=sorted(set(cfg.save_epochs) | set(old.get("save_epochs", []))))
    device = resolve_device(cfg.device)
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(cfg.seed)
    train_set, test_set, val_set = prepare_data(cfg)
    n = cfg.eval_samples   # fixed evaluation sets: the first n samples of each
    eval_train = train_set.subset(np.arange(min(n, len(train_set)))) if n else train_set
    eval_test = test_set.subset(np.arange(min(n, len(test_set)))) if n else test_set
    storage.ensure_dirs(run)
    storage.check_space(run.root, _checkpoint_bytes(cfg, train_set) * (len(cfg.save_epochs) + 2),
                        "the checkpoints")
    model = models.build(cfg.net, train_set.shape, train_set.num_classes).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.5, patience=cfg.patience)
    start, rows = 0, []
    if resume and run.resume_state.exists():
        state = models.read_checkpoint(run.resume_state)
        models.load_state(model, run.resume_state, cfg.net, state)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start = int(state["epoch"]) + 1
        rows = [r for r in storage.read_stats(run) if r["epoch"] < start]
        _say(quiet, f"resuming {run.root} after epoch {start - 1}")
    elif resume:
        _say(quiet, f"nothing to resume in {run.root}; starting from epoch 0")
    config = dataclasses.asdict(cfg)
    config.update(num_classes=train_set.num_classes, input_shape=list(train_set.shape),
                  n_train=len(train_set), n_test=len(test_set), train_digest=samples_digest(train_set))
    storage.write_config(run, config)

    def finish_epoch(epoch, tr):
        te = evaluate(model, eval_test, device)
        row = dict(epoch=epoch, loss_train=tr[0], acc_train=tr[1], loss_test=te[0], acc_test=te[1])
        if val_set is not None:
            row["loss_val"], row["acc_val"] = evaluate(model, val_set, device)
        rows.append(row)
        storage.write_stats(run, rows)
        if epoch in cfg.save_epochs:
            save_atomic(model.state_dict(), run.checkpoint(epoch))
        save_atomic({"epoch": epoch, "model": model.state_dict(), "optimizer": opt.state_dict(),
                     "scheduler": sched.state_dict()}, run.resume_state)
        _say(quiet, f"epoch {epoch}: loss {tr[0]:.4f} acc {tr[1]:.4f} | test loss {te[0]:.4f} acc {te[1]:.4f}")
        stop = on_epoch(epoch, model, row) if on_epoch else False
        if cfg.stop_at_acc and tr[1] >= cfg.stop_at_acc and epoch > 0:
            _say(quiet, f"training accuracy {tr[1]:.4f} reached --stop-at-acc {cfg.stop_at_acc}: "
                        f"training ends after epoch {epoch}")
            stop = True
        if stop:   # recorded: the run is complete at this epoch (a rerun reuses it)
            config["stopped_at"] = epoch
            storage.write_config(run, config)
        return stop

    if start == 0:
        if finish_epoch(0, evaluate(model, eval_train, device)):
            return run
        start = 1
    gen = torch.Generator().manual_seed(cfg.seed)
    for epoch in range(start, cfg.epochs + 1):
        gen.manual_seed(cfg.seed * 100003 + epoch)
        order = torch.randperm(len(train_set), generator=gen)
        model.train()
        bar = tqdm(range(0, len(order), cfg.batch_size), desc=f"epoch {epoch}/{cfg.epochs}",
                   unit="batch", leave=False, disable=True if quiet else None, file=sys.stderr)
        for a in bar:
            x, y = train_set.batch(order[a:a + cfg.batch_size], device)
            if cfg.augment:
                x = augment_batch(x, gen)
            opt.zero_grad(set_to_none=True)
            loss = F.nll_loss(model(x), y)
            loss.backward()
            opt.step()
        tr = evaluate(model, eval_train, device)
        sched.step(tr[0])
        if finish_epoch(epoch, tr):
            break
    return run


def _say(quiet, msg):
    if not quiet:
        print(msg, file=sys.stderr, flush=True)
