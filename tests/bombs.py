"""Hostile archives, built small on disk by the tests that need them."""

from __future__ import annotations

import gzip
import io
import os
import stat
import struct
import tarfile
import threading
import zipfile
import zlib
from pathlib import Path

import py7zr
import pyzipper

MiB = 1024 * 1024


def gzip_of_zeros(mib: int, copies: int = 1) -> bytes:
    """A gzip file that unpacks to ``mib × copies`` MiB of zeros: one compressed member of
    ``mib`` MiB, repeated (a gzip stream may hold several members, read one after another)."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"\0" * MiB
    member = b"".join(c.compress(block) for _ in range(mib)) + c.flush()
    return member * copies


def zip_bytes(entries: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def nested(leaf_name: str, leaf: bytes, levels: int) -> bytes:
    """``leaf`` inside ``levels`` archives, alternating zip and gzip (zip outermost)."""
    data, name = leaf, leaf_name
    for level in range(levels - 1, -1, -1):
        if level % 2:
            data, name = gzip.compress(data), name + ".gz"
        else:
            data, name = zip_bytes({name: data}), f"level{level}.zip"
    return data


def symlink_member(zf: zipfile.ZipFile, name: str, target: str) -> None:
    """A symbolic-link member as unix zip tools write it (its content is the link's target)."""
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # unix
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    zf.writestr(info, target)


def many_members(path: Path, n: int) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for i in range(n):
            zf.writestr(f"m/{i:05d}.dat", b"")
    return path


def tree_size(folder: Path) -> int:
    """Bytes of the regular files under ``folder`` (0 when it is gone). Folders removed while
    it walks (the unpacker cleaning up) are passed over: ``os.walk`` ignores their errors,
    where ``Path.rglob`` raised FileNotFoundError from the middle of its walk."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total


class PeakSize:
    """The largest size a folder reached while the block ran (sampled every millisecond)."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.peak, self._stop = folder, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            self.peak = max(self.peak, tree_size(self.folder))
            if self._stop.wait(0.001):
                return

    def __enter__(self) -> PeakSize:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def tar_bytes(entries: dict[str, bytes], mode: str = "w") -> bytes:
    """A tar (``mode`` ``w``, ``w:gz``, ``w:bz2`` or ``w:xz``) of regular files."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def tar_of_zeros(path: Path, mib: int, name: str = "zeros.dat", mode: str = "w:gz") -> Path:
    """A compressed tar holding one member of ``mib`` MiB of zeros, written without holding it in memory."""
    info = tarfile.TarInfo(name)
    info.size = mib * MiB
    with tarfile.open(path, mode) as tf:
        tf.addfile(info, _Zeros(info.size))
    return path


class _Zeros(io.RawIOBase):
    def __init__(self, n: int) -> None:
        self.left = n

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = min(len(b), self.left)
        b[:n] = bytes(n)
        self.left -= n
        return n


def sevenz_bytes(path: Path, entries: dict[str, bytes], password: str | None = None,
                 header_encryption: bool = False) -> Path:
    """A 7z archive written by py7zr (solid: every member in one compressed block)."""
    with py7zr.SevenZipFile(path, "w", password=password, header_encryption=header_encryption) as sz:
        for name, data in entries.items():
            sz.writef(io.BytesIO(data), name)
    return path


def aes_zip(path: Path, entries: dict[str, bytes], password: bytes) -> Path:
    """A zip whose members are AES-encrypted (WinZip AES, as 7-Zip and WinZip write it)."""
    with pyzipper.AESZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, encryption=pyzipper.WZ_AES) as zf:
        zf.setpassword(password)
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def zipcrypto_zip(path: Path, entries: dict[str, bytes], password: bytes) -> Path:
    """A zip whose members are encrypted the traditional PKWARE way ("ZipCrypto", what ``zip -e``
    writes; neither ``zipfile`` nor ``pyzipper`` writes it). Stored members, so the
    encrypted bytes are the member's own."""
    with path.open("wb") as out, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for name, data in entries.items():
            crc = zlib.crc32(data)
            info = zipfile.ZipInfo(name)
            keys = [0x12345678, 0x23456789, 0x34567890]
            for byte in password:
                _zc_update(keys, byte)
            header = bytes(11) + bytes([crc >> 24 & 0xFF])  # the last byte checks the password
            sealed = bytearray()
            for byte in header + data:
                k = (keys[2] | 2) & 0xFFFF
                sealed.append(byte ^ ((k * (k ^ 1)) >> 8 & 0xFF))
                _zc_update(keys, byte)
            with zf.open(info, "w") as dst:  # zipfile writes the headers; the bytes are ours
                dst._fileobj.write(bytes(sealed))
            info.CRC, info.compress_size, info.file_size = crc, len(sealed), len(data)
            info.flag_bits |= 0x1  # encrypted (zipfile clears the flags); rewrite the local header
            end = out.tell()
            out.seek(info.header_offset)
            out.write(info.FileHeader())
            out.seek(end)
            zf.start_dir = end
    return path


def _zc_update(keys: list[int], byte: int) -> None:
    keys[0] = zlib.crc32(bytes([byte]), keys[0] ^ 0xFFFFFFFF) ^ 0xFFFFFFFF
    keys[1] = ((keys[1] + (keys[0] & 0xFF)) * 134775813 + 1) & 0xFFFFFFFF
    keys[2] = zlib.crc32(bytes([keys[1] >> 24]), keys[2] ^ 0xFFFFFFFF) ^ 0xFFFFFFFF


def sevenz_renamed(path: Path, entries: dict[str, bytes], renames: dict[str, str]) -> Path:
    """A 7z whose member names py7zr would refuse to write (``../x``): written under names of
    the same length, then renamed in its (plain, not compressed) header."""
    with py7zr.SevenZipFile(path, "w") as sz:
        sz.encoded_header_mode = False
        for name, data in entries.items():
            sz.writef(io.BytesIO(data), name)
    data = bytearray(path.read_bytes())
    start = 32 + struct.unpack_from("<Q", data, 12)[0]
    size = struct.unpack_from("<Q", data, 20)[0]
    header = bytes(data[start:start + size])
    for old, new in renames.items():
        assert len(old) == len(new)
        header = header.replace(old.encode("utf-16-le"), new.encode("utf-16-le"))
    data[start:start + size] = header
    struct.pack_into("<L", data, 28, zlib.crc32(header))
    struct.pack_into("<L", data, 8, zlib.crc32(bytes(data[12:32])))
    path.write_bytes(bytes(data))
    return path
