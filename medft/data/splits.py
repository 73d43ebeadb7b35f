"""Deterministic train/validation/test splits and the leakage check.

Carving works on linked groups: records with the same normalised question, the same
normalised answer, or (when a source says so) the same source group, such as one AI Hub
category/disease/intention folder whose questions share its answers. A whole group goes
to one split, so held-out loss never scores an answer training already holds. Order comes
from string-seeded RNGs over sorted keys: the same seed gives the same split on any
machine and any PYTHONHASHSEED.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence

from medft.data.records import answer_text, normalise_question, question_key

SPLITS = ("train", "validation", "test")
# A question or answer found in several splits stays in the first of these that holds it:
# evaluation sets are kept whole and training loses the duplicate.
PRECEDENCE = ("test", "validation", "train")
MAX_EXAMPLES = 3
# The meta keys naming a record's source group: one sequence, or one per source name.
GroupBy = Sequence[str] | Mapping[str, Sequence[str]]


def stratum_of(record: dict, keys: Sequence[str]) -> str:
    return "|".join(record["meta"].get(k) or "" for k in keys)


def stratified_order(items: Iterable[tuple[str, str]], seed: int, salt: str = "") -> list[str]:
    """Order ``(key, stratum)`` items so that every prefix is close to proportional per stratum.

    Each stratum is shuffled with its own seeded RNG and its members get evenly spaced
    positions in [0, 1); sorting by position interleaves the strata (systematic sampling).
    """
    by_stratum: dict[str, list[str]] = defaultdict(list)
    for key, stratum in sorted(set(items)):
        by_stratum[stratum].append(key)
    tie = random.Random(f"{seed}|{salt}|tie")
    positioned = []
    for stratum in sorted(by_stratum):
        keys = by_stratum[stratum]
        random.Random(f"{seed}|{salt}|{stratum}").shuffle(keys)
        for rank, key in enumerate(keys):
            positioned.append(((rank + 0.5) / len(keys), tie.random(), key))
    positioned.sort()
    return [key for _, _, key in positioned]


def _source_fields(record: dict, group_by: GroupBy) -> Sequence[str]:
    if isinstance(group_by, Mapping):
        return group_by.get(record["meta"].get("source"), ())
    return group_by


def source_group(record: dict, group_by: GroupBy = ()) -> str | None:
    """The source's own group of a record (e.g. every phrasing of one statistics-table cell)."""
    fields = _source_fields(record, group_by)
    return "|".join(str(record["meta"].get(k)) for k in fields) if fields else None


class Keys:
    """Question and answer keys of records; an answer shared by many rows is normalised once."""

    def __init__(self) -> None:
        self._answers: dict[str, str] = {}

    def __call__(self, record: dict) -> dict[str, str]:
        text = answer_text(record)
        key = self._answers.get(text)
        if key is None:
            key = self._answers[text] = normalise_question(text)
        return {"question": question_key(record), "answer": key}


def _components(links: Sequence[Sequence[tuple[str, ...]]]) -> list[list[int]]:
    """Indices of items that share a link, directly or through others (union-find)."""
    parent = list(range(len(links)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[tuple[str, ...], int] = {}
    for i, item_links in enumerate(links):
        for link in item_links:
            j = first.setdefault(link, i)
            if j != i:
                parent[root(i)] = root(j)
    members: dict[int, list[int]] = defaultdict(list)
    for i in range(len(links)):
        members[root(i)].append(i)
    return list(members.values())


def link_groups(records: Sequence[dict], group_by: GroupBy = ()) -> dict[str, list[dict]]:
    """Records that must share a split: linked by question, answer or source group.

    A group is named by its smallest source-group name, or else its smallest question key.
    """
    keys_of = Keys()
    names, links = [], []
    for record in records:
        keys, named = keys_of(record), source_group(record, group_by)
        names.append(keys["question"] if named is None else named)
        own = [("question", keys["question"]), ("answer", keys["answer"])]
        if named is not None:
            own.append(("group", str(record["meta"].get("source")), named))
        links.append([link for link in own if link[-1]])
    return {min(names[i] for i in c): [records[i] for i in c] for c in _components(links)}


def _quotas(n_rows: int, n_groups: int, targets: Sequence[str], ratios: dict[str, float]) -> dict[str, int]:
    """Rows per carved split: rounded ratio, at least one each while train keeps a group."""
    if n_groups < len(targets) + 1:
        return {t: 0 for t in targets}
    counts = {t: max(1, int(n_rows * ratios[t] + 0.5)) for t in targets}
    while sum(counts.values()) > n_rows - 1:
        largest = max(counts, key=lambda t: counts[t])
        counts[largest] -= 1
    return counts


def _assign(order: list[str], sizes: dict[str, int], quotas: dict[str, int]) -> dict[str, str]:
    """Groups per carved split, in stratified order; a group is taken when it brings its split
    closer to the quota, and each split gets at least one group while train keeps one."""
    assignment: dict[str, str] = {}
    left = len(order)
    for target, quota in quotas.items():
        if not quota:
            continue
        taken = 0
        for key in order:
            if taken >= quota or left <= 1:
                break
            if key not in assignment and sizes[key] < 2 * (quota - taken):
                assignment[key], taken, left = target, taken + sizes[key], left - 1
        if not taken and left > 1:
            key = min((k for k in order if k not in assignment), key=lambda k: sizes[k])
            assignment[key], left = target, left - 1
    return assignment


def _describe_groups(groups: dict[str, list[dict]]) -> dict:
    """How much linking bound together: groups of more than one row, with examples."""
    shared = sorted((g for g in groups.values() if len(g) > 1), key=lambda g: (-len(g), g[0]["id"]))
    return {
        "count": len(groups),
        "shared": len(shared),
        "rows_in_shared": sum(len(g) for g in shared),
        "largest": max((len(g) for g in groups.values()), default=0),
        "examples": [
            f"{g[0]['id']} (+{len(g) - 1} rows sharing its question, answer or group)" for g in shared[:MAX_EXAMPLES]
        ],
    }


def carve(
    by_split: dict[str, list[dict]],
    *,
    validation_ratio: float,
    test_ratio: float,
    seed: int,
    stratify: Sequence[str] = (),
    salt: str = "",
    group_by: GroupBy = (),
) -> tuple[dict[str, list[dict]], dict]:
    """Fill the splits a source lacks from its training pool (or its only split).

    Ratios count rows; whole linked groups move. Returns the three splits and a JSON-able
    note of what was carved from where. Every split gets at least one group when the pool
    has enough groups for all of them.
    """
    unknown = set(by_split) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown split names {sorted(unknown)}; use {SPLITS}")
    out = {s: list(by_split.get(s, [])) for s in SPLITS}
    if out["train"]:
        pool_name = "train"
        targets = [s for s in ("validation", "test") if not out[s]]
    else:
        present = [s for s in SPLITS if out[s]]
        if not present:
            return out, {}
        pool_name = max(present, key=lambda s: len(out[s]))
        targets = [s for s in ("validation", "test") if not out[s] or s == pool_name]
    if not targets:
        return out, {}

    pool = out[pool_name]
    out[pool_name] = []
    groups = link_groups(pool, group_by)
    quotas = _quotas(len(pool), len(groups), targets, {"validation": validation_ratio, "test": test_ratio})
    order = stratified_order(((k, stratum_of(g[0], stratify)) for k, g in groups.items()), seed, salt)
    assignment = _assign(order, {k: len(g) for k, g in groups.items()}, quotas)
    home = {id(r): assignment.get(k, "train") for k, g in groups.items() for r in g}
    for record in pool:
        out[home[id(record)]].append(record)
    return out, {
        "carved_from": pool_name,
        "carved": {t: len(out[t]) for t in targets},
        "carved_groups": {t: sum(1 for v in assignment.values() if v == t) for t in targets},
        "stratified_by": list(stratify),
        "grouped_by": ["question", "answer", *_named_fields(group_by)],
        "groups": _describe_groups(groups),
    }


def _named_fields(group_by: GroupBy) -> list[str]:
    if isinstance(group_by, Mapping):
        return sorted({f for fields in group_by.values() for f in fields})
    return list(group_by)


def cap_records(
    records: list[dict], limit: int, *, seed: int, stratify: Sequence[str] = (), salt: str = ""
) -> list[dict]:
    """Keep ``limit`` records, chosen stratified and seeded, in their original order."""
    if limit is None or len(records) <= limit:
        return records
    order = stratified_order(((r["id"], stratum_of(r, stratify)) for r in records), seed, f"{salt}|cap")
    keep = set(order[: max(0, limit)])
    return [r for r in records if r["id"] in keep]


LEAK_RULES = ("question", "answer")


def _owners(keyed: dict[str, list[tuple[dict, dict[str, str]]]], rule: str) -> dict[str, str]:
    """For each key of ``rule`` held by several splits, the split that keeps it."""
    seen: dict[str, set[str]] = defaultdict(set)
    for split, pairs in keyed.items():
        for _, keys in pairs:
            if keys[rule]:
                seen[keys[rule]].add(split)
    return {k: next(s for s in PRECEDENCE if s in ss) for k, ss in seen.items() if len(ss) > 1}


def _leak(keys: dict[str, str], split: str, owners: dict[str, dict[str, str]]) -> tuple[str, str] | None:
    """(rule, owning split) when another split keeps this record's question or answer."""
    for rule in LEAK_RULES:
        owner = owners[rule].get(keys[rule], split)
        if owner != split:
            return rule, owner
    return None


def resolve_leaks(splits: dict[str, list[dict]]) -> tuple[dict, list[tuple[str, dict]]]:
    """Drop a record from every split but the first of PRECEDENCE that holds its question or answer.

    Returns the report block and the dropped ``(rule, record)`` pairs, so each source can
    count its own.
    """
    keys_of = Keys()
    keyed = {s: [(r, keys_of(r)) for r in splits[s]] for s in SPLITS}
    owners = {rule: _owners(keyed, rule) for rule in LEAK_RULES}
    dropped: list[tuple[str, dict]] = []
    counts = {rule: Counter() for rule in LEAK_RULES}
    examples: dict[str, list[str]] = {rule: [] for rule in LEAK_RULES}
    for split, pairs in keyed.items():
        kept = []
        for record, keys in pairs:
            leak = _leak(keys, split, owners)
            if leak is None:
                kept.append(record)
                continue
            rule, owner = leak
            dropped.append((rule, record))
            counts[rule][split] += 1
            if len(examples[rule]) < MAX_EXAMPLES:
                examples[rule].append(f"{record['id']} ({split} -> kept in {owner})")
        splits[split] = kept
    total = sum(counts.values(), Counter())
    return {
        "questions_in_several_splits": len(owners["question"]),
        "answers_in_several_splits": len(owners["answer"]),
        "dropped": {s: total[s] for s in SPLITS if total[s]},
        "examples": [e for rule in LEAK_RULES for e in examples[rule]][:MAX_EXAMPLES],
        "by_rule": {
            rule: {"dropped": {s: counts[rule][s] for s in SPLITS if counts[rule][s]}, "examples": examples[rule]}
            for rule in LEAK_RULES
        },
        "policy": "a question or answer in several splits is kept in the first of test, validation, train",
    }, dropped


def ensure_nonempty(splits: dict[str, list[dict]], group_by: GroupBy = ()) -> list[dict]:
    """Move one linked group into any empty split from the split with the most groups.

    Needed for tiny inputs only; a whole group moves, so no leak is created.
    """
    moves = []
    if sum(len(v) for v in splits.values()) < 3:
        return moves
    for empty in SPLITS:
        if splits[empty]:
            continue
        grouped = {s: link_groups(splits[s], group_by) for s in SPLITS if s != empty}
        donor = max(grouped, key=lambda s: (len(grouped[s]), -SPLITS.index(s)))
        if len(grouped[donor]) < 2:
            continue
        moving = grouped[donor][sorted(grouped[donor])[-1]]
        ids = {id(r) for r in moving}
        splits[donor] = [r for r in splits[donor] if id(r) not in ids]
        splits[empty] = list(moving)
        moves.append({"from": donor, "to": empty, "records": len(moving), "example": moving[0]["id"]})
    return moves
