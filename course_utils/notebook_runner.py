"""Execute a notebook top to bottom in a real kernel and report what it printed.

    python -m course_utils.notebook_runner solutions/self_supervised/03_simclr.ipynb --fast
    SSL_KIT_FAST=1 python -m course_utils.notebook_runner solutions/self_supervised/03_simclr.ipynb

(fast mode from ``--fast`` or from ``SSL_KIT_FAST`` in the environment; it says which) prints each cell's text output (and names the figures and errors), so that a
notebook can be run and read as a student would, from a terminal or CI. The
kit's tests call `execute` directly.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync
from nbclient import NotebookClient

from .checks import FAST_ENV, fast_mode

REPO = Path(__file__).resolve().parents[1]


@dataclass
class CellResult:
    index: int
    source: str
    stdout: str = ""
    stderr: str = ""
    figures: int = 0
    error: tuple[str, str] | None = None  # (exception name, message)


@dataclass
class NotebookRun:
    path: Path
    seconds: float
    cells: list[CellResult] = field(default_factory=list)

    @property
    def errors(self) -> list[CellResult]:
        return [c for c in self.cells if c.error is not None]

    def output(self) -> str:
        """All the text the notebook printed, cell after cell."""
        return "".join(c.stdout for c in self.cells)


def execute(path: str | Path, *, fast: bool = True, timeout: int = 600, env: dict[str, str] | None = None,
            save_to: str | Path | None = None, interrupt_on_timeout: bool = False,
            kernel_manager_class: type = AsyncKernelManager, quiet: bool = False) -> NotebookRun:
    """Run every cell of ``path`` (errors are recorded, not raised) and collect the outputs.

    The kernel starts in the notebook's folder with the repository on
    ``PYTHONPATH``, talking over IPC sockets; ``fast`` sets ``SSL_KIT_FAST=1``
    for it. A cell over ``timeout`` seconds stops the run, or, with
    ``interrupt_on_timeout``, is interrupted (a ``KeyboardInterrupt`` error)
    and the next cell runs. ``kernel_manager_class`` starts the kernel (the
    self-check's is confined); ``quiet`` sends the kernel's own messages
    (its start-up banner) to /dev/null.
    """
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    saved = {k: os.environ.get(k) for k in (FAST_ENV, "PYTHONPATH", *(env or {}))}
    os.environ[FAST_ENV] = "1" if fast else "0"
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), saved["PYTHONPATH"]) if p)
    os.environ.update(env or {})
    start = time.perf_counter()
    try:
        # IPC sockets (files only this user can open) rather than TCP on localhost: nothing crosses a
        # network interface, and the kernel has no reason to warn about unencrypted TCP.
        # The socket paths must be absolute: the kernel runs in the notebook's folder, this process elsewhere.
        with tempfile.TemporaryDirectory(prefix="kernel-") as sockets:
            km = kernel_manager_class(kernel_name="python3", transport="ipc", ip=os.path.join(sockets, "ipc"))
            client = NotebookClient(nb, km=km, timeout=timeout, allow_errors=True,
                                    interrupt_on_timeout=interrupt_on_timeout,
                                    resources={"metadata": {"path": str(path.parent)}})
            try:
                client.execute(**({"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL} if quiet else {}))
            finally:  # nbclient leaves a kernel it was given running
                if run_sync(km.is_alive)():
                    run_sync(km.shutdown_kernel)(now=True)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    run = NotebookRun(path, time.perf_counter() - start)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        result = CellResult(i, cell.source)
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                setattr(result, out.name, getattr(result, out.name) + out.text)
            elif out.output_type == "error":
                result.error = (out.ename, out.evalue)
            elif out.output_type in ("display_data", "execute_result") and "image/png" in out.get("data", {}):
                result.figures += 1
        run.cells.append(result)
    if save_to is not None:
        nbformat.write(nb, save_to)
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_utils.notebook_runner", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--fast", action="store_true",
                        help="fast mode: fewer steps (the quick CI run); SSL_KIT_FAST=1 in the environment does the same")
    parser.add_argument("--save", type=Path, default=None, help="write the executed notebook here")
    parser.add_argument("--timeout", type=int, default=600,
                        help="seconds a cell may run before the run stops (default 600; a busy machine may need more)")
    args = parser.parse_args(argv)
    fast = args.fast or fast_mode()
    source = "--fast" if args.fast else f"{FAST_ENV}={os.environ.get(FAST_ENV)}" if fast else f"no --fast, no {FAST_ENV}=1"
    print(f"{args.notebook}: {'fast' if fast else 'full'} mode (from {source})", flush=True)
    run = execute(args.notebook, fast=fast, save_to=args.save, timeout=args.timeout)
    for cell in run.cells:
        if cell.stdout:
            print(cell.stdout, end="" if cell.stdout.endswith("\n") else "\n")
        if cell.figures:
            print(f"[cell {cell.index}: {cell.figures} figure(s)]")
        if cell.error:
            print(f"[cell {cell.index}: {cell.error[0]}: {cell.error[1]}]")
    print(f"{args.notebook}: {len(run.cells)} code cells in {run.seconds:.0f} s, {len(run.errors)} with errors")
    return 1 if run.errors else 0


if __name__ == "__main__":
    sys.exit(main())
