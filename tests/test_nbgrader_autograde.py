"""nbgrader end to end, in a course made by `python -m autograder nbgrader-course`:
generate_assignment (with a gradebook database), autograde and
generate_feedback on the example submissions and on hostile ones, and the
scores nbgrader records against the local grade command's.

Under autograde the student's notebook runs in a confined kernel
(`nbgrader_kernel`), and `nbgrader_grade.GradeOutsideKernel` replaces every
test cell's outputs with the sandboxed grader's verdict, so nothing the
kernel does decides a score. The hostile submissions:

- ``patcher``: the two_bugs example (8/14 earned) plus a cell that replaces
  the hook, its ``sys.modules`` entries and ``builtins.__import__``, rewrites
  every later cell that calls ``check(`` into one that returns 99, prints
  fake scores, and writes 99 into any ``gradebook.db`` it can find: it must
  score exactly what two_bugs earns.
- ``reader``: the starter plus a cell that looks for the reference solutions,
  the hidden suites and the gradebook from its kernel and prints what it
  reads: it must find nothing (where the kernel is confined), score 0, and
  no line of the reference, the suite or the gradebook may appear in its
  autograded notebook or its feedback HTML.

About 3 minutes on 2 CPUs: generate_assignment ~8 s, autograde ~15 s a
student (a fresh kernel each, training skipped under autograde, then the
grader's child), generate_feedback ~10 s, the local grade command ~8 s a
student. Every nbgrader call has a timeout, so that a hung kernel fails the
test instead of the CI job.
"""
import html
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from autograder.frontends.examples import EXAMPLES, make_submission
from autograder.grading.grade import grade_submission
from autograder.grading.points import POINTS, function_points, graded_functions
from course_utils import release

pytest.importorskip("nbgrader")
from nbgrader.api import Gradebook  # noqa: E402

from autograder.frontends.nbgrader_kernel import choose_kernel_isolation  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ASSIGNMENT = "self_supervised"
NB = "03_simclr"
PRETEXT, GENERATIVE, MOCO, CPC = "01_pretext_tasks", "02_generative_pretext", "04_moco", "05_cpc"  # graded the
ALSO = (PRETEXT, GENERATIVE, MOCO, CPC)           # same way: the plain examples hand them in too (not the hostile ones)
STUDENTS = ("reference", "starter", "two_bugs", "patcher", "reader")
LOCAL = ("reference", "starter", "two_bugs")
ALSO_STUDENTS = ("reference", "two_bugs")  # hand in ALSO too: full and partial marks per function. The starter's
# zeros go through nbgrader with 03 (and every kit test checks each starter locally): the others' would add
# minutes to CI and nothing nbgrader-specific.
NBGRADER_TIMEOUT = 900  # seconds for one nbgrader command (five notebooks); it normally takes two minutes

PATCHER = r'''
# A student's attempt to decide the grade from the kernel.
import builtins, sqlite3, sys, types
from pathlib import Path
print("HOSTILE-PATCH ran")
fake = lambda function, namespace=None: 99.0
try:
    import autograder.frontends.nbgrader_hook as hook
    hook.check = fake
except Exception as e:
    print("hook:", type(e).__name__)
for name in ("autograder.frontends.nbgrader_hook", "autograder.nbgrader_hook"):
    sys.modules[name] = types.SimpleNamespace(check=fake)
_real_import = builtins.__import__
def _import(name, *args, **kwargs):
    return types.SimpleNamespace(check=fake) if "nbgrader_hook" in name else _real_import(name, *args, **kwargs)
builtins.__import__ = _import
get_ipython().input_transformers_cleanup.append(lambda lines: ["99.0\n"] if "check(" in "".join(lines) else lines)
print("compute_sim_matrix: 2/2\nsimclr_loss_vectorized: 4/4\ntotal 14/14")
for folder in [Path.cwd(), *Path.cwd().parents]:
    if (folder / "gradebook.db").is_file():
        try:
            db = sqlite3.connect(folder / "gradebook.db")
            db.execute("UPDATE grade SET auto_score = 99")
            db.commit()
            print("HOSTILE-PATCH wrote the gradebook")
        except Exception as e:
            print("gradebook:", type(e).__name__)
'''

READER = r'''
# A student's attempt to read the reference, the suites and the gradebook from the kernel.
from pathlib import Path
print("HOSTILE-READ ran")
places = []
for folder in [Path.cwd(), *Path.cwd().parents]:
    places += [folder / "gradebook.db", folder / "source" / "self_supervised" / "03_simclr.ipynb",
               folder / "solutions" / "self_supervised" / "03_simclr.ipynb",
               folder / "autograder" / "suites" / "test_03_simclr.py"]
try:
    import autograder
    for p in autograder.__path__:
        places += sorted(Path(p).rglob("test_*.py")) + [Path(p).parent / "solutions" / "self_supervised" / "03_simclr.ipynb"]
except Exception as e:
    print("autograder:", type(e).__name__)
try:
    from autograder.grading.reference import load_reference
    print(sorted(vars(load_reference("03_simclr"))))
except Exception as e:
    print("reference:", type(e).__name__)
found = 0
for place in places:
    try:
        print(place, place.read_text(errors="replace")[:100000])
        found += 1
    except Exception:
        pass
print(f"HOSTILE-READ found {found}")
'''

SUBMISSIONS = {**{s: EXAMPLES[s][NB] for s in LOCAL}, "patcher": EXAMPLES["two_bugs"][NB],
               "reader": EXAMPLES["starter"][NB]}
HOSTILE_CELLS = {"patcher": PATCHER, "reader": READER}


def _nbgrader(course: Path, *args: str, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env,
                          capture_output=True, text=True, timeout=NBGRADER_TIMEOUT)
    assert proc.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def _submit(course: Path, student: str) -> None:
    if student in ALSO_STUDENTS:
        for notebook in ALSO:
            make_submission(course / "submitted" / student / ASSIGNMENT, notebook, EXAMPLES[student][notebook])
    path = make_submission(course / "submitted" / student / ASSIGNMENT, NB, SUBMISSIONS[student])
    if student in HOSTILE_CELLS:
        nb = nbformat.read(path, as_version=4)
        nb.cells.insert(3, nbformat.v4.new_code_cell(HOSTILE_CELLS[student]))
        nbformat.write(nb, path)


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A course made by the kit's command, after generate_assignment, autograde and generate_feedback."""
    course = tmp_path_factory.mktemp("course")
    timings = {}
    made = subprocess.run([sys.executable, "-m", "autograder", "nbgrader-course", str(course)],
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    assert (course / "source" / ASSIGNMENT / f"{NB}.ipynb").is_file()
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
        _submit(course, student)

    start = time.perf_counter()
    proc = _nbgrader(course, "autograde", ASSIGNMENT, "--force", env=env)
    timings["autograde"] = time.perf_counter() - start
    assert "| ERROR]" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    start = time.perf_counter()
    _nbgrader(course, "generate_feedback", ASSIGNMENT, "--force", env=env)
    timings["generate_feedback"] = time.perf_counter() - start
    yield course, timings
    print("\nnbgrader timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))


@pytest.fixture(scope="module")
def local_scores(course):
    """``{student: {function: score}}`` from the local grade command, on the same submitted notebooks."""
    course_dir, _ = course
    out = {}
    for student in LOCAL:
        result = grade_submission(course_dir / "submitted" / student / ASSIGNMENT)
        out[student] = {f.function: f.score for f in result.functions()}
        handed_in = (NB, *ALSO) if student in ALSO_STUDENTS else (NB,)
        assert {f.function: f.max_score for f in result.functions()} == \
            {f: function_points(nb, f) for nb in handed_in for f in graded_functions(nb)}
    return out


def _nbgrader_scores(course_dir: Path, student: str, notebook: str = NB) -> dict[str, tuple[float, float]]:
    with Gradebook(f"sqlite:///{course_dir / 'gradebook.db'}") as gb:
        nb = gb.find_submission_notebook(notebook, ASSIGNMENT, student)
        return {g.name: (g.score, g.max_score) for g in nb.grades}


EXPECTED = {
    "reference": {f: function_points(NB, f) for f in graded_functions(NB)},
    "starter": {f: 0.0 for f in graded_functions(NB)},
    "two_bugs": {**{f: function_points(NB, f) for f in graded_functions(NB)},
                 "compute_sim_matrix": 0.0, "simclr_loss_vectorized": 0.0},
}
EXPECTED.update(patcher=EXPECTED["two_bugs"], reader=EXPECTED["starter"])
SAME_CODE_AS = {"patcher": "two_bugs", "reader": "starter"}


@pytest.mark.parametrize("student", STUDENTS)
def test_nbgrader_scores_match_the_local_command(course, local_scores, student):
    course_dir, _ = course
    scores = _nbgrader_scores(course_dir, student)
    assert set(scores) == {f"test_{f}" for f in graded_functions(NB)}, sorted(scores)
    for f in graded_functions(NB):
        score, max_score = scores[f"test_{f}"]
        assert max_score == function_points(NB, f)
        local = local_scores[SAME_CODE_AS.get(student, student)][f]
        assert score == pytest.approx(local), (student, f, score, local)
        assert score == pytest.approx(EXPECTED[student][f]), (student, f, score)
    assert sum(s for s, _ in scores.values()) == pytest.approx(sum(EXPECTED[student].values()))


def _full(notebook):
    return {f: function_points(notebook, f) for f in graded_functions(notebook)}


ALSO_EXPECTED = {
    PRETEXT: {
        "reference": _full(PRETEXT),
        "two_bugs": {**_full(PRETEXT),  # clockwise rotations, the inverse permutation
                     "rotate_batch": POINTS[PRETEXT]["rotate_batch"]["errors"], "shuffle_tiles": 0.0},
    },
    GENERATIVE: {
        "reference": _full(GENERATIVE),
        "two_bugs": {**_full(GENERATIVE),  # F.cross_entropy's weight=, the softmax over the target positions
                     "colorization_loss": 0.0, "propagate_colors": 0.0},
    },
    MOCO: {
        "reference": _full(MOCO),
        "two_bugs": {**_full(MOCO),  # reversed momentum, positive last
                     "momentum_update": POINTS[MOCO]["momentum_update"]["gradients"],  # it builds no graph
                     "moco_logits": 0.0},
    },
    CPC: {
        "reference": _full(CPC),
        "two_bugs": {**_full(CPC),  # softmax over the contexts, one W for every step ahead
                     "cpc_infonce": 0.0, "cpc_loss": POINTS[CPC]["cpc_loss"]["errors"]},
    },
}


@pytest.mark.parametrize("notebook", ALSO)
@pytest.mark.parametrize("student", ALSO_STUDENTS)
def test_nbgrader_grades_the_other_notebooks_with_the_local_commands_points(course, local_scores, student, notebook):
    course_dir, _ = course
    scores = _nbgrader_scores(course_dir, student, notebook)
    assert set(scores) == {f"test_{f}" for f in graded_functions(notebook)}, sorted(scores)
    for f in graded_functions(notebook):
        score, max_score = scores[f"test_{f}"]
        assert max_score == function_points(notebook, f)
        assert score == pytest.approx(local_scores[student][f]), (student, f, score)
        assert score == pytest.approx(ALSO_EXPECTED[notebook][student][f]), (student, f, score)


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


def _autograded(course_dir: Path, student: str) -> nbformat.NotebookNode:
    return nbformat.read(course_dir / "autograded" / student / ASSIGNMENT / f"{NB}.ipynb", as_version=4)


def _output_text(nb: nbformat.NotebookNode) -> str:
    """Everything the kernel and the grader wrote into the notebook's outputs."""
    parts = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            parts += [o.get("text", ""), o.get("evalue", ""), *o.get("traceback", []),
                      *(str(v) for v in o.get("data", {}).values())]
    return "\n".join(parts)


def _feedback_text(course_dir: Path, student: str, notebook: str = NB) -> str:
    """The feedback HTML's text (tags removed: the code is split into highlighted spans)."""
    page = (course_dir / "feedback" / student / ASSIGNMENT / f"{notebook}.html").read_text()
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def _secret_lines() -> dict[str, list[str]]:
    """Lines only the staff have: the reference's solution code, the suite's code, the gradebook's header."""
    release = (REPO / "assignments" / ASSIGNMENT / f"{NB}.ipynb").read_text()
    solution = []
    for cell in nbformat.read(REPO / "solutions" / ASSIGNMENT / f"{NB}.ipynb", as_version=4).cells:
        inside = False
        for line in cell.source.splitlines():
            inside = (inside or "### BEGIN SOLUTION" in line) and "### END SOLUTION" not in line
            if inside and len(line.strip()) > 20 and "BEGIN SOLUTION" not in line and line.strip() not in release:
                solution.append(line.strip())
    suite = [line.strip() for line in (REPO / "autograder" / "suites" / f"test_{NB}.py").read_text().splitlines()
             if line.strip().startswith(("def ", "return ")) and len(line.strip()) > 20]
    assert len(solution) >= 10 and len(suite) >= 10, (len(solution), len(suite))
    return {"the reference solution": solution, "the hidden suite": suite, "the gradebook": ["SQLite format 3"]}


def _confined() -> str | None:
    level, reason = choose_kernel_isolation()
    return None if level == "bubblewrap" else f"the autograde kernel is not confined here ({level}: {reason})"


def test_the_hostile_cells_ran(course):
    course_dir, _ = course
    assert "HOSTILE-PATCH ran" in _output_text(_autograded(course_dir, "patcher"))
    assert "HOSTILE-READ ran" in _output_text(_autograded(course_dir, "reader"))


def test_the_confined_kernel_finds_nothing_to_read_or_write(course):
    if _confined():
        pytest.skip(_confined())
    course_dir, _ = course
    read = _output_text(_autograded(course_dir, "reader"))
    assert "HOSTILE-READ found 0" in read, read[-3000:]
    assert re.search(r"^reference: \w+Error$", read, re.M), read[-3000:]  # the reference did not load
    assert "HOSTILE-PATCH wrote the gradebook" not in _output_text(_autograded(course_dir, "patcher"))


@pytest.mark.parametrize("student", ["reader", "starter"])
def test_no_secret_reaches_the_autograded_notebook_or_the_feedback(course, student):
    if _confined():
        pytest.skip(_confined())
    course_dir, _ = course
    texts = {"autograded notebook": _output_text(_autograded(course_dir, student)) + "\n".join(
        c.source for c in _autograded(course_dir, student).cells),
        "feedback HTML": _feedback_text(course_dir, student)}
    for where, text in texts.items():
        for secret, lines in _secret_lines().items():
            leaked = [line for line in lines if line in text]
            assert not leaked, f"{student}: {secret} reached the {where}: {leaked[:3]}"


def test_the_feedback_shows_each_functions_score_and_hint(course):
    course_dir, _ = course
    feedback = _feedback_text(course_dir, "two_bugs")
    for f in graded_functions(NB):
        score = EXPECTED["two_bugs"][f]
        assert f"{f}: {score:g}/{function_points(NB, f):g}" in feedback, f
    assert "Hint: normalise each row" in feedback
    assert "graded outside this notebook" in feedback
    # the hidden test cells show what is graded (the call), never the checks' code
    assert 'check("compute_sim_matrix", globals())' in feedback
    assert not [line for line in _secret_lines()["the hidden suite"] if line in feedback]


# The first hint the feedback of two_bugs shows for each of the other notebooks (one of its two bugs).
ALSO_HINTS = {PRETEXT: "the inverse permutation", GENERATIVE: "divides the weighted sum by the sum of the targets",
              MOCO: "the formula is reversed", CPC: "not over the contexts"}


@pytest.mark.parametrize("notebook", ALSO)
def test_the_feedback_of_every_notebook_shows_scores_and_hints_but_no_check_code(course, notebook):
    course_dir, _ = course
    feedback = _feedback_text(course_dir, "two_bugs", notebook)
    for f in graded_functions(notebook):
        score = ALSO_EXPECTED[notebook]["two_bugs"][f]
        assert f"{f}: {score:g}/{function_points(notebook, f):g}" in feedback, f
    assert "Hint: " in feedback and ALSO_HINTS[notebook] in feedback
    handed_in = (course_dir / "submitted" / "two_bugs" / ASSIGNMENT / f"{notebook}.ipynb").read_text()
    suite = [line.strip() for line in (REPO / "autograder" / "suites" / f"test_{notebook}.py").read_text().splitlines()
             if line.strip().startswith(("def ", "return ")) and len(line.strip()) > 20]
    # (a line of the student's own code may equal one of the suite's: two_bugs' cpc_scores is the reference's)
    shown = [line for line in suite if line in feedback and json.dumps(line)[1:-1] not in handed_in]
    assert len(suite) >= 10 and not shown, shown


def test_the_course_command_refuses_a_folder_in_use(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    proc = subprocess.run([sys.executable, "-m", "autograder", "nbgrader-course", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "not empty" in proc.stderr and "--force" in proc.stderr
    assert not (tmp_path / "nbgrader_config.py").exists()


def test_the_hook_never_scores_under_autograde(monkeypatch):
    """A course that lost the kit's configuration gives 0 for a test cell, never full marks."""
    from autograder.frontends.nbgrader_hook import NotGradedHere, check

    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    with pytest.raises(NotGradedHere, match="scores 0"):
        check("sim", {})
