"""The solution notebooks run top to bottom: how long each takes, and the figures it prints.

    python benchmarks/notebooks.py [--full] [--notebooks 03_simclr,04_moco]
    python benchmarks/busy.py -- python benchmarks/notebooks.py     # the same beside two busy processes

Runs each solution notebook in fast mode (``--full``: full mode) in a real
kernel, one after the other, and prints per notebook its wall time, each
training run's line ("N steps in S s"), and its `probe gain:` lines. Training
runs a fixed number of seeded steps, so the figures of a quiet run and of a
busy one must agree (the kit's claim); only the times differ. The tests assert
no time: the times are reported here (`benchmarks/README.md`).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from course_utils.notebook_runner import execute  # noqa: E402

SOLUTIONS = REPO / "solutions" / "self_supervised"
FIGURE_LINES = re.compile(r"^(probe gain: .*|.*\d+ steps in \d+ s.*|supervised.*%.*)$", re.MULTILINE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/notebooks.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="full mode (default: fast mode)")
    parser.add_argument("--notebooks", default=None, help="comma-separated names (default: all five)")
    args = parser.parse_args(argv)
    names = args.notebooks.split(",") if args.notebooks else sorted(p.stem for p in SOLUTIONS.glob("*.ipynb"))
    mode = "full" if args.full else "fast"
    times, failed = {}, []
    for name in names:
        run = execute(SOLUTIONS / f"{name}.ipynb", fast=not args.full, timeout=900)
        times[name] = run.seconds
        print(f"== {name} ({mode} mode): {run.seconds:.0f} s, {len(run.errors)} cell(s) with errors", flush=True)
        for line in FIGURE_LINES.findall(run.output()):
            print(f"   {line.strip()}")
        if run.errors:
            failed.append(name)
            for cell in run.errors:
                print(f"   [cell {cell.index}: {cell.error[0]}: {cell.error[1][:200]}]")
    print(f"\n{mode} mode, wall time per notebook: " + ", ".join(f"{n} {t:.0f} s" for n, t in times.items()))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
