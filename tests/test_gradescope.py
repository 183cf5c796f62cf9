"""Gradescope: the autograder zip, a run of it in a Gradescope-like layout, and
results.json against Gradescope's results specification (autograder/frontends/gradescope_schema.json).

The layout is Gradescope's: ``ROOT/source`` (the unpacked zip),
``ROOT/submission`` (the student's upload) and ``ROOT/results``;
run_autograder honours ``AUTOGRADER_ROOT`` so that it runs outside a container.
"""
import copy
import json
import os
import re
import shlex
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import pytest

from autograder.frontends import gradescope
from autograder.frontends.examples import EXAMPLES, make_submission
from autograder.frontends.package import SETUP_SH, build_zip
from autograder.grading.grade import grade_submission
from autograder.grading.points import POINTS, function_points, graded_functions
from autograder.grading.results import CheckResult, GradingResult

NB = "03_simclr"
REPO = Path(__file__).resolve().parents[1]
SCHEMA_PATH = Path(gradescope.__file__).with_name("gradescope_schema.json")
TOTAL = sum(function_points(NB, f) for f in graded_functions(NB))  # 14


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _errors(validator, data):
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(data)]


def _plant(root: Path) -> Path:
    """A stale results.json that must not survive the run."""
    planted = root / "results" / "results.json"
    planted.parent.mkdir(parents=True, exist_ok=True)
    planted.write_text(json.dumps({"score": 999, "output": "planted"}))
    return planted


def _check_tests(data: dict, expected: dict[str, float]) -> None:
    """One visible test per graded function, with the expected scores."""
    tests = data["tests"]
    assert len(tests) == len(graded_functions(NB)) == 6
    by_function = {}
    for t in tests:
        functions = [f for f in graded_functions(NB) if f in t["tags"]]
        assert len(functions) == 1, t["tags"]
        assert NB in t["tags"]
        by_function[functions[0]] = t
        assert t["visibility"] == "visible"
        assert functions[0] in t["name"]
        assert t["output"].strip(), "every test tells the student what was checked"
    assert set(by_function) == set(graded_functions(NB))
    for f, t in by_function.items():
        assert t["max_score"] == function_points(NB, f)
        assert t["score"] == pytest.approx(expected[f]), (f, t["output"])
        assert t["status"] == ("passed" if expected[f] >= t["max_score"] else "failed")
        assert "FAIL" in t["output"] if t["status"] == "failed" else "FAIL" not in t["output"]
    assert data["score"] == pytest.approx(sum(expected.values()))
    assert data["execution_time"] > 0
    assert data["stdout_visibility"] == "hidden"


# -- the schema itself ------------------------------------------------------------------------------

def _synthetic() -> GradingResult:
    r = GradingResult(seconds=1.25, warnings=["03_simclr: a cell was skipped"])
    r.checks = [
        CheckResult(NB, "sim", "values", 1.0, 1.0),
        CheckResult(NB, "compute_sim_matrix", "values", 0.0, 1.5, "expected cosine similarities"),
        CheckResult(NB, "compute_sim_matrix", "vectorized", 0.5, 0.5),
    ]
    return r


def test_schema_accepts_the_adapter_output(validator):
    data = gradescope.to_results_json(_synthetic())
    assert _errors(validator, data) == []
    assert [t["score"] for t in data["tests"]] == [1.0, 0.5]
    assert [t["status"] for t in data["tests"]] == ["passed", "failed"]
    assert data["score"] == 1.5 and data["execution_time"] == 1.25
    assert "a cell was skipped" in data["output"]
    assert _errors(validator, gradescope.to_results_json(GradingResult())) == []  # nothing graded: still valid


def _drop(key):
    return lambda d: d["tests"][0].pop(key)


def _set_test(key, value):
    return lambda d: d["tests"][0].__setitem__(key, value)


def _set_top(key, value):
    return lambda d: d.__setitem__(key, value)


BROKEN = {
    "test without max_score": _drop("max_score"),
    "test without score": _drop("score"),
    "test without name": _drop("name"),
    "test without tags": _drop("tags"),
    "test without visibility": _drop("visibility"),
    "test without output": _drop("output"),
    "visibility 'public'": _set_test("visibility", "public"),
    "status 'partial'": _set_test("status", "partial"),
    "score as a string": _set_test("score", "1"),
    "max_score null": _set_test("max_score", None),
    "tags as a string": _set_test("tags", "sim"),
    "empty tags": _set_test("tags", []),
    "output_format 'markdown'": _set_test("output_format", "markdown"),
    "number as a number": _set_test("number", 1.1),
    "unknown test key": _set_test("points", 1),
    "unknown top-level key": _set_top("stdout_visiblity", "hidden"),
    "stdout_visibility 'private'": _set_top("stdout_visibility", "private"),
    "top-level output_format 'rich'": _set_top("output_format", "rich"),
    "negative execution_time": _set_top("execution_time", -1),
    "tests not a list": _set_top("tests", {}),
    "leaderboard order 'up'": _set_top("leaderboard", [{"name": "t", "value": 1, "order": "up"}]),
    "no top-level score": lambda d: d.pop("score"),
    "no execution_time": lambda d: d.pop("execution_time"),
}


@pytest.mark.parametrize("breakage", list(BROKEN), ids=list(BROKEN))
def test_schema_rejects_what_the_spec_or_the_kit_forbids(validator, breakage):
    data = copy.deepcopy(gradescope.to_results_json(_synthetic()))
    BROKEN[breakage](data)
    assert _errors(validator, data), f"the schema accepted a results.json with {breakage}"


def test_schema_accepts_the_spec_optional_fields(validator):
    data = gradescope.to_results_json(_synthetic())
    data.update(test_output_format="md", test_name_format="text", visibility="after_due_date", extra_data={"k": 1},
                leaderboard=[{"name": "Accuracy", "value": 0.9}, {"name": "Time", "value": 3, "order": "asc"},
                             {"name": "Stars", "value": "***"}])
    data["tests"][0].update(number="1.1", name_format="html", extra_data={}, visibility="after_published")
    assert _errors(validator, data) == []


# -- the zip ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def autograder_zip(tmp_path_factory):
    return build_zip(tmp_path_factory.mktemp("zip") / "autograder.zip")


def test_zip_layout(autograder_zip):
    with zipfile.ZipFile(autograder_zip) as z:
        infos = {i.filename: i for i in z.infolist()}
        for script in ("setup.sh", "run_autograder"):
            assert script in infos, f"{script} must be at the zip's root"
            mode = infos[script].external_attr >> 16
            assert mode & stat.S_IXUSR and mode & stat.S_IXOTH, f"{script} is not executable ({oct(mode)})"
            assert z.read(script).startswith(b"#!"), f"{script} has no #! line"
        names = set(infos)
    for nb in POINTS:
        assert f"autograder/suites/test_{nb}.py" in names, "the hidden suite is missing"
        assert f"solutions/self_supervised/{nb}.ipynb" in names, "the reference notebook is missing"
    assert {"autograder/__main__.py", "autograder/grading/grade.py", "course_utils/__init__.py", "pyproject.toml"} <= names
    for name in names:
        parts = Path(name).parts
        assert not {"__pycache__", ".ipynb_checkpoints", ".venv", ".git", ".pytest_cache"} & set(parts), name
        assert parts[0] not in ("tests", "data", "build", "assignments", "benchmarks"), name
        assert not name.endswith((".pyc", ".npz", ".db")), name


# -- a run of the zip in a Gradescope-like layout ---------------------------------------------------

def _requirement_name(spec: str) -> str:
    return re.split(r"[<>=!~\[;@ ]", spec.strip(), maxsplit=1)[0].lower().replace("-", "_")


def _not_on_gradescope() -> set[str]:
    """The kit's requirements that setup.sh does not install (nbgrader, jupyter, pytest, ...)."""
    installed = set()
    for line in SETUP_SH.splitlines():
        if m := re.search(r"pip install (.*)", line):
            installed |= {_requirement_name(t) for t in shlex.split(m.group(1)) if not t.startswith("-") and "/" not in t}
    wanted = {_requirement_name(line) for line in (REPO / "requirements.txt").read_text().splitlines()
              if line.strip() and not line.lstrip().startswith(("#", "-"))}
    missing = wanted - installed
    assert {"torch", "torchvision"} <= installed and "nbgrader" in missing, (installed, missing)
    return missing


def _hide_packages(names: set[str], where: Path) -> Path:
    """A folder that, first on PYTHONPATH, makes ``import <name>`` fail as if it were not installed."""
    for name in names:
        (where / name).mkdir(parents=True)
        (where / name / "__init__.py").write_text(
            f"raise ModuleNotFoundError('{name} is not installed by setup.sh', name='{name}')\n")
    return where


def test_run_autograder_in_gradescope_layout(autograder_zip, validator, tmp_path):
    root = tmp_path / "autograder"
    with zipfile.ZipFile(autograder_zip) as z:
        z.extractall(root / "source")
    make_submission(root / "submission", NB, EXAMPLES["reference"][NB])
    planted = _plant(root)
    bindir = Path(sys.executable).parent
    assert (bindir / "python3").exists(), f"no python3 next to {sys.executable}"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE")}
    env.update(AUTOGRADER_ROOT=str(root), PATH=f"{bindir}{os.pathsep}{env.get('PATH', '')}",
               # As on Gradescope: only what setup.sh installs can be imported.
               PYTHONPATH=str(_hide_packages(_not_on_gradescope(), tmp_path / "not_installed")))
    proc = subprocess.run(["bash", str(root / "source" / "run_autograder")], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The unpacked copy ran, not the repository's: its modules were compiled there.
    assert list((root / "source" / "autograder" / "grading" / "__pycache__").glob("grade.*.pyc")), proc.stdout + proc.stderr
    data = json.loads(planted.read_text())
    assert data["score"] != 999 and data.get("output") != "planted", "the planted results.json survived"
    assert _errors(validator, data) == []
    _check_tests(data, {f: function_points(NB, f) for f in graded_functions(NB)})
    assert data["score"] == TOTAL == 14
    assert not list((root / "results").glob(".results-*")), "a temporary file was left behind"


def test_gradescope_run_two_bugs(validator, tmp_path):
    make_submission(tmp_path / "submission", NB, EXAMPLES["two_bugs"][NB])
    planted = _plant(tmp_path)
    data = gradescope.run(tmp_path)
    assert json.loads(planted.read_text()) == data
    assert _errors(validator, data) == []
    expected = {f: function_points(NB, f) for f in graded_functions(NB)}
    expected.update(compute_sim_matrix=0.0, simclr_loss_vectorized=0.0)
    _check_tests(data, expected)
    assert data["score"] == pytest.approx(8.0)


ALONE = {  # notebook: (what two_bugs loses, its total)
    "01_pretext_tasks": ({"rotate_batch": POINTS["01_pretext_tasks"]["rotate_batch"]["errors"], "shuffle_tiles": 0.0},
                         6.75),
    "02_generative_pretext": ({"colorization_loss": 0.0, "propagate_colors": 0.0}, 6.25),
    "04_moco": ({"momentum_update": POINTS["04_moco"]["momentum_update"]["gradients"], "moco_logits": 0.0}, 5.75),
    "05_cpc": ({"cpc_infonce": 0.0, "cpc_loss": POINTS["05_cpc"]["cpc_loss"]["errors"]}, 4.25),
}


@pytest.mark.parametrize("notebook", sorted(ALONE))
def test_gradescope_grades_one_notebook_alone_with_the_local_commands_points(validator, tmp_path, monkeypatch,
                                                                               notebook):
    """An assignment for one notebook alone (the zip's run_autograder exports AUTOGRADER_NOTEBOOKS)."""
    monkeypatch.setenv("AUTOGRADER_NOTEBOOKS", notebook)
    make_submission(tmp_path / "submission", notebook, EXAMPLES["two_bugs"][notebook])
    data = gradescope.run(tmp_path)
    assert _errors(validator, data) == []
    local = {f.function: f.score for f in grade_submission(tmp_path / "submission", notebooks=notebook).functions()}
    lost, total = ALONE[notebook]
    expected = {**{f: function_points(notebook, f) for f in graded_functions(notebook)}, **lost}
    assert local == expected
    by_function = {}
    for t in data["tests"]:
        (function,) = [f for f in graded_functions(notebook) if f in t["tags"]]
        assert notebook in t["tags"] and t["max_score"] == function_points(notebook, function)
        by_function[function] = t["score"]
    assert by_function == expected
    assert data["score"] == pytest.approx(sum(expected.values())) == pytest.approx(total)
