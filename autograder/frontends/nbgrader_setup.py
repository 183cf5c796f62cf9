"""The kit's nbgrader configuration, shared by the repository's release and by instructors' courses.

- `release_settings`: what ``generate_assignment`` writes in place of a
  solution, and that released notebooks carry no outputs (the repository's
  ``nbgrader_config.py`` and every course use it);
- `autograde_settings`: ``autograde`` runs the student's notebook in a
  confined kernel (`nbgrader_kernel.SandboxedKernelManager`) and decides the
  scores outside it (`nbgrader_grade.GradeOutsideKernel`), so that nothing the
  student's code does in its kernel changes a grade;
- `course_config`: the text of a course's ``nbgrader_config.py`` (written by
  ``python -m autograder nbgrader-course DIR``).
"""
from __future__ import annotations

CODE_STUB = ('# YOUR CODE HERE\nraise NotImplementedError("not implemented yet: write your code here, '
             'then rerun this cell")')
CELL_TIMEOUT = 300
"""Seconds after which one cell fails under autograde (not the whole run)."""


def release_settings(c) -> None:
    """What a student sees in place of a solution, and no outputs in released notebooks."""
    c.ClearSolutions.code_stub = {"python": CODE_STUB}
    c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
    c.ClearOutput.enabled = True  # generated notebooks must not depend on the machine or the day


def autograde_settings(c) -> None:
    """A confined kernel, and scores decided outside it, after nbgrader's own steps."""
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from nbgrader.preprocessors import AssignLatePenalties, CheckCellMetadata, IgnorePattern, LimitOutput, SaveAutoGrades

    from .nbgrader_grade import GradeOutsideKernel
    from .nbgrader_kernel import SandboxedExecute

    c.Execute.timeout = CELL_TIMEOUT
    c.Autograde.autograde_preprocessors = [SandboxedExecute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
                                           GradeOutsideKernel, SaveAutoGrades, AssignLatePenalties,
                                           CheckCellMetadata]


def course_config(course_id: str) -> str:
    """The ``nbgrader_config.py`` of a course made by ``python -m autograder nbgrader-course``."""
    return f'''"""nbgrader configuration of the course {course_id!r}, made by `python -m autograder nbgrader-course`.

Run nbgrader in this folder with the kit's environment (its .venv):

    nbgrader generate_assignment self_supervised      # release/self_supervised/, and the gradebook
    nbgrader collect self_supervised                  # or copy submissions to submitted/<student>/self_supervised/
    nbgrader autograde self_supervised                # scores decided by the kit's sandboxed grader
    nbgrader generate_feedback self_supervised        # feedback/<student>/self_supervised/*.html

Under autograde the student's notebook runs in a confined kernel and every test
cell's score comes from the kit's grader, outside that kernel (see the kit's
SECURITY.md). Add your own settings below.
"""
import os

from autograder.frontends.nbgrader_setup import autograde_settings, release_settings

c = get_config()  # noqa: F821 (provided by nbgrader)
c.CourseDirectory.course_id = {course_id!r}
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
release_settings(c)
autograde_settings(c)
'''
