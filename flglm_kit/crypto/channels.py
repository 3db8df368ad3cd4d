"""Channels: sequence numbers, replay checks and AEAD (or, loudly, nothing) over frames.

One channel per client on each side. :class:`SecureChannel` seals with AES-256-GCM under one
key per direction; :class:`PlaintextChannel` exists for the leak demos and warns when made.
Introduced in notebook 04 (peer clients and key encryption).
"""

from __future__ import annotations

import dataclasses
import threading
import warnings

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from flglm_kit.crypto.errors import ChannelError
from flglm_kit.crypto.frames import FrameHeader, _decode_matching, _split_frame
from flglm_kit.wire import DEFAULT_LIMITS, Limits, Message, encode
from flglm_kit.wire import _check_name  # one definition of a valid id

__all__ = ["ChannelError", "InsecureChannelWarning", "PlaintextChannel", "SecureChannel"]


class InsecureChannelWarning(UserWarning):
    """A channel that neither encrypts nor authenticates was created."""


class _Channel:
    """Sequence numbers, replay checks and framing shared by both channel kinds."""

    encrypted: bool = False

    def __init__(self, client_id: str, *, limits: Limits = DEFAULT_LIMITS) -> None:
        self.client_id: str = _check_name(client_id, "client id")
        self.limits = limits
        self._sent = 0  # last seq sealed
        self._accepted = 0  # last seq accepted; only a fully checked frame moves it
        self._lock = threading.Lock()  # two threads must never seal under the same nonce

    @property
    def last_sent_seq(self) -> int:
        """Seq of the last frame sealed (0 before the first)."""
        return self._sent

    @property
    def last_accepted_seq(self) -> int:
        """Seq of the last frame opened successfully; anything at or below it is refused."""
        return self._accepted

    def _protect(self, header: bytes, body: bytes, seq: int) -> bytes:
        return body

    def _unprotect(self, header: bytes, body: memoryview, seq: int) -> memoryview | bytes:
        return body

    def seal(self, msg: Message) -> bytes:
        """Give ``msg`` this direction's next sequence number (1, 2, ...) and frame it.

        Args:
            msg: the message; its ``client_id`` must be this channel's. It is not modified.

        Returns:
            The frame bytes to send.

        Raises:
            ChannelError: wrong client id, or the sequence numbers are used up.
            WireError: the message cannot be encoded.
        """
        if msg.client_id != self.client_id:
            raise ChannelError(f"message is for client {msg.client_id!r} but this channel "
                               f"belongs to {self.client_id!r}")
        with self._lock:
            seq = self._sent + 1
            if seq >= 2**63:
                raise ChannelError("sequence numbers are used up: run a new handshake")
            msg = dataclasses.replace(msg, seq=seq)
            body = encode(msg, limits=self.limits)
            header = FrameHeader(msg.kind, msg.client_id, msg.step, seq, self.encrypted).pack()
            self._sent = seq  # before encrypting: a skipped seq is harmless, a reused nonce is not
            return header + self._protect(header, body, seq)

    def open(self, frame: bytes) -> Message:
        """Check a received frame and return its message.

        Args:
            frame: bytes made by the peer's :meth:`seal`.

        Returns:
            The message (``seq`` set); from now on the channel refuses any seq at or below it.

        Raises:
            ChannelError: wrong client, replayed or reordered, tampered, or wrong channel type.
            WireError: the frame or the message inside is malformed.
        """
        header, raw_header, body = _split_frame(frame, self.limits)
        if header.client_id != self.client_id:
            raise ChannelError(f"frame is for client {header.client_id!r} but this channel "
                               f"belongs to {self.client_id!r}")
        if header.encrypted != self.encrypted:
            raise ChannelError("plaintext frame on a secure channel: refusing it" if self.encrypted
                               else "encrypted frame on a plaintext channel")
        with self._lock:
            if header.seq <= self._accepted:
                raise ChannelError(f"replayed or reordered message: seq {header.seq} <= last "
                                   f"accepted {self._accepted}")
            plain = self._unprotect(raw_header, body, header.seq)
            msg = _decode_matching(header, plain, self.limits)
            self._accepted = header.seq
            return msg

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(client_id={self.client_id!r}, "
                f"sent={self._sent}, accepted={self._accepted})")


class SecureChannel(_Channel):
    """AES-256-GCM channel for one client; made by the handshake, one per client on each side.

    Example:
        >>> a = SecureChannel("c0", send_key=b"k" * 32, recv_key=b"K" * 32)
        >>> b = SecureChannel("c0", send_key=b"K" * 32, recv_key=b"k" * 32)
        >>> b.open(a.seal(Message("activations", "c0", 1, meta={"x": 1}))).meta
        {'x': 1}
    """

    encrypted = True

    def __init__(self, client_id: str, *, send_key: bytes, recv_key: bytes,
                 limits: Limits = DEFAULT_LIMITS) -> None:
        super().__init__(client_id, limits=limits)
        if len(send_key) != 32 or len(recv_key) != 32 or send_key == recv_key:
            raise ValueError("send_key and recv_key must be two different 32-byte keys")
        self._send, self._recv = AESGCM(send_key), AESGCM(recv_key)

    @staticmethod
    def _nonce(seq: int) -> bytes:
        return bytes(4) + seq.to_bytes(8, "big")

    def _protect(self, header: bytes, body: bytes, seq: int) -> bytes:
        return self._send.encrypt(self._nonce(seq), body, header)

    def _unprotect(self, header: bytes, body: memoryview, seq: int) -> memoryview | bytes:
        try:
            return self._recv.decrypt(self._nonce(seq), body, header)
        except InvalidTag:
            raise ChannelError("authentication failed: the frame was modified in transit or "
                               "sealed under another key") from None


class PlaintextChannel(_Channel):
    """A channel that does NOT encrypt or authenticate, for the leak demos (notebooks 02, 04).

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore", InsecureChannelWarning)
        ...     ch = PlaintextChannel("c0")
        >>> ch.encrypted
        False
    """

    encrypted = False

    def __init__(self, client_id: str, *, limits: Limits = DEFAULT_LIMITS) -> None:
        super().__init__(client_id, limits=limits)
        warnings.warn("PlaintextChannel: messages are NOT encrypted or authenticated; anyone on "
                      "the wire can read and forge them. Use only for the leak demos.",
                      InsecureChannelWarning, stacklevel=2)
