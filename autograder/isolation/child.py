"""Entry point of the child process that runs a student's code for the grader.

Run as a script, never as part of the ``autograder`` package, so that a
sandbox only has to expose this file and the four it imports, copied next to
it (``channel.py``, ``child_server.py``, ``child_values.py``,
``child_substitute.py``)::

    python child.py READ_FD WRITE_FD

``READ_FD``/``WRITE_FD`` are inherited pipe ends: requests arrive on the
first, replies leave on the second, as :mod:`channel` frames (data only).
The working directory holds ``submission.txt`` (the student's source, e.g.
an :class:`autograder.grading.extract.Extraction` source). Environment:
``AUTOGRADER_THREADS`` (torch threads, default 1),
``AUTOGRADER_STATEMENT_TIMEOUT`` (seconds one top-level statement may take
while loading, default 10), ``AUTOGRADER_LOG_BYTES`` (cap of the log, default
1 MiB).

Start-up:

1. fds 1 and 2 go to ``output.log`` in the working directory, and
   ``sys.stdout``/``sys.stderr`` write there through a writer that keeps the
   file under the cap (the oldest output is dropped). Prints cannot reach
   the channel.
2. The source is compiled with the file name ``<submission>`` and run one
   top-level statement at a time in a fresh module named ``submission``, so
   a failing (or, via ``SIGALRM``, overlong) statement is recorded and later
   definitions still load.
3. Statements that failed with ``NameError`` are tried again once the rest
   has run (`load_submission`: a notebook may depend on the order its cells
   were run in).
4. The child sends ``{"ready": True, "load_errors": [error, ...], "late":
   [late, ...]}`` where an error is ``{"type": str, "message": str,
   "traceback": str, "line": int|None}`` and a statement that loaded only on
   the second try is ``{"line": int, "cell": str, "name": str}``.

Then it serves the grader's requests until ``shutdown`` or EOF: the request
formats and their replies are `child_server`'s, the stubs that call back to
the grader for substituted names `child_substitute`'s, and the argument specs
built from the requests and the values sent back `child_values`'s.
"""
from __future__ import annotations
import __future__

import ast
import io
import linecache
import os
import signal
import sys
import types
from typing import Any

import torch

# the child's files, copied flat next to this one by the launcher
import channel
from child_server import FILENAME, Server, error_info, failure, unencodable
from child_substitute import channel_exchange

SOURCE_FILE = "submission.txt"
LOG_FILE = "output.log"
ENV_THREADS = "AUTOGRADER_THREADS"
ENV_STATEMENT_TIMEOUT = "AUTOGRADER_STATEMENT_TIMEOUT"
ENV_LOG_BYTES = "AUTOGRADER_LOG_BYTES"
_TRUNCATED = b"[... earlier output dropped ...]\n"


class _StatementTimeout(BaseException):
    """Raised by SIGALRM in a top-level statement that runs too long."""


# --------------------------------------------------------------------------- output


class CappedLog(io.RawIOBase):
    """Raw writer to ``fd`` (a file opened with ``O_APPEND``) that keeps it near ``cap`` bytes.

    When a write would push the file past ``cap``, the file is cut down to
    its last ``cap // 2`` bytes (this write included) behind a marker line.
    The size is only re-read (``fstat``) when this writer's own count says the
    cap may be reached; writes that bypass it (raw ``os.write(1, ...)``, C
    code) are bounded by the launcher's RLIMIT_FSIZE instead.
    """

    def __init__(self, fd: int, cap: int):
        super().__init__()
        self._fd = fd
        self._cap = cap
        self._size = os.fstat(fd).st_size  # last fstat + own writes since: a lower bound

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def write(self, b: Any) -> int:
        data = bytes(b)
        if self._size + len(data) > self._cap:
            self._size = os.fstat(self._fd).st_size
        if self._size + len(data) > self._cap:
            keep = self._cap // 2
            if len(data) >= keep:
                data = data[-keep:]
            else:
                old = keep - len(data)
                data = os.pread(self._fd, old, max(0, self._size - old)) + data
            os.ftruncate(self._fd, 0)
            data = _TRUNCATED + data
            self._size = 0
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        self._size += len(data)
        return len(b)


def redirect_output(cap: int) -> None:
    """Send fds 1/2 and ``sys.stdout``/``sys.stderr`` to the capped ``LOG_FILE``.

    Both streams share one line-buffered writer, so each printed line costs
    one ``write`` and is on disk before the next line starts.
    """
    fd = os.open(LOG_FILE, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    raw = io.BufferedWriter(CappedLog(1, cap))
    sys.stdout = sys.stderr = io.TextIOWrapper(raw, encoding="utf-8",
                                               errors="backslashreplace", line_buffering=True)


# --------------------------------------------------------------------------- loading


def load_submission(source: str, statement_timeout: float, late: list[dict] | None = None
                    ) -> tuple[types.ModuleType, list[dict]]:
    """Run ``source`` statement by statement in a new ``submission`` module.

    Returns the module and the load errors (see the module docstring). A
    statement that raises (anything, ``SystemExit`` included) or runs longer
    than ``statement_timeout`` seconds is recorded and skipped.

    A notebook may work only in the order its cells were run in the kernel
    (a default argument naming a constant of a later cell). So a statement
    that failed with ``NameError`` is tried again once all the others have
    run, while that makes progress, unless a later statement has bound its
    names since (the last definition wins). One that then succeeds is no
    load error; ``{"line": int, "cell": str, "name": str}`` (the name it
    lacked at first) is appended to ``late``.
    """
    module = types.ModuleType("submission")
    sys.modules["submission"] = module
    linecache.cache[FILENAME] = (len(source), None, source.splitlines(True), FILENAME)
    try:
        tree = ast.parse(source, FILENAME)
    except (SyntaxError, ValueError) as e:
        return module, [dict(error_info(e), line=getattr(e, "lineno", None))]
    errors: list[dict] = []
    retry: list[tuple[ast.stmt, int, dict]] = []
    flags = 0
    signal.signal(signal.SIGALRM, _raise_statement_timeout)
    for node in tree.body:
        line = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", ())])
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            for alias in node.names:
                flags |= getattr(getattr(__future__, alias.name, None), "compiler_flag", 0)
        error = _run_statement(node, line, flags, module, statement_timeout)
        if error is not None:
            errors.append(error)
            if error["type"] == "NameError":
                retry.append((node, line, error))
    progress = True
    while retry and progress:
        progress = False
        for item in list(retry):
            node, line, error = item
            if _bound_names(node) & set(vars(module)):  # redefined later: that definition stands
                retry.remove(item)
                continue
            if _run_statement(node, line, flags, module, statement_timeout) is None:
                retry.remove(item)
                errors.remove(error)
                progress = True
                if late is not None:
                    late.append({"line": line, "cell": _cell_of(source, line),
                                 "name": _missing_name(error["message"])})
    return module, errors


def _run_statement(node: ast.stmt, line: int, flags: int, module: types.ModuleType,
                   statement_timeout: float) -> dict | None:
    """Run one top-level statement in ``module``; its load error, or ``None``."""
    try:
        code = compile(ast.Module(body=[node], type_ignores=[]), FILENAME, "exec",
                       flags=flags, dont_inherit=True)
        signal.setitimer(signal.ITIMER_REAL, statement_timeout)
        try:
            exec(code, module.__dict__)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _StatementTimeout:
        return {"type": "TimeoutError", "line": line, "traceback": "",
                "message": f"the top-level statement at line {line} ran longer "
                           f"than {statement_timeout:g}s and was stopped"}
    except BaseException as e:  # SystemExit at load time must not end the child
        return dict(error_info(e), line=line)
    return None


def _bound_names(node: ast.stmt) -> set[str]:
    """The names a top-level statement binds (defs, classes, imports, plain assignments)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in node.names}
    targets = node.targets if isinstance(node, ast.Assign) else \
        [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else []
    return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}


def _cell_of(source: str, line: int) -> str:
    """The cell a line of the extracted source came from (its ``# --- <cell> ---`` marker), or ``""``."""
    for text in reversed(source.splitlines()[:line]):
        if text.startswith("# --- ") and text.endswith(" ---"):
            return text[6:-4]
    return ""


def _missing_name(message: str) -> str:
    """``"name 'SCALE' is not defined"`` -> ``"SCALE"``."""
    parts = message.split("'")
    return parts[1] if len(parts) >= 3 else ""


def _raise_statement_timeout(signum: int, frame: Any) -> None:
    raise _StatementTimeout()


# --------------------------------------------------------------------------- main


def main(argv: list[str]) -> int:
    """Serve requests on the fds in ``argv``; the exit status."""
    if len(argv) != 3 or not all(a.isdigit() for a in argv[1:]):
        print("usage: child.py READ_FD WRITE_FD", file=sys.stderr)
        return 2
    read_fd, write_fd = int(argv[1]), int(argv[2])
    redirect_output(int(os.environ.get(ENV_LOG_BYTES, 1 << 20)))
    torch.set_num_threads(int(os.environ.get(ENV_THREADS, "1")))
    with open(SOURCE_FILE, encoding="utf-8", errors="replace") as f:
        source = f.read()
    late: list[dict] = []
    module, load_errors = load_submission(
        source, float(os.environ.get(ENV_STATEMENT_TIMEOUT, "10")), late)
    channel.send(write_fd, {"ready": True, "load_errors": load_errors, "late": late})
    server = Server(module, channel_exchange(read_fd, write_fd))
    while True:
        try:
            request = channel.recv(read_fd)
        except channel.ChannelClosed:
            return 0
        reply = server.handle(request)
        try:
            channel.send(write_fd, reply)
        except channel.EncodeError as e:
            channel.send(write_fd, unencodable(request, e))
        except Exception as e:  # e.g. a tensor whose storage cannot be read: report, don't die
            channel.send(write_fd, failure("exception", type(e).__name__,
                                            f"the result could not be sent back: {e}"))
        if server.done:
            sys.stdout.flush()
            os._exit(0)  # skip interpreter teardown: slow with torch, runs student atexit hooks


if __name__ == "__main__":
    sys.exit(main(sys.argv))
