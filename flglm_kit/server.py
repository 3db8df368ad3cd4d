"""The server party: owns the trunk and its optimizer, and nothing of any client's.

The server is a *front desk* and a *compute* side (ARCHITECTURE.md): :meth:`SplitServer.submit`
opens, decodes and checks a frame and puts a valid request in the queue; :meth:`run_pending`
hands the queue to a scheduler (:mod:`flglm_kit.scheduling`), which decides which requests run
together on a :class:`~flglm_kit.compute.TrunkCompute` (the trunk, its optimizer, a parameter
version) and when the weights move. The default, :class:`~flglm_kit.scheduling.Sequential`,
runs one client's step at a time in arrival order; another client's request waits meanwhile.

Threat model: the server is honest-but-curious. It decrypts every client's activations to
compute on them, so per-client keys do not hide anything *from the server*; they hide each
client's traffic from eavesdroppers and peer clients (notebooks 03 and 04 measure both).

Every bad input (garbage, a tampered or replayed frame, an unknown client, a wrong shape or
dtype, a step out of order) gets an ``error`` reply saying what was wrong; the server's
weights are untouched and it goes on serving every other client. A failure inside the
server's own computation answers with a request id only; the exception goes to the server's
log (``logging.getLogger("flglm_kit.server")``), never to a client.

Memory stays bounded however long the server runs: one open step per client, the newest
:data:`MAX_ERRORS` error records, and per enrolled client the last :data:`HELLOS_REMEMBERED`
handshake nonces and at most :data:`MAX_FRESH_CHANNELS` not-yet-used new channels.

Introduced in notebook 01.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
from collections import deque
from collections.abc import Callable, Iterator

import torch

from flglm_kit.aggregation import Aggregator
from flglm_kit.crypto import (ChannelError, Identity, PlaintextChannel, SecureChannel, open_plain, peek_header,
                              plain_frame, server_accept)
from flglm_kit.losses import IGNORE_INDEX, supervised_tokens
from flglm_kit.optim import OptimizerFactory, default_optimizer
from flglm_kit.scheduling import Scheduler, Sequential
from flglm_kit.split import OutputBlock, Spans, Trunk
from flglm_kit.wire import DEFAULT_LIMITS, Limits, Message, ProtocolError, valid_name

__all__ = ["SplitServer", "RequestError", "error_frame", "MAX_ERRORS", "HELLOS_REMEMBERED", "MAX_FRESH_CHANNELS"]

log = logging.getLogger(__name__)

#: How many (client id, error text) records :attr:`SplitServer.errors` keeps, newest last.
MAX_ERRORS = 1000
#: How many of each client's latest handshake nonces the server remembers, to refuse replays.
HELLOS_REMEMBERED = 1024
#: How many new, not yet used channels per client wait beside the live one.
MAX_FRESH_CHANNELS = 4

Channel = SecureChannel | PlaintextChannel


class RequestError(ProtocolError):
    """A well-formed, authenticated message that the server cannot act on (shape, step, kind)."""


def error_frame(client_id: str, text: str, *, step: int = 0) -> bytes:
    """An unauthenticated plaintext ``error`` frame, for frames that could not be opened."""
    safe_id = client_id if valid_name(client_id) else "unknown"
    return plain_frame(Message("error", safe_id, step, meta={"error": text[:1000]}))


class SplitServer:
    """Holds the trunk, talks to each client over its own channel, and trains on their requests.

    Args:
        trunk: the server's :class:`~flglm_kit.split.Trunk`.
        identity: the server's long-term signing key; clients pin ``identity.fingerprint``.
        tail: the output block, only for the naive layout where it sits on the server.
        optimizer: makes the server's optimizer from its parameters (default AdamW, lr 1e-3).
        device: where the trunk runs; default: where its parameters are.
        limits: wire limits for decoding.
        max_batch_size, max_seq_len: the largest request accepted.

    Example:
        >>> from flglm_kit import split_model, tiny_model
        >>> from flglm_kit.crypto import Identity
        >>> server = SplitServer(split_model(tiny_model()).trunk, identity=Identity.generate())
        >>> server.enroll("hospital-a", Identity.generate().public_bytes)
        >>> server
        SplitServer(trunk layers [1, 2], clients ['hospital-a'], connected [])
    """

    def __init__(self, trunk: Trunk, *, identity: Identity, tail: OutputBlock | None = None,
                 optimizer: OptimizerFactory = default_optimizer, device: torch.device | None = None,
                 limits: Limits = DEFAULT_LIMITS, max_batch_size: int = 64, max_seq_len: int | None = None,
                 scheduler: Scheduler | None = None) -> None:
        self.identity, self.limits = identity, limits
        self.scheduler = scheduler or Sequential()
        self.computes = self.scheduler.make_computes(trunk, tail=tail, optimizer=optimizer, device=device)
        first = self.computes[0]
        self.trunk, self.tail, self.optimizer = first.trunk, first.tail, first.optimizer
        self.device, self.dtype = first.device, first.dtype
        self.hidden_size = trunk.config.hidden_size
        self.vocab_size = trunk.config.vocab_size
        self.max_batch_size = max_batch_size
        self.max_seq_len = max_seq_len or trunk.config.max_position_embeddings
        #: What both parties must be built from (model config and cut); the handshake compares it.
        self.binding: str = getattr(trunk, "fingerprint", "")
        self._enrolled: dict[str, bytes] = {}
        self._channels: dict[str, Channel] = {}  # the live channel of each connected client
        self._fresh: dict[str, deque[Channel]] = {}  # new channels, live once a frame authenticates
        self._queue: deque[tuple[float, Message]] = deque()  # (arrival time, checked request)
        # The queue and the outboxes may be used from several threads (one per sub-server process).
        self._lock = threading.RLock()
        self._expect: dict[str, tuple[int, tuple[int, ...]]] = {}  # client -> (step, shape) of output grads owed
        self._outbox: dict[str, deque[bytes]] = {}
        self._taps: list[Callable[[Message], None]] = []
        self._seen_hellos: dict[str, tuple[deque[bytes], set[bytes]]] = {}
        self.errors: deque[tuple[str, str]] = deque(maxlen=MAX_ERRORS)  # (client id, error text), newest last
        self.rejections = 0  # every error reply ever sent, also those no longer in ``errors``
        self.aggregator = Aggregator()  # FedAvg rounds of the client blocks (notebook 06)
        self.scheduler.bind(self, self.computes)

    @property
    def steps_done(self) -> int:
        """Optimizer steps the trunk (all its replicas together) has taken."""
        return sum(c.steps_done for c in self.computes)

    def __repr__(self) -> str:
        return (f"SplitServer(trunk layers {self.trunk.layer_indices}, clients {sorted(self._enrolled)}, "
                f"connected {sorted(self._channels)})")

    # -- enrolment and connections -------------------------------------------------------
    def enroll(self, client_id: str, public_key: bytes) -> None:
        """Admit ``client_id``, whose handshakes must be signed by ``public_key`` (out of band)."""
        if not valid_name(client_id):
            raise ValueError(f"client id {client_id!r} must be 1-64 characters of A-Z a-z 0-9 _ . -")
        self._enrolled[client_id] = bytes(public_key)

    def enroll_plaintext(self, client_id: str) -> None:
        """Admit ``client_id`` over an unencrypted, unauthenticated channel: for leak demos only."""
        if not valid_name(client_id):
            raise ValueError(f"client id {client_id!r} must be 1-64 characters of A-Z a-z 0-9 _ . -")
        self._channels[client_id] = PlaintextChannel(client_id, limits=self.limits)

    def add_tap(self, tap: Callable[[Message], None]) -> None:
        """Call ``tap`` with every request the server accepts, decrypted, as it arrived: what the server sees.

        The server computes on its own aliases of these tensors, so a tap that keeps them keeps
        what the client sent, never a gradient or a graph the server attached afterwards.
        """
        self._taps.append(tap)

    # -- receiving: open, check, queue ---------------------------------------------------
    def submit(self, frame: bytes) -> bytes | None:
        """Take one frame from the wire. Returns an immediate reply (handshake or error), else ``None``.

        Never raises for bad input: whatever is wrong becomes an ``error`` reply.
        """
        client_id = "unknown"
        try:
            header = peek_header(frame, limits=self.limits)
            client_id = header.client_id
            if header.kind == "hello":
                return self._accept_hello(frame, header.client_id)
            msg = self._open(frame, header.client_id)
        except ProtocolError as err:
            return self._reject(client_id, str(err), sealed=False)
        if msg.kind == "client_update":
            return self._client_update(msg)
        try:
            self._check_request(msg)
        except (ProtocolError, ValueError) as err:
            return self._reject(msg.client_id, str(err), sealed=True)
        for tap in self._taps:
            tap(msg)
        with self._lock:
            self._queue.append((self.scheduler.clock(), msg))
        return None

    def _accept_hello(self, frame: bytes, client_id: str) -> bytes:
        """Answer a handshake. The new channel waits beside the live one until a frame proves it.

        Replays: a hello whose nonce is among the client's last :data:`HELLOS_REMEMBERED` is
        refused. An older one replayed still cannot hurt: it opens a channel that nobody can use
        (its keys need the client's ephemeral secret) and that never replaces the live channel,
        which moves only when a frame authenticates under the new keys.
        """
        welcome, channel = server_accept(frame, self.identity, self._enrolled, limits=self.limits,
                                         binding=self.binding)
        # Key the check on the signed nonce, not on the frame's bytes: the same hello re-encoded
        # (meta keys reordered, say) is still a replay.
        nonce = open_plain(frame, limits=self.limits).meta["nonce"]
        digest = hashlib.sha256(f"{client_id}/{nonce}".encode()).digest()
        order, seen = self._seen_hellos.setdefault(client_id, (deque(), set()))
        if digest in seen:
            raise ChannelError("replayed handshake: this hello was already used; "
                               "start a new handshake with client.connect()")
        order.append(digest)
        seen.add(digest)
        if len(order) > HELLOS_REMEMBERED:
            seen.discard(order.popleft())
        if client_id in self._channels:
            self._fresh.setdefault(client_id, deque(maxlen=MAX_FRESH_CHANNELS)).append(channel)
        else:
            self._channels[client_id] = channel
        return welcome

    def _open(self, frame: bytes, client_id: str) -> Message:
        """Open a frame with the client's live channel, else with one of its new channels (which then goes live)."""
        live = self._channels.get(client_id)
        if live is None:
            raise ChannelError(
                f"unknown client {client_id!r}: it has no channel with this server; "
                "enrol it and run the handshake (client.connect()) first")
        try:
            return live.open(frame)
        except ChannelError as live_error:
            for channel in reversed(self._fresh.get(client_id, ())):
                try:
                    msg = channel.open(frame)
                except ProtocolError:
                    continue
                self._channels[client_id] = channel  # the client reconnected: its old channel and step end
                self._fresh.pop(client_id, None)
                self._expect.pop(client_id, None)
                self.scheduler.forget(client_id, "the client reconnected")
                return msg
            raise live_error

    def _reject(self, client_id: str, text: str, *, sealed: bool) -> bytes:
        self.errors.append((client_id, text))
        self.rejections += 1
        log.info("rejected a message from %s: %s", client_id, text)
        text = text[:min(1000, self.limits.max_str_len)]
        channel = self._channels.get(client_id)
        if sealed and channel is not None:
            try:
                return channel.seal(Message("error", client_id, 0, meta={"error": text}))
            except ProtocolError:  # the notice itself breaks this server's Limits: send it in the clear
                pass
        return error_frame(client_id, text)

    def _check_tensor(self, msg: Message, name: str, shape: tuple[int, ...] | None,
                      dtypes: tuple[torch.dtype, ...]) -> torch.Tensor:
        t = msg.tensors.get(name)
        if t is None:
            raise RequestError(f"a {msg.kind!r} message needs a tensor {name!r}; got {sorted(msg.tensors)}")
        if t.dtype not in dtypes:
            raise RequestError(f"tensor {name!r} has dtype {t.dtype}; expected {' or '.join(map(str, dtypes))}")
        if shape is not None and tuple(t.shape) != shape:
            raise RequestError(f"tensor {name!r} has shape {tuple(t.shape)}; expected {shape}")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise RequestError(f"tensor {name!r} contains NaN or infinity")
        return t

    def _check_request(self, msg: Message) -> None:
        """Raise :class:`RequestError` unless the trunk can run ``msg`` as it is."""
        if msg.kind == "activations":
            mode = msg.meta.get("mode", "train")
            if mode not in ("train", "eval", "generate"):
                raise RequestError(f"meta 'mode' must be 'train', 'eval' or 'generate', not {mode!r}")
            prefix_len = msg.meta.get("prefix_len", 0)
            if type(prefix_len) is not int or prefix_len != self.trunk.prefix_len:
                raise RequestError(f"meta 'prefix_len' is {prefix_len!r}, but this server's trunk has a deep prefix of "
                                   f"length {self.trunk.prefix_len}; apply the same PrefixSpec on both sides")
            acts = self._check_tensor(msg, "activations", None, (self.dtype,))
            if acts.dim() != 3 or acts.shape[2] != self.hidden_size:
                raise RequestError(f"activations must be (batch, seq_len, {self.hidden_size}); got {tuple(acts.shape)}")
            batch, seq_len, _ = acts.shape
            if not (0 < batch <= self.max_batch_size and 0 < seq_len <= self.max_seq_len):
                raise RequestError(f"batch {batch} x length {seq_len} is outside 1..{self.max_batch_size} x "
                                   f"1..{self.max_seq_len}; send smaller batches")
            for name in ("starts", "lengths"):
                self._check_tensor(msg, name, (batch,), (torch.int64, torch.int32))
            spans = Spans.from_tensors(msg.tensors, seq_len)
            spans.validate(batch)
            if mode == "generate":
                self._check_generation(msg, spans)
            if mode == "train":
                self._expect.pop(msg.client_id, None)  # a newer step replaces one the client abandoned
            if self.tail is not None and mode == "train":
                labels = self._check_tensor(msg, "labels", (batch, seq_len), (torch.int64,))
                if bool(((labels != IGNORE_INDEX) & ((labels < 0) | (labels >= self.vocab_size))).any()):
                    raise RequestError(f"labels must be token ids in 0..{self.vocab_size - 1} or {IGNORE_INDEX}")
                if supervised_tokens(labels) == 0:
                    raise RequestError("this batch has no supervised token (every next-token label is "
                                       f"{IGNORE_INDEX}); its loss is undefined, so the server did not train on it")
        elif msg.kind == "output_grads":
            owed = self._expect.get(msg.client_id)
            if owed is None or owed[0] != msg.step:
                waiting = "nothing" if owed is None else f"step {owed[0]}"
                raise RequestError(f"output_grads for step {msg.step}, but the server waits for {waiting} "
                                   f"from {msg.client_id!r}; send the step's activations first")
            grads = self._check_tensor(msg, "output_grads", owed[1], (self.dtype,))
            tokens = msg.meta.get("tokens")
            if type(tokens) is not int or not 0 < tokens <= grads.shape[0] * grads.shape[1]:
                raise RequestError("output_grads need meta 'tokens': how many supervised tokens the step's loss "
                                   f"averaged over (1..{grads.shape[0] * grads.shape[1]}); got {tokens!r}")
            del self._expect[msg.client_id]
        else:
            raise RequestError(f"the server does not accept {msg.kind!r} messages from clients")

    def _check_generation(self, msg: Message, spans: Spans) -> None:
        """Raise :class:`RequestError` unless a ``mode="generate"`` request's meta and spans are well formed."""
        session, position, end = msg.meta.get("session"), msg.meta.get("position"), msg.meta.get("end", False)
        if not isinstance(session, str) or not valid_name(session):
            raise RequestError(f"meta 'session' must be 1-64 characters of A-Z a-z 0-9 _ . -, not {session!r}")
        if type(position) is not int or not 0 <= position < self.max_seq_len:
            raise RequestError(f"meta 'position' must be an integer in 0..{self.max_seq_len - 1} (positions already "
                               f"sent in this session; 0 starts it), not {position!r}")
        if type(end) is not bool:
            raise RequestError(f"meta 'end' must be true or false, not {end!r}")
        full = spans.lengths == spans.seq_len  # (B,)
        if position == 0 and bool(((spans.starts + spans.lengths != spans.seq_len) | (spans.lengths == 0)).any()):
            raise RequestError("a generation prompt may be padded on the left only, and no row may be empty")
        if position > 0 and not bool(full.all()):
            raise RequestError("only a generation session's first request (position=0) may hold padding")

    # -- FedAvg of the client blocks (notebook 06) ----------------------------------------
    def _client_update(self, msg: Message) -> bytes | None:
        """A client's model update (or a sealed package to relay): the aggregator takes it or it is refused."""
        try:
            with self._lock:
                replies = self.aggregator.receive(msg, connected=set(self._channels))
        except ProtocolError as err:
            return self._reject(msg.client_id, str(err), sealed=True)
        for tap in self._taps:
            tap(msg)
        for reply in replies:
            self.reply(reply)
        return None

    def open_aggregation(self, round_: int, participants: list[str] | tuple[str, ...], *, sealed: bool) -> None:
        """Start FedAvg round ``round_``: take one ``client_update`` from each participant.

        With ``sealed=False`` the server averages the clients' blocks and returns the average;
        with ``sealed=True`` it only relays updates sealed under the clients' group key.
        """
        unknown = [p for p in participants if p not in self._channels]
        if unknown:
            raise ValueError(f"participants {unknown} are not connected to this server")
        with self._lock:
            self.aggregator.open_round(round_, participants, sealed=sealed)

    def close_aggregation(self) -> tuple[str, ...]:
        """Finish the open round with the updates that arrived; returns the participants that sent none."""
        with self._lock:
            replies, absent = self.aggregator.close_round()
        for reply in replies:
            self.reply(reply)
        return absent

    # -- computing: the scheduler's side -------------------------------------------------
    def run_pending(self) -> int:
        """Let the scheduler run what it can now. Returns how many scheduling moves it made."""
        return self.scheduler.run()

    def next_deadline(self) -> float | None:
        """When, on the scheduler's clock, a waiting request will be forced on (``None``: nothing waits)."""
        return self.scheduler.next_deadline()

    # The desk's verbs for schedulers: look at and take queued requests, reply, refuse.
    def _matching(self, pred: Callable[[Message], bool]) -> Iterator[tuple[float, Message]]:
        return ((t, m) for t, m in self._queue if pred(m))

    def peek(self, pred: Callable[[Message], bool]) -> list[Message]:
        """Queued requests that match ``pred``, oldest first (they stay queued)."""
        with self._lock:
            return [m for _, m in self._matching(pred)]

    def has(self, pred: Callable[[Message], bool]) -> bool:
        """Whether a queued request matches ``pred``."""
        with self._lock:
            return next(self._matching(pred), None) is not None

    def arrival_of(self, pred: Callable[[Message], bool]) -> float | None:
        """Arrival time of the oldest queued request that matches ``pred``."""
        with self._lock:
            first = next(self._matching(pred), None)
        return None if first is None else first[0]

    def take(self, pred: Callable[[Message], bool], *, limit: int | None = None) -> list[Message]:
        """Remove and return the queued requests that match ``pred`` (at most ``limit``), oldest first."""
        taken: list[Message] = []
        kept: deque[tuple[float, Message]] = deque()
        with self._lock:
            for item in self._queue:
                if (limit is None or len(taken) < limit) and pred(item[1]):
                    taken.append(item[1])
                else:
                    kept.append(item)
            self._queue = kept
        return taken

    def reply(self, msg: Message, *, awaits_grads: bool = False) -> None:
        """Seal ``msg`` for its client; with ``awaits_grads`` the client now owes that step's output gradients."""
        try:
            frame = self._channels[msg.client_id].seal(msg)  # may break Limits: e.g. (B, T, vocab) logits
        except Exception as err:  # noqa: BLE001
            self.fail(msg, err)
            return
        with self._lock:
            if awaits_grads:
                self._expect[msg.client_id] = (msg.step, tuple(msg.tensors["hidden"].shape))
            self.outbox(msg.client_id).append(frame)

    def refuse(self, client_id: str, step: int, text: str) -> None:
        """Tell ``client_id`` that its step ``step`` will not be served, and why."""
        with self._lock:
            if self._expect.get(client_id, (None,))[0] == step:
                del self._expect[client_id]
            self.outbox(client_id).append(self._reject(client_id, text, sealed=True))

    def fail(self, msg: Message, err: Exception) -> None:
        """Answer a request that failed while computing: the server's own reason, or a request id."""
        if isinstance(err, ProtocolError):  # a reason this server wrote for the client
            text = f"the server could not process step {msg.step}: {err}"
        else:  # internals (shapes of the trunk's weights, say) stay in the server's log
            request_id = secrets.token_hex(4)
            log.error("request %s from %s (step %d) failed", request_id, msg.client_id, msg.step, exc_info=err)
            text = (f"the server could not process step {msg.step} (request {request_id}); the server's "
                    "operator finds the cause in its log under that id")
        self.refuse(msg.client_id, msg.step, text)

    def outbox(self, client_id: str) -> deque[bytes]:
        """Sealed replies waiting for ``client_id``, oldest first."""
        return self._outbox.setdefault(client_id, deque())

    def close(self) -> None:
        """Release what the scheduler holds (the worker processes of ``ServerHierarchical(processes=True)``)."""
        self.scheduler.close()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The server's trainable weights (trunk, and the tail in the naive layout; the first replica's)."""
        state = {f"trunk.{k}": v for k, v in self.trunk.state_dict().items()}
        if self.tail is not None:
            state.update({f"tail.{k}": v for k, v in self.tail.state_dict().items()})
        return state
