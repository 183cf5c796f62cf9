"""What a source notebook's hidden-test cell calls: one function's checks, run in the notebook.

The source notebook's hidden-test cell of function ``sim`` is::

    ### BEGIN HIDDEN TESTS
    from autograder.frontends.nbgrader_hook import check
    check("sim", globals())
    ### END HIDDEN TESTS

Run in the solution notebook (by the instructor, by CI), `check` runs that
function's checks on the kernel's definitions, prints the feedback on stdout
and returns the score; a score of 0 raises, so that the cell shows as failed.
Nothing goes to stderr.

Under ``nbgrader autograde`` (``NBGRADER_EXECUTION=autograde``) the kernel
runs the student's code, so nothing decided there can be trusted: `check`
raises `NotGradedHere` without loading the reference or the suite (the
confined kernel cannot see them), and `nbgrader_grade.GradeOutsideKernel` replaces the cell's
outputs with the grade the sandboxed grader gives.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import sys
import warnings
from typing import Any, Mapping

from ..grading.checks import checks_of
from ..grading.points import all_functions, dependencies
from ..grading.reference import load_reference
from ..grading.results import FunctionResult
from ..grading.runner import run_checks
from ..grading.students import LocalStudent


class GradeFailed(AssertionError):
    """Raised by `check` when a function scores 0."""


GRADED_OUTSIDE = ("{function} is graded outside this notebook's kernel by the kit's autograder, whose score and "
                  "feedback replace this cell's output. If you see this, autograde ran without the kit's "
                  "configuration (python -m autograder nbgrader-course makes it), so this cell scores 0.")


class NotGradedHere(RuntimeError):
    """Raised by `check` under autograde: the score is decided outside the kernel, never by this cell."""


def check(function: str, namespace: Mapping[str, Any]) -> float:
    """Grade ``function`` as defined in ``namespace``; returns its score.

    Under autograde, raises `NotGradedHere` (so that a course that lost the
    kit's configuration gives 0, never full marks, for a cell it did not
    grade outside the kernel).
    """
    if os.environ.get("NBGRADER_EXECUTION") == "autograde":
        raise NotGradedHere(GRADED_OUTSIDE.format(function=function))
    notebook = all_functions()[function]
    ref = load_reference(notebook)
    deps = dependencies(notebook)[function]
    student = LocalStudent(namespace, {function: {g: getattr(ref, g) for g in deps}})
    suite = importlib.import_module(f"autograder.suites.test_{notebook}")
    with contextlib.redirect_stderr(sys.stdout), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = run_checks(checks_of(suite), student, ref, functions=[function])
    graded = FunctionResult(notebook, function, results)
    print(f"{function}: {graded.score:g}/{graded.max_score:g}\n{graded.feedback}")
    if graded.score == 0:
        raise GradeFailed(f"{function}: 0/{graded.max_score:g}; see the feedback above")
    return graded.score
