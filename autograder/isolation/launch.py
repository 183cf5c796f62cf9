"""Starting and stopping the child: what a launcher gets and returns, limits, the running child.

How the child is started is the launcher's business (:data:`Launcher`): it
gets a :class:`LaunchRequest` and returns a :class:`Launch` (argv,
environment, working directory, fds to keep, a ``preexec_fn``).
:func:`default_launcher` runs the interpreter directly with resource limits;
a sandboxing launcher (`sandbox`: other user, bubblewrap) only has to wrap
the argv. Whatever the launcher returns, the child gets ``stdin`` from
``/dev/null``, ``stdout``/``stderr`` to its log file, only the fds in
``pass_fds`` and a new session (so its whole process group can be killed):
:class:`Child` is that process, its pipes and its log.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

try:
    import resource
except ImportError:  # not on POSIX: no limits
    resource = None

HERE = Path(__file__).resolve().parent
CHILD_FILES = ("child.py", "child_server.py", "child_values.py", "child_substitute.py", "channel.py")
"""The files copied next to the student's source: the child imports them by their bare names."""
# These names must match child.py, which cannot import this module.
SOURCE_FILE = "submission.txt"
LOG_FILE = "output.log"
ENV_THREADS = "AUTOGRADER_THREADS"
ENV_STATEMENT_TIMEOUT = "AUTOGRADER_STATEMENT_TIMEOUT"
ENV_LOG_BYTES = "AUTOGRADER_LOG_BYTES"
ENV_DEVICE = "AUTOGRADER_CHILD_DEVICE"  # the device the child puts tensor arguments on (child_server.py)
ENV_GRADING_DEVICE = "AUTOGRADER_DEVICE"
"""Environment variable that chooses the grading device (``cpu`` or ``cuda``; default: CUDA when present)."""

LOG_BYTES = 1 << 20
"""Cap of the child's output log (the child keeps the newest half when it is full)."""
TAIL_BYTES = 8192
"""Most output bytes a `CallResult` or `StudentProcess.stdout_tail` returns."""
CPU_SECONDS = 3600
"""RLIMIT_CPU of a child under :func:`default_launcher` (its whole life, all threads)."""
FILE_BYTES = 64 << 20
"""RLIMIT_FSIZE of a child under :func:`default_launcher` (largest file it may write)."""




@dataclass(frozen=True)
class LaunchRequest:
    """What a launcher needs to know to start the child.

    ``child_script`` is ``workdir/child.py``; the child must run with
    ``workdir`` as its working directory and ``read_fd``/``write_fd`` (its
    ends of the two pipes) open, as ``python child.py READ_FD WRITE_FD``.
    ``env`` is the minimal environment the child should get.
    """

    python: str
    child_script: str
    workdir: str
    read_fd: int
    write_fd: int
    env: Mapping[str, str]
    device: str = "cpu"  # "cuda": the launcher must let the child reach the GPU


def grading_device() -> str:
    """``"cuda"`` when this machine has a CUDA device, else ``"cpu"``; `ENV_GRADING_DEVICE` decides if set.

    Raises ``RuntimeError`` when ``cuda`` is asked for and there is none.
    """
    asked = os.environ.get(ENV_GRADING_DEVICE, "").strip().lower()
    if asked not in ("", "cpu", "cuda"):
        raise RuntimeError(f"{ENV_GRADING_DEVICE} must be cpu or cuda, got {asked!r}")
    import torch

    available = torch.cuda.is_available()
    if asked == "cuda" and not available:
        raise RuntimeError(f"{ENV_GRADING_DEVICE}=cuda, but torch sees no CUDA device here; unset it to grade "
                           "on the CPU")
    return asked or ("cuda" if available else "cpu")


@dataclass(frozen=True)
class Launch:
    """How to start the child: what :class:`subprocess.Popen` gets."""

    argv: list[str]
    env: Mapping[str, str]
    cwd: str
    pass_fds: tuple[int, ...]
    preexec_fn: Callable[[], None] | None = None


Launcher = Callable[[LaunchRequest], Launch]


def default_launcher(request: LaunchRequest) -> Launch:
    """Run ``python -E -s -B child.py READ_FD WRITE_FD`` directly.

    ``-E -s``: no ``PYTHON*`` variables, no user site-packages; ``-B``: no
    ``.pyc`` files. Where :mod:`resource` exists the child gets at most
    :data:`CPU_SECONDS` of CPU time, files of at most :data:`FILE_BYTES`, no
    core dumps.
    """
    argv = [request.python, "-E", "-s", "-B", request.child_script,
            str(request.read_fd), str(request.write_fd)]
    return Launch(argv=argv, env=dict(request.env), cwd=request.workdir,
                  pass_fds=(request.read_fd, request.write_fd),
                  preexec_fn=_apply_limits if resource is not None else None)


def lower_limits(limits: Iterable[tuple[int, int]]) -> None:
    """Set each ``(RLIMIT_*, value)`` as soft and hard limit, never above the current hard limit."""
    for which, value in limits:
        hard = resource.getrlimit(which)[1]
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (value, value))


def _apply_limits() -> None:
    """Lower RLIMIT_CPU, RLIMIT_FSIZE and RLIMIT_CORE; runs in the child."""
    lower_limits(((resource.RLIMIT_CPU, CPU_SECONDS), (resource.RLIMIT_FSIZE, FILE_BYTES),
                  (resource.RLIMIT_CORE, 0)))


def child_env(workdir: str, threads: int, statement_timeout: float,
              extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The stripped environment of a child, plus ``extra`` (which wins)."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": workdir,
        "TMPDIR": workdir,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "OPENBLAS_NUM_THREADS": str(threads),
        ENV_THREADS: str(threads),
        ENV_STATEMENT_TIMEOUT: repr(float(statement_timeout)),
        ENV_LOG_BYTES: str(LOG_BYTES),
    }
    env.update(extra or {})
    return env


# --------------------------------------------------------------------------- the child


def _stat_fields(pid: int | str) -> list[bytes] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state, ppid, ...), or ``None`` if the process
    is gone or there is no ``/proc``. The name may hold spaces and parentheses, so split after the last ')'."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rfind(b")") + 2:].split()


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it, parents first (from ``/proc``; just ``[pid]`` without it)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return [pid]
    for entry in entries:
        fields = _stat_fields(entry) if entry.isdigit() else None
        if fields and len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop(0)
        if current not in found:
            found.append(current)
            todo += children.get(current, [])
    return found


def wait_stopped(pids: list[int], timeout: float = 1.0) -> None:
    """Wait (at most ``timeout`` s) until each of ``pids`` is stopped or gone: a ``SIGSTOP`` is delivered
    asynchronously, and a process on another core may run on for a moment. Without ``/proc``, returns."""
    deadline = time.monotonic() + timeout
    waiting = list(pids)
    while waiting and time.monotonic() < deadline:
        waiting = [pid for pid in waiting if (fields := _stat_fields(pid)) and fields[0] not in (b"T", b"t", b"Z", b"X")]
        if waiting:
            time.sleep(0.001)


class Child:
    """One running child: the process, the parent's pipe ends and its directory."""

    def __init__(self, proc: subprocess.Popen, request_fd: int, reply_fd: int,
                 log_fd: int, workdir: Path):
        self.proc = proc
        self.request_fd = request_fd
        self.reply_fd = reply_fd
        self.log_fd = log_fd  # the parent's own handle: immune to the child renaming files
        self.workdir = workdir
        self.closed = False

    def log_size(self) -> int:
        return os.fstat(self.log_fd).st_size

    def log_text(self, since: int = 0) -> str:
        """The last :data:`TAIL_BYTES` written after offset ``since`` (all of the
        newest output if the log was cut down in between)."""
        size = self.log_size()
        start = max(since if size >= since else 0, size - TAIL_BYTES)
        return os.pread(self.log_fd, size - start, start).decode("utf-8", "replace")

    def close(self, grace: float = 0.0) -> tuple[int | None, str]:
        """Kill the process group, clean up; ``(returncode, log tail)``.

        Waits up to ``grace`` seconds for the child to exit by itself first,
        so that the return code says how it died. Idempotent.
        """
        if self.closed:
            return self.proc.returncode, ""
        self.closed = True
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and not _has_exited(self.proc.pid):
            time.sleep(0.01)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the zombie keeps the pid reserved
        except (ProcessLookupError, PermissionError):
            pass
        returncode = self.proc.wait()
        tail = self.log_text()
        for fd in (self.request_fd, self.reply_fd, self.log_fd):
            os.close(fd)
        shutil.rmtree(self.workdir, ignore_errors=True)
        return returncode, tail


def _has_exited(pid: int) -> bool:
    """True once ``pid`` has exited, without reaping it."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "it is still running"
    if returncode < 0:
        try:
            return f"killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"
