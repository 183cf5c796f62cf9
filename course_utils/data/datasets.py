"""Dataset wrappers and DataLoader settings shared by every notebook.

- `TensorImageDataset`: uint8 images ``[N, C, H, W]`` and labels, with a transform.
- `PairDataset`: two independently augmented views of one image, and its label
  (SimCLR, MoCo).
- `make_loader`: seeded, deterministic loaders with worker counts that suit a
  2-core laptop and Colab alike.
"""
from __future__ import annotations

import os
from typing import Callable

import torch
from torch.utils.data import DataLoader, Dataset

Transform = Callable[[torch.Tensor], torch.Tensor]

# ImageNet's statistics are a fine default for any natural-looking RGB data.
DEFAULT_MEAN = (0.485, 0.456, 0.406)
DEFAULT_STD = (0.229, 0.224, 0.225)


def normalize(images: torch.Tensor, mean=DEFAULT_MEAN, std=DEFAULT_STD) -> torch.Tensor:
    """Float ``[..., 3, H, W]`` in [0, 1] -> normalised per channel with ``mean`` and ``std`` (dtype and device
    kept); `denormalize` undoes it."""
    m = torch.tensor(mean, dtype=images.dtype, device=images.device).view(-1, 1, 1)
    s = torch.tensor(std, dtype=images.dtype, device=images.device).view(-1, 1, 1)
    return (images - m) / s


def to_float(images: torch.Tensor, mean=DEFAULT_MEAN, std=DEFAULT_STD) -> torch.Tensor:
    """uint8 ``[N, 3, H, W]`` -> float32 normalised ``[N, 3, H, W]`` (no augmentation), on the images' device."""
    return normalize(images.float() / 255.0, mean, std)


def denormalize(images: torch.Tensor, mean=DEFAULT_MEAN, std=DEFAULT_STD) -> torch.Tensor:
    """Undo `to_float` for display: ``[..., 3, H, W]`` -> values in [0, 1]."""
    m = torch.tensor(mean, dtype=images.dtype, device=images.device).view(-1, 1, 1)
    s = torch.tensor(std, dtype=images.dtype, device=images.device).view(-1, 1, 1)
    return (images * s + m).clamp(0, 1)


class TensorImageDataset(Dataset):
    """Images held in memory as a uint8 tensor, returned through ``transform``.

    Shape: ``images [N, C, H, W]`` uint8, ``labels [N]``; item ``i`` is
    ``(transform(images[i]), labels[i])``.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Transform | None = None):
        if images.ndim != 4 or images.dtype != torch.uint8:
            raise ValueError(f"images must be uint8 [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        x = self.images[i]
        return (self.transform(x) if self.transform else x), self.labels[i]


class PairDataset(Dataset):
    """Two views of each image of ``base`` through the same random ``transform``.

    ``base`` returns ``(image, label)``; item ``i`` is ``(view1, view2, label)``,
    each view a separate random draw of ``transform``.
    """

    def __init__(self, base: Dataset, transform: Transform):
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int):
        x, y = self.base[i]
        return self.transform(x), self.transform(x), y


def default_workers() -> int:
    """DataLoader workers: none on a machine of 2 cores or fewer (they would
    steal the cores the model trains on), else up to 4."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 0 if cores <= 2 else min(4, cores - 1)


def make_loader(dataset: Dataset, batch_size: int, *, shuffle: bool = True, seed: int = 0,
                drop_last: bool = False, num_workers: int | None = None) -> DataLoader:
    """A DataLoader whose order and augmentations are fixed by ``seed``."""
    workers = default_workers() if num_workers is None else num_workers
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        num_workers=workers,
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=workers > 0,
        pin_memory=torch.cuda.is_available(),
    )
