"""Datasets read with numpy from the standard files under --data-root: no torchvision, no downloads.

mnist / fashion_mnist (IDX, gzipped or not), cifar10 (binary batches), svhn (.mat), imagenet
(Tiny-ImageNet folders), and the variants of the original code: `<colour set>_gray28`
(grayscale 28x28) and `<grey set>_color32` (colour 32x32). Images stay uint8 in memory and
are normalized batch by batch.
"""
from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dnntopo.errors import UserError

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

SOURCES = {
    "mnist": "the MNIST IDX files (yann.lecun.com/exdb/mnist, or a mirror)",
    "fashion_mnist": "Debian's package dataset-fashion-mnist, or the IDX files of "
                     "github.com/zalandoresearch/fashion-mnist",
    "cifar10": "the CIFAR-10 binary version (cifar-10-binary.tar.gz from www.cs.toronto.edu/~kriz)",
    "svhn": "the SVHN cropped digits, format 2 (ufldl.stanford.edu/housenumbers)",
    "imagenet": "Tiny-ImageNet (tiny-imagenet-200.zip from cs231n.stanford.edu), unpacked",
}

DEFAULT_ROOTS = {"fashion_mnist": "/usr/share/datasets/fashion-mnist"}

# Per-channel mean and std of the training images (0..1 scale).
STATS = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
    "imagenet": ((0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821)),
}

BASES = tuple(STATS)
GREY = ("mnist", "fashion_mnist")
DATASETS = BASES + tuple(f"{b}_color32" for b in GREY) + tuple(
    f"{b}_gray28" for b in BASES if b not in GREY)


@dataclass
class ImageSet:
    """Images (uint8, N x C x H x W), integer labels, and the normalization to apply."""
    images: torch.Tensor
    labels: torch.Tensor
    mean: tuple
    std: tuple
    num_classes: int
    name: str = ""

    def __len__(self):
        return int(self.labels.shape[0])

    @property
    def shape(self):
        return tuple(self.images.shape[1:])

    def batch(self, idx, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """Normalized float32 images and labels at `idx` (an index tensor, slice or array)."""
        x = self.images[idx].to(device=device, dtype=torch.float32).div_(255.0)
        mean = torch.tensor(self.mean, device=device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=device).view(1, -1, 1, 1)
        return (x - mean) / std, self.labels[idx].to(device)

    def subset(self, idx) -> "ImageSet":
        idx = torch.as_tensor(np.asarray(idx), dtype=torch.long)
        return ImageSet(self.images[idx], self.labels[idx], self.mean, self.std,
                        self.num_classes, self.name)


def default_root(dataset: str) -> str:
    """Where a dataset's files are looked for when --data-root is not given."""
    base = split_name(dataset)[0]
    return DEFAULT_ROOTS.get(base, os.path.join("data", base))


def split_name(dataset: str) -> tuple[str, str | None]:
    """('cifar10', 'gray28') for 'cifar10_gray28'; ('mnist', None) for 'mnist'."""
    if dataset not in DATASETS:
        raise UserError(f"--dataset {dataset!r} is not known; choose one of {', '.join(DATASETS)}")
    for suffix in ("_gray28", "_color32"):
        if dataset.endswith(suffix):
            return dataset[: -len(suffix)], suffix[1:]
    return dataset, None


def load(dataset: str, root: str | os.PathLike | None, split: str) -> ImageSet:
    """The `split` ('train' or 'test') of `dataset` read from `root`, variant applied."""
    base, variant = split_name(dataset)
    root = Path(root if root else default_root(dataset))
    reader = {"mnist": read_idx_set, "fashion_mnist": read_idx_set, "cifar10": read_cifar10,
              "svhn": read_svhn, "imagenet": read_tiny_imagenet}[base]
    images, labels = reader(root, split, base)
    mean, std = STATS[base]
    if variant == "gray28":
        images = resize(to_gray(images), 28)
        mean, std = (float(np.mean(mean)),), (float(np.mean(std)),)
    elif variant == "color32":
        images = resize(images, 32).expand(-1, 3, -1, -1).contiguous()
        mean, std = mean * 3, std * 3
    elif base == "imagenet":
        images = resize(images, 32)
    labels = torch.from_numpy(labels.astype(np.int64))
    return ImageSet(images, labels, tuple(mean), tuple(std), int(labels.max()) + 1, dataset)


def _missing(path: Path, base: str) -> UserError:
    return UserError(f"missing data file {path}: put {SOURCES[base]} in {path.parent} "
                     f"(the dataset's data root)")


def _open_maybe_gz(path: Path, base: str):
    """Open `path` or `path.gz`, whichever exists, for binary reading."""
    if path.is_file():
        return open(path, "rb"), path
    gz = path.with_name(path.name + ".gz")
    if gz.is_file():
        return gzip.open(gz, "rb"), gz
    for p in (path, gz):
        if p.exists():
            raise UserError(f"{p} is not a file (a folder?); put the dataset's file there")
    raise _missing(gz, base)


def read_idx(path: Path, base: str = "mnist") -> np.ndarray:
    """One IDX file (optionally .gz) as a numpy array; truncated or malformed files are refused."""
    fh, real = _open_maybe_gz(Path(path), base)
    try:
        with fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise UserError(f"cannot read {real}: {exc}; the file is damaged, fetch it again "
                        f"from {SOURCES[base]}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise UserError(f"{real} is not an unsigned-byte IDX file (bad magic number); "
                        f"fetch it again from {SOURCES[base]}")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise UserError(f"{real} is truncated (header cut short); fetch it again from "
                        f"{SOURCES[base]}")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    need = int(np.prod(dims, dtype=np.int64))
    have = len(data) - 4 - 4 * ndim
    if have < need:
        raise UserError(f"{real} is truncated ({have} of {need} data bytes); fetch it again "
                        f"from {SOURCES[base]}")
    return np.frombuffer(data, dtype=np.uint8, count=need, offset=4 + 4 * ndim).reshape(dims)


def read_idx_set(root: Path, split: str, base: str):
    img_name, lab_name = IDX_FILES[split]
    images = read_idx(root / img_name, base)
    labels = read_idx(root / lab_name, base)
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise UserError(f"{root / img_name} and {root / lab_name} do not match "
                        f"({images.shape} images, {labels.shape} labels)")
    return torch.from_numpy(images.copy()).unsqueeze(1), labels


def read_cifar10(root: Path, split: str, base: str = "cifar10"):
    """The CIFAR-10 binary batches (in `root` or `root/cifar-10-batches-bin`)."""
    if (root / "cifar-10-batches-bin").is_dir():
        root = root / "cifar-10-batches-bin"
    names = [f"data_batch_{k}.bin" for k in range(1, 6)] if split == "train" else ["test_batch.bin"]
    recs = []
    for name in names:
        path = root / name
        if not path.is_file():
            raise _missing(path, base) if not path.exists() else UserError(f"{path} is not a file")
        raw = np.fromfile(path, dtype=np.uint8)
        if raw.size == 0 or raw.size % 3073:
            raise UserError(f"{path} is truncated ({raw.size} bytes is not a whole number of "
                            f"3073-byte records); fetch it again from {SOURCES[base]}")
        recs.append(raw.reshape(-1, 3073))
    rec = np.concatenate(recs)
    images = rec[:, 1:].reshape(-1, 3, 32, 32)
    return torch.from_numpy(np.ascontiguousarray(images)), rec[:, 0].copy()


def read_svhn(root: Path, split: str, base: str = "svhn"):
    """SVHN `train_32x32.mat` / `test_32x32.mat` (label 10 means digit 0)."""
    from scipy.io import loadmat
    path = root / f"{split}_32x32.mat"
    if not path.is_file():
        raise _missing(path, base) if not path.exists() else UserError(f"{path} is not a file")
    try:
        mat = loadmat(path)
        x, y = mat["X"], mat["y"]
    except Exception as exc:  # scipy raises several types for damaged files
        raise UserError(f"cannot read {path} ({exc}); fetch it again from {SOURCES[base]}") from None
    images = np.ascontiguousarray(np.transpose(x, (3, 2, 0, 1)))
    labels = y.reshape(-1).astype(np.int64) % 10
    return torch.from_numpy(images), labels


def read_tiny_imagenet(root: Path, split: str, base: str = "imagenet"):
    """Tiny-ImageNet: `wnids.txt`, `train/<wnid>/images/*.JPEG`, `val/images` + annotations."""
    try:
        from PIL import Image
    except ImportError:
        raise UserError("reading imagenet needs Pillow: pip install 'dnntopo[imagenet]'") from None
    if (root / "tiny-imagenet-200").is_dir():
        root = root / "tiny-imagenet-200"
    wnids_path = root / "wnids.txt"
    if not wnids_path.exists():
        raise _missing(wnids_path, base)
    wnids = wnids_path.read_text().split()
    index = {w: k for k, w in enumerate(wnids)}
    files, labels = [], []
    if split == "train":
        for w in wnids:
            folder = root / "train" / w / "images"
            if not folder.is_dir():
                raise _missing(folder, base)
            for f in sorted(folder.iterdir()):
                files.append(f), labels.append(index[w])
    else:
        ann = root / "val" / "val_annotations.txt"
        if not ann.exists():
            raise _missing(ann, base)
        for line in ann.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 2:
                files.append(root / "val" / "images" / parts[0]), labels.append(index[parts[1]])
    images = np.empty((len(files), 3, 64, 64), dtype=np.uint8)
    for k, f in enumerate(files):
        try:
            with Image.open(f) as im:
                arr = np.asarray(im.convert("RGB").resize((64, 64)))
        except (OSError, FileNotFoundError):
            raise UserError(f"cannot read image {f}; fetch {SOURCES[base]} again") from None
        images[k] = arr.transpose(2, 0, 1)
    return torch.from_numpy(images), np.asarray(labels, dtype=np.int64)


def to_gray(images: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma of uint8 RGB images, as PIL's convert('L') does."""
    w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (images.float() * w).sum(1, keepdim=True).round_().clamp_(0, 255).to(torch.uint8)


def resize(images: torch.Tensor, size: int, chunk: int = 4096) -> torch.Tensor:
    """Antialiased bilinear resize of uint8 images to size x size, in chunks to bound memory."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = torch.empty(images.shape[:2] + (size, size), dtype=torch.uint8)
    for a in range(0, images.shape[0], chunk):
        x = images[a:a + chunk].float()
        y = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear",
                                            antialias=True, align_corners=False)
        out[a:a + chunk] = y.round_().clamp_(0, 255).to(torch.uint8)
    return out
