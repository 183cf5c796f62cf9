"""Small helpers the notebooks use to check and time student code.

- `rel_error`: the CS231n-style relative error between two arrays or tensors.
- `time_function`, `speedup`: warm-up then the median of repeats; the ratio of
  two functions timed in the same run (what "vectorized" checks compare).
- `choose_device`, `seed_everything`: CUDA when present; reproducible runs.
- `fast_mode`: True when the environment asks for the quick CI run.
"""
from __future__ import annotations

import os
import random
import statistics
import time
from typing import Any, Callable

import numpy as np
import torch

FAST_ENV = "SSL_KIT_FAST"


def fast_mode() -> bool:
    """True when ``SSL_KIT_FAST`` is set to 1/true/yes (the quick CI run)."""
    return os.environ.get(FAST_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def rel_error(x: Any, y: Any, eps: float = 1e-10) -> float:
    """Max over elements of ``|x - y| / max(eps, |x| + |y|)``.

    Accepts tensors, arrays or Python numbers of the same shape. 0 means
    equal; below about 1e-6 is float32 round-off for well-conditioned values.
    """
    x = np.asarray(x.detach().cpu().double() if torch.is_tensor(x) else x, dtype=np.float64)
    y = np.asarray(y.detach().cpu().double() if torch.is_tensor(y) else y, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"rel_error: shapes differ, got {x.shape} and {y.shape}")
    if x.size == 0:
        return 0.0
    return float(np.max(np.abs(x - y) / np.maximum(eps, np.abs(x) + np.abs(y))))


def choose_device(prefer: str | None = None) -> torch.device:
    """``prefer`` if given, else CUDA when available, else CPU."""
    if prefer is not None:
        return torch.device(prefer)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA); returns a seeded CPU generator."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _sync(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def time_function(
    fn: Callable[[], Any],
    *,
    repeats: int = 7,
    warmup: int = 2,
    device: torch.device | str | None = None,
) -> float:
    """Median wall time of ``fn()`` in seconds, after ``warmup`` untimed calls."""
    if repeats < 1:
        raise ValueError(f"time_function: repeats must be >= 1, got {repeats}")
    device = torch.device(device) if device is not None else None
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def speedup(
    slow: Callable[[], Any],
    fast: Callable[[], Any],
    *,
    repeats: int = 7,
    warmup: int = 2,
    device: torch.device | str | None = None,
) -> tuple[float, float, float]:
    """Time two functions in one run; returns ``(t_slow, t_fast, t_slow / t_fast)``.

    The two are interleaved repeat by repeat, so that a burst of load on a
    shared machine hits both alike and the ratio stays meaningful.
    """
    t_slow, t_fast = [], []
    for _ in range(repeats):
        t_slow.append(time_function(slow, repeats=1, warmup=warmup, device=device))
        t_fast.append(time_function(fast, repeats=1, warmup=warmup, device=device))
        warmup = 0
    ts, tf = statistics.median(t_slow), statistics.median(t_fast)
    return ts, tf, ts / max(tf, 1e-12)


def autograding() -> bool:
    """True while ``nbgrader autograde`` runs the notebook (skip long training then)."""
    return os.environ.get("NBGRADER_EXECUTION", "") == "autograde"


def is_implemented(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
    """False if ``fn(*args, **kwargs)`` raises NotImplementedError (a starter stub).

    Any other exception propagates, so that a real bug is shown, not hidden.
    """
    try:
        fn(*args, **kwargs)
    except NotImplementedError:
        return False
    return True
