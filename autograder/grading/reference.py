"""The reference solutions, read from the source notebooks in solutions/ (never copied).

`load_reference("03_simclr")` extracts the definitions of
``solutions/self_supervised/03_simclr.ipynb`` with the same `extract` the
student's notebooks go through, and runs them in a fresh module. This is
trusted code, so it runs in the grader's process.
"""
from __future__ import annotations

import functools
import sys
import types
from pathlib import Path

from .extract import extract_from_paths

REPO = Path(__file__).resolve().parents[2]
SOLUTIONS = REPO / "solutions" / "self_supervised"


def notebook_path(notebook: str) -> Path:
    """``"03_simclr"`` -> the source notebook's path; ValueError if there is none."""
    path = SOLUTIONS / f"{notebook}.ipynb"
    if not path.is_file():
        known = sorted(p.stem for p in SOLUTIONS.glob("*.ipynb"))
        raise ValueError(f"no source notebook {notebook!r}; known: {known}")
    return path


@functools.lru_cache(maxsize=None)
def reference_source(notebook: str) -> str:
    """The reference definitions of ``notebook`` as source text (for the timing twin, a child process)."""
    return extract_from_paths([notebook_path(notebook)]).source


@functools.lru_cache(maxsize=None)
def load_reference(notebook: str) -> types.ModuleType:
    """The reference definitions of ``notebook`` as a module (cached per process)."""
    module = types.ModuleType(f"reference_{notebook}")
    module.__file__ = str(notebook_path(notebook))
    sys.modules[module.__name__] = module  # so that dataclasses and pickling by name work
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))  # the notebooks import course_utils
    exec(compile(reference_source(notebook), f"<reference {notebook}>", "exec"), module.__dict__)
    return module
