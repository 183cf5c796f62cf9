"""Run a suite's registered checks against a student and score them.

`run_checks` runs the same suite under the local command and Gradescope
(student code in a child process: `students.RemoteStudent`) and inside an
nbgrader kernel (`students.LocalStudent`); under pytest, ``conftest.py``
makes the fixtures.
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

import time
import traceback
from types import ModuleType
from typing import Callable, Iterable

from ..isolation.student_process import StudentError
from .checks import Failure
from .points import POINTS
from .results import CheckResult
from .students import Student


def _student_feedback(error: StudentError, function: str) -> str:
    """What went wrong, naming the failing call (function, argument shapes and dtypes) where known."""
    where = error.call or function
    if error.kind == "missing":
        return f"{function} is not defined in your notebook (check its name and that its cell is kept)"
    if error.kind == "timeout":
        return f"{where} did not finish in time and was stopped ({error.message})"
    if error.kind == "crash":
        return f"running {where} stopped the Python process ({error.message}); was there sys.exit or os._exit?"
    if error.kind == "protocol":
        return f"running {where} broke the grader's channel ({error.message}); the process was restarted"
    if error.exc_type == "NotImplementedError":
        return f"{function} is not implemented yet (it raised NotImplementedError)"
    text = f"{where} raised {error.message}"
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
