"""Tests for flglm_kit.crypto: handshake, AEAD frames, tampering, replay, MITM, plaintext leaks."""

from __future__ import annotations

import warnings

import pytest
import torch
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from flglm_kit.crypto import handshake as handshake_module
from flglm_kit.crypto import (
    ChannelError, ClientHandshake, FrameHeader, Identity, InsecureChannelWarning,
    PlaintextChannel, SecureChannel, open_plain, peek_header, plain_frame, server_accept,
)
from flglm_kit.wire import Limits, Message, WireError, decode, encode

SERVER = Identity.generate()
CLIENTS = {cid: Identity.generate() for cid in ("c0", "c1")}
ENROLLED = {cid: ident.public_bytes for cid, ident in CLIENTS.items()}
# Distinctive values whose raw bytes are easy to search for in a frame.
SECRET = torch.arange(1, 33, dtype=torch.float32) * 1.2345


def connect(cid: str = "c0") -> tuple[SecureChannel, SecureChannel]:
    """Run a full handshake; return (client channel, server channel)."""
    handshake = ClientHandshake(cid, CLIENTS[cid], SERVER.fingerprint)
    welcome, server_ch = server_accept(handshake.hello(), SERVER, ENROLLED)
    return handshake.finish(welcome), server_ch


def activations(cid: str = "c0", step: int = 1) -> Message:
    return Message("activations", cid, step, tensors={"activations": SECRET.reshape(4, 8)})


def refake(frame: bytes, **meta_changes: str) -> bytes:
    """Re-frame a plaintext handshake frame with some meta replaced, as a MITM would."""
    header = peek_header(frame)
    msg = decode(body_of(frame))
    assert msg.kind == header.kind
    msg.meta.update(meta_changes)
    return header.pack() + encode(msg)


def body_of(frame: bytes) -> bytes:
    """The part after the clear header: ciphertext on a secure channel."""
    return frame[len(peek_header(frame).pack()):]


def flip(data: bytes, index: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[index] ^= 1 << bit
    return bytes(out)


# --- handshake and round trips ---------------------------------------------------------------

def test_handshake_then_round_trip_both_directions() -> None:
    # Prepare
    client_ch, server_ch = connect()
    # Execute
    up = server_ch.open(client_ch.seal(activations()))
    down = client_ch.open(server_ch.seal(Message("activation_grads", "c0", 1,
                                                  tensors={"activation_grads": -SECRET})))
    # Assert
    assert torch.equal(up.tensors["activations"], SECRET.reshape(4, 8))
    assert torch.equal(down.tensors["activation_grads"], -SECRET)
    assert (up.seq, down.seq) == (1, 1)


def test_seal_numbers_frames_and_leaves_the_message_alone() -> None:
    client_ch, _ = connect()
    msg = activations()
    seqs = [peek_header(client_ch.seal(msg)).seq for _ in range(3)]
    assert seqs == [1, 2, 3]
    assert msg.seq == 0 and client_ch.last_sent_seq == 3


def test_same_tensor_sealed_twice_gives_different_bytes() -> None:
    # Prepare
    client_ch, _ = connect()
    data_len = SECRET.numel() * 4
    # Execute
    first, second = body_of(client_ch.seal(activations())), body_of(client_ch.seal(activations()))
    # Assert: even the identical tensor bytes (just before the 16-byte tag) encrypt differently,
    # i.e. the keystream is not reused (a repeated nonce would make their XOR all zeros)
    assert len(first) == len(second)
    xor = bytes(x ^ y for x, y in zip(first[-16 - data_len:-16], second[-16 - data_len:-16]))
    assert xor.count(0) < data_len // 4


def test_eavesdropper_reads_only_the_clear_header() -> None:
    client_ch, _ = connect()
    frame = client_ch.seal(activations(step=5))
    assert peek_header(frame) == FrameHeader("activations", "c0", 5, 1, True)
    assert SECRET.numpy().tobytes() not in frame
    with pytest.raises(WireError):  # the body is ciphertext, not an encoded message
        decode(body_of(frame))


# --- tampering, replay, reordering, peers ------------------------------------------------------

def test_every_flipped_bit_of_a_sealed_frame_is_rejected() -> None:
    # Prepare: a small frame, and a receiver whose state must survive every rejection
    client_ch, server_ch = connect()
    frame = client_ch.seal(Message("activations", "c0", 1, tensors={"a": torch.ones(2)}))
    # Execute / Assert: every bit of every byte, header included
    for index in range(len(frame)):
        for bit in range(8):
            with pytest.raises((ChannelError, WireError)):
                server_ch.open(flip(frame, index, bit))
    assert server_ch.open(frame).seq == 1


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=64), st.integers(min_value=0, max_value=400))
def test_spliced_garbage_is_rejected(garbage: bytes, position: int) -> None:
    client_ch, server_ch = connect()
    frame = client_ch.seal(activations())
    position = min(position, len(frame))
    with pytest.raises((ChannelError, WireError)):
        server_ch.open(frame[:position] + garbage + frame[position:])


def test_replayed_frame_is_rejected() -> None:
    client_ch, server_ch = connect()
    frame = client_ch.seal(activations())
    server_ch.open(frame)
    with pytest.raises(ChannelError, match="replayed or reordered message: seq 1 <= last accepted 1"):
        server_ch.open(frame)


def test_reordered_frames_are_rejected() -> None:
    client_ch, server_ch = connect()
    first, second = client_ch.seal(activations(step=1)), client_ch.seal(activations(step=2))
    assert server_ch.open(second).step == 2
    with pytest.raises(ChannelError, match="seq 1 <= last accepted 2"):
        server_ch.open(first)


def test_rejected_frames_leave_the_channel_state_unchanged() -> None:
    # Prepare
    client_ch, server_ch = connect()
    server_ch.open(client_ch.seal(activations(step=1)))
    good = client_ch.seal(activations(step=2))
    forged_seq = good[:-1] + bytes([good[-1] ^ 1])  # bad tag
    # Execute: a tampered frame, a replay and garbage, all refused
    for bad in (forged_seq, client_ch.seal(Message("hello", "c0", 0))[:30], b"FLGF"):
        with pytest.raises((ChannelError, WireError)):
            server_ch.open(bad)
    # Assert: the genuine frame still opens and the counter moved only for it
    assert server_ch.open(good).step == 2
    assert server_ch.last_accepted_seq == 2


def test_tampered_header_fields_fail_authentication() -> None:
    client_ch, server_ch = connect()
    frame = client_ch.seal(activations(step=1))
    for forged in (FrameHeader("output_grads", "c0", 1, 1, True),
                   FrameHeader("activations", "c0", 9, 1, True),
                   FrameHeader("activations", "c0", 1, 7, True)):
        with pytest.raises(ChannelError, match="authentication failed"):
            server_ch.open(forged.pack() + body_of(frame))


def test_a_peer_client_cannot_open_or_forge_another_clients_frames() -> None:
    # Prepare: c1 is a peer client with its own, legitimate channel
    c0_client, c0_server = connect("c0")
    c1_client, c1_server = connect("c1")
    frame = c0_client.seal(activations("c0"))
    relabelled = FrameHeader("activations", "c1", 1, 1, True).pack() + body_of(frame)
    forged = FrameHeader("activations", "c0", 1, 1, True).pack() + body_of(c1_client.seal(activations("c1")))
    # Execute / Assert
    with pytest.raises(ChannelError, match="belongs to 'c1'"):
        c1_server.open(frame)
    with pytest.raises(ChannelError, match="authentication failed"):
        c1_server.open(relabelled)
    with pytest.raises(ChannelError, match="authentication failed"):  # c1 posing as c0
        c0_server.open(forged)


def test_a_frame_reflected_back_to_its_sender_is_rejected() -> None:
    client_ch, server_ch = connect()
    with pytest.raises(ChannelError, match="authentication failed"):
        client_ch.open(client_ch.seal(activations()))  # per-direction keys


def test_seal_refuses_a_message_for_another_client() -> None:
    client_ch, _ = connect("c0")
    with pytest.raises(ChannelError, match="belongs to 'c0'"):
        client_ch.seal(activations("c1"))
    assert client_ch.last_sent_seq == 0


def test_oversized_frame_is_rejected_before_decrypting() -> None:
    client_ch, _ = connect()
    frame = client_ch.seal(Message("activations", "c0", 1, tensors={"a": torch.zeros(1024)}))
    with pytest.raises(WireError, match="frame is 4[0-9]{3} bytes, over the limit of 2048"):
        peek_header(frame, limits=Limits(max_bytes=1024))


# --- handshake attacks --------------------------------------------------------------------------

def test_client_rejects_a_server_with_the_wrong_fingerprint() -> None:
    # Prepare: a man in the middle who enrolled the client's public key (public, after all)
    mitm = Identity.generate()
    handshake = ClientHandshake("c0", CLIENTS["c0"], SERVER.fingerprint)
    welcome, _ = server_accept(handshake.hello(), mitm, ENROLLED)
    # Execute / Assert
    with pytest.raises(ChannelError, match="server identity does not match the pinned fingerprint"):
        handshake.finish(welcome)


def test_mitm_swapping_the_servers_ephemeral_key_is_detected() -> None:
    # Prepare: the MITM keeps the real server's identity and signature but puts in its own key
    handshake = ClientHandshake("c0", CLIENTS["c0"], SERVER.fingerprint)
    welcome, _ = server_accept(handshake.hello(), SERVER, ENROLLED)
    mitm_key = X25519PrivateKey.generate().public_key().public_bytes_raw().hex()
    # Execute / Assert
    with pytest.raises(ChannelError, match="signature check failed"):
        handshake.finish(refake(welcome, ephemeral_key=mitm_key))


def test_server_rejects_unknown_clients() -> None:
    hello = ClientHandshake("stranger", Identity.generate(), SERVER.fingerprint).hello()
    with pytest.raises(ChannelError, match="unknown client 'stranger': enrol it with the server first"):
        server_accept(hello, SERVER, ENROLLED)


def test_server_rejects_an_impostor_using_an_enrolled_id() -> None:
    hello = ClientHandshake("c0", Identity.generate(), SERVER.fingerprint).hello()
    with pytest.raises(ChannelError, match="not the enrolled one"):
        server_accept(hello, SERVER, ENROLLED)


@pytest.mark.parametrize("field", ["ephemeral_key", "nonce"])
def test_server_rejects_a_tampered_hello(field: str) -> None:
    hello = ClientHandshake("c0", CLIENTS["c0"], SERVER.fingerprint).hello()
    with pytest.raises(ChannelError, match="signature check failed"):
        server_accept(refake(hello, **{field: "22" * 32}), SERVER, ENROLLED)


@pytest.mark.parametrize("changes, match", [
    ({"signature": "zz"}, "must be 64 bytes in hex"),
    ({"nonce": "AB" * 32}, "must be 32 bytes in hex"),  # one spelling only
    ({"extra": "1"}, "exactly the meta"),
])
def test_server_rejects_a_malformed_hello(changes: dict[str, str], match: str) -> None:
    hello = ClientHandshake("c0", CLIENTS["c0"], SERVER.fingerprint).hello()
    with pytest.raises(ChannelError, match=match):
        server_accept(refake(hello, **changes), SERVER, ENROLLED)


@pytest.mark.parametrize("header", [FrameHeader("hello", "c0", 0, 5, False),
                                    FrameHeader("hello", "c0", 0, 0, True),
                                    FrameHeader("welcome", "c0", 0, 0, False)])
def test_server_rejects_a_hello_under_the_wrong_frame_header(header: FrameHeader) -> None:
    hello = ClientHandshake("c0", CLIENTS["c0"], SERVER.fingerprint).hello()
    with pytest.raises(ChannelError, match="expected a plaintext 'hello' frame"):
        server_accept(header.pack() + body_of(hello), SERVER, ENROLLED)


def test_a_low_order_ephemeral_key_is_refused() -> None:
    # Prepare: a malicious but enrolled client signs an all-zero X25519 key (a low-order point)
    handshake = ClientHandshake("c0", CLIENTS["c0"], SERVER.fingerprint)
    fields = [b"c0", bytes(32), bytes(range(32)), CLIENTS["c0"].public_bytes, b""]
    meta = {"ephemeral_key": bytes(32).hex(), "nonce": bytes(range(32)).hex(),
            "identity_key": CLIENTS["c0"].public_bytes.hex(), "binding": "",
            "signature": CLIENTS["c0"].sign(b"client" + handshake_module._transcript(*fields)).hex()}
    hello = refake(handshake.hello(), **meta)
    # Execute / Assert
    with pytest.raises(ChannelError, match="key agreement failed"):
        server_accept(hello, SERVER, ENROLLED)


def test_a_welcome_from_another_handshake_is_rejected() -> None:
    old = ClientHandshake("c0", CLIENTS["c0"], SERVER.fingerprint)
    old_welcome, _ = server_accept(old.hello(), SERVER, ENROLLED)
    fresh = ClientHandshake("c0", CLIENTS["c0"], SERVER.fingerprint)
    with pytest.raises(ChannelError, match="signature check failed"):
        fresh.finish(old_welcome)  # the server signed the old client's nonce and key


def test_a_handshake_finishes_only_once() -> None:
    handshake = ClientHandshake("c0", CLIENTS["c0"], SERVER.fingerprint)
    welcome, _ = server_accept(handshake.hello(), SERVER, ENROLLED)
    handshake.finish(welcome)
    with pytest.raises(ChannelError, match="finished"):
        handshake.finish(welcome)


def test_each_handshake_gives_fresh_keys() -> None:
    client_a, _ = connect()
    _, server_b = connect()
    with pytest.raises(ChannelError, match="authentication failed"):
        server_b.open(client_a.seal(activations()))


def test_constructors_reject_bad_arguments() -> None:
    with pytest.raises(ValueError, match="64 hex characters"):
        ClientHandshake("c0", CLIENTS["c0"], "not-a-fingerprint")
    with pytest.raises(ValueError, match="two different 32-byte keys"):
        SecureChannel("c0", send_key=b"k" * 32, recv_key=b"k" * 32)
    with pytest.raises(WireError, match="client id"):
        SecureChannel("c 0", send_key=b"k" * 32, recv_key=b"K" * 32)


def test_a_welcome_for_another_client_is_rejected() -> None:
    handshake = ClientHandshake("c0", CLIENTS["c0"], SERVER.fingerprint)
    welcome_c1, _ = server_accept(ClientHandshake("c1", CLIENTS["c1"], SERVER.fingerprint).hello(),
                                  SERVER, ENROLLED)
    with pytest.raises(ChannelError, match="welcome is for client 'c1'"):
        handshake.finish(welcome_c1)


def test_sequence_numbers_run_out_cleanly() -> None:
    client_ch, _ = connect()
    client_ch._sent = 2**63 - 1  # pretend 2**63 - 1 frames went out
    with pytest.raises(ChannelError, match="used up"):
        client_ch.seal(activations())
    assert repr(client_ch) == f"SecureChannel(client_id='c0', sent={2**63 - 1}, accepted=0)"


def test_identity_repr_hides_the_private_key() -> None:
    ident = Identity.generate()
    assert ident.fingerprint[:16] in repr(ident)
    assert "private" not in repr(ident).lower() and ident.public_bytes.hex() not in repr(ident)
    with pytest.raises(ChannelError):
        Identity.verify(ident.public_bytes, ident.sign(b"a"), b"b")


# --- plaintext channel: loud, and leaky by design -------------------------------------------

def test_plaintext_channel_warns_round_trips_and_leaks() -> None:
    # Prepare
    with pytest.warns(InsecureChannelWarning, match="NOT encrypted or authenticated"):
        sender = PlaintextChannel("c0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureChannelWarning)
        receiver = PlaintextChannel("c0")
    secure_client, _ = connect()
    # Execute
    plain_frame = sender.seal(activations())
    secure_frame = secure_client.seal(activations())
    # Assert: it round-trips, an eavesdropper decodes it, and only the secure frame hides the bytes
    assert torch.equal(receiver.open(plain_frame).tensors["activations"], SECRET.reshape(4, 8))
    stolen = decode(body_of(plain_frame))
    assert torch.equal(stolen.tensors["activations"].flatten(), SECRET)
    assert SECRET.numpy().tobytes() in plain_frame
    assert SECRET.numpy().tobytes() not in secure_frame
    with pytest.raises(ChannelError, match="replayed"):
        receiver.open(plain_frame)


def test_a_header_that_disagrees_with_its_message_is_rejected() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureChannelWarning)
        sender, receiver = PlaintextChannel("c0"), PlaintextChannel("c0")
    frame = sender.seal(activations(step=1))
    relabelled = FrameHeader("activations", "c0", 9, 1, False).pack() + body_of(frame)
    with pytest.raises(ChannelError, match="disagrees"):
        receiver.open(relabelled)
    assert receiver.open(frame).step == 1


def test_plain_frames_outside_a_channel_are_readable_but_unproven() -> None:
    # Prepare: an error notice sent before any channel exists (e.g. after a failed handshake)
    notice = plain_frame(Message("error", "c0", 4, meta={"error": "unknown client"}))
    client_ch, _ = connect()
    # Execute
    msg = open_plain(notice)
    # Assert: anyone can read it; open_plain refuses sealed frames and inconsistent headers
    assert (msg.kind, msg.step, msg.meta["error"]) == ("error", 4, "unknown client")
    assert b"unknown client" in notice
    with pytest.raises(ChannelError, match="encrypted"):
        open_plain(client_ch.seal(activations()))
    with pytest.raises(ChannelError, match="disagrees"):
        open_plain(FrameHeader("error", "c1", 4, 0, False).pack() + body_of(notice))


def test_secure_channel_refuses_plaintext_frames() -> None:
    _, server_ch = connect()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureChannelWarning)
        forged = PlaintextChannel("c0").seal(activations())
    with pytest.raises(ChannelError, match="plaintext frame on a secure channel"):
        server_ch.open(forged)
    assert server_ch.last_accepted_seq == 0
