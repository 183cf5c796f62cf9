"""`make demo`'s grading path on a machine where bubblewrap is installed but cannot start.

A stand-in ``bwrap`` that fails as a container's would ("No permissions to
create new namespace") comes first on ``PATH``. The demo must still grade
every bundled example as a class (here on 03_simclr alone), with the strongest
level that works, say which and why in one line, write the CSV, the results
and the class report, and print the scores and the class summary, each
example losing exactly its own functions' points; grading a student's
submission the default way must still refuse a plain process as root, saying
what to install or which flag to pass.
"""
import csv
import json
import os
import subprocess
import sys

import pytest

from autograder.frontends.examples import EXAMPLES, make_submission
from autograder.grading.points import POINTS

NB = "03_simclr"
FAILING_BWRAP = """#!/bin/sh
echo "bwrap: No permissions to create new namespace, likely because the kernel does not allow non-privileged user namespaces" >&2
exit 1
"""


@pytest.fixture
def broken_bwrap_env(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "bwrap").write_text(FAILING_BWRAP)
    (bindir / "bwrap").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "AUTOGRADER_ISOLATION"}  # the default, as a user has it
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_the_demo_grades_its_examples_when_bubblewrap_cannot_start(broken_bwrap_env, tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "autograder", "demo", str(out), "--notebooks", NB],
                          env=broken_bwrap_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    said = [line for line in lines if line.startswith(f"grading the kit's {len(EXAMPLES)} example submissions")]
    assert len(said) == 1, proc.stdout
    assert "isolation level bubblewrap" not in said[0]
    assert "cannot create namespaces here (bwrap: No permissions to create new namespace" in said[0], said[0]
    with open(out / "grades.csv", newline="") as f:
        rows = {r["submission"]: r for r in csv.DictReader(f)}
    assert list(rows) == sorted(EXAMPLES)
    total = sum(sum(checks.values()) for checks in POINTS[NB].values())
    scores = {name: float(r["score"]) for name, r in rows.items()}
    assert scores["reference"] == total and scores["starter"] == 0, scores
    assert all(0 < scores[name] < total for name in EXAMPLES if name not in ("reference", "starter")), scores
    # each example loses exactly its own functions' points, the hostile one too
    for name in ("two_bugs", "typical", "hostile"):
        lost = {f for f in POINTS[NB] if float(rows[name][f"{NB}.{f}"]) < sum(POINTS[NB][f].values())}
        assert lost == set(EXAMPLES[name][NB]), (name, lost)
    assert float(rows["loops"][f"{NB}.compute_sim_matrix"]) == sum(POINTS[NB]["compute_sim_matrix"].values()) \
        - POINTS[NB]["compute_sim_matrix"]["vectorized"]
    for name in EXAMPLES:
        data = json.loads((out / "results" / f"{name}.json").read_text())
        assert data["score"] == scores[name]
        assert "bubblewrap sandbox" not in data["extra_data"]["isolation"]
    # the per-submission table, the class summary and its report
    assert any(line.startswith("reference") and line.endswith(f"{total:g}/{total:g}") for line in lines), proc.stdout
    assert f"class summary: {len(EXAMPLES)} graded, 0 could not be graded" in proc.stdout
    assert "most frequent mistakes (submissions):" in proc.stdout
    assert "you have raw dot products" in proc.stdout  # two_bugs' compute_sim_matrix, by its hint
    assert "stopped the Python process (sys.exit, os._exit or a crash)" in proc.stdout  # the hostile sim
    for name in ("report.html", "report.md", "histogram.png", "full_marks.png"):
        assert (out / "report" / name).stat().st_size > 0, name


def test_grading_a_submission_as_root_without_a_sandbox_still_refuses(broken_bwrap_env, tmp_path):
    make_submission(tmp_path / "sub", NB, EXAMPLES["reference"][NB])
    proc = subprocess.run([sys.executable, "-m", "autograder", "grade", str(tmp_path / "sub"), "--quiet"],
                          env=broken_bwrap_env, capture_output=True, text=True, timeout=300)
    data = json.loads(proc.stdout) if proc.returncode == 0 else None
    if os.geteuid() != 0:  # a normal user: a plain child process of that user, and the results say so
        assert proc.returncode == 0, proc.stderr
        assert data["extra_data"]["isolation"].startswith("plain child process")
    elif data is not None:  # root, and the sandbox user can run this Python: that level, never plain
        assert data["extra_data"]["isolation"].startswith("child process as"), data["extra_data"]
    else:
        assert proc.returncode == 2, proc.stderr
        assert "refusing to run student code as root without a sandbox" in proc.stderr
        assert "cannot create namespaces here" in proc.stderr  # why
        assert "--isolation trusted" in proc.stderr  # which flag to pass for trusted code
        assert "Traceback" not in proc.stderr
