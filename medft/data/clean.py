"""Cleaning shared by every source, applied after a loader built its records.

Text: HTML entities decoded, Unicode NFC, whitespace normalised (runs of spaces and
tabs collapsed, at most one blank line). Personal data that public QA sets still carry
now and then (resident and foreigner registration numbers, phone numbers, e-mail
addresses) is replaced by a placeholder and counted; the numbers must obey Korean
numbering rules, so ranges, amounts, dates and codes of the same shape are left alone.
Rows left empty or longer than ``data.max_text_chars``, and exact or normalised
duplicates, are skipped by reason.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections import Counter
from datetime import date

from medft.data.records import normalise_question
from medft.data.report import SourceReport

_SPACES = re.compile(r"[ \t\u00a0\u3000]+")
_BLANK_LINES = re.compile(r"\n{3,}")

# Personal data. Each pattern finds a candidate; its judge returns the kind to count, or
# None where Korean numbering rules say the figure is something else (a range, an amount).
PLACEHOLDERS = {
    "resident_registration_number": "[주민등록번호]",
    "foreigner_registration_number": "[외국인등록번호]",
    "phone_number": "[전화번호]",
    "email": "[이메일]",
}

# A digit or ASCII letter next to a candidate, or a dash/dot leading on to more digits or a
# dash to letters, means the candidate is a piece of a longer code (KD-010-1234-5678,
# 010-1234-5678-01). `Tel.02-123-4567` stays a phone number.
_LEFT = r"(?<![0-9A-Za-z_])(?<![0-9][-.])(?<![A-Za-z]-)"
_RIGHT = r"(?![0-9A-Za-z_])(?![-.][0-9])(?!-[A-Za-z])"

# ASCII only, so a Korean word glued to an address stays outside the placeholder.
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![A-Za-z0-9-])"
)

# 주민등록번호 / 외국인등록번호: YYMMDD, then a sex/century digit and six more.
_REGISTRATION = re.compile(_LEFT + r"(?P<front>\d{6})(?P<sep> ?- ?| ?)(?P<back>\d{7})" + _RIGHT)
_CENTURY = {
    "1": 1900,
    "2": 1900,
    "3": 2000,
    "4": 2000,
    "5": 1900,
    "6": 1900,
    "7": 2000,
    "8": 2000,
    "9": 1800,
    "0": 1800,
}
_FOREIGNER_DIGITS = "5678"
_CHECK_WEIGHTS = (2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5)

# Phone numbers: +82 drops the trunk 0; mobile 01x, Seoul 2, area codes 031-064, 070 internet,
# 080 toll-free, 050x personal numbers. The area code may sit in parentheses.
_PHONE = re.compile(
    _LEFT
    + r"(?:(?P<intl>\+82)[ .-]?(?:\(0\) ?)?0?|(?P<open>\()?0)"
    + r"(?P<area>1[016-9]|2|3[1-3]|4[1-4]|5[1-5]|6[1-4]|70|80|50[2-8])"
    + r"(?(open)\) ?|(?P<sep>[ .-]?))(?P<mid>\d{3,4})(?(sep)(?P=sep)|[ .-])\d{4}"
    + _RIGHT
)
# 전국대표번호 such as 1577-1234, 1644-xxxx, 1899-xxxx.
_SERVICE = re.compile(_LEFT + r"(?P<prefix>1[568]\d\d)-(?P<number>\d{4})" + _RIGHT)

# A figure glued to a counting unit, or with a currency sign before it, is a quantity.
_UNIT_AFTER = re.compile(
    r"[만천억]?[원명건개회]|[세년월일주분초배점정알병장]"
    r"|\s?(?:%|‰|(?:k?cal|[kmμu]?g|[mdμ]?[lL]|cc|IU|U|mmHg|mmol|mEq|bpm|KRW|USD)(?![A-Za-z]))"
)
_CURRENCY_BEFORE = re.compile(r"[₩￦$€¥]\s?$")


def _reads_as_quantity(match: re.Match) -> bool:
    """Ranges of amounts and counts (`100000-1500000원`) share the shapes of ID and phone numbers."""
    before = match.string[max(0, match.start() - 2) : match.start()]
    return bool(_UNIT_AFTER.match(match.string, match.end()) or _CURRENCY_BEFORE.search(before))


def _valid_birth_date(front: str, sex_digit: str) -> bool:
    """YYMMDD must be a real calendar day in the century the sex digit names."""
    try:
        date(_CENTURY[sex_digit] + int(front[:2]), int(front[2:4]), int(front[4:]))
    except ValueError:
        return False
    return True


def _checksum_holds(digits: str) -> bool:
    """Mod-11 check digit of numbers issued before October 2020 (foreigners' numbers offset by 2)."""
    total = sum(int(d) * w for d, w in zip(digits[:12], _CHECK_WEIGHTS, strict=True))  # the 13th is the check
    base = 13 if digits[6] in _FOREIGNER_DIGITS else 11
    return (base - total % 11) % 10 == int(digits[12])


def _registration_kind(match: re.Match) -> str | None:
    """Date and sex digit always; the checksum only for the bare and space-separated forms.

    Since October 2020 the six digits after the sex digit are random, for newborns and for
    anyone issued a new number whatever their birth date, so a failing checksum cannot rule
    out a hyphenated number, the form these numbers are written in. Thirteen bare digits are
    as often claim or receipt numbers, which tend to start with a date, so there the
    pre-2020 checksum must hold too (a post-2020 number written bare is the price).
    """
    digits = match["front"] + match["back"]
    if not _valid_birth_date(match["front"], digits[6]) or _reads_as_quantity(match):
        return None
    if "-" not in match["sep"] and not _checksum_holds(digits):
        return None
    return "foreigner_registration_number" if digits[6] in _FOREIGNER_DIGITS else "resident_registration_number"


def _phone_kind(match: re.Match) -> str | None:
    """Mobile, area-code and 070 subscriber numbers never start with 0; only mobiles are written bare."""
    area = match["area"]
    if match["sep"] == "" and not (area.startswith("1") or match["intl"]):
        return None
    if match["mid"].startswith("0") and not area.startswith(("80", "50")):
        return None
    return "phone_number"


def _service_kind(match: re.Match) -> str | None:
    """1500-2000, 1650-1800 kcal and 1899-1910년 read as ranges, not 전국대표번호."""
    prefix, number = int(match["prefix"]), int(match["number"])
    if prefix % 100 == 0 or prefix < number <= prefix * 1.5 or _reads_as_quantity(match):
        return None
    return "phone_number"


# E-mail first, so digits inside an address are not taken for a number.
PERSONAL_DATA = (
    (_EMAIL, lambda match: "email"),
    (_REGISTRATION, _registration_kind),
    (_PHONE, _phone_kind),
    (_SERVICE, _service_kind),
)


def normalise_text(text: str) -> str:
    text = unicodedata.normalize("NFC", html.unescape(text))
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def mask_personal_data(text: str, counts: Counter) -> str:
    """The text with every piece of personal data replaced by its kind's placeholder, counted by kind."""

    def replace(match: re.Match, judge) -> str:
        kind = judge(match)
        if kind is None:
            return match.group()
        counts[kind] += 1
        return PLACEHOLDERS[kind]

    for pattern, judge in PERSONAL_DATA:
        text = pattern.sub(lambda match, judge=judge: replace(match, judge), text)
    return text


def _record_key(record: dict) -> tuple:
    return tuple((m["role"], m["content"]) for m in record["messages"])


def _normalised_key(record: dict) -> tuple:
    return tuple((m["role"], normalise_question(m["content"])) for m in record["messages"])


def clean_split(
    records: list[dict], report: SourceReport, *, max_chars: int, mask: bool, masked: Counter
) -> list[dict]:
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
    cleaned = {
        split: clean_split(rows, report, max_chars=max_chars, mask=mask, masked=masked)
        for split, rows in by_split.items()
    }
    report.info["personal_data_masked"] = dict(sorted(masked.items()))
    return cleaned
