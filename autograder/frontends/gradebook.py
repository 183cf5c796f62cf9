"""Grade a folder of submissions with several worker processes into a CSV gradebook and a class summary.

Each entry of the folder (a subfolder or a .zip) is one submission, named by
the entry. A submission that cannot be graded gets a row with its error, and
the others go on. A progress bar (on a terminal) and a closing line go to
standard error; `grade_folder` returns the rows with the class summary
(`summary.summarize`) and, when asked for, writes the class report
(`summary.write_report`: charts, Markdown, HTML).
"""
from __future__ import annotations

import csv
import multiprocessing
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from ..grading.points import POINTS
from .summary import ClassSummary, summarize, write_report


def _grade_one(path: str, notebooks: list[str], call_timeout: float) -> dict:
    from ..grading.grade import grade_submission
    from .gradescope import to_results_json
    from .summary import outcomes_of

    try:
        result = grade_submission(path, notebooks=notebooks, call_timeout=call_timeout)
    except Exception:  # one broken submission must not stop the gradebook
        return {"error": traceback.format_exc(limit=3).strip().splitlines()[-1]}
    return {"error": "", "results": to_results_json(result), "outcomes": outcomes_of(result),
            "score": result.score, "max_score": result.max_score, "seconds": result.seconds}


@dataclass
class Gradebook(Sequence):
    """What `grade_folder` returns: a sequence of the CSV's rows (one dict per submission, in submission
    order), with the class summary and the report's files (``{}`` when no report was asked for)."""

    rows: list[dict]
    summary: ClassSummary
    report: dict[str, Path] = field(default_factory=dict)

    def __getitem__(self, index):
        return self.rows[index]

    def __len__(self) -> int:
        return len(self.rows)


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


def _outcome(future: Future) -> dict:
    """A worker's outcome; a worker that died is that row's error, not the gradebook's."""
    try:
        return future.result()
    except Exception as e:  # e.g. a worker killed by the system
        return {"error": f"grading failed: {type(e).__name__}: {e}"}


def _grade_all(subs: list[Path], notebooks: list[str], workers: int, call_timeout: float) -> list[dict]:
    """Each submission's outcome, in the order of ``subs``; a progress bar while they complete."""
    start = time.perf_counter()
    outcomes: list[dict] = [{}] * len(subs)
    # spawn, not fork: a fork of a process whose other threads hold locks (torch's pools, after any tensor
    # work, e.g. when called from a notebook or a test) can deadlock in the child
    with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_grade_one, str(s), notebooks, call_timeout): i for i, s in enumerate(subs)}
        with tqdm(total=len(subs), desc="grading", unit="submission", file=sys.stderr, disable=None) as bar:
            for future in as_completed(futures):
                outcomes[futures[future]] = _outcome(future)
                bar.set_postfix_str(subs[futures[future]].name, refresh=False)
                bar.update()
    failed = sum(bool(o["error"]) for o in outcomes)
    print(f"graded {len(subs)} submissions in {time.perf_counter() - start:.1f} s"
          + (f" ({failed} could not be graded)" if failed else ""), file=sys.stderr, flush=True)
    return outcomes


def _row(name: str, outcome: dict, columns: list[str]) -> dict:
    """The CSV row of one submission: its totals and each function's score, or its error."""
    row = {"submission": name, "error": outcome["error"]}
    if not outcome["error"]:
        scores = {c: o.score for c, o in outcome["outcomes"].items()}
        row.update(score=outcome["score"], max_score=outcome["max_score"], seconds=round(outcome["seconds"], 1),
                   **{c: scores.get(c, 0.0) for c in columns})
    return row


def _write_csv(rows: list[dict], columns: list[str], csv_path: Path) -> None:
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["submission", "score", "max_score", "seconds", *columns, "error"])
        writer.writeheader()
        writer.writerows(rows)


def grade_folder(folder: Path, csv_path: Path, *, workers: int = 2, results_dir: Path | None = None,
                 notebooks: str | None = None, report_dir: Path | None = None, timeout: float = 20.0) -> Gradebook:
    """Grade every submission in ``folder``; write one CSV row each (and each results.json into
    ``results_dir``, the class report into ``report_dir``, when given). Returns the rows and the summary.

    Every submission is graded on the same notebooks, so that the rows compare: ``notebooks``
    (comma-separated), else ``$AUTOGRADER_NOTEBOOKS``, else those that at least one submission holds.
    ``timeout``: the seconds one call of a student function may take.
    """
    from ..grading.grade import ENV_NOTEBOOKS, expected_notebooks
    from .gradescope import write_json_atomically

    subs = submissions_in(folder)
    chosen = expected_notebooks(notebooks, ()) if notebooks or os.environ.get(ENV_NOTEBOOKS) \
        else _notebooks_handed_in(subs)
    columns = [f"{nb}.{fn}" for nb, table in POINTS.items() if nb in chosen for fn in table]
    outcomes = _grade_all(subs, chosen, workers, timeout)
    rows = [_row(sub.name, out, columns) for sub, out in zip(subs, outcomes)]
    if results_dir is not None:
        for sub, out in zip(subs, outcomes):
            if not out["error"]:
                write_json_atomically(out["results"], results_dir / f"{sub.name}.json")
    _write_csv(rows, columns, csv_path)
    summary = summarize(rows, {sub.name: out["outcomes"] for sub, out in zip(subs, outcomes) if not out["error"]})
    return Gradebook(rows, summary, write_report(summary, report_dir) if report_dir is not None else {})
