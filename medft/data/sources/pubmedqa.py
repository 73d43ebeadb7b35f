"""PubMedQA-Ko (``ChuGyouk/PubMedQA-test-Ko``) as chat records.

The hub copy has a single ``test`` split, so every record comes back under ``test`` and the
caller carves train/validation/test from it explicitly (the report says ``carved_from``).
Column names follow the original ``ori_pqal.json``: upper-case QUESTION, CONTEXTS,
LONG_ANSWER plus lower-case final_decision.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from medft.data.records import RecordError, clean_text, make_record
from medft.data.report import SourceReport
from medft.runtime.errors import DataError

REQUIRED = ("QUESTION", "CONTEXTS", "LONG_ANSWER", "final_decision")
DECISIONS = ("yes", "no", "maybe")
STRATIFY = ("final_decision",)
UNIT = "records"
_PMID_KEYS = ("PMID", "pmid", "pubid", "PUBID")


def format_user(question: str, contexts: Iterable[str] | str) -> str:
    """The user turn: the question first, then the abstract sentences it must rest on."""
    if isinstance(contexts, str):
        contexts = [contexts]
    lines = [clean_text(c) for c in contexts or []]
    lines = [c for c in lines if c]
    question = clean_text(question)
    if not lines:
        return f"질문: {question}"
    return f"질문: {question}\n\n근거:\n" + "\n".join(lines)


def question_of(user: str) -> str:
    """The question back from a user turn built by :func:`format_user`."""
    return user.removeprefix("질문: ").split("\n\n근거:\n", 1)[0]


def _missing(columns: Iterable[str], where: str) -> None:
    missing = [c for c in REQUIRED if c not in set(columns)]
    if missing:
        raise DataError(
            f"{where} lacks required column(s) {', '.join(missing)}; PubMedQA-Ko records need {', '.join(REQUIRED)}"
        )


def read_local(path: Path, key: str) -> list[tuple[str | None, dict]]:
    """(pmid or None, record) from a JSON list of records or a dict keyed by PMID."""
    if not path.is_file():
        raise DataError(
            f"{key}={path} is not a file; point it at a PubMedQA-Ko JSON file or set it to null to use the hub copy"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(
            f"{key}={path} is not valid UTF-8 JSON ({type(err).__name__}: {err}); fix or re-download the file"
        ) from None
    if isinstance(data, dict) and data and all(isinstance(v, dict) for v in data.values()):
        items = [(str(k), v) for k, v in data.items()]
    elif isinstance(data, list):
        items = [(None, v) for v in data]
    else:
        raise DataError(f"{key}={path} must hold a JSON list of records or an object keyed by PMID")
    _missing({c for _, v in items if isinstance(v, dict) for c in v}, str(path))
    return items


def read_hub(hub_id: str, revision: str | None, key: str) -> list[tuple[str | None, dict]]:
    import datasets

    try:
        ds = datasets.load_dataset(hub_id, revision=revision, split="test")
    except Exception as err:  # network, auth, missing revision: all the user's to fix
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise DataError(
            f"could not load {hub_id} (revision {revision or 'default'}) for {key}: {type(err).__name__}: {first}; "
            f"check the network or set {key.rsplit('.', 1)[0]}.path to a local JSON copy"
        ) from None
    _missing(ds.column_names, f"{hub_id} (test split)")
    return [(None, row) for row in ds.to_list()]


def _pmid(record: dict) -> str | None:
    for k in _PMID_KEYS:
        if record.get(k) not in (None, ""):
            return clean_text(record[k])
    return None


def load(name: str, src: Any, *, seed: int, report: SourceReport, progress: bool = True) -> dict[str, list[dict]]:
    """All records under ``test``, the only split the source has."""
    from tqdm.auto import tqdm

    key = f"data.sources.{name}.path"
    if src.get("path"):
        items = read_local(Path(str(src.get("path"))).expanduser(), key)
    elif src.get("hub_id"):
        items = read_hub(str(src.get("hub_id")), src.get("revision"), f"data.sources.{name}.hub_id")
    else:
        raise DataError(
            f"{key} and data.sources.{name}.hub_id are both null; set hub_id=ChuGyouk/PubMedQA-test-Ko or a "
            "local JSON path"
        )

    records, seen = [], set()
    for index, (pmid, raw) in enumerate(
        tqdm(items, desc=f"{name}: records", unit="rec", disable=not progress, leave=False)
    ):
        report.read += 1
        where = f"#{index}" if pmid is None else f"PMID {pmid}"
        if not isinstance(raw, dict):
            report.skip("not_an_object", where)
            continue
        pmid = pmid or _pmid(raw)
        where = f"#{index}" if pmid is None else f"PMID {pmid}"
        absent = [c for c in REQUIRED if raw.get(c) in (None, "", [])]
        if absent:
            report.skip(f"missing_{absent[0]}", where)
            continue
        decision = clean_text(raw["final_decision"]).lower()
        if decision not in DECISIONS:
            report.skip("final_decision_not_yes_no_maybe", where)
            continue
        record_id = f"{name}/{pmid}" if pmid else f"{name}/{index:05d}"
        if record_id in seen:
            report.skip("duplicate_id", where)
            continue
        seen.add(record_id)
        meta = {
            "source": name,
            "source_split": "test",
            "final_decision": decision,
            "pmid": pmid,
            "year": clean_text(raw.get("YEAR")) or None,
        }
        try:
            records.append(
                make_record(record_id, format_user(raw["QUESTION"], raw["CONTEXTS"]), raw["LONG_ANSWER"], meta)
            )
        except RecordError as err:
            report.skip(err.reason, where)
            continue
        report.used += 1
    return {"test": records}
