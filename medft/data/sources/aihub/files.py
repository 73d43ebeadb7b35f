"""Finding and reading AI Hub 71762 JSON files in folders and in the distributed zips.

People hand the loader whatever they have: the official ``TL.zip``/``VL.zip``, an unzipped
tree, or both. Folders are walked with ``os.scandir`` (``Path.rglob`` costs several times
more on hundreds of thousands of files) and zips are listed once, never unpacked. A file is
addressed by a *ref*: a path string, or a :class:`Member` tuple that a worker process can
read with one ``os.pread`` and no zip parsing of its own.

The walk is here; the layout's names in :mod:`~medft.data.sources.aihub.layout`, zip listing in
:mod:`~medft.data.sources.aihub.zips`, reading in :mod:`~medft.data.sources.aihub.reading`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from medft.data.sources.aihub.layout import (
    ANSWER_DIR,
    IGNORED_DIRS,
    MARKERS,
    QUESTION_DIR,
    Batch,
    Listing,
    archive_stem,
    fs_name,
    is_data_name,
    is_zip_name,
    nfc,
)
from medft.data.sources.aihub.reading import BrokenMember, Readers
from medft.data.sources.aihub.zips import Member, _central_directory, _zipfile_members, list_zip, member_name

__all__ = [
    "ANSWER_DIR",
    "IGNORED_DIRS",
    "MARKERS",
    "QUESTION_DIR",
    "Batch",
    "BrokenMember",
    "Listing",
    "Member",
    "Readers",
    "_central_directory",
    "_zipfile_members",
    "fs_name",
    "is_data_name",
    "is_zip_name",
    "list_zip",
    "member_name",
    "nfc",
    "scan",
    "walk",
]

Frame = tuple[str, tuple[str, ...], "int | None"]  # (path, NFC names below the root, marker index)


def walk(root: str, root_parts: tuple[str, ...], listing: Listing) -> Iterator[Batch | None]:
    """Every batch under ``root`` (a folder or a single zip), in a stable order.

    Answer folders and archives come first, then ``None``, then the question folders: from
    then on a question folder completes its group as soon as it is listed, so its files can
    be parsed while the walk goes on. Symlinked folders are followed once each (a link loop
    is cut). ``root_parts`` are the NFC names of ``root`` itself from the filesystem root
    down, so a split folder above it counts. Non-data files and unreadable archives are
    noted in ``listing``.
    """
    if os.path.isfile(root):
        zip_name = fs_name(os.path.basename(root))
        yield from list_zip(root, zip_name, root_parts[:-1] + (archive_stem(zip_name),), listing)
        yield None
        return
    seen: set[tuple[int, int]] = set()
    deferred: list[Frame] = []
    yield from _walk([(root, (), None)], root_parts, listing, seen, deferred)
    yield None
    yield from _walk(deferred[::-1], root_parts, listing, seen, None)


def _walk(
    stack: list[Frame],
    root_parts: tuple[str, ...],
    listing: Listing,
    seen: set[tuple[int, int]],
    deferred: list[Frame] | None,
) -> Iterator[Batch]:
    """Depth-first in name order; question folders go to ``deferred`` when it is a list."""
    while stack:
        path, parts, at = stack.pop()
        try:
            st = os.stat(path)
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            dirs, files = [], []
            with os.scandir(path) as it:
                for entry in it:
                    try:
                        (dirs if entry.is_dir() else files).append(entry.name)
                    except OSError:
                        files.append(entry.name)
        except OSError:
            listing.ignored.append(("unreadable_folder", "/".join(parts) or "."))
            continue
        base = path if path.endswith(os.sep) else path + os.sep
        if files:
            files.sort()
            # One C-speed pass over all names answers the usual case: ASCII ``*.json`` only.
            joined = "\0".join(files) + "\0"
            names = files if joined.isascii() else [fs_name(n) for n in files]
            renamed = names is not files and names != files
            if at is None:
                for raw, name in zip(files, names, strict=True):
                    if is_zip_name(name):
                        yield from list_zip(
                            base + raw, "/".join((*parts, name)), root_parts + parts + (archive_stem(name),), listing
                        )
            else:
                rel_dir = "/".join(parts)
                if joined.count(".json\0") != len(files) or ("\0" + joined).count("\0._"):
                    keep = [i for i, n in enumerate(names) if is_data_name(n)]
                    kept = set(keep)
                    listing.ignored.extend(
                        ("not_a_json_file", f"{rel_dir}/{n}") for i, n in enumerate(names) if i not in kept
                    )
                    files, names = [files[i] for i in keep], [names[i] for i in keep]
                if names:
                    yield Batch(
                        parts[at], root_parts + parts[:at], parts[at + 1 :], rel_dir, base, names, files, renamed
                    )
        subdirs = []
        for raw in sorted(dirs, reverse=True):  # popped in name order: depth-first, sorted
            name = fs_name(raw)
            if name in IGNORED_DIRS:
                continue
            frame = (base + raw, (*parts, name), len(parts) if name in MARKERS else at)
            if deferred is not None and name == QUESTION_DIR:
                deferred.append(frame)
            else:
                subdirs.append(frame)
        stack.extend(subdirs)


def scan(root: str, root_parts: tuple[str, ...]) -> Listing:
    """The whole walk at once (see :func:`walk`)."""
    listing = Listing([], [], [], [])
    listing.batches.extend(b for b in walk(root, root_parts, listing) if b is not None)
    return listing
