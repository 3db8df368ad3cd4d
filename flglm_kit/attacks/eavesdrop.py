"""What a peer client or an eavesdropper on the wire learns: everything in plaintext, nothing sealed.

THREAT MODEL: an observer of the wire (``InProcessTransport.add_tap``; on a network, anyone on
the path) or a peer client of the same federation that taps it. It is not the server: it holds
no channel key of the victim's. ATTACKER'S KNOWLEDGE: every frame's clear header (kind, client
id, step, sequence number, size) and body bytes; a peer also has the client-side weights that
federated averaging gave every client.

* :func:`eavesdrop`: plaintext frames decode (``crypto.open_plain``); encrypted frames are
  AES-GCM ciphertext under the victim's own key and yield nothing readable.
* :func:`peer_attack`: a peer runs nearest-neighbour or white-box matching on the victim's
  activations it could read; for a sealed frame its best guess is the prior-only baseline.

Introduced in notebook 04.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

import torch

from flglm_kit.attacks.baseline import PriorBaseline
from flglm_kit.attacks._common import weight_of
from flglm_kit.attacks.capture import activations_of
from flglm_kit.attacks.inversion import nearest_neighbour_inversion
from flglm_kit.attacks.whitebox import whitebox_token_matching
from flglm_kit.crypto import open_plain
from flglm_kit.split import InputBlock
from flglm_kit.transport import FrameRecord
from flglm_kit.wire import Message, ProtocolError

__all__ = ["Intercept", "eavesdrop", "PeerGuess", "peer_attack"]


class Intercept(NamedTuple):
    """What a wire observer got: the messages it could read and the frames it could not."""

    messages: list[Message]
    unreadable: list[FrameRecord]


def _read(record: FrameRecord) -> Message | None:
    """The message in a plaintext frame; None for ciphertext or a malformed frame."""
    if record.encrypted:
        return None  # ciphertext under a key the observer does not have
    if record.frame is None:  # a ledger record without its bytes: the observer saw them, we did not keep them
        raise ValueError("this record holds no frame bytes: pass a transport tap's records, or build the "
                         "transport with keep_frames=True to read its ledger")
    try:
        return open_plain(record.frame)
    except ProtocolError:
        return None


def eavesdrop(records: Iterable[FrameRecord]) -> Intercept:
    """Decode every plaintext frame; list the encrypted (or malformed) ones as unreadable.

    Args:
        records: frames from a transport tap, or ``transport.ledger`` of a transport built with
            ``keep_frames=True``.

    Returns:
        ``Intercept(messages, unreadable)``. Over secure channels the messages are only the
        handshake (public keys and signatures) and error notices; over a
        :class:`~flglm_kit.crypto.PlaintextChannel` they are every tensor the parties exchange.

    Raises:
        ValueError: for a plaintext record whose bytes were not kept (a ledger without ``keep_frames``).

    Introduced in notebook 04.

    Example:
        >>> from flglm_kit.crypto import plain_frame
        >>> frame = plain_frame(Message("error", "c0", 0, meta={"error": "busy"}))
        >>> got = eavesdrop([FrameRecord("server->client", "c0", "error", 0, 0, False, len(frame), frame)])
        >>> [m.kind for m in got.messages], len(got.unreadable)
        (['error'], 0)
    """
    messages, unreadable = [], []
    for record in records:
        msg = _read(record)
        if msg is None:
            unreadable.append(record)
        else:
            messages.append(msg)
    return Intercept(messages, unreadable)


class PeerGuess(NamedTuple):
    """A peer's guess for one of the victim's ``activations`` frames."""

    record: FrameRecord
    ids: torch.Tensor | None  # (B, T); None: unreadable and no prior given
    readable: bool


def peer_attack(records: Iterable[FrameRecord], victim: str, *, method: str = "whitebox",
                input_block: InputBlock | None = None, prior: PriorBaseline | None = None,
                guess_shape: tuple[int, int] | None = None, **whitebox_options: Any) -> list[PeerGuess]:
    """A peer client sharing the victim's client-side weights attacks the victim's activations.

    THREAT MODEL: a peer client (or anyone holding the averaged client-side weights) tapping the
    wire. ATTACKER'S KNOWLEDGE: the client-side weights after federated averaging (the victim's
    exact input block, if it has not trained since), the wire's frames, and public text for a
    prior. Over a plaintext channel it reads the victim's activations and inverts them
    (``method="whitebox"``: exact matching, :func:`whitebox_token_matching`; ``"nn"``: nearest
    embedding row). Over per-client keys the frames are ciphertext: it has no activations, and
    its best guess is the prior.

    Args:
        records: the frames the peer saw (a transport tap or ledger).
        victim: the victim's client id (it is in every frame's clear header).
        method: ``"whitebox"`` or ``"nn"``.
        input_block: the peer's copy of the client-side input block.
        prior: the prior-only baseline, used for frames it cannot read.
        guess_shape: (batch_size, seq_len) assumed for an unreadable frame (e.g. the federation's
            published batch size and maximum length).
        **whitebox_options: passed to :func:`whitebox_token_matching` (for example
            ``max_candidates=256`` once the victim has trained past the peer's copy of the weights).

    Returns:
        One :class:`PeerGuess` per victim ``activations`` frame, in wire order.

    Raises:
        ValueError: for an unknown method, a missing input block, or a readable record without its bytes.

    Introduced in notebook 04.

    Example:
        >>> from flglm_kit import split_model, tiny_model
        >>> from flglm_kit.crypto import plain_frame
        >>> from flglm_kit.split import Spans
        >>> head = split_model(tiny_model(), head_layers=0).head
        >>> ids = torch.tensor([[1, 50, 60, 2]])
        >>> msg = Message("activations", "victim", 1, tensors={"activations": head(ids, Spans.full(1, 4)).detach(),
        ...               "starts": torch.tensor([0]), "lengths": torch.tensor([4])})
        >>> frame = plain_frame(msg)  # what a PlaintextChannel puts on the wire
        >>> wire = [FrameRecord("client->server", "victim", "activations", 1, 0, False, len(frame), frame)]
        >>> guess = peer_attack(wire, "victim", method="nn", input_block=head)[0]
        >>> guess.readable, guess.ids.tolist()
        (True, [[1, 50, 60, 2]])
    """
    if method not in ("whitebox", "nn"):
        raise ValueError(f"method must be 'whitebox' or 'nn', not {method!r}")
    if input_block is None:
        raise ValueError("peer_attack needs the peer's copy of the input block")
    guesses = []
    for record in records:
        if record.client_id != victim or record.kind != "activations" or record.direction != "client->server":
            continue
        msg = _read(record)
        if msg is None:
            ids = prior.predict(guess_shape) if prior is not None and guess_shape is not None else None
            guesses.append(PeerGuess(record, ids, False))
            continue
        obs = activations_of([msg])[0]
        if method == "nn":
            ids = nearest_neighbour_inversion(obs.tensor, weight_of(input_block.embed_tokens))
            ids = ids.masked_fill(obs.spans.attention_mask() == 0, 0)
        else:
            ids = whitebox_token_matching(obs.tensor, obs.spans, input_block, **whitebox_options)
        guesses.append(PeerGuess(record, ids, True))
    return guesses
