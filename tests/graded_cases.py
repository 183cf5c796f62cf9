"""What the kit tests of the hidden suites share: each realistic submission graded once by the local grade
command, and one notebook's scores, checks and feedback read out of the results."""
import pytest

from autograder.frontends.examples import make_submission
from autograder.grading.grade import grade_submission
from autograder.grading.points import POINTS, function_points
from autograder.grading.reference import REPO


def grade_cases(tmp_path_factory, notebook, cases):
    """``{name: GradingResult}``: the release of ``notebook`` filled in with ``cases[name]`` (the code
    `make_submission` takes: ``{}`` the reference, ``None`` the starter), graded."""
    if not (REPO / "assignments" / "self_supervised" / f"{notebook}.ipynb").is_file():
        pytest.fail(f"assignments/self_supervised/{notebook}.ipynb is missing: run `make release`")
    out = {}
    for name, code in cases.items():
        folder = tmp_path_factory.mktemp(name)
        make_submission(folder, notebook, code)
        out[name] = grade_submission(folder, call_timeout=15.0)  # a slow loop of a wrong case (01: 8 s on a slow
        # 2-core machine) must finish its values calls: it is meant to lose only its speed points
    return out


def readers(notebook):
    """``(scores, checks, feedback)`` of one notebook in a result: ``scores(result)`` is ``{function: score}``,
    ``checks(result)`` ``{(function, check): CheckResult}``, ``feedback(result, function)`` that function's text."""
    def scores(result):
        return {f.function: f.score for f in result.functions() if f.notebook == notebook}

    def checks(result):
        return {(c.function, c.check): c for c in result.checks if c.notebook == notebook}

    def feedback(result, function):
        return next(f.feedback for f in result.functions() if f.notebook == notebook and f.function == function)

    return scores, checks, feedback


def graded_fixture(notebook, wrong, right, **more):
    """The module-scoped fixture ``graded`` of a kit test: the reference, the starter, each case of ``wrong``
    (``{name: (code, expected scores)}``), of ``right`` and of ``more`` (``{name: code}``), graded once."""
    @pytest.fixture(scope="module")
    def graded(tmp_path_factory):
        return grade_cases(tmp_path_factory, notebook, {"reference": {}, "starter": None,
                                                        **{name: code for name, (code, _) in wrong.items()},
                                                        **right, **more})
    return graded


def _shown(result, notebook, functions=None):
    return {f.function: f.feedback for f in result.functions()
            if f.notebook == notebook and (functions is None or f.function in functions)}


def expect_scores(result, notebook, expected):
    """``result`` gives each function of ``notebook`` exactly its score in ``expected``; else the feedback of the
    functions that differ."""
    scores, _, _ = readers(notebook)
    got = scores(result)
    differ = {f for f in got.keys() | expected.keys() if got.get(f) != expected.get(f)}
    assert got == expected, _shown(result, notebook, differ)


def expect_starter_zero(result, notebook, full):
    """Every graded function of ``notebook`` scores 0 and says it is not implemented yet."""
    functions = [f for f in result.functions() if f.notebook == notebook]
    assert {f.function for f in functions} == set(full)
    assert all(f.score == 0 and "not implemented yet" in f.feedback for f in functions), _shown(result, notebook)


def kit_tests(notebook, full, wrong, total=10):
    """The three tests every kit test of a hidden suite has, for its module to take under their names:
    the reference scores ``full`` (``total`` points in all), the starter zero, each case of ``wrong`` its
    expected scores."""
    def test_reference_scores_full_marks(graded):
        expect_scores(graded["reference"], notebook, full)
        assert sum(full.values()) == total

    def test_starter_scores_zero_and_says_not_implemented(graded):
        expect_starter_zero(graded["starter"], notebook, full)

    @pytest.mark.parametrize("case", sorted(wrong))
    def test_wrong_versions_lose_exactly_their_functions_points(graded, case):
        expect_scores(graded[case], notebook, wrong[case][1])

    return (test_reference_scores_full_marks, test_starter_scores_zero_and_says_not_implemented,
            test_wrong_versions_lose_exactly_their_functions_points)


def right_tests(notebook, full, right):
    """The two tests of a kit test on correct submissions, for its module to take under their names: each case
    of ``right`` (written another way) keeps ``full`` marks, and no feedback of any graded case shows a path of
    the grading machine or names the hidden suite."""
    @pytest.mark.parametrize("case", sorted(right))
    def test_correct_versions_written_another_way_keep_full_marks(graded, case):
        expect_scores(graded[case], notebook, full)

    def test_no_feedback_shows_the_grading_machine(graded):
        for case, result in graded.items():
            for f in result.functions():
                if f.notebook == notebook:
                    assert "autograder" not in f.feedback and "/tmp" not in f.feedback and ".py" not in f.feedback, \
                        (case, f.function, f.feedback)

    return test_correct_versions_written_another_way_keep_full_marks, test_no_feedback_shows_the_grading_machine


def points_of(notebook):
    """``(full, without, only)`` of ``notebook``: ``full`` is ``{function: its points}``, ``without(function,
    *checks)`` its points less those of ``checks``, ``only(function, *checks)`` the points of ``checks`` alone."""
    table = POINTS[notebook]
    full = {f: function_points(notebook, f) for f in table}

    def without(function, *checks):
        return full[function] - sum(table[function][c] for c in checks)

    def only(function, *checks):
        return sum(table[function][c] for c in checks)

    return full, without, only
