"""Centralized vs federated vs local-only on a non-IID task: the runs behind notebook 06's section 5.

    python scripts/federated_comparison.py --task cb --seeds 0 1 2 --methods full lora --out runs.jsonl

Each arm starts from the shipped tiny GLM and trains on the same budget (see
:mod:`flglm_kit.experiments`): by default 200 rounds of one local step of 4 examples per client,
against 200 centralized steps of 16 (4 clients); each run appends one JSON line to ``--out``. Run seeds in parallel
processes (one thread each) and ``--summarize`` the files together for the table with 95 %
intervals over seeds.

To choose a learning rate without looking at the test set, sweep it and score a validation set
too (every line records its lr and validation accuracy), e.g.

    python scripts/federated_comparison.py --task triage --methods lora --arms centralized federated \\
        --seeds 0 --lr 1e-3 2e-3 4e-3 --validation-size 500 --eval-size 500 --out sweep.jsonl

``--summarize`` then also prints each arm's mean validation accuracy per learning rate.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import torch

from flglm_kit.experiments import ARMS, Budget, compare, copy_model, load_comparison, save_runs, task_setup
from flglm_kit.pretrained import load_pretrained

LR = {"full": 1e-3, "lora": 1e-3, "prefix": 1e-2}
# LoRA (r = 8 on every block's linear layers) and P-tuning v2 (8 prefix positions) train the token
# embeddings whole beside their adapters or prefixes: without them neither learns triage on this tiny
# model (flglm_kit.lora.LoraSpec.modules_to_save says why).
OPTIONS = {"prefix": {"length": 8, "modules_to_save": ("embed_tokens",)},
           "lora": {"modules_to_save": ("embed_tokens",)}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", choices=["triage", "cb"], required=True)
    p.add_argument("--methods", nargs="+", default=["full"], choices=sorted(LR))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    p.add_argument("--lr", type=float, nargs="+", help="learning rates to run, each for every method "
                   "(default: LR above)")
    p.add_argument("--lora-whole", nargs="*", default=list(OPTIONS["lora"]["modules_to_save"]), metavar="MODULE",
                   help="modules LoRA trains whole beside its adapters (default: embed_tokens; none: adapters only)")
    p.add_argument("--prefix-whole", nargs="*", default=list(OPTIONS["prefix"]["modules_to_save"]),
                   metavar="MODULE", help="modules P-tuning trains whole beside its prefixes (default: embed_tokens; "
                   "none: prefixes only)")
    p.add_argument("--lora-r", type=int, metavar="R", help="LoRA's rank, with alpha = 2R (default: LoraSpec's, "
                   "r = 8 and alpha = 16)")
    p.add_argument("--prefix-length", type=int, default=OPTIONS["prefix"]["length"], metavar="N",
                   help="P-tuning's prefix positions per layer (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=200)
    p.add_argument("--local-steps", type=int, default=1)
    p.add_argument("--batch", type=int, default=4, help="per client and step (centralized: clients x batch)")
    p.add_argument("--eval-size", type=int, default=300)
    p.add_argument("--validation-size", type=int, default=0,
                   help="also score this many examples of the task's validation split (for choosing a learning rate)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--summarize", action="store_true", help="only print the table of the runs in --out")
    args = p.parse_args(argv)
    budget = Budget(args.rounds, args.local_steps, args.batch)
    rank = {} if args.lora_r is None else {"r": args.lora_r, "alpha": 2 * args.lora_r}   # recorded only if asked
    options = {"lora": {**OPTIONS["lora"], "modules_to_save": tuple(args.lora_whole), **rank},
               "prefix": {**OPTIONS["prefix"], "modules_to_save": tuple(args.prefix_whole),
                          "length": args.prefix_length}}
    if not args.summarize:
        torch.set_num_threads(args.threads)
        tokenizer, model = load_pretrained(device="cpu")
        setup = task_setup(args.task, eval_size=args.eval_size, validation_size=args.validation_size)
        start = time.perf_counter()
        for lr, seed in itertools.product(args.lr or [None], args.seeds):  # one run at a time, written as it ends
            result = compare(setup, budget, methods=args.methods, seeds=[seed], model_fn=copy_model(model),
                             tokenizer=tokenizer, lr={m: lr or LR[m] for m in args.methods},
                             method_options=options, arms=args.arms, progress=print)
            save_runs(result, args.task, args.out, options=options)
        print(f"{time.perf_counter() - start:.0f} s")
    comparison = load_comparison(args.out, args.task, budget, options=options)   # the variant asked for
    print(comparison.table())
    for method, arm in itertools.product(comparison.methods, ARMS):
        rates = sorted({r.lr for r in comparison.runs if r.method == method and r.arm == arm and r.lr is not None})
        if len(rates) > 1:   # an arm's mean above is then over every rate: say so
            print(f"note: {method} {arm} mixes learning rates {', '.join(f'{lr:g}' for lr in rates)}: its row above "
                  "averages them; flglm_kit.experiments.Comparison.at_lr picks one per arm")
        try:
            listing = comparison.validation_text(arm, method)
        except KeyError:
            continue
        print(f"{method} {arm}: validation accuracy by lr (mean over the seeds run at it) {listing}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
