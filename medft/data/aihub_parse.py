"""Parsing, checking and pairing one chunk of AI Hub 71762 groups, in this process or a worker.

A chunk is a list of whole (split, category, disease, intention) groups, so a worker can read
the files, pair questions with answers and build the records without seeing any other chunk.
Everything the report needs comes back as ordered events, so the report is the same whether
the chunks ran here or in a process pool.
"""

from __future__ import annotations

import random
from typing import Any, NamedTuple

import orjson

from medft.data.aihub_files import BrokenMember, Member, Readers
from medft.data.records import nfc

ANSWER_PARTS = ("intro", "body", "conclusion")
_BOM = b"\xef\xbb\xbf"
# Per-chunk counters summed into report.info["pairing"].
STAT_KEYS = (
    "read",
    "groups",
    "questions",
    "questions_paired",
    "answers",
    "answers_used",
    "pairs",
    "groups_without_answers",
    "groups_without_questions",
)


class Job(NamedTuple):
    """One group's files: ``key`` is (tag, category, disease, intention)."""

    key: tuple[str, str, str, str]
    split: str
    questions: list[tuple[str | Member, str]]  # (ref, rel)
    answers: list[tuple[str | Member, str]]


class Params(NamedTuple):
    name: str
    policy: str
    cap: int
    seed: int


class Item(NamedTuple):
    file_name: str
    text: str
    rel: str
    disease_eng: str | None
    department: str | None


class Bad(Exception):
    """A file that cannot be used; ``reason`` goes to the report (prefixed by question/answer)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ChunkResult(NamedTuple):
    records: list[tuple[str, dict]]  # (split, record)
    events: list[tuple[str, str, str]]  # ("skip" | "ignore" | "info", reason, rel)
    stats: tuple[int, ...]  # in STAT_KEYS order


def decode(raw: bytes) -> tuple[Any, bool]:
    """JSON from UTF-8 bytes (BOM or not); ``(data, True)`` when only cp949 could read it."""
    if raw.startswith(_BOM):
        raw = raw[3:]
    try:
        return orjson.loads(raw), False
    except orjson.JSONDecodeError:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            raise Bad("invalid_json") from None
    try:
        text = raw.decode("cp949")
    except UnicodeDecodeError:
        raise Bad("not_utf8") from None
    try:
        return orjson.loads(text), True
    except orjson.JSONDecodeError:
        raise Bad("invalid_json") from None


def _text(value: Any) -> str:
    return nfc(value).strip()


def question_text(data: dict) -> str:
    value = data.get("question")
    if value is None:
        raise Bad("missing_field")
    if not isinstance(value, str):
        raise Bad("wrong_type")
    return _text(value)


def answer_text(data: dict) -> str:
    """intro, body and conclusion joined; each may be absent or empty, not all absent."""
    answer = data.get("answer")
    if answer is None:
        raise Bad("missing_field")
    if not isinstance(answer, dict):
        raise Bad("wrong_type")
    parts = [answer.get(k) for k in ANSWER_PARTS]
    if all(p is None for p in parts):
        raise Bad("missing_field")
    if any(p is not None and not isinstance(p, str) for p in parts):
        raise Bad("wrong_type")
    return " ".join(t for t in (_text(p) for p in parts if p) if t)


def _optional(value: Any) -> str | None:
    return (_text(value) or None) if isinstance(value, str) else None


def _disease_eng(data: dict) -> str | None:
    disease = data.get("disease_name")
    return _optional(disease.get("eng")) if isinstance(disease, dict) else None


def _department(data: dict) -> str | None:
    value = data.get("department")
    if isinstance(value, list):
        return ", ".join(t for t in (_text(v) for v in value if isinstance(v, str)) if t) or None
    return _optional(value)


def parse(raw: bytes, rel: str, stem: str, is_question: bool, events: list) -> Item:
    """One file's bytes as an Item; raises Bad with the reason it cannot be used."""
    data, cp949 = decode(raw)
    if cp949:
        events.append(("info", "read_as_cp949", rel))
    if not isinstance(data, dict):
        raise Bad("wrong_type")
    text = question_text(data) if is_question else answer_text(data)
    if not text:
        raise Bad("empty")
    file_name = data.get("fileName")
    file_name = _text(file_name) if isinstance(file_name, str) else ""
    return Item(
        file_name or stem,
        text,
        rel,
        _disease_eng(data),
        None if is_question else _department(data),
    )


def _stem(rel: str) -> str:
    name = rel.rsplit("/", 1)[-1]
    return name[:-5] if name.lower().endswith(".json") else name


def read_items(files: list, is_question: bool, readers: Readers, events: list) -> tuple[list[Item], int]:
    """Usable items of one kind, sorted by file name, and how many files counted as read."""
    kind = "question" if is_question else "answer"
    items: dict[str, Item] = {}
    read = 0
    for ref, rel in files:
        read += 1
        try:
            raw = readers.read(ref)
        except BrokenMember:
            events.append(("skip", "broken_zip_member", rel))
            continue
        except OSError:
            events.append(("skip", f"{kind}_unreadable", rel))
            continue
        try:
            item = parse(raw, rel, _stem(rel), is_question, events)
        except Bad as bad:
            reason = f"empty_{kind}" if bad.reason == "empty" else f"{kind}_{bad.reason}"
            events.append(("skip", reason, rel))
            continue
        first = items.get(item.file_name)
        if first is None:
            items[item.file_name] = item
        elif first.text == item.text:
            # The same file under another name (a copy made by the OS): not data twice.
            read -= 1
            events.append(("ignore", f"duplicate_{kind}_file", rel))
        else:
            events.append(("skip", f"{kind}_duplicate_file_name", rel))
    return sorted(items.values(), key=lambda it: it.file_name), read


def _record(params: Params, key: tuple, q: Item, a: Item) -> dict:
    """The record for one pair (fields already clean NFC text, so no second pass)."""
    tag, category, disease, intention = key
    record_id = f"{params.name}/{tag}/{category}/{disease}/{intention}/{q.file_name}"
    if params.policy == "all":
        record_id += f"/{a.file_name}"
    return {
        "id": record_id,
        "messages": [{"role": "user", "content": q.text}, {"role": "assistant", "content": a.text}],
        "meta": {
            "source": params.name,
            "source_split": tag,
            "category": category,
            "disease": disease,
            "disease_eng": q.disease_eng or a.disease_eng,
            "intention": intention,
            "department": a.department,
            "question_file": q.rel,
            "answer_file": a.rel,
        },
    }


def pair_group(params: Params, job: Job, qs: list[Item], ans: list[Item], out: ChunkResult, stats: list[int]) -> None:
    """Pair one group's questions with its own answers under the configured policy."""
    if qs or ans:
        stats[1] += 1
    stats[2] += len(qs)
    stats[4] += len(ans)
    if not ans:
        if qs:
            stats[7] += 1
        out.events.extend(("skip", "question_without_answer_in_group", q.rel) for q in qs)
        return
    if not qs:
        stats[8] += 1
        out.events.extend(("skip", "orphan_answer", a.rel) for a in ans)
        return
    rng = random.Random(f"{params.seed}|{'/'.join(job.key)}")
    used: set[int] = set()
    n = len(ans)
    take = min(params.cap, n)
    for i, q in enumerate(qs):
        if params.policy == "first":
            chosen = (0,)
        elif params.policy == "random":
            chosen = (rng.choice(range(n)),)  # the same draws as rng.choice(answers)
        else:
            chosen = tuple((i + j) % n for j in range(take))
        for k in chosen:
            used.add(k)
            out.records.append((job.split, _record(params, job.key, q, ans[k])))
        stats[6] += len(chosen)
    stats[3] += len(qs)
    stats[5] += len(used)


def run_chunk(params: Params, jobs: list[Job], readers: Readers | None = None) -> ChunkResult:
    """Read, check and pair every group of one chunk."""
    readers = readers if readers is not None else _worker_readers()
    out = ChunkResult([], [], ())
    stats = [0] * len(STAT_KEYS)
    for job in jobs:
        qs, read_q = read_items(job.questions, True, readers, out.events)
        ans, read_a = read_items(job.answers, False, readers, out.events)
        stats[0] += read_q + read_a
        pair_group(params, job, qs, ans, out, stats)
    return out._replace(stats=tuple(stats))


# --------------------------------------------------------------------------- worker processes
_READERS: Readers | None = None


def init_worker() -> None:
    """Each worker opens the archives itself (handles inherited through fork are dropped)."""
    global _READERS
    _READERS = Readers()


def _worker_readers() -> Readers:
    global _READERS
    if _READERS is None:
        _READERS = Readers()
    return _READERS
