"""Tests for flglm_kit.data: loaders, official-schema files, clear errors, and causal-LM batches.

Prepare / Execute / Assert. Nothing is downloaded: the Hugging Face path is exercised with
``datasets.load_dataset("json", ...)`` on files written in tmp_path.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import PreTrainedTokenizerFast

from flglm_kit.data import (
    IGNORE_INDEX, DataError, Example, TaskDataset, classification_choices, clinic_examples,
    collate, data_root, decode_answer, dirichlet_partition, encode_example, encode_prompt,
    label_skew, load_clinic_notes,
    load_corpus, load_summarization, load_superglue, make_loader, special_ids,
    summarization_examples, superglue_examples, toy_tokenizer,
)
from flglm_kit.data import tasks
from flglm_kit.split import Spans

ROOT = Path(__file__).resolve().parents[1]
CUES = {"boolq": "\nAnswer:", "rte": "\nAnswer:", "copa": "\nAnswer:", "cb": "\nAnswer:"}


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def hf_datasets() -> Any:
    datasets = pytest.importorskip("datasets")
    if not hasattr(datasets, "load_dataset"):  # the repo's datasets/ folder, not the package
        pytest.skip("Hugging Face datasets is not installed")
    return datasets


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE like the shipped one (no prefix space, specials 0-3), trained in memory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    texts = [ex.prompt + " " + ex.answer for ex in load_clinic_notes("validation")[:60]]
    texts += [ex.prompt + " " + ex.answer for ex in load_superglue("rte", "validation")[:60]]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=500,
                                  special_tokens=["<pad>", "<bos>", "<eos>", "<sep>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    backend.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", bos_token="<bos>",
                                   eos_token="<eos>", sep_token="<sep>",
                                   extra_special_tokens=["<sep>"])


# --- shipped files -----------------------------------------------------------------------------

@pytest.mark.parametrize("task,split,n", [("boolq", "train", 2000), ("rte", "validation", 300),
                                          ("copa", "test", 300), ("cb", "train", 3000)])
def test_superglue_shipped_files_load_with_answers_among_choices(task, split, n):
    # Execute
    examples = load_superglue(task, split)
    # Assert: every example formatted, answer a candidate, labels balanced as the datasheet says.
    assert len(examples) == n
    for ex in examples:
        assert ex.prompt.endswith(CUES[task]) and ex.meta["task"] == task
        assert ex.answer in classification_choices(task, ex)
    labels = [ex.label for ex in examples]
    assert sorted(set(map(repr, labels))) == sorted({repr(x) for x in labels[:50]})
    assert labels.count(labels[0]) == n // len(set(map(repr, labels)))


def test_cb_has_three_classes_and_a_dirichlet_split_skews_them():
    # Prepare: the hard three-class task the federated comparison splits by label.
    train = load_superglue("cb", "train")
    labels = [ex.label for ex in train]
    # Execute
    parts = dirichlet_partition(labels, 4, alpha=0.3, seed=0, min_size=32)
    # Assert: CB's schema (label == answer, three choices in the hub's order) and a real skew.
    assert classification_choices("cb") == ["entailment", "contradiction", "neutral"]
    assert all(ex.answer == ex.label and "\nEntailment, contradiction or neutral?\n" in ex.prompt
               for ex in train)
    assert sorted(i for part in parts for i in part) == list(range(len(train)))
    assert label_skew(parts, labels) > 0.2  # IID would be ~0.01
    hub = superglue_examples("cb", [{"premise": "A.", "hypothesis": "B.", "idx": 0, "label": 1}])
    assert hub[0].answer == "contradiction"  # ClassLabel id 1 of aps/super_glue's cb


def test_superglue_answers_follow_each_schema():
    boolq = load_superglue("boolq", "validation")[0]
    rte = load_superglue("rte", "validation")
    copa = load_superglue("copa", "validation")[0]
    # BoolQ: JSON bool -> yes/no; the official question has no '?', the prompt adds one.
    assert boolq.answer == ("yes" if boolq.label else "no") and "?\nAnswer:" in boolq.prompt
    # RTE: labels keep the official spelling, answers are words.
    assert {(ex.label, ex.answer) for ex in rte} == {("entailment", "entailment"),
                                                     ("not_entailment", "not entailment")}
    # COPA: the answer is the chosen option's text and the prompt asks the record's question.
    assert copa.answer == copa.meta["choices"][copa.label]
    assert f"Which option is the {copa.meta['question']}?" in copa.prompt


def test_summarization_keeps_highlight_lines():
    examples = load_summarization("validation")
    assert len(examples) == 200
    ex = examples[0]
    raw = json.loads((data_root() / "summarization" / "validation.jsonl").open().readline())
    assert ex.answer == raw["highlights"] and "\n" in ex.answer
    assert ex.prompt == f"Article: {raw['article']}\nHighlights:" and ex.meta["id"] == raw["id"]


def test_clinic_notes_carry_entities_that_map_into_the_prompt():
    examples = load_clinic_notes("validation", task="summary")
    assert len(examples) == 500 and all(ex.label is None for ex in examples)
    for ex in examples[:50]:
        start = ex.meta["note_start"]
        for ent in ex.meta["entities"]:
            assert ex.prompt[start + ent["start"]:start + ent["end"]] == ent["text"]


def test_clinic_triage_and_site_filter():
    triage = load_clinic_notes("test", task="triage", sites=["bramblewood", "corvale"])
    assert len(triage) == 200 and {ex.meta["site"] for ex in triage} == {"bramblewood", "corvale"}
    assert all(ex.answer == ex.label == ex.meta["triage"] for ex in triage)
    assert classification_choices("triage") == ["routine", "urgent", "emergency"]
    with pytest.raises(ValueError, match=r"unknown site\(s\) \['mars'\]"):
        load_clinic_notes("test", sites="mars")


def test_corpus_documents():
    docs = load_corpus("validation")
    assert len(docs) == 224 and all(doc.strip() == doc and doc for doc in docs)
    with pytest.raises(ValueError, match="split must be one of"):
        load_corpus("test")


def test_flglm_data_env_points_at_another_folder(tmp_path, monkeypatch):
    # Prepare: a datasets folder with one small file.
    write_jsonl(tmp_path / "superglue" / "copa" / "train.jsonl", [
        {"premise": "It rained.", "choice1": "I stayed in.", "choice2": "I sunbathed.",
         "question": "effect", "idx": 0, "label": 0}])
    monkeypatch.setenv("FLGLM_DATA", str(tmp_path))
    # Execute / Assert
    assert [ex.answer for ex in load_superglue("copa")] == ["I stayed in."]
    monkeypatch.setenv("FLGLM_DATA", str(tmp_path / "missing"))
    with pytest.raises(DataError, match="set FLGLM_DATA"):
        load_superglue("copa")


# --- official schema and clear errors -----------------------------------------------------------

def test_official_layout_val_jsonl_and_unlabelled_test(tmp_path):
    # Prepare: the official zip's layout (RTE/val.jsonl) and an official, unlabelled test file.
    row = {"premise": "A dog ran.", "hypothesis": "An animal ran.", "idx": 0}
    write_jsonl(tmp_path / "RTE" / "val.jsonl", [{**row, "label": "entailment"}])
    write_jsonl(tmp_path / "RTE" / "test.jsonl", [row])
    write_jsonl(tmp_path / "BoolQ" / "test.jsonl", [{"question": "is it", "passage": "It is.",
                                                      "idx": 3}])
    # Execute
    val = load_superglue("rte", "val", path=tmp_path)
    test = load_superglue("rte", "test", path=tmp_path)
    boolq = load_superglue("boolq", "test", path=tmp_path / "BoolQ" / "test.jsonl")
    # Assert
    assert (val[0].answer, val[0].label) == ("entailment", "entailment")
    assert (test[0].answer, test[0].label, boolq[0].label) == ("", None, None)
    with pytest.raises(ValueError, match="has no answer"):
        encode_example(test[0], toy_tokenizer(["A dog ran."]), max_len=32)


@pytest.mark.parametrize("line,message", [
    ({"premise": "A.", "hypothesis": "B.", "label": "maybe"},
     "line 2: field 'label' must be 'entailment' or 'not_entailment', got 'maybe'"),
    ({"premise": "A.", "label": "entailment"}, "line 2: missing field 'hypothesis'"),
    ({"premise": "", "hypothesis": "B.", "label": "entailment"},
     "line 2: field 'premise' must be a non-empty string, got ''"),
    ('{"premise": "A.",', r"line 2: not valid JSON"),
    ("[1, 2]", "line 2: expected a JSON object, got list"),
])
def test_malformed_line_names_file_line_and_field(tmp_path, line, message):
    good = {"premise": "A.", "hypothesis": "B.", "label": "entailment"}
    file = write_jsonl(tmp_path / "train.jsonl", [good, line])
    with pytest.raises(DataError) as err:
        load_superglue("rte", path=file)
    assert str(err.value).startswith(f"{file} {message}")


def test_invalid_utf8_names_file_line_byte_and_fix(tmp_path):
    # Prepare: line 2 holds a Latin-1 'é' (one byte 0xe9), as a spreadsheet export would.
    good = json.dumps({"premise": "A.", "hypothesis": "B.", "label": "entailment"})
    file = tmp_path / "train.jsonl"
    file.write_bytes(good.encode() + b'\n{"premise": "caf\xe9", "hypothesis": "B.", "label": 1}\n')
    # Execute / Assert: a DataError, not a bare UnicodeDecodeError from deep inside the reader.
    with pytest.raises(DataError) as err:
        load_superglue("rte", path=file)
    offset = len(good) + 1 + len('{"premise": "caf')
    assert str(err.value).startswith(
        f"{file} line 2: not valid UTF-8 at byte offset 16 of the line ({offset} of the file): "
        "byte(s) e9")
    assert "re-save the file as UTF-8" in str(err.value) and "iconv" in str(err.value)
    corpus = tmp_path / "validation.txt"
    corpus.write_bytes(b"One doc.\n\nTwo \xff docs.\n")
    with pytest.raises(DataError, match=r"validation.txt line 3: not valid UTF-8 at byte offset 4 "
                                        r"of the line \(14 of the file\): byte\(s\) ff"):
        load_corpus("validation", path=tmp_path)


def test_bad_labels_of_other_tasks(tmp_path):
    boolq = write_jsonl(tmp_path / "b.jsonl", [{"question": "q", "passage": "p", "label": "yes"}])
    copa = write_jsonl(tmp_path / "c.jsonl", [{"premise": "p", "choice1": "a", "choice2": "b",
                                                "question": "why", "label": 0}])
    with pytest.raises(DataError, match="line 1: field 'label' must be false or true, got 'yes'"):
        load_superglue("boolq", path=boolq)
    with pytest.raises(DataError, match="field 'question' must be 'cause' or 'effect', got 'why'"):
        load_superglue("copa", path=copa)


def test_missing_file_and_bad_entity_span(tmp_path):
    with pytest.raises(DataError, match=r"no such file: .*train\.jsonl"):
        load_summarization("train", path=tmp_path)
    rec = json.loads((data_root() / "clinic_notes" / "test.jsonl").open().readline())
    rec["entities"][0]["start"] += 1
    file = write_jsonl(tmp_path / "test.jsonl", [rec])
    with pytest.raises(DataError, match=r"line 1: field 'entities\[0\]' must match the note"):
        load_clinic_notes("test", path=tmp_path)
    assert file.exists()


def test_repository_files_are_named_relative_to_the_repo(tmp_path, monkeypatch):
    # Prepare: a copy inside the repository tree is shown as a repo-relative path.
    monkeypatch.setenv("FLGLM_DATA", str(ROOT / "datasets"))
    with pytest.raises(DataError) as err:
        load_superglue("rte", "train", path=ROOT / "datasets" / "superglue" / "nowhere")
    assert "datasets/superglue/nowhere/train.jsonl" in str(err.value)
    assert str(ROOT) not in str(err.value)


# --- Hugging Face datasets path (no download) ---------------------------------------------------

def test_hf_rows_go_through_the_same_conversion(tmp_path):
    datasets = hf_datasets()
    # Prepare: official rows, and hub-style rows (ClassLabel ids, -1 for hidden test labels).
    file = data_root() / "superglue" / "rte" / "validation.jsonl"
    hub = write_jsonl(tmp_path / "hub.jsonl", [
        {"premise": "A.", "hypothesis": "B.", "idx": 0, "label": 1},
        {"premise": "C.", "hypothesis": "D.", "idx": 1, "label": -1}])
    # Execute
    official = datasets.load_dataset("json", data_files=str(file), split="train",
                                     cache_dir=str(tmp_path / "cache"))
    hub_rows = datasets.load_dataset("json", data_files=str(hub), split="train",
                                     cache_dir=str(tmp_path / "cache"))
    # Assert
    assert superglue_examples("rte", official) == load_superglue("rte", "validation")
    converted = superglue_examples("rte", hub_rows, origin="hub")
    assert [(ex.label, ex.answer) for ex in converted] == [("not_entailment", "not entailment"),
                                                           (None, "")]
    assert classification_choices("rte")[1] == converted[0].answer  # choices[label id] = answer


def test_source_hf_calls_load_dataset_with_hub_names(tmp_path, monkeypatch):
    datasets = hf_datasets()
    real = datasets.load_dataset
    calls: list[tuple] = []
    files = {"copa": data_root() / "superglue" / "copa" / "test.jsonl",
             "3.0.0": data_root() / "summarization" / "test.jsonl"}

    def fake(name, config, *, split):  # stands in for the hub: the same rows, read locally
        calls.append((name, config, split))
        return real("json", data_files=str(files[config]), split="train",
                    cache_dir=str(tmp_path / "cache"))

    monkeypatch.setattr(datasets, "load_dataset", fake)
    copa = load_superglue("copa", "test", source="hf")
    news = load_summarization("test", source="hf")
    assert calls == [("aps/super_glue", "copa", "test"), ("abisee/cnn_dailymail", "3.0.0", "test")]
    assert copa == load_superglue("copa", "test")
    assert news == load_summarization("test")
    with pytest.raises(ValueError, match="path= reads local files"):
        load_superglue("copa", source="hf", path=tmp_path)


def test_in_memory_converters_name_rows():
    with pytest.raises(DataError, match="mine row 1: missing field 'article'"):
        summarization_examples([{"article": "x"}, {"highlights": "y"}], origin="mine")
    rec = {"id": "a", "site": "s", "specialty": "general", "note": "n", "summary": "m",
           "triage": "soon", "entities": []}
    with pytest.raises(DataError, match="'triage' must be 'routine', 'urgent' or 'emergency'"):
        clinic_examples([rec])
    with pytest.raises(ValueError, match="task must be one of"):
        load_superglue("multirc")
    with pytest.raises(ValueError, match="pass example="):
        classification_choices("copa")


# --- encoding and batches -----------------------------------------------------------------------

def test_special_ids_match_the_kit_convention(tokenizer):
    assert tuple(special_ids(tokenizer)) == (0, 1, 2, 3)
    no_sep = PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend_tokenizer,
                                     pad_token="<pad>", bos_token="<bos>", eos_token="<eos>")
    assert special_ids(no_sep).sep == 3  # found in the vocabulary
    bare = PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend_tokenizer)
    with pytest.raises(ValueError, match="no pad, bos, eos token"):
        special_ids(bare)


def test_encode_example_layout(tokenizer):
    ex = load_superglue("rte", "validation")[0]
    enc = encode_example(ex, tokenizer, max_len=512)
    ids, labels = enc["input_ids"], enc["labels"]
    prompt = tokenizer(ex.prompt, add_special_tokens=False)["input_ids"]
    answer = tokenizer(" " + ex.answer, add_special_tokens=False)["input_ids"]  # as in running text
    # <bos> prompt <sep> answer <eos>; loss only on the answer and <eos>.
    assert ids == [1, *prompt, 3, *answer, 2]
    assert labels == [IGNORE_INDEX] * (len(prompt) + 2) + [*answer, 2]
    assert decode_answer(ids[len(prompt) + 2:] + [5, 6], tokenizer) == ex.answer  # stops at <eos>


def test_truncation_keeps_the_answer_and_the_cue(tokenizer):
    ex = load_clinic_notes("validation", task="summary")[0]
    full = encode_example(ex, tokenizer, max_len=1024)
    n_answer = sum(label != IGNORE_INDEX for label in full["labels"])
    for max_len in (n_answer + 4, 40 + n_answer, 64 + n_answer):
        left = encode_example(ex, tokenizer, max_len=max_len)
        middle = encode_example(ex, tokenizer, max_len=max_len, truncation="middle")
        budget = max_len - n_answer - 2  # prompt tokens kept (bos, sep around them)
        for enc in (left, middle):
            assert len(enc["input_ids"]) == max_len
            assert enc["labels"][-n_answer:] == full["labels"][-n_answer:]  # answer whole
        # left: the prompt's end (cue) survives; middle: its start and its end survive.
        kept = full["input_ids"][-n_answer - budget - 1:-n_answer]  # last prompt tokens + <sep>
        assert left["input_ids"][:-n_answer] == [1] + kept
        head = (budget - 1) // 2
        assert middle["input_ids"][:1 + head] == full["input_ids"][:1 + head]
    assert tokenizer.decode(left["input_ids"][1:-n_answer - 1]).endswith("\nSummary:")
    with pytest.raises(ValueError, match="leaves no room for the prompt"):
        encode_example(ex, tokenizer, max_len=n_answer + 2)
    with pytest.raises(ValueError, match="truncation must be"):
        encode_example(ex, tokenizer, max_len=n_answer + 4, truncation="right")  # type: ignore


@pytest.mark.parametrize("max_len", [48, 160])
def test_where_a_candidate_answer_starts_does_not_depend_on_which_it_is(tokenizer, max_len):
    # Regression: truncated triage notes filled max_len exactly, so <sep> sat two positions earlier
    # before " emergency" (3 tokens) than before " routine" (1 token): the label leaked through it.
    from dataclasses import replace
    ex = load_clinic_notes("train", task="triage")[0]
    encoded = {c: encode_example(replace(ex, answer=c), tokenizer, max_len=max_len)
               for c in classification_choices("triage", ex)}
    lengths = {c: sum(label != IGNORE_INDEX for label in e["labels"]) for c, e in encoded.items()}
    assert len(set(lengths.values())) > 1  # the candidates differ in length...
    starts = {c: e["labels"].index(next(label for label in e["labels"] if label != IGNORE_INDEX))
              for c, e in encoded.items()}
    assert len(set(starts.values())) == 1  # ...yet each starts at the same position
    prompts = {tuple(e["input_ids"][:starts[c]]) for c, e in encoded.items()}
    assert len(prompts) == 1  # after the same prompt
    assert max(len(e["input_ids"]) for e in encoded.values()) == max_len  # the longest one fills max_len
    data = TaskDataset([replace(ex, answer=c) for c in encoded], tokenizer, max_len=max_len)
    assert [item["input_ids"] for item in data.items] == [e["input_ids"] for e in encoded.values()]
    # An example without candidates (a summary) reserves its own answer's length only: a cut one fills max_len.
    summary = load_clinic_notes("train", task="summary")[0]
    n_answer = len(tokenizer(" " + summary.answer, add_special_tokens=False)["input_ids"]) + 1  # and <eos>
    assert len(encode_example(summary, tokenizer, max_len=n_answer + max_len)["input_ids"]) == n_answer + max_len


def test_encode_prompt_for_generation(tokenizer):
    ex = load_superglue("boolq", "test")[0]
    ids = encode_prompt(ex, tokenizer, max_len=16)["input_ids"]
    assert len(ids) == 16 and ids[0] == 1 and ids[-1] == 3
    assert tokenizer.decode(ids[1:-1]).endswith("\nAnswer:")


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_collate_pads_on_the_chosen_side(tokenizer, padding_side):
    items = [encode_example(Example("a b c d", "yes"), tokenizer, max_len=32),
             encode_example(Example("a", "no"), tokenizer, max_len=32)]
    out = collate(items, pad_id=0, padding_side=padding_side)
    lengths = [len(item["input_ids"]) for item in items]
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        k: (2, max(lengths)) for k in ("input_ids", "attention_mask", "labels")}
    assert out["attention_mask"].sum(1).tolist() == lengths
    pad = out["attention_mask"] == 0
    assert bool((out["input_ids"][pad] == 0).all()) and bool((out["labels"][pad] == -100).all())
    real = out["input_ids"][1][out["attention_mask"][1] == 1].tolist()
    assert real == items[1]["input_ids"]
    spans = Spans.from_attention_mask(out["attention_mask"])  # one contiguous span per row
    assert spans.lengths.tolist() == lengths
    assert (spans.starts.tolist()[1] == 0) == (padding_side == "right")
    with pytest.raises(ValueError, match="padding_side"):
        collate(items, pad_id=0, padding_side="top")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty batch"):
        collate([], pad_id=0)


def test_collate_prompt_only_items_have_no_labels(tokenizer):
    items = [encode_prompt(Example("a b", ""), tokenizer, max_len=8),
             encode_prompt(Example("a", ""), tokenizer, max_len=8)]
    out = collate(items, pad_id=0, padding_side="left")
    assert set(out) == {"input_ids", "attention_mask"}
    assert out["input_ids"][:, -1].tolist() == [3, 3]  # left padding: every row ends in <sep>


def test_task_dataset_matches_encode_example(tokenizer):
    examples = load_clinic_notes("validation", task="triage")[:40]
    dataset = TaskDataset(examples, tokenizer, max_len=64)
    assert len(dataset) == 40 and "TaskDataset(40 examples" in repr(dataset)
    assert all(dataset[i] == encode_example(ex, tokenizer, max_len=64)
               for i, ex in enumerate(examples))


def test_make_loader_is_seeded_and_leaves_global_rng_alone(tokenizer):
    examples = load_superglue("copa", "validation")[:24]

    def order(seed: int) -> list[list[int]]:
        loader = make_loader(examples, tokenizer, batch_size=8, max_len=64, shuffle=True, seed=seed)
        return [batch["input_ids"][:, 1:6].tolist() for batch in loader]

    state = torch.random.get_rng_state()
    assert order(0) == order(0) and order(0) != order(1)
    assert torch.equal(state, torch.random.get_rng_state())
    batches = list(make_loader(examples, tokenizer, batch_size=10, max_len=64))
    assert [b["input_ids"].shape[0] for b in batches] == [10, 10, 4]


def test_batches_train_a_tiny_glm(tokenizer):
    from flglm_kit.models import tiny_model

    # A real causal LM takes the batch as is; the loss covers the answer tokens only.
    model = tiny_model("glm", seed=0, vocab_size=len(tokenizer))
    batch = next(iter(make_loader(load_clinic_notes("validation", task="triage")[:4], tokenizer,
                                  batch_size=4, max_len=96)))
    loss = model(**batch).loss
    assert torch.isfinite(loss)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    manual = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2),
                                               batch["labels"][:, 1:])
    assert torch.allclose(loss, manual, atol=1e-5)


def test_toy_tokenizer_and_missing_shipped_data(tmp_path, monkeypatch):
    tok = toy_tokenizer(["red green"])
    assert tok("red blue")["input_ids"] == [5, 4]  # 'blue' is unknown
    monkeypatch.setattr(tasks, "data_root", lambda: tmp_path)
    with pytest.raises(DataError, match="no such file"):
        load_superglue("rte")
    shutil.rmtree(tmp_path)


def test_ignore_index_has_one_definition():
    import inspect
    import sys

    import flglm_kit.losses

    collate_module = sys.modules["flglm_kit.data.collate"]
    assert "IGNORE_INDEX =" not in inspect.getsource(collate_module)  # imported, not redefined
    assert IGNORE_INDEX is flglm_kit.losses.IGNORE_INDEX == -100
