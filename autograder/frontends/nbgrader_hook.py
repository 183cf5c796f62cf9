"""nbgrader's side: a hidden-test cell grades one function with the hidden suite.

The source notebook's hidden-test cell of function ``sim`` is::

    ### BEGIN HIDDEN TESTS
    from autograder.frontends.nbgrader_hook import check
    check("sim", globals())
    ### END HIDDEN TESTS

`check` runs that function's checks on the kernel's definitions (nbgrader
runs the student's notebook in one kernel, so there is no child process
here), prints the feedback on stdout, and returns the score: nbgrader reads a
number as partial credit. A score of 0 raises, so that the cell shows as
failed. Nothing goes to stderr, which nbgrader would punish with a 0.
"""
from __future__ import annotations

import contextlib
import importlib
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


def check(function: str, namespace: Mapping[str, Any]) -> float:
    """Grade ``function`` as defined in ``namespace``; returns its score."""
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
