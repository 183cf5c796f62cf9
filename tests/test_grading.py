"""The local grade command on realistic submissions: the reference scores full marks,
the starter zero, each known-wrong implementation loses exactly the points of its
function, and correct implementations written another way keep full marks.

Wrong variants of *different* functions share a submission: that is the point.
A bug in compute_sim_matrix must not cost simclr_loss_vectorized, which calls it.
"""
import json
import subprocess
import sys

import pytest
import torch

from autograder.frontends.examples import make_submission
from autograder.grading.grade import grade_submission
from autograder.grading.points import POINTS, function_points
from graded_cases import grade_cases, readers

NB = "03_simclr"
FULL = {f: function_points(NB, f) for f in POINTS[NB]}

WRONG_1 = {  # one classic mistake per function
    "sim": "def sim(z_i, z_j):\n    return torch.dot(z_i, z_j)",
    "compute_sim_matrix": "def compute_sim_matrix(out):\n"
                          "    unit = out / out.norm(dim=0, keepdim=True)\n    return unit @ unit.T",
    "sim_positive_pairs": "def sim_positive_pairs(out_left, out_right):\n"
                          "    return F.cosine_similarity(out_left, out_right, dim=1)",
    "simclr_loss_naive": """
def simclr_loss_naive(out_left, out_right, tau):
    N = out_left.shape[0]
    out = torch.cat([out_left, out_right], dim=0)
    total = 0
    for k in range(N):
        for i, j in ((k, k + N), (k + N, k)):
            denom = sum(torch.exp(sim(out[i], out[m]) / tau) for m in range(2 * N))  # keeps m == i
            total = total - torch.log(torch.exp(sim(out[i], out[j]) / tau) / denom)
    return total / (2 * N)
""",
    "simclr_loss_vectorized": """
def simclr_loss_vectorized(out_left, out_right, tau):
    N = out_left.shape[0]
    s = compute_sim_matrix(torch.cat([out_left, out_right])) / tau
    s = s.masked_fill(torch.eye(2 * N, dtype=torch.bool), float('-inf'))
    losses = torch.logsumexp(s, dim=1) - s[torch.arange(2 * N), (torch.arange(2 * N) + N) % (2 * N)]
    return losses[:N].mean()  # one direction only
""",
    "compute_train_transform": """
def compute_train_transform(size=32, mean=DEFAULT_MEAN, std=DEFAULT_STD):
    return T.Compose([T.ToImage(), T.RandomResizedCrop(size, antialias=True), T.RandomHorizontalFlip(),
                      T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
                      T.ToDtype(torch.float32, scale=True), T.Normalize(mean, std)])  # no grayscale
""",
}
EXPECTED_1 = {"sim": 0, "compute_sim_matrix": 0, "sim_positive_pairs": 0, "simclr_loss_naive": 0,
              "simclr_loss_vectorized": 0, "compute_train_transform": 1}  # wrong values: speed does not count

WRONG_2 = {  # slow, raising, and misplaced-temperature versions
    "sim": "def sim(z_i, z_j):\n    raise ValueError('oops, not done')",
    "compute_sim_matrix": """
def compute_sim_matrix(out):
    rows = [F.cosine_similarity(out[i:i + 1], out, dim=1) for i in range(out.shape[0])]  # a loop over rows
    return torch.stack(rows)
""",
    "sim_positive_pairs": """
def sim_positive_pairs(out_left, out_right):
    return torch.stack([F.cosine_similarity(out_left[k], out_right[k], dim=0) for k in range(len(out_left))]).view(-1, 1)
""",
    "simclr_loss_naive": """
def simclr_loss_naive(out_left, out_right, tau):
    N = out_left.shape[0]
    out = torch.cat([out_left, out_right], dim=0)
    total = 0
    for k in range(N):
        for i, j in ((k, k + N), (k + N, k)):
            denom = sum(torch.exp(sim(out[i], out[m]) * tau) for m in range(2 * N) if m != i)
            total = total - torch.log(torch.exp(sim(out[i], out[j]) * tau) / denom)
    return total / (2 * N)
""",
    # correct, the four steps of the notebook, but slow because it calls the slow helpers above,
    # which is not counted against it
    "simclr_loss_vectorized": """
def simclr_loss_vectorized(out_left, out_right, tau):
    N = out_left.shape[0]
    exp_sim = torch.exp(compute_sim_matrix(torch.cat([out_left, out_right])) / tau)
    denom = (exp_sim * (1 - torch.eye(2 * N, dtype=exp_sim.dtype))).sum(dim=1, keepdim=True)
    numerator = torch.exp(sim_positive_pairs(out_left, out_right).repeat(2, 1) / tau)
    return -torch.log(numerator / denom).mean()
""",
    "compute_train_transform": """
def compute_train_transform(size=32, mean=DEFAULT_MEAN, std=DEFAULT_STD):
    return T.Compose([T.ToImage(), T.RandomResizedCrop(size, antialias=True), T.RandomHorizontalFlip(),
                      T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), T.RandomGrayscale(p=0.2),
                      T.ToDtype(torch.float32, scale=False)])  # neither scaled to [0, 1] nor normalised
""",
}
EXPECTED_2 = {"sim": 0, "compute_sim_matrix": 1.5, "sim_positive_pairs": 1.5, "simclr_loss_naive": 0,
              "simclr_loss_vectorized": 4, "compute_train_transform": 1}

WRONG_3 = {  # hangs, returns the wrong type, modifies its input, breaks autograd, is not random
    "sim": "def sim(z_i, z_j):\n    return float(torch.dot(z_i, z_j) / (z_i.norm() * z_j.norm()))",
    "compute_sim_matrix": "def compute_sim_matrix(out):\n    out /= out.norm(dim=1, keepdim=True)\n    return out @ out.T",
    "sim_positive_pairs": "def sim_positive_pairs(out_left, out_right):\n"
                          "    return F.cosine_similarity(out_left.double(), out_right.double(), dim=1).view(-1, 1)",
    "simclr_loss_naive": "def simclr_loss_naive(out_left, out_right, tau):\n    while True:\n        pass",
    "simclr_loss_vectorized": """
def simclr_loss_vectorized(out_left, out_right, tau):
    N = out_left.shape[0]
    z = F.normalize(torch.cat([out_left, out_right]).detach(), dim=1)  # detached: no gradient
    s = (z @ z.T / tau).masked_fill(torch.eye(2 * N, dtype=torch.bool), float('-inf'))
    return F.cross_entropy(s, (torch.arange(2 * N) + N) % (2 * N))
""",
    "compute_train_transform": """
def compute_train_transform(size=32, mean=DEFAULT_MEAN, std=DEFAULT_STD):
    return T.Compose([T.ToImage(), T.Resize((size, size), antialias=True),
                      T.ToDtype(torch.float32, scale=True), T.Normalize(mean, std)])  # the same view every time
""",
}
EXPECTED_3 = {"sim": 0, "compute_sim_matrix": 0, "sim_positive_pairs": 0, "simclr_loss_naive": 0,
              "simclr_loss_vectorized": 3, "compute_train_transform": 1}

RIGHT_1 = {  # torch.nn.functional and einsum
    "sim": "def sim(z_i, z_j):\n    return F.cosine_similarity(z_i, z_j, dim=0)",
    "compute_sim_matrix": "def compute_sim_matrix(out):\n    u = F.normalize(out, dim=1)\n"
                          "    return torch.einsum('id,jd->ij', u, u)",
    "sim_positive_pairs": "def sim_positive_pairs(out_left, out_right):\n"
                          "    return F.cosine_similarity(out_left, out_right, dim=1).unsqueeze(1)",
    "simclr_loss_naive": """
def simclr_loss_naive(out_left, out_right, tau):
    N = out_left.shape[0]
    out = torch.cat([out_left, out_right], dim=0)
    losses = []
    for i in range(2 * N):
        logits = torch.stack([sim(out[i], out[m]) / tau for m in range(2 * N) if m != i])
        j = (i + N) % (2 * N)
        positive = j if j < i else j - 1  # its index once row i is left out
        losses.append(torch.logsumexp(logits, 0) - logits[positive])
    return torch.stack(losses).mean()
""",
    "simclr_loss_vectorized": """
def simclr_loss_vectorized(out_left, out_right, tau):
    N = out_left.shape[0]
    s = compute_sim_matrix(torch.cat([out_left, out_right])) / tau
    s = s.masked_fill(torch.eye(2 * N, dtype=torch.bool, device=s.device), float('-inf'))
    return F.cross_entropy(s, (torch.arange(2 * N, device=s.device) + N) % (2 * N))
""",
    "compute_train_transform": """
def compute_train_transform(size=32, mean=DEFAULT_MEAN, std=DEFAULT_STD):
    jitter = T.RandomApply([T.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)], p=0.8)
    return T.Compose([T.ToImage(), T.ToDtype(torch.float32, scale=True),
                      T.RandomResizedCrop((size, size), scale=(0.08, 1.0), antialias=True),
                      T.RandomHorizontalFlip(p=0.5), jitter, T.RandomGrayscale(p=0.2), T.Normalize(mean=mean, std=std)])
""",
}

RIGHT_2 = {  # by hand, without the helpers
    "sim": "def sim(z_i, z_j):\n    return (z_i * z_j).sum() / torch.sqrt((z_i ** 2).sum() * (z_j ** 2).sum())",
    "compute_sim_matrix": "def compute_sim_matrix(out):\n"
                          "    return F.cosine_similarity(out[:, None, :], out[None, :, :], dim=-1)",
    "sim_positive_pairs": "def sim_positive_pairs(out_left, out_right):\n"
                          "    return torch.diagonal(F.normalize(out_left, dim=1) @ F.normalize(out_right, dim=1).T).view(-1, 1)",
    "simclr_loss_vectorized": """
def simclr_loss_vectorized(out_left, out_right, tau):
    N = out_left.shape[0]
    z = torch.cat([out_left, out_right])
    z = z / z.norm(dim=1, keepdim=True)
    logits = z @ z.T / tau
    self_mask = torch.eye(2 * N, dtype=torch.bool)
    log_denominator = torch.logsumexp(logits.masked_fill(self_mask, -1e9), dim=1)
    positives = logits.roll(shifts=N, dims=1).diagonal()  # logits[i, (i + N) % 2N]
    return (log_denominator - positives).mean()
""",
}


RIGHT_EPS = {  # stabilisers of up to 1e-6 on the norms, added or clamped: correct code
    "sim": "def sim(z_i, z_j):\n    return torch.dot(z_i, z_j) / (z_i.norm() * z_j.norm() + 1e-6)",
    "compute_sim_matrix": "def compute_sim_matrix(out):\n"
                          "    unit = out / (out.norm(dim=1, keepdim=True) + 1e-6)\n"
                          "    return unit @ unit.T",
    "sim_positive_pairs": "def sim_positive_pairs(out_left, out_right):\n"
                          "    dots = (out_left * out_right).sum(1)\n"
                          "    return (dots / (out_left.norm(dim=1) * out_right.norm(dim=1) + 1e-6)).view(-1, 1)",
    "simclr_loss_vectorized": """
def simclr_loss_vectorized(out_left, out_right, tau):
    N = out_left.shape[0]
    z = F.normalize(torch.cat([out_left, out_right]), dim=1, eps=1e-6)
    logits = (z @ z.T / tau).masked_fill(torch.eye(2 * N, dtype=torch.bool), float('-inf'))
    return F.cross_entropy(logits, (torch.arange(2 * N) + N) % (2 * N))
""",
}

RIGHT_CLAMP = {  # and torchvision's v1 transforms, on tensors and PIL images alike
    "compute_train_transform": """
def compute_train_transform(size=32, mean=DEFAULT_MEAN, std=DEFAULT_STD):
    import torchvision.transforms as T1
    as_tensor = T1.Lambda(lambda x: x if torch.is_tensor(x) else T1.functional.pil_to_tensor(x))
    return T1.Compose([as_tensor, T1.RandomResizedCrop(size, antialias=True), T1.RandomHorizontalFlip(),
                       T1.RandomApply([T1.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), T1.RandomGrayscale(p=0.2),
                       T1.ConvertImageDtype(torch.float32), T1.Normalize(mean, std)])
""",
    "sim": "def sim(z_i, z_j):\n    return torch.dot(z_i, z_j) / (z_i.norm() * z_j.norm()).clamp_min(1e-6)",
    "compute_sim_matrix": "def compute_sim_matrix(out):\n    unit = F.normalize(out, dim=1, eps=1e-6)\n    return unit @ unit.T",
    "sim_positive_pairs": "def sim_positive_pairs(out_left, out_right):\n"
                          "    return F.cosine_similarity(out_left, out_right, dim=1, eps=1e-6).view(-1, 1)",
}

WRONG_FLOAT32 = {  # float32 arithmetic on float64 inputs, cast back so that the dtype looks right; jitter always on
    "compute_train_transform": """
def compute_train_transform(size=32, mean=DEFAULT_MEAN, std=DEFAULT_STD):
    return T.Compose([T.ToImage(), T.ToDtype(torch.float32, scale=True), T.RandomResizedCrop(size, antialias=True),
                      T.RandomHorizontalFlip(), T.ColorJitter(0.4, 0.4, 0.4, 0.1), T.RandomGrayscale(p=0.2),
                      T.Normalize(mean, std)])
""",
    "sim": "def sim(z_i, z_j):\n"
           "    a, b = z_i.float(), z_j.float()\n"
           "    return (torch.dot(a, b) / (a.norm() * b.norm())).to(z_i.dtype)",
    "compute_sim_matrix": "def compute_sim_matrix(out):\n"
                          "    unit = F.normalize(out.float(), dim=1)\n"
                          "    return (unit @ unit.T).to(out.dtype)",
}
# sim and compute_sim_matrix keep only their edge-case shares (N = 1, D = 1 in float32 arithmetic are right to
# tolerance); the transform keeps its values point and loses the randomness one
EXPECTED_FLOAT32 = {**{f: FULL[f] for f in FULL}, "sim": 0.25, "compute_sim_matrix": 0.25, "compute_train_transform": 1}

WRONG_EDGE = {  # right on ordinary inputs, wrong only on N = 1 or D = 1 (a .squeeze() too many): a small share
    "compute_sim_matrix": "def compute_sim_matrix(out):\n"
                          "    unit = F.normalize(out.squeeze(), dim=1)\n"
                          "    return unit @ unit.T",
    "sim_positive_pairs": "def sim_positive_pairs(out_left, out_right):\n"
                          "    return F.cosine_similarity(out_left, out_right, dim=1).squeeze().unsqueeze(1)",
    "simclr_loss_vectorized": """
def simclr_loss_vectorized(out_left, out_right, tau):
    N = out_left.shape[0]
    sim_matrix = compute_sim_matrix(torch.cat([out_left, out_right], dim=0))
    exponential = torch.exp(sim_matrix / tau) * (1 - torch.eye(2 * N))
    denom = exponential.sum(dim=1)
    sim_pairs = sim_positive_pairs(out_left, out_right).squeeze()
    sim_pairs = torch.cat([sim_pairs, sim_pairs])
    return -torch.log(torch.exp(sim_pairs / tau) / denom).mean()
""",
}
EXPECTED_EDGE = {**FULL, **{f: FULL[f] - POINTS[NB][f]["edge_cases"]
                            for f in ("compute_sim_matrix", "sim_positive_pairs", "simclr_loss_vectorized")}}


_scores, _, _feedback = readers(NB)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Grade each submission once; tests look at the results."""
    return grade_cases(tmp_path_factory, NB, {
        "reference": {}, "starter": None, "wrong_1": WRONG_1, "wrong_2": WRONG_2, "wrong_3": WRONG_3,
        "wrong_float32": WRONG_FLOAT32, "right_1": RIGHT_1, "right_2": RIGHT_2, "right_eps": RIGHT_EPS,
        "right_clamp": RIGHT_CLAMP, "wrong_edge": WRONG_EDGE})


def test_reference_scores_full_marks(graded):
    assert _scores(graded["reference"]) == FULL
    assert graded["reference"].score == graded["reference"].max_score == 14


def test_starter_scores_zero_and_says_not_implemented(graded):
    result = graded["starter"]
    assert result.score == 0 and result.max_score == 14
    assert all("not implemented yet" in f.feedback for f in result.functions())


@pytest.mark.parametrize("case,expected", [("wrong_1", EXPECTED_1), ("wrong_2", EXPECTED_2), ("wrong_3", EXPECTED_3),
                                           ("wrong_float32", EXPECTED_FLOAT32), ("wrong_edge", EXPECTED_EDGE)])
def test_wrong_versions_lose_exactly_their_functions_points(graded, case, expected):
    assert _scores(graded[case]) == expected


def test_an_edge_case_failure_names_the_call_and_costs_only_its_share(graded):
    result = graded["wrong_edge"]
    checks = {(c.function, c.check): c for c in result.checks}
    for function in ("compute_sim_matrix", "sim_positive_pairs", "simclr_loss_vectorized"):
        assert checks[(function, "values")].passed and not checks[(function, "edge_cases")].passed
    assert "compute_sim_matrix(float32 [1, 3]) raised IndexError" in checks[("compute_sim_matrix", "edge_cases")].feedback
    assert "sim_positive_pairs(float32 [1, 2], float32 [1, 2]) raised IndexError" in \
        checks[("sim_positive_pairs", "edge_cases")].feedback
    assert "simclr_loss_vectorized(float32 [1, 4], float32 [1, 4], 0.5) raised RuntimeError" in \
        checks[("simclr_loss_vectorized", "edge_cases")].feedback


def test_feedback_names_the_likely_mistake(graded):
    w1, w2, w3 = graded["wrong_1"], graded["wrong_2"], graded["wrong_3"]
    assert "divide by the product of the two norms" in _feedback(w1, "sim")
    assert "not the columns" in _feedback(w1, "compute_sim_matrix")
    assert "expected [1, 1]" in _feedback(w1, "sim_positive_pairs")
    assert "an anchor is not its own negative" in _feedback(w1, "simclr_loss_naive")
    assert "both directions" in _feedback(w1, "simclr_loss_vectorized")
    assert "grayscale" in _feedback(w1, "compute_train_transform")
    assert "raised ValueError: oops, not done" in _feedback(w2, "sim")
    assert "line 2" in _feedback(w2, "sim")  # the student's own frame
    assert "too slow" in _feedback(w2, "compute_sim_matrix")
    assert "not counted" in _feedback(w2, "simclr_loss_vectorized")
    assert "temperature is misplaced" in _feedback(w2, "simclr_loss_naive")
    assert "[0, 1]" in _feedback(w2, "compute_train_transform")
    assert "did not finish in time" in _feedback(w3, "simclr_loss_naive")
    assert "in place" in _feedback(w3, "compute_sim_matrix")
    assert "dtype torch.float64" in _feedback(w3, "sim_positive_pairs")
    assert "not connected to its inputs by autograd" in _feedback(w3, "simclr_loss_vectorized")
    assert "float" in _feedback(w3, "sim")
    assert "views differ" in _feedback(w3, "compute_train_transform")
    assert "ColorJitter" in _feedback(graded["wrong_float32"], "compute_train_transform")
    f32 = graded["wrong_float32"]
    assert "compute in the inputs' dtype" in _feedback(f32, "sim")
    assert "compute in the inputs' dtype" in _feedback(f32, "compute_sim_matrix")


@pytest.mark.parametrize("case", ["right_1", "right_2", "right_eps", "right_clamp"])
def test_correct_versions_written_another_way_keep_full_marks(graded, case):
    assert _scores(graded[case]) == FULL, {f.function: f.feedback for f in graded[case].functions()}


def test_cli_writes_results_json_and_exits_zero(tmp_path):
    """The SPEC's interface: `python -m autograder grade SUBMISSION [--out FILE]`, exit 0 whatever the score."""
    sub = tmp_path / "zipped"
    make_submission(sub / "deep" / "folder", NB, None)
    import shutil

    archive = shutil.make_archive(str(tmp_path / "submission"), "zip", sub)
    out = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, "-m", "autograder", "grade", archive, "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["score"] == 0 and len(data["tests"]) == len(FULL)
    assert all(any(f in t["tags"] for f in FULL) for t in data["tests"])
    assert "total" in proc.stderr  # the table for a person


def test_missing_and_broken_notebooks_cost_only_their_points(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = grade_submission(empty)
    assert result.score == 0 and all("was not found" in f.feedback for f in result.functions())
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / f"{NB}.ipynb").write_text("{ not json")
    result = grade_submission(broken)
    assert result.score == 0 and all("could not be read" in f.feedback and "JSON" in f.feedback
                                      for f in result.functions())


def test_delegating_to_another_graded_function_earns_nothing(tmp_path):
    """Each loss calling the other (and a stray mention of a slow dependency) must not borrow the reference."""
    code = {
        "simclr_loss_naive": "def simclr_loss_naive(out_left, out_right, tau):\n"
                             "    return simclr_loss_vectorized(out_left, out_right, tau)",
        "simclr_loss_vectorized": """
def simclr_loss_vectorized(out_left, out_right, tau):
    if False:
        compute_sim_matrix(out_left)
    return simclr_loss_naive(out_left, out_right, tau)
""",
        "compute_sim_matrix": None,  # the starter stub: its speed check fails
    }
    make_submission(tmp_path, NB, code)
    scores = _scores(grade_submission(tmp_path, call_timeout=10.0))
    assert scores["simclr_loss_naive"] == 0 and scores["simclr_loss_vectorized"] == 0
    assert scores["compute_sim_matrix"] == 0
    assert {f: s for f, s in scores.items() if f not in code} == {f: FULL[f] for f in FULL if f not in code}


def test_links_and_broken_zips_are_not_graded(tmp_path):
    from autograder.grading.reference import notebook_path

    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / f"{NB}.ipynb").symlink_to(notebook_path(NB))  # the reference, through a link
    result = grade_submission(linked)
    assert result.score == 0 and all("was not found" in f.feedback for f in result.functions())
    broken = tmp_path / "broken.zip"
    make_submission(tmp_path / "z", NB, {})
    import shutil

    shutil.make_archive(str(tmp_path / "good"), "zip", tmp_path / "z")
    data = bytearray((tmp_path / "good.zip").read_bytes())
    data[60:200] = b"\x00" * 140  # damage the compressed notebook
    broken.write_bytes(bytes(data))
    result = grade_submission(broken)
    assert result.score == 0 and all("could not be read" in f.feedback for f in result.functions())


def test_notebooks_as_students_leave_them(tmp_path):
    """Cells that only work in the order they ran in the kernel, two copies of the notebook, and a function
    that raises on one input: graded as the student's kernel ran them, with feedback in the student's terms."""
    code = {
        "sim": "def sim(z_i, z_j, eps=EPS):  # EPS is defined in a cell further down\n"
               "    if z_i.numel() == 1:\n"
               "        raise RuntimeError('one element')\n"
               "    return torch.dot(z_i, z_j) / (z_i.norm() * z_j.norm()).clamp_min(eps)",
        "compute_sim_matrix": "def compute_sim_matrix(out, scale=SCALE):\n"
                              "    unit = F.normalize(out, dim=1) * scale\n"
                              "    return unit @ unit.T",
    }
    path = make_submission(tmp_path / "mine", NB, code)
    nb = json.loads(path.read_text())
    nb["cells"].append({"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                        "source": "EPS = 1e-12\nSCALE = 1.0"})
    path.write_text(json.dumps(nb))
    make_submission(tmp_path / "mine" / "old" / "backup", NB, None)  # a deeper copy: not graded
    result = grade_submission(tmp_path / "mine", call_timeout=10.0)
    scores = _scores(result)
    assert scores["compute_sim_matrix"] == FULL["compute_sim_matrix"]  # loaded after SCALE, as in the kernel
    assert scores["sim"] == FULL["sim"] - POINTS[NB]["sim"]["edge_cases"]  # wrong on D = 1 only: a small share
    assert "sim(float32 [1], float32 [1]) raised RuntimeError: one element" in _feedback(result, "sim")
    assert any("uses 'SCALE' before a later cell defines it" in w and "Restart & Run All" in w
               for w in result.warnings), result.warnings
    assert "2 copies of 03_simclr.ipynb; graded 03_simclr.ipynb" in result.warnings
    assert not any(str(tmp_path) in w for w in result.warnings)


def test_a_notebook_large_only_because_of_its_outputs_is_graded(tmp_path):
    path = make_submission(tmp_path, NB, {})
    nb = json.loads(path.read_text())
    big = {"output_type": "display_data", "metadata": {}, "data": {"image/png": "A" * (60 * 2**20)}}
    nb["cells"][-1]["outputs"] = [big]  # a plot too many, not code
    path.write_text(json.dumps(nb))
    assert path.stat().st_size > 60 * 2**20
    result = grade_submission(tmp_path)
    assert _scores(result) == FULL


def test_an_oversized_notebook_says_how_to_fix_it_without_the_graders_paths(tmp_path, monkeypatch):
    from autograder.grading import extract

    monkeypatch.setattr(extract, "DEFAULT_MAX_BYTES", 8 * 2**20)  # the real limit (200 MB) is slow to write
    path = make_submission(tmp_path, NB, {})
    nb = json.loads(path.read_text())
    big = {"output_type": "display_data", "metadata": {}, "data": {"image/png": "A" * (9 * 2**20)}}
    nb["cells"][-1]["outputs"] = [big]
    path.write_text(json.dumps(nb))
    result = grade_submission(tmp_path)
    for f in result.functions():
        assert "larger than the limit" in f.feedback and "Clear All Outputs" in f.feedback, f.feedback
        assert str(tmp_path) not in f.feedback
    assert any(str(tmp_path) in note for note in result.staff_notes)  # the staff still see which file


def test_a_notebook_with_megabytes_of_code_is_reported_not_parsed(tmp_path):
    path = make_submission(tmp_path, NB, {})
    nb = json.loads(path.read_text())
    nb["cells"].append({"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                        "source": "DATA = [" + "0.5, " * (6 * 2**20 // 5) + "]"})  # data pasted into a cell
    path.write_text(json.dumps(nb))
    result = grade_submission(tmp_path)
    assert result.score == 0
    for f in result.functions():
        assert "MB of source" in f.feedback and "keep data out of code cells" in f.feedback, f.feedback


def _transform(parts):
    import torchvision.transforms.v2 as T

    return lambda size=32, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0): T.Compose(
        [T.ToImage(), T.ToDtype(torch.float32, scale=True), *parts(T, size), T.Normalize(mean, std)])


def _spec(T, size, crop=None, flip=0.5, jitter=(0.4, 0.4, 0.4, 0.1), p_jitter=0.8, p_gray=0.2):
    """The SPEC's augmentation with one component changed."""
    return [crop or T.RandomResizedCrop(size, antialias=True), T.RandomHorizontalFlip(flip),
            T.RandomApply([T.ColorJitter(*jitter)], p=p_jitter), T.RandomGrayscale(p_gray)]


TRANSFORMS_RIGHT = {  # other orders and APIs the SPEC allows
    "flip before the crop": _transform(lambda T, size: [T.RandomHorizontalFlip(), T.RandomResizedCrop(size, antialias=True),
                                                        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
                                                        T.RandomGrayscale(p=0.2)]),
    "grayscale before the jitter": _transform(lambda T, size: [T.RandomResizedCrop(size, antialias=True),
                                                               T.RandomHorizontalFlip(), T.RandomGrayscale(p=0.2),
                                                               T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8)]),
    "keyword arguments": _transform(lambda T, size: [T.RandomResizedCrop((size, size), scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)),
                                                     T.RandomHorizontalFlip(p=0.5),
                                                     T.RandomApply([T.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4,
                                                                                  hue=0.1)], p=0.8),
                                                     T.RandomGrayscale(p=0.2)]),
}
TRANSFORMS_WRONG = {  # (the transform, what the feedback must name)
    "jitter always": (_transform(lambda T, size: _spec(T, size, p_jitter=1.0)), "p=0.8"),
    "jitter half the time": (_transform(lambda T, size: _spec(T, size, p_jitter=0.5)), "p=0.8"),
    "jitter never": (_transform(lambda T, size: _spec(T, size, p_jitter=0.0)), "p=0.8"),
    "brightness 0.8": (_transform(lambda T, size: _spec(T, size, jitter=(0.8, 0.4, 0.4, 0.1))), "brightness=0.4"),
    "no hue jitter": (_transform(lambda T, size: _spec(T, size, jitter=(0.4, 0.4, 0.4, 0.0))), "hue=0.1"),
    "hue 0.5": (_transform(lambda T, size: _spec(T, size, jitter=(0.4, 0.4, 0.4, 0.5))), "hue=0.1"),
    "no flip": (_transform(lambda T, size: _spec(T, size, flip=0.0)), "RandomHorizontalFlip(p=0.5)"),
    "always flipped": (_transform(lambda T, size: _spec(T, size, flip=1.0)), "RandomHorizontalFlip(p=0.5)"),
    "crops of half the image or more": (_transform(lambda T, size: _spec(
        T, size, crop=T.RandomResizedCrop(size, scale=(0.5, 1.0), antialias=True))), "scale=(0.08, 1.0)"),
    "square crops": (_transform(lambda T, size: _spec(
        T, size, crop=T.RandomResizedCrop(size, ratio=(1.0, 1.0), antialias=True))), "ratio=(3/4, 4/3)"),
    "grayscale half the time": (_transform(lambda T, size: _spec(T, size, p_gray=0.5)), "RandomGrayscale(p=0.2)"),
    "no contrast jitter": (_transform(lambda T, size: _spec(T, size, jitter=(0.4, 0.0, 0.4, 0.1))), "contrast=0.4"),
    "contrast 0.8": (_transform(lambda T, size: _spec(T, size, jitter=(0.4, 0.8, 0.4, 0.1))), "contrast=0.4"),
    "no saturation jitter": (_transform(lambda T, size: _spec(T, size, jitter=(0.4, 0.4, 0.0, 0.1))), "saturation=0.4"),
    "saturation 0.8": (_transform(lambda T, size: _spec(T, size, jitter=(0.4, 0.4, 0.8, 0.1))), "saturation=0.4"),
}


@pytest.mark.parametrize("name", sorted(TRANSFORMS_RIGHT))
def test_every_allowed_composition_of_the_augmentation_keeps_its_points(name):
    from autograder.grading.reference import load_reference
    from autograder.grading.students import LocalStudent
    from autograder.suites import test_03_simclr as suite

    student = LocalStudent({"compute_train_transform": TRANSFORMS_RIGHT[name]})
    suite.test_compute_train_transform_values(student, load_reference(NB))
    suite.test_compute_train_transform_randomness(student, load_reference(NB))


@pytest.mark.parametrize("name", sorted(TRANSFORMS_WRONG))
def test_a_changed_component_of_the_augmentation_is_named(name):
    """Judged by its distribution: a component missing, always or never applied, or at another strength."""
    from autograder.grading.checks import Failure
    from autograder.grading.reference import load_reference
    from autograder.grading.students import LocalStudent
    from autograder.suites import test_03_simclr as suite

    transform, component = TRANSFORMS_WRONG[name]
    student = LocalStudent({"compute_train_transform": transform})
    suite.test_compute_train_transform_values(student, load_reference(NB))  # its values are fine
    with pytest.raises(Failure) as failure:
        suite.test_compute_train_transform_randomness(student, load_reference(NB))
    assert component in str(failure.value), str(failure.value)


@pytest.mark.parametrize("name", ["not scaled to [0, 1]", "ImageNet statistics instead of mean and std"])
def test_a_scaling_or_normalisation_bug_costs_the_values_check_only(name):
    """The component checks read the views through the student's own pixel map, so one bug, one penalty."""
    from autograder.grading.checks import Failure
    from autograder.grading.reference import load_reference
    from autograder.grading.students import LocalStudent
    from autograder.suites import test_03_simclr as suite

    def transform(size=32, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)):
        import torchvision.transforms.v2 as T

        last = [T.ToDtype(torch.float32, scale=False)] if name.startswith("not scaled") else \
            [T.ToDtype(torch.float32, scale=True), T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]
        return T.Compose([T.ToImage(), *_spec(T, size), *last])

    student = LocalStudent({"compute_train_transform": transform})
    with pytest.raises(Failure):
        suite.test_compute_train_transform_values(student, load_reference(NB))
    suite.test_compute_train_transform_randomness(student, load_reference(NB))
