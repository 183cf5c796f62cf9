"""Real datasets (CIFAR-10, STL-10, any ImageFolder tree) as uint8 tensors.

The loaders read files already on disk and never touch the network; fetch the
files once with ``python -m course_utils.data download cifar10`` (or
``stl10``), which calls `download`. Every dataset lives in
``<root>/<name>/`` where ``root`` defaults to `data_root()`, laid out as
torchvision expects (``cifar10/cifar-10-batches-py/``, ``stl10/stl10_binary/``).

Checksums are verified by torchvision when downloading; loading only checks
that the files are there, so that it stays fast (and works on small test
archives in the same format).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.transforms import v2

from .bundled import data_root

_TORCHVISION_CLASSES = {"cifar10": torchvision.datasets.CIFAR10, "stl10": torchvision.datasets.STL10}
DATASETS = tuple(_TORCHVISION_CLASSES)
CIFAR10_SPLITS = ("train", "test")
STL10_SPLITS = ("train", "test", "unlabeled")


def _no_md5(files: list) -> list:
    return [[name, None] for name, _ in files]


class _CIFAR10(torchvision.datasets.CIFAR10):
    """torchvision's CIFAR10 that checks its files exist but not their md5 sums."""
    train_list = _no_md5(torchvision.datasets.CIFAR10.train_list)
    test_list = _no_md5(torchvision.datasets.CIFAR10.test_list)
    meta = {**torchvision.datasets.CIFAR10.meta, "md5": None}


class _STL10(torchvision.datasets.STL10):
    """torchvision's STL10 that checks its files exist but not their md5 sums."""
    train_list = _no_md5(torchvision.datasets.STL10.train_list)
    test_list = _no_md5(torchvision.datasets.STL10.test_list)


def _check_choice(arg: str, value: str, valid: tuple) -> None:
    if value not in valid:
        raise ValueError(f"{arg} must be one of {', '.join(map(repr, valid))}, got {value!r}")


def _dataset_root(name: str, root: str | Path | None) -> Path:
    return Path(root or data_root()) / name


def _require_files(folder: Path, files: list[str], name: str) -> None:
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{name} is not in {folder} (missing {', '.join(missing)}). "
            f"Download it once with:\n    python -m course_utils.data download {name}")


def download(name: str, root: str | Path | None = None) -> Path:
    """Download ``name`` (``"cifar10"`` or ``"stl10"``) into ``<root>/<name>/``.

    Files already there with the right checksums are not fetched again.
    Returns the dataset's folder.
    """
    _check_choice("name", name, DATASETS)
    folder = _dataset_root(name, root)
    folder.mkdir(parents=True, exist_ok=True)
    print(f"Downloading {name} into {folder} ...", flush=True)
    _TORCHVISION_CLASSES[name](str(folder), download=True)
    print(f"{name} is ready in {folder / _TORCHVISION_CLASSES[name].base_folder}")
    return folder


def load_cifar10(split: str = "train", root: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 from ``<root>/cifar10/cifar-10-batches-py/`` (never downloads).

    Args:
        split: ``"train"`` (50,000 images) or ``"test"`` (10,000).
        root: the data folder (default `data_root()`).

    Returns:
        ``(images, labels)``: uint8 ``[N, 3, 32, 32]`` and int64 ``[N]`` in 0..9.
    """
    _check_choice("split", split, CIFAR10_SPLITS)
    folder = _dataset_root("cifar10", root)
    files = [f for f, _ in _CIFAR10.train_list + _CIFAR10.test_list] + [_CIFAR10.meta["filename"]]
    _require_files(folder / _CIFAR10.base_folder, files, "cifar10")
    ds = _CIFAR10(str(folder), train=split == "train", download=False)
    images = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))  # NHWC -> NCHW
    return images, torch.tensor(ds.targets, dtype=torch.int64)


def _resize_uint8(images: torch.Tensor, size: int, chunk: int = 1024) -> torch.Tensor:
    """Antialiased bilinear resize of uint8 ``[N, C, H, W]`` to ``[N, C, size, size]``, in chunks."""
    out = torch.empty((len(images), images.shape[1], size, size), dtype=torch.uint8)
    for i in range(0, len(images), chunk):
        x = images[i:i + chunk].float()
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[i:i + chunk] = x.round_().clamp_(0, 255).to(torch.uint8)
    return out


def load_stl10(split: str = "train", root: str | Path | None = None,
               size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """STL-10 from ``<root>/stl10/stl10_binary/`` (never downloads).

    Args:
        split: ``"train"`` (5,000 labelled), ``"test"`` (8,000 labelled) or
            ``"unlabeled"`` (100,000 images, labels all -1).
        root: the data folder (default `data_root()`).
        size: resize to ``size x size`` (antialiased); ``None`` keeps 96 x 96.

    Returns:
        ``(images, labels)``: uint8 ``[N, 3, S, S]`` (``S = size or 96``) and
        int64 ``[N]`` in 0..9, or -1 for the unlabeled split.
    """
    _check_choice("split", split, STL10_SPLITS)
    folder = _dataset_root("stl10", root)
    _require_files(folder / _STL10.base_folder, [f for f, _ in _STL10.train_list + _STL10.test_list], "stl10")
    ds = _STL10(str(folder), split=split, download=False)
    images = torch.from_numpy(ds.data)  # [N, 3, 96, 96], a transposed view of the file
    images = _resize_uint8(images, size) if size is not None else images.contiguous()
    return images, torch.from_numpy(ds.labels.astype(np.int64))


def load_image_folder(path: str | Path, size: int = 32) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Every image under ``path/<class_name>/`` (an ImageFolder tree).

    Images are converted to RGB, their shorter side resized to ``size``
    (antialiased) and centre-cropped to ``size x size``. Classes are the
    subfolders in sorted order.

    Returns:
        ``(images, labels, class_names)``: uint8 ``[N, 3, size, size]``, int64
        ``[N]`` (indices into ``class_names``) and the list of class names.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"no folder {root}")
    class_names = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    files = [(f, label) for label, name in enumerate(class_names)
             for f in sorted((root / name).rglob("*"))
             if f.suffix.lower() in IMG_EXTENSIONS and not any(p.startswith(".") for p in f.relative_to(root).parts)]
    if not files:
        raise ValueError(f"no images in {root}: expected class subfolders holding image files "
                         f"({', '.join(IMG_EXTENSIONS)})")
    resize = v2.Compose([v2.Resize(size, antialias=True), v2.CenterCrop(size)])
    images = []
    for f, _ in files:
        with Image.open(f) as img:
            images.append(resize(v2.functional.pil_to_tensor(img.convert("RGB"))))
    labels = torch.tensor([label for _, label in files], dtype=torch.int64)
    return torch.stack(images), labels, class_names
