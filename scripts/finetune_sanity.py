"""Fine-tuning sanity for the shipped tiny GLM: centralized fine-tuning on RTE and on the
summarization task, each scored next to its baseline, written into the model card.

    python scripts/finetune_sanity.py            # full runs, then the quick-mode runs the tests repeat

Writes ``finetune`` into ``flglm_kit/assets/tiny-glm/card.json`` and the "Fine-tuning sanity"
section of the card's README.md.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import re
import sys

import torch

from flglm_kit.finetune import SANITY_RUNS, finetune_sanity
from flglm_kit.pretrained import ASSETS_DIR


def main() -> None:
    torch.set_num_threads(2)
    results: dict[str, dict[str, object]] = {}
    for mode in ("full", "quick"):
        for task, sizes in SANITY_RUNS[mode].items():
            r = finetune_sanity(task, **sizes, progress=True)
            results[f"{task}/{mode}"] = dataclasses.asdict(r)
            print(json.dumps(results[f"{task}/{mode}"]), flush=True)
    card_path = ASSETS_DIR / "card.json"
    card = json.loads(card_path.read_text())
    card["finetune"] = {"command": "python scripts/finetune_sanity.py", "runs": results,
                        "hardware": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"}
    card_path.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    rows = ["| task | mode | steps × batch | validation examples | metric | fine-tuned | baseline | seconds |",
            "|---|---|---|---|---|---|---|---|"]
    for key, r in results.items():
        task, mode = key.split("/")
        batch = SANITY_RUNS[mode][task].get("batch_size", 16)
        rows.append(f"| {task} | {mode} | {r['steps']} × {batch} | {r['eval_size']} | {r['metric']} | "
                    f"**{r['score']:.3f}** | {r['baseline']:.3f} ({r['baseline_name']}) | {r['seconds']:.0f} |")
    section = ("## Fine-tuning sanity\n\n"
               "Centralized fine-tuning of all weights (AdamW, lr 1e-3) from this checkpoint, by\n"
               "`python scripts/finetune_sanity.py` (`flglm_kit.finetune.finetune_sanity`). RTE is scored by\n"
               "answer log-likelihood (accuracy) against always answering the majority class; the\n"
               "summarization task by ROUGE-L F1 of greedy summaries against the article's first sentence\n"
               "(lead-1). The first validation examples are scored. `tests/test_finetune.py` repeats the\n"
               "quick runs and asserts a band around them. Seconds: training plus scoring, on a 2-core CPU.\n\n"
               + "\n".join(rows) + "\n")
    readme = ASSETS_DIR / "README.md"
    text = readme.read_text()
    text = re.sub(r"## Fine-tuning sanity\n.*?(?=\n## )", section, text, flags=re.S)
    readme.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
