"""The handshake: long-term Ed25519 identities, an X25519 exchange, HKDF keys per direction.

The client's hello and the server's welcome each sign the transcript so far; the keys are
derived over the whole transcript, so they belong to this one handshake. Both parties also put
their *binding* (a public string naming the model and the split they were built from) into the
transcript: a client and a server built from different models are refused at connect time
instead of training together silently. Introduced in notebook 04 (peer clients and key
encryption), where each client pins the server's :class:`Identity` fingerprint.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from typing import TypeGuard

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from flglm_kit.crypto.channels import SecureChannel
from flglm_kit.crypto.errors import ChannelError
from flglm_kit.crypto.frames import open_plain, peek_header, plain_frame
from flglm_kit.wire import DEFAULT_LIMITS, Limits, Message, MetaValue
from flglm_kit.wire import _check_name  # one definition of a valid id

__all__ = ["MAX_BINDING_LEN", "ClientHandshake", "Identity", "server_accept"]

_HELLO_KEYS = {"ephemeral_key", "nonce", "identity_key", "binding", "signature"}
_WELCOME_KEYS = {"ephemeral_key", "identity_key", "binding", "signature"}
MAX_BINDING_LEN = 128
# The wire's name alphabet, but possibly empty and twice as long: a hex SHA-256 fits.
_BINDING_RE = re.compile(rf"[A-Za-z0-9_.\-]{{0,{MAX_BINDING_LEN}}}")
_BINDING_RULE = f"0 to {MAX_BINDING_LEN} characters from A-Z a-z 0-9 _ . -"
_SAME_BUILD = "build both parties from the same model and the same split (head_layers, tail_layers)"


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


def _valid_binding(value: object) -> TypeGuard[str]:
    return type(value) is str and _BINDING_RE.fullmatch(value) is not None


def _check_binding(value: object) -> str:
    """A party's own binding, or ValueError: a configuration mistake, not an attack."""
    if not _valid_binding(value):
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:36] + "...'"
        raise ValueError(f"binding {shown} is not valid: use {_BINDING_RULE} "
                         "(e.g. a hex SHA-256 of the model config and the split)")
    return value


def _meta_binding(msg: Message) -> str:
    """The peer's binding from a hello or welcome; ChannelError if it is malformed."""
    value = msg.meta["binding"]
    if not _valid_binding(value):
        raise ChannelError(f"malformed {msg.kind}: meta 'binding' must be {_BINDING_RULE}")
    return value


def _short(binding: str) -> str:
    return "(no binding)" if not binding else binding if len(binding) <= 16 else binding[:16] + "..."


class ClientHandshake:
    """The client's side of the handshake (notebook 04 runs it through ``SplitClient``).

    Args:
        client_id: this client's id, as enrolled with the server.
        identity: this client's long-term key (its public bytes are enrolled with the server).
        server_fingerprint: the pinned hex SHA-256 of the server's identity public key.
        binding: the model and split this client was built from, e.g. a hex SHA-256 of the model
            config and the cut; the server must hold the same string. Public, signed, and
            ``0`` to :data:`MAX_BINDING_LEN` characters from ``A-Z a-z 0-9 _ . -``.
        limits: bounds for frames on the new channel.

    Raises:
        ValueError: the fingerprint is not 64 hex characters, or the binding is not valid.
        WireError: the client id is not valid.

    Example:
        >>> server, client = Identity.generate(), Identity.generate()
        >>> hs = ClientHandshake("c0", client, server.fingerprint, binding="ab12")
        >>> welcome, server_ch = server_accept(hs.hello(), server, {"c0": client.public_bytes},
        ...                                    binding="ab12")
        >>> client_ch = hs.finish(welcome)
        >>> server_ch.open(client_ch.seal(Message("activations", "c0", 1))).seq
        1
    """

    def __init__(self, client_id: str, identity: Identity, server_fingerprint: str, *,
                 binding: str = "", limits: Limits = DEFAULT_LIMITS) -> None:
        fp = server_fingerprint.lower()
        if len(fp) != 64 or any(c not in "0123456789abcdef" for c in fp):
            raise ValueError("server_fingerprint must be 64 hex characters (a SHA-256)")
        self.client_id = _check_name(client_id, "client id")
        self.binding = _check_binding(binding)
        self.identity, self.server_fingerprint, self.limits = identity, fp, limits
        self._ephemeral: X25519PrivateKey | None = X25519PrivateKey.generate()
        # Transcript fields so far: client id, ephemeral key, fresh nonce, identity key, binding.
        self._fields = [client_id.encode(), _raw(self._ephemeral.public_key()), os.urandom(32),
                        identity.public_bytes, self.binding.encode()]

    def hello(self) -> bytes:
        """The plaintext 'hello' frame: ephemeral key, nonce, identity key, binding, signature."""
        _, eph, nonce, ident, _ = self._fields
        signature = self.identity.sign(b"client" + _transcript(*self._fields))
        meta: dict[str, MetaValue] = {"ephemeral_key": eph.hex(), "nonce": nonce.hex(),
                                      "identity_key": ident.hex(), "binding": self.binding,
                                      "signature": signature.hex()}
        return plain_frame(Message("hello", self.client_id, 0, meta=meta), limits=self.limits)

    def finish(self, welcome_frame: bytes) -> SecureChannel:
        """Check the server's 'welcome' and derive this client's channel.

        Args:
            welcome_frame: the frame returned by :func:`server_accept`.

        Returns:
            The client-side :class:`SecureChannel`.

        Raises:
            ChannelError: wrong server identity (possible man-in-the-middle), bad signature,
                malformed welcome, a server built from another model or split, or this
                handshake was already finished.
            WireError: the frame is malformed.
        """
        if self._ephemeral is None:
            raise ChannelError("this handshake is finished; start a new ClientHandshake")
        msg = _handshake_message(welcome_frame, "welcome", _WELCOME_KEYS, self.limits)
        if msg.client_id != self.client_id:
            raise ChannelError(f"welcome is for client {msg.client_id!r}, not {self.client_id!r}")
        server_eph = _meta_bytes(msg, "ephemeral_key", 32)
        server_ident = _meta_bytes(msg, "identity_key", 32)
        server_binding = _meta_binding(msg)
        got = hashlib.sha256(server_ident).hexdigest()
        if not hmac.compare_digest(got, self.server_fingerprint):
            raise ChannelError("server identity does not match the pinned fingerprint "
                               f"{self.server_fingerprint[:16]}... (got {got[:16]}...): "
                               "refusing to talk; this may be a man-in-the-middle")
        transcript = _transcript(*self._fields, server_eph, server_ident, server_binding.encode())
        Identity.verify(server_ident, _meta_bytes(msg, "signature", 64), b"server" + transcript)
        if server_binding != self.binding:  # signed by the pinned server: a real mismatch
            raise ChannelError(f"the server was built for model/split {_short(server_binding)}, "
                               f"this client {self.client_id!r} for {_short(self.binding)}: "
                               f"{_SAME_BUILD}")
        shared = _exchange(self._ephemeral, server_eph)
        self._ephemeral = None  # forward secrecy: drop the ephemeral secret once used
        c2s, s2c = _derive(shared, transcript)
        return SecureChannel(self.client_id, send_key=c2s, recv_key=s2c, limits=self.limits)


def server_accept(hello_frame: bytes, identity: Identity, enrolled: Mapping[str, bytes], *,
                  binding: str = "", limits: Limits = DEFAULT_LIMITS
                  ) -> tuple[bytes, SecureChannel]:
    """The server's side of the handshake: check a client's hello, answer, make its channel.

    Args:
        hello_frame: the frame from :meth:`ClientHandshake.hello`.
        identity: the server's long-term key (clients pin its fingerprint).
        enrolled: client id -> that client's Ed25519 public key (enrolment is out of band).
        binding: the model and split this server was built from; a client must present the
            same string (see :class:`ClientHandshake`).
        limits: bounds for frames on the new channel.

    Returns:
        ``(welcome_frame, channel)``: send the plaintext welcome back; keep the channel.

    Raises:
        ChannelError: unknown client, wrong identity key, bad signature, malformed hello, or
            a client built from another model or split (checked after its signature).
        ValueError: ``binding`` is not valid.
        WireError: the frame is malformed.

    Example:
        >>> server, client = Identity.generate(), Identity.generate()
        >>> hello = ClientHandshake("c1", client, server.fingerprint, binding="a1b2c3").hello()
        >>> server_accept(hello, server, {})
        Traceback (most recent call last):
        ...
        flglm_kit.crypto.errors.ChannelError: unknown client 'c1': enrol it with the server first
        >>> server_accept(hello, server, {"c1": client.public_bytes}, binding="9f8e7d")
        Traceback (most recent call last):
        ...
        flglm_kit.crypto.errors.ChannelError: client 'c1' was built for model/split a1b2c3, \
this server for 9f8e7d: build both parties from the same model and the same split \
(head_layers, tail_layers)
    """
    binding = _check_binding(binding)
    msg = _handshake_message(hello_frame, "hello", _HELLO_KEYS, limits)
    cid = msg.client_id
    if cid not in enrolled:
        raise ChannelError(f"unknown client {cid!r}: enrol it with the server first")
    client_eph = _meta_bytes(msg, "ephemeral_key", 32)
    client_ident = _meta_bytes(msg, "identity_key", 32)
    if not hmac.compare_digest(client_ident, bytes(enrolled[cid])):
        raise ChannelError(f"client {cid!r} presented an identity key that is not the enrolled one")
    client_binding = _meta_binding(msg)
    fields = [cid.encode(), client_eph, _meta_bytes(msg, "nonce", 32), client_ident,
              client_binding.encode()]
    signature = _meta_bytes(msg, "signature", 64)
    Identity.verify(client_ident, signature, b"client" + _transcript(*fields))
    # Compared only after the signature: strangers learn nothing, and a rewrite reads as one.
    if client_binding != binding:
        raise ChannelError(f"client {cid!r} was built for model/split {_short(client_binding)}, "
                           f"this server for {_short(binding)}: {_SAME_BUILD}")
    ephemeral = X25519PrivateKey.generate()
    eph_pub = _raw(ephemeral.public_key())
    shared = _exchange(ephemeral, client_eph)
    transcript = _transcript(*fields, eph_pub, identity.public_bytes, binding.encode())
    meta: dict[str, MetaValue] = {"ephemeral_key": eph_pub.hex(),
                                  "identity_key": identity.public_bytes.hex(),
                                  "binding": binding,
                                  "signature": identity.sign(b"server" + transcript).hex()}
    welcome = plain_frame(Message("welcome", cid, 0, meta=meta), limits=limits)
    c2s, s2c = _derive(shared, transcript)
    return welcome, SecureChannel(cid, send_key=s2c, recv_key=c2s, limits=limits)
