"""A key the clients share and the server does not: for averaging client blocks without the server.

In FedAvg as the FL-GLM paper runs it, every client sends its blocks to the server, which
averages them and so holds each client's exact input block (notebook 06 runs the white-box
attack of notebook 03 with it). The alternative this module makes possible: the clients agree
a *group key*, seal their updates under it, and the server relays ciphertext it cannot read.

How the key is agreed (every primitive from ``cryptography``):

1. Each client has a long-term X25519 key (:class:`GroupKeyPair`). The clients' public keys are
   authenticated **out of band**, as the server's fingerprint is: a server that substituted its
   own public key would otherwise sit in the middle. This module never takes a key from the wire.
2. One client, the *leader*, draws a random 32-byte group key and seals it to every other
   member with AES-256-GCM under ``HKDF(X25519(leader, member))`` (:func:`seal_group_key`).
   Only that member (and the leader) can derive the key that opens its package; the packages
   travel through the server as opaque bytes.
3. Each update is sealed with :class:`GroupCipher`: AES-256-GCM, a random 96-bit nonce, and the
   group id, sender, round and parameter layout as associated data, so an update cannot be
   moved to another sender, round or group unnoticed.

Threat model, plainly: this hides the clients' blocks from the **server** and from anyone on the
wire. It does **not** hide one client's update from the **other clients**: every member holds
the group key and opens every update (secure aggregation with pairwise masks would hide
individual updates from peers too; the kit does not implement it). The server still sees each
client's activations and gradients every step, which is what the attacks of notebooks 02-03 use.

Used through Federation(aggregate="clients") in notebook 06.
"""

from __future__ import annotations

import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from flglm_kit.crypto.errors import ChannelError

__all__ = ["GroupKeyPair", "GroupCipher", "seal_group_key", "open_group_key", "new_group_key"]

_NONCE = 12
_KEY = 32


def _fields(*parts: bytes) -> bytes:
    # Length prefixes: no two field lists give the same bytes.
    return b"".join(len(p).to_bytes(2, "big") + p for p in parts)


class GroupKeyPair:
    """A client's long-term X25519 key for agreeing group keys with its peers.

    Example:
        >>> a, b = GroupKeyPair.generate(), GroupKeyPair.generate()
        >>> len(a.public_bytes)
        32
    """

    def __init__(self, private_key: X25519PrivateKey) -> None:
        self._key = private_key
        self.public_bytes: bytes = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @classmethod
    def generate(cls) -> GroupKeyPair:
        """A fresh random key pair."""
        return cls(X25519PrivateKey.generate())

    def _pair_key(self, peer_public: bytes, *, group_id: str, leader: str, member: str) -> bytes:
        """The AES key that seals the group key from ``leader`` to ``member``."""
        try:
            shared = self._key.exchange(X25519PublicKey.from_public_bytes(peer_public))
        except ValueError:
            raise ChannelError("key agreement failed: the peer's group public key is invalid "
                               "(take it from a trusted source)") from None
        info = b"flglm-kit v1 group key" + _fields(group_id.encode(), leader.encode(), member.encode())
        return HKDF(hashes.SHA256(), _KEY, None, info).derive(shared)

    def __repr__(self) -> str:
        return f"GroupKeyPair(public={self.public_bytes.hex()[:16]}...)"


def new_group_key() -> bytes:
    """32 random bytes: the key a leader distributes."""
    return AESGCM.generate_key(bit_length=256)


def seal_group_key(leader: GroupKeyPair, member_public: bytes, group_key: bytes, *, group_id: str,
                   leader_id: str, member_id: str) -> bytes:
    """The leader's package of ``group_key`` for one member: nonce || AES-256-GCM ciphertext.

    Args:
        leader: the leader's key pair.
        member_public: the member's group public key, authenticated out of band.
        group_key: the 32-byte key from :func:`new_group_key`.
        group_id, leader_id, member_id: bound into the key derivation and the associated data.
    """
    if len(group_key) != _KEY:
        raise ValueError(f"a group key has {_KEY} bytes, not {len(group_key)}")
    key = leader._pair_key(member_public, group_id=group_id, leader=leader_id, member=member_id)
    nonce = os.urandom(_NONCE)
    return nonce + AESGCM(key).encrypt(nonce, group_key, _fields(group_id.encode(), member_id.encode()))


def open_group_key(member: GroupKeyPair, leader_public: bytes, package: bytes, *, group_id: str,
                   leader_id: str, member_id: str) -> bytes:
    """Open a package from :func:`seal_group_key`; raise :class:`ChannelError` if it does not authenticate.

    Example:
        >>> leader, member, key = GroupKeyPair.generate(), GroupKeyPair.generate(), new_group_key()
        >>> ids = dict(group_id="g", leader_id="a", member_id="b")
        >>> pkg = seal_group_key(leader, member.public_bytes, key, **ids)
        >>> open_group_key(member, leader.public_bytes, pkg, **ids) == key
        True
    """
    key = member._pair_key(leader_public, group_id=group_id, leader=leader_id, member=member_id)
    try:
        return AESGCM(key).decrypt(package[:_NONCE], package[_NONCE:], _fields(group_id.encode(), member_id.encode()))
    except (InvalidTag, ValueError):
        raise ChannelError(f"the group key package for {member_id!r} did not authenticate: it was tampered "
                           "with, or sealed by another leader or for another member") from None


class GroupCipher:
    """Seals and opens the group's model updates under the shared key.

    The associated data binds the group id, the sender, the round and a digest of the parameter
    layout: an update replayed into another round, or claimed by another sender, fails to open.

    Example:
        >>> cipher = GroupCipher(new_group_key(), group_id="g")
        >>> blob = cipher.seal(b"weights", sender="a", round_=3, layout="abc")
        >>> cipher.open(blob, sender="a", round_=3, layout="abc")
        b'weights'
        >>> cipher.open(blob, sender="a", round_=4, layout="abc")
        Traceback (most recent call last):
        ...
        flglm_kit.crypto.errors.ChannelError: the update from 'a' for round 4 did not authenticate: ...
    """

    OVERHEAD = _NONCE + 16  # nonce + GCM tag

    def __init__(self, key: bytes, *, group_id: str) -> None:
        if len(key) != _KEY:
            raise ValueError(f"a group key has {_KEY} bytes, not {len(key)}")
        self._aead = AESGCM(key)
        self.group_id = group_id

    def _aad(self, sender: str, round_: int, layout: str) -> bytes:
        return b"flglm-kit v1 update" + _fields(self.group_id.encode(), sender.encode(),
                                                 struct.pack(">Q", round_), layout.encode())

    def seal(self, data: bytes, *, sender: str, round_: int, layout: str) -> bytes:
        """nonce || AES-256-GCM(data), bound to sender, round and layout."""
        nonce = os.urandom(_NONCE)
        return nonce + self._aead.encrypt(nonce, data, self._aad(sender, round_, layout))

    def open(self, blob: bytes, *, sender: str, round_: int, layout: str) -> bytes:
        """The plaintext of :meth:`seal`; raise :class:`ChannelError` if anything differs or was changed."""
        try:
            return self._aead.decrypt(blob[:_NONCE], blob[_NONCE:], self._aad(sender, round_, layout))
        except (InvalidTag, ValueError):
            raise ChannelError(f"the update from {sender!r} for round {round_} did not authenticate: it was "
                               "tampered with, replayed from another round, or sealed under another key") from None
