"""What the hidden suites are written with, and the runner that scores them.

A suite (``autograder/suites/test_<notebook>.py``) is a pytest module whose
tests are registered with `graded`: each is one *check* of one graded
function (see `points.POINTS`), takes ``student`` and ``ref`` (the reference
module), and fails by raising `Failure` with a message for the student.

    @graded("03_simclr", "sim", "values")
    def test_sim_values(student, ref): ...

The same suite runs under pytest (``conftest.py`` makes the fixtures), under
`run_suite` for the local command and Gradescope (student code in a child
process: `RemoteStudent`), and inside an nbgrader kernel (`LocalStudent`).

Dependencies between graded functions (`points.DEPENDS`, declared by the
course, not read from the student's code): each function's ``values`` and
``gradients`` checks run with the *reference* in place of the graded
functions it is meant to call, so one bug costs the points of the function it
is in and nothing else. (The reference runs in the grader; in a child process
only tensors cross.) The ``vectorized`` check times the function as written;
if it is too slow, it is timed again with the reference dependencies, and if
it is fast then, the slowness is theirs and is not counted again. Speed earns
points only when the function's ``values`` check passed: a fast wrong answer
is worth nothing.
"""
from __future__ import annotations

import contextlib
import math
import time
import traceback
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

import torch

from .points import POINTS
from .results import CheckResult
from .student_process import CallResult, StudentError, StudentProcess


class Failure(AssertionError):
    """A check failed; the message is what the student reads."""


# --------------------------------------------------------------------------- registration


def graded(notebook: str, function: str, check: str):
    """Register a test as check ``check`` of ``notebook``'s graded ``function``."""
    if check not in POINTS.get(notebook, {}).get(function, {}):
        raise KeyError(f"{notebook}.{function}.{check} has no points in autograder/points.py")

    def mark(test):
        test.__graded__ = (notebook, function, check)
        return test

    return mark


def checks_of(suite: ModuleType) -> list[Callable]:
    """The registered tests of a suite module, in source order."""
    tests = [v for v in vars(suite).values() if callable(v) and hasattr(v, "__graded__")]
    return sorted(tests, key=lambda t: t.__code__.co_firstlineno)


# --------------------------------------------------------------------------- students


class Student(Protocol):
    """How a check calls the student's code, wherever it runs."""

    def call(self, name: str, *args: Any, grad_of=None, grad_output=None, return_args: bool = False,
             then_call: Sequence[Sequence[Any]] | None = None, seed: int | None = None,
             **kwargs: Any) -> CallResult: ...

    def time(self, name: str, *args: Any, repeats: int = 5, warmup: int = 1, **kwargs: Any) -> float: ...


class RemoteStudent:
    """The student's definitions in a `StudentProcess` (local command, Gradescope).

    ``substitutes[f]`` maps the graded functions that ``f`` calls to the
    reference versions, used by ``call`` (not by ``time``).
    """

    def __init__(self, process: StudentProcess, substitutes: Mapping[str, Mapping[str, Callable]] | None = None):
        self.process = process
        self.substitutes = dict(substitutes or {})
        self.substitute_when_timing = False  # set by run_checks to re-time with the reference dependencies

    def call(self, name, *args, **options) -> CallResult:
        return self.process.call(name, *args, substitute=self.substitutes.get(name) or None, **options)

    def time(self, name, *args, repeats=5, warmup=1, **kwargs) -> float:
        substitute = self.substitutes.get(name) if self.substitute_when_timing else None
        return self.process.time(name, *args, repeats=repeats, warmup=warmup, substitute=substitute or None, **kwargs)


def pil_image_spec(array: torch.Tensor) -> dict:
    """An argument that becomes a ``PIL.Image`` where the student's code runs (uint8 ``[H, W, 3]``)."""
    return {"__build__": "pil_image", "array": array}


def _local_build(value: Any) -> Any:
    """What the child's builders do, in this process (only PIL images are needed here)."""
    if isinstance(value, dict) and value.get("__build__") == "pil_image":
        from PIL import Image

        return Image.fromarray(value["array"].numpy())
    return value


def _local_export(value: Any) -> Any:
    """What the child sends back: torchvision's tensor subclasses become plain tensors."""
    if isinstance(value, list):
        return [_local_export(v) for v in value]
    if isinstance(value, torch.Tensor) and type(value).__module__.startswith("torchvision.tv_tensors"):
        return torch.Tensor.as_subclass(value, torch.Tensor)
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

    def call(self, name, *args, grad_of=None, grad_output=None, return_args=False, then_call=None, seed=None,
             **kwargs) -> CallResult:
        fn = self._function(name)
        copy = lambda a: a.detach().clone() if isinstance(a, torch.Tensor) else a  # noqa: E731
        args, kwargs = [copy(a) for a in args], {k: copy(v) for k, v in kwargs.items()}
        keys = [grad_of] if isinstance(grad_of, (int, str)) else list(grad_of or [])
        inputs = [(args[k] if isinstance(k, int) else kwargs[k]).requires_grad_() for k in keys]
        if seed is not None:
            torch.manual_seed(seed)
        start = time.perf_counter()
        try:
            with self._substituted(self.substitutes.get(name, {})):
                value = fn(*args, **kwargs)
                if then_call is not None:
                    value = [value(*[_local_build(x) for x in a]) for a in then_call]
                grads = None
                if keys:
                    target = value if grad_output is not None else value.sum()
                    grads = dict(zip(keys, torch.autograd.grad(target, inputs, grad_outputs=grad_output,
                                                               allow_unused=True)))
        except StudentError:
            raise
        except Exception as e:  # the student's code raised
            tb = "".join(traceback.format_exception(type(e), e, e.__traceback__)[-3:])
            raise StudentError("exception", f"{type(e).__name__}: {e}", exc_type=type(e).__name__,
                               student_traceback=tb) from e
        value = _local_export(value.detach() if isinstance(value, torch.Tensor) else value)
        after = {**dict(enumerate(args)), **kwargs} if return_args else None
        return CallResult(value, grads, after, "", time.perf_counter() - start)

    def time(self, name, *args, repeats=5, warmup=1, **kwargs) -> float:
        from course_utils.checks import time_function

        fn = self._function(name)
        with self._substituted(self.substitutes.get(name, {}) if self.substitute_when_timing else {}):
            return time_function(lambda: fn(*args, **kwargs), repeats=repeats, warmup=warmup)


# --------------------------------------------------------------------------- comparing


def describe(value: Any) -> str:
    """``float32 [4, 8]`` for a tensor, the type name otherwise."""
    if type(value) is torch.Tensor:
        return f"{str(value.dtype).replace('torch.', '')} {list(value.shape)}"
    return type(value).__name__


@dataclass
class Hint:
    """A known mistake: ``variant(*inputs)`` computes what it would give."""

    message: str
    variant: Callable[..., torch.Tensor]


def expect_tensor(got: Any, want: torch.Tensor, *, call: str, rtol: float = 1e-5, atol: float = 1e-6,
                  hints: Iterable[Hint] = (), inputs: Sequence[Any] = ()) -> None:
    """Fail with a message in the student's terms unless ``got`` matches ``want``.

    Escalates from type to shape to dtype to values, each saying what it got
    and what it expected; when the values are wrong and a known mistake in
    ``hints`` reproduces them, its message is added.
    """
    if type(got) is not torch.Tensor:
        raise Failure(f"{call} returned {describe(got)}; expected a torch.Tensor of shape {list(want.shape)}")
    if got.shape != want.shape:
        raise Failure(f"{call} returned shape {list(got.shape)}; expected {list(want.shape)}")
    if got.dtype != want.dtype:
        raise Failure(f"{call} returned dtype {got.dtype}; expected {want.dtype} (the dtype of the inputs)")
    if got.device != want.device:
        raise Failure(f"{call} returned a tensor on {got.device}; expected {want.device} (the inputs' device)")
    if torch.allclose(got.double(), want.double(), rtol=rtol, atol=atol, equal_nan=False):
        return
    message = f"{call} is wrong: {_difference(got, want)}"
    for hint in hints:
        try:
            variant = hint.variant(*inputs).to(want.dtype)
        except Exception:  # a hint that does not apply to these inputs
            continue
        if variant.shape == got.shape and torch.allclose(got.double(), variant.double(), rtol=1e-4, atol=1e-5):
            message += f"\nHint: {hint.message}"
            break
    raise Failure(message)


def _difference(got: torch.Tensor, want: torch.Tensor) -> str:
    if got.numel() == 1:
        ratio = got.double().item() / want.double().item() if want.item() != 0 else math.inf
        return f"got {got.item():.6g}, expected {want.item():.6g} (ratio {ratio:.3g})"
    g, w = got.detach().double(), want.detach().double()
    if not torch.isfinite(g).all():
        return f"it contains {int((~torch.isfinite(g)).sum())} non-finite values (nan or inf)"
    err = (g - w).abs()
    idx = tuple(int(i) for i in torch.unravel_index(err.argmax(), err.shape))
    return (f"largest difference {err.max().item():.3g} at index {list(idx)}: "
            f"got {g[idx].item():.6g}, expected {w[idx].item():.6g}")


def expect_unchanged(before: Sequence[torch.Tensor], after: Mapping[Any, Any] | None, *, call: str) -> None:
    """Fail if the function modified a tensor argument in place."""
    for i, b in enumerate(before):
        a = (after or {}).get(i)
        if type(a) is torch.Tensor and not torch.equal(a, b):
            raise Failure(f"{call} modified its argument {i} in place; compute new tensors instead "
                          "(e.g. x = x / n, not x /= n)")


def expect_vectorized(student: Student, name: str, args: Sequence[Any], *, reference: Callable,
                      loop: Callable, closeness: float = 0.8, rounds: int = 3) -> str:
    """Fail unless the student's ``name(*args)`` runs near the vectorized reference's speed.

    ``loop`` is the same computation written with a Python loop over the
    rows (one iteration per batch element, vectorized inside). The reference
    and the loop are timed in this process and the student's function in its
    own, all on one thread, interleaved over ``rounds`` (medians), so that load
    on a shared machine hits all alike. On a log scale from the reference (0)
    to the loop (1), the student's time must fall at or below ``closeness``:
    whole-tensor code, even a wasteful one (broadcasting instead of a matrix
    product), sits well below 0.8; a loop over the rows sits near 1. Returns
    the figures (for the staff).
    """
    from course_utils.checks import time_function

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t_s, t_r, t_l = [], [], []
        for _ in range(rounds):
            t_r.append(time_function(lambda: reference(*args), repeats=5, warmup=1))
            t_s.append(student.time(name, *args, repeats=5, warmup=1))
            t_l.append(time_function(lambda: loop(*args), repeats=3, warmup=1))
    finally:
        torch.set_num_threads(threads)
    ts, tr, tl = (sorted(t)[len(t) // 2] for t in (t_s, t_r, t_l))
    limit = tr * (tl / tr) ** closeness if tl > tr else 2 * tr
    figures = (f"yours {ts * 1e3:.3g} ms, reference {tr * 1e3:.3g} ms, a loop over the rows {tl * 1e3:.3g} ms, "
               f"limit {limit * 1e3:.3g} ms")
    if ts > limit:
        raise Failure(f"{name} is too slow ({figures}): it should have no Python loop over the batch, "
                      "positions or pairs; use whole-tensor operations")
    return figures


# --------------------------------------------------------------------------- running


def _student_feedback(error: StudentError, function: str) -> str:
    if error.kind == "missing":
        return f"{function} is not defined in your notebook (check its name and that its cell is kept)"
    if error.kind == "timeout":
        return f"{function} did not finish in time and was stopped ({error.message})"
    if error.kind == "crash":
        return f"running {function} stopped the Python process ({error.message}); was there sys.exit or os._exit?"
    if error.kind == "protocol":
        return f"running {function} broke the grader's channel ({error.message}); the process was restarted"
    if error.exc_type == "NotImplementedError":
        return f"{function} is not implemented yet (it raised NotImplementedError)"
    text = f"{function} raised {error.message}"
    if error.student_traceback:
        text += "\n" + error.student_traceback.rstrip()
    return text


def run_checks(tests: Iterable[Callable], student: Student, ref: ModuleType,
               functions: Iterable[str] | None = None) -> list[CheckResult]:
    """Run registered tests and score them (see the module docstring for dependencies).

    Only tests of ``functions`` run when given. Never raises for a student's
    mistake; a grader error scores 0 with its traceback in ``staff_note``.
    """
    wanted = set(functions) if functions is not None else None
    results: list[CheckResult] = []
    wrong: set[str] = set()
    for test in tests:
        notebook, function, check = test.__graded__
        if wanted is not None and function not in wanted:
            continue
        points = float(POINTS[notebook][function][check])
        start = time.perf_counter()
        score, feedback, note = 0.0, "", ""
        if check == "vectorized" and function in wrong:  # a fast wrong answer is worth nothing
            results.append(CheckResult(notebook, function, check, 0.0, points,
                                       "not timed: speed earns points once the values are right"))
            continue
        try:
            outcome = test(student, ref)
            score = points
            note = outcome if isinstance(outcome, str) else ""
        except Failure as e:
            feedback = str(e)
            if check == "vectorized" and _fast_with_reference_dependencies(test, student, ref, function):
                score, note = points, f"excused: {feedback}"
                feedback = (f"not counted: {function} is fast with the reference "
                            f"{' and '.join(student.substitutes[function])}, so its slowness is theirs "
                            "(they lose their own speed points)")
        except StudentError as e:
            feedback = _student_feedback(e, function)
        except Exception:  # a bug in the grader: the student is not told a story
            feedback = "the grader could not run this check; your course staff have been notified"
            note = traceback.format_exc()
        results.append(CheckResult(notebook, function, check, score, points, feedback, note,
                                   time.perf_counter() - start))
        if check == "values" and score < points:
            wrong.add(function)
    return results


def _fast_with_reference_dependencies(test: Callable, student: Student, ref: ModuleType, function: str) -> bool:
    """Re-time ``function`` with the reference in place of the graded functions it is meant
    to call: True if it is fast then (its slowness came from those, which pay for it)."""
    if not getattr(student, "substitutes", {}).get(function):
        return False
    student.substitute_when_timing = True  # type: ignore[attr-defined]
    try:
        test(student, ref)
        return True
    except (Failure, StudentError):
        return False
    finally:
        student.substitute_when_timing = False  # type: ignore[attr-defined]
