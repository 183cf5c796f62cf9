"""The bundled dataset (SynthObjects-10), made on first use and cached in data/.

`load_synthetic("train")` gives 10,000 training images, `load_synthetic("test")`
2,000 test images, both class-balanced and fixed by the seed. The first call
draws them (about 10 s on a laptop) and caches an ``.npz`` under
``data/cache/``; later calls read the cache.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from . import synthetic

VERSION = 1  # bump when the generator changes, so that old caches are not reused
SPLIT_SIZES = {"train": 10_000, "test": 2_000}
_SPLIT_OFFSET = {"train": 0, "test": 1_000_003}  # the test split draws from another seed
_VIDEO_SPLITS = {"train": 512, "test": 128}


def data_root() -> Path:
    """``$SSL_KIT_DATA`` if set, else the repository's ``data/`` folder."""
    env = os.environ.get("SSL_KIT_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "data"


def _cached(path: Path, make):
    if path.is_file():
        with np.load(path) as f:
            return f["x"], f["y"]
    x, y = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npz")
    np.savez_compressed(tmp, x=x, y=y)
    os.replace(tmp, path)  # atomic: a reader never sees half a file
    return x, y


def _check_split(split: str, table: dict) -> None:
    if split not in table:
        raise ValueError(f"split must be one of {sorted(table)}, got {split!r}")


def load_synthetic(split: str = "train", *, seed: int = 0, root: str | Path | None = None,
                   num_images: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """SynthObjects-10 images and labels.

    Args:
        split: ``"train"`` (10,000 images) or ``"test"`` (2,000).
        seed: the dataset's seed; the same seed gives the same images.
        root: where the cache lives (default `data_root()`).
        num_images: draw this many instead of the split's size (not cached).

    Returns:
        ``(images, labels)``: uint8 ``[N, 3, 32, 32]`` and int64 ``[N]``.
    """
    _check_split(split, SPLIT_SIZES)
    draw_seed = seed + _SPLIT_OFFSET[split]
    if num_images is not None:
        x, y = synthetic.make_images(num_images, draw_seed)
    else:
        path = Path(root or data_root()) / "cache" / f"synth-objects-v{VERSION}-{split}-seed{seed}.npz"
        x, y = _cached(path, lambda: synthetic.make_images(SPLIT_SIZES[split], draw_seed))
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))), torch.from_numpy(y)


def load_synthetic_videos(split: str = "train", *, num_frames: int = 8, seed: int = 0,
                          root: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips of moving objects whose colours persist.

    Returns:
        ``(videos, labels)``: uint8 ``[V, T, 3, 32, 32]`` (``T = num_frames``)
        and int64 ``[V, 2]`` (the classes of each clip's two objects).
    """
    _check_split(split, _VIDEO_SPLITS)
    path = Path(root or data_root()) / "cache" / f"synth-videos-v{VERSION}-{split}-T{num_frames}-seed{seed}.npz"
    x, y = _cached(path, lambda: synthetic.make_videos(_VIDEO_SPLITS[split], num_frames, seed + _SPLIT_OFFSET[split]))
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 1, 4, 2, 3))), torch.from_numpy(y)
