"""The handshake binds the model and the split: parties built differently are refused at connect.

Prepare / Execute / Assert. The binding is public (hex SHA-256 of the model config and the cut,
in the kit); the claims are that a mismatch is refused with a clear message on the side that
finds it, and that nobody on the wire can rewrite either side's binding.
"""

from __future__ import annotations

import hashlib
import string

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from flglm_kit.crypto import MAX_BINDING_LEN, ChannelError, ClientHandshake, Identity, peek_header, server_accept
from flglm_kit.crypto import handshake as handshake_module
from flglm_kit.wire import Message, decode, encode

SERVER = Identity.generate()
CLIENT = Identity.generate()
ENROLLED = {"c0": CLIENT.public_bytes}
MODEL_A = hashlib.sha256(b"tiny-glm head_layers=1 tail_layers=1").hexdigest()
MODEL_B = hashlib.sha256(b"tiny-glm head_layers=2 tail_layers=1").hexdigest()
SAME_BUILD = r"build both parties from the same model and the same split \(head_layers, tail_layers\)"


def refake(frame: bytes, **meta_changes: object) -> bytes:
    """Re-frame a plaintext handshake frame with some meta replaced, as a man in the middle would."""
    body = frame[len(peek_header(frame).pack()):]
    msg = decode(body)
    msg.meta.update(meta_changes)  # type: ignore[arg-type]
    return peek_header(frame).pack() + encode(msg)


def handshake(binding: str = "") -> ClientHandshake:
    return ClientHandshake("c0", CLIENT, SERVER.fingerprint, binding=binding)


# --- matching bindings connect ---------------------------------------------------------------

@pytest.mark.parametrize("binding", ["", MODEL_A, "x" * MAX_BINDING_LEN, "tiny-glm_v1.2"])
def test_same_binding_connects_and_round_trips(binding: str) -> None:
    # Prepare
    hs = handshake(binding)
    # Execute
    welcome, server_ch = server_accept(hs.hello(), SERVER, ENROLLED, binding=binding)
    client_ch = hs.finish(welcome)
    # Assert: both ends carry the binding in the clear, and the keys work
    assert decode(welcome[len(peek_header(welcome).pack()):]).meta["binding"] == binding
    assert server_ch.open(client_ch.seal(Message("activations", "c0", 1))).seq == 1


def test_the_default_is_the_empty_binding_on_both_sides() -> None:
    hs = ClientHandshake("c0", CLIENT, SERVER.fingerprint)
    hello = hs.hello()
    welcome, _ = server_accept(hello, SERVER, ENROLLED)
    assert decode(hello[len(peek_header(hello).pack()):]).meta["binding"] == ""
    assert hs.finish(welcome).client_id == "c0"


# --- mismatches are refused, clearly ----------------------------------------------------------

def test_server_refuses_a_client_built_for_another_model_or_split() -> None:
    hello = handshake(MODEL_A).hello()
    with pytest.raises(ChannelError, match=rf"client 'c0' was built for model/split {MODEL_A[:16]}\.\.\., "
                                           rf"this server for {MODEL_B[:16]}\.\.\.: {SAME_BUILD}"):
        server_accept(hello, SERVER, ENROLLED, binding=MODEL_B)


@pytest.mark.parametrize("client, server", [("", MODEL_B), (MODEL_A, "")])
def test_a_binding_on_one_side_only_is_a_mismatch(client: str, server: str) -> None:
    with pytest.raises(ChannelError, match=r"was built for model/split .*\(no binding\)"):
        server_accept(handshake(client).hello(), SERVER, ENROLLED, binding=server)


def test_client_refuses_a_genuine_welcome_for_another_model() -> None:
    # Prepare: the pinned server itself signs a welcome naming MODEL_B (a server that skipped its
    # own check); the signature is valid, so the client's own comparison must catch it
    hs = handshake(MODEL_A)
    server_eph = X25519PrivateKey.generate().public_key().public_bytes_raw()
    transcript = handshake_module._transcript(*hs._fields, server_eph, SERVER.public_bytes, MODEL_B.encode())
    meta = {"ephemeral_key": server_eph.hex(), "identity_key": SERVER.public_bytes.hex(), "binding": MODEL_B,
            "signature": SERVER.sign(b"server" + transcript).hex()}
    welcome, _ = server_accept(hs.hello(), SERVER, ENROLLED, binding=MODEL_A)
    # Execute / Assert
    with pytest.raises(ChannelError, match=rf"the server was built for model/split {MODEL_B[:16]}\.\.\., "
                                           rf"this client 'c0' for {MODEL_A[:16]}\.\.\.: {SAME_BUILD}"):
        hs.finish(refake(welcome, **meta))
    assert hs.finish(welcome).client_id == "c0"  # a refused welcome does not use up the handshake


@settings(max_examples=30, deadline=None)
@given(st.text(string.ascii_letters + string.digits + "_.-", max_size=MAX_BINDING_LEN),
       st.text(string.ascii_letters + string.digits + "_.-", max_size=MAX_BINDING_LEN))
def test_parties_connect_exactly_when_their_bindings_are_equal(client: str, server: str) -> None:
    hs = handshake(client)
    try:
        welcome, _ = server_accept(hs.hello(), SERVER, ENROLLED, binding=server)
        hs.finish(welcome)
        connected = True
    except ChannelError as err:
        assert "was built for model/split" in str(err)
        connected = False
    assert connected == (client == server)


# --- nobody on the wire can rewrite a binding -------------------------------------------------

def test_a_rewritten_binding_in_the_hello_fails_the_signature_check() -> None:
    # Prepare: the MITM makes a MODEL_A client look like a MODEL_B one, to slip past the check
    hello = refake(handshake(MODEL_A).hello(), binding=MODEL_B)
    # Execute / Assert
    with pytest.raises(ChannelError, match="signature check failed"):
        server_accept(hello, SERVER, ENROLLED, binding=MODEL_B)


def test_a_rewritten_binding_in_the_welcome_fails_the_signature_check() -> None:
    hs = handshake(MODEL_A)
    welcome, _ = server_accept(hs.hello(), SERVER, ENROLLED, binding=MODEL_A)
    with pytest.raises(ChannelError, match="signature check failed"):
        hs.finish(refake(welcome, binding=MODEL_B))


def test_a_stripped_binding_is_a_malformed_hello() -> None:
    # A hello without the key (e.g. from an older kit) is refused, not read as the empty binding
    msg = decode(handshake().hello()[len(peek_header(handshake().hello()).pack()):])
    del msg.meta["binding"]
    hello = peek_header(handshake().hello()).pack() + encode(msg)
    with pytest.raises(ChannelError, match="malformed hello: it must carry exactly the meta"):
        server_accept(hello, SERVER, ENROLLED)


# --- the format is checked, with a clear error ------------------------------------------------

BAD_BINDINGS = ["a b", "x" * (MAX_BINDING_LEN + 1), "caf\u00e9", "line\nbreak", "a/b"]


@pytest.mark.parametrize("bad", BAD_BINDINGS)
def test_constructors_reject_a_malformed_binding(bad: str) -> None:
    with pytest.raises(ValueError, match=f"use 0 to {MAX_BINDING_LEN} characters from A-Z a-z 0-9 _ . -"):
        handshake(bad)
    with pytest.raises(ValueError, match="binding .* is not valid"):
        server_accept(handshake().hello(), SERVER, ENROLLED, binding=bad)


@pytest.mark.parametrize("bad", [*BAD_BINDINGS, 12345, True])
def test_server_rejects_a_malformed_binding_on_the_wire(bad: object) -> None:
    hello = refake(handshake().hello(), binding=bad)
    with pytest.raises(ChannelError, match=f"malformed hello: meta 'binding' must be 0 to {MAX_BINDING_LEN} "
                                           "characters"):
        server_accept(hello, SERVER, ENROLLED)


def test_client_rejects_a_malformed_binding_in_the_welcome() -> None:
    hs = handshake()
    welcome, _ = server_accept(hs.hello(), SERVER, ENROLLED)
    with pytest.raises(ChannelError, match="malformed welcome: meta 'binding' must be"):
        hs.finish(refake(welcome, binding="a b"))


def test_a_long_bad_binding_is_shown_shortened() -> None:
    with pytest.raises(ValueError) as err:
        handshake("!" * 1000)
    assert len(str(err.value)) < 200
