"""Grade a folder of submissions with several worker processes into a CSV gradebook.

Each entry of the folder (a subfolder or a .zip) is one submission, named by
the entry. A submission that cannot be graded gets a row with its error, and
the others go on.
"""
from __future__ import annotations

import csv
import multiprocessing
import os
import tempfile
import traceback
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from ..grading.points import POINTS


def _grade_one(path: str, notebooks: list[str]) -> dict:
    from ..grading.grade import grade_submission
    from .gradescope import to_results_json

    try:
        result = grade_submission(path, notebooks=notebooks)
    except Exception:  # one broken submission must not stop the gradebook
        return {"error": traceback.format_exc(limit=3).strip().splitlines()[-1]}
    return {"error": "", "results": to_results_json(result),
            "functions": {f"{f.notebook}.{f.function}": f.score for f in result.functions()},
            "score": result.score, "max_score": result.max_score, "seconds": result.seconds}


def submissions_in(folder: Path) -> list[Path]:
    """The submissions of ``folder``, sorted by name (hidden entries skipped)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".") and not p.is_symlink()
                  and (p.is_dir() or p.suffix == ".zip"))


def _notebooks_handed_in(subs: list[Path]) -> list[str]:
    """The graded notebooks that at least one submission holds (all of them if none does)."""
    from ..grading.grade import expected_notebooks, find_notebooks

    seen: set[str] = set()
    for sub in subs:
        with tempfile.TemporaryDirectory(prefix="gradebook-scan-") as tmp:
            try:
                seen |= set(find_notebooks(sub, Path(tmp))[0])
            except (OSError, ValueError):
                continue  # graded (and reported) as a row of its own
    return expected_notebooks(None, seen)


def grade_folder(folder: Path, csv_path: Path, *, workers: int = 2, results_dir: Path | None = None,
                 notebooks: str | None = None) -> list[dict]:
    """Grade every submission in ``folder``; write one CSV row each. Returns the rows.

    Every submission is graded on the same notebooks, so that the rows compare: ``notebooks``
    (comma-separated), else ``$AUTOGRADER_NOTEBOOKS``, else those that at least one submission holds.
    """
    from ..grading.grade import ENV_NOTEBOOKS, expected_notebooks
    from .gradescope import write_json_atomically

    subs = submissions_in(folder)
    chosen = expected_notebooks(notebooks, ()) if notebooks or os.environ.get(ENV_NOTEBOOKS) \
        else _notebooks_handed_in(subs)
    columns = [f"{nb}.{fn}" for nb, table in POINTS.items() if nb in chosen for fn in table]
    # spawn, not fork: a fork of a process whose other threads hold locks (torch's pools, after any tensor
    # work, e.g. when called from a notebook or a test) can deadlock in the child
    with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_grade_one, str(s), chosen) for s in subs]
        outcomes = []
        for future in futures:
            try:
                outcomes.append(future.result())
            except Exception as e:  # e.g. a worker killed by the system: that row, not the gradebook
                outcomes.append({"error": f"grading failed: {type(e).__name__}: {e}"})
    rows = []
    for sub, out in zip(subs, outcomes):
        row = {"submission": sub.name, "error": out["error"]}
        if not out["error"]:
            row.update(score=out["score"], max_score=out["max_score"], seconds=round(out["seconds"], 1),
                       **{c: out["functions"].get(c, 0.0) for c in columns})
            if results_dir is not None:
                write_json_atomically(out["results"], results_dir / f"{row['submission']}.json")
        rows.append(row)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["submission", "score", "max_score", "seconds", *columns, "error"])
        writer.writeheader()
        writer.writerows(rows)
    return rows
