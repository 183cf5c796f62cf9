"""Grading results as plain data; the front ends (Gradescope, nbgrader, terminal, CSV) are adapters."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CheckResult:
    """One graded check of one function.

    ``feedback`` is written for the student; ``staff_note`` (tracebacks of
    grader errors, timing figures) is for the course staff only.
    """

    notebook: str
    function: str
    check: str
    score: float
    max_score: float
    feedback: str = ""
    staff_note: str = ""
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.score >= self.max_score


class _Totals:
    """``score`` and ``max_score`` summed over ``self.checks``."""

    checks: list[CheckResult]

    @property
    def score(self) -> float:
        return sum(c.score for c in self.checks)

    @property
    def max_score(self) -> float:
        return sum(c.max_score for c in self.checks)


@dataclass
class FunctionResult(_Totals):
    """All checks of one graded function."""

    notebook: str
    function: str
    checks: list[CheckResult]

    @property
    def feedback(self) -> str:
        """One line per check: a mark, its name, its points, and what went wrong."""
        lines = []
        for c in self.checks:
            mark = "ok  " if c.passed else "FAIL"
            lines.append(f"{mark} {c.check} ({c.score:g}/{c.max_score:g})" + (f": {c.feedback}" if c.feedback else ""))
        return "\n".join(lines)


@dataclass
class GradingResult(_Totals):
    """The grade of one submission."""

    checks: list[CheckResult] = field(default_factory=list)
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)  # shown to the student (missing notebook, skipped cells)
    staff_notes: list[str] = field(default_factory=list)  # grader errors
    isolation: str = ""  # how the student's code was confined, in words
    device: str = "cpu"  # where the student's functions ran and were timed: "cpu" or "cuda"

    def functions(self) -> list[FunctionResult]:
        """The checks grouped by function, in order of first appearance."""
        groups: dict[tuple[str, str], list[CheckResult]] = {}
        for c in self.checks:
            groups.setdefault((c.notebook, c.function), []).append(c)
        return [FunctionResult(nb, fn, cs) for (nb, fn), cs in groups.items()]
