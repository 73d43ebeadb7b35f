"""Deterministic train/validation/test splits and the leakage check.

Carving works on question groups (records with the same normalised user turn), so a question
paired with several answers never straddles two splits. Order comes from string-seeded RNGs
over sorted keys: the same seed gives the same split on any machine and any PYTHONHASHSEED.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from typing import Iterable, Sequence

from medft.data.records import question_key

SPLITS = ("train", "validation", "test")
# A question found in several splits stays in the first of these that holds it: evaluation
# sets are kept whole and training loses the duplicate.
PRECEDENCE = ("test", "validation", "train")
MAX_EXAMPLES = 3


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


def group_key(record: dict, group_by: Sequence[str] = ()) -> str:
    """Records that must share a split: the same question, or (when a source says so) the
    same underlying fact, e.g. every phrasing generated from one statistics-table cell."""
    if group_by:
        return "|".join(str(record["meta"].get(k)) for k in group_by)
    return question_key(record)


def _group(records: Sequence[dict], group_by: Sequence[str] = ()) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for record in records:
        groups.setdefault(group_key(record, group_by), []).append(record)
    return groups


def _target_counts(n: int, targets: Sequence[str], ratios: dict[str, float]) -> dict[str, int]:
    """Groups per carved split: rounded ratio, at least one each while train keeps one."""
    if n < len(targets) + 1:
        return {t: 0 for t in targets}
    counts = {t: max(1, int(n * ratios[t] + 0.5)) for t in targets}
    while sum(counts.values()) > n - 1:
        largest = max(counts, key=lambda t: counts[t])
        counts[largest] -= 1
    return counts


def carve(
    by_split: dict[str, list[dict]],
    *,
    validation_ratio: float,
    test_ratio: float,
    seed: int,
    stratify: Sequence[str] = (),
    salt: str = "",
    group_by: Sequence[str] = (),
) -> tuple[dict[str, list[dict]], dict]:
    """Fill the splits a source lacks from its training pool (or its only split).

    Returns the three splits and a JSON-able note of what was carved from where. Every split
    gets at least one question group when the pool has enough groups for all of them.
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
    groups = _group(pool, group_by)
    counts = _target_counts(len(groups), targets, {"validation": validation_ratio, "test": test_ratio})
    order = stratified_order(((k, stratum_of(g[0], stratify)) for k, g in groups.items()), seed, salt)
    assignment: dict[str, str] = {}
    start = 0
    for target in targets:
        for key in order[start : start + counts[target]]:
            assignment[key] = target
        start += counts[target]
    for record in pool:
        out[assignment.get(group_key(record, group_by), "train")].append(record)
    carved = {t: len(out[t]) for t in targets}
    return out, {"carved_from": pool_name, "carved": carved, "stratified_by": list(stratify)}


def cap_records(records: list[dict], limit: int, *, seed: int, stratify: Sequence[str] = (), salt: str = "") -> list[dict]:
    """Keep ``limit`` records, chosen stratified and seeded, in their original order."""
    if limit is None or len(records) <= limit:
        return records
    order = stratified_order(((r["id"], stratum_of(r, stratify)) for r in records), seed, f"{salt}|cap")
    keep = set(order[: max(0, limit)])
    return [r for r in records if r["id"] in keep]


def resolve_leaks(splits: dict[str, list[dict]]) -> dict:
    """Drop a question from every split but the first of PRECEDENCE that holds it; report it."""
    keyed = {s: [(question_key(r), r) for r in splits[s]] for s in SPLITS}
    seen: dict[str, set[str]] = defaultdict(set)
    for split, pairs in keyed.items():
        for key, _ in pairs:
            seen[key].add(split)
    owner = {k: next(s for s in PRECEDENCE if s in ss) for k, ss in seen.items() if len(ss) > 1}
    dropped: Counter = Counter()
    examples: list[str] = []
    for split, pairs in keyed.items():
        kept = []
        for key, record in pairs:
            if key in owner and owner[key] != split:
                dropped[split] += 1
                if len(examples) < MAX_EXAMPLES:
                    examples.append(f"{record['id']} ({split} -> kept in {owner[key]})")
                continue
            kept.append(record)
        splits[split] = kept
    return {
        "questions_in_several_splits": len(owner),
        "dropped": {s: dropped[s] for s in SPLITS if dropped[s]},
        "examples": examples,
        "policy": "kept in the first of test, validation, train; dropped elsewhere",
    }


def ensure_nonempty(splits: dict[str, list[dict]]) -> list[dict]:
    """Move one question group into any empty split from the split with the most groups.

    Needed for tiny inputs only; a whole group moves, so no leak is created.
    """
    moves = []
    if sum(len(v) for v in splits.values()) < 3:
        return moves
    for empty in SPLITS:
        if splits[empty]:
            continue
        grouped = {s: _group(splits[s]) for s in SPLITS if s != empty}
        donor = max(grouped, key=lambda s: (len(grouped[s]), -SPLITS.index(s)))
        if len(grouped[donor]) < 2:
            continue
        key = sorted(grouped[donor])[-1]
        moving = grouped[donor][key]
        splits[donor] = [r for r in splits[donor] if question_key(r) != key]
        splits[empty] = list(moving)
        moves.append({"from": donor, "to": empty, "records": len(moving), "example": moving[0]["id"]})
    return moves
