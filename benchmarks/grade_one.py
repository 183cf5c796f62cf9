"""Benchmark: wall time and peak memory of grading one 03_simclr submission locally.

    python benchmarks/grade_one.py [--repeats 3] [--example reference] [--compare plain]

Grades a bundled example submission with the local command's code path
(`autograder.grading.grade.grade_submission`: a child process per notebook, with the
strongest isolation available) and prints the median wall time, the
grader's peak RSS, the largest child's peak RSS and their sum (an upper bound
on the peak of the two together). Targets on a 2-core machine: at most 20 s
and 1.5 GB. ``--compare LEVEL`` also grades with that isolation level,
alternating run by run, and prints the ratio of the medians (target: the
sandbox at most 1.5 times slower than a plain child process).
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from autograder.frontends.examples import EXAMPLES, make_submission
from autograder.grading.grade import grade_submission
from autograder.isolation.sandbox import choose_launcher

TARGET_SECONDS, TARGET_MB = 20.0, 1536.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--example", default="reference", choices=sorted(EXAMPLES))
    parser.add_argument("--isolation", default="trusted",
                        help="isolation level to measure (default: the strongest that works; the example is trusted code)")
    parser.add_argument("--compare", default=None, help="another isolation level to time alternately")
    args = parser.parse_args()
    isolation = choose_launcher(args.isolation)
    other = choose_launcher(args.compare) if args.compare else None
    with tempfile.TemporaryDirectory() as tmp:
        for notebook, code in EXAMPLES[args.example].items():
            make_submission(Path(tmp), notebook, code)
        times, other_times, score = [], [], None
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = grade_submission(tmp, isolation=isolation)
            times.append(time.perf_counter() - start)
            score = f"{result.score:g}/{result.max_score:g}"
            if other is not None:
                start = time.perf_counter()
                grade_submission(tmp, isolation=other)
                other_times.append(time.perf_counter() - start)
    grader_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    wall = statistics.median(times)
    print(f"example            {args.example} (score {score})")
    print(f"isolation          {isolation.level}: {isolation.description}")
    print(f"wall time          median {wall:.1f} s over {args.repeats} runs (min {min(times):.1f}, max {max(times):.1f})")
    print(f"peak RSS grader    {grader_mb:.0f} MB")
    print(f"peak RSS child     {child_mb:.0f} MB (the largest student process)")
    print(f"peak RSS, bound    {grader_mb + child_mb:.0f} MB (grader + child)")
    print(f"targets            time {wall / TARGET_SECONDS:.2f} of {TARGET_SECONDS:.0f} s, "
          f"memory {(grader_mb + child_mb) / TARGET_MB:.2f} of {TARGET_MB:.0f} MB")
    if other is not None:
        base = statistics.median(other_times)
        print(f"{other.level:<18} median {base:.1f} s (min {min(other_times):.1f}, max {max(other_times):.1f})")
        print(f"overhead           {isolation.level} / {other.level} = {wall / base:.2f} (target at most 1.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
