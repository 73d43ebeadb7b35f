"""Finding and reading AI Hub 71762 JSON files in folders and in the distributed zips.

People hand the loader whatever they have: the official ``TL.zip``/``VL.zip``, an unzipped
tree, or both. Folders are walked with ``os.scandir`` (``Path.rglob`` costs several times
more on hundreds of thousands of files) and zips are listed once, never unpacked. A file is
addressed by a *ref*: a path string, or a :class:`Member` tuple that a worker process can
read with one ``os.pread`` and no zip parsing of its own.
"""

from __future__ import annotations

import os
import struct
import unicodedata
import zipfile
import zlib
from typing import Callable, NamedTuple

QUESTION_DIR = "1.질문"
ANSWER_DIR = "2.답변"
MARKERS = (QUESTION_DIR, ANSWER_DIR)
# Finder and archive-tool droppings: never data, never worth a report line.
IGNORED_DIRS = {"__MACOSX", ".DS_Store", ".Trash", ".Spotlight-V100", ".fseventsd"}
_UTF8_FLAG = 0x800
_ENCRYPTED_FLAG = 0x1
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # 30 bytes before a member's name, extra and data
_LOCAL_MAGIC = b"PK\x03\x04"
_EXTRA_GUESS = 64  # local extra fields are usually short; one pread covers header and data


class BrokenMember(Exception):
    """A zip member that cannot be read back intact (CRC, bad header, truncated, encrypted)."""


class Member(NamedTuple):
    """Where one zip member's bytes are, copied from the central directory."""

    zip_path: str
    index: int
    offset: int
    method: int
    compressed: int
    size: int
    crc: int
    flags: int


class Found(NamedTuple):
    """One candidate data file: ``rel`` is what reports show, ``parts`` are NFC names below the root."""

    ref: str | Member
    rel: str
    marker: str
    above: tuple[str, ...]  # folder (and zip) names above the marker, root's own path included
    below: tuple[str, ...]  # folder names between the marker and the file
    name: str


class Listing(NamedTuple):
    found: list[Found]
    ignored: list[tuple[str, str]]  # (reason, rel): not data at all
    broken_zips: list[tuple[str, str]]  # (rel, why): archives that could not be opened
    zips: list[str]  # rel of every archive opened


def nfc(text: str) -> str:
    return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)


def is_zip_name(name: str) -> bool:
    return name.lower().endswith(".zip") and not name.startswith("._")


def _skip_dir(name: str) -> bool:
    return name in IGNORED_DIRS


def member_name(info: zipfile.ZipInfo) -> str:
    """The member's name as NFC text with ``/`` separators.

    Zips without the UTF-8 flag get their names decoded as cp437 by :mod:`zipfile`; Korean
    names there are really UTF-8 (older macOS and Linux tools) or cp949 (Windows' own zip).
    """
    name = info.orig_filename
    if not info.flag_bits & _UTF8_FLAG:
        try:
            raw = name.encode("cp437")
        except UnicodeEncodeError:
            raw = None
        if raw is not None:
            for encoding in ("utf-8", "cp949"):
                try:
                    name = raw.decode(encoding)
                    break
                except UnicodeDecodeError:
                    continue
    return nfc(name.replace("\\", "/"))


def _visit(
    found: list[Found],
    ignored: list[tuple[str, str]],
    parts: tuple[str, ...],
    at: int | None,
    name: str,
    ref: str | Member,
    above_base: tuple[str, ...],
    rel: str,
) -> None:
    """File ``name`` whose folders below the root (or zip) are ``parts``; ``at`` is the marker's index."""
    if at is None:
        return
    if name.startswith("._") or not name.lower().endswith(".json"):
        ignored.append(("not_a_json_file", rel))
        return
    found.append(Found(ref, rel, parts[at], above_base + parts[:at], parts[at + 1 :], name))


def list_zip(
    path: str, rel_prefix: str, above_base: tuple[str, ...], listing: Listing
) -> None:
    """Add every JSON member under a ``1.질문``/``2.답변`` folder of the archive at ``path``."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as err:
        listing.broken_zips.append((rel_prefix, f"{type(err).__name__}: {err}".splitlines()[0]))
        return
    listing.zips.append(rel_prefix)
    for index, info in enumerate(infos):
        if info.is_dir():
            continue
        name = member_name(info)
        parts = tuple(p for p in name.split("/") if p and p != ".")
        if not parts or any(_skip_dir(p) for p in parts[:-1]):
            continue
        at = None
        for i in range(len(parts) - 1):
            if parts[i] in MARKERS:
                at = i
        ref = Member(
            path, index, info.header_offset, info.compress_type, info.compress_size, info.file_size, info.CRC, info.flag_bits
        )
        _visit(listing.found, listing.ignored, parts[:-1], at, parts[-1], ref, above_base, f"{rel_prefix}/{'/'.join(parts)}")


def scan(root: str, root_parts: tuple[str, ...], on_dir: Callable[[int], None] | None = None) -> Listing:
    """Everything under ``root`` (a folder or a single zip), in a stable order.

    Symlinked folders are followed once each (a link loop is cut). ``root_parts`` are the NFC
    names of ``root`` itself from the filesystem root down, so a split folder above it counts.
    """
    listing = Listing([], [], [], [])
    if os.path.isfile(root):
        zip_name = nfc(os.path.basename(root))
        list_zip(root, zip_name, root_parts[:-1] + (_stem(zip_name),), listing)
        return listing
    seen_dirs: set[tuple[int, int]] = set()
    stack: list[tuple[str, tuple[str, ...], int | None]] = [(root, (), None)]
    while stack:
        path, parts, at = stack.pop()
        try:
            st = os.stat(path)
            key = (st.st_dev, st.st_ino)
            if key in seen_dirs:
                continue
            seen_dirs.add(key)
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            listing.ignored.append(("unreadable_folder", "/".join(parts) or "."))
            continue
        if on_dir is not None:
            on_dir(len(entries))
        subdirs = []
        for entry in entries:
            name = nfc(entry.name)
            try:
                is_dir = entry.is_dir()
                is_file = not is_dir and entry.is_file()
            except OSError:
                continue
            rel = "/".join((*parts, name))
            if is_dir:
                if not _skip_dir(name):
                    sub_at = len(parts) if name in MARKERS else at
                    subdirs.append((entry.path, (*parts, name), sub_at))
            elif is_file:
                if at is None and is_zip_name(name):
                    list_zip(entry.path, rel, root_parts + parts + (_stem(name),), listing)
                else:
                    _visit(listing.found, listing.ignored, parts, at, name, entry.path, root_parts, rel)
        stack.extend(reversed(subdirs))  # depth-first in name order
    return listing


def _stem(name: str) -> str:
    return name[:-4] if name.lower().endswith(".zip") else name


# --------------------------------------------------------------------------- reading
class Readers:
    """Open archive handles for one process; ``pread`` keeps them safe to share after fork."""

    def __init__(self) -> None:
        self._fds: dict[str, int] = {}
        self._zips: dict[str, zipfile.ZipFile] = {}

    def read(self, ref: str | Member) -> bytes:
        """The file's bytes; OSError for an unreadable file, BrokenMember for a bad zip member."""
        if isinstance(ref, str):
            fd = os.open(ref, os.O_RDONLY)
            try:
                data = os.read(fd, 1 << 16)
                if len(data) < 1 << 16:
                    return data
                chunks = [data]
                while chunk := os.read(fd, 1 << 20):
                    chunks.append(chunk)
                return b"".join(chunks)
            finally:
                os.close(fd)
        return self._member(ref)

    def _fd(self, path: str) -> int:
        fd = self._fds.get(path)
        if fd is None:
            fd = self._fds[path] = os.open(path, os.O_RDONLY)
        return fd

    def _member(self, m: Member) -> bytes:
        if m.flags & _ENCRYPTED_FLAG:
            raise BrokenMember("encrypted member")
        if m.method not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            return self._via_zipfile(m)
        fd = self._fd(m.zip_path)
        head = os.pread(fd, _LOCAL_HEADER.size + 512 + _EXTRA_GUESS + m.compressed, m.offset)
        if len(head) < _LOCAL_HEADER.size:
            raise BrokenMember("truncated local header")
        fields = _LOCAL_HEADER.unpack_from(head)
        if fields[0] != _LOCAL_MAGIC:
            raise BrokenMember("bad local header signature")
        start = _LOCAL_HEADER.size + fields[-2] + fields[-1]
        data = head[start : start + m.compressed]
        if len(data) < m.compressed:
            data += os.pread(fd, m.compressed - len(data), m.offset + start + len(data))
            if len(data) < m.compressed:
                raise BrokenMember("truncated member data")
        if m.method == zipfile.ZIP_DEFLATED:
            try:
                data = zlib.decompress(data, -15)
            except zlib.error as err:
                raise BrokenMember(f"bad deflate data: {err}") from None
        if len(data) != m.size or zlib.crc32(data) != m.crc:
            raise BrokenMember("CRC or size mismatch")
        return data

    def _via_zipfile(self, m: Member) -> bytes:
        archive = self._zips.get(m.zip_path)
        if archive is None:
            archive = self._zips[m.zip_path] = zipfile.ZipFile(m.zip_path)
        try:
            return archive.read(archive.infolist()[m.index])
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError, EOFError, zlib.error, ValueError) as err:
            raise BrokenMember(str(err)) from None

    def close(self) -> None:
        for fd in self._fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        for archive in self._zips.values():
            archive.close()
        self._fds.clear()
        self._zips.clear()

    def __enter__(self) -> "Readers":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

