"""Data for the kit: task loaders, causal-LM batches and federated partitioners.

- :mod:`~flglm_kit.data.tasks`: :class:`Example` and one loader per task family, each returning
  prompts and answers ready for a causal LM (notebooks 01 and 06).
- :mod:`~flglm_kit.data.clinic`: the private clinic notes, with entity spans (notebook 01).
- :mod:`~flglm_kit.data.collate`: ``<bos> prompt <sep> answer <eos>`` encoding, padding and a
  seeded ``DataLoader`` (notebook 01).
- :mod:`~flglm_kit.data.partition`: IID, Dirichlet label-skew and by-site splits over
  ``num_clients`` clients (notebooks 05 and 06).
- :mod:`~flglm_kit.data.records`: where the files are and :class:`DataError`.

Everything runs offline on the shipped synthetic datasets; ``source="hf"`` loads the real
SuperGLUE and CNN/DailyMail through the optional ``datasets`` package.

Two non-IID tasks leave room between centralized and local-only fine-tuning (measured by
``scripts/federated_comparison.py``): clinic triage split by site
(``load_clinic_notes(split, task="triage")``, clients from :func:`site_partition` on
``ex.meta["site"]``) and the three-class CB split by label (``load_superglue("cb", split)``,
clients from :func:`dirichlet_partition` on ``ex.label``).

Example:
    >>> from flglm_kit.data import load_clinic_notes, site_partition
    >>> notes = load_clinic_notes("validation")
    >>> [len(part) for part in site_partition([ex.meta["site"] for ex in notes])]
    [100, 100, 175, 125]
"""

from flglm_kit.data.clinic import (
    CLINICAL_ENTITY_TYPES, IDENTIFIER_ENTITY_TYPES, clinic_examples, load_clinic_notes,
)
from flglm_kit.data.collate import (
    ANSWER_PREFIX, IGNORE_INDEX, SpecialIds, TaskDataset, collate, decode_answer, encode_example,
    encode_prompt, make_loader, special_ids, toy_tokenizer,
)
from flglm_kit.data.partition import dirichlet_partition, iid_partition, label_skew, site_partition
from flglm_kit.data.records import DATA_ENV, DataError, data_root
from flglm_kit.data.tasks import (
    SUPERGLUE_TASKS, TRIAGE_LABELS, Example, classification_choices, load_corpus,
    load_summarization, load_superglue, summarization_examples, superglue_examples,
)

__all__ = [
    "ANSWER_PREFIX", "CLINICAL_ENTITY_TYPES", "DATA_ENV", "DataError", "Example",
    "IDENTIFIER_ENTITY_TYPES", "IGNORE_INDEX", "SUPERGLUE_TASKS", "SpecialIds", "TRIAGE_LABELS",
    "TaskDataset", "classification_choices", "clinic_examples", "collate", "data_root",
    "decode_answer", "dirichlet_partition", "encode_example", "encode_prompt", "iid_partition",
    "label_skew", "load_clinic_notes", "load_corpus", "load_summarization", "load_superglue",
    "make_loader", "site_partition", "special_ids", "summarization_examples", "superglue_examples",
    "toy_tokenizer",
]
