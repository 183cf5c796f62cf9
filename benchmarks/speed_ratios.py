"""The speed checks' figures on this machine's grading device (CUDA when present), for the reference example.

    python benchmarks/speed_ratios.py

Grades the reference example submission once and prints, per timed
function, the student's (here: the reference's own code in the child) time,
the reference's and the loop's times measured by the grader, the limit, and
the ratio loop / reference: the margin the vectorization check works with.
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

from autograder.frontends.examples import EXAMPLES, make_submission
from autograder.grading.grade import grade_submission


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        make_submission(Path(tmp), "03_simclr", EXAMPLES["reference"]["03_simclr"])
        result = grade_submission(Path(tmp))
    print(f"device: {result.device}; isolation: {result.isolation}")
    print(f"{'function':<24} {'yours ms':>9} {'reference ms':>13} {'loop ms':>9} {'limit ms':>9} {'loop/ref':>9}  score")
    for c in result.checks:
        if c.check != "vectorized":
            continue
        figures = dict(re.findall(r"(yours|reference|rows|limit) ([\d.e+-]+) ms", c.staff_note or c.feedback))
        ref, loop = float(figures.get("reference", "nan")), float(figures.get("rows", "nan"))
        print(f"{c.function:<24} {figures.get('yours', '?'):>9} {figures.get('reference', '?'):>13} "
              f"{figures.get('rows', '?'):>9} {figures.get('limit', '?'):>9} {loop / ref:>9.1f}  "
              f"{c.score:g}/{c.max_score:g}")


if __name__ == "__main__":
    main()
