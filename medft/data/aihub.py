"""AI Hub 71762 (초거대AI 사전학습용 헬스케어 질의응답 데이터) as chat records.

Questions (``1.질문/<category>/<disease>/<intention>/HC-Q-*.json``) and answers
(``2.답변/.../HC-A-*.json``) share no id: they only share their folder, so pairs are made
inside each (split, category, disease, intention) group with a configurable policy. The
folders are found wherever they sit under the root, because unzipped copies differ
(``Training/02.라벨링데이터/TL/1.질문``, ``02.라벨링데이터/1.질문``, ``TL/1.질문``...).
"""

from __future__ import annotations

import json
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medft.data.records import RecordError, clean_text, make_record, nfc
from medft.data.report import SourceReport
from medft.errors import DataError

QUESTION_DIR = "1.질문"
ANSWER_DIR = "2.답변"
STRATIFY = ("category", "intention")
ANSWER_PARTS = ("intro", "body", "conclusion")
SOURCE_URL = "https://aihub.or.kr/aihubdata/data/view.do?dataSetSn=71762"
# Official folder names that say which split a subtree is (TL/VL labels, TS/VS sources).
_TRAIN = re.compile(r"^(tl|ts|training)(\d+)?([ _.\-].*)?$", re.IGNORECASE)
_VALID = re.compile(r"^(vl|vs|validation)(\d+)?([ _.\-].*)?$", re.IGNORECASE)
_IGNORED_DIRS = {"__MACOSX"}


@dataclass
class _Item:
    """One parsed question or answer file."""

    file_name: str
    text: str
    path: str
    split: str
    tag: str
    group: tuple[str, str, str]
    disease_eng: str | None
    department: str | None = None


def split_of(parts: tuple[str, ...]) -> tuple[str, str]:
    """(split, tag) from the folders above a ``1.질문``/``2.답변`` folder, nearest first.

    ``parts`` runs from the filesystem root down, so a flattened
    ``Validation/02.라벨링데이터/1.질문`` is still validation. Default: train/TL.
    """
    for part in reversed(parts):
        if _VALID.match(part):
            return "validation", "VL"
        if _TRAIN.match(part):
            return "train", "TL"
    return "train", "TL"


def _missing_path(name: str) -> DataError:
    return DataError(
        f"data.sources.{name}.path is not set: download AI Hub dataset 71762 ({SOURCE_URL}), unzip "
        f"Training/02.라벨링데이터/TL.zip and Validation/02.라벨링데이터/VL.zip, then pass "
        f"data.sources.{name}.path=<that folder>"
    )


def find_files(root: Path, report: SourceReport) -> list[tuple[str, Path, tuple[str, ...], tuple[str, ...]]]:
    """Every JSON file under a question/answer folder: (marker, path, folders above, folders below)."""
    found = []
    root_parts = tuple(nfc(p) for p in root.resolve().parts)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _IGNORED_DIRS)
        rel = tuple(nfc(p) for p in Path(dirpath).relative_to(root).parts)
        markers = [i for i, p in enumerate(rel) if p in (QUESTION_DIR, ANSWER_DIR)]
        if not markers:
            continue
        at = markers[-1]
        for filename in sorted(filenames):
            path = Path(dirpath) / filename
            if filename.startswith("._") or not filename.lower().endswith(".json"):
                report.ignore("not_a_json_file", path.relative_to(root).as_posix())
                continue
            found.append((rel[at], path, root_parts + rel[:at], rel[at + 1 :]))
    return found


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8-sig"))


def _answer_text(data: dict) -> str:
    answer = data.get("answer")
    if not isinstance(answer, dict):
        return ""
    return " ".join(part for part in (clean_text(answer.get(k)) for k in ANSWER_PARTS) if part)


def _disease_eng(data: dict) -> str | None:
    disease = data.get("disease_name")
    return clean_text(disease.get("eng")) or None if isinstance(disease, dict) else None


def _department(data: dict) -> str | None:
    value = data.get("department")
    if isinstance(value, list):
        return ", ".join(clean_text(v) for v in value if clean_text(v)) or None
    return clean_text(value) or None


def parse(
    files: list, root: Path, report: SourceReport, progress: bool
) -> tuple[dict[tuple, list[_Item]], dict[tuple, list[_Item]]]:
    """Read every file once; return questions and answers by (tag, category, disease, intention)."""
    from tqdm.auto import tqdm

    questions: dict[tuple, list[_Item]] = {}
    answers: dict[tuple, list[_Item]] = {}
    seen: set[tuple] = set()
    for marker, path, above, below in tqdm(files, desc=f"{report.name}: reading", unit="file", disable=not progress):
        rel = path.relative_to(root).as_posix()
        is_question = marker == QUESTION_DIR
        kind = "question" if is_question else "answer"
        split, tag = split_of(above)
        if (marker, tag, *below, path.name) in seen:
            # The same file reached twice, e.g. TL.zip unzipped both into TL/ and next to it.
            report.ignore(f"duplicate_{kind}_file", rel)
            continue
        seen.add((marker, tag, *below, path.name))
        report.read += 1
        if len(below) != 3:
            report.skip(f"{kind}_outside_category_disease_intention", rel)
            continue
        try:
            data = _read_json(path)
        except UnicodeDecodeError:
            report.skip(f"{kind}_not_utf8", rel)
            continue
        except (json.JSONDecodeError, OSError):
            report.skip(f"{kind}_invalid_json", rel)
            continue
        if not isinstance(data, dict):
            report.skip(f"{kind}_invalid_json", rel)
            continue
        group = (below[0], below[1], below[2])
        file_name = clean_text(data.get("fileName")) or nfc(path.stem)
        text = clean_text(data.get("question")) if is_question else _answer_text(data)
        if not text:
            report.skip(f"empty_{kind}", rel)
            continue
        item = _Item(file_name, text, rel, split, tag, group, _disease_eng(data))
        if not is_question:
            item.department = _department(data)
        (questions if is_question else answers).setdefault((tag, *group), []).append(item)
    return questions, answers


def pair(
    questions: dict[tuple, list[_Item]],
    answers: dict[tuple, list[_Item]],
    *,
    policy: str,
    cap: int,
    seed: int,
    report: SourceReport,
) -> list[tuple[_Item, _Item]]:
    """Pair questions with answers of their own group only; count what each policy used."""
    pairs: list[tuple[_Item, _Item]] = []
    used: set[str] = set()
    paired_questions = groups_without_answers = 0
    for key in sorted(questions):
        qs = sorted(questions[key], key=lambda q: q.file_name)
        ans = sorted(answers.get(key, []), key=lambda a: a.file_name)
        if not ans:
            groups_without_answers += 1
            for q in qs:
                report.skip("question_without_answer_in_group", q.path)
            continue
        rng = random.Random(f"{seed}|{'/'.join(key)}")
        for i, q in enumerate(qs):
            if policy == "first":
                chosen = [ans[0]]
            elif policy == "random":
                chosen = [rng.choice(ans)]
            else:
                chosen = [ans[(i + j) % len(ans)] for j in range(min(cap, len(ans)))]
            paired_questions += 1
            for a in chosen:
                used.add(a.path)
                pairs.append((q, a))
    n_answers = sum(len(v) for v in answers.values())
    report.info["pairing"] = {
        "policy": policy,
        **({"cap": cap} if policy == "all" else {}),
        "groups": len(set(questions) | set(answers)),
        "questions": sum(len(v) for v in questions.values()),
        "questions_paired": paired_questions,
        "answers": n_answers,
        "answers_used": len(used),
        "answers_unused": n_answers - len(used),
        "pairs": len(pairs),
        "groups_without_answers": groups_without_answers,
        "groups_without_questions": len(set(answers) - set(questions)),
    }
    return pairs


def load(name: str, src: Any, *, seed: int, report: SourceReport, progress: bool = True) -> dict[str, list[dict]]:
    """Records by split: TL (Training) -> train, VL (Validation) -> validation."""
    if not src.get("path"):
        raise _missing_path(name)
    root = Path(str(src.get("path"))).expanduser()
    if not root.is_dir():
        raise DataError(f"data.sources.{name}.path={root} is not a folder; point it at the unzipped AI Hub 71762 data ({SOURCE_URL})")
    if nfc(root.name) in (QUESTION_DIR, ANSWER_DIR):
        raise DataError(
            f"data.sources.{name}.path={root} is a '{nfc(root.name)}' folder; point it at the folder that holds "
            f"both {QUESTION_DIR} and {ANSWER_DIR} (or any folder above it)"
        )
    policy = str(getattr(src.get("pairing"), "value", src.get("pairing") or "first"))
    if policy not in ("first", "random", "all"):
        raise DataError(f"data.sources.{name}.pairing={policy} must be one of first, random, all")
    cap = int(src.get("pairing_cap") or 0)
    if policy == "all" and cap < 1:
        raise DataError(f"data.sources.{name}.pairing_cap={cap} must be >= 1 with pairing=all")

    files = find_files(root, report)
    if not any(marker == QUESTION_DIR for marker, *_ in files):
        zips = sorted(p.name for p in root.rglob("*.zip"))[:3]
        hint = f" (found {', '.join(zips)}: unzip them first)" if zips else ""
        raise DataError(
            f"data.sources.{name}.path={root} holds no '{QUESTION_DIR}/<category>/<disease>/<intention>/*.json' files{hint}; "
            f"point it at the unzipped AI Hub 71762 labelled data ({SOURCE_URL})"
        )
    questions, answers = parse(files, root, report, progress)
    pairs = pair(questions, answers, policy=policy, cap=cap, seed=seed, report=report)

    out: dict[str, list[dict]] = {}
    for q, a in pairs:
        category, disease, intention = q.group
        record_id = f"{name}/{q.tag}/{category}/{disease}/{intention}/{q.file_name}"
        if policy == "all":
            record_id += f"/{a.file_name}"
        meta = {
            "source": name,
            "source_split": q.tag,
            "category": category,
            "disease": disease,
            "disease_eng": q.disease_eng or a.disease_eng,
            "intention": intention,
            "department": a.department,
            "question_file": q.path,
            "answer_file": a.path,
        }
        try:
            out.setdefault(q.split, []).append(make_record(record_id, q.text, a.text, meta))
        except RecordError as err:
            report.skip(err.reason, q.path)
    return out
