"""The Makefile: `make help` lists one command per step of a term, each is a target and is explained in the
guides (README.md, docs/instructors.md), and the instructors' targets run the kit's commands (dry runs; the
commands themselves are tested by the front ends' tests)."""
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _make(*args: str) -> str:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=REPO, capture_output=True, text=True,
                          check=True, env={**os.environ, "VENV": str(Path(sys.executable).parents[1])}).stdout


def test_make_help_lists_every_step_of_a_term_and_each_is_a_target():
    listed = re.findall(r"^  make ([\w-]+)", _make("help"), re.M)
    assert {"demo", "test", "submit", "self-check", "release", "check-release", "gradescope", "nbgrader-course",
            "grade", "regrade", "benchmark"} <= set(listed)
    rules = set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), re.M))
    assert set(listed) <= rules, set(listed) - rules
    readme = (REPO / "README.md").read_text() + (REPO / "docs" / "instructors.md").read_text()
    assert not [t for t in listed if f"make {t}" not in readme], "each make target is explained in the guides"


def test_the_instructors_make_targets_run_the_kits_commands():
    dry = {t: _make("-n", t, "SUBMISSIONS=subs", "SUBMISSION=subs/ada.zip",
                    "NOTEBOOKS=04_moco", "COURSE=term") for t in ("grade", "regrade", "gradescope", "nbgrader-course",
                                                                  "submit", "self-check")}
    assert "-m autograder gradebook subs --csv build/grades.csv --results build/results" in dry["grade"]
    assert "--report build/report --workers 2 --notebooks 04_moco" in dry["grade"]
    assert "-m autograder grade subs/ada.zip --out build/results/ada.json --notebooks 04_moco" in dry["regrade"]
    assert "-m autograder gradescope-zip --out build/autograder.zip --notebooks 04_moco" in dry["gradescope"]
    assert "-m autograder nbgrader-course term" in dry["nbgrader-course"]
    assert "-m course_utils.submit assignments/self_supervised --notebooks 04_moco" in dry["submit"]
    assert "-m course_utils.submit --check assignments/self_supervised" in dry["self-check"]
