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
from collections.abc import Iterator
from typing import NamedTuple

QUESTION_DIR = "1.질문"
ANSWER_DIR = "2.답변"
MARKERS = (QUESTION_DIR, ANSWER_DIR)
# Finder and archive-tool droppings: never data, never worth a report line.
IGNORED_DIRS = {"__MACOSX", ".DS_Store", ".Trash", ".Spotlight-V100", ".fseventsd"}
_UTF8_FLAG = 0x800
_ENCRYPTED_FLAG = 0x1
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # 30 bytes before a member's name, extra and data
_LOCAL_MAGIC = b"PK\x03\x04"
# A local header's name and extra field are rarely longer: one pread covers header and data.
_NAME_EXTRA_GUESS = 576


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


def _stem(name: str) -> str:
    return name[:-4] if name.lower().endswith(".zip") else name


def _decode_name(raw: bytes, utf8_flag: bool) -> str:
    """A member name from its bytes: UTF-8 when flagged, else the first of UTF-8, cp949, cp437 that fits.

    Zips without the UTF-8 flag come from older macOS and Linux tools (really UTF-8) or from
    Windows' own zip on a Korean system (cp949); cp437, the format's default, never fails.
    """
    for encoding in ("utf-8",) if utf8_flag else ("utf-8", "cp949"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return raw.decode("utf-8", "replace") if utf8_flag else raw.decode("cp437")


def member_name(info: zipfile.ZipInfo) -> str:
    """NFC name with ``/`` separators of a member listed by :mod:`zipfile` (which decodes as cp437)."""
    name = info.orig_filename
    if not info.flag_bits & _UTF8_FLAG:
        try:
            name = _decode_name(name.encode("cp437"), False)
        except UnicodeEncodeError:
            pass
    return nfc(name.replace("\\", "/"))


_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_CENTRAL = struct.Struct("<4s6H3L5H2L")  # one central directory entry, before name/extra/comment
_MAX32 = 0xFFFFFFFF


def _central_directory(path: str) -> list[tuple[str, Member]]:
    """(NFC name, Member) of every file member, straight from the central directory.

    :mod:`zipfile` builds a ZipInfo object per member, about 10 us each; this is a few times
    faster on the 100k+ members of TL.zip. Anything unusual raises, and the caller falls
    back to :mod:`zipfile`.
    """
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        tail_len = min(size, _EOCD.size + 0xFFFF + _ZIP64_LOCATOR.size)
        f.seek(size - tail_len)
        tail = f.read(tail_len)
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or at + _EOCD.size > len(tail):
            raise zipfile.BadZipFile("no end of central directory")
        _, disk, disk_cd, _, count, cd_size, cd_offset, _ = _EOCD.unpack_from(tail, at)
        end = size - tail_len + at
        loc = at - _ZIP64_LOCATOR.size
        if loc >= 0 and tail[loc : loc + 4] == b"PK\x06\x07":
            end -= _ZIP64_LOCATOR.size + _ZIP64_EOCD.size
            f.seek(end)
            record = f.read(_ZIP64_EOCD.size)
            if len(record) != _ZIP64_EOCD.size or record[:4] != b"PK\x06\x06":
                raise zipfile.BadZipFile("bad zip64 end of central directory")
            _, _, _, _, disk, disk_cd, _, count, cd_size, cd_offset = _ZIP64_EOCD.unpack(record)
        if disk or disk_cd:
            raise zipfile.BadZipFile("multi-disk zip")
        concat = end - cd_size - cd_offset  # bytes prepended to the archive (self-extractors)
        if concat < 0:
            raise zipfile.BadZipFile("central directory out of range")
        f.seek(cd_offset + concat)
        cd = f.read(cd_size)
    if len(cd) != cd_size:
        raise zipfile.BadZipFile("truncated central directory")
    out: list[tuple[str, Member]] = []
    append = out.append
    unpack = _CENTRAL.unpack_from
    new = tuple.__new__
    head = _CENTRAL.size
    pos = index = 0
    while pos < cd_size:
        (sig, _, _, flags, method, _, _, crc, csize, usize, n, m, k, _, _, _, offset) = unpack(cd, pos)
        if sig != b"PK\x01\x02":
            raise zipfile.BadZipFile("bad central directory entry")
        start = pos + head
        end_name = start + n
        pos = end_name + m + k
        if n and cd[end_name - 1] != 47:  # not a folder entry ("/")
            if csize == _MAX32 or usize == _MAX32 or offset == _MAX32:
                usize, csize, offset = _zip64_sizes(cd[end_name : end_name + m], usize, csize, offset)
            raw = cd[start:end_name]
            try:
                name = raw.decode("utf-8")  # flagged UTF-8, or unflagged but still UTF-8
            except UnicodeDecodeError:
                name = _decode_name(raw, bool(flags & _UTF8_FLAG))
            if not name.isascii():
                name = nfc(name)
            if "\\" in name:
                name = name.replace("\\", "/")
            append((name, new(Member, (path, index, offset + concat, method, csize, usize, crc, flags))))
        index += 1
    if index != count:
        raise zipfile.BadZipFile("central directory count mismatch")
    return out


def _zip64_sizes(extra: bytes, usize: int, csize: int, offset: int) -> tuple[int, int, int]:
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        if tag == 1:
            values = list(struct.unpack_from(f"<{length // 8}Q", extra, pos + 4))
            if usize == _MAX32:
                usize = values.pop(0)
            if csize == _MAX32:
                csize = values.pop(0)
            if offset == _MAX32:
                offset = values.pop(0)
            return usize, csize, offset
        pos += 4 + length
    raise zipfile.BadZipFile("zip64 sizes missing")


def _zipfile_members(path: str) -> list[tuple[str, Member]]:
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
    return [
        (
            member_name(info),
            Member(
                path,
                i,
                info.header_offset,
                info.compress_type,
                info.compress_size,
                info.file_size,
                info.CRC,
                info.flag_bits,
            ),
        )
        for i, info in enumerate(infos)
        if not info.is_dir()
    ]


def list_zip(path: str, rel_prefix: str, above_base: tuple[str, ...], listing: Listing) -> list[Batch]:
    """Batches of the JSON members under a ``1.질문``/``2.답변`` folder of the archive at ``path``."""
    try:
        try:
            members = _central_directory(path)
        except (zipfile.BadZipFile, struct.error, IndexError):
            members = _zipfile_members(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, struct.error) as err:
        listing.broken_zips.append((rel_prefix, f"{type(err).__name__}: {err}".splitlines()[0]))
        return []
    listing.zips.append(rel_prefix)
    folders: dict[str, list[tuple[str, Member]]] = {}
    for name, member in members:
        folder, _, base = name.rpartition("/")
        entries = folders.get(folder)
        if entries is None:
            folders[folder] = [(base, member)]
        else:
            entries.append((base, member))
    batches = []
    for folder in sorted(folders):
        parts = tuple(p for p in folder.split("/") if p and p != ".")
        at = _marker_at(parts)
        if at is None or any(p in IGNORED_DIRS for p in parts):
            continue
        rel_dir = "/".join((rel_prefix, *parts))
        entries = sorted(folders[folder])
        names = [n for n, _ in entries]
        joined = "\0".join(names) + "\0"
        if joined.count(".json\0") != len(names) or ("\0" + joined).count("\0._"):
            listing.ignored.extend(("not_a_json_file", f"{rel_dir}/{n}") for n in names if n and not is_data_name(n))
            entries = [(n, m) for n, m in entries if is_data_name(n)]
            names = [n for n, _ in entries]
        if names:
            batches.append(
                Batch(
                    parts[at],
                    above_base + parts[:at],
                    parts[at + 1 :],
                    rel_dir,
                    None,
                    names,
                    [m for _, m in entries],
                    len(set(names)) != len(names),
                )
            )
    return batches


def _marker_at(parts: tuple[str, ...]) -> int | None:
    """Index of the deepest ``1.질문``/``2.답변`` in ``parts``."""
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] in MARKERS:
            return i
    return None


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
        yield from list_zip(root, zip_name, root_parts[:-1] + (_stem(zip_name),), listing)
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
                for raw, name in zip(files, names, strict=False):
                    if is_zip_name(name):
                        yield from list_zip(
                            base + raw, "/".join((*parts, name)), root_parts + parts + (_stem(name),), listing
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


# --------------------------------------------------------------------------- reading
_FIRST_READ = 1 << 16  # one read() holds a whole question or answer file
_DIR_FD = os.open in os.supports_dir_fd and hasattr(os, "O_DIRECTORY")


def _read_rest(fd: int, first: bytes) -> bytes:
    chunks = [first]
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


class Readers:
    """Open archive handles for one process; ``pread`` keeps them safe to share after fork."""

    def __init__(self) -> None:
        self._fds: dict[str, int] = {}
        self._zips: dict[str, zipfile.ZipFile] = {}

    def read_all(self, base: str | None, refs: list) -> Iterator[bytes | Exception]:
        """Each ref's bytes in order, or the error reading it raised (OSError, BrokenMember).

        Files in a folder are opened relative to the open folder, so the kernel resolves one
        name per file rather than the whole long path.
        """
        if base is None:
            for member in refs:
                try:
                    yield self.member(member)
                except (BrokenMember, OSError) as err:
                    yield err
            return
        dir_fd = None
        if _DIR_FD:
            try:
                dir_fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
            except OSError:
                pass
        open_, read, close = os.open, os.read, os.close
        try:
            for name in refs:
                try:
                    fd = (
                        open_(name, os.O_RDONLY, dir_fd=dir_fd)
                        if dir_fd is not None
                        else open_(base + name, os.O_RDONLY)
                    )
                    try:
                        data = read(fd, _FIRST_READ)
                        if len(data) == _FIRST_READ:
                            data = _read_rest(fd, data)
                    finally:
                        close(fd)
                except OSError as err:
                    yield err
                else:
                    yield data
        finally:
            if dir_fd is not None:
                close(dir_fd)

    def _fd(self, path: str) -> int:
        fd = self._fds.get(path)
        if fd is None:
            fd = self._fds[path] = os.open(path, os.O_RDONLY)
        return fd

    def member(self, m: Member) -> bytes:
        """A member's bytes, checked against its CRC; BrokenMember when they cannot be had."""
        if m.flags & _ENCRYPTED_FLAG:
            raise BrokenMember("encrypted member")
        if m.method not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) or not hasattr(os, "pread"):
            return self._via_zipfile(m)
        fd = self._fd(m.zip_path)
        head = os.pread(fd, _LOCAL_HEADER.size + _NAME_EXTRA_GUESS + m.compressed, m.offset)
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
        """Other compression methods (bzip2, lzma) are rare, and Windows has no pread: zipfile reads those."""
        try:
            archive = self._zips.get(m.zip_path)
            if archive is None:
                archive = self._zips[m.zip_path] = zipfile.ZipFile(m.zip_path)
            return archive.read(archive.infolist()[m.index])
        except (
            zipfile.BadZipFile,
            NotImplementedError,
            RuntimeError,
            EOFError,
            zlib.error,
            ValueError,
            IndexError,
        ) as err:
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

    def __enter__(self) -> Readers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
