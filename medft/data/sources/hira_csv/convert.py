"""Rows of a matched table as records: numbers read exactly, templates filled, every skip counted."""

from __future__ import annotations

import functools
import random
import re
import unicodedata
from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any

from medft.data.records import RecordError, make_record, normalise_question
from medft.data.report import SourceReport
from medft.data.sources.hira_csv.tables import FORMATTER, OPS, VALUE_FIELD, YEAR_FIELD, Measure, Table, column_key
from medft.runtime.errors import DataError

MISSING = ("", "-")
YEAR_COLUMNS = ("진료년도", "진료연도", "기준년도", "기준연도", "연도", "년도")
_YEAR = re.compile(r"(?<!\d)((?:19|20)\d\d)")
_NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?")


class _Skip(Exception):
    """One (row, measure) item cannot become a record; ``reason`` goes to the report."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason, self.detail = reason, detail


def parse_number(text: str | None) -> int | Decimal | None:
    """A table cell as a number: ``None`` when blank or ``-``; ValueError for other text.

    Thousands separators and spaces are dropped. Decimals stay ``Decimal`` so an answer prints
    exactly the digits of the table (``12.50`` stays ``12.50``).
    """
    cleaned = re.sub(r"[\s,]", "", unicodedata.normalize("NFKC", text or ""))
    if cleaned in MISSING:
        return None
    if not _NUMBER.fullmatch(cleaned):
        raise ValueError(f"not a number: {text!r}")
    return Decimal(cleaned) if "." in cleaned else int(cleaned)


def _derive(op: str, values: Sequence[int | Decimal], places: int) -> int | Decimal:
    with localcontext() as ctx:
        ctx.prec = 60
        numbers = [Decimal(v) for v in values]
        if op == "divide" and any(v == 0 for v in numbers[1:]):
            raise _Skip("zero_denominator")
        result = functools.reduce(OPS[op], numbers)
        result = result.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    return int(result) if places == 0 else result


def year_of(text: Any) -> str | None:
    match = _YEAR.search(str(text or ""))
    return match.group(1) if match else None


def header_index(rows: list[list[str]]) -> int | None:
    return next((i for i, row in enumerate(rows) if any(c.strip() for c in row)), None)


def _render(template: str, values: Mapping[str, Any], table: Table, measure: Measure, where: str) -> str:
    try:
        return FORMATTER.vformat(template, (), values)
    except (ValueError, TypeError) as err:
        raise DataError(
            f"template for table {table.name}, measure {measure.name} cannot format {where} ({err}); "
            "use `:,` only on number columns and fix the templates file"
        ) from None


class Converter:
    """Turns the rows of matched tables into records, remembering questions across files."""

    def __init__(self, name: str, seed: int, phrasings: int, report: SourceReport) -> None:
        self.name, self.seed, self.phrasings, self.report = name, seed, phrasings, report
        self.answers: dict[str, str] = {}

    def _values(self, table: Table, measure: Measure, row: Mapping[str, str], year: str | None, numeric: set[str]):
        """The template fields of one item, or _Skip naming the first missing or bad cell."""
        needed = measure.fields() | set(measure.sources) | set(table.dimensions)
        values: dict[str, Any] = {YEAR_FIELD: year}
        measure_key = column_key(measure.name)
        for field in sorted((needed - {VALUE_FIELD, YEAR_FIELD, measure_key}) | set(measure.sources)):
            if field in numeric:
                try:
                    values[field] = parse_number(row[field])
                except ValueError:
                    raise _Skip("bad_number", field) from None
            else:
                values[field] = unicodedata.normalize("NFC", row[field]).strip() or None
            if values[field] is None:
                raise _Skip("missing_value", field)
        if YEAR_FIELD in needed and year is None:
            raise _Skip("missing_value", YEAR_FIELD)
        if measure.derive:
            value = _derive(measure.derive.op, [values[c] for c in measure.derive.columns], measure.derive.places)
        else:
            value = values[measure.column]
        values[VALUE_FIELD] = values[measure_key] = value
        return values

    def table(
        self, table: Table, rel: str, stem: str, header: list[str], rows: list[list[str]], encoding: str, file_year
    ):
        """Records of one table; every item not kept is counted with ``file:row``."""
        out: list[dict] = []
        numeric = table.numeric()
        year_column = next((c for c in YEAR_COLUMNS if c in header), None)
        for row_no, cells in enumerate(rows, 1):
            where = f"{rel}:{row_no}"
            if not any(c.strip() for c in cells):
                self.report.ignore("blank_row", where)
                continue
            extra = cells[len(header) :]
            if any(c.strip() for c in extra):
                for _ in table.measures:
                    self.report.read += 1
                    self.report.skip("ragged_row", f"{where} ({len(cells)} cells, header has {len(header)})")
                continue
            cells = cells + [""] * (len(header) - len(cells))
            row = {}
            for column, cell in zip(header, cells, strict=False):
                row.setdefault(column, cell)
            year = (year_of(row[year_column]) if year_column else None) or file_year
            for measure in table.measures:
                out.extend(self._item(table, measure, row, row_no, where, rel, stem, year, encoding, numeric))
        return out

    def _item(self, table, measure, row, row_no, where, rel, stem, year, encoding, numeric) -> list[dict]:
        try:
            values = self._values(table, measure, row, year, numeric)
        except _Skip as skip:
            self.report.read += 1
            detail = f" ({skip.detail})" if skip.detail else ""
            self.report.skip(skip.reason, f"{where}{detail}")
            return []
        answer = _render(measure.answer, values, table, measure, where)
        # Every phrasing is rendered and remembered, not only the chosen ones, so a row that
        # repeats or contradicts an earlier one is caught whichever phrasings each drew.
        questions = [_render(q, values, table, measure, where) for q in measure.questions]
        keys = [normalise_question(q) for q in questions]
        if any(self.answers.get(key, answer) != answer for key in keys):
            self.report.read += 1
            self.report.skip("ambiguous_question", f"{where} (same question as an earlier row, other answer)")
            return []
        count = min(self.phrasings, len(questions))
        rng = random.Random(f"{self.seed}|{rel}|{row_no}|{measure.name}")
        picks = sorted(rng.sample(range(len(questions)), count))
        fresh = [(k, questions[k]) for k in picks if keys[k] not in self.answers]
        for key in keys:
            self.answers[key] = answer
        if not fresh:
            self.report.ignore("duplicate_question", where)
            return []
        meta = {
            "source": self.name,
            "file": rel,
            "row": str(row_no),
            "year": year,
            "table": table.name,
            "measure": measure.name,
            "encoding": encoding,
        }
        records, failed = [], None
        for k, text in fresh:
            try:
                records.append(make_record(f"{self.name}/{stem}/{row_no}/{measure.name}/{k + 1}", text, answer, meta))
            except RecordError as err:
                failed = failed or err.reason
        # One item, one entry in the ledger: used when any phrasing became a record.
        self.report.read += 1
        if records:
            self.report.used += 1
        else:
            self.report.skip(failed, where)
        return records
