"""Reading question and answer files: from folders, and from zip members without unpacking."""

from __future__ import annotations

import os
import struct
import zipfile
import zlib
from collections.abc import Iterator

from medft.data.sources.aihub.zips import Member

_ENCRYPTED_FLAG = 0x1
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # 30 bytes before a member's name, extra and data
_LOCAL_MAGIC = b"PK\x03\x04"
# A local header's name and extra field are rarely longer: one pread covers header and data.
_NAME_EXTRA_GUESS = 576


class BrokenMember(Exception):
    """A zip member that cannot be read back intact (CRC, bad header, truncated, encrypted)."""


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
