"""Reading the kit's data files: where they live, and errors that name file, line and field.

A loader that fails should say exactly what to fix: ``DataError: datasets/superglue/rte/train.jsonl
line 12: field 'label' must be 'entailment' or 'not_entailment', got 'maybe'``. Every record is
wrapped in a :class:`Row` that knows where it came from, so the field checks can say so.

Introduced in notebook 01.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["DATA_ENV", "DataError", "Row", "data_root", "hf_datasets", "read_jsonl", "read_text",
           "resolve_file", "rows_of", "show"]

#: Environment variable pointing at a datasets folder laid out like the repository's ``datasets/``.
DATA_ENV = "FLGLM_DATA"

# The package sits inside the repository (editable install), so the shipped data is two levels up.
_REPO = Path(__file__).resolve().parents[2]


#: How to repair a file that is not UTF-8 (the usual culprit: a Windows-1252 / Latin-1 export).
_REENCODE = ("the kit reads UTF-8 only: re-save the file as UTF-8, e.g. "
             "`iconv -f cp1252 -t utf-8 FILE > FILE.utf8`")


class DataError(ValueError):
    """A data file is missing or malformed; the message names the file, the line and the field.

    Not called directly in a notebook yet.
    """


def data_root() -> Path:
    """The datasets folder: ``$FLGLM_DATA`` if set, else the repository's own ``datasets/``.

    Returns:
        The folder holding ``superglue/``, ``summarization/``, ``clinic_notes/`` and
        ``public_corpus/``.

    Raises:
        DataError: if the folder does not exist (for example a wheel install without the repo).

    Example:
        >>> (data_root() / "clinic_notes").is_dir()
        True
    """
    env = os.environ.get(DATA_ENV)
    root = Path(env).expanduser() if env else _REPO / "datasets"
    if not root.is_dir():
        how = f"${DATA_ENV} is {env!r}" if env else "the package is not inside the repository"
        raise DataError(f"{show(root)}: no datasets folder here ({how}); set {DATA_ENV} to the "
                        "folder holding superglue/, summarization/, clinic_notes/, public_corpus/")
    return root


def show(path: Path) -> str:
    """A path as a person wants to read it in an error: relative to the repository if inside."""
    try:
        return path.resolve().relative_to(_REPO).as_posix()
    except ValueError:
        return str(path)


def resolve_file(path: str | os.PathLike[str] | None, default_dir: Path, names: Sequence[str],
                 *, subdirs: Sequence[str] = ()) -> Path:
    """Find a data file: ``path`` itself if it is a file, else the first of ``names`` in a folder.

    Args:
        path: a file, a folder, or ``None`` for ``default_dir``.
        default_dir: where the shipped file lives.
        names: file names to try, in order (e.g. ``["validation.jsonl", "val.jsonl"]``).
        subdirs: sub-folders of ``path`` to try as well (e.g. an official download's ``RTE/``).

    Returns:
        The file's path.

    Raises:
        DataError: naming every place that was tried.

    Example:
        >>> rte = data_root() / "superglue" / "rte"
        >>> resolve_file(None, rte, ["val.jsonl", "validation.jsonl"]).name
        'validation.jsonl'
    """
    if path is not None and Path(path).is_file():
        return Path(path)
    base = default_dir if path is None else Path(path)
    folders = [base] + [base / sub for sub in subdirs]
    tried = [folder / name for folder in folders for name in names]
    for candidate in tried:
        if candidate.is_file():
            return candidate
    raise DataError("no such file: " + " or ".join(show(p) for p in tried))


class Row:
    """One record plus where it came from, with field getters that raise :class:`DataError`.

    Example:
        >>> row = Row({"label": "maybe"}, "rte/train.jsonl line 12")
        >>> try:
        ...     row.choice("label", ("yes", "no"))
        ... except DataError as err:
        ...     print(err)
        rte/train.jsonl line 12: field 'label' must be 'yes' or 'no', got 'maybe'
    """

    def __init__(self, record: Mapping[str, Any], where: str) -> None:
        self.record = record
        self.where = where

    def error(self, field: str, must: str, value: Any) -> DataError:
        """The error for ``field``: ``'<where>: field '<field>' must <must>, got <value>'``."""
        return DataError(f"{self.where}: field '{field}' must {must}, got {value!r}")

    def get(self, field: str, default: Any = None) -> Any:
        """The raw value, or ``default`` when the field is missing."""
        return self.record.get(field, default)

    def text(self, field: str, *, optional: bool = False) -> str:
        """A non-empty string field (``optional``: missing or null gives ``""``)."""
        if field not in self.record or self.record[field] is None:
            if optional:
                return ""
            raise DataError(f"{self.where}: missing field '{field}'")
        value = self.record[field]
        if not isinstance(value, str) or not value.strip():
            raise self.error(field, "be a non-empty string", value)
        return value

    def choice(self, field: str, allowed: Sequence[Any]) -> Any:
        """A field whose value must be one of ``allowed`` (``==``, but bools only match bools)."""
        if field not in self.record:
            raise DataError(f"{self.where}: missing field '{field}'")
        value = self.record[field]
        for option in allowed:
            if value == option and isinstance(value, bool) == isinstance(option, bool):
                return option
        # Booleans as JSON spells them: the files are JSON, not Python.
        names = [str(a).lower() if isinstance(a, bool) else repr(a) for a in allowed]
        must = " or ".join(names) if len(names) <= 2 else ", ".join(names[:-1]) + " or " + names[-1]
        raise self.error(field, f"be {must}", value)


def _utf8_error(name: str, number: int, line_start: int, err: UnicodeDecodeError) -> DataError:
    """The error for a line that is not UTF-8: file, line, byte offsets, the bytes and the fix."""
    bad = err.object[err.start:err.end].hex(" ")
    return DataError(f"{name} line {number}: not valid UTF-8 at byte offset {err.start} of the line "
                     f"({line_start + err.start} of the file): byte(s) {bad}, {err.reason}; "
                     f"{_REENCODE}")


def _decode_line(raw: bytes, name: str, number: int, line_start: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _utf8_error(name, number, line_start, err) from None


def read_text(path: Path) -> str:
    """The whole of a UTF-8 text file, or a :class:`DataError` that says where it is not UTF-8.

    Args:
        path: the file.

    Returns:
        Its text (newlines as in the file).

    Raises:
        DataError: if the file is missing, or not UTF-8 (naming the line, the byte offsets and
            how to re-encode it).

    Example:
        >>> read_text(data_root() / "public_corpus" / "validation.txt")[:4]
        'In D'
    """
    if not path.is_file():
        raise DataError(f"no such file: {show(path)}")
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line_start = data.rfind(b"\n", 0, err.start) + 1  # 0 when on the first line
        line_err = UnicodeDecodeError("utf-8", data[line_start:], err.start - line_start,
                                      err.end - line_start, err.reason)
        raise _utf8_error(show(path), data.count(b"\n", 0, err.start) + 1, line_start,
                          line_err) from None


def read_jsonl(path: Path) -> Iterator[Row]:
    """Yield one :class:`Row` per non-blank line of a JSON Lines file, numbered from 1.

    The file is read a line at a time, so its size does not matter; each line must be UTF-8.

    Args:
        path: the file.

    Returns:
        An iterator of rows whose ``where`` is ``'<file> line <n>'``.

    Raises:
        DataError: if the file is missing, a line is not UTF-8 (the line, the byte offsets and
            how to re-encode it are named), or a line is not a JSON object.

    Example:
        >>> next(read_jsonl(data_root() / "superglue" / "copa" / "train.jsonl")).where
        'datasets/superglue/copa/train.jsonl line 1'
    """
    if not path.is_file():
        raise DataError(f"no such file: {show(path)}")
    name = show(path)
    offset = 0  # byte offset of the current line in the file
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            line = _decode_line(raw, name, number, offset)
            offset += len(raw)
            if not line.strip():
                continue  # a trailing blank line is common in hand-edited files
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{name} line {number}: not valid JSON ({err.msg})") from None
            if not isinstance(record, dict):
                raise DataError(f"{name} line {number}: expected a JSON object, got "
                                f"{type(record).__name__}")
            yield Row(record, f"{name} line {number}")


def rows_of(records: Iterable[Mapping[str, Any]], origin: str) -> Iterator[Row]:
    """Wrap in-memory records (a list of dicts, a Hugging Face ``Dataset``), numbered from 0.

    Example:
        >>> [r.where for r in rows_of([{}, {}], "hf:rte/train")]
        ['hf:rte/train row 0', 'hf:rte/train row 1']
    """
    for index, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise DataError(f"{origin} row {index}: expected a mapping, "
                            f"got {type(record).__name__}")
        yield Row(record, f"{origin} row {index}")


def hf_datasets() -> Any:
    """The Hugging Face ``datasets`` module, imported only when a loader asks for ``source="hf"``.

    Raises:
        ImportError: if it is not installed (it is the optional extra ``flglm-kit[datasets]``).
    """
    try:
        import datasets
    except ImportError as err:
        raise ImportError("source='hf' needs Hugging Face datasets: "
                          "pip install 'flglm-kit[datasets]'") from err
    if not hasattr(datasets, "load_dataset"):
        # Without the real package, Python imports the repository's own datasets/ folder as a
        # namespace package when run from the repo root; say so instead of an AttributeError.
        raise ImportError(f"'datasets' resolved to {list(getattr(datasets, '__path__', []))}, not "
                          "Hugging Face datasets: pip install 'flglm-kit[datasets]'")
    return datasets
