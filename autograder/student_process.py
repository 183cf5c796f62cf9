"""Grader side: run a student's source in a child process and call into it.

:class:`StudentProcess` copies ``child.py`` and ``channel.py`` next to the
student's source in a fresh private directory, starts ``child.py`` there and
talks to it over two pipes with :mod:`autograder.channel` frames (data only,
no pickle), so nothing the child sends can run code in the grader. Every read
has a timeout; a call that times out, crashes the child or breaks the
protocol kills the child's process group and fails with :class:`StudentError`,
and the next call starts a fresh child.

How the child is started is the launcher's business (:data:`Launcher`): it
gets a :class:`LaunchRequest` and returns a :class:`Launch` (argv,
environment, working directory, fds to keep, a ``preexec_fn``).
:func:`default_launcher` runs the interpreter directly with resource limits;
a sandboxing launcher (other user, bubblewrap, namespaces) only has to wrap
the argv. Whatever the launcher returns, the child gets ``stdin`` from
``/dev/null``, ``stdout``/``stderr`` to its log file, only the fds in
``pass_fds`` and a new session (so its whole process group can be killed).

Arguments that are not plain data are described with :func:`mlp_spec` and
:func:`generator_spec` and built in the child; modules come back as their
``state_dict`` (see ``child.py`` for the request and reply formats).
"""
from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, NoReturn

import torch

from autograder import channel

try:
    import resource
except ImportError:  # not on POSIX: no limits
    resource = None

HERE = Path(__file__).resolve().parent
CHILD_FILES = ("child.py", "channel.py")
# These names must match child.py, which cannot import this module.
SOURCE_FILE = "submission.txt"
LOG_FILE = "output.log"
ENV_THREADS = "AUTOGRADER_THREADS"
ENV_STATEMENT_TIMEOUT = "AUTOGRADER_STATEMENT_TIMEOUT"
ENV_LOG_BYTES = "AUTOGRADER_LOG_BYTES"

LOG_BYTES = 1 << 20
"""Cap of the child's output log (the child keeps the newest half when it is full)."""
TAIL_BYTES = 8192
"""Most output bytes a :class:`CallResult` or :meth:`StudentProcess.stdout_tail` returns."""
CPU_SECONDS = 3600
"""RLIMIT_CPU of a child under :func:`default_launcher` (its whole life, all threads)."""
FILE_BYTES = 64 << 20
"""RLIMIT_FSIZE of a child under :func:`default_launcher` (largest file it may write)."""

class StudentError(Exception):
    """A call into the student's code failed.

    Attributes:
        kind: ``"exception"`` (the code raised, or returned something that
            cannot be sent back), ``"timeout"``, ``"crash"`` (the child died),
            ``"protocol"`` (the child sent an invalid reply) or ``"missing"``
            (no such function).
        message: one human-readable line, e.g. ``"ValueError: bad shape"``.
        exc_type: the exception's class name for ``"exception"``, else ``""``.
        student_traceback: the traceback with only the student's frames
            (file ``<submission>``), or ``""``.
        stdout_tail: the end of what the child printed (for crashes: up to
            its death).
    """

    def __init__(self, kind: str, message: str, *, exc_type: str = "",
                 student_traceback: str = "", stdout_tail: str = ""):
        super().__init__(kind, message)
        self.kind = kind
        self.message = message
        self.exc_type = exc_type
        self.student_traceback = student_traceback
        self.stdout_tail = stdout_tail

    def __str__(self) -> str:
        text = f"[{self.kind}] {self.message}"
        return f"{text}\n{self.student_traceback}" if self.student_traceback else text


@dataclass
class CallResult:
    """The outcome of :meth:`StudentProcess.call`.

    Attributes:
        value: the function's return value (modules as ``state_dict``).
        grads: ``{key: gradient tensor or None}`` for each ``grad_of`` key, or
            ``None`` when no gradients were asked for.
        args_after: ``{position or keyword: value}`` of all arguments after
            the call when ``return_args`` was set, else ``None``.
        stdout_tail: the end (at most :data:`TAIL_BYTES`) of what the call printed.
        seconds: how long the call took in the child.
    """

    value: Any
    grads: dict | None
    args_after: dict | None
    stdout_tail: str
    seconds: float


# --------------------------------------------------------------------------- launching


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


def _apply_limits() -> None:
    """Lower (never raise) RLIMIT_CPU, RLIMIT_FSIZE and RLIMIT_CORE; runs in the child."""
    for which, value in ((resource.RLIMIT_CPU, CPU_SECONDS),
                         (resource.RLIMIT_FSIZE, FILE_BYTES),
                         (resource.RLIMIT_CORE, 0)):
        hard = resource.getrlimit(which)[1]
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (value, value))


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


# --------------------------------------------------------------------------- specs


def mlp_spec(sizes: Iterable[int], state_dict: Mapping[str, Any] | None = None, *,
             seed: int | None = None, bias: bool = True) -> dict:
    """An argument the child builds into ``nn.Sequential(Linear, ReLU, ..., Linear)``.

    ``sizes`` = ``[d0, ..., dn]`` gives ``Linear(d0, d1)``, ..., ``Linear(dn-1, dn)``
    with ``ReLU`` between them. ``state_dict`` (tensors, e.g. ``model.state_dict()``
    of the same architecture) replaces the default initialisation, which
    ``seed`` makes reproducible.
    """
    spec: dict = {"__build__": "mlp", "sizes": list(sizes), "bias": bias}
    if seed is not None:
        spec["seed"] = seed
    if state_dict is not None:
        spec["state_dict"] = dict(state_dict)
    return spec


def generator_spec(seed: int) -> dict:
    """An argument the child builds into ``torch.Generator().manual_seed(seed)``."""
    return {"__build__": "generator", "seed": seed}


# --------------------------------------------------------------------------- the child


class _Child:
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


def _describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "it is still running"
    if returncode < 0:
        try:
            return f"killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


# --------------------------------------------------------------------------- the process


class StudentProcess:
    """The student's ``source`` running in a child process, ready to be called.

    Use as a context manager (``with StudentProcess(src) as sp: sp.call(...)``)
    or call :meth:`close`. Not thread-safe.

    Args:
        source: Python source, e.g. ``Extraction.source``.
        workdir: directory in which the child's fresh private working
            directories are created (default: the system temp directory).
        call_timeout: seconds one call may take before the child is killed.
        threads: torch (and BLAS/OpenMP) threads in the child.
        python: the interpreter that runs ``child.py``.
        env: extra environment variables for the child.
        launcher: builds how the child is started (default :func:`default_launcher`).
        start_timeout: seconds for the child to start and load the source
            (importing torch included).

    Starting runs the source's top level; each top-level statement may take
    ``call_timeout`` seconds.

    Attributes:
        load_errors: one :class:`StudentError` (kind ``"exception"``, message
            ``"line N: Type: message"``) per top-level statement that failed
            when the source was last loaded.
    """

    def __init__(self, source: str, *, workdir: str | os.PathLike | None = None,
                 call_timeout: float = 10.0, threads: int = 1, python: str = sys.executable,
                 env: Mapping[str, str] | None = None, launcher: Launcher | None = None,
                 start_timeout: float = 60.0):
        if type(source) is not str:
            raise TypeError(f"source must be a str, got {type(source).__name__}")
        if not (call_timeout > 0 and start_timeout > 0):
            raise ValueError("call_timeout and start_timeout must be positive")
        if type(threads) is not int or threads < 1:
            raise ValueError(f"threads must be a positive int, got {threads!r}")
        self.source = source
        self.call_timeout = float(call_timeout)
        self.start_timeout = float(start_timeout)
        self.threads = threads
        self.python = python
        self._workdir = workdir
        self._env = dict(env or {})
        self._launcher = launcher or default_launcher
        self._child: _Child | None = None
        self._finalizer: weakref.finalize | None = None
        self._last_tail = ""
        self.load_errors: list[StudentError] = []

    # -- lifecycle

    def __enter__(self) -> StudentProcess:
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def start(self) -> None:
        """Start the child and load the source, unless it is running.

        Raises :class:`StudentError` (``"timeout"``, ``"crash"``,
        ``"protocol"``) if the child does not come up; the next call tries again.
        """
        if self._child is not None:
            return
        child = self._spawn()
        self._child = child
        self._finalizer = weakref.finalize(self, child.close)
        try:
            ready = channel.recv(child.reply_fd, timeout=self.start_timeout)
        except channel.ChannelError as e:
            self._fail_io(e, "start-up (importing torch, loading the submission)",
                          self.start_timeout)
        if type(ready) is not dict or ready.get("ready") is not True or \
                type(ready.get("load_errors")) is not list:
            self._fail("protocol", "the student process sent an invalid start message")
        self.load_errors = [self._load_error(e) for e in ready["load_errors"]]

    def close(self) -> None:
        """Stop the child (asking nicely first, then killing its process group)."""
        child = self._child
        if child is None:
            return
        try:
            channel.send(child.request_fd, {"op": "shutdown"}, timeout=0.5)
            channel.recv(child.reply_fd, timeout=0.5)
            grace = 0.5
        except channel.ChannelError:
            grace = 0.0
        self._stop(grace)

    def _spawn(self) -> _Child:
        workdir = Path(tempfile.mkdtemp(prefix="student-", dir=self._workdir))
        fds: list[int] = []
        try:
            (workdir / SOURCE_FILE).write_text(self.source, encoding="utf-8")
            for name in CHILD_FILES:
                shutil.copyfile(HERE / name, workdir / name)
            log_fd = os.open(workdir / LOG_FILE, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            fds.append(log_fd)
            request_r, request_w = os.pipe()
            fds += [request_r, request_w]
            reply_r, reply_w = os.pipe()
            fds += [reply_r, reply_w]
            launch = self._launcher(LaunchRequest(
                python=self.python, child_script=str(workdir / "child.py"),
                workdir=str(workdir), read_fd=request_r, write_fd=reply_w,
                env=child_env(str(workdir), self.threads, self.call_timeout, self._env)))
            proc = subprocess.Popen(
                launch.argv, cwd=launch.cwd, env=dict(launch.env), pass_fds=launch.pass_fds,
                close_fds=True, start_new_session=True, preexec_fn=launch.preexec_fn,
                stdin=subprocess.DEVNULL, stdout=log_fd, stderr=log_fd)
        except BaseException:
            for fd in fds:
                os.close(fd)
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        os.close(request_r)
        os.close(reply_w)
        return _Child(proc, request_w, reply_r, log_fd, workdir)

    def _stop(self, grace: float) -> tuple[int | None, str]:
        child, self._child = self._child, None
        assert child is not None and self._finalizer is not None
        self._finalizer.detach()
        returncode, self._last_tail = child.close(grace)
        return returncode, self._last_tail

    def _fail(self, kind: str, message: str, grace: float = 0.0) -> NoReturn:
        """Kill the child and raise :class:`StudentError`; the next call restarts it."""
        returncode, tail = self._stop(grace)
        if kind == "crash":
            message = f"{message} ({_describe_exit(returncode)})"
        raise StudentError(kind, message, stdout_tail=tail)

    def _fail_io(self, error: channel.ChannelError, what: str, timeout: float) -> NoReturn:
        if isinstance(error, channel.ChannelTimeout):
            self._fail("timeout", f"{what} did not finish within {timeout:g}s; the "
                                  "student process was stopped")
        if isinstance(error, channel.ChannelClosed):
            self._fail("crash", f"the student process died during {what}", grace=1.0)
        self._fail("protocol", f"the student process sent an invalid reply during {what}: "
                               f"{error}")

    @staticmethod
    def _load_error(info: Any) -> StudentError:
        if type(info) is not dict or not all(type(info.get(k)) is str
                                             for k in ("type", "message", "traceback")):
            return StudentError("protocol", f"malformed load error {info!r:.200}")
        line = info.get("line")
        where = f"line {line}: " if type(line) is int else ""
        return StudentError("exception", f"{where}{info['type']}: {info['message']}",
                            exc_type=info["type"], student_traceback=info["traceback"])

    # -- requests

    def _request(self, request: dict, timeout: float, what: str) -> tuple[dict, str]:
        """Send ``request``, return ``(successful reply, output printed meanwhile)``.

        Raises :class:`StudentError` for failures and kills the child where
        it cannot be trusted any more; raises :class:`channel.EncodeError`
        (child untouched) if the request holds values that cannot be sent.
        """
        self.start()
        child = self._child
        assert child is not None
        since = child.log_size()
        deadline = time.monotonic() + timeout
        try:
            channel.send(child.request_fd, request, timeout=timeout)
            reply = channel.recv(child.reply_fd, timeout=max(0.0, deadline - time.monotonic()))
        except channel.EncodeError:
            raise
        except channel.ChannelError as e:
            self._fail_io(e, what, timeout)
        tail = child.log_text(since)
        if type(reply) is not dict or type(reply.get("ok")) is not bool:
            self._fail("protocol", f"the student process sent an invalid reply to {what}")
        if not reply["ok"]:
            self._raise_failure(reply, what, tail)
        return reply, tail

    def _raise_failure(self, reply: dict, what: str, tail: str) -> NoReturn:
        kind = reply.get("kind")
        fields = [reply.get(k) for k in ("type", "message", "traceback")]
        if kind not in ("exception", "missing", "request") or \
                not all(type(f) is str for f in fields):
            self._fail("protocol", f"the student process sent an invalid failure for {what}")
        exc_type, message, tb = fields
        if kind == "request":
            raise ValueError(f"the student process rejected {what} as malformed: {message}")
        if kind == "exception":
            message = f"{exc_type}: {message}"
        raise StudentError(kind, message, exc_type=exc_type if kind == "exception" else "",
                           student_traceback=tb, stdout_tail=tail)

    def call(self, name: str, *args: Any, timeout: float | None = None,
             grad_of: Iterable[int | str] | int | str | None = None,
             grad_output: Any = None, return_args: bool = False,
             **kwargs: Any) -> CallResult:
        """Call the student's function ``name(*args, **kwargs)`` in the child.

        Args and kwargs must be channel values (tensors are sent as CPU
        copies) or specs from :func:`mlp_spec`/:func:`generator_spec`.
        ``grad_of`` (positions of ``args`` and/or names of ``kwargs``, floating
        tensors) asks for the gradients of the result, a tensor, with
        ``grad_output`` (default: of ``result.sum()``). ``return_args`` asks
        for the arguments as they are after the call. ``timeout`` defaults to
        ``call_timeout``. The student's own keyword arguments cannot be named
        like these four.

        Raises :class:`StudentError` (see its ``kind``), ``ValueError`` for a
        request the child rejects (e.g. ``grad_of`` naming a non-tensor), and
        :class:`channel.EncodeError` for arguments that cannot be sent.
        """
        options: dict[str, Any] = {}
        if grad_of is not None:
            keys = [grad_of] if type(grad_of) in (int, str) else list(grad_of)
            if not keys or not all(type(k) in (int, str) for k in keys):
                raise ValueError("grad_of must be argument positions (int) and/or keyword "
                                 f"names (str), got {grad_of!r}")
            options["grad_of"] = keys
            if grad_output is not None:
                options["grad_output"] = grad_output
        elif grad_output is not None:
            raise ValueError("grad_output needs grad_of")
        if return_args:
            options["return_args"] = True
        timeout = self.call_timeout if timeout is None else timeout
        reply, tail = self._request(
            {"op": "call", "name": name, "args": list(args), "kwargs": kwargs,
             "options": options}, timeout, f"the call to {name!r}")
        return self._call_result(reply, tail, options.get("grad_of"), len(args), kwargs)

    def _call_result(self, reply: dict, tail: str, grad_of: list | None, n_args: int,
                     kwargs: dict) -> CallResult:
        seconds, grads, after = reply.get("seconds"), reply.get("grads"), reply.get("args_after")
        valid = set(reply) == {"ok", "value", "seconds", "grads", "args_after"} \
            and type(seconds) is float and math.isfinite(seconds) and seconds >= 0 \
            and (grads is None if grad_of is None else
                 type(grads) is list and len(grads) == len(grad_of)
                 and all(g is None or type(g) is torch.Tensor for g in grads)) \
            and (after is None or (type(after) is dict and set(after) == {"args", "kwargs"}
                                   and type(after["args"]) is list
                                   and len(after["args"]) == n_args
                                   and type(after["kwargs"]) is dict
                                   and set(after["kwargs"]) == set(kwargs)))
        if not valid:
            self._fail("protocol", "the student process sent a malformed call reply")
        return CallResult(
            value=reply["value"],
            grads=None if grad_of is None else dict(zip(grad_of, grads)),
            args_after=None if after is None else
            {**dict(enumerate(after["args"])), **after["kwargs"]},
            stdout_tail=tail, seconds=seconds)

    def time(self, name: str, *args: Any, repeats: int = 5, warmup: int = 1,
             timeout: float | None = None, **kwargs: Any) -> float:
        """Median seconds of ``repeats`` calls of ``name(*args, **kwargs)`` after
        ``warmup`` untimed ones, all with the same arguments, in the child.

        ``timeout`` (for all of them) defaults to ``call_timeout * (repeats + warmup)``.
        """
        if type(repeats) is not int or repeats < 1 or type(warmup) is not int or warmup < 0:
            raise ValueError("repeats must be an int >= 1 and warmup an int >= 0")
        timeout = self.call_timeout * (repeats + warmup) if timeout is None else timeout
        reply, tail = self._request(
            {"op": "call", "name": name, "args": list(args), "kwargs": kwargs,
             "options": {"repeat": repeats, "warmup": warmup}}, timeout,
            f"timing {name!r}")
        return self._call_result(reply, tail, None, len(args), kwargs).seconds

    def names(self, timeout: float | None = None) -> dict[str, bool]:
        """``{name: is_callable}`` for the names the submission defines (and imports)."""
        reply, _ = self._request({"op": "names"}, timeout or self.call_timeout,
                                 "listing names")
        value = reply.get("value")
        if type(value) is not dict or not all(type(v) is bool for v in value.values()):
            self._fail("protocol", "the student process sent a malformed list of names")
        return value

    def ping(self, timeout: float | None = None) -> None:
        """Check that the child answers (starting it if needed)."""
        reply, _ = self._request({"op": "ping"}, timeout or self.call_timeout, "a ping")
        if reply.get("value") != "pong":
            self._fail("protocol", "the student process answered a ping wrongly")

    def stdout_tail(self) -> str:
        """The end of the child's output log (of the last child, if none is running)."""
        return self._child.log_text() if self._child is not None else self._last_tail
