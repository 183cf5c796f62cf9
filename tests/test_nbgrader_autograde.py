"""nbgrader end to end: generate_assignment (with a gradebook database) and
autograde in a temporary course, on the example submissions, and the scores
nbgrader records against the local grade command's.

The source notebook's hidden-test cells call `autograder.frontends.nbgrader_hook.check`,
which returns the function's score (nbgrader reads a number as partial
credit) and raises at 0. A grade cell that writes to stderr gets 0 from
nbgrader, so none may.

About 2 minutes on 2 CPUs: generate_assignment ~13 s, autograde ~20 s a
student (each notebook runs in a fresh kernel, training skipped under
autograde), the local grade command ~8 s a student. Every nbgrader call has a
timeout, so that a hung kernel fails the test instead of the CI job.
"""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from autograder.frontends.examples import EXAMPLES, make_submission
from autograder.grading.grade import grade_submission
from autograder.grading.points import function_points, graded_functions
from course_utils import release

pytest.importorskip("nbgrader")
from nbgrader.api import Gradebook  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ASSIGNMENT = "self_supervised"
NB = "03_simclr"
STUDENTS = ("reference", "starter", "two_bugs")
NBGRADER_TIMEOUT = 900  # seconds for one nbgrader command (three notebooks); it normally takes a few minutes

CONFIG = """\
c = get_config()  # noqa: F821
c.CourseDirectory.course_id = "ssl_kit_test"
c.CourseDirectory.root = {root!r}
c.ClearSolutions.code_stub = {{
    "python": "# YOUR CODE HERE\\nraise NotImplementedError(\\"not implemented yet: write your code here, then rerun this cell\\")"
}}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
c.ClearOutput.enabled = True
# A grade cell (or a slow setup cell) fails after this many seconds, not the whole run.
c.Execute.timeout = 300
c.ExecutePreprocessor.timeout = 300
"""


def _nbgrader(course: Path, *args: str, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env,
                          capture_output=True, text=True, timeout=NBGRADER_TIMEOUT)
    assert proc.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A course directory after generate_assignment and autograde; yields it and the timings."""
    course = tmp_path_factory.mktemp("course")
    timings = {}
    (course / "source" / ASSIGNMENT).mkdir(parents=True)
    shutil.copy(REPO / "solutions" / ASSIGNMENT / f"{NB}.ipynb", course / "source" / ASSIGNMENT)
    (course / "nbgrader_config.py").write_text(CONFIG.format(root=str(course)))
    # Only the course's config: none from the user's ~/.jupyter. SSL_KIT_FAST as in CI.
    config_dir = tmp_path_factory.mktemp("jupyter_config")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NBGRADER_EXECUTION")}
    env.update(JUPYTER_CONFIG_DIR=str(config_dir), SSL_KIT_FAST="1")
    # nbgrader's gradebook runs the `alembic` command by name: the environment's bin/ must be on PATH
    # even when the venv is not activated (as with `.venv/bin/python -m pytest`).
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"

    start = time.perf_counter()
    _nbgrader(course, "generate_assignment", ASSIGNMENT, "--force", env=env)
    timings["generate_assignment"] = time.perf_counter() - start
    assert (course / "gradebook.db").is_file()
    # The submissions are made from the repository's release; it must be this course's release.
    assert release.differences(course / "release" / ASSIGNMENT, REPO / "assignments" / ASSIGNMENT) == []

    for student in STUDENTS:
        make_submission(course / "submitted" / student / ASSIGNMENT, NB, EXAMPLES[student][NB])

    start = time.perf_counter()
    proc = _nbgrader(course, "autograde", ASSIGNMENT, "--force", env=env)
    timings["autograde"] = time.perf_counter() - start
    assert "| ERROR]" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    yield course, timings
    print("\nnbgrader timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))


@pytest.fixture(scope="module")
def local_scores(course):
    """``{student: {function: score}}`` from the local grade command, on the same submitted notebooks."""
    course_dir, _ = course
    out = {}
    for student in STUDENTS:
        result = grade_submission(course_dir / "submitted" / student / ASSIGNMENT)
        out[student] = {f.function: f.score for f in result.functions()}
        assert {f.function: f.max_score for f in result.functions()} == \
            {f: function_points(NB, f) for f in graded_functions(NB)}
    return out


def _nbgrader_scores(course_dir: Path, student: str) -> dict[str, tuple[float, float]]:
    with Gradebook(f"sqlite:///{course_dir / 'gradebook.db'}") as gb:
        nb = gb.find_submission_notebook(NB, ASSIGNMENT, student)
        return {g.name: (g.score, g.max_score) for g in nb.grades}


EXPECTED = {
    "reference": {f: function_points(NB, f) for f in graded_functions(NB)},
    "starter": {f: 0.0 for f in graded_functions(NB)},
    "two_bugs": {**{f: function_points(NB, f) for f in graded_functions(NB)},
                 "compute_sim_matrix": 0.0, "simclr_loss_vectorized": 0.0},
}


@pytest.mark.parametrize("student", STUDENTS)
def test_nbgrader_scores_match_the_local_command(course, local_scores, student):
    course_dir, _ = course
    scores = _nbgrader_scores(course_dir, student)
    assert set(scores) == {f"test_{f}" for f in graded_functions(NB)}, sorted(scores)
    for f in graded_functions(NB):
        score, max_score = scores[f"test_{f}"]
        assert max_score == function_points(NB, f)
        assert score == pytest.approx(local_scores[student][f]), (student, f, score, local_scores[student][f])
        assert score == pytest.approx(EXPECTED[student][f]), (student, f, score)
    assert sum(s for s, _ in scores.values()) == pytest.approx(sum(EXPECTED[student].values()))


@pytest.mark.parametrize("student", STUDENTS)
def test_grade_cells_write_nothing_to_stderr(course, student):
    course_dir, _ = course
    path = course_dir / "autograded" / student / ASSIGNMENT / f"{NB}.ipynb"
    grade_cells = [c for c in nbformat.read(path, as_version=4).cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert len(grade_cells) == len(graded_functions(NB))
    for cell in grade_cells:
        gid = cell.metadata.nbgrader.grade_id
        assert "check(" in cell.source, f"{gid}: the hidden test was not restored"
        stderr = [o for o in cell.outputs if o.output_type == "stream" and o.name == "stderr"]
        assert not stderr, f"{student} {gid} wrote to stderr: {stderr[0].text[:500]}"
        errors = [o for o in cell.outputs if o.output_type == "error"]
        scored = EXPECTED[student][gid.removeprefix("test_")] > 0
        assert bool(errors) != scored, f"{student} {gid}: {errors[:1]}"  # only a score of 0 raises
        if scored:
            results = [o for o in cell.outputs if o.output_type == "execute_result"]
            assert len(results) == 1 and float(results[0].data["text/plain"]) > 0, cell.outputs
