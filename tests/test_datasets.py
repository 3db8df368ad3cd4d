"""The kit's synthetic datasets: regenerating gives the same bytes, and each datasheet claim holds.

Prepare: the committed files under datasets/. Execute: regenerate or re-derive. Assert.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from collections import Counter
from itertools import combinations
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "datasets"
CLINIC_SPLITS = ("train", "validation", "test")
CORPUS_FILES = ("train.txt", "validation.txt", "medical_train.txt", "medical_validation.txt")


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    """datasets/generate.py, imported by path (datasets/ is not a package: that name is taken)."""
    spec = importlib.util.spec_from_file_location("flglm_datasets_generate", DATA / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # puts datasets/ on sys.path for the gen_* modules
    return module


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def clinic() -> dict[str, list[dict]]:
    return {s: _jsonl(DATA / "clinic_notes" / f"{s}.jsonl") for s in CLINIC_SPLITS}


@pytest.fixture(scope="module")
def corpus() -> str:
    return "".join((DATA / "public_corpus" / f).read_text(encoding="utf-8")
                   for f in CORPUS_FILES)


def _committed() -> dict[str, bytes]:
    return {p.relative_to(DATA).as_posix(): p.read_bytes() for p in DATA.rglob("*")
            if p.is_file() and p.suffix in {".txt", ".jsonl", ".md"}}


# ------------------------------------------------------------------ (a) byte-identical rebuild
def test_cli_regenerates_every_file_byte_for_byte(tmp_path: Path) -> None:
    # ~3 s on a 2-core CPU, so the whole thing is rebuilt, not a slice.
    done = subprocess.run([sys.executable, str(DATA / "generate.py"), "--seed", "0", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    fresh = {p.relative_to(tmp_path).as_posix(): p.read_bytes() for p in tmp_path.rglob("*")
             if p.is_file()}
    committed = _committed()
    assert sorted(fresh) == sorted(committed)
    assert [p for p in fresh if fresh[p] != committed[p]] == []


def test_check_mode_passes_on_the_committed_files_and_fails_on_a_change(tmp_path: Path) -> None:
    cmd = [sys.executable, str(DATA / "generate.py"), "--only", "superglue", "--out"]
    assert subprocess.run([*cmd, str(DATA), "--check"], capture_output=True).returncode == 0
    assert subprocess.run([*cmd, str(tmp_path)], capture_output=True).returncode == 0
    target = tmp_path / "superglue" / "rte" / "test.jsonl"
    target.write_bytes(target.read_bytes().replace(b"entailment", b"entailmant", 1))
    done = subprocess.run([*cmd, str(tmp_path), "--check"], capture_output=True, text=True)
    assert done.returncode == 1 and "superglue/rte/test.jsonl" in done.stdout


def test_only_rebuilds_one_dataset_alone_and_the_seed_matters(gen: ModuleType) -> None:
    clinic0 = gen.build("clinic_notes", 0)
    assert clinic0["test.jsonl"].encode() == (DATA / "clinic_notes" / "test.jsonl").read_bytes()
    assert gen.build("clinic_notes", 1)["test.jsonl"] != clinic0["test.jsonl"]


def test_a_corpus_shard_can_be_regenerated_alone(gen: ModuleType) -> None:
    import gen_corpus  # importable once generate.py has run

    train = (DATA / "public_corpus" / "train.txt").read_text(encoding="utf-8").splitlines()
    docs, _ = gen_corpus.split_shard(gen_corpus.shard_documents(0, 0))
    first = list(dict.fromkeys(docs))  # the first shard, repeats dropped as build() does
    assert len(first) > 0.9 * gen_corpus.DOCS_PER_SHARD and train[:len(first)] == first


# ------------------------------------------------------------------ (b) clinic entity spans
def test_every_clinic_entity_span_matches_the_note(clinic: dict[str, list[dict]]) -> None:
    allowed = {"name", "dob", "age", "phone", "city", "mrn", "date", "condition", "medication"}
    for rec in (r for recs in clinic.values() for r in recs):
        spans = rec["entities"]
        for e in spans:
            assert set(e) == {"type", "text", "start", "end"} and e["type"] in allowed
            assert rec["note"][e["start"]:e["end"]] == e["text"], (rec["id"], e)
        assert all(a["end"] <= b["start"] for a, b in zip(spans, spans[1:])), rec["id"]
        types = Counter(e["type"] for e in spans)
        assert all(types[t] >= 1 for t in allowed), rec["id"]


def test_phone_numbers_are_in_the_fictional_555_01xx_range(clinic: dict[str, list[dict]]) -> None:
    phones = [e["text"] for recs in clinic.values() for r in recs for e in r["entities"]
              if e["type"] == "phone"]
    assert phones and all(re.fullmatch(r"\(\d{3}\) 555-01\d\d", p) for p in phones)


def test_each_full_name_occurs_in_one_record_only(clinic: dict[str, list[dict]]) -> None:
    owners: dict[str, set[str]] = {}
    for rec in (r for recs in clinic.values() for r in recs):
        for e in rec["entities"]:
            if e["type"] == "name":
                owners.setdefault(e["text"], set()).add(rec["id"] + rec["site"])
    assert max(len(ids) for ids in owners.values()) == 1


# ------------------------------------------------------------------ (c) sites are non-IID
def _tv(a: Counter, b: Counter) -> float:
    na, nb = sum(a.values()), sum(b.values())
    return 0.5 * sum(abs(a[k] / na - b[k] / nb) for k in set(a) | set(b))


def test_every_site_has_records_and_the_mixes_differ(clinic: dict[str, list[dict]]) -> None:
    sites = {r["site"] for r in clinic["train"]}
    assert len(sites) >= 4
    for split in CLINIC_SPLITS:
        assert Counter(r["site"] for r in clinic[split]).keys() == sites
    cond = {s: Counter(e["text"] for r in clinic["train"] if r["site"] == s
                       for e in r["entities"] if e["type"] == "condition") for s in sites}
    triage = {s: Counter(r["triage"] for r in clinic["train"] if r["site"] == s) for s in sites}
    assert min(_tv(cond[a], cond[b]) for a, b in combinations(sorted(sites), 2)) > 0.2
    assert max(_tv(triage[a], triage[b]) for a, b in combinations(sorted(sites), 2)) > 0.1


def test_triage_follows_the_documented_rule_from_the_note_alone(
        gen: ModuleType, clinic: dict[str, list[dict]]) -> None:
    import gen_clinic

    severity = {phrase: level for conds in gen_clinic.SPECIALTIES.values()
                for _, *levels in conds.values() for level, phrases in enumerate(levels)
                for phrase in phrases}
    vital = re.compile(r"(?:HR|pulse|Heart rate) (\d+).*?(?:BP|pressure) (\d+)/\d+.*?"
                       r"(?:T|temperature) "
                       r"(\d+)\.(\d).*?(?:SpO2|saturation|saturations|sats) (\d+)%", re.S)
    counts = Counter(r["triage"] for recs in clinic.values() for r in recs)
    assert min(counts.values()) / sum(counts.values()) > 0.1  # no class is negligible
    for rec in (r for recs in clinic.values() for r in recs):
        note = rec["note"]
        hr, sbp, t_int, t_dec, spo2 = map(int, vital.search(note).groups())  # type: ignore[union-attr]
        vitals = {"hr": hr, "sbp": sbp, "temp": 10 * t_int + t_dec, "spo2": spo2}
        symptom = max(level for phrase, level in severity.items() if phrase in note)
        expected = gen_clinic.TRIAGE[max(symptom, gen_clinic.vitals_severity(vitals))]
        assert rec["triage"] == expected, rec["id"]
        assert not re.search(r"\b(routine|urgent|emergency)\b", note, re.I), rec["id"]


def test_a_per_position_prior_gets_template_tokens_but_no_identifiers(
        clinic: dict[str, list[dict]]) -> None:
    """The datasheet's claim, on whitespace tokens: majority token per (site, position)."""
    identifier = {"name", "dob", "age", "phone", "city", "mrn", "date"}

    def tagged(rec: dict) -> list[tuple[str, bool]]:
        out, pos = [], 0
        for tok in rec["note"].split():
            start = rec["note"].index(tok, pos)
            pos = start + len(tok)
            private = any(e["type"] in identifier and e["start"] < pos and start < e["end"]
                          for e in rec["entities"])
            out.append((tok, private))
        return out

    votes: dict[tuple[str, int], Counter] = {}
    for rec in clinic["train"]:
        for i, (tok, _) in enumerate(tagged(rec)):
            votes.setdefault((rec["site"], i), Counter())[tok] += 1
    hits = {True: [0, 0], False: [0, 0]}
    for rec in clinic["test"]:
        for i, (tok, private) in enumerate(tagged(rec)):
            guess = votes.get((rec["site"], i), Counter()).most_common(1)
            hits[private][0] += bool(guess) and guess[0][0] == tok
            hits[private][1] += 1
    # Template words: a good share. Identifier tokens: a few (the month or year of a date, a
    # child's age), well under the template rate.
    assert hits[False][0] / hits[False][1] > 0.3
    assert hits[True][0] / hits[True][1] < 0.05


# ------------------------------------------------------------------ (d) schemas
@pytest.mark.parametrize("task,fields", [
    ("boolq", {"question", "passage", "idx", "label"}),
    ("rte", {"premise", "hypothesis", "idx", "label"}),
    ("copa", {"premise", "choice1", "choice2", "question", "idx", "label"}),
    ("cb", {"premise", "hypothesis", "idx", "label"}),
])
def test_superglue_files_use_the_official_schema(task: str, fields: set[str]) -> None:
    for split in CLINIC_SPLITS:
        recs = _jsonl(DATA / "superglue" / task / f"{split}.jsonl")
        assert [r["idx"] for r in recs] == list(range(len(recs)))
        assert all(set(r) == fields and type(r["idx"]) is int for r in recs)
        labels = Counter(json.dumps(r["label"]) for r in recs)
        allowed = {"boolq": {"true", "false"}, "rte": {'"entailment"', '"not_entailment"'},
                   "copa": {"0", "1"},
                   "cb": {'"entailment"', '"contradiction"', '"neutral"'}}[task]
        assert set(labels) == allowed and max(labels.values()) <= 0.6 * len(recs)
        text = [v for r in recs for k, v in r.items() if k not in ("idx", "label")]
        assert all(type(v) is str and v.strip() for v in text)
        if task == "copa":
            assert {r["question"] for r in recs} == {"cause", "effect"}
        if task == "boolq":
            assert all(r["question"] == r["question"].lower() for r in recs)


def test_summarization_files_use_the_cnn_dailymail_schema() -> None:
    for split in CLINIC_SPLITS:
        for rec in _jsonl(DATA / "summarization" / f"{split}.jsonl"):
            assert set(rec) == {"article", "highlights", "id"}
            assert re.fullmatch(r"[0-9a-f]{40}", rec["id"])
            assert 60 <= len(rec["article"].split()) <= 160
            assert 2 <= len(rec["highlights"].split("\n")) <= 4


def test_the_lead_sentence_is_not_the_summary() -> None:
    recs = _jsonl(DATA / "summarization" / "test.jsonl")
    firsts = [r["article"].split(". ")[0] for r in recs]
    assert not any(f in r["highlights"] for f, r in zip(firsts, recs))


# ------------------------------------------------------------------ (e) public corpus
def test_public_corpus_has_a_million_words(corpus: str) -> None:
    train = (DATA / "public_corpus" / "train.txt").read_text(encoding="utf-8")
    assert len(train.split()) >= 1_000_000 and len(corpus.split()) >= 1_000_000
    assert "\r" not in corpus and "\n\n" not in corpus


def _sentences(text: str) -> set[str]:
    return {s.strip() for s in re.split(r"(?<=[.!?])\s+|\n", text) if len(s.split()) >= 3}


def test_public_text_shares_no_clinic_name_town_or_sentence(
        gen: ModuleType, corpus: str, clinic: dict[str, list[dict]]) -> None:
    import gen_clinic

    public = corpus + "".join(p.read_text(encoding="utf-8") for d in ("superglue", "summarization")
                              for p in (DATA / d).rglob("*.jsonl"))
    public_words = {w.lower() for w in re.findall(r"[A-Za-z][A-Za-z'-]*", public)}
    names = gen_clinic.FIRST_NAMES + gen_clinic.LAST_NAMES
    name_words = {w.lower() for name in names for w in re.findall(r"[A-Za-z'-]+", name)}
    assert sorted(name_words & public_words) == []
    assert [c for c in gen_clinic.CITIES if c.lower() in public.lower()] == []
    notes = set().union(*(_sentences(r["note"]) for recs in clinic.values() for r in recs))
    assert sorted(notes & _sentences(corpus)) == []


# ------------------------------------------------------------------ (f) disjoint splits
def test_no_split_overlaps_another(clinic: dict[str, list[dict]]) -> None:
    def disjoint(groups: list[list[str]]) -> None:
        for a, b in combinations(groups, 2):
            assert not set(a) & set(b)
        assert all(len(set(g)) == len(g) for g in groups)  # and no repeat within a split

    disjoint([[r["note"] for r in clinic[s]] for s in CLINIC_SPLITS])
    disjoint([[r["id"] for r in clinic[s]] for s in CLINIC_SPLITS])
    for task in ("boolq", "rte", "copa", "cb"):
        disjoint([[json.dumps({k: v for k, v in r.items() if k not in ("idx", "label")},
                              sort_keys=True)
                   for r in _jsonl(DATA / "superglue" / task / f"{s}.jsonl")]
                  for s in CLINIC_SPLITS])
    summ = [_jsonl(DATA / "summarization" / f"{s}.jsonl") for s in CLINIC_SPLITS]
    disjoint([[r["article"] for r in recs] for recs in summ])
    disjoint([[r["id"] for r in recs] for recs in summ])
    disjoint([(DATA / "public_corpus" / f).read_text(encoding="utf-8").splitlines()
              for f in CORPUS_FILES])


def test_total_committed_data_stays_small() -> None:
    assert sum(len(b) for b in _committed().values()) < 19_000_000


# ------------------------------------------------------------------ (g) public medical text
def test_medical_text_covers_the_clinic_vocabulary_but_no_record(gen: ModuleType) -> None:
    import gen_clinic

    text = "".join((DATA / "public_corpus" / f"medical_{s}.txt").read_text(encoding="utf-8")
                   for s in ("train", "validation"))
    lower = text.lower()
    conditions = [c for conds in gen_clinic.SPECIALTIES.values() for c in conds]
    medicines = {m for conds in gen_clinic.SPECIALTIES.values() for meds, *_ in conds.values()
                 for m in meds}
    assert all(c in lower for c in conditions)
    assert all(m in lower for m in medicines)
    # Nothing shaped like a record: no record-number or birth-date field, no note header.
    assert not re.search(r"\b(MRN|DOB|date of birth|Hospital no|unit number|Patient:|Child:)",
                         text)


def test_the_tokenizer_trainer_reads_train_txt_only() -> None:
    # The medical text came after the tokenizer: it must not change it (tokenizer.json stays
    # byte-identical; tests/test_pretrained.py retrains it and compares the bytes).
    spec = importlib.util.spec_from_file_location("train_tok", ROOT / "scripts" / "train_tokenizer.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.CORPUS == DATA / "public_corpus" / "train.txt"
