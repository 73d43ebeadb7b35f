"""Cleaning shared by every source, applied after a loader built its records.

Text: HTML entities decoded, Unicode NFC, whitespace normalised (runs of spaces and
tabs collapsed, at most one blank line). Personal data that public QA sets still carry
now and then (resident registration numbers, phone numbers, e-mail addresses) is
replaced by a placeholder and counted. Rows left empty or longer than
``data.max_text_chars``, and exact or normalised duplicates, are skipped by reason.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections import Counter

from medft.data.records import normalise_question
from medft.data.report import SourceReport

_SPACES = re.compile(r"[ \t\u00a0\u3000]+")
_BLANK_LINES = re.compile(r"\n{3,}")

# (kind, pattern, placeholder). Digits on either side must not continue the number.
PERSONAL_DATA = (
    ("resident_registration_number", re.compile(r"(?<!\d)\d{6}\s?-\s?[1-8]\d{6}(?!\d)"), "[주민등록번호]"),
    ("email", re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "[이메일]"),
    (
        "phone_number",
        re.compile(r"(?<![\d-])(?:\+82[-. ]?)?(?:01[016789]|0(?:2|[3-6][1-5]|70|80))[-. )]?\d{3,4}[-. ]?\d{4}(?![\d-])"),
        "[전화번호]",
    ),
)


def normalise_text(text: str) -> str:
    text = unicodedata.normalize("NFC", html.unescape(text))
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def mask_personal_data(text: str, counts: Counter) -> str:
    for kind, pattern, placeholder in PERSONAL_DATA:
        text, n = pattern.subn(placeholder, text)
        if n:
            counts[kind] += n
    return text


def _record_key(record: dict) -> tuple:
    return tuple((m["role"], m["content"]) for m in record["messages"])


def _normalised_key(record: dict) -> tuple:
    return tuple((m["role"], normalise_question(m["content"])) for m in record["messages"])


def clean_split(records: list[dict], report: SourceReport, *, max_chars: int, mask: bool, masked: Counter) -> list[dict]:
    """The records worth training on, in order; every other one is counted in the report."""
    kept: list[dict] = []
    exact: set[tuple] = set()
    normalised: set[tuple] = set()
    for record in records:
        messages = []
        for message in record["messages"]:
            content = normalise_text(message["content"])
            if mask:
                content = mask_personal_data(content, masked)
            messages.append({"role": message["role"], "content": content})
        record = {**record, "messages": messages}
        if any(not m["content"] for m in messages):
            report.skip("empty_text", record["id"])
            continue
        if any(len(m["content"]) > max_chars for m in messages):
            report.skip("too_long_text", record["id"])
            continue
        key, loose = _record_key(record), _normalised_key(record)
        if key in exact:
            report.skip("duplicate", record["id"])
            continue
        if loose in normalised:
            report.skip("near_duplicate", record["id"])
            continue
        exact.add(key)
        normalised.add(loose)
        kept.append(record)
    return kept


def clean_source(by_split: dict[str, list[dict]], report: SourceReport, *, max_chars: int, mask: bool):
    masked: Counter = Counter()
    cleaned = {split: clean_split(rows, report, max_chars=max_chars, mask=mask, masked=masked)
               for split, rows in by_split.items()}  # fmt: skip
    report.info["personal_data_masked"] = dict(sorted(masked.items()))
    return cleaned
