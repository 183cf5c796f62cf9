"""Small networks sized for CPU training on 32x32 images.

- `ResNetEncoder`: a ResNet-style encoder (stem, three stages of basic blocks,
  global average pooling) mapping ``[B, 3, 32, 32]`` to ``[B, feature_dim]``.
- `ProjectionHead`: SimCLR's MLP ``g`` mapping features to the space where
  the contrastive loss is computed; thrown away after pre-training.
- `SimCLRModel`: an encoder and a head; ``forward`` returns ``(h, z)``.
- `SplitBatchNorm`, `split_batchnorms`: BatchNorm over groups of the batch, so that one process
  normalises as several GPUs would (what makes MoCo's shuffling BN matter on one process).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection. ``[B, Cin, H, W] -> [B, Cout, H/s, W/s]``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNetEncoder(nn.Module):
    """ResNet-style encoder ``f`` for small images.

    Args:
        width: channels of the first stage; stages have ``width, 2*width, 4*width``.
        blocks_per_stage: basic blocks in each of the three stages.
        in_channels: 3 for RGB, 1 for the L channel of colorization.
        stem_stride: 1 keeps full resolution in the first stage (GPU, CIFAR-10);
            2 halves it, about 4x less compute (the CPU default of the notebooks).

    Shape:
        input ``[B, in_channels, H, W]`` (H, W >= 8), output ``[B, 4*width]``.
        ``forward_features`` returns the last feature map ``[B, 4*width, H/(4s), W/(4s)]``
        for ``s = stem_stride``.
    """

    def __init__(self, width: int = 32, blocks_per_stage: int = 1, in_channels: int = 3, stem_stride: int = 1):
        super().__init__()
        if width < 1 or blocks_per_stage < 1:
            raise ValueError(f"width and blocks_per_stage must be >= 1, got {width}, {blocks_per_stage}")
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stem_stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        )
        stages, channels = [], width
        for i, out_channels in enumerate((width, 2 * width, 4 * width)):
            for b in range(blocks_per_stage):
                stride = 2 if (b == 0 and i > 0) else 1
                stages.append(BasicBlock(channels, out_channels, stride))
                channels = out_channels
        self.stages = nn.Sequential(*stages)
        self.feature_dim = channels

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x).mean(dim=(2, 3))  # global average pool: [B, C, h, w] -> [B, C]


class ProjectionHead(nn.Module):
    """SimCLR's projection ``g``: Linear -> BN -> ReLU -> Linear. ``[B, in_dim] -> [B, out_dim]``."""

    def __init__(self, in_dim: int, hidden_dim: int = 128, out_dim: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim, bias=False),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


class SimCLRModel(nn.Module):
    """Encoder ``f`` and projection head ``g``; ``forward(x) -> (h, z)``.

    Shape: ``x [B, 3, H, W]`` -> ``h [B, encoder.feature_dim]``, ``z [B, out_dim]``.
    """

    def __init__(self, encoder: nn.Module | None = None, hidden_dim: int = 128, out_dim: int = 64):
        super().__init__()
        self.encoder = encoder if encoder is not None else ResNetEncoder()
        self.head = ProjectionHead(self.encoder.feature_dim, hidden_dim, out_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return h, self.head(h)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class SplitBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training-mode statistics are computed over ``num_splits`` groups of the batch
    (rows ``i`` with the same ``i % num_splits``), as ``num_splits`` GPUs would; eval mode is BatchNorm2d's.

    Shape: ``[N, C, H, W] -> [N, C, H, W]`` with ``N`` a multiple of ``num_splits``. Its state dict is a
    BatchNorm2d's (the running statistics are the mean over the groups).
    """

    def __init__(self, num_features: int, num_splits: int):
        super().__init__(num_features)
        self.num_splits = num_splits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.num_splits == 1:
            return super().forward(x)
        n, c, h, w = x.shape
        s = self.num_splits
        mean, var = self.running_mean.repeat(s), self.running_var.repeat(s)
        out = F.batch_norm(x.reshape(n // s, c * s, h, w), mean, var, self.weight.repeat(s), self.bias.repeat(s),
                           True, self.momentum, self.eps).reshape(n, c, h, w)
        with torch.no_grad():
            self.running_mean.copy_(mean.view(s, c).mean(0))
            self.running_var.copy_(var.view(s, c).mean(0))
            self.num_batches_tracked += 1
        return out


def split_batchnorms(module: nn.Module, num_splits: int) -> nn.Module:
    """Replace every BatchNorm2d of ``module`` by a `SplitBatchNorm` (in place; the same parameters)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d) and not isinstance(child, SplitBatchNorm):
            split = SplitBatchNorm(child.num_features, num_splits)
            split.load_state_dict(child.state_dict())
            setattr(module, name, split)
        else:
            split_batchnorms(child, num_splits)
    return module
