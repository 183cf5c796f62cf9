"""nbgrader's autograde step that decides the scores outside the student's kernel.

nbgrader records a test cell's score from that cell's outputs (an error: 0;
a number: partial credit; anything else: full marks), and those outputs come
from the kernel the student's own code runs in, which can patch the hook,
``sys.modules``, ``builtins`` or IPython itself. `GradeOutsideKernel` runs
after ``Execute`` in ``Autograde.autograde_preprocessors`` (see
`nbgrader_setup`): it grades the sanitized notebook's sources with the same
sandboxed grader as ``python -m autograder grade`` and replaces every test
cell's outputs with that grade (the feedback on stdout, the score as the
cell's result, an error at 0), whatever the kernel printed there. Then
nbgrader's ``SaveAutoGrades`` records them.

A test cell that is not one of the kit's graded functions (``test_<function>``
of this notebook) cannot be graded outside the kernel; by default it gets 0
and says so, for the instructor to grade by hand (``trust_kernel_tests = True``
keeps nbgrader's in-kernel verdict for such cells instead).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import nbformat
from nbconvert.preprocessors import Preprocessor
from traitlets import Bool, Float, Unicode

from ..grading.grade import grade_notebook
from ..grading.points import NOTEBOOKS
from ..grading.results import FunctionResult, GradingResult
from ..isolation.sandbox import choose_launcher

NOT_GRADED = ("this test cell is not one of the kit's graded functions, so its score could not be decided "
              "outside the notebook's kernel; your instructor grades it by hand")


def _nbgrader(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def _is_test_cell(cell) -> bool:
    meta = _nbgrader(cell)
    return cell.cell_type == "code" and bool(meta.get("grade")) and not meta.get("solution")


def _stream(text: str):
    return nbformat.v4.new_output("stream", name="stdout", text=text if text.endswith("\n") else text + "\n")


def _verdict(score: float, max_score: float, text: str) -> list:
    """Outputs from which nbgrader's ``determine_grade`` reads ``score`` (and the student reads ``text``)."""
    if score <= 0:
        return [_stream(text), nbformat.v4.new_output(
            "error", ename="GradeFailed", evalue=f"0/{max_score:g}; see the feedback above",
            traceback=[f"GradeFailed: 0/{max_score:g}; see the feedback above"])]
    return [_stream(text), nbformat.v4.new_output("execute_result", data={"text/plain": repr(float(score))},
                                                  execution_count=None)]


class GradeOutsideKernel(Preprocessor):
    """Replace each test cell's outputs with the sandboxed grader's score and feedback."""

    enabled = Bool(True, help="on by default (nbconvert's preprocessors are off unless enabled)").tag(config=True)
    isolation = Unicode(None, allow_none=True,
                        help="isolation level of the grader's child process (default: $AUTOGRADER_ISOLATION, "
                             "else auto)").tag(config=True)
    call_timeout = Float(20.0, help="seconds one call of a student function may take").tag(config=True)
    trust_kernel_tests = Bool(False, help="keep the kernel's verdict for test cells the kit does not "
                                          "grade (it can be faked by the student's code)").tag(config=True)

    def preprocess(self, nb, resources):
        notebook = resources.get("nbgrader", {}).get("notebook") or Path(resources.get("unique_key", "")).stem
        tests = [c for c in nb.cells if _is_test_cell(c)]
        if not tests:
            return nb, resources
        functions, notes = self._grade(notebook, nb) if notebook in NOTEBOOKS else ({}, [])
        for cell in tests:
            grade_id = _nbgrader(cell).get("grade_id", "")
            max_points = float(_nbgrader(cell).get("points", 0))
            graded = functions.get(grade_id.removeprefix("test_"))
            if graded is not None:
                score = min(graded.score, max_points)
                if graded.max_score != max_points:
                    self.log.warning("%s %s: the cell is worth %g points, the kit's suite %g; recorded %g",
                                     notebook, grade_id, max_points, graded.max_score, score)
                text = f"{graded.function}: {graded.score:g}/{graded.max_score:g} (graded outside this notebook " \
                       f"by the kit's autograder)\n{graded.feedback}"
                if notes:
                    text += "\nnotes on your notebook:\n" + "\n".join(f"- {n}" for n in notes)
                    notes = []  # once, in the first test cell
                cell.outputs = _verdict(score, max_points, text)
            elif not self.trust_kernel_tests:
                cell.outputs = _verdict(0.0, max_points, f"{grade_id}: {NOT_GRADED}")
        return nb, resources

    def _grade(self, notebook: str, nb) -> tuple[dict[str, FunctionResult], list[str]]:
        """``({function: result}, notes for the student)`` for the notebook's sources without its test cells
        (the release, answered)."""
        answered = nbformat.from_dict(nb)
        answered.cells = [c for c in answered.cells if not _is_test_cell(c)]
        for cell in answered.cells:
            if cell.cell_type == "code":
                cell.outputs = []
        result = GradingResult()
        with tempfile.TemporaryDirectory(prefix="nbgrader-autograde-") as tmp:
            path = Path(tmp) / f"{notebook}.ipynb"
            nbformat.write(answered, path)
            try:
                isolation = choose_launcher(self.isolation)
            except RuntimeError as e:
                self.log.error("%s: not graded: %s", notebook, e)
                raise
            grade_notebook(notebook, path, isolation=isolation, call_timeout=self.call_timeout, result=result)
        for note in result.staff_notes:
            self.log.error("%s", note)
        return {f.function: f for f in result.functions()}, result.warnings
