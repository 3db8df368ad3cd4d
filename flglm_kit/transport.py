"""In-process transport: carries frames (bytes, nothing else) between clients and a server.

Everything that crosses between parties goes through :meth:`InProcessTransport.request` as
bytes, so what the ledger and the taps record is *all* that crossed (ARCHITECTURE.md, rule 1).
A tap sees exactly what an eavesdropper on the wire sees: the clear frame header and the body,
which is ciphertext on a secure channel.

The transport knows the server only through :class:`FrameHandler` (take a frame, run what is
queued, hand out replies), so it does not import the server, and a scheduler or a network
server can stand behind the same three calls.

Memory stays bounded on long runs: the ledger is a ring of the newest ``max_records`` records,
frame bytes are kept only with ``keep_frames=True``, and byte totals are running sums.

Introduced in notebook 01; notebook 04 taps it as an eavesdropping peer.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from flglm_kit.crypto import peek_header
from flglm_kit.wire import ProtocolError

__all__ = ["FrameHandler", "FrameRecord", "InProcessTransport"]

DIRECTIONS = ("client->server", "server->client")


class FrameHandler(Protocol):
    """What a transport needs of a server: take a frame, run the queue, hand out replies."""

    def submit(self, frame: bytes) -> bytes | None:
        """Take one frame; return an immediate reply (handshake, error) or ``None`` if queued."""

    def run_pending(self) -> int:
        """Compute what is queued; replies go to the clients' outboxes. Returns how many ran."""

    def outbox(self, client_id: str) -> deque[bytes]:
        """Replies waiting for ``client_id``, oldest first."""

    def next_deadline(self) -> float | None:
        """When, on the server's clock, something waiting will be forced on (``None``: nothing waits)."""


@dataclass(frozen=True)
class FrameRecord:
    """One frame on the wire, as an observer of the wire sees it.

    ``frame`` holds the bytes for taps always, and in the ledger only with ``keep_frames=True``.
    """

    direction: str  # "client->server" or "server->client"
    client_id: str
    kind: str
    step: int
    seq: int
    encrypted: bool
    nbytes: int
    frame: bytes | None = field(default=None, repr=False)


def _record(direction: str, frame: bytes) -> FrameRecord:
    try:
        h = peek_header(frame)
        return FrameRecord(direction, h.client_id, h.kind, h.step, h.seq, h.encrypted, len(frame), frame)
    except ProtocolError:
        return FrameRecord(direction, "?", "?", -1, -1, False, len(frame), frame)


class InProcessTransport:
    """Connects clients to one server (anything with the :class:`FrameHandler` calls) in this process.

    Args:
        server: the server to deliver to, e.g. a :class:`~flglm_kit.server.SplitServer`.
        keep_frames: keep each frame's bytes in the :attr:`ledger` records (the eavesdropping
            demos need them); off by default, so a long run holds only small records.
        max_records: how many of the newest records the ledger holds (``None``: all of them;
            only for short runs). Byte totals count every frame, whatever the bound.

    Example:
        >>> from flglm_kit import split_model, tiny_model
        >>> from flglm_kit.crypto import Identity
        >>> from flglm_kit.server import SplitServer
        >>> transport = InProcessTransport(SplitServer(split_model(tiny_model()).trunk, identity=Identity.generate()))
        >>> transport.request(b"garbage")[:4]  # the server answers garbage with an error frame
        b'FLGF'
        >>> transport.ledger[0].kind, transport.ledger[0].frame  # frame bytes are not kept by default
        ('?', None)
    """

    def __init__(self, server: FrameHandler, *, keep_frames: bool = False, max_records: int | None = 10_000) -> None:
        if max_records is not None and max_records < 1:
            raise ValueError(f"max_records must be a positive int or None, not {max_records!r}")
        self.server = server
        self.keep_frames = keep_frames
        self.ledger: deque[FrameRecord] = deque(maxlen=max_records)
        self._taps: list[Callable[[FrameRecord], None]] = []
        self._totals: dict[tuple[str, str], int] = {}  # (direction, client id) -> bytes
        self._inbox: dict[str, deque[bytes]] = {}  # immediate replies (handshakes, errors) not yet collected

    def add_tap(self, tap: Callable[[FrameRecord], None]) -> None:
        """Call ``tap`` with every frame in either direction: an eavesdropper's view of the wire."""
        self._taps.append(tap)

    def _observe(self, record: FrameRecord) -> None:
        key = (record.direction, record.client_id)
        self._totals[key] = self._totals.get(key, 0) + record.nbytes
        for tap in self._taps:
            tap(record)
        if not self.keep_frames:
            record = FrameRecord(record.direction, record.client_id, record.kind, record.step, record.seq,
                                 record.encrypted, record.nbytes)
        self.ledger.append(record)

    def request(self, frame: bytes) -> bytes:
        """Deliver ``frame`` and return the server's reply to the sender, waiting if the scheduler holds it.

        A request waits only while the server's scheduler holds it for another client's step; the
        scheduler's deadline bounds the wait (a straggler is dropped, then this request runs).
        """
        client_id = self.post(frame)
        while True:
            replies = self.collect(client_id, limit=1)
            if replies:
                return replies[0]
            deadline = self.server.next_deadline()
            if deadline is None:
                raise RuntimeError("the server holds this request but nothing will release it; drive clients that "
                                   "interleave with flglm_kit.scheduling.run_round instead of request()")
            time.sleep(min(max(deadline - time.monotonic(), 0.0), 0.05) + 1e-4)
            self.server.run_pending()

    def post(self, frame: bytes, *, run: bool = True) -> str:
        """Deliver ``frame`` without waiting for the reply; returns the client id the reply will go to.

        With ``run`` the server then runs what its scheduler allows; ``run=False`` only queues, so
        that frames posted together (clients computing in parallel) meet in the queue. Replies
        wait for :meth:`collect`.
        """
        up = _record("client->server", frame)
        self._observe(up)
        reply = self.server.submit(frame)
        if reply is not None:  # answered at once (handshake, error): it waits beside the server's outbox
            self._inbox.setdefault(up.client_id, deque()).append(reply)
        elif run:
            self.server.run_pending()
        return up.client_id

    def collect(self, client_id: str, *, limit: int | None = None) -> list[bytes]:
        """The replies waiting for ``client_id`` (at most ``limit``), oldest first, recorded on the wire."""
        out: list[bytes] = []
        for box in (self._inbox.get(client_id), self.server.outbox(client_id)):
            while box and (limit is None or len(out) < limit):
                reply = box.popleft()
                self._observe(_record("server->client", reply))
                out.append(reply)
        return out

    def bytes_sent(self, client_id: str | None = None) -> dict[str, int]:
        """Total bytes per direction of every frame so far (not only those in the ledger), for one client or all.

        Example:
            >>> from flglm_kit import split_model, tiny_model
            >>> from flglm_kit.crypto import Identity
            >>> from flglm_kit.server import SplitServer
            >>> t = InProcessTransport(SplitServer(split_model(tiny_model()).trunk, identity=Identity.generate()))
            >>> _ = t.request(b"garbage")
            >>> t.bytes_sent()["client->server"]
            7
        """
        totals = dict.fromkeys(DIRECTIONS, 0)
        for (direction, cid), nbytes in self._totals.items():
            if client_id is None or cid == client_id:
                totals[direction] += nbytes
        return totals
