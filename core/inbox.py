"""The inbox folder that LoggerNet (or any sync tool) fills with logger files.

The worker scans ``STATIONMANAGER_INBOX`` (default ``HOME/inbox``) every few seconds. A file is taken once it has
settled — not modified for ``STATIONMANAGER_INBOX_SETTLE_S`` seconds — so a file still being
written is never read half-way. Files are left where they are: loggers often append to
one file, so a path is received again whenever its size or modification time changes and
settles (the new content then backfills; identical content is not received again).

Routing: ``INBOX/<station name>/…/file`` belongs to that station (created if new); a file
at the top of the inbox is routed by the logger serial or station name in its header.
Hidden and temporary files (``.*``, ``*.tmp``, ``*.part``, ``*~``) are ignored.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from core import db, ingest
from core.settings import Settings

log = logging.getLogger(__name__)

_TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".filepart", ".crdownload", "~")


def candidates(inbox: Path) -> list[Path]:
    """Files under ``inbox`` worth looking at, oldest first."""
    found = []
    for p in inbox.rglob("*"):
        rel = p.relative_to(inbox)
        if any(part.startswith(".") for part in rel.parts) or p.name.lower().endswith(_TEMP_SUFFIXES):
            continue
        if p.is_file():
            found.append(p)
    return sorted(found, key=lambda p: p.stat().st_mtime)


def station_for(inbox: Path, path: Path) -> str | None:
    """The station named by the first sub-folder, or None at the top level.

    >>> station_for(Path("/in"), Path("/in/Mast A/2025/f.dat")), station_for(Path("/in"), Path("/in/f.dat"))
    ('Mast A', None)
    """
    parts = path.relative_to(inbox).parts
    return parts[0] if len(parts) > 1 else None


def scan(conn: psycopg.Connection, settings: Settings, now: float | None = None) -> list[int]:
    """Receive settled new or changed files; return the ids of those to queue."""
    inbox = settings.inbox_dir
    if not inbox.is_dir():
        return []
    now = now or time.time()
    queued = []
    for path in candidates(inbox):
        try:
            st = path.stat()
        except FileNotFoundError:
            continue  # moved away meanwhile
        if now - st.st_mtime < settings.inbox_settle_s:
            continue  # still being written
        mtime = datetime.fromtimestamp(st.st_mtime, UTC)
        seen = db.fetch_one(conn, "inbox_seen", path=str(path))
        if seen and seen["size_bytes"] == st.st_size and seen["mtime"] == mtime:
            continue
        with conn.transaction():
            digest = ingest.sha256_of(path)
            live = db.fetch_one(conn, "live_file_by_sha", sha256=digest)
            if live:
                file_id = live["id"]  # touched, not changed: nothing new to import
            else:
                rec = ingest.receive(
                    conn, path, station=station_for(inbox, path), origin="inbox", actor="inbox",
                    original_name=str(path.relative_to(inbox)), settings=settings,
                )
                file_id = rec.id
                queued.append(rec.id)
                log.info("inbox: received %s", path.relative_to(inbox), extra={"file": path.name, "file_id": rec.id})
            conn.execute(
                db.q("inbox_mark"),
                {"path": str(path), "size_bytes": st.st_size, "mtime": mtime, "source_file_id": file_id},
            )
    return queued
