"""The sandbox levels: what each enforces, checked from inside a student process."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from autograder.grading.grade import PACKAGES
from autograder.frontends.gradescope import to_results_json
from autograder.grading.results import GradingResult
from autograder.isolation.sandbox import Limits, bubblewrap_problem, bubblewrap_works, choose_launcher
from autograder.isolation.student_process import StudentError, StudentProcess

REPO = Path(__file__).resolve().parents[1]

PROBE = '''
import os, socket, torch
from course_utils.checks import rel_error

def probe(x, port):
    seen = [os.path.exists(p) for p in PATHS]
    try:
        import autograder
        importable = 1.0
    except ImportError:
        importable = 0.0
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1)  # the grader's machine is listening there
        network = 1.0
    except OSError:
        network = 0.0
    return torch.tensor([*map(float, seen), importable, network, float(os.getuid()), rel_error(1.0, 1.0)])
'''


def test_unknown_level_is_refused():
    with pytest.raises(ValueError, match="isolation level"):
        choose_launcher("docker")


def test_plain_level_says_what_it_does_not_enforce():
    isolation = choose_launcher("plain")
    assert "plain child process" in isolation.description and "could read" in isolation.description
    with StudentProcess("def f(x):\n    return x + 1", launcher=isolation.launcher) as sp:
        assert torch.equal(sp.call("f", torch.zeros(2)).value, torch.ones(2))


@pytest.mark.skipif(not bubblewrap_works(), reason=f"needs the bubblewrap sandbox: {bubblewrap_problem()}")
def test_bubblewrap_hides_the_grader_and_the_network():
    isolation = choose_launcher("bubblewrap")
    paths = [str(REPO / "solutions"), str(REPO / "autograder"), str(REPO / "tests")]
    server = socket.create_server(("127.0.0.1", 0))
    with server, StudentProcess(f"PATHS = {paths!r}\n" + PROBE, launcher=isolation.launcher,
                                packages=PACKAGES) as sp:
        value = sp.call("probe", torch.zeros(1), server.getsockname()[1]).value
    solutions, grader, tests, importable, network, uid, ok = value.tolist()
    assert (solutions, grader, tests) == (0, 0, 0), "the child can see the grader's folders"
    assert importable == 0, "the child can import the autograder"
    assert network == 0, "the child reached the network"
    assert ok == 0  # course_utils, copied beside the student's code, works
    if os.geteuid() == 0:
        assert uid != 0, "the child runs as root"


@pytest.mark.skipif(not bubblewrap_works() or os.geteuid() != 0, reason=f"needs bubblewrap and root: {bubblewrap_problem() or 'not root'}")
def test_a_fork_bomb_hits_the_process_limit():
    isolation = choose_launcher("bubblewrap", Limits(processes=32))
    source = "import os\ndef bomb(x):\n    n = 0\n    while n < 1000:\n        os.fork()\n        n += 1\n"
    with StudentProcess(source, launcher=isolation.launcher, call_timeout=3) as sp:
        with pytest.raises(StudentError) as err:
            sp.call("bomb", torch.zeros(1))
    assert err.value.kind in ("exception", "timeout", "crash")


def test_limits_lower_the_child_limits():
    code = ("import resource; from autograder.isolation.sandbox import Limits; Limits(cpu_seconds=7, data_bytes=3 << 30).apply();"
            "print(resource.getrlimit(resource.RLIMIT_CPU)[0], resource.getrlimit(resource.RLIMIT_DATA)[0],"
            "resource.getrlimit(resource.RLIMIT_CORE)[0])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["7", str(3 << 30), "0"]


def test_results_say_how_the_code_was_confined():
    data = to_results_json(GradingResult(isolation="plain child process"))
    assert data["extra_data"]["isolation"] == "plain child process"
    assert "plain child process" in data["output"]


def test_root_never_falls_back_to_plain_by_itself(monkeypatch):
    import autograder.isolation.sandbox as sandbox

    monkeypatch.setattr(sandbox, "bubblewrap_works", lambda: False)
    monkeypatch.setattr(sandbox, "unprivileged_works", lambda: False)
    monkeypatch.setattr(sandbox.os, "geteuid", lambda: 0)
    with pytest.raises(RuntimeError, match="refusing to run student code as root"):
        sandbox.choose_launcher("auto")
    assert sandbox.choose_launcher("plain").level == "plain"  # when asked for explicitly


def test_the_grading_device_is_cuda_only_where_there_is_one(monkeypatch):
    import torch

    from autograder.isolation.launch import ENV_GRADING_DEVICE, grading_device

    monkeypatch.delenv(ENV_GRADING_DEVICE, raising=False)
    assert grading_device() == ("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setenv(ENV_GRADING_DEVICE, "cpu")
    assert grading_device() == "cpu"
    monkeypatch.setenv(ENV_GRADING_DEVICE, "tpu")
    with pytest.raises(RuntimeError, match="must be cpu or cuda"):
        grading_device()
    if not torch.cuda.is_available():
        monkeypatch.setenv(ENV_GRADING_DEVICE, "cuda")
        with pytest.raises(RuntimeError, match="no CUDA device"):
            grading_device()


def test_the_gpu_is_bound_into_the_sandbox_only_when_asked():
    from pathlib import Path

    from autograder.isolation.sandbox import bwrap_command, gpu_binds

    devices = sorted(str(p) for p in Path("/dev").glob("nvidia*") if p.is_char_device())
    plain = bwrap_command(["true"], chdir="/")
    with_gpu = bwrap_command(["true"], chdir="/", gpu=True)
    assert "--dev-bind" not in plain
    if not devices:
        assert gpu_binds() == [] and with_gpu == plain
    for device in devices:
        i = with_gpu.index(device)
        assert with_gpu[i - 1:i + 2] == ["--dev-bind", device, device]
