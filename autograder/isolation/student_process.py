"""Grader side: run a student's source in a child process and call into it.

:class:`StudentProcess` copies the child's files (`launch.CHILD_FILES`) next
to the student's source in a fresh private directory, starts ``child.py``
there with a launcher (`launch`, `sandbox`) and talks to it over two pipes
with :mod:`autograder.isolation.channel` frames (data only, no pickle), so
nothing the child sends can run code in the grader. Every read has a
timeout; a call that times out, crashes the child or breaks the protocol
kills the child's process group and fails with :class:`StudentError`, and
the next call starts a fresh child.

Arguments that are not plain data are described with `specs` and built in
the child; modules come back as their ``state_dict`` (see ``child_server.py``
for the request and reply formats).

Names the tested function calls (other graded functions) can be replaced,
for one call, by trusted grader-side callables (``substitute=``): the child
gets stubs that send their arguments back over the channel, and the grader
answers with the values (and, for autograd, the gradients), so that trusted
code never enters the child.
"""
from __future__ import annotations

import contextlib
import os
import signal
import shutil
import subprocess
import sys
import tempfile
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, NoReturn

import torch

from . import channel
from .callbacks import CallbackViolation, answer_callback, check_substitute
from .launch import (
    CHILD_FILES,
    ENV_DEVICE,
    HERE,
    LOG_FILE,
    SOURCE_FILE,
    Child,
    Launcher,
    LaunchRequest,
    child_env,
    default_launcher,
    descendants,
    wait_stopped,
    describe_exit,
)


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
        call: the call that failed, described for the student (e.g.
            ``"sim(float32 [3], float32 [3])"``), or ``""``; the grading
            layer fills it in.
    """

    def __init__(self, kind: str, message: str, *, exc_type: str = "",
                 student_traceback: str = "", stdout_tail: str = ""):
        super().__init__(kind, message)
        self.kind = kind
        self.message = message
        self.exc_type = exc_type
        self.student_traceback = student_traceback
        self.stdout_tail = stdout_tail
        self.call = ""  # the failing call in the student's terms, e.g. "sim(float32 [3], float32 [3])"; set by the caller

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
        seconds: how long the call took, measured by the grader from sending
            the request to reading the reply's last byte (decoding it, the
            grader's own work, is left out; the child's own figure is never
            used: its clock is the student's).
        callbacks: how many callbacks (``substitute``) the grader answered.
        callback_seconds: the grader's own time computing those answers.
        graph: ``{position: bool or None}`` with ``report_graph``: whether each positional argument was
            attached to autograd after the call (see ``child_server``), else ``None``.
    """

    value: Any
    grads: dict | None
    args_after: dict | None
    stdout_tail: str
    seconds: float
    callbacks: int = 0
    callback_seconds: float = 0.0
    graph: dict | None = None


CALLS_NOT_TIMED = 4
"""`StudentProcess.time` leaves the grader's time answering callbacks out of a call's time while each
substituted name was called at most this many times in it (a vectorized function calls each dependency
a few times, a loop over the rows once per row, and keeps paying for it)."""


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
        late_loads: ``{"line", "cell", "name"}`` per statement that loaded only
            when tried again after the rest (it needed ``name``, defined
            further down: the notebook depends on the order its cells ran in).
    """

    def __init__(self, source: str, *, workdir: str | os.PathLike | None = None,
                 call_timeout: float = 10.0, threads: int = 1, python: str = sys.executable,
                 env: Mapping[str, str] | None = None, launcher: Launcher | None = None,
                 start_timeout: float = 60.0, packages: Iterable[str | os.PathLike] = (),
                 device: str = "cpu"):
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
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        self.device = device  # where the child puts tensor arguments (values come back on the CPU)
        self._env = {**(env or {}), ENV_DEVICE: device}
        self._launcher = launcher or default_launcher
        self.packages = [Path(p) for p in packages]
        self._child: Child | None = None
        self._ready = False  # the child has sent its start message (see `launch`, `start`)
        self._finalizer: weakref.finalize | None = None
        self._last_tail = ""
        self.load_errors: list[StudentError] = []
        self.late_loads: list[dict] = []

    # -- lifecycle

    def __enter__(self) -> StudentProcess:
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def launch(self) -> None:
        """Start the child without waiting for it to come up (`start` waits), unless it is running.

        So that a child's start-up (importing torch, loading the source) overlaps other work of the
        grader: another child's start-up, loading the reference.
        """
        if self._child is not None:
            return
        child = self._spawn()
        self._child, self._ready = child, False
        self._finalizer = weakref.finalize(self, child.close)

    def start(self) -> None:
        """Start the child (unless `launch` has) and wait until it has loaded the source, unless it is running.

        Raises :class:`StudentError` (``"timeout"``, ``"crash"``,
        ``"protocol"``) if the child does not come up; the next call tries again.
        """
        if self._child is not None and self._ready:
            return
        self.launch()
        child = self._child
        try:
            ready = channel.recv(child.reply_fd, timeout=self.start_timeout)
        except channel.ChannelError as e:
            self._fail_io(e, "start-up (importing torch, loading the submission)",
                          self.start_timeout)
        if type(ready) is not dict or ready.get("ready") is not True or \
                type(ready.get("load_errors")) is not list:
            self._fail("protocol", "the student process sent an invalid start message")
        self.load_errors = [self._load_error(e) for e in ready["load_errors"]]
        late = ready.get("late", [])
        if type(late) is not list or not all(
                type(x) is dict and set(x) == {"line", "cell", "name"} and type(x["line"]) is int
                and type(x["cell"]) is str and type(x["name"]) is str for x in late):
            self._fail("protocol", "the student process sent an invalid start message")
        self.late_loads = [dict(x, cell=x["cell"][:100], name=x["name"][:100]) for x in late]
        self._ready = True

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

    def _spawn(self) -> Child:
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
                env=child_env(str(workdir), self.threads, self.call_timeout, self._env), device=self.device))
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
        return Child(proc, request_w, reply_r, log_fd, workdir)

    def _stop(self, grace: float) -> tuple[int | None, str]:
        child, self._child, self._ready = self._child, None, False
        assert child is not None and self._finalizer is not None
        self._finalizer.detach()
        returncode, self._last_tail = child.close(grace)
        return returncode, self._last_tail

    def _fail(self, kind: str, message: str, grace: float = 0.0) -> NoReturn:
        """Kill the child and raise :class:`StudentError`; the next call restarts it."""
        returncode, tail = self._stop(grace)
        if kind == "crash":
            message = f"{message} ({describe_exit(returncode)})"
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
        self._timing = (0.0, 0, 0.0)
        callbacks_answered, answering = 0, 0.0
        start = time.perf_counter()
        try:
            channel.send(child.request_fd, request, timeout=timeout)
        except channel.EncodeError:
            raise
        except channel.ChannelError as e:
            self._fail_io(e, what, timeout)
        try:
            while True:
                frame = channel.read_frame(child.reply_fd, timeout=max(0.0, deadline - time.monotonic()))
                received = time.perf_counter()  # the timing stops here: decoding is the grader's work
                reply = channel.decode_body(*frame)
                if type(reply) is not dict or "callback" not in reply:
                    break
                began = time.perf_counter()
                try:
                    answer = answer_callback(reply, callbacks or {}, what)
                except CallbackViolation as e:
                    self._fail("protocol", str(e))
                callbacks_answered, answering = callbacks_answered + 1, answering + time.perf_counter() - began
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
        self._timing = (received - start, callbacks_answered, answering)
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
             substitute: Mapping[str, Callable] | None = None,
             then_call: Iterable[Iterable[Any]] | None = None, seed: int | None = None,
             grad_of_item: int | None = None, requires_grad: Iterable[int | str] | None = None,
             report_graph: bool = False, **kwargs: Any) -> CallResult:
        """Call the student's function ``name(*args, **kwargs)`` in the child.

        Args and kwargs must be channel values (tensors are sent as CPU
        copies) or specs from :func:`mlp_spec`/:func:`generator_spec`.
        ``grad_of`` (positions of ``args`` and/or names of ``kwargs``, floating
        tensors) asks for the gradients of the result, a tensor, with
        ``grad_output`` (default: of ``result.sum()``). ``return_args`` asks
        for the arguments as they are after the call. ``timeout`` defaults to
        ``call_timeout``; it bounds the whole call, callbacks included. The
        student's own keyword arguments cannot be named like these ten.

        ``substitute`` maps names of the submission's globals (e.g. other
        graded functions that ``name`` calls) to trusted grader-side callables
        (e.g. the reference versions). During this call only, the child binds
        each name to a stub that sends its arguments back here (data only; the
        callables never enter the child); ``fn(*args, **kwargs)`` is computed
        in the grader under ``no_grad`` and its value sent back. Gradients
        flow through the stub when ``fn`` returns one tensor: its backward
        is a second callback, answered by recomputing ``fn`` with the floating
        tensor arguments requiring grad. Tensor keyword arguments are
        constants for autograd. ``grad_of_item`` takes the gradients of one
        element of a tuple result instead (e.g. the logits of ``(logits,
        labels)``). ``requires_grad`` marks argument tensors as requiring grad
        without computing any gradient, and ``report_graph`` asks whether each
        positional argument is attached to autograd after the call
        (`CallResult.graph`): together they show whether a function stored
        its inputs undetached or built a graph into a module's parameters. If ``fn`` raises, the stub raises
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
        callbacks = check_substitute(substitute)
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
            if grad_of_item is not None:
                options["grad_of_item"] = int(grad_of_item)
        elif grad_output is not None or grad_of_item is not None:
            raise ValueError("grad_output and grad_of_item need grad_of")
        if requires_grad is not None:
            options["requires_grad"] = list(requires_grad)
        if report_graph:
            options["report_graph"] = True
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
        return self._call_result(reply, tail, options.get("grad_of"), len(args), kwargs, report_graph)

    def _call_result(self, reply: dict, tail: str, grad_of: list | None, n_args: int,
                     kwargs: dict, report_graph: bool = False) -> CallResult:
        grads, after, graph = reply.get("grads"), reply.get("args_after"), reply.get("graph")
        valid = set(reply) == {"ok", "value", "grads", "args_after", "graph"} \
            and (graph is None if not report_graph else
                 type(graph) is list and len(graph) == n_args and all(g is None or type(g) is bool for g in graph)) \
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
            stdout_tail=tail, seconds=self._timing[0], callbacks=self._timing[1],
            callback_seconds=self._timing[2], graph=None if graph is None else dict(enumerate(graph)))

    def time(self, name: str, *args: Any, repeats: int = 5, warmup: int = 1,
             timeout: float | None = None,
             substitute: Mapping[str, Callable] | None = None, **kwargs: Any) -> float:
        """Median seconds of ``repeats`` calls of ``name(*args, **kwargs)`` after
        ``warmup`` untimed ones, all with the same arguments, timed here.

        Each is an ordinary `call` (the child cannot tell it is timed), and the
        time is the grader's, channel included (`CallResult.seconds`).
        ``timeout`` is per call. ``substitute`` is as for :meth:`call`; the
        grader's time answering the callbacks is left out (it measures the
        function's own code) unless a substituted name was called more than
        `CALLS_NOT_TIMED` times in the call.
        """
        if type(repeats) is not int or repeats < 1 or type(warmup) is not int or warmup < 0:
            raise ValueError("repeats must be an int >= 1 and warmup an int >= 0")
        times = []
        for i in range(warmup + repeats):
            result = self.call(name, *args, timeout=timeout, substitute=substitute, **kwargs)
            if i >= warmup:
                times.append(self.own_seconds(result, substitute))
        return sorted(times)[len(times) // 2]

    @staticmethod
    def own_seconds(result: CallResult, substitute: Mapping[str, Callable] | None) -> float:
        """``result.seconds`` less the grader's time answering callbacks, while they were few (see `time`)."""
        if result.callbacks and result.callbacks <= CALLS_NOT_TIMED * len(substitute or {}):
            return max(0.0, result.seconds - result.callback_seconds)
        return result.seconds

    @contextlib.contextmanager
    def paused(self):
        """Stop every process of the child (``SIGSTOP``) for the block, e.g. while the reference is timed.

        The processes are the child's descendants (`launch.descendants`): in
        bubblewrap's PID namespace that is every process the student's code
        started; at the weaker levels a process that left the tree (a double
        fork) is not stopped (SECURITY.md).
        """
        pids = self._stop_all()
        try:
            yield
        finally:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGCONT)

    def _stop_all(self) -> list[int]:
        child = self._child
        if child is None or child.proc.poll() is not None:
            return []
        stopped: list[int] = []
        for _ in range(3):  # again, for processes forked while the first ones were being stopped
            new = [p for p in descendants(child.proc.pid) if p not in stopped]
            if not new:
                break
            for pid in new:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGSTOP)
                    stopped.append(pid)
        wait_stopped(stopped)
        return stopped

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
