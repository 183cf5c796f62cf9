"""Build the Gradescope autograder zip: setup.sh and run_autograder at its root,
the hidden suites, the grader, course_utils and the reference notebooks."""
from __future__ import annotations

import zipfile
from pathlib import Path

from ..grading.grade import ENV_NOTEBOOKS, expected_notebooks
from ..grading.reference import REPO

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root, on its Ubuntu 22.04 image (Python 3.10), to build the grader.
set -euo pipefail
apt-get update -y
apt-get install -y --no-install-recommends python3 python3-pip python3-venv
python3 -m pip install --upgrade pip
# CPU wheels: a tenth of the size of the default CUDA build, and the containers have no GPU.
python3 -m pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu
# What course_utils imports besides torch (the reference and the students' notebooks import it); bounds as in requirements.txt.
python3 -m pip install "numpy>=1.24" "matplotlib>=3.7" "tqdm>=4.65"
python3 -m pip install -e /autograder/source
# Student code runs as this unprivileged user, inside bubblewrap where the container allows it.
apt-get install -y --no-install-recommends bubblewrap util-linux || true
id -u ssl-student >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin ssl-student
# The grader, the hidden suites and the reference: readable by root only, in case bubblewrap cannot run.
chmod -R go-rwx /autograder/source
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for each submission; AUTOGRADER_ROOT lets it run outside a container.
set -u
ROOT="${AUTOGRADER_ROOT:-/autograder}"
cd "$ROOT/source" || exit 1
{notebooks}exec python3 -m autograder gradescope-run --root "$ROOT"
"""

INCLUDE = ("autograder", "course_utils", "solutions", "pyproject.toml", "README.md")


def _files():
    for name in INCLUDE:
        path = REPO / name
        if path.is_file():
            yield path
            continue
        for f in sorted(path.rglob("*")):
            if f.is_file() and "__pycache__" not in f.parts and ".ipynb_checkpoints" not in f.parts \
                    and f.suffix != ".pyc":
                yield f


def build_zip(out: Path, notebooks: str | None = None) -> Path:
    """Write the autograder zip to ``out``; returns its path. ``notebooks`` (comma-separated): those the
    assignment expects, each missing one scoring 0 (default: the graded notebooks the student uploads)."""
    chosen = ",".join(expected_notebooks(notebooks, ())) if notebooks else ""
    run = RUN_AUTOGRADER.replace("{notebooks}", f"export {ENV_NOTEBOOKS}={chosen}\n" if chosen else "")
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in (("setup.sh", SETUP_SH), ("run_autograder", run)):
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o755 << 16  # executable, as Gradescope requires
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, text)
        for f in _files():
            z.write(f, f.relative_to(REPO).as_posix())
    return out
