"""A client's side of FedAvg: send its blocks (plain or sealed), and continue from the average.

:class:`ClientAverager` wraps one :class:`~flglm_kit.client.SplitClient`. It counts the samples
trained since the last average, builds the ``client_update`` frame on the client's own channel,
and applies what comes back:

* plain rounds (``aggregate="server"``): the server's average, which replaces the blocks;
* sealed rounds (``aggregate="clients"``): the other participants' updates, sealed under the
  group key, which this client opens and averages with its own, in client-id order, so every
  participant computes the same bits (and the same bits as the server would).

With an ``outer`` optimizer (FedOpt, Reddi et al. 2021; the "outer" step of DiLoCo) the average
does not replace the blocks: the difference between the round's starting blocks and the average
is a pseudo-gradient, and the outer optimizer steps on it. Every client holds the same starting
blocks, the same average and the same outer state, so every client computes the same bits, in
either mode. With one local step of ``SGD(lr=1)`` the pseudo-gradient is the sample-weighted
mean of the clients' gradients, and an outer ``AdamW`` is centralized AdamW on the pooled batch.

Used through Federation in notebook 06.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from flglm_kit.client import ServerError, SplitClient
from flglm_kit.crypto import GroupCipher, GroupKeyPair, new_group_key, open_group_key, seal_group_key
from flglm_kit.fedavg import BlockLayout, pack_update, unpack_update, weighted_average
from flglm_kit.optim import OptimizerFactory
from flglm_kit.wire import Message

__all__ = ["ClientAverager", "Averaged"]


@dataclass(frozen=True)
class Averaged:
    """What one client applied at the end of a round."""

    round: int
    contributors: tuple[str, ...]
    samples: int | None  # total samples behind the average (None: the server cannot know, in sealed rounds)


class ClientAverager:
    """FedAvg for one client (see the module docstring).

    Args:
        client: the connected client whose blocks are averaged.
        group: its long-term group key pair, for sealed rounds (``aggregate="clients"``).
        outer: makes the outer optimizer over the flat block vector (``None``: plain FedAvg, the
            average replaces the blocks).
    """

    def __init__(self, client: SplitClient, *, group: GroupKeyPair | None = None,
                 outer: OptimizerFactory | None = None) -> None:
        self.client = client
        self.group = group
        self.cipher: GroupCipher | None = None
        self.layout = BlockLayout.of(self.parts)
        self.samples = 0  # samples trained since the last average
        self.start: torch.nn.Parameter | None = None  # the round's starting blocks (outer optimizer only)
        self.outer: torch.optim.Optimizer | None = None
        if outer is not None:
            self.start = torch.nn.Parameter(self.layout.flatten(self.parts).detach().clone())
            self.outer = outer([self.start])
            if self.outer is None:
                raise ValueError("the outer optimizer factory returned None")

    @property
    def parts(self) -> dict[str, torch.nn.Module | None]:
        return {"head": self.client.head, "tail": self.client.tail}

    @property
    def client_id(self) -> str:
        return self.client.client_id

    def __repr__(self) -> str:
        return f"ClientAverager({self.client_id!r}, {self.layout.numel:,} numbers, {self.samples} samples)"

    # -- the group key (sealed rounds) -------------------------------------------------------
    def key_frames(self, members: dict[str, bytes], *, group_id: str) -> list[bytes]:
        """As leader: draw a group key and seal it to each other member (their keys known out of band)."""
        if self.group is None:
            raise RuntimeError("this client has no group key pair; pass group=GroupKeyPair.generate()")
        key = new_group_key()
        self.cipher = GroupCipher(key, group_id=group_id)
        frames = []
        for member, public in sorted(members.items()):
            if member == self.client_id:
                continue
            package = seal_group_key(self.group, public, key, group_id=group_id, leader_id=self.client_id,
                                     member_id=member)
            msg = Message("client_update", self.client_id, 0, tensors={"sealed": _bytes_tensor(package)},
                          meta={"purpose": "group_key", "to": member, "round": 0})
            frames.append(self.client._seal(msg))
        return frames

    def accept_key(self, frame: bytes, *, leader_id: str, leader_public: bytes, group_id: str) -> None:
        """As member: open the leader's package, relayed by the server."""
        if self.group is None:
            raise RuntimeError("this client has no group key pair; pass group=GroupKeyPair.generate()")
        msg = self._open(frame)
        if msg.meta.get("purpose") != "group_key" or msg.meta.get("sender") != leader_id:
            raise ServerError(f"expected the group key from {leader_id!r}; got {msg.meta}")
        key = open_group_key(self.group, leader_public, _tensor_bytes(msg.tensors["sealed"]), group_id=group_id,
                             leader_id=leader_id, member_id=self.client_id)
        self.cipher = GroupCipher(key, group_id=group_id)

    # -- one round ------------------------------------------------------------------------
    def update_frame(self, round_: int, *, sealed: bool) -> bytes:
        """This client's ``client_update`` for ``round_``: its blocks, plain or sealed under the group key."""
        if self.samples <= 0:
            raise RuntimeError(f"{self.client_id} trained on no sample since the last average; "
                               "leave it out of this round")
        vector = self.layout.flatten(self.parts)
        meta: dict[str, str | int | float | bool] = {"round": round_, "layout": self.layout.digest}
        if sealed:
            if self.cipher is None:
                raise RuntimeError("no group key yet: agree one first (Federation does it when it starts)")
            blob = self.cipher.seal(pack_update(vector, self.samples), sender=self.client_id, round_=round_,
                                    layout=self.layout.digest)
            tensors = {"sealed": _bytes_tensor(blob)}
        else:
            meta["samples"] = self.samples
            tensors = {"update": vector}
        return self.client._seal(Message("client_update", self.client_id, round_, tensors=tensors, meta=meta))

    def apply(self, frames: Sequence[bytes], round_: int) -> Averaged:
        """Apply the round's replies (the server's average, or the peers' sealed updates and a done notice)."""
        own = self.layout.flatten(self.parts)
        peers: dict[str, tuple[torch.Tensor, int]] = {}
        contributors: tuple[str, ...] = ()
        average: torch.Tensor | None = None
        samples: int | None = None
        for frame in frames:
            msg = self._open(frame)
            if msg.meta.get("round") != round_:
                raise ServerError(f"a reply for round {msg.meta.get('round')} arrived in round {round_}")
            if msg.meta.get("layout") != self.layout.digest:
                raise ServerError("the round's layout differs from this client's: it was built from another "
                                  "split or parameter-efficient method")
            if "contributors" in msg.meta:
                contributors = tuple(str(msg.meta["contributors"]).split(","))
            if "update" in msg.tensors:
                average = msg.tensors["update"]
                samples = int(msg.meta["samples"])
            elif "sealed" in msg.tensors:
                if self.cipher is None:
                    raise ServerError("a sealed update arrived but this client has no group key")
                sender = str(msg.meta["sender"])
                data = self.cipher.open(_tensor_bytes(msg.tensors["sealed"]), sender=sender, round_=round_,
                                        layout=self.layout.digest)
                peers[sender] = unpack_update(data, self.layout)
        if self.client_id not in contributors:
            raise ServerError(f"round {round_} ended without {self.client_id}'s update (contributors: {contributors})")
        if average is None:  # sealed: average here, in client-id order, as the server would
            peers[self.client_id] = (own, self.samples)
            missing = [c for c in contributors if c not in peers]
            if missing:
                raise ServerError(f"round {round_}: the updates of {missing} did not arrive")
            average = weighted_average([peers[c][0] for c in contributors], [peers[c][1] for c in contributors])
        if self.outer is not None:
            average = self._outer_step(average)
        self.layout.load(self.parts, average)
        self.samples = 0
        return Averaged(round_, contributors, samples)

    def _outer_step(self, average: torch.Tensor) -> torch.Tensor:
        """One outer step on the pseudo-gradient ``start - average``; returns the new blocks."""
        assert self.start is not None and self.outer is not None
        with torch.no_grad():
            self.start.grad = self.start.detach() - average.to(self.start.dtype)
        self.outer.step()
        self.start.grad = None
        return self.start.detach().clone()

    # -- a client that rejoins ------------------------------------------------------------
    def sync_frame(self, to: str, round_: int) -> bytes:
        """Seal this client's (averaged) blocks for a rejoining client ``to``, under the group key."""
        if self.cipher is None:
            raise RuntimeError("no group key: sync through the server (plain rounds) instead")
        blob = self.cipher.seal(pack_update(self.layout.flatten(self.parts), 1), sender=self.client_id,
                                round_=round_, layout=self.layout.digest)
        msg = Message("client_update", self.client_id, round_, tensors={"sealed": _bytes_tensor(blob)},
                      meta={"purpose": "sync", "to": to, "round": round_, "layout": self.layout.digest})
        return self.client._seal(msg)

    def accept_sync(self, frame: bytes, round_: int) -> str:
        """Take the blocks a peer sealed for this client; returns the peer's id."""
        self._refuse_with_outer()
        msg = self._open(frame)
        if msg.meta.get("purpose") != "sync" or self.cipher is None:
            raise ServerError(f"expected a sealed sync package; got {msg.meta}")
        sender = str(msg.meta["sender"])
        data = self.cipher.open(_tensor_bytes(msg.tensors["sealed"]), sender=sender, round_=round_,
                                layout=self.layout.digest)
        vector, _ = unpack_update(data, self.layout)
        self.layout.load(self.parts, vector)
        self.samples = 0
        return sender

    def load_average(self, vector: torch.Tensor) -> None:
        """Continue from ``vector`` (e.g. the server's last average, for a client that rejoins a plain federation)."""
        self._refuse_with_outer()
        self.layout.load(self.parts, vector)
        self.samples = 0

    def _refuse_with_outer(self) -> None:
        if self.outer is not None:
            raise RuntimeError(f"{self.client_id} has an outer optimizer: taking over another client's blocks "
                               "would leave its outer state different from theirs (rejoining is not supported "
                               "with outer_optimizer)")

    def _open(self, frame: bytes) -> Message:
        client = self.client
        client._raise_if_error(frame)
        assert client.channel is not None
        msg = client.channel.open(frame)
        if msg.kind == "error":
            raise ServerError(f"the server refused the update: {msg.meta.get('error')}")
        if msg.kind != "client_update":
            raise ServerError(f"expected a client_update, got {msg.kind!r}")
        return msg


def _bytes_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def _tensor_bytes(t: torch.Tensor) -> bytes:
    return t.contiguous().numpy().tobytes()
