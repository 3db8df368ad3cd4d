"""Split generation with and without key/value caches vs the unsplit model's ``generate``.

Prints one JSON line: medians over interleaved repeats of 128 greedy tokens from a short prompt
on the shipped tiny GLM, the ratio split-cached / unsplit-cached (target <= 1.5), and the bytes
the client sends per generated token (first and last), over the kit's in-process secure
transport. Run::

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_generation.py --repeats 5

Introduced in notebook 06.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch

from flglm_kit.federation import Federation
from flglm_kit.pretrained import load_pretrained
from flglm_kit.split import split_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(1)
    tokenizer, model = load_pretrained(device="cpu")
    ids = torch.tensor([[tokenizer.bos_token_id, *tokenizer("The council said on Friday that")["input_ids"]]])
    # The kit's wiring (as tests/conftest.make_parties): one client, secure channels, in-process transport.
    fed = Federation(split_model(model), ["client"], aggregate=None)
    client, transport = fed.clients["client"], fed.transport
    sent: dict[bool, list[int]] = {True: [], False: []}
    recording: list[list[int]] = []  # the list the tap fills now (none while timing)
    transport.add_tap(lambda r: recording[-1].append(r.nbytes) if recording and r.direction == "client->server"
                      else None)
    n = args.new_tokens
    runs: dict[str, Callable[[], torch.Tensor]] = {
        "split_cached": lambda: client.generate(ids, max_new_tokens=n),
        "split_no_cache": lambda: client.generate(ids, max_new_tokens=n, use_cache=False),
        "unsplit_cached": lambda: model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                                                 do_sample=False, eos_token_id=None, pad_token_id=0),
        "unsplit_no_cache": lambda: model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                                                   do_sample=False, eos_token_id=None, pad_token_id=0,
                                                   use_cache=False),
    }
    outputs = {name: run() for name, run in runs.items()}  # warm-up, and the outputs to compare
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):  # interleaved: drift on the machine hits every variant alike
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    for use_cache in (True, False):
        recording.append(sent[use_cache])
        client.generate(ids, max_new_tokens=n, use_cache=use_cache)
        recording.clear()
    medians = {name: statistics.median(t) for name, t in times.items()}
    ratio = medians["split_cached"] / medians["unsplit_cached"]
    print(json.dumps({
        "bench": "generation", "model": "shipped tiny GLM", "prompt_tokens": ids.shape[1], "new_tokens": n,
        "repeats": args.repeats, "threads": torch.get_num_threads(),
        **{f"{name}_s": round(m, 4) for name, m in medians.items()},
        "ratio_split_cached_over_unsplit_cached": round(ratio, 3), "target_ratio": 1.5, "target_met": ratio <= 1.5,
        "speedup_split_cached_over_no_cache": round(medians["split_no_cache"] / medians["split_cached"], 2),
        "bytes_per_token_cached_first_last": [sent[True][0], sent[True][-1]],
        "bytes_per_token_no_cache_first_last": [sent[False][0], sent[False][-1]],
        "same_tokens_as_unsplit": all(torch.equal(o, outputs["unsplit_cached"]) for o in outputs.values()),
    }))


if __name__ == "__main__":
    main()
