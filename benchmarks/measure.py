"""What every benchmark here measures with: interleaved medians, peak memory, the machine's line.

- `time_side_by_side({name: fn}, repeats)`: the median wall time of each
  ``fn()``, the functions called in turn within each repeat, so that a burst
  of load on a shared machine hits all of them alike and their ratios stay
  meaningful. `time_samples` is the same loop returning every sample (and
  allowing fewer repeats for the slowest functions), for other statistics
  (the floor, as the hidden suites' speed checks take).
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


def time_samples(fns: dict[str, Callable[..., Any]], repeats: int = 7, warmup: int = 1,
                 device: torch.device | str = "cpu", repeats_of: dict[str, int] | None = None,
                 setups: dict[str, Callable[[], Any]] | None = None) -> dict[str, list[float]]:
    """``{name: fn}`` -> ``{name: [seconds of each fn() call]}``, the functions interleaved repeat by repeat.

    ``repeats_of`` gives some functions fewer repeats (the slow ones): they take part in the first repeats
    only, still interleaved with the others. ``setups[name]()``, where given, runs untimed right before each
    call of ``fns[name]``, which gets its result (e.g. new inputs)."""
    device = torch.device(device)
    wanted = {name: min(repeats, (repeats_of or {}).get(name, repeats)) for name in fns}
    setups = setups or {}

    def call(name: str) -> float:
        setup = setups.get(name)
        arg = (setup(),) if setup else ()
        _sync(device)
        start = time.perf_counter()
        fns[name](*arg)
        _sync(device)
        return time.perf_counter() - start

    for name in fns:
        for _ in range(warmup):
            call(name)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(repeats):
        for name in fns:
            if r < wanted[name]:
                times[name].append(call(name))
    return times


def time_side_by_side(fns: dict[str, Callable[[], Any]], repeats: int = 7, warmup: int = 1,
                      device: torch.device | str = "cpu") -> dict[str, float]:
    """``{name: fn}`` -> ``{name: median seconds of fn()}``, the functions interleaved repeat by repeat."""
    return {name: statistics.median(t) for name, t in time_samples(fns, repeats, warmup, device).items()}


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
