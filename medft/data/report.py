"""What the loaders read, kept and skipped, so no record disappears without a reason.

``read`` counts input items (files for AI Hub, records for PubMedQA-Ko, lines for HIRA),
``skipped`` counts input items dropped, by reason, with a few example paths or ids, and
``kept`` counts records produced. ``ignored`` lists items that are not data at all or
are exact duplicates (an archive unzipped twice), which do not count against the skip ratio. The report is written as ``data_report.json``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from medft.errors import DataError

MAX_EXAMPLES = 3


@dataclass
class SourceReport:
    name: str
    kind: str
    path: str | None = None
    read: int = 0
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    # Items deliberately not used and not counted as read (duplicate copies, non-data files).
    ignored: Counter = field(default_factory=Counter)
    ignored_examples: dict[str, list[str]] = field(default_factory=dict)
    splits: dict[str, int] = field(default_factory=dict)
    # Source-specific facts (pairing use, carving, truncation); JSON-serialisable values only.
    info: dict[str, Any] = field(default_factory=dict)

    def skip(self, reason: str, example: str) -> None:
        self.skipped[reason] += 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < MAX_EXAMPLES:
            shown.append(str(example))

    def ignore(self, reason: str, example: str) -> None:
        self.ignored[reason] += 1
        shown = self.ignored_examples.setdefault(reason, [])
        if len(shown) < MAX_EXAMPLES:
            shown.append(str(example))

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    @property
    def skip_ratio(self) -> float:
        return self.skipped_total / self.read if self.read else 0.0

    def check(self, max_skip_ratio: float) -> None:
        """Fail with one line when too much of this source was unusable."""
        if self.read and self.skip_ratio > max_skip_ratio:
            top = ", ".join(f"{r} x{n}" for r, n in self.skipped.most_common(3))
            raise DataError(
                f"data source '{self.name}' skipped {self.skipped_total}/{self.read} items "
                f"({self.skip_ratio:.1%}) > data.max_skip_ratio={max_skip_ratio:g} ({top}); "
                f"fix the input at {self.path} or raise data.max_skip_ratio"
            )

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "path": self.path,
            "read": self.read,
            "kept": self.kept,
            "skipped_total": self.skipped_total,
            "skip_ratio": round(self.skip_ratio, 6),
            "skipped": {
                reason: {"count": n, "examples": list(self.examples.get(reason, []))}
                for reason, n in sorted(self.skipped.items())
            },
            "ignored": {
                reason: {"count": n, "examples": list(self.ignored_examples.get(reason, []))}
                for reason, n in sorted(self.ignored.items())
            },
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
