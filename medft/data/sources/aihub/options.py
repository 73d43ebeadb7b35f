"""The source's settings (``data.sources.<name>``), checked, and the errors that point at the data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medft.data.sources.aihub.layout import ANSWER_DIR, QUESTION_DIR, Listing, fs_name, is_zip_name
from medft.runtime.errors import DataError

SOURCE_URL = "https://aihub.or.kr/aihubdata/data/view.do?dataSetSn=71762"


def missing_path(name: str) -> DataError:
    return DataError(
        f"data.sources.{name}.path is not set: download AI Hub dataset 71762 ({SOURCE_URL}) and pass "
        f"data.sources.{name}.path=<folder holding Training/ and Validation/, or TL.zip itself>"
    )


def options(name: str, src: Any) -> tuple[Path, str, int]:
    if not src.get("path"):
        raise missing_path(name)
    root = Path(str(src.get("path"))).expanduser()
    if not root.exists():
        raise DataError(
            f"data.sources.{name}.path={root} does not exist; point it at the AI Hub 71762 data ({SOURCE_URL})"
        )
    if root.is_file() and not is_zip_name(root.name):
        raise DataError(
            f"data.sources.{name}.path={root} is a file but not a .zip; point it at TL.zip/VL.zip or the "
            "folder holding them"
        )
    if root.is_dir() and fs_name(root.name) in (QUESTION_DIR, ANSWER_DIR):
        raise DataError(
            f"data.sources.{name}.path={root} is a '{fs_name(root.name)}' folder; point it at the folder that holds "
            f"both {QUESTION_DIR} and {ANSWER_DIR} (or any folder above it)"
        )
    policy = str(getattr(src.get("pairing"), "value", src.get("pairing") or "first"))
    if policy not in ("first", "random", "all"):
        raise DataError(f"data.sources.{name}.pairing={policy} must be one of first, random, all")
    cap = int(src.get("pairing_cap") or 0)
    if policy == "all" and cap < 1:
        raise DataError(f"data.sources.{name}.pairing_cap={cap} must be >= 1 with pairing=all")
    return root, policy, cap


def no_questions(name: str, root: Path, listing: Listing) -> DataError:
    if listing.broken_zips:
        hint = " (" + "; ".join(f"{rel} is not a readable zip: {why}" for rel, why in listing.broken_zips[:2]) + ")"
    elif listing.zips:
        hint = f" (found {', '.join(listing.zips[:3])}, but no member under {QUESTION_DIR}/)"
    else:
        hint = ""
    return DataError(
        f"data.sources.{name}.path={root}: no '{QUESTION_DIR}/<category>/<disease>/<intention>/*.json' files "
        "were found "
        f"in the folders or zips below it{hint}; point it at the AI Hub 71762 labelled data "
        f"(TL.zip/VL.zip or their unzipped folders, {SOURCE_URL})"
    )
