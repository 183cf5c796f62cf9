"""What every benchmark here measures with: interleaved medians, peak memory, the machine's line.

- `time_side_by_side({name: fn}, repeats)`: the median wall time of each
  ``fn()``, the functions called in turn within each repeat, so that a burst
  of load on a shared machine hits all of them alike and their ratios stay
  meaningful.
- `peak_memory(fn)`: the peak of memory allocated while ``fn()`` runs, above
  what was allocated before it, in bytes: CUDA's allocator statistics on a
  GPU, the profiler's allocation events on the CPU.
- `machine_line()`: torch's version, the threads and the device, for the
  head of a report.
"""
from __future__ import annotations

import contextlib
import os
import platform
import statistics
import time
from typing import Any, Callable

import torch
from torch.profiler import ProfilerActivity, profile


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_side_by_side(fns: dict[str, Callable[[], Any]], repeats: int = 7, warmup: int = 1,
                      device: torch.device | str = "cpu") -> dict[str, float]:
    """``{name: fn}`` -> ``{name: median seconds of fn()}``, the functions interleaved repeat by repeat."""
    device = torch.device(device)
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


@contextlib.contextmanager
def _quiet_stderr():
    """The CPU profiler's C++ side prints a line at each start and stop on file descriptor 2: silence it."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_memory(fn: Callable[[], Any], device: torch.device | str = "cpu") -> int:
    """Peak bytes allocated by torch during ``fn()``, above what was allocated when it started."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    # every allocation and free is a "[memory]" event with a signed size: their running sum is what is live
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    live = peak = 0
    for event in events:
        live += event.nbytes()
        peak = max(peak, live)
    return peak


def machine_line(device: torch.device | str = "cpu") -> str:
    device = torch.device(device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()})"
    return (f"torch {torch.__version__}, {where}, {torch.get_num_threads()} threads of {os.cpu_count()} cores, "
            f"Python {platform.python_version()}")
