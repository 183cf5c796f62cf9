"""Context-based pretext tasks (01_pretext_tasks): RotNet, relative patch location, jigsaw.

What the notebook's students do not write: the pre-training images, the random
jitter of patches and tiles, the networks around a shared encoder, the
training steps (which call the student's graded functions, passed in), and
the features a probe reads. Imports only torch and the kit's data helpers.

Shapes: images are normalised floats ``[N, 3, H, W]`` unless said otherwise;
patches ``[M, 3, P, P]``; tiles ``[N, T, 3, h, w]``.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .data import synthetic


def pretraining_scenes(num_images: int, background: str = "plain", seed: int = 101) -> torch.Tensor:
    """Unlabelled pre-training images: SynthObjects-10's objects, upright, over another background.

    ``background="plain"``: a flat, noisy colour (no sky, ground or horizon), so that a pretext task about
    orientation or layout has to look at the object. ``"turned"``: the bundled sky and ground turned by a random
    multiple of 90 degrees, so that the scene's orientation says nothing about the object's. ``"scene"``: the
    bundled kind of scene (another draw). Returns uint8 ``[num_images, 3, 32, 32]`` (about 3 s for 10,000 on a
    laptop CPU; drawn, not cached).
    """
    images, _ = synthetic.make_images(num_images, seed, background=background)
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


def random_crops(x: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """An independent random ``size x size`` crop of every image of ``x [M, C, S, S]`` -> ``[M, C, size, size]``.

    Each image gets its own offset in ``0..S - size`` (rows and columns), drawn with ``generator``.
    """
    m, _, s, s2 = x.shape
    if size > min(s, s2):
        raise ValueError(f"cannot crop {size}x{size} out of {s}x{s2}")
    dy = torch.randint(0, s - size + 1, (m,), generator=generator).to(x.device)
    dx = torch.randint(0, s2 - size + 1, (m,), generator=generator).to(x.device)
    rows = (dy[:, None] + torch.arange(size, device=x.device))[:, None, :, None]   # [M, 1, size, 1]
    cols = (dx[:, None] + torch.arange(size, device=x.device))[:, None, None, :]   # [M, 1, 1, size]
    batch = torch.arange(m, device=x.device)[:, None, None, None]
    return x.permute(0, 2, 3, 1)[batch, rows, cols].squeeze(1).permute(0, 3, 1, 2)


def jittered_context_pairs(context_pairs: Callable, images: torch.Tensor, patch_size: int, gap: int, jitter: int,
                           generator: torch.Generator | None = None):
    """Relative-patch-location pairs whose every patch is moved by up to ``jitter`` pixels, independently.

    Uses the student's ``context_pairs`` on patches ``2 * jitter`` larger (and gaps ``2 * jitter`` smaller, so that
    the grid's centres stay put), then crops ``patch_size`` at a random offset inside each: a shift of
    ``-jitter..jitter`` in each direction. Returns ``(centers, neighbors, labels)`` as ``context_pairs`` does.
    """
    if jitter < 0 or gap < 2 * jitter:
        raise ValueError(f"jitter must be in 0..gap / 2 (the patches may not overlap), got jitter={jitter}, gap={gap}")
    centers, neighbors, labels = context_pairs(images, patch_size + 2 * jitter, gap - 2 * jitter)
    return random_crops(centers, patch_size, generator), random_crops(neighbors, patch_size, generator), labels


def crop_tiles(tiles: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random ``size x size`` crop inside every tile: ``[N, T, C, h, w]`` -> ``[N, T, C, size, size]``.

    Jigsaw's defence against matching edges: the gap between neighbouring crops is random, up to ``2 (h - size)``.
    """
    n, t = tiles.shape[:2]
    return random_crops(tiles.flatten(0, 1), size, generator).view(n, t, tiles.shape[2], size, size)


class PairClassifier(nn.Module):
    """Relative patch location: one encoder applied to both patches (shared weights), their features
    concatenated, an MLP to the 8 positions. ``(centers [M, 3, P, P], neighbors [M, 3, P, P])`` -> ``[M, 8]``."""

    def __init__(self, encoder: nn.Module, hidden: int = 128, num_positions: int = 8):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Sequential(nn.Linear(2 * encoder.feature_dim, hidden), nn.ReLU(), nn.Linear(hidden, num_positions))

    def forward(self, centers: torch.Tensor, neighbors: torch.Tensor) -> torch.Tensor:
        features = self.encoder(torch.cat([centers, neighbors]))        # one pass: the same weights and statistics
        return self.head(torch.cat(features.chunk(2), dim=1))


class JigsawNet(nn.Module):
    """The context-free network: one encoder (a "tower") per tile, shared, applied to each tile alone, the
    tiles' features concatenated in their shown order, an MLP to the permutation index.
    ``tiles [N, T, 3, h, w]`` -> logits ``[N, num_permutations]``."""

    def __init__(self, encoder: nn.Module, num_tiles: int, num_permutations: int, hidden: int = 256):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Sequential(nn.Linear(num_tiles * encoder.feature_dim, hidden), nn.ReLU(),
                                  nn.Linear(hidden, num_permutations))

    def forward(self, tiles: torch.Tensor) -> torch.Tensor:
        n = tiles.shape[0]
        return self.head(self.encoder(tiles.flatten(0, 1)).view(n, -1))


class StageFeatures(nn.Module):
    """The globally pooled output of one stage of a `ResNetEncoder` (0, 1 or 2): ``[N, 3, H, W]`` -> ``[N, C_stage]``.

    RotNet's probes read each stage; the encoder is shared, not copied."""

    def __init__(self, encoder: nn.Module, stage: int):
        super().__init__()
        if not 0 <= stage < len(encoder.stages):
            raise ValueError(f"stage must be in 0..{len(encoder.stages) - 1}, got {stage}")
        self.encoder, self.stage = encoder, stage

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder.stem(x)
        for block in self.encoder.stages[:self.stage + 1]:
            h = block(h)
        return h.mean(dim=(2, 3))


class Steps(NamedTuple):
    """A training step (for `course_utils.training.train`) and the pretext accuracy of each step it took."""

    step: Callable
    accuracy: list


def _accuracy_step(make_batch: Callable, forward: Callable) -> Steps:
    """A step that turns a loader batch into ``(inputs, targets)`` with ``make_batch``, computes logits with
    ``forward(model, inputs)`` and records the accuracy of each step."""
    accuracy: list[float] = []

    def step(model, batch, device):
        inputs, targets = make_batch(batch[0].to(device))
        logits = forward(model, inputs)
        accuracy.append((logits.argmax(dim=1) == targets).float().mean().item())
        return F.cross_entropy(logits, targets)

    return Steps(step, accuracy)


def rotnet_step(rotate_batch: Callable, augment: Callable) -> Steps:
    """RotNet: all four rotations of each augmented image, classified 4-way by ``model`` (an encoder + head)."""
    return _accuracy_step(lambda x: rotate_batch(augment(x)), lambda model, x: model(x))


def patch_location_step(context_pairs: Callable, augment: Callable, patch_size: int, gap: int, jitter: int) -> Steps:
    """Relative patch location with jitter; ``model`` is a `PairClassifier`."""
    def make_batch(x):
        centers, neighbors, labels = jittered_context_pairs(context_pairs, augment(x), patch_size, gap, jitter)
        return (centers, neighbors), labels
    return _accuracy_step(make_batch, lambda model, pair: model(*pair))


def jigsaw_step(tile_images: Callable, shuffle_tiles: Callable, permutations: torch.Tensor, augment: Callable,
                tile_crop: int) -> Steps:
    """Jigsaw: tile each augmented image, crop inside every cell, shuffle by a random permutation of the set;
    ``model`` (a `JigsawNet`) predicts the permutation's index."""
    def make_batch(x):
        tiles = crop_tiles(tile_images(augment(x)), tile_crop)
        index = torch.randint(len(permutations), (len(tiles),), device=tiles.device)
        return shuffle_tiles(tiles, permutations.to(tiles.device), index), index
    return _accuracy_step(make_batch, lambda model, tiles: model(tiles))

