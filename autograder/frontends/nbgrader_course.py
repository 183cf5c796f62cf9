"""``python -m autograder nbgrader-course DIR``: an nbgrader course directory with the kit's safe set-up.

``DIR`` gets ``nbgrader_config.py`` (`nbgrader_setup.course_config`) and
``source/self_supervised/`` with the kit's source notebooks (solutions and
hidden tests), so that ``nbgrader generate_assignment self_supervised`` and,
once submissions are collected, ``nbgrader autograde self_supervised`` work
there with the same per-function points as ``python -m autograder grade``.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from ..grading.points import NOTEBOOKS
from ..grading.reference import REPO
from .nbgrader_setup import course_config

ASSIGNMENT = "self_supervised"


def make_course(root: Path, *, course_id: str = "ssl_kit", force: bool = False) -> list[Path]:
    """Write the course into ``root``; returns the source notebooks copied.

    Raises ``FileExistsError`` when ``root`` holds anything and ``force`` is
    false (``force`` overwrites the config and the source notebooks, and
    leaves the rest, e.g. the gradebook and submissions, alone).
    """
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"{root} exists and is not a folder")
    if root.is_dir() and any(root.iterdir()) and not force:
        raise FileExistsError(f"{root} is not empty; choose an empty or new folder, or pass --force to rewrite "
                              "its nbgrader_config.py and source notebooks")
    source = root / "source" / ASSIGNMENT
    source.mkdir(parents=True, exist_ok=True)
    (root / "nbgrader_config.py").write_text(course_config(course_id))
    copied = []
    for notebook in NOTEBOOKS:
        path = REPO / "solutions" / ASSIGNMENT / f"{notebook}.ipynb"
        if path.is_file():
            copied.append(Path(shutil.copy(path, source / path.name)))
    return copied
