"""A small, general training loop with a progress bar on stdout.

The loop knows nothing about SimCLR or any other method: a *step function*
turns one batch into a scalar loss. nbgrader zeroes a graded cell that
writes to stderr, so the tqdm bar goes to stdout.

Example step function for SimCLR (the notebook passes the student's loss)::

    def step(model, batch, device):
        x1, x2, _ = batch
        _, z1 = model(x1.to(device))
        _, z2 = model(x2.to(device))
        return simclr_loss_vectorized(z1, z2, tau=0.5)
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn
from tqdm.auto import tqdm

StepFn = Callable[[nn.Module, Any, torch.device], torch.Tensor]


@dataclass
class History:
    """Loss of every step, and the wall time of the whole run."""

    losses: list[float] = field(default_factory=list)
    epoch_means: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def steps(self) -> int:
        return len(self.losses)


def train(
    model: nn.Module,
    loader: Iterable,
    step_fn: StepFn,
    *,
    epochs: int = 1,
    lr: float = 1e-3,
    weight_decay: float = 1e-6,
    optimizer: torch.optim.Optimizer | None = None,
    max_steps: int | None = None,
    max_seconds: float | None = None,
    device: torch.device | str = "cpu",
    desc: str = "train",
    progress: bool = True,
) -> History:
    """Train ``model`` with ``step_fn`` for ``epochs`` passes over ``loader``.

    Adam with a cosine learning-rate decay over the planned steps, unless an
    ``optimizer`` is given. Stops early after ``max_steps`` steps or
    ``max_seconds`` seconds, whichever comes first (the notebooks' budgets).
    A loss that is not finite stops training with a ``FloatingPointError``
    naming the step, rather than training on NaNs.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    device = torch.device(device)
    model.to(device).train()
    if optimizer is None:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    try:
        planned = epochs * len(loader)  # type: ignore[arg-type]
    except TypeError:
        planned = max_steps or 1
    if max_steps is not None:
        planned = min(planned, max_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, planned) / max(planned, 1)))
    )
    history = History()
    start = time.perf_counter()
    bar = tqdm(total=planned, desc=desc, file=sys.stdout, disable=not progress, leave=True)
    done = False
    for _ in range(epochs):
        epoch_losses = []
        for batch in loader:
            loss = step_fn(model, batch, device)
            if not torch.isfinite(loss):
                bar.close()
                raise FloatingPointError(f"loss is {loss.item()} at step {history.steps}: check the loss function")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            history.losses.append(loss.item())
            epoch_losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if (max_steps is not None and history.steps >= max_steps) or (
                max_seconds is not None and time.perf_counter() - start >= max_seconds
            ):
                done = True
                break
        if epoch_losses:
            history.epoch_means.append(sum(epoch_losses) / len(epoch_losses))
        if done:
            break
    bar.close()
    history.seconds = time.perf_counter() - start
    model.eval()
    return history


def train_supervised(
    encoder: nn.Module,
    loader: Iterable,
    *,
    num_classes: int,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    **train_options: Any,
) -> History:
    """The supervised upper bound of a linear probe: ``encoder`` and a linear classifier on its features,
    trained together on labelled batches with cross-entropy, by `train` (same options and budgets).

    ``loader`` yields ``(images [B, C, H, W], labels [B])``; ``augment`` (e.g. the method's own
    `BatchAugment`) is applied to each batch first, so that the comparison with a self-supervised encoder
    differs in the labels only. ``encoder`` must expose ``feature_dim``; it is trained in place.
    """
    classifier = nn.Sequential(encoder, nn.Linear(encoder.feature_dim, num_classes))

    def step(model: nn.Module, batch: Any, device: torch.device) -> torch.Tensor:
        images, labels = batch
        images = images.to(device)
        if augment is not None:
            images = augment(images)
        return nn.functional.cross_entropy(model(images), labels.to(device))

    train_options.setdefault("desc", "supervised")
    return train(classifier, loader, step, **train_options)


def save_checkpoint(path: str | Path, model: nn.Module, history: History | None = None, **extra: Any) -> Path:
    """Save the model's ``state_dict``, the loss history and any extra plain values."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"model": model.state_dict(), "extra": extra}
    if history is not None:
        payload["history"] = {"losses": history.losses, "epoch_means": history.epoch_means, "seconds": history.seconds}
    torch.save(payload, path)
    return path


def load_checkpoint(path: str | Path, model: nn.Module, map_location: str | torch.device = "cpu") -> tuple[History, dict]:
    """Load weights saved by `save_checkpoint` into ``model``; returns ``(history, extra)``.

    Loads with ``weights_only=True``: a checkpoint is data, never code.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}: train first, or check the path")
    payload = torch.load(path, map_location=map_location, weights_only=True)
    model.load_state_dict(payload["model"])
    h = payload.get("history") or {}
    history = History(list(h.get("losses", [])), list(h.get("epoch_means", [])), float(h.get("seconds", 0.0)))
    return history, dict(payload.get("extra", {}))
