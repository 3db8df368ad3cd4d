"""Frames: a clear header, then the body (``encode(msg)``, encrypted or not).

Parsing the header, building and reading plaintext frames, and the check that a frame's message
repeats its header. Layout in :mod:`flglm_kit.crypto`. Introduced in notebook 04 (peer clients
and key encryption), where :func:`peek_header` shows what an eavesdropper reads.
"""

from __future__ import annotations

import dataclasses
import struct

from flglm_kit.crypto.errors import ChannelError
from flglm_kit.wire import DEFAULT_LIMITS, KINDS, Limits, Message, WireError, decode, encode
from flglm_kit.wire import _check_name, _check_u63  # one definition of a valid id and counter

__all__ = ["FRAME_MAGIC", "FRAME_VERSION", "FrameHeader", "open_plain", "peek_header",
           "plain_frame"]

FRAME_MAGIC = b"FLGF"
FRAME_VERSION = 1
_ENCRYPTED = 0x01  # flags bit 0
_HEAD = struct.Struct(">4sBBBB")  # magic, version, flags, kind code, client id length
_TAIL = struct.Struct(">QQ")  # step, seq
_FRAME_OVERHEAD = 1024  # frame header + GCM tag, with room to spare


@dataclasses.dataclass(frozen=True)
class FrameHeader:
    """The clear part of a frame: what an eavesdropper (and the server's router) can read.

    Example:
        >>> FrameHeader("activations", "c0", 1, 1, True).pack()[:6]
        b'FLGF\\x01\\x01'
    """

    kind: str
    client_id: str
    step: int
    seq: int
    encrypted: bool

    def pack(self) -> bytes:
        """The header bytes exactly as they lead a frame (and as GCM associated data)."""
        cid, flags = self.client_id.encode(), _ENCRYPTED if self.encrypted else 0
        head = _HEAD.pack(FRAME_MAGIC, FRAME_VERSION, flags, KINDS.index(self.kind), len(cid))
        return head + cid + _TAIL.pack(self.step, self.seq)


def _split_frame(frame: bytes, limits: Limits) -> tuple[FrameHeader, bytes, memoryview]:
    """Parse the clear header; return it, its raw bytes and the body (a view: no copy)."""
    if not isinstance(frame, (bytes, bytearray, memoryview)):
        raise WireError(f"a frame must be bytes, got {type(frame).__name__}")
    view = memoryview(frame).cast("B")
    if len(view) > limits.max_bytes + _FRAME_OVERHEAD:
        raise WireError(f"frame is {len(view)} bytes, over the limit of "
                        f"{limits.max_bytes + _FRAME_OVERHEAD}")
    if len(view) < _HEAD.size:
        raise WireError(f"frame is {len(view)} bytes, too short for a frame header")
    magic, version, flags, code, id_len = _HEAD.unpack_from(view)
    if magic != FRAME_MAGIC or version != FRAME_VERSION:
        raise WireError(f"frame starts {magic!r} version {version}; expected {FRAME_MAGIC!r} "
                        f"version {FRAME_VERSION} (not a frame, or another kit version)")
    if flags & ~_ENCRYPTED or code >= len(KINDS):
        raise WireError(f"frame flags {flags:#04x} or kind code {code} is unknown")
    end = _HEAD.size + id_len + _TAIL.size
    if len(view) < end:
        raise WireError(f"frame is {len(view)} bytes, too short for its {end}-byte header")
    client_id = bytes(view[_HEAD.size:end - _TAIL.size]).decode("ascii", "replace")
    step, seq = _TAIL.unpack_from(view, end - _TAIL.size)
    header = FrameHeader(KINDS[code], _check_name(client_id, "frame client id"),
                         _check_u63(step, "frame step"), _check_u63(seq, "frame seq"),
                         bool(flags & _ENCRYPTED))
    return header, bytes(view[:end]), view[end:]


def peek_header(frame: bytes, *, limits: Limits = DEFAULT_LIMITS) -> FrameHeader:
    """Read a frame's clear header without decrypting (the server routes on ``client_id``).

    Args:
        frame: the received frame.
        limits: the frame may be at most ``limits.max_bytes + 1024`` bytes.

    Returns:
        The parsed :class:`FrameHeader`. Nothing in it is authenticated yet.

    Raises:
        WireError: the header is malformed or the frame too big.

    Example:
        >>> peek_header(plain_frame(Message("hello", "client-0", 0)))
        FrameHeader(kind='hello', client_id='client-0', step=0, seq=0, encrypted=False)
    """
    return _split_frame(frame, limits)[0]


def plain_frame(msg: Message, *, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """A plaintext frame outside any channel (handshake, error notices): no secrecy, no proof.

    Args:
        msg: the message, framed with its own kind, client id, step and seq.
        limits: the bounds ``encode`` checks.

    Returns:
        The frame (flags bit 0 clear).

    Raises:
        WireError: the message cannot be encoded.

    Example:
        >>> open_plain(plain_frame(Message("error", "c0", 0, meta={"error": "busy"}))).meta
        {'error': 'busy'}
    """
    body = encode(msg, limits=limits)
    return FrameHeader(msg.kind, msg.client_id, msg.step, msg.seq, False).pack() + body


def open_plain(frame: bytes, *, limits: Limits = DEFAULT_LIMITS) -> Message:
    """Read a plaintext frame outside any channel. Nothing is authenticated or replay-checked.

    Args:
        frame: a frame made by :func:`plain_frame`.
        limits: bounds for the frame and the message inside.

    Returns:
        The message; treat its contents as claims anyone on the wire could have made.

    Raises:
        ChannelError: the frame is encrypted, or its header disagrees with its message.
        WireError: the frame or message is malformed.

    Example:
        >>> open_plain(plain_frame(Message("error", "c0", 3))).step
        3
    """
    header, _, body = _split_frame(frame, limits)
    if header.encrypted:
        raise ChannelError("this frame is encrypted: open it with its channel, not open_plain")
    return _decode_matching(header, body, limits)


def _decode_matching(header: FrameHeader, body: bytes | memoryview, limits: Limits) -> Message:
    """Decode a frame body; its message must repeat the clear header (kind, id, step, seq)."""
    msg = decode(body, limits=limits)
    got = (msg.kind, msg.client_id, msg.step, msg.seq)
    if got != (header.kind, header.client_id, header.step, header.seq):
        raise ChannelError(f"frame header {header} disagrees with its message {got}")
    return msg
