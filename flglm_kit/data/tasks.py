"""Task loaders: SuperGLUE (BoolQ, RTE, COPA, CB), summarization, clinic notes and the public corpus.

Every loader returns :class:`Example` objects already written for a causal LM: a ``prompt`` that
ends in a cue line (``Answer:``, ``Highlights:``, ``Summary:``, ``Triage:``) and an ``answer``,
the words the model must generate after ``<sep>``. The same conversion code reads the kit's
shipped files, files in the official schema (SuperGLUE's ``val.jsonl``, unlabelled test files)
and the Hugging Face hub versions (``source="hf"``, needs the ``datasets`` extra).

Prompt formats (``{...}`` are the record's fields, ``|`` a line break) and answers::

    boolq    Passage: {passage}|Question: {question}?|Answer:
             -> yes  or  no
    rte      Premise: {premise}|Hypothesis: {hypothesis}|Entailment or not entailment?|Answer:
             -> entailment  or  not entailment
    cb       Premise: {premise}|Hypothesis: {hypothesis}|Entailment, contradiction or neutral?|
             Answer:  -> entailment, contradiction or neutral
    copa     Premise: {premise}|Option 1: {choice1}|Option 2: {choice2}|
             Which option is the {cause or effect}?|Answer:
             -> the chosen option's text
    summary  Article: {article}|Highlights:
             -> {highlights}, '\\n' between sentences kept
    clinic   Note: {note}|Summary:  or  Note: {note}|Triage:
             -> {summary}  or  routine, urgent, emergency

The long passage comes first and the question and cue last, so truncating a prompt from its
start (see :func:`flglm_kit.data.encode_example`) loses the passage's opening words and keeps
the question. The answer is tokenized after a space (``ANSWER_PREFIX``), as in "Answer: yes".

The clinic notes live in :mod:`flglm_kit.data.clinic`.

Introduced in notebook 01 (corpus) and notebook 06 (SuperGLUE, summarization).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from flglm_kit.data.records import (
    Row, data_root, hf_datasets, read_jsonl, read_text, resolve_file, rows_of,
)

__all__ = [
    "Example", "SUPERGLUE_TASKS", "TRIAGE_LABELS", "classification_choices", "load_corpus",
    "load_summarization", "load_superglue", "summarization_examples", "superglue_examples",
]

PathLike = str | os.PathLike[str]

SUPERGLUE_TASKS = ("boolq", "rte", "copa", "cb")
TRIAGE_LABELS = ("routine", "urgent", "emergency")

#: Hub ids for ``source="hf"`` (the old ids ``super_glue`` / ``cnn_dailymail`` redirect here).
HF_SUPERGLUE = "aps/super_glue"
HF_CNN_DAILYMAIL = ("abisee/cnn_dailymail", "3.0.0")

_SPLITS = ("train", "validation", "test")
_OFFICIAL_DIRS = {"boolq": "BoolQ", "rte": "RTE", "copa": "COPA", "cb": "CB"}  # folders of the official zip
# Choice order follows the hub's ClassLabel ids, so choices[int label] is always the answer.
_CHOICES = {"boolq": ("no", "yes"), "rte": ("entailment", "not entailment"),
            "cb": ("entailment", "contradiction", "neutral"), "triage": TRIAGE_LABELS}


@dataclass
class Example:
    """One formatted example: the model reads ``prompt`` and learns to generate ``answer``.

    Attributes:
        prompt: the input text, ending in a cue line such as ``Answer:``.
        answer: the target words (``""`` for an unlabelled test example).
        label: the record's label in its own schema (``True``, ``"not_entailment"``, ``1``,
            ``"urgent"``), ``None`` for generation tasks and unlabelled test examples.
        meta: where it came from and what scoring needs (``task``, ``idx`` or ``id``,
            ``choices``; for clinic notes ``site``, ``specialty``, ``triage``, ``entities``
            and ``note_start``, the note's offset in ``prompt``).

    Not called directly in a notebook yet.

    Example:
        >>> Example("Passage: ...\\nQuestion: is it?\\nAnswer:", "yes", True).answer
        'yes'
    """

    prompt: str
    answer: str
    label: int | str | bool | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def classification_choices(task: str, example: Example | None = None) -> list[str]:
    """The candidate answers of a classification task, for scoring by answer log-likelihood.

    Args:
        task: ``"boolq"``, ``"rte"``, ``"cb"``, ``"copa"`` or ``"triage"``.
        example: needed for COPA, whose two candidates are the example's own options.

    Returns:
        The candidate answer strings; for BoolQ, RTE, CB and COPA in the hub's label order, so
        ``choices[label_id]`` is the answer. Candidates differ in token length ("not
        entailment"), so compare summed log-likelihoods with that in mind.

    Raises:
        ValueError: for a generation task, or COPA without an example.

    Planned for notebook 06.

    Example:
        >>> classification_choices("rte")
        ['entailment', 'not entailment']
    """
    if task == "copa":
        if example is None or "choices" not in example.meta:
            raise ValueError("COPA's candidates are each example's options: pass example=")
        return list(example.meta["choices"])
    if task not in _CHOICES:
        raise ValueError(f"task must be one of {sorted([*_CHOICES, 'copa'])}, got {task!r}")
    return list(_CHOICES[task])


# --- SuperGLUE ---------------------------------------------------------------------------------

def _label(row: Row, allowed: tuple[Any, ...]) -> Any:
    """The checked label: one of ``allowed``, or ``None`` for an official test row.

    Official test rows have no label (the zip) or -1 (the hub); the hub's other rows hold
    ClassLabel ids, where id i means ``allowed[i]``.
    """
    label = row.get("label")
    if label is None or (type(label) is int and label == -1):
        return None
    if type(label) is int and 0 <= label < len(allowed):  # type(): a JSON true is no id
        return allowed[label]
    return row.choice("label", allowed)


def _boolq(row: Row) -> Example:
    passage, question = row.text("passage"), row.text("question").strip()
    label = _label(row, (False, True))
    question = question if question.endswith("?") else question + "?"  # official: no '?'
    prompt = f"Passage: {passage}\nQuestion: {question}\nAnswer:"
    answer = "" if label is None else ("yes" if label else "no")
    return Example(prompt, answer, label, {"choices": list(_CHOICES["boolq"])})


def _rte(row: Row) -> Example:
    premise, hypothesis = row.text("premise"), row.text("hypothesis")
    label = _label(row, ("entailment", "not_entailment"))
    prompt = (f"Premise: {premise}\nHypothesis: {hypothesis}\n"
              "Entailment or not entailment?\nAnswer:")
    answer = "" if label is None else str(label).replace("_", " ")
    return Example(prompt, answer, label, {"choices": list(_CHOICES["rte"])})


def _cb(row: Row) -> Example:
    premise, hypothesis = row.text("premise"), row.text("hypothesis")
    label = _label(row, _CHOICES["cb"])
    prompt = (f"Premise: {premise}\nHypothesis: {hypothesis}\n"
              "Entailment, contradiction or neutral?\nAnswer:")
    return Example(prompt, "" if label is None else str(label), label,
                   {"choices": list(_CHOICES["cb"])})


def _copa(row: Row) -> Example:
    premise, choices = row.text("premise"), [row.text("choice1"), row.text("choice2")]
    question = row.choice("question", ("cause", "effect"))
    label = _label(row, (0, 1))
    prompt = (f"Premise: {premise}\nOption 1: {choices[0]}\nOption 2: {choices[1]}\n"
              f"Which option is the {question}?\nAnswer:")
    answer = "" if label is None else choices[label]
    return Example(prompt, answer, label, {"choices": choices, "question": question})


_SUPERGLUE: dict[str, Callable[[Row], Example]] = {"boolq": _boolq, "rte": _rte, "copa": _copa,
                                                   "cb": _cb}


def convert_rows(rows: Iterable[Row], make: Callable[[Row], Example], meta: dict[str, Any],
                 keys: tuple[str, ...]) -> list[Example]:
    """``make`` each row into an example, adding ``meta`` and the row's own fields ``keys``."""
    examples = []
    for row in rows:
        example = make(row)
        example.meta.update(meta)
        example.meta.update({k: row.get(k) for k in keys if row.get(k) is not None})
        examples.append(example)
    return examples


def superglue_examples(task: str, records: Iterable[Mapping[str, Any]], *,
                       origin: str = "records") -> list[Example]:
    """Convert SuperGLUE records (official schema, or hub rows with integer labels) to examples.

    This is the conversion that every source goes through; pass a Hugging Face ``Dataset``
    (or any iterable of dicts) to use it directly.

    Args:
        task: ``"boolq"``, ``"rte"``, ``"copa"`` or ``"cb"``.
        records: one mapping per example.
        origin: names the source in errors (``'<origin> row <i>'``).

    Returns:
        The formatted examples, in order.

    Raises:
        DataError: on a missing field or an invalid label, naming the row and the field.
        ValueError: for an unknown task.

    Planned for notebook 06.

    Example:
        >>> row = {"premise": "A.", "hypothesis": "B.", "idx": 0, "label": 1}
        >>> superglue_examples("rte", [row])[0].answer
        'not entailment'
    """
    make = _SUPERGLUE[one_of(task, SUPERGLUE_TASKS, "task")]
    return convert_rows(rows_of(records, origin), make, {"task": task}, ("idx",))


def load_superglue(task: str, split: str = "train", *, path: PathLike | None = None,
                   source: Literal["local", "hf"] = "local") -> list[Example]:
    """Load BoolQ, RTE, COPA or CB as formatted examples.

    The shipped CB (three classes: entailment, contradiction, neutral) is the kit's hard task,
    with headroom for comparing centralized, federated and local-only fine-tuning; split it
    over clients by label with :func:`flglm_kit.data.dirichlet_partition` on ``ex.label``.

    Args:
        task: ``"boolq"``, ``"rte"``, ``"copa"`` or ``"cb"``.
        split: ``"train"``, ``"validation"`` (or ``"val"``) or ``"test"``.
        path: a file, or a folder holding ``<split>.jsonl`` (``val.jsonl`` accepted for
            validation) directly or in ``<task>/`` or the official ``BoolQ/``-style folder;
            ``None`` reads the shipped files. Unlabelled test rows get ``label=None``.
        source: ``"local"`` (files) or ``"hf"`` (``datasets.load_dataset("aps/super_glue", task)``).

    Returns:
        One :class:`Example` per line.

    Raises:
        DataError: for a missing file or a malformed line (file, line and field named).
        ImportError: for ``source="hf"`` without the ``datasets`` package.

    Introduced in notebook 01.

    Example:
        >>> ex = load_superglue("boolq", "validation")[0]
        >>> ex.prompt.splitlines()[-1], ex.answer in ("yes", "no")
        ('Answer:', True)
    """
    task, split = one_of(task, SUPERGLUE_TASKS, "task"), split_name(split)
    if source == "hf":
        records = _hf_split(path, split, HF_SUPERGLUE, task)
        return superglue_examples(task, records, origin=f"hf:{HF_SUPERGLUE}/{task}/{split}")
    one_of(source, ("local", "hf"), "source")
    names = [f"{split}.jsonl"] + (["val.jsonl"] if split == "validation" else [])
    file = resolve_file(path, data_root() / "superglue" / task, names,
                        subdirs=(task, _OFFICIAL_DIRS[task]))
    return convert_rows(read_jsonl(file), _SUPERGLUE[task], {"task": task}, ("idx",))


# --- summarization -----------------------------------------------------------------------------

def _article(row: Row) -> Example:
    # Highlights keep their '\n' sentence breaks: the model learns them and rougeLsum needs them.
    answer = row.text("highlights", optional=True).strip()
    return Example(f"Article: {row.text('article').strip()}\nHighlights:", answer, None, {})


def summarization_examples(records: Iterable[Mapping[str, Any]], *,
                           origin: str = "records") -> list[Example]:
    """Convert CNN/DailyMail-schema records (``article``, ``highlights``, ``id``) to examples.

    Args:
        records: one mapping per article (a list of dicts or a Hugging Face ``Dataset``).
        origin: names the source in errors.

    Returns:
        Examples whose answer is the highlights (``""`` if a record has none), label ``None``.

    Raises:
        DataError: on a missing or empty article.

    Planned for notebook 06.

    Example:
        >>> summarization_examples([{"article": "Rain.", "highlights": "Wet.\\nCold."}])[0].answer
        'Wet.\\nCold.'
    """
    return convert_rows(rows_of(records, origin), _article, {"task": "summarization"}, ("id",))


def load_summarization(split: str, *, path: PathLike | None = None,
                       source: Literal["local", "hf"] = "local") -> list[Example]:
    """Load the summarization set (shipped, a CNN/DailyMail-schema file, or the hub's 3.0.0).

    Args:
        split: ``"train"``, ``"validation"`` or ``"test"``.
        path: a JSON Lines file or a folder with ``<split>.jsonl``; ``None``: the shipped files.
        source: ``"local"`` or ``"hf"`` (``load_dataset("abisee/cnn_dailymail", "3.0.0")``).

    Returns:
        One :class:`Example` per article.

    Raises:
        DataError: for a missing file or a malformed line.
        ImportError: for ``source="hf"`` without the ``datasets`` package.

    Introduced in notebook 01.

    Example:
        >>> load_summarization("test")[0].prompt.endswith("\\nHighlights:")
        True
    """
    split = split_name(split)
    if source == "hf":
        records = _hf_split(path, split, *HF_CNN_DAILYMAIL)
        return summarization_examples(records, origin=f"hf:{HF_CNN_DAILYMAIL[0]}/{split}")
    one_of(source, ("local", "hf"), "source")
    file = resolve_file(path, data_root() / "summarization", [f"{split}.jsonl"])
    return convert_rows(read_jsonl(file), _article, {"task": "summarization"}, ("id",))


# --- public corpus -------------------------------------------------------------------------------

def load_corpus(split: str, *, path: PathLike | None = None) -> list[str]:
    """Load the public corpus: one document per line, blank lines skipped.

    Args:
        split: ``"train"`` or ``"validation"``.
        path: a text file or a folder with ``<split>.txt``; ``None``: the shipped files.

    Returns:
        The documents.

    Raises:
        DataError: for a missing file, or one that is not UTF-8 (line and byte named).

    Introduced in notebook 02.

    Example:
        >>> docs = load_corpus("validation"); len(docs), docs[0][:4]
        (224, 'In D')
    """
    split = one_of(split_name(split), ("train", "validation"), "split")
    file = resolve_file(path, data_root() / "public_corpus", [f"{split}.txt"])
    return [line for line in read_text(file).splitlines() if line.strip()]


# --- helpers, shared with flglm_kit.data.clinic -------------------------------------------------

def one_of(value: str, allowed: tuple[str, ...], what: str) -> str:
    """``value`` if it is one of ``allowed``, else a ``ValueError`` naming ``what``."""
    if value not in allowed:
        raise ValueError(f"{what} must be one of {list(allowed)}, got {value!r}")
    return value


def split_name(split: str) -> str:
    """A checked split name; ``"val"`` (the official SuperGLUE file name) means validation."""
    return one_of("validation" if split == "val" else split, _SPLITS, "split")


def _hf_split(path: PathLike | None, split: str, *name: str) -> Iterator[Mapping[str, Any]]:
    """Rows of a hub dataset (downloaded, or from the local Hugging Face cache)."""
    if path is not None:
        raise ValueError("path= reads local files; use source='local' with it")
    dataset = hf_datasets().load_dataset(*name, split=split)
    return iter(dataset)
