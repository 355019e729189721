"""The inbox folder that LoggerNet (or any sync tool) fills with logger files.

The worker scans ``STATIONMANAGER_INBOX`` (default ``HOME/inbox``) every few seconds. A file is taken once it has
settled — not modified for ``STATIONMANAGER_INBOX_SETTLE_S`` seconds — so a file still being
written is never read half-way. Files are left where they are: loggers often append to
one file, so a path is received again whenever its size or modification time changes and
settles (the new content then backfills; identical content is not received again).

Routing: ``INBOX/<station name>/…/file`` belongs to that station (created if new); a file
at the top of the inbox is routed by the logger serial or station name in its header.
Hidden and temporary files (``.*``, ``*.tmp``, ``*.part``, ``*~``) are ignored.

Only regular files that lie inside the inbox are read. Symbolic links (to files or to
folders) are never followed, hard links (a file with more than one name) and anything
that is not a regular file (a pipe, a device) are not read, and the home folder
(``STATIONMANAGER_HOME``: the user file, the database, the file store) is never entered
when the inbox holds it. Each such entry is *refused*: logged as a warning once, and
listed with its reason (:func:`refused`, the Files page) while it stays in the inbox. A file
is opened without following any link on its way (``O_NOFOLLOW`` at every folder) and
copied before it is received, so a file swapped for a link meanwhile is refused too.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from core import db, home, ingest
from core.settings import Settings

log = logging.getLogger(__name__)

_TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".filepart", ".crdownload", "~")


LINK = "symbolic link refused (links in the inbox are never followed)"
HARD_LINK = "hard link refused (the file has {n} names; copy it into the inbox instead)"
NOT_A_FILE = "not a regular file (a pipe, socket or device)"
HOME_FOLDER = "the StationManager home folder (STATIONMANAGER_HOME) is never read from the inbox"
CHANGED = "replaced while being read (by a link?); not read"


@dataclass
class Entry:
    """A regular file found in the inbox, with its ``lstat``."""

    path: Path
    stat: os.stat_result


def candidates(inbox: Path, home_dir: Path | None = None) -> tuple[list[Entry], dict[Path, tuple[os.stat_result, str]]]:
    """Files under ``inbox`` worth looking at (oldest first), and the entries refused (with
    their ``lstat`` and the reason). No link is followed; ``home_dir`` is never entered."""
    home_id = _identity(home_dir) if home_dir is not None else None
    found: list[Entry] = []
    refused: dict[Path, tuple[os.stat_result, str]] = {}
    root = os.lstat(inbox)
    if (root.st_dev, root.st_ino) == home_id:
        return [], {inbox: (root, HOME_FOLDER)}
    folders = [inbox]
    while folders:
        folder = folders.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:  # unreadable, or removed meanwhile
            log.warning("inbox: cannot read %s: %s", folder, exc)
            continue
        for e in entries:
            if e.name.startswith("."):
                continue
            try:
                st = e.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # moved away meanwhile
            path = Path(e.path)
            if stat.S_ISLNK(st.st_mode):
                refused[path] = (st, LINK)
            elif stat.S_ISDIR(st.st_mode):
                if (st.st_dev, st.st_ino) == home_id:
                    refused[path] = (st, HOME_FOLDER)
                else:
                    folders.append(path)
            elif e.name.lower().endswith(_TEMP_SUFFIXES):
                continue
            elif not stat.S_ISREG(st.st_mode):
                refused[path] = (st, NOT_A_FILE)
            elif st.st_nlink > 1:
                refused[path] = (st, HARD_LINK.format(n=st.st_nlink))
            else:
                found.append(Entry(path, st))
    return sorted(found, key=lambda f: f.stat.st_mtime), refused


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def copy_out(inbox: Path, entry: Entry, folder: Path) -> Path | None:
    """Copy ``entry`` into ``folder`` without following any link on the way; None when it is
    no longer the regular file that was found (swapped for a link, a hard link, removed)."""
    rel = entry.path.relative_to(inbox)
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(inbox, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for part in rel.parts[:-1]:
                inner = os.open(part, flags | os.O_DIRECTORY, dir_fd=fd)
                os.close(fd)
                fd = inner
            src = os.open(rel.parts[-1], flags | os.O_NONBLOCK, dir_fd=fd)
        finally:
            os.close(fd)
    except OSError:  # ELOOP: a link now; ENOTDIR, ENOENT: moved
        return None
    with os.fdopen(src, "rb") as fh:
        st = os.fstat(fh.fileno())
        if (not stat.S_ISREG(st.st_mode) or st.st_nlink != 1
                or (st.st_dev, st.st_ino) != (entry.stat.st_dev, entry.stat.st_ino)):
            return None
        with tempfile.NamedTemporaryFile(dir=folder, prefix="sm-inbox-", delete=False) as dst:
            shutil.copyfileobj(fh, dst)
    return Path(dst.name)


def station_for(inbox: Path, path: Path) -> str | None:
    """The station named by the first sub-folder, or None at the top level.

    >>> station_for(Path("/in"), Path("/in/Mast A/2025/f.dat")), station_for(Path("/in"), Path("/in/f.dat"))
    ('Mast A', None)
    """
    parts = path.relative_to(inbox).parts
    return parts[0] if len(parts) > 1 else None


def scan(conn: psycopg.Connection, settings: Settings, now: float | None = None) -> list[int]:
    """Receive settled new or changed files; return the ids of those to queue. Entries
    refused are recorded (and logged once each)."""
    inbox = settings.inbox_dir
    if not inbox.is_dir():
        return []
    now = now or time.time()
    queued = []
    found, refused = candidates(inbox, settings.home.resolve())
    for entry in found:
        path, st = entry.path, entry.stat
        if now - st.st_mtime < settings.inbox_settle_s:
            continue  # still being written
        mtime = datetime.fromtimestamp(st.st_mtime, UTC)
        seen = db.fetch_one(conn, "inbox_seen", path=str(path))
        if seen and seen["refused"] is None and seen["size_bytes"] == st.st_size and seen["mtime"] == mtime:
            continue
        copy = copy_out(inbox, entry, home.process_tmp(settings))
        if copy is None:
            refused[path] = (st, CHANGED)
            continue
        try:
            with conn.transaction():
                digest = ingest.sha256_of(copy)
                live = db.fetch_one(conn, "live_file_by_sha", sha256=digest)
                if live:
                    file_id = live["id"]  # touched, not changed: nothing new to import
                else:
                    rec = ingest.receive(
                        conn, copy, station=station_for(inbox, path), origin="inbox", actor="inbox",
                        original_name=str(path.relative_to(inbox)), settings=settings,
                    )
                    file_id = rec.id
                    queued.append(rec.id)
                    log.info("inbox: received %s", path.relative_to(inbox),
                             extra={"file": path.name, "file_id": rec.id})
                conn.execute(
                    db.q("inbox_mark"),
                    {"path": str(path), "size_bytes": st.st_size, "mtime": mtime, "source_file_id": file_id},
                )
        finally:
            copy.unlink()
    _record_refused(conn, refused)
    return queued


def _record_refused(conn: psycopg.Connection, refused: dict[Path, tuple[os.stat_result, str]]) -> None:
    """Record the entries refused in this scan (a warning the first time each is refused for
    a reason) and forget those no longer in the inbox."""
    with conn.transaction():
        for path, (st, reason) in refused.items():
            seen = db.fetch_one(conn, "inbox_seen", path=str(path))
            if seen is None or seen["refused"] != reason:
                log.warning("inbox: %s: %s", path, reason, extra={"file": path.name})
            conn.execute(db.q("inbox_refuse"), {
                "path": str(path), "size_bytes": st.st_size,
                "mtime": datetime.fromtimestamp(st.st_mtime, UTC), "reason": reason})
        conn.execute(db.q("inbox_forget_refused"), {"paths": [str(p) for p in refused]})


def refused(conn: psycopg.Connection) -> list[dict]:
    """Entries of the inbox that are not read (links, hard links, pipes, the home folder),
    with the reason and when they were last seen."""
    return db.fetch_all(conn, "inbox_refused")
