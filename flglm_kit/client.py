"""The client party: owns its data, its labels, the input and output blocks and their optimizer.

One training step is the five-phase exchange of DESIGN.md §1::

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

from typing import Protocol

import torch

from flglm_kit.crypto import (ChannelError, ClientHandshake, Identity, PlaintextChannel, SecureChannel, open_plain,
                              peek_header)
from flglm_kit.noise import noise_activations
from flglm_kit.optim import OptimizerFactory, default_optimizer, unique_parameters
from flglm_kit.split import InputBlock, OutputBlock, Spans
from flglm_kit.wire import Message, ProtocolError

__all__ = ["SplitClient", "ServerError", "Transport"]


class Transport(Protocol):
    """Anything that delivers a frame to the server and returns the reply frame."""

    def request(self, frame: bytes) -> bytes: ...


class ServerError(RuntimeError):
    """The server refused a message; the text is the server's reason."""


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
    """

    def __init__(self, head: InputBlock, tail: OutputBlock | None, *, client_id: str, transport: Transport,
                 server_fingerprint: str | None = None, identity: Identity | None = None,
                 insecure_plaintext: bool = False, optimizer: OptimizerFactory = default_optimizer,
                 device: torch.device | None = None, noise_rel: float = 0.0, noise_seed: int = 0) -> None:
        if not insecure_plaintext and server_fingerprint is None:
            raise ValueError("pass server_fingerprint (the server identity's fingerprint, from a trusted "
                             "source) or insecure_plaintext=True for a leak demo")
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
        self.optimizer = optimizer(params)
        self.channel: SecureChannel | PlaintextChannel | None = None
        self.step = 0
        if noise_rel < 0:
            raise ValueError(f"noise_rel must be >= 0, not {noise_rel}")
        self.noise_rel = noise_rel
        self._noise = torch.Generator(device=self.device).manual_seed(noise_seed)

    def __repr__(self) -> str:
        state = "not connected" if self.channel is None else type(self.channel).__name__
        return f"SplitClient({self.client_id!r}, step {self.step}, {state})"

    def connect(self) -> None:
        """Run the handshake with the server (or open a plaintext channel in insecure mode)."""
        if self.insecure_plaintext:
            self.channel = PlaintextChannel(self.client_id)
            return
        assert self.server_fingerprint is not None
        handshake = ClientHandshake(self.client_id, self.identity, self.server_fingerprint)
        reply = self.transport.request(handshake.hello())
        self._raise_if_error(reply)
        self.channel = handshake.finish(reply)

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

    def _exchange(self, msg: Message, expect: str) -> Message:
        if self.channel is None:
            raise RuntimeError("call connect() before training")
        reply = self.transport.request(self.channel.seal(msg))
        self._raise_if_error(reply)
        try:
            answer = self.channel.open(reply)
        except ChannelError as err:
            raise ServerError(f"the server's reply did not authenticate: {err}") from None
        if answer.kind == "error":
            raise ServerError(f"the server refused step {msg.step}: {answer.meta.get('error')}")
        if answer.kind != expect or answer.step != msg.step:
            raise ServerError(f"expected {expect!r} for step {msg.step}, got {answer.kind!r} for step {answer.step}")
        return answer

    def _spans(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> Spans:
        if attention_mask is None:
            batch_size, seq_len = input_ids.shape
            return Spans.full(batch_size, seq_len, device=input_ids.device)
        return Spans.from_attention_mask(attention_mask.to(input_ids.device))

    def _send_activations(self, acts: torch.Tensor, spans: Spans, *, mode: str,
                          labels: torch.Tensor | None = None) -> Message:
        sent = acts.detach()
        if self.noise_rel > 0:  # the noise is a constant to autograd: the client's gradients are unchanged
            sent = noise_activations(sent, self.noise_rel, generator=self._noise)
        tensors = {"activations": sent, "starts": spans.starts, "lengths": spans.lengths}
        if labels is not None:
            tensors["labels"] = labels  # naive layout only: the text, shifted by one, leaves the client
        expect = "activation_grads" if (self.tail is None and mode == "train") else "trunk_output"
        return self._exchange(Message("activations", self.client_id, self.step, tensors=tensors,
                                      meta={"mode": mode}), expect)

    def train_step(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                   labels: torch.Tensor | None = None) -> float:
        """One split training step on a batch; returns the loss.

        Args:
            input_ids: (B, T) token ids; they never leave the client.
            attention_mask: (B, T) 0/1, padding on the left or the right only.
            labels: (B, T), -100 where no loss is taken; default: ``input_ids`` with padding ignored.

        Raises:
            ServerError: the server refused a message (its reason is in the text).
        """
        self.step += 1
        input_ids = input_ids.to(self.device)
        spans = self._spans(input_ids, attention_mask)
        if labels is None:
            labels = input_ids.masked_fill(spans.attention_mask() == 0, -100)
        labels = labels.to(self.device)
        self.optimizer.zero_grad(set_to_none=True)
        acts = self.head(input_ids, spans)  # (B, T, H)                      phase 1
        if self.tail is None:  # naive layout: the server computes the loss
            reply = self._send_activations(acts, spans, mode="train", labels=labels)
            loss = float(reply.meta["loss"])  # type: ignore[arg-type]
        else:
            reply = self._send_activations(acts, spans, mode="train")  # phase 2 on the server
            hidden = reply.tensors["hidden"].to(self.device).requires_grad_(True)  # (B, T, H)
            out = self.tail(hidden, spans, labels)  # phase 3
            assert out.loss is not None
            out.loss.backward()
            loss = float(out.loss.detach())
            assert hidden.grad is not None
            reply = self._exchange(Message("output_grads", self.client_id, self.step,
                                           tensors={"output_grads": hidden.grad}), "activation_grads")  # phase 4
        acts.backward(reply.tensors["activation_grads"].to(self.device))  # phase 5
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss

    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, V) through the split model, without training (evaluation, generation)."""
        self.step += 1
        input_ids = input_ids.to(self.device)
        spans = self._spans(input_ids, attention_mask)
        reply = self._send_activations(self.head(input_ids, spans), spans, mode="eval")
        if self.tail is None:
            return reply.tensors["logits"].to(self.device)
        return self.tail(reply.tensors["hidden"].to(self.device), spans).logits

