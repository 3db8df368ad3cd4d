"""The client party: owns its data, its labels, the input and output blocks and their optimizer.

One training step is the five-phase exchange of ARCHITECTURE.md §1::

    1. client  input block forward        -> sends "activations"      (h_A, spans)
    2. server  trunk forward              -> replies "trunk_output"    (h_B)
    3. client  output block, loss, back   -> sends "output_grads"      (dL/dh_B)
    4. server  trunk backward, step       -> replies "activation_grads" (dL/dh_A)
    5. client  input block backward, step

Every tensor crosses as bytes sealed on this client's own channel; token ids and labels never
leave the client (in the FL-GLM layout). In the naive layout where the output block sits on the
server (``tail=None``), the labels must travel with the activations: that is the leak notebook
02 shows.

Introduced in notebook 01.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Protocol

import torch

from flglm_kit.crypto import (ChannelError, ClientHandshake, Identity, PlaintextChannel, SecureChannel, open_plain,
                              peek_header)
from flglm_kit.losses import IGNORE_INDEX, supervised_tokens
from flglm_kit.noise import noise_activations
from flglm_kit.optim import (OptimizerFactory, default_optimizer, set_training, trainable_parameters,
                             unique_parameters)
from flglm_kit.split import InputBlock, OutputBlock, PartCache, Spans
from flglm_kit.wire import Message, MetaValue, ProtocolError

__all__ = ["SplitClient", "ServerError", "TrainStep", "Transport"]


class Transport(Protocol):
    """Anything that delivers a frame to the server and returns the reply frame."""

    def request(self, frame: bytes) -> bytes: ...


class ServerError(RuntimeError):
    """The server refused a message; the text is the server's reason."""


#: id(parameter) -> (the parameter, the live client that trains it), both held weakly.
_OWNERS: dict[int, tuple[weakref.ref[torch.nn.Parameter], weakref.ref[SplitClient]]] = {}


def _claim(client: SplitClient, params: list[torch.nn.Parameter]) -> None:
    """Make ``client`` the owner of ``params``, refusing any that another live client trains."""
    for p in params:
        entry = _OWNERS.get(id(p))
        owner = entry[1]() if entry is not None and entry[0]() is p else None
        if owner is None or owner is client or owner.closed:
            continue
        if owner.client_id == client.client_id:  # the same client built again (a notebook cell re-run)
            owner.close(reason=f"replaced by a newer SplitClient({client.client_id!r}) built from the same blocks")
            continue
        raise ValueError(
            f"these blocks' parameters are already trained by the live client {owner.client_id!r}; two clients "
            "sharing one copy would step the same weights twice. Give each client its own copy "
            "(copy.deepcopy((split.head, split.tail)), or flglm_kit.federation.Federation, which does), "
            f"or call close() on {owner.client_id!r} first")
    for p in params:
        _OWNERS[id(p)] = (weakref.ref(p), weakref.ref(client))


class SplitClient:
    """One data holder in split training.

    Args:
        head: the client's :class:`~flglm_kit.split.InputBlock`.
        tail: the client's :class:`~flglm_kit.split.OutputBlock`; ``None`` for the naive layout
            in which the server holds it (labels are then sent to the server).
        client_id: this client's name on the wire.
        transport: delivers frames to the server.
        server_fingerprint: the server identity's fingerprint, pinned (from a trusted source).
        identity: this client's long-term key; a new one is made if omitted. The server must
            enrol ``identity.public_bytes`` under ``client_id``.
        insecure_plaintext: use a :class:`~flglm_kit.crypto.PlaintextChannel` instead of the
            handshake (leak demos only; the server must ``enroll_plaintext`` this client).
        optimizer: makes the client's optimizer from its parameters (default AdamW, lr 1e-3).
        device: where the blocks run; default: where their parameters are.
        noise_rel: Gaussian noise added to every activation sent, with sigma = ``noise_rel`` x the
            activations' RMS (FedSEA-LLaMA's defence; not differential privacy, and at
            ``noise_rel = 1`` a matching attacker still recovers most tokens: notebook 03). 0 = none.
        noise_seed: seed of the noise generator.

    Every batch is checked here, before anything is sent (token ids inside the vocabulary,
    integer dtypes, matching shapes, at least one supervised token): a bad batch raises
    ``ValueError`` naming the argument, and nothing is sent or changed on either side.

    Example:
        >>> from flglm_kit import split_model, tiny_model
        >>> from flglm_kit.crypto import Identity
        >>> from flglm_kit.server import SplitServer
        >>> from flglm_kit.transport import InProcessTransport
        >>> split = split_model(tiny_model())
        >>> server_id = Identity.generate()
        >>> server = SplitServer(split.trunk, identity=server_id)
        >>> client = SplitClient(split.head, split.tail, client_id="hospital-a",
        ...                      transport=InProcessTransport(server), server_fingerprint=server_id.fingerprint)
        >>> server.enroll("hospital-a", client.identity.public_bytes)
        >>> client.connect()
        >>> loss = client.train_step(torch.randint(3, 512, (2, 16)))
        >>> 5.0 < loss < 7.5  # about ln(512) = 6.24 for an untrained model
        True
        >>> client.train_step(torch.tensor([[3.0, 4.0]]))
        Traceback (most recent call last):
        ...
        ValueError: input_ids must hold integer token ids, not torch.float32; tokenize the text first ...
    """

    def __init__(self, head: InputBlock, tail: OutputBlock | None, *, client_id: str, transport: Transport,
                 server_fingerprint: str | None = None, identity: Identity | None = None,
                 insecure_plaintext: bool = False, optimizer: OptimizerFactory = default_optimizer,
                 device: torch.device | None = None, noise_rel: float = 0.0, noise_seed: int = 0) -> None:
        if not insecure_plaintext and server_fingerprint is None:
            raise ValueError("pass server_fingerprint (the server identity's fingerprint, from a trusted "
                             "source) or insecure_plaintext=True for a leak demo")
        if not isinstance(noise_rel, (int, float)) or not math.isfinite(noise_rel) or noise_rel < 0:
            raise ValueError(f"noise_rel must be a finite number >= 0 (0 = no noise), not {noise_rel!r}")
        self.binding: str = getattr(head, "fingerprint", "")
        if tail is not None and getattr(tail, "fingerprint", "") != self.binding:
            raise ValueError("head and tail come from different splits (their fingerprints differ); "
                             "take both from the same split_model(...) result")
        self.head, self.tail, self.client_id, self.transport = head, tail, client_id, transport
        self.server_fingerprint = server_fingerprint
        self.identity = identity or Identity.generate()
        self.insecure_plaintext = insecure_plaintext
        params = unique_parameters(head, tail)
        self.device = device or (params[0].device if params else torch.device("cpu"))
        self.head.to(self.device)
        if self.tail is not None:
            self.tail.to(self.device)
        self.dtype = params[0].dtype if params else torch.float32
        weight = self.head.embed_tokens.weight
        assert isinstance(weight, torch.Tensor)
        self.vocab_size = int(weight.shape[0])
        self.closed: str | None = None  # why this client no longer trains (see close())
        _claim(self, [p for p in params if p.requires_grad])
        trainable = trainable_parameters(head, tail)  # frozen weights (LoRA, prefixes) stay out of the optimizer
        self.optimizer: torch.optim.Optimizer | None = optimizer(trainable) if trainable else None
        self.channel: SecureChannel | PlaintextChannel | None = None
        self.step = 0
        self._in_flight: TrainStep | None = None
        self.noise_rel = float(noise_rel)
        self._noise = torch.Generator(device=self.device).manual_seed(noise_seed)

    def __repr__(self) -> str:
        state = "not connected" if self.channel is None else type(self.channel).__name__
        return f"SplitClient({self.client_id!r}, step {self.step}, {state})"

    def close(self, *, reason: str = "closed") -> None:
        """Stop training here and release these blocks, so that another client may take them."""
        self.closed = reason
        for key, (p_ref, c_ref) in list(_OWNERS.items()):
            if c_ref() is self or p_ref() is None:
                _OWNERS.pop(key, None)

    def connect(self) -> None:
        """Run the handshake with the server (or open a plaintext channel in insecure mode).

        Raises:
            ServerError: the server refused (unknown client, or built from another model or split).
        """
        if self.insecure_plaintext:
            self.channel = PlaintextChannel(self.client_id)
            return
        assert self.server_fingerprint is not None
        handshake = ClientHandshake(self.client_id, self.identity, self.server_fingerprint, binding=self.binding)
        reply = self.transport.request(handshake.hello())
        self._raise_if_error(reply)
        self.channel = handshake.finish(reply)

    # -- checking a batch before anything leaves ---------------------------------------------
    def _check_batch(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                     labels: torch.Tensor | None) -> tuple[torch.Tensor, Spans, torch.Tensor | None]:
        """Validate a batch; return ids and labels on this client's device and the batch's spans."""
        if not isinstance(input_ids, torch.Tensor):
            raise ValueError(f"input_ids must be a torch.Tensor of token ids, not {type(input_ids).__name__}")
        if input_ids.dim() != 2 or input_ids.numel() == 0:
            raise ValueError(f"input_ids must be a non-empty (batch, seq_len) tensor; got shape "
                             f"{tuple(input_ids.shape)} (for one sequence use ids[None])")
        if input_ids.is_floating_point() or input_ids.dtype == torch.bool or input_ids.is_complex():
            raise ValueError(f"input_ids must hold integer token ids, not {input_ids.dtype}; "
                             "tokenize the text first (or call .long() on integer-valued ids)")
        input_ids = input_ids.to(self.device).long()
        bad = (input_ids < 0) | (input_ids >= self.vocab_size)
        if bool(bad.any()):
            raise ValueError(f"input_ids hold {int(bad.sum())} token id(s) outside this model's vocabulary "
                             f"0..{self.vocab_size - 1} (e.g. {int(input_ids[bad][0])}); use the tokenizer "
                             "that matches the model")
        if attention_mask is not None:
            if not isinstance(attention_mask, torch.Tensor) or attention_mask.shape != input_ids.shape:
                got = tuple(attention_mask.shape) if isinstance(attention_mask, torch.Tensor) else type(attention_mask)
                raise ValueError(f"attention_mask must have input_ids' shape {tuple(input_ids.shape)}; got {got}")
            if attention_mask.is_floating_point() and not bool(((attention_mask == 0) | (attention_mask == 1)).all()):
                raise ValueError("attention_mask must hold only 0 and 1")
        spans = Spans.of_batch(input_ids, attention_mask)
        if labels is not None:
            if not isinstance(labels, torch.Tensor) or labels.shape != input_ids.shape:
                got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels)
                raise ValueError(f"labels must have input_ids' shape {tuple(input_ids.shape)}; got {got}")
            if labels.is_floating_point() or labels.dtype == torch.bool or labels.is_complex():
                raise ValueError(f"labels must hold integer token ids (or {IGNORE_INDEX}), not {labels.dtype}")
            labels = labels.to(self.device).long()
            bad = (labels != IGNORE_INDEX) & ((labels < 0) | (labels >= self.vocab_size))
            if bool(bad.any()):
                raise ValueError(f"labels must be token ids in 0..{self.vocab_size - 1} or {IGNORE_INDEX} "
                                 f"(no loss); got {int(labels[bad][0])}")
        return input_ids, spans, labels

    # -- the exchange ----------------------------------------------------------------------
    def _raise_if_error(self, frame: bytes) -> None:
        """Turn an unauthenticated error notice from the server into :class:`ServerError`."""
        try:
            header = peek_header(frame)
        except ProtocolError as err:
            raise ServerError(f"unreadable reply from the server: {err}") from None
        if header.kind == "error" and not header.encrypted:
            try:
                text = open_plain(frame).meta.get("error", "no reason given")
            except ProtocolError as err:
                text = f"(unreadable error notice: {err})"
            raise ServerError(f"the server refused the message: {text}")

    def _seal(self, msg: Message) -> bytes:
        if self.channel is None:
            raise RuntimeError("call connect() before training")
        return self.channel.seal(msg)

    def _open_reply(self, reply: bytes, expect: str, step: int) -> Message:
        """Open the server's reply to step ``step``; raise :class:`ServerError` unless it is ``expect``."""
        assert self.channel is not None
        self._raise_if_error(reply)
        try:
            answer = self.channel.open(reply)
        except ChannelError as err:
            raise ServerError(f"the server's reply did not authenticate: {err}") from None
        if answer.kind == "error":
            raise ServerError(f"the server refused step {step}: {answer.meta.get('error')}")
        if answer.kind != expect or answer.step != step:
            raise ServerError(f"expected {expect!r} for step {step}, got {answer.kind!r} for step {answer.step}")
        return answer

    def _exchange(self, msg: Message, expect: str) -> Message:
        return self._open_reply(self.transport.request(self._seal(msg)), expect, msg.step)

    def _activations_message(self, acts: torch.Tensor, spans: Spans, *, mode: str,
                             labels: torch.Tensor | None = None) -> Message:
        sent = acts.detach()
        if self.noise_rel > 0:  # the noise is a constant to autograd: the client's gradients are unchanged
            sent = noise_activations(sent, self.noise_rel, generator=self._noise)
        tensors = {"activations": sent, **spans.to_tensors()}
        if labels is not None:
            tensors["labels"] = labels  # naive layout only: the text, shifted by one, leaves the client
        meta: dict[str, MetaValue] = {"mode": mode}
        if self.head.prefix_len:  # deep prefix tuning: only its length crosses, so the server can check it
            meta["prefix_len"] = self.head.prefix_len
        return Message("activations", self.client_id, self.step, tensors=tensors, meta=meta)

    def _set_mode(self, training: bool) -> None:
        """Train or evaluation mode (dropout on or off) for this client's blocks."""
        set_training(training, self.head, self.tail)

    def begin_train_step(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                         labels: torch.Tensor | None = None) -> TrainStep:
        """Start a training step to drive one message at a time (several clients' steps can then interleave).

        Runs the input block and seals the activations; send :meth:`TrainStep.pop_frame` and hand
        each reply to :meth:`TrainStep.deliver` until :attr:`TrainStep.done`. :meth:`train_step`
        does exactly that over this client's transport; :func:`flglm_kit.scheduling.run_round`
        does it for many clients at once.

        Raises:
            ValueError: the batch is malformed or has no supervised token (nothing was sent).
            RuntimeError: this client has a step in flight already, or is not connected.
        """
        if self._in_flight is not None and not self._in_flight.done:
            raise RuntimeError(f"{self.client_id} has step {self._in_flight.step} in flight; finish it first")
        if self.channel is None:
            raise RuntimeError("call connect() before training")
        if self.closed is not None:
            raise RuntimeError(f"{self.client_id} no longer trains: {self.closed}")
        input_ids, spans, labels = self._check_batch(input_ids, attention_mask, labels)
        if labels is None:
            labels = input_ids.masked_fill(spans.attention_mask() == 0, IGNORE_INDEX)
        if supervised_tokens(labels) == 0:
            raise ValueError("this batch has no supervised token (every next-token label is "
                             f"{IGNORE_INDEX}: all padding, or every label ignored), so its loss is undefined; "
                             "nothing was sent and no weight moved. Drop the batch or fix its labels")
        self.step += 1
        self._in_flight = TrainStep(self, input_ids, spans, labels)
        return self._in_flight

    def train_step(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                   labels: torch.Tensor | None = None) -> float:
        """One split training step on a batch; returns the loss.

        Args:
            input_ids: (B, T) token ids; they never leave the client.
            attention_mask: (B, T) 0/1, padding on the left or the right only.
            labels: (B, T), -100 where no loss is taken; default: ``input_ids`` with padding ignored.

        Raises:
            ValueError: the batch is malformed or has no supervised token (nothing was sent).
            ServerError: the server refused a message (its reason is in the text).
        """
        step = self.begin_train_step(input_ids, attention_mask, labels)
        while not step.done:
            frame = step.pop_frame()
            assert frame is not None
            step.deliver(self.transport.request(frame))
        assert step.loss is not None
        return step.loss

    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, V) through the split model, in evaluation mode, without training.

        Raises:
            ValueError: the batch is malformed (nothing was sent).
            ServerError: the server refused the request.
        """
        input_ids, spans, _ = self._check_batch(input_ids, attention_mask, None)
        self.step += 1
        self._set_mode(False)
        reply = self._exchange(self._activations_message(self.head(input_ids, spans), spans, mode="eval"),
                               "trunk_output")
        if self.tail is None:
            return reply.tensors["logits"].to(self.device)
        return self.tail(reply.tensors["hidden"].to(self.device), spans).logits

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, *, max_new_tokens: int = 20, eos_token_id: int | None = None,
                 pad_token_id: int | None = None, attention_mask: torch.Tensor | None = None,
                 use_cache: bool = True) -> torch.Tensor:
        """Greedy decoding through the split, token for token what ``model.generate(do_sample=False)`` gives.

        With ``use_cache`` (default) each party keeps the key/value cache of its own blocks
        (:class:`~flglm_kit.split.PartCache`; the server keeps the trunk's for this generation's
        *session*): the first request carries the prompt's activations, each later one a single
        position's, so every new token costs one round trip of constant size. The server drops
        the session with the last request (meta ``end``). ``use_cache=False`` is the simple
        version: it resends the whole sequence every step, so its cost and bytes grow with it,
        and its rows must be unpadded.

        Args:
            input_ids: (B, T) prompt token ids.
            max_new_tokens: how many tokens to add.
            eos_token_id: a row that produces it is finished (the token is kept); decoding stops
                once every row is.
            pad_token_id: what a finished row gets afterwards (default ``eos_token_id``), as in
                ``model.generate``.
            attention_mask: (B, T) 0/1 with padding on the left only (``use_cache`` only).
            use_cache: keep key/value caches on both sides (see above).

        Returns:
            (B, T + n) token ids: the prompt followed by the n <= ``max_new_tokens`` new tokens.

        Raises:
            ValueError: a malformed prompt, right padding, or padding with ``use_cache=False``
                (nothing was sent).
            ServerError: the server refused a request (for instance past its bound on sessions
                or on a session's tokens; the text names the bound).

        Example:
            >>> # client.generate(prompt_ids, max_new_tokens=8)             # cached, constant bytes
            >>> # client.generate(prompt_ids, max_new_tokens=8, use_cache=False)  # resends all
        """
        if type(max_new_tokens) is not int or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be an integer >= 0, not {max_new_tokens!r}")
        ids, spans, _ = self._check_batch(input_ids, attention_mask, None)
        seq_len = ids.shape[1]
        if bool(((spans.starts + spans.lengths != seq_len) | (spans.lengths == 0)).any()):
            raise ValueError("generate needs every row's prompt padded on the left only, with at least one token")
        if not use_cache and not bool((spans.lengths == seq_len).all()):
            raise ValueError("generate(use_cache=False) decodes unpadded rows only; use_cache=True takes left padding")
        if max_new_tokens == 0:
            return ids
        fill = eos_token_id if pad_token_id is None else pad_token_id
        unfinished = torch.ones(ids.shape[0], dtype=torch.bool, device=ids.device)  # (B,)
        decoding = self._start_decoding(ids.shape[0]) if use_cache else None
        out, new_ids, new_spans = ids, ids, spans
        for i in range(max_new_tokens):
            if decoding is None:
                logits = self.forward(out)[:, -1]  # (B, V): the whole sequence again
            else:
                logits = self._decoding_step(decoding, new_ids, new_spans, end=i == max_new_tokens - 1)  # (B, V)
            next_ids = logits.argmax(dim=-1)  # (B,)
            if eos_token_id is not None:  # as model.generate: a finished row gets the pad token
                next_ids = torch.where(unfinished, next_ids, torch.full_like(next_ids, fill if fill is not None else 0))
                unfinished &= next_ids != eos_token_id
            out = torch.cat([out, next_ids[:, None]], dim=1)  # (B, T + i + 1)
            new_ids, new_spans = next_ids[:, None], Spans.full(ids.shape[0], 1, device=self.device)  # (B, 1)
            if not bool(unfinished.any()):
                break
        if decoding is not None and decoding.open:  # stopped early: tell the server to forget the session
            self._decoding_step(decoding, new_ids, new_spans, end=True)
        return out

    def _start_decoding(self, batch_size: int) -> _Decoding:
        """A new cached generation: a fresh session id and empty caches of this client's blocks."""
        self._set_mode(False)
        tail_cache = None if self.tail is None else self.tail.new_cache(batch_size, self.device)
        # Steps only grow, so the next step's number makes a session id this client never used.
        return _Decoding(f"gen-{self.step + 1}", self.head.new_cache(batch_size, self.device), tail_cache)

    def _decoding_step(self, decoding: _Decoding, new_ids: torch.Tensor, spans: Spans, *, end: bool) -> torch.Tensor:
        """Send (B, t) new positions' activations in ``decoding``'s session; return the last one's (B, V) logits."""
        self.step += 1
        acts = self.head(new_ids, spans, cache=decoding.head_cache)  # (B, t, H)
        msg = self._activations_message(acts, spans, mode="generate")
        msg.meta.update(session=decoding.session, position=decoding.position, end=end)
        decoding.position += new_ids.shape[1]
        decoding.open = not end
        try:
            reply = self._exchange(msg, "trunk_output")
        except ServerError:
            decoding.open = False  # the server dropped the session with its refusal
            raise
        if self.tail is None:  # naive layout: the server ran the output block
            return reply.tensors["logits"][:, -1].to(self.device)  # (B, V)
        hidden = reply.tensors["hidden"].to(self.device)  # (B, t, H)
        if hidden.shape != acts.shape:
            raise ServerError(f"the server's reply has shape {tuple(hidden.shape)}, expected {tuple(acts.shape)}")
        assert decoding.tail_cache is not None
        return self.tail(hidden, spans, cache=decoding.tail_cache).logits[:, -1]  # (B, V)


@dataclass
class _Decoding:
    """One cached generation in progress on the client: its session id, caches and position."""

    session: str
    head_cache: PartCache
    tail_cache: PartCache | None
    position: int = 0  # positions sent so far in this session
    open: bool = True  # the server still keeps the session


class TrainStep:
    """One client's training step, driven one message at a time (made by :meth:`SplitClient.begin_train_step`).

    The five phases of the exchange, as a small state machine::

        created   input block forward done; pop_frame() -> "activations"
        deliver("trunk_output")      output block, loss, backward; pop_frame() -> "output_grads"
        deliver("activation_grads")  input block backward, optimizer step; done

    In the naive layout (the server holds the output block) the server answers the
    activations with ``activation_grads`` at once.
    """

    def __init__(self, client: SplitClient, input_ids: torch.Tensor, spans: Spans, labels: torch.Tensor) -> None:
        self.client, self.spans, self.labels = client, spans, labels
        self.client_id, self.step = client.client_id, client.step
        self.done = False
        self.loss: float | None = None
        self.error: ServerError | None = None
        client._set_mode(True)
        if client.optimizer is not None:
            client.optimizer.zero_grad(set_to_none=True)
        self._acts: torch.Tensor | None = client.head(input_ids, spans)  # (B, T, H)   phase 1
        naive = client.tail is None
        msg = client._activations_message(self._acts, spans, mode="train", labels=labels if naive else None)
        self._expect = "activation_grads" if naive else "trunk_output"
        self._outgoing: bytes | None = client._seal(msg)

    def __repr__(self) -> str:
        state = "done" if self.done else f"waiting for {self._expect!r}"
        return f"TrainStep({self.client_id!r}, step {self.step}, {state})"

    def pop_frame(self) -> bytes | None:
        """The next frame to send to the server (``None`` while waiting for a reply)."""
        frame, self._outgoing = self._outgoing, None
        return frame

    def deliver(self, reply: bytes) -> None:
        """Hand the server's reply to this step; it computes the next phase.

        Raises:
            ServerError: the server refused the step (the step is over; nothing was applied here).
        """
        if self.done:
            raise RuntimeError(f"step {self.step} of {self.client_id} is finished; this reply is not for it")
        client = self.client
        try:
            answer = client._open_reply(reply, self._expect, self.step)
        except ServerError as err:
            self.done, self.error, self._acts = True, err, None  # drop the graph: nothing will flow back
            if client.optimizer is not None:
                client.optimizer.zero_grad(set_to_none=True)
            raise
        if answer.kind == "trunk_output":  # phase 3: the output block, on the client
            hidden = answer.tensors["hidden"].to(client.device).requires_grad_(True)  # (B, T, H)
            assert client.tail is not None
            out = client.tail(hidden, self.spans, self.labels)
            assert out.loss is not None
            out.loss.backward()
            self.loss = float(out.loss.detach())
            assert hidden.grad is not None
            msg = Message("output_grads", client.client_id, self.step, tensors={"output_grads": hidden.grad},
                          meta={"tokens": supervised_tokens(self.labels)})
            self._expect, self._outgoing = "activation_grads", client._seal(msg)  # phase 4 on the server
            return
        if self.loss is None:  # naive layout: the server computed the loss
            self.loss = float(answer.meta["loss"])
        assert self._acts is not None
        if self._acts.requires_grad:  # a frozen input block (LoRA on the trunk only) has nothing to learn
            self._acts.backward(answer.tensors["activation_grads"].to(client.device))  # phase 5
        if client.optimizer is not None:
            client.optimizer.step()
            client.optimizer.zero_grad(set_to_none=True)
        self.done, self._acts = True, None
