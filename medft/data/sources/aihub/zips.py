"""Listing the distributed zips without unpacking them.

A zip is listed once from its central directory; each member becomes a :class:`Member`
tuple, enough for a worker process to read it with one ``os.pread`` and no zip parsing of
its own (:mod:`medft.data.sources.aihub.reading`).
"""

from __future__ import annotations

import struct
import zipfile
from typing import NamedTuple

from medft.data.sources.aihub.layout import IGNORED_DIRS, Batch, Listing, is_data_name, marker_at, nfc

_UTF8_FLAG = 0x800


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
        at = marker_at(parts)
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
