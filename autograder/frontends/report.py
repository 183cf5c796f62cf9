"""Results for a person: a per-function table for the terminal."""
from __future__ import annotations

from ..grading.results import GradingResult


def render_table(result: GradingResult, *, title: str = "") -> str:
    """A table of functions and scores, then each failed check's feedback."""
    functions = result.functions()
    width = max([len(f"{f.notebook}.{f.function}") for f in functions] + [8])
    lines = [title] if title else []
    lines.append(f"{'function':<{width}}  {'score':>9}")
    lines.append("-" * (width + 11))
    for f in functions:
        mark = "" if f.score >= f.max_score else "  <"
        lines.append(f"{f.notebook + '.' + f.function:<{width}}  {f.score:>4g}/{f.max_score:<4g}{mark}")
    lines.append("-" * (width + 11))
    lines.append(f"{'total':<{width}}  {result.score:>4g}/{result.max_score:<4g}   ({result.seconds:.1f} s)")
    for f in functions:
        failed = [c for c in f.checks if not c.passed or c.feedback]
        for c in failed:
            lines.append(f"\n{f.function} / {c.check} ({c.score:g}/{c.max_score:g}):")
            lines += ["  " + line for line in c.feedback.splitlines()]
    for w in result.warnings:
        lines.append(f"\nwarning: {w}")
    if result.isolation:
        lines.append(f"\nisolation: {result.isolation}")
    lines.append(f"device: {result.device}")
    return "\n".join(lines)
