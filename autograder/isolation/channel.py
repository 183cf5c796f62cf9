"""A data-only message channel over file descriptors (pipes): no pickle, no eval.

The grader and the student's child process exchange *values*, never code. A
value is built from:

- ``None``, ``bool``, ``int`` (at most :data:`MAX_INT_BITS` bits), ``float``
  (``inf`` and ``nan`` included), ``str``, ``bytes``;
- ``list``, ``tuple`` (kept distinct from list), ``dict`` with ``str`` keys;
- ``torch.Tensor`` of a dtype in :data:`DTYPES`, any shape (0-dim and empty
  included). The receiver gets a fresh contiguous CPU tensor with the same
  dtype, shape and values; ``requires_grad``, device and strides are not sent.
  A tensor whose dimensions are a permutation of a contiguous layout (a
  transpose, a permute) is sent in its memory order with that permutation,
  and put in order by the receiver: the cost of reordering falls on the
  reader, after the frame is read (where `read_frame` lets a timer stop).

Types are checked exactly (``type(x) is float``, not ``isinstance``):
subclasses of any of these, tensor subclasses such as ``nn.Parameter`` and
every other object are refused with :class:`EncodeError`, so a decoded value
is always one of the plain types above.

Frame layout (all integers little-endian)::

    magic   4 bytes   b"SSLG"
    hlen    4 bytes   length of the JSON header in bytes
    plen    8 bytes   length of the payload in bytes
    header  hlen      UTF-8 JSON of the value tree
    payload plen      raw bytes of the tensors and bytes objects, in order

In the header, JSON ``null``/``true``/``false``/numbers/strings/arrays stand
for themselves (arrays are lists). Every JSON object is a tag with exactly
one key:

- ``{"tuple": [...]}``
- ``{"dict": {"key": value, ...}}``
- ``{"bytes": {"offset": o, "nbytes": n}}``
- ``{"tensor": {"dtype": "float32", "shape": [2, 3], "offset": o, "nbytes": n}}``,
  optionally with ``"order": [1, 0]``: the payload holds the elements of the
  tensor whose dimensions are permuted by ``order`` (a permutation of the
  dimensions), contiguous; the receiver permutes them back.

Payload segments must follow each other in header order and cover the whole
payload. Decoding uses only ``json.loads`` and ``torch.frombuffer`` and checks
every field; any violation raises :class:`ProtocolError`.
"""
from __future__ import annotations

import json
import math
import os
import select
import struct
import sys
import time
from typing import Any, Union

import torch

MAGIC = b"SSLG"
_PREFIX = struct.Struct("<4sIQ")
PREFIX_SIZE = _PREFIX.size  # 16 bytes

DEFAULT_MAX_FRAME = 512 * 1024 * 1024
"""Largest frame (header + payload, in bytes) that :func:`send`/:func:`recv` accept."""

DEFAULT_MAX_DEPTH = 64
"""Deepest nesting of lists/tuples/dicts accepted (the value itself is depth 0)."""

MAX_DIMS = 32
"""Most dimensions a tensor may have."""

MAX_INT_BITS = 1024
"""Largest ``int`` magnitude that may be sent, in bits (huge ints are slow to parse)."""

DTYPES: dict[str, torch.dtype] = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
    "int8": torch.int8,
    "int16": torch.int16,
    "int32": torch.int32,
    "int64": torch.int64,
    "uint8": torch.uint8,
    "bool": torch.bool,
}
"""Tensor dtypes that may cross the channel, by their wire name."""

_DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}

if sys.byteorder != "little":  # tensor bytes are sent in host order
    raise ImportError("autograder.isolation.channel needs a little-endian machine")

FileLike = Union[int, Any]  # an fd, or an object with fileno()


class ChannelError(Exception):
    """Base class of the errors of this module."""


class EncodeError(ChannelError, TypeError):
    """A value cannot be sent: unsupported type, dtype, depth or size.

    ``path`` is the position of the offending part inside the value, a tuple
    of list indices and dict keys (empty for the value itself), and
    ``reason`` what it is, e.g. ``"a numpy.ndarray, which cannot be sent
    (...)"``; the message is ``"<path> is <reason>"``.
    """

    def __init__(self, reason: str, path: tuple = ()):
        super().__init__(f"{format_path(path)} is {reason}")
        self.reason = reason
        self.path = path


class ProtocolError(ChannelError):
    """Received bytes are not a valid frame (garbage, truncation, lies, limits)."""


class ChannelClosed(ChannelError):
    """The other end closed the channel (EOF or broken pipe)."""


class ChannelTimeout(ChannelError, TimeoutError):
    """No complete frame (or write) within the timeout; the stream is now unusable."""


def format_path(path: tuple) -> str:
    """``(1, "w")`` -> ``"[1]['w']"``; the empty path is ``"the value"``."""
    if not path:
        return "the value"
    return "".join(f"[{p!r}]" for p in path)


def type_name(obj: Any) -> str:
    """Qualified name of ``type(obj)``, e.g. ``"numpy.ndarray"``, ``"float"``."""
    cls = type(obj)
    module = getattr(cls, "__module__", "")
    qualname = getattr(cls, "__qualname__", cls.__name__)
    return qualname if module in ("builtins", "", None) else f"{module}.{qualname}"


# --------------------------------------------------------------------------- encode


def encode(obj: Any, *, max_frame: int = DEFAULT_MAX_FRAME,
           max_depth: int = DEFAULT_MAX_DEPTH) -> bytes:
    """One complete frame (prefix + header + payload) for ``obj``.

    Raises :class:`EncodeError` (nothing is produced) for an unsupported type,
    a tensor subclass, a dtype outside :data:`DTYPES`, a non-strided or meta
    tensor, an int beyond :data:`MAX_INT_BITS`, nesting deeper than
    ``max_depth`` (also catches cycles), or a frame larger than ``max_frame``
    bytes.
    """
    chunks: list[bytes] = []
    offset = [0]
    tree = _encode_node(obj, (), 0, max_depth, chunks, offset)
    header = json.dumps(tree, separators=(",", ":")).encode("ascii")
    plen = offset[0]
    if len(header) + plen > max_frame:
        raise EncodeError(f"too large: it needs a {len(header) + plen}-byte frame, "
                          f"more than the limit of {max_frame} bytes")
    return b"".join([_PREFIX.pack(MAGIC, len(header), plen), header, *chunks])


_ALLOWED = ("allowed: None, bool, int, float, str, bytes, and list, tuple or dict "
            "(with str keys) of those, and plain torch.Tensor")


def _encode_node(obj: Any, path: tuple, depth: int, max_depth: int,
                 chunks: list, offset: list) -> Any:
    """The JSON tree for ``obj``; appends tensor/bytes data to ``chunks``."""
    cls = type(obj)
    if cls is int and obj.bit_length() > MAX_INT_BITS:
        raise EncodeError(f"an int of {obj.bit_length()} bits, more than the limit of "
                          f"{MAX_INT_BITS}", path)
    if obj is None or cls in (bool, int, float, str):
        return obj  # json writes NaN/Infinity/-Infinity for floats and reads them back
    if depth >= max_depth and cls in (list, tuple, dict):
        raise EncodeError(f"nested deeper than {max_depth} levels (a cycle?)", path)
    if cls is list or cls is tuple:
        items = [_encode_node(x, path + (i,), depth + 1, max_depth, chunks, offset)
                 for i, x in enumerate(obj)]
        return items if cls is list else {"tuple": items}
    if cls is dict:
        out = {}
        for key, value in obj.items():
            if type(key) is not str:
                raise EncodeError(f"a dict with the key {_short(key)} of type "
                                  f"{type_name(key)}; only str keys can be sent", path)
            out[key] = _encode_node(value, path + (key,), depth + 1, max_depth,
                                    chunks, offset)
        return {"dict": out}
    if cls is bytes:
        return {"bytes": _add_chunk(obj, chunks, offset)}
    if cls is torch.Tensor:
        return {"tensor": _encode_tensor(obj, path, chunks, offset)}
    if isinstance(obj, torch.Tensor):
        raise EncodeError(f"a {type_name(obj)}, a subclass of torch.Tensor; only plain "
                          "torch.Tensor can be sent", path)
    raise EncodeError(f"a {type_name(obj)}, which cannot be sent ({_ALLOWED})", path)


def _encode_tensor(t: torch.Tensor, path: tuple, chunks: list, offset: list) -> dict:
    name = _DTYPE_NAMES.get(t.dtype)
    if name is None:
        raise EncodeError(f"a tensor of dtype {t.dtype}, which cannot be sent (allowed "
                          f"dtypes: {', '.join(DTYPES)})", path)
    if t.layout != torch.strided or t.is_meta:
        raise EncodeError(f"a {t.layout} tensor on {t.device}; only dense tensors with "
                          "data can be sent", path)
    t = t.detach()
    order = _memory_order(t)
    # a fresh buffer: .contiguous() keeps odd strides on size-1 dims, which view() refuses
    flat = torch.empty(t.numel(), dtype=t.dtype)
    flat.copy_((t if order is None else t.permute(order)).to("cpu").reshape(-1))  # a plain copy, never a gather
    data = flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""
    spec = {"dtype": name, "shape": list(t.shape)}
    if order is not None:
        spec["order"] = order
    spec.update(_add_chunk(data, chunks, offset))
    return spec


def _memory_order(t: torch.Tensor) -> list[int] | None:
    """The permutation of ``t``'s dimensions that is contiguous in memory, where ``t`` itself is not
    (``[1, 0]`` for a transposed matrix); ``None`` for a contiguous tensor or one that no permutation makes
    contiguous (a stride-0 expand, a slice with a step)."""
    if t.dim() < 2 or t.is_contiguous():
        return None
    order = sorted(range(t.dim()), key=lambda d: -t.stride(d))
    return order if t.permute(order).is_contiguous() else None


def _add_chunk(data: bytes, chunks: list, offset: list) -> dict:
    spec = {"offset": offset[0], "nbytes": len(data)}
    chunks.append(data)
    offset[0] += len(data)
    return spec


# --------------------------------------------------------------------------- decode


def decode(frame: bytes, *, max_frame: int = DEFAULT_MAX_FRAME,
           max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """The value in one complete ``frame`` (as produced by :func:`encode`).

    Raises :class:`ProtocolError` for anything but exactly one valid frame.
    """
    if len(frame) < PREFIX_SIZE:
        raise ProtocolError(f"frame is {len(frame)} bytes, shorter than its "
                            f"{PREFIX_SIZE}-byte prefix")
    hlen, plen = parse_prefix(bytes(frame[:PREFIX_SIZE]), max_frame)
    if len(frame) != PREFIX_SIZE + hlen + plen:
        raise ProtocolError(f"frame prefix announces {PREFIX_SIZE + hlen + plen} bytes "
                            f"but the frame has {len(frame)}")
    body = memoryview(frame)[PREFIX_SIZE:]
    return decode_body(body[:hlen], body[hlen:], max_depth=max_depth)


def parse_prefix(prefix: bytes, max_frame: int = DEFAULT_MAX_FRAME) -> tuple[int, int]:
    """``(header_length, payload_length)`` from a 16-byte prefix, validated."""
    magic, hlen, plen = _PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise ProtocolError(f"bad frame magic {magic!r} (expected {MAGIC!r}): "
                            "the stream holds something other than frames")
    if hlen == 0:
        raise ProtocolError("frame has an empty header")
    if hlen + plen > max_frame:
        raise ProtocolError(f"frame announces {hlen + plen} bytes (header {hlen}, "
                            f"payload {plen}), more than the limit of {max_frame}")
    return hlen, plen


def decode_body(header: bytes, payload: bytes, *,
                max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """The value from a frame's JSON ``header`` and ``payload`` bytes."""
    try:
        tree = json.loads(bytes(header).decode("utf-8"), parse_int=_parse_int)
    except UnicodeDecodeError as e:
        raise ProtocolError(f"frame header is not UTF-8: {e}") from None
    except json.JSONDecodeError as e:
        raise ProtocolError(f"frame header is not JSON: {e}") from None
    except RecursionError as e:  # absurd nesting
        raise ProtocolError(f"frame header cannot be read: {e}") from None
    payload = memoryview(payload)
    cursor = [0]
    value = _decode_node(tree, (), 0, max_depth, payload, cursor)
    if cursor[0] != len(payload):
        raise ProtocolError(f"payload has {len(payload)} bytes but the header "
                            f"accounts for {cursor[0]}")
    return value


def _parse_int(text: str) -> int:
    """``int(text)`` for JSON integers, refusing huge ones before converting them."""
    if len(text) > MAX_INT_BITS // 3 + 2 or int(text).bit_length() > MAX_INT_BITS:
        raise ProtocolError(f"frame holds an int of more than {MAX_INT_BITS} bits: "
                            f"{_short(text)}")
    return int(text)


def _decode_node(node: Any, path: tuple, depth: int, max_depth: int,
                 payload: memoryview, cursor: list) -> Any:
    cls = type(node)
    if node is None or cls in (bool, int, float, str):
        return node
    if cls is dict and len(node) == 1:
        (tag, body), = node.items()
    elif cls is list:
        tag, body = "list", node
    else:
        raise ProtocolError(f"bad node at {format_path(path)}: expected a value or "
                            f"a one-key tag object, got {_short(node)}")
    if tag in ("list", "tuple", "dict") and depth >= max_depth:
        raise ProtocolError(f"value nested deeper than {max_depth} levels at "
                            f"{format_path(path)}")
    if tag in ("list", "tuple") and type(body) is list:
        items = [_decode_node(x, path + (i,), depth + 1, max_depth, payload, cursor)
                 for i, x in enumerate(body)]
        return items if tag == "list" else tuple(items)
    if tag == "dict" and type(body) is dict:
        return {k: _decode_node(v, path + (k,), depth + 1, max_depth, payload, cursor)
                for k, v in body.items()}
    if tag == "bytes" and type(body) is dict and set(body) == {"offset", "nbytes"}:
        return bytes(_take(body, path, payload, cursor))
    if tag == "tensor" and type(body) is dict and \
            set(body) - {"order"} == {"dtype", "shape", "offset", "nbytes"}:
        return _decode_tensor(body, path, payload, cursor)
    raise ProtocolError(f"unknown or malformed tag at {format_path(path)}: {_short(node)}")


def _decode_tensor(spec: dict, path: tuple, payload: memoryview, cursor: list
                   ) -> torch.Tensor:
    dtype = DTYPES.get(spec["dtype"]) if type(spec["dtype"]) is str else None
    if dtype is None:
        raise ProtocolError(f"tensor at {format_path(path)} has dtype "
                            f"{_short(spec['dtype'])}; allowed: {', '.join(DTYPES)}")
    shape = spec["shape"]
    if type(shape) is not list or len(shape) > MAX_DIMS or \
            any(type(d) is not int or d < 0 for d in shape):
        raise ProtocolError(f"tensor at {format_path(path)} has a bad shape "
                            f"{_short(shape)}: expected at most {MAX_DIMS} "
                            "non-negative ints")
    itemsize = torch.empty((), dtype=dtype).element_size()
    expected = math.prod(shape) * itemsize
    if spec["nbytes"] != expected:
        raise ProtocolError(f"tensor at {format_path(path)} of shape {shape} and dtype "
                            f"{spec['dtype']} needs {expected} bytes, header says "
                            f"{_short(spec['nbytes'])}")
    order = spec.get("order")
    if order is not None and (type(order) is not list or any(type(d) is not int for d in order)
                              or sorted(order) != list(range(len(shape)))):
        raise ProtocolError(f"tensor at {format_path(path)} of shape {shape} has a bad order "
                            f"{_short(order)}: expected a permutation of its {len(shape)} dimensions")
    data = _take(spec, path, payload, cursor)
    if expected == 0:
        return torch.empty(shape, dtype=dtype)
    if order is None:
        return torch.frombuffer(bytearray(data), dtype=dtype).reshape(shape)
    stored = torch.frombuffer(bytearray(data), dtype=dtype).reshape([shape[d] for d in order])
    inverse = sorted(range(len(order)), key=order.__getitem__)
    return stored.permute(inverse).contiguous()


def _take(spec: dict, path: tuple, payload: memoryview, cursor: list) -> memoryview:
    """The payload segment ``spec`` describes; it must start at ``cursor``."""
    offset, nbytes = spec["offset"], spec["nbytes"]
    if type(offset) is not int or type(nbytes) is not int or nbytes < 0:
        raise ProtocolError(f"bad offset/nbytes at {format_path(path)}: "
                            f"{_short(offset)}, {_short(nbytes)}")
    if offset != cursor[0]:
        raise ProtocolError(f"segment at {format_path(path)} starts at byte {offset}, "
                            f"expected {cursor[0]} (segments must be in order)")
    if offset + nbytes > len(payload):
        raise ProtocolError(f"segment at {format_path(path)} ends at byte "
                            f"{offset + nbytes}, past the {len(payload)}-byte payload")
    cursor[0] = offset + nbytes
    return payload[offset:offset + nbytes]


def _short(x: Any, limit: int = 80) -> str:
    text = repr(x)
    return text if len(text) <= limit else text[:limit] + "..."


# --------------------------------------------------------------------------- I/O


def send(dest: FileLike, obj: Any, *, timeout: float | None = None,
         max_frame: int = DEFAULT_MAX_FRAME) -> None:
    """Encode ``obj`` and write the frame to ``dest`` (an fd or an object with ``fileno()``).

    The whole value is encoded before anything is written, so on
    :class:`EncodeError` the stream is untouched. Raises :class:`ChannelClosed`
    if the reader is gone and :class:`ChannelTimeout` if the frame could not be
    written within ``timeout`` seconds (``None``: wait as long as it takes).
    """
    frame = memoryview(encode(obj, max_frame=max_frame))
    fd = _fileno(dest)
    deadline = None if timeout is None else time.monotonic() + timeout
    was_blocking = os.get_blocking(fd)
    os.set_blocking(fd, False)
    try:
        while frame:
            _wait(fd, deadline, for_write=True)
            try:
                written = os.write(fd, frame)
            except BlockingIOError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                raise ChannelClosed("the reader closed the channel") from None
            frame = frame[written:]
    finally:
        os.set_blocking(fd, was_blocking)


def recv(src: FileLike, timeout: float | None = None, *,
         max_frame: int = DEFAULT_MAX_FRAME, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Read one frame from ``src`` (an fd or an object with ``fileno()``) and decode it.

    ``timeout`` bounds the whole frame, in seconds (``None``: wait forever).
    Raises :class:`ChannelTimeout`, :class:`ChannelClosed` (EOF, also in the
    middle of a frame) or :class:`ProtocolError`. The prefix is checked against
    ``max_frame`` before any buffer for the body is allocated.
    """
    return decode_body(*read_frame(src, timeout, max_frame=max_frame), max_depth=max_depth)


def read_frame(src: FileLike, timeout: float | None = None, *,
               max_frame: int = DEFAULT_MAX_FRAME) -> tuple[memoryview, memoryview]:
    """Read one frame from ``src`` without decoding it: ``(header, payload)`` for :func:`decode_body`.

    The same checks and errors as :func:`recv` (which is this, then ``decode_body``), less decoding's.
    """
    fd = _fileno(src)
    deadline = None if timeout is None else time.monotonic() + timeout
    prefix = _read_exact(fd, PREFIX_SIZE, deadline, at_start=True)
    hlen, plen = parse_prefix(bytes(prefix), max_frame)
    body = _read_exact(fd, hlen + plen, deadline, at_start=False)
    return body[:hlen], body[hlen:]


def _read_exact(fd: int, n: int, deadline: float | None, at_start: bool) -> memoryview:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        _wait(fd, deadline, for_write=False)
        try:
            count = os.readv(fd, [view[got:]])
        except BlockingIOError:
            continue
        if count == 0:
            where = "" if at_start and got == 0 else f" in the middle of a frame " \
                                                     f"({got} of {n} bytes read)"
            raise ChannelClosed(f"the writer closed the channel{where}")
        got += count
    return view


def _wait(fd: int, deadline: float | None, for_write: bool) -> None:
    """Block until ``fd`` is writable/readable (or closed); ChannelTimeout at ``deadline``."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT if for_write else select.POLLIN)
    remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
    if not poller.poll(None if remaining is None else math.ceil(remaining * 1000)):
        raise ChannelTimeout("timed out waiting to " + ("write" if for_write else "read")
                             + " a frame")


def _fileno(f: FileLike) -> int:
    if type(f) is int:
        return f
    try:
        return f.fileno()
    except AttributeError:
        raise TypeError(f"expected a file descriptor or an object with fileno(), "
                        f"got {type_name(f)}") from None


def plain(value: Any, depth: int = 0) -> Any:
    """``value`` with every tensor detached and made a plain ``torch.Tensor``, ready to send.

    For values the sender trusts (the grader's own results, the child's
    arguments to a callback); `encode` still refuses anything else.
    """
    if depth > DEFAULT_MAX_DEPTH:
        return value  # the encoder reports the depth
    if isinstance(value, torch.Tensor):
        return value.detach().as_subclass(torch.Tensor)
    if type(value) in (list, tuple):
        return type(value)(plain(v, depth + 1) for v in value)
    if type(value) is dict:
        return {k: plain(v, depth + 1) for k, v in value.items()}
    return value
