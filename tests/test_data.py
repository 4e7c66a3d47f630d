"""Dataset readers on small files written here in the real formats, and on the real Fashion-MNIST."""
import gzip
import struct

import numpy as np
import pytest
import torch

from dnntopo import data
from dnntopo.errors import UserError


def write_idx(path, arr, gz=False):
    """An unsigned-byte IDX file built from the format description (magic 0x00000803 etc.)."""
    arr = np.asarray(arr, dtype=np.uint8)
    head = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    raw = head + arr.tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_idx_set_roundtrip(tmp_path, gz):
    rng = np.random.default_rng(0)
    written = {}
    for split, n in (("train", 12), ("test", 5)):
        written[split] = (rng.integers(0, 256, (n, 28, 28)), rng.integers(0, 10, n))
        write_idx(tmp_path / data.IDX_FILES[split][0], written[split][0], gz)
        write_idx(tmp_path / data.IDX_FILES[split][1], written[split][1], gz)
    ds = data.load("mnist", tmp_path, "train")
    assert ds.images.shape == (12, 1, 28, 28) and ds.images.dtype == torch.uint8
    assert np.array_equal(ds.images[:, 0].numpy(), written["train"][0])
    assert ds.labels.tolist() == written["train"][1].tolist()
    x, y = ds.batch(slice(0, 3))
    expect = (torch.from_numpy(written["train"][0][:3, None]).float() / 255 - 0.1307) / 0.3081
    assert torch.allclose(x, expect, atol=1e-6)
    assert data.load("mnist", tmp_path, "test").images.shape == (5, 1, 28, 28)


def test_idx_truncated_and_missing(tmp_path):
    p = write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 28, 28)))
    p.write_bytes(p.read_bytes()[:-10])
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4))
    with pytest.raises(UserError, match="train-images-idx3-ubyte is truncated"):
        data.load("mnist", tmp_path, "train")
    with pytest.raises(UserError, match=r"missing data file .*t10k-images-idx3-ubyte\.gz"):
        data.load("fashion_mnist", tmp_path, "test")
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x0d\x03junk")
    with pytest.raises(UserError, match="bad magic number"):
        data.load("mnist", tmp_path, "test")


def test_cifar10_binary_and_gray28(tmp_path):
    rng = np.random.default_rng(1)
    recs = {}
    for name in [f"data_batch_{k}.bin" for k in range(1, 6)] + ["test_batch.bin"]:
        labels = rng.integers(0, 10, 3).astype(np.uint8)
        pix = rng.integers(0, 256, (3, 3072)).astype(np.uint8)
        (tmp_path / name).write_bytes(np.concatenate([labels[:, None], pix], 1).tobytes())
        recs[name] = (labels, pix)
    tr = data.load("cifar10", tmp_path, "train")
    assert tr.images.shape == (15, 3, 32, 32) and len(tr) == 15
    lab, pix = recs["data_batch_2.bin"]
    assert tr.labels[3:6].tolist() == lab.tolist()
    assert np.array_equal(tr.images[3].numpy().reshape(-1), pix[0])  # channel-major R, G, B planes
    g = data.load("cifar10_gray28", tmp_path, "test")
    assert g.images.shape == (3, 1, 28, 28) and len(g.mean) == 1
    # a constant colour stays the same luma after resizing
    (tmp_path / "test_batch.bin").write_bytes(np.concatenate(
        [[7], np.repeat([200, 100, 50], 1024)]).astype(np.uint8).tobytes())
    g = data.load("cifar10_gray28", tmp_path, "test")
    assert int(g.images.min()) == int(g.images.max()) == round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)
    (tmp_path / "test_batch.bin").write_bytes(b"\x01" * 100)
    with pytest.raises(UserError, match="test_batch.bin is truncated"):
        data.load("cifar10", tmp_path, "test")


def test_svhn_mat(tmp_path):
    from scipy.io import savemat
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (32, 32, 3, 4)).astype(np.uint8)
    y = np.array([[10], [1], [2], [10]], dtype=np.uint8)
    savemat(tmp_path / "train_32x32.mat", {"X": x, "y": y})
    ds = data.load("svhn", tmp_path, "train")
    assert ds.images.shape == (4, 3, 32, 32)
    assert ds.labels.tolist() == [0, 1, 2, 0]
    assert np.array_equal(ds.images[1, 2].numpy(), x[:, :, 2, 1])
    with pytest.raises(UserError, match="test_32x32.mat"):
        data.load("svhn", tmp_path, "test")


def test_tiny_imagenet_folder(tmp_path):
    from PIL import Image
    root = tmp_path / "tiny-imagenet-200"
    wnids = ["n01", "n02"]
    (root / "val" / "images").mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    ann = []
    for k, w in enumerate(wnids):
        d = root / "train" / w / "images"
        d.mkdir(parents=True)
        for m in range(2):
            Image.new("RGB", (64, 64), (40 * k, 10, 200)).save(d / f"{w}_{m}.JPEG")
        Image.new("RGB", (64, 64), (0, 0, 0)).save(root / "val" / "images" / f"val_{k}.JPEG")
        ann.append(f"val_{k}.JPEG\t{w}\t0\t0\t64\t64")
    (root / "val" / "val_annotations.txt").write_text("\n".join(ann) + "\n")
    tr = data.load("imagenet", tmp_path, "train")
    assert tr.images.shape == (4, 3, 32, 32) and tr.labels.tolist() == [0, 0, 1, 1]
    te = data.load("imagenet", tmp_path, "test")
    assert te.labels.tolist() == [0, 1]


def test_real_fashion_mnist(fmnist_root):
    tr = data.load("fashion_mnist", fmnist_root, "train")
    te = data.load("fashion_mnist", None, "test") if str(fmnist_root) == data.DEFAULT_ROOTS["fashion_mnist"] \
        else data.load("fashion_mnist", fmnist_root, "test")
    assert tr.images.shape == (60000, 1, 28, 28) and te.images.shape == (10000, 1, 28, 28)
    assert np.bincount(tr.labels.numpy()).tolist() == [6000] * 10
    assert np.bincount(te.labels.numpy()).tolist() == [1000] * 10
    assert tr.num_classes == 10
    # the mean of the training pixels is the normalization constant used
    assert abs(tr.images.float().mean().item() / 255 - data.STATS["fashion_mnist"][0][0]) < 1e-3
    c32 = data.load("fashion_mnist_color32", fmnist_root, "test")
    assert c32.images.shape == (10000, 3, 32, 32)
    assert torch.equal(c32.images[:, 0], c32.images[:, 2])


def test_unknown_dataset():
    with pytest.raises(UserError, match="--dataset 'nope' is not known"):
        data.load("nope", None, "train")
