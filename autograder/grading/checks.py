"""What the hidden suites are written with: registering checks, and comparing what the student's code gave.

A suite (``autograder/suites/test_<notebook>.py``) is a pytest module whose
tests are registered with `graded`: each is one *check* of one graded
function (see `points.POINTS`), takes ``student`` (a `students.Student`) and
``ref`` (the reference module), and fails by raising `Failure` with a
message for the student::

    @graded("03_simclr", "sim", "values")
    def test_sim_values(student, ref): ...

`expect_tensor` compares a result with the reference's and names a known
mistake (`Hint`) when one reproduces the wrong values; `expect_vectorized`
times the student's function against the reference and a loop in one run.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

from ..isolation.student_process import StudentError
from .points import POINTS
from .students import Student, describe, describe_call  # noqa: F401 (the suites import them from here)


class Failure(AssertionError):
    """A check failed; the message is what the student reads."""


# --------------------------------------------------------------------------- registration


def graded(notebook: str, function: str, check: str):
    """Register a test as check ``check`` of ``notebook``'s graded ``function``."""
    if check not in POINTS.get(notebook, {}).get(function, {}):
        raise KeyError(f"{notebook}.{function}.{check} has no points in autograder/grading/points.py")

    def mark(test):
        test.__graded__ = (notebook, function, check)
        return test

    return mark


def checks_of(suite: ModuleType) -> list[Callable]:
    """The registered tests of a suite module, in source order."""
    tests = [v for v in vars(suite).values() if callable(v) and hasattr(v, "__graded__")]
    return sorted(tests, key=lambda t: t.__code__.co_firstlineno)

# --------------------------------------------------------------------------- comparing


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


def shape_hint(got: Any, want: torch.Tensor, shape_hints: Sequence[Hint], inputs: Sequence[Any]) -> str | None:
    """The message of the first of ``shape_hints`` (known mistakes whose ``variant(*inputs)`` returns the shape
    they give) that explains the wrong shape of ``got``; None if the shape is right or none explains it."""
    if type(got) is not torch.Tensor or got.shape == want.shape:
        return None
    for hint in shape_hints:
        try:
            shape = tuple(hint.variant(*inputs))
        except Exception:  # a hint that does not apply to these inputs
            continue
        if tuple(got.shape) == shape:
            return hint.message
    return None


def expect_tuple(result: Any, call: str, names: Sequence[str]) -> Sequence[Any]:
    """The elements of a call's tuple result (``result.value``), checked for their number."""
    value = result.value
    if not (isinstance(value, (list, tuple)) and len(value) == len(names)):
        raise Failure(f"{call} returned {describe(value)}; expected a tuple ({', '.join(names)})")
    return value


def expect_value_error(student: Student, name: str, args: Sequence[Any], kwargs: Mapping[str, Any], call: str,
                       why: str, fix: str) -> None:
    """``name(*args, **kwargs)`` must raise a ValueError (``why``: what is wrong with the arguments; ``fix``: what
    the student should do)."""
    try:
        student.call(name, *args, **kwargs)
    except StudentError as e:
        if e.exc_type == "ValueError":
            return
        if e.exc_type == "NotImplementedError" or e.kind != "exception":
            raise  # the runner says it is not implemented yet, or that it did not finish
        raise Failure(f"{call} raised {e.message}; expected a ValueError ({why}): {fix}") from None
    raise Failure(f"{call} did not raise; expected a ValueError ({why}): {fix}")


DETACHED = "is it computed from a detached copy (.detach(), .item(), .numpy(), torch.tensor(...))?"


def grad_call(student: Student, name: str, args: Sequence[Any], call: str, **options: Any) -> Any:
    """``student.call(name, *args, **options)``; where it asks for gradients (``grad_of``), a result cut off from
    autograd is a Failure that says so (the child and nbgrader's kernel word that error differently)."""
    try:
        return student.call(name, *args, **options)
    except StudentError as e:
        if "grad_of" in options and e.exc_type == "RuntimeError" \
                and re.search(r"not connected|does not require grad", e.message):
            raise Failure(f"the result of {call} is not connected to its inputs by autograd: {DETACHED}") from None
        raise


def expect_unchanged(before: Sequence[torch.Tensor], after: Mapping[Any, Any] | None, *, call: str) -> None:
    """Fail if the function modified a tensor argument in place."""
    for i, b in enumerate(before):
        a = (after or {}).get(i)
        if type(a) is torch.Tensor and not torch.equal(a, b):
            raise Failure(f"{call} modified its argument {i} in place; compute new tensors instead "
                          "(e.g. x = x / n, not x /= n)")


def fresh_inputs(args: Sequence[Any], seed: int) -> list[Any]:
    """``args`` with every floating-point tensor replaced by a new seeded normal one of its shape and dtype."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(a.shape, generator=g, dtype=a.dtype) if type(a) is torch.Tensor and a.is_floating_point()
            else a for a in args]


def speed_limit(reference: float, loop: float, closeness: float) -> float:
    """The time at ``closeness`` on a log scale from the reference's (0) to the loop's (1); twice the
    reference's where the loop is no slower."""
    return reference * (loop / reference) ** closeness if loop > reference else 2 * reference


def _median(values: Sequence[float]) -> float:
    return sorted(values)[len(values) // 2]


def expect_vectorized(student: Student, name: str, args: Sequence[Any], *, reference: Callable,
                      loop: Callable, closeness: float = 0.85, rounds: int = 3, repeats: int = 5,
                      rtol: float = 1e-4, atol: float = 1e-5, advice: str = "",
                      fresh: Callable[[Sequence[Any], int], list[Any]] = None) -> str:
    """Fail unless the student's ``name`` runs near the vectorized reference's speed on inputs like ``args``.

    ``loop`` is the same computation written with a Python loop over the
    rows (one iteration per batch element, vectorized inside). Over
    ``rounds``, interleaved so that load on a shared machine hits all alike:
    with the student's processes stopped, this process times the reference
    and the loop (one thread, on the student's device: CUDA when the grading
    machine has it, synchronised around each call; the floor of ``repeats``
    calls each) and what the channel adds to a call
    (`Student.channel_overhead`); then the student's function is called, as
    ordinary calls, on fresh inputs of the same shapes (`fresh_inputs`), each
    call timed here and its value checked against the reference's (a wrong
    value fails the check: a timed call is a checked one). The student's
    fastest call less the channel's fastest round trip is its time: floors
    on all sides, since load only ever adds time (and the channel's latency
    has a long tail), so that a loop's fastest call is compared with the
    loop's fastest, not with its median. On a log scale from the reference
    (0) to the loop (1), that time must fall at or below ``closeness``. The
    suites set each check's sizes and closeness with
    benchmarks/speed_ratios.py, which times the ways students write each
    function: the limit sits about halfway (log scale) between the slowest
    correct whole-tensor way and the fastest Python loop over the rows, at
    least 2x from both where the function allows it (the margins, and the
    one exception, in benchmarks/README.md), and several times the
    channel's jitter (0.1 to 1 ms on a 2-core machine, growing with the
    size of the inputs and the result). A function
    that returns a tuple of tensors (e.g. logits and labels) is compared
    element by element. A time over the limit is measured once more before the
    check fails (load on a shared machine comes in bursts; a loop stays slow).
    ``advice`` replaces the failure's generic advice.
    ``fresh(args, seed)`` makes the new inputs (default `fresh_inputs`), for
    functions whose inputs must have a form (e.g. unit rows). Returns the
    figures (for the staff).
    """
    import time

    device = torch.device(getattr(student, "device", "cpu"))

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def timed(fn: Callable, a: Sequence[Any]) -> float:
        sync()
        start = time.perf_counter()
        fn(*a)
        sync()
        return time.perf_counter() - start

    def on_device(a: Sequence[Any]) -> list[Any]:
        return [x.to(device) if type(x) is torch.Tensor else x for x in a]

    def measure() -> tuple[float, ...]:
        t_s, t_r, t_l, t_o = [], [], [], []
        for r in range(rounds):
            batch = [(fresh or fresh_inputs)(args, 1000 * (r + 1) + k) for k in range(repeats + 1)]  # 1st: warm-up
            with student.paused():
                here = [on_device(a) for a in batch]
                wants = [_cpu(reference(*a)) for a in here]
                t_r.append(min(timed(reference, a) for a in here[1:]))  # floors, as the student's below
                loop(*here[0])
                t_l.append(min(timed(loop, a) for a in here[1:]))  # as many calls as the student's
                t_o.append(student.channel_overhead(name, batch[1:], t_r[-1]))
            own = []
            for k, (a, want) in enumerate(zip(batch, wants)):
                result, seconds = student.timed(name, *a)
                _expect_result(result.value, want, f"{describe_call(name, a, {})} (timed, with new inputs)",
                               rtol=rtol, atol=atol)
                if k:
                    own.append(seconds)
            t_s.append(min(own))  # the floor: the channel's latency has a long tail, the code's cost does not
        ts, tr, tl, overhead = (_median(t) for t in (t_s, t_r, t_l, t_o))
        return max(ts - overhead, 0.0), tr, tl, overhead, speed_limit(tr, tl, closeness)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ts, tr, tl, overhead, limit = measure()
        if ts > limit:  # measured again before failing: a burst of load on a shared machine passes, a loop does not
            ts, tr, tl, overhead, limit = measure()
    finally:
        torch.set_num_threads(threads)
    figures = (f"yours {ts * 1e3:.3g} ms, reference {tr * 1e3:.3g} ms, a loop over the rows {tl * 1e3:.3g} ms, "
               f"limit {limit * 1e3:.3g} ms (the channel's {overhead * 1e3:.3g} ms left out; on the {device.type})")
    if ts > limit:
        raise Failure(f"{name} is too slow ({figures}): " + (advice or "it should have no Python loop over the "
                                                             "batch, positions or pairs; use whole-tensor operations"))
    return figures


def _cpu(value: Any) -> Any:
    return tuple(_cpu(v) for v in value) if isinstance(value, tuple) else value.cpu()


def _expect_result(got: Any, want: Any, call: str, **tolerance: float) -> None:
    """`expect_tensor`, element by element when the reference returns a tuple."""
    if not isinstance(want, tuple):
        expect_tensor(got, want, call=call, **tolerance)
        return
    if not isinstance(got, (tuple, list)) or len(got) != len(want):
        raise Failure(f"{call} returned {describe(got)}; expected a tuple of {len(want)} tensors")
    for i, (g, w) in enumerate(zip(got, want)):
        expect_tensor(g, w, call=f"element {i} of what {call} returned", **tolerance)
