"""The dashboard's settings: one dataclass, every control of the dashboard, checked in plain words.

:meth:`Settings.problems` lists every bad setting as a sentence a learner can act on (more
clients than samples, a layout that leaves the server's trunk empty, a negative noise level,
...); :meth:`Settings.check` raises :class:`SettingsError` with all of them. The dashboard shows
that message instead of a traceback.

Introduced in notebook 06 (the dashboard).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any


from flglm_kit.device import get_device, quick_mode, available_devices

__all__ = ["Settings", "SettingsError", "SCHEDULERS", "PARTITIONS", "TASKS", "PEFT_METHODS", "AGGREGATES",
           "available_devices"]

SCHEDULERS = ("sequential", "client-batching", "server-hierarchical")
PARTITIONS = ("iid", "dirichlet", "site")
#: triage and summary: the shipped clinic notes (four hospital sites); cb: CommitmentBank (no sites)
TASKS = ("triage", "cb", "summary")
PEFT_METHODS = ("full", "lora", "prefix")
AGGREGATES = ("server", "clients", "none")
#: tokens per example: triage notes keep their symptoms and vital signs; CB fits whole
MAX_LEN = {"triage": 160, "cb": 128, "summary": 128}


class SettingsError(ValueError):
    """Bad settings; ``problems`` holds one sentence per bad setting."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True)
class Settings:
    """Every setting of a dashboard run (each is a control of :class:`flglm_kit.widgets.Dashboard`).

    Attributes:
        num_clients: clients in the federation (``partition="site"``: one per hospital site, 4).
        scheduler: ``"sequential"``, ``"client-batching"`` or ``"server-hierarchical"``.
        sub_servers: trunk replicas of the server-hierarchical scheduler (at most ``num_clients``).
        head_layers, tail_layers: decoder blocks each client keeps before and after the trunk.
        partition: ``"iid"``, ``"dirichlet"`` (label skew, concentration ``alpha``) or ``"site"``.
        task: ``"triage"`` (clinic notes, 3 labels), ``"cb"`` (CommitmentBank, 3 labels) or
            ``"summary"`` (clinic notes, one-sentence summaries; validated by loss).
        peft: ``"full"``, ``"lora"`` or ``"prefix"`` (P-tuning v2).
        lr: AdamW learning rate, for every party and the baseline.
        steps: local steps of every client in the whole run.
        average_every: local steps between two FedAvg rounds (server-hierarchical: also between
            two syncs of its replicas).
        aggregate: who averages the client blocks: ``"server"``, ``"clients"`` (under a group key)
            or ``"none"``.
        secure: per-client encrypted channels; ``False``: plaintext (for the leak demos only).
        noise_rel: activation noise σ, relative to the activations' RMS (notebook 03).
        device: where everything runs (default: :func:`flglm_kit.get_device`).
        batch: examples per client and step; ``samples``: training examples drawn from the task
            before they are split over the clients; ``eval_size``: validation examples.
        eval_every: steps between two validations; ``baseline``: train the centralized
            baseline; ``privacy``: run the privacy meter; ``inverter_steps``: its training steps.
        seed: seeds the data draw, the partition, the order of batches and the noise.

    Example:
        >>> Settings(num_clients=8, samples=4).problems()[0]
        '8 clients cannot each hold a sample of 4 (samples): use at most 4 clients, or more samples'
    """

    num_clients: int = 3
    scheduler: str = "client-batching"
    sub_servers: int = 2
    head_layers: int = 1
    tail_layers: int = 1
    partition: str = "iid"
    alpha: float = 0.3
    task: str = "triage"
    peft: str = "full"
    lr: float = 1e-3
    steps: int = 6
    average_every: int = 2
    aggregate: str = "server"
    secure: bool = True
    noise_rel: float = 0.0
    device: str = "cpu"
    batch: int = 4
    samples: int = 256
    eval_size: int = 16
    eval_every: int = 2
    baseline: bool = True
    privacy: bool = True
    inverter_steps: int = 60
    seed: int = 0

    @classmethod
    def default(cls, **overrides: Any) -> Settings:
        """The settings a teacher starts from: tiny in quick mode (``FLGLM_QUICK=1``), larger in full
        mode, larger still on a GPU; the device is :func:`flglm_kit.get_device`'s."""
        device = get_device()
        if quick_mode():
            base = cls(device=str(device.type))
        elif device.type == "cuda":
            base = cls(num_clients=8, steps=200, average_every=4, samples=4000, eval_size=128, eval_every=25,
                       batch=8, inverter_steps=300, device=str(device.type))
        else:
            base = cls(num_clients=4, steps=40, average_every=4, samples=1024, eval_size=64, eval_every=8,
                       inverter_steps=200, device=str(device.type))
        return cls(**{**base.as_dict(), **overrides})

    def as_dict(self) -> dict[str, Any]:
        """The settings as a plain dict (for a history, a checkpoint, or ``Settings(**d)``)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def max_len(self) -> int:
        """Tokens per example for this task."""
        return MAX_LEN.get(self.task, 128)

    def peft_spec(self) -> Any:
        """A fresh parameter-efficient method for ``peft`` (``None`` for full fine-tuning)."""
        if self.peft == "lora":
            from flglm_kit.lora import LoraSpec
            return LoraSpec(r=8, alpha=16, seed=self.seed)
        if self.peft == "prefix":
            from flglm_kit.prefix import PrefixSpec
            return PrefixSpec(length=8, seed=self.seed)
        return None

    def problems(self, *, num_layers: int | None = None, sites: int | None = None) -> list[str]:
        """Every bad setting, each as a sentence (empty: all good).

        Args:
            num_layers: the model's decoder blocks (to check the layout leaves the trunk a block).
            sites: how many sites the task's data has (for ``partition="site"``).
        """
        out = [*self._choices(), *self._numbers()]
        if num_layers is not None and self.head_layers >= 0 and self.tail_layers >= 0 \
                and self.head_layers + self.tail_layers >= num_layers:
            out.append(f"head_layers {self.head_layers} + tail_layers {self.tail_layers} leaves the server's trunk "
                       f"empty: the model has {num_layers} blocks, so keep the sum at most {num_layers - 1}")
        if self.partition == "site" and self.task == "cb":
            out.append("partition 'site' needs hospital sites, and CB has none: use the triage or summary task, "
                       "or partition 'iid' or 'dirichlet'")
        elif self.partition == "site" and sites is not None and self.num_clients != sites:
            out.append(f"partition 'site' gives one client per hospital site: the data has {sites} sites, so set "
                       f"clients to {sites}")
        if self.partition != "site" and 1 <= self.samples < self.num_clients:
            out.append(f"{self.num_clients} clients cannot each hold a sample of {self.samples} (samples): use at "
                       f"most {self.samples} clients, or more samples")
        if self.scheduler == "server-hierarchical" and self.sub_servers > self.num_clients >= 1:
            out.append(f"{self.sub_servers} sub-servers for {self.num_clients} clients: a sub-server would serve "
                       f"nobody; use at most {self.num_clients}")
        if self.aggregate == "clients" and not self.secure:
            out.append("aggregate 'clients' seals the updates under the clients' group key, which needs per-client "
                       "keys: switch plaintext off, or let the server aggregate")
        if self.device not in available_devices() and self.device.split(":")[0] not in available_devices():
            out.append(f"device {self.device!r} is not available here; choose one of {available_devices()}")
        return out

    def _choices(self) -> list[str]:
        allowed = {"scheduler": SCHEDULERS, "partition": PARTITIONS, "task": TASKS, "peft": PEFT_METHODS,
                   "aggregate": AGGREGATES}
        return [f"{name} must be one of {', '.join(repr(a) for a in options)}, not {getattr(self, name)!r}"
                for name, options in allowed.items() if getattr(self, name) not in options]

    def _numbers(self) -> list[str]:
        out = []
        at_least = {"num_clients": 1, "sub_servers": 1, "steps": 1, "average_every": 1, "batch": 1, "samples": 1,
                    "eval_size": 1, "eval_every": 1, "inverter_steps": 1, "head_layers": 0, "tail_layers": 0}
        for name, low in at_least.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                out.append(f"{name} must be a whole number of at least {low}, not {value!r}")
        if not math.isfinite(self.noise_rel) or self.noise_rel < 0:
            out.append(f"noise σ must be 0 or more (it is a standard deviation, relative to the activations' RMS), "
                       f"not {self.noise_rel}")
        if not math.isfinite(self.lr) or self.lr <= 0:
            out.append(f"the learning rate must be a positive number, not {self.lr}")
        if self.partition == "dirichlet" and (not math.isfinite(self.alpha) or self.alpha <= 0):
            out.append(f"Dirichlet α must be a positive number (small: few labels per client), not {self.alpha}")
        return out

    def check(self, *, num_layers: int | None = None, sites: int | None = None) -> None:
        """Raise :class:`SettingsError` naming every bad setting (see :meth:`problems`)."""
        found = self.problems(num_layers=num_layers, sites=sites)
        if found:
            raise SettingsError(found)
