"""Data layer: every configured source becomes chat records in one DatasetDict, plus a report.

``load_datasets(cfg.data)`` returns ``(DatasetDict(train, validation, test), report)``. The
records follow the contract in :mod:`medft.data.records`; the report keeps, per source, a ledger
of input items and one of rows that must both add up (:mod:`medft.data.report`), and says what
group-aware splitting and the leakage check (questions and answers) did. Importing this
package stays cheap: the loaders and ``datasets`` are imported when used.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Any

from medft.data.clean import clean_source
from medft.data.mixture import apply_weights
from medft.data.records import unify_meta, with_system
from medft.data.report import DataReport, SourceReport
from medft.data.sources import SourceLoader, loader
from medft.data.splits import SPLITS, cap_records, carve, ensure_nonempty, resolve_leaks
from medft.runtime.errors import DataError

__all__ = ["SPLITS", "collect_records", "load_datasets", "to_dataset_dict"]


def _value(x: Any) -> str:
    """An enum member or a plain string, as its string value."""
    return str(x.value if hasattr(x, "value") else x)


def _kind(name: str, src: Any) -> str:
    from medft.config import SourceKind

    raw = src.get("kind")
    try:
        return SourceKind(_value(raw)).value
    except ValueError:
        choices = ", ".join(k.value for k in SourceKind)
        raise DataError(
            f"data.sources.{name}.kind={_value(raw)} is not a known source kind; use one of {choices}"
        ) from None


def fingerprint(splits: dict[str, list[dict]]) -> str:
    """A content hash of the final records, for the run manifest and cache keys."""
    digest = hashlib.sha256()
    for split in SPLITS:
        digest.update(split.encode())
        for record in splits[split]:
            digest.update(json.dumps(record, ensure_ascii=False, sort_keys=True).encode())
    return digest.hexdigest()


def seed_of(data_cfg: Any) -> int:
    return int(data_cfg.get("seed", 42))


def _load_source(name: str, src: Any, data_cfg: Any, report: DataReport, progress: bool) -> dict[str, list[dict]]:
    kind = _kind(name, src)
    source: SourceLoader = loader(kind)
    sreport = report.add_source(name, kind, src.get("path") or src.get("hub_id"))
    sreport.unit = source.unit
    seed = int(data_cfg.get("seed", 42))
    by_split = source.load(name, src, seed=seed, report=sreport, progress=progress)
    sreport.start_rows(sum(len(v) for v in by_split.values()))
    by_split = clean_source(
        by_split,
        sreport,
        max_chars=int(data_cfg.get("max_text_chars", 20000)),
        mask=bool(data_cfg.get("mask_personal_data", True)),
    )
    sreport.kept = sum(len(v) for v in by_split.values())
    sreport.check(float(data_cfg.get("max_skip_ratio", 0.05)))
    if not sreport.kept:
        raise DataError(
            f"data source '{name}' produced no records from {sreport.path} "
            f"(read {sreport.read} {sreport.unit}, skipped {sreport.skipped_total}); check data.sources.{name}.path"
        )
    system = src.get("system_prompt") or data_cfg.get("system_prompt")
    if system:
        by_split = {s: [with_system(r, system) for r in rs] for s, rs in by_split.items()}
    by_split, carved = carve(
        by_split,
        validation_ratio=float(data_cfg.get("validation_ratio", 0.1)),
        test_ratio=float(data_cfg.get("test_ratio", 0.1)),
        seed=seed,
        stratify=source.stratify,
        salt=name,
        group_by=source.group_by,
    )
    sreport.info.update(carved)
    limit = src.get("max_records")
    if limit is not None:
        before = by_split["train"]
        by_split["train"] = cap_records(before, int(limit), seed=seed, stratify=source.stratify, salt=name)
        _drop_missing(sreport, "max_records", before, by_split["train"])
        sreport.info["max_records"] = {"limit": int(limit), "dropped_from_train": len(before) - len(by_split["train"])}
    return by_split


def _drop_missing(sreport: SourceReport, reason: str, before: list[dict], after: list[dict]) -> None:
    """Count in the row ledger every record of ``before`` that ``after`` lacks."""
    if len(before) == len(after):
        return
    kept = {id(r) for r in after}
    for record in before:
        if id(record) not in kept:
            sreport.drop(reason, record["id"])


def _resolve_leaks(splits: dict[str, list[dict]], report: DataReport, allow: bool) -> None:
    """Drop leaked rows (counted per source), or fail in one line naming the first rule broken."""
    report.leakage, dropped = resolve_leaks(splits)
    for rule, record in dropped:
        report.sources[record["meta"]["source"]].drop(f"{rule}_in_another_split", record["id"])
    if allow:
        return
    for rule, why in (
        ("question", "evaluation would see training questions"),
        ("answer", "held-out loss would score answers training already holds"),
    ):
        count = report.leakage[f"{rule}s_in_several_splits"]
        if count:
            example = report.leakage["by_rule"][rule]["examples"][0]
            raise DataError(
                f"{count} {rule}s appear in more than one split (e.g. {example}); {why}: "
                "fix the input or set data.allow_leakage=true to keep each in one split"
            )


def _group_by(data_cfg: Any) -> dict[str, tuple[str, ...]]:
    """Each source's own group fields, by source name."""
    sources = data_cfg.get("sources") or {}
    return {str(n): loader(_kind(str(n), s)).group_by for n, s in sources.items()}


def collect_records(data_cfg: Any, *, progress: bool = True) -> tuple[dict[str, list[dict]], DataReport]:
    """Plain-Python records per split and the report; :func:`load_datasets` wraps this in Arrow."""
    report = DataReport(
        name=str(data_cfg.get("name")),
        settings={
            k: data_cfg.get(k) for k in ("seed", "validation_ratio", "test_ratio", "max_skip_ratio", "system_prompt")
        },
    )
    try:
        sources = data_cfg.get("sources") or {}
        if not sources:
            raise DataError("data.sources is empty: pick a data config, e.g. data=sample or data=aihub")
        per_source = {
            str(name): _load_source(str(name), src, data_cfg, report, progress) for name, src in sources.items()
        }
        before = {str(n): list(per_source[str(n)]["train"]) for n, s in sources.items() if s.get("weight") is not None}
        mixture = apply_weights(
            per_source, {str(n): s.get("weight") for n, s in sources.items()}, seed=seed_of(data_cfg)
        )
        if mixture:
            report.mixture = mixture
            for n in mixture:
                _drop_missing(report.sources[n], "mixture_weight", before[n], per_source[n]["train"])
        splits: dict[str, list[dict]] = {s: [] for s in SPLITS}
        for by_split in per_source.values():
            for split, records in by_split.items():
                splits[split].extend(records)
        counts = Counter(r["id"] for rs in splits.values() for r in rs)
        dup = next((i for i, n in counts.items() if n > 1), None)
        if dup is not None:
            raise DataError(f"record id {dup} occurs twice; give the data sources distinct names under data.sources")
        _resolve_leaks(splits, report, bool(data_cfg.get("allow_leakage", False)))
        report.rebalanced = ensure_nonempty(splits, _group_by(data_cfg))
        _count_splits(splits, report)
    except DataError as err:
        err.report = report.to_dict()  # lets `prepare` still write data_report.json
        raise
    report.meta_keys = unify_meta(r for rs in splits.values() for r in rs)
    report.fingerprint = fingerprint(splits)
    return splits, report


def _count_splits(splits: dict[str, list[dict]], report: DataReport) -> None:
    """Rows per split, overall and per source; each source's ledgers must then add up."""
    report.splits = {s: len(splits[s]) for s in SPLITS}
    per_source = {s: Counter(r["meta"]["source"] for r in splits[s]) for s in SPLITS}
    for name, sreport in report.sources.items():
        sreport.splits = {s: per_source[s][name] for s in SPLITS}
        sreport.kept = sum(sreport.splits.values())
        sreport.verify()


def to_dataset_dict(splits: dict[str, list[dict]], meta_keys: list[str]):
    """Arrow tables with one explicit schema, so an all-None meta column is still a string."""
    import datasets

    string = datasets.Value("string")
    features = datasets.Features(
        {
            "id": string,
            "messages": [{"role": string, "content": string}],
            "meta": {k: string for k in meta_keys},
        }
    )
    return datasets.DatasetDict(
        {
            split: datasets.Dataset.from_dict(
                {
                    "id": [r["id"] for r in splits[split]],
                    "messages": [r["messages"] for r in splits[split]],
                    "meta": [r["meta"] for r in splits[split]],
                },
                features=features,
                split=split,
            )
            for split in SPLITS
        }
    )


def load_datasets(data_cfg: Any, *, progress: bool = True) -> tuple[Any, dict]:
    """``(DatasetDict with train/validation/test, JSON-serialisable report)`` for ``cfg.data``."""
    splits, report = collect_records(data_cfg, progress=progress)
    return to_dataset_dict(splits, report.meta_keys), report.to_dict()
