"""How a check calls the student's code, wherever it runs: in a child process or in this one.

`RemoteStudent` wraps a `StudentProcess` (the local command and Gradescope:
the student's code runs in a sandboxed child, only data crosses);
`LocalStudent` calls the definitions of a namespace in this process (the
solution notebook's globals, the kit's tests). Both take ``substitutes``: for
each graded function, the reference versions of the graded functions it is
meant to call (`points.DEPENDS`).

Timing (`Student.timed`) is done by the grader around ordinary calls: the
student's process reports no time that is used, cannot tell a timed call
from a checked one, and is stopped (`Student.paused`) while the reference is
timed. What the channel adds to a call is measured on a trusted child
running the reference (`RemoteStudent`'s ``twin``), never on the student's.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import sys
import time
import traceback
import types
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

import torch

from ..isolation.student_process import CallResult, StudentError, StudentProcess


class Student(Protocol):
    """How a check calls the student's code, wherever it runs."""

    def call(self, name: str, *args: Any, grad_of=None, grad_output=None, return_args: bool = False,
             then_call: Sequence[Sequence[Any]] | None = None, seed: int | None = None,
             **kwargs: Any) -> CallResult: ...

    def timed(self, name: str, *args: Any) -> tuple[CallResult, float]:
        """Call ``name(*args)`` once; the result and the seconds the grader measured for the student's code."""
        ...

    def paused(self) -> contextlib.AbstractContextManager:
        """A block during which none of the student's processes runs."""
        ...

    def channel_overhead(self, name: str, inputs: Sequence[Sequence[Any]], local_seconds: float) -> float:
        """Seconds the channel adds to one call of ``name`` on arguments like ``inputs``, given that the
        reference takes ``local_seconds`` in this process."""
        ...


_SPECS = {"pil_image": "a PIL image", "mlp": "an MLP", "generator": "a torch.Generator"}
OPTIONS = frozenset({"grad_of", "grad_of_item", "grad_output", "return_args", "then_call", "seed", "timeout",
                     "substitute", "requires_grad", "report_graph"})
"""Keywords of `Student.call` that are the grader's options, not the student function's arguments."""


def describe(value: Any) -> str:
    """``float32 [4, 8]`` for a tensor, the type name otherwise."""
    if type(value) is torch.Tensor:
        return f"{str(value.dtype).replace('torch.', '')} {list(value.shape)}"
    return type(value).__name__


def _describe_argument(value: Any) -> str:
    if type(value) is torch.Tensor:
        return describe(value)
    if isinstance(value, dict) and value.get("__build__") in _SPECS:
        return _SPECS[value["__build__"]]
    text = repr(value)
    if len(text) <= 40:
        return text
    return f"{type(value).__name__} of length {len(value)}" if hasattr(value, "__len__") else text[:37] + "..."


def describe_call(name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    """``sim(float32 [3], float32 [3])``, ``simclr_loss_vectorized(float32 [4, 8], float32 [4, 8], tau=0.5)``:
    a call as the student's feedback names it (tensors by dtype and shape)."""
    parts = [_describe_argument(a) for a in args]
    parts += [f"{k}={_describe_argument(v)}" for k, v in kwargs.items() if k not in OPTIONS]
    return f"{name}({', '.join(parts)})"


@contextlib.contextmanager
def _naming(name: str, args: Sequence[Any], kwargs: Mapping[str, Any]):
    """Name the call in a `StudentError` raised in the block (its feedback then says which call failed)."""
    try:
        yield
    except StudentError as e:
        e.call = e.call or describe_call(name, args, kwargs)
        raise


class RemoteStudent:
    """The student's definitions in a `StudentProcess` (local command, Gradescope).

    ``substitutes[f]`` maps the graded functions that ``f`` calls to the
    reference versions, used by ``call`` (not by ``time``).
    """

    def __init__(self, process: StudentProcess, substitutes: Mapping[str, Mapping[str, Callable]] | None = None,
                 twin: StudentProcess | None = None):
        self.process = process
        self.device = process.device  # where the student's code runs: the speed check times the reference there
        self.substitutes = dict(substitutes or {})
        self.substitute_when_timing = False  # set by run_checks to re-time with the reference dependencies
        self._twin = twin  # a child running the reference (launched or not), up by the first timing

    def call(self, name, *args, **options) -> CallResult:
        with _naming(name, args, options):
            return self.process.call(name, *args, substitute=self.substitutes.get(name) or None, **options)

    def timed(self, name, *args) -> tuple[CallResult, float]:
        substitute = (self.substitutes.get(name) if self.substitute_when_timing else None) or None
        with _naming(name, args, {}):
            result = self.process.call(name, *args, substitute=substitute)
        seconds = self.process.own_seconds(result, substitute)
        if seconds < result.seconds:  # the callbacks' answers were left out: so is their channel latency
            seconds = max(0.0, seconds - result.callbacks * self._latency())
        return result, seconds

    def paused(self):
        return self.process.paused()

    def channel_overhead(self, name, inputs, local_seconds) -> float:
        twin = self._started_twin()
        if twin is None:
            return 0.0
        twin.call(name, *inputs[0])  # warm-up
        trips = [twin.call(name, *args).seconds for args in inputs]
        return max(0.0, min(trips) - local_seconds)

    def _latency(self) -> float:
        """The round trip of an empty request, measured on the twin (0 without one)."""
        twin = self._started_twin()
        if twin is None:
            return 0.0
        trips = []
        for _ in range(5):
            start = time.perf_counter()
            twin.ping()
            trips.append(time.perf_counter() - start)
        return min(trips)

    def _started_twin(self) -> StudentProcess | None:
        if self._twin is not None:
            self._twin.start()  # nothing to do once it is up
        return self._twin


@functools.lru_cache(maxsize=1)
def _child_values() -> types.ModuleType:
    """The child's own ``child_values`` (builders of argument specs, export of results), loaded here.

    The child's files import each other by bare names, so its ``channel`` is bound to this package's
    ``isolation.channel`` (the same file) while the module loads.
    """
    from ..isolation import channel

    path = Path(channel.__file__).with_name("child_values.py")
    spec = importlib.util.spec_from_file_location("_local_child_values", path)
    module = importlib.util.module_from_spec(spec)
    previous = sys.modules.get("channel")
    sys.modules["channel"] = channel
    try:
        spec.loader.exec_module(module)
    finally:
        if previous is None:
            sys.modules.pop("channel", None)
        else:
            sys.modules["channel"] = previous
    return module


def _local_build(value: Any) -> Any:
    """What the child's builders do (MLPs, generators, PIL images), in this process."""
    return _child_values().build(value)


def _local_export(value: Any) -> Any:
    """What the child sends back: modules as state_dicts, torchvision's tensor subclasses as plain tensors."""
    return _child_values().export(value)


def _detached(value: Any) -> Any:
    """Tensors detached (what crosses the channel), in lists, tuples and dicts."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    if type(value) in (list, tuple):
        return type(value)(_detached(v) for v in value)
    if type(value) is dict:
        return {k: _detached(v) for k, v in value.items()}
    return value


class LocalStudent:
    """The student's definitions in this process (an nbgrader kernel's globals).

    nbgrader runs the student's notebook in one kernel, so there is no
    isolation to keep; arguments are still cloned so that checks see what the
    student's code did to them.
    """

    def __init__(self, namespace: Mapping[str, Any], substitutes: Mapping[str, Mapping[str, Callable]] | None = None):
        self.namespace = namespace
        self.substitutes = dict(substitutes or {})
        self.substitute_when_timing = False

    @contextlib.contextmanager
    def _substituted(self, substitutes: Mapping[str, Callable]):
        """Bind ``substitutes`` in the namespace for the block; then restore the names (or their absence)."""
        saved = {n: self.namespace[n] for n in substitutes if n in self.namespace}
        try:
            self.namespace.update(substitutes)  # type: ignore[attr-defined]
            yield
        finally:
            for n in substitutes:
                self.namespace.pop(n, None)  # type: ignore[attr-defined]
            self.namespace.update(saved)  # type: ignore[attr-defined]

    def _function(self, name: str) -> Callable:
        fn = self.namespace.get(name)
        if not callable(fn):
            raise StudentError("missing", f"{name} is not defined: run the cell that defines it")
        return fn

    def call(self, name, *args, **kwargs) -> CallResult:
        with _naming(name, args, kwargs):
            return self._call(name, self.substitutes.get(name, {}), *args, **kwargs)

    def _call(self, name, substitutes, *args, grad_of=None, grad_output=None, return_args=False, then_call=None,
              seed=None, grad_of_item=None, requires_grad=None, report_graph=False, **kwargs) -> CallResult:
        fn = self._function(name)
        copy = lambda a: a.detach().clone() if isinstance(a, torch.Tensor) else _local_build(a)  # noqa: E731
        args, kwargs = [copy(a) for a in args], {k: copy(v) for k, v in kwargs.items()}
        keys = [grad_of] if isinstance(grad_of, (int, str)) else list(grad_of or [])
        inputs = [(args[k] if isinstance(k, int) else kwargs[k]).requires_grad_() for k in keys]
        for k in requires_grad or ():
            (args[k] if isinstance(k, int) else kwargs[k]).requires_grad_()
        if seed is not None:
            torch.manual_seed(seed)
        start = time.perf_counter()
        try:
            with self._substituted(substitutes):
                value = fn(*args, **kwargs)
                if then_call is not None:
                    value = [value(*[_local_build(x) for x in a]) for a in then_call]
                grads = None
                if keys:
                    target = value if grad_of_item is None else value[grad_of_item]
                    target = target if grad_output is not None else target.sum()
                    grads = dict(zip(keys, torch.autograd.grad(target, inputs, grad_outputs=grad_output,
                                                               allow_unused=True)))
        except StudentError:
            raise
        except Exception as e:  # the student's code raised
            tb = "".join(traceback.format_exception(type(e), e, e.__traceback__)[-3:])
            raise StudentError("exception", f"{type(e).__name__}: {e}", exc_type=type(e).__name__,
                               student_traceback=tb) from e
        seconds = time.perf_counter() - start
        graph = {i: _child_values().attached(a) for i, a in enumerate(args)} if report_graph else None
        value = _local_export(_detached(value))
        after = {**dict(enumerate(_local_export(_detached(args)))), **_local_export(_detached(kwargs))} \
            if return_args else None
        return CallResult(value, grads, after, "", seconds, graph=graph)

    def timed(self, name, *args) -> tuple[CallResult, float]:
        substitutes = self.substitutes.get(name, {}) if self.substitute_when_timing else {}
        with _naming(name, args, {}):
            result = self._call(name, substitutes, *args)
        return result, result.seconds

    def paused(self):
        return contextlib.nullcontext()  # one process: nothing else of the student's runs meanwhile

    def channel_overhead(self, name, inputs, local_seconds) -> float:
        return 0.0
