"""Per-client channels: an authenticated key agreement, then AES-256-GCM frames.

Each client runs a handshake with the server (:class:`ClientHandshake`, :func:`server_accept`);
both sides get a :class:`SecureChannel` holding that client's own keys. Every message then
travels as a *frame*: a small header in the clear, then the encrypted bytes of
:func:`flglm_kit.wire.encode`. Introduced in notebook 04 (peer clients and key encryption).

Threat model, plainly:

* Encryption stops **eavesdroppers** and **peer clients** that do not hold this client's keys:
  they can neither read the tensors nor modify, forge, replay or reorder a frame unnoticed.
* It does **not** stop the **server**, which decrypts every message to compute on it. The
  server still sees the activations after the input block and the gradients coming back from
  the output block; the kit measures that leakage (notebooks 02 and 03) rather than hide it.
* The frame header is in the clear: an eavesdropper sees the kind, client id, step, sequence
  number and size of every frame, i.e. who talks when and how much.
* The server proves itself with a long-term Ed25519 key whose fingerprint clients pin; clients
  prove themselves with Ed25519 keys enrolled with the server out of band.

Frame layout (big-endian)::

    b"FLGF" version:u8 flags:u8 kind:u8 id_len:u8 client_id step:u64 seq:u64 | body

If ``flags`` bit 0 is set the body is AES-256-GCM(encode(msg)) with the whole frame header as
associated data and nonce ``4 zero bytes || seq``; otherwise the body is ``encode(msg)``. Keys
come from X25519 and HKDF-SHA256 over the handshake transcript, one key per direction, so a
counter nonce never repeats under a key. Every primitive comes from ``cryptography``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import struct
import threading
import warnings
from collections.abc import Mapping

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from flglm_kit.wire import DEFAULT_LIMITS, KINDS, Limits, Message, MetaValue, ProtocolError
from flglm_kit.wire import WireError, decode, encode
from flglm_kit.wire import _check_name, _check_u63  # one definition of a valid id and counter

__all__ = [
    "ChannelError", "ClientHandshake", "FrameHeader", "Identity", "InsecureChannelWarning",
    "PlaintextChannel", "SecureChannel", "open_plain", "peek_header", "plain_frame",
    "server_accept",
]

FRAME_MAGIC = b"FLGF"
FRAME_VERSION = 1
_ENCRYPTED = 0x01  # flags bit 0
_HEAD = struct.Struct(">4sBBBB")  # magic, version, flags, kind code, client id length
_TAIL = struct.Struct(">QQ")  # step, seq
_FRAME_OVERHEAD = 1024  # frame header + GCM tag, with room to spare
_HELLO_KEYS = {"ephemeral_key", "nonce", "identity_key", "signature"}
_WELCOME_KEYS = {"ephemeral_key", "identity_key", "signature"}


class ChannelError(ProtocolError):
    """Authentication failed, replay, wrong client, bad handshake..."""


class InsecureChannelWarning(UserWarning):
    """A channel that neither encrypts nor authenticates was created."""


@dataclasses.dataclass(frozen=True)
class FrameHeader:
    """The clear part of a frame: what an eavesdropper (and the server's router) can read."""

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
        >>> peek_header(ClientHandshake("client-0", Identity.generate(), "00" * 32).hello())
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


def _raw(key: Ed25519PublicKey | X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class Identity:
    """A long-term Ed25519 signing key (the server's, and each client's).

    Example:
        >>> ident = Identity.generate()
        >>> Identity.verify(ident.public_bytes, ident.sign(b"hi"), b"hi")
        >>> len(ident.fingerprint)
        64
    """

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_bytes: bytes = _raw(private_key.public_key())
        self.fingerprint: str = hashlib.sha256(self.public_bytes).hexdigest()

    @classmethod
    def generate(cls) -> Identity:
        """A fresh random identity."""
        return cls(Ed25519PrivateKey.generate())

    def sign(self, data: bytes) -> bytes:
        """Ed25519 signature (64 bytes) over ``data``."""
        return self._key.sign(data)

    @staticmethod
    def verify(public_bytes: bytes, signature: bytes, data: bytes) -> None:
        """Check a signature; raise ChannelError if it or the key is invalid."""
        try:
            Ed25519PublicKey.from_public_bytes(public_bytes).verify(signature, data)
        except (InvalidSignature, ValueError):
            raise ChannelError("signature check failed: the handshake was tampered with or "
                               "signed by another key") from None

    def __repr__(self) -> str:
        return f"Identity(fingerprint={self.fingerprint[:16]}...)"


def _transcript(*fields: bytes) -> bytes:
    # Length prefixes make the encoding unambiguous: no two field lists give the same bytes.
    return b"flglm-kit v1 handshake" + b"".join(len(f).to_bytes(2, "big") + f for f in fields)


def _derive(shared: bytes, transcript: bytes) -> tuple[bytes, bytes]:
    """(client->server key, server->client key), bound to this exact handshake."""
    salt = hashlib.sha256(transcript).digest()
    okm = HKDF(hashes.SHA256(), 64, salt, b"flglm-kit v1 channel").derive(shared)
    return okm[:32], okm[32:]


def _exchange(private: X25519PrivateKey, peer: bytes) -> bytes:
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(peer))
    except ValueError:  # e.g. a low-order point, which gives an all-zero secret
        raise ChannelError("key agreement failed: the peer's ephemeral key is invalid") from None


def _handshake_message(frame: bytes, kind: str, keys: set[str], limits: Limits) -> Message:
    header = peek_header(frame, limits=limits)
    if (header.kind, header.encrypted, header.step, header.seq) != (kind, False, 0, 0):
        raise ChannelError(f"expected a plaintext {kind!r} frame, step 0, seq 0; got {header}")
    msg = open_plain(frame, limits=limits)
    if (len(msg.tensors), set(msg.meta)) != (0, keys):
        raise ChannelError(f"malformed {kind}: it must carry exactly the meta {sorted(keys)}")
    return msg


def _meta_bytes(msg: Message, key: str, size: int) -> bytes:
    value = msg.meta[key]
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != size or raw.hex() != value:  # one spelling only: lowercase, no spaces
        raise ChannelError(f"malformed {msg.kind}: meta {key!r} must be {size} bytes in hex")
    return raw


class ClientHandshake:
    """The client's side of the handshake (notebook 04).

    Args:
        client_id: this client's id, as enrolled with the server.
        identity: this client's long-term key (its public bytes are enrolled with the server).
        server_fingerprint: the pinned hex SHA-256 of the server's identity public key.

    Example:
        >>> server, client = Identity.generate(), Identity.generate()
        >>> hs = ClientHandshake("c0", client, server.fingerprint)
        >>> welcome, server_ch = server_accept(hs.hello(), server, {"c0": client.public_bytes})
        >>> client_ch = hs.finish(welcome)
        >>> server_ch.open(client_ch.seal(Message("activations", "c0", 1))).seq
        1
    """

    def __init__(self, client_id: str, identity: Identity, server_fingerprint: str, *,
                 limits: Limits = DEFAULT_LIMITS) -> None:
        fp = server_fingerprint.lower()
        if len(fp) != 64 or any(c not in "0123456789abcdef" for c in fp):
            raise ValueError("server_fingerprint must be 64 hex characters (a SHA-256)")
        self.client_id = _check_name(client_id, "client id")
        self.identity, self.server_fingerprint, self.limits = identity, fp, limits
        self._ephemeral: X25519PrivateKey | None = X25519PrivateKey.generate()
        # Transcript fields so far: client id, ephemeral key, fresh nonce, identity key.
        self._fields = [client_id.encode(), _raw(self._ephemeral.public_key()), os.urandom(32),
                        identity.public_bytes]

    def hello(self) -> bytes:
        """The plaintext 'hello' frame: ephemeral key, nonce, identity key, signature."""
        _, eph, nonce, ident = self._fields
        signature = self.identity.sign(b"client" + _transcript(*self._fields))
        meta: dict[str, MetaValue] = {"ephemeral_key": eph.hex(), "nonce": nonce.hex(),
                                      "identity_key": ident.hex(), "signature": signature.hex()}
        return plain_frame(Message("hello", self.client_id, 0, meta=meta), limits=self.limits)

    def finish(self, welcome_frame: bytes) -> SecureChannel:
        """Check the server's 'welcome' and derive this client's channel.

        Args:
            welcome_frame: the frame returned by :func:`server_accept`.

        Returns:
            The client-side :class:`SecureChannel`.

        Raises:
            ChannelError: wrong server identity (possible man-in-the-middle), bad signature,
                malformed welcome, or this handshake was already finished.
            WireError: the frame is malformed.
        """
        if self._ephemeral is None:
            raise ChannelError("this handshake is finished; start a new ClientHandshake")
        msg = _handshake_message(welcome_frame, "welcome", _WELCOME_KEYS, self.limits)
        if msg.client_id != self.client_id:
            raise ChannelError(f"welcome is for client {msg.client_id!r}, not {self.client_id!r}")
        server_eph = _meta_bytes(msg, "ephemeral_key", 32)
        server_ident = _meta_bytes(msg, "identity_key", 32)
        got = hashlib.sha256(server_ident).hexdigest()
        if not hmac.compare_digest(got, self.server_fingerprint):
            raise ChannelError("server identity does not match the pinned fingerprint "
                               f"{self.server_fingerprint[:16]}... (got {got[:16]}...): "
                               "refusing to talk; this may be a man-in-the-middle")
        transcript = _transcript(*self._fields, server_eph, server_ident)
        Identity.verify(server_ident, _meta_bytes(msg, "signature", 64), b"server" + transcript)
        shared = _exchange(self._ephemeral, server_eph)
        self._ephemeral = None  # forward secrecy: drop the ephemeral secret once used
        c2s, s2c = _derive(shared, transcript)
        return SecureChannel(self.client_id, send_key=c2s, recv_key=s2c, limits=self.limits)


def server_accept(hello_frame: bytes, identity: Identity, enrolled: Mapping[str, bytes], *,
                  limits: Limits = DEFAULT_LIMITS) -> tuple[bytes, SecureChannel]:
    """The server's side of the handshake: check a client's hello, answer, make its channel.

    Args:
        hello_frame: the frame from :meth:`ClientHandshake.hello`.
        identity: the server's long-term key (clients pin its fingerprint).
        enrolled: client id -> that client's Ed25519 public key (enrolment is out of band).
        limits: bounds for frames on the new channel.

    Returns:
        ``(welcome_frame, channel)``: send the plaintext welcome back; keep the channel.

    Raises:
        ChannelError: unknown client, wrong identity key, bad signature or malformed hello.
        WireError: the frame is malformed.

    Example:
        >>> server, client = Identity.generate(), Identity.generate()
        >>> hello = ClientHandshake("c1", client, server.fingerprint).hello()
        >>> server_accept(hello, server, {})
        Traceback (most recent call last):
        ...
        flglm_kit.crypto.ChannelError: unknown client 'c1': enrol it with the server first
    """
    msg = _handshake_message(hello_frame, "hello", _HELLO_KEYS, limits)
    cid = msg.client_id
    if cid not in enrolled:
        raise ChannelError(f"unknown client {cid!r}: enrol it with the server first")
    client_eph = _meta_bytes(msg, "ephemeral_key", 32)
    client_ident = _meta_bytes(msg, "identity_key", 32)
    if not hmac.compare_digest(client_ident, bytes(enrolled[cid])):
        raise ChannelError(f"client {cid!r} presented an identity key that is not the enrolled one")
    fields = [cid.encode(), client_eph, _meta_bytes(msg, "nonce", 32), client_ident]
    signature = _meta_bytes(msg, "signature", 64)
    Identity.verify(client_ident, signature, b"client" + _transcript(*fields))
    ephemeral = X25519PrivateKey.generate()
    eph_pub = _raw(ephemeral.public_key())
    shared = _exchange(ephemeral, client_eph)
    transcript = _transcript(*fields, eph_pub, identity.public_bytes)
    meta: dict[str, MetaValue] = {"ephemeral_key": eph_pub.hex(),
                                  "identity_key": identity.public_bytes.hex(),
                                  "signature": identity.sign(b"server" + transcript).hex()}
    welcome = plain_frame(Message("welcome", cid, 0, meta=meta), limits=limits)
    c2s, s2c = _derive(shared, transcript)
    return welcome, SecureChannel(cid, send_key=s2c, recv_key=c2s, limits=limits)
