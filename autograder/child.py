"""Entry point of the child process that runs a student's code for the grader.

Run as a script, never as part of the ``autograder`` package, so that a
sandbox only has to expose this file and ``channel.py`` next to it::

    python child.py READ_FD WRITE_FD

``READ_FD``/``WRITE_FD`` are inherited pipe ends: requests arrive on the
first, replies leave on the second, as :mod:`channel` frames (data only).
The working directory holds ``submission.txt`` (the student's source, e.g.
an :class:`autograder.extract.Extraction` source). Environment:
``AUTOGRADER_THREADS`` (torch threads, default 1),
``AUTOGRADER_STATEMENT_TIMEOUT`` (seconds one top-level statement may take
while loading, default 10), ``AUTOGRADER_LOG_BYTES`` (cap of the log, default
1 MiB).

Start-up:

1. fds 1 and 2 go to ``output.log`` in the working directory, and
   ``sys.stdout``/``sys.stderr`` write there through a writer that keeps the
   file under the cap (the oldest output is dropped). Prints cannot reach
   the channel.
2. The source is compiled with the file name ``<submission>`` and run one
   top-level statement at a time in a fresh module named ``submission``, so
   a failing (or, via ``SIGALRM``, overlong) statement is recorded and later
   definitions still load.
3. The child sends ``{"ready": True, "load_errors": [error, ...]}`` where an
   error is ``{"type": str, "message": str, "traceback": str, "line": int|None}``.

Then it answers requests, one reply each, until ``shutdown`` or EOF:

``{"op": "ping"}``
    -> ``{"ok": True, "value": "pong"}``
``{"op": "names"}``
    -> ``{"ok": True, "value": {name: is_callable, ...}}`` (dunder names left out)
``{"op": "shutdown"}``
    -> ``{"ok": True, "value": None}``, then the child exits at once (status 0).
``{"op": "call", "name": str, "args": list, "kwargs": dict, "options": dict}``
    -> ``{"ok": True, "value": result, "seconds": float, "grads": list|None,
    "args_after": {"args": list, "kwargs": dict}|None}``

    ``options`` (all optional):

    - ``grad_of``: list of positions (int) / keyword names (str) of floating
      tensor arguments; they get ``requires_grad``, and after the call
      ``torch.autograd.grad`` of the result (a tensor) with ``grad_output``
      (a tensor of the result's shape; default: gradient of ``result.sum()``)
      fills ``grads``, one entry per ``grad_of`` item (``None`` if unused).
    - ``return_args``: true to send back all arguments after the call in
      ``args_after`` (to check in-place changes, or their absence).
    - ``repeat`` (int >= 1) and ``warmup`` (int >= 0): timing mode. The call
      runs ``warmup`` times, then ``repeat`` timed times; ``seconds`` is the
      median, ``value`` is ``None``. Not combinable with the two above.
    - ``seed`` (int): seeds ``random`` and torch's global generator (and
      NumPy's, if the submission imported it) just before the call, so that
      random functions (augmentations) give the same draws on every run.
    - ``then_call``: a list of argument lists; the call's result must be a
      callable (e.g. a transform), and ``value`` becomes the list of its
      results on each argument list. Not combinable with ``grad_of`` or timing.
    - ``substitute``: list of distinct names (identifiers, not dunder) that,
      for the duration of this request only, are bound in the ``submission``
      module's globals to stubs that call back to the grader (see below). The
      original bindings (or their absence) are restored afterwards, also when
      the student's code raised. A stub kept by the student and called outside
      its request raises ``RuntimeError``. Works with timing, too (each call
      of a stub is one callback).

    Without timing, ``seconds`` is the duration of the one call (callbacks
    included). CUDA is synchronised around timed calls when it is in use.

Callbacks. While a ``call`` with ``substitute`` runs, calling the stub of
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
``torch.autograd.Function``: if ``value`` is a tensor, backpropagating through
it sends::

    {"callback": name, "phase": "backward", "args": list, "kwargs": dict,
     "grad_output": Tensor}

(the same ``args``/``kwargs``) and expects ``{"ok": True, "value": [grad or
None, ...]}``, one entry per positional argument (``None`` for non-tensors and
unused ones). Tensors in ``kwargs``, and results that are not one tensor, are
constants for autograd. Several callbacks may precede the final reply.

Any request may fail with ``{"ok": False, "kind": kind, "type": str,
"message": str, "traceback": str}``; ``kind`` is ``"exception"`` (the
student's code raised, or returned something that cannot be sent),
``"missing"`` (no such callable) or ``"request"`` (the request is malformed).
``traceback`` keeps only frames of ``<submission>``.

Arguments are plain channel values, except that a dict with a ``"__build__"``
key is replaced by an object from :data:`BUILDERS` (``{"__build__": "mlp",
...}``, ``{"__build__": "generator", "seed": 0}``). Results and arguments sent
back turn ``nn.Module`` into its ``state_dict()`` (tensors, in registration
order) and ``torch.Generator`` into its ``get_state()`` tensor.
"""
from __future__ import annotations

import __future__
import ast
import io
import linecache
import os
import random
import signal
import statistics
import sys
import threading
import time
import traceback
import types
from typing import Any, Callable

import torch

import channel  # copied next to this file by the launcher

FILENAME = "<submission>"
SOURCE_FILE = "submission.txt"
LOG_FILE = "output.log"
ENV_THREADS = "AUTOGRADER_THREADS"
ENV_STATEMENT_TIMEOUT = "AUTOGRADER_STATEMENT_TIMEOUT"
ENV_LOG_BYTES = "AUTOGRADER_LOG_BYTES"
_TRUNCATED = b"[... earlier output dropped ...]\n"
_MISSING = object()  # a substituted name the submission did not define


class RequestError(Exception):
    """The grader's request is malformed (reported with kind ``"request"``)."""


class _StatementTimeout(BaseException):
    """Raised by SIGALRM in a top-level statement that runs too long."""


# --------------------------------------------------------------------------- output


class CappedLog(io.RawIOBase):
    """Raw writer to ``fd`` (a file opened with ``O_APPEND``) that keeps it near ``cap`` bytes.

    When a write would push the file past ``cap``, the file is cut down to
    its last ``cap // 2`` bytes (this write included) behind a marker line.
    The size is only re-read (``fstat``) when this writer's own count says the
    cap may be reached; writes that bypass it (raw ``os.write(1, ...)``, C
    code) are bounded by the launcher's RLIMIT_FSIZE instead.
    """

    def __init__(self, fd: int, cap: int):
        super().__init__()
        self._fd = fd
        self._cap = cap
        self._size = os.fstat(fd).st_size  # last fstat + own writes since: a lower bound

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def write(self, b: Any) -> int:
        data = bytes(b)
        if self._size + len(data) > self._cap:
            self._size = os.fstat(self._fd).st_size
        if self._size + len(data) > self._cap:
            keep = self._cap // 2
            if len(data) >= keep:
                data = data[-keep:]
            else:
                old = keep - len(data)
                data = os.pread(self._fd, old, max(0, self._size - old)) + data
            os.ftruncate(self._fd, 0)
            data = _TRUNCATED + data
            self._size = 0
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        self._size += len(data)
        return len(b)


def redirect_output(cap: int) -> None:
    """Send fds 1/2 and ``sys.stdout``/``sys.stderr`` to the capped ``LOG_FILE``.

    Both streams share one line-buffered writer, so each printed line costs
    one ``write`` and is on disk before the next line starts.
    """
    fd = os.open(LOG_FILE, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    raw = io.BufferedWriter(CappedLog(1, cap))
    sys.stdout = sys.stderr = io.TextIOWrapper(raw, encoding="utf-8",
                                               errors="backslashreplace", line_buffering=True)


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


def _failure(kind: str, exc_type: str, message: str, tb: str = "") -> dict:
    return {"ok": False, "kind": kind, "type": exc_type, "message": message, "traceback": tb}


def _exception_reply(exc: BaseException) -> dict:
    return {"ok": False, "kind": "exception", **error_info(exc)}


# --------------------------------------------------------------------------- loading


def load_submission(source: str, statement_timeout: float
                    ) -> tuple[types.ModuleType, list[dict]]:
    """Run ``source`` statement by statement in a new ``submission`` module.

    Returns the module and the load errors (see the module docstring). A
    statement that raises (anything, ``SystemExit`` included) or runs longer
    than ``statement_timeout`` seconds is recorded and skipped.
    """
    module = types.ModuleType("submission")
    sys.modules["submission"] = module
    linecache.cache[FILENAME] = (len(source), None, source.splitlines(True), FILENAME)
    try:
        tree = ast.parse(source, FILENAME)
    except (SyntaxError, ValueError) as e:
        return module, [dict(error_info(e), line=getattr(e, "lineno", None))]
    errors = []
    flags = 0
    signal.signal(signal.SIGALRM, _raise_statement_timeout)
    for node in tree.body:
        line = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", ())])
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            for alias in node.names:
                flags |= getattr(getattr(__future__, alias.name, None), "compiler_flag", 0)
        try:
            code = compile(ast.Module(body=[node], type_ignores=[]), FILENAME, "exec",
                           flags=flags, dont_inherit=True)
            signal.setitimer(signal.ITIMER_REAL, statement_timeout)
            try:
                exec(code, module.__dict__)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except _StatementTimeout:
            errors.append({"type": "TimeoutError", "line": line, "traceback": "",
                           "message": f"the top-level statement at line {line} ran longer "
                                      f"than {statement_timeout:g}s and was stopped"})
        except BaseException as e:  # SystemExit at load time must not end the child
            errors.append(dict(error_info(e), line=line))
    return module, errors


def _raise_statement_timeout(signum: int, frame: Any) -> None:
    raise _StatementTimeout()


# --------------------------------------------------------------------------- builders


def _build_mlp(spec: dict) -> torch.nn.Sequential:
    """``{"sizes": [d0, d1, ..., dn], "bias": bool=True, "seed": int|None,
    "state_dict": {str: Tensor}|None}`` -> ``Sequential(Linear(d0, d1), ReLU(), ...,
    Linear(dn-1, dn))``; ``seed`` seeds the default init, ``state_dict`` replaces it."""
    _check_keys(spec, "mlp", required={"sizes"}, optional={"bias", "seed", "state_dict"})
    sizes, bias = spec["sizes"], spec.get("bias", True)
    seed, state = spec.get("seed"), spec.get("state_dict")
    if type(sizes) is not list or len(sizes) < 2 or \
            any(type(n) is not int or n < 1 for n in sizes):
        raise RequestError(f"mlp: sizes must be a list of at least 2 positive ints, got {sizes!r}")
    if type(bias) is not bool or (seed is not None and type(seed) is not int) or \
            (state is not None and type(state) is not dict):
        raise RequestError("mlp: bias must be a bool, seed an int, state_dict a dict")
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        layers: list[torch.nn.Module] = []
        for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
            layers += [torch.nn.ReLU()] if i else []
            layers.append(torch.nn.Linear(n_in, n_out, bias=bias))
        model = torch.nn.Sequential(*layers)
    if state is not None:
        try:
            model.load_state_dict(state, strict=True)
        except (RuntimeError, TypeError, KeyError) as e:
            raise RequestError(f"mlp: state_dict does not fit sizes {sizes}: {e}") from None
    return model


def _build_generator(spec: dict) -> torch.Generator:
    """``{"seed": int}`` -> a CPU ``torch.Generator`` seeded with it."""
    _check_keys(spec, "generator", required={"seed"}, optional=set())
    if type(spec["seed"]) is not int:
        raise RequestError(f"generator: seed must be an int, got {spec['seed']!r}")
    return torch.Generator().manual_seed(spec["seed"])


def _build_pil_image(spec: dict) -> Any:
    """``{"array": uint8 Tensor [H, W, 3] or [H, W]}`` -> a ``PIL.Image`` (RGB or L)."""
    _check_keys(spec, "pil_image", required={"array"}, optional=set())
    array = spec["array"]
    if type(array) is not torch.Tensor or array.dtype != torch.uint8 or array.dim() not in (2, 3) \
            or (array.dim() == 3 and array.shape[2] != 3):
        raise RequestError("pil_image: array must be a uint8 tensor [H, W, 3] or [H, W]")
    from PIL import Image

    return Image.fromarray(array.numpy())


BUILDERS: dict[str, Callable[[dict], Any]] = {
    "mlp": _build_mlp,
    "generator": _build_generator,
    "pil_image": _build_pil_image,
}
"""Kinds of ``{"__build__": kind, ...}`` argument specs the child can turn into objects."""


def _check_keys(spec: dict, what: str, required: set, optional: set) -> None:
    keys = set(spec) - {"__build__"}
    if not required <= keys or not keys <= required | optional:
        raise RequestError(f"{what}: expected keys {sorted(required)} and optionally "
                           f"{sorted(optional)}, got {sorted(keys)}")


def build(value: Any, depth: int = 0) -> Any:
    """``value`` with every ``{"__build__": kind, ...}`` dict replaced by its object."""
    if depth > channel.DEFAULT_MAX_DEPTH:
        raise RequestError("arguments nested too deeply")
    if type(value) is dict and "__build__" in value:
        builder = BUILDERS.get(value["__build__"]) if type(value["__build__"]) is str else None
        if builder is None:
            raise RequestError(f"unknown __build__ kind {value['__build__']!r}; known: "
                               f"{', '.join(BUILDERS)}")
        return builder(value)
    if type(value) in (list, tuple):
        return type(value)(build(v, depth + 1) for v in value)
    if type(value) is dict:
        return {k: build(v, depth + 1) for k, v in value.items()}
    return value


def _tv_tensor_types() -> set:
    """torchvision's tensor subclasses (Image, Video, Mask, ...) if torchvision is loaded."""
    tv = sys.modules.get("torchvision.tv_tensors")
    if tv is None:
        return set()
    return {v for v in vars(tv).values() if isinstance(v, type) and issubclass(v, torch.Tensor)}


def export(value: Any, depth: int = 0) -> Any:
    """``value`` with modules as ``state_dict()`` and generators as ``get_state()``.

    Other objects are left for :func:`channel.encode` to accept or refuse.
    """
    if depth > channel.DEFAULT_MAX_DEPTH:
        return value  # the encoder reports the depth
    if isinstance(value, torch.nn.Module):
        return dict(value.state_dict())
    if type(value) in _tv_tensor_types():  # torchvision's ToImage() gives these; send plain tensors
        return torch.Tensor.as_subclass(value, torch.Tensor)
    if type(value) is torch.Generator:
        return value.get_state()
    if type(value) in (list, tuple):
        return type(value)(export(v, depth + 1) for v in value)
    if type(value) is dict:
        return {k: export(v, depth + 1) for k, v in value.items()}
    return value


# --------------------------------------------------------------------------- calls


def _seed(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed(seed % 2**32)


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


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


class _Substitution:
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
    """Autograd through a :class:`_Substitution`: both passes are callbacks."""

    @staticmethod
    def forward(ctx: Any, sub: _Substitution, kwargs: dict, *args: Any) -> Any:
        positions = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor)]
        ctx.sub, ctx.kwargs, ctx.positions = sub, kwargs, positions
        ctx.args = [None if i in positions else a for i, a in enumerate(args)]
        ctx.save_for_backward(*(args[i] for i in positions))
        value = sub.forward(args, kwargs)
        if isinstance(value, torch.Tensor) and not value.is_floating_point():
            ctx.mark_non_differentiable(value)
        elif type(value) is tuple:  # only one tensor is supported: the others are constants
            ctx.mark_non_differentiable(*(v for v in value if isinstance(v, torch.Tensor)))
        return value

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, *grad_outputs: Any) -> Any:
        args = list(ctx.args)
        for i, tensor in zip(ctx.positions, ctx.saved_tensors):
            args[i] = tensor
        sub = ctx.sub
        if len(grad_outputs) != 1 or not isinstance(grad_outputs[0], torch.Tensor):
            raise RuntimeError(f"gradients through the grader's {sub.name} need it to "
                               "return one tensor")
        grads = sub.ask("backward", args, ctx.kwargs, grad_output=channel.plain(grad_outputs[0]))
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
            return _failure("request", "RequestError", str(e))

    def call(self, request: dict) -> dict:
        """Run one ``call`` request (see the module docstring)."""
        _check_keys(request, "call", required={"op", "name", "args", "kwargs"},
                    optional={"options"})
        name, args, kwargs = request["name"], request["args"], request["kwargs"]
        options = request.get("options", {})
        if type(name) is not str or type(args) is not list or type(kwargs) is not dict \
                or type(options) is not dict:
            raise RequestError("call: name must be a str, args a list, kwargs and options dicts")
        unknown = set(options) - {"grad_of", "grad_output", "return_args", "repeat", "warmup",
                                  "substitute", "seed", "then_call"}
        if unknown:
            raise RequestError(f"call: unknown options {sorted(unknown)}")
        substitute = self._substitute_names(options.get("substitute"))
        fn = vars(self.module).get(name)
        if fn is None and name not in vars(self.module):
            return _failure("missing", "NameError", f"the submission does not define {name!r}")
        if not callable(fn):
            return _failure("missing", "TypeError", f"{name!r} is a {type(fn).__name__}, "
                                                    "not a function")
        args, kwargs = build(args), build(kwargs)
        inputs = None
        if "repeat" in options:
            self._check_timing(options)
        else:
            inputs = self._grad_inputs(options.get("grad_of"), args, kwargs)
        then_call = self._then_call_args(options)
        saved = self._bind(substitute)
        try:
            if "seed" in options:
                _seed(options["seed"])
            if then_call is not None:
                return self._call_then(fn, args, kwargs, then_call)
            if "repeat" in options:
                return self._time(name, fn, args, kwargs, options)
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
        if set(options) & {"grad_of", "grad_output", "return_args", "repeat"}:
            raise RequestError("then_call cannot be combined with grad_of, return_args or timing")
        return [build(c) for c in calls]

    @staticmethod
    def _call_then(fn: Callable, args: list, kwargs: dict, calls: list) -> dict:
        start = time.perf_counter()
        try:
            made = fn(*args, **kwargs)
            if not callable(made):
                raise TypeError(f"it returned a {type(made).__name__}, not a callable")
            value = [made(*c) for c in calls]
        except Exception as e:
            return _exception_reply(e)
        return {"ok": True, "value": export(value), "seconds": time.perf_counter() - start,
                "grads": None, "args_after": None}

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

    def _bind(self, names: list[str]) -> list[tuple[str, Any, _Substitution]]:
        """Bind each name to a stub; what :meth:`_restore` needs to undo it."""
        namespace = vars(self.module)
        saved = []
        for name in names:
            assert self.exchange is not None
            stub = _Substitution(name, self.exchange)
            saved.append((name, namespace.get(name, _MISSING), stub))
            namespace[name] = stub
        return saved

    def _restore(self, saved: list[tuple[str, Any, _Substitution]]) -> None:
        namespace = vars(self.module)
        for name, original, stub in saved:
            stub.active = False
            if original is _MISSING:
                namespace.pop(name, None)
            else:
                namespace[name] = original

    def _call(self, name: str, fn: Callable, args: list, kwargs: dict, options: dict,
              inputs: list | None) -> dict:
        start = time.perf_counter()
        try:
            value = fn(*args, **kwargs)
            _sync()
            seconds = time.perf_counter() - start
            grads = None if inputs is None else self._grads(name, value, inputs,
                                                            options.get("grad_output"))
        except RequestError:
            raise
        except Exception as e:
            return _exception_reply(e)
        return {"ok": True, "value": export(value), "seconds": seconds, "grads": grads,
                "args_after": {"args": export(args), "kwargs": export(kwargs)}
                if options.get("return_args") else None}

    @staticmethod
    def _grad_inputs(grad_of: Any, args: list, kwargs: dict) -> list | None:
        """The tensors named by ``grad_of``, now requiring grad (``None`` if not asked)."""
        if grad_of is None:
            return None
        if type(grad_of) is not list or not grad_of:
            raise RequestError("grad_of must be a non-empty list of positions and names")
        inputs = []
        for key in grad_of:
            if type(key) is int and 0 <= key < len(args):
                tensor = args[key]
            elif type(key) is str and key in kwargs:
                tensor = kwargs[key]
            else:
                raise RequestError(f"grad_of: {key!r} is not an argument of the call")
            if type(tensor) is not torch.Tensor or not tensor.is_floating_point():
                raise RequestError(f"grad_of: argument {key!r} is not a floating-point tensor")
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

    @staticmethod
    def _check_timing(options: dict) -> None:
        repeat, warmup = options["repeat"], options.get("warmup", 0)
        if type(repeat) is not int or repeat < 1 or type(warmup) is not int or warmup < 0:
            raise RequestError("repeat must be an int >= 1 and warmup an int >= 0")
        if set(options) & {"grad_of", "grad_output", "return_args"}:
            raise RequestError("timing (repeat) cannot be combined with grad_of/return_args")

    @staticmethod
    def _time(name: str, fn: Callable, args: list, kwargs: dict, options: dict) -> dict:
        repeat, warmup = options["repeat"], options.get("warmup", 0)
        times = []
        try:
            for i in range(warmup + repeat):
                _sync()
                start = time.perf_counter()
                fn(*args, **kwargs)
                _sync()
                if i >= warmup:
                    times.append(time.perf_counter() - start)
        except Exception as e:
            return _exception_reply(e)
        return {"ok": True, "value": None, "seconds": statistics.median(times),
                "grads": None, "args_after": None}


def unencodable(request: Any, error: channel.EncodeError) -> dict:
    """The failure reply for a reply whose ``error.path`` part cannot be sent."""
    name = request.get("name", "?") if type(request) is dict else "?"
    if error.path[:1] != ("value",):
        return _failure("exception", "TypeError", f"the reply to {name!r} cannot be sent: "
                                                  f"{error}")
    where = f" a value whose element {channel.format_path(error.path[1:])} is" \
        if error.path[1:] else ""
    return _failure("exception", "TypeError", f"{name!r} returned{where} {error.reason}")


# --------------------------------------------------------------------------- main


def main(argv: list[str]) -> int:
    """Serve requests on the fds in ``argv``; the exit status."""
    if len(argv) != 3 or not all(a.isdigit() for a in argv[1:]):
        print("usage: child.py READ_FD WRITE_FD", file=sys.stderr)
        return 2
    read_fd, write_fd = int(argv[1]), int(argv[2])
    redirect_output(int(os.environ.get(ENV_LOG_BYTES, 1 << 20)))
    torch.set_num_threads(int(os.environ.get(ENV_THREADS, "1")))
    with open(SOURCE_FILE, encoding="utf-8", errors="replace") as f:
        source = f.read()
    module, load_errors = load_submission(
        source, float(os.environ.get(ENV_STATEMENT_TIMEOUT, "10")))
    channel.send(write_fd, {"ready": True, "load_errors": load_errors})
    server = Server(module, channel_exchange(read_fd, write_fd))
    while True:
        try:
            request = channel.recv(read_fd)
        except channel.ChannelClosed:
            return 0
        reply = server.handle(request)
        try:
            channel.send(write_fd, reply)
        except channel.EncodeError as e:
            channel.send(write_fd, unencodable(request, e))
        except Exception as e:  # e.g. a tensor whose storage cannot be read: report, don't die
            channel.send(write_fd, _failure("exception", type(e).__name__,
                                            f"the result could not be sent back: {e}"))
        if server.done:
            sys.stdout.flush()
            os._exit(0)  # skip interpreter teardown: slow with torch, runs student atexit hooks


if __name__ == "__main__":
    sys.exit(main(sys.argv))
