"""What the kit tests of the hidden suites share: each realistic submission graded once by the local grade
command, and one notebook's scores, checks and feedback read out of the results."""
import pytest

from autograder.frontends.examples import make_submission
from autograder.grading.grade import grade_submission
from autograder.grading.reference import REPO


def grade_cases(tmp_path_factory, notebook, cases):
    """``{name: GradingResult}``: the release of ``notebook`` filled in with ``cases[name]`` (the code
    `make_submission` takes: ``{}`` the reference, ``None`` the starter), graded."""
    if not (REPO / "assignments" / "self_supervised" / f"{notebook}.ipynb").is_file():
        pytest.fail(f"assignments/self_supervised/{notebook}.ipynb is missing: run `make release`")
    out = {}
    for name, code in cases.items():
        folder = tmp_path_factory.mktemp(name)
        make_submission(folder, notebook, code)
        out[name] = grade_submission(folder, call_timeout=5.0)
    return out


def readers(notebook):
    """``(scores, checks, feedback)`` of one notebook in a result: ``scores(result)`` is ``{function: score}``,
    ``checks(result)`` ``{(function, check): CheckResult}``, ``feedback(result, function)`` that function's text."""
    def scores(result):
        return {f.function: f.score for f in result.functions() if f.notebook == notebook}

    def checks(result):
        return {(c.function, c.check): c for c in result.checks if c.notebook == notebook}

    def feedback(result, function):
        return next(f.feedback for f in result.functions() if f.notebook == notebook and f.function == function)

    return scores, checks, feedback
