"""Centralized fine-tuning and evaluation: the baseline every split/federated run is compared to.

Classification tasks (BoolQ, RTE, CB, COPA, triage) are scored the way LM evaluations usually do it:
the answer whose tokens the model finds most likely wins. Generation tasks (summaries) decode
greedily and are scored with ROUGE. Each comes with the baseline a model must beat: the
majority class, or the article's first sentence (lead-1).

Planned for notebook 06; the shipped model card's fine-tuning numbers come from here.
"""

from __future__ import annotations

import itertools
import re
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from flglm_kit.data import (Example, classification_choices, collate, decode_answer, encode_example, encode_prompt,
                            special_ids)
from flglm_kit.losses import next_token_loss
from flglm_kit.metrics import accuracy, rouge

__all__ = ["train_centralized", "answer_logprobs", "evaluate_choices", "generate_answers",
           "evaluate_generation", "majority_baseline", "lead_baseline", "finetune_sanity", "SanityResult",
           "SANITY_RUNS"]


def train_centralized(model: nn.Module, batches: Iterable[Mapping[str, torch.Tensor]], *, lr: float = 1e-3,
                      weight_decay: float = 0.0, device: torch.device | None = None,
                      progress: bool = True, desc: str = "fine-tuning") -> list[float]:
    """Train ``model`` (all weights) with AdamW on ``batches``; returns the loss of each step.

    The loss is :func:`flglm_kit.losses.next_token_loss` (the model's own ``labels=`` loss, computed
    in one place for the whole kit).

    Args:
        model: a causal LM taking ``input_ids``, ``attention_mask`` and ``labels``.
        batches: dicts of (B, T) tensors, for example from :func:`flglm_kit.data.make_loader`.
        lr, weight_decay: AdamW's.
        device: where to train; default: where the model is.
        progress: show a progress bar.
    """
    device = device or next(model.parameters()).device
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    model.train()
    losses = []
    for batch in tqdm(list(batches), desc=desc, disable=not progress, leave=False):
        logits = model(input_ids=batch["input_ids"].to(device),
                       attention_mask=batch["attention_mask"].to(device)).logits  # (B, T, V)
        loss = next_token_loss(logits, batch["labels"].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses


@torch.no_grad()
def answer_logprobs(model: nn.Module, tokenizer: PreTrainedTokenizerBase, examples: Sequence[Example], *,
                    max_len: int, batch_size: int = 32, device: torch.device | None = None) -> torch.Tensor:
    """Summed log-probability of each example's answer tokens (and ``<eos>``) given its prompt: (N,)."""
    device = device or next(model.parameters()).device
    pad = special_ids(tokenizer).pad
    scores = []
    for start in range(0, len(examples), batch_size):
        chunk = [encode_example(ex, tokenizer, max_len=max_len) for ex in examples[start:start + batch_size]]
        batch = {k: v.to(device) for k, v in collate(chunk, pad_id=pad).items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # (B, T, V)
        nll = next_token_loss(logits, batch["labels"], reduction="none")  # (B, T): 0 off the answer
        scores.append(-nll.sum(dim=1).cpu())
    return torch.cat(scores) if scores else torch.empty(0)


def evaluate_choices(model: nn.Module, tokenizer: PreTrainedTokenizerBase, examples: Sequence[Example],
                     task: str, *, max_len: int, device: torch.device | None = None) -> float:
    """Accuracy when the candidate answer with the highest log-likelihood is the prediction."""
    flat, owners = [], []
    for i, ex in enumerate(examples):
        for choice in classification_choices(task, ex):
            flat.append(replace(ex, answer=choice))
            owners.append(i)
    scores = answer_logprobs(model, tokenizer, flat, max_len=max_len, device=device)
    best: dict[int, tuple[float, str]] = {}
    for owner, ex, score in zip(owners, flat, scores.tolist()):
        if owner not in best or score > best[owner][0]:
            best[owner] = (score, ex.answer)
    return accuracy([best[i][1] for i in range(len(examples))], [ex.answer for ex in examples])


@torch.no_grad()
def generate_answers(model: Any, tokenizer: PreTrainedTokenizerBase, examples: Sequence[Example], *,
                     max_len: int, max_new_tokens: int = 64, batch_size: int = 16,
                     device: torch.device | None = None) -> list[str]:
    """Greedy answers to each example's prompt (left-padded batches through ``model.generate``)."""
    device = device or next(model.parameters()).device
    ids = special_ids(tokenizer)
    answers: list[str] = []
    for start in range(0, len(examples), batch_size):
        prompts = [encode_prompt(ex, tokenizer, max_len=max_len - max_new_tokens)
                   for ex in examples[start:start + batch_size]]
        batch = collate(prompts, pad_id=ids.pad, padding_side="left")
        out = model.generate(input_ids=batch["input_ids"].to(device),
                             attention_mask=batch["attention_mask"].to(device),
                             max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=ids.eos, pad_token_id=ids.pad)
        new = out[:, batch["input_ids"].shape[1]:].tolist()
        answers += [decode_answer(seq, tokenizer) for seq in new]
    return answers


def evaluate_generation(model: Any, tokenizer: PreTrainedTokenizerBase, examples: Sequence[Example], *,
                        max_len: int, max_new_tokens: int = 64,
                        device: torch.device | None = None) -> dict[str, float]:
    """ROUGE F1 of greedy answers against each example's reference answer."""
    predictions = generate_answers(model, tokenizer, examples, max_len=max_len,
                                   max_new_tokens=max_new_tokens, device=device)
    return rouge(predictions, [ex.answer for ex in examples])


def majority_baseline(train: Sequence[Example], evaluation: Sequence[Example]) -> float:
    """Accuracy of always answering the most common training answer.

    Example:
        >>> a, b = Example("p", "yes"), Example("p", "no")
        >>> majority_baseline([a, a, b], [a, b, b, b])
        0.25
    """
    most_common = Counter(ex.answer for ex in train).most_common(1)[0][0]
    return accuracy([most_common] * len(evaluation), [ex.answer for ex in evaluation])


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def lead_baseline(examples: Sequence[Example], *, article_field: str = "article") -> dict[str, float]:
    """ROUGE of the lead-1 baseline: each article's first sentence as its summary.

    The article is ``example.meta[article_field]`` when present, else the prompt with its
    ``Article:`` / ``Note:`` label and the trailing cue line removed.
    """
    leads = []
    for ex in examples:
        text = ex.meta.get(article_field) or _body(ex.prompt)
        leads.append(_SENTENCE_END.split(text.strip(), maxsplit=1)[0])
    return rouge(leads, [ex.answer for ex in examples])


def _body(prompt: str) -> str:
    lines = prompt.strip().split("\n")
    body = "\n".join(lines[:-1]) if len(lines) > 1 else lines[0]
    return re.sub(r"^(Article|Note):\s*", "", body)


@dataclass
class SanityResult:
    """One fine-tuning sanity run: the score next to the baseline it must beat."""

    task: str
    metric: str
    score: float
    baseline: float
    baseline_name: str
    steps: int
    eval_size: int
    seconds: float


#: The card's sanity runs: mode -> task -> finetune_sanity keyword arguments. The tests repeat "quick".
SANITY_RUNS: dict[str, dict[str, dict[str, Any]]] = {
    "full": {"rte": dict(steps=150, eval_size=300), "summarization": dict(steps=150, eval_size=100, batch_size=8)},
    "quick": {"rte": dict(steps=40, eval_size=60), "summarization": dict(steps=40, eval_size=20, batch_size=8)},
}

#: task -> (max_len, answer tokens to generate or None for classification)
_SANITY_TASKS: dict[str, tuple[int, int | None]] = {"boolq": (128, None), "rte": (128, None),
                                                    "cb": (128, None), "copa": (96, None),
                                                    "summarization": (320, 48)}


def finetune_sanity(task: str, *, steps: int, eval_size: int, batch_size: int = 16, lr: float = 1e-3,
                    seed: int = 0, model: Any = None, tokenizer: Any = None,
                    progress: bool = False) -> SanityResult:
    """Fine-tune the shipped pretrained GLM on one shipped task and score it against its baseline.

    Args:
        task: ``"boolq"``, ``"rte"``, ``"cb"``, ``"copa"`` (accuracy vs majority class) or
            ``"summarization"`` (ROUGE-L F1 vs the lead-1 sentence).
        steps: training steps (batches; the training set is cycled in a seeded order).
        eval_size: how many validation examples to score (the first ``eval_size``).
        batch_size, lr: of the training batches and AdamW.
        seed: seeds the batch order and, inside the call only, torch's generators (dropout);
            the caller's global random state is the same afterwards.
        model, tokenizer: default: :func:`flglm_kit.pretrained.load_pretrained`.
        progress: show a progress bar.

    Returns:
        A :class:`SanityResult`: the score next to its baseline.

    Raises:
        ValueError: for an unknown task.

    A run takes tens of seconds, so there is no doctest here; ``tests/test_finetune.py`` runs it.
    """
    from flglm_kit.pretrained import load_pretrained

    if task not in _SANITY_TASKS:
        raise ValueError(f"task must be one of {sorted(_SANITY_TASKS)}, got {task!r}")
    if model is None or tokenizer is None:
        tokenizer, model = load_pretrained()
    with _seeded(seed):  # the run's own random state; the caller's is left as it was
        return _sanity_run(task, model, tokenizer, steps=steps, eval_size=eval_size,
                           batch_size=batch_size, lr=lr, seed=seed, progress=progress)


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch's generators (CPU and every CUDA device) inside, restore them on the way out."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _sanity_run(task: str, model: Any, tokenizer: Any, *, steps: int, eval_size: int, batch_size: int,
                lr: float, seed: int, progress: bool) -> SanityResult:
    """The body of :func:`finetune_sanity`, under its seeded generators."""
    from flglm_kit.data import load_summarization, load_superglue, make_loader

    max_len, new_tokens = _SANITY_TASKS[task]
    def load(split: str) -> list[Example]:
        return load_summarization(split) if task == "summarization" else load_superglue(task, split)

    train, evaluation = load("train"), load("validation")[:eval_size]
    loader = make_loader(train, tokenizer, batch_size=batch_size, max_len=max_len, shuffle=True, seed=seed)
    batches = list(itertools.islice(itertools.chain.from_iterable(itertools.repeat(loader)), steps))
    start = time.perf_counter()
    train_centralized(model, batches, lr=lr, progress=progress, desc=f"fine-tuning on {task}")
    if new_tokens is None:
        score = evaluate_choices(model, tokenizer, evaluation, task, max_len=max_len)
        result = ("accuracy", score, majority_baseline(train, evaluation), "majority class")
    else:
        score = evaluate_generation(model, tokenizer, evaluation, max_len=max_len, max_new_tokens=new_tokens)["rougeL"]
        result = ("rougeL", score, lead_baseline(evaluation)["rougeL"], "lead-1 sentence")
    metric, value, baseline, baseline_name = result
    return SanityResult(task, metric, value, baseline, baseline_name, steps, len(evaluation),
                        time.perf_counter() - start)
