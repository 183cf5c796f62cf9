"""Speed points a submission cannot fake: the grader times ordinary calls from its side of the channel.

Each attack below is written as a student would, into an otherwise correct
submission, against a function whose values are right but whose code loops
over the rows (so it has earned the values points and must not earn the
speed points):

- ``clock``: patches every clock of the ``time`` module it can reach, so that
  a call timed by the child would take no time;
- ``detector``: recognises the timed calls by their size (the values checks
  use small batches) and returns junk there at once;
- ``hogs``: starts busy processes that run while it is not being called
  (while the grader times the reference and the loop, which raises the
  limit) and stops them during its own calls.

And the counter-checks: a correct vectorized function (the reference) and a
wasteful but vectorized one (broadcasting instead of a matrix product) keep
their speed points.
"""
import pytest

from autograder.frontends.examples import make_submission
from autograder.grading.grade import grade_submission
from autograder.grading.points import POINTS, function_points

NB = "03_simclr"

LOOP_SIM_MATRIX = """
    return torch.stack([F.cosine_similarity(out[i:i + 1], out, dim=1) for i in range(len(out))])"""

LOOP_PAIRS = """
    return torch.stack([sim(out_left[k], out_right[k]) for k in range(len(out_left))]).view(-1, 1)"""

ATTACKS = {
    "clock": ("compute_sim_matrix", """
def compute_sim_matrix(out):
    import time
    for name in ("perf_counter", "monotonic", "time", "process_time", "thread_time"):
        setattr(time, name, lambda: 1000.0)
    for name in ("perf_counter_ns", "monotonic_ns", "time_ns", "process_time_ns", "thread_time_ns"):
        setattr(time, name, lambda: 10 ** 12)""" + LOOP_SIM_MATRIX),
    "detector": ("compute_sim_matrix", """
def compute_sim_matrix(out):
    if len(out) >= 100:  # only the speed check sends batches this large
        return torch.zeros(len(out), len(out), dtype=out.dtype)""" + LOOP_SIM_MATRIX),
    "hogs": ("sim_positive_pairs", """
def sim_positive_pairs(out_left, out_right):
    import os
    import signal
    hogs = globals().setdefault("_hogs", [])
    if not hogs:
        for _ in range(8):
            pid = os.fork()
            if pid == 0:
                while True:
                    pass
            hogs.append(pid)
    for pid in hogs:
        os.kill(pid, signal.SIGSTOP)
    try:""" + LOOP_PAIRS.replace("\n    return", "\n        return") + """
    finally:
        for pid in hogs:
            os.kill(pid, signal.SIGCONT)"""),
}

RIGHT = {
    "reference": {},
    "broadcast": {"compute_sim_matrix": "def compute_sim_matrix(out):\n"
                                        "    return F.cosine_similarity(out[:, None, :], out[None, :, :], dim=-1)"},
}


def _graded(tmp_path, code):
    make_submission(tmp_path, NB, code)
    result = grade_submission(tmp_path, call_timeout=10.0)
    return {(c.function, c.check): c for c in result.checks}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_an_attack_on_the_timing_earns_no_speed_points(tmp_path, attack):
    function, code = ATTACKS[attack]
    checks = _graded(tmp_path, {function: code})
    values, speed = checks[(function, "values")], checks[(function, "vectorized")]
    assert values.passed, values.feedback  # its values are right: the speed check does run
    assert speed.score == 0, f"{attack}: {speed.feedback} {speed.staff_note}"
    expected = "(timed, with new inputs)" if attack == "detector" else "too slow"
    assert expected in speed.feedback, speed.feedback
    others = [c for c in checks.values() if c.function != function]
    assert all(c.passed for c in others), [(c.function, c.check, c.feedback) for c in others if not c.passed]


@pytest.mark.parametrize("case", sorted(RIGHT))
def test_vectorized_code_keeps_its_speed_points(tmp_path, case):
    checks = _graded(tmp_path, RIGHT[case])
    for function in POINTS[NB]:
        score = sum(c.score for (f, _), c in checks.items() if f == function)
        assert score == function_points(NB, function), [(c.check, c.feedback, c.staff_note)
                                                        for (f, _), c in checks.items() if f == function]
