"""The real-dataset loaders and the data CLI, on tiny archives written in the
datasets' own on-disk formats (no network, no downloads)."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from course_utils.data import __main__ as cli
from course_utils.data import bundled
from course_utils.data import torchvision_sets as tvs

REPO = Path(__file__).resolve().parents[1]
CIFAR_TRAIN_PER_BATCH, CIFAR_TEST = 3, 4
STL_TRAIN, STL_TEST, STL_UNLABELED = 4, 2, 3


# ----------------------------------------------------------------------------- CIFAR-10

def _cifar_image(k: int) -> np.ndarray:
    """A distinct, asymmetric uint8 [3, 32, 32] image for index k."""
    rng = np.random.default_rng(k)
    return rng.integers(0, 256, size=(3, 32, 32), dtype=np.uint8)


def _write_cifar(root: Path) -> dict:
    """Write ``root/cifar10/cifar-10-batches-py/`` as the real archive lays it
    out (pickles of dicts; Python 2 wrote their keys as str, which torchvision
    reads back with ``encoding="latin1"``). Returns the images and labels written."""
    folder = root / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    written = {"train": ([], []), "test": ([], [])}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    k = 0
    for name in names:
        n = CIFAR_TEST if name == "test_batch" else CIFAR_TRAIN_PER_BATCH
        images = np.stack([_cifar_image(k + i) for i in range(n)])
        labels = [(k + i) % 10 for i in range(n)]
        k += n
        # each row: the 1024 red values (row-major), then the green, then the blue
        data = images.reshape(n, 3072)
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name, "labels": labels, "data": data,
                         "filenames": [f"img{i}.png" for i in range(n)]}, f)
        split = "test" if name == "test_batch" else "train"
        written[split][0].append(images)
        written[split][1].extend(labels)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": ["airplane", "automobile", "bird", "cat", "deer",
                                     "dog", "frog", "horse", "ship", "truck"],
                     "num_cases_per_batch": CIFAR_TRAIN_PER_BATCH, "num_vis": 3072}, f)
    return {s: (np.concatenate(x), np.array(y)) for s, (x, y) in written.items()}


def test_cifar10_train_and_test_match_the_files(tmp_path):
    written = _write_cifar(tmp_path)
    for split, n in [("train", 5 * CIFAR_TRAIN_PER_BATCH), ("test", CIFAR_TEST)]:
        images, labels = tvs.load_cifar10(split, root=tmp_path)
        assert images.shape == (n, 3, 32, 32) and images.dtype == torch.uint8
        assert labels.shape == (n,) and labels.dtype == torch.int64
        assert images.is_contiguous()
        assert torch.equal(images, torch.from_numpy(written[split][0]))
        assert torch.equal(labels, torch.from_numpy(written[split][1]).long())


def test_cifar10_pixel_layout(tmp_path):
    """One known image, pixel for pixel: channel planes in R, G, B order, rows then columns."""
    _write_cifar(tmp_path)
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    with open(folder / "data_batch_2", "rb") as f:  # train images 3..5 live in batch 2
        raw = pickle.load(f, encoding="latin1")["data"][1]  # train image 4
    images, labels = tvs.load_cifar10("train", root=tmp_path)
    img = images[CIFAR_TRAIN_PER_BATCH + 1]
    assert labels[CIFAR_TRAIN_PER_BATCH + 1] == 4
    for c, h, w in [(0, 0, 0), (0, 0, 1), (0, 1, 0), (1, 0, 0), (2, 31, 30), (1, 17, 5)]:
        assert img[c, h, w] == raw[c * 1024 + h * 32 + w]
    assert torch.equal(img, torch.from_numpy(_cifar_image(CIFAR_TRAIN_PER_BATCH + 1)))


def test_cifar10_missing_files_say_how_to_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m course_utils.data download cifar10"):
        tvs.load_cifar10("train", root=tmp_path)
    _write_cifar(tmp_path)
    (tmp_path / "cifar10" / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        tvs.load_cifar10("test", root=tmp_path)


def test_cifar10_bad_split(tmp_path):
    with pytest.raises(ValueError, match="'train', 'test'"):
        tvs.load_cifar10("val", root=tmp_path)


def test_default_root_is_data_root(tmp_path, monkeypatch):
    _write_cifar(tmp_path)
    monkeypatch.setenv("SSL_KIT_DATA", str(tmp_path))
    images, _ = tvs.load_cifar10("test")
    assert images.shape == (CIFAR_TEST, 3, 32, 32)


# ----------------------------------------------------------------------------- STL-10

def _stl_image(k: int) -> np.ndarray:
    """uint8 [3, 96, 96]: left half (columns < 48) bright, right half dark, one
    value per channel, plus a marker pixel at row 0, column 95."""
    img = np.empty((3, 96, 96), dtype=np.uint8)
    for c in range(3):
        img[c, :, :48] = 200 + c * 10 + k
        img[c, :, 48:] = 10 + c * 20 + k
    img[:, 0, 95] = 255
    return img


def _write_stl(root: Path) -> dict:
    """Write ``root/stl10/stl10_binary/`` as the real archive lays it out: images
    uint8 [n, 3, 96, 96] stored column-major within each channel, labels one
    byte each in 1..10."""
    folder = root / "stl10" / "stl10_binary"
    folder.mkdir(parents=True)
    written, k = {}, 0
    for split, n in [("train", STL_TRAIN), ("test", STL_TEST), ("unlabeled", STL_UNLABELED)]:
        images = np.stack([_stl_image(k + i) for i in range(n)])
        k += n
        images.transpose(0, 1, 3, 2).tofile(folder / f"{split}_X.bin")  # column-major
        labels = np.arange(n) % 10 if split != "unlabeled" else np.full(n, -1)
        if split != "unlabeled":
            (labels + 1).astype(np.uint8).tofile(folder / f"{split}_y.bin")
        written[split] = (images, labels)
    (folder / "class_names.txt").write_text("\n".join(
        ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]) + "\n")
    return written


def test_stl10_splits_match_the_files(tmp_path):
    written = _write_stl(tmp_path)
    for split, n in [("train", STL_TRAIN), ("test", STL_TEST), ("unlabeled", STL_UNLABELED)]:
        images, labels = tvs.load_stl10(split, root=tmp_path)
        assert images.shape == (n, 3, 96, 96) and images.dtype == torch.uint8
        assert labels.shape == (n,) and labels.dtype == torch.int64
        assert torch.equal(images, torch.from_numpy(written[split][0]))
        assert torch.equal(labels, torch.from_numpy(written[split][1]).long())
    assert images[0, 1, 0, 95] == 255 and images[0, 1, 95, 0] != 255  # not transposed
    assert (labels == -1).all()


def test_stl10_resized_to_32(tmp_path):
    _write_stl(tmp_path)
    images, labels = tvs.load_stl10("train", root=tmp_path, size=32)
    assert images.shape == (STL_TRAIN, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.tolist() == [0, 1, 2, 3]
    for k in range(STL_TRAIN):
        for c in range(3):  # away from the edge the halves keep their values exactly
            assert (images[k, c, 4:, :14] == 200 + c * 10 + k).all()
            assert (images[k, c, 4:, 18:] == 10 + c * 20 + k).all()


def test_stl10_missing_files_and_bad_split(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m course_utils.data download stl10"):
        tvs.load_stl10("train", root=tmp_path)
    with pytest.raises(ValueError, match="'unlabeled'"):
        tvs.load_stl10("train+unlabeled", root=tmp_path)


# ----------------------------------------------------------------------------- ImageFolder

def test_load_image_folder(tmp_path):
    (tmp_path / "dogs").mkdir()
    (tmp_path / "cats").mkdir()
    (tmp_path / ".ipynb_checkpoints").mkdir()
    Image.new("RGB", (40, 20), (255, 0, 0)).save(tmp_path / "cats" / "a.png")
    Image.new("L", (16, 16), 77).save(tmp_path / "cats" / "b.png")  # grayscale
    Image.new("RGB", (64, 96), (0, 128, 255)).save(tmp_path / "dogs" / "c.png")
    Image.new("RGB", (8, 8), (1, 2, 3)).save(tmp_path / ".ipynb_checkpoints" / "x.png")
    (tmp_path / "dogs" / "notes.txt").write_text("not an image")

    images, labels, class_names = tvs.load_image_folder(tmp_path, size=32)
    assert class_names == ["cats", "dogs"]
    assert images.shape == (3, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64 and labels.tolist() == [0, 0, 1]
    expected = [(255, 0, 0), (77, 77, 77), (0, 128, 255)]  # plain colours survive the resize
    for img, rgb in zip(images, expected):
        assert torch.equal(img, torch.tensor(rgb, dtype=torch.uint8).view(3, 1, 1).expand(3, 32, 32))


def test_load_image_folder_without_images(tmp_path):
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(ValueError, match="no images"):
        tvs.load_image_folder(tmp_path)
    with pytest.raises(FileNotFoundError):
        tvs.load_image_folder(tmp_path / "nowhere")


# ----------------------------------------------------------------------------- download and CLI

class _FakeDataset:
    """Stands in for a torchvision dataset class: records the call, fetches nothing."""
    base_folder = "fake-folder"
    calls: list = []

    def __init__(self, root, download=False):
        type(self).calls.append((root, download))


def test_download_calls_torchvision_into_root_name(tmp_path, monkeypatch, capsys):
    _FakeDataset.calls = []
    monkeypatch.setitem(tvs._TORCHVISION_CLASSES, "cifar10", _FakeDataset)
    folder = tvs.download("cifar10", root=tmp_path)
    assert folder == tmp_path / "cifar10" and folder.is_dir()
    assert _FakeDataset.calls == [(str(tmp_path / "cifar10"), True)]
    assert str(tmp_path / "cifar10") in capsys.readouterr().out


def test_download_unknown_name():
    with pytest.raises(ValueError, match="'cifar10', 'stl10'"):
        tvs.download("imagenet")
    assert cli.DATASETS == tvs.DATASETS  # the CLI's choices, kept free of the torch import


def test_cli_make_calls_the_bundled_loaders(tmp_path, monkeypatch, capsys):
    calls = []

    def fake_images(split, root=None):
        calls.append(("images", split, root))
        return torch.zeros(5, 3, 32, 32, dtype=torch.uint8), torch.zeros(5, dtype=torch.int64)

    def fake_videos(split, root=None):
        calls.append(("videos", split, root))
        return torch.zeros(2, 8, 3, 32, 32, dtype=torch.uint8), torch.zeros(2, 2, dtype=torch.int64)

    monkeypatch.setattr(bundled, "load_synthetic", fake_images)
    monkeypatch.setattr(bundled, "load_synthetic_videos", fake_videos)
    cli.main(["make", "--root", str(tmp_path)])
    assert calls == [("images", "train", str(tmp_path)), ("images", "test", str(tmp_path)),
                     ("videos", "train", str(tmp_path)), ("videos", "test", str(tmp_path))]
    out = capsys.readouterr().out
    assert "(5, 3, 32, 32)" in out and "(2, 8, 3, 32, 32)" in out and str(tmp_path / "cache") in out


def _run_cli(*args):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "course_utils.data", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


def test_cli_help():
    result = _run_cli("--help")
    assert result.returncode == 0, result.stderr
    assert "download" in result.stdout and "make" in result.stdout


def test_cli_download_unknown_name_fails_clearly():
    result = _run_cli("download", "imagenet")
    assert result.returncode != 0
    assert "invalid choice: 'imagenet'" in result.stderr and "cifar10" in result.stderr
