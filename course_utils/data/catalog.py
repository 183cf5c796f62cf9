"""One name per dataset, so that a notebook switches data with one setting.

``load_images("synthetic" | "cifar10" | "stl10", split)`` returns uint8
``[N, 3, 32, 32]`` images and int64 ``[N]`` labels, and `class_names` the
names of the labels.
"""
from __future__ import annotations

from pathlib import Path

import torch

from . import bundled, synthetic, torchvision_sets

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
STL10_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")
NAMES = ("synthetic", "cifar10", "stl10")


def load_images(name: str, split: str = "train", root: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``[N, 3, 32, 32]`` uint8 and labels ``[N]`` of dataset ``name``.

    ``synthetic`` is made locally; ``cifar10`` and ``stl10`` (resized to 32x32)
    must have been downloaded once with ``python -m course_utils.data download NAME``.
    """
    if name == "synthetic":
        return bundled.load_synthetic(split, root=root)
    if name == "cifar10":
        return torchvision_sets.load_cifar10(split, root)
    if name == "stl10":
        return torchvision_sets.load_stl10(split, root, size=32)
    raise ValueError(f"dataset must be one of {NAMES}, got {name!r}")


def class_names(name: str) -> tuple[str, ...]:
    """The label names of dataset ``name``."""
    table = {"synthetic": synthetic.CLASSES, "cifar10": CIFAR10_CLASSES, "stl10": STL10_CLASSES}
    if name not in table:
        raise ValueError(f"dataset must be one of {NAMES}, got {name!r}")
    return table[name]
