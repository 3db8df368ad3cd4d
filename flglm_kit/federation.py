"""One object for a federation: a server, N clients with their own blocks, rounds, FedAvg, checkpoints.

::

    fed = Federation(split, client_ids=["site-a", "site-b"], aggregate="server")
    result = fed.train_round({"site-a": batches_a, "site-b": batches_b}, local_steps=4)
    result.losses, result.averaged, result.absent

What :class:`Federation` builds is what notebook 01 wires by hand: a
:class:`~flglm_kit.server.SplitServer` with the trunk, an in-process transport, and one
:class:`~flglm_kit.client.SplitClient` per client id, each with **its own copy** of the input
and output blocks, connected over its own secure channel. Every round runs each client's local
steps (interleaved in the server's queue, so a scheduler such as
:class:`~flglm_kit.scheduling.ClientBatching` batches them), then averages the client blocks
(FedAvg, weighted by samples), in one of two modes:

* ``aggregate="server"``: the paper's way; the server receives every client's blocks, averages
  and returns them. It then holds the clients' input block (:meth:`server_view`).
* ``aggregate="clients"``: the clients agree a group key when the federation starts (their
  public keys are handed over here, out of band) and seal their updates under it; the server
  relays ciphertext. See :mod:`flglm_kit.crypto.group` for what this hides and what it does not.
* ``aggregate=None``: no averaging (each client keeps its own blocks; the trunk is still shared).

Parameter-efficient fine-tuning is chosen with ``peft=``: anything with ``apply(split)``, such as
:class:`flglm_kit.lora.LoraSpec` or :class:`flglm_kit.prefix.PrefixSpec`; only what it leaves
trainable is trained and averaged.

A client can drop out (:meth:`Federation.drop`, or ``drop_after`` in :meth:`train_round`) and
rejoin (:meth:`rejoin`): the round's result names who was absent, and a rejoining client
continues from the current average. :meth:`save` writes each party's state in its own folder
(safetensors and JSON); :meth:`resume` continues a run with the same losses as if it had not
stopped.

Introduced in notebook 02 (the parties every attack notebook builds); averaging, the methods and
checkpoints in notebook 06.
"""

from __future__ import annotations

import copy
import json
import math
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import torch

from flglm_kit.checkpoint import CheckpointError, load_state, save_state
from flglm_kit.client import SplitClient
from flglm_kit.crypto import GroupKeyPair, Identity, InsecureChannelWarning
from flglm_kit.fedavg import BlockLayout
from flglm_kit.fedclient import Averaged, ClientAverager
from flglm_kit.optim import OptimizerFactory, default_optimizer, trainable_parameters
from flglm_kit.rounds import run_round
from flglm_kit.scheduling import Scheduler
from flglm_kit.server import SplitServer
from flglm_kit.split import InputBlock, SplitModel
from flglm_kit.transport import InProcessTransport
from flglm_kit.wire import Message

__all__ = ["Federation", "FedRound", "PeftMethod"]

Aggregate = Literal["server", "clients"] | None
Batch = tuple[torch.Tensor, ...] | Mapping[str, torch.Tensor]
_FORMAT = 1


class PeftMethod(Protocol):
    """A parameter-efficient method: changes a split in place so that only its own tensors train."""

    def apply(self, split: SplitModel) -> SplitModel: ...


@dataclass
class FedRound:
    """What one round did.

    Attributes:
        round: the round's number (1, 2, ...).
        losses: each client's loss at each local step.
        samples: samples each client trained on this round.
        averaged: the clients whose blocks went into the average (empty without aggregation).
        absent: clients that were expected and did not take part, with the reason.
        update_bytes: bytes of ``client_update`` frames on the wire this round, both directions.
        seconds: wall time of the round.
    """

    round: int
    losses: dict[str, list[float]] = field(default_factory=dict)
    samples: dict[str, int] = field(default_factory=dict)
    averaged: tuple[str, ...] = ()
    absent: dict[str, str] = field(default_factory=dict)
    update_bytes: int = 0
    seconds: float = 0.0

    @property
    def mean_loss(self) -> float:
        """The mean over clients of each client's mean loss this round (``nan`` if nobody trained)."""
        means = [sum(v) / len(v) for v in self.losses.values() if v]
        return sum(means) / len(means) if means else float("nan")

    def __repr__(self) -> str:
        absent = f", absent {sorted(self.absent)}" if self.absent else ""
        return (f"FedRound({self.round}: mean loss {self.mean_loss:.4f}, {len(self.losses)} clients, "
                f"averaged {len(self.averaged)}{absent}, {self.update_bytes:,} update bytes)")


def _as_tuple(batch: Batch) -> tuple[torch.Tensor, ...]:
    if isinstance(batch, Mapping):
        keys = [k for k in ("input_ids", "attention_mask", "labels") if k in batch]
        if not keys or keys[0] != "input_ids":
            raise ValueError(f"a batch mapping needs 'input_ids' (and optionally 'attention_mask', 'labels'); "
                             f"got {sorted(batch)}")
        return tuple(batch[k] for k in keys)
    if isinstance(batch, torch.Tensor):
        return (batch,)
    return tuple(batch)


class Federation:
    """A server and its clients, built from one split (see the module docstring).

    Args:
        split: the split to federate; it is copied (``copy_split=True``), so it stays as it was.
        client_ids: one id per client (1-64 characters of ``A-Z a-z 0-9 _ . -``).
        secure: per-client encrypted channels (``False``: plaintext, for the leak demos only).
        scheduler: the server's scheduler (default: :class:`~flglm_kit.scheduling.Sequential`).
        peft: a parameter-efficient method applied to the (copied) split before anything else.
        aggregate: ``"server"``, ``"clients"`` or ``None`` (see the module docstring).
        optimizer: makes each client's optimizer; ``server_optimizer`` the server's (default: the same).
        outer_optimizer: FedOpt: each client steps this optimizer on ``start - average`` instead of
            taking the average (see :mod:`flglm_kit.fedclient`); ``None``: plain FedAvg.
        record_server_view: keep every message the server decrypted in :attr:`seen` (for attacks;
            it holds tensors, so leave it off on long runs).
        keep_frames: keep frame bytes in the transport's ledger (for the eavesdropper demos);
            ``transport_options`` for the rest of the transport's (``max_records``, ...).
        client_options: more keyword arguments for every :class:`~flglm_kit.client.SplitClient`
            (``noise_rel``, ...); ``server_options`` for the server (``max_batch_size``, ...).

    Raises:
        ValueError: an id is repeated or invalid, or ``aggregate`` is unknown.

    Example:
        >>> from flglm_kit import split_model, tiny_model
        >>> fed = Federation(split_model(tiny_model()), client_ids=["a", "b"])
        >>> batch = torch.randint(3, 512, (2, 12))
        >>> fed.train_round({"a": [batch], "b": [batch]})
        FedRound(1: mean loss ..., 2 clients, averaged 2, ... update bytes)
        >>> fed.clients["a"].head is fed.clients["b"].head
        False
    """

    def __init__(self, split: SplitModel, client_ids: Sequence[str], *, secure: bool = True,
                 scheduler: Scheduler | None = None, peft: PeftMethod | None = None, aggregate: Aggregate = "server",
                 optimizer: OptimizerFactory = default_optimizer, server_optimizer: OptimizerFactory | None = None,
                 outer_optimizer: OptimizerFactory | None = None, record_server_view: bool = False,
                 keep_frames: bool = False, copy_split: bool = True,
                 client_options: Mapping[str, Any] | None = None,
                 server_options: Mapping[str, Any] | None = None,
                 transport_options: Mapping[str, Any] | None = None) -> None:
        if aggregate not in ("server", "clients", None):
            raise ValueError(f"aggregate must be 'server', 'clients' or None, not {aggregate!r}")
        ids = list(client_ids)
        if not ids or len(set(ids)) != len(ids):
            raise ValueError(f"client_ids must be distinct and at least one; got {ids}")
        if aggregate == "clients" and not secure:
            raise ValueError("aggregate='clients' seals updates under the clients' group key, which needs "
                             "secure=True (plaintext channels are for the leak demos only)")
        self.split = copy.deepcopy(split) if copy_split else split
        if peft is not None:
            peft.apply(self.split)
        self.peft, self.aggregate, self.secure = peft, aggregate, secure
        self.round = 0
        self.seen: list[Message] = []
        self.history: list[FedRound] = []
        self.server_identity = Identity.generate()
        tail_on_server = self.split.tail_on_server
        self.server = SplitServer(self.split.trunk, identity=self.server_identity,
                                  tail=self.split.tail if tail_on_server else None,
                                  optimizer=server_optimizer or optimizer, scheduler=scheduler,
                                  **dict(server_options or {}))
        self.transport = InProcessTransport(self.server, keep_frames=keep_frames, **dict(transport_options or {}))
        if not secure:  # once for the federation, not once per party
            warnings.warn("this federation's channels are PLAINTEXT: anyone on the wire reads every activation "
                          "and gradient. Use it for the leak demos only (secure=True otherwise)",
                          InsecureChannelWarning, stacklevel=2)
        if record_server_view:
            self.server.add_tap(self.seen.append)
        self._optimizer, self._client_options = optimizer, dict(client_options or {})
        self._outer = outer_optimizer
        self.clients: dict[str, SplitClient] = {}
        self.averagers: dict[str, ClientAverager] = {}
        self.group_keys: dict[str, GroupKeyPair] = {}
        self.offline: dict[str, str] = {}  # client id -> why it is not taking part
        for cid in ids:
            self._add_client(cid)
        self.group_id = f"fed-{self.server_identity.fingerprint[:16]}"
        if aggregate == "clients" and self.averagers:
            self._agree_group_key()

    # -- building -----------------------------------------------------------------------------
    def _add_client(self, cid: str) -> None:
        head, tail = copy.deepcopy((self.split.head, None if self.split.tail_on_server else self.split.tail))
        options = {"optimizer": self._optimizer, **self._client_options}
        if self.secure:
            client = SplitClient(head, tail, client_id=cid, transport=self.transport,
                                 server_fingerprint=self.server_identity.fingerprint, **options)
            self.server.enroll(cid, client.identity.public_bytes)
            client.connect()
        else:
            with warnings.catch_warnings():  # the federation warned once already
                warnings.simplefilter("ignore", InsecureChannelWarning)
                self.server.enroll_plaintext(cid)
                client = SplitClient(head, tail, client_id=cid, transport=self.transport, insecure_plaintext=True,
                                     **options)
                client.connect()
        self.clients[cid] = client
        if self.aggregate is not None and trainable_parameters(head, tail):  # nothing trains: nothing to average
            group = GroupKeyPair.generate() if self.aggregate == "clients" else None
            if group is not None:
                self.group_keys[cid] = group
            self.averagers[cid] = ClientAverager(client, group=group, outer=self._outer)

    @property
    def group_directory(self) -> dict[str, bytes]:
        """Each client's group public key: what the clients must authenticate out of band."""
        return {cid: g.public_bytes for cid, g in self.group_keys.items()}

    def _agree_group_key(self, members: Sequence[str] | None = None) -> None:
        """The leader (first online id) seals a fresh group key to each member; the server relays the packages."""
        members = sorted(members or [c for c in self.clients if c not in self.offline])
        leader = members[0]
        directory = {m: self.group_keys[m].public_bytes for m in members}
        for frame in self.averagers[leader].key_frames(directory, group_id=self.group_id):
            self.transport.post(frame)
        for member in members[1:]:
            replies = self.transport.collect(member)
            if len(replies) != 1:
                raise RuntimeError(f"{member} expected one group key package, got {len(replies)} frames")
            self.averagers[member].accept_key(replies[0], leader_id=leader, leader_public=directory[leader],
                                              group_id=self.group_id)

    def __repr__(self) -> str:
        online = [c for c in self.clients if c not in self.offline]
        return (f"Federation({len(online)}/{len(self.clients)} clients online, round {self.round}, "
                f"aggregate={self.aggregate!r}, scheduler={type(self.server.scheduler).__name__})")

    @property
    def layout(self) -> BlockLayout | None:
        """What FedAvg averages (names, shapes); ``None`` without aggregation."""
        first = next(iter(self.averagers.values()), None)
        return None if first is None else first.layout

    # -- rounds ---------------------------------------------------------------------------------
    def train_round(self, data: Mapping[str, Iterable[Batch]], *, local_steps: int = 1,
                    drop_after: Mapping[str, int] | None = None) -> FedRound:
        """Each online client in ``data`` takes up to ``local_steps`` steps on its batches, then FedAvg.

        Args:
            data: client id -> its batches for this round (``(ids,)``, ``(ids, mask)``,
                ``(ids, mask, labels)`` or a mapping with those keys); at most ``local_steps`` are used.
            local_steps: local steps per client before the blocks are averaged.
            drop_after: client id -> after how many local steps it drops out (0: at once). It
                sends no update, is named in ``absent``, and stays offline until :meth:`rejoin`.

        Returns:
            A :class:`FedRound`.
        """
        if local_steps < 1:
            raise ValueError(f"local_steps must be >= 1, not {local_steps}")
        unknown = sorted(set(data) - set(self.clients))
        if unknown:
            raise ValueError(f"data for unknown clients {unknown}; the federation has {sorted(self.clients)}")
        drop_after = dict(drop_after or {})
        start = time.perf_counter()
        self.round += 1
        result = FedRound(self.round)
        for cid in sorted(set(self.clients) - set(data)):
            if cid not in self.offline:
                result.absent[cid] = "no data this round"
        for cid in sorted(data):
            if cid in self.offline:
                result.absent[cid] = f"offline: {self.offline[cid]}"
        iters: dict[str, Iterator[Batch]] = {c: iter(b) for c, b in sorted(data.items()) if c not in self.offline}
        bytes_before = self._update_bytes()
        for step in range(local_steps):
            work = []
            for cid, it in iters.items():
                if cid in self.offline:
                    continue
                if drop_after.get(cid, local_steps + 1) <= step:
                    self.drop(cid, reason=f"dropped out after {step} of {local_steps} local steps "
                                          f"in round {self.round}")
                    result.absent[cid] = self.offline[cid]
                    continue
                batch = next(it, None)
                if batch is not None:
                    work.append((self.clients[cid], _as_tuple(batch)))
            if not work:
                break
            done = run_round(work)
            for client, batch in work:
                cid = client.client_id
                if cid in done.losses:
                    result.losses.setdefault(cid, []).append(done.losses[cid])
                    result.samples[cid] = result.samples.get(cid, 0) + int(batch[0].shape[0])
                    if cid in self.averagers:
                        self.averagers[cid].samples += int(batch[0].shape[0])
                else:
                    result.absent[cid] = f"step refused by the server: {done.dropped.get(cid, 'no reply')}"
        for cid in drop_after:  # took every local step, then dropped before sending its update
            if cid in iters and cid not in self.offline:
                self.drop(cid, reason=f"dropped out before sending its update in round {self.round}")
                result.absent[cid] = self.offline[cid]
        if self.aggregate is not None and self.averagers:
            senders = [c for c in sorted(result.samples) if c not in self.offline]
            expected = senders + [c for c in sorted(result.samples) if c in self.offline]
            if senders:
                result.averaged = self._average(senders, expected).contributors
        result.update_bytes = self._update_bytes() - bytes_before
        result.seconds = time.perf_counter() - start
        self.history.append(result)
        return result

    def _average(self, senders: list[str], expected: list[str]) -> Averaged:
        """FedAvg over ``senders`` (``expected`` also names those that dropped before sending)."""
        sealed = self.aggregate == "clients"
        self.server.open_aggregation(self.round, expected, sealed=sealed)
        for cid in senders:
            self.transport.post(self.averagers[cid].update_frame(self.round, sealed=sealed), run=False)
        if len(senders) < len(expected):
            self.server.close_aggregation()  # the operator's deadline: go on without the absent
        applied = None
        for cid in senders:
            applied = self.averagers[cid].apply(self.transport.collect(cid), self.round)
        assert applied is not None
        return applied

    def _update_bytes(self) -> int:
        return sum(r.nbytes for r in self.transport.ledger if r.kind == "client_update")

    # -- dropping out and rejoining --------------------------------------------------------
    def drop(self, client_id: str, *, reason: str = "dropped out") -> None:
        """Take ``client_id`` offline: it takes no steps and sends no updates until :meth:`rejoin`."""
        if client_id not in self.clients:
            raise KeyError(f"unknown client {client_id!r}; the federation has {sorted(self.clients)}")
        self.offline[client_id] = reason

    def rejoin(self, client_id: str) -> None:
        """Bring ``client_id`` back: it continues from the current average, over its still-valid channel.

        With ``aggregate="server"`` the server sends it its last average; with ``"clients"`` a
        peer seals its (averaged) blocks for it under the group key and the server relays them.
        """
        if client_id not in self.offline:
            raise ValueError(f"{client_id!r} is not offline")
        if self._outer is not None:
            raise NotImplementedError("rejoining is not supported with outer_optimizer: the rejoining client's "
                                      "outer state would differ from the others'")
        del self.offline[client_id]
        if self.aggregate == "server" and self.server.aggregator.last_average is not None:
            self.averagers[client_id].load_average(self._server_average_over_wire(client_id))
        elif self.aggregate == "clients":
            peers = [c for c in sorted(self.clients) if c not in self.offline and c != client_id]
            if peers:
                self.transport.post(self.averagers[peers[0]].sync_frame(client_id, self.round))
                self.averagers[client_id].accept_sync(self.transport.collect(client_id)[0], self.round)

    def _server_average_over_wire(self, client_id: str) -> torch.Tensor:
        """The server seals its last average for ``client_id``; the client opens it."""
        server = self.server
        assert server.aggregator.last_average is not None
        server.reply(Message("client_update", client_id, self.round, tensors={"update": server.aggregator.last_average},
                             meta={"round": self.round, "purpose": "sync"}))
        frame = self.transport.collect(client_id)[0]
        return self.averagers[client_id]._open(frame).tensors["update"]

    # -- what the server knows ----------------------------------------------------------------
    def server_view(self) -> dict[str, torch.Tensor] | None:
        """The client-block tensors the server holds: the last average in ``aggregate="server"``, else ``None``."""
        agg = self.server.aggregator
        layout = self.layout
        if agg.last_average is None or layout is None:
            return None
        sizes = [math.prod(shape) for shape in layout.shapes]
        return {name: t.view(shape) for name, shape, t in
                zip(layout.names, layout.shapes, agg.last_average.split(sizes))}

    def public_input_block(self) -> InputBlock:
        """A copy of the input block every client started from (the public checkpoint's, after ``peft``)."""
        return copy.deepcopy(self.split.head).eval()

    def server_input_block(self) -> InputBlock | None:
        """The input block the server can rebuild from what it holds: the clients' current one after a
        plain FedAvg round (``aggregate="server"``), else ``None`` (it has only the public one)."""
        view = self.server_view()
        if view is None:
            return None
        block = self.public_input_block()
        state = {name[len("head."):]: t for name, t in view.items() if name.startswith("head.")}
        missing = [n for n, p in block.named_parameters() if p.requires_grad and n not in state]
        if missing:
            raise RuntimeError(f"the server's view lacks input-block tensors {missing[:3]}")
        block.load_state_dict(state, strict=False)
        return block

    # -- checkpoints --------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Write each party's state to its own sub-folder (``server/``, ``clients/<id>/``); returns ``folder``.

        Identities and channel keys are not saved: a resumed federation runs new handshakes.
        """
        if len(self.server.computes) != 1:
            raise NotImplementedError("checkpoints cover one trunk (Sequential or ClientBatching); a hierarchical "
                                      "server's replicas are not saved yet")
        folder = Path(folder)
        server_info = {"round": self.round, "steps_done": self.server.steps_done, "fingerprint": self.split.fingerprint}
        weights = {f"trunk.{k}": v for k, v in self.server.trunk.state_dict().items()}
        if self.server.tail is not None:
            weights.update({f"tail.{k}": v for k, v in self.server.tail.state_dict().items()})
        if self.server.aggregator.last_average is not None:
            weights["aggregator.last_average"] = self.server.aggregator.last_average
        save_state(folder / "server", weights=weights, optimizer=self.server.optimizer, info=server_info)
        for cid, client in self.clients.items():
            weights = {f"head.{k}": v for k, v in client.head.state_dict().items()}
            if client.tail is not None:
                weights.update({f"tail.{k}": v for k, v in client.tail.state_dict().items()})
            info = {"step": client.step, "samples_since_average": self.averagers[cid].samples if cid in self.averagers
                    else 0, "offline": self.offline.get(cid)}
            save_state(folder / "clients" / cid, weights=weights, optimizer=client.optimizer, info=info)
            averager = self.averagers.get(cid)
            if averager is not None and averager.start is not None:
                save_state(folder / "clients" / cid / "outer", weights={"start": averager.start},
                           optimizer=averager.outer)
        meta = {"format": _FORMAT, "clients": list(self.clients), "aggregate": self.aggregate, "round": self.round,
                "fingerprint": self.split.fingerprint, "layout": None if self.layout is None else self.layout.digest}
        (folder / "federation.json").write_text(json.dumps(meta, indent=1))
        return folder

    @classmethod
    def resume(cls, folder: str | Path, split: SplitModel, **kwargs: Any) -> Federation:
        """A federation built as ``Federation(split, client_ids, **kwargs)`` and loaded from ``folder``.

        Pass the same split, ``peft`` and ``aggregate`` as the saved run.

        Raises:
            CheckpointError: the folder is missing or incomplete, or was saved from another
                model, split, method or set of clients (the text says which).
        """
        folder = Path(folder)
        if not (folder / "federation.json").is_file():
            raise CheckpointError(f"{folder} holds no federation.json; pass the folder Federation.save() wrote")
        meta = json.loads((folder / "federation.json").read_text())
        if meta.get("format") != _FORMAT:
            raise CheckpointError(f"checkpoint format {meta.get('format')!r} is not {_FORMAT}")
        kwargs.setdefault("aggregate", meta["aggregate"])
        fed = cls(split, meta["clients"], **kwargs)
        if fed.split.fingerprint != meta["fingerprint"] or (fed.layout and fed.layout.digest) != meta["layout"]:
            raise CheckpointError("the checkpoint was saved from another model, split or parameter-efficient "
                                  "method than this federation's; resume with the same ones")
        weights, info = load_state(folder / "server", optimizer=fed.server.optimizer)
        last = weights.pop("aggregator.last_average", None)
        _load(fed.server.trunk, weights, "trunk.")
        if fed.server.tail is not None:
            _load(fed.server.tail, weights, "tail.")
        fed.server.aggregator.last_average = last
        for compute in fed.server.computes:
            compute.steps_done = int(info["steps_done"])
        fed.round = int(meta["round"])
        for cid, client in fed.clients.items():
            weights, info = load_state(folder / "clients" / cid, optimizer=client.optimizer)
            _load(client.head, weights, "head.")
            if client.tail is not None:
                _load(client.tail, weights, "tail.")
            client.step = int(info["step"])
            if cid in fed.averagers:
                averager = fed.averagers[cid]
                averager.samples = int(info["samples_since_average"])
                if averager.start is not None:
                    outer, _ = load_state(folder / "clients" / cid / "outer", optimizer=averager.outer)
                    with torch.no_grad():
                        averager.start.copy_(outer["start"])
            if info.get("offline"):
                fed.offline[cid] = str(info["offline"])
        return fed

    def close(self) -> None:
        """Release the clients' blocks and the server's workers."""
        for client in self.clients.values():
            client.close()
        self.server.close()


def _load(module: torch.nn.Module, weights: Mapping[str, torch.Tensor], prefix: str) -> None:
    state = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"the checkpoint's {prefix.rstrip('.')} does not match: missing {list(missing)[:3]}, "
                              f"unexpected {list(unexpected)[:3]}")
