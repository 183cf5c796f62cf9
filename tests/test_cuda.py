"""The grader's CUDA path: values and timing on the GPU, inside the sandbox.

On a machine with a CUDA device the grader puts the student's tensor
arguments on it (in the child, inside bubblewrap with the GPU's device files
bound in), checks that results stay there, and times the reference and the
loop there too. These tests run only where ``torch.cuda.is_available()``;
`benchmarks/gpu_check.sh` runs them on a GPU machine and prints the
reference-versus-loop figures. The CPU path is the rest of the suite.
"""
import pytest
import torch

from autograder.frontends.examples import make_submission
from autograder.grading.grade import grade_submission
from autograder.grading.points import POINTS, function_points
from autograder.isolation.sandbox import choose_launcher
from autograder.isolation.student_process import StudentProcess

NB = "03_simclr"
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA device (torch.cuda.is_available() is False here); "
                                       "benchmarks/gpu_check.sh runs these on a GPU machine")


def _checks(tmp_path, code):
    make_submission(tmp_path, NB, code)
    result = grade_submission(tmp_path, call_timeout=30.0)
    return result, {(c.function, c.check): c for c in result.checks}


def test_the_child_reaches_the_gpu_inside_the_sandbox():
    source = "import torch\ndef where(x):\n    return torch.tensor([x.is_cuda, torch.cuda.is_available()])\n"
    with StudentProcess(source, device="cuda", launcher=choose_launcher("trusted").launcher,
                        call_timeout=60) as process:
        assert process.call("where", torch.ones(2)).value.tolist() == [True, True]


def test_the_reference_scores_full_marks_on_cuda(tmp_path):
    result, checks = _checks(tmp_path, {})
    assert result.device == "cuda"
    assert result.score == result.max_score, [(c.function, c.check, c.feedback) for c in result.checks
                                              if not c.passed]
    notes = [c.staff_note for (f, check), c in checks.items() if check == "vectorized"]
    assert notes and all("on the cuda" in n for n in notes), notes
    print("\n" + "\n".join(f"{f}: {c.staff_note}" for (f, check), c in checks.items() if check == "vectorized"))


def test_a_result_moved_off_the_gpu_costs_the_values(tmp_path):
    code = {"compute_sim_matrix": "def compute_sim_matrix(out):\n"
                                  "    unit = F.normalize(out, dim=1)\n"
                                  "    return (unit @ unit.T).cpu()"}
    _, checks = _checks(tmp_path, code)
    values = checks[("compute_sim_matrix", "values")]
    assert values.score == 0 and "inputs are on cuda" in values.feedback, values.feedback
    others = [c for (f, _), c in checks.items() if f not in ("compute_sim_matrix", "simclr_loss_vectorized")]
    assert all(c.passed for c in others)


def test_a_loop_over_the_rows_is_too_slow_on_cuda_too(tmp_path):
    code = {"compute_sim_matrix": "def compute_sim_matrix(out):\n"
                                  "    return torch.stack([F.cosine_similarity(out[i:i + 1], out, dim=1)\n"
                                  "                        for i in range(len(out))])"}
    _, checks = _checks(tmp_path, code)
    assert checks[("compute_sim_matrix", "values")].passed
    speed = checks[("compute_sim_matrix", "vectorized")]
    assert speed.score == 0 and "too slow" in speed.feedback, speed.feedback
    assert sum(c.score for (f, _), c in checks.items() if f == "sim") == function_points(NB, "sim")
    assert set(POINTS[NB]) == {f for f, _ in checks}
