"""The grading core: from a notebook's sources to scored checks.

- ``extract``: the graded definitions of a notebook, with ``ast`` (nothing runs);
- ``reference``: the reference solutions, extracted from ``solutions/``;
- ``points``: every check's points and which graded functions each may call;
- ``checks``: what the hidden suites are written with (`graded`, `Failure`,
  `expect_tensor`, `Hint`, `expect_vectorized`, `expect_value_error`,
  `grad_call`);
- ``students``: how a check calls the student's code (`RemoteStudent` in a
  child process, `LocalStudent` in an nbgrader kernel);
- ``runner``: runs a suite's checks and scores them (`run_checks`);
- ``grade``: grades a whole submission (folder, zip or notebook) with the
  suites and the sandbox (`grade_submission`);
- ``results``: the outcome as plain data, for the front ends.

May import: ``isolation``, ``course_utils`` (the check helpers time with it),
the standard library, torch. Loads ``suites`` by name only (``grade``).
Must never import ``frontends``. ``suites`` and ``frontends`` import it.
"""
