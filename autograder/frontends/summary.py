"""A class summary from a graded folder: the score distribution, each function's full marks, the frequent mistakes.

`summarize` takes the gradebook's rows and what each submission's grading
kept (`outcomes_of`: per function its points and its failed checks'
feedback); `render_text` is the table the terminal shows after grading;
`write_report` writes the class report (two PNG charts, Markdown and
self-contained HTML) for the course staff.

The mistakes are read from the feedback the students were given (the
``Hint: ...`` lines of the hidden checks, which are written for them), never
from the checks' code.
"""
from __future__ import annotations

import base64
import html
import re
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from ..grading.points import POINTS, function_points
from ..grading.results import GradingResult

FIELDS = ("submission", "score", "max_score", "seconds", "error")
"""The gradebook's columns that are not a graded function."""

TOP_MISTAKES = 3
BINS = 10
NOT_IMPLEMENTED = "not implemented"
NOT_TIMED = "not timed:"  # grading.runner's feedback of a vectorized check skipped because the values are wrong
_EPS = 1e-9  # scores are sums of quarter points: full marks is a float comparison with room for rounding


@dataclass(frozen=True)
class FunctionOutcome:
    """What the summary keeps of one graded function of one submission."""

    score: float
    max_score: float
    failed: tuple[tuple[str, str], ...] = ()  # (check, feedback) of each failed check


@dataclass
class Bin:
    """One bin of the histogram of total scores: ``low <= total < high`` (the last one includes its high)."""

    low: float
    high: float
    count: int


@dataclass
class Distribution:
    """The total scores of the graded submissions."""

    max_score: float
    mean: float
    median: float
    min: float
    max: float
    totals: list[float]
    bins: list[Bin]


@dataclass
class FunctionStats:
    """One graded function (``notebook.function``) over the class."""

    name: str
    max_score: float
    mean: float
    full_marks: int  # submissions with all its points
    share_full_marks: float  # full_marks / graded (0 when none was graded)
    mistakes: list[tuple[str, int]] = field(default_factory=list)  # the most frequent, with their counts


@dataclass
class ClassSummary:
    """A class's grades at a glance."""

    graded: int
    failed: list[tuple[str, str]]  # (submission, error) of each one that could not be graded
    distribution: Distribution | None  # None when nothing was graded
    functions: list[FunctionStats]


# --------------------------------------------------------------------------- summarizing


def outcomes_of(result: GradingResult) -> dict[str, FunctionOutcome]:
    """``{notebook.function: FunctionOutcome}`` of one graded submission (what a gradebook worker sends back)."""
    return {f"{f.notebook}.{f.function}": FunctionOutcome(
        f.score, f.max_score, tuple((c.check, c.feedback) for c in f.checks if not c.passed))
        for f in result.functions()}


def mistakes_in(check: str, feedback: str) -> set[str]:
    """The mistakes one failed check names: "not implemented", else its hints, else "<check> check failed";
    none for a check that was not run because the function's values are wrong (they count on their own)."""
    if feedback.startswith(NOT_TIMED):
        return set()
    if "not implemented yet" in feedback:
        return {NOT_IMPLEMENTED}
    hints = {line.strip()[len("Hint:"):].strip() for line in feedback.splitlines() if line.strip().startswith("Hint:")}
    return hints or {f"{check} check failed"}


def _function_columns(rows: Sequence[Mapping]) -> list[str]:
    """The graded functions' columns of ``rows``, in order of first appearance."""
    return list(dict.fromkeys(k for r in rows for k in r if k not in FIELDS))


_CHECKS = {check for table in POINTS.values() for checks in table.values() for check in checks}


def _is_hint(mistake: str) -> bool:
    """A hint, not "not implemented" nor what a check did without one ("values: raised ...")."""
    return mistake != NOT_IMPLEMENTED and re.split(r"[: ]", mistake, maxsplit=1)[0] not in _CHECKS


_REASONS = ((re.compile(r"stopped the Python process"), "stopped the Python process (sys.exit, os._exit or a crash)"),
            (re.compile(r"did not finish in time"), "did not finish in time"),
            (re.compile(r" raised ([A-Za-z_][\w.]*)"), "raised {0}"),
            (re.compile(r" is wrong: "), "wrong values (no known mistake matches)"))


def _reason(check: str, feedback: str) -> str:
    """A failed check without a hint, in a few words that several submissions can share."""
    for pattern, words in _REASONS:
        found = pattern.search(feedback)
        if found:
            return f"{check}: " + words.format(*found.groups())
    return f"{check} check failed"


def _mistakes_of(outcome: FunctionOutcome) -> set[str]:
    """One submission's mistakes in one function: its hints (and "not implemented") where the grader gave any,
    else what its failed checks did, in a few words."""
    named = set().union(*(mistakes_in(check, fb) for check, fb in outcome.failed))
    specific = {m for m in named if not m.endswith(" check failed")}
    if specific:
        return specific
    return {_reason(check, fb) for check, fb in outcome.failed if not fb.startswith(NOT_TIMED)}


def _top_mistakes(outcomes: Iterable[FunctionOutcome | None]) -> list[tuple[str, int]]:
    """The most frequent mistakes over submissions (each counted once per submission); of equal counts,
    the hints first (they say what went wrong), then by message."""
    counts: Counter[str] = Counter()
    for outcome in outcomes:
        if outcome is not None:
            counts.update(_mistakes_of(outcome))
    return sorted(counts.items(), key=lambda item: (-item[1], not _is_hint(item[0]), item[0]))[:TOP_MISTAKES]


def _bins(totals: Sequence[float], max_score: float, n: int = BINS) -> list[Bin]:
    """``n`` bins of equal width over ``[0, max_score]`` (one when there are no points), with their counts."""
    n = n if max_score > 0 else 1
    width = max_score / n if max_score > 0 else 1.0
    counts = [0] * n
    for t in totals:
        counts[min(max(int(t / width), 0), n - 1)] += 1
    return [Bin(i * width, (i + 1) * width, c) for i, c in enumerate(counts)]


def _distribution(graded: Sequence[Mapping]) -> Distribution | None:
    if not graded:
        return None
    totals = [float(r["score"]) for r in graded]
    max_score = max(float(r["max_score"]) for r in graded)
    return Distribution(max_score, statistics.mean(totals), statistics.median(totals), min(totals), max(totals),
                        totals, _bins(totals, max_score))


def _function_stats(column: str, graded: Sequence[Mapping],
                    outcomes: Mapping[str, Mapping[str, FunctionOutcome]]) -> FunctionStats:
    points = function_points(*column.split(".", 1))
    scores = [float(r.get(column, 0.0)) for r in graded]
    full = sum(s >= points - _EPS for s in scores)
    mistakes = _top_mistakes(outcomes.get(r["submission"], {}).get(column) for r in graded)
    return FunctionStats(column, points, statistics.mean(scores) if scores else 0.0, full,
                         full / len(scores) if scores else 0.0, mistakes)


def summarize(rows: Sequence[Mapping], outcomes: Mapping[str, Mapping[str, FunctionOutcome]]) -> ClassSummary:
    """The class summary of a gradebook's ``rows`` (`gradebook.grade_folder`'s) and ``outcomes``
    (``{submission: outcomes_of(its result)}``; a submission without one counts no mistakes).

    A row with an ``error`` could not be graded: it is listed apart and counts nowhere else. The
    functions are the rows' columns of the form ``notebook.function``, their points those of `POINTS`.
    """
    graded = [r for r in rows if not r.get("error")]
    failed = [(str(r["submission"]), str(r["error"])) for r in rows if r.get("error")]
    return ClassSummary(len(graded), failed, _distribution(graded),
                        [_function_stats(c, graded, outcomes) for c in _function_columns(graded)])


# --------------------------------------------------------------------------- text


def _histogram_lines(bins: Sequence[Bin], width: int = 30) -> list[str]:
    """One line per bin: its range, a bar of ``#`` scaled to the largest bin, its count."""
    most = max((b.count for b in bins), default=0) or 1
    last = len(bins) - 1
    return [f"  {b.low:6.2f} - {b.high:6.2f}{']' if i == last else ')'}  {'#' * round(width * b.count / most):<{width}}"
            f"  {b.count}" for i, b in enumerate(bins)]


def _distribution_line(d: Distribution) -> str:
    return f"mean {d.mean:.2f}, median {d.median:g}, min {d.min:g}, max {d.max:g} (of {d.max_score:g})"


def render_text(summary: ClassSummary) -> str:
    """The class summary as a text table, for the terminal."""
    lines = [f"class summary: {summary.graded} graded, {len(summary.failed)} could not be graded"]
    if summary.distribution is not None:
        lines += [f"total score: {_distribution_line(summary.distribution)}", "histogram of totals:",
                  *_histogram_lines(summary.distribution.bins)]
    if summary.functions:
        width = max(len(f.name) for f in summary.functions)
        lines += ["", f"{'function':<{width}}  {'max':>5}  {'mean':>5}  {'full marks':>10}", "-" * (width + 26)]
        lines += [f"{f.name:<{width}}  {f.max_score:>5g}  {f.mean:>5.2f}  {f.share_full_marks:>10.0%}"
                  for f in summary.functions]
    mistaken = [f for f in summary.functions if f.mistakes]
    if mistaken:
        lines += ["", "most frequent mistakes (submissions):"]
        for f in mistaken:
            lines += [f"  {f.name}:", *(f"    {n:>3}  {m}" for m, n in f.mistakes)]
    if summary.failed:
        lines += ["", "could not be graded:", *(f"  {name}: {error}" for name, error in summary.failed)]
    return "\n".join(lines)


def render_scores(rows: Sequence[Mapping]) -> str:
    """One line per submission: its score in each notebook, then its total (or why it was not graded)."""
    columns = _function_columns(rows)
    notebooks = list(dict.fromkeys(c.split(".", 1)[0] for c in columns))
    width = max([len(str(r["submission"])) for r in rows] + [10])
    short = {nb: nb.split("_", 1)[0] for nb in notebooks}
    lines = [f"{'submission':<{width}}  " + "  ".join(f"{short[nb]:>6}" for nb in notebooks) + "   total"]
    for r in rows:
        if r.get("error"):
            lines.append(f"{r['submission']:<{width}}  not graded: {r['error']}")
            continue
        per = [sum(float(r[c]) for c in columns if c.startswith(nb + ".")) for nb in notebooks]
        lines.append(f"{r['submission']:<{width}}  " + "  ".join(f"{v:>6g}" for v in per)
                     + f"   {float(r['score']):g}/{float(r['max_score']):g}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- charts


def _figure(height: float):
    """A matplotlib Figure drawn by the Agg canvas (no pyplot: nothing global changes in the caller)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _plot_histogram(summary: ClassSummary, path: Path) -> None:
    from matplotlib.ticker import MaxNLocator

    fig = _figure(4)
    ax = fig.add_subplot()
    d = summary.distribution
    if d is None:
        ax.text(0.5, 0.5, "no submission was graded", ha="center", va="center", transform=ax.transAxes)
        ax.set_title("Total scores (N = 0)")
    else:
        edges = [b.low for b in d.bins] + [d.bins[-1].high]
        ax.hist(d.totals, bins=edges, color="tab:blue", edgecolor="white")
        ax.axvline(d.max_score, color="tab:green", linestyle="--", label=f"max score {d.max_score:g}")
        ax.axvline(d.mean, color="tab:orange", linestyle=":", label=f"mean {d.mean:.2f}")
        ax.set_xlim(0, d.max_score * 1.05 if d.max_score > 0 else 1)
        ax.set_ylim(0, 1.3 * max(b.count for b in d.bins))  # room for the legend above the bars
        ax.legend(loc="upper center", ncols=2)
        ax.set_title(f"Total scores (N = {summary.graded}, mean {d.mean:.2f} of {d.max_score:g})")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("total score")
    ax.set_ylabel("submissions")
    fig.savefig(path)


def _plot_full_marks(summary: ClassSummary, path: Path) -> None:
    functions = summary.functions
    fig = _figure(1.2 + 0.35 * max(len(functions), 1))
    ax = fig.add_subplot()
    shares = [100 * f.share_full_marks for f in functions]
    ax.barh(range(len(functions)), shares, color="tab:green")
    ax.set_yticks(range(len(functions)), [f.name for f in functions])
    ax.invert_yaxis()  # the first function on top
    for i, share in enumerate(shares):
        ax.text(min(share, 88) + 1, i, f"{share:.0f}%", va="center")
    ax.set_xlim(0, 100)
    ax.set_xlabel("submissions with full marks (%)")
    ax.set_title(f"Full marks per function (N = {summary.graded})")
    fig.savefig(path)


# --------------------------------------------------------------------------- report


def _tables(summary: ClassSummary) -> tuple[list[str], list[list[str]], list[str], list[list[str]]]:
    """The report's two tables as (header, rows) pairs of plain text: the distribution, then the functions.
    A function's mistakes are one cell, ``"; "``-separated."""
    d = summary.distribution
    dist = [["graded", str(summary.graded)], ["could not be graded", str(len(summary.failed))]]
    if d is not None:
        dist += [["max points", f"{d.max_score:g}"], ["mean", f"{d.mean:.2f}"], ["median", f"{d.median:g}"],
                 ["lowest", f"{d.min:g}"], ["highest", f"{d.max:g}"]]
    funcs = [[f.name, f"{f.max_score:g}", f"{f.mean:.2f}", f"{f.share_full_marks:.0%} ({f.full_marks})",
              "; ".join(f"{m} ({n})" for m, n in f.mistakes)] for f in summary.functions]
    return (["", "total score"], dist, ["function", "max points", "mean", "full marks", "top mistakes (submissions)"],
            funcs)


def _markdown_cell(text: str) -> str:
    """``text`` safe in a Markdown table cell: no HTML, no cell break, one line."""
    return html.escape(text).replace("|", "\\|").replace("\n", " ")


def _markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(map(_markdown_cell, header)) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(map(_markdown_cell, r)) + " |" for r in rows), ""]


def _markdown(summary: ClassSummary, charts: Mapping[str, Path]) -> str:
    dist_header, dist, func_header, funcs = _tables(summary)
    lines = ["# Class report", "", f"![Histogram of total scores]({charts['histogram'].name})", "",
             *_markdown_table(dist_header, dist), "## Functions", "",
             f"![Share of full marks per function]({charts['full_marks'].name})", "",
             *_markdown_table(func_header, funcs)]
    if summary.failed:
        lines += ["## Could not be graded", "",
                  *_markdown_table(["submission", "error"], [list(f) for f in summary.failed])]
    return "\n".join(lines)


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


_STYLE = ("body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
          "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.3em .6em;"
          "text-align:left;vertical-align:top}img{max-width:100%}")


def _html(summary: ClassSummary, charts: Mapping[str, Path]) -> str:
    dist_header, dist, func_header, funcs = _tables(summary)
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8"><title>Class report</title>',
             f"<style>{_STYLE}</style></head><body>", "<h1>Class report</h1>",
             f'<img src="{_data_uri(charts["histogram"])}" alt="Histogram of total scores">',
             _html_table(dist_header, dist), "<h2>Functions</h2>",
             f'<img src="{_data_uri(charts["full_marks"])}" alt="Share of full marks per function">',
             _html_table(func_header, funcs)]
    if summary.failed:
        parts += ["<h2>Could not be graded</h2>",
                  _html_table(["submission", "error"], [list(f) for f in summary.failed])]
    return "\n".join(parts + ["</body></html>", ""])


def write_report(summary: ClassSummary, out_dir: Path) -> dict[str, Path]:
    """Write ``histogram.png``, ``full_marks.png``, ``report.md`` (linking the charts) and ``report.html``
    (self-contained: the charts embedded) into ``out_dir``. Returns ``{name: path}`` of the four."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"histogram": out_dir / "histogram.png", "full_marks": out_dir / "full_marks.png",
             "markdown": out_dir / "report.md", "html": out_dir / "report.html"}
    _plot_histogram(summary, paths["histogram"])
    _plot_full_marks(summary, paths["full_marks"])
    paths["markdown"].write_text(_markdown(summary, paths), encoding="utf-8")
    paths["html"].write_text(_html(summary, paths), encoding="utf-8")
    return paths
