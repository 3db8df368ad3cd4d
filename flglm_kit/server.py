"""The server party: owns the trunk and its optimizer, and nothing of any client's.

The server *queues* and then *computes* (ARCHITECTURE.md): :meth:`SplitServer.submit` opens,
decodes and checks a frame and puts a valid request in the queue; :meth:`run_pending` runs the
trunk on the queued requests, one at a time in arrival order, and leaves each sealed reply in
its client's outbox. :class:`~flglm_kit.transport.InProcessTransport` calls ``run_pending``
right after each request, so today the queue never holds two requests and each client's
backward steps the optimizer at once (vanilla split learning, one client after another).
Schedulers that batch several clients' requests are not built yet; they plug in at
:meth:`run_pending` without changing the parties.

Threat model: the server is honest-but-curious. It decrypts every client's activations to
compute on them, so per-client keys do not hide anything *from the server*; they hide each
client's traffic from eavesdroppers and peer clients (notebooks 03 and 04 measure both).

Every bad input (garbage, a tampered or replayed frame, an unknown client, a wrong shape or
dtype, a step out of order) gets an ``error`` reply saying what was wrong; the server's
weights are untouched and it goes on serving every other client. A failure inside the
server's own computation answers with a request id only; the exception goes to the server's
log (``logging.getLogger("flglm_kit.server")``), never to a client.

Memory stays bounded however long the server runs: one pending forward per client, the newest
:data:`MAX_ERRORS` error records, and per enrolled client the last :data:`HELLOS_REMEMBERED`
handshake nonces and at most :data:`MAX_FRESH_CHANNELS` not-yet-used new channels.

Introduced in notebook 01.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import torch

from flglm_kit.crypto import (ChannelError, Identity, PlaintextChannel, SecureChannel, open_plain, peek_header,
                              plain_frame, server_accept)
from flglm_kit.losses import IGNORE_INDEX, supervised_tokens
from flglm_kit.optim import OptimizerFactory, default_optimizer, unique_parameters
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


@dataclass
class _Pending:
    """A forward pass waiting for its output gradients."""

    step: int
    activations: torch.Tensor  # (B, T, H) leaf that collects dL/d activations
    hidden: torch.Tensor  # (B, T, H) trunk output, graph kept
    spans: Spans


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
                 limits: Limits = DEFAULT_LIMITS, max_batch_size: int = 64, max_seq_len: int | None = None) -> None:
        self.trunk, self.tail, self.identity, self.limits = trunk, tail, identity, limits
        params = unique_parameters(trunk, tail)
        self.device = device or next(iter(params), torch.empty(0)).device
        self.trunk.to(self.device)
        if self.tail is not None:
            self.tail.to(self.device)
        self.optimizer = optimizer(params) if params else None
        self.hidden_size = trunk.config.hidden_size
        self.vocab_size = trunk.config.vocab_size
        self.dtype = next(iter(params), torch.empty(0)).dtype
        self.max_batch_size = max_batch_size
        self.max_seq_len = max_seq_len or trunk.config.max_position_embeddings
        #: What both parties must be built from (model config and cut); the handshake compares it.
        self.binding: str = getattr(trunk, "fingerprint", "")
        self._enrolled: dict[str, bytes] = {}
        self._channels: dict[str, Channel] = {}  # the live channel of each connected client
        self._fresh: dict[str, deque[Channel]] = {}  # new channels, live once a frame authenticates
        self._queue: deque[Message] = deque()
        self._pending: dict[str, _Pending] = {}
        self._outbox: dict[str, deque[bytes]] = {}
        self._taps: list[Callable[[Message], None]] = []
        self._seen_hellos: dict[str, tuple[deque[bytes], set[bytes]]] = {}
        self.steps_done = 0
        self.errors: deque[tuple[str, str]] = deque(maxlen=MAX_ERRORS)  # (client id, error text), newest last
        self.rejections = 0  # every error reply ever sent, also those no longer in ``errors``

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
        try:
            self._check_request(msg)
        except (ProtocolError, ValueError) as err:
            return self._reject(msg.client_id, str(err), sealed=True)
        for tap in self._taps:
            tap(msg)
        self._queue.append(msg)
        return None

    def _accept_hello(self, frame: bytes, client_id: str) -> bytes:
        """Answer a handshake. The new channel waits beside the live one until a frame proves it.

        Replays: a hello whose nonce is among the client's last :data:`HELLOS_REMEMBERED` is
        refused. An older one replayed still cannot hurt: it opens a channel that nobody can use
        (its keys need the client's ephemeral secret) and that never replaces the live channel,
        which moves only when a frame authenticates under the new keys.
        """
        welcome, channel = server_accept(frame, self.identity, self._enrolled, limits=self.limits,
                                         **({"binding": self.binding} if self.binding else {}))  # TEMP until crypto binding lands
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
                self._pending.pop(client_id, None)
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
            if mode not in ("train", "eval"):
                raise RequestError(f"meta 'mode' must be 'train' or 'eval', not {mode!r}")
            acts = self._check_tensor(msg, "activations", None, (self.dtype,))
            if acts.dim() != 3 or acts.shape[2] != self.hidden_size:
                raise RequestError(f"activations must be (batch, seq_len, {self.hidden_size}); got {tuple(acts.shape)}")
            batch, seq_len, _ = acts.shape
            if not (0 < batch <= self.max_batch_size and 0 < seq_len <= self.max_seq_len):
                raise RequestError(f"batch {batch} x length {seq_len} is outside 1..{self.max_batch_size} x "
                                   f"1..{self.max_seq_len}; send smaller batches")
            for name in ("starts", "lengths"):
                self._check_tensor(msg, name, (batch,), (torch.int64, torch.int32))
            Spans.from_tensors(msg.tensors, seq_len).validate(batch)
            if self.tail is not None and mode == "train":
                labels = self._check_tensor(msg, "labels", (batch, seq_len), (torch.int64,))
                if bool(((labels != IGNORE_INDEX) & ((labels < 0) | (labels >= self.vocab_size))).any()):
                    raise RequestError(f"labels must be token ids in 0..{self.vocab_size - 1} or {IGNORE_INDEX}")
                if supervised_tokens(labels) == 0:
                    raise RequestError("this batch has no supervised token (every next-token label is "
                                       f"{IGNORE_INDEX}); its loss is undefined, so the server did not train on it")
        elif msg.kind == "output_grads":
            pending = self._pending.get(msg.client_id)
            if pending is None or pending.step != msg.step:
                waiting = "nothing" if pending is None else f"step {pending.step}"
                raise RequestError(f"output_grads for step {msg.step}, but the server waits for {waiting} "
                                   f"from {msg.client_id!r}; send the step's activations first")
            self._check_tensor(msg, "output_grads", tuple(pending.hidden.shape), (self.dtype,))
        else:
            raise RequestError(f"the server does not accept {msg.kind!r} messages from clients")

    # -- computing: the scheduler's side -------------------------------------------------
    def run_pending(self) -> int:
        """Run every queued request, one at a time, in arrival order. Returns how many ran."""
        ran = 0
        while self._queue:
            msg = self._queue.popleft()
            try:
                reply = self._compute(msg)
                frame = self._channels[msg.client_id].seal(reply)  # may break Limits: e.g. (B, T, vocab) logits
            except Exception as err:  # noqa: BLE001 - a bug in one request must not stop the server
                self._pending.pop(msg.client_id, None)
                if self.optimizer is not None:
                    self.optimizer.zero_grad(set_to_none=True)
                self.outbox(msg.client_id).append(self._failure(msg, err))
            else:
                self.outbox(msg.client_id).append(frame)
            ran += 1
        return ran

    def _failure(self, msg: Message, err: Exception) -> bytes:
        """The reply to a request that failed while computing: the server's own reason, or a request id."""
        if isinstance(err, ProtocolError):  # a reason this server wrote for the client
            text = f"the server could not process step {msg.step}: {err}"
        else:  # internals (shapes of the trunk's weights, say) stay in the server's log
            request_id = secrets.token_hex(4)
            log.error("request %s from %s (step %d) failed", request_id, msg.client_id, msg.step, exc_info=err)
            text = (f"the server could not process step {msg.step} (request {request_id}); the server's "
                    "operator finds the cause in its log under that id")
        return self._reject(msg.client_id, text, sealed=True)

    def outbox(self, client_id: str) -> deque[bytes]:
        """Sealed replies waiting for ``client_id``, oldest first."""
        return self._outbox.setdefault(client_id, deque())

    def _compute(self, msg: Message) -> Message:
        if msg.kind == "activations":
            return self._forward(msg)
        return self._backward(msg)

    def _set_mode(self, training: bool) -> None:
        """Train or evaluation mode (dropout on or off) for this request's modules."""
        self.trunk.train(training)
        if self.tail is not None:
            self.tail.train(training)

    def _forward(self, msg: Message) -> Message:
        # detach(): a new tensor object, so the message a tap kept never gets requires_grad or a .grad
        acts = msg.tensors["activations"].to(self.device).detach()  # (B, T, H)
        spans = Spans.from_tensors(msg.tensors, acts.shape[1], device=self.device)
        training = msg.meta.get("mode", "train") == "train"
        self._set_mode(training)
        if not training:
            with torch.no_grad():
                hidden = self.trunk(acts, spans)
                if self.tail is not None:
                    logits = self.tail(hidden, spans).logits  # (B, T, V)
                    return Message("trunk_output", msg.client_id, msg.step, tensors={"logits": logits})
            return Message("trunk_output", msg.client_id, msg.step, tensors={"hidden": hidden})
        self._pending.pop(msg.client_id, None)  # a newer step replaces an abandoned one
        acts.requires_grad_(True)
        hidden = self.trunk(acts, spans)  # (B, T, H)
        if self.tail is not None:  # naive layout: the labels are here, so the loss is too
            loss = self.tail(hidden, spans, msg.tensors["labels"].to(self.device)).loss
            assert loss is not None
            grads = self._apply(acts, loss, None)
            return Message("activation_grads", msg.client_id, msg.step, tensors={"activation_grads": grads},
                           meta={"loss": float(loss.detach())})
        self._pending[msg.client_id] = _Pending(msg.step, acts, hidden, spans)
        return Message("trunk_output", msg.client_id, msg.step, tensors={"hidden": hidden.detach()})

    def _backward(self, msg: Message) -> Message:
        pending = self._pending.pop(msg.client_id)
        self._set_mode(True)
        grads = self._apply(pending.activations, pending.hidden, msg.tensors["output_grads"].to(self.device))
        return Message("activation_grads", msg.client_id, msg.step, tensors={"activation_grads": grads})

    def _apply(self, acts: torch.Tensor, out: torch.Tensor, out_grad: torch.Tensor | None) -> torch.Tensor:
        """Backward from ``out`` (seeded with ``out_grad``), one optimizer step; return dL/d acts."""
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)
        out.backward(out_grad)
        # Finite inputs can still overflow in backward; one such step would make the trunk NaN for everyone.
        if not all(p.grad is None or bool(torch.isfinite(p.grad).all())
                   for p in unique_parameters(self.trunk, self.tail)):
            raise RequestError("this step's gradients overflow to infinity or NaN; the server did not apply them")
        if self.optimizer is not None:
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        self.steps_done += 1
        grads = acts.grad if acts.grad is not None else torch.zeros_like(acts)
        return grads.detach()  # (B, T, H)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The server's trainable weights (trunk, and the tail in the naive layout)."""
        state = {f"trunk.{k}": v for k, v in self.trunk.state_dict().items()}
        if self.tail is not None:
            state.update({f"tail.{k}": v for k, v in self.tail.state_dict().items()})
        return state
