"""HIRA health-insurance instruction data (JSONL) as chat records.

Layout: a folder with ``train.jsonl``, ``val.jsonl`` and ``test.jsonl`` (any may be absent;
missing splits are carved from train). Each line is
``{"instruction": str, "input": str, "output": str, "metadata": {...}}``. Bad lines are
skipped with their ``file:line`` so they can be fixed in place.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medft.data.records import RESERVED_META, RecordError, clean_text, make_record
from medft.data.report import SourceReport
from medft.runtime.errors import DataError

FILES = {"train": ("train.jsonl",), "validation": ("val.jsonl", "validation.jsonl"), "test": ("test.jsonl",)}
STRATIFY = ("category",)
UNIT = "lines"
LAYOUT = (
    "a folder with train.jsonl, val.jsonl and test.jsonl, one JSON object per line: "
    '{"instruction": ..., "input": ..., "output": ..., "metadata": {...}}'
)


def format_user(instruction: str, input_text: str | None) -> str:
    """The user turn: the instruction, then its input (a table row, a case) when there is one."""
    instruction, input_text = clean_text(instruction), clean_text(input_text)
    return f"{instruction}\n\n{input_text}" if input_text else instruction


def flatten(metadata: dict, prefix: str = "") -> dict[str, Any]:
    """Nested metadata as flat meta keys (``a_b``); reserved keys get a ``metadata_`` prefix."""
    flat: dict[str, Any] = {}
    for key, value in metadata.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}_"))
            continue
        if not prefix and name in RESERVED_META:
            name = f"metadata_{name}"
        flat[name] = value
    return flat


def _files(root: Path) -> dict[str, Path]:
    found = {}
    for split, names in FILES.items():
        for file_name in names:
            if (root / file_name).is_file():
                found[split] = root / file_name
                break
    return found


def load(name: str, src: Any, *, seed: int, report: SourceReport, progress: bool = True) -> dict[str, list[dict]]:
    """Records by split from the JSONL files that exist."""
    from tqdm.auto import tqdm

    key = f"data.sources.{name}.path"
    if not src.get("path"):
        raise DataError(f"{key} is not set: point it at {LAYOUT}")
    root = Path(str(src.get("path"))).expanduser()
    if not root.is_dir():
        raise DataError(f"{key}={root} is not a folder; it must be {LAYOUT}")
    files = _files(root)
    if not files:
        raise DataError(f"{key}={root} has none of train.jsonl, val.jsonl, test.jsonl; it must be {LAYOUT}")

    out: dict[str, list[dict]] = {}
    for split, path in files.items():
        lines = path.read_bytes().removeprefix(b"\xef\xbb\xbf").splitlines()
        records = out.setdefault(split, [])
        for lineno, raw in enumerate(
            tqdm(lines, desc=f"{name}: {path.name}", unit="line", disable=not progress, leave=False), 1
        ):
            if not raw.strip():
                continue
            report.read += 1
            where = f"{path.name}:{lineno}"
            try:
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                report.skip("not_utf8", where)
                continue
            except json.JSONDecodeError:
                report.skip("invalid_json", where)
                continue
            if not isinstance(row, dict):
                report.skip("invalid_json", where)
                continue
            if not clean_text(row.get("output")):
                report.skip("missing_output", where)
                continue
            if not clean_text(row.get("instruction")):
                report.skip("missing_instruction", where)
                continue
            metadata = row.get("metadata") or {}
            if not isinstance(metadata, dict):
                report.skip("metadata_not_an_object", where)
                continue
            meta = {**flatten(metadata), "source": name, "source_split": path.stem}
            try:
                records.append(
                    make_record(
                        f"{name}/{path.stem}/{lineno}",
                        format_user(row["instruction"], row.get("input")),
                        row["output"],
                        meta,
                    )
                )
            except RecordError as err:
                report.skip(err.reason, where)
                continue
            report.used += 1
    return out
