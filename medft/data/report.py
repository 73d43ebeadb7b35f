"""What the loaders read, kept and skipped, in two ledgers that must add up.

Input items (files for AI Hub, records for PubMedQA-Ko, lines for HIRA, table cells for
HIRA tables): ``read = used + skipped + left_unused``; an item is used when it went into a
row, skipped (by reason, with example paths) when it could not, and left unused when it
was fine but a policy passed it over (answers the pairing policy did not pick). Rows:
``formed = kept + dropped``; a row is formed by the loader, kept when it reaches a split,
and dropped by reason (cleaning, leakage, ``max_records``, mixture weights). Mixing the
two units hid where data went, so each count has one unit and :meth:`SourceReport.verify`
fails the run when either sum does not hold. ``ignored`` lists items that are not data at
all or exact copies (an archive unzipped twice): they are not read. The report is written
as ``data_report.json``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from medft.runtime.errors import DataError

MAX_EXAMPLES = 3
# Drops that follow from a setting, not from bad input: they do not count against max_skip_ratio.
POLICY_DROPS = ("max_records", "mixture_weight", "question_in_another_split", "answer_in_another_split")


class Tally:
    """Counts by reason with a few examples each."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self.examples: dict[str, list[str]] = {}

    def add(self, reason: str, example: str) -> None:
        self.counts[reason] += 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < MAX_EXAMPLES:
            shown.append(str(example))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict:
        return {
            reason: {"count": n, "examples": list(self.examples.get(reason, []))}
            for reason, n in sorted(self.counts.items())
        }


@dataclass
class SourceReport:
    name: str
    kind: str
    path: str | None = None
    unit: str = "items"
    read: int = 0
    used: int = 0
    formed: int = 0
    kept: int = 0
    files_skipped: Tally = field(default_factory=Tally)
    left: Tally = field(default_factory=Tally)
    rows_dropped: Tally = field(default_factory=Tally)
    ignored_tally: Tally = field(default_factory=Tally)
    splits: dict[str, int] = field(default_factory=dict)
    # Source-specific facts (pairing use, carving, truncation); JSON-serialisable values only.
    info: dict[str, Any] = field(default_factory=dict)
    rows_started: bool = False

    def skip(self, reason: str, example: str) -> None:
        """An input item that could not be used; once rows are formed, a row dropped in cleaning."""
        (self.rows_dropped if self.rows_started else self.files_skipped).add(reason, example)

    def leave(self, reason: str, example: str) -> None:
        """A usable input item a policy passed over (e.g. an answer the pairing did not pick)."""
        self.left.add(reason, example)

    def drop(self, reason: str, example: str) -> None:
        self.rows_dropped.add(reason, example)

    def ignore(self, reason: str, example: str) -> None:
        self.ignored_tally.add(reason, example)

    def start_rows(self, formed: int) -> None:
        """The loader is done: ``formed`` rows exist, and later skips drop rows, not items."""
        self.formed, self.kept, self.rows_started = formed, formed, True

    @property
    def skipped(self) -> Counter:
        return self.files_skipped.counts

    @property
    def dropped(self) -> Counter:
        return self.rows_dropped.counts

    @property
    def ignored(self) -> Counter:
        return self.ignored_tally.counts

    @property
    def examples(self) -> dict[str, list[str]]:
        return self.files_skipped.examples

    @property
    def ignored_examples(self) -> dict[str, list[str]]:
        return self.ignored_tally.examples

    @property
    def skipped_total(self) -> int:
        return self.files_skipped.total

    @property
    def skip_ratio(self) -> float:
        return self.skipped_total / self.read if self.read else 0.0

    @property
    def drop_ratio(self) -> float:
        """Rows dropped for their content (not by a policy) per row formed."""
        bad = sum(n for reason, n in self.dropped.items() if reason not in POLICY_DROPS)
        return bad / self.formed if self.formed else 0.0

    def check(self, max_skip_ratio: float) -> None:
        """Fail with one line when too much of this source was unusable."""
        if self.read and self.skip_ratio > max_skip_ratio:
            top = ", ".join(f"{r} x{n}" for r, n in self.skipped.most_common(3))
            raise DataError(
                f"data source '{self.name}' skipped {self.skipped_total}/{self.read} {self.unit} "
                f"({self.skip_ratio:.1%}) > data.max_skip_ratio={max_skip_ratio:g} ({top}); "
                f"fix the input at {self.path} or raise data.max_skip_ratio"
            )
        if self.formed and self.drop_ratio > max_skip_ratio:
            top = ", ".join(f"{r} x{n}" for r, n in self.dropped.most_common(3) if r not in POLICY_DROPS)
            raise DataError(
                f"data source '{self.name}' dropped {self.drop_ratio:.1%} of its {self.formed} rows in cleaning "
                f"> data.max_skip_ratio={max_skip_ratio:g} ({top}); fix the input at {self.path} or raise "
                "data.max_skip_ratio"
            )

    def verify(self) -> None:
        """Fail when a ledger does not add up: some item or row went missing without a reason."""
        parts = self.used + self.skipped_total + self.left.total
        if self.read != parts:
            raise DataError(
                f"data source '{self.name}': read {self.read} {self.unit} but used + skipped + left unused = {parts} "
                f"({self.used} + {self.skipped_total} + {self.left.total}); "
                f"this is a bug in the '{self.kind}' loader, please report it"
            )
        rows = self.kept + self.rows_dropped.total
        if self.formed != rows:
            raise DataError(
                f"data source '{self.name}': formed {self.formed} rows but kept + dropped = {rows} "
                f"({self.kept} + {self.rows_dropped.total}); this is a bug in medft's data code, please report it"
            )

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "path": self.path,
            "unit": self.unit,
            "read": self.read,
            "used": self.used,
            "skipped_total": self.skipped_total,
            "left_unused_total": self.left.total,
            "skipped": self.files_skipped.to_dict(),
            "left_unused": self.left.to_dict(),
            "formed": self.formed,
            "kept": self.kept,
            "dropped_total": self.rows_dropped.total,
            "dropped": self.rows_dropped.to_dict(),
            "skip_ratio": round(self.skip_ratio, 6),
            "drop_ratio": round(self.drop_ratio, 6),
            "ignored": self.ignored_tally.to_dict(),
            "splits": dict(self.splits),
            **self.info,
        }


@dataclass
class DataReport:
    name: str
    settings: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, SourceReport] = field(default_factory=dict)
    splits: dict[str, int] = field(default_factory=dict)
    leakage: dict[str, Any] = field(default_factory=dict)
    rebalanced: list[dict] = field(default_factory=list)
    mixture: dict[str, Any] = field(default_factory=dict)
    meta_keys: list[str] = field(default_factory=list)
    fingerprint: str | None = None

    def add_source(self, name: str, kind: str, path: str | None) -> SourceReport:
        self.sources[name] = SourceReport(name=name, kind=kind, path=path)
        return self.sources[name]

    def check(self, max_skip_ratio: float) -> None:
        for source in self.sources.values():
            source.check(max_skip_ratio)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            **self.settings,
            "sources": {name: s.to_dict() for name, s in self.sources.items()},
            "splits": dict(self.splits),
            "leakage": dict(self.leakage),
            "rebalanced": list(self.rebalanced),
            "mixture": dict(self.mixture),
            "meta_keys": list(self.meta_keys),
            "fingerprint": self.fingerprint,
        }


def _top(entries: dict, n: int = 3) -> str:
    ranked = sorted(entries.items(), key=lambda kv: -kv[1]["count"])[:n]
    return ", ".join(f"{reason} {entry['count']}" for reason, entry in ranked)


def summary_table(report: dict) -> str:
    """Two lines per source, one per ledger, each written as the sum it must satisfy."""
    lines = ["source          ledger", "-" * 96]
    for name, s in report["sources"].items():
        splits = s.get("splits", {})
        why = "; ".join(p for p in (_top(s.get("skipped", {})), _top(s.get("left_unused", {}))) if p)
        lines.append(
            f"{name:<15} {s.get('unit', 'items')}: read {s['read']} = used {s.get('used', 0)} + skipped "
            f"{s['skipped_total']} + left unused {s.get('left_unused_total', 0)}" + (f"  ({why})" if why else "")
        )
        dropped = _top(s.get("dropped", {}))
        lines.append(
            f"{'':<15} rows: formed {s.get('formed', 0)} = kept {s['kept']} + dropped {s.get('dropped_total', 0)}"
            f"  -> train {splits.get('train', 0)}, validation {splits.get('validation', 0)}, test "
            f"{splits.get('test', 0)}" + (f"  ({dropped})" if dropped else "")
        )
    totals = report["splits"]
    lines.append(
        f"{'total':<15} rows: train {totals['train']}, validation {totals['validation']}, test {totals['test']}"
    )
    contamination = _contamination_line(report.get("contamination"))
    if contamination:
        lines.append(contamination)
    return "\n".join(lines)


def _contamination_line(block: dict | None) -> str | None:
    if not block:
        return None
    parts = []
    for name, result in block["benchmarks"].items():
        if "found" in result:
            parts.append(f"{name} {result['found']} of {result['items']} questions found")
        else:
            parts.append(f"{name} not checked ({result.get('error') or result.get('skipped')})")
    return "contamination: " + "; ".join(parts)
