"""Table templates: which CSV files a template matches and how its measures are asked and answered.

A templates YAML lists ``tables``; each matches files by name glob and/or required columns,
names the dimension columns that identify a row, and per measure gives question phrasings, an
answer template and optionally a derivation (a ratio of two columns, say).
"""

from __future__ import annotations

import fnmatch
import operator
import re
import string
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medft.runtime.errors import DataError

# Fields every template may use besides the table's columns and the measure names.
VALUE_FIELD, YEAR_FIELD = "value", "year"
_SPACE = re.compile(r"\s+")
OPS = {"divide": operator.truediv, "multiply": operator.mul, "add": operator.add, "subtract": operator.sub}


def default_templates() -> Path:
    from medft.config import SAMPLES_DIR

    return SAMPLES_DIR / "hira_csv" / "templates.yaml"


def column_key(name: Any) -> str:
    """Header names compare NFC and without spaces: downloads differ in both."""
    return _SPACE.sub("", unicodedata.normalize("NFC", str(name)).replace("\ufeff", ""))


class _Fields(string.Formatter):
    """``{name}`` is looked up whole: column names hold ``(``, ``.`` and other punctuation."""

    def get_field(self, field_name, args, kwargs):
        key = column_key(field_name)
        return kwargs[key], key


FORMATTER = _Fields()


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
        if not isinstance(raw, dict) or raw.get("op") not in OPS:
            raise ValueError(f"{where}.derive.op must be one of {', '.join(OPS)}")
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
