"""The students' tools: the submission helper, the self-check, the notebooks' first (Colab) and last (submit) cells.

Good, incomplete, oversized, unsaved, renamed and broken submissions go
through `course_utils.submit` (without the public checks, which take
seconds a notebook); one real self-check runs the release's public checks
of 03_simclr on a submission with two bugs, in the confined kernel, and
must name both without showing a line of the reference or the hidden suite.
"""
import importlib
import importlib.util
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from autograder.frontends import submit
from autograder.frontends.examples import BUGGY_SIMCLR, make_submission, reference_solutions
from autograder.frontends.selfcheck import release_layout
from autograder.grading.extract import read_notebook
from autograder.grading.points import NOTEBOOKS, graded_functions
from autograder.grading.reference import REPO
import course_utils.submit as door  # what students run; it forwards to autograder.frontends.submit
from course_utils import colab

NB = "03_simclr"


def _folder(tmp_path: Path, notebooks=NOTEBOOKS, code=None) -> Path:
    folder = tmp_path / "mine"
    for nb in notebooks:
        make_submission(folder, nb, code or {})
    return folder


def test_a_good_submission_is_zipped_whole(tmp_path, capsys):
    folder = _folder(tmp_path)
    assert door.main([str(folder), "--no-checks"]) == 0
    out = capsys.readouterr().out
    with zipfile.ZipFile(folder / "submission.zip") as z:
        assert sorted(z.namelist()) == sorted(f"{nb}.ipynb" for nb in NOTEBOOKS)
        assert z.read(f"{NB}.ipynb") == (folder / f"{NB}.ipynb").read_bytes()
    assert "upload it to Gradescope" in out and "FIX" not in out and "!" not in out.replace("!=", "")


def test_missing_notebooks_and_functions_are_named_and_the_zip_holds_the_rest(tmp_path, capsys):
    folder = _folder(tmp_path, notebooks=[NB])
    nb = nbformat.read(folder / f"{NB}.ipynb", as_version=4)
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "sim_positive_pairs"]
    nbformat.write(nb, folder / f"{NB}.ipynb")
    assert door.main([str(folder), "--no-checks", "--notebooks", f"{NB},04_moco"]) == 1
    out = capsys.readouterr().out
    assert "sim_positive_pairs is not defined" in out
    assert "04_moco.ipynb is not in this folder" in out
    assert "fix what is marked ! above first" in out
    with zipfile.ZipFile(folder / "submission.zip") as z:
        assert z.namelist() == [f"{NB}.ipynb"]


def test_without_notebooks_named_it_takes_those_present_and_lists_the_others(tmp_path, capsys):
    folder = _folder(tmp_path, notebooks=[NB])
    assert door.main([str(folder), "--no-checks"]) == 0
    out = capsys.readouterr().out
    assert "not in this folder (fine if not assigned yet" in out and "04_moco" in out


def test_an_unfinished_notebook_is_submitted_and_says_what_scores_zero(tmp_path):
    folder = _folder(tmp_path, notebooks=[NB], code={"sim": None, "compute_sim_matrix": None})
    ready, checks = submit.submit(folder, public_checks=False, echo=lambda *_: None)
    assert ready
    assert any("not implemented yet (scores 0): sim, compute_sim_matrix" in n for n in checks[NB].notes)


def test_an_oversized_notebook_goes_in_with_its_outputs_cleared(tmp_path, monkeypatch):
    monkeypatch.setattr(submit, "MAX_MB", 1)
    folder = _folder(tmp_path, notebooks=[NB])
    path = folder / f"{NB}.ipynb"
    nb = nbformat.read(path, as_version=4)
    code = next(c for c in nb.cells if c.cell_type == "code")
    code.outputs = [nbformat.v4.new_output("display_data", data={"image/png": "A" * (2 * 2**20)})]
    code.execution_count = 1
    nbformat.write(nb, path)
    before = path.read_bytes()
    ready, checks = submit.submit(folder, public_checks=False, echo=lambda *_: None)
    assert ready and any("outputs cleared" in n for n in checks[NB].notes)
    assert path.read_bytes() == before  # the student's file is left alone
    with zipfile.ZipFile(folder / "submission.zip") as z:
        z.extract(f"{NB}.ipynb", tmp_path / "out")
    small = tmp_path / "out" / f"{NB}.ipynb"
    assert small.stat().st_size < 2**20
    assert read_notebook(small) == read_notebook(path)  # the same code, for the grader


def test_code_that_is_not_saved_is_caught_from_the_notebooks_last_cell(tmp_path, monkeypatch):
    folder = _folder(tmp_path, notebooks=[NB])
    # the kernel's functions, with source files inspect can read, as ipykernel gives them
    ran = reference_solutions(NB)
    edited = ran["sim"].replace('"""Cosine similarity', '"""Cosine similarity (edited after saving)')
    assert edited != ran["sim"]
    for name, text in (("saved_defs", ran["sim"]), ("edited_defs", edited)):
        (tmp_path / f"{name}.py").write_text("import torch\n\n" + text + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    saved, changed = (vars(importlib.import_module(n)) for n in ("saved_defs", "edited_defs"))
    ready, checks = submit.submit(folder, public_checks=False, namespace=saved, only=NB, echo=lambda *_: None)
    assert ready, checks[NB].problems
    ready, checks = submit.submit(folder, public_checks=False, namespace=changed, only=NB, echo=lambda *_: None)
    assert not ready
    assert "the saved file is not what you ran (sim differ): save the notebook" in checks[NB].problems[0]


def test_a_notebook_saved_without_being_run_says_so(tmp_path):
    folder = _folder(tmp_path, notebooks=[NB])
    ready, checks = submit.submit(folder, public_checks=False, echo=lambda *_: None)
    assert ready and any("saved without being run" in n for n in checks[NB].notes)
    nb = nbformat.read(folder / f"{NB}.ipynb", as_version=4)
    for i, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        cell.execution_count = i + 1
    nbformat.write(nb, folder / f"{NB}.ipynb")
    ready, checks = submit.submit(folder, public_checks=False, echo=lambda *_: None)
    assert not any("saved without being run" in n for n in checks[NB].notes)


@pytest.mark.parametrize("name", ["03_simclr (1).ipynb", "Copy of 03_simclr.ipynb", "03_SimCLR-Copy1.ipynb",
                                  "my homework.ipynb"])
def test_a_renamed_notebook_goes_in_under_its_released_name(tmp_path, name):
    folder = _folder(tmp_path, notebooks=[NB])
    (folder / f"{NB}.ipynb").rename(folder / name)
    ready, checks = submit.submit(folder, public_checks=False, echo=lambda *_: None)
    assert ready and checks[NB].path.name == name
    assert any(f"'{name}' looks like {NB}: it goes into the zip as {NB}.ipynb" in n for n in checks[NB].notes)
    with zipfile.ZipFile(folder / "submission.zip") as z:
        assert z.namelist() == [f"{NB}.ipynb"] and z.read(f"{NB}.ipynb") == (folder / name).read_bytes()


def test_a_broken_notebook_is_named_with_why_and_left_out(tmp_path, capsys):
    folder = _folder(tmp_path, notebooks=[NB, "04_moco"])
    text = (folder / f"{NB}.ipynb").read_text()
    (folder / f"{NB}.ipynb").write_text(text[: len(text) // 2])
    assert door.main([str(folder), "--no-checks"]) == 1
    out = capsys.readouterr().out
    assert f"{NB}.ipynb cannot be submitted: invalid JSON at line" in out
    assert str(tmp_path) not in out.replace(str(folder), "")
    with zipfile.ZipFile(folder / "submission.zip") as z:
        assert z.namelist() == ["04_moco.ipynb"]


def test_hidden_folders_and_deep_copies_are_not_searched(tmp_path):
    folder = _folder(tmp_path, notebooks=[NB])
    for place in (".venv/lib", "a/b/c/d"):
        make_submission(folder / place, "04_moco", {})
    checks = submit.find(folder)
    assert checks[NB].path == folder / f"{NB}.ipynb" and "04_moco" not in checks


def test_in_the_kits_own_folder_it_looks_in_the_release(monkeypatch, capsys):
    assert submit.default_folder(REPO) == REPO / "assignments" / "self_supervised"
    assert "looking in assignments/self_supervised/" in capsys.readouterr().out
    assert submit.default_folder(REPO / "docs") == REPO / "docs"


def test_bad_arguments_are_refused_with_what_to_do(tmp_path, capsys):
    assert door.main([str(tmp_path / "nowhere")]) == 2
    assert door.main([str(tmp_path), "--notebooks", "03_simclr,06_byol"]) == 2
    err = capsys.readouterr().err
    assert "is not a folder" in err and "unknown notebook(s) 06_byol" in err


def _secret_lines() -> set[str]:
    """Lines of the reference solutions and the hidden suite that no student tool may print."""
    lines = set()
    for text in [*reference_solutions(NB).values(), (REPO / "autograder" / "suites" / f"test_{NB}.py").read_text()]:
        lines |= {line.strip() for line in text.splitlines() if len(line.strip()) > 25}
    return lines


def test_the_self_check_runs_the_public_checks_and_names_what_looks_wrong(tmp_path, capsys):
    folder = _folder(tmp_path, notebooks=[NB], code=BUGGY_SIMCLR)
    assert door.main([str(folder), "--check"]) == 1
    out = capsys.readouterr().out
    table = {line.split()[0]: line.split()[-1] for line in out.splitlines() if line.startswith(f"{NB}.") and not line.endswith(":")}
    assert table == {f"{NB}.{f}": "failed" if f in BUGGY_SIMCLR else "passed" for f in graded_functions(NB)}
    assert "AssertionError: compute_sim_matrix disagrees with sim()" in out
    assert "AssertionError: the vectorized loss differs from the loop version" in out
    assert not (folder / "submission.zip").exists()  # a check, not a submission
    leaked = [line for line in _secret_lines() if line in out]
    assert not leaked, leaked[:3]


def test_every_graded_function_has_its_public_checks_found():
    for nb in NOTEBOOKS:
        layout = release_layout(nb)
        assert set(layout.checks) == set(graded_functions(nb)), nb
        assert layout.setup and all("YOUR CODE HERE" not in cell for cell in layout.setup)


@pytest.mark.parametrize("folder", ["solutions", "assignments"])
def test_every_notebook_starts_with_the_colab_cell_and_ends_with_the_submit_cell(folder):
    for nb in NOTEBOOKS:
        cells = nbformat.read(REPO / folder / "self_supervised" / f"{nb}.ipynb", as_version=4).cells
        code = [c for c in cells if c.cell_type == "code"]
        assert code[0].source == colab.CELL, f"{nb}: run python -m course_utils.colab --write, then make release"
        assert code[-1].source == submit.notebook_cell(nb) and cells[-2].source == submit.SUBMIT_MARKDOWN, nb


_FIND_SPEC = importlib.util.find_spec


def _run_colab_cell(monkeypatch, *, on_colab: bool, installed: bool, cloned: bool) -> list[list[str]]:
    commands = []
    monkeypatch.setattr("subprocess.run", lambda argv, check: commands.append(list(argv)))
    monkeypatch.setattr("os.path.isdir", lambda path: cloned if path == colab.KIT_DIR else False)
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: (_FIND_SPEC(name, *a) if installed else None) if name == "course_utils"
                        else _FIND_SPEC(name, *a))
    if on_colab:
        monkeypatch.setitem(sys.modules, "google.colab", type(sys)("google.colab"))
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    exec(compile(colab.CELL, "colab-cell", "exec"), {})
    return commands


def test_the_colab_cell_clones_and_installs_the_kit_on_colab_only(monkeypatch):
    commands = _run_colab_cell(monkeypatch, on_colab=True, installed=False, cloned=False)
    assert commands[0] == ["git", "clone", "--quiet", "--depth", "1", "--branch", colab.KIT_REF, colab.KIT_URL,
                           colab.KIT_DIR]
    assert commands[1][1:] == ["-m", "pip", "install", "--quiet", "-e", colab.KIT_DIR, "kornia>=0.7.1"]
    assert commands[1][0] == sys.executable and sys.path[0] == colab.KIT_DIR
    assert _run_colab_cell(monkeypatch, on_colab=True, installed=False, cloned=True)[0][1:4] == ["-m", "pip",
                                                                                                "install"]
    assert _run_colab_cell(monkeypatch, on_colab=True, installed=True, cloned=True) == []  # after a restart
    assert _run_colab_cell(monkeypatch, on_colab=False, installed=False, cloned=False) == []  # a laptop


def test_the_colab_writer_keeps_one_cell_and_updates_an_old_one(tmp_path):
    for nb in (NB, "04_moco"):
        path = tmp_path / f"{nb}.ipynb"
        path.write_bytes((REPO / "solutions" / "self_supervised" / f"{nb}.ipynb").read_bytes())
    assert colab.write(tmp_path) == []  # already there
    nb = nbformat.read(tmp_path / f"{NB}.ipynb", as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    first.source = colab.CELL.replace(colab.KIT_REF, "old-tag")
    nbformat.write(nb, tmp_path / f"{NB}.ipynb")
    assert colab.write(tmp_path) == [tmp_path / f"{NB}.ipynb"]
    cells = nbformat.read(tmp_path / f"{NB}.ipynb", as_version=4).cells
    assert sum(c.source.startswith(colab.MARKER) for c in cells) == 1


def test_the_last_cell_skips_the_source_notebook_and_autograding(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO / "solutions" / "self_supervised")
    door.submit_from_notebook(NB, {})
    assert "instructors' source notebook" in capsys.readouterr().out
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    door.submit_from_notebook(NB, {})
    assert "skipped while the autograder runs" in capsys.readouterr().out
    monkeypatch.delenv("NBGRADER_EXECUTION")
    monkeypatch.chdir(tmp_path)
    door.submit_from_notebook(NB, {})
    assert "03_simclr.ipynb is not in this notebook's folder" in capsys.readouterr().out
    assert not list(tmp_path.iterdir())
