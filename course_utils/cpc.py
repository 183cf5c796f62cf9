"""CPC on images (notebook 05): each image read top to bottom as a sequence of strips.

- `to_strips`: ``[B, C, H, W]`` images -> ``[B, T, C, height, W]``, overlapping horizontal strips.
- `StripAugment`: one crop and flip per image, then colour jitter and grayscale drawn *per strip*
  (CPC v2's per-patch augmentation), so that strips cannot be matched by their colours alone.
- `CPC`: the student's element encoder ``g_enc`` and context network ``g_ar``, and the prediction
  matrices ``W [K, Dz, Dc]``; `cpc_step` trains it with the student's `cpc_loss` at every valid ``t``.
- `ContextFeatures`: images -> the last context ``c_{T-1}``, for the linear probe and the supervised bound.
- `evaluate_predictions`: how often the true future ``k`` steps ahead scores highest, and the InfoNCE
  bound, for ``k = 1..K``.

May import: torch and course_utils.augment / course_utils.data (no notebook code: the student's
functions come in as arguments).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .augment import BatchAugment
from .data.datasets import normalize

STRIP_HEIGHT = 8
STRIP_STRIDE = 4


def to_strips(images: torch.Tensor, height: int = STRIP_HEIGHT, stride: int = STRIP_STRIDE) -> torch.Tensor:
    """Cut images into horizontal strips, top to bottom.

    Shape: ``images [B, C, H, W]`` -> ``[B, T, C, height, W]`` with ``T = (H - height) // stride + 1``;
    strip ``t`` holds rows ``t * stride`` to ``t * stride + height - 1`` (a view where possible).
    """
    if images.ndim != 4:
        raise ValueError(f"to_strips expects images [B, C, H, W], got shape {tuple(images.shape)}")
    if not 0 < height <= images.shape[2] or stride < 1:
        raise ValueError(f"strips of height {height} and stride {stride} do not fit images of height "
                         f"{images.shape[2]}: choose 0 < height <= H and stride >= 1")
    return images.unfold(2, height, stride).permute(0, 2, 1, 4, 3)  # [B, C, T, W, h] -> [B, T, C, h, W]


class StripAugment:
    """Callable: uint8 or [0, 1] float images ``[B, 3, H, W]`` -> normalised strips ``[B, T, 3, h, W]``.

    One random resized crop (area ``scale``) and flip per image keeps the strips of an image aligned;
    colour jitter and grayscale are then drawn for every strip on its own (``per_strip=False`` draws
    them per image, as SimCLR's augmentation does).
    """

    def __init__(self, *, scale=(0.3, 1.0), per_strip: bool = True, generator: torch.Generator | None = None):
        self.augment = BatchAugment(scale=scale, generator=generator)
        self.per_strip = per_strip

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        x = self.augment.crop_flip(x)
        if not self.per_strip:
            x = self.augment.color(x)
        strips = to_strips(x)
        if self.per_strip:
            strips = self.augment.color(strips.flatten(0, 1)).reshape(strips.shape)
        return normalize(strips)


class CPC(nn.Module):
    """The three learned parts of CPC.

    Args:
        encoder: ``g_enc``, one element ``[N, 3, h, W]`` -> ``z [N, Dz]`` (applied to every strip at once).
        context: ``g_ar``, ``z [B, T, Dz]`` -> ``c [B, T, Dc]``, causal.
        z_dim, c_dim: ``Dz`` and ``Dc``; steps: ``K``, the number of steps ahead predicted.

    ``forward(strips [B, T, 3, h, W]) -> (z [B, T, Dz], c [B, T, Dc])``; ``W [K, Dz, Dc]`` is the
    prediction matrix of each step ahead (``W[k - 1]`` for ``k`` steps).
    """

    def __init__(self, encoder: nn.Module, context: nn.Module, *, z_dim: int, c_dim: int, steps: int):
        super().__init__()
        self.encoder, self.context = encoder, context
        self.W = nn.Parameter(torch.randn(steps, z_dim, c_dim) / math.sqrt(c_dim))

    @property
    def steps(self) -> int:
        return self.W.shape[0]

    def forward(self, strips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, t = strips.shape[:2]
        z = self.encoder(strips.flatten(0, 1)).reshape(b, t, -1)
        return z, self.context(z)


@dataclass
class CPCFunctions:
    """The student's graded functions that training and evaluation call."""

    scores: Callable
    infonce: Callable
    loss: Callable


def cpc_step(fns: CPCFunctions, *, augment: Callable[[torch.Tensor], torch.Tensor]):
    """A step function for `course_utils.training.train`: ``batch = (images, labels)``; the loss is the
    mean of the student's ``cpc_loss`` over every ``t`` with ``t + K < T``."""

    def step(model: CPC, batch, device):
        images, _ = batch
        z, c = model(augment(images.to(device)))
        starts = range(z.shape[1] - model.steps)
        if not starts:
            raise ValueError(f"sequences of T = {z.shape[1]} elements leave no start t with t + K < T for "
                             f"K = {model.steps} steps ahead: predict fewer steps or cut longer sequences")
        return torch.stack([fns.loss(z, c, model.W, t) for t in starts]).mean()

    return step


class ContextFeatures(nn.Module):
    """Normalised images ``[B, 3, H, W]`` -> the last context ``c_{T-1} [B, Dc]``: a summary of the whole
    image, read top to bottom. ``feature_dim`` is ``Dc`` (what `train_supervised` needs)."""

    def __init__(self, model: CPC):
        super().__init__()
        self.model = model
        self.feature_dim = model.W.shape[2]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(to_strips(images))[1][:, -1]


@torch.no_grad()
def evaluate_predictions(model: CPC, images: torch.Tensor, fns: CPCFunctions, *, batch_size: int = 256,
                         device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """How well the contexts predict the future, for each step ahead ``k = 1..K``, over every valid ``t``.

    Returns ``(accuracy [K], infonce [K])``: the share of contexts ``c_t`` whose highest score, among the
    ``batch_size`` candidates ``z_{t+k}`` of their batch, is their own future (chance: ``1 / batch_size``),
    and the mean InfoNCE loss ``L_k`` (so that ``log(batch_size) - L_k`` is the bound on the mutual
    information in nats). ``images`` are normalised ``[N, 3, H, W]``; the last partial batch is dropped.
    """
    was_training = model.training
    model.eval().to(device)
    hits = torch.zeros(model.steps, dtype=torch.float64)
    losses = torch.zeros(model.steps, dtype=torch.float64)
    count = 0
    for i in range(0, len(images) - batch_size + 1, batch_size):
        z, c = model(to_strips(images[i:i + batch_size].to(device)))
        target = torch.arange(batch_size, device=device)
        for t in range(z.shape[1] - model.steps):
            for k in range(1, model.steps + 1):
                scores = fns.scores(z[:, t + k], c[:, t], model.W[k - 1])
                hits[k - 1] += (scores.argmax(dim=1) == target).float().mean().item()
                losses[k - 1] += fns.infonce(scores).item()
            count += 1
    model.train(was_training)
    if count == 0:
        raise ValueError(f"evaluate_predictions needs at least batch_size = {batch_size} images, got {len(images)}")
    return hits / count, losses / count
