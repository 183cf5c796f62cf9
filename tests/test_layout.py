"""The autograder's layout: which subpackage may import which (see autograder/__init__.py).

    isolation  <-  grading  <-  suites
                      ^
                  frontends

Every ``import`` and ``from ... import`` of every module is read with ``ast``
(also those inside functions), relative imports resolved, and checked
against the rules below; `test_the_rules_catch_a_violation` shows that a
wrong import is caught.
"""
import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAYERS = ("isolation", "grading", "suites", "frontends")
MAY_IMPORT = {
    "isolation": {"isolation"},
    "grading": {"isolation", "grading"},
    "suites": {"isolation", "grading", "suites"},
    "frontends": {"isolation", "grading", "frontends"},
    "top": {"frontends"},  # autograder/__init__, __main__ and the nbgrader_hook alias
}
SUBMIT_DOOR = "course_utils/submit.py"
"""The one module of course_utils that calls the grader (``autograder.frontends.submit``), from inside functions."""
CHILD_MODULES = {"channel", "child", "child_server", "child_values", "child_substitute"}
"""The child's files import each other by their bare names (they run as a script, flat in a folder)."""
ISOLATION_THIRD_PARTY = {"torch", "PIL"}
"""What the isolation layer may import besides the standard library and itself (PIL: the child builds images)."""


def _layer(path: Path, root: Path) -> str:
    parts = path.relative_to(root).parts
    return parts[0] if len(parts) > 1 and parts[0] in LAYERS else "top"


def _imports(path: Path, root: Path) -> list[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in ``path`` (a module under ``root/autograder``)."""
    package = list(path.relative_to(root).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
                # "from . import channel" names a module
                found += [(node.lineno, f"{name}.{a.name}" if not node.module else name) for a in node.names]
            else:
                found.append((node.lineno, node.module))
    return found


def violations(root: Path) -> list[str]:
    """Every import under ``root/autograder`` that breaks the layering, and course_utils importing autograder."""
    problems = []
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    for path in sorted((root / "autograder").rglob("*.py")):
        layer = _layer(path, root / "autograder")
        rel = path.relative_to(root)
        for line, name in _imports(path, root):
            head, *rest = name.split(".")
            if head == "autograder":
                target = rest[0] if rest and rest[0] in LAYERS else "top"
                if layer == "isolation" and path.stem in CHILD_MODULES:
                    problems.append(f"{rel}:{line}: the child's files run outside the package; cannot import {name}")
                elif target not in MAY_IMPORT[layer]:
                    problems.append(f"{rel}:{line}: {layer} may not import {name} ({target})")
            elif layer == "isolation":
                if head in CHILD_MODULES:
                    if path.stem not in CHILD_MODULES:
                        problems.append(f"{rel}:{line}: {name} is the child's copy; import autograder.isolation.{name}")
                elif head not in stdlib and head not in ISOLATION_THIRD_PARTY:
                    problems.append(f"{rel}:{line}: isolation may not import {name}")
    for path in sorted((root / "course_utils").rglob("*.py")):
        tree = ast.parse(path.read_text())
        top_level = {n.lineno for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))}
        for line, name in _imports(path, root):
            # submit.py, the students' door to the grader's submit front end, may import it inside its functions
            # (never called when the copy is graded); nothing else of course_utils may, anywhere
            allowed = path.relative_to(root).as_posix() == SUBMIT_DOOR and line not in top_level
            if name.split(".")[0] == "autograder" and not allowed:
                problems.append(f"{path.relative_to(root)}:{line}: course_utils (copied next to student code) "
                                f"may not import {name}")
    return problems


def test_import_directions_hold():
    assert violations(REPO) == []


def test_every_subpackage_says_what_it_may_import():
    for layer in LAYERS:
        doc = ast.get_docstring(ast.parse((REPO / "autograder" / layer / "__init__.py").read_text()))
        assert doc and "May import" in doc and "never" in doc, layer


def test_the_rules_catch_a_violation(tmp_path):
    (tmp_path / "course_utils").mkdir()
    (tmp_path / "course_utils" / "x.py").write_text("from autograder.grading import points\n")
    (tmp_path / "course_utils" / "submit.py").write_text(  # its door may import inside a function, not at the top
        "import autograder.frontends.submit\ndef main():\n    from autograder.frontends.submit import main\n")
    for layer in LAYERS:
        (tmp_path / "autograder" / layer).mkdir(parents=True)
    (tmp_path / "autograder" / "isolation" / "sandbox.py").write_text(
        "def f():\n    from ..grading.points import POINTS\n    import numpy\n")
    (tmp_path / "autograder" / "isolation" / "child_server.py").write_text("from autograder.isolation import launch\n")
    (tmp_path / "autograder" / "grading" / "grade.py").write_text("from autograder.frontends.report import render\n")
    (tmp_path / "autograder" / "suites" / "test_x.py").write_text("from ..frontends import cli\n")
    (tmp_path / "autograder" / "frontends" / "cli.py").write_text("from ..grading import grade\n")
    found = violations(tmp_path)
    assert len(found) == 7, found
    assert any("course_utils/x.py" in p for p in found)
    assert [p for p in found if "course_utils/submit.py" in p] == [
        "course_utils/submit.py:1: course_utils (copied next to student code) may not import autograder.frontends.submit"]
    assert any("sandbox.py:2: isolation may not import autograder.grading.points" in p for p in found)
    assert any("sandbox.py:3: isolation may not import numpy" in p for p in found)
    assert any("child_server.py:1: the child's files run outside the package" in p for p in found)
    assert any("grade.py:1: grading may not import autograder.frontends.report" in p for p in found)
    assert any("test_x.py:1: suites may not import autograder.frontends (frontends)" in p for p in found)
