"""The kernel ``nbgrader autograde`` runs a student's notebook in, confined like the grader's child.

nbgrader executes the whole submitted notebook in one Jupyter kernel, so the
student's code runs there with the instructor's rights: it could read the
reference solutions, the hidden suites and the gradebook, or write them.
`SandboxedKernelManager` (the kernel manager of `SandboxedExecute`, which
the course's configuration puts in place of nbgrader's ``Execute``, see
`nbgrader_setup`) starts that kernel at the
isolation level `choose_kernel_isolation` picks, with the same rules as
`isolation.sandbox.choose_launcher`:

``bubblewrap``
    The kernel sees the system's programs and libraries, the Python
    installation, the kit's public packages (``course_utils``, ``autograder``
    without its hidden ``suites``) and the bundled data, all read-only, the
    notebook's own folder (read-only) and a private ``/tmp``; no network
    (nbgrader talks to it over Unix sockets in a folder made for this
    kernel), its own process tree, and, as root, the sandbox user's rights.
``unprivileged``
    Root without bubblewrap: the kernel runs as the sandbox user; what it may
    read is decided by file permissions.
``plain``
    Neither (an instructor's laptop, macOS): the kernel runs as the
    instructor. Scores are still decided outside it (`nbgrader_grade`), but it
    can read what the instructor can. As root this needs ``trusted`` or
    ``plain`` asked for by name (``$AUTOGRADER_ISOLATION``).
"""
from __future__ import annotations

import functools
import os
import shutil
import tempfile
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from nbgrader.preprocessors import Execute

from ..isolation import sandbox

KERNEL_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "MPLBACKEND",
              "CUDA_VISIBLE_DEVICES")
"""Variables the confined kernel keeps from nbgrader's environment, besides ``SSL_KIT_*``, ``NBGRADER_*`` and
``JPY_*`` (nothing else: the instructor's environment may hold tokens)."""

SYSTEM_CONFIG = ("/etc/fonts",)
"""System configuration the confined kernel may read (fontconfig's, for matplotlib), where it exists."""


@functools.lru_cache(maxsize=None)
def choose_kernel_isolation(level: str | None = None) -> tuple[str, str]:
    """``(level, reason)`` for the autograde kernel: ``bubblewrap``, ``unprivileged`` or ``plain``.

    ``level`` (default `sandbox.default_level`) is read as by
    `sandbox.choose_launcher`; raises ``RuntimeError`` saying how to fix it
    when that level cannot be had here, and for ``auto`` as root when no
    sandbox works.
    """
    isolation = sandbox.choose_launcher(level)
    return isolation.level, isolation.reason


def kit_folders() -> tuple[list[str], list[str]]:
    """``(readable, hidden)``: the kit's folders the kernel may read, and those it must not see."""
    import course_utils
    from course_utils.data import bundled

    package = Path(__file__).resolve().parents[1]  # autograder/
    readable = [str(Path(p).resolve()) for p in course_utils.__path__] + [str(package)]
    data = bundled.data_root().resolve()
    if data.is_dir():
        readable.append(str(data))
    hidden = [str(package / "suites"), str(package.parent / "solutions")]
    return readable, hidden


@functools.lru_cache(maxsize=None)
def _bundled_data_ready() -> None:
    """Build the bundled data's caches here, once: the confined kernel may read them but not write them."""
    from course_utils.data import bundled

    for split in ("train", "test"):
        bundled.load_synthetic(split)
        bundled.load_synthetic_videos(split)  # 02_generative_pretext's clips


class SandboxedKernelManager(AsyncKernelManager):
    """An `AsyncKernelManager` whose kernel runs confined (see the module docstring).

    The kernel talks over Unix sockets in a folder of its own (``ipc``
    transport), so that it needs no network; it is interrupted by message
    (a signal would reach the sandbox's launcher, not the kernel).
    ``requested_level`` is the isolation level asked for (``None``:
    `sandbox.default_level`); the students' self-check asks for ``trusted``.
    """

    requested_level: str | None = None

    def __init__(self, **kwargs):
        self._sockets = tempfile.mkdtemp(prefix="ssl-kit-kernel-")
        # always its own sockets (whatever a caller asks for): the sandbox binds only this folder writable
        kwargs.update(transport="ipc", ip=os.path.join(self._sockets, "kernel"),
                      connection_file=os.path.join(self._sockets, "connection.json"))
        super().__init__(**kwargs)
        self.isolation_level, self.isolation_reason = choose_kernel_isolation(self.requested_level)
        if self.isolation_level != "plain":
            self.log.info("autograde kernel isolation: %s (%s)", self.isolation_level, self.isolation_reason)
        else:
            self.log.warning("autograde kernel isolation: plain (%s): the student's notebook runs with your "
                             "rights; scores are still decided outside its kernel", self.isolation_reason)

    async def _async_pre_start_kernel(self, **kw):
        kernel_cmd, kw = await super()._async_pre_start_kernel(**kw)
        if self.isolation_level != "plain":
            self.kernel_spec.interrupt_mode = "message"
        return kernel_cmd, kw

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw) -> None:
        if self.isolation_level == "plain":
            return await super()._async_launch_kernel(kernel_cmd, **kw)
        env = {k: v for k, v in (kw.pop("env", None) or os.environ).items()
               if k in KERNEL_ENV or k.startswith(("SSL_KIT_", "NBGRADER_", "JPY_")) and k != "JPY_PARENT_PID"}
        # (a JPY_PARENT_PID inherited from a kernel that starts this one, e.g. a notebook's self-check, names
        # a process that is not this kernel's parent, and ipykernel would shut down at once)
        env.update(HOME="/tmp", MPLCONFIGDIR="/tmp/matplotlib", PYTHONDONTWRITEBYTECODE="1")
        cwd = os.path.realpath(kw.pop("cwd", None) or os.getcwd())
        drop_to = sandbox.sandbox_ids() if os.geteuid() == 0 else None
        if drop_to is not None:
            for path in (self._sockets, self.connection_file):
                os.chown(path, *drop_to)
        if self.isolation_level == "bubblewrap":
            _bundled_data_ready()
            readable, hidden = kit_folders()
            system = [p for p in SYSTEM_CONFIG if os.path.isdir(p)]
            kernel_cmd = sandbox.bwrap_command(kernel_cmd, chdir=cwd, read_only=[*system, *readable, cwd],
                                               hidden=hidden, writable=[self._sockets], env=env, drop_to=drop_to,
                                               gpu=True)  # the GPU's device files, where there are any
            env = {"PATH": "/usr/bin:/bin"}
        else:  # unprivileged: as the sandbox user, no other confinement
            kernel_cmd = [*sandbox.setpriv_prefix(*drop_to), *kernel_cmd]
            env["PATH"] = env.get("PATH", "/usr/bin:/bin")
        return await super()._async_launch_kernel(kernel_cmd, env=env, cwd=cwd, **kw)

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        if not restart:
            shutil.rmtree(self._sockets, ignore_errors=True)



class SandboxedExecute(Execute):
    """nbgrader's ``Execute`` with the kernel started by `SandboxedKernelManager`.

    (``Execute`` sets its kernel manager class itself, over any configured one.)
    """

    def __init__(self, *args, **kwargs):
        kwargs["kernel_manager_class"] = SandboxedKernelManager
        super().__init__(*args, **kwargs)
