"""Substituting graded dependencies: the child's stubs call back to trusted grader code.

One child process is shared by the module (starting one imports torch).
"""
import time

import pytest
import torch

from autograder.isolation.student_process import StudentError, StudentProcess

SOURCE = '''\
import os
import sys
import torch


def helper(x, scale=1.0):
    return x * 3  # WRONG: the right helper is x.exp() / x.norm() * scale


def other(x):
    return x + 100  # WRONG: the right one is x.sin()


def loss(x):
    h = helper(x)
    return (h * x).sum() + h.pow(2).mean()


def loss_many(x, y):
    a = helper(x, scale=2.0)
    b = helper(y)
    c = helper(x * y, scale=0.5)
    return (a * other(y)).sum() + (b * c).sum() + other(x).pow(2).sum()


def pair_loss(x):
    scores, labels = pair(x)
    return (scores * x).sum() + labels.sum()


def helper_per_row(x):
    return torch.stack([helper(x[i]).sum() for i in range(x.shape[0])]).sum()


def loss_then_fail(x):
    helper(x)
    raise ValueError("student bug after the helper")


def call_helper(x):
    return helper(x)


def keep_helper(x):
    global KEPT
    KEPT = helper
    return helper(x)


def call_kept(x):
    return KEPT(x)


def helper_type():
    return type(helper).__name__


def loss_nonexistent(x):
    return undefined_helper(x) + 1


def helper_of_a_list(x):
    return helper([x, "not a tensor"])


def forge_callback(x):
    sys.path.insert(0, os.getcwd())
    import channel
    channel.send(int(sys.argv[2]), {"callback": "secret_grader_function", "phase": "forward",
                                    "args": [x], "kwargs": {}})
    return channel.recv(int(sys.argv[1]))


def flood_callbacks(x):
    sys.path.insert(0, os.getcwd())
    import channel
    while True:
        channel.send(int(sys.argv[2]), {"callback": "helper", "phase": "forward",
                                        "args": [x], "kwargs": {}})
'''


def correct_helper(x, scale=1.0):
    return x.exp() / x.norm() * scale


def correct_other(x):
    return x.sin()


def ref_loss(x):
    h = correct_helper(x)
    return (h * x).sum() + h.pow(2).mean()


def ref_loss_many(x, y):
    a = correct_helper(x, scale=2.0)
    b = correct_helper(y)
    c = correct_helper(x * y, scale=0.5)
    return (a * correct_other(y)).sum() + (b * c).sum() + correct_other(x).pow(2).sum()


CALLS = []


def counting_helper(x, scale=1.0):
    CALLS.append(scale)
    return correct_helper(x, scale)


def failing_helper(x, scale=1.0):
    raise ValueError("the student passed garbage")


@pytest.fixture(scope="module")
def sp():
    with StudentProcess(SOURCE, call_timeout=5) as process:
        yield process


def x64(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


def test_the_value_is_as_if_the_helper_were_correct(sp):
    x = x64(5)
    good = sp.call("loss", x, substitute={"helper": correct_helper}).value
    assert torch.allclose(good, ref_loss(x))
    bad = sp.call("loss", x).value
    assert not torch.allclose(bad, ref_loss(x))
    assert torch.allclose(bad, (3 * x * x).sum() + (3 * x).pow(2).mean())


def test_gradients_flow_through_the_grader_side_helper(sp):
    x = x64(4, 3, seed=1)
    g = torch.tensor(1.7, dtype=torch.float64)
    result = sp.call("loss", x, grad_of=[0], grad_output=g,
                     substitute={"helper": correct_helper})
    xr = x.clone().requires_grad_()
    expected, = torch.autograd.grad(ref_loss(xr), xr, g)
    assert torch.allclose(result.value, ref_loss(x))
    assert torch.allclose(result.grads[0], expected)


def correct_pair(x):
    return x.exp(), torch.zeros(len(x), dtype=torch.long)


def test_gradients_flow_through_a_helper_that_returns_one_float_tensor_and_labels(sp):
    x = x64(5, seed=2)
    result = sp.call("pair_loss", x, grad_of=[0], substitute={"pair": correct_pair})
    xr = x.clone().requires_grad_()
    expected, = torch.autograd.grad((xr.exp() * xr).sum(), xr)
    assert torch.allclose(result.value, (x.exp() * x).sum())
    assert torch.allclose(result.grads[0], expected)


def test_two_names_repeated_calls_and_kwargs(sp):
    x, y = x64(6, seed=3), x64(6, seed=4)
    CALLS.clear()
    result = sp.call("loss_many", x, y, grad_of=[0, 1],
                     substitute={"helper": counting_helper, "other": correct_other})
    xr, yr = x.clone().requires_grad_(), y.clone().requires_grad_()
    expected = torch.autograd.grad(ref_loss_many(xr, yr), [xr, yr])
    assert torch.allclose(result.value, ref_loss_many(x, y))
    assert torch.allclose(result.grads[0], expected[0])
    assert torch.allclose(result.grads[1], expected[1])
    # three forward callbacks, then three backward recomputations, kwargs carried along
    assert sorted(CALLS[:3]) == [0.5, 1.0, 2.0] and sorted(CALLS[3:]) == [0.5, 1.0, 2.0]


def test_the_student_binding_is_restored_after_the_call(sp):
    x = x64(3, seed=5)
    assert sp.call("helper_type", substitute={"helper": correct_helper}).value != "function"
    assert sp.call("helper_type").value == "function"
    assert torch.equal(sp.call("call_helper", x).value, x * 3)
    with pytest.raises(StudentError) as caught:
        sp.call("loss_then_fail", x, substitute={"helper": correct_helper})
    assert caught.value.kind == "exception" and "student bug" in caught.value.message
    assert torch.equal(sp.call("call_helper", x).value, x * 3)
    assert sp.call("helper_type").value == "function"


def test_a_kept_stub_is_dead_after_its_call(sp):
    x = x64(3, seed=6)
    value = sp.call("keep_helper", x, substitute={"helper": correct_helper}).value
    assert torch.allclose(value, correct_helper(x))
    with pytest.raises(StudentError) as caught:
        sp.call("call_kept", x)
    assert caught.value.kind == "exception" and "earlier call" in caught.value.message


def test_a_name_the_student_did_not_define_can_be_substituted(sp):
    x = x64(3, seed=7)
    value = sp.call("loss_nonexistent", x, substitute={"undefined_helper": correct_other})
    assert torch.allclose(value.value, x.sin() + 1)
    with pytest.raises(StudentError, match="NameError"):
        sp.call("loss_nonexistent", x)


def test_the_grader_side_function_raising_fails_the_student_call(sp):
    x = x64(3, seed=8)
    pid = sp.call("helper_type").value  # the process is up
    with pytest.raises(StudentError) as caught:
        sp.call("loss", x, substitute={"helper": failing_helper})
    assert caught.value.kind == "exception"
    assert "RuntimeError: grader's helper failed: ValueError: the student passed garbage" \
        in caught.value.message
    assert pid == "function"
    assert torch.allclose(sp.call("loss", x, substitute={"helper": correct_helper}).value,
                          ref_loss(x))


def test_garbage_arguments_to_the_grader_side_function(sp):
    with pytest.raises(StudentError) as caught:
        sp.call("helper_of_a_list", x64(3), substitute={"helper": correct_helper})
    assert caught.value.kind == "exception" and "grader's helper failed" in caught.value.message


def test_a_callback_for_a_name_not_substituted_is_a_protocol_error(sp):
    x = x64(3, seed=9)
    with pytest.raises(StudentError) as caught:
        sp.call("forge_callback", x, substitute={"helper": correct_helper})
    assert caught.value.kind == "protocol" and "secret_grader_function" in caught.value.message
    assert torch.equal(sp.call("call_helper", x).value, x * 3)


def test_a_child_flooding_callbacks_is_stopped_by_the_timeout(sp):
    with pytest.raises(StudentError) as caught:
        sp.call("flood_callbacks", x64(3), timeout=1.0, substitute={"helper": correct_helper})
    assert caught.value.kind == "timeout"
    assert torch.equal(sp.call("call_helper", torch.ones(2)).value, torch.full((2,), 3.0))


def test_bad_substitute_arguments_are_refused_in_the_grader(sp):
    with pytest.raises(TypeError):
        sp.call("loss", x64(3), substitute={"helper": 5})
    with pytest.raises(ValueError):
        sp.call("loss", x64(3), substitute={"__builtins__": correct_helper})


def test_time_with_substitute(sp):
    seconds = sp.time("loss", x64(5), repeats=3, warmup=1,
                      substitute={"helper": correct_helper})
    assert type(seconds) is float and seconds > 0


def test_timing_leaves_out_the_waits_for_a_few_callbacks_but_not_for_a_loop(sp):
    """What the speed check's re-timing with the reference dependencies relies on: the function's own
    code is timed, not the channel; a loop calling a dependency per row still pays for every call."""
    def slow_helper(x, scale=1.0):
        time.sleep(0.1)
        return x * scale

    few = sp.time("loss", x64(5), repeats=3, warmup=0, substitute={"helper": slow_helper})
    loop = sp.time("helper_per_row", x64(8), repeats=1, warmup=0, substitute={"helper": slow_helper})
    assert few < 0.05, few  # one callback a call: its 0.1 s wait is left out
    assert loop >= 8 * 0.1, loop  # eight a call: every wait counts


# --------------------------------------------------------------------------- in-process child


def _import_child():
    import sys
    from pathlib import Path
    isolation = Path(__file__).resolve().parents[2] / "autograder" / "isolation"
    sys.path.insert(0, str(isolation))
    try:
        import child  # run as a script next to channel.py, so imported the same way
        import child_server
    finally:
        sys.path.remove(str(isolation))
    return child, child_server


def test_the_child_sends_the_documented_messages():
    child, child_server = _import_child()
    module, errors = child.load_submission(
        "def helper(x, scale=1.0):\n    return x\n"
        "def loss(x, k):\n    return helper(x, k, scale=2.0).sum()\n", 1.0)
    assert errors == []
    sent = []

    def exchange(message):
        sent.append(message)
        if message["phase"] == "forward":
            return {"ok": True, "value": message["args"][0] * 5}
        return {"ok": True, "value": [message["grad_output"] * 5, None]}

    server = child_server.Server(module, exchange)
    x = torch.tensor([1.0, 2.0])
    reply = server.handle({"op": "call", "name": "loss", "args": [x, 3], "kwargs": {},
                           "options": {"grad_of": [0], "substitute": ["helper"]}})
    assert reply["ok"] and reply["value"] == 15.0 and torch.equal(reply["grads"][0],
                                                                  torch.full((2,), 5.0))
    forward, backward = sent
    assert set(forward) == {"callback", "phase", "args", "kwargs"}
    assert forward["callback"] == "helper" and forward["phase"] == "forward"
    assert forward["args"][1] == 3 and forward["kwargs"] == {"scale": 2.0}
    assert type(forward["args"][0]) is torch.Tensor and not forward["args"][0].requires_grad
    assert set(backward) == {"callback", "phase", "args", "kwargs", "grad_output"}
    assert backward["phase"] == "backward" and torch.equal(backward["args"][0], x)
    assert torch.equal(backward["grad_output"], torch.ones(2))
    assert module.helper.__name__ == "helper"  # restored

    def failing(message):
        return {"ok": False, "message": "ValueError: no"}

    reply = child_server.Server(module, failing).handle(
        {"op": "call", "name": "loss", "args": [x, 3], "kwargs": {},
         "options": {"substitute": ["helper"]}})
    assert reply["kind"] == "exception" and reply["type"] == "RuntimeError"
    assert reply["message"] == "grader's helper failed: ValueError: no"


@pytest.mark.parametrize("names, message", [
    (["helper"], "needs a channel"),
    ("helper", "list of distinct identifiers"),
    (["helper", "helper"], "list of distinct identifiers"),
    (["__builtins__"], "list of distinct identifiers"),
    (["not a name"], "list of distinct identifiers"),
])
def test_the_child_refuses_bad_substitute_options(names, message):
    child, child_server = _import_child()
    module, _ = child.load_submission("def f():\n    return 1\n", 1.0)
    server = child_server.Server(module, None if message == "needs a channel" else (lambda m: None))
    reply = server.handle({"op": "call", "name": "f", "args": [], "kwargs": {},
                           "options": {"substitute": names}})
    assert reply["kind"] == "request" and message in reply["message"]


def test_callback_arguments_are_capped_so_the_grader_cannot_be_made_to_blow_up(sp):
    huge = torch.zeros(5000, 1)  # a similarity matrix of it would be 5000 x 5000; the cap is 4096 per side
    with pytest.raises(StudentError) as err:
        sp.call("call_helper", huge, substitute={"helper": lambda x, scale=1.0: x @ x.T})
    assert err.value.kind == "exception" and "too large" in err.value.message
    assert torch.equal(sp.call("call_helper", torch.ones(2), substitute={"helper": lambda x, scale=1.0: x}).value,
                       torch.ones(2))
