"""Benchmark: wall time and peak memory of grading one 03_simclr submission locally.

    python benchmarks/grade_one.py [--repeats 3] [--example reference]

Grades a bundled example submission with the local command's code path
(`autograder.grade.grade_submission`: a child process per notebook) and
prints the median wall time, the grader's peak RSS, the largest child's peak
RSS and their sum (an upper bound on the peak of the two together). Targets
on a 2-core machine: at most 20 s and 1.5 GB.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from autograder.examples import EXAMPLES, make_submission
from autograder.grade import grade_submission

TARGET_SECONDS, TARGET_MB = 20.0, 1536.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--example", default="reference", choices=sorted(EXAMPLES))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for notebook, code in EXAMPLES[args.example].items():
            make_submission(Path(tmp), notebook, code)
        times, score = [], None
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = grade_submission(tmp)
            times.append(time.perf_counter() - start)
            score = f"{result.score:g}/{result.max_score:g}"
    grader_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    wall = statistics.median(times)
    print(f"example            {args.example} (score {score})")
    print(f"wall time          median {wall:.1f} s over {args.repeats} runs (min {min(times):.1f}, max {max(times):.1f})")
    print(f"peak RSS grader    {grader_mb:.0f} MB")
    print(f"peak RSS child     {child_mb:.0f} MB (the largest student process)")
    print(f"peak RSS, bound    {grader_mb + child_mb:.0f} MB (grader + child)")
    print(f"targets            time {wall / TARGET_SECONDS:.2f} of {TARGET_SECONDS:.0f} s, "
          f"memory {(grader_mb + child_mb) / TARGET_MB:.2f} of {TARGET_MB:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
