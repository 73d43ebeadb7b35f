"""``eval``: one benchmark, its data and how it is scored (conf/eval/)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from omegaconf import MISSING

from medft.config.schema.enums import EvalKind
from medft.config.schema.fields import setting


@dataclass
class EvalConfig:
    """A benchmark: where its data comes from and how it is scored."""

    name: str = setting(MISSING, "The benchmark's name (its conf/eval/ file); names result files.")
    kind: EvalKind = setting(MISSING, "Which scorer runs: kormedmcqa, pubmedqa_ko or heldout (the run's test split).")
    hub_id: Optional[str] = setting(None, "Hugging Face Hub dataset id of the benchmark.")
    revision: Optional[str] = setting(None, "Hub revision of the dataset (a commit pins it).")
    path: Optional[str] = setting(
        None, "A local copy (file or folder); wins over hub_id. Offline without one is an error."
    )
    subsets: List[str] = setting(help="kormedmcqa: the configs scored (doctor, nurse, pharm, dentist).", factory=list)
    split: str = setting("test", "The dataset split scored.")
    fewshot: int = setting(0, "Solved examples shown before each question; >= 0.")
    limit: Optional[int] = setting(None, "Score at most this many items per subset (null: all).")
    max_new_tokens: int = setting(32, "Most tokens generated per answer; >= 1.")
    batch_size: int = setting(8, "Prompts generated together; >= 1.")
    use_chat_template: bool = setting(
        True,
        "true: prompts go through the model's chat template, the format a medft run was trained on (few-shot "
        "examples become earlier turns); false: the raw text prompt, as lm-evaluation-harness sends it by "
        "default. heldout always uses the template.",
    )
