"""SimCLR's augmentations on a whole batch at once, each image its own draw.

`compute_train_transform` (the student's) augments one image at a time, as
torchvision's transforms do; on a 2-core laptop that costs more than the
training step itself. `BatchAugment` draws the same distribution of views
for a batch of uint8 images in a few vectorised tensor operations (and runs
on the GPU when the batch is there):

- random resized crop: scale ``U(0.08, 1)`` of the area, log-uniform aspect
  ratio in ``[3/4, 4/3]``, bilinear resampling (`F.grid_sample`);
- horizontal flip with p=0.5;
- colour jitter (brightness, contrast, saturation 0.4; hue 0.1) with p=0.8,
  the four in a random order per batch as torchvision does per image;
- grayscale with p=0.2;
- normalisation with ``mean``/``std``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .data.datasets import DEFAULT_MEAN, DEFAULT_STD, normalize

_GRAY = (0.299, 0.587, 0.114)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """``[B, 3, H, W] -> [B, 1, H, W]`` luma."""
    w = torch.tensor(_GRAY, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """``[B, 3, H, W]`` RGB in [0, 1] -> HSV, hue in [0, 1)."""
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    delta = maxc - minc
    s = delta / maxc.clamp_min(1e-8)
    d = delta.clamp_min(1e-8)
    h = torch.where(maxc == r, ((g - b) / d) % 6, torch.where(maxc == g, (b - r) / d + 2, (r - g) / d + 4))
    h = torch.where(delta > 0, h / 6.0, torch.zeros_like(h)) % 1.0
    return torch.stack([h, s, maxc], 1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Inverse of `rgb_to_hsv`. ``[B, 3, H, W] -> [B, 3, H, W]``."""
    h, s, v = x.unbind(1)
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], 1)  # [B, 3, H, W]
    return v.unsqueeze(1) - (v * s).unsqueeze(1) * torch.clamp(torch.minimum(k, 4 - k), 0, 1)


class BatchAugment:
    """Callable: uint8 or [0, 1] float ``[B, 3, H, W]`` -> normalised float ``[B, 3, size, size]``.

    Args:
        size: output side in pixels.
        scale, ratio: random-resized-crop ranges (area fraction, aspect ratio).
        jitter: (brightness, contrast, saturation, hue) strengths.
        p_jitter, p_gray, p_flip: probabilities of each step.
        generator: optional ``torch.Generator`` for reproducible draws (CPU).
    """

    def __init__(self, size: int = 32, *, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                 jitter=(0.4, 0.4, 0.4, 0.1), p_jitter: float = 0.8, p_gray: float = 0.2,
                 p_flip: float = 0.5, mean=DEFAULT_MEAN, std=DEFAULT_STD,
                 generator: torch.Generator | None = None):
        self.size, self.scale, self.ratio, self.jitter = size, scale, ratio, jitter
        self.p_jitter, self.p_gray, self.p_flip = p_jitter, p_gray, p_flip
        self.mean, self.std, self.generator = mean, std, generator

    def _rand(self, *shape, device) -> torch.Tensor:
        return torch.rand(*shape, generator=self.generator).to(device)

    def crop_flip(self, x: torch.Tensor) -> torch.Tensor:
        """Random resized crop and flip, one draw per image, via an affine grid."""
        b, device = x.shape[0], x.device
        area = self.scale[0] + (self.scale[1] - self.scale[0]) * self._rand(b, device=device)
        log_r = math.log(self.ratio[0]) + (math.log(self.ratio[1]) - math.log(self.ratio[0])) * self._rand(b, device=device)
        aspect = log_r.exp()
        w = (area * aspect).sqrt().clamp(max=1.0)  # crop width and height as fractions of the image
        h = (area / aspect).sqrt().clamp(max=1.0)
        cx = (1 - w) * (2 * self._rand(b, device=device) - 1)  # crop centre in [-1, 1] coordinates
        cy = (1 - h) * (2 * self._rand(b, device=device) - 1)
        flip = torch.where(self._rand(b, device=device) < self.p_flip, -1.0, 1.0).to(device)
        theta = torch.zeros(b, 2, 3, device=device, dtype=x.dtype)  # [B, 2, 3] output -> input coordinates
        theta[:, 0, 0] = w * flip
        theta[:, 0, 2] = cx
        theta[:, 1, 1] = h
        theta[:, 1, 2] = cy
        grid = F.affine_grid(theta, [b, x.shape[1], self.size, self.size], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def color(self, x: torch.Tensor) -> torch.Tensor:
        """Colour jitter with probability ``p_jitter``, then grayscale with ``p_gray``."""
        b, device = x.shape[0], x.device
        bri, con, sat, hue = self.jitter
        on = (self._rand(b, device=device) < self.p_jitter).view(b, 1, 1, 1)

        def factor(strength):  # U(1 - s, 1 + s) per image, 1 where jitter is off
            f = 1 + strength * (2 * self._rand(b, device=device) - 1)
            return torch.where(on, f.view(b, 1, 1, 1), torch.ones_like(f).view(b, 1, 1, 1))

        for op in torch.randperm(4, generator=self.generator).tolist():
            if op == 0:
                x = (x * factor(bri)).clamp(0, 1)
            elif op == 1:
                mean = _gray(x).mean(dim=(1, 2, 3), keepdim=True)
                x = (mean + factor(con) * (x - mean)).clamp(0, 1)
            elif op == 2:
                g = _gray(x)
                x = (g + factor(sat) * (x - g)).clamp(0, 1)
            else:
                shift = (factor(hue) - 1).squeeze(1)  # [B, 1, 1] in [-hue, hue]
                hsv = rgb_to_hsv(x)
                hsv = torch.stack([(hsv[:, 0] + shift) % 1.0, hsv[:, 1], hsv[:, 2]], 1)
                x = hsv_to_rgb(hsv)
        gray = (self._rand(b, device=device) < self.p_gray).view(b, 1, 1, 1)
        return torch.where(gray, _gray(x).expand_as(x), x)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"BatchAugment expects [B, 3, H, W] images, got {tuple(images.shape)}")
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        return normalize(self.color(self.crop_flip(x)), self.mean, self.std)
