"""HIRA statistics tables (CSV, often CP949) as numeric question/answer records.

A statistics table is (dimension columns) -> (measure columns). A YAML of templates says, per
table, which columns identify a row and how to ask about and answer each measure; every table
row then yields ``phrasings`` questions per measure, each answered with the table's own number,
so a model learns facts that can be checked against the source. :func:`write_jsonl` stores the
records as HIRA instruction JSONL, loadable with ``kind: hira``; ``python -m medft.data.sources.hira_csv``
converts a folder of tables in one go.

Counting: ``read`` counts (table row, measure) items of tables that have a template, plus files
that could not be decoded or parsed; an item that became at least one record is ``used``
(its phrasings are the rows it formed). An item needing a blank or ``-`` cell is skipped as
``missing_value``, one needing non-numeric text in a number column as ``bad_number`` (both with
``file:row``), so no row disappears without a reason. Tables with no template are ignored
(``no_template``): a folder of downloads often holds tables nobody wrote questions for.
"""

from __future__ import annotations

import csv
import fnmatch
import functools
import hashlib
import io
import json
import operator
import random
import re
import string
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, localcontext
from pathlib import Path
from typing import Any

from medft.data.records import RecordError, make_record, normalise_question
from medft.data.report import SourceReport
from medft.runtime.errors import DataError

STRATIFY = ("measure",)
# The ledger's unit: one (table row, measure) item, or one file that could not be read as a table.
UNIT = "table items"
# Every phrasing of one table cell is the same fact: they must land in the same split, or
# the test split would ask, reworded, what training already answered.
GROUP_BY = ("file", "row", "measure")
# EUC-KR is a subset of CP949, so an EUC-KR file is reported as cp949 (same text).
DETECT_ENCODINGS = ("utf-8-sig", "cp949", "euc-kr")
MISSING = ("", "-")
YEAR_COLUMNS = ("진료년도", "진료연도", "기준년도", "기준연도", "연도", "년도")
# Fields every template may use besides the table's columns and the measure names.
VALUE_FIELD, YEAR_FIELD = "value", "year"
JSONL_FILES = {"train": "train.jsonl", "validation": "val.jsonl", "test": "test.jsonl"}
_YEAR = re.compile(r"(?<!\d)((?:19|20)\d\d)")
_NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?")
_SPACE = re.compile(r"\s+")
_OPS = {"divide": operator.truediv, "multiply": operator.mul, "add": operator.add, "subtract": operator.sub}


def default_templates() -> Path:
    from medft.config import SAMPLES_DIR

    return SAMPLES_DIR / "hira_csv" / "templates.yaml"


def column_key(name: Any) -> str:
    """Header names compare NFC and without spaces: downloads differ in both."""
    return _SPACE.sub("", unicodedata.normalize("NFC", str(name)).replace("\ufeff", ""))


# --------------------------------------------------------------------------- numbers
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
        result = functools.reduce(_OPS[op], numbers)
        result = result.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    return int(result) if places == 0 else result


# --------------------------------------------------------------------------- templates
class _Fields(string.Formatter):
    """``{name}`` is looked up whole: column names hold ``(``, ``.`` and other punctuation."""

    def get_field(self, field_name, args, kwargs):
        key = column_key(field_name)
        return kwargs[key], key


_FORMAT = _Fields()


def template_fields(text: str) -> list[str]:
    """The (normalised) field names a template uses; ValueError for a malformed template."""
    fields = []
    for _, name, spec, _ in string.Formatter().parse(text):
        if name is None:
            continue
        if not name.strip():
            raise ValueError("an empty {} field; name a column, a measure, {value} or {year}")
        if spec and "{" in spec:
            raise ValueError(f"nested fields in the format of {{{name}}} are not supported")
        fields.append(column_key(name))
    return fields


@dataclass(frozen=True)
class Derive:
    op: str
    columns: tuple[str, ...]
    places: int


@dataclass(frozen=True)
class Measure:
    name: str
    column: str | None
    derive: Derive | None
    questions: tuple[str, ...]
    answer: str

    @property
    def sources(self) -> tuple[str, ...]:
        return self.derive.columns if self.derive else (self.column,)

    def fields(self) -> set[str]:
        return {f for t in (*self.questions, self.answer) for f in template_fields(t)}


@dataclass(frozen=True)
class Table:
    name: str
    globs: tuple[str, ...]
    columns: tuple[str, ...]
    dimensions: tuple[str, ...]
    measures: tuple[Measure, ...]

    def matches(self, file_name: str, header: Iterable[str]) -> bool:
        header = set(header)
        name = unicodedata.normalize("NFC", file_name).lower()
        if self.globs and not any(fnmatch.fnmatchcase(name, g.lower()) for g in self.globs):
            return False
        return all(c in header for c in self.columns)

    def needs(self) -> set[str]:
        """Header columns the templates use (besides value, year and a measure's own name)."""
        needed = set(self.dimensions)
        for m in self.measures:
            needed |= (m.fields() - {VALUE_FIELD, YEAR_FIELD, column_key(m.name)}) | set(m.sources)
        return needed

    def numeric(self) -> set[str]:
        """Columns read as numbers: every measure's column and every operand of a derivation."""
        return {c for m in self.measures for c in m.sources} | {column_key(m.name) for m in self.measures}


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f"{where} must be a string or a list of strings")
    return tuple(value)


def _measure(name: str, spec: Any, where: str) -> Measure:
    if not isinstance(spec, dict):
        raise ValueError(f"{where} must be a mapping with questions and answer")
    questions = _strings(spec.get("questions"), f"{where}.questions")
    answer = spec.get("answer")
    if not isinstance(answer, str) or not answer.strip():
        raise ValueError(f"{where}.answer must be a template string")
    derive = None
    column = None
    if spec.get("derive") is not None:
        raw = spec["derive"]
        if not isinstance(raw, dict) or raw.get("op") not in _OPS:
            raise ValueError(f"{where}.derive.op must be one of {', '.join(_OPS)}")
        operands = _strings(raw.get("columns"), f"{where}.derive.columns")
        places = raw.get("round", 0)
        if len(operands) < 2 or not isinstance(places, int) or isinstance(places, bool) or places < 0:
            raise ValueError(f"{where}.derive needs two or more columns and round >= 0")
        derive = Derive(raw["op"], tuple(column_key(c) for c in operands), places)
    else:
        column = column_key(spec.get("column") or name)
    for text in (*questions, answer):
        try:
            template_fields(text)
        except ValueError as err:
            raise ValueError(f"{where}: template {text!r} is malformed ({err})") from None
    return Measure(str(name), column, derive, questions, answer)


def _table(raw: Any, i: int) -> Table:
    where = f"tables[{i}]"
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be a mapping with name, match, dimensions and measures")
    name = raw.get("name") or f"table{i + 1}"
    match = raw.get("match") or {}
    if not isinstance(match, dict):
        raise ValueError(f"{where}.match must be a mapping with glob and/or columns")
    globs = _strings(match["glob"], f"{where}.match.glob") if match.get("glob") else ()
    columns = _strings(match["columns"], f"{where}.match.columns") if match.get("columns") else ()
    if not globs and not columns:
        raise ValueError(f"{where}.match needs a file name glob or a list of required columns")
    dimensions = _strings(raw.get("dimensions") or [], f"{where}.dimensions") if raw.get("dimensions") else ()
    measures = raw.get("measures")
    if not isinstance(measures, dict) or not measures:
        raise ValueError(f"{where}.measures must map measure names to questions and an answer")
    return Table(
        name=str(name),
        globs=globs,
        columns=tuple(column_key(c) for c in columns),
        dimensions=tuple(column_key(c) for c in dimensions),
        measures=tuple(_measure(str(k), v, f"{where}.measures.{k}") for k, v in measures.items()),
    )


def load_templates(path: Path, key: str = "templates") -> list[Table]:
    """The table templates in ``path``; one-line DataError naming the file and the fix."""
    import yaml

    if not path.is_file():
        raise DataError(
            f"{key}={path} is not a file; point it at a templates YAML or set it to null for the shipped one"
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, yaml.YAMLError) as err:
        detail = " ".join(str(err).split())
        raise DataError(f"{key}={path} is not valid UTF-8 YAML ({detail}); fix the file") from None
    tables = data.get("tables") if isinstance(data, dict) else None
    if not isinstance(tables, list) or not tables:
        raise DataError(
            f"{key}={path} needs a top-level `tables:` list; see the shipped medft/samples/hira_csv/templates.yaml"
        )
    try:
        return [_table(raw, i) for i, raw in enumerate(tables)]
    except ValueError as err:
        raise DataError(f"{key}={path}: {err}") from None


# --------------------------------------------------------------------------- files
def decode(data: bytes, encoding: str | None = None) -> tuple[str, str] | None:
    """``(text, encoding)`` with the given encoding or the first of DETECT_ENCODINGS that fits."""
    for candidate in (encoding,) if encoding else DETECT_ENCODINGS:
        try:
            return data.decode(candidate), candidate
        except UnicodeDecodeError:
            continue
    return None


def year_of(text: Any) -> str | None:
    match = _YEAR.search(str(text or ""))
    return match.group(1) if match else None


def _csv_files(root: Path, skip: Path, report: SourceReport) -> list[Path]:
    if root.is_file():
        return [root]
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        if path.suffix.lower() == ".csv":
            found.append(path)
        elif path.resolve() != skip:
            report.ignore("not_csv", str(path))
    return found


def _header(rows: list[list[str]]) -> int | None:
    return next((i for i, row in enumerate(rows) if any(c.strip() for c in row)), None)


def _render(template: str, values: Mapping[str, Any], table: Table, measure: Measure, where: str) -> str:
    try:
        return _FORMAT.vformat(template, (), values)
    except (ValueError, TypeError) as err:
        raise DataError(
            f"template for table {table.name}, measure {measure.name} cannot format {where} ({err}); "
            "use `:,` only on number columns and fix the templates file"
        ) from None


class _Converter:
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


def _settings(name: str, src: Any) -> tuple[Path, Path, int, str | None]:
    key = f"data.sources.{name}"
    if not src.get("path"):
        raise DataError(f"{key}.path is not set: point it at a folder of HIRA statistics CSV files (or one CSV file)")
    root = Path(str(src.get("path"))).expanduser()
    if not root.exists():
        raise DataError(f"{key}.path={root} does not exist; point it at a folder of HIRA statistics CSV files")
    templates = src.get("templates")
    templates_path = Path(str(templates)).expanduser() if templates else default_templates()
    phrasings = src.get("phrasings", 2)
    if not isinstance(phrasings, int) or isinstance(phrasings, bool) or phrasings < 1:
        raise DataError(
            f"{key}.phrasings={phrasings} must be a whole number >= 1 (questions per table row and measure)"
        )
    encoding = src.get("encoding") or None
    if encoding:
        import codecs

        try:
            codecs.lookup(str(encoding))
        except LookupError:
            raise DataError(
                f"{key}.encoding={encoding} is not a known text encoding; "
                "use e.g. cp949 or utf-8-sig, or null to detect"
            ) from None
    return root, templates_path, phrasings, (str(encoding) if encoding else None)


def load(name: str, src: Any, *, seed: int, report: SourceReport, progress: bool = True) -> dict[str, list[dict]]:
    """All generated records as ``train``; medft carves validation and test (stratified by measure)."""
    from tqdm.auto import tqdm

    root, templates_path, phrasings, encoding = _settings(name, src)
    tables = load_templates(templates_path, f"data.sources.{name}.templates")
    files = _csv_files(root, templates_path.resolve(), report)
    if not files:
        raise DataError(f"data.sources.{name}.path={root} holds no .csv files; point it at HIRA statistics tables")
    base = root if root.is_dir() else root.parent
    converter = _Converter(name, seed, phrasings, report)
    records: list[dict] = []
    encodings: dict[str, str] = {}
    matched: dict[str, str] = {}
    seen_text: dict[str, str] = {}
    for path in tqdm(files, desc=f"{name}: tables", unit="file", disable=not progress):
        rel = unicodedata.normalize("NFC", path.relative_to(base).as_posix())
        decoded = decode(path.read_bytes(), encoding)
        if decoded is None:
            report.read += 1
            report.skip("undecodable_file", f"{path} (tried {encoding or ', '.join(DETECT_ENCODINGS)})")
            continue
        text, used = decoded
        encodings[rel] = used
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest in seen_text:
            report.ignore("duplicate_file", f"{rel} (same as {seen_text[digest]})")
            continue
        seen_text[digest] = rel
        try:
            rows = list(csv.reader(io.StringIO(text, newline="")))
        except csv.Error as err:
            report.read += 1
            report.skip("bad_csv", f"{path} ({err})")
            continue
        start = _header(rows)
        if start is None:
            report.ignore("empty_file", rel)
            continue
        header = [column_key(c) for c in rows[start]]
        table = next((t for t in tables if t.matches(path.name, header)), None)
        if table is None:
            report.ignore("no_template", rel)
            continue
        absent = sorted(table.needs() - set(header))
        if absent:
            report.ignore("template_columns_absent", f"{rel} (table {table.name} needs {', '.join(absent)})")
            continue
        matched[rel] = table.name
        stem = rel[: -len(path.suffix)] if path.suffix else rel
        records.extend(converter.table(table, rel, stem, header, rows[start + 1 :], used, year_of(path.name)))
    if files and not encodings:
        raise DataError(
            f"none of the {len(files)} CSV file(s) under data.sources.{name}.path={root} decodes as "
            f"{encoding or ', '.join(DETECT_ENCODINGS)}; set data.sources.{name}.encoding to the files' encoding"
        )
    if not matched:
        raise DataError(
            f"no CSV file under data.sources.{name}.path={root} matches a table in {templates_path} "
            f"({len(files)} file(s); ignored: {dict(report.ignored)}); add or fix an entry (file name glob or "
            f"required columns) in data.sources.{name}.templates"
        )
    report.info.update(
        {
            "templates": str(templates_path),
            "phrasings": phrasings,
            "encodings": encodings,
            "tables": matched,
        }
    )
    return {"train": records}


# --------------------------------------------------------------------------- JSONL
def to_jsonl_row(record: Mapping[str, Any]) -> dict:
    """A chat record as a HIRA instruction row (system turns have no place there)."""
    user = next(m["content"] for m in record["messages"] if m["role"] == "user")
    answer = next(m["content"] for m in reversed(record["messages"]) if m["role"] == "assistant")
    metadata = {k: v for k, v in record["meta"].items() if v is not None}
    return {"instruction": user, "input": "", "output": answer, "metadata": metadata}


def write_jsonl(records_by_split: Mapping[str, Sequence[Mapping[str, Any]]], out_dir: Path) -> dict[str, Path]:
    """``train.jsonl``, ``val.jsonl``, ``test.jsonl`` under ``out_dir``, readable by ``kind: hira``."""
    aliases = {"val": "validation", "dev": "validation"}
    unknown = {s for s in records_by_split if aliases.get(s, s) not in JSONL_FILES}
    if unknown:
        raise ValueError(f"unknown split names {sorted(unknown)}; use {', '.join(JSONL_FILES)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    by_split = {aliases.get(s, s): rs for s, rs in records_by_split.items()}
    paths = {}
    for split, file_name in JSONL_FILES.items():
        path = out_dir / file_name
        with path.open("w", encoding="utf-8", newline="\n") as fh:
            for record in by_split.get(split, ()):
                fh.write(json.dumps(to_jsonl_row(record), ensure_ascii=False) + "\n")
        paths[split] = path
    return paths
