"""A small, general training loop with a progress bar on stdout.

Training runs a fixed number of steps, never a number of seconds: with the
seeds fixed, a run gives the same figures on any machine, however fast or
busy (an opt-in time cap says so when it cuts a run short).

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
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import nn
from tqdm.auto import tqdm

StepFn = Callable[[nn.Module, Any, torch.device], torch.Tensor]


@dataclass
class History:
    """Loss of every step, the steps planned, and the wall time of the whole run.

    ``capped`` is True when an opt-in time cap (``max_seconds``) stopped the
    run before its planned steps: its figures are then not the text's.
    """

    losses: list[float] = field(default_factory=list)
    epoch_means: list[float] = field(default_factory=list)
    seconds: float = 0.0
    planned: int = 0
    capped: bool = False

    @property
    def steps(self) -> int:
        return len(self.losses)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def batches(loader: Iterable, steps: int) -> Iterator[Any]:
    """Exactly ``steps`` batches of ``loader``, passing over it again whenever a pass ends (a loop of its own
    that trains by steps, such as a GAN's, runs ``for batch in batches(loader, steps)``)."""
    for _, batch in _passes(loader, steps):
        yield batch


def _passes(loader: Iterable, steps: int) -> Iterator[tuple[int, Any]]:
    """``(pass, batch)`` for ``steps`` batches, starting a new pass over ``loader`` whenever one ends.

    A seeded DataLoader's next pass continues its generator, so the order of
    every batch, and of every pass, is fixed by its seed.
    """
    done, epoch = 0, 0
    while done < steps:
        empty = True
        for batch in loader:
            empty = False
            yield epoch, batch
            done += 1
            if done == steps:
                return
        if empty:
            raise ValueError("the loader yields no batch: is the dataset smaller than one batch with drop_last=True?")
        epoch += 1


def train(
    model: nn.Module,
    loader: Iterable,
    step_fn: StepFn,
    *,
    steps: int | None = None,
    epochs: int | None = None,
    lr: float = 1e-3,
    weight_decay: float = 1e-6,
    optimizer: torch.optim.Optimizer | None = None,
    max_seconds: float | None = None,
    expect_seconds: float | None = None,
    device: torch.device | str = "cpu",
    desc: str = "train",
    progress: bool = True,
) -> History:
    """Train ``model`` with ``step_fn`` for exactly ``steps`` optimizer steps (or ``epochs`` passes over ``loader``).

    The number of steps, never a number of seconds, decides how far training
    goes, so that a seeded run gives the same losses and weights on a fast
    machine, a slow one or a busy one (only its time differs). ``loader`` is
    passed over again as often as ``steps`` needs. Adam with a cosine
    learning-rate decay over the ``steps``, unless an ``optimizer`` is given.

    ``max_seconds`` is an opt-in cap: it stops the run early and says so in one
    line (``History.capped``). ``expect_seconds`` is how long the run takes on
    the machine the text was measured on: a run on pace for over three times
    that says so in one line (a slow step function, such as a loss with a
    Python loop, or a busy machine), and trains on to its planned steps.
    A loss that is not finite stops training with a ``FloatingPointError``
    naming the step, rather than training on NaNs.
    """
    if steps is None:
        epochs = 1 if epochs is None else epochs
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        try:
            steps = epochs * len(loader)  # type: ignore[arg-type]
        except TypeError:
            raise ValueError("a loader without a length needs steps=, the number of steps to train") from None
    elif epochs is not None:
        raise ValueError("give steps= or epochs=, not both")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    device = torch.device(device)
    model.to(device).train()
    if optimizer is None:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    history = History(planned=steps)
    start = time.perf_counter()
    bar = tqdm(total=steps, desc=desc, file=sys.stdout, disable=not progress, leave=True)
    epoch_losses: list[float] = []
    current = 0
    check, halfway = max(10, steps // 10), 0.0  # the step at which the pace is judged, and the time halfway there
    for epoch, batch in _passes(loader, steps):
        if epoch != current:
            history.epoch_means.append(sum(epoch_losses) / len(epoch_losses))
            epoch_losses, current = [], epoch
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
        elapsed = time.perf_counter() - start
        if history.steps == check // 2:
            halfway = elapsed
        if expect_seconds and history.steps == check and check < steps:
            # the pace of the steps since halfway to the check, leaving out the first steps' warm-up
            projected = elapsed + (steps - check) * (elapsed - halfway) / (check - check // 2)
            if projected > 3 * expect_seconds:
                bar.write(f"{desc}: at this pace the {steps:,} steps take about {_duration(projected)} (the text's "
                          f"machine: {_duration(expect_seconds)}): a slow step (a loop in your loss?) or a busy "
                          f"machine; the figures will be the text's, only later", file=sys.stdout)
        if max_seconds is not None and elapsed >= max_seconds and history.steps < steps:
            history.capped = True
            break
    if epoch_losses:
        history.epoch_means.append(sum(epoch_losses) / len(epoch_losses))
    bar.close()
    history.seconds = time.perf_counter() - start
    if history.capped:
        print(f"{desc}: stopped by its time cap (max_seconds={max_seconds:g}) after {history.steps:,} of "
              f"{steps:,} steps: the figures below are not the text's")
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
    trained together on labelled batches with cross-entropy, by `train` (same options: ``steps=`` ...).

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
        payload["history"] = {"losses": history.losses, "epoch_means": history.epoch_means, "seconds": history.seconds,
                              "planned": history.planned, "capped": history.capped}
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
    history = History(list(h.get("losses", [])), list(h.get("epoch_means", [])), float(h.get("seconds", 0.0)),
                      int(h.get("planned", len(h.get("losses", [])))), bool(h.get("capped", False)))
    return history, dict(payload.get("extra", {}))
