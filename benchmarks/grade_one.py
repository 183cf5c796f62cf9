"""Benchmark: grading one whole submission (all five notebooks) with the local command's code path.

    python benchmarks/grade_one.py [--repeats 3] [--example reference] [--isolation auto] [--compare plain]

Grades a bundled example submission with
`autograder.grading.grade.grade_submission` (a child process per notebook,
plus the timing twin, with the isolation asked for) and prints:

- the median wall time over ``--repeats`` runs and the CPU time of one run
  (grader and its children, user + system);
- the grader's peak RSS, the largest child's peak RSS (the largest student
  process) and their sum, an upper bound on the peak of the two together;
- where the time goes: per notebook, the wall time, the time its checks
  took (of which the vectorization checks) and the rest (starting the
  student process and its twin, importing torch there, loading the code);
  then the slowest checks.

Targets on a 2-core machine: at most 60 s and 1.5 GB. ``--compare LEVEL``
also grades with that isolation level, alternating run by run, and prints
the ratio of the medians (target: the sandbox at most 1.5 times slower
than a plain child process). Figures for benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from autograder.frontends.examples import EXAMPLES, make_submission
from autograder.grading.grade import grade_submission
from autograder.isolation.sandbox import choose_launcher

TARGET_SECONDS, TARGET_MB = 60.0, 1536.0


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _graded(tmp: str, isolation, notebooks_started: dict) -> tuple[object, float]:
    """One grading run; ``notebooks_started[notebook]`` gets the wall clock at which its grading began."""
    def progress(message: str) -> None:
        notebooks_started[message.removeprefix("grading ")] = time.perf_counter()
    start = time.perf_counter()
    result = grade_submission(tmp, isolation=isolation, progress=progress)
    return result, time.perf_counter() - start


def where_the_time_goes(result, started: dict, end: float, slowest: int = 8) -> list[str]:
    order = sorted(started, key=started.get)
    ends = {nb: started[later] for nb, later in zip(order, order[1:])} | {order[-1]: end}
    checks, timed = defaultdict(float), defaultdict(float)
    for c in result.checks:
        checks[c.notebook] += c.seconds
        if c.check == "vectorized":
            timed[c.notebook] += c.seconds
    rows = [f"  {'notebook':<24}{'wall s':>8}{'checks s':>10}{'of which timed':>16}{'start-up, rest s':>18}"]
    for nb in order:
        wall = ends[nb] - started[nb]
        rows.append(f"  {nb:<24}{wall:>8.1f}{checks[nb]:>10.1f}{timed[nb]:>16.1f}{wall - checks[nb]:>18.1f}")
    rows.append("  slowest checks:")
    for c in sorted(result.checks, key=lambda c: -c.seconds)[:slowest]:
        rows.append(f"    {c.seconds:6.2f} s  {c.notebook} {c.function} {c.check}")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--example", default="reference", choices=sorted(EXAMPLES))
    parser.add_argument("--isolation", default="trusted",
                        help="isolation level to measure (default: trusted, the strongest that works for the "
                             "kit's own example code; auto picks the sandbox where there is one)")
    parser.add_argument("--compare", default=None, help="another isolation level to time alternately")
    args = parser.parse_args()
    isolation = choose_launcher(args.isolation)
    other = choose_launcher(args.compare) if args.compare else None
    with tempfile.TemporaryDirectory() as tmp:
        for notebook, code in EXAMPLES[args.example].items():
            make_submission(Path(tmp), notebook, code)
        times, other_times, cpu, profile = [], [], [], []
        for _ in range(args.repeats):
            started, cpu_before = {}, _cpu_seconds()
            result, seconds = _graded(tmp, isolation, started)
            times.append(seconds)
            cpu.append(_cpu_seconds() - cpu_before)
            profile = where_the_time_goes(result, started, started[min(started, key=started.get)] + seconds)
            if other is not None:
                other_times.append(_graded(tmp, other, {})[1])
    grader_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    wall = statistics.median(times)
    notebooks = sorted({c.notebook for c in result.checks})
    print(f"example            {args.example}: {len(notebooks)} notebooks, score {result.score:g}/{result.max_score:g}")
    print(f"isolation          {isolation.level}: {isolation.description}; device {result.device}")
    print(f"wall time          median {wall:.1f} s over {args.repeats} runs (min {min(times):.1f}, max {max(times):.1f})")
    print(f"CPU time           median {statistics.median(cpu):.1f} s (grader and children, user + system"
          + ("; the sandboxed children's time does not reach the grader's accounts, so this is mostly the grader's)"
             if isolation.level == "bubblewrap" else ")"))
    print(f"peak RSS grader    {grader_mb:.0f} MB")
    print(f"peak RSS child     {child_mb:.0f} MB (the largest student process)")
    print(f"peak RSS, bound    {grader_mb + child_mb:.0f} MB (grader + child)")
    print(f"targets            time {wall / TARGET_SECONDS:.2f} of {TARGET_SECONDS:.0f} s, "
          f"memory {(grader_mb + child_mb) / TARGET_MB:.2f} of {TARGET_MB:.0f} MB")
    print("where the time goes (the last run):")
    print("\n".join(profile))
    if other is not None:
        base = statistics.median(other_times)
        print(f"{other.level:<18} median {base:.1f} s (min {min(other_times):.1f}, max {max(other_times):.1f})")
        print(f"overhead           {isolation.level} / {other.level} = {wall / base:.2f} (target at most 1.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
