"""Files inside archives, unpacked within limits.

The kinds are told from the first bytes of a file, never from its name: ``.zip`` (also
encrypted, ZipCrypto or AES), ``.7z`` (also encrypted), ``.tar`` plain or compressed
(``.tar.gz``/``.tgz``, ``.tar.bz2``, ``.tar.xz``), and single compressed files (``.gz``,
``.bz2``, ``.xz``). A compressed tar is one archive (one nesting level), read as a stream.

An archive is kept like any received file; the worker unpacks it and receives each member
as a file of its own (so each member is imported, deduplicated and reported on its own).
Archives inside the archive (a ``.zip`` of ``.dat.gz`` files, a ``.tar.gz`` in a ``.7z`` in a
``.zip``) are unpacked in the same pass, and their files become members of the received
archive (``upload.zip/day.dat``).

One :class:`Limits` covers everything a received file unpacks to, at every nesting level
together: the bytes written (counted as they are written, whatever the archive's headers
declare; nothing beyond the limit is ever written), the depth of nesting and the number
of members. The bytes a tar stream or a 7z block decompresses are bounded by the same
budget, members skipped or not, so no archive makes the worker decompress without end.
An archive beyond any of them is refused whole, before any member is received: nothing of
it is stored or imported.

Members that are not logger files are skipped and listed (:attr:`Unpacked.skipped`): hidden
files (``.name``), macOS metadata (``__MACOSX/``), symbolic and hard links, devices, named
pipes, and names that would lead out of the archive (``../x``, ``/x``). Member names never
become paths: each member is written to a numbered file in a temporary folder.

Encrypted zip and 7z archives are opened with the passwords given to :func:`members` (a
source's ``archive_password``), tried in turn; without one that opens them they fail with
a reason saying so.

>>> kind_of(b"PK\\x03\\x04rest"), kind_of(b"\\x1f\\x8b\\x08"), kind_of(b"7z\\xbc\\xaf\\x27\\x1c"), kind_of(b'"TOA5"')
('zip', 'gzip', '7z', None)
>>> kind_of(b"BZh91AY"), kind_of(b"\\xfd7zXZ\\x00\\x00"), kind_of(bytes(257) + b"ustar\\x0000"), kind_of(b"BZhello")
('bzip2', 'xz', 'tar', None)
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import shutil
import stat
import struct
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, TypeVar

import py7zr
import py7zr.exceptions
import py7zr.io
import pyzipper

from core.errors import ParseError
from core.settings import Settings

MiB = 1024 * 1024
_CHUNK = 1 << 20
#: Bytes read to tell an archive's kind (a tar's magic is at offset 257).
HEAD = 512
#: Most memory the xz decoder may use (xz -9 needs 65 MiB; a header may ask for GiBs).
XZ_MEMLIMIT = 256 * MiB
#: Largest tar extended header (long names, pax records), which ``tarfile`` reads whole.
TAR_HEADER_MAX = MiB
#: What a single compressed file's name loses when unpacked (``day.dat.gz`` → ``day.dat``).
_SUFFIX = {"gzip": ".gz", "bzip2": ".bz2", "xz": ".xz"}
#: Errors of damaged archives, per library (whatever py7zr's parser meets in a broken header).
_DAMAGED = (zipfile.BadZipFile, pyzipper.BadZipFile, gzip.BadGzipFile, zlib.error, EOFError, lzma.LZMAError,
            tarfile.TarError, py7zr.exceptions.ArchiveError, struct.error, UnicodeDecodeError)
_T = TypeVar("_T")


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


NO_PASSWORD = ("the archive is encrypted and no archive password was given: give its source an "
               "archive_password in its credentials (HOME/secrets.toml)")
WRONG_PASSWORD = ("the archive is encrypted and no archive password given opens it (or it is damaged): "
                  "check its source's archive_password (HOME/secrets.toml)")


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
    """The kind of archive whose first :data:`HEAD` bytes are ``head``, or None."""
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"7z\xbc\xaf\x27\x1c"):
        return "7z"
    if head.startswith(b"BZh") and head[3:4].isdigit() and head[3:4] != b"0":
        return "bzip2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head[257:262] == b"ustar":  # POSIX and GNU tar (not pre-POSIX "v7" tar)
        return "tar"
    return None


def is_archive(path: Path) -> bool:
    with path.open("rb") as fh:
        return kind_of(fh.read(HEAD)) is not None


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


def tar_skip_reason(info: tarfile.TarInfo) -> str | None:
    """Why a tar member is not received (only regular files are), or None."""
    if info.issym():
        return "symbolic link"
    if info.islnk():
        return "hard link"
    if info.ischr() or info.isblk():
        return "device"
    if info.isfifo():
        return "named pipe"
    if not info.isreg():
        return "not a regular file"
    return skip_reason(info.name)


def check_whole(path: Path) -> None:
    """Raise :class:`ParseError` when the archive at ``path`` cannot be read to its end (a
    download cut short, a damaged file), writing nothing. Encrypted contents are not
    checked, only that the archive's end is there."""
    with path.open("rb") as fh:
        kind = kind_of(fh.read(HEAD))
    try:
        if kind == "zip":
            with zipfile.ZipFile(path) as zf:  # a zip cut short has no central directory
                if not any(i.flag_bits & 0x1 for i in zf.infolist()) and (bad := zf.testzip()) is not None:
                    raise zipfile.BadZipFile(f"member {bad} is damaged")
        elif kind == "7z":
            try:
                with py7zr.SevenZipFile(path):  # its header is at its end
                    pass
            except py7zr.exceptions.PasswordRequired:
                pass  # an encrypted header, read whole
        elif kind == "tar":
            with path.open("rb") as raw, tarfile.open(fileobj=raw, mode="r|", tarinfo=_TarInfo) as tf:
                while tf.next() is not None:
                    tf.members.clear()  # not kept: an uncounted stream of entries
        elif kind in _SUFFIX:
            with _decompressed(kind, path) as src:
                while src.read(_CHUNK):
                    pass
    except _DAMAGED as exc:
        raise ParseError(f"the archive cannot be read to its end: {exc}", file=path.name) from exc


@contextmanager
def members(path: Path, name: str, limits: Limits, tmp_dir: Path,
            passwords: Sequence[str] | Callable[[], Sequence[str]] = ()) -> Iterator[Unpacked]:
    """Unpack ``path`` (called ``name``) into a temporary folder under ``tmp_dir``, archives
    inside it too; yield what was found. Encrypted archives are opened with one of
    ``passwords`` (or of those the callable returns, asked once the first encrypted
    archive is met). Raises :class:`ParseError` (and leaves nothing behind) when the archive
    is damaged, cannot be opened or goes beyond ``limits``."""
    with tempfile.TemporaryDirectory(prefix="sm-unpack-", dir=tmp_dir) as tmp:
        found = Unpacked()
        _Unpacker(limits, Path(tmp), found, name, passwords).unpack(path, name, 1)
        if not found.files:
            skipped = f" ({len(found.skipped)} skipped: {'; '.join(found.warnings())})" if found.skipped else ""
            raise ParseError(f"the archive holds no files{skipped}", file=name)
        yield found


class _Unpacker:
    def __init__(self, limits: Limits, folder: Path, found: Unpacked, top: str,
                 passwords: Sequence[str] | Callable[[], Sequence[str]]) -> None:
        self.limits = limits
        self.top = top  # the received file's name, for messages
        self.folder = folder
        self.found = found
        self.ask = passwords if callable(passwords) else lambda: passwords
        self.passwords: list[str] | None = None  # asked for when needed
        self.next_number = 0

    def unpack(self, path: Path, name: str, depth: int) -> None:
        """Write the members of archive ``path`` (at nesting ``depth``, 1 for the received file)."""
        with path.open("rb") as fh:
            kind = kind_of(fh.read(HEAD))
        try:
            if kind == "zip":
                self._zip(path, name, depth)
            elif kind == "7z":
                self._7z(path, name, depth)
            elif kind == "tar":
                with path.open("rb") as raw:
                    self._tar(raw, name, depth)
            elif kind in _SUFFIX:
                with _decompressed(kind, path) as src:
                    is_tar = kind_of(src.read(HEAD)) == "tar"
                with _decompressed(kind, path) as src:
                    if is_tar:
                        self._tar(src, name, depth)
                    else:
                        self._count_members(1, name)
                        suffix = _SUFFIX[kind]
                        inner = name[:-len(suffix)] if name.lower().endswith(suffix) else name + ".unpacked"
                        self._settle(self._write(src), inner, depth)
            else:
                raise ParseError("not an archive", file=self.top)
        except ParseError:
            raise
        except _DAMAGED as exc:
            raise ParseError(f"{self._which(name)}the archive is damaged: {exc}", file=self.top) from exc
        except (RuntimeError, NotImplementedError) as exc:  # a compression zipfile lacks
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
            self._check_declared(sum(i.file_size for i in infos))
            encrypted = any(i.flag_bits & 0x1 for i in infos)
        # pyzipper (zipfile's code with AES added) reads encrypted zips, ZipCrypto and AES alike
        with (pyzipper.AESZipFile(path) if encrypted else zipfile.ZipFile(path)) as zf:
            for info in zf.infolist():
                if info.is_dir():
                    continue
                member = f"{name}/{info.filename}"
                why = skip_reason(info.filename, info.external_attr >> 16)
                if why:
                    self._skip(member, why)
                    continue
                if info.flag_bits & 0x1:
                    target = self._decrypt(name, lambda pw, info=info: self._write_opened(zf, info, pw))
                else:
                    target = self._write_opened(zf, info, None)
                self._settle(target, member, depth)

    def _write_opened(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo, password: str | None) -> Path:
        with zf.open(info, pwd=password.encode() if password is not None else None) as src:
            return self._write(src)

    def _7z(self, path: Path, name: str, depth: int) -> None:
        with path.open("rb") as fh:  # a file object: py7zr then reads in this thread only
            try:
                with py7zr.SevenZipFile(fh, max_extract_size=self._budget_left()) as sz:
                    locked = sz.needs_password()
                    written = [] if locked else self._7z_members(sz, name)
            except py7zr.exceptions.PasswordRequired:  # the names are encrypted too
                locked = True

            def attempt(password: str) -> list[tuple[str, Path]]:
                fh.seek(0)
                with py7zr.SevenZipFile(fh, password=password, max_extract_size=self._budget_left()) as sz:
                    return self._7z_members(sz, name)

            if locked:
                written = self._decrypt(name, attempt)
        for member, target in written:
            self._settle(target, member, depth)

    def _7z_members(self, sz: py7zr.SevenZipFile, name: str) -> list[tuple[str, Path]]:
        """Write the regular files of an open 7z; returns them (name, path) in the archive's order."""
        files = list(sz.files)
        self._count_members(len(files), name)
        self._check_declared(sum(f.uncompressed or 0 for f in files))
        targets = []
        for f in files:
            if f.is_directory:
                continue
            if f.is_symlink or f.is_junction:
                why: str | None = "symbolic link"
            elif f.is_socket:
                why = "socket"
            else:
                why = skip_reason(f.filename, f.posix_mode or 0)
            if why:
                self._skip(f"{name}/{f.filename}", why)
            else:
                targets.append(f.filename)
        if not targets:
            return []
        writers = _SevenZipWriters(self)
        try:  # py7zr stops once its blocks decompress (members skipped or not) beyond max_extract_size
            sz.extract(targets=targets, factory=writers)
        except py7zr.exceptions.DecompressionBombError as exc:
            raise ParseError(self.limits.too_big(), file=self.top) from exc
        finally:
            writers.close()
        return [(f"{name}/{n}", p) for n, p in writers.made]

    def _tar(self, src: IO[bytes], name: str, depth: int) -> None:
        """The regular files of a tar read as a stream (``src`` decompressed already)."""
        stream = _Bounded(src, self._budget_left(), self._too_big)
        with tarfile.open(fileobj=stream, mode="r|", tarinfo=_TarInfo, encoding="utf-8", errors="replace") as tf:
            while (info := tf.next()) is not None:
                self._count_members(1, name)
                if info.isdir():
                    continue
                member = f"{name}/{info.name}"
                why = tar_skip_reason(info)
                if why:
                    self._skip(member, why)
                    continue
                member_src = tf.extractfile(info)
                assert member_src is not None  # a regular file
                self._settle(self._write(member_src), member, depth)

    def _too_big(self) -> None:
        raise ParseError(self.limits.too_big(), file=self.top)

    def _budget_left(self) -> int:
        return self.limits.max_bytes - self.found.written

    def _check_declared(self, size: int) -> None:
        if size > self._budget_left():
            self._too_big()  # cheap early refusal; sizes are still counted

    def _decrypt(self, name: str, attempt: Callable[[str], _T]) -> _T:
        """``attempt(password)`` with each password in turn (the last that worked first),
        undoing what a failed attempt wrote or counted."""
        which = self._which(name)
        if self.passwords is None:
            try:
                self.passwords = [p for p in self.ask() if p]
            except ParseError as exc:
                raise ParseError(exc.reason, file=self.top) from exc
        if not self.passwords:
            raise ParseError(which + NO_PASSWORD, file=self.top)
        for password in list(self.passwords):
            mark = (self.found.written, self.found.members, len(self.found.skipped), self.next_number)
            try:
                result = attempt(password)
            except ParseError:
                raise
            except Exception:  # noqa: BLE001 — a wrong key makes the decoders fail in any way
                self.found.written, self.found.members = mark[0], mark[1]
                del self.found.skipped[mark[2]:]
                for n in range(mark[3], self.next_number):
                    (self.folder / f"{n:06d}").unlink(missing_ok=True)
                continue
            self.passwords.remove(password)
            self.passwords.insert(0, password)
            return result
        raise ParseError(which + WRONG_PASSWORD, file=self.top)

    def _count_members(self, n: int, name: str) -> None:
        self.found.members += n
        if self.found.members > self.limits.max_members:
            raise ParseError(self.limits.too_many(), file=self.top)

    def new_target(self) -> Path:
        target = self.folder / f"{self.next_number:06d}"
        self.next_number += 1
        return target

    def count(self, n: int) -> None:
        """Count ``n`` bytes about to be written; refuse them beyond the budget."""
        if self.found.written + n > self.limits.max_bytes:
            self._too_big()
        self.found.written += n

    def _write(self, src: IO[bytes]) -> Path:
        """Write one member to a new numbered file, counting its bytes against the budget."""
        target = self.new_target()
        with target.open("wb") as dst:
            while chunk := src.read(_CHUNK):
                self.count(len(chunk))
                dst.write(chunk)
        return target

    def _skip(self, member: str, why: str) -> None:
        self.found.skipped.append((_text(member), why))

    def _settle(self, target: Path, member: str, depth: int) -> None:
        """A member written: unpack it if it is an archive, else it is one of the files found."""
        member = _text(member)
        if is_archive(target):
            if depth + 1 > self.limits.max_depth:
                raise ParseError(self.limits.too_deep(), file=self.top)
            self.unpack(target, member, depth + 1)
            target.unlink()  # its bytes still count: the budget bounds everything written
        else:
            self.found.files.append((member, target))


def _text(name: str) -> str:
    """A member's name as text the database takes (a lone surrogate becomes ``?``).

    >>> _text("a\\udcff.dat")
    'a?.dat'
    """
    return name.encode("utf-8", "replace").decode("utf-8")


class _SevenZipWriter(py7zr.io.Py7zIO):
    """Where py7zr writes one member: a numbered file, each write counted against the budget."""

    def __init__(self, unpacker: _Unpacker, target: Path) -> None:
        self.unpacker, self.file, self._size = unpacker, target.open("wb"), 0

    def write(self, s: bytes | bytearray) -> int:
        self.unpacker.count(len(s))
        self._size += len(s)
        return self.file.write(s)

    def read(self, size: int | None = None) -> bytes:
        return b""

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._size

    def flush(self) -> None:
        self.file.flush()

    def size(self) -> int:
        return self._size

    def close(self) -> None:
        self.file.close()


class _SevenZipWriters(py7zr.io.WriterFactory):
    def __init__(self, unpacker: _Unpacker) -> None:
        self.unpacker = unpacker
        self.made: list[tuple[str, Path]] = []
        self.writers: list[_SevenZipWriter] = []

    def create(self, filename: str) -> py7zr.io.Py7zIO:
        target = self.unpacker.new_target()
        self.made.append((filename, target))
        self.writers.append(_SevenZipWriter(self.unpacker, target))
        return self.writers[-1]

    def close(self) -> None:
        for w in self.writers:
            w.close()


class _TarInfo(tarfile.TarInfo):
    """A tar entry whose extended header (long name, pax records) is refused beyond
    :data:`TAR_HEADER_MAX`, as ``tarfile`` reads such a header whole into memory."""

    def _proc_member(self, tf):  # noqa: ANN001, ANN202 — tarfile's own hook
        if self.type in _EXTENDED and self.size > TAR_HEADER_MAX:
            raise tarfile.HeaderError(f"an extended header of {self.size} bytes")
        return super()._proc_member(tf)


_EXTENDED = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
             tarfile.SOLARIS_XHDTYPE)


class _Bounded:
    """Reads ``src``, calling ``refuse`` once more than ``allowance`` bytes were read."""

    def __init__(self, src: IO[bytes], allowance: int, refuse: Callable[[], None]) -> None:
        self.src, self.left, self.refuse = src, allowance, refuse

    def read(self, size: int = -1) -> bytes:
        data = self.src.read(size)
        self.left -= len(data)
        if self.left < 0:
            self.refuse()
        return data


@contextmanager
def _decompressed(kind: str, path: Path) -> Iterator[IO[bytes]]:
    """The decompressed stream of a ``gzip``, ``bzip2`` or ``xz`` file (several streams one after another too)."""
    if kind == "gzip":
        with gzip.open(path) as src:
            yield src
    elif kind == "bzip2":
        with bz2.open(path) as src:
            yield src
    else:
        with path.open("rb") as raw:
            yield _XZReader(raw)


class _XZReader:
    """An xz stream read with a bound on the decoder's memory (``lzma.open`` sets none)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.dec = lzma.LZMADecompressor(lzma.FORMAT_XZ, memlimit=XZ_MEMLIMIT)
        self.pending = b""

    def read(self, size: int = -1) -> bytes:
        size = _CHUNK if size is None or size < 0 else size
        while True:
            if self.dec.eof:  # another stream may follow
                rest = self.dec.unused_data
                self.dec = lzma.LZMADecompressor(lzma.FORMAT_XZ, memlimit=XZ_MEMLIMIT)
                self.pending = rest
                if not rest:
                    self.pending = self.raw.read(_CHUNK)
                    if not self.pending:
                        return b""
            if self.dec.needs_input and not self.pending:
                self.pending = self.raw.read(_CHUNK)
                if not self.pending:
                    raise EOFError("the xz stream ends before its end marker")
            data = self.dec.decompress(self.pending, max_length=size)
            self.pending = b""
            if data:
                return data


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
