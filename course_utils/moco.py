"""MoCo's plumbing: the two encoders, the queue and a training step built from the student's functions.

The notebook's graded functions (momentum update, enqueue, logits and loss, batch shuffle) are passed in,
so that the step trains with the student's code; this module only keeps the state and records what the
notebook's pictures show (how far the key encoder trails the query encoder, how old each queue slot is,
the cosines of the positive and of the hardest negative).

Shapes: images ``[B, 3, H, W]``; projections ``[B, D]``; the queue ``[K, D]``, L2-normalised rows.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .models import SimCLRModel


@dataclass
class MoCoFunctions:
    """The student's graded functions the step calls."""

    momentum_update: Callable
    enqueue: Callable
    moco_logits: Callable
    moco_loss: Callable
    batch_shuffle: Callable
    batch_unshuffle: Callable


@dataclass
class MoCoTrace:
    """What one training run recorded, one entry per logged step."""

    steps: list[int] = field(default_factory=list)
    distance: dict[float, list[float]] = field(default_factory=dict)  # {m: ||theta_k - theta_q|| / ||theta_q||}
    positive: list[float] = field(default_factory=list)           # mean q.k (a cosine)
    hardest_negative: list[float] = field(default_factory=list)   # mean over queries of the largest q.queue


class MoCo(nn.Module):
    """Query encoder (trained), key encoder (a momentum copy), and the queue of keys with their ages.

    ``forward`` is the query encoder: ``x [B, 3, H, W] -> (h, z)``. ``shadow_m``: momenta of extra
    copies that only follow the query encoder's parameters (they encode nothing), to show how far a key
    encoder with another m would trail the same query encoder (`shadows`).
    """

    def __init__(self, encoder: nn.Module, queue_size: int = 4096, out_dim: int = 64,
                 shadow_m: tuple[float, ...] = ()):
        super().__init__()
        self.query = SimCLRModel(encoder, out_dim=out_dim)
        self.key = copy.deepcopy(self.query)
        for p in self.key.parameters():
            p.requires_grad_(False)
        self.shadow_m = tuple(shadow_m)
        self.shadows = nn.ModuleList(copy.deepcopy(self.key) for _ in self.shadow_m)
        g = torch.Generator().manual_seed(0)
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, out_dim, generator=g), dim=1))
        self.register_buffer("written_at", torch.full((queue_size,), -1, dtype=torch.long))  # step of each slot
        self.ptr = 0
        self.step_count = 0

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.query(x)

    def key_distance(self, key: nn.Module | None = None) -> float:
        """How far the key encoder's (or a shadow's) parameters are from the query encoder's, relative to the
        latter."""
        key = self.key if key is None else key
        diff = sum(((pk - pq) ** 2).sum() for pq, pk in zip(self.query.parameters(), key.parameters()))
        norm = sum((pq ** 2).sum() for pq in self.query.parameters())
        return float((diff / norm).sqrt())

    def queue_age(self) -> torch.Tensor:
        """``[K]``: how many steps ago each slot was written (-1: still the random initial keys)."""
        return torch.where(self.written_at >= 0, self.step_count - self.written_at, torch.full_like(self.written_at, -1))


def moco_step(fns: MoCoFunctions, *, m: float, tau: float, augment: Callable, trace: MoCoTrace | None = None,
              log_every: int = 10, shuffle: bool = True) -> Callable:
    """A step function for `training.train`: one MoCo v2 step with the student's functions.

    Query views go through the query encoder; key views through the key encoder after its momentum
    update, shuffled within the batch (shuffling BN on one process) and unshuffled after; the loss is
    the student's ``moco_loss``; the keys are enqueued after the logits are computed.
    """
    def step(model: MoCo, batch, device):
        images, _ = batch
        images = images.to(device)
        _, q = model(augment(images))
        q = F.normalize(q, dim=1)
        with torch.no_grad():
            fns.momentum_update(model.query, model.key, m)
            for shadow_m, shadow in zip(model.shadow_m, model.shadows):
                fns.momentum_update(model.query, shadow, shadow_m)
            x_k = augment(images)
            if shuffle:
                x_k, unshuffle = fns.batch_shuffle(x_k)
            _, k = model.key(x_k)
            k = F.normalize(k, dim=1)
            if shuffle:
                k = fns.batch_unshuffle(k, unshuffle)
        loss = fns.moco_loss(q, k, model.queue.clone(), tau)  # a copy: enqueue writes the queue before backward
        if trace is not None and model.step_count % log_every == 0:
            with torch.no_grad():
                trace.steps.append(model.step_count)
                for key_m, key in ((m, model.key), *zip(model.shadow_m, model.shadows)):
                    trace.distance.setdefault(key_m, []).append(model.key_distance(key))
                trace.positive.append(float((q * k).sum(1).mean()))
                trace.hardest_negative.append(float((q @ model.queue.T).max(dim=1).values.mean()))
        n = len(k)
        rows = (model.ptr + torch.arange(n, device=k.device)) % len(model.queue)
        model.ptr = fns.enqueue(model.queue, model.ptr, k)
        model.written_at[rows] = model.step_count
        model.step_count += 1
        return loss

    return step
