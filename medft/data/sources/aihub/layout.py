"""Names of the AI Hub 71762 layout and what a walk of it yields.

Questions sit under ``1.질문/<category>/<disease>/<intention>/`` and answers under ``2.답변/...``,
in folders or inside the distributed zips. A :class:`Batch` is the data files of one such
folder; a :class:`Listing` what a walk found besides them.
"""

from __future__ import annotations

import unicodedata
from typing import NamedTuple

QUESTION_DIR = "1.질문"
ANSWER_DIR = "2.답변"
MARKERS = (QUESTION_DIR, ANSWER_DIR)
# Finder and archive-tool droppings: never data, never worth a report line.
IGNORED_DIRS = {"__MACOSX", ".DS_Store", ".Trash", ".Spotlight-V100", ".fseventsd"}


class Batch(NamedTuple):
    """The data files of one folder (or one folder inside a zip), names NFC and sorted.

    ``refs[i]`` is how to read ``names[i]``: the on-disk name to join to ``base`` (a folder
    path ending in a separator) or a :class:`Member` (``base`` is None).
    """

    marker: str
    above: tuple[str, ...]  # folder (and zip stem) names above the marker, the root's own path included
    below: tuple[str, ...]  # folder names between the marker and the files
    rel_dir: str  # what reports show, relative to the root
    base: str | None
    names: list[str]
    refs: list
    may_repeat: bool  # two names may be equal (NFD and NFC spellings, or a zip listing one twice)


class Listing(NamedTuple):
    """What a walk found besides the batches it yields (and the batches, for :func:`scan`)."""

    batches: list[Batch]
    ignored: list[tuple[str, str]]  # (reason, rel): not data at all
    broken_zips: list[tuple[str, str]]  # (rel, why): archives that could not be opened
    zips: list[str]  # rel of every archive opened


def nfc(text: str) -> str:
    return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)


def fs_name(name: str) -> str:
    """NFC text of a name from disk. Bytes that are not UTF-8 (a cp949-named zip unpacked by a
    tool that copied the bytes as they were) come in as surrogate escapes: read them as cp949."""
    if name.isascii():
        return name
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raw = name.encode("utf-8", "surrogateescape")
        try:
            name = raw.decode("cp949")
        except UnicodeDecodeError:
            name = raw.decode("utf-8", "replace")
    return nfc(name)


def is_zip_name(name: str) -> bool:
    return name.lower().endswith(".zip") and not name.startswith("._")


def is_data_name(name: str) -> bool:
    return name.lower().endswith(".json") and not name.startswith("._")


def archive_stem(name: str) -> str:
    return name[:-4] if name.lower().endswith(".zip") else name


def marker_at(parts: tuple[str, ...]) -> int | None:
    """Index of the deepest ``1.질문``/``2.답변`` in ``parts``."""
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] in MARKERS:
            return i
    return None
