"""The autograder: hidden suites, the grading core that runs them, and the front ends that call it.

Subpackages, by role (each one's ``__init__`` says what it may import):

``isolation/``
    Runs untrusted code: the child process, its data-only channel, the
    sandbox launchers. Knows nothing of grading.
``grading/``
    The grading core: extracting the graded definitions of a notebook, the
    reference, the points table, the check helpers the suites are written
    with, the runner that scores a suite, the results. Uses ``isolation``.
``suites/``
    One hidden pytest suite per notebook (``test_<notebook>.py``). Written
    with ``grading.checks``; loaded by the grading core by name.
``frontends/``
    What people run: the command line, Gradescope (results.json and the
    autograder zip), nbgrader's hook, the CSV gradebook, the terminal table,
    the bundled example submissions. Use ``grading``; nothing imports them.

The import directions (``isolation`` <- ``grading`` <- ``suites``,
``grading`` <- ``frontends``, never the reverse) are checked by
``tests/test_layout.py``. ``README.md`` here shows the flow of one
submission and the steps to add a graded function or a notebook.
"""
