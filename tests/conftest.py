"""Helpers shared by the test files: batches, an optimizer, and a server with clients.

Import them as ``from conftest import make_parties`` (pytest puts ``tests/`` on ``sys.path``).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from flglm_kit.client import SplitClient
from flglm_kit.crypto import Identity, InsecureChannelWarning
from flglm_kit.server import SplitServer
from flglm_kit.split import SplitModel, split_model
from flglm_kit.transport import InProcessTransport
from flglm_kit.wire import Message

LR = 3e-3


def adamw(params: Any) -> torch.optim.Optimizer:
    """AdamW at the tests' learning rate (higher than the kit's default, so a few steps move)."""
    return torch.optim.AdamW(params, lr=LR)


def batches(n: int, *, vocab: int = 24, batch: int = 4, seq_len: int = 16,
            seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``n`` right-padded ``(ids, mask)`` batches over a few token ids, so a model learns in a few steps."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(3, vocab, (batch, seq_len), generator=g)
        lengths = torch.randint(seq_len // 2, seq_len + 1, (batch,), generator=g)
        mask = (torch.arange(seq_len)[None, :] < lengths[:, None]).long()  # (B, T) right padding
        out.append((ids.masked_fill(mask == 0, 0), mask))
    return out


@dataclass
class Parties:
    """A split, its server, the transport and the connected clients; ``seen`` is what the server decrypted."""

    split: SplitModel
    server: SplitServer
    transport: InProcessTransport
    clients: list[SplitClient]
    server_identity: Identity
    seen: list[Message] = field(default_factory=list)

    def __iter__(self) -> Any:  # split, server, transport, clients = make_parties(...)
        return iter((self.split, self.server, self.transport, self.clients))


def make_parties(model: torch.nn.Module, *, client_ids: Sequence[str] = ("hospital-a",), head_layers: int = 1,
                 tail_layers: int = 1, tail_on_server: bool = False, plaintext: bool = False,
                 optimizer: Callable[[Any], torch.optim.Optimizer] = adamw, server_options: dict | None = None,
                 transport_options: dict | None = None, **client_options: Any) -> Parties:
    """Split ``model``, build a server and connected clients (each with its own copy of the client blocks)."""
    split = split_model(model, head_layers=head_layers, tail_layers=tail_layers, tail_on_server=tail_on_server)
    server_id = Identity.generate()
    server_options = {"optimizer": optimizer, **(server_options or {})}
    server = SplitServer(split.trunk, identity=server_id, tail=split.tail if tail_on_server else None,
                         **server_options)
    transport = InProcessTransport(server, **(transport_options or {}))
    parties = Parties(split, server, transport, [], server_id)
    server.add_tap(parties.seen.append)
    for cid in client_ids:
        # Each client gets its own copy of the client-side blocks, as after federated averaging.
        head, tail = copy.deepcopy((split.head, None if tail_on_server else split.tail))
        if plaintext:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", InsecureChannelWarning)
                server.enroll_plaintext(cid)
                client = SplitClient(head, tail, client_id=cid, transport=transport, insecure_plaintext=True,
                                     optimizer=optimizer, **client_options)
                client.connect()
        else:
            client = SplitClient(head, tail, client_id=cid, transport=transport,
                                 server_fingerprint=server_id.fingerprint, optimizer=optimizer, **client_options)
            server.enroll(cid, client.identity.public_bytes)
            client.connect()
        parties.clients.append(client)
    return parties
