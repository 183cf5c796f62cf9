"""Tests of autograder.isolation.channel: round trips, and refusal of everything else."""
import json
import math
import os
import struct
import threading
import time

import numpy as np
import pytest
import torch

from autograder.isolation import channel
from autograder.isolation.channel import (ChannelClosed, ChannelTimeout, EncodeError, ProtocolError,
                                decode, encode, recv, send)


@pytest.fixture
def pipe():
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


def frame(header, payload=b"", hlen=None, plen=None):
    """A hand-made frame; ``header`` is JSON-able or raw bytes; lengths can lie."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<4sIQ", b"SSLG", len(raw) if hlen is None else hlen,
                       len(payload) if plen is None else plen) + raw + payload


def same(a, b):
    """Deep equality that also checks exact types, dtypes, shapes and NaNs."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert torch.equal(a, b) or torch.equal(a.isnan(), b.isnan())
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            same(x, y)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            same(a[k], b[k])
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b)
    else:
        assert a == b and (not isinstance(a, float) or math.copysign(1, a) == math.copysign(1, b))


# --------------------------------------------------------------------------- round trips

SCALARS = [None, True, False, 0, -7, 2**70, -(2**1024 - 1), 1.5, -0.0, float("inf"), float("-inf"),
           float("nan"), 1e-308, "", "héllo ✓", "lone \ud800 surrogate", "quote\"\\\n",
           b"", b"\x00\xffbytes"]


@pytest.mark.parametrize("value", SCALARS, ids=repr)
def test_scalars_round_trip(value):
    same(decode(encode(value)), value)


def test_containers_round_trip_keeping_tuple_list_and_key_order():
    value = {"z": [1, (2, [3, (4,)]), []], "a": (), "m": {}, "tuple": {"dict": 1},
             "__build__": [{"tensor": "not a tag inside a dict"}], "": None}
    same(decode(encode(value)), value)


@pytest.mark.parametrize("dtype", list(channel.DTYPES.values()), ids=str)
def test_every_allowed_dtype_round_trips(dtype):
    if dtype == torch.bool:
        t = torch.tensor([[True, False, True]])
    elif dtype.is_floating_point:
        t = torch.tensor([[1.5, -2.25, float("inf")], [0.0, -0.0, float("nan")]], dtype=dtype)
    else:
        info = torch.iinfo(dtype)
        t = torch.tensor([info.min, 0, info.max], dtype=dtype)
    out = decode(encode(t))
    same(out, t)
    assert type(out) is torch.Tensor and out.is_contiguous() and not out.requires_grad


@pytest.mark.parametrize("tensor", [
    torch.tensor(3.25, dtype=torch.float64),  # 0-dim
    torch.tensor(7, dtype=torch.int64),
    torch.empty(0),
    torch.empty(2, 0, 3, dtype=torch.bfloat16),
    torch.arange(12.0).reshape(3, 4).t(),  # transposed
    torch.arange(20, dtype=torch.int32)[::3],  # strided
    torch.ones(1, 3).expand(4, 3),  # stride 0
    torch.randn(2, 3, dtype=torch.float64),
    torch.randn(3, 3).to(torch.bfloat16)[:, 1],
    torch.diagonal(torch.randn(1, 1)).view(-1, 1),  # one element with stride 2: "contiguous" but not viewable
], ids=lambda t: f"{t.dtype}{list(t.shape)}")
def test_tensor_shapes_and_layouts_round_trip(tensor):
    out = decode(encode(tensor))
    same(out, tensor)
    out.add_(1)  # a fresh, writable tensor: the original is untouched
    assert not torch.equal(out, tensor) or tensor.numel() == 0


@pytest.mark.parametrize("tensor, order", [
    (torch.arange(12.0).reshape(3, 4).t(), [1, 0]),
    (torch.randn(2, 3, 4).permute(2, 0, 1), [1, 2, 0]),
    (torch.randn(5, 1, 3).transpose(0, 2), [1, 2, 0]),  # a size-1 dimension goes anywhere
    (torch.arange(20, dtype=torch.int32)[::3], None),  # a step: no permutation makes it contiguous
    (torch.ones(1, 3).expand(4, 3), None),
    (torch.randn(3, 4), None),
], ids=lambda x: str(x) if x is None or isinstance(x, list) else f"{list(x.shape)}{list(x.stride())}")
def test_a_permuted_tensor_is_sent_in_its_memory_order_and_received_in_order(tensor, order):
    """A transposed result costs its sender a plain copy, not a gather (what a timed call would count)."""
    data = encode(tensor)
    header = json.loads(data[channel.PREFIX_SIZE:channel.PREFIX_SIZE + int.from_bytes(data[4:8], "little")])
    assert header["tensor"].get("order") == order
    out = decode(data)
    same(out, tensor)
    assert out.is_contiguous()


@pytest.mark.parametrize("order", [[0, 0], [1], [2, 0], "1,0", [1.0, 0], [True, False]], ids=str)
def test_decode_refuses_a_bad_order(order):
    spec = {"dtype": "float32", "shape": [2, 3], "offset": 0, "nbytes": 24, "order": order}
    with pytest.raises(ProtocolError, match="bad order"):
        decode(frame({"tensor": spec}, b"\0" * 24))


def test_requires_grad_is_not_transported():
    x = torch.randn(3, requires_grad=True) * 2
    out = decode(encode([x]))[0]
    assert not out.requires_grad and torch.equal(out, x.detach())


def test_send_recv_over_a_pipe_including_a_frame_larger_than_the_pipe(pipe):
    r, w = pipe
    big = {"t": torch.randn(512, 1024), "tail": (1, "x")}  # 2 MiB: send must wait for reads
    sender = threading.Thread(target=lambda: (send(w, big), send(w, None)))
    sender.start()
    same(recv(r, timeout=10), big)
    assert recv(r, timeout=10) is None
    sender.join()


def test_file_objects_are_accepted(pipe):
    r, w = pipe
    with os.fdopen(os.dup(w), "wb", buffering=0) as wf, os.fdopen(os.dup(r), "rb") as rf:
        send(wf, [1, 2])
        assert recv(rf, timeout=1) == [1, 2]
    with pytest.raises(TypeError, match="file descriptor"):
        send("not a file", 1)


# --------------------------------------------------------------------------- encode refusals


class Liar:
    """Claims to equal everything."""

    def __eq__(self, other):
        return True

    __hash__ = object.__hash__


class MyTensor(torch.Tensor):
    pass


class MyFloat(float):
    def __eq__(self, other):
        return True

    __hash__ = float.__hash__


def cycle():
    x = [1]
    x.append(x)
    return x


@pytest.mark.parametrize("value, message", [
    (Liar(), r"the value is a .*Liar, which cannot be sent"),
    ([1, {"k": Liar()}], r"\[1\]\['k'\] is a .*Liar"),
    (torch.ones(2).as_subclass(MyTensor), r"MyTensor, a subclass of torch.Tensor"),
    (torch.nn.Parameter(torch.ones(2)), r"Parameter, a subclass of torch.Tensor"),
    (np.zeros(3), r"numpy.ndarray, which cannot be sent"),
    (np.float64(1.0), r"numpy.float64"),
    (MyFloat(1.0), r"MyFloat"),
    (bytearray(b"x"), r"bytearray"),
    ({1: "int key"}, r"dict with the key 1 of type int"),
    (torch.ones(2, dtype=torch.complex64), r"dtype torch.complex64"),
    (torch.ones(2, 2).to_sparse(), r"sparse_coo tensor"),
    (torch.empty(2, device="meta"), r"on meta"),
    ({1, 2}, r"a set"),
    (cycle(), r"nested deeper than 64 levels \(a cycle\?\)"),
    pytest.param(2 ** 1024, r"an int of 1025 bits, more than the limit of 1024", id="huge-int"),
])
def test_encode_refuses_anything_but_plain_data(value, message):
    with pytest.raises(EncodeError, match=message):
        encode(value)


def test_encode_refuses_frames_over_the_limit():
    with pytest.raises(EncodeError, match="too large: it needs a"):
        encode(torch.zeros(1000), max_frame=1000)


def test_send_writes_nothing_when_encoding_fails(pipe):
    r, w = pipe
    with pytest.raises(EncodeError):
        send(w, [1, np.zeros(1)])
    send(w, "after")
    assert recv(r, timeout=1) == "after"


# --------------------------------------------------------------------------- decode refusals


def tensor_header(**overrides):
    spec = {"dtype": "float32", "shape": [2, 3], "offset": 0, "nbytes": 24}
    spec.update(overrides)
    return {"tensor": spec}


@pytest.mark.parametrize("data, message", [
    (b"", "shorter than its 16-byte prefix"),
    (os.urandom(64), "bad frame magic"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "bad frame magic"),
    (frame(b"", hlen=0), "empty header"),
    (frame([1, 2])[:-1], "announces 22 bytes but the frame has 21"),
    (frame([1, 2], hlen=100), "announces"),
    (frame(b"{not json"), "not JSON"),
    (frame(b"\xff\xfe"), "not UTF-8"),
    (frame(b"1" * 10**6), "int of more than 1024 bits"),  # refused before int() runs
    (frame(str(2**1024).encode()), "int of more than 1024 bits"),
    (frame(b"[" * 100000 + b"]" * 100000), "cannot be read|nested deeper"),
    (frame({"pickle": "cos\nsystem\n"}), "unknown or malformed tag"),
    (frame({"tuple": [], "dict": {}}), "one-key tag object"),
    (frame({"dict": [1]}), "unknown or malformed tag"),
    (frame({"bytes": {"offset": 0}}, b""), "unknown or malformed tag"),
    (frame(tensor_header(), b"\0" * 24 + b"extra"), "header accounts for 24"),
    (frame(tensor_header(nbytes=4), b"\0" * 4), "needs 24 bytes, header says 4"),
    (frame(tensor_header(nbytes=10**12), b"\0" * 24), "needs 24 bytes"),
    (frame(tensor_header(shape=[10**6, 10**6], nbytes=4 * 10**12), b"\0" * 24),
     "past the 24-byte payload"),
    (frame(tensor_header(), b"\0" * 12), "past the 12-byte payload"),
    (frame(tensor_header(offset=4), b"\0" * 28), "starts at byte 4, expected 0"),
    (frame(tensor_header(offset=-1), b"\0" * 24), "starts at byte -1"),
    (frame(tensor_header(nbytes=24.0), b"\0" * 24), "bad offset/nbytes"),
    (frame(tensor_header(dtype="object"), b"\0" * 24), "dtype 'object'"),
    (frame(tensor_header(dtype="complex64"), b"\0" * 24), "dtype 'complex64'"),
    (frame(tensor_header(shape=[2, -3]), b"\0" * 24), "bad shape"),
    (frame(tensor_header(shape=[True, 3]), b"\0" * 24), "bad shape"),
    (frame(tensor_header(shape="2,3"), b"\0" * 24), "bad shape"),
    (frame(tensor_header(shape=[1] * 33, nbytes=4), b"\0" * 4), "bad shape"),
    (frame({"tensor": {"dtype": "float32", "shape": [1], "offset": 0, "nbytes": 4,
                       "storage": "evil"}}, b"\0" * 4), "unknown or malformed tag"),
], ids=lambda x: x if isinstance(x, str) else "")
def test_decode_refuses_bad_frames(data, message):
    with pytest.raises(ProtocolError, match=message):
        decode(data)


def test_decode_depth_limit():
    deep = frame(json.loads("[" * 70 + "]" * 70))
    with pytest.raises(ProtocolError, match="nested deeper than 64 levels"):
        decode(deep)
    assert decode(deep, max_depth=100) is not None


def test_decode_frame_size_limit():
    with pytest.raises(ProtocolError, match="more than the limit of 10"):
        decode(frame([1, 2, 3, 4, 5, 6]), max_frame=10)


def test_recv_refuses_a_huge_announced_frame_before_reading_it(pipe):
    r, w = pipe
    os.write(w, struct.pack("<4sIQ", b"SSLG", 2, 10**12) + b"[]")
    with pytest.raises(ProtocolError, match="announces 1000000000002 bytes"):  # had it read on, it would have
        recv(r, timeout=60)                                                    # timed out: ChannelTimeout


def test_recv_refuses_garbage(pipe):
    r, w = pipe
    os.write(w, b"Traceback (most recent call last):\n")
    with pytest.raises(ProtocolError, match="bad frame magic"):
        recv(r, timeout=1)


# --------------------------------------------------------------------------- I/O failures


def test_recv_times_out_on_silence_and_on_a_partial_frame(pipe):
    r, w = pipe
    start = time.monotonic()
    with pytest.raises(ChannelTimeout):
        recv(r, timeout=0.2)
    assert time.monotonic() - start >= 0.2  # it waited its timeout out (a lower bound only: load can only lengthen it)
    os.write(w, encode([1, 2, 3])[:-3])
    with pytest.raises(ChannelTimeout):
        recv(r, timeout=0.2)


def test_recv_reports_eof_at_a_frame_boundary_and_inside_a_frame(pipe):
    r, w = pipe
    os.write(w, encode("whole"))
    os.close(w)
    assert recv(r, timeout=1) == "whole"
    with pytest.raises(ChannelClosed, match="closed the channel$"):
        recv(r, timeout=1)
    r2, w2 = os.pipe()
    os.write(w2, encode("cut")[:-1])
    os.close(w2)
    with pytest.raises(ChannelClosed, match="in the middle of a frame"):
        recv(r2, timeout=1)
    os.close(r2)


def test_send_to_a_closed_reader(pipe):
    r, w = pipe
    os.close(r)
    with pytest.raises(ChannelClosed):
        send(w, "nobody listens")


def test_send_times_out_when_nobody_reads_and_restores_blocking_mode(pipe):
    r, w = pipe
    with pytest.raises(ChannelTimeout):
        send(w, torch.zeros(1 << 20), timeout=0.2)  # 4 MiB into a 64 KiB pipe
    assert os.get_blocking(w)
