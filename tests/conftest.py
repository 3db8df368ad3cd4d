"""Helpers shared by the test files: batches, an optimizer, and a federation's parties.

Import them as ``from conftest import make_parties`` (pytest puts ``tests/`` on ``sys.path``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from flglm_kit.client import SplitClient
from flglm_kit.crypto import Identity, InsecureChannelWarning
from flglm_kit.federation import Federation
from flglm_kit.scheduling import Scheduler
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
                 tail_layers: int = 1, tail_on_server: bool = False, secure: bool = True,
                 optimizer: Callable[[Any], torch.optim.Optimizer] = adamw,
                 server_optimizer: Callable[[Any], torch.optim.Optimizer] | None = None,
                 scheduler: Scheduler | None = None, keep_frames: bool = False, **client_options: Any) -> Parties:
    """Split ``model`` and federate it without averaging: a :class:`Federation`'s parties, in a list.

    Each client gets its own copy of the client blocks; the split itself is not copied, so
    ``parties.split.trunk`` is the server's trunk. ``client_options`` go to every client.
    """
    split = split_model(model, head_layers=head_layers, tail_layers=tail_layers, tail_on_server=tail_on_server)
    with warnings.catch_warnings():  # secure=False is asked for; test_plaintext_channels_warn_loudly checks the warning
        warnings.simplefilter("ignore", InsecureChannelWarning)
        fed = Federation(split, client_ids, secure=secure, scheduler=scheduler, aggregate=None, optimizer=optimizer,
                         server_optimizer=server_optimizer, record_server_view=True, keep_frames=keep_frames,
                         copy_split=False, client_options=client_options)
    return Parties(fed.split, fed.server, fed.transport, list(fed.clients.values()), fed.server_identity, fed.seen)


def padded_batch(padding: str, vocab: int, batch: int = 3, seq_len: int = 12
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids, mask, labels): rows of length T, T-4 and T-7, padded on ``padding`` ("right" or "left")."""
    g = torch.Generator().manual_seed(0)
    input_ids = torch.randint(3, vocab, (batch, seq_len), generator=g)
    mask = torch.zeros(batch, seq_len, dtype=torch.long)
    for row, n in enumerate([seq_len, seq_len - 4, seq_len - 7][:batch]):
        if padding == "right":
            mask[row, :n] = 1
        else:
            mask[row, seq_len - n:] = 1
    input_ids = input_ids.masked_fill(mask == 0, 0)
    return input_ids, mask, input_ids.masked_fill(mask == 0, -100)
