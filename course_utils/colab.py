"""Colab: the first code cell of every notebook, which fetches and installs the kit there and nowhere else.

On Colab the kit is not installed when a notebook opens, so that cell cannot
import anything from it: its code is the text `CELL`, kept here once and
written into every source notebook by ``python -m course_utils.colab
--write`` (then ``make release``); a kit test checks that every source and
release notebook starts with it, and runs it with Colab faked. Set your
course's copy of the kit in `KIT_URL` (and the branch or tag in `KIT_REF`)
before writing it.

On Colab (``google.colab`` imported) and with ``course_utils`` not
importable yet, the cell clones the kit into `KIT_DIR` (unless it is there),
installs it with pip (editable; Colab already has torch, torchvision,
numpy and matplotlib, so only the kit and kornia are new) and puts it on
``sys.path``, so that the next cell imports it without a restart. Anywhere
else it does nothing and prints nothing.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

KIT_URL = "https://github.com/ssl-kit/ssl-kit.git"
KIT_REF = "main"
KIT_DIR = "/content/ssl-kit"

CELL = f'''# On Colab only: fetch and install the kit (once per session). Elsewhere this cell does nothing.
import importlib.util, os, subprocess, sys

KIT_URL, KIT_REF, KIT_DIR = "{KIT_URL}", "{KIT_REF}", "{KIT_DIR}"
if "google.colab" in sys.modules and importlib.util.find_spec("course_utils") is None:
    if not os.path.isdir(KIT_DIR):
        subprocess.run(["git", "clone", "--quiet", "--depth", "1", "--branch", KIT_REF, KIT_URL, KIT_DIR], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "-e", KIT_DIR, "kornia>=0.7.1"], check=True)
    sys.path.insert(0, KIT_DIR)
    print(f"the kit is installed from {{KIT_URL}} ({{KIT_REF}}) in {{KIT_DIR}}")'''

MARKER = CELL.splitlines()[0]
"""The cell's first line, by which `write` recognises an older version of it."""


def write(folder: Path) -> list[Path]:
    """Make `CELL` the first code cell of every notebook in ``folder`` (replacing an older one); returns those changed."""
    changed = []
    for path in sorted(folder.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        first = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code"), len(nb.cells))
        if first < len(nb.cells) and nb.cells[first].source == CELL:
            continue
        if first < len(nb.cells) and nb.cells[first].source.startswith(MARKER.split(":")[0]):
            nb.cells[first].source = CELL
        else:
            cell = nbformat.v4.new_code_cell(CELL)
            cell.id = "colab-setup"
            nb.cells.insert(first, cell)
        nbformat.write(nb, path)
        changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_utils.colab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="write the cell into solutions/self_supervised/")
    args = parser.parse_args(argv)
    if not args.write:
        print(CELL)
        return 0
    source = Path(__file__).resolve().parents[1] / "solutions" / "self_supervised"
    for path in write(source):
        print(f"wrote the Colab cell into {path.name}")
    print("now run `make release` to carry it into assignments/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
