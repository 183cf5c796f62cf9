"""Gradescope: results.json from a GradingResult, and the run inside the container.

The results follow Gradescope's autograder specification: a top-level
``score``, ``execution_time``, ``output`` and ``tests``, one visible test per
graded function with its ``score``, ``max_score``, ``status``, ``output``
(the feedback) and ``tags`` (the function and the notebook). The student's
own printed output is never shown (``stdout_visibility: hidden``).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from ..grading.results import GradingResult


def to_results_json(result: GradingResult) -> dict:
    """The Gradescope results dict of ``result``."""
    tests = []
    for f in result.functions():
        tests.append({
            "name": f"{f.notebook}: {f.function}",
            "score": round(f.score, 4),
            "max_score": round(f.max_score, 4),
            "status": "passed" if f.score >= f.max_score else "failed",
            "output": f.feedback,
            "output_format": "text",
            "tags": [f.function, f.notebook],
            "visibility": "visible",
        })
    summary = f"Total: {result.score:g} / {result.max_score:g}"
    if result.isolation:
        summary += f"\nYour code ran in: {result.isolation}, on the {result.device.upper()}."
    if result.warnings:
        summary += "\n\nWarnings:\n" + "\n".join(f"- {w}" for w in result.warnings)
    return {
        "score": round(result.score, 4),
        "execution_time": round(result.seconds, 3),
        "output": summary,
        "output_format": "text",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "extra_data": {"isolation": result.isolation, "device": result.device},
        "tests": tests,
    }


def write_json_atomically(data: dict, path: Path) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename, so that a
    reader (or a grader killed mid-way) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".results-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run(root: Path) -> dict:
    """Grade ``root/submission`` into ``root/results/results.json`` (what run_autograder does).

    Anything already at the results path is removed first, so that a stale
    or planted file never stands as the result.
    """
    from ..grading.grade import grade_submission

    results_path = root / "results" / "results.json"
    results_path.unlink(missing_ok=True)
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.parent.chmod(0o700)  # only the grader (root on Gradescope) may write or read here
    data = to_results_json(grade_submission(root / "submission"))
    write_json_atomically(data, results_path)
    return data
