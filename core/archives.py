"""Files inside ``.zip`` and ``.gz`` archives.

An archive is kept like any received file; the worker unpacks it and receives each member
as a file of its own (so each member is imported, deduplicated and reported on its own).

>>> kind_of(b"PK\\x03\\x04rest"), kind_of(b"\\x1f\\x8b\\x08"), kind_of(b'"TOA5"')
('zip', 'gzip', None)
"""

from __future__ import annotations

import gzip
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from core.errors import ParseError

#: Most bytes unpacked from one archive (guards against zip bombs).
MAX_UNPACKED = 20 * 1024**3


def kind_of(head: bytes) -> str | None:
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    return None


def is_archive(path: Path) -> bool:
    with path.open("rb") as fh:
        return kind_of(fh.read(4)) is not None


@contextmanager
def members(path: Path, name: str) -> Iterator[list[tuple[str, Path]]]:
    """Unpack ``path`` into a temporary folder; yield ``[(member name, path), …]``."""
    with tempfile.TemporaryDirectory(prefix="sm-unpack-") as tmp:
        out: list[tuple[str, Path]] = []
        with path.open("rb") as fh:
            kind = kind_of(fh.read(4))
        try:
            if kind == "zip":
                with zipfile.ZipFile(path) as zf:
                    infos = [i for i in zf.infolist() if not i.is_dir()]
                    if sum(i.file_size for i in infos) > MAX_UNPACKED:
                        raise ParseError("the archive unpacks to more than 20 GiB", file=name)
                    for i, info in enumerate(infos):
                        member = PurePosixPath(info.filename)
                        if member.name.startswith(".") or "__MACOSX" in member.parts:
                            continue
                        target = Path(tmp) / f"{i:05d}"
                        with zf.open(info) as src, target.open("wb") as dst:
                            shutil.copyfileobj(src, dst)
                        out.append((f"{name}/{info.filename}", target))
            elif kind == "gzip":
                target = Path(tmp) / "member"
                with gzip.open(path) as src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
                inner = name[:-3] if name.lower().endswith(".gz") else name + ".unpacked"
                out.append((inner, target))
            else:
                raise ParseError("not an archive", file=name)
        except (zipfile.BadZipFile, gzip.BadGzipFile, zlib.error, EOFError) as exc:
            raise ParseError(f"the archive is damaged: {exc}", file=name) from exc
        if not out:
            raise ParseError("the archive holds no files", file=name)
        yield out
