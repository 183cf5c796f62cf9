"""Command line of the autograder: parses arguments and calls one function each.

    python -m autograder grade SUBMISSION [--out FILE] [--notebooks NB,...]   results.json (stdout without --out),
                                                            table on stderr
    python -m autograder demo [DIR]                         grade the bundled example submissions as a class
    python -m autograder gradebook FOLDER --csv FILE [--report DIR]   grade every submission in FOLDER into a CSV,
                                                            print the class summary (and write the report)
    python -m autograder gradescope-zip [--out FILE] [--notebooks NB,...]   build the Gradescope autograder zip
    python -m autograder gradescope-run [--root DIR]       what run_autograder calls inside Gradescope
    python -m autograder nbgrader-course DIR [--force]     an nbgrader course directory with the safe set-up
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..isolation.sandbox import LEVELS


def _grade(args) -> int:
    from ..grading.grade import grade_submission
    from .gradescope import to_results_json, write_json_atomically
    from .report import render_table

    try:
        result = grade_submission(args.submission, call_timeout=args.timeout, isolation=args.isolation,
                                  notebooks=args.notebooks)
    except (FileNotFoundError, RuntimeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    data = to_results_json(result)
    if args.out:
        write_json_atomically(data, Path(args.out))
    else:
        json.dump(data, sys.stdout, indent=2)
        print()
    if not args.quiet:
        print(render_table(result, title=str(args.submission)), file=sys.stderr)
    return 0


def _demo(args) -> int:
    from ..isolation.sandbox import ENV_LEVEL, choose_launcher
    from .examples import write_examples
    from .gradebook import grade_folder
    from .summary import render_scores, render_text

    # The examples are the kit's own code: grade them with the strongest level that works, whatever it is
    # (the gradebook's workers inherit the level from the environment).
    isolation = choose_launcher("trusted")
    os.environ[ENV_LEVEL] = "trusted"
    out = Path(args.out)
    folders = write_examples(out / "submissions")
    print(f"grading the kit's {len(folders)} example submissions (trusted code; {', '.join(f.name for f in folders)}) "
          f"with isolation level {isolation.level}: {isolation.reason}", flush=True)
    book = grade_folder(out / "submissions", out / "grades.csv", workers=args.workers, results_dir=out / "results",
                        report_dir=out / "report", timeout=args.timeout, notebooks=args.notebooks)
    print("\n" + render_scores(book.rows))
    print("\n" + render_text(book.summary))
    print(f"\nwrote {out}/grades.csv (one row a submission, one column a function), {out}/results/<submission>.json "
          f"(Gradescope's format) and the class report {book.report['html']} ({book.report['markdown']}); one "
          f"submission's table with its feedback: python -m autograder grade {out}/submissions/two_bugs")
    return 0


def _gradebook(args) -> int:
    from .gradebook import grade_folder
    from .summary import render_text

    book = grade_folder(Path(args.folder), Path(args.csv), workers=args.workers,
                        results_dir=Path(args.results) if args.results else None, notebooks=args.notebooks,
                        report_dir=Path(args.report) if args.report else None, timeout=args.timeout)
    print(render_text(book.summary))
    if book.report:
        print(f"\nclass report: {book.report['html']} and {book.report['markdown']}")
    return 0


def _zip(args) -> int:
    from .package import build_zip

    try:
        print(build_zip(Path(args.out), notebooks=args.notebooks))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _gradescope_run(args) -> int:
    from .gradescope import run

    data = run(Path(args.root))
    print(f"score {data['score']} in {data['execution_time']} s")
    return 0


def _nbgrader_course(args) -> int:
    from .nbgrader_course import ASSIGNMENT, make_course

    root = Path(args.dir)
    try:
        copied = make_course(root, course_id=args.course_id, force=args.force)
    except FileExistsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"nbgrader course {args.course_id!r} in {root}: nbgrader_config.py and {len(copied)} source notebook(s) "
          f"in source/{ASSIGNMENT}/ ({', '.join(p.name for p in copied)}). Next, in {root}:\n"
          f"  nbgrader generate_assignment {ASSIGNMENT}\n"
          f"  (collect submissions into submitted/<student>/{ASSIGNMENT}/)\n"
          f"  nbgrader autograde {ASSIGNMENT}\n"
          f"  nbgrader generate_feedback {ASSIGNMENT}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("grade", help="grade one submission (a folder, a .zip or a notebook)")
    g.add_argument("submission", type=Path)
    g.add_argument("--out", help="write results.json here instead of standard output")
    g.add_argument("--timeout", type=float, default=20.0, help="seconds one call of a student function may take")
    g.add_argument("--quiet", action="store_true", help="no table on standard error")
    g.add_argument("--isolation", default=None, choices=LEVELS,
                   help="how to confine student code (default: $AUTOGRADER_ISOLATION, else auto: the strongest "
                        "available, and never a plain process as root; trusted: the same, but falls back to a "
                        "plain process even as root, for code you trust)")
    g.add_argument("--notebooks", default=None,
                   help="comma-separated notebooks the assignment expects, e.g. 03_simclr,04_moco: each missing one "
                        "scores 0 (default: $AUTOGRADER_NOTEBOOKS, else the graded notebooks the submission holds)")
    g.set_defaults(run=_grade)
    d = sub.add_parser("demo", help="write the kit's example submissions to DIR and grade them (trusted code)")
    d.add_argument("out", nargs="?", default="build/examples", help="where to write them (default build/examples)")
    d.add_argument("--timeout", type=float, default=20.0, help="seconds one call of a student function may take")
    d.add_argument("--workers", type=int, default=2, help="submissions graded at once")
    d.add_argument("--notebooks", default=None, help="comma-separated notebooks to grade (default: all five)")
    d.set_defaults(run=_demo)
    b = sub.add_parser("gradebook", help="grade every submission (subfolder or .zip) of a folder into a CSV")
    b.add_argument("folder")
    b.add_argument("--csv", required=True, help="the gradebook to write")
    b.add_argument("--workers", type=int, default=2, help="submissions graded at once")
    b.add_argument("--results", help="also write each submission's results.json into this folder")
    b.add_argument("--notebooks", default=None,
                   help="comma-separated notebooks to grade in every submission (default: $AUTOGRADER_NOTEBOOKS, else "
                        "those that at least one submission holds)")
    b.add_argument("--timeout", type=float, default=20.0, help="seconds one call of a student function may take")
    b.add_argument("--report", help="also write the class report into this folder: report.html, report.md and "
                                    "their charts (histogram.png, full_marks.png)")
    b.set_defaults(run=_gradebook)
    z = sub.add_parser("gradescope-zip", help="build the Gradescope autograder zip")
    z.add_argument("--out", default="build/autograder.zip")
    z.add_argument("--notebooks", default=None,
                   help="comma-separated notebooks this Gradescope assignment expects (e.g. 04_moco): a missing one "
                        "scores 0 (default: those the student uploads)")
    z.set_defaults(run=_zip)
    r = sub.add_parser("gradescope-run", help="grade ROOT/submission into ROOT/results/results.json")
    r.add_argument("--root", default="/autograder")
    r.set_defaults(run=_gradescope_run)
    n = sub.add_parser("nbgrader-course", help="create an nbgrader course directory with the kit's safe set-up")
    n.add_argument("dir", help="the course directory to create (must be empty or new)")
    n.add_argument("--course-id", default="ssl_kit", help="nbgrader's course id (default ssl_kit)")
    n.add_argument("--force", action="store_true",
                   help="rewrite nbgrader_config.py and the source notebooks in a non-empty DIR")
    n.set_defaults(run=_nbgrader_course)
    args = parser.parse_args(argv)
    return args.run(args)
