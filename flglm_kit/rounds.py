"""Drive many clients' training steps at once, one message at a time, in one thread.

Real clients compute in parallel on their own machines and their requests meet in the server's
queue. :func:`run_round` simulates that in one process: every client starts its step, each
sends what it has, the server's scheduler runs what it can (one trunk pass over several
clients under :class:`~flglm_kit.scheduling.ClientBatching`), and replies go back, until every
step is done or dropped. Every message still crosses as bytes sealed on its client's channel.

Introduced in notebook 05.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from flglm_kit.client import ServerError, SplitClient, TrainStep

__all__ = ["RoundResult", "run_round", "PostingTransport"]

Batch = tuple[Any, ...]  # (input_ids,) or (input_ids, attention_mask) or (input_ids, attention_mask, labels)


class PostingTransport(Protocol):
    """A transport whose frames can be posted without waiting (e.g. ``InProcessTransport``)."""

    server: Any

    def post(self, frame: bytes, *, run: bool = True) -> str: ...

    def collect(self, client_id: str, *, limit: int | None = None) -> list[bytes]: ...


@dataclass
class RoundResult:
    """What one round did: each client's loss, and the clients whose step was dropped (and why)."""

    losses: dict[str, float] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def __repr__(self) -> str:
        dropped = f", dropped {sorted(self.dropped)}" if self.dropped else ""
        return f"RoundResult({len(self.losses)} clients, {self.seconds * 1000:.1f} ms{dropped})"


def _transport_of(client: SplitClient) -> PostingTransport:
    transport = client.transport
    if not (hasattr(transport, "post") and hasattr(transport, "collect")):
        raise TypeError(f"{client.client_id}'s transport has no post/collect; run_round needs an InProcessTransport")
    return transport  # type: ignore[return-value]


def run_round(work: Sequence[tuple[SplitClient, Batch]], *, poll_s: float = 0.01) -> RoundResult:
    """One training step for each client, all in flight together; returns their losses.

    Args:
        work: ``(client, batch)`` pairs, one per client; a batch is ``(input_ids,)``,
            ``(input_ids, attention_mask)`` or ``(input_ids, attention_mask, labels)``.
        poll_s: how long to sleep while the server waits on a deadline (a straggler).

    Returns:
        A :class:`RoundResult`; a client whose step the server refused or dropped is in
        ``dropped`` with the server's reason, and the others' steps are complete.

    Raises:
        ValueError: a client appears twice, or a batch is malformed (nothing was sent).
        RuntimeError: nothing can progress and nothing will (a scheduler bug).
    """
    ids = [client.client_id for client, _ in work]
    if len(set(ids)) != len(ids):
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"each client may take one step per round; repeated: {repeated}")
    start = time.perf_counter()
    result = RoundResult()
    steps: dict[str, tuple[TrainStep, PostingTransport]] = {}
    for client, batch in work:
        steps[client.client_id] = (client.begin_train_step(*batch), _transport_of(client))
    while any(not step.done for step, _ in steps.values()):
        for step, transport in steps.values():  # the clients compute in parallel: their frames meet in the queue
            frame = step.pop_frame()
            if frame is not None:
                transport.post(frame, run=False)
        for transport in {id(t): t for _, t in steps.values()}.values():
            transport.server.run_pending()
        progressed = False
        for cid, (step, transport) in steps.items():
            for reply in transport.collect(cid):
                progressed = True
                try:
                    step.deliver(reply)
                except ServerError as err:
                    result.dropped[cid] = str(err)
        if not progressed and any(not step.done for step, _ in steps.values()):
            _wait_for_server({id(t): t for _, t in steps.values()}.values(), poll_s)
    for cid, (step, _) in steps.items():
        if step.error is None and step.loss is not None:
            result.losses[cid] = step.loss
    result.seconds = time.perf_counter() - start
    return result


def _wait_for_server(transports: Any, poll_s: float) -> None:
    """Nothing came back: let each server's scheduler reach its next deadline, then run it."""
    waited = False
    for transport in transports:
        deadline = transport.server.next_deadline()
        if deadline is not None:
            time.sleep(min(max(deadline - time.monotonic(), 0.0), poll_s) + 1e-4)
            waited = True
        transport.server.run_pending()
    if not waited:
        raise RuntimeError("no reply came and no scheduler waits on a deadline: the round cannot progress")


def stack_batches(batches: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate (B_k, T) id batches of one length along the batch: the union batch of a round."""
    return torch.cat(list(batches))
