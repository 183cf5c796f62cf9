"""How the student's child process is confined: the launchers of `StudentProcess`.

Three levels, the strongest the machine allows (`choose_launcher`):

``bubblewrap``
    ``bwrap`` builds a new mount, PID, network, IPC and UTS namespace. The
    child sees a read-only view of the system's programs and libraries, the
    Python installation, and its own working directory (the student's code,
    ``child.py``, ``channel.py`` and a copy of ``course_utils``): not the
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

Every level sets resource limits (`Limits`): CPU seconds, data segment
(memory), file size, processes, open files, no core dumps; the call timeout
and the output cap are enforced by `StudentProcess` and the child.
"""
from __future__ import annotations

import functools
import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .student_process import Launch, Launcher, LaunchRequest, default_launcher, lower_limits

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


def _bwrap_argv(request: LaunchRequest, drop_to: tuple[int, int] | None) -> list[str]:
    argv = ["bwrap", "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-net", "--unshare-ipc",
            "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox", "--clearenv"]
    argv += _system_binds()
    binds = [p for p in _python_roots() if not any(p == s or p.startswith(s + os.sep) for s in _SYSTEM)]
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    # bwrap makes missing parent folders 0700: make them traversable for the unprivileged user first
    parents = sorted({str(a) for p in [*binds, request.workdir] for a in Path(p).parents if str(a) != "/"},
                     key=lambda a: a.count(os.sep))
    for parent in parents:
        argv += ["--perms", "0755", "--dir", parent]
    for path in binds:
        argv += ["--ro-bind", path, path]
    argv += ["--bind", request.workdir, request.workdir, "--chdir", request.workdir]
    for key, value in request.env.items():
        argv += ["--setenv", key, value]
    inner = [request.python, "-E", "-s", "-B", request.child_script, str(request.read_fd), str(request.write_fd)]
    if drop_to is not None:
        uid, gid = drop_to
        setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
        inner = [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--inh-caps=-all",
                 "--bounding-set=-all", "--no-new-privs", *inner]
    return argv + ["--", *inner]


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


@functools.lru_cache(maxsize=None)
def bubblewrap_works() -> bool:
    """True if ``bwrap`` is installed and can build a sandbox here (containers may forbid it)."""
    if shutil.which("bwrap") is None:
        return False
    argv = ["bwrap", "--die-with-parent", "--unshare-pid", "--unshare-net"]
    argv += _system_binds()
    try:
        return subprocess.run(argv + ["--proc", "/proc", "--dev", "/dev", "true"], capture_output=True,
                              timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@functools.lru_cache(maxsize=None)
def unprivileged_works() -> bool:
    """True if we are root and the sandbox user can run this Python (its folders may be closed to it)."""
    if not (hasattr(os, "geteuid") and os.geteuid() == 0):
        return False
    try:
        return subprocess.run([sys.executable, "-E", "-s", "-c", "import torch"], capture_output=True, timeout=60,
                              cwd="/", preexec_fn=_drop_privileges(*sandbox_ids(), Limits())).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def choose_launcher(level: str = "auto", limits: Limits = Limits()) -> Isolation:
    """The strongest isolation available (``level="auto"``), or the one asked for.

    Raises ``RuntimeError`` when the level asked for cannot be had here.
    """
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    if level == "auto":
        level = "bubblewrap" if bubblewrap_works() else "unprivileged" if unprivileged_works() else "plain"
        if level == "plain" and root:
            raise RuntimeError("refusing to run student code as root without a sandbox: install bubblewrap, or "
                               "let the sandbox user run this Python (or ask for --isolation plain explicitly)")
    user = pwd.getpwuid(sandbox_ids()[0]).pw_name if root else "the grader's own user"
    if level == "bubblewrap":
        if not bubblewrap_works():
            raise RuntimeError("bubblewrap is not installed or cannot create namespaces here")
        return Isolation(level, bubblewrap_launcher(limits),
                         f"bubblewrap sandbox: private file system view, no network, own process tree, "
                         f"runs as {user}; resource limits")
    if level == "unprivileged":
        if not unprivileged_works():
            raise RuntimeError("running student code as another user needs root, and that user must be able "
                               "to run this Python and import torch")
        return Isolation(level, unprivileged_launcher(limits),
                         f"child process as {user} with resource limits (bubblewrap unavailable: "
                         "file access decided by permissions; network not isolated)")
    if level == "plain":
        return Isolation(level, plain_launcher(limits),
                         "plain child process of the grader's user with resource limits only (no bubblewrap): "
                         "student code could read and write what the grader can, use the network, and leave "
                         "processes behind")
    raise ValueError(f"isolation level must be auto, bubblewrap, unprivileged or plain, got {level!r}")
