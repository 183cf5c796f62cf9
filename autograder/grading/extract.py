"""Pull the graded definitions out of student notebooks without running them.

A notebook's top level mixes what the grader needs (imports, ``def``,
``class``, constants) with what it must not run (training loops, plotting,
``input()``, ``raise SystemExit``). This module keeps the first kind, as
source text, in notebook order:

- :func:`read_notebook`: the code-cell sources of one ``.ipynb`` file
  (nbformat 4.x); all metadata is ignored, so nbgrader ids that went missing
  or cells that were copied or split (e.g. in Colab) do not matter.
- :func:`extract_definitions`: from cell sources to an :class:`Extraction`.
- :func:`extract_from_paths`: the same over several notebooks, in order.

Nothing here imports or executes student code; it only parses it with
:mod:`ast`.
"""
from __future__ import annotations

import ast
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

DEFAULT_MAX_BYTES = 200 * 1024 * 1024
"""Largest notebook file :func:`read_notebook` reads, in bytes (checked before reading). Outputs (plots,
images) make a notebook large; they are read as JSON but never parsed as code."""
MAX_CODE_BYTES = 5 * 1024 * 1024
"""Most source text, in bytes, that the code cells of one notebook may hold: what is parsed with ``ast``."""
SHRINK_CODE = "keep data out of code cells (load it from a file instead), save, and submit again"
CLEAR_OUTPUTS = ("this is usually its outputs (plots, printed tensors): clear them (Edit > Clear All Outputs, "
                 "or Kernel > Restart & Clear Output), save, and submit again")
"""How a student makes an oversized notebook small enough."""


class NotebookError(Exception):
    """A file cannot be read as an nbformat 4 notebook.

    ``reason`` says why in the student's terms, without the file's path (a
    path of the grading machine is nobody's business but the staff's);
    ``str()`` is ``"<path>: <reason>"``.
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass
class Extraction:
    """What :func:`extract_definitions` kept.

    Attributes:
        source: a Python program made of the kept top-level statements, in
            notebook order, each cell's statements under a ``# --- <cell> ---``
            comment; ``from __future__`` imports are moved to the top.
        defined: names bound by kept ``def``/``class`` statements and constant
            assignments (imports are kept but not listed).
        missing: the requested ``names`` that nothing kept defines, in the
            order they were requested.
        warnings: one human-readable line per skipped cell.
    """

    source: str
    defined: set[str] = field(default_factory=set)
    missing: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- reading


def read_notebook(path: str | os.PathLike, max_bytes: int | None = None) -> list[str]:
    """The sources of the code cells of the notebook at ``path``, in order.

    Accepts any nbformat 4.x JSON; a cell's ``source`` may be a string or a
    list of strings. Raises :class:`NotebookError` when the file is missing or
    not a regular file, is larger than ``max_bytes`` (default
    `DEFAULT_MAX_BYTES`; checked before reading), has more than
    `MAX_CODE_BYTES` of code, is not UTF-8 JSON (with line and column), is not a notebook (no ``cells``
    list, malformed cells) or has an nbformat major version other than 4.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise NotebookError(path, "no such file") from None
    except OSError as e:
        raise NotebookError(path, f"cannot read: {e.strerror}") from None
    if not path.is_file():
        raise NotebookError(path, "not a regular file")
    max_bytes = DEFAULT_MAX_BYTES if max_bytes is None else max_bytes
    if size > max_bytes:
        raise NotebookError(path, f"{size} bytes is larger than the limit of {max_bytes} bytes for a "
                                  f"notebook; {CLEAR_OUTPUTS}")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise NotebookError(path, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise NotebookError(path, f"cannot read: {e.strerror}") from None
    try:
        nb = json.loads(text)
    except json.JSONDecodeError as e:
        raise NotebookError(path, f"invalid JSON at line {e.lineno}, column {e.colno}: "
                                  f"{e.msg}") from None
    except (ValueError, RecursionError) as e:
        raise NotebookError(path, f"invalid JSON: {e}") from None
    sources = _code_sources(nb, path)
    code = sum(len(s.encode("utf-8")) for s in sources)
    if code > MAX_CODE_BYTES:
        raise NotebookError(path, f"its code cells hold {code / 2**20:.1f} MB of source, over the limit of "
                                  f"{MAX_CODE_BYTES // 2**20} MB; {SHRINK_CODE}")
    return sources


def _code_sources(nb: object, path: Path) -> list[str]:
    if not isinstance(nb, dict):
        raise NotebookError(path, f"not a Jupyter notebook (the JSON is a "
                                  f"{type(nb).__name__}, not an object)")
    version = nb.get("nbformat")
    if type(version) is int and version != 4:
        raise NotebookError(path, f"nbformat {version} notebook; only nbformat 4 is "
                                  "supported (open and save it in a current Jupyter)")
    if not isinstance(nb.get("cells"), list):
        raise NotebookError(path, "not a Jupyter notebook (no 'cells' list)")
    if type(version) is not int:
        raise NotebookError(path, f"not a Jupyter notebook (nbformat is {version!r}, "
                                  "expected 4)")
    sources = []
    for index, cell in enumerate(nb["cells"], start=1):
        if not isinstance(cell, dict):
            raise NotebookError(path, f"cell {index} is not a JSON object")
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        if isinstance(source, list) and all(isinstance(s, str) for s in source):
            source = "".join(source)
        if not isinstance(source, str):
            raise NotebookError(path, f"cell {index} has a source that is neither a "
                                      "string nor a list of strings")
        sources.append(source)
    return sources


# --------------------------------------------------------------------------- extracting


def extract_definitions(sources: Sequence[str], names: Iterable[str] | None = None
                        ) -> Extraction:
    """Keep the definitions from code-cell ``sources`` (in notebook order).

    Per cell: IPython syntax is removed (a ``%%`` cell magic drops the cell;
    ``%``/``!`` line magics, ``x = !cmd`` and ``obj?`` lines are blanked out),
    then the cell is parsed; a cell that does not parse is skipped with a
    warning naming it (``code cell <i>``, counting code cells from 1) and the line.
    Of each cell's top-level statements only these are kept:

    - ``import`` and ``from ... import``;
    - ``def``/``async def``/``class`` (with their decorators);
    - ``x = ...``/``x: T = ...`` assignments to plain names (or tuples of
      names) whose value is a constant expression: literals; tuples, lists,
      sets and dicts of constant expressions; unary and binary operators on
      them; names bound by earlier kept statements; attribute chains on those
      (``torch.float32``). Calls are never constant, so ``x = torch.randn(3)``
      and ``model = train()`` are dropped.

    Everything else (expressions, loops, ``if``/``with``/``try`` blocks,
    assignments to attributes or items) is dropped. Repeated definitions of a
    name are all kept, so the last one wins as in a top-to-bottom run.
    ``names`` is used only to compute :attr:`Extraction.missing`.
    """
    return _extract([(f"code cell {i}", s) for i, s in enumerate(sources, start=1)], names)


def extract_from_paths(paths: Iterable[str | os.PathLike], names: Iterable[str] | None = None,
                       max_bytes: int | None = None) -> Extraction:
    """:func:`extract_definitions` over the code cells of several notebooks, in order.

    Warnings name the cell as ``<file name> code cell <i>``. Raises
    :class:`NotebookError` as :func:`read_notebook` does.
    """
    cells = []
    for path in paths:
        label = Path(path).name
        cells += [(f"{label} code cell {i}", s)
                  for i, s in enumerate(read_notebook(path, max_bytes), start=1)]
    return _extract(cells, names)


def _extract(cells: list[tuple[str, str]], names: Iterable[str] | None) -> Extraction:
    futures: list[str] = []
    blocks: list[str] = []
    defined: set[str] = set()
    known: set[str] = set()  # every name a kept statement binds, imports included
    warnings: list[str] = []
    for label, raw in cells:
        raw = raw.replace("\r\n", "\n").replace("\r", "\n")
        cell_magic = _CELL_MAGIC.match(raw)
        if cell_magic:
            warnings.append(f"{label} starts with the cell magic {cell_magic.group(1)} "
                            "and was skipped")
            continue
        try:
            source, tree = parse_cell(raw)
        except SyntaxError as e:
            warnings.append(f"{label} has a syntax error at line {e.lineno} and was "
                            f"skipped: {e.msg}")
            continue
        except (ValueError, RecursionError, MemoryError) as e:
            warnings.append(f"{label} cannot be parsed and was skipped: {e}")
            continue
        lines = source.encode("utf-8").splitlines(keepends=True)
        kept = []
        for node in tree.body:
            bound = _kept_names(node, known)
            if bound is None:
                continue
            text = _segment(lines, node)
            if isinstance(node, ast.ImportFrom) and node.module == "__future__":
                futures.append(text)
            else:
                kept.append(text)
            known |= bound
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                defined |= bound
        if kept:
            blocks.append(f"# --- {label} ---\n" + "\n".join(kept) + "\n")
    source = "".join(f"{line}\n" for line in dict.fromkeys(futures)) + "\n".join(blocks)
    missing = [n for n in dict.fromkeys(names or ()) if n not in defined]
    return Extraction(source=source, defined=defined, missing=missing, warnings=warnings)


# IPython syntax, recognised only where a statement starts.
_LINE_MAGIC = re.compile(r"[ \t]*(?:[%!]|[A-Za-z_][\w.]*[ \t]*=[ \t]*[%!])")
_HELP = re.compile(r"[ \t]*(?:\?{1,2}[A-Za-z_][\w.]*|[A-Za-z_][\w.]*\?{1,2})[ \t]*$")
_CELL_MAGIC = re.compile(r"\s*(%%\w*)")


def parse_cell(raw: str) -> tuple[str, ast.Module]:
    """``(python_source, tree)`` of a cell with IPython-only lines removed.

    Line magics, shell escapes and help lines become ``pass`` (indented like
    the line, which keeps a block that holds only a magic valid) or, if that
    does not parse (an indented magic at the top level), empty lines. Raises
    the first variant's ``SyntaxError`` if neither parses.
    """
    with_pass = _strip_ipython(raw, "pass")
    try:
        return with_pass, ast.parse(with_pass)
    except SyntaxError as e:
        error = e
    blank = _strip_ipython(raw, "")
    if blank != with_pass:
        try:
            return blank, ast.parse(blank)
        except SyntaxError:
            pass
    raise error


def _strip_ipython(source: str, filler: str) -> str:
    """``source`` with each IPython-only line replaced by ``filler`` (indented like it).

    Line magics (``%name``), shell escapes (``!cmd``, ``x = !cmd``,
    ``x = %magic``) and help lines (``obj?``) are recognised only at the start
    of a logical line, so ``%`` or ``!=`` continuing a bracketed expression or
    inside a string stays. Backslash-continued lines of a magic become empty.
    """
    out = []
    scanner = _LineScanner()
    in_magic = False  # the previous line is a magic ending with a backslash
    for line in source.split("\n"):
        if in_magic:
            out.append("")
        elif scanner.at_statement_start and (_LINE_MAGIC.match(line) or _HELP.match(line)):
            out.append(line[:len(line) - len(line.lstrip(" \t"))] + filler if filler else "")
        else:
            out.append(line)
            scanner.feed(line)
            continue
        in_magic = line.endswith("\\")
    return "\n".join(out)


class _LineScanner:
    """Tracks strings, comments, brackets and backslashes across physical lines.

    Only has to be right for code that is Python apart from IPython lines;
    :attr:`at_statement_start` says whether the next line starts a logical line.
    """

    def __init__(self) -> None:
        self.depth = 0  # open brackets
        self.quote = ""  # delimiter of the open string: ', ", ''' or """
        self.backslash = False  # the last line ended with a continuation

    @property
    def at_statement_start(self) -> bool:
        return self.depth == 0 and not self.quote and not self.backslash

    def feed(self, line: str) -> None:
        i, comment = 0, False
        while i < len(line):
            ch = line[i]
            if self.quote:
                if ch == "\\":
                    i += 1
                elif line.startswith(self.quote, i):
                    i += len(self.quote) - 1
                    self.quote = ""
            elif ch == "#":
                comment = True
                break
            elif ch in "'\"":
                self.quote = line[i:i + 3] if line[i:i + 3] in ("'''", '"""') else ch
                i += len(self.quote) - 1
            elif ch in "([{":
                self.depth += 1
            elif ch in ")]}":
                self.depth = max(0, self.depth - 1)
            i += 1
        self.backslash = not comment and line.endswith("\\")
        if self.quote in ("'", '"') and not self.backslash:
            self.quote = ""  # an unterminated one-line string: a syntax error anyway


_CONSTANT_NODES = (ast.Constant, ast.Tuple, ast.List, ast.Set, ast.Dict, ast.UnaryOp,
                   ast.BinOp, ast.Name, ast.Attribute, ast.operator, ast.unaryop,
                   ast.expr_context)


def _is_constant(expr: ast.AST, known: set[str]) -> bool:
    """True if evaluating ``expr`` can only read values (see :func:`extract_definitions`)."""
    for node in ast.walk(expr):
        if not isinstance(node, _CONSTANT_NODES):
            return False
        if isinstance(node, ast.Dict) and None in node.keys:  # {**other}
            return False
        if isinstance(node, ast.Name) and node.id not in known:
            return False
    return True


def _target_names(target: ast.AST) -> set[str] | None:
    """Names bound by an assignment target made only of names, else ``None``."""
    if isinstance(target, ast.Name):
        return {target.id}
    if isinstance(target, (ast.Tuple, ast.List)):
        names: set[str] = set()
        for element in target.elts:
            inner = _target_names(element)
            if inner is None:
                return None
            names |= inner
        return names
    return None


def _kept_names(node: ast.stmt, known: set[str]) -> set[str] | None:
    """The names ``node`` binds if it is kept, else ``None``."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, ast.Import):
        return {(a.asname or a.name).split(".")[0] for a in node.names}
    if isinstance(node, ast.ImportFrom):
        return {a.asname or a.name for a in node.names if a.name != "*"}
    if isinstance(node, ast.Assign) and _is_constant(node.value, known):
        names: set[str] = set()
        for target in node.targets:
            bound = _target_names(target)
            if bound is None:
                return None
            names |= bound
        return names
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) \
            and node.value is not None and _is_constant(node.value, known) \
            and not any(isinstance(n, _EFFECT_NODES) for n in ast.walk(node.annotation)):
        return {node.target.id}
    return None


# Expression nodes that can run code or bind names: never allowed in annotations.
_EFFECT_NODES = (ast.Call, ast.NamedExpr, ast.Await, ast.Yield, ast.YieldFrom, ast.Lambda,
                 ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def _segment(lines: list[bytes], node: ast.stmt) -> str:
    """The source text of ``node`` (decorators included) from the UTF-8 ``lines``."""
    start_line, start_col = node.lineno, node.col_offset
    decorators = getattr(node, "decorator_list", None)
    if decorators:
        start_line, start_col = min(d.lineno for d in decorators), 0
    end_line, end_col = node.end_lineno, node.end_col_offset
    if start_line == end_line:
        text = lines[start_line - 1][start_col:end_col]
    else:
        text = (lines[start_line - 1][start_col:]
                + b"".join(lines[start_line:end_line - 1])
                + lines[end_line - 1][:end_col])
    return text.decode("utf-8")
