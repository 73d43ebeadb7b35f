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

import csv
import hashlib
import io
import json
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medft.data.report import SourceReport
from medft.data.sources.hira_csv.convert import MISSING, YEAR_COLUMNS, Converter, header_index, parse_number, year_of
from medft.data.sources.hira_csv.tables import (
    VALUE_FIELD,
    YEAR_FIELD,
    Derive,
    Measure,
    Table,
    column_key,
    default_templates,
    load_templates,
    template_fields,
)
from medft.runtime.errors import DataError

__all__ = [
    "DETECT_ENCODINGS",
    "GROUP_BY",
    "JSONL_FILES",
    "MISSING",
    "STRATIFY",
    "UNIT",
    "VALUE_FIELD",
    "YEAR_COLUMNS",
    "YEAR_FIELD",
    "Derive",
    "Measure",
    "Table",
    "column_key",
    "decode",
    "default_templates",
    "load",
    "load_templates",
    "parse_number",
    "template_fields",
    "to_jsonl_row",
    "write_jsonl",
    "year_of",
]

STRATIFY = ("measure",)
# The ledger's unit: one (table row, measure) item, or one file that could not be read as a table.
UNIT = "table items"
# Every phrasing of one table cell is the same fact: they must land in the same split, or
# the test split would ask, reworded, what training already answered.
GROUP_BY = ("file", "row", "measure")
# EUC-KR is a subset of CP949, so an EUC-KR file is reported as cp949 (same text).
DETECT_ENCODINGS = ("utf-8-sig", "cp949", "euc-kr")
JSONL_FILES = {"train": "train.jsonl", "validation": "val.jsonl", "test": "test.jsonl"}


def decode(data: bytes, encoding: str | None = None) -> tuple[str, str] | None:
    """``(text, encoding)`` with the given encoding or the first of DETECT_ENCODINGS that fits."""
    for candidate in (encoding,) if encoding else DETECT_ENCODINGS:
        try:
            return data.decode(candidate), candidate
        except UnicodeDecodeError:
            continue
    return None


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
    converter = Converter(name, seed, phrasings, report)
    records: list[dict] = []
    encodings: dict[str, str] = {}
    matched: dict[str, str] = {}
    seen_text: dict[str, str] = {}
    for path in tqdm(files, desc=f"{name}: tables", unit="file", disable=not progress, leave=False):
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
        start = header_index(rows)
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
