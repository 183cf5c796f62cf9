"""The students' submission helper and self-check (the work is done by ``autograder.frontends.submit``).

    python -m course_utils.submit [FOLDER] [--out submission.zip] [--notebooks 03_simclr,04_moco] [--no-checks]
    python -m course_utils.submit --check [FOLDER]      # the self-check only: a table per function, no zip

and, in the last cell of every release notebook, ``submit_from_notebook(name, globals())``.
This module is copied next to student code when it is graded, so it imports the grader only
inside its functions, which grading never calls.
"""
from __future__ import annotations

import sys


def submit_from_notebook(notebook: str, namespace: dict) -> None:
    """Check and zip this notebook's folder, comparing ``notebook`` on disk with the kernel's ``namespace``."""
    from autograder.frontends.submit import submit_from_notebook as run

    run(notebook, namespace)


def main(argv: list[str] | None = None) -> int:
    from autograder.frontends.submit import main as run

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
