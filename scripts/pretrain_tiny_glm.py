"""Pretrain the kit's tiny GLM on the public corpus, on a 2-core CPU, in 15 to 20 minutes.

    python scripts/train_tokenizer.py          # once: the tokenizer this script loads
    python scripts/pretrain_tiny_glm.py        # trains, evaluates, writes the model card

Writes ``model.safetensors``, ``config.json``, ``generation_config.json``, ``card.json`` (with
the SHA-256 of every file, which :func:`flglm_kit.pretrained.load_pretrained` checks) and the
model card ``README.md`` into ``flglm_kit/assets/tiny-glm/`` (next to the tokenizer).

Data: ``datasets/public_corpus/train.txt`` packed by
:func:`flglm_kit.pretrained.pack_documents` (``<bos> doc <eos>`` per line, concatenated);
each batch takes ``--batch-size`` windows of ``--seq-len`` tokens at random offsets drawn from
a seeded generator. AdamW with linear warmup then cosine decay to 10 % of the peak rate,
gradient clipping at 1.0. ``--max-minutes`` caps the whole run: if the machine is too busy
for ``--steps`` to fit (keeping ``--eval-reserve`` seconds for evaluation and saving), the
schedule is shortened so the cosine still ends in time, and the card records the steps done.
The held-out and unigram perplexities come from :mod:`flglm_kit.pretrained`, the same
functions the tests call.

``--out`` writes elsewhere (for a trial run) and ``--steps``/``--max-minutes`` shorten it, e.g.
``python scripts/pretrain_tiny_glm.py --steps 20 --out /tmp/trial``.

**Continued pretraining** (how the shipped model was brought up to date when the corpus gained
its public medical text, a few minutes instead of the full run)::

    python scripts/pretrain_tiny_glm.py --continue-from flglm_kit/assets/tiny-glm \
        --steps 400 --lr 5e-4 --warmup 20 --threads 1 --max-minutes 12

loads that checkpoint (tokenizer unchanged), then trains on batches that take ``--extra-share``
of their windows from ``--extra-text`` (default ``medical_train.txt`` of the corpus) and the
rest from ``train.txt``, so the model learns the new domain without forgetting the old one.
Before and after, it measures the held-out perplexity on ``validation.txt`` and
``medical_validation.txt`` and :func:`flglm_kit.pretrained.answer_loss` on the clinic notes;
the card keeps the original run's record and adds a ``continued_pretraining`` section.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

# Before torch loads OpenMP: idle worker threads sleep instead of spinning. On a shared 2-core
# machine, spinning threads collapse throughput (measured: 3.0 s/step spinning vs 0.8 s/step
# passive while another process ran; 0.42 vs 0.6 s/step on an idle machine).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import transformers  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402
from transformers import GlmConfig, GlmForCausalLM, PreTrainedTokenizerFast  # noqa: E402

from flglm_kit.losses import next_token_loss  # noqa: E402
from flglm_kit.data import load_clinic_notes  # noqa: E402
from flglm_kit.pretrained import (  # noqa: E402
    CLINIC_LOSS_EXAMPLES,
    answer_loss,
    file_checksums,
    heldout_perplexity,
    load_pretrained,
    pack_documents,
    unigram_perplexity,
)

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "datasets" / "public_corpus"
OUT = ROOT / "flglm_kit" / "assets" / "tiny-glm"

# ~3.9M parameters. Six blocks so that a client can keep up to 3 input blocks and 1 output
# block and the server still has a trunk; multi-query attention (one key/value head) as in
# ChatGLM2/3; an untied LM head, because the naive "server holds the LM head" layout needs it
# to be a separate module.
MODEL_CONFIG: dict[str, Any] = dict(
    vocab_size=4096,
    hidden_size=192,
    intermediate_size=512,
    num_hidden_layers=6,
    num_attention_heads=3,
    num_key_value_heads=1,
    head_dim=64,
    max_position_embeddings=512,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
    tie_word_embeddings=False,
)



def _hyperparameters(args: argparse.Namespace) -> dict[str, Any]:
    """The training settings the card records, for a fresh run and a continued one alike."""
    return {"steps_planned": args.steps, "batch_size": args.batch_size, "seq_len": args.seq_len, "lr": args.lr,
            "warmup": args.warmup, "weight_decay": args.weight_decay, "seed": args.seed}

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=1500, help="optimizer steps (sets the schedule)")
    p.add_argument("--max-minutes", type=float, default=20.0, help="wall-clock cap, whole run")
    p.add_argument("--eval-reserve", type=float, default=60.0, help="seconds kept for eval+save")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--corpus", type=Path, default=CORPUS)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--continue-from", type=Path, default=None,
                   help="a model folder to continue pretraining (tokenizer kept as it is)")
    p.add_argument("--extra-text", type=Path, default=None,
                   help="text mixed in when continuing (default: <corpus>/medical_train.txt)")
    p.add_argument("--extra-share", type=float, default=0.5,
                   help="share of each batch's windows drawn from --extra-text")
    return p.parse_args(argv)


def lr_factor(step: int, *, warmup: int, total: int, floor: float = 0.1) -> float:
    """Linear warmup to 1, then cosine decay to ``floor`` at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(model: torch.nn.Module, args: argparse.Namespace) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (not on norms and biases)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": args.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.95))


def draw_batch(
    streams: list[tuple[torch.Tensor, int]], seq_len: int, gen: torch.Generator
) -> torch.Tensor:
    """``count`` windows of ``seq_len`` tokens at random offsets from each ``(stream, count)``."""
    offsets = torch.arange(seq_len)  # (T,)
    parts = []
    for stream, count in streams:
        starts = torch.randint(0, stream.numel() - seq_len, (count,), generator=gen)
        parts.append(stream[starts[:, None] + offsets])  # (count, T)
    return torch.cat(parts)  # (B, T)


def train(
    model: GlmForCausalLM, stream: torch.Tensor, args: argparse.Namespace, deadline: float,
    extra: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Train in place for ``args.steps`` steps, or fewer if ``deadline`` forces; report.

    When the machine is fast enough the run is exactly ``args.steps`` steps (same seed, same
    weights). Otherwise, after warmup and every 25 steps, the total becomes the steps done plus
    the remaining budget over the mean seconds per step so far (at most ``args.steps``), so
    the cosine ends at the deadline; the mean pace moves slowly, and so does the learning rate.
    The card records ``steps`` and ``steps_planned``. With ``extra``, each batch takes
    ``round(args.extra_share * batch_size)`` of its windows from it (continued pretraining).
    """
    gen = torch.Generator().manual_seed(args.seed)
    optimizer = make_optimizer(model, args)
    plan = {"total": args.steps}
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, warmup=args.warmup, total=plan["total"])
    )
    n_extra = 0 if extra is None else round(args.extra_share * args.batch_size)
    streams = [(stream, args.batch_size - n_extra)] + ([(extra, n_extra)] if extra is not None
                                                      and n_extra else [])
    losses: list[tuple[int, float]] = []
    model.train()
    start = time.time()
    step, running = 0, 0.0
    bar = tqdm(total=args.steps, desc="pretrain" if extra is None else "continue", unit="step")
    while step < plan["total"]:
        batch = draw_batch(streams, args.seq_len, gen)  # (B, T)
        loss = next_token_loss(model(input_ids=batch).logits, batch)  # the kit's one loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        step += 1
        running += loss.item()
        bar.update(1)
        if step >= args.warmup and step % 25 == 0:  # re-plan from the mean pace so far
            now = time.time()
            fits = step + int((deadline - now) / ((now - start) / step))
            total = max(step, min(args.steps, fits))
            if total != plan["total"]:
                plan["total"] = total
                bar.total = total
                bar.write(f"budget: schedule set to {total} steps")
        if step % 50 == 0:
            losses.append((step, round(running / 50, 4)))
            bar.set_postfix(loss=f"{running / 50:.3f}", lr=f"{schedule.get_last_lr()[0]:.2e}")
            running = 0.0
    bar.close()
    seconds = time.time() - start
    tokens = step * args.batch_size * args.seq_len
    return {
        "steps": step,
        "tokens_seen": tokens,
        "train_seconds": round(seconds, 1),
        "tokens_per_second": round(tokens / max(seconds, 1e-9), 1),
        "loss_curve": losses,
    }


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def hardware_line(threads: int) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {threads} torch threads (OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}), "
        f"{os.cpu_count()} logical CPUs shared with other work, no GPU; "
        f"Python {platform.python_version()}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}"
    )


def _finetune_section(out: Path) -> str:
    """The README's fine-tuning section as it stands (``scripts/finetune_sanity.py`` writes it)."""
    old = (out / "README.md").read_text() if (out / "README.md").is_file() else ""
    start = old.find("## Fine-tuning sanity\n")
    if start < 0:
        return ("## Fine-tuning sanity\n\n_Not measured yet: run "
                "`python scripts/finetune_sanity.py`._\n")
    end = old.find("\n## ", start + 1)
    return (old[start:end] if end >= 0 else old[start:]).rstrip("\n") + "\n"


def _continued_parts(card: dict[str, Any]) -> tuple[str, str, str, str]:
    """README pieces for the continued pretraining: command, bullet, table row, domain section."""
    cont = card.get("continued_pretraining")
    clinic = card.get("clinic_answer_loss")
    if cont is None or clinic is None:
        return "", "", "", ""
    med = card["medical_heldout_perplexity"]
    bullet = (
        f"- **Continued pretraining** (`--continue-from`): {cont['steps']} steps × batch "
        f"{cont['batch_size']} × {cont['seq_len']} tokens = {cont['tokens_seen']:,} tokens, "
        f"{cont['extra_share']:.0%} of each batch's windows from `{cont['extra_text']}` "
        f"({cont['extra_stream_tokens']:,} tokens of public medical text: leaflets, public-health "
        f"notices, clinic information pages) and the rest from `train.txt`; AdamW, peak lr "
        f"{cont['lr']}, {cont['warmup']} warmup steps then cosine to 10 %, seed {cont['seed']}. "
        f"Wall time {cont['train_seconds']:.0f} s training ({cont['train_seconds'] / 60:.1f} min), "
        f"{cont['total_seconds']:.0f} s with the evaluations, on {cont['hardware']}. Final "
        f"training loss: {cont['loss_curve'][-1][1] if cont['loss_curve'] else 'n/a'}. Started "
        f"from the checkpoint with sha256 `{cont['base_model_sha256']}`. The tokenizer was not "
        "retrained: it is trained on `train.txt` only and is byte-identical.\n")
    row = (f"\n| tiny-glm before continued pretraining | {cont['base_heldout_perplexity']:.3f} |")
    domain = f"""
### The clinic notes' domain

The private clinic notes are not in the corpus. How well the model meets them before any
fine-tuning is the mean next-token loss on the answer tokens of {clinic['examples']} clinic
notes ({clinic['split']} split, {clinic['task']} task), encoded exactly as fine-tuning encodes
them, by `{clinic['function']}` (max_len {clinic['max_len']}): the loss of fine-tuning's first
step. Uniform guessing over the {card['vocab_size']:,} tokens scores ln {card['vocab_size']} =
{clinic['uniform']:.2f} nats.

| model | clinic-notes answer loss (nats/token) | medical held-out perplexity (`{med['text']}`) |
|---|---|---|
| tiny-glm (this model) | **{clinic['after']:.2f}** | **{med['after']:.3f}** |
| before continued pretraining | {clinic['before']:.2f} | {med['before']:.3f} |
| uniform over the vocabulary | {clinic['uniform']:.2f} | {card['vocab_size']:,} |
"""
    return f"\n{cont['command']}", bullet, row, domain


def write_card(out: Path, card: dict[str, Any]) -> None:
    """``card.json`` for the tests and ``README.md`` for people, from the same numbers."""
    (out / "card.json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    cfg, ev, tr = card["config"], card["eval"], card["training"]
    final_loss = tr["loss_curve"][-1][1] if tr["loss_curve"] else "n/a"
    if tr["steps"] < tr["steps_planned"]:
        repeat = (
            "The machine was shared and busy, so the `--max-minutes` budget shortened the "
            "schedule; a rerun repeats these numbers only approximately."
        )
    else:
        repeat = (
            "Retraining with the same command, thread count and library versions on the same "
            "CPU repeats these numbers; other CPUs may differ in the last digits."
        )
    continued_command, continued_text, before_row, domain_text = _continued_parts(card)
    finetune_section = _finetune_section(out)
    also = (" and then\nfor a few minutes more with its public medical text mixed in"
            if continued_text else "")
    text = f"""# tiny-glm: the FL-GLM Kit's pretrained teaching model

A {card['parameters']:,}-parameter `GlmForCausalLM` (transformers' native GLM) and its
byte-level BPE tokenizer, pretrained from scratch on the kit's synthetic public corpus{also}.
Load it offline with `tokenizer, model = flglm_kit.pretrained.load_pretrained()`.

## How it was made

```
{card['tokenizer_command']}
{card['command']}{continued_command}
```

- Hardware: {card['hardware']}
- Wall time: {tr['train_seconds']:.0f} s training ({tr['train_seconds'] / 60:.1f} min),
  {card['total_seconds']:.0f} s for the whole script; {tr['tokens_per_second']:,.0f} tokens/s.
- Data: `datasets/public_corpus/train.txt` (10,973 synthetic documents, ~1.06M words),
  {card['train_stream_tokens']:,} tokens as `<bos> doc <eos>` per document.
- Training: {tr['steps']} steps (of {tr['steps_planned']} planned) × batch {tr['batch_size']} ×
  {tr['seq_len']} tokens = **{tr['tokens_seen']:,} tokens seen**
  ({tr['tokens_seen'] / card['train_stream_tokens']:.1f} passes over the stream); windows at
  random offsets (seed {tr['seed']}); AdamW (β = 0.9, 0.95, weight decay {tr['weight_decay']}
  on matrices), peak lr {tr['lr']}, {tr['warmup']} warmup steps then cosine to 10 %, grad
  clip 1.0, float32.
- Final training loss (mean of the last 50 steps): {final_loss}.
{continued_text}
## Model

| field | value |
|---|---|
""" + "\n".join(f"| `{k}` | {v} |" for k, v in cfg.items()) + f"""

Parameters: **{card['parameters']:,}**. Tokenizer: byte-level BPE, {card['vocab_size']} tokens,
`<pad>` = 0, `<bos>` = 1, `<eos>` = 2, `<sep>` = 3 (task format `<bos> prompt <sep> answer <eos>`;
`<sep>` never occurs in pretraining, fine-tuning teaches it).

`model.safetensors`: {card['model_bytes']:,} bytes, sha256 `{card['model_sha256']}`.

## Evaluation

Held-out text: `{ev['text']}`, evaluated by `flglm_kit.pretrained.heldout_perplexity`
(documents as `<bos> doc <eos>`, concatenated, cut into non-overlapping {ev['seq_len']}-token
windows, each scored on its own; max_tokens = {ev['max_tokens']}):
{ev['scored_tokens']:,} scored tokens.

| model | held-out perplexity |
|---|---|
| tiny-glm (this model) | **{card['heldout_perplexity']:.3f}** |{before_row}
| unigram baseline (train token frequencies, add-one smoothing) | {card['unigram_perplexity']:.3f} |

The synthetic corpus is templated and repetitive, so a low perplexity here says the model
learned the templates, not that it models English.
{domain_text}
{finetune_section}
## Intended use and limits

A teaching and prototyping model for the kit's notebooks: split it into client input block,
server trunk and client output block, fine-tune it federatedly, attack what crosses the cut.
Trained only on synthetic, templated English (no real people or records), a few million
parameters: it writes corpus-like sentences and nothing more. Not for any real task, not a
language-modelling benchmark, no safety tuning. {repeat}
"""
    (out / "README.md").write_text(text)


def clinic_loss(model: GlmForCausalLM, tokenizer: PreTrainedTokenizerFast) -> float:
    """:func:`answer_loss` on the examples the card names (:data:`CLINIC_LOSS_EXAMPLES`)."""
    split, task, count = CLINIC_LOSS_EXAMPLES
    examples = load_clinic_notes(split, task=task)[:count]  # type: ignore[arg-type]
    return answer_loss(model, tokenizer, examples, max_len=256)


def evaluate(model: GlmForCausalLM, tokenizer: PreTrainedTokenizerFast,
             corpus: Path, seq_len: int) -> dict[str, float]:
    """Held-out perplexity (general and medical) and the clinic answer loss."""
    model.eval()
    kw = dict(seq_len=seq_len, max_tokens=None, batch_size=32)
    return {"heldout": heldout_perplexity(model, tokenizer, corpus / "validation.txt", **kw),
            "medical": heldout_perplexity(model, tokenizer, corpus / "medical_validation.txt", **kw),
            "clinic": clinic_loss(model, tokenizer)}


def continue_pretraining(args: argparse.Namespace, argv: list[str] | None) -> int:
    """``--continue-from``: train a saved checkpoint further on the corpus plus the extra text."""
    began = time.time()
    deadline = began + args.max_minutes * 60 - args.eval_reserve
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    base = args.continue_from
    card = json.loads((base / "card.json").read_text())
    tokenizer, model = load_pretrained(base, device="cpu")
    extra_path = args.extra_text or args.corpus / "medical_train.txt"
    stream = pack_documents(tokenizer, args.corpus / "train.txt")  # (N,)
    extra = pack_documents(tokenizer, extra_path)  # (M,)
    before = evaluate(model, tokenizer, args.corpus, args.seq_len)
    print("before:", {k: round(v, 4) for k, v in before.items()})
    base_sha = file_checksums(base)["model.safetensors"]
    result = train(model, stream, args, deadline, extra=extra)  # type: ignore[arg-type]
    after = evaluate(model, tokenizer, args.corpus, args.seq_len)
    print("after:", {k: round(v, 4) for k, v in after.items()})

    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(args.out))
    if base.resolve() != args.out.resolve():
        tokenizer.save_pretrained(str(args.out))
    weights = args.out / "model.safetensors"
    argv_shown = sys.argv[1:] if argv is None else argv
    split, task, count = CLINIC_LOSS_EXAMPLES
    card.update({
        "continued_pretraining": {
            **result,
            "command": shlex.join(["python", "scripts/pretrain_tiny_glm.py", *argv_shown]),
            "base_model_sha256": base_sha,
            "base_heldout_perplexity": round(before["heldout"], 4),
            "extra_text": _shown(extra_path),
            "extra_stream_tokens": extra.numel(),
            "extra_share": args.extra_share,
            **_hyperparameters(args),
            "threads": args.threads,
            "hardware": hardware_line(args.threads),
            "total_seconds": round(time.time() - began, 1),
        },
        "clinic_answer_loss": {
            "function": "flglm_kit.pretrained.answer_loss", "split": split, "task": task,
            "examples": count, "max_len": 256, "before": round(before["clinic"], 4),
            "after": round(after["clinic"], 4), "uniform": round(math.log(len(tokenizer)), 4),
        },
        "medical_heldout_perplexity": {
            "text": "datasets/public_corpus/medical_validation.txt",
            "before": round(before["medical"], 4), "after": round(after["medical"], 4),
        },
        "heldout_perplexity": round(after["heldout"], 4),
        "model_bytes": weights.stat().st_size,
        "model_sha256": sha256(weights),
        "sha256": file_checksums(args.out),
    })
    write_card(args.out, card)
    print(f"saved to {args.out} in {time.time() - began:.0f} s")
    return 0


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it is inside it."""
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.continue_from is not None:
        return continue_pretraining(args, argv)
    began = time.time()
    deadline = began + args.max_minutes * 60 - args.eval_reserve
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    tokenizer_dir = args.out if (args.out / "tokenizer.json").is_file() else OUT
    if not (tokenizer_dir / "tokenizer.json").is_file():
        raise FileNotFoundError(f"no tokenizer in {tokenizer_dir}; run scripts/train_tokenizer.py")
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(tokenizer_dir), local_files_only=True)
    stream = pack_documents(tokenizer, args.corpus / "train.txt")  # (N,)

    config = GlmConfig(**MODEL_CONFIG)
    config._attn_implementation = "sdpa"  # as flglm_kit.models.tiny_config does
    assert len(tokenizer) == config.vocab_size, (len(tokenizer), config.vocab_size)
    model = GlmForCausalLM(config)
    params = sum(p.numel() for p in model.parameters())
    print(f"{params:,} parameters; {stream.numel():,} training tokens")
    result = train(model, stream, args, deadline)

    model.eval()
    evaluation = dict(seq_len=args.seq_len, max_tokens=None, batch_size=32)
    heldout = heldout_perplexity(model, tokenizer, args.corpus / "validation.txt", **evaluation)
    unigram = unigram_perplexity(
        tokenizer, args.corpus / "train.txt", args.corpus / "validation.txt",
        seq_len=args.seq_len, max_tokens=None,
    )
    val_tokens = pack_documents(tokenizer, args.corpus / "validation.txt").numel()
    full, tail = divmod(val_tokens, args.seq_len)  # as heldout_perplexity cuts windows
    scored = full * (args.seq_len - 1) + (tail - 1 if tail >= 2 else 0)
    print(f"held-out perplexity {heldout:.3f}; unigram baseline {unigram:.3f}")

    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(args.out))
    if tokenizer_dir != args.out:
        tokenizer.save_pretrained(str(args.out))
    weights = args.out / "model.safetensors"
    argv_shown = sys.argv[1:] if argv is None else argv
    card = {
        "command": shlex.join(["python", "scripts/pretrain_tiny_glm.py", *argv_shown]),
        "tokenizer_command": "python scripts/train_tokenizer.py",
        "hardware": hardware_line(args.threads),
        "threads": args.threads,
        "config": {**MODEL_CONFIG, "attn_implementation": "sdpa"},
        "parameters": params,
        "vocab_size": len(tokenizer),
        "train_stream_tokens": stream.numel(),
        "training": {
            **result,
            **_hyperparameters(args),
        },
        "eval": {
            "function": "flglm_kit.pretrained.heldout_perplexity",
            "text": "datasets/public_corpus/validation.txt",
            "scored_tokens": scored,
            **evaluation,
        },
        "heldout_perplexity": round(heldout, 4),
        "unigram_perplexity": round(unigram, 4),
        "model_bytes": weights.stat().st_size,
        "model_sha256": sha256(weights),
        "sha256": file_checksums(args.out),  # load_pretrained checks these before loading
        "total_seconds": round(time.time() - began, 1),
    }
    write_card(args.out, card)
    print(f"saved to {args.out} in {card['total_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
