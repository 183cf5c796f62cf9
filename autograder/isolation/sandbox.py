"""How the student's child process is confined: the launchers of `StudentProcess`.

Three levels, the strongest the machine allows (`choose_launcher`):

``bubblewrap``
    ``bwrap`` builds a new mount, PID, network, IPC and UTS namespace. The
    child sees a read-only view of the system's programs and libraries, the
    Python installation, and its own working directory (the student's code,
    the child's files and a copy of ``course_utils``): not the
    grader, the hidden suites, the reference solutions, the submission
    folder or the results. It has no network and cannot see or signal the
    grader's processes. When the grader runs as root, the child then drops to
    an unprivileged user (`SANDBOX_USER`, else ``nobody``) with no
    capabilities, so that the per-user process limit holds.
``unprivileged``
    Root without bubblewrap (e.g. a container that forbids namespaces): the
    child runs as the unprivileged user with resource limits; what it may read
    is decided by file permissions (Gradescope's ``setup.sh`` makes the
    grader's folder readable by root only). No network isolation.
``plain``
    Neither root nor bubblewrap (a student's or TA's laptop, macOS): a child
    process of the same user with resource limits only. The results say so.

``auto`` takes the strongest that works and, as root, refuses to fall back to
``plain`` (the error says what to install or which flag to pass); ``trusted``
does fall back, for code the kit trusts (its bundled examples, its own
tests), and the result's ``reason`` says why the level was taken. The front
ends use `default_level` (``$AUTOGRADER_ISOLATION``, else ``auto``) unless
told otherwise.

Every level sets resource limits (`Limits`): CPU seconds, data segment
(memory), file size, processes, open files, no core dumps; the call timeout
and the output cap are enforced by `StudentProcess` and the child.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .launch import Launch, Launcher, LaunchRequest, default_launcher, lower_limits

SANDBOX_USER = "ssl-student"
"""The account student code runs as when the grader is root (created by Gradescope's setup.sh)."""
NOBODY = 65534


@dataclass(frozen=True)
class Limits:
    """Resource limits of a student process (``setrlimit``; soft = hard)."""

    cpu_seconds: int = 600
    data_bytes: int = 2 << 30  # heap and anonymous memory; PyTorch itself takes about 0.7 GB
    file_bytes: int = 64 << 20
    processes: int = 128  # threads count; only enforced for a non-root user
    open_files: int = 256

    def apply(self) -> None:
        """Lower the limits of the calling process (never raise them)."""
        import resource

        lower_limits(((resource.RLIMIT_CPU, self.cpu_seconds), (resource.RLIMIT_DATA, self.data_bytes),
                      (resource.RLIMIT_FSIZE, self.file_bytes), (resource.RLIMIT_NPROC, self.processes),
                      (resource.RLIMIT_NOFILE, self.open_files), (resource.RLIMIT_CORE, 0)))


@dataclass(frozen=True)
class Isolation:
    """A launcher and what it enforces, in words for the results."""

    level: str
    launcher: Launcher
    description: str
    reason: str = ""  # why this level: what the stronger ones lacked here, or that it was asked for


def sandbox_ids() -> tuple[int, int]:
    """uid and gid of `SANDBOX_USER`, else of ``nobody`` (65534)."""
    try:
        entry = pwd.getpwnam(SANDBOX_USER)
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        return NOBODY, NOBODY


def _give_to(path: str, uid: int, gid: int) -> None:
    """Hand the working directory to the sandbox user (it must read its files and write there)."""
    for root, dirs, files in os.walk(path):
        for name in [root, *[os.path.join(root, d) for d in dirs], *[os.path.join(root, f) for f in files]]:
            os.chown(name, uid, gid, follow_symlinks=False)


def _drop_privileges(uid: int, gid: int, limits: Limits) -> Callable[[], None]:
    def preexec() -> None:
        limits.apply()
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)

    return preexec


def _python_roots() -> list[str]:
    """Folders the interpreter and its packages live in (bound read-only into the sandbox)."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"],
             os.path.dirname(os.path.realpath(sys.executable))}
    roots = sorted({os.path.realpath(p) for p in paths if p and os.path.exists(p)})
    # keep the outermost of nested folders
    return [p for p in roots if not any(p != q and p.startswith(q + os.sep) for q in roots)]


_SYSTEM = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin")


def _system_binds() -> list[str]:
    """bwrap arguments giving the sandbox the system's programs and libraries, read-only."""
    argv: list[str] = []
    for path in _SYSTEM:
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    return argv


def setpriv_prefix(uid: int, gid: int) -> list[str]:
    """The prefix that runs a command as ``uid:gid`` with no capabilities and no way to regain any."""
    setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
    return [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all", "--no-new-privs"]


def gpu_binds() -> list[str]:
    """bwrap arguments that let the sandbox use the NVIDIA GPUs: their device files, and ``/sys`` read-only
    (the CUDA driver reads the PCI topology there); empty where there are none."""
    devices = sorted(str(p) for p in Path("/dev").glob("nvidia*") if p.is_char_device())
    if not devices:
        return []
    argv = []
    for device in devices:
        argv += ["--dev-bind", device, device]
    return argv + ["--ro-bind", "/sys", "/sys"]


def bwrap_command(inner: list[str], *, chdir: str, read_only: list[str] = (), writable: list[str] = (),
                  hidden: list[str] = (), env: dict[str, str] | None = None,
                  drop_to: tuple[int, int] | None = None, gpu: bool = False) -> list[str]:
    """The ``bwrap`` command line that runs ``inner`` in a new sandbox.

    The sandbox has its own mount, PID, network, IPC and UTS namespaces, an
    empty environment but ``env``, the system's programs and libraries and
    the Python installation read-only, a private ``/tmp``, and of this
    machine's other folders only ``read_only`` (then ``hidden``, empty
    folders laid over any of them that lie inside a bound one) and
    ``writable``, in that order, so that a later bind may sit inside an
    earlier one. ``drop_to`` runs ``inner`` as that uid and gid (for root);
    ``gpu`` adds `gpu_binds`.
    """
    argv = ["bwrap", "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-net", "--unshare-ipc",
            "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox", "--clearenv"]
    argv += _system_binds()
    roots = [p for p in _python_roots() if not any(p == s or p.startswith(s + os.sep) for s in _SYSTEM)]
    read_only = [*roots, *(p for p in read_only if p not in roots)]
    argv += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"]
    if gpu:
        argv += gpu_binds()
    # bwrap makes missing parent folders 0700: make them traversable for the unprivileged user first
    parents = sorted({str(a) for p in [*read_only, *writable] for a in Path(p).parents if str(a) != "/"},
                     key=lambda a: a.count(os.sep))
    for parent in parents:
        argv += ["--perms", "0755", "--dir", parent]
    for path in read_only:
        argv += ["--ro-bind", path, path]
    for path in hidden:
        if os.path.isdir(path) and any(path == b or path.startswith(b + os.sep) for b in read_only):
            argv += ["--tmpfs", path]
    for path in writable:
        argv += ["--bind", path, path]
    argv += ["--chdir", chdir]
    for key, value in (env or {}).items():
        argv += ["--setenv", key, value]
    if drop_to is not None:
        inner = [*setpriv_prefix(*drop_to), *inner]
    return argv + ["--", *inner]


def _bwrap_argv(request: LaunchRequest, drop_to: tuple[int, int] | None) -> list[str]:
    inner = [request.python, "-E", "-s", "-B", request.child_script, str(request.read_fd), str(request.write_fd)]
    return bwrap_command(inner, chdir=request.workdir, writable=[request.workdir], env=request.env,
                         drop_to=drop_to, gpu=request.device == "cuda")


def bubblewrap_launcher(limits: Limits = Limits()) -> Launcher:
    """Run the child inside bubblewrap (as the sandbox user when we are root)."""
    def launch(request: LaunchRequest) -> Launch:
        drop_to = sandbox_ids() if os.geteuid() == 0 else None
        if drop_to is not None:
            _give_to(request.workdir, *drop_to)
        return Launch(argv=_bwrap_argv(request, drop_to), env={"PATH": "/usr/bin:/bin"}, cwd=request.workdir,
                      pass_fds=(request.read_fd, request.write_fd), preexec_fn=limits.apply)

    return launch


def unprivileged_launcher(limits: Limits = Limits()) -> Launcher:
    """Root without bubblewrap: the child runs as the sandbox user, with limits."""
    def launch(request: LaunchRequest) -> Launch:
        uid, gid = sandbox_ids()
        _give_to(request.workdir, uid, gid)
        return dataclasses.replace(default_launcher(request), preexec_fn=_drop_privileges(uid, gid, limits))

    return launch


def plain_launcher(limits: Limits = Limits()) -> Launcher:
    """The same user, resource limits only."""
    def launch(request: LaunchRequest) -> Launch:
        return dataclasses.replace(default_launcher(request), preexec_fn=limits.apply)

    return launch


LEVELS = ("auto", "trusted", "bubblewrap", "unprivileged", "plain")
"""The levels `choose_launcher` takes: ``auto`` (the strongest that works; as root, never ``plain``),
``trusted`` (the same, but falls back to ``plain`` even as root: only for code you trust, such as the
kit's own examples and tests), or one level by name."""
ENV_LEVEL = "AUTOGRADER_ISOLATION"
"""Environment variable that sets the level the front ends use when none is given (default ``auto``)."""


def default_level() -> str:
    """The level from `ENV_LEVEL`, else ``"auto"``."""
    return os.environ.get(ENV_LEVEL) or "auto"


def _probe(argv: list[str], timeout: float, **popen) -> tuple[bool, str] | None:
    """Run a probe command: ``None`` if it succeeded, else ``(started, what went wrong)``."""
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=timeout, **popen)
    except subprocess.TimeoutExpired:
        return True, f"no answer within {timeout:g} s"
    except OSError as e:
        return False, f"{type(e).__name__}: {e.strerror or e}"  # not the file name: a path of this machine
    if proc.returncode == 0:
        return None
    lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
    return True, lines[-1].strip()[:200] if lines else f"exit status {proc.returncode}"


@functools.lru_cache(maxsize=None)
def bubblewrap_problem() -> str | None:
    """Why bubblewrap cannot sandbox a child here, or ``None`` when it can (containers may forbid it)."""
    if shutil.which("bwrap") is None:
        return "bubblewrap is not installed"
    argv = ["bwrap", "--die-with-parent", "--unshare-pid", "--unshare-net", *_system_binds(),
            "--proc", "/proc", "--dev", "/dev", "true"]
    failed = _probe(argv, timeout=20)
    if failed is None:
        return None
    started, said = failed
    return f"bubblewrap is installed but cannot create namespaces here ({said})" if started \
        else f"bubblewrap could not be started ({said})"


def bubblewrap_works() -> bool:
    """True if ``bwrap`` is installed and can build a sandbox here."""
    return bubblewrap_problem() is None


@functools.lru_cache(maxsize=None)
def unprivileged_problem() -> str | None:
    """Why the child cannot run as the sandbox user here, or ``None`` when it can."""
    if not (hasattr(os, "geteuid") and os.geteuid() == 0):
        return "running code as another user needs root"
    failed = _probe([sys.executable, "-E", "-s", "-c", "import torch"], timeout=60, cwd="/",
                    preexec_fn=_drop_privileges(*sandbox_ids(), Limits()))
    if failed is None:
        return None
    return (f"the sandbox user {pwd.getpwuid(sandbox_ids()[0]).pw_name} cannot run this Python and import torch "
            f"(are its folders closed to other users? {failed[1]})")


def unprivileged_works() -> bool:
    """True if we are root and the sandbox user can run this Python (its folders may be closed to it)."""
    return unprivileged_problem() is None


def _no_sandbox_help(root: bool) -> str:
    """What to install, or which flag to pass, when no sandbox works here."""
    steps = []
    problem = bubblewrap_problem() or ""
    if "not installed" in problem:
        steps.append("install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap)")
    elif problem:
        steps.append("allow bubblewrap to create namespaces here (a container may need e.g. "
                     "--security-opt seccomp=unconfined, or to run privileged)")
    if root:
        steps.append(f"or let the sandbox user run this Python (create the user {SANDBOX_USER} and install "
                     "Python, torch and the kit where other users can read them)")
    steps.append("or, for code you trust such as the kit's own examples, pass --isolation trusted "
                 "(or --isolation plain)")
    return "; ".join(steps)


def _weaker_because(root: bool) -> str:
    reasons = [bubblewrap_problem() or "bubblewrap cannot be used"]
    if root:
        reasons.append(unprivileged_problem() or "the sandbox user cannot run this Python")
    return ", and ".join(reasons)


def choose_launcher(level: str | None = None, limits: Limits = Limits()) -> Isolation:
    """The strongest isolation available (``level="auto"`` or ``"trusted"``), or the one asked for.

    ``None`` takes `default_level`. The result's ``reason`` says why that
    level (what stronger levels lacked). Raises ``RuntimeError``, saying what
    to install or which flag to pass, when the level asked for cannot be had
    here, and for ``auto`` as root when no sandbox works (student code is
    never run as root in a plain process unless asked for).
    """
    level = default_level() if level is None else level
    if level not in LEVELS:
        raise ValueError(f"isolation level must be one of {', '.join(LEVELS)}, got {level!r}")
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    reason = f"asked for {level}"
    if level in ("auto", "trusted"):
        asked = level
        level = "bubblewrap" if bubblewrap_works() else "unprivileged" if unprivileged_works() else "plain"
        if level == "bubblewrap":
            reason = "the strongest level, and it works here"
        elif level == "unprivileged":
            reason = f"{_weaker_because(False)}; as root, the child runs as the sandbox user"
        else:
            reason = _weaker_because(root)
            if root and asked == "auto":
                raise RuntimeError(f"refusing to run student code as root without a sandbox: {reason}. To fix it: "
                                   f"{_no_sandbox_help(root)}")
            if root:
                reason += "; the code is trusted, so a plain child process runs it as root"
    user = pwd.getpwuid(sandbox_ids()[0]).pw_name if root else "the grader's own user"
    if level == "bubblewrap":
        if not bubblewrap_works():
            raise RuntimeError(f"{bubblewrap_problem()}. To fix it: {_no_sandbox_help(root)}")
        return Isolation(level, bubblewrap_launcher(limits),
                         f"bubblewrap sandbox: private file system view, no network, own process tree, "
                         f"runs as {user}; resource limits", reason)
    if level == "unprivileged":
        if not unprivileged_works():
            raise RuntimeError(f"{unprivileged_problem()}: running student code as another user needs root, and "
                               "that user must be able to run this Python and import torch")
        return Isolation(level, unprivileged_launcher(limits),
                         f"child process as {user} with resource limits (bubblewrap unavailable: "
                         "file access decided by permissions; network not isolated)", reason)
    return Isolation(level, plain_launcher(limits),
                     "plain child process of the grader's user with resource limits only (no bubblewrap): "
                     "student code could read and write what the grader can, use the network, and leave "
                     "processes behind", reason)
