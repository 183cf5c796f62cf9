"""The students' submission helper: check the notebooks, run their public checks, write the zip to upload.

Students run it through ``course_utils.submit`` (a command and the last cell of every release
notebook), which only forwards here: course_utils is copied next to student code, so it imports
nothing of the grader itself.

    python -m course_utils.submit [FOLDER] [--out submission.zip] [--notebooks 03_simclr,04_moco]
    python -m course_utils.submit --check [FOLDER]     # the self-check only: the per-function table, no zip

or the last cell of every release notebook (`submit_from_notebook`). For
each notebook it looks for the released names (``03_simclr.ipynb``, ...) in
FOLDER (default: the current folder) and checks, naming what is wrong and
how to fix it rather than failing late on Gradescope:

- present under its released name (a copy such as ``03_simclr (1).ipynb``
  or ``Copy of 03_simclr.ipynb`` goes into the zip under the released name,
  and the helper says so);
- a valid notebook (the grader's reader, with its size limits);
- saved after its last run: from the notebook's own last cell, each graded
  function as the kernel ran it must be what the file holds; from a
  terminal, its graded cells must have been run at all;
- not too large: over `MAX_MB`, its outputs are cleared in the zip (the
  student's file is left alone);
- each graded function defined, and no longer the starter's
  ``NotImplementedError``;
- the public checks pass (`autograder.frontends.selfcheck`: the release's
  checks on the saved file, in a confined kernel).

It exits 1 when something must be fixed before submitting (0 otherwise);
the zip is written either way, holding what could be included.
"""
from __future__ import annotations

import argparse
import ast
import inspect
import io
import json
import os
import re
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from ..grading.extract import CLEAR_OUTPUTS, NotebookError, extract_definitions, parse_cell, read_notebook
from ..grading.grade import ENV_NOTEBOOKS
from ..grading.points import NOTEBOOKS, function_points, graded_functions
from ..grading.reference import REPO

MAX_MB = 20
"""Largest notebook put into the zip as it is, in MB; a larger one goes in with its outputs cleared."""
ZIP_NAME = "submission.zip"
SKIPPED = ("__MACOSX", "__pycache__", "site-packages", "node_modules")
MAX_DEPTH = 3
"""How many folders below FOLDER the helper looks for notebooks (the grader looks at any depth of what is
uploaded; a student's folder is rarely deeper)."""
KIT_RELEASE = REPO / "assignments" / "self_supervised"


@dataclass
class NotebookCheck:
    """What the helper found for one released notebook."""

    notebook: str
    path: Path | None = None  # the student's file, if found
    problems: list[str] = field(default_factory=list)  # must be fixed before submitting
    notes: list[str] = field(default_factory=list)  # worth knowing; nothing to fix
    payload: bytes | None = None  # what goes into the zip as <notebook>.ipynb

    @property
    def ok(self) -> bool:
        return not self.problems


# ----------------------------------------------------------------------------------------------- finding


def _candidates(folder: Path, depth: int = MAX_DEPTH) -> list[Path]:
    """The notebooks under ``folder``, at most ``depth`` folders down; hidden folders (``.venv``, checkpoints),
    ``__pycache__`` and ``site-packages`` are not searched, links not followed."""
    found = []
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        dirs[:] = [] if len(here.relative_to(folder).parts) >= depth else \
            [d for d in dirs if not d.startswith(".") and d not in SKIPPED and not (here / d).is_symlink()]
        found += [here / f for f in files if f.endswith(".ipynb") and not f.startswith("._")
                  and (here / f).is_file() and not (here / f).is_symlink()]
    return sorted(found)


def _looks_like(path: Path, notebook: str) -> bool:
    """A renamed copy: its name holds the released name (``03_simclr (1)``, ``Copy of 03_simclr``,
    ``03_simclr-Copy1``), or it defines most of the notebook's graded functions."""
    stem = re.sub(r"[\s_\-]+", "_", path.stem.lower())
    if notebook.lower() in stem:
        return True
    try:
        defined = extract_definitions(read_notebook(path)).defined
    except NotebookError:
        return False
    wanted = graded_functions(notebook)
    return len(set(wanted) & defined) * 2 > len(wanted)


def find(folder: Path, notebooks: list[str] | None = None) -> dict[str, NotebookCheck]:
    """``{notebook: NotebookCheck}`` with ``path`` set where the notebook (or a renamed copy) was found.

    ``notebooks`` are those the assignment expects (each one missing is a
    problem); ``None``: those found, or every released one if none is.
    """
    files = _candidates(folder)
    exact = {}
    for p in sorted(files, key=lambda p: (len(p.parts), str(p))):  # the shallowest copy, as the grader picks
        exact.setdefault(p.stem, p)
    released = {nb: exact[nb] for nb in NOTEBOOKS if nb in exact}
    spare = [p for p in files if p.stem not in NOTEBOOKS]
    found: dict[str, NotebookCheck] = {}
    for nb in NOTEBOOKS:
        check = NotebookCheck(nb, released.get(nb))
        if check.path is None:
            copy = next((p for p in spare if _looks_like(p, nb)), None)
            if copy is not None:
                spare.remove(copy)
                check.path = copy
                check.notes.append(f"'{copy.relative_to(folder)}' looks like {nb}: it goes into the zip as "
                                   f"{nb}.ipynb, the name the grader looks for (rename it to avoid confusion)")
        found[nb] = check
    expected = notebooks or [nb for nb, c in found.items() if c.path is not None] or list(NOTEBOOKS)
    for nb in expected:
        if found[nb].path is None:
            found[nb].problems.append(f"{nb}.ipynb is not in this folder: download it again from the course, "
                                      f"or put your copy here under that name")
    return {nb: found[nb] for nb in NOTEBOOKS if nb in expected}


# ----------------------------------------------------------------------------------------------- checking


def _implemented(tree: ast.Module, name: str) -> bool:
    """False if the last top-level definition of ``name`` still raises NotImplementedError itself."""
    defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == name]
    if not defs:
        return True
    for node in ast.walk(defs[-1]):
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name) and exc.id == "NotImplementedError":
                return False
    return True


def _file_sources(cells: list[str]) -> dict[str, str]:
    """``{name: source}`` of each top-level ``def``/``class`` in the code ``cells`` (the last wins)."""
    out = {}
    for cell in cells:
        try:
            text, tree = parse_cell(cell)  # the grader's parser: IPython lines removed as it removes them
        except (SyntaxError, ValueError, RecursionError):
            continue
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                out[node.name] = ast.get_source_segment(text, node) or ""
    return out


def _same_code(a: str, b: str) -> bool:
    def norm(s: str) -> list[str]:
        return [line.rstrip() for line in s.strip().splitlines() if line.strip()]
    return norm(a) == norm(b)


def unsaved_functions(cells: list[str], namespace: dict, functions: list[str]) -> list[str]:
    """The graded functions whose code in ``namespace`` (a running kernel's) is not what the saved code
    ``cells`` hold."""
    saved = _file_sources(cells)
    stale = []
    for name in functions:
        live = namespace.get(name)
        if live is None:
            continue
        try:
            source = inspect.getsource(live)
        except (OSError, TypeError):
            continue  # defined where its source cannot be read: nothing to compare
        if name not in saved or not _same_code(source, saved[name]):
            stale.append(name)
    return stale


def _never_run(nb: dict, functions: list[str]) -> bool:
    """True if no code cell that defines a graded function has an execution count (saved but never run)."""
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        src = cell.get("source", "")
        src = "".join(src) if isinstance(src, list) else src
        if any(re.search(rf"^\s*def {re.escape(f)}\b", src, re.M) for f in functions) \
                and cell.get("execution_count") is not None:
            return False
    return True


def _cleared(nb: dict) -> bytes:
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None
    return json.dumps(nb, indent=1, ensure_ascii=False).encode("utf-8")


def check(found: NotebookCheck, *, namespace: dict | None = None) -> NotebookCheck:
    """Check one found notebook (see the module docstring); fills ``problems``, ``notes`` and ``payload``."""
    nb_name, path = found.notebook, found.path
    if path is None:
        return found
    functions = graded_functions(nb_name)
    try:
        sources = read_notebook(path)
        raw = path.read_bytes()
        nb = json.loads(raw.decode("utf-8-sig"))
    except NotebookError as e:
        found.problems.append(f"{path.name} cannot be submitted: {e.reason}")
        return found
    extraction = extract_definitions(sources, functions)
    for line in extraction.warnings:
        found.notes.append(f"{line} (the grader skips it too)")
    for name in extraction.missing:
        found.problems.append(f"{name} is not defined: its cell was deleted or renamed (the grader looks for "
                              f"def {name}(...) with the released name)")
    text = "\n".join(extraction.source.splitlines())
    try:
        tree = ast.parse(text)
    except SyntaxError:
        tree = ast.Module(body=[], type_ignores=[])
    todo = [f for f in functions if f not in extraction.missing and not _implemented(tree, f)]
    if todo:
        found.notes.append(f"not implemented yet (scores 0): {', '.join(todo)}")
    if namespace is not None:
        stale = unsaved_functions(sources, namespace, functions)
        if stale:
            found.problems.append(f"the saved file is not what you ran ({', '.join(stale)} differ): save the "
                                  "notebook (File > Save, Ctrl-S / Cmd-S), then run this cell again")
    elif _never_run(nb, functions):
        found.notes.append("saved without being run: run it top to bottom (Kernel > Restart & Run All), check the "
                           "public checks pass, and save")
    size_mb = len(raw) / 2**20
    if size_mb > MAX_MB:
        found.payload = _cleared(nb)
        found.notes.append(f"{size_mb:.0f} MB, over {MAX_MB} MB: the zip holds it with its outputs cleared "
                           f"({len(found.payload) / 2**20:.1f} MB; your file is unchanged). To keep it small: "
                           + CLEAR_OUTPUTS.split(": ", 1)[0])
    else:
        found.payload = raw
    return found


# ----------------------------------------------------------------------------------------------- the command


def write_zip(checks: dict[str, NotebookCheck], out: Path) -> list[str]:
    """Write each checked notebook's payload into ``out`` as ``<notebook>.ipynb``; returns the names written."""
    names = [f"{nb}.ipynb" for nb, c in checks.items() if c.payload is not None]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for nb, c in checks.items():
            if c.payload is not None:
                z.writestr(f"{nb}.ipynb", c.payload)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, out)
    return names


def run_public_checks(checks: dict[str, NotebookCheck], *, echo=print) -> list:
    """The self-check of every found notebook; a function failing its public check is a note, not a problem."""
    try:
        from .selfcheck import check_notebook
    except ImportError as e:  # e.g. a kit installed without requirements.txt (jupyter, nbgrader)
        echo(f"the public checks cannot run here ({e}): pip install -r requirements.txt, or skip them with "
             "--no-checks")
        return []
    results = []
    for nb, c in checks.items():
        if c.path is None or c.problems and c.payload is None:
            continue
        echo(f"running the public checks of {nb} (fast mode, about 15 s)...")
        mine = check_notebook(nb, c.path)
        results += mine
        bad = [f"{r.function} ({r.status})" for r in mine if r.status in ("failed", "error")]
        if bad:
            c.notes.append(f"public checks failing: {', '.join(bad)}: python -m course_utils.submit --check says why")
    return results


def report(checks: dict[str, NotebookCheck], folder: Path) -> str:
    """One block per notebook: found where, its functions' points, then problems (!) and notes (-)."""
    lines = []
    for nb, c in checks.items():
        where = f"{c.path.relative_to(folder)}" if c.path is not None else "not found"
        points = sum(function_points(nb, f) for f in graded_functions(nb))
        lines.append(f"{'ok  ' if c.ok else 'FIX '} {nb} ({points:g} points): {where}")
        lines += [f"       ! {p}" for p in c.problems]
        lines += [f"       - {n}" for n in c.notes]
    return "\n".join(lines)


def submit(folder: Path, *, out: Path | None = None, notebooks: list[str] | None = None,
           public_checks: bool = True, namespace: dict | None = None, only: str | None = None,
           echo=print) -> tuple[bool, dict[str, NotebookCheck]]:
    """Check ``folder``'s notebooks and write the zip; returns (ready to submit, the checks).

    ``namespace`` and ``only``: the running kernel's globals and its notebook's name (from its last cell:
    that notebook is also checked for unsaved changes, and only its public checks are run again).
    """
    folder = folder.resolve()
    checks = find(folder, notebooks)
    absent = [nb for nb in NOTEBOOKS if nb not in checks]
    if absent and notebooks is None:
        echo(f"not in this folder (fine if not assigned yet; --notebooks names those you must hand in): "
             f"{', '.join(absent)}")
    for nb, c in checks.items():
        check(c, namespace=namespace if nb == only else None)
    if public_checks:
        run_public_checks({nb: c for nb, c in checks.items() if only in (None, nb)}, echo=echo)
    out = out or folder / ZIP_NAME
    names = write_zip(checks, out)
    ready = all(c.ok for c in checks.values())
    echo(report(checks, folder))
    here = Path.cwd().resolve()
    shown = out.resolve().relative_to(here) if out.resolve().is_relative_to(here) else out
    echo(f"\nwrote {shown} with {', '.join(names) or 'no notebook'}: "
         + ("upload it to Gradescope (or submit as your course says)." if ready else
            "fix what is marked ! above first, then run this again."))
    return ready, checks


SUBMIT_MARKDOWN = """## Submitting

Save this notebook first (File > Save, or Ctrl-S / Cmd-S), then run the cell below. It checks the notebooks in
this folder (their names, that what is saved is what you ran, their size, that every graded function is
defined), runs this notebook's public checks again on the saved file, and writes `submission.zip` next to it,
saying what to fix if anything is wrong. Upload the zip (or the notebooks) to Gradescope, or submit as your course
says. From a terminal, `python -m course_utils.submit` does the same for every notebook, and
`python -m course_utils.submit --check` prints each function's public check with what looks wrong."""


def notebook_cell(notebook: str) -> str:
    """The last code cell of the release notebook ``notebook``."""
    return ("from course_utils.submit import submit_from_notebook\n\n"
            f'submit_from_notebook("{notebook}", globals())')


def submit_from_notebook(notebook: str, namespace: dict) -> None:
    """The last cell of a release notebook: submit this folder, checking this notebook against its kernel."""
    from course_utils.checks import autograding

    if autograding():
        print("(skipped while the autograder runs this notebook)")
        return
    here = Path.cwd()
    mine = here / f"{notebook}.ipynb"
    if not mine.is_file():
        if "google.colab" in sys.modules:
            print(f"On Colab this notebook is not a file here: use File > Download > Download .ipynb, keep the name "
                  f"{notebook}.ipynb, and upload it to Gradescope (or run python -m course_utils.submit on your "
                  f"machine, in the folder of your notebooks).")
        else:
            print(f"{notebook}.ipynb is not in this notebook's folder ({here.name}): was it renamed? Save it as "
                  f"{notebook}.ipynb and run this cell again.")
        return
    if "### BEGIN SOLUTION" in mine.read_text(encoding="utf-8", errors="replace"):
        print("This is the instructors' source notebook (with the solutions): students run this cell in their "
              "release copy.")
        return
    submit(here, namespace=namespace, only=notebook)


def default_folder(here: Path) -> Path:
    """``here``, unless it is the kit's own folder: then its release folder, where students work."""
    if here.resolve() == KIT_RELEASE.parents[1]:
        print(f"looking in {KIT_RELEASE.relative_to(here.resolve())}/ (give another folder to look there)")
        return KIT_RELEASE
    return here


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_utils.submit", description=__doc__.split("\n\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", default=None, type=Path,
                        help="where your notebooks are (default: here; in the kit's own folder, "
                             "assignments/self_supervised)")
    parser.add_argument("--out", type=Path, help=f"the zip to write (default: FOLDER/{ZIP_NAME})")
    parser.add_argument("--notebooks", default=os.environ.get(ENV_NOTEBOOKS),
                        help="comma-separated notebooks the assignment asks for (each missing one must be fixed); "
                             "default: those in FOLDER")
    parser.add_argument("--check", action="store_true",
                        help="the self-check only: run the public checks and print the per-function table, no zip")
    parser.add_argument("--no-checks", action="store_true", help="skip the public checks (faster)")
    args = parser.parse_args(argv)
    if args.folder is None:
        args.folder = default_folder(Path.cwd())
    if not args.folder.is_dir():
        print(f"error: {args.folder} is not a folder (give the folder that holds your notebooks)", file=sys.stderr)
        return 2
    wanted = [n.strip() for n in args.notebooks.split(",") if n.strip()] if args.notebooks else None
    unknown = [n for n in wanted or () if n not in NOTEBOOKS]
    if unknown:
        print(f"error: unknown notebook(s) {', '.join(unknown)}; the released ones are {', '.join(NOTEBOOKS)}",
              file=sys.stderr)
        return 2
    if args.check:
        from .selfcheck import render_checks

        checks = find(args.folder.resolve(), wanted)
        for c in checks.values():
            check(c)
        results = run_public_checks(checks)
        print(report(checks, args.folder.resolve()))
        if results:
            print("\n" + render_checks(results))
        return 0 if all(c.ok for c in checks.values()) and all(r.passed for r in results) else 1
    ready, _ = submit(args.folder, out=args.out, notebooks=wanted, public_checks=not args.no_checks)
    return 0 if ready else 1


if __name__ == "__main__":
    sys.exit(main())
