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
* Both parties sign a public *binding* (e.g. a hash of the model config and the split) into
  the handshake: parties built from different models or cuts are refused at connect time, and
  nobody on the wire can rewrite either side's binding. It is an honest-mistake check, not a
  secret: the hello and the welcome carry it in the clear.

Frame layout (big-endian)::

    b"FLGF" version:u8 flags:u8 kind:u8 id_len:u8 client_id step:u64 seq:u64 | body

If ``flags`` bit 0 is set the body is AES-256-GCM(encode(msg)) with the whole frame header as
associated data and nonce ``4 zero bytes || seq``; otherwise the body is ``encode(msg)``. Keys
come from X25519 and HKDF-SHA256 over the handshake transcript, one key per direction, so a
counter nonce never repeats under a key. Every primitive comes from ``cryptography``.

Where things are: :mod:`~flglm_kit.crypto.frames` (the header, plaintext frames),
:mod:`~flglm_kit.crypto.channels` (sequence numbers, replay checks, AES-GCM),
:mod:`~flglm_kit.crypto.handshake` (identities, the handshake, key derivation) and
:mod:`~flglm_kit.crypto.errors` (:class:`ChannelError`). Import from here:

    >>> from flglm_kit.crypto import ClientHandshake, Identity, server_accept
    >>> server, client = Identity.generate(), Identity.generate()
    >>> hs = ClientHandshake("c0", client, server.fingerprint)
    >>> welcome, _ = server_accept(hs.hello(), server, {"c0": client.public_bytes})
    >>> hs.finish(welcome)
    SecureChannel(client_id='c0', sent=0, accepted=0)
"""

from __future__ import annotations

from flglm_kit.crypto.channels import InsecureChannelWarning, PlaintextChannel, SecureChannel
from flglm_kit.crypto.errors import ChannelError
from flglm_kit.crypto.frames import FRAME_MAGIC, FRAME_VERSION, FrameHeader, open_plain
from flglm_kit.crypto.frames import peek_header, plain_frame
from flglm_kit.crypto.group import GroupCipher, GroupKeyPair, new_group_key, open_group_key, seal_group_key
from flglm_kit.crypto.handshake import MAX_BINDING_LEN, ClientHandshake, Identity, server_accept

__all__ = [
    "FRAME_MAGIC", "FRAME_VERSION", "MAX_BINDING_LEN", "ChannelError", "ClientHandshake",
    "FrameHeader", "GroupCipher", "GroupKeyPair", "Identity", "InsecureChannelWarning", "PlaintextChannel",
    "SecureChannel",
    "new_group_key", "open_group_key", "open_plain", "peek_header", "plain_frame", "seal_group_key",
    "server_accept",
]
