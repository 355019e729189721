"""Files inside ``.zip`` and ``.gz`` archives, unpacked within limits.

An archive is kept like any received file; the worker unpacks it and receives each member
as a file of its own (so each member is imported, deduplicated and reported on its own).
Archives inside the archive (a ``.zip`` of ``.dat.gz`` files) are unpacked in the same pass,
and their files become members of the received archive (``upload.zip/day.dat``).

One :class:`Limits` covers everything a received file unpacks to, at every nesting level
together: the bytes written (counted as they are written, whatever the archive's headers
declare; nothing beyond the limit is ever written), the depth of nesting and the number
of members. An archive beyond any of them is refused whole, before any member is
received: nothing of it is stored or imported.

Members that are not logger files are skipped and listed (:attr:`Unpacked.skipped`): hidden
files (``.name``), macOS metadata (``__MACOSX/``), symbolic links, and names that would
lead out of the archive (``../x``, ``/x``). Member names never become paths: each member
is written to a numbered file in a temporary folder.

>>> kind_of(b"PK\\x03\\x04rest"), kind_of(b"\\x1f\\x8b\\x08"), kind_of(b'"TOA5"')
('zip', 'gzip', None)
"""

from __future__ import annotations

import gzip
import itertools
import shutil
import stat
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from core.errors import ParseError
from core.settings import Settings

MiB = 1024 * 1024
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Limits:
    """What one received file may unpack to (see ``docs/settings.md``)."""

    max_bytes: int
    max_depth: int
    max_members: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(settings.max_unpacked_bytes, settings.max_archive_depth, settings.max_archive_members)

    def too_big(self) -> str:
        return (f"unpacks to more than {self.max_bytes / MiB:g} MiB (limit: STATIONMANAGER_MAX_UNPACKED_MB, "
                "by default 10 × STATIONMANAGER_MAX_UPLOAD_MB)")

    def too_deep(self) -> str:
        return f"archives nested deeper than {self.max_depth} levels (limit: STATIONMANAGER_MAX_ARCHIVE_DEPTH)"

    def too_many(self) -> str:
        return f"holds more than {self.max_members} members (limit: STATIONMANAGER_MAX_ARCHIVE_MEMBERS)"


@dataclass
class Unpacked:
    """The files found in an archive (name, temporary path) and the members skipped (name, why)."""

    files: list[tuple[str, Path]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    written: int = 0  # bytes written, all levels together
    members: int = 0  # entries met, all levels together

    def warnings(self) -> list[str]:
        """The skipped members as warnings for the archive's file record.

        >>> Unpacked(skipped=[("a.zip/.DS_Store", "hidden file")]).warnings()
        ['skipped a.zip/.DS_Store: hidden file']
        """
        return [f"skipped {name}: {why}" for name, why in self.skipped]


def kind_of(head: bytes) -> str | None:
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    return None


def is_archive(path: Path) -> bool:
    with path.open("rb") as fh:
        return kind_of(fh.read(4)) is not None


def skip_reason(name: str, mode: int = 0) -> str | None:
    """Why a member called ``name`` (with unix ``mode`` bits, if the archive says) is not
    received, or None to receive it.

    >>> [skip_reason(n) for n in ("d/a.dat", "d/.a.dat", "__MACOSX/d/._a.dat", "../a.dat", "/etc/a", "C:/a")]
    [None, 'hidden file', 'macOS metadata', 'the name leads out of the archive', 'absolute path', 'absolute path']
    >>> skip_reason("a.dat", stat.S_IFLNK | 0o777)
    'symbolic link'
    """
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if ".." in parts:
        return "the name leads out of the archive"
    if "__MACOSX" in parts:
        return "macOS metadata"
    if any(p.startswith(".") for p in parts):
        return "hidden file"
    return None


@contextmanager
def members(path: Path, name: str, limits: Limits, tmp_dir: Path) -> Iterator[Unpacked]:
    """Unpack ``path`` (called ``name``) into a temporary folder under ``tmp_dir``, archives
    inside it too; yield what was found. Raises :class:`ParseError` (and leaves nothing
    behind) when the archive is damaged or goes beyond ``limits``."""
    with tempfile.TemporaryDirectory(prefix="sm-unpack-", dir=tmp_dir) as tmp:
        found = Unpacked()
        _Unpacker(limits, Path(tmp), found, name).unpack(path, name, 1)
        if not found.files:
            skipped = f" ({len(found.skipped)} skipped: {'; '.join(found.warnings())})" if found.skipped else ""
            raise ParseError(f"the archive holds no files{skipped}", file=name)
        yield found


class _Unpacker:
    def __init__(self, limits: Limits, folder: Path, found: Unpacked, top: str) -> None:
        self.limits = limits
        self.top = top  # the received file's name, for messages
        self.folder = folder
        self.found = found
        self.numbers = itertools.count()

    def unpack(self, path: Path, name: str, depth: int) -> None:
        """Write the members of archive ``path`` (at nesting ``depth``, 1 for the received file)."""
        with path.open("rb") as fh:
            kind = kind_of(fh.read(4))
        try:
            if kind == "zip":
                self._zip(path, name, depth)
            elif kind == "gzip":
                self._count_members(1, name)
                inner = name[:-3] if name.lower().endswith(".gz") else name + ".unpacked"
                with gzip.open(path) as src:
                    self._member(src, inner, depth)
            else:
                raise ParseError("not an archive", file=self.top)
        except (zipfile.BadZipFile, gzip.BadGzipFile, zlib.error, EOFError) as exc:
            raise ParseError(f"{self._which(name)}the archive is damaged: {exc}", file=self.top) from exc
        except (RuntimeError, NotImplementedError) as exc:  # encrypted, or a compression zipfile lacks
            raise ParseError(f"{self._which(name)}the archive cannot be read: {exc}", file=self.top) from exc

    def _which(self, name: str) -> str:
        """Names the archive inside the received one that a message is about."""
        return "" if name == self.top else f"{name}: "

    def _zip(self, path: Path, name: str, depth: int) -> None:
        declared = declared_entries(path)
        if declared is not None:
            self._count_members(declared, name)  # before zipfile reads a huge central directory
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if declared is None or declared != len(infos):
                self._count_members(len(infos) - (declared or 0), name)
            if sum(i.file_size for i in infos) > self.limits.max_bytes - self.found.written:
                raise ParseError(self.limits.too_big(), file=self.top)  # cheap early refusal; sizes are still counted
            for info in infos:
                if info.is_dir():
                    continue
                member = f"{name}/{info.filename}"
                why = skip_reason(info.filename, info.external_attr >> 16)
                if why:
                    self.found.skipped.append((member, why))
                    continue
                with zf.open(info) as src:
                    self._member(src, member, depth)

    def _count_members(self, n: int, name: str) -> None:
        self.found.members += n
        if self.found.members > self.limits.max_members:
            raise ParseError(self.limits.too_many(), file=self.top)

    def _member(self, src, member: str, depth: int) -> None:
        """Write one member, counting its bytes against the budget; unpack it if it is an archive."""
        target = self.folder / f"{next(self.numbers):06d}"
        with target.open("wb") as dst:
            while chunk := src.read(_CHUNK):
                if self.found.written + len(chunk) > self.limits.max_bytes:
                    raise ParseError(self.limits.too_big(), file=self.top)
                dst.write(chunk)
                self.found.written += len(chunk)
        if is_archive(target):
            if depth + 1 > self.limits.max_depth:
                raise ParseError(self.limits.too_deep(), file=self.top)
            self.unpack(target, member, depth + 1)
            target.unlink()  # its bytes still count: the budget bounds everything written
        else:
            self.found.files.append((member, target))


_EOCD = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")


def declared_entries(path: Path) -> int | None:
    """The number of entries a zip file's end record declares (zip64 too), or None when the
    record cannot be found (``zipfile`` then decides). Read before ``zipfile`` builds an
    object for every entry, so a zip declaring millions of them is refused cheaply."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        start = max(0, size - (_EOCD.size + 65535))
        fh.seek(start)
        tail = fh.read()
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) - at < _EOCD.size:
            return None
        entries = _EOCD.unpack_from(tail, at)[4]
        if entries != 0xFFFF or at < _ZIP64_LOCATOR.size:
            return entries
        sig, _disk, offset, _disks = _ZIP64_LOCATOR.unpack_from(tail, at - _ZIP64_LOCATOR.size)
        if sig != b"PK\x06\x07" or offset + _ZIP64_EOCD.size > size:
            return None
        fh.seek(offset)
        record = fh.read(_ZIP64_EOCD.size)
        if len(record) < _ZIP64_EOCD.size or record[:4] != b"PK\x06\x06":
            return None
        return _ZIP64_EOCD.unpack(record)[7]
