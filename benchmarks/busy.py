"""Run a command beside busy processes, one per core by default, for the whole of its run.

    python benchmarks/busy.py [--procs N] -- COMMAND [ARG ...]

Each busy process spins in pure Python (one core's worth of load, no memory
to speak of), as a student's other programs or another grading job would.
They start before ``COMMAND`` and are killed when it ends, however it ends;
the exit status is the command's. `make test-busy` runs the kit's tests this
way, so that a figure or a grade that depends on the machine's load shows up
as a failure.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

SPIN = "while True: pass"


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def run_beside_busy(command: list[str], procs: int) -> int:
    """Start ``procs`` spinning processes, run ``command`` to its end, kill them; the command's exit status."""
    def stop(signum, frame):  # a kill of this script ends the busy processes too, not only the command's end
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    hogs = [subprocess.Popen([sys.executable, "-c", SPIN], stdin=subprocess.DEVNULL) for _ in range(procs)]
    print(f"busy.py: {procs} busy process(es) beside `{' '.join(command)}` ({cores()} cores)", flush=True)
    start = time.perf_counter()
    child = None
    try:
        child = subprocess.Popen(command)
        return child.wait()
    finally:
        if child is not None and child.poll() is None:
            child.terminate()
            child.wait()
        for hog in hogs:
            hog.kill()
        for hog in hogs:
            hog.wait()
        print(f"busy.py: the command took {time.perf_counter() - start:.0f} s beside {procs} busy process(es)",
              flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/busy.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--procs", type=int, default=cores(), help="busy processes (default: one per core)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --, e.g. python benchmarks/busy.py -- make test")
    if args.procs < 0:
        parser.error(f"--procs must be 0 or more, got {args.procs}")
    return run_beside_busy(command, args.procs)


if __name__ == "__main__":
    sys.exit(main())
