"""The clinic notes: the private data of the kit's federated clients, one hospital site each.

Prompts: ``Note: {note}\nSummary:`` (answer: the one-sentence summary) or ``Note: {note}\nTriage:``
(answer: ``routine``, ``urgent`` or ``emergency``). Every example keeps the note's private
entity spans in ``meta`` so that attacks can be scored on what they recover.

Introduced in notebook 01.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from flglm_kit.data.records import Row, data_root, read_jsonl, resolve_file, rows_of
from flglm_kit.data.tasks import (
    TRIAGE_LABELS, Example, PathLike, convert_rows, one_of, split_name,
)

__all__ = ["CLINICAL_ENTITY_TYPES", "IDENTIFIER_ENTITY_TYPES", "clinic_examples",
           "load_clinic_notes"]

#: Entity types of the clinic notes, split as the datasheet reports recovery.
IDENTIFIER_ENTITY_TYPES = ("name", "dob", "age", "phone", "city", "mrn", "date")
CLINICAL_ENTITY_TYPES = ("condition", "medication")

_NOTE_PREFIX = "Note: "


def _entities(row: Row, note: str) -> list[dict[str, Any]]:
    spans = row.get("entities", [])
    if not isinstance(spans, list):
        raise row.error("entities", "be a list", spans)
    out = []
    for i, span in enumerate(spans):
        name = f"entities[{i}]"
        if not isinstance(span, dict) or not {"type", "text", "start", "end"} <= span.keys():
            raise row.error(name, "be an object with type, text, start, end", span)
        start, end = span["start"], span["end"]
        if not (isinstance(start, int) and isinstance(end, int)):
            raise row.error(f"{name}.start/end", "be integers", (start, end))
        if note[start:end] != span["text"]:
            # Attacks are scored on these spans, so a wrong offset must not pass silently.
            raise row.error(name, f"match the note at [{start}:{end}] ({note[start:end]!r})",
                            span["text"])
        out.append({k: span[k] for k in ("type", "text", "start", "end")})
    return out


def _clinic(task: str) -> Callable[[Row], Example]:
    cue = {"summary": "Summary:", "triage": "Triage:"}[task]

    def make(row: Row) -> Example:
        note, triage = row.text("note"), row.choice("triage", TRIAGE_LABELS)
        meta = {"id": row.text("id"), "site": row.text("site"),
                "specialty": row.text("specialty"), "triage": triage,
                "entities": _entities(row, note), "note_start": len(_NOTE_PREFIX)}
        prompt = f"{_NOTE_PREFIX}{note}\n{cue}"
        if task == "triage":
            return Example(prompt, triage, triage, {**meta, "choices": list(TRIAGE_LABELS)})
        return Example(prompt, row.text("summary"), None, meta)

    return make


def clinic_examples(records: Iterable[Mapping[str, Any]], *, task: str = "summary",
                    origin: str = "records") -> list[Example]:
    """Convert clinic-note records to examples (see :func:`load_clinic_notes`).

    Example:
        >>> rec = {"id": "x-1", "site": "a", "specialty": "general", "note": "Seen in Oakby.",
        ...        "summary": "Seen.", "triage": "routine",
        ...        "entities": [{"type": "city", "text": "Oakby", "start": 8, "end": 13}]}
        >>> clinic_examples([rec], task="triage")[0].answer
        'routine'
    """
    make = _clinic(one_of(task, ("summary", "triage"), "task"))
    return convert_rows(rows_of(records, origin), make, {"task": task}, ())


def load_clinic_notes(split: str, *, task: Literal["summary", "triage"] = "summary",
                      path: PathLike | None = None,
                      sites: str | Iterable[str] | None = None) -> list[Example]:
    """Load the synthetic clinic notes: the private data of the kit's federated clients.

    Args:
        split: ``"train"``, ``"validation"`` or ``"test"``.
        task: ``"summary"`` (answer: the one-sentence summary, label ``None``) or
            ``"triage"`` (answer and label: ``routine`` / ``urgent`` / ``emergency``).
        path: a JSON Lines file or a folder with ``<split>.jsonl``; ``None``: the shipped files.
        sites: keep only these sites (one name or several); ``None`` keeps all.

    Returns:
        Examples whose ``meta`` holds ``id``, ``site``, ``specialty``, ``triage``, the private
        ``entities`` (spans into the note) and ``note_start`` (the note's offset in the prompt).

    Raises:
        DataError: for a missing file, a malformed line, or an entity span that does not match.
        ValueError: for an unknown task, or a site that the file does not hold.

    Introduced in notebook 01.

    Example:
        >>> ex = load_clinic_notes("test", task="triage", sites="corvale")[0]
        >>> ex.meta["site"], ex.answer in ("routine", "urgent", "emergency")
        ('corvale', True)
    """
    make = _clinic(one_of(task, ("summary", "triage"), "task"))
    file = resolve_file(path, data_root() / "clinic_notes", [f"{split_name(split)}.jsonl"])
    examples = convert_rows(read_jsonl(file), make, {"task": task}, ())
    if sites is None:
        return examples
    wanted = {sites} if isinstance(sites, str) else set(sites)
    present = {ex.meta["site"] for ex in examples}
    if wanted - present:
        raise ValueError(f"unknown site(s) {sorted(wanted - present)}; "
                         f"{file.name} holds {sorted(present)}")
    return [ex for ex in examples if ex.meta["site"] in wanted]
