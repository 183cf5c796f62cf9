"""What the hidden suites share: seeded inputs, the reference's value in float64, tolerances.

May import: torch only (a helper of the suites, loaded with them; never copied next to a student's code).
"""
from __future__ import annotations

import torch


def randn(shape, seed: int, dtype: torch.dtype = torch.float32, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
    """A seeded normal tensor of ``shape``, drawn in float64 (the same values in every dtype), then cast."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * scale + shift).to(dtype)


def unit(x: torch.Tensor) -> torch.Tensor:
    """Rows (last dim) scaled to unit length."""
    return x / x.norm(dim=-1, keepdim=True)


def tol(dtype: torch.dtype) -> dict:
    """Tolerances any correct implementation meets in that dtype (a stabilising eps of up to 1e-6 on a norm
    included, on inputs of ordinary scale)."""
    return dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-6, atol=1e-9)


def want(fn, *args):
    """The reference's value, computed in float64 and returned in the dtype of the first tensor argument
    (every tensor of the result, if it returns a tuple; integer tensors are left alone)."""
    dtype = next(a.dtype for a in args if isinstance(a, torch.Tensor))
    value = fn(*[a.double() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args])
    cast = lambda v: v.to(dtype) if isinstance(v, torch.Tensor) and v.is_floating_point() else v  # noqa: E731
    return tuple(cast(v) for v in value) if isinstance(value, tuple) else cast(value)
