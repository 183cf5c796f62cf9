"""The child's side of the requests: what each asks for and how it is answered.

Imported by ``child.py`` (run as a script next to this file), never as part
of the ``autograder`` package.

Requests, one reply each:

``{"op": "ping"}``
    -> ``{"ok": True, "value": "pong"}``
``{"op": "names"}``
    -> ``{"ok": True, "value": {name: is_callable, ...}}`` (dunder names left out)
``{"op": "shutdown"}``
    -> ``{"ok": True, "value": None}``, then the child exits at once (status 0).
``{"op": "call", "name": str, "args": list, "kwargs": dict, "options": dict}``
    -> ``{"ok": True, "value": result, "grads": list|None,
    "args_after": {"args": list, "kwargs": dict}|None, "graph": list|None}``

    ``options`` (all optional):

    - ``grad_of``: list of positions (int) / keyword names (str) of floating
      tensor arguments; they get ``requires_grad``, and after the call
      ``torch.autograd.grad`` of the result (a tensor) with ``grad_output``
      (a tensor of the result's shape; default: gradient of ``result.sum()``)
      fills ``grads``, one entry per ``grad_of`` item (``None`` if unused).
    - ``grad_of_item`` (int, with ``grad_of``): the result is a tuple or list
      and the gradients are those of its element at this index.
    - ``requires_grad``: list of positions / names of floating tensor
      arguments that get ``requires_grad`` before the call, without any
      gradient computed (to see whether the function keeps them in a graph).
    - ``report_graph``: true to send back in ``graph``, per positional
      argument after the call, whether it is attached to autograd: for a
      tensor, ``requires_grad``; for a module, whether any parameter is not
      a leaf (an in-place update built a graph into it) or any buffer
      requires grad; ``None`` for anything else.
    - ``return_args``: true to send back all arguments after the call in
      ``args_after`` (to check in-place changes, or their absence).
    - ``seed`` (int): seeds ``random`` and torch's global generator (and
      NumPy's, if the submission imported it) just before the call, so that
      random functions (augmentations) give the same draws on every run.
    - ``then_call``: a list of argument lists; the call's result must be a
      callable (e.g. a transform), and ``value`` becomes the list of its
      results on each argument list. Not combinable with ``grad_of``.
    - ``substitute``: list of distinct names (identifiers, not dunder) that,
      for the duration of this request only, are bound in the ``submission``
      module's globals to stubs that call back to the grader (see below). The
      original bindings (or their absence) are restored afterwards, also when
      the student's code raised. A stub kept by the student and called outside
      its request raises ``RuntimeError``.

    There is no timing mode: the grader times calls itself, from its side of
    the channel, with ordinary requests, so a timed call looks like any other
    and the child reports no time at all (its clocks are the student's).
    CUDA is synchronised before the reply when in use.

Any request may fail with ``{"ok": False, "kind": kind, "type": str,
"message": str, "traceback": str}``; ``kind`` is ``"exception"`` (the
student's code raised, or returned something that cannot be sent),
``"missing"`` (no such callable) or ``"request"`` (the request is malformed).
``traceback`` keeps only frames of ``<submission>``.

"""
from __future__ import annotations

import os
import random
import sys
import traceback
import types
from typing import Any, Callable

import torch

import channel  # the child's files import each other by bare names
from child_substitute import Exchange, Substitution
from child_values import RequestError, attached, build, check_keys, export

FILENAME = "<submission>"
_MISSING = object()  # a substituted name the submission did not define


# --------------------------------------------------------------------------- errors


def error_info(exc: BaseException) -> dict:
    """``{"type", "message", "traceback"}`` of ``exc``, with only ``<submission>`` frames."""
    try:
        message = str(exc)
    except BaseException:  # a student's __str__ may raise anything
        message = "<the exception's message could not be printed>"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == FILENAME]
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames)] \
        if frames else []
    try:
        lines += traceback.format_exception_only(type(exc), exc)
    except BaseException:
        lines.append(f"{type(exc).__name__}: {message}\n")
    return {"type": type(exc).__name__, "message": message, "traceback": "".join(lines)}


def failure(kind: str, exc_type: str, message: str, tb: str = "") -> dict:
    return {"ok": False, "kind": kind, "type": exc_type, "message": message, "traceback": tb}


def _exception_reply(exc: BaseException) -> dict:
    return {"ok": False, "kind": "exception", **error_info(exc)}


# --------------------------------------------------------------------------- calls


def _seed(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed(seed % 2**32)


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


ENV_DEVICE = "AUTOGRADER_CHILD_DEVICE"  # must match launch.ENV_DEVICE (this file cannot import it)


def _device() -> torch.device:
    """The grading device: tensor arguments are moved there (the channel carries CPU bytes)."""
    return torch.device(os.environ.get(ENV_DEVICE) or "cpu")


def _to_device(value: Any, device: torch.device) -> Any:
    if type(value) is torch.Tensor:
        return value.to(device)
    if type(value) in (list, tuple):
        return type(value)(_to_device(v, device) for v in value)
    if type(value) is dict:
        return {k: _to_device(v, device) for k, v in value.items()}
    return value


def _off_device(value: Any, device: torch.device) -> torch.device | None:
    """The device of the first tensor in ``value`` that is not on ``device``, if any."""
    if isinstance(value, torch.Tensor):
        return value.device if value.device.type != device.type else None
    if type(value) in (list, tuple):
        return next((d for d in (_off_device(v, device) for v in value) if d is not None), None)
    if type(value) is dict:
        return next((d for d in (_off_device(v, device) for v in value.values()) if d is not None), None)
    return None


class Server:
    """Answers requests against the loaded ``module``.

    ``exchange`` carries the callbacks of substituted names to the grader
    (:func:`channel_exchange`); without it, ``substitute`` is refused.
    """

    def __init__(self, module: types.ModuleType, exchange: Exchange | None = None):
        self.module = module
        self.exchange = exchange
        self.done = False  # set by a shutdown request

    def handle(self, request: Any) -> dict:
        """The reply to one request (never raises ``Exception``)."""
        op = request.get("op") if type(request) is dict else None
        try:
            if op == "ping":
                return {"ok": True, "value": "pong"}
            if op == "names":
                return {"ok": True, "value": {k: callable(v) for k, v in
                                              vars(self.module).items()
                                              if not (k.startswith("__") and k.endswith("__"))}}
            if op == "shutdown":
                self.done = True
                return {"ok": True, "value": None}
            if op == "call":
                return self.call(request)
            raise RequestError(f"unknown request {request!r:.200}")
        except RequestError as e:
            return failure("request", "RequestError", str(e))

    def call(self, request: dict) -> dict:
        """Run one ``call`` request (see the module docstring)."""
        check_keys(request, "call", required={"op", "name", "args", "kwargs"},
                    optional={"options"})
        name, args, kwargs = request["name"], request["args"], request["kwargs"]
        options = request.get("options", {})
        if type(name) is not str or type(args) is not list or type(kwargs) is not dict \
                or type(options) is not dict:
            raise RequestError("call: name must be a str, args a list, kwargs and options dicts")
        unknown = set(options) - {"grad_of", "grad_of_item", "grad_output", "return_args", "substitute", "seed",
                                  "then_call", "requires_grad", "report_graph"}
        if unknown:
            raise RequestError(f"call: unknown options {sorted(unknown)}")
        if "grad_of_item" in options and type(options["grad_of_item"]) is not int:  # before the student's code runs
            raise RequestError(f"grad_of_item must be an int, got {options['grad_of_item']!r:.50}")
        substitute = self._substitute_names(options.get("substitute"))
        fn = vars(self.module).get(name)
        if fn is None and name not in vars(self.module):
            return failure("missing", "NameError", f"the submission does not define {name!r}")
        if not callable(fn):
            return failure("missing", "TypeError", f"{name!r} is a {type(fn).__name__}, "
                                                    "not a function")
        args, kwargs = build(args), build(kwargs)
        then_call = self._then_call_args(options)
        device = _device()
        if device.type != "cpu" and then_call is None:  # (a transform gets what a data loader would give it)
            args, kwargs = _to_device(args, device), _to_device(kwargs, device)
        inputs = self._grad_inputs(options.get("grad_of"), args, kwargs)
        self._grad_inputs(options.get("requires_grad"), args, kwargs, what="requires_grad")
        saved = self._bind(substitute)
        try:
            if "seed" in options:
                _seed(options["seed"])
            if then_call is not None:
                return self._call_then(fn, args, kwargs, then_call)
            return self._call(name, fn, args, kwargs, options, inputs)
        finally:
            self._restore(saved)

    @staticmethod
    def _then_call_args(options: dict) -> list | None:
        if "seed" in options and type(options["seed"]) is not int:
            raise RequestError(f"seed must be an int, got {options['seed']!r:.50}")
        if "then_call" not in options:
            return None
        calls = options["then_call"]
        if type(calls) is not list or not all(type(c) is list for c in calls):
            raise RequestError("then_call must be a list of argument lists")
        if set(options) & {"grad_of", "grad_of_item", "grad_output", "return_args", "requires_grad", "report_graph"}:
            raise RequestError("then_call cannot be combined with grad_of, requires_grad, return_args or "
                               "report_graph")
        return [build(c) for c in calls]

    @staticmethod
    def _call_then(fn: Callable, args: list, kwargs: dict, calls: list) -> dict:
        try:
            made = fn(*args, **kwargs)
            if not callable(made):
                raise TypeError(f"it returned a {type(made).__name__}, not a callable")
            value = [made(*c) for c in calls]
        except Exception as e:
            return _exception_reply(e)
        return {"ok": True, "value": export(value), "grads": None, "args_after": None, "graph": None}

    def _substitute_names(self, names: Any) -> list[str]:
        if names is None:
            return []
        if type(names) is not list or not all(
                type(n) is str and n.isidentifier() and not n.startswith("__") for n in names) \
                or len(set(names)) != len(names):
            raise RequestError("substitute must be a list of distinct identifiers (not dunder "
                               f"names), got {names!r:.200}")
        if names and self.exchange is None:
            raise RequestError("substitute needs a channel to the grader")
        return names

    def _bind(self, names: list[str]) -> list[tuple[str, Any, Substitution]]:
        """Bind each name to a stub; what :meth:`_restore` needs to undo it."""
        namespace = vars(self.module)
        saved = []
        for name in names:
            assert self.exchange is not None
            stub = Substitution(name, self.exchange)
            saved.append((name, namespace.get(name, _MISSING), stub))
            namespace[name] = stub
        return saved

    def _restore(self, saved: list[tuple[str, Any, Substitution]]) -> None:
        namespace = vars(self.module)
        for name, original, stub in saved:
            stub.active = False
            if original is _MISSING:
                namespace.pop(name, None)
            else:
                namespace[name] = original

    def _call(self, name: str, fn: Callable, args: list, kwargs: dict, options: dict,
              inputs: list | None) -> dict:
        try:
            value = fn(*args, **kwargs)
            _sync()
            device = _device()
            elsewhere = _off_device(value, device) if device.type != "cpu" else None
            if elsewhere is not None:
                return failure("exception", "RuntimeError",
                               f"{name!r} returned a tensor on {elsewhere.type}, but its inputs are on "
                               f"{device.type}: keep the inputs' device (create tensors with device=x.device)")
            if inputs is not None and "grad_of_item" in options:
                value_for_grad = _item(name, value, options["grad_of_item"])
            else:
                value_for_grad = value
            grads = None if inputs is None else self._grads(name, value_for_grad, inputs,
                                                            options.get("grad_output"))
        except RequestError:
            raise
        except Exception as e:
            return _exception_reply(e)
        return {"ok": True, "value": export(value), "grads": grads,
                "args_after": {"args": export(args), "kwargs": export(kwargs)}
                if options.get("return_args") else None,
                "graph": [attached(a) for a in args] if options.get("report_graph") else None}

    @staticmethod
    def _grad_inputs(grad_of: Any, args: list, kwargs: dict, what: str = "grad_of") -> list | None:
        """The tensors named by ``grad_of`` (or ``requires_grad``: ``what``), now requiring grad
        (``None`` if not asked)."""
        if grad_of is None:
            return None
        if type(grad_of) is not list or not grad_of:
            raise RequestError(f"{what} must be a non-empty list of positions and names")
        inputs = []
        for key in grad_of:
            if type(key) is int and 0 <= key < len(args):
                tensor = args[key]
            elif type(key) is str and key in kwargs:
                tensor = kwargs[key]
            else:
                raise RequestError(f"{what}: {key!r} is not an argument of the call")
            if type(tensor) is not torch.Tensor or not tensor.is_floating_point():
                raise RequestError(f"{what}: argument {key!r} is not a floating-point tensor")
            inputs.append(tensor.requires_grad_(True))
        return inputs

    @staticmethod
    def _grads(name: str, value: Any, inputs: list, grad_output: Any) -> list:
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name!r} returned a {type(value).__name__}, but gradients "
                            "need it to return a tensor")
        if not value.requires_grad:
            raise RuntimeError(f"the result of {name!r} is not connected to its inputs by "
                               "autograd (detached, computed in numpy or under no_grad?)")
        if grad_output is not None:
            if type(grad_output) is not torch.Tensor or grad_output.shape != value.shape:
                raise RequestError(f"grad_output must be a tensor of shape "
                                   f"{tuple(value.shape)}")
            grad_output = grad_output.to(dtype=value.dtype, device=value.device)
        elif value.dim():
            value = value.sum()
        grads = torch.autograd.grad(value, inputs, grad_outputs=grad_output,
                                    allow_unused=True)
        return [None if g is None else g.detach() for g in grads]


def _item(name: str, value: Any, index: int) -> Any:
    """Element ``index`` of a tuple or list result (``grad_of_item``)."""
    if not isinstance(value, (tuple, list)) or not -len(value) <= index < len(value):
        raise TypeError(f"{name!r} returned {type(value).__name__}; gradients are taken of element {index} of "
                        "the tuple it should return")
    return value[index]


def unencodable(request: Any, error: channel.EncodeError) -> dict:
    """The failure reply for a reply whose ``error.path`` part cannot be sent."""
    name = request.get("name", "?") if type(request) is dict else "?"
    if error.path[:1] != ("value",):
        return failure("exception", "TypeError", f"the reply to {name!r} cannot be sent: "
                                                  f"{error}")
    where = f" a value whose element {channel.format_path(error.path[1:])} is" \
        if error.path[1:] else ""
    return failure("exception", "TypeError", f"{name!r} returned{where} {error.reason}")
