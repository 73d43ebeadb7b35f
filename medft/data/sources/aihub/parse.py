"""Parsing, checking and pairing one chunk of AI Hub 71762 groups, in this process or a worker.

A chunk is a list of whole (split, category, disease, intention) groups, so a worker can read
the files and pair questions with answers without seeing any other chunk. The pairs come
back compact (each text once) and the caller builds the records. Everything the report
needs comes back as ordered events, so the report is the same whether the chunks ran here
or in a process pool.
"""

from __future__ import annotations

import random
import unicodedata
from typing import Any, NamedTuple

import orjson

from medft.data.sources.aihub.reading import BrokenMember, Readers

ANSWER_PARTS = ("intro", "body", "conclusion")
_BOM = b"\xef\xbb\xbf"
# Per-group counters summed into report.info["pairing"] (and "read" into report.read).
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
    # Per folder: (rel_dir, base, names, refs), as in aihub_files.Batch.
    questions: list[tuple[str, str | None, list[str], list]]
    answers: list[tuple[str, str | None, list[str], list]]


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


class GroupResult(NamedTuple):
    """What one group came to: its pairs (None when it made none), report events and counts."""

    key: tuple[str, str, str, str]
    paired: Paired | None
    events: list[tuple[str, str, str]]  # ("skip" | "leave" | "ignore" | "info", reason, rel)
    stats: list[int]  # in STAT_KEYS order


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


_normalize = unicodedata.normalize
_new = tuple.__new__
_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError


def _text(value: str) -> str:
    """NFC, stripped (ASCII needs no normalising, and ``isascii`` is O(1))."""
    return value.strip() if value.isascii() else _normalize("NFC", value).strip()


def answer_text(data: dict) -> str:
    """intro, body and conclusion joined; each may be absent or empty, not all absent."""
    answer = data.get("answer")
    if answer is None:
        raise Bad("missing_field")
    if not isinstance(answer, dict):
        raise Bad("wrong_type")
    parts = [answer.get(k) for k in ANSWER_PARTS]
    if parts[0] is None and parts[1] is None and parts[2] is None:
        raise Bad("missing_field")
    if any(p is not None and not isinstance(p, str) for p in parts):
        raise Bad("wrong_type")
    return " ".join([t for t in [_text(p) for p in parts if p] if t])


def _optional(value: Any) -> str | None:
    return (_text(value) or None) if isinstance(value, str) else None


def _department(data: dict) -> str | None:
    value = data.get("department")
    if isinstance(value, list):
        return ", ".join([t for t in [_text(v) for v in value if isinstance(v, str)] if t]) or None
    return _optional(value)


def parse(raw: bytes, rel: str, name: str, is_question: bool, events: list) -> Item:
    """One file's bytes as an Item; raises Bad with the reason it cannot be used.

    Written out flat: it runs once per file, hundreds of thousands of times.
    """
    try:
        data = _loads(raw[3:] if raw[:3] == _BOM else raw)
    except _JSONDecodeError:
        data, cp949 = decode(raw)
        if cp949:
            events.append(("info", "read_as_cp949", rel))
    if data.__class__ is not dict:
        raise Bad("wrong_type")
    if is_question:
        text = data.get("question")
        if text.__class__ is not str:
            raise Bad("missing_field" if text is None else "wrong_type")
        text = (text if text.isascii() else _normalize("NFC", text)).strip()
        department = None
    else:
        text = answer_text(data)
        department = _department(data)
    if not text:
        raise Bad("empty")
    file_name = data.get("fileName")
    if file_name.__class__ is str:
        file_name = (file_name if file_name.isascii() else _normalize("NFC", file_name)).strip()
    if not file_name or file_name.__class__ is not str:
        file_name = name[:-5] if name[-5:].lower() == ".json" else name
    disease = data.get("disease_name")
    eng = disease.get("eng") if disease.__class__ is dict else None
    if eng.__class__ is str:
        eng = (eng if eng.isascii() else _normalize("NFC", eng)).strip() or None
    else:
        eng = None
    return _new(Item, (file_name, text, rel, eng, department))


def read_items(folders: list, is_question: bool, readers: Readers, events: list) -> tuple[list[Item], int]:
    """Usable items of one kind, sorted by file name, and how many files counted as read."""
    kind = "question" if is_question else "answer"
    items: dict[str, Item] = {}
    read = 0
    for rel_dir, base, names, refs in folders:
        for name, raw in zip(names, readers.read_all(base, refs), strict=True):
            read += 1
            rel = f"{rel_dir}/{name}"
            if raw.__class__ is not bytes:
                reason = "broken_zip_member" if isinstance(raw, BrokenMember) else f"{kind}_unreadable"
                events.append(("skip", reason, rel))
                continue
            try:
                item = parse(raw, rel, name, is_question, events)
            except Bad as bad:
                events.append(("skip", f"empty_{kind}" if bad.reason == "empty" else f"{kind}_{bad.reason}", rel))
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
    return sorted(items.values(), key=_by_name), read


def _by_name(item: Item) -> str:
    return item.file_name


class Paired(NamedTuple):
    """One group's pairs, compact for the trip back from a worker: record ``i`` is
    ``questions[q[i]]`` with ``answers[a[i]]`` (``q`` is None when it is simply 0, 1, 2...)."""

    split: str
    key: tuple[str, str, str, str]
    questions: list[Item]
    answers: list[Item]  # only the answers used
    q: list[int] | None
    a: list[int]


_STAT = {key: i for i, key in enumerate(STAT_KEYS)}


def pair_group(params: Params, job: Job, qs: list[Item], ans: list[Item], out: GroupResult) -> GroupResult:
    """Pair one group's questions with its own answers under the configured policy."""
    stats = out.stats
    stats[_STAT["groups"]] += bool(qs or ans)
    stats[_STAT["questions"]] += len(qs)
    stats[_STAT["answers"]] += len(ans)
    if not ans:
        stats[_STAT["groups_without_answers"]] += bool(qs)
        out.events.extend(("skip", "question_without_answer_in_group", q.rel) for q in qs)
        return out
    if not qs:
        stats[_STAT["groups_without_questions"]] += 1
        out.events.extend(("skip", "orphan_answer", a.rel) for a in ans)
        return out
    n = len(ans)
    q_index = None
    if params.policy == "first":
        a_index = [0] * len(qs)
    elif params.policy == "random":
        rng = random.Random(f"{params.seed}|{'/'.join(job.key)}")
        choices = range(n)
        a_index = [rng.choice(choices) for _ in qs]  # the same draws as rng.choice(answers)
    else:
        take = min(params.cap, n)
        q_index = [i for i in range(len(qs)) for _ in range(take)]
        a_index = [(i + j) % n for i in range(len(qs)) for j in range(take)]
    used = sorted(set(a_index))
    if len(used) != n:  # send back only the answers used
        chosen = set(used)
        out.events.extend(
            ("leave", "answer_not_chosen_by_pairing", a.rel) for k, a in enumerate(ans) if k not in chosen
        )
        slot = {k: i for i, k in enumerate(used)}
        a_index = [slot[k] for k in a_index]
        ans = [ans[k] for k in used]
    stats[_STAT["questions_paired"]] += len(qs)
    stats[_STAT["answers_used"]] += len(used)
    stats[_STAT["pairs"]] += len(a_index)
    return out._replace(paired=Paired(job.split, job.key, qs, ans, q_index, a_index))


def records(name: str, policy: str, paired: Paired) -> list[dict]:
    """The records of one group's pairs (fields are clean NFC text already, so no second pass)."""
    tag, category, disease, intention = paired.key
    prefix = f"{name}/{tag}/{category}/{disease}/{intention}/"
    qs, ans = paired.questions, paired.answers
    out = []
    append = out.append
    for qi, ai in zip(range(len(qs)) if paired.q is None else paired.q, paired.a, strict=False):
        q, a = qs[qi], ans[ai]
        append(
            {
                "id": prefix + q.file_name + ("/" + a.file_name if policy == "all" else ""),
                "messages": [{"role": "user", "content": q.text}, {"role": "assistant", "content": a.text}],
                "meta": {
                    "source": name,
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
        )
    return out


def run_job(params: Params, job: Job, readers: Readers) -> GroupResult:
    """Read, check and pair one group (its records are built by the caller)."""
    out = GroupResult(job.key, None, [], [0] * len(STAT_KEYS))
    qs, read_q = read_items(job.questions, True, readers, out.events)
    ans, read_a = read_items(job.answers, False, readers, out.events)
    out.stats[_STAT["read"]] += read_q + read_a
    return pair_group(params, job, qs, ans, out)


def run_chunk(params: Params, jobs: list[Job], readers: Readers | None = None) -> list[GroupResult]:
    readers = readers if readers is not None else _worker_readers()
    return [run_job(params, job, readers) for job in jobs]


# --------------------------------------------------------------------------- worker processes
_READERS: Readers | None = None
# Chunks that forked workers inherit: a task names its chunk instead of pickling its files.
SHARED: dict[int, list[list[Job]]] = {}


class NotShared(Exception):
    """This worker was not forked from the process holding the chunks; run the chunk there."""


def run_shared_chunk(params: Params, token: int, index: int) -> list[GroupResult]:
    chunks = SHARED.get(token)
    if chunks is None:
        raise NotShared(token)
    return run_chunk(params, chunks[index])


def init_worker() -> None:
    """Each worker opens the archives itself (handles inherited through fork are dropped)."""
    global _READERS
    _READERS = Readers()


def _worker_readers() -> Readers:
    global _READERS
    if _READERS is None:
        _READERS = Readers()
    return _READERS
