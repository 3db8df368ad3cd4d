"""Memory over a long run: 10,000 encrypted split training steps by 8 clients on one server.

Prints one JSON line per configuration: resident memory (RSS) after the warm-up and at the end,
and the growth in between. ``bounded`` is the kit's default (the transport keeps a ring of small
records, the server bounded error and replay memories); ``keep_everything`` keeps every frame's
bytes in an unbounded ledger, which is what the transport used to do, as the baseline.

Target: the default's growth from step 1,000 to step 10,000 stays under 5 MB.

    python bench/bench_memory.py            # about a minute per configuration on a 2-core CPU
    python bench/bench_memory.py --steps 2000
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import make_parties  # noqa: E402  (the tests' wiring: split, server, 8 connected clients)

from flglm_kit.models import tiny_model  # noqa: E402


def rss_mb() -> float:
    """Resident set size of this process, from /proc (Linux), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (this benchmark reads Linux's /proc)")


def run(name: str, steps: int, warmup: int, transport_options: dict) -> dict:
    model = tiny_model("glm", seed=0, num_hidden_layers=3, hidden_size=32, head_dim=8, intermediate_size=64)
    parties = make_parties(model, client_ids=[f"c{i}" for i in range(8)], transport_options=transport_options)
    parties.server._taps.clear()  # make_parties taps what the server sees into a list: not wanted here
    ids = torch.randint(3, 512, (2, 16), generator=torch.Generator().manual_seed(0))
    start = 0.0
    for step in range(steps):
        parties.clients[step % 8].train_step(ids)
        if step + 1 == warmup:
            gc.collect()
            start = rss_mb()
    gc.collect()
    end = rss_mb()
    return {"bench": "memory_long_run", "config": name, "clients": 8, "steps": steps, "warmup_steps": warmup,
            "rss_after_warmup_mb": round(start, 1), "rss_end_mb": round(end, 1),
            "growth_mb": round(end - start, 2), "ledger_records": len(parties.transport.ledger),
            "server_errors_kept": len(parties.server.errors)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=1_000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name, options in (("bounded", {}), ("keep_everything", {"keep_frames": True, "max_records": None})):
        result = run(name, args.steps, args.warmup, options)
        if name == "bounded":
            result["target_growth_mb"] = 5.0
            result["met"] = result["growth_mb"] < 5.0
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
