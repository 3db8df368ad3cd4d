"""In-process transport: carries frames (bytes, nothing else) between clients and the server.

Everything that crosses between parties goes through :meth:`InProcessTransport.request` as
bytes, so what the ledger and the taps record is *all* that crossed (DESIGN.md §4.1). A tap
sees exactly what an eavesdropper on the wire sees: the clear frame header and the body, which
is ciphertext on a secure channel.

Introduced in notebook 01; notebook 04 taps it as an eavesdropping peer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from flglm_kit.crypto import peek_header
from flglm_kit.server import SplitServer
from flglm_kit.wire import ProtocolError

__all__ = ["FrameRecord", "InProcessTransport"]


@dataclass(frozen=True)
class FrameRecord:
    """One frame on the wire, as an observer of the wire sees it."""

    direction: str  # "client->server" or "server->client"
    client_id: str
    kind: str
    step: int
    seq: int
    encrypted: bool
    nbytes: int
    frame: bytes = field(repr=False)


def _record(direction: str, frame: bytes) -> FrameRecord:
    try:
        h = peek_header(frame)
        return FrameRecord(direction, h.client_id, h.kind, h.step, h.seq, h.encrypted, len(frame), frame)
    except ProtocolError:
        return FrameRecord(direction, "?", "?", -1, -1, False, len(frame), frame)


class InProcessTransport:
    """Connects clients to one :class:`~flglm_kit.server.SplitServer` in this process.

    Args:
        server: the server to deliver to.
        keep_frames: keep every frame in :attr:`ledger` (turn off for long runs).

    Example:
        >>> from flglm_kit import split_model, tiny_model
        >>> from flglm_kit.crypto import Identity
        >>> transport = InProcessTransport(SplitServer(split_model(tiny_model()).trunk, identity=Identity.generate()))
        >>> transport.request(b"garbage")[:4]  # the server answers garbage with an error frame
        b'FLGF'
    """

    def __init__(self, server: SplitServer, *, keep_frames: bool = True) -> None:
        self.server = server
        self.keep_frames = keep_frames
        self.ledger: list[FrameRecord] = []
        self._taps: list[Callable[[FrameRecord], None]] = []

    def add_tap(self, tap: Callable[[FrameRecord], None]) -> None:
        """Call ``tap`` with every frame in either direction: an eavesdropper's view of the wire."""
        self._taps.append(tap)

    def _observe(self, record: FrameRecord) -> None:
        if self.keep_frames:
            self.ledger.append(record)
        for tap in self._taps:
            tap(record)

    def request(self, frame: bytes) -> bytes:
        """Deliver ``frame`` to the server and return its reply frame for the sender."""
        up = _record("client->server", frame)
        self._observe(up)
        reply = self.server.submit(frame)
        if reply is None:
            self.server.run_pending()
            outbox = self.server.outbox(up.client_id)
            reply = outbox.popleft()
        self._observe(_record("server->client", reply))
        return reply

    def bytes_sent(self, client_id: str | None = None) -> dict[str, int]:
        """Total bytes per direction in the ledger, for one client or all."""
        totals = {"client->server": 0, "server->client": 0}
        for r in self.ledger:
            if client_id is None or r.client_id == client_id:
                totals[r.direction] += r.nbytes
        return totals
