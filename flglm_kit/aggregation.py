"""The server's side of FedAvg: collect the clients' ``client_update`` messages, average or relay.

Two modes, chosen per round by the federation's operator (:meth:`Aggregator.open_round`):

* ``sealed=False`` (the FL-GLM paper's way): each client sends its blocks (or adapters) as one
  flat float32 vector with its sample count; once every participant has sent, the server
  averages, weighted by samples, and returns the average to each. The server then holds every
  client's exact input block (:attr:`Aggregator.last_average`): notebook 06 attacks with it.
* ``sealed=True``: each client sends its update sealed under the clients' group key
  (:mod:`flglm_kit.crypto.group`); the server relays each ciphertext to the other participants
  and each client averages. The server sees sizes and who took part, never a weight.

Every malformed update (wrong round, a second update from one client, a wrong size, layout,
dtype, NaN, an unknown recipient, a sealed update in a plain round or the reverse) raises
:class:`~flglm_kit.wire.ProtocolError` with what was wrong; the server turns it into an error
reply and nothing of the round is lost. A participant that never sends is left out when the
operator closes the round (:meth:`Aggregator.close_round`), and named as absent.

Used through Federation (aggregate="server" or "clients") in notebook 06.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

from flglm_kit.fedavg import weighted_average
from flglm_kit.wire import Message, MetaValue, ProtocolError

__all__ = ["Aggregator", "RoundState", "MAX_SAMPLES"]

#: The largest sample count one update may claim (a sanity bound, not a privacy one).
MAX_SAMPLES = 10**12
_DIGEST = re.compile(r"[0-9a-f]{16}")
_PURPOSES = ("group_key", "sync")


class AggregationError(ProtocolError):
    """A ``client_update`` the server cannot take; the text says why and what to do."""


@dataclass
class RoundState:
    """One aggregation round as the server sees it."""

    round: int
    participants: tuple[str, ...]
    sealed: bool
    updates: dict[str, tuple[torch.Tensor, int]] = field(default_factory=dict)  # sender -> (vector or blob, samples)
    layout: str | None = None
    numel: int | None = None


class Aggregator:
    """Collects one round's updates and answers when every participant has sent (or the round is closed).

    Example:
        >>> agg = Aggregator()
        >>> agg.open_round(1, ["a", "b"], sealed=False)
        >>> meta = {"round": 1, "samples": 3, "layout": "0123456789abcdef"}
        >>> agg.receive(Message("client_update", "a", 1, tensors={"update": torch.zeros(2)}, meta=meta))
        []
        >>> replies = agg.receive(Message("client_update", "b", 1, tensors={"update": torch.ones(2)}, meta=meta))
        >>> [(r.client_id, r.tensors["update"].tolist()) for r in replies]
        [('a', [0.5, 0.5]), ('b', [0.5, 0.5])]
    """

    def __init__(self) -> None:
        self.current: RoundState | None = None
        #: the newest plain average: in ``sealed=False`` rounds, every client's blocks after averaging.
        self.last_average: torch.Tensor | None = None
        self.last_layout: str | None = None
        self.finished: list[tuple[int, tuple[str, ...], tuple[str, ...]]] = []  # (round, contributors, absent)

    def __repr__(self) -> str:
        state = "idle" if self.current is None else f"round {self.current.round}, {len(self.current.updates)}/" \
                                                     f"{len(self.current.participants)} updates"
        return f"Aggregator({state})"

    def open_round(self, round_: int, participants: list[str] | tuple[str, ...], *, sealed: bool) -> None:
        """Start collecting round ``round_`` from ``participants``; a round still open is closed first."""
        if not participants:
            raise ValueError("a round needs at least one participant")
        if self.current is not None:
            self.close_round()
        self.current = RoundState(int(round_), tuple(sorted(set(participants))), bool(sealed))

    def receive(self, msg: Message, *, connected: set[str] | None = None) -> list[Message]:
        """Take one checked, authenticated ``client_update``; return the messages to send now.

        Raises:
            ProtocolError: the update cannot be taken (the text says why); nothing changed.
        """
        purpose = msg.meta.get("purpose", "update")
        if purpose in _PURPOSES:
            return [self._relay(msg, str(purpose), connected)]
        if purpose != "update":
            raise AggregationError(f"meta 'purpose' must be 'update', {' or '.join(map(repr, _PURPOSES))}; "
                                   f"got {purpose!r}")
        state = self.current
        round_ = msg.meta.get("round")
        if state is None:
            raise AggregationError(f"no aggregation round is open, so the update for round {round_!r} was not "
                                   "taken; wait for the operator to open one")
        if type(round_) is not int or round_ != state.round:
            raise AggregationError(f"meta 'round' is {round_!r}, but the server aggregates round {state.round}")
        sender = msg.client_id
        if sender not in state.participants:
            raise AggregationError(f"{sender!r} is not a participant of round {state.round} "
                                   f"(participants: {', '.join(state.participants)})")
        if sender in state.updates:
            raise AggregationError(f"{sender!r} already sent its update for round {state.round}; one per round")
        layout = msg.meta.get("layout")
        if type(layout) is not str or not _DIGEST.fullmatch(layout):
            raise AggregationError("meta 'layout' must be the 16-hex-digit digest of the averaged tensors; "
                                   f"got {layout!r}")
        if state.layout is not None and layout != state.layout:
            raise AggregationError(f"{sender!r} sends layout {layout}, the round's other updates have {state.layout}: "
                                   "build every client from the same split and parameter-efficient method")
        if state.sealed:
            blob = self._tensor(msg, "sealed", torch.uint8)
            entry = (blob, 0)
        else:
            vector = self._tensor(msg, "update", torch.float32)
            if not bool(torch.isfinite(vector).all()):
                raise AggregationError("the update contains NaN or infinity; it was not averaged")
            samples = msg.meta.get("samples")
            if type(samples) is not int or not 0 < samples <= MAX_SAMPLES:
                raise AggregationError(f"meta 'samples' must be how many samples the update trained on "
                                       f"(1..{MAX_SAMPLES}); got {samples!r}")
            entry = (vector, samples)
        if state.numel is not None and entry[0].numel() != state.numel:
            raise AggregationError(f"the update has {entry[0].numel()} elements, the round's others {state.numel}")
        state.layout, state.numel = layout, entry[0].numel()
        state.updates[sender] = entry
        if len(state.updates) == len(state.participants):
            return self.close_round()[0]
        return []

    @staticmethod
    def _tensor(msg: Message, name: str, dtype: torch.dtype) -> torch.Tensor:
        t = msg.tensors.get(name)
        if t is None or set(msg.tensors) != {name}:
            raise AggregationError(f"this round's updates carry exactly one tensor {name!r}; got {sorted(msg.tensors)}"
                                   + (" (the round is sealed: seal the update under the group key)"
                                      if name == "sealed" else " (the round is plain: the server averages)"))
        if t.dtype != dtype or t.dim() != 1 or t.numel() == 0:
            raise AggregationError(f"tensor {name!r} must be a non-empty 1-D {dtype}; got {t.dtype} {tuple(t.shape)}")
        return t

    def _relay(self, msg: Message, purpose: str, connected: set[str] | None) -> Message:
        """A sealed package for one other client (a group key, or the blocks for a rejoining client)."""
        to = msg.meta.get("to")
        if type(to) is not str or to == msg.client_id or (connected is not None and to not in connected):
            raise AggregationError(f"meta 'to' must name another connected client; got {to!r}")
        blob = self._tensor(msg, "sealed", torch.uint8)
        round_ = msg.meta.get("round", 0)
        if type(round_) is not int or round_ < 0:
            raise AggregationError(f"meta 'round' must be an int >= 0; got {round_!r}")
        meta: dict[str, MetaValue] = {"round": round_, "sender": msg.client_id,
                                                            "purpose": purpose}
        if "layout" in msg.meta:
            meta["layout"] = msg.meta["layout"]
        return Message("client_update", to, msg.step, tensors={"sealed": blob}, meta=meta)

    def close_round(self) -> tuple[list[Message], tuple[str, ...]]:
        """Finish the open round with whoever sent; returns (messages to send, absent participants)."""
        state = self.current
        if state is None:
            return [], ()
        self.current = None
        contributors = tuple(sorted(state.updates))
        absent = tuple(p for p in state.participants if p not in state.updates)
        self.finished.append((state.round, contributors, absent))
        del self.finished[:-1000]
        if not contributors:
            return [], absent
        meta: dict[str, MetaValue] = {
            "round": state.round, "contributors": ",".join(contributors), "layout": state.layout or ""}
        out: list[Message] = []
        if state.sealed:
            for to in contributors:
                for sender in contributors:
                    if sender != to:
                        blob = state.updates[sender][0]
                        out.append(Message("client_update", to, state.round, tensors={"sealed": blob},
                                           meta={**meta, "sender": sender}))
                out.append(Message("client_update", to, state.round, meta={**meta, "done": True}))
            return out, absent
        vectors = [state.updates[c][0] for c in contributors]
        weights = [state.updates[c][1] for c in contributors]
        average = weighted_average(vectors, weights)
        self.last_average, self.last_layout = average, state.layout
        meta["samples"] = sum(weights)
        for to in contributors:
            out.append(Message("client_update", to, state.round, tensors={"update": average},
                               meta={**meta, "done": True}))
        return out, absent
