"""Generative pretext tasks (02_generative_pretext): context encoders, colorization, video colorization.

- Colour: `rgb_to_lab`, `lab_to_rgb` (kornia's conversion), `lightness` (the network input of colorization
  and video colorization), `ab_bins` (the in-gamut bins of a grid of 10), `ab_counts` (a histogram of ab bins),
  `ab_clusters` (k-means colours, for video colorization).
- Masks: `random_block_masks` (the context encoder's random-region masks; `center_mask` is the student's).
- Networks: `EncoderDecoder` (a `ResNetEncoder` and a decoder of transposed convolutions, for inpainting and
  colorization), `DenseEmbedding` (a `ResNetEncoder` read at 8x8, for video colorization).
- Training steps for `course_utils.training.train`, built from the student's graded functions.

The linear probes read ``.encoder`` of each network: the same `ResNetEncoder` as in every notebook.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .data.datasets import to_float
from .models import ResNetEncoder

AB_LIMIT = 110  # |a|, |b| of sRGB colours in Lab stay below 110


def rgb_to_lab(images: torch.Tensor) -> torch.Tensor:
    """uint8 or float (in [0, 1]) RGB ``[..., 3, H, W]`` -> float32 Lab ``[..., 3, H, W]``: L in [0, 100], a and b
    in about [-110, 110] (kornia's conversion, D65 white)."""
    from kornia.color import rgb_to_lab as convert  # imported on use: only this notebook needs kornia
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    return convert(x)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """Lab ``[..., 3, H, W]`` -> RGB in [0, 1] (out-of-gamut colours clipped)."""
    from kornia.color import lab_to_rgb as convert
    return convert(lab, clip=True)


def lightness(images: torch.Tensor) -> torch.Tensor:
    """uint8 RGB ``[N, 3, H, W]`` -> the L channel scaled to [-1, 1], ``[N, 1, H, W]`` (the gray input)."""
    return rgb_to_lab(images)[:, :1] / 50.0 - 1.0


def ab_bins(step: int = 10, *, samples: int = 5, lightness_levels: int = 51) -> torch.Tensor:
    """The centres ``[Q, 2]`` of the in-gamut bins of an ab grid of ``step``: a bin is kept if some colour in it
    (a ``samples x samples`` grid of points in the bin) is an sRGB colour at some lightness. Row-major order
    (a, then b). With ``step = 10``: Q = 257 of the 23 x 23 = 529 bins of [-110, 110]^2."""
    grid = torch.arange(-AB_LIMIT, AB_LIMIT + 1, step, dtype=torch.float32)
    centers = torch.cartesian_prod(grid, grid)                                   # [B, 2]
    offsets = torch.linspace(-step / 2, step / 2, samples)
    points = (centers[:, None] + torch.cartesian_prod(offsets, offsets)[None]).reshape(-1, 2)   # [B * s^2, 2]
    L = torch.linspace(0, 100, lightness_levels)[:, None].expand(-1, len(points))
    lab = torch.stack([L, points[:, 0].expand_as(L), points[:, 1].expand_as(L)])  # [3, levels, B * s^2]
    from kornia.color import lab_to_rgb as convert
    rgb = convert(lab[None], clip=False)[0]
    in_gamut = ((rgb >= 0) & (rgb <= 1)).all(0).any(0).view(len(centers), -1).any(1)
    return centers[in_gamut]


def ab_counts(encode_ab: Callable, images: torch.Tensor, centers: torch.Tensor, *, size: int | None = None,
              batch_size: int = 500) -> torch.Tensor:
    """How often each bin is the nearest to a pixel's ab: float ``[Q]``. ``images`` uint8 ``[N, 3, H, W]``;
    ``size`` pools ab to ``size x size`` first (the resolution the networks predict)."""
    counts = torch.zeros(len(centers))
    for i in range(0, len(images), batch_size):
        ab = rgb_to_lab(images[i:i + batch_size])[:, 1:]
        if size is not None:
            ab = F.adaptive_avg_pool2d(ab, size)
        counts += torch.bincount(encode_ab(ab, centers).flatten(), minlength=len(centers)).float()
    return counts


def ab_clusters(images: torch.Tensor, k: int = 16, *, iters: int = 20, samples: int = 20_000, size: int = 16,
                seed: int = 0) -> torch.Tensor:
    """``k`` colour clusters ``[k, 2]`` of the ab of ``samples`` random pixels of uint8 ``images [..., 3, H, W]``
    (pooled to ``size x size``), by k-means (Lloyd's iterations from ``k`` random pixels): Vondrick et al.'s
    quantised colours."""
    g = torch.Generator().manual_seed(seed)
    ab = F.adaptive_avg_pool2d(rgb_to_lab(images.reshape(-1, *images.shape[-3:]))[:, 1:], size)
    points = ab.permute(0, 2, 3, 1).reshape(-1, 2)
    points = points[torch.randperm(len(points), generator=g)[:samples]]
    centers = points[torch.randperm(len(points), generator=g)[:k]].clone()
    for _ in range(iters):
        nearest = torch.cdist(points, centers).argmin(dim=1)
        sums = torch.zeros_like(centers).index_add_(0, nearest, points)
        sizes = torch.bincount(nearest, minlength=k).float()[:, None]
        centers = torch.where(sizes > 0, sums / sizes.clamp_min(1), centers)   # an empty cluster keeps its centre
    return centers


def random_block_masks(num: int, size: int = 32, *, block: int = 8, fraction: float = 0.25,
                       generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Random-region masks: ``round(fraction * cells)`` cells of a grid of ``block x block`` cells, chosen at
    random for each image. Returns bool ``[num, 1, size, size]``."""
    cells = (size // block) ** 2
    k = max(1, round(fraction * cells))
    order = torch.rand(num, cells, generator=generator).argsort(dim=1)[:, :k]
    chosen = torch.zeros(num, cells, dtype=torch.bool).scatter_(1, order, True)
    side = size // block
    mask = chosen.view(num, 1, side, side).repeat_interleave(block, 2).repeat_interleave(block, 3)
    return mask.to(device)


def _up(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class EncoderDecoder(nn.Module):
    """A `ResNetEncoder` (width 16, stride-2 stem: a ``[64, 4, 4]`` map for 32x32 inputs) and a decoder of
    transposed convolutions that doubles the resolution ``log2(out_size / 4)`` times.

    Shape: ``[N, in_channels, 32, 32]`` -> ``[N, out_channels, out_size, out_size]``.
    """

    def __init__(self, in_channels: int, out_channels: int, out_size: int = 32, width: int = 16):
        super().__init__()
        self.encoder = ResNetEncoder(width=width, in_channels=in_channels, stem_stride=2)
        layers, channels, side = [], self.encoder.feature_dim, 4
        while side < out_size:
            layers.append(_up(channels, max(channels // 2, width)))
            channels, side = max(channels // 2, width), side * 2
        self.decoder = nn.Sequential(*layers, nn.Conv2d(channels, out_channels, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder.forward_features(x))


class DenseEmbedding(nn.Module):
    """Per-position features of a gray frame for colour propagation: the stages of a `ResNetEncoder` (16x16, 8x8
    and 4x4 for a 32x32 frame) that are not finer than ``size``, upsampled to ``size x size`` and mixed by a 1x1
    convolution.

    Shape: ``[N, 1, 32, 32]`` -> ``[N, dim, size, size]`` (``size`` 16 or 8).
    """

    def __init__(self, dim: int = 64, width: int = 16, size: int = 16):
        super().__init__()
        if size not in (8, 16):
            raise ValueError(f"size must be 16 or 8 (the resolutions of the encoder's stages), got {size}")
        self.encoder = ResNetEncoder(width=width, in_channels=1, stem_stride=2)
        self.size, self.first = size, 0 if size == 16 else 1             # the stages read: from `first` on
        self.mix = nn.Conv2d(sum((width, 2 * width, 4 * width)[self.first:]), dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, maps = self.encoder.stem(x), []
        for i, stage in enumerate(self.encoder.stages):
            h = stage(h)
            if i >= self.first:
                maps.append(F.interpolate(h, size=self.size, mode="bilinear", align_corners=False)
                            if h.shape[-1] != self.size else h)
        return self.mix(torch.cat(maps, dim=1))


def inpainting_step(mask_fn: Callable, masked_mse: Callable, fill: float = 0.0) -> Callable:
    """A context-encoder step: ``mask_fn(x)`` gives bool masks ``[N, 1, H, W]`` for normalised images ``x``; the
    masked pixels are set to ``fill`` and the network's reconstruction is scored by ``masked_mse`` on them."""
    def step(model, batch, device):
        x = to_float(batch[0].to(device))
        mask = mask_fn(x)
        return masked_mse(model(x.masked_fill(mask, fill)), x, mask)
    return step


def colorization_targets(images: torch.Tensor, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 RGB ``[N, 3, 32, 32]`` -> (the gray input ``[N, 1, 32, 32]``, ab pooled to ``[N, 2, size, size]``)."""
    lab = rgb_to_lab(images)
    return lab[:, :1] / 50.0 - 1.0, F.adaptive_avg_pool2d(lab[:, 1:], size)


def colorization_step(encode_ab: Callable, colorization_loss: Callable, centers: torch.Tensor,
                      weights: torch.Tensor, size: int = 16) -> Callable:
    """Colorization as classification: the ab of each of the ``size x size`` output positions is encoded to its
    nearest bin and the network's ``[N, Q, size, size]`` scores are scored by ``colorization_loss``."""
    def step(model, batch, device):
        gray, ab = colorization_targets(batch[0].to(device), size)
        return colorization_loss(model(gray), encode_ab(ab, centers.to(device)), weights.to(device))
    return step


def regression_step(size: int = 16) -> Callable:
    """Colorization as regression (the baseline): the mean squared error of ab (scaled by 1/110)."""
    def step(model, batch, device):
        gray, ab = colorization_targets(batch[0].to(device), size)
        return F.mse_loss(model(gray), ab / AB_LIMIT)
    return step


def one_hot_bins(codes: torch.Tensor, num_bins: int) -> torch.Tensor:
    """Bin indices ``[N, H, W]`` -> one-hot float ``[N, Q, H, W]``."""
    return F.one_hot(codes, num_bins).permute(0, 3, 1, 2).float()


def video_colorization_step(propagate_colors: Callable, encode_ab: Callable, centers: torch.Tensor,
                            size: int = 16, temperature: float = 1.0) -> Callable:
    """Tracking by colourising (Vondrick et al. 2018): for each clip of ``[B, T, 3, 32, 32]`` uint8 frames, a
    random reference frame and a random other target frame; the reference's ab bins (at ``size x size``, one-hot)
    are propagated to the target by ``propagate_colors`` over the model's embeddings, and scored by the negative
    log-likelihood of the target's own bins."""
    def step(model, batch, device):
        clips = batch[0].to(device)
        B, T = clips.shape[:2]
        ref_t = torch.randint(T, (B,), device=device)
        tgt_t = (ref_t + torch.randint(1, T, (B,), device=device)) % T
        rows = torch.arange(B, device=device)
        frames = torch.cat([clips[rows, ref_t], clips[rows, tgt_t]])           # [2B, 3, 32, 32]
        gray, ab = colorization_targets(frames, size)
        codes = encode_ab(ab, centers.to(device))                              # [2B, size, size]
        feats = model(gray)
        probs = propagate_colors(feats[:B], feats[B:], one_hot_bins(codes[:B], len(centers)), temperature)
        return -probs.gather(1, codes[B:, None]).clamp_min(1e-6).log().mean()  # the target bins' probabilities
    return step


@torch.no_grad()
def propagate_from_first(propagate_colors: Callable, model: nn.Module, clips: torch.Tensor, colors: torch.Tensor,
                         temperature: float) -> torch.Tensor:
    """Propagate what frame 0 of each clip holds to every frame of the clip (frame 0 included).

    Shape: ``clips`` uint8 ``[V, T, 3, 32, 32]``, ``colors [V, T, C, h, w]`` at the embedding's resolution (only
    frame 0's are read) -> ``[V, T, C, h, w]``.
    """
    V, T = clips.shape[:2]
    was_training = model.training
    feats = model.eval()(lightness(clips.flatten(0, 1))).unflatten(0, (V, T))     # [V, T, D, h, w]
    model.train(was_training)
    first = feats[:, :1].expand_as(feats).flatten(0, 1)
    ref_colors = colors[:, :1].expand_as(colors).flatten(0, 1)
    return propagate_colors(first, feats.flatten(0, 1), ref_colors, temperature).unflatten(0, (V, T))


def mask_iou(predicted: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Intersection over union of bool masks ``[..., H, W]`` -> ``[...]`` (1 where both are empty)."""
    inter = (predicted & truth).flatten(-2).sum(-1).float()
    union = (predicted | truth).flatten(-2).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))
