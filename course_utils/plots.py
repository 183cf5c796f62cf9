"""Pictures the notebooks show: image grids, view pairs, sequences, patch grids and tile mosaics, loss
curves, bars, embeddings.

Every function draws on a new figure and returns it, so a notebook shows it
and a script can save it (``fig.savefig(...)``).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from .data.datasets import denormalize


def _to_hwc(img: torch.Tensor, normalized: bool) -> np.ndarray:
    """``[3, H, W]`` uint8, [0, 1] float, or normalised float -> ``[H, W, 3]`` in [0, 1]."""
    img = img.detach().cpu()
    if img.dtype == torch.uint8:
        img = img.float() / 255.0
    elif normalized:
        img = denormalize(img.float())
    return img.clamp(0, 1).permute(1, 2, 0).numpy()


def show_images(images: torch.Tensor, *, nrow: int = 8, titles: Sequence[str] | None = None,
                normalized: bool = False, scale: float = 1.2, suptitle: str | None = None):
    """Grid of ``images [N, 3, H, W]`` (uint8 or float; ``normalized`` undoes `to_float`)."""
    n = len(images)
    ncol = min(nrow, n)
    rows = (n + ncol - 1) // ncol
    fig, axes = plt.subplots(rows, ncol, figsize=(scale * ncol, scale * rows + (0.3 if suptitle else 0)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n):
        ax = axes.flat[i]
        ax.imshow(_to_hwc(images[i], normalized), interpolation="nearest")
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def show_pairs(originals: torch.Tensor, view1: torch.Tensor, view2: torch.Tensor, *, normalized: bool = True):
    """Three rows: the originals ``[N, 3, H, W]`` and two augmented views of each."""
    n = len(originals)
    fig, axes = plt.subplots(3, n, figsize=(1.3 * n, 4.2), squeeze=False)
    for row, (name, imgs, norm) in enumerate(
        (("original", originals, False), ("view 1", view1, normalized), ("view 2", view2, normalized))
    ):
        for i in range(n):
            ax = axes[row, i]
            ax.imshow(_to_hwc(imgs[i], norm), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[row, 0].set_ylabel(name)
    fig.suptitle("Each column: one image and two random views of it (a positive pair)")
    fig.tight_layout()
    return fig


def show_sequences(images: torch.Tensor, sequences: torch.Tensor, *, normalized: bool = True, title: str | None = None):
    """One row per image: the image ``images[i] [3, H, W]`` (uint8), then its elements ``sequences[i]
    [T, 3, h, W]`` in order, left to right (``normalized`` undoes `to_float` on the elements)."""
    n, t = sequences.shape[:2]
    fig, axes = plt.subplots(n, t + 1, figsize=(1.3 + 1.1 * t, 1.15 * n + (0.3 if title else 0)), squeeze=False,
                             gridspec_kw={"width_ratios": [1.3] + [1] * t})
    for i in range(n):
        axes[i, 0].imshow(_to_hwc(images[i], False), interpolation="nearest")
        for j in range(t):
            axes[i, j + 1].imshow(_to_hwc(sequences[i, j], normalized), interpolation="nearest")
            if i == 0:
                axes[0, j + 1].set_title(f"t = {j}", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_title("image", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def show_patch_grid(images: torch.Tensor, patch_size: int, gap: int, *, title: str | None = None):
    """Each image ``[3, H, W]`` (uint8) with relative patch location's centred 3x3 grid drawn on it: the centre
    patch "C" and the neighbours labelled 0..7 in row-major order."""
    from matplotlib.patches import Rectangle

    n, (h, w) = len(images), images.shape[-2:]
    size = 3 * patch_size + 2 * gap
    top, left = (h - size) // 2, (w - size) // 2
    fig, axes = plt.subplots(1, n, figsize=(2.2 * n, 2.4 + (0.3 if title else 0)), squeeze=False)
    for ax, image in zip(axes.flat, images):
        ax.imshow(_to_hwc(image, False), interpolation="nearest")
        label = 0
        for r in range(3):
            for c in range(3):
                y, x = top + r * (patch_size + gap) - 0.5, left + c * (patch_size + gap) - 0.5
                centre = (r, c) == (1, 1)
                ax.add_patch(Rectangle((x, y), patch_size, patch_size, fill=False, lw=1.2,
                                       color="yellow" if centre else "white"))
                ax.text(x + patch_size / 2, y + patch_size / 2, "C" if centre else str(label), ha="center",
                        va="center", fontsize=8, color="black", bbox=dict(boxstyle="round,pad=0.1", fc="white", alpha=0.7))
                label += 0 if centre else 1
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def tile_mosaic(tiles: torch.Tensor, *, border: int = 1) -> torch.Tensor:
    """``tiles [N, T, C, h, w]`` (T a square) -> images ``[N, C, H', W']``: the tiles laid out row-major on a
    square grid with ``border`` pixels of the lowest value between them (for `show_images`)."""
    n, t, c, h, w = tiles.shape
    grid = round(t ** 0.5)
    if grid * grid != t:
        raise ValueError(f"{t} tiles do not make a square grid")
    side_h, side_w = grid * h + (grid + 1) * border, grid * w + (grid + 1) * border
    out = torch.full((n, c, side_h, side_w), float(tiles.min()), dtype=tiles.dtype)
    for j in range(t):
        r, col = divmod(j, grid)
        y, x = border + r * (h + border), border + col * (w + border)
        out[:, :, y:y + h, x:x + w] = tiles[:, j].detach().cpu()
    return out


def plot_losses(curves: Mapping[str, Sequence[float]], *, smooth: int = 10, ylabel: str = "loss"):
    """Loss per step for each named run, with a moving average of ``smooth`` steps."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, losses in curves.items():
        y = np.asarray(losses, dtype=float)
        ax.plot(y, alpha=0.3)
        if len(y) >= smooth > 1:
            avg = np.convolve(y, np.ones(smooth) / smooth, mode="valid")
            ax.plot(np.arange(smooth - 1, len(y)), avg, color=ax.lines[-1].get_color(), label=name)
        else:
            ax.lines[-1].set_label(name)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_bars(values: Mapping[str, float], *, ylabel: str = "test accuracy (%)", title: str | None = None,
              chance: float | None = None):
    """Bar chart of named scores in percent, each bar labelled with its value."""
    fig, ax = plt.subplots(figsize=(1.6 * len(values) + 2, 3.5))
    names, vals = list(values), [100 * v for v in values.values()]
    bars = ax.bar(names, vals, color=plt.cm.tab10(np.arange(len(vals))))
    ax.bar_label(bars, fmt="%.1f")
    if chance is not None:
        ax.axhline(100 * chance, ls="--", color="gray", label="chance")
        ax.legend()
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 100)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def _scatter(ax, points: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str], title: str) -> None:
    pts, lab = points.detach().cpu().numpy(), labels.cpu().numpy()
    for k, name in enumerate(class_names):
        sel = lab == k
        ax.scatter(pts[sel, 0], pts[sel, 1], s=5, alpha=0.7, color=plt.cm.tab10(k % 10), label=name)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_embeddings(panels: Sequence[tuple[torch.Tensor, torch.Tensor, str]], class_names: Sequence[str]):
    """One scatter per panel ``(points [N, 2], labels [N], title)``, coloured by class, in a row."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels) + 1.5, 4.2), squeeze=False)
    for ax, (pts, lab, title) in zip(axes[0], panels):
        _scatter(ax, pts, lab, class_names, title)
    axes[0, -1].legend(fontsize=7, markerscale=2, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.tight_layout()
    return fig
