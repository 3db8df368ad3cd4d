"""One message type on the wire, and its encoding to bytes without pickle.

Everything that crosses between a client and the server is a :class:`Message`: a kind, the
client id, the training step, a sequence number, a few named tensors and a few small scalars.
:func:`encode` turns it into bytes and :func:`decode` turns bytes back into a ``Message``.
Introduced in notebook 01 (what crosses the wire, and how many bytes).

Byte layout (all integers little-endian)::

    b"FLGW"  version:u8  header_len:u32  header (UTF-8 JSON)  tensor buffers (concatenated)

The JSON header holds ``kind``, ``client_id``, ``step``, ``seq``, ``meta`` and, per tensor,
``name``, ``dtype``, ``shape``, ``offset`` and ``nbytes``. Tensor data is raw little-endian
bytes of a whitelisted dtype.

Why not ``torch.save``/``pickle``: unpickling received bytes runs code chosen by the sender.
Here decoding only ever parses JSON and copies bytes, and :func:`decode` checks every field
against :class:`Limits` *before* allocating anything, so a hostile or corrupted message costs
the receiver a ``WireError``, never a crash, an out-of-memory or remote code execution.

Threat model: this module gives no secrecy and no integrity; anyone who sees the bytes can
read every tensor. Encryption and authentication live in :mod:`flglm_kit.crypto`.
"""

from __future__ import annotations

import json
import math
import re
import struct
import sys
from dataclasses import dataclass, field, fields
from typing import Any, Union

import numpy as np
import torch

__all__ = [
    "ALLOWED_DTYPES", "DEFAULT_LIMITS", "KINDS", "Limits", "Message", "MetaValue", "ProtocolError",
    "WireError", "decode", "encode", "payload_nbytes", "valid_name",
]


class ProtocolError(Exception):
    """Base of every error about a received message/frame.

    The text says what was wrong and how to fix it.
    """


class WireError(ProtocolError, ValueError):
    """A message or frame could not be encoded/decoded (malformed, oversized, wrong dtype...)."""


KINDS: tuple[str, ...] = (
    "hello", "welcome", "activations", "trunk_output", "output_grads", "activation_grads", "error",
    "client_update",  # FedAvg of the client blocks (notebook 06); new kinds go at the end: codes are indices
)
ALLOWED_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
    "int64": torch.int64, "int32": torch.int32, "int16": torch.int16, "int8": torch.int8,
    "uint8": torch.uint8, "bool": torch.bool,
}
_DTYPE_NAMES: dict[torch.dtype, str] = {dt: name for name, dt in ALLOWED_DTYPES.items()}

MAGIC = b"FLGW"
VERSION = 1
_PREFIX = struct.Struct("<4sBI")  # magic, version, header length
_NAME_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_U63 = 2**63
_HEADER_KEYS = frozenset({"kind", "client_id", "step", "seq", "meta", "tensors"})
_TENSOR_KEYS = frozenset({"name", "dtype", "shape", "offset", "nbytes"})

MetaValue = Union[str, int, float, bool]  # noqa: UP007 - a runtime alias, also on Python 3.10


@dataclass(frozen=True)
class Limits:
    """Upper bounds that :func:`encode` and :func:`decode` enforce (all positive ints).

    Example:
        >>> Limits(max_tensors=4).max_tensors
        4
    """

    max_bytes: int = 512 * 2**20
    max_header_bytes: int = 64 * 2**10
    max_tensors: int = 16
    max_rank: int = 4
    max_elements: int = 2**27
    max_meta_items: int = 32
    max_str_len: int = 4096

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if type(value) is not int or value <= 0:
                raise ValueError(f"Limits.{f.name} must be a positive int, got {value!r}")


DEFAULT_LIMITS = Limits()


@dataclass(eq=False, repr=False)
class Message:
    """The one thing that crosses the wire (introduced in notebook 04).

    ``eq=False``: tensors have no single truth value, so two messages compare by identity.

    Example:
        >>> Message("activations", "c0", step=3, tensors={"activations": torch.zeros(2, 4)})
        Message(kind='activations', client_id='c0', step=3, seq=0, \
tensors={'activations': (2, 4) float32}, meta={})
    """

    kind: str
    client_id: str
    step: int
    seq: int = 0
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict[str, MetaValue] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """What the message carries, without tensor data (for logs and notebooks).

        Example:
            >>> Message("hello", "c1", 0, meta={"n": 1}).summary()["meta"]
            {'n': 1}
        """
        return {
            "kind": self.kind, "client_id": self.client_id, "step": self.step, "seq": self.seq,
            "tensors": {n: (tuple(t.shape), _dtype_name(t)) for n, t in self.tensors.items()},
            "meta": dict(self.meta),
        }

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{n!r}: {tuple(t.shape)} {_dtype_name(t)}" for n, t in self.tensors.items()
        )
        return (
            f"Message(kind={self.kind!r}, client_id={self.client_id!r}, step={self.step}, "
            f"seq={self.seq}, tensors={{{shown}}}, meta={self.meta!r})"
        )


def _dtype_name(t: Any) -> str:
    """Dtype as a short name ("float32"), tolerant of non-tensors for repr's sake."""
    return str(getattr(t, "dtype", type(t).__name__)).replace("torch.", "")


def _allowed_list() -> str:
    return ", ".join(ALLOWED_DTYPES)


def valid_name(value: object) -> bool:
    """Whether ``value`` is a valid client id, tensor name or meta key: 1-64 of [A-Za-z0-9_.-].

    Example:
        >>> valid_name("hospital-a"), valid_name("a b"), valid_name("")
        (True, False, False)
    """
    return type(value) is str and _NAME_RE.fullmatch(value) is not None


def _check_name(value: Any, what: str) -> str:
    if not valid_name(value):
        raise WireError(
            f"{what} {value!r} is not valid: use 1 to 64 characters from A-Z a-z 0-9 _ . -"
        )
    return value


def _check_u63(value: Any, what: str) -> int:
    # type() rather than isinstance: JSON true/false must not pass as 1/0.
    if type(value) is not int or not 0 <= value < _U63:
        raise WireError(f"{what} must be an int in [0, 2**63), got {value!r}")
    return value


def _check_meta(meta: Any, limits: Limits) -> dict[str, MetaValue]:
    if type(meta) is not dict:
        raise WireError(f"meta must be a dict of small scalars, got {type(meta).__name__}")
    if len(meta) > limits.max_meta_items:
        raise WireError(f"meta has {len(meta)} items, over the limit of {limits.max_meta_items}")
    for key, value in meta.items():
        _check_name(key, "meta key")
        kind = type(value)
        if kind is int and not -_U63 <= value < _U63:
            raise WireError(f"meta[{key!r}] = {value} does not fit in a signed 64-bit int")
        elif kind is float and not math.isfinite(value):
            raise WireError(f"meta[{key!r}] = {value} is not finite; NaN and infinity are not "
                            "allowed")
        elif kind is str and len(value) > limits.max_str_len:
            raise WireError(
                f"meta[{key!r}] is a string of {len(value)} characters, over the limit of "
                f"{limits.max_str_len}"
            )
        elif kind not in (int, float, str, bool):
            raise WireError(
                f"meta[{key!r}] has type {kind.__name__}; meta holds only str, int, float, bool "
                "(put arrays in tensors)"
            )
    return dict(meta)


_Spec = tuple[str, torch.dtype, tuple[int, ...], int]  # name, dtype, shape, nbytes


def _check_tensor_spec(spec: Any, offset: int, limits: Limits) -> _Spec:
    if type(spec) is not dict or set(spec) != _TENSOR_KEYS:
        raise WireError(f"each tensor entry must be an object with keys {sorted(_TENSOR_KEYS)}")
    name = _check_name(spec["name"], "tensor name")
    dtype_name = spec["dtype"]
    if type(dtype_name) is not str or dtype_name not in ALLOWED_DTYPES:
        raise WireError(
            f"tensor {name!r} has dtype {dtype_name!r}, which is not allowed; send one of "
            f"{_allowed_list()}"
        )
    shape = spec["shape"]
    if type(shape) is not list or len(shape) > limits.max_rank:
        raise WireError(f"tensor {name!r} shape must be a list of at most {limits.max_rank} dims")
    if any(type(d) is not int or d < 0 for d in shape):
        raise WireError(f"tensor {name!r} shape {shape!r} must hold non-negative ints")
    # Treating 0 as 1 also bounds the strides of empty tensors like [0, 2**40, 2**40].
    bound = math.prod(max(d, 1) for d in shape)
    if bound > limits.max_elements:
        raise WireError(
            f"tensor {name!r} has shape {shape} ({bound} elements), over the limit of "
            f"{limits.max_elements}; send smaller batches or raise Limits.max_elements"
        )
    dtype = ALLOWED_DTYPES[dtype_name]
    nbytes = math.prod(shape) * dtype.itemsize
    if type(spec["nbytes"]) is not int or spec["nbytes"] != nbytes:
        raise WireError(f"tensor {name!r} claims {spec['nbytes']!r} bytes; shape {shape} "
                        f"of {dtype_name} needs {nbytes}")
    if type(spec["offset"]) is not int or spec["offset"] != offset:
        raise WireError(f"tensor {name!r} starts at offset {spec['offset']!r}; buffers must be "
                        f"contiguous, so it must start at {offset}")
    return name, dtype, tuple(shape), nbytes


def _check_header(header: Any, limits: Limits) -> tuple[Message, list[_Spec], int]:
    """Validate a parsed header; return the tensor-less message, tensor specs and payload size."""
    if type(header) is not dict:
        raise WireError(f"header must be a JSON object, got {type(header).__name__}")
    if set(header) != _HEADER_KEYS:
        missing, extra = sorted(_HEADER_KEYS - set(header)), sorted(set(header) - _HEADER_KEYS)
        raise WireError(f"header keys are wrong (missing {missing}, unexpected {extra})")
    kind = header["kind"]
    if type(kind) is not str or kind not in KINDS:
        raise WireError(f"kind {kind!r} is unknown; use one of {', '.join(KINDS)}")
    msg = Message(
        kind=kind,
        client_id=_check_name(header["client_id"], "client id"),
        step=_check_u63(header["step"], "step"),
        seq=_check_u63(header["seq"], "seq"),
        meta=_check_meta(header["meta"], limits),
    )
    entries = header["tensors"]
    if type(entries) is not list or len(entries) > limits.max_tensors:
        raise WireError(f"tensors must be a list of at most {limits.max_tensors} entries")
    specs: list[_Spec] = []
    offset = 0
    for entry in entries:
        spec = _check_tensor_spec(entry, offset, limits)
        if any(spec[0] == s[0] for s in specs):
            raise WireError(f"tensor name {spec[0]!r} appears twice; names must be unique")
        specs.append(spec)
        offset += spec[3]
    return msg, specs, offset


def _little_endian(u8: np.ndarray, itemsize: int) -> np.ndarray:
    """Reverse each element's bytes on big-endian hosts; the wire is always little-endian."""
    if sys.byteorder == "little" or itemsize == 1:
        return u8
    return np.ascontiguousarray(u8.reshape(-1, itemsize)[:, ::-1]).reshape(-1)


def _tensor_bytes(t: torch.Tensor) -> bytes:
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    return _little_endian(flat.view(torch.uint8).numpy(), t.element_size()).tobytes()


def encode(msg: Message, *, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """Encode a message to bytes (no pickle), checking it against ``limits`` first.

    Args:
        msg: the message; tensors are detached, moved to CPU and made contiguous.
        limits: size and shape bounds; a message the receiver would reject fails here.

    Returns:
        The encoded bytes.

    Raises:
        WireError: the message is invalid (unknown kind, bad id, disallowed dtype, too big...).

    Example:
        >>> data = encode(Message("activations", "c0", 1, tensors={"x": torch.ones(2, 3)}))
        >>> decode(data).tensors["x"].sum().item()
        6.0
    """
    if not isinstance(msg, Message):
        raise WireError(f"encode expects a Message, got {type(msg).__name__}")
    if type(msg.tensors) is not dict:
        raise WireError(f"tensors must be a dict of name -> torch.Tensor, got "
                        f"{type(msg.tensors).__name__}")
    entries: list[dict[str, Any]] = []
    offset = 0
    for name, t in msg.tensors.items():
        if not isinstance(t, torch.Tensor) or t.layout != torch.strided:
            raise WireError(f"tensor {name!r} must be a dense torch.Tensor, got {type(t).__name__}")
        if t.dtype not in _DTYPE_NAMES:
            raise WireError(
                f"tensor {name!r} has dtype {_dtype_name(t)!r}, which is not allowed; send one "
                f"of {_allowed_list()} (e.g. call .float() first)"
            )
        nbytes = t.numel() * t.element_size()
        entries.append({"name": name, "dtype": _DTYPE_NAMES[t.dtype], "shape": list(t.shape),
                        "offset": offset, "nbytes": nbytes})
        offset += nbytes
    header = {"kind": msg.kind, "client_id": msg.client_id, "step": msg.step, "seq": msg.seq,
              "meta": msg.meta, "tensors": entries}
    _, _, payload = _check_header(header, limits)  # same checks as the receiver, before copying
    header_bytes = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    if len(header_bytes) > limits.max_header_bytes:
        raise WireError(f"header is {len(header_bytes)} bytes, over the limit of "
                        f"{limits.max_header_bytes}; shorten meta")
    total = _PREFIX.size + len(header_bytes) + payload
    if total > limits.max_bytes:
        raise WireError(f"message would be {total} bytes, over the limit of {limits.max_bytes}; "
                        "send smaller batches or raise Limits.max_bytes")
    try:
        buffers = [_tensor_bytes(t) for t in msg.tensors.values()]
    except (RuntimeError, NotImplementedError) as err:  # e.g. meta-device tensors
        raise WireError(f"could not read tensor data: {err}") from err
    return b"".join([_PREFIX.pack(MAGIC, VERSION, len(header_bytes)), header_bytes, *buffers])


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A key given twice could mean different things to different parsers; refuse it.
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate key in a JSON object")
    return obj


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON here")


def _parse_header(raw: memoryview) -> Any:
    try:
        text = str(raw, "utf-8")
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
        raise WireError(f"header is not valid UTF-8 JSON: {str(err)[:200]}") from err


def _read_tensor(body: memoryview, spec: _Spec, offset: int) -> torch.Tensor:
    """Copy one tensor's bytes into fresh, writable, torch-owned memory."""
    name, dtype, shape, nbytes = spec
    src = np.frombuffer(body, dtype=np.uint8, count=nbytes, offset=offset)
    if dtype == torch.bool and nbytes and int(src.max()) > 1:
        raise WireError(f"tensor {name!r} is bool but holds bytes other than 0 and 1")
    out = torch.empty(nbytes, dtype=torch.uint8)
    out.numpy()[:] = _little_endian(src, dtype.itemsize)
    return out.view(dtype).reshape(shape)


def decode(data: bytes | bytearray | memoryview, *, limits: Limits = DEFAULT_LIMITS) -> Message:
    """Decode bytes made by :func:`encode`, validating everything before allocating.

    Args:
        data: the received bytes (``bytes``, ``bytearray`` or ``memoryview``).
        limits: size and shape bounds; anything beyond them is rejected.

    Returns:
        A new message whose tensors are fresh, writable CPU tensors.

    Raises:
        WireError: the bytes are malformed, oversized or use a disallowed dtype.

    Example:
        >>> decode(encode(Message("hello", "c0", 0, meta={"lr": 0.1}))).meta
        {'lr': 0.1}
        >>> decode(b"not a message")
        Traceback (most recent call last):
        ...
        flglm_kit.wire.WireError: bad magic b'not ': these bytes are not an encoded Message
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise WireError(f"decode expects bytes, got {type(data).__name__}")
    view = memoryview(data).cast("B")
    if len(view) > limits.max_bytes:
        raise WireError(f"message is {len(view)} bytes, over the limit of {limits.max_bytes}")
    if len(view) <= _PREFIX.size:
        raise WireError(f"message is {len(view)} bytes, too short for the "
                        f"{_PREFIX.size}-byte prefix")
    magic, version, header_len = _PREFIX.unpack_from(view)
    if magic != MAGIC:
        raise WireError(f"bad magic {bytes(magic)!r}: these bytes are not an encoded Message")
    if version != VERSION:
        raise WireError(f"wire version {version} is not supported (this kit speaks {VERSION})")
    start = _PREFIX.size + header_len
    if header_len > limits.max_header_bytes or start > len(view):
        raise WireError(f"header length {header_len} is out of bounds (message has "
                        f"{len(view)} bytes, header limit {limits.max_header_bytes})")
    msg, specs, payload = _check_header(_parse_header(view[_PREFIX.size:start]), limits)
    if payload != len(view) - start:
        raise WireError(f"tensor data should be {payload} bytes but {len(view) - start} follow "
                        "the header (truncated message or trailing bytes)")
    body, offset = view[start:], 0
    for spec in specs:
        msg.tensors[spec[0]] = _read_tensor(body, spec, offset)
        offset += spec[3]
    return msg


def payload_nbytes(msg: Message) -> int:
    """Bytes of tensor data in a message (what the wire carries beyond the small header).

    Args:
        msg: the message.

    Returns:
        Sum over tensors of ``numel * element_size``.

    Example:
        >>> payload_nbytes(Message("activations", "c0", 0, tensors={"a": torch.zeros(2, 8)}))
        64
    """
    return sum(t.numel() * t.element_size() for t in msg.tensors.values())
