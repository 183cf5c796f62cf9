"""The student's self-check: the release's public checks, run on the notebook as saved, in a confined kernel.

    python -m course_utils.submit --check [FOLDER]      (or the last cell of every release notebook)

For each notebook, a kernel started like ``nbgrader autograde``'s
(`nbgrader_kernel.SandboxedKernelManager`: bubblewrap where it works, with no
network and without the hidden suites or the solutions; else a plain kernel
of the student's own user, since this is the student's own code on their
own machine) runs, in fast mode:

1. the release notebook's set-up cells (the code cells before its first
   solution cell: imports, the data);
2. the graded definitions taken from the student's saved file with the
   grader's `extract_definitions` (imports, ``def``, ``class``, constants;
   their training and plotting cells never run);
3. each graded function's public check cells, as the release has them (a
   student who edited or deleted a check still gets the original), each with
   a time limit.

Only what the student already has is read: the release notebook and their
own file. The hidden checks and the reference never enter. A function's
status is ``passed``, ``failed`` (with the check's own message, which says
what looks wrong), ``not implemented``, ``missing`` (no definition in the
file) or ``error`` (the set-up or the definitions failed, with why).
"""
from __future__ import annotations

import ast
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from ..grading.extract import NotebookError, extract_definitions, parse_cell, read_notebook
from ..grading.points import function_points, graded_functions
from ..grading.reference import REPO

RELEASE = REPO / "assignments" / "self_supervised"
PUBLIC_CHECK = "# Public check"
"""How a public check cell of the release starts (its first line)."""
CHECK_SECONDS = 120
"""Time limit of one public check cell (an interrupted cell counts as failed)."""


@dataclass
class FunctionCheck:
    """The public checks of one graded function, on the student's saved notebook."""

    notebook: str
    function: str
    points: float
    status: str  # passed | failed | not implemented | missing | error
    message: str = ""  # what went wrong, in the check's own words
    output: str = ""  # what the checks printed

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass
class ReleaseLayout:
    """Where a release notebook keeps its set-up and each graded function's public checks."""

    setup: list[str]  # code cells before the first solution cell
    checks: dict[str, list[str]] = field(default_factory=dict)  # function -> its public check cells


def release_layout(notebook: str, release: Path = RELEASE) -> ReleaseLayout:
    """Read ``release/<notebook>.ipynb``: its set-up cells and the public checks of each graded function.

    A public check cell (first line `PUBLIC_CHECK`) belongs to the graded
    functions of the solution cells just above it (04's check of
    ``batch_shuffle`` and ``batch_unshuffle`` follows both of theirs).
    """
    nb = nbformat.read(release / f"{notebook}.ipynb", as_version=4)
    graded = set(graded_functions(notebook))
    layout = ReleaseLayout(setup=[])
    pending: list[str] = []
    seen_solution = False
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            if not pending or layout.checks.get(pending[-1]):
                pending = []
            pending += [n for n in _top_level_defs(cell.source) if n in graded]
            seen_solution = True
        elif meta.get("grade"):
            pending = []
        elif cell.source.startswith(PUBLIC_CHECK):
            for name in pending:
                layout.checks.setdefault(name, []).append(cell.source)
        elif not seen_solution:
            layout.setup.append(cell.source)
    return layout


def _top_level_defs(source: str) -> list[str]:
    try:
        _, tree = parse_cell(source)  # the grader's parser: IPython lines removed as it removes them
    except (SyntaxError, ValueError, RecursionError):
        return []
    return [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]


def _kernel_manager():
    """`SandboxedKernelManager` at level ``trusted``: the strongest confinement here, else the student's own."""
    from .nbgrader_kernel import SandboxedKernelManager

    class SelfCheckKernelManager(SandboxedKernelManager):
        requested_level = "trusted"

    return SelfCheckKernelManager


def check_notebook(notebook: str, path: Path, *, release: Path = RELEASE,
                   timeout: int = CHECK_SECONDS) -> list[FunctionCheck]:
    """Run ``notebook``'s public checks on the student's saved file ``path``; one result per graded function."""
    from course_utils.notebook_runner import execute

    functions = graded_functions(notebook)
    made = {f: FunctionCheck(notebook, f, function_points(notebook, f), "error") for f in functions}
    try:
        extraction = extract_definitions(read_notebook(path))
    except NotebookError as e:
        for check in made.values():
            check.message = f"the notebook cannot be read: {e.reason}"
        return list(made.values())
    layout = release_layout(notebook, release)
    cells = [*layout.setup, extraction.source]
    owners: list[str | None] = [None] * len(cells)
    for f in functions:
        if f not in extraction.defined:
            made[f].status, made[f].message = "missing", f"no definition of {f} in the saved notebook"
            continue
        for source in layout.checks.get(f, []):
            cells.append(source)
            owners.append(f)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in cells],
                                  metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    with tempfile.TemporaryDirectory(prefix="self-check-") as tmp:
        script = Path(tmp) / f"{notebook}.ipynb"
        nbformat.write(nb, script)
        run = execute(script, fast=True, timeout=timeout, interrupt_on_timeout=True,
                      kernel_manager_class=_kernel_manager(), quiet=True)
    failed_setup = next((c for c in run.cells[:len(layout.setup) + 1] if c.error), None)
    for f in functions:
        if made[f].status == "missing":
            continue
        if failed_setup is not None:
            what = "your definitions" if failed_setup.index == len(layout.setup) else "the notebook's set-up"
            made[f].message = f"{what} raised {failed_setup.error[0]}: {failed_setup.error[1]}"
            continue
        mine = [c for c, owner in zip(run.cells, owners) if owner == f]
        made[f].output = "".join(c.stdout for c in mine)
        errors = [c.error for c in mine if c.error]
        if not mine:
            made[f].status, made[f].message = "passed", "(this function has no public check; the hidden tests grade it)"
        elif not errors:
            made[f].status = "passed"
        elif errors[0][0] == "NotImplementedError":
            made[f].status, made[f].message = "not implemented", "still raises NotImplementedError"
        elif errors[0][0] == "KeyboardInterrupt":
            made[f].status, made[f].message = "failed", f"its public check took over {timeout} s and was stopped"
        else:
            made[f].status, made[f].message = "failed", f"{errors[0][0]}: {errors[0][1]}".rstrip(": ")
    return list(made.values())


def render_checks(checks: list[FunctionCheck]) -> str:
    """The per-function table of the self-check, then what each failed check said."""
    width = max([len(f"{c.notebook}.{c.function}") for c in checks] + [8])
    lines = [f"{'function':<{width}}  {'points':>6}  public check", "-" * (width + 30)]
    for c in checks:
        lines.append(f"{c.notebook + '.' + c.function:<{width}}  {c.points:>6g}  {c.status}")
    lines.append("-" * (width + 30))
    passed = sum(c.passed for c in checks)
    lines.append(f"{passed} of {len(checks)} functions pass their public checks "
                 f"({sum(c.points for c in checks if c.passed):g} of {sum(c.points for c in checks):g} points at stake). "
                 "The hidden tests check more (other sizes, dtypes, gradients, speed); passing here is a good sign, "
                 "not a grade.")
    for c in checks:
        if c.message and c.status in ("failed", "missing", "error"):
            lines.append(f"\n{c.notebook}.{c.function} ({c.status}):")
            lines += ["  " + line for line in c.message.splitlines()]
    return "\n".join(lines)
