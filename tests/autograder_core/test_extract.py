"""Tests of autograder.grading.extract on small hostile notebooks built here."""
import json

import pytest

from autograder.grading.extract import (DEFAULT_MAX_BYTES, Extraction, NotebookError,
                                extract_definitions, extract_from_paths, read_notebook)


def write_notebook(path, cells, **top):
    """Write an nbformat-4 notebook; ``cells`` are sources (code) or full cell dicts."""
    nb = {"nbformat": 4, "nbformat_minor": 5, "cells": [
        c if isinstance(c, dict) else {"cell_type": "code", "source": c} for c in cells]}
    nb.update(top)
    path.write_text(json.dumps(nb), encoding="utf-8")
    return path


def run(extraction: Extraction) -> dict:
    """Execute an extraction's source (safe: these tests wrote it) and return its namespace."""
    namespace: dict = {}
    exec(compile(extraction.source, "<extracted>", "exec"), namespace)
    return namespace


# --------------------------------------------------------------------------- read_notebook


def test_reads_code_cells_in_order_whatever_the_metadata(tmp_path):
    path = write_notebook(tmp_path / "a.ipynb", [
        {"cell_type": "markdown", "source": "# Title"},
        {"cell_type": "code", "source": ["def f(x):\n", "    return x\n"]},  # list form
        {"cell_type": "code", "source": "y = 1", "metadata": {"nbgrader": {"grade_id": "x"}}},
        {"cell_type": "raw", "source": "raw"},
        {"source": "z = 2", "cell_type": "code", "outputs": [], "execution_count": 3},
        {"cell_type": "code"},  # no source at all
    ])  # no notebook metadata, no cell ids
    assert read_notebook(path) == ["def f(x):\n    return x\n", "y = 1", "z = 2", ""]


def test_missing_file(tmp_path):
    with pytest.raises(NotebookError, match="no such file"):
        read_notebook(tmp_path / "nope.ipynb")


def test_directory_is_not_a_notebook(tmp_path):
    with pytest.raises(NotebookError, match="not a regular file"):
        read_notebook(tmp_path)


def test_file_over_the_default_limit_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge.ipynb"
    with open(path, "wb") as f:  # sparse: instant, and not valid JSON either
        f.truncate(DEFAULT_MAX_BYTES + 1)
    with pytest.raises(NotebookError, match="larger than the limit"):
        read_notebook(path)


def test_custom_limit(tmp_path):
    path = write_notebook(tmp_path / "a.ipynb", ["x = 1"])
    with pytest.raises(NotebookError, match="limit of 10 bytes"):
        read_notebook(path, max_bytes=10)


def test_invalid_json_names_line_and_column(tmp_path):
    path = tmp_path / "bad.ipynb"
    path.write_text('{\n "cells": [\n   {"source": }\n ]\n}', encoding="utf-8")
    with pytest.raises(NotebookError, match=r"invalid JSON at line 3, column 15"):
        read_notebook(path)


def test_not_utf8(tmp_path):
    path = tmp_path / "bad.ipynb"
    path.write_bytes(b'{"cells": ["\xff"]}')
    with pytest.raises(NotebookError, match="not UTF-8"):
        read_notebook(path)


@pytest.mark.parametrize("content, message", [
    ([1, 2], "JSON is a list"),
    ({"metadata": {}}, "no 'cells' list"),
    ({"nbformat": 4, "cells": {}}, "no 'cells' list"),
    ({"cells": []}, "nbformat is None"),
    ({"nbformat": 3, "nbformat_minor": 0, "worksheets": [{"cells": []}]}, "nbformat 3"),
    ({"nbformat": 5, "cells": []}, "nbformat 5"),
    ({"nbformat": 4, "cells": ["x"]}, "cell 1 is not a JSON object"),
    ({"nbformat": 4, "cells": [{"cell_type": "code", "source": 3}]}, "cell 1 has a source"),
    ({"nbformat": 4, "cells": [{"cell_type": "code", "source": ["a", 1]}]}, "cell 1 has"),
])
def test_not_a_notebook(tmp_path, content, message):
    path = tmp_path / "x.ipynb"
    path.write_text(json.dumps(content), encoding="utf-8")
    with pytest.raises(NotebookError, match=message):
        read_notebook(path)


# --------------------------------------------------------------------------- extract


def test_training_code_at_top_level_is_not_kept():
    cells = [
        "import torch\nimport torch.nn.functional as F\nfrom math import pi as PI",
        "def compute(x):\n    return x * 2\n",
        "model = train(compute)\nx = torch.randn(3)\nprint(compute(x))\n",
        "while True:\n    pass\n",
        "raise SystemExit('stop grading')",
        "for epoch in range(10**9):\n    compute(epoch)\n",
        "if __name__ == '__main__':\n    raise SystemExit\n",
        "with open('/etc/passwd') as f:\n    data = f.read()\n",
        "try:\n    import tqdm\nexcept ImportError:\n    pass\n",
        "torch.backends.cudnn.benchmark = True\nCONFIG = {}\nCONFIG['lr'] = 0.1\n",
        "input('press enter')\n",
    ]
    e = extract_definitions(cells)
    ns = run(e)  # would hang or exit if any of it were kept
    assert ns["compute"](3) == 6 and ns["PI"] > 3 and ns["CONFIG"] == {}
    for text in ("train(", "randn", "while", "SystemExit", "for epoch", "open(", "tqdm",
                 "benchmark", "['lr']", "input("):
        assert text not in e.source
    assert e.defined == {"compute", "CONFIG"}
    assert e.warnings == []


def test_constant_expressions_are_kept_and_calls_are_not():
    cells = ["import torch\n"
             "EPS = 1e-8\n"
             "NEG = -EPS * 2 + 1\n"
             "SIZES = (1, 2) + (3,)\n"
             "NAMES = ['a', 'b']\n"
             "TABLE = {'x': {1, 2}, 'y': None, 'z': b'raw'}\n"
             "DTYPE = torch.float32\n"
             "A, (B, C) = 1, (2, 3)\n"
             "X = Y = 4\n"
             "TAU: float = 0.5\n"
             "ALIAS = EPS\n"
             "UNKNOWN = not_defined_before\n"
             "LATER = defined_later\n"
             "CALL = float('inf')\n"
             "COMP = [i for i in range(3)]\n"
             "UNPACK = {**TABLE}\n"
             "ANN: make_type() = 1\n"
             "WALRUS = (w := 3)\n"
             "first, *rest = NAMES\n"
             "defined_later = 1\n"]
    e = extract_definitions(cells)
    ns = run(e)
    assert ns["NEG"] == pytest.approx(1 - 2e-8) and ns["SIZES"] == (1, 2, 3)
    assert ns["DTYPE"] is __import__("torch").float32 and (ns["B"], ns["C"], ns["Y"]) == (2, 3, 4)
    assert ns["TAU"] == 0.5 and ns["ALIAS"] == 1e-8 and ns["TABLE"]["z"] == b"raw"
    assert e.defined == {"EPS", "NEG", "SIZES", "NAMES", "TABLE", "DTYPE", "A", "B", "C",
                         "X", "Y", "TAU", "ALIAS", "defined_later"}


def test_functions_classes_and_decorators_are_kept_whole():
    cells = ['import functools\n'
             '@functools.lru_cache(maxsize=None)\n'
             'def fib(n):\n'
             '    """Docstring with %magic-looking text\n'
             '!and a bang line\n'
             '    """\n'
             '    return n if n < 2 else fib(n - 1) + fib(n - 2)\n'
             '\n'
             'async def co():\n'
             '    return 1\n'
             'class Model:\n'
             '    scale = 2\n'
             '    def f(self, x):\n'
             '        return x * self.scale\n'
             'x = 1; y = fib(3); z = 2  # mixed line\n']
    e = extract_definitions(cells, names=["fib", "Model", "co", "gone"])
    ns = run(e)
    assert ns["fib"](10) == 55 and ns["Model"]().f(3) == 6
    assert "%magic-looking text\n!and a bang line" in ns["fib"].__wrapped__.__doc__
    assert (ns["x"], ns["z"]) == (1, 2) and "y" not in ns
    assert e.missing == ["gone"]


def test_duplicate_definitions_last_one_wins_in_notebook_order():
    cells = ["def f():\n    return 'first'\n",
             "N = 1",
             "def f():\n    return 'second'\n",
             "N = 2",
             "def f(:\n    return 'broken third'\n"]  # does not parse: the second stays
    e = extract_definitions(cells)
    ns = run(e)
    assert ns["f"]() == "second" and ns["N"] == 2
    assert e.source.index("'first'") < e.source.index("'second'")


def test_split_cells_still_give_all_definitions():
    # One function's helpers and constants spread over cells, as after editing in Colab.
    cells = ["import torch", "TAU = 0.5", "def helper(x):\n    return x / TAU\n",
             "def graded(x):\n    return helper(x) + 1\n"]
    e = extract_definitions(cells, names=["graded"])
    assert run(e)["graded"](1.0) == 3.0 and e.missing == []


def test_magics_and_shell_escapes_are_removed():
    cells = ["%matplotlib inline\n"
             "!pip install nothing\n"
             "  %load_ext autoreload\n"
             "files = !ls\n"
             "t = %timeit -o f()\n"
             "torch.randn?\n"
             "??help_me\n"
             "%time long_magic \\\n"
             "    continued\n"
             "import math\n"
             "def f(x):\n"
             "    %time y = 1\n"
             "    !echo inside\n"
             "    return (x\n"
             "            % 3)\n"
             "get_ipython().run_line_magic('pylab', '')\n"
             "R = get_ipython()\n",
             "%%time\ndef only_in_cell_magic():\n    pass\n",
             "\n%%capture out\nx = 1\n"]
    e = extract_definitions(cells, names=["f", "only_in_cell_magic"])
    ns = run(e)
    assert ns["f"](10) == 1
    assert e.missing == ["only_in_cell_magic"]
    assert "get_ipython" not in e.source and "pip" not in e.source
    assert e.warnings == ["code cell 2 starts with the cell magic %%time and was skipped",
                          "code cell 3 starts with the cell magic %%capture and was skipped"]


def test_a_cell_with_a_syntax_error_is_skipped_with_a_warning_and_others_count():
    cells = ["def good():\n    return 1\n",
             "x = 1\n\ndef bad(:\n    pass\n",
             "def also_good():\n    return 2\n",
             "def nul():\n    return '\0'\n"]
    e = extract_definitions(cells, names=["good", "bad", "also_good"])
    assert e.missing == ["bad"]
    assert "x" not in e.defined
    assert e.warnings[0].startswith("code cell 2 has a syntax error at line 3 and was skipped: ")
    assert e.warnings[1].startswith("code cell 4 ")
    assert run(e)["also_good"]() == 2


def test_future_imports_are_moved_to_the_top():
    cells = ["import torch", "from __future__ import annotations\n"
             "def f(x: NotDefinedAnywhere) -> int:\n    return 1\n",
             "from __future__ import annotations"]
    e = extract_definitions(cells)
    assert e.source.startswith("from __future__ import annotations\n# ---")
    assert e.source.count("__future__") == 1
    assert run(e)["f"](0) == 1


def test_windows_line_endings_and_unicode_columns():
    cells = ['s = "é€"; bad = f()\r\ndef g():\r\n    return s\r\n']
    e = extract_definitions(cells)
    assert run(e)["g"]() == "é€" and "bad" not in e.defined


def test_extract_from_paths_concatenates_notebooks_in_order(tmp_path):
    a = write_notebook(tmp_path / "part1.ipynb", ["def f():\n    return 1\n", "def (:"])
    b = write_notebook(tmp_path / "part2.ipynb", ["def f():\n    return 2\n",
                                                  "def g():\n    return f()\n"])
    e = extract_from_paths([a, b], names=["f", "g", "h"])
    assert run(e)["g"]() == 2
    assert e.missing == ["h"]
    assert e.warnings == [e.warnings[0]] and e.warnings[0].startswith(
        "part1.ipynb code cell 2 has a syntax error at line 1")


def test_extract_from_paths_reports_bad_notebooks(tmp_path):
    with pytest.raises(NotebookError, match="missing.ipynb: no such file"):
        extract_from_paths([tmp_path / "missing.ipynb"])
