"""Each chunk's paired groups as records, and the merged records and report of the whole source."""

from __future__ import annotations

from collections.abc import Callable

from medft.data.report import SourceReport
from medft.data.sources.aihub.parse import STAT_KEYS, GroupResult, Params, records


def with_records(name: str, policy: str) -> Callable[[list[GroupResult]], list]:
    def finish(results: list[GroupResult]) -> list:
        return [(r, records(name, policy, r.paired) if r.paired is not None else []) for r in results]

    return finish


def merge(params: Params, chunks: list[list], report: SourceReport) -> dict[str, list[dict]]:
    """Records by split and the report, in the order groups were handed out."""
    out: dict[str, list[dict]] = {}
    stats = [0] * len(STAT_KEYS)
    cp949: list[str] = []
    for chunk in chunks:
        for result, rows in chunk:
            if rows:
                out.setdefault(result.paired.split, []).extend(rows)
            for kind, reason, rel in result.events:
                if kind == "skip":
                    report.skip(reason, rel)
                elif kind == "leave":
                    report.leave(reason, rel)
                elif kind == "ignore":
                    report.ignore(reason, rel)
                else:
                    cp949.append(rel)
            stats = [a + b for a, b in zip(stats, result.stats, strict=True)]
    s = dict(zip(STAT_KEYS, stats, strict=True))
    report.read += s["read"]
    report.used += s["questions_paired"] + s["answers_used"]
    report.info["pairing"] = {
        "policy": params.policy,
        **({"cap": params.cap} if params.policy == "all" else {}),
        "groups": s["groups"],
        "questions": s["questions"],
        "questions_paired": s["questions_paired"],
        "answers": s["answers"],
        "answers_used": s["answers_used"],
        "answers_unused": s["answers"] - s["answers_used"],
        "pairs": s["pairs"],
        "groups_without_answers": s["groups_without_answers"],
        "groups_without_questions": s["groups_without_questions"],
    }
    if cp949:
        # Readable, but not UTF-8 as the dataset promises: kept, and said so.
        report.info["read_as_cp949"] = {"count": len(cp949), "examples": cp949[:3]}
    return out
