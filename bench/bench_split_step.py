"""Time per training step: encrypted split training vs plaintext split vs centralized.

One JSON line per result. All three run the kit's shipped tiny GLM on the same batches (batch 8,
length 128 by default) in one process, interleaved step by step so that machine noise hits
them alike; the medians and their ratios come from the same run.

    python bench/bench_split_step.py [--steps 30] [--batch 8] [--seq-len 128]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
import warnings

import torch

from flglm_kit import get_device, set_seed, split_model
from flglm_kit.client import SplitClient
from flglm_kit.crypto import Identity, InsecureChannelWarning
from flglm_kit.pretrained import load_pretrained
from flglm_kit.server import SplitServer
from flglm_kit.transport import InProcessTransport



def _adamw(params):
    return torch.optim.AdamW(params, lr=1e-4)


def _split_party(model, *, encrypted: bool, device):
    split = split_model(model)
    server_id = Identity.generate()
    server = SplitServer(split.trunk, identity=server_id, optimizer=_adamw, device=device)
    transport = InProcessTransport(server, keep_frames=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureChannelWarning)
        client = SplitClient(split.head, split.tail, client_id="bench", transport=transport,
                             server_fingerprint=server_id.fingerprint, insecure_plaintext=not encrypted,
                             optimizer=_adamw, device=device)
        if encrypted:
            server.enroll("bench", client.identity.public_bytes)
        else:
            server.enroll_plaintext("bench")
        client.connect()
    return client.train_step


def _centralized(model):
    opt = _adamw(model.parameters())

    def step(ids: torch.Tensor) -> float:
        loss = model(input_ids=ids, labels=ids).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()

    device = get_device(args.device)
    set_seed(0)
    _, model = load_pretrained(device=device)  # the kit's shipped tiny GLM (3.9M parameters, 6 blocks)
    model.train()
    vocab_size = model.config.vocab_size
    runners = {
        "centralized": _centralized(copy.deepcopy(model)),
        "split_plaintext": _split_party(copy.deepcopy(model), encrypted=False, device=device),
        "split_encrypted": _split_party(copy.deepcopy(model), encrypted=True, device=device),
    }
    g = torch.Generator().manual_seed(0)
    times: dict[str, list[float]] = {name: [] for name in runners}
    for i in range(args.warmup + args.steps):
        ids = torch.randint(4, vocab_size, (args.batch, args.seq_len), generator=g).to(device)
        order = list(runners) if i % 2 == 0 else list(reversed(runners))  # no fixed first/last position
        for name in order:
            _sync(device)
            start = time.perf_counter()
            runners[name](ids)
            _sync(device)
            if i >= args.warmup:
                times[name].append(time.perf_counter() - start)

    common = dict(device=str(device), batch=args.batch, seq_len=args.seq_len, steps=args.steps,
                  params=sum(p.numel() for p in model.parameters()), torch_threads=torch.get_num_threads())
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name, median in medians.items():
        print(json.dumps({"bench": "split_step", "mode": name, "median_ms": round(1000 * median, 2),
                          "min_ms": round(1000 * min(times[name]), 2), **common}))
    print(json.dumps({"bench": "split_step", "ratio": "split_encrypted/centralized",
                      "value": round(medians["split_encrypted"] / medians["centralized"], 4),
                      "target": 1.15, **common}))
    print(json.dumps({"bench": "split_step", "ratio": "split_encrypted/split_plaintext",
                      "value": round(medians["split_encrypted"] / medians["split_plaintext"], 4),
                      "target": 1.03, **common}))


if __name__ == "__main__":
    main()
