"""Datasheets (README.md) for each dataset, with every count computed from the generated files."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

import gen_clinic
import gen_corpus
import gen_medical
import gen_summarization
import gen_superglue
from gen_common import from_jsonl, table

COMMAND = "python datasets/generate.py --seed {seed} --only {name}"
SYNTHETIC = (
    "**Synthetic.** Every line was written by `datasets/generate.py` from hand-written templates "
    "and word lists; nothing was copied from any corpus, web page or real record, and nothing "
    "was downloaded."
)


def _header(name: str, title: str, seed: int, what: str) -> str:
    return (
        f"# {name}: {title}\n\n{what}\n\n{SYNTHETIC}\n\n## How it was generated\n\n"
        f"```\n{COMMAND.format(seed=seed, name=name)}\n```\n\n"
        "This rebuilds every file of this folder byte for byte (this datasheet included); "
        "`tests/test_datasets.py` checks it. Standard library only (`random.Random` seeded per "
        "dataset, split and shard; JSON with sorted keys; UTF-8; `\\n` line endings).\n\n"
    )


def _words(text: str) -> int:
    return len(text.split())


def corpus(files: Mapping[str, str], seed: int) -> str:
    rows = []
    vocab: set[str] = set()
    for split in ("train", "validation"):
        text = files[f"{split}.txt"]
        docs = text.splitlines()
        vocab.update(w.strip(".,;:!?\"'()").lower() for w in text.split())
        rows.append((f"`{split}.txt`", f"{len(docs):,}", f"{_words(text):,}",
                     f"{len(text.encode()):,}"))
    for split in ("train", "validation"):
        text = files[f"medical_{split}.txt"]
        rows.append((f"`medical_{split}.txt`", f"{len(text.splitlines()):,}",
                     f"{_words(text):,}", f"{len(text.encode()):,}"))
    train_sents = re.split(r"(?<=[.!?]) ", files["train.txt"].replace("\n", " "))
    unique = len(set(train_sents)) / len(train_sents)
    return _header("public_corpus", "public text for tokenizers, pretraining and attackers", seed,
                   "Varied English prose in twelve domains: local news (civic, weather, business), "
                   "science explainers, recipes, travel, sports reports, everyday health advice, "
                   "how-to guides, short stories, nature diaries, product reviews, community "
                   "notices and local history. It plays the *public* data of the FL-GLM "
                   "setting: what a tokenizer and a pretrained model are built from, and what an "
                   "attacker may train an inverter on.") + (
        "Each document comes from one domain's grammar: sentence templates whose slots are filled "
        f"from word lists, with per-document facts kept fixed. {gen_corpus.NUM_SHARDS} shards of "
        f"{gen_corpus.DOCS_PER_SHARD} documents, each shard from its own RNG, so any shard can be "
        f"regenerated alone; document *i* of a shard is held out for validation when "
        f"*i* % {gen_corpus.VALIDATION_EVERY} == 0 (2 %).\n\n"
        "## Public medical text\n\n`medical_train.txt` and `medical_validation.txt` (from "
        "`gen_medical.py`) hold public text of the clinic notes' domain: medicine package "
        "leaflets, public-health notices and clinic \"what to expect\" pages. They name the "
        "conditions, medicines, symptoms, doses, vital signs and follow-up plans that the clinic "
        "notes use, in public language, and hold **no patient**: no name, birth date, record "
        "number, individual's age or clinic-note sentence; symptoms are listed without triage "
        "labels. One document in "
        f"{gen_medical.VALIDATION_EVERY} is held out. They are kept apart from `train.txt` "
        "because `scripts/train_tokenizer.py` reads `train.txt` only: the shipped tokenizer was "
        "trained before they existed and stays byte-identical. Continued pretraining "
        "(`scripts/pretrain_tiny_glm.py --continue-from`) mixes them in.\n\n"
        "## Format\n\nUTF-8 text, **one document per line**, no blank lines.\n\n## Size\n\n"
        + table(rows, ["file", "documents", "words (whitespace)", "bytes"])
        + f"\nVocabulary: {len(vocab):,} distinct lower-cased word forms (punctuation stripped). "
        f"Distinct sentences: {unique:.1%} of the training sentences.\n\n"
        "## Intended use\n\n- Train the kit's byte-level BPE tokenizer (`train.txt`) and "
        "pretrain its tiny GLM (`train.txt`, then `medical_train.txt` mixed in).\n"
        "- Auxiliary (public) text for reconstruction attacks, e.g. a learned inverter.\n\n"
        "## Privacy\n\nNo person is named: people appear only as roles (\"the head coach\", \"a "
        "retired teacher\"). Place names are made up (one may match a real place by chance) "
        "and disjoint from the clinic_notes towns; "
        "no first or last name of the clinic_notes lists and no clinic note sentence occurs here "
        "(checked by the tests). Health topics use everyday vocabulary (asthma, blood pressure) "
        "but no patient.\n\n## Limitations\n\nTemplated text: far less varied than real English, "
        "with many repeated sentences, a small vocabulary and no long-range coherence beyond a "
        "document's fixed facts. Good enough to give a tiny model English statistics; not a "
        "benchmark of language modelling. Science and health sentences are simplified and not "
        "expert-reviewed; do not treat them as advice.\n")


def clinic(files: Mapping[str, str], seed: int) -> str:
    recs = {s: from_jsonl(files[f"{s}.jsonl"]) for s in gen_clinic.SPLITS}
    train = recs["train"]
    split_rows = [(f"`{s}.jsonl`", f"{len(r):,}") for s, r in recs.items()]
    site_rows = []
    for site, (hospital, *_rest) in gen_clinic.SITES.items():
        mine = [r for r in train if r["site"] == site]
        spec = Counter(str(r["specialty"]) for r in mine)
        tri = Counter(str(r["triage"]) for r in mine)
        counts = " / ".join(str(sum(r["site"] == site for r in recs[s])) for s in recs)
        site_rows.append((f"`{site}`", hospital, counts,
                          ", ".join(f"{k} {v / len(mine):.0%}" for k, v in spec.most_common()),
                          ", ".join(f"{k} {tri[k] / len(mine):.0%}" for k in gen_clinic.TRIAGE)))
    ents = Counter(str(e["type"]) for r in train for e in r["entities"])
    ent_rows = [(f"`{t}`", "identifier" if t in gen_clinic.IDENTIFIER_TYPES else "clinical",
                 f"{ents[t]:,}") for t in gen_clinic.IDENTIFIER_TYPES + gen_clinic.CLINICAL_TYPES]
    note_words = [_words(str(r["note"])) for r in train]
    prior = prior_baseline(train, recs["test"])
    prior_rows = [(k, f"{v:.1%}") for k, v in prior.items()]
    return _header("clinic_notes", "the private data (synthetic patient notes at four sites)",
                   seed, "Templated clinic notes, as a hospital's record system would hold them, "
                   "for four invented hospitals. These are the *private* data of the kit's "
                   "federated clients: each site is one client, and its notes must never leave it "
                   "in the clear. Every record marks the identifying and clinical facts in its note "
                   "as character spans, so attacks can be scored on private-entity recovery.") + (
        "## Fields (one JSON object per line)\n\n"
        "- `id`: `<split>-<number>`.\n- `site`: the hospital (client) holding the record.\n"
        "- `specialty`: the clinic it was seen in (`cardiology`, `pediatrics`, `oncology`, "
        "`general`).\n- `note`: the note text (each site has its own template, date format and "
        "wording).\n- `summary`: one sentence (age, sex, condition, presenting symptom, "
        "medication action), the target for generation; it names no identifier.\n- `triage`: "
        "`routine` / `urgent` / `emergency`, the classification target.\n- `entities`: list of "
        "`{\"type\", \"text\", \"start\", \"end\"}`, with `note[start:end] == text` (asserted when "
        "generating and tested).\n\n## Size\n\n" + table(split_rows, ["file", "records"])
        + f"\nNote length: {min(note_words)}-{max(note_words)} words "
        f"(mean {sum(note_words) / len(note_words):.0f}).\n\n"
        "## Sites (non-IID by design)\n\nCounts are train / validation / test; mixes are over "
        "train.\n\n" + table(site_rows, ["site", "hospital", "records", "specialty mix",
                                           "triage mix"])
        + "\nThe sites differ in specialty mix (label and vocabulary skew), triage mix, size "
        "(quantity skew) and note template (feature skew).\n\n## Entity types (train)\n\n"
        + table(ent_rows, ["type", "kind", "spans"])
        + "\nA pediatric note also names the accompanying parent or grandparent (a second `name` "
        "span, sharing the child's last name).\n\n## Prior-only baseline\n\nAn attacker who "
        "knows only the templates guesses, at each position, the most common train token of the "
        "site (whitespace tokens; fitted on train, scored on test):\n\n"
        + table(prior_rows, ["recovered", "rate"])
        + "\nIdentifiers come from large pools, so the prior recovers template words but "
        "almost no whole identifier; the identifier tokens it does get are low-entropy parts "
        "such as a date's month or year or a child's age. With a subword tokenizer it also gets "
        "the fixed `555-01` part of every phone number. Conditions and medications come from "
        "short lists, so report identifier and clinical recovery separately, and always against "
        "this baseline.\n\n## How triage is decided\n\n"
        "The label is the more severe of (a) the presenting symptom's severity, fixed per "
        "phrase (each condition has routine, urgent and emergency phrases), and (b) the vital "
        "signs: emergency if SpO2 <= 89 %, heart rate >= 131, systolic BP <= 89 or temperature "
        ">= 40.0; urgent if SpO2 <= 93 %, heart rate >= 111, temperature >= 38.5 or systolic BP "
        ">= 180; else routine. The label is never written in the note; sometimes only the "
        "wording carries it, sometimes only the numbers. This rule is a teaching device, not a "
        "clinical triage system.\n\n## Privacy\n\nEvery person is invented. Names are a random "
        f"first name ({len(gen_clinic.FEMALE_NAMES)} female, {len(gen_clinic.MALE_NAMES)} male) "
        f"plus a random last name ({len(gen_clinic.LAST_NAMES)}), from lists used nowhere else in "
        "the kit; every full name (patients and accompanying relatives) occurs in one record "
        "only. Any match with a real person is "
        "coincidence. Phone numbers use the 555-0100 to 555-0199 range reserved for fiction, "
        "behind a random area code. Record numbers, dates and dates of birth are random. Towns "
        "and hospitals are made-up names (a town name may match a real place by chance).\n\n"
        "## Intended use\n\nThe private training data "
        "of federated split-learning demos (one site per client, or re-partitioned), "
        "triage classification and summary generation, and the target of the kit's "
        "reconstruction attacks. **Not** for any clinical purpose: the medicine is simplified "
        "and was not reviewed by a clinician.\n\n"
        f"## Limitations\n\nHighly templated ({len(gen_clinic.SITES)} sites, "
        f"{sum(map(len, gen_clinic.TEMPLATES.values()))} note templates); symptom, condition and "
        "medication pairings are plausible but simplified; "
        "one note per patient and no history across visits.\n")


def _tagged(rec: Mapping[str, Any]) -> list[tuple[str, int]]:
    """Whitespace tokens of a note, each with the index of the entity it touches (-1: none)."""
    note, out, pos = str(rec["note"]), [], 0
    for tok in note.split():
        start = note.index(tok, pos)
        pos = start + len(tok)
        hit = [i for i, e in enumerate(rec["entities"])
               if e["start"] < pos and start < e["end"]]
        out.append((tok, hit[0] if hit else -1))
    return out


def prior_baseline(train: list[dict], test: list[dict]) -> dict[str, float]:
    """Recovery rates of a prior-only guess: the majority train token per (site, position)."""
    votes: dict[tuple[object, int], Counter[str]] = {}
    for rec in train:
        for i, (tok, _) in enumerate(_tagged(rec)):
            votes.setdefault((rec["site"], i), Counter())[tok] += 1
    tokens: Counter[str] = Counter()
    right: Counter[str] = Counter()
    whole: Counter[str] = Counter()
    whole_right: Counter[str] = Counter()
    for rec in test:
        missed: set[int] = set()
        for i, (tok, ent) in enumerate(_tagged(rec)):
            best = votes.get((rec["site"], i), Counter()).most_common(1)
            ok = bool(best) and best[0][0] == tok
            kind = "template" if ent < 0 else (
                "identifier" if rec["entities"][ent]["type"] in gen_clinic.IDENTIFIER_TYPES
                else "clinical")
            tokens[kind] += 1
            right[kind] += ok
            if ent >= 0 and not ok:
                missed.add(ent)
        for i, e in enumerate(rec["entities"]):
            kind = "identifier" if e["type"] in gen_clinic.IDENTIFIER_TYPES else "clinical"
            whole[kind] += 1
            whole_right[kind] += i not in missed
    rates = {f"{k} tokens": right[k] / tokens[k] for k in ("template", "identifier", "clinical")}
    rates.update({f"whole {k} entities": whole_right[k] / whole[k]
                  for k in ("identifier", "clinical")})
    return rates


def superglue(files: Mapping[str, str], seed: int) -> str:
    rows = []
    for task in gen_superglue.TASKS:
        for split in gen_superglue.SPLITS:
            recs = from_jsonl(files[f"{task}/{split}.jsonl"])
            labels = Counter(json.dumps(r["label"]) for r in recs)
            rows.append((f"`{task}/{split}.jsonl`", len(recs),
                         ", ".join(f"{k}: {v}" for k, v in sorted(labels.items()))))
    return _header("superglue", "BoolQ, RTE, COPA and CB in SuperGLUE's schema", seed,
                   "Four small synthetic tasks that use the official SuperGLUE field names and "
                   "label conventions, so that one loader reads these files and the real "
                   "SuperGLUE ones, and a model of a few million parameters can learn them on a "
                   "CPU.") + (
        "## Schema (as in SuperGLUE)\n\n"
        "- `boolq/`: `question` (lower case, no question mark), `passage`, `idx` (int), `label` "
        "(JSON `true`/`false`).\n- `rte/`: `premise`, `hypothesis`, `idx`, `label` "
        "(`\"entailment\"` / `\"not_entailment\"`).\n- `copa/`: `premise`, `choice1`, `choice2`, "
        "`question` (`\"cause\"` / `\"effect\"`), `idx`, `label` (0 = choice1, 1 = choice2).\n"
        "- `cb/`: `premise`, `hypothesis`, `idx`, `label` (`\"entailment\"` / "
        "`\"contradiction\"` / `\"neutral\"`).\n\n"
        "Differences from the official files: the validation split is `validation.jsonl` (the "
        "official name is `val.jsonl`), and our test files **keep their labels** (the official "
        "test labels are hidden).\n\n## Size and label balance\n\n"
        + table(rows, ["file", "examples", "labels"])
        + "\n## What makes them learnable but not trivial\n\n"
        "- **BoolQ**: the passage states facts about two invented towns; the question asks "
        "about one of them, and a false question often uses the *other* town's value, so "
        "matching words is not enough: the model must bind each fact to its town.\n"
        "- **RTE**: the premise holds two events. Entailed hypotheses drop details, generalise "
        "(\"a spaniel\" to \"a dog\"), use the passive or state the place; non-entailed ones "
        "change one detail (place, day, verb, object), negate, or make a general premise "
        "specific. Both classes overlap heavily in words with the premise.\n"
        f"- **COPA**: {len(gen_superglue.SCHEMAS)} everyday cause-event-effect schemas with "
        "varied subjects; half the time the wrong choice is the *other side* of the same event "
        "(the effect when the cause is asked), so the model must use the `question` field.\n"
        "- **CB** (CommitmentBank-shaped, the hard one, with headroom for comparing "
        "centralized, federated and local-only training): three balanced classes. Half the "
        "premises report a speaker's claim with one of "
        f"{sum(len(v) for v in gen_superglue.COMMITMENT.values())} verbs that make the clause "
        "true (\"knew that\"), false (\"pretended that\") or leave it open (\"hoped that\"), and the "
        "hypothesis is the clause or its negation, so the label depends on the verb's class and "
        "the polarity together, with a distractor claim by another speaker; the other half state "
        "two or three events and the hypothesis follows from one, contradicts it (place, day, "
        "negation) or goes beyond it (a reason, another person, a day or a specific kind the "
        "premise does not give). No label noise. Train 3000, test 600 (for Dirichlet label "
        "splits over several clients and tight pooled scores).\n\n"
        "No example appears twice, within or across splits. Place names come from the "
        "public_corpus list; no person is named.\n\n## Intended use\n\nTeaching and quick "
        "experiments on federated fine-tuning with SuperGLUE-shaped data, offline. Scores on "
        "these files say nothing about real SuperGLUE performance; do not report them as "
        "SuperGLUE results.\n\n## Limitations\n\nSmall closed vocabularies and few templates: "
        "test examples are new combinations of patterns seen in training, not new patterns.\n")


def _unigram_f1(a: str, b: str) -> float:
    ca, cb = Counter(a.lower().split()), Counter(b.lower().split())
    overlap = sum((ca & cb).values())
    if not overlap:
        return 0.0
    p, r = overlap / sum(ca.values()), overlap / sum(cb.values())
    return 2 * p * r / (p + r)


def summarization(files: Mapping[str, str], seed: int) -> str:
    rows = []
    test = from_jsonl(files["test.jsonl"])
    for split in gen_summarization.SPLITS:
        recs = from_jsonl(files[f"{split}.jsonl"])
        w = [_words(str(r["article"])) for r in recs]
        h = [_words(str(r["highlights"])) for r in recs]
        rows.append((f"`{split}.jsonl`", len(recs), f"{min(w)}-{max(w)} (mean {sum(w) / len(w):.0f})",
                     f"{sum(h) / len(h):.0f}"))
    lead = sum(_unigram_f1(str(r["article"]).split(". ")[0], str(r["highlights"]))
               for r in test) / len(test)
    return _header("summarization", "short news articles in the CNN/DailyMail schema", seed,
                   "Short synthetic local-news articles (council decisions, business, sport, "
                   "weather, sea rescues) with reference highlights, using the field names of "
                   "CNN/DailyMail (version 3.0.0 on the Hugging Face hub), so the same loader "
                   "reads both.") + (
        "## Fields\n\n- `article`: the text.\n- `highlights`: 2-3 summary sentences separated "
        "by `\\n`, as in CNN/DailyMail.\n- `id`: SHA-1 hex digest of the article text.\n\n"
        "## Size\n\n" + table(rows, ["file", "articles", "article words", "highlight words (mean)"])
        + "\n## How the highlights relate to the article\n\nEach article opens with a "
        "background sentence that holds none of the key facts, then gives its key facts in a "
        "random order among quotes, filler and distractor numbers (e.g. another town's costs). "
        "The highlights restate the key facts in a fixed, compressed form. So the lead-sentence "
        f"baseline is weak (mean unigram F1 of the first sentence against the highlights on "
        f"test: {lead:.2f}) and a model has to learn which facts to pick.\n\n## Intended use\n\n"
        "Offline teaching and quick experiments on (federated) fine-tuning for generation. "
        "Scores here are not comparable to CNN/DailyMail results.\n\n## Privacy\n\nNo person is "
        "named (roles only); places are invented.\n\n## Limitations\n\nFive story types with "
        "fixed fact patterns; far easier and more repetitive than real news.\n")


DATASHEETS = {"public_corpus": corpus, "clinic_notes": clinic, "superglue": superglue,
              "summarization": summarization}
