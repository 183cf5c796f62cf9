"""The grader's answers to the child's callbacks: trusted code computes, only data crosses.

While a call with ``substitute=`` runs, the child's stubs for the substituted
names send their arguments back (``child_substitute.py``); the grader
computes the trusted callable on them (the value under ``no_grad``, or the
gradients for a backward pass) and sends back data only.
"""
from __future__ import annotations

from typing import Callable, Mapping

import torch

from . import channel

CALLBACK_MAX_ELEMENTS = 1 << 20
CALLBACK_MAX_SIDE = 4096
"""Largest callback arguments the grader computes its reference on (so that a child cannot
make it allocate, e.g., a 100000 x 100000 similarity matrix)."""


class CallbackViolation(Exception):
    """The child sent a callback the grader must not answer; the child is not to be trusted any more."""


def check_substitute(substitute: Mapping[str, Callable] | None) -> dict[str, Callable]:
    """``substitute`` as a dict, checked: identifiers (not dunder) to callables."""
    if substitute is None:
        return {}
    if not isinstance(substitute, Mapping):
        raise TypeError(f"substitute must be a mapping of names to callables, got "
                        f"{type(substitute).__name__}")
    callbacks = dict(substitute)
    for key, fn in callbacks.items():
        if type(key) is not str or not key.isidentifier() or key.startswith("__"):
            raise ValueError(f"substitute: {key!r} is not a name that can be substituted")
        if not callable(fn):
            raise TypeError(f"substitute: the value for {key!r} is not callable")
    return callbacks


def callback_grads(fn: Callable, args: list, kwargs: dict, grad_output: torch.Tensor
                    ) -> list:
    """Gradients for ``grad_output`` of ``fn(*args, **kwargs)`` (a tensor, or the one floating-point tensor of
    a tuple) with respect to each floating tensor of ``args``; ``None`` for the other arguments and unused ones."""
    inputs = [a.detach().requires_grad_(True)
              if type(a) is torch.Tensor and a.is_floating_point() else a for a in args]
    with torch.enable_grad():
        out = fn(*inputs, **kwargs)
    if type(out) is tuple:
        floating = [v for v in out if isinstance(v, torch.Tensor) and v.is_floating_point()]
        out = floating[0] if len(floating) == 1 else out
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"gradients need a tensor result, got a {type(out).__name__}")
    if grad_output.shape != out.shape:
        raise ValueError(f"grad_output has shape {tuple(grad_output.shape)}, the result "
                         f"{tuple(out.shape)}")
    leaves = [a for a in inputs if type(a) is torch.Tensor and a.requires_grad]
    if leaves and out.requires_grad:
        grad_output = grad_output.to(device=out.device, dtype=out.dtype)
        grads = list(torch.autograd.grad(out, leaves, grad_output, allow_unused=True))
    else:
        grads = [None] * len(leaves)
    found = iter(grads)
    return [next(found) if type(a) is torch.Tensor and a.requires_grad else None
            for a in inputs]


def answer_callback(message: dict, callbacks: Mapping[str, Callable], what: str) -> dict:
    """The answer to one callback message of the child (see ``child_substitute.py``).

    The message must be exactly ``{"callback": name, "phase": "forward",
    "args": list, "kwargs": dict}`` or the same with ``"phase":
    "backward"`` and a ``"grad_output"`` tensor, for a ``name`` in
    ``callbacks``; anything else raises :class:`CallbackViolation` (the
    caller kills the child: a ``"protocol"`` failure).
    Forward: ``{"ok": True, "value": fn(*args, **kwargs)}`` computed under
    ``no_grad``. Backward: ``fn`` is recomputed with the floating tensors
    of ``args`` requiring grad, and the value is the list of their
    gradients for ``grad_output`` (``None`` for other arguments and
    unused ones). If ``fn`` raises, the answer is ``{"ok": False,
    "message": "Type: message"}``.
    """
    phase, name = message.get("phase"), message.get("callback")
    keys = {"callback", "phase", "args", "kwargs"} | \
        ({"grad_output"} if phase == "backward" else set())
    if phase not in ("forward", "backward") or set(message) != keys \
            or type(name) is not str or type(message["args"]) is not list \
            or type(message["kwargs"]) is not dict \
            or (phase == "backward" and type(message["grad_output"]) is not torch.Tensor):
        raise CallbackViolation(f"the student process sent a malformed callback during {what}")
    fn = callbacks.get(name)
    if fn is None:
        raise CallbackViolation(f"the student process asked for the grader's {name!r:.100} "
                                f"during {what}, which is not substituted there")
    args, kwargs = message["args"], message["kwargs"]
    tensors = [t for t in [*args, *kwargs.values()] if type(t) is torch.Tensor]
    if sum(t.numel() for t in tensors) > CALLBACK_MAX_ELEMENTS or \
            any(n > CALLBACK_MAX_SIDE for t in tensors for n in t.shape):
        return {"ok": False, "message": f"arguments too large for the grader's {name} (at most "
                                        f"{CALLBACK_MAX_ELEMENTS} elements and {CALLBACK_MAX_SIDE} per side)"}
    try:
        if phase == "forward":
            with torch.no_grad():
                value = fn(*args, **kwargs)
        else:
            value = callback_grads(fn, args, kwargs, message["grad_output"])
    except Exception as e:
        text = f"{type(e).__name__}: {e}"
        return {"ok": False, "message": text if len(text) <= 2000 else text[:2000] + "..."}
    return {"ok": True, "value": channel.plain(value)}
