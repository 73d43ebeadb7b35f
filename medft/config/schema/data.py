"""``data``: the sources of a training set, how they are cleaned, mixed and split (conf/data/)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

from omegaconf import MISSING

from medft.config.schema.enums import Pairing, SourceKind
from medft.config.schema.fields import setting


@dataclass
class SourceConfig:
    """One data source. Fields that do not apply to a source's kind are ignored."""

    kind: SourceKind = setting(MISSING, "Which reader parses this source.")
    path: Optional[str] = setting(None, "A local file or folder with the source's data; wins over hub_id.")
    hub_id: Optional[str] = setting(None, "Hugging Face Hub dataset id, read when path is not set.")
    revision: Optional[str] = setting(None, "Hub revision of the dataset (a commit pins it).")
    pairing: Pairing = setting(
        Pairing.first,
        "aihub: questions and answers share no id, so they are paired inside each "
        "category/disease/intention folder: first (each question with the folder's first answer), random (with one "
        "answer drawn by data.seed), or all (with up to pairing_cap answers, one row each).",
    )
    pairing_cap: int = setting(3, "aihub with pairing=all: most answers paired with one question.")
    max_records: Optional[int] = setting(None, "Keep at most this many training records from this source (null: all).")
    weight: Optional[float] = setting(
        None,
        "Mixtures: this source's share of the training rows relative to the other sources' weights, "
        "sampled without replacement (null: all of its rows, unweighted).",
    )
    system_prompt: Optional[str] = setting(None, "System prompt of this source's rows (null: data.system_prompt).")
    templates: Optional[str] = setting(
        None, "hira_csv: YAML of question/answer templates per table (null: the shipped ones)."
    )
    phrasings: int = setting(2, "hira_csv: questions generated per table row and measure.")
    encoding: Optional[str] = setting(
        None, "Text encoding of CSV input; null detects utf-8-sig, CP949, EUC-KR in that order."
    )


@dataclass
class DataConfig:
    name: str = setting(MISSING, "The data config's name (its conf/data/ file); names run folders.")
    sources: Dict[str, SourceConfig] = setting(
        help="The sources by name (data.sources.<name>.<key>); several make a mixture.", factory=dict
    )
    system_prompt: Optional[str] = setting(None, "System prompt of every row whose source sets none (null: none).")
    validation_ratio: float = setting(
        0.1, "Fraction of training carved out for validation when a source has no validation split; in [0, 0.5)."
    )
    test_ratio: float = setting(
        0.1, "Fraction of training carved out for testing when a source has no test split; in [0, 0.5)."
    )
    seed: int = setting(42, "Seed of splitting, pairing and mixture sampling.")
    max_skip_ratio: float = setting(
        0.05, "Fail the run when the share of skipped records of any source (skipped/read) exceeds this."
    )
    allow_leakage: bool = setting(
        False,
        "The same normalised question or answer in two splits fails the run unless this is true "
        "(then it is kept in one split, dropped from the others, and counted).",
    )
    contamination_benchmarks: List[str] = setting(
        help="Benchmarks (conf/eval/ names) whose questions the training data must not hold; checked together "
        "with train.eval_benchmarks by train and prepare.",
        factory=list,
    )
    allow_contamination: bool = setting(
        False,
        "A benchmark question found in the train or validation split fails the run unless this is true "
        "(then it is only reported in data_report.json).",
    )
    max_text_chars: int = setting(20000, "Texts longer than this many characters are skipped (counted by reason).")
    mask_personal_data: bool = setting(
        True, "Mask resident registration numbers, phone numbers and e-mail addresses in every text."
    )
    cache_dir: Optional[str] = setting(
        None, "Where prepared datasets are cached (null: $MEDFT_CACHE/prepared, else ~/.cache/medft/prepared)."
    )
