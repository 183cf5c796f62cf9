"""End-to-end tests of StudentProcess: a real child process running hostile code.

Starting a child imports torch (seconds), so one process is shared by the
module; tests that kill it check that the next call brings up a fresh one.
"""
import dataclasses
import json
import os
import time

import pytest
import torch

from autograder.isolation import channel
from autograder.grading.extract import extract_from_paths
from autograder.isolation.launch import TAIL_BYTES, default_launcher
from autograder.isolation.specs import generator_spec, mlp_spec
from autograder.isolation.student_process import StudentError, StudentProcess

SOURCE = '''\
import os
import sys
import numpy as np
import torch

SCALE = 2.0


def double(x, *, scale=SCALE):
    print("doubling", tuple(x.shape))
    return x * scale


def pair(a, b=1):
    return (a, [b], {"sum": a + b})


def helper(v):
    if v < 0:
        raise ValueError(f"negative value {v}")  # RAISE-LINE
    return v


def outer(v):
    return helper(v) + 1  # OUTER-LINE


@undefined_decorator
def decorated():
    return "never defined"


def after_failure():
    return "still here"


def spin():
    while True:
        pass


def exit_cleanly():
    sys.exit(3)


def hard_exit():
    os._exit(0)


def kill_self():
    os.kill(os.getpid(), 9)


def shout():
    print("x" * 10_000_000)
    for i in range(1000):
        print("line", i, file=sys.stderr if i % 2 else sys.stdout)
    print("END")
    return 1


def scribble():
    os.write(1, b"\\x00\\xff SSLG garbage on stdout")
    os.write(2, b"SSLG\\xff\\xff\\xff\\xff garbage on stderr")
    return "fine"


def forge_reply():
    lengths = (2).to_bytes(4, "little") + (2).to_bytes(8, "little")
    os.write(int(sys.argv[2]), b"SSLG" + lengths + b"[]xx")  # 2 payload bytes nobody uses
    return "forged"


class Sub(torch.Tensor):
    pass


class Liar:
    def __eq__(self, other):
        return True


def return_subclass():
    return torch.ones(2).as_subclass(Sub)


def return_numpy():
    return np.zeros(3)


def return_liar():
    return [torch.ones(1), {"x": Liar()}]


def bilinear(x, w):
    return (x @ w) ** 2


def first_only(x, y):
    return x * 2


def detached(x):
    return torch.from_numpy(x.detach().numpy() * 2)


def enqueue(queue, ptr, keys):
    queue[ptr:ptr + keys.shape[0]] = keys
    return (ptr + keys.shape[0]) % queue.shape[0]


def momentum_update(query_encoder, key_encoder, m):
    for q, k in zip(query_encoder.parameters(), key_encoder.parameters()):
        k.data.mul_(m).add_(q.data, alpha=1 - m)


def identity(x):
    return x


def sample(generator):
    return torch.randn(3, generator=generator)


def environment(name):
    return os.environ.get(name)


def context():
    return {"pid": os.getpid(), "threads": torch.get_num_threads(),
            "files": sorted(os.listdir("."))}


NOT_CALLABLE = 5
'''


def line_of(marker: str) -> int:
    return next(i for i, line in enumerate(SOURCE.splitlines(), 1) if marker in line)


LAUNCHES = []


def recording_launcher(request):
    LAUNCHES.append(request)
    launch = default_launcher(request)
    return dataclasses.replace(launch, env={**launch.env, "FROM_LAUNCHER": "yes"})


@pytest.fixture(scope="module")
def sp():
    os.environ["GRADER_SECRET"] = "must not leak"
    try:
        with StudentProcess(SOURCE, call_timeout=5, launcher=recording_launcher) as process:
            yield process
    finally:
        del os.environ["GRADER_SECRET"]


def test_a_correct_function_round_trips(sp):
    x = torch.arange(6.0).reshape(2, 3)
    result = sp.call("double", x, scale=3.0)
    assert type(result.value) is torch.Tensor and torch.equal(result.value, x * 3)
    assert result.stdout_tail == "doubling (2, 3)\n"
    assert result.grads is None and result.args_after is None and result.seconds >= 0
    assert sp.call("pair", 2, b=5).value == (2, [5], {"sum": 7})


def test_the_child_gets_a_minimal_environment_and_directory(sp):
    request = LAUNCHES[-1]
    assert request.read_fd != request.write_fd and request.child_script.endswith("child.py")
    assert sp.call("environment", "FROM_LAUNCHER").value == "yes"
    assert sp.call("environment", "GRADER_SECRET").value is None
    assert sp.call("environment", "HOME").value == request.workdir
    info = sp.call("context").value
    assert info["threads"] == 1
    assert info["files"] == ["channel.py", "child.py", "child_server.py", "child_substitute.py", "child_values.py",
                             "output.log", "submission.txt"]


def test_student_exceptions_carry_only_the_student_frames(sp):
    with pytest.raises(StudentError) as caught:
        sp.call("outer", -4)
    e = caught.value
    assert e.kind == "exception" and e.exc_type == "ValueError"
    assert e.message == "ValueError: negative value -4"
    tb = e.student_traceback
    assert f'File "<submission>", line {line_of("OUTER-LINE")}, in outer' in tb
    assert f'File "<submission>", line {line_of("RAISE-LINE")}, in helper' in tb
    assert 'raise ValueError(f"negative value {v}")' in tb
    assert tb.count('File "') == 2
    assert "child.py" not in tb and "autograder" not in tb


def test_missing_and_not_callable_names(sp):
    with pytest.raises(StudentError) as caught:
        sp.call("no_such_function")
    assert caught.value.kind == "missing" and "does not define 'no_such_function'" in str(
        caught.value)
    with pytest.raises(StudentError) as caught:
        sp.call("NOT_CALLABLE")
    assert caught.value.kind == "missing"
    names = sp.names()
    assert names["double"] is True and names["NOT_CALLABLE"] is False


def test_a_load_error_in_one_def_block_leaves_the_others_callable(sp):
    [error] = sp.load_errors
    assert error.exc_type == "NameError" and error.message.startswith(
        f"line {line_of('@undefined_decorator')}: NameError")
    assert sp.call("after_failure").value == "still here"
    with pytest.raises(StudentError, match="does not define 'decorated'"):
        sp.call("decorated")


def test_an_endless_loop_is_killed_after_its_timeout_and_the_next_call_works(sp):
    pid = sp.call("context").value["pid"]
    with pytest.raises(StudentError) as caught:
        sp.call("spin", timeout=1)
    assert caught.value.kind == "timeout" and "within 1s" in caught.value.message
    assert sp.call("context").value["pid"] != pid
    assert sp.call("after_failure").value == "still here"


@pytest.mark.parametrize("name, how", [
    ("exit_cleanly", "exited with status 3"),
    ("hard_exit", "exited with status 0"),
    ("kill_self", "killed by signal SIGKILL"),
])
def test_a_dying_child_is_a_crash_and_the_next_call_works(sp, name, how):
    with pytest.raises(StudentError) as caught:
        sp.call(name)
    assert caught.value.kind == "crash" and how in caught.value.message
    assert sp.call("pair", 1).value == (1, [1], {"sum": 2})


def test_printing_10_mb_is_harmless_and_the_tail_is_capped(sp):
    result = sp.call("shout")
    assert result.value == 1
    assert len(result.stdout_tail.encode()) <= TAIL_BYTES
    assert result.stdout_tail.endswith("line 998\nline 999\nEND\n")
    assert sp.stdout_tail().endswith("END\n")
    assert sp.call("pair", 0).value == (0, [1], {"sum": 1})


def test_garbage_on_fd_1_and_2_does_not_touch_the_channel(sp):
    result = sp.call("scribble")
    assert result.value == "fine" and "garbage on stdout" in result.stdout_tail
    assert sp.call("pair", 0).value == (0, [1], {"sum": 1})


def test_garbage_on_the_channel_is_a_protocol_error_and_the_next_call_works(sp):
    with pytest.raises(StudentError) as caught:
        sp.call("forge_reply")
    assert caught.value.kind == "protocol" and "payload has 2 bytes" in caught.value.message
    assert sp.call("pair", 0).value == (0, [1], {"sum": 1})


@pytest.mark.parametrize("name, message", [
    ("return_subclass", "'return_subclass' returned a submission.Sub, a subclass of "
                        "torch.Tensor; only plain torch.Tensor can be sent"),
    ("return_numpy", "'return_numpy' returned a numpy.ndarray, which cannot be sent"),
    ("return_liar", "'return_liar' returned a value whose element [1]['x'] is a "
                    "submission.Liar, which cannot be sent"),
])
def test_values_that_cannot_be_sent_back_are_refused_clearly(sp, name, message):
    pid = sp.call("context").value["pid"]
    with pytest.raises(StudentError) as caught:
        sp.call(name)
    assert caught.value.kind == "exception" and caught.value.message.startswith(
        "TypeError: " + message)
    assert sp.call("context").value["pid"] == pid  # no restart needed


def test_grads_match_torch_autograd(sp):
    x = torch.randn(3, 4, dtype=torch.float64)
    w = torch.randn(4, 2, dtype=torch.float64)
    g = torch.randn(3, 2, dtype=torch.float64)
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    ((xr @ wr) ** 2).backward(g)
    result = sp.call("bilinear", x, w=w, grad_of=[0, "w"], grad_output=g)
    assert torch.allclose(result.value, (x @ w) ** 2)
    assert set(result.grads) == {0, "w"}
    assert torch.allclose(result.grads[0], xr.grad) and torch.allclose(result.grads["w"], wr.grad)
    default = sp.call("bilinear", x, w, grad_of=1)  # gradient of .sum()
    xr.grad = wr.grad = None
    ((xr @ wr) ** 2).sum().backward()
    assert torch.allclose(default.grads[1], wr.grad)
    assert sp.call("first_only", x, w, grad_of=[0, 1]).grads[1] is None


def test_grads_of_a_detached_result_are_a_clear_student_error(sp):
    with pytest.raises(StudentError, match="not connected to its inputs by autograd"):
        sp.call("detached", torch.ones(2), grad_of=[0])


def test_bad_requests_are_value_errors_and_unsendable_args_encode_errors(sp):
    with pytest.raises(ValueError, match="not a floating-point tensor"):
        sp.call("double", torch.ones(2, dtype=torch.int64), grad_of=[0])
    with pytest.raises(ValueError, match="unknown __build__ kind"):
        sp.call("identity", {"__build__": "os.system"})
    with pytest.raises(channel.EncodeError, match="numpy"):
        sp.call("identity", torch.ones(2).numpy())
    assert sp.call("identity", 1).value == 1


def test_return_args_shows_in_place_modification(sp):
    queue, keys = torch.zeros(5, 2), torch.ones(2, 2)
    result = sp.call("enqueue", queue, 1, keys, return_args=True)
    assert result.value == 3
    expected = torch.zeros(5, 2)
    expected[1:3] = 1
    assert torch.equal(result.args_after[0], expected) and result.args_after[1] == 1
    assert torch.equal(queue, torch.zeros(5, 2))  # the grader's copy is untouched
    x = torch.randn(4)
    assert torch.equal(sp.call("double", x, return_args=True).args_after[0], x)


def test_modules_are_built_from_specs_and_come_back_as_state_dicts(sp):
    sizes = [4, 8, 2]
    torch.manual_seed(0)
    query = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    key = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    result = sp.call("momentum_update", mlp_spec(sizes, query.state_dict()),
                     mlp_spec(sizes, key.state_dict()), 0.9, return_args=True)
    assert result.value is None
    key_after = result.args_after[1]
    assert list(key_after) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    for name, tensor in key.state_dict().items():
        assert torch.allclose(key_after[name], 0.9 * tensor + 0.1 * query.state_dict()[name])
        assert torch.equal(result.args_after[0][name], query.state_dict()[name])
    torch.manual_seed(7)
    fresh = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    built = sp.call("identity", mlp_spec(sizes, seed=7)).value
    assert all(torch.equal(built[k], v) for k, v in fresh.state_dict().items())


def test_mlps_with_batchnorm_carry_their_buffers(sp):
    """What a check of an in-place update of a model needs: parameters and buffers come back separately."""
    torch.manual_seed(3)
    fresh = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    built = sp.call("identity", mlp_spec([4, 8, 2], seed=3, batchnorm=True)).value
    assert list(built) == list(fresh.state_dict())  # 1.running_mean, 1.running_var, 1.num_batches_tracked too
    assert all(torch.equal(built[k], v) for k, v in fresh.state_dict().items())
    with pytest.raises(ValueError, match="batchnorm and requires_grad must be"):
        sp.call("identity", {"__build__": "mlp", "sizes": [2, 2], "batchnorm": 1})


def test_generators_are_built_from_specs(sp):
    expected = torch.randn(3, generator=torch.Generator().manual_seed(11))
    assert torch.equal(sp.call("sample", generator_spec(11)).value, expected)


def test_time_returns_a_positive_float(sp):
    seconds = sp.time("double", torch.ones(1000), repeats=3, warmup=1)
    assert type(seconds) is float and seconds > 0


TICKER = """
import os, threading, time

TICKS = []

def start_ticking():
    def tick():
        while True:
            TICKS.append(time.time())
            time.sleep(0.01)
    threading.Thread(target=tick, daemon=True).start()
    if os.fork() == 0:  # a second process, busy: it must stop too
        while True:
            pass
    return 0

def ticks():
    return list(TICKS)
"""


def test_paused_stops_every_process_of_the_child(tmp_path):
    """What the speed check relies on while it times the reference: nothing of the student's runs."""
    from autograder.isolation.launch import descendants

    with StudentProcess(TICKER, call_timeout=5) as process:
        process.call("start_ticking")
        time.sleep(0.2)
        pids = descendants(process._child.proc.pid)
        assert len(pids) >= 2, pids
        with process.paused():
            paused_at = time.time()
            states = [open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] for pid in pids]
            time.sleep(0.5)
            resumed_at = time.time()
        time.sleep(0.1)  # the ticker sleeps 10 ms between ticks: give it time to tick again
        ticks = process.call("ticks").value
    assert set(states) == {"T"}, states  # every process stopped
    during = [t for t in ticks if paused_at + 0.05 < t < resumed_at - 0.05]
    assert not during, f"{len(during)} ticks while paused"
    assert any(t > resumed_at for t in ticks)  # and running again afterwards


# --------------------------------------------------------------------------- own processes


def test_a_child_that_dies_while_loading_is_a_crash_and_cleans_up(tmp_path):
    process = StudentProcess("import os\nos._exit(7)\n", workdir=tmp_path)
    with pytest.raises(StudentError) as caught:
        process.start()
    assert caught.value.kind == "crash" and "exited with status 7" in caught.value.message
    assert list(tmp_path.iterdir()) == []


def test_start_has_a_timeout():
    with pytest.raises(StudentError) as caught:
        StudentProcess("x = 1", start_timeout=0.2).start()
    assert caught.value.kind == "timeout"


def test_from_notebook_to_child_and_back(tmp_path):
    nb = {"nbformat": 4, "nbformat_minor": 5, "cells": [
        {"cell_type": "code", "source": ["import torch\n", "%matplotlib inline\n"]},
        {"cell_type": "markdown", "source": "Implement `compute_sim_matrix`."},
        {"cell_type": "code", "source": ["def compute_sim_matrix(out):\n",
                                         "    raise NotImplementedError\n"]},
        {"cell_type": "code", "source": ["def compute_sim_matrix(out):\n",
                                         "    out = out / out.norm(dim=1, keepdim=True)\n",
                                         "    if out.shape[0] == 1:\n",
                                         "        raise ValueError('need two rows')\n",
                                         "    return out @ out.t()\n"]},
        {"cell_type": "code", "source": "sim = compute_sim_matrix(torch.randn(4, 3))\n"
                                        "while True:\n    pass\n"},
    ]}
    path = tmp_path / "notebook.ipynb"
    path.write_text(json.dumps(nb), encoding="utf-8")
    extraction = extract_from_paths([path], names=["compute_sim_matrix"])
    workdir = tmp_path / "work"
    workdir.mkdir()
    out = torch.randn(4, 3)
    with StudentProcess(extraction.source, workdir=workdir, call_timeout=5) as process:
        assert process.load_errors == []
        value = process.call("compute_sim_matrix", out).value
        with pytest.raises(StudentError) as caught:
            process.call("compute_sim_matrix", torch.ones(1, 3))
        pid = process._child.proc.pid
    normed = out / out.norm(dim=1, keepdim=True)
    assert torch.allclose(value, normed @ normed.t())
    raise_line = extraction.source.splitlines().index("        raise ValueError('need two rows')")
    assert f"line {raise_line + 1}, in compute_sim_matrix" in caught.value.student_traceback
    assert list(workdir.iterdir()) == []
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_launched_children_start_together_and_one_closed_while_loading_leaves_nothing(tmp_path):
    """What grading a notebook does: the student's child and the timing twin launched at once, each
    waited for by `start`; a child closed before it came up (the student's code failed to load) is gone,
    with its folder."""
    slow, quick = StudentProcess("import time\ntime.sleep(30)\n", workdir=tmp_path), \
        StudentProcess("def f(x):\n    return x + 1\n", call_timeout=5)
    slow.launch()
    quick.launch()
    pid = slow._child.proc.pid
    quick.launch()  # launching again is a no-op, as `start` is on a running child
    try:
        quick.start()
        assert quick.call("f", 1).value == 2
        slow.close()
        assert slow._child is None and list(tmp_path.iterdir()) == []
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    finally:
        quick.close()
        slow.close()
