"""Hostile archives, built small on disk by the tests that need them."""

from __future__ import annotations

import gzip
import io
import stat
import threading
import zipfile
import zlib
from pathlib import Path

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
    """Bytes of the regular files under ``folder`` (0 when it is gone)."""
    total = 0
    for p in folder.rglob("*") if folder.exists() else ():
        try:
            if p.is_file() and not p.is_symlink():
                total += p.stat().st_size
        except FileNotFoundError:
            continue
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
