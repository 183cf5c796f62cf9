"""Benchmark: grading a class, with the kit's parallel grader and with ``nbgrader autograde``, side by side.

    python benchmarks/grade_class.py [--students 100] [--notebooks 03_simclr] [--workers 1,2] [--nbgrader-students 20]

Makes a class of ``--students`` submissions from the bundled examples
(reference, starter, two_bugs, typical, loops, hostile, in turn), each
handing in ``--notebooks``, and grades it:

1. with the parallel grader (`autograder.frontends.gradebook.grade_folder`,
   what ``python -m autograder gradebook`` and ``make grade`` run) at each
   number of ``--workers``: wall time, submissions per minute, per core
   (workers beyond the cores share them), and the per-submission seconds;
2. with nbgrader in a course made by ``python -m autograder nbgrader-course``
   (``generate_assignment``, the first ``--nbgrader-students`` submissions
   in ``submitted/``, ``autograde``): nbgrader grades one student after
   another, running each notebook in a fresh kernel before the kit's grader
   decides the scores, so its time per submission is the kernel's run plus
   the grading;

and checks that both gave every student the same total. Figures for
benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from autograder.frontends.examples import EXAMPLES, make_submission
from autograder.frontends.gradebook import grade_folder

ASSIGNMENT = "self_supervised"
KINDS = ("reference", "starter", "two_bugs", "typical", "loops", "hostile")


def make_class(root: Path, students: int, notebooks: list[str]) -> list[str]:
    """``root/student_NNN/<notebook>.ipynb`` for each student, the examples in turn; returns the names."""
    names = []
    for i in range(students):
        name, kind = f"student_{i:03d}", KINDS[i % len(KINDS)]
        for notebook in notebooks:
            make_submission(root / name, notebook, EXAMPLES[kind].get(notebook, {}))
        names.append(name)
    return names


def parallel(root: Path, notebooks: list[str], workers: int, out: Path) -> dict:
    start = time.perf_counter()
    rows = grade_folder(root, out / f"grades_{workers}.csv", workers=workers, notebooks=",".join(notebooks))
    wall = time.perf_counter() - start
    seconds = [r["seconds"] for r in rows if not r["error"]]
    return {"wall": wall, "rows": rows, "seconds": seconds,
            "totals": {r["submission"]: r.get("score") for r in rows}}


def _nbgrader(course: Path, env: dict, *args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env, capture_output=True,
                          text=True, timeout=7200)
    if proc.returncode != 0:
        raise SystemExit(f"nbgrader {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def nbgrader(root: Path, names: list[str], out: Path) -> dict:
    course = out / "course"
    subprocess.run([sys.executable, "-m", "autograder", "nbgrader-course", str(course)], check=True,
                   capture_output=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NBGRADER_EXECUTION")}
    env.update(JUPYTER_CONFIG_DIR=str(out / "jupyter_config"), SSL_KIT_FAST="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # nbgrader runs alembic
    start = time.perf_counter()
    _nbgrader(course, env, "generate_assignment", ASSIGNMENT, "--force")
    generate = time.perf_counter() - start
    for name in names:
        shutil.copytree(root / name, course / "submitted" / name / ASSIGNMENT)
    start = time.perf_counter()
    _nbgrader(course, env, "autograde", ASSIGNMENT, "--force")
    wall = time.perf_counter() - start
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        totals = {name: gb.find_submission(ASSIGNMENT, name).score for name in names}
    return {"generate": generate, "wall": wall, "totals": totals}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=100)
    parser.add_argument("--notebooks", default="03_simclr", help="comma-separated notebooks each student hands in")
    parser.add_argument("--workers", default="1,2", help="comma-separated numbers of workers to measure")
    parser.add_argument("--nbgrader-students", type=int, default=None,
                        help="how many of the submissions nbgrader autogrades (default: all; 0 skips nbgrader)")
    args = parser.parse_args()
    notebooks = [n.strip() for n in args.notebooks.split(",") if n.strip()]
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="grade-class-") as tmp:
        root, out = Path(tmp) / "class", Path(tmp) / "out"
        names = make_class(root, args.students, notebooks)
        print(f"{args.students} submissions of {', '.join(notebooks)} ({', '.join(KINDS)} in turn); "
              f"{cores} cores; isolation {os.environ.get('AUTOGRADER_ISOLATION', 'auto')}")
        print(f"  {'grader':<22}{'wall s':>8}{'per min':>9}{'per core-min':>14}{'s/submission':>14}"
              f"{'median s':>10}{'max s':>8}")
        results = {}
        for workers in (int(w) for w in args.workers.split(",")):
            r = results[workers] = parallel(root, notebooks, workers, out)
            used = min(workers, cores)
            print(f"  {f'parallel, {workers} worker(s)':<22}{r['wall']:>8.1f}{60 * len(names) / r['wall']:>9.1f}"
                  f"{60 * len(names) / r['wall'] / used:>14.1f}{r['wall'] / len(names):>14.1f}"
                  f"{statistics.median(r['seconds']):>10.1f}{max(r['seconds']):>8.1f}", flush=True)
        graded_by_nbgrader = names if args.nbgrader_students is None else names[:args.nbgrader_students]
        if graded_by_nbgrader:
            nb = nbgrader(root, graded_by_nbgrader, out)
            k = len(graded_by_nbgrader)
            print(f"  {'nbgrader autograde':<22}{nb['wall']:>8.1f}{60 * k / nb['wall']:>9.1f}"
                  f"{60 * k / nb['wall']:>14.1f}{nb['wall'] / k:>14.1f}{'':>10}{'':>8}"
                  f"   ({k} submissions, one at a time; generate_assignment {nb['generate']:.0f} s before)")
            local = next(iter(results.values()))["totals"]
            differ = {n: (local[n], nb["totals"][n]) for n in graded_by_nbgrader if local[n] != nb["totals"][n]}
            print("  totals: nbgrader and the parallel grader agree for every student" if not differ else
                  f"  totals DIFFER (parallel, nbgrader): {differ}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
