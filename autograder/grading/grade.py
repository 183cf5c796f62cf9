"""Grade one submission: find its notebooks, extract the graded code, run the suites.

The steps, in this order (each a function below):

1. `find_notebooks`: the released notebooks in a folder or a ``.zip``, at any depth;
2. `extract_from_paths`: the graded definitions of each (imports, defs, classes,
   constants; nothing else runs);
3. a `StudentProcess` per notebook runs them in a child process;
4. `runner.run_checks` runs the notebook's hidden suite against the
   reference, with the reference in place of the graded functions a function
   calls;
5. a `GradingResult`: plain data for the adapters (Gradescope, table, CSV).

A missing or unreadable notebook costs the points of its functions and
nothing else; so does a child that will not start.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import tempfile
import time
import zipfile
import zlib
from pathlib import Path
from typing import Callable, Iterable

from ..isolation.launch import grading_device
from ..isolation.sandbox import Isolation, choose_launcher
from ..isolation.student_process import StudentError, StudentProcess
from .checks import checks_of
from . import extract
from .extract import CLEAR_OUTPUTS, NotebookError, extract_from_paths
from .points import NOTEBOOKS, POINTS, dependencies, graded_functions
from .reference import REPO, load_reference, reference_source
from .results import CheckResult, GradingResult
from .runner import run_checks
from .students import RemoteStudent

SUITES = {nb: f"autograder.suites.test_{nb}" for nb in POINTS}
PACKAGES = [REPO / "course_utils"]  # what the notebooks import, copied to the child
MAX_ZIP_MEMBERS = 10_000


def find_notebooks(root: Path, workdir: Path) -> tuple[dict[str, Path | str], list[str]]:
    """``{notebook name: path}`` for the released notebooks found under ``root``.

    ``root`` is a folder, a ``.zip`` (whose notebooks are copied into
    ``workdir``) or one ``.ipynb``; a notebook may sit at any depth. When a
    name occurs more than once, the shallowest copy wins and a warning says
    so. Checkpoint copies (``.ipynb_checkpoints``) and macOS metadata are
    ignored. A notebook that cannot be taken out of a zip maps to a string
    saying why. Returns the map and the warnings.
    """
    wanted = {f"{nb}.ipynb": nb for nb in NOTEBOOKS}
    found: dict[str, list[str]] = {}
    if root.is_file() and root.name in wanted:
        return {wanted[root.name]: root}, []
    if root.is_file() and zipfile.is_zipfile(root):
        try:
            return _from_zip(root, workdir, wanted)
        except (zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError, OSError, EOFError, ValueError) as e:
            return {nb: f"the zip file could not be read ({e})" for nb in NOTEBOOKS}, []
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder, a .zip file or a released notebook")
    for path in root.rglob("*.ipynb"):
        # a link could point at the reference, or anywhere: only regular files inside the submission count
        if path.name in wanted and not _ignored(path.relative_to(root).parts) and not path.is_symlink() \
                and path.is_file() and path.resolve().is_relative_to(root.resolve()):
            found.setdefault(wanted[path.name], []).append(str(path))
    chosen, warnings = _pick(found, root)
    return {nb: Path(p) for nb, p in chosen.items()}, warnings


def _from_zip(root: Path, workdir: Path, wanted: dict[str, str]) -> tuple[dict[str, Path | str], list[str]]:
    found: dict[str, list[str]] = {}
    with zipfile.ZipFile(root) as z:
        for m in z.infolist()[:MAX_ZIP_MEMBERS]:
            parts = Path(m.filename.replace("\\", "/")).parts
            if not m.is_dir() and parts and parts[-1] in wanted and not _ignored(parts):
                found.setdefault(wanted[parts[-1]], []).append(m.filename)
        members, warnings = _pick(found)
        paths: dict[str, Path | str] = {}
        for nb, member in members.items():
            size = z.getinfo(member).file_size
            if size > extract.DEFAULT_MAX_BYTES:
                paths[nb] = (f"{member} is {size / 2**20:.0f} MB, over the {extract.DEFAULT_MAX_BYTES // 2**20} MB "
                             "limit; "
                             f"{CLEAR_OUTPUTS}")
                continue
            paths[nb] = workdir / f"{nb}.ipynb"
            paths[nb].write_bytes(z.read(member))
    return paths, warnings


def _ignored(parts: tuple[str, ...]) -> bool:
    return any(p in (".ipynb_checkpoints", "__MACOSX") or p.startswith("._") for p in parts)


def _pick(found: dict[str, list[str]], root: Path | None = None) -> tuple[dict[str, str], list[str]]:
    """The shallowest candidate of each notebook, and a warning where there were several (naming the
    copy graded by its place in the submission, ``root``, never by a path of the grading machine)."""
    chosen, warnings = {}, []
    for nb, candidates in found.items():
        candidates = sorted(candidates, key=lambda c: (len(Path(c).parts), c))
        chosen[nb] = candidates[0]
        if len(candidates) > 1:
            shown = Path(candidates[0]).relative_to(root).as_posix() if root is not None else candidates[0]
            warnings.append(f"{len(candidates)} copies of {nb}.ipynb; graded {shown}")
    return chosen, warnings


def _all_failed(notebook: str, feedback: str) -> list[CheckResult]:
    return [CheckResult(notebook, fn, check, 0.0, float(points), feedback)
            for fn in graded_functions(notebook) for check, points in POINTS[notebook][fn].items()]


def grade_notebook(notebook: str, path: Path | str | None, *, isolation: Isolation, call_timeout: float = 20.0,
                   threads: int = 1, result: GradingResult, device: str | None = None) -> None:
    """Grade one notebook of a submission into ``result``, on ``device`` (default `grading_device`)."""
    device = device or grading_device()
    result.device = device
    if path is None:
        result.checks += _all_failed(notebook, f"{notebook}.ipynb was not found in the submission")
        return
    if isinstance(path, str):
        result.checks += _all_failed(notebook, f"{notebook}.ipynb could not be read: {path}")
        return
    functions = graded_functions(notebook)
    try:
        extraction = extract_from_paths([path], names=functions)
    except NotebookError as e:  # the reason only: the path is the grading machine's
        result.checks += _all_failed(notebook, f"{notebook}.ipynb could not be read: {e.reason}")
        result.staff_notes.append(f"{notebook}: {e}")
        return
    result.warnings += [f"{notebook}: {w}" for w in extraction.warnings]
    options = dict(call_timeout=call_timeout, threads=threads, launcher=isolation.launcher, packages=PACKAGES,
                   device=device)
    process = StudentProcess(extraction.source, **options)
    # the timing twin: the reference in a child like the student's, to measure what the channel adds
    twin = StudentProcess(reference_source(notebook), **options)
    try:
        # both children import torch and load their code while this process loads the reference (the
        # start-up of a notebook, paid once; no check runs, and so nothing is timed, until both are up)
        try:
            process.launch()
            twin.launch()
            ref = load_reference(notebook)
            deps = dependencies(notebook)
            substitutes = {f: {g: getattr(ref, g) for g in deps[f]} for f in functions}
            suite = importlib.import_module(SUITES[notebook])
            student = RemoteStudent(process, substitutes, twin=twin)
            process.start()
        except StudentError as e:
            result.checks += _all_failed(notebook, f"your {notebook} code could not be loaded: {e.message}")
            return
        except OSError as e:  # the grader's set-up, not the student's code
            result.checks += _all_failed(notebook, "the grader could not start; your course staff have been notified")
            result.staff_notes.append(f"{notebook}: starting the student process failed: {e!r}")
            return
        with contextlib.suppress(StudentError):  # else the first timing tries again, and reports it
            twin.start()
        result.warnings += [f"{notebook}: a top-level statement failed when loading your code ({e.message})"
                            for e in process.load_errors]
        result.warnings += [f"{notebook}: {x['cell'] or 'a cell'} uses {x['name']!r} before a later cell defines it; "
                            "it was loaded after the rest, as it worked in your kernel, but your notebook does not "
                            "run top to bottom (check with Restart & Run All)" for x in process.late_loads]
        result.checks += run_checks(checks_of(suite), student, ref)
    finally:
        twin.close()
        process.close()


ENV_NOTEBOOKS = "AUTOGRADER_NOTEBOOKS"
"""Comma-separated notebooks an assignment expects (e.g. ``04_moco``), when `grade_submission` is not told."""


def expected_notebooks(notebooks: str | Iterable[str] | None, found: Iterable[str]) -> list[str]:
    """The graded notebooks to grade, in course order: ``notebooks`` (a list, or a comma-separated string;
    ``None``: ``$AUTOGRADER_NOTEBOOKS`` if set) where each one missing costs its points, else those
    ``found`` in the submission, else (nothing found) all of them. ValueError names an unknown notebook."""
    if notebooks is None:
        notebooks = os.environ.get(ENV_NOTEBOOKS) or None
    if isinstance(notebooks, str):
        notebooks = [n.strip().removesuffix(".ipynb") for n in notebooks.split(",") if n.strip()]
    if notebooks is not None:
        unknown = sorted(set(notebooks) - set(SUITES))
        if unknown:
            raise ValueError(f"no graded notebook {', '.join(unknown)}; graded: {', '.join(SUITES)}")
        return [nb for nb in SUITES if nb in set(notebooks)]
    present = [nb for nb in SUITES if nb in set(found)]
    return present or list(SUITES)


def grade_submission(submission: str | os.PathLike, *, call_timeout: float = 20.0, threads: int = 1,
                     isolation: str | Isolation | None = None, notebooks: str | Iterable[str] | None = None,
                     progress: Callable[[str], None] | None = None) -> GradingResult:
    """Grade the notebooks of ``submission`` (a folder or a .zip).

    ``notebooks`` are those the assignment expects (see `expected_notebooks`:
    by default ``$AUTOGRADER_NOTEBOOKS``, else every graded notebook the
    submission holds, else all). ``isolation`` is a level of
    `sandbox.choose_launcher` (``None``: its default,
    ``$AUTOGRADER_ISOLATION`` or ``"auto"``; ``"auto"``: the strongest
    available) or an `Isolation`; what it enforces is recorded in the result.
    """
    start = time.perf_counter()
    if not isinstance(isolation, Isolation):
        isolation = choose_launcher(isolation)
    device = grading_device()
    result = GradingResult(isolation=isolation.description, device=device)
    with tempfile.TemporaryDirectory(prefix="submission-") as tmp:
        found, result.warnings = find_notebooks(Path(submission), Path(tmp))
        for notebook in expected_notebooks(notebooks, found):
            if progress:
                progress(f"grading {notebook}")
            grade_notebook(notebook, found.get(notebook), isolation=isolation, call_timeout=call_timeout,
                           device=device,
                           threads=threads, result=result)
    result.seconds = time.perf_counter() - start
    return result
