"""Benchmark questions in the training data, found before a model trains on them.

A model scored on questions it trained on reports memory, not skill. The benchmarks named by
``train.eval_benchmarks`` and ``data.contamination_benchmarks`` are read with their own
loaders (every item of the scored split, ``eval.limit`` ignored), and each row of the train
and validation splits is compared with them: a row matches an item when its normalised user
turn equals the item's question (or the item's prompt), or starts with it, as a question
followed by its options or context does. Only questions of at least ``MIN_PREFIX``
normalised characters match by prefix, so a bare stem such as "다음 중 옳은 것은?" flags nothing.

A match fails the run unless ``data.allow_contamination=true``; either way data_report.json
lists it. Two cases are reported without failing: PubMedQA-Ko items that the run's own
``pubmedqa_ko`` source holds, because that benchmark leaves them out when scoring the run
(``excluded_seen``), and ``heldout``, which is the run's own test split.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from medft.data.records import normalise_question, question_key
from medft.runtime.errors import DataError

log = logging.getLogger("medft")

MIN_PREFIX = 20
CHECKED_SPLITS = ("train", "validation")
MAX_EXAMPLES = 3


@dataclass
class Index:
    """Normalised benchmark texts: whole keys, and keys of at least MIN_PREFIX characters by their head."""

    exact: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    heads: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)
    items: int = 0

    def add(self, item_id: str, texts: Iterable[tuple[str, str]]) -> None:
        """``texts`` are (how, text): how the item's text was put, e.g. "question" or "prompt"."""
        self.items += 1
        for how, text in texts:
            key = normalise_question(text)
            if not key:
                continue
            self.exact.setdefault(key, []).append((item_id, how))
            if len(key) >= MIN_PREFIX:
                self.heads.setdefault(key[:MIN_PREFIX], []).append((key, item_id, how))

    def find(self, key: str) -> list[tuple[str, str]]:
        """(item id, how) of every item whose text equals ``key`` or starts it."""
        found = list(self.exact.get(key, ()))
        for text, item_id, how in self.heads.get(key[:MIN_PREFIX], ()):
            if len(key) > len(text) and key.startswith(text):
                found.append((item_id, how))
        return found


def _kormedmcqa(index: Index, subsets) -> None:
    for subset in subsets:
        for i, row in enumerate(subset.items):
            options = "\n".join(f"{c}. {row[c]}" for c in "ABCDE")
            where = "-".join(str(row.get(k)) for k in ("year", "period", "q_number"))
            texts = [("question", row["question"]), ("prompt", f"{row['question']}\n{options}")]
            index.add(f"{subset.name}/{where}#{i}", texts)


def _pubmedqa(index: Index, data) -> None:
    from medft.data.sources.pubmedqa import question_of

    for item in data.items:
        index.add(str(item["id"]), [("prompt", item["user"]), ("question", question_of(item["user"]))])


BUILDERS = {"kormedmcqa": _kormedmcqa, "pubmedqa_ko": _pubmedqa}


def benchmark_names(cfg) -> list[str]:
    """train.eval_benchmarks, then data.contamination_benchmarks, each once."""
    names = [*(cfg.train.get("eval_benchmarks") or ()), *(cfg.data.get("contamination_benchmarks") or ())]
    return list(dict.fromkeys(str(n) for n in names))


def _load_index(cfg, name: str) -> tuple[str, Index | None]:
    """The benchmark's kind and its items as an index (None for ``heldout``); DataError when
    its data cannot be read, ConfigError for a name that is no benchmark."""
    from medft.evals.runner import load_data
    from medft.evals.settings import load_benchmark

    key = (
        "train.eval_benchmarks" if name in (cfg.train.get("eval_benchmarks") or ()) else "data.contamination_benchmarks"
    )
    eval_cfg = load_benchmark(name, key, chosen=cfg.get("eval"))
    kind = str(eval_cfg.kind)
    if kind not in BUILDERS:
        return kind, None
    index = Index()
    eval_cfg.limit, eval_cfg.fewshot = None, 0  # every scored item; few-shot rows are shown, not scored
    BUILDERS[kind](index, load_data(eval_cfg, cfg, trained=False))
    return kind, index


def _rows(datasets, split: str) -> Iterable[tuple[str, str]]:
    """(id, question key) of a split, from a DatasetDict or plain lists of records."""
    rows = datasets[split]
    if hasattr(rows, "column_names"):
        return zip(rows["id"], (question_key({"messages": m}) for m in rows["messages"]), strict=True)
    return ((r["id"], question_key(r)) for r in rows)


def _scan(index: Index, keyed: dict[str, list[tuple[str, str]]], excuse_prompts: bool) -> dict:
    """Which items the checked splits hold, counted once per item, with examples.

    ``excuse_prompts``: rows holding an item's whole prompt are left out by the benchmark itself.
    """
    hits: dict[str, tuple[str, str, str]] = {}
    excused_items: set[str] = set()
    for split, rows in keyed.items():
        for row_id, key in rows:
            for item_id, how in index.find(key):
                if excuse_prompts and how == "prompt":
                    excused_items.add(item_id)
                else:
                    hits.setdefault(item_id, (row_id, split, how))
    examples = [{"item": i, "row": r, "split": s, "matched": h} for i, (r, s, h) in list(hits.items())[:MAX_EXAMPLES]]
    out = {"items": index.items, "found": len(hits), "examples": examples}
    if excused_items:
        out["excluded_at_scoring"] = len(excused_items - set(hits))
    return out


def _has_source(cfg, kind: str) -> bool:
    return any(str(s.kind) == kind for s in (cfg.data.get("sources") or {}).values())


def check_contamination(cfg, datasets, report: dict) -> dict:
    """Fill ``report["contamination"]``; raise DataError (with the report attached) on a match not allowed."""
    names = benchmark_names(cfg)
    if not names:
        return {}
    keyed = {split: list(_rows(datasets, split)) for split in CHECKED_SPLITS}
    results: dict[str, dict] = {}
    for name in names:
        try:
            kind, index = _load_index(cfg, name)
        except DataError as err:  # unreachable data: the benchmark would be skipped at scoring too
            log.warning("contamination check: benchmark %s not checked: %s", name, err)
            results[name] = {"error": str(err)}
            continue
        if index is None:
            results[name] = {"skipped": "the run's own test split, not an outside benchmark"}
            continue
        own = kind == "pubmedqa_ko" and _has_source(cfg, "pubmedqa_ko")
        results[name] = _scan(index, keyed, excuse_prompts=own)
    allowed = bool(cfg.data.get("allow_contamination", False))
    report["contamination"] = {"checked_splits": list(CHECKED_SPLITS), "allowed": allowed, "benchmarks": results}
    _fail_unless_allowed(results, allowed, report)
    return report["contamination"]


def _fail_unless_allowed(results: dict[str, dict], allowed: bool, report: dict) -> None:
    for name, result in results.items():
        if result.get("found") and not allowed:
            first = result["examples"][0]
            err = DataError(
                f"{result['found']} of {result['items']} {name} questions are in the training data (e.g. "
                f"{first['item']} "
                f"as {first['row']} in {first['split']}); scores on {name} would measure memory: remove those rows, "
                f"drop {name} from the benchmarks, or set data.allow_contamination=true"
            )
            err.report = report
            raise err
