"""What people run: every way of grading, and the kit's demo.

- ``cli``: ``python -m autograder ...`` (grade, demo, gradebook, the
  Gradescope zip and run);
- ``gradescope``: ``results.json`` in Gradescope's format, and the run inside
  its container (``gradescope_schema.json`` is that format, for the tests);
  ``package``: the autograder zip (``setup.sh``, ``run_autograder``);
- ``nbgrader_hook``: what the source notebooks' hidden-test cells call (it
  grades in the solution notebook, never under ``nbgrader autograde``);
  ``nbgrader_grade``: the autograde step that decides the scores outside the
  student's kernel; ``nbgrader_kernel``: that kernel, confined;
  ``nbgrader_setup``: the kit's nbgrader configuration; ``nbgrader_course``:
  ``python -m autograder nbgrader-course DIR``;
- ``gradebook``: a folder of submissions graded into one CSV;
- ``summary``: the class summary of a gradebook, and its report (charts, Markdown, HTML);
- ``report``: the per-function table for the terminal;
- ``submit``: the students' submission helper (``python -m
  course_utils.submit`` and the notebooks' last cell forward here): their
  notebooks checked and zipped; ``selfcheck``: its self-check (the release's
  public checks on their saved notebook, in the confined kernel);
- ``examples``: example submissions made from the release (the demo's and
  the tests': the reference, the starter, two classic bugs, one more
  typical mistake, loops, a hostile student).

May import: ``grading`` and, where a front end needs it, ``isolation``.
Must never be imported by ``isolation``, ``grading`` or ``suites``.
"""
