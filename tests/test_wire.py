"""Tests for flglm_kit.wire: round trips, clear rejections, and hostile bytes never crash decode."""

from __future__ import annotations

import json
import struct
import tracemalloc
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flglm_kit import wire
from flglm_kit.wire import (
    ALLOWED_DTYPES, KINDS, Limits, Message, ProtocolError, WireError, decode,
    encode, payload_nbytes,
)

PREFIX = struct.Struct("<4sBI")


def frame_bytes(header: Any, payload: bytes = b"", *, raw_header: bytes | None = None) -> bytes:
    """Hand-build an encoded message (valid prefix) around any header, as an attacker would."""
    text = raw_header if raw_header is not None else json.dumps(header).encode()
    return PREFIX.pack(b"FLGW", 1, len(text)) + text + payload


def good_header(**changes: Any) -> dict[str, Any]:
    header: dict[str, Any] = {
        "kind": "activations", "client_id": "c0", "step": 1, "seq": 2, "meta": {},
        "tensors": [{"name": "x", "dtype": "float32", "shape": [2], "offset": 0, "nbytes": 8}],
    }
    header.update(changes)
    return header


def sample_tensor(dtype: torch.dtype, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    if dtype == torch.bool:
        return torch.rand(shape, generator=gen) > 0.5
    if dtype.is_floating_point:
        return torch.randn(shape, generator=gen).to(dtype)
    info = torch.iinfo(dtype)
    return torch.randint(info.min, info.max, shape, generator=gen, dtype=dtype)


VALID = encode(Message("activations", "client-7", 3, seq=4,
                       tensors={"activations": torch.arange(6, dtype=torch.float32).reshape(2, 3),
                                "lengths": torch.tensor([3, 1])},
                       meta={"lr": 0.5, "note": "hi", "flag": True, "n": 2}))


# --- round trips -------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype_name", list(ALLOWED_DTYPES))
def test_round_trip_every_allowed_dtype(dtype_name: str) -> None:
    # Prepare
    dtype = ALLOWED_DTYPES[dtype_name]
    tensor = sample_tensor(dtype, (3, 5), torch.Generator().manual_seed(0))
    msg = Message("activations", "c0", 7, seq=9, tensors={"activations": tensor})
    # Execute
    out = decode(encode(msg))
    # Assert
    got = out.tensors["activations"]
    assert got.dtype == dtype and got.shape == (3, 5)
    assert torch.equal(got, tensor)
    assert (out.kind, out.client_id, out.step, out.seq) == ("activations", "c0", 7, 9)


@pytest.mark.parametrize("shape", [(), (0,), (3, 0, 2), (1, 2, 3, 4)])
def test_round_trip_scalars_and_empty_tensors(shape: tuple[int, ...]) -> None:
    tensor = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    out = decode(encode(Message("output_grads", "c0", 0, tensors={"g": tensor})))
    assert out.tensors["g"].shape == shape
    assert torch.equal(out.tensors["g"], tensor)


def test_round_trip_meta_keeps_types() -> None:
    meta: dict[str, wire.MetaValue] = {"flag": True, "off": False, "n": -3, "big": 2**62,
                                       "lr": 1e-3, "text": "héllo ✓"}
    out = decode(encode(Message("hello", "c0", 0, meta=meta)))
    assert out.meta == meta
    assert [type(v) for v in out.meta.values()] == [type(v) for v in meta.values()]


def test_encode_detaches_and_makes_contiguous() -> None:
    # Prepare: a grad-tracking, transposed, offset view: the awkward cases
    base = torch.randn(4, 6, requires_grad=True)
    view = (base * 2)[1:, 2:].t()
    assert not view.is_contiguous()
    # Execute
    out = decode(encode(Message("activations", "c0", 0, tensors={"a": view})))
    # Assert
    assert torch.equal(out.tensors["a"], view.detach())
    assert not out.tensors["a"].requires_grad


def test_decoded_tensors_are_fresh_and_writable() -> None:
    data = bytearray(VALID)
    out = decode(data)
    out.tensors["activations"].add_(1)  # would fail or corrupt `data` if it were a shared view
    assert bytes(data) == VALID
    assert decode(data).tensors["activations"][0, 0].item() == 0.0
    assert out.tensors["activations"].is_contiguous()


def test_payload_nbytes_counts_tensor_data_only() -> None:
    tensors = {"a": torch.zeros(4, 8), "b": torch.zeros(3, dtype=torch.int8)}
    msg = Message("activations", "c0", 0, tensors=tensors)
    assert payload_nbytes(msg) == 4 * 8 * 4 + 3
    assert 0 < len(encode(msg)) - payload_nbytes(msg) < 400  # the rest is a small header


def test_summary_and_repr_show_shapes_not_data() -> None:
    msg = Message("activations", "c0", 2, tensors={"a": torch.full((2, 3), 123.456)}, meta={"k": 1})
    assert msg.summary() == {"kind": "activations", "client_id": "c0", "step": 2, "seq": 0,
                             "tensors": {"a": ((2, 3), "float32")}, "meta": {"k": 1}}
    assert "(2, 3) float32" in repr(msg) and "123" not in repr(msg)


def test_wire_error_is_a_value_error_and_protocol_error() -> None:
    with pytest.raises(ValueError):
        decode(b"junk")
    assert issubclass(WireError, ProtocolError)


@pytest.mark.parametrize("name, ok", [("hospital-a", True), ("a.b_c-9", True), ("x" * 64, True),
                                      ("", False), ("x" * 65, False), ("a b", False), ("c0\n", False),
                                      ("é", False), (7, False)])
def test_valid_name(name: object, ok: bool) -> None:
    assert wire.valid_name(name) is ok


def test_limits_validate_their_fields() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        Limits(max_bytes=0)
    with pytest.raises(ValueError, match="max_rank"):
        Limits(max_rank=True)  # type: ignore[arg-type]


# --- encode refuses invalid messages on the sender ----------------------------------------------

@pytest.mark.parametrize("msg, match", [
    (Message("activations", "c0", 0, tensors={"activations": torch.zeros(2, dtype=torch.float64)}),
     "tensor 'activations' has dtype 'float64', which is not allowed; send one of float32"),
    (Message("activations", "c0", 0, tensors={"z": torch.zeros(2, dtype=torch.complex64)}), "complex64"),
    (Message("gossip", "c0", 0), "kind 'gossip' is unknown"),
    (Message("hello", "", 0), "client id '' is not valid"),
    (Message("hello", "a b", 0), "client id"),
    (Message("hello", "x" * 65, 0), "client id"),
    (Message("hello", "é", 0), "client id"),
    (Message("hello", "c0", -1), "step"),
    (Message("hello", "c0", True), "step"),
    (Message("hello", "c0", 0, seq=2**63), "seq"),
    (Message("hello", "c0", 0, meta={"x": float("nan")}), "not finite"),
    (Message("hello", "c0", 0, meta={"x": [1, 2]}), "only str, int, float, bool"),  # type: ignore[dict-item]
    (Message("hello", "c0", 0, meta={"bad key": 1}), "meta key"),
    (Message("hello", "c0", 0, tensors={"a/b": torch.zeros(1)}), "tensor name"),
    (Message("hello", "c0", 0, tensors={"a": [1.0]}),  # type: ignore[dict-item]
     "must be a dense torch.Tensor"),
    (Message("hello", "c0", 0, tensors={"a": torch.zeros(1, 1, 1, 1, 1)}), "at most 4 dims"),
    (Message("hello", "c0", 0, tensors={f"t{i}": torch.zeros(1) for i in range(17)}), "at most 16"),
    (Message("hello", "c0", 0, meta={f"k{i}": 1 for i in range(33)}), "33 items, over the limit of 32"),
    (Message("hello", "c0", 0, meta={f"k{i}": "a" * 4000 for i in range(20)}), "header is .* over the limit"),
    (Message("hello", "c0", 0, meta=[("k", 1)]), "meta must be a dict"),  # type: ignore[arg-type]
    (Message("hello", "c0", 0, tensors=[torch.zeros(1)]), "tensors must be a dict"),  # type: ignore[arg-type]
    (Message("hello", "c0", 0, tensors={"m": torch.zeros(2, device="meta")}), "could not read tensor data"),
])
def test_encode_rejects_invalid_message(msg: Message, match: str) -> None:
    with pytest.raises(WireError, match=match):
        encode(msg)


def test_encode_and_decode_reject_non_messages() -> None:
    with pytest.raises(WireError, match="expects a Message"):
        encode({"kind": "hello"})  # type: ignore[arg-type]
    with pytest.raises(WireError, match="expects bytes"):
        decode(VALID.decode("latin-1"))  # type: ignore[arg-type]


def test_encode_and_decode_enforce_size_limits() -> None:
    small = Limits(max_bytes=1000)
    big = Message("activations", "c0", 0, tensors={"a": torch.zeros(300)})  # 1200 bytes of data
    with pytest.raises(WireError, match="over the limit of 1000"):
        encode(big, limits=small)
    with pytest.raises(WireError, match="over the limit of 1000"):
        decode(encode(big), limits=small)


# --- specific hostile inputs ----------------------------------------------------------------------

NESTED = b"[" * 60_000  # fits the 64 KiB header limit, far past json's recursion limit
HOSTILE = {
    "bad magic": (b"XXXX" + VALID[4:], "bad magic"),
    "bad version": (VALID[:4] + b"\x09" + VALID[5:], "version 9"),
    "header length beyond data": (PREFIX.pack(b"FLGW", 1, 10_000) + b"{}", "out of bounds"),
    "header length over limit": (PREFIX.pack(b"FLGW", 1, 2**32 - 1) + b"{}", "out of bounds"),
    "overlapping offsets": (frame_bytes(good_header(tensors=[
        {"name": "a", "dtype": "float32", "shape": [2], "offset": 0, "nbytes": 8},
        {"name": "b", "dtype": "float32", "shape": [2], "offset": 0, "nbytes": 8}]), bytes(16)),
        "must start at 8"),
    "nbytes mismatch": (frame_bytes(good_header(tensors=[
        {"name": "a", "dtype": "float32", "shape": [2], "offset": 0, "nbytes": 4}]), bytes(4)),
        "needs 8"),
    "huge shape": (frame_bytes(good_header(tensors=[
        {"name": "a", "dtype": "float32", "shape": [2**40, 2**40], "offset": 0, "nbytes": 2**82}])),
        "over the limit"),
    "empty but huge strides": (frame_bytes(good_header(tensors=[
        {"name": "a", "dtype": "float32", "shape": [0, 2**40, 2**40], "offset": 0, "nbytes": 0}])),
        "over the limit"),
    "deeply nested json": (frame_bytes(None, raw_header=NESTED), "not valid UTF-8 JSON"),
    "NaN in meta": (frame_bytes(None, raw_header=b'{"meta": {"x": NaN}}'), "NaN"),
    "Infinity in meta": (frame_bytes(None, raw_header=b'{"meta": {"x": -Infinity}}'), "Infinity"),
    "bool as step": (frame_bytes(good_header(step=True), bytes(8)), "step"),
    "bool as dim": (frame_bytes(good_header(tensors=[
        {"name": "x", "dtype": "float32", "shape": [True], "offset": 0, "nbytes": 4}]), bytes(4)),
        "non-negative ints"),
    "float as offset": (frame_bytes(good_header(tensors=[
        {"name": "x", "dtype": "float32", "shape": [2], "offset": 0.0, "nbytes": 8}]), bytes(8)),
        "offset"),
    "negative dim": (frame_bytes(good_header(tensors=[
        {"name": "x", "dtype": "float32", "shape": [-2], "offset": 0, "nbytes": -8}])), "non-negative"),
    "float64 dtype": (frame_bytes(good_header(tensors=[
        {"name": "x", "dtype": "float64", "shape": [1], "offset": 0, "nbytes": 8}]), bytes(8)),
        "dtype 'float64', which is not allowed; send one of float32, float16"),
    "pickle-ish dtype": (frame_bytes(good_header(tensors=[
        {"name": "x", "dtype": "object", "shape": [1], "offset": 0, "nbytes": 8}]), bytes(8)), "object"),
    "trailing bytes": (VALID + b"\x00", "trailing"),
    "truncated data": (VALID[:-1], "truncated"),
    "duplicate keys": (frame_bytes(None, raw_header=b'{"kind": "hello", "kind": "error"}'), "duplicate"),
    "duplicate tensor names": (frame_bytes(good_header(tensors=[
        {"name": "a", "dtype": "uint8", "shape": [1], "offset": 0, "nbytes": 1},
        {"name": "a", "dtype": "uint8", "shape": [1], "offset": 1, "nbytes": 1}]), bytes(2)), "twice"),
    "missing key": (frame_bytes({k: v for k, v in good_header().items() if k != "seq"}, bytes(8)),
                    "missing \\['seq'\\]"),
    "extra key": (frame_bytes(good_header(code="import os"), bytes(8)), "unexpected \\['code'\\]"),
    "header is a list": (frame_bytes([1, 2, 3]), "JSON object"),
    "header not utf-8": (frame_bytes(None, raw_header=b'{"kind": "\xff"}'), "UTF-8"),
    "bool tensor with byte 2": (frame_bytes(good_header(tensors=[
        {"name": "m", "dtype": "bool", "shape": [2], "offset": 0, "nbytes": 2}]), b"\x01\x02"), "bool"),
    "unknown kind": (frame_bytes(good_header(kind="shell"), bytes(8)), "kind 'shell' is unknown"),
    "client id with newline": (frame_bytes(good_header(client_id="c0\n"), bytes(8)), "client id"),
    "huge int in meta": (frame_bytes(good_header(meta={"n": 2**70}), bytes(8)), "64-bit"),
    "long string in meta": (frame_bytes(good_header(meta={"s": "a" * 5000}), bytes(8)), "limit of 4096"),
    "too short": (b"FLGW", "too short"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_decode_rejects_hostile_input_with_clear_error(case: str) -> None:
    data, match = HOSTILE[case]
    with pytest.raises(WireError, match=match):
        decode(data)


def test_overflowing_float_in_meta_is_rejected() -> None:
    header = json.dumps(good_header(meta={"x": 0.5})).replace("0.5", "1e999").encode()
    with pytest.raises(WireError, match="not finite"):
        decode(frame_bytes(None, bytes(8), raw_header=header))


@pytest.mark.parametrize("shape, nbytes", [
    ([2**40, 2**40], 2**82),  # past max_elements
    ([2**27], 2**29),  # allowed shape, but its 512 MiB of data is not there
    ([2**13, 2**13], 2**28),
])
def test_huge_claims_fail_without_allocating(monkeypatch: pytest.MonkeyPatch, shape: list[int],
                                              nbytes: int) -> None:
    # Prepare: a header claiming a huge tensor, with only a few bytes behind it
    data = frame_bytes(good_header(tensors=[
        {"name": "a", "dtype": "float32", "shape": shape, "offset": 0, "nbytes": nbytes}]), bytes(64))
    allocations: list[Any] = []
    monkeypatch.setattr(torch, "empty", lambda *a, **k: allocations.append(a))
    monkeypatch.setattr(wire.np, "frombuffer", lambda *a, **k: allocations.append(a))
    # Execute
    tracemalloc.start()
    try:
        with pytest.raises(WireError):
            decode(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Assert: neither torch nor numpy was asked for memory, and Python used little
    assert allocations == []
    assert peak < 1_000_000


def test_decode_allocates_only_after_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    # The spy proves the previous test's spies are on the path a valid message takes.
    calls: list[tuple[Any, ...]] = []
    real_empty = torch.empty

    def spy(*args: Any, **kwargs: Any) -> torch.Tensor:
        calls.append(args)
        return real_empty(*args, **kwargs)

    monkeypatch.setattr(torch, "empty", spy)
    decode(VALID)
    assert len(calls) == 2


# --- property tests: decode returns a valid Message or raises WireError, nothing else -----------

def check_decode(data: bytes) -> None:
    try:
        msg = decode(data)
    except WireError:
        return
    assert isinstance(msg, Message)
    again = decode(encode(msg))  # what decode returns must itself be a valid, encodable message
    assert again.summary() == msg.summary()


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=600), st.binary(max_size=600).map(lambda b: b"FLGW\x01" + b)))
def test_random_bytes_never_crash_decode(data: bytes) -> None:
    check_decode(data)


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=0, max_value=len(VALID) - 1))
def test_every_truncation_is_rejected(cut: int) -> None:
    with pytest.raises(WireError):
        decode(VALID[:cut])


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=len(VALID) - 1), st.integers(min_value=0, max_value=7))
def test_bit_flips_never_crash_decode(position: int, bit: int) -> None:
    flipped = bytearray(VALID)
    flipped[position] ^= 1 << bit
    check_decode(bytes(flipped))


JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                         st.floats(), st.text(max_size=8))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)), max_leaves=12)
SHAPES = st.lists(st.one_of(st.integers(min_value=-2, max_value=2**41), st.booleans()), max_size=6)
TENSOR_ENTRIES = st.fixed_dictionaries({
    "name": st.one_of(st.sampled_from(["a", "b"]), st.text(max_size=4)),
    "dtype": st.one_of(st.sampled_from(list(ALLOWED_DTYPES) + ["float64", "object"]), JSON_SCALARS),
    "shape": st.one_of(SHAPES, JSON_VALUES),
    "offset": st.one_of(st.integers(min_value=-4, max_value=64), JSON_SCALARS),
    "nbytes": st.one_of(st.integers(min_value=-4, max_value=64), JSON_SCALARS),
})
NEAR_VALID_HEADERS = st.fixed_dictionaries({
    "kind": st.one_of(st.sampled_from(KINDS), JSON_SCALARS),
    "client_id": st.one_of(st.sampled_from(["c0", "", "a" * 65]), JSON_SCALARS),
    "step": st.one_of(st.integers(min_value=-1, max_value=2**64), JSON_SCALARS),
    "seq": st.one_of(st.integers(min_value=-1, max_value=2**64), JSON_SCALARS),
    "meta": st.one_of(st.dictionaries(st.text(max_size=5), JSON_SCALARS, max_size=4), JSON_VALUES),
    "tensors": st.one_of(st.lists(TENSOR_ENTRIES, max_size=3), JSON_VALUES),
})


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(JSON_VALUES, st.binary(max_size=64))
def test_hostile_json_headers_never_crash_decode(header: Any, payload: bytes) -> None:
    check_decode(frame_bytes(None, payload, raw_header=json.dumps(header).encode()))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(NEAR_VALID_HEADERS, st.binary(max_size=64))
def test_near_valid_headers_never_crash_decode(header: dict[str, Any], payload: bytes) -> None:
    check_decode(frame_bytes(None, payload, raw_header=json.dumps(header).encode()))


def test_property_tests_reach_past_the_prefix() -> None:
    # A near-valid header with matching payload must decode: the strategies can produce successes,
    # so the properties above exercise the validator, not only the magic check.
    header = good_header(tensors=[{"name": "a", "dtype": "uint8", "shape": [3], "offset": 0, "nbytes": 3}])
    assert decode(frame_bytes(header, b"abc")).tensors["a"].tolist() == [97, 98, 99]
