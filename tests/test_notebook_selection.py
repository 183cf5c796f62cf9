"""Which notebooks a submission is graded on: those the assignment expects, else those handed in.

A course may run one assignment per notebook (a Gradescope assignment for 04_moco alone) or one for
several; a student who hands in 03_simclr only must not see 04_moco's checks as failures unless the
assignment expects 04_moco.
"""
import zipfile

import pytest

from autograder.frontends.examples import make_submission
from autograder.frontends.gradebook import grade_folder
from autograder.frontends.package import build_zip
from autograder.grading.grade import ENV_NOTEBOOKS, expected_notebooks, grade_submission
from autograder.grading.points import POINTS, function_points, graded_functions

MOCO = "04_moco"


def test_by_default_the_notebooks_handed_in_are_graded(monkeypatch):
    monkeypatch.delenv(ENV_NOTEBOOKS, raising=False)
    assert expected_notebooks(None, ["04_moco", "05_cpc_not_graded_yet"]) == ["04_moco"]
    assert expected_notebooks(None, []) == list(POINTS)  # nothing handed in: every notebook is missing


def test_the_assignment_can_name_its_notebooks(monkeypatch):
    monkeypatch.delenv(ENV_NOTEBOOKS, raising=False)
    assert expected_notebooks("04_moco.ipynb, 03_simclr", []) == ["03_simclr", "04_moco"]  # course order
    monkeypatch.setenv(ENV_NOTEBOOKS, "04_moco")
    assert expected_notebooks(None, ["03_simclr"]) == ["04_moco"]
    with pytest.raises(ValueError, match="no graded notebook 99_nope"):
        expected_notebooks("99_nope", [])


def test_a_missing_expected_notebook_costs_its_points_and_only_its_points(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_NOTEBOOKS, raising=False)
    make_submission(tmp_path, MOCO, {})
    only = grade_submission(tmp_path, notebooks=MOCO)
    assert {f.notebook for f in only.functions()} == {MOCO}
    assert only.score == only.max_score == sum(function_points(MOCO, f) for f in graded_functions(MOCO)) == 10
    both = grade_submission(tmp_path, notebooks="03_simclr,04_moco")
    simclr = [f for f in both.functions() if f.notebook == "03_simclr"]
    assert all(f.score == 0 and "03_simclr.ipynb was not found" in f.feedback for f in simclr)
    assert both.score == 10 and both.max_score == 24


def test_the_gradescope_zip_carries_the_assignments_notebooks(tmp_path):
    run = zipfile.ZipFile(build_zip(tmp_path / "a.zip", notebooks="04_moco")).read("run_autograder").decode()
    assert f"export {ENV_NOTEBOOKS}=04_moco\n" in run
    run = zipfile.ZipFile(build_zip(tmp_path / "b.zip")).read("run_autograder").decode()
    assert ENV_NOTEBOOKS not in run
    with pytest.raises(ValueError, match="no graded notebook"):
        build_zip(tmp_path / "c.zip", notebooks="04_mocco")


def test_every_row_of_a_gradebook_is_graded_on_the_same_notebooks(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_NOTEBOOKS, raising=False)
    make_submission(tmp_path / "class" / "ada", MOCO, {})
    make_submission(tmp_path / "class" / "bob", "03_simclr", None)  # the starter of the other notebook
    rows = {r["submission"]: r for r in grade_folder(tmp_path / "class", tmp_path / "grades.csv", workers=1)}
    assert rows["ada"]["max_score"] == rows["bob"]["max_score"] == 24
    assert rows["ada"]["score"] == 10 and rows["bob"]["score"] == 0, rows
