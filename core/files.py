"""Received files for the Files and Upload pages: listing, upload, originals."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import psycopg

from core import db, home, ingest, jobs
from core.errors import NotFound, StationManagerError
from core.settings import Settings, get_settings

STATUSES = ("queued", "importing", "imported", "failed", "duplicate", "needs station", "unpacked")


def list_files(
    conn: psycopg.Connection, *, station: str | None = None, status: str | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """Files, newest first, with their station name; ``station='-'`` means "no station"."""
    return db.fetch_all(conn, "list_files", station=station, status=status, limit=limit)


def warnings_text(rows: list[dict[str, Any]]) -> list[str]:
    """Each file's warnings as one text (``""`` when none), for a table column.

    >>> warnings_text([{"warnings": ["line 4: Height 'x' is not a number", "stamps read as period start"]},
    ...                {"warnings": []}, {}])
    ["line 4: Height 'x' is not a number; stamps read as period start", '', '']
    """
    return ["; ".join(r.get("warnings") or []) for r in rows]


def get_file(conn: psycopg.Connection, file_id: int) -> dict[str, Any]:
    row = db.fetch_one(conn, "source_file", id=file_id)
    if row is None:
        raise NotFound(f"no file {file_id}")
    return row


def original_path(row: dict[str, Any], settings: Settings | None = None) -> Path:
    """Where the original bytes of a received file are kept."""
    return ingest.stored_path(settings or get_settings(), row["sha256"])


def upload(
    uploads: list[tuple[str, bytes]], *, station: str | None, actor: str,
    settings: Settings | None = None,
) -> list[int]:
    """Receive uploaded files (name, content) and queue their import; returns their ids.

    Only hashing and storing happen here, never parsing: the worker imports them.
    """
    settings = settings or get_settings()
    limit = settings.max_upload_mb * 1024 * 1024
    too_big = [name for name, data in uploads if len(data) > limit]
    if too_big:
        raise StationManagerError(
            f"larger than {settings.max_upload_mb} MiB (STATIONMANAGER_MAX_UPLOAD_MB): {', '.join(too_big)}"
        )
    with tempfile.TemporaryDirectory(prefix="sm-upload-", dir=home.process_tmp(settings)) as tmp:
        paths = []
        for i, (name, data) in enumerate(uploads):
            path = Path(tmp) / f"{i:04d}"
            path.write_bytes(data)
            paths.append((name, path))
        return receive_paths(paths, station=station, actor=actor, origin="upload", settings=settings)


def receive_paths(
    received: list[tuple[str, Path]], *, station: str | None, actor: str, origin: str,
    settings: Settings | None = None,
) -> list[int]:
    """Receive files already on disk (name, path) and queue the import of each new one;
    returns their ids. A content received before is recorded as a ``duplicate``."""
    settings = settings or get_settings()
    url = db.database_url(settings)
    ids, queue = [], []
    with db.connection(url) as conn:
        for name, path in received:
            with conn.transaction():
                rec = ingest.receive(
                    conn, path, station=station or None, origin=origin, actor=actor,
                    original_name=Path(name).name, settings=settings,
                )
            ids.append(rec.id)
            if rec.status == "queued":
                queue.append(rec.id)
    jobs.queue_imports(url, queue)
    return ids


def files_by_ids(conn: psycopg.Connection, ids: list[int]) -> list[dict[str, Any]]:
    """The files and, for archives, their members — for live status after an upload."""
    return db.fetch_all(conn, "source_files_by_ids", ids=ids)


def requeue(file_id: int, *, actor: str, station: str | None = None) -> None:
    """Import a file again (assigning a station first when given); queues the job."""
    url = db.database_url()
    with db.connection(url) as conn, conn.transaction():
        if station:
            ingest.assign_station(conn, file_id, station, actor)
        else:
            ingest.requeue(conn, file_id, actor)
    jobs.queue_imports(url, [file_id])
