"""`make demo`'s grading path on a machine where bubblewrap is installed but cannot start.

A stand-in ``bwrap`` that fails as a container's would ("No permissions to
create new namespace") comes first on ``PATH``. The demo must still grade
the three bundled examples, with the strongest level that works, say which
and why in one line, and print all three tables; grading a student's
submission the default way must still refuse a plain process as root, saying
what to install or which flag to pass.
"""
import json
import os
import subprocess
import sys

import pytest

from autograder.frontends.examples import EXAMPLES, make_submission
from autograder.grading.points import POINTS

NB = "03_simclr"
TOTAL = sum(sum(checks.values()) for table in POINTS.values() for checks in table.values())  # every notebook
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
    out = tmp_path / "examples"
    proc = subprocess.run([sys.executable, "-m", "autograder", "demo", str(out)], env=broken_bwrap_env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    said = [line for line in lines if line.startswith("grading the kit's example submissions (trusted code)")]
    assert len(said) == 1, proc.stdout
    assert "isolation level bubblewrap" not in said[0]
    assert "cannot create namespaces here (bwrap: No permissions to create new namespace" in said[0], said[0]
    expected = {"reference": TOTAL, "starter": 0}
    for name in EXAMPLES:
        assert any(line.startswith(f"example submission '{name}'") for line in lines), name
        data = json.loads((out / name / "results.json").read_text())
        if name in expected:
            assert data["score"] == expected[name], (name, data["score"])
        else:
            assert 0 < data["score"] < TOTAL, (name, data["score"])
        assert "bubblewrap sandbox" not in data["extra_data"]["isolation"]
    assert sum(line.startswith("total") for line in lines) == len(EXAMPLES)  # three score tables


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
