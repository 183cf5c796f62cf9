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

Names the tested function calls (other graded functions) can be replaced,
for one call, by trusted grader-side callables (``substitute=``): the child
gets stubs that send their arguments back over the channel, and the grader
answers with the values (and, for autograd, the gradients), so that trusted
code never enters the child.
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
CALLBACK_MAX_ELEMENTS = 1 << 20
CALLBACK_MAX_SIDE = 4096
"""Largest callback arguments the grader computes its reference on (so that a child cannot
make it allocate, e.g., a 100000 x 100000 similarity matrix)."""
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


# --------------------------------------------------------------------------- callbacks


def _check_substitute(substitute: Mapping[str, Callable] | None) -> dict[str, Callable]:
    """``substitute`` as a dict, checked: identifiers (not dunder) to callables."""
    if substitute is None:
        return {}
    if not isinstance(substitute, Mapping):
        raise TypeError(f"substitute must be a mapping of names to callables, got "
                        f"{type(substitute).__name__}")
    callbacks = dict(substitute)
    for key, fn in callbacks.items():
        if type(key) is not str or not key.isidentifier() or key.startswith("__"):
            raise ValueError(f"substitute: {key!r} is not a name that can be substituted")
        if not callable(fn):
            raise TypeError(f"substitute: the value for {key!r} is not callable")
    return callbacks


def _callback_grads(fn: Callable, args: list, kwargs: dict, grad_output: torch.Tensor
                    ) -> list:
    """Gradients for ``grad_output`` of ``fn(*args, **kwargs)`` (a tensor) with respect
    to each floating tensor of ``args``; ``None`` for the other arguments and unused ones."""
    inputs = [a.detach().requires_grad_(True)
              if type(a) is torch.Tensor and a.is_floating_point() else a for a in args]
    with torch.enable_grad():
        out = fn(*inputs, **kwargs)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"gradients need a tensor result, got a {type(out).__name__}")
    if grad_output.shape != out.shape:
        raise ValueError(f"grad_output has shape {tuple(grad_output.shape)}, the result "
                         f"{tuple(out.shape)}")
    leaves = [a for a in inputs if type(a) is torch.Tensor and a.requires_grad]
    if leaves and out.requires_grad:
        grad_output = grad_output.to(device=out.device, dtype=out.dtype)
        grads = list(torch.autograd.grad(out, leaves, grad_output, allow_unused=True))
    else:
        grads = [None] * len(leaves)
    found = iter(grads)
    return [next(found) if type(a) is torch.Tensor and a.requires_grad else None
            for a in inputs]


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
        packages: package folders copied into the child's working directory,
            so that the student's code can import them there (a sandbox may
            hide where they are installed).

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
                 start_timeout: float = 60.0, packages: Iterable[str | os.PathLike] = ()):
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
        self.packages = [Path(p) for p in packages]
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
            for package in self.packages:  # e.g. course_utils, which the notebooks import
                shutil.copytree(package, workdir / Path(package).name,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
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

    def _request(self, request: dict, timeout: float, what: str,
                 callbacks: Mapping[str, Callable] | None = None) -> tuple[dict, str]:
        """Send ``request``, return ``(successful reply, output printed meanwhile)``.

        Callback messages that arrive before the reply are answered with
        ``callbacks`` (see :meth:`_answer_callback`), all within ``timeout``.
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
        except channel.EncodeError:
            raise
        except channel.ChannelError as e:
            self._fail_io(e, what, timeout)
        try:
            while True:
                reply = channel.recv(child.reply_fd,
                                     timeout=max(0.0, deadline - time.monotonic()))
                if type(reply) is not dict or "callback" not in reply:
                    break
                answer = self._answer_callback(reply, callbacks or {}, what)
                if time.monotonic() >= deadline:
                    raise channel.ChannelTimeout("the deadline passed during callbacks")
                try:
                    channel.send(child.request_fd, answer,
                                 timeout=max(0.0, deadline - time.monotonic()))
                except channel.EncodeError as e:
                    channel.send(child.request_fd,
                                 {"ok": False, "message": f"its result cannot be sent: {e}"},
                                 timeout=max(0.0, deadline - time.monotonic()))
        except channel.ChannelError as e:
            self._fail_io(e, what, timeout)
        tail = child.log_text(since)
        if type(reply) is not dict or type(reply.get("ok")) is not bool:
            self._fail("protocol", f"the student process sent an invalid reply to {what}")
        if not reply["ok"]:
            self._raise_failure(reply, what, tail)
        return reply, tail

    def _answer_callback(self, message: dict, callbacks: Mapping[str, Callable],
                         what: str) -> dict:
        """The answer to one callback message of the child (see ``child.py``).

        The message must be exactly ``{"callback": name, "phase": "forward",
        "args": list, "kwargs": dict}`` or the same with ``"phase":
        "backward"`` and a ``"grad_output"`` tensor, for a ``name`` in
        ``callbacks``; anything else kills the child (``"protocol"``).
        Forward: ``{"ok": True, "value": fn(*args, **kwargs)}`` computed under
        ``no_grad``. Backward: ``fn`` is recomputed with the floating tensors
        of ``args`` requiring grad, and the value is the list of their
        gradients for ``grad_output`` (``None`` for other arguments and
        unused ones). If ``fn`` raises, the answer is ``{"ok": False,
        "message": "Type: message"}``.
        """
        phase, name = message.get("phase"), message.get("callback")
        keys = {"callback", "phase", "args", "kwargs"} | \
            ({"grad_output"} if phase == "backward" else set())
        if phase not in ("forward", "backward") or set(message) != keys \
                or type(name) is not str or type(message["args"]) is not list \
                or type(message["kwargs"]) is not dict \
                or (phase == "backward" and type(message["grad_output"]) is not torch.Tensor):
            self._fail("protocol", f"the student process sent a malformed callback during "
                                   f"{what}")
        fn = callbacks.get(name)
        if fn is None:
            self._fail("protocol", f"the student process asked for the grader's {name!r:.100} "
                                   f"during {what}, which is not substituted there")
        args, kwargs = message["args"], message["kwargs"]
        tensors = [t for t in [*args, *kwargs.values()] if type(t) is torch.Tensor]
        if sum(t.numel() for t in tensors) > CALLBACK_MAX_ELEMENTS or \
                any(n > CALLBACK_MAX_SIDE for t in tensors for n in t.shape):
            return {"ok": False, "message": f"arguments too large for the grader's {name} (at most "
                                            f"{CALLBACK_MAX_ELEMENTS} elements and {CALLBACK_MAX_SIDE} per side)"}
        try:
            if phase == "forward":
                with torch.no_grad():
                    value = fn(*args, **kwargs)
            else:
                value = _callback_grads(fn, args, kwargs, message["grad_output"])
        except Exception as e:
            text = f"{type(e).__name__}: {e}"
            return {"ok": False, "message": text if len(text) <= 2000 else text[:2000] + "..."}
        return {"ok": True, "value": channel.plain(value)}

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
             substitute: Mapping[str, Callable] | None = None,
             then_call: Iterable[Iterable[Any]] | None = None, seed: int | None = None,
             **kwargs: Any) -> CallResult:
        """Call the student's function ``name(*args, **kwargs)`` in the child.

        Args and kwargs must be channel values (tensors are sent as CPU
        copies) or specs from :func:`mlp_spec`/:func:`generator_spec`.
        ``grad_of`` (positions of ``args`` and/or names of ``kwargs``, floating
        tensors) asks for the gradients of the result, a tensor, with
        ``grad_output`` (default: of ``result.sum()``). ``return_args`` asks
        for the arguments as they are after the call. ``timeout`` defaults to
        ``call_timeout``; it bounds the whole call, callbacks included. The
        student's own keyword arguments cannot be named like these seven.

        ``substitute`` maps names of the submission's globals (e.g. other
        graded functions that ``name`` calls) to trusted grader-side callables
        (e.g. the reference versions). During this call only, the child binds
        each name to a stub that sends its arguments back here (data only; the
        callables never enter the child); ``fn(*args, **kwargs)`` is computed
        in the grader under ``no_grad`` and its value sent back. Gradients
        flow through the stub when ``fn`` returns one tensor: its backward
        is a second callback, answered by recomputing ``fn`` with the floating
        tensor arguments requiring grad. Tensor keyword arguments are
        constants for autograd. If ``fn`` raises, the stub raises
        ``RuntimeError("grader's NAME failed: Type: message")`` in the child.
        A callback for any other name is a ``"protocol"`` failure.

        ``then_call`` (a list of argument lists) applies the callable that
        ``name`` returns (e.g. a transform) to each; the value is the list of
        results. ``seed`` seeds the child's ``random``, torch (and NumPy)
        generators just before the call, for reproducible random functions.

        Raises :class:`StudentError` (see its ``kind``), ``ValueError`` for a
        request the child rejects (e.g. ``grad_of`` naming a non-tensor), and
        :class:`channel.EncodeError` for arguments that cannot be sent.
        """
        callbacks = _check_substitute(substitute)
        options: dict[str, Any] = {}
        if callbacks:
            options["substitute"] = list(callbacks)
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
        if then_call is not None:
            options["then_call"] = [list(c) for c in then_call]
        if seed is not None:
            options["seed"] = int(seed)
        timeout = self.call_timeout if timeout is None else timeout
        reply, tail = self._request(
            {"op": "call", "name": name, "args": list(args), "kwargs": kwargs,
             "options": options}, timeout, f"the call to {name!r}", callbacks)
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
             timeout: float | None = None,
             substitute: Mapping[str, Callable] | None = None, **kwargs: Any) -> float:
        """Median seconds of ``repeats`` calls of ``name(*args, **kwargs)`` after
        ``warmup`` untimed ones, all with the same arguments, in the child.

        ``timeout`` (for all of them) defaults to ``call_timeout * (repeats + warmup)``.
        ``substitute`` is as for :meth:`call`; the callbacks count in the times.
        """
        if type(repeats) is not int or repeats < 1 or type(warmup) is not int or warmup < 0:
            raise ValueError("repeats must be an int >= 1 and warmup an int >= 0")
        callbacks = _check_substitute(substitute)
        options: dict[str, Any] = {"repeat": repeats, "warmup": warmup}
        if callbacks:
            options["substitute"] = list(callbacks)
        timeout = self.call_timeout * (repeats + warmup) if timeout is None else timeout
        reply, tail = self._request(
            {"op": "call", "name": name, "args": list(args), "kwargs": kwargs,
             "options": options}, timeout, f"timing {name!r}", callbacks)
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
