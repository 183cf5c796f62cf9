"""In-process tests of the child's pieces (loading, output cap, request handling).

child.py runs as a script next to channel.py and the other child_*.py files,
so they are imported here the same way: with autograder/isolation on ``sys.path``.
"""
import os
import sys
from pathlib import Path

import pytest
import torch

from autograder.isolation import launch

ISOLATION = Path(__file__).resolve().parents[2] / "autograder" / "isolation"
sys.path.insert(0, str(ISOLATION))
try:
    import channel as child_channel  # the copy child.py uses
    import child
    import child_server
finally:
    sys.path.remove(str(ISOLATION))


def test_file_and_variable_names_agree_with_the_grader_side():
    for name in ("SOURCE_FILE", "LOG_FILE", "ENV_THREADS", "ENV_STATEMENT_TIMEOUT",
                 "ENV_LOG_BYTES"):
        assert getattr(child, name) == getattr(launch, name)


# --------------------------------------------------------------------------- loading


def test_each_statement_loads_on_its_own():
    source = ("from __future__ import annotations\n"
              "def f(x: Undefined) -> int:\n"
              "    return 1\n"
              "@undefined_decorator\n"
              "def g():\n"
              "    pass\n"
              "raise SystemExit(4)\n"
              "while True:\n"
              "    pass\n"
              "def h():\n"
              "    return f(0) + 1\n")
    module, errors = child.load_submission(source, statement_timeout=0.2)
    assert module.h() == 2 and not hasattr(module, "g")
    assert [(e["type"], e["line"]) for e in errors] == [
        ("NameError", 4), ("SystemExit", 7), ("TimeoutError", 8)]
    assert 'File "<submission>", line 4, in <module>' in errors[0]["traceback"]
    assert "@undefined_decorator" in errors[0]["traceback"]
    assert "ran longer than 0.2s" in errors[2]["message"]


def test_statements_that_need_a_later_definition_load_after_it():
    """A notebook that worked only in the order its cells were run in the kernel loads as it did there."""
    source = ("# --- 03_simclr.ipynb code cell 4 ---\n"
              "def scaled(x, scale=SCALE):\n"
              "    return x * scale\n"
              "LIMIT = SCALE * 10\n"
              "def first(x=LATER):\n"
              "    return 'superseded'\n"
              "def first(x=0):\n"
              "    return 'stands'\n"
              "def lost(x=NOWHERE):\n"
              "    return x\n"
              "# --- 03_simclr.ipynb code cell 9 ---\n"
              "SCALE = 2.0\n"
              "LATER = 1\n")
    late = []
    module, errors = child.load_submission(source, 1.0, late)
    assert module.scaled(3.0) == 6.0 and module.LIMIT == 20.0
    assert module.first() == "stands"  # the last definition wins, as in the kernel
    assert not hasattr(module, "lost")
    assert [(e["type"], e["line"]) for e in errors] == [("NameError", 5), ("NameError", 9)]
    assert late == [{"line": 2, "cell": "03_simclr.ipynb code cell 4", "name": "SCALE"},
                    {"line": 4, "cell": "03_simclr.ipynb code cell 4", "name": "SCALE"}]


def test_a_syntax_error_is_a_load_error_with_its_line():
    module, errors = child.load_submission("def ok():\n    pass\ndef bad(:\n", 1.0)
    assert not hasattr(module, "ok")
    assert errors[0]["type"] == "SyntaxError" and errors[0]["line"] == 3
    assert "def bad(:" in errors[0]["traceback"]


def test_error_info_survives_a_hostile_str():
    class Nasty(Exception):
        def __str__(self):
            raise RuntimeError("no")

    info = child_server.error_info(Nasty())
    assert info["type"] == "Nasty" and "could not be printed" in info["message"]


# --------------------------------------------------------------------------- output


def test_capped_log_keeps_the_newest_output_under_the_cap(tmp_path):
    fd = os.open(tmp_path / "log", os.O_RDWR | os.O_CREAT | os.O_APPEND)
    log = child.CappedLog(fd, cap=1000)
    for i in range(500):
        log.write(f"line {i}\n".encode())
        os.write(fd, b"!")  # writes that bypass the writer are noticed at the next check
    assert os.fstat(fd).st_size <= 1000 + 500
    log.write(b"x" * 5000 + b"END\n")
    data = open(tmp_path / "log", "rb").read()
    os.close(fd)
    assert data.startswith(child._TRUNCATED) and data.endswith(b"xxEND\n")
    assert len(data) == len(child._TRUNCATED) + 500


# --------------------------------------------------------------------------- requests


@pytest.fixture(scope="module")
def server():
    source = ("import torch\n"
              "LIMIT = 3\n"
              "def scale(x, factor=2.0):\n"
              "    return x * factor\n"
              "def identity(x):\n"
              "    return x\n"
              "def fail(x):\n"
              "    return x.nope\n"
              "def pair(x):\n"
              "    return 3 * x, torch.ones(2)\n"
              "def store(queue, keys):\n"
              "    queue[:2] = keys\n"
              "def store_detached(queue, keys):\n"
              "    queue[:2] = keys.detach()\n"
              "def follow(key, query, graph=True):\n"
              "    with torch.set_grad_enabled(graph):\n"
              "        for k, q in zip(key.parameters(), query.parameters()):\n"
              "            k.mul_(0.5).add_(0.5 * q)\n")
    module, errors = child.load_submission(source, 1.0)
    assert errors == []
    return child_server.Server(module)


def call(server, name, *args, options=None, **kwargs):
    return server.handle({"op": "call", "name": name, "args": list(args), "kwargs": kwargs,
                          "options": options or {}})


def test_ping_names_shutdown(server):
    assert server.handle({"op": "ping"}) == {"ok": True, "value": "pong"}
    names = server.handle({"op": "names"})["value"]
    assert names["scale"] is True and names["LIMIT"] is False and "__name__" not in names
    assert not server.done


@pytest.mark.parametrize("request_, message", [
    ("ping", "unknown request"),
    ({"op": "format_disk"}, "unknown request"),
    ({"op": "call", "name": "scale"}, "expected keys"),
    ({"op": "call", "name": 1, "args": [], "kwargs": {}}, "name must be a str"),
    ({"op": "call", "name": "scale", "args": [], "kwargs": {}, "options": {"x": 1}},
     "unknown options"),
    ({"op": "call", "name": "scale", "args": [1.0], "kwargs": {},
      "options": {"grad_of": [0]}}, "not a floating-point tensor"),
    ({"op": "call", "name": "scale", "args": [torch.ones(1)], "kwargs": {},
      "options": {"grad_of": [3]}}, "not an argument"),
    ({"op": "call", "name": "scale", "args": [torch.ones(1)], "kwargs": {},
      "options": {"grad_of": [0], "grad_output": torch.ones(2)}}, "shape \\(1,\\)"),
    ({"op": "call", "name": "scale", "args": [torch.ones(1)], "kwargs": {},
      "options": {"then_call": [[1]], "return_args": True}}, "cannot be combined"),
    ({"op": "call", "name": "scale", "args": [torch.ones(1)], "kwargs": {},
      "options": {"repeat": 3}}, "unknown options \\['repeat'\\]"),  # the child has no timing mode
    ({"op": "call", "name": "identity", "args": [{"__build__": "shell", "cmd": "ls"}],
      "kwargs": {}}, "unknown __build__ kind 'shell'"),
    ({"op": "call", "name": "identity", "args": [{"__build__": "mlp", "sizes": [3]}],
      "kwargs": {}}, "at least 2 positive ints"),
    ({"op": "call", "name": "identity", "args": [{"__build__": "mlp", "sizes": [2, 1],
                                                  "state_dict": {"0.weight": torch.ones(3)}}],
      "kwargs": {}}, "does not fit sizes"),
    ({"op": "call", "name": "identity", "args": [{"__build__": "generator"}],
      "kwargs": {}}, "expected keys \\['seed'\\]"),
])
def test_malformed_requests_are_refused(server, request_, message):
    reply = server.handle(request_)
    assert reply["ok"] is False and reply["kind"] == "request"
    assert __import__("re").search(message, reply["message"]), reply["message"]


def test_missing_and_not_callable(server):
    assert call(server, "nothing")["kind"] == "missing"
    reply = call(server, "LIMIT")
    assert reply["kind"] == "missing" and "'LIMIT' is a int, not a function" in reply["message"]


def test_call_with_grads_and_args_after(server):
    x = torch.tensor([1.0, -2.0])
    reply = call(server, "scale", x, factor=3.0,
                 options={"grad_of": [0], "grad_output": torch.tensor([1.0, 10.0]),
                          "return_args": True})
    assert torch.equal(reply["value"], torch.tensor([3.0, -6.0]))
    assert torch.equal(reply["grads"][0], torch.tensor([3.0, 30.0]))
    assert reply["args_after"]["kwargs"] == {"factor": 3.0}
    child_channel.encode(reply)  # the whole reply can be sent


def test_gradients_of_one_element_of_a_tuple_result(server):
    x = torch.tensor([1.0, -2.0])
    reply = call(server, "pair", x, options={"grad_of": [0], "grad_of_item": 0})
    assert torch.equal(reply["grads"][0], torch.tensor([3.0, 3.0]))  # of (3 x).sum(), not of the constant
    assert call(server, "scale", x, options={"grad_of": [0], "grad_of_item": 0})["type"] == "TypeError"


def test_report_graph_tells_what_a_call_left_attached_to_autograd(server):
    queue, keys = torch.zeros(4, 2), torch.ones(2, 2)
    kept = call(server, "store", queue, keys, options={"requires_grad": [1], "report_graph": True})
    assert kept["graph"] == [True, True]  # the queue took the keys' graph
    clean = call(server, "store_detached", torch.zeros(4, 2), torch.ones(2, 2), options={"requires_grad": [1], "report_graph": True})
    assert clean["graph"] == [False, True]
    frozen = {"__build__": "mlp", "sizes": [2, 2], "seed": 0, "requires_grad": False}
    leader = {"__build__": "mlp", "sizes": [2, 2], "seed": 1}
    assert call(server, "follow", frozen, leader, options={"report_graph": True})["graph"] == [True, False]
    assert call(server, "follow", frozen, leader, False, options={"report_graph": True})["graph"] == [False, False, None]
    assert call(server, "scale", queue)["graph"] is None


def test_student_exceptions_are_data(server):
    reply = call(server, "fail", 1)
    assert reply["kind"] == "exception" and reply["type"] == "AttributeError"
    assert 'File "<submission>", line 8, in fail' in reply["traceback"]


def test_builders_and_export(server):
    model = call(server, "identity", {"__build__": "mlp", "sizes": [3, 4, 2], "seed": 5})
    torch.manual_seed(5)
    expected = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(),
                                   torch.nn.Linear(4, 2)).state_dict()
    assert list(model["value"]) == list(expected) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert all(torch.equal(model["value"][k], expected[k]) for k in expected)
    gen = call(server, "identity", {"__build__": "generator", "seed": 1})["value"]
    assert torch.equal(gen, torch.Generator().manual_seed(1).get_state())


def test_a_call_reply_carries_no_time(server):
    """The grader times calls itself: the child's clocks are the student's."""
    reply = call(server, "scale", torch.ones(3))
    assert reply["ok"] and torch.equal(reply["value"], 2 * torch.ones(3)) and "seconds" not in reply


def test_unencodable_reply_message():
    error = child_channel.EncodeError("a numpy.ndarray, which cannot be sent", ("value", 1))
    reply = child_server.unencodable({"name": "f"}, error)
    assert reply["kind"] == "exception"
    assert reply["message"] == ("'f' returned a value whose element [1] is a numpy.ndarray, "
                                "which cannot be sent")
