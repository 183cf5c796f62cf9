"""The class summary of a gradebook: distribution, full marks per function, frequent mistakes, the report.

The unit tests build rows and outcomes by hand (no grading); one module-scoped
run grades the bundled examples (reference, starter, two_bugs) on 03_simclr
for the integration tests, and the CLI test reuses it.
"""
import csv
import io
import re
from contextlib import redirect_stderr

import matplotlib.image
import pytest

from autograder.frontends import cli
from autograder.frontends import gradebook as gradebook_module
from autograder.frontends.examples import EXAMPLES, make_submission
from autograder.frontends.gradebook import grade_folder
from autograder.frontends.summary import (NOT_IMPLEMENTED, FunctionOutcome, mistakes_in, render_text, summarize,
                                          write_report)
from autograder.grading.points import function_points, graded_functions

SIM, MATRIX = "03_simclr.sim", "03_simclr.compute_sim_matrix"  # 1 and 2 points
SIMCLR = "03_simclr"
MATRIX_HINT = "normalise each row (dim=1) to unit length before the product; you have raw dot products"


def _row(name, sim, matrix):
    return {"submission": name, "score": sim + matrix, "max_score": 3.0, "seconds": 1.0, SIM: sim, MATRIX: matrix,
            "error": ""}


def _failed(*checks):
    """A FunctionOutcome whose failed checks are ``(check, feedback)``."""
    return FunctionOutcome(0.0, 1.0, tuple(checks))


NOT_IMPL = "sim is not implemented yet (it raised NotImplementedError)"
HINTED = "sim(a, b) is wrong: got 5, expected 1\nHint: divide by the product of the norms\n  more text"


@pytest.fixture
def hand_built():
    rows = [_row("ada", 1.0, 2.0), _row("bob", 1.0, 0.5), _row("cy", 0.0, 0.0), _row("dee", 0.25, 2.0),
            {"submission": "eve", "error": "zipfile.BadZipFile: File is not a zip file"}]
    outcomes = {
        "bob": {MATRIX: _failed(("values", f"wrong\nHint: {MATRIX_HINT}"),
                                ("edge_cases", f"wrong\nHint: {MATRIX_HINT}"),
                                ("vectorized", "not timed: speed earns points once the values are right"))},
        "cy": {SIM: _failed(("values", NOT_IMPL), ("edge_cases", NOT_IMPL)),
               MATRIX: _failed(("values", "compute_sim_matrix is not implemented yet"), ("vectorized", "slow"))},
        "dee": {SIM: _failed(("values", HINTED), ("edge_cases", "sim(a, b) returned a list"))},
    }
    return summarize(rows, outcomes)


def _function(summary, name):
    return next(f for f in summary.functions if f.name == name)


# --------------------------------------------------------------------------- unit: summarize


def test_counts_and_distribution(hand_built):
    assert hand_built.graded == 4
    assert hand_built.failed == [("eve", "zipfile.BadZipFile: File is not a zip file")]
    d = hand_built.distribution
    assert (d.max_score, d.min, d.max) == (3.0, 0.0, 3.0)
    assert d.mean == pytest.approx((3 + 1.5 + 0 + 2.25) / 4) and d.median == pytest.approx((1.5 + 2.25) / 2)
    assert len(d.bins) == 10 and sum(b.count for b in d.bins) == 4
    assert d.bins[0].count == 1 and d.bins[-1].count == 1  # 0 in the first bin, the full 3 in the last
    assert d.bins[-1].high == pytest.approx(3.0)


def test_shares_and_means_per_function(hand_built):
    assert [f.name for f in hand_built.functions] == [SIM, MATRIX]
    sim, matrix = _function(hand_built, SIM), _function(hand_built, MATRIX)
    assert (sim.max_score, matrix.max_score) == (function_points(SIMCLR, "sim"), 2.0)
    assert (sim.full_marks, sim.share_full_marks) == (2, 0.5)
    assert (matrix.full_marks, matrix.share_full_marks) == (2, 0.5)
    assert sim.mean == pytest.approx(2.25 / 4) and matrix.mean == pytest.approx(4.5 / 4)


def test_mistakes_are_hints_not_implemented_or_the_failed_check():
    assert mistakes_in("values", HINTED) == {"divide by the product of the norms"}
    assert mistakes_in("values", NOT_IMPL) == {NOT_IMPLEMENTED}
    assert mistakes_in("vectorized", "your function is 10x slower") == {"vectorized check failed"}
    assert mistakes_in("values", "x\nHint: one\ny\nHint: two") == {"one", "two"}
    assert mistakes_in("vectorized", "not timed: speed earns points once the values are right") == set()


def test_top_mistakes_count_submissions_with_ties_in_order(hand_built):
    # bob's hint is in two checks: one submission; his vectorized check, not timed, is no mistake of its own.
    # Where a submission's function has a hint (or is not implemented), its other failed checks add nothing:
    # cy's slow stub, dee's edge case. Of equal counts, the hints come first, then by message.
    assert _function(hand_built, MATRIX).mistakes == [(MATRIX_HINT, 1), (NOT_IMPLEMENTED, 1)]
    assert _function(hand_built, SIM).mistakes == [("divide by the product of the norms", 1), (NOT_IMPLEMENTED, 1)]
    rows = [_row(n, 0.0, 2.0) for n in ("x", "y", "z")]
    slow = {n: {SIM: _failed(("vectorized", "slow"))} for n in ("x", "y")} | {"z": {SIM: _failed(("values", HINTED))}}
    assert _function(summarize(rows, slow), SIM).mistakes == [("vectorized check failed", 2),
                                                              ("divide by the product of the norms", 1)]


def test_failures_without_a_hint_are_put_in_a_few_shared_words():
    rows = [_row(n, 0.0, 2.0) for n in ("p", "q", "r", "s")]
    crash = "running sim(float32 [5], float32 [5]) stopped the Python process (exited with status 3)"
    outcomes = {"p": {SIM: _failed(("values", crash), ("edge_cases", crash.replace("[5]", "[1]")))},
                "q": {SIM: _failed(("values", crash.replace("status 3", "status 0")))},
                "r": {SIM: _failed(("values", "sim(float32 [5], float32 [5]) raised RuntimeError: boom"))},
                "s": {SIM: _failed(("values", "sim(float32 [5], float32 [5]) did not finish in time and was stopped"))}}
    assert _function(summarize(rows, outcomes), SIM).mistakes == [
        ("values: stopped the Python process (sys.exit, os._exit or a crash)", 2),
        ("edge_cases: stopped the Python process (sys.exit, os._exit or a crash)", 1),
        ("values: did not finish in time", 1)]
    assert ("values: raised RuntimeError", 1) in _function(summarize(rows[2:3], outcomes), SIM).mistakes


def test_only_the_top_three_mistakes_are_kept():
    rows = [_row(f"s{i}", 0.0, 2.0) for i in range(5)]
    outcomes = {f"s{i}": {SIM: _failed(*[("values", f"Hint: mistake {j}") for j in range(i + 1)])} for i in range(5)}
    assert _function(summarize(rows, outcomes), SIM).mistakes == [("mistake 0", 5), ("mistake 1", 4), ("mistake 2", 3)]


def test_nothing_graded():
    summary = summarize([{"submission": "eve", "error": "boom"}], {})
    assert (summary.graded, summary.distribution, summary.functions) == (0, None, [])
    assert "0 graded, 1 could not be graded" in render_text(summary) and "eve: boom" in render_text(summary)


def test_render_text(hand_built):
    text = render_text(hand_built)
    assert "4 graded, 1 could not be graded" in text
    assert "mean 1.69, median 1.875, min 0, max 3 (of 3)" in text
    assert re.search(r"03_simclr\.compute_sim_matrix\s+2\s+1\.12\s+50%", text), text
    assert f"  1  {MATRIX_HINT}" in text and "  1  not implemented" in text
    assert "eve: zipfile.BadZipFile" in text


# --------------------------------------------------------------------------- unit: the report


@pytest.fixture
def report(hand_built, tmp_path):
    return write_report(hand_built, tmp_path / "report")


def test_the_charts_are_pngs(report):
    for name in ("histogram", "full_marks"):
        assert report[name].name == f"{name}.png" and report[name].stat().st_size > 1000
        image = matplotlib.image.imread(report[name])
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_the_markdown_links_the_charts_and_holds_the_tables(report):
    md = report["markdown"].read_text()
    assert "![Histogram of total scores](histogram.png)" in md
    assert "![Share of full marks per function](full_marks.png)" in md
    assert "| 03_simclr.compute_sim_matrix | 2 | 1.12 | 50% (2) |" in md
    assert "| median | 1.875 |" in md


def test_the_html_is_self_contained(report):
    page = report["html"].read_text()
    assert page.count('src="data:image/png;base64,') == 2
    assert "histogram.png" not in page and "<h1>Class report</h1>" in page


def test_feedback_is_escaped_in_the_report(tmp_path):
    rows = [_row("mallory", 0.0, 2.0)]
    outcomes = {"mallory": {SIM: _failed(("values", "wrong\nHint: <script>alert('x')</script> | a & b"))}}
    paths = write_report(summarize(rows, outcomes), tmp_path)
    page, md = paths["html"].read_text(), paths["markdown"].read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; | a &amp; b" in page
    assert "<script>" not in md and "&lt;script&gt;" in md and r"\| a &amp; b" in md


# --------------------------------------------------------------------------- integration: one real gradebook


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("class")
    for name in ("reference", "starter", "two_bugs"):  # the demo's test grades all the examples
        make_submission(root / "submissions" / name, SIMCLR, EXAMPLES[name][SIMCLR])
    stderr = io.StringIO()
    with redirect_stderr(stderr):
        book = grade_folder(root / "submissions", root / "grades.csv", workers=2, notebooks=SIMCLR,
                            report_dir=root / "report")
    return root, book, stderr.getvalue()


def test_the_csv_and_the_progress_line(graded):
    root, book, stderr = graded
    with open(root / "grades.csv", newline="") as f:
        rows = {r["submission"]: r for r in csv.DictReader(f)}
    assert list(rows) == ["reference", "starter", "two_bugs"] == [r["submission"] for r in book]
    total = sum(function_points(SIMCLR, fn) for fn in graded_functions(SIMCLR))
    assert float(rows["reference"]["score"]) == float(rows["reference"]["max_score"]) == total
    assert float(rows["starter"]["score"]) == 0 and 0 < float(rows["two_bugs"]["score"]) < total
    assert re.search(r"graded 3 submissions in \d+\.\d s", stderr), stderr


def test_the_full_marks_follow_the_csv(graded):
    root, book, _ = graded
    with open(root / "grades.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [f.name for f in book.summary.functions] == [f"{SIMCLR}.{fn}" for fn in graded_functions(SIMCLR)]
    for stats in book.summary.functions:
        full = sum(float(r[stats.name]) == function_points(*stats.name.split(".")) for r in rows)
        assert stats.full_marks == full and stats.share_full_marks == pytest.approx(full / 3), stats
    assert book.summary.graded == 3 and book.summary.failed == []


def test_the_two_bugs_hint_is_a_top_mistake(graded):
    _, book, _ = graded
    mistakes = dict(_function(book.summary, MATRIX).mistakes)
    assert mistakes.get(MATRIX_HINT) == 1 and mistakes.get(NOT_IMPLEMENTED) == 1, mistakes


def test_the_report_is_written(graded):
    root, book, _ = graded
    assert book.report == {"histogram": root / "report" / "histogram.png",
                           "full_marks": root / "report" / "full_marks.png",
                           "markdown": root / "report" / "report.md", "html": root / "report" / "report.html"}
    assert all(p.is_file() and p.stat().st_size > 0 for p in book.report.values())
    assert MATRIX_HINT in book.report["html"].read_text()


def test_the_cli_passes_report_and_prints_the_summary(graded, monkeypatch, capsys, tmp_path):
    _, book, _ = graded
    calls = []

    def fake_grade_folder(folder, csv_path, **kwargs):  # the arguments, and the module fixture's real run
        calls.append((folder, csv_path, kwargs))
        return book

    monkeypatch.setattr(gradebook_module, "grade_folder", fake_grade_folder)
    assert cli.main(["gradebook", str(tmp_path / "in"), "--csv", str(tmp_path / "g.csv"), "--workers", "3",
                     "--notebooks", SIMCLR, "--report", str(tmp_path / "rep"), "--timeout", "7"]) == 0
    assert calls == [(tmp_path / "in", tmp_path / "g.csv", {"workers": 3, "results_dir": None, "notebooks": SIMCLR,
                                                            "report_dir": tmp_path / "rep", "timeout": 7.0})]
    out = capsys.readouterr().out
    assert out.startswith(render_text(book.summary)) and str(book.report["html"]) in out
    cli.main(["gradebook", "in", "--csv", "g.csv"])
    assert calls[-1][2]["report_dir"] is None
