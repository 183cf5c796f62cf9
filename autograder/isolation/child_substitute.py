"""Stubs in the child for names the grader substitutes: each call is a callback.

While a ``call`` with ``substitute`` runs, calling the stub of
``name`` with ``(*args, **kwargs)`` writes, on the reply pipe, instead of a
reply::

    {"callback": name, "phase": "forward", "args": list, "kwargs": dict}

and blocks until the grader answers on the request pipe with ``{"ok": True,
"value": value}`` (the stub returns ``value``) or ``{"ok": False, "message":
str}`` (the stub raises ``RuntimeError("grader's NAME failed: MESSAGE")``).
Tensors are sent detached, as plain CPU tensors; tensors in ``value`` are moved
to the device of the first tensor argument. Arguments that cannot be sent
make the stub raise ``TypeError``. When grad mode is on and a positional
argument is a tensor that requires grad, the stub is a
``torch.autograd.Function``: if ``value`` is a tensor (or a tuple holding
exactly one floating-point tensor, e.g. ``(logits, labels)``), backpropagating
through it sends::

    {"callback": name, "phase": "backward", "args": list, "kwargs": dict,
     "grad_output": Tensor}

(the same ``args``/``kwargs``) and expects ``{"ok": True, "value": [grad or
None, ...]}``, one entry per positional argument (``None`` for non-tensors and
unused ones). Tensors in ``kwargs``, and results that hold other than one
floating-point tensor, are constants for autograd. Several callbacks may precede the final reply.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

import torch

import channel  # the child's files are copied flat next to each other and import by bare names

Exchange = Callable[[dict], Any]
"""Sends one callback message to the grader and returns its answer."""


def channel_exchange(read_fd: int, write_fd: int) -> Exchange:
    """The :data:`Exchange` over the child's pipes: send on ``write_fd``, read on
    ``read_fd`` (no timeout: the grader bounds the whole call and kills the child)."""
    lock = threading.Lock()  # a student's threads cannot interleave two exchanges

    def exchange(message: dict) -> Any:
        with lock:
            channel.send(write_fd, message)
            return channel.recv(read_fd)

    return exchange


def _to_device(value: Any, device: torch.device | None, depth: int = 0) -> Any:
    if device is None or depth > channel.DEFAULT_MAX_DEPTH:
        return value
    if type(value) is torch.Tensor:
        return value.to(device)
    if type(value) in (list, tuple):
        return type(value)(_to_device(v, device, depth + 1) for v in value)
    if type(value) is dict:
        return {k: _to_device(v, device, depth + 1) for k, v in value.items()}
    return value


class Substitution:
    """The grader-side stand-in for one name during one ``call`` request."""

    def __init__(self, name: str, exchange: Exchange):
        self.name = name
        self.exchange = exchange
        self.active = True  # cleared when the request ends

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self.active:
            raise RuntimeError(f"{self.name!r} was replaced by the grader's version only "
                               "during an earlier call; it cannot be called any more")
        if torch.is_grad_enabled() and any(isinstance(a, torch.Tensor) and a.requires_grad
                                           for a in args):
            return _SubstituteFunction.apply(self, kwargs, *args)
        return self.forward(args, kwargs)

    def forward(self, args: tuple | list, kwargs: dict) -> Any:
        value = self.ask("forward", args, kwargs)
        device = next((a.device for a in [*args, *kwargs.values()]
                       if isinstance(a, torch.Tensor)), None)
        return _to_device(value, device)

    def ask(self, phase: str, args: tuple | list, kwargs: dict, **extra: Any) -> Any:
        """Send one callback and return the grader's value (or raise its failure)."""
        message = {"callback": self.name, "phase": phase, "args": channel.plain(list(args)),
                   "kwargs": channel.plain(dict(kwargs)), **extra}
        try:
            answer = self.exchange(message)
        except channel.EncodeError as e:
            raise TypeError(f"the arguments of {self.name!r} cannot be sent to the grader's "
                            f"version: {e}") from None
        except channel.ChannelError as e:
            raise RuntimeError(f"the grader's {self.name} did not answer: {e}") from None
        if type(answer) is dict and answer.get("ok") is True and set(answer) == {"ok", "value"}:
            return answer["value"]
        if type(answer) is dict and answer.get("ok") is False and \
                set(answer) == {"ok", "message"} and type(answer["message"]) is str:
            raise RuntimeError(f"grader's {self.name} failed: {answer['message']}")
        raise RuntimeError(f"the grader's {self.name} sent a malformed answer")


class _SubstituteFunction(torch.autograd.Function):
    """Autograd through a :class:`Substitution`: both passes are callbacks."""

    @staticmethod
    def forward(ctx: Any, sub: Substitution, kwargs: dict, *args: Any) -> Any:
        positions = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor)]
        ctx.sub, ctx.kwargs, ctx.positions = sub, kwargs, positions
        ctx.args = [None if i in positions else a for i, a in enumerate(args)]
        ctx.save_for_backward(*(args[i] for i in positions))
        value = sub.forward(args, kwargs)
        ctx.item = None  # the position of the differentiable tensor in a tuple result
        if isinstance(value, torch.Tensor) and not value.is_floating_point():
            ctx.mark_non_differentiable(value)
        elif type(value) is tuple:
            tensors = [i for i, v in enumerate(value) if isinstance(v, torch.Tensor)]
            floating = [i for i in tensors if value[i].is_floating_point()]
            ctx.item = floating[0] if len(floating) == 1 else -1  # -1: none is differentiable
            constants = [value[i] for i in tensors if i != ctx.item]
            if constants:
                ctx.mark_non_differentiable(*constants)
        return value

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, *grad_outputs: Any) -> Any:
        args = list(ctx.args)
        for i, tensor in zip(ctx.positions, ctx.saved_tensors):
            args[i] = tensor
        sub = ctx.sub
        grad_output = grad_outputs[0] if ctx.item is None and len(grad_outputs) == 1 else \
            grad_outputs[ctx.item] if ctx.item is not None and ctx.item >= 0 else None
        if not isinstance(grad_output, torch.Tensor):
            raise RuntimeError(f"gradients through the grader's {sub.name} need it to "
                               "return one floating-point tensor")
        grads = sub.ask("backward", args, ctx.kwargs, grad_output=channel.plain(grad_output))
        if type(grads) is not list or len(grads) != len(args):
            raise RuntimeError(f"the grader's {sub.name} sent {grads!r:.100} as the gradients "
                               f"of its {len(args)} arguments")
        out: list[Any] = [None, None]
        for arg, grad in zip(args, grads):
            if grad is None or not isinstance(arg, torch.Tensor):
                out.append(None)
            elif type(grad) is not torch.Tensor or grad.shape != arg.shape:
                raise RuntimeError(f"the grader's {sub.name} sent a gradient that does not "
                                   "match its argument's shape")
            else:
                out.append(grad.to(dtype=arg.dtype, device=arg.device))
        return tuple(out)
