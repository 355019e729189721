"""Receiving files and importing them into ``reading``.

Receiving (:func:`receive`) stores the original bytes content-addressed by sha256 under
``HOME/files`` and records a ``source_file`` row: ``queued``, or ``duplicate`` when the same
content is already known (then nothing is imported again). The worker then runs
:func:`import_file`, which parses the file in batches and loads every reading of it in ONE
transaction with binary COPY: all the file's readings or none.

The file is read whole first (its COPY rows wait in memory, or in a temporary file beyond
32 MiB), so a parse error stops it before anything is written. Fast path: when no reading
exists yet for the file's channels and time range, the readings and the rollups built
from them are COPYed into ``reading``/``reading_1h``/``reading_1d`` in key order (by
channel, then time: each row lands at the right end of the ``(channel_id, time)`` index).
Otherwise they go through a staging table and an upsert in which the later import wins;
the number of values it changed is recorded on the file. Last in the file's transaction, each
of its channels' first and last reading time widen ``channel_extent`` (:mod:`core.extents`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import queue
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from core import archives, db, extents, home, metadata, rollups, schema
from core.errors import NotFound, ParseError
from core.formats import Batch, Header, open_reader
from core.formats.generic import GenericMapping
from core.settings import Settings, get_settings

log = logging.getLogger(__name__)

PG_EPOCH_US = np.datetime64("2000-01-01T00:00:00", "us").astype(np.int64)
COPY_SQL = "COPY {} (channel_id, time, value, source_file_id) FROM STDIN (FORMAT BINARY)"
_ROW = np.dtype(
    [
        ("nfields", ">i2"), ("l1", ">i4"), ("channel", ">i4"), ("l2", ">i4"), ("time", ">i8"),
        ("l3", ">i4"), ("value", ">f8"), ("l4", ">i4"), ("source", ">i4"),
    ]
)
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
COPY_TRAILER = b"\xff\xff"
_IMPORT_LOCK = 0x494D5054  # advisory lock key (with the file id): one import of a file at a time


# --- receiving -----------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def stored_path(settings: Settings, sha256: str) -> Path:
    return settings.files_dir / sha256[:2] / sha256


def store_original(settings: Settings, path: Path, sha256: str) -> Path:
    """Copy ``path`` into the content-addressed store (once) and return where it is.

    The copy is made in the process's temporary folder (``HOME/tmp``, swept if the process
    dies), then moved in place: read-only for the service account and its group
    (``0440``), in folders of ``0750``, whatever the umask.
    """
    target = stored_path(settings, sha256)
    if not target.exists():
        home.make_private_dir(target.parent)
        with tempfile.NamedTemporaryFile(dir=home.process_tmp(settings), delete=False) as tmp:
            with path.open("rb") as src:
                shutil.copyfileobj(src, tmp)
        os.chmod(tmp.name, home.STORED_FILE_MODE)
        os.replace(tmp.name, target)
    return target


def ensure_station(conn: psycopg.Connection, name: str, actor: str = "system", **fields: Any) -> dict:
    """The station called ``name``, created (and audited) if it does not exist yet."""
    row = db.fetch_one(conn, "station_by_name", name=name)
    if row:
        return row
    params = {"latitude": None, "longitude": None, "elevation_m": None, "kind": "met mast", "notes": ""}
    params.update(fields)
    row = db.fetch_one(conn, "insert_station", name=name, **params)
    assert row is not None
    db.audit(conn, actor, "create", "station", row["id"], name=name)
    return row


@dataclass
class Received:
    id: int
    name: str
    status: str
    duplicate_of: int | None


def receive(
    conn: psycopg.Connection,
    path: Path,
    *,
    station: str | None,
    origin: str = "cli",
    actor: str = "cli",
    original_name: str | None = None,
    settings: Settings | None = None,
    parent_id: int | None = None,
) -> Received:
    """Keep the original and record it: ``queued`` or ``duplicate``. Without a station the
    worker routes the file by its header (or marks it ``needs station``).

    Commits nothing itself: the caller's transaction decides.
    """
    settings = settings or get_settings()
    name = original_name or path.name
    digest = sha256_of(path)
    store_original(settings, path, digest)
    station_id = ensure_station(conn, station, actor)["id"] if station else None
    live = db.fetch_one(conn, "live_file_by_sha", sha256=digest)
    if live:
        status, dup = "duplicate", live["id"]
    else:
        status, dup = "queued", None
    row = db.fetch_one(
        conn,
        "insert_source_file",
        sha256=digest,
        original_name=name,
        size_bytes=path.stat().st_size,
        origin=origin,
        received_by=actor,
        station_id=station_id,
        status=status,
        duplicate_of=dup,
        parent_id=parent_id,
    )
    assert row is not None
    return Received(row["id"], name, status, dup)


# --- importing -----------------------------------------------------------------------


def encode_copy(channel: np.ndarray, time_us: np.ndarray, value: np.ndarray, source: int) -> memoryview:
    """Rows in PostgreSQL's binary COPY layout (without header/trailer), vectorised."""
    rows = np.empty(len(value), dtype=_ROW)
    rows["nfields"] = 4
    rows["l1"], rows["l2"], rows["l3"], rows["l4"] = 4, 8, 8, 4
    rows["channel"] = channel
    rows["time"] = time_us
    rows["value"] = value
    rows["source"] = source
    return memoryview(rows).cast("B")  # no copy of the (large) block


@dataclass
class LoggerClock:
    """How a logger stamps time: ``utc = logged - offset``, shifted to the period start."""

    utc_offset_minutes: int = 0
    timestamp_is_end: bool = True
    interval_s: int = 600

    def shift_us(self, utc_stamps: bool = False) -> int:
        offset = 0 if utc_stamps else self.utc_offset_minutes * 60
        return (offset + (self.interval_s if self.timestamp_is_end else 0)) * 1_000_000

    def to_utc_start_us(self, times: np.ndarray, utc_stamps: bool = False) -> np.ndarray:
        return times.astype("datetime64[us]").astype(np.int64) - PG_EPOCH_US - self.shift_us(utc_stamps)


@dataclass
class Clocks:
    """The logger configurations of a file's logger over time: ``clocks[i]`` is in force from
    ``starts[i]`` (logged time, µs since 1970) until the next start."""

    starts: np.ndarray
    clocks: list[LoggerClock]

    def to_utc_start_us(self, times: np.ndarray, utc_stamps: bool = False) -> np.ndarray:
        """Each logged time converted with the configuration in force at that time
        (``utc_stamps``: the times are UTC already; only the end-of-period shift applies).

        >>> c = Clocks(np.array([np.iinfo(np.int64).min, 60_000_000]), [LoggerClock(0, False), LoggerClock(60, False)])
        >>> t = np.array([0, 120_000_000], dtype="datetime64[us]")
        >>> (c.to_utc_start_us(t) + PG_EPOCH_US).tolist()
        [0, -3480000000]
        """
        us = times.astype("datetime64[us]").astype(np.int64)
        idx = np.searchsorted(self.starts, us, side="right") - 1
        shifts = np.array([c.shift_us(utc_stamps) for c in self.clocks], dtype=np.int64)
        return us - PG_EPOCH_US - shifts[np.maximum(idx, 0)]


def _utc_rows(batch: Batch, clock: LoggerClock | Clocks) -> tuple[np.ndarray, np.ndarray]:
    """The batch's times as UTC period starts (µs since 2000) and its values.

    A clock change (e.g. to an offset further east) can map two logged rows to one UTC time:
    the later row wins, as a later file would.
    """
    t = clock.to_utc_start_us(batch.times, batch.utc)
    values = batch.values
    if len(t) > 1 and (np.diff(t) <= 0).any():
        order = np.argsort(t, kind="stable")
        ts = t[order]
        last_of_run = np.append(ts[1:] != ts[:-1], True)  # stable sort: the later row is last
        t, values = ts[last_of_run], values[order[last_of_run]]
    return t, values


def _melt(t: np.ndarray, values: np.ndarray, channel_ids: np.ndarray) -> tuple[np.ndarray, ...]:
    """(channel, time, value) rows ordered by channel then time, NaN dropped."""
    vals = values.T  # columns first: rows come out grouped by channel
    keep = ~np.isnan(vals)
    ch = np.broadcast_to(channel_ids[:, None], vals.shape)[keep]
    tt = np.broadcast_to(t[None, :], vals.shape)[keep]
    return ch, tt, vals[keep]


def _median_step_s(times: np.ndarray) -> int | None:
    """Median time step of logged timestamps in seconds (None for a single row).

    >>> _median_step_s(np.array(["2025-01-01T00:10", "2025-01-01T00:20"], dtype="datetime64[us]"))
    600
    """
    if len(times) < 2:
        return None
    return int(np.median(np.diff(times)).astype("timedelta64[s]").astype(np.int64))


def _us_to_datetime(us: int) -> datetime:
    return datetime(2000, 1, 1, tzinfo=UTC) + np.timedelta64(int(us), "us").astype(object)


def import_file(source_file_id: int, url: str | None = None, settings: Settings | None = None) -> dict:
    """Import one received file (a :class:`Batch` of one). Returns the updated source_file
    row; its ``queue`` key lists files this one produced (archive members) that need a job.

    A :class:`ParseError` marks the file ``failed`` with its line and reason and imports
    nothing. Database errors propagate (the job queue retries them); the transaction is
    rolled back so nothing is half-loaded.
    """
    with Batch(url, settings) as batch:
        return batch.import_file(source_file_id)


class Batch:
    """Several received files imported one after the other on one connection, each in its
    own transaction (a bad file fails alone, with its line and reason), sharing what
    consecutive files of a station have in common:

    - the ids of the station's channels (:class:`_ChannelCache`), looked up once;
    - the rollup refresh: each file records the range it changed as pending, committed with
      its readings, and the ranges are refreshed together when the batch ends
      (:func:`core.rollups.refresh_pending`: one set of statements for all of them).
      A process that dies before leaves them to the worker's periodic catch-up.

    ``with Batch(url) as batch: batch.import_file(id) …``; :attr:`imported` lists the rows
    of the files imported (for their quality checks).
    """

    def __init__(self, url: str | None = None, settings: Settings | None = None) -> None:
        self.url = url
        self.settings = settings or get_settings()
        self.channels = _ChannelCache()
        self.pending: list[int] = []
        self.imported: list[dict] = []
        self.last_file: int | None = None  # the last file whose import committed something

    def __enter__(self) -> Batch:
        self._cm = db.connection(self.url)
        self.conn = self._cm.__enter__()
        try:
            # every transaction explicit: each file's commits on its own, whatever ran between
            self.conn.autocommit = True
            self.level = schema.stored_level(self.conn)
            # a file's commit does not wait for its WAL to reach the disk (a small file's import
            # waited on it); the batch's end does, for all of them at once (:meth:`__exit__`)
            self.conn.execute("SET synchronous_commit = off")
        except BaseException:
            self._cm.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.finish_rollups()
        finally:
            try:
                if not self.conn.closed:
                    self._durable()
            finally:
                if not self.conn.closed:
                    self.conn.autocommit = False
                self._cm.__exit__(*exc)

    def _durable(self) -> None:
        """Wait until every commit of the batch is on disk, and give the connection back with
        ``synchronous_commit`` as it was. A commit that waits for the disk waits for all the WAL
        before it, and one that has a transaction id always writes a commit record: so the
        batch's files are durable before its caller (the import job) is recorded done. A server
        that crashes before loses the last files' imports whole, not in part; their job, not
        done, is retried."""
        try:
            self.conn.execute("RESET synchronous_commit")
            if self.last_file is not None:  # a commit that writes, so that it waits for the disk
                self.conn.execute(db.q("touch_source_file"), {"id": self.last_file})
        except psycopg.Error as exc:  # the connection is gone: the pool discards it
            log.warning("could not wait for the batch's commits to reach the disk: %s", exc)

    def finish_rollups(self) -> None:
        """Refresh the rollups of the files imported so far (after their commits)."""
        ids, self.pending = self.pending, []
        if not ids or self.conn.closed:
            return
        try:
            rollups.refresh_pending(self.conn, ids)
        except psycopg.Error as exc:  # the ranges stay pending; the worker's catch-up refreshes them
            log.warning("rollup refresh of %s range(s) left for later: %s", len(ids), exc)

    def import_file(self, source_file_id: int) -> dict:
        """Import one file of the batch; see :func:`import_file`.

        The file is claimed under an advisory lock of its own: a second job of the same file
        (queued twice) waits for the first to finish and then finds it imported. A killed
        process's lock goes with its session, so its file can be taken again.
        """
        conn = self.conn  # autocommit: the lock, then the claim, each on its own
        conn.execute(db.q("lock_file_import"), {"key": _IMPORT_LOCK, "id": source_file_id})
        try:
            claimed = db.fetch_one(conn, "claim_source_file", id=source_file_id)
            if claimed is not None:
                self.last_file = source_file_id
            if claimed is None:
                row = db.fetch_one(conn, "source_file", id=source_file_id)
                if row is None:
                    raise NotFound(f"no source file with id {source_file_id}")
                log.info("file %s (%s) is %s; nothing to do", source_file_id, row["original_name"], row["status"])
                return {**row, "queue": []}
            return self._import_claimed(claimed)
        finally:
            if not conn.closed:  # a lost connection took the lock with it
                conn.execute(db.q("unlock_file_import"), {"key": _IMPORT_LOCK, "id": source_file_id})

    def _import_claimed(self, claimed: dict) -> dict:
        conn, settings = self.conn, self.settings
        source_file_id = claimed["id"]
        name = claimed["original_name"]
        ctx = {"file": name, "file_id": source_file_id}
        path = stored_path(settings, claimed["sha256"])
        log.info("importing file %s (%s)", source_file_id, name, extra=ctx)
        fmt = None
        queue: list[int] = []
        row = None  # the file's row as its import left it, when it returned it
        try:
            if archives.is_archive(path):
                fmt = "archive"
                queue = _unpack(conn, claimed, path, settings)
            else:
                reader = _reader_for(conn, path, name, claimed["station_id"])
                fmt = reader.format
                if claimed["station_id"] is None:
                    claimed["station_id"] = _route(conn, claimed, reader.header)
                if claimed["station_id"] is not None:
                    pending, row = _import(conn, reader, claimed, home.process_tmp(settings), self.level,
                                           self.channels)
                    self.pending += pending
        except ParseError as exc:
            log.warning("file %s failed: %s", source_file_id, exc, extra=ctx)
            with conn.transaction():
                conn.execute(
                    db.q("source_file_failed"),
                    {"id": source_file_id, "format": fmt, "error": exc.reason, "error_line": exc.line},
                )
        finally:
            self.channels.settle()
        if row is None:
            row = db.fetch_one(conn, "source_file", id=source_file_id)
        assert row is not None
        log.info("file %s (%s): %s, %s readings", source_file_id, name, row["status"], row["n_readings"], extra=ctx)
        if row["status"] == "imported":
            self.imported.append(row)
        return {**row, "queue": queue}


def import_ended(source_file_id: int, reason: str, *, retrying: bool, url: str | None = None) -> str | None:
    """Record that the import job of a file ended in an unexpected error (anything but a
    :class:`ParseError`, which :func:`import_file` records itself): the file becomes
    ``failed`` with ``reason``, or ``queued`` again when the job queue will retry it.

    Returns the file's new status, or None when it was not being imported (it was
    imported, failed or re-queued already: nothing to correct).
    """
    with db.connection(url) as conn, conn.transaction():
        row = db.fetch_one(conn, "source_file_job_ended", id=source_file_id, error=reason, retrying=retrying)
    if row is not None:
        log.log(logging.INFO if retrying else logging.ERROR, "file %s: %s (%s)", source_file_id,
                "import will be retried" if retrying else "import failed", reason,
                extra={"file_id": source_file_id})
    return row["status"] if row else None


def _reader_for(conn: psycopg.Connection, path: Path, name: str, station_id: int | None):
    """A reader for the file: by its content, or, for delimited text (or a file nothing
    else recognises), with the file mapping saved for the station's logger."""
    mapping = file_mapping(conn, station_id) if station_id is not None else None
    try:
        reader = open_reader(path, name)
    except ParseError:
        if mapping is None:
            raise
        return open_reader(path, name, mapping=mapping)
    if mapping is not None and reader.format == "generic":
        return open_reader(path, name, mapping=mapping)
    return reader


def file_mapping(conn: psycopg.Connection, station_id: int) -> GenericMapping | None:
    """How the station's delimited text files are laid out, when someone said so."""
    row = db.fetch_one(conn, "station_file_mapping", station_id=station_id)
    return GenericMapping.from_json(json.dumps(row["file_mapping"])) if row else None


def set_file_mapping(conn: psycopg.Connection, station: str, mapping: GenericMapping, actor: str) -> None:
    """Save how a station's delimited text files are laid out (audited)."""
    st = ensure_station(conn, station, actor)
    conn.execute(
        db.q("set_station_file_mapping"),
        {"station_id": st["id"], "mapping": mapping.to_json(),
         "utc_offset_minutes": mapping.utc_offset_minutes, "timestamp_is_end": mapping.timestamp_is_end},
    )
    db.audit(conn, actor, "set file mapping", "station", st["id"], mapping=json.loads(mapping.to_json()))


def _import(conn: psycopg.Connection, reader, claimed: dict, tmp_dir: Path, level: int | None,
            channels: _ChannelCache) -> tuple[list[int], dict]:
    """Load the file in one transaction; returns the ``rollup_pending`` rows it committed
    (the rollups the caller refreshes after the commit) and the file's row as it left it."""
    pending = []
    with conn.transaction():
        conn.execute("SET LOCAL statement_timeout = 0")  # a big file's COPY may take minutes
        result = _load(conn, reader, claimed, level, tmp_dir, channels)
        metadata.apply_file_metadata(conn, claimed["station_id"], reader.header.columns,
                                     claimed["received_by"] or "ingest")
        metadata.apply_conventions(conn, claimed["station_id"], claimed["received_by"] or "ingest")
        ids = result.pop("channel_ids")
        todo = result.pop("rollups")
        span = result.pop("refresh")
        # last: the extents' rows are the last locks the transaction takes (see core.extents)
        extents.widen(conn, result.pop("extents"))
        if (earlier := result.pop("earlier")) is not None:
            extents.recompute_touching(conn, *earlier)
        row = db.fetch_one(conn, "source_file_imported", id=claimed["id"], format=reader.format, **result)
        if span:
            first, last = span
            # "edges": the hours between were built from the file's batches (levels 0-1)
            same_hour = rollups.hour_span(first, first) == rollups.hour_span(last, last)
            todo_hours = [(first, last)] if todo == "full" or level == 2 else (
                [(first, first)] if same_hour else [(first, first), (last, last)])
            pending = [rollups.mark_pending(conn, a, b, ids) for a, b in todo_hours]
    channels.keep()  # committed: the channels it added exist for the next file
    return pending, row


class _ChannelCache:
    """Channel ids by (station, column name), for the files of one :class:`Batch`.

    A file's new channels are created in its transaction: they are kept for the next file
    only once that transaction committed (:meth:`keep`), and forgotten when it rolled back
    (:meth:`settle`). Channels are never deleted, so a committed id stays right.
    """

    def __init__(self) -> None:
        self.ids: dict[tuple[int, str], int] = {}
        self.new: dict[tuple[int, str], int] = {}

    def lookup(self, conn: psycopg.Connection, station_id: int, header: Header) -> np.ndarray:
        """The ids of the header's columns, creating the missing channels (one statement
        for all of them)."""
        missing: dict[str, Any] = {}
        for col in header.columns:
            key = (station_id, col.name)
            if key not in self.ids and key not in self.new and col.name not in missing:
                missing[col.name] = col
        if missing:
            cols = list(missing.values())
            rows = db.fetch_all(conn, "upsert_channels", station_id=station_id,
                                column_names=[c.name for c in cols], statistics=[c.statistic for c in cols],
                                units=[c.unit for c in cols])
            self.new.update({(station_id, r["column_name"]): r["id"] for r in rows})
        return np.asarray([self.ids.get((station_id, c.name)) or self.new[(station_id, c.name)]
                           for c in header.columns], dtype=np.int32)

    def keep(self) -> None:
        self.ids.update(self.new)
        self.new.clear()

    def settle(self) -> None:
        self.new.clear()


def _route(conn: psycopg.Connection, claimed: dict, header: Header) -> int | None:
    """The station a file belongs to, from the logger serial or station name in its header;
    without a match the file is kept as ``needs station``."""
    row = db.fetch_one(conn, "route_by_header", serial=header.logger_serial, station_name=header.station_name)
    with conn.transaction():
        if row is None:
            what = ", ".join(
                f"{k} {v!r}" for k, v in (("logger serial", header.logger_serial), ("station", header.station_name)) if v
            )
            conn.execute(
                db.q("source_file_needs_station"),
                {"id": claimed["id"], "format": header.format,
                 "error": f"no known logger or station matches this file ({what or 'its header names none'}); assign a station"},
            )
            return None
        conn.execute(db.q("set_file_station"), {"id": claimed["id"], "station_id": row["station_id"]})
    return row["station_id"]


def _unpack(conn: psycopg.Connection, claimed: dict, path: Path, settings: Settings) -> list[int]:
    """Receive each member of an archive (archives inside it unpacked too) as a file of its
    own; returns those to queue. Members skipped (hidden files, links…) become the archive's
    warnings. An archive beyond the limits raises :class:`ParseError` before any member is
    received: nothing of it is stored."""
    station = None
    if claimed["station_id"] is not None:
        station = conn.execute("SELECT name FROM station WHERE id = %s", (claimed["station_id"],)).fetchone()["name"]
    queue = []
    limits = archives.Limits.from_settings(settings)
    def passwords() -> list[str]:  # an encrypted archive: its source's archive_password
        from core import sources

        return sources.archive_passwords(conn, claimed["id"], settings)

    with (archives.members(path, claimed["original_name"], limits, home.process_tmp(settings), passwords) as found,
          conn.transaction()):
        for member_name, member_path in found.files:
            rec = receive(
                conn, member_path, station=station, origin=claimed["origin"], actor=claimed["received_by"],
                original_name=member_name, settings=settings, parent_id=claimed["id"],
            )
            if rec.status == "queued":
                queue.append(rec.id)
        conn.execute(db.q("source_file_unpacked"),
                     {"id": claimed["id"], "n_files": len(found.files), "warnings": found.warnings()})
    if found.skipped:
        log.warning("archive %s: %s member(s) skipped", claimed["id"], len(found.skipped),
                    extra={"file": claimed["original_name"], "file_id": claimed["id"]})
    return queue


def assign_station(conn: psycopg.Connection, source_file_id: int, station: str, actor: str) -> None:
    """Give a ``needs station`` (or failed) file its station and queue it again."""
    station_row = ensure_station(conn, station, actor)
    row = db.fetch_one(conn, "assign_file_station", id=source_file_id, station_id=station_row["id"])
    if row is None:
        raise NotFound(f"no file {source_file_id} waiting for a station")
    db.audit(conn, actor, "assign station", "source_file", source_file_id, station=station)


def requeue(conn: psycopg.Connection, source_file_id: int, actor: str) -> None:
    """Mark a file to be imported again (an admin's re-queue); the caller queues the job."""
    row = db.fetch_one(conn, "requeue_file", id=source_file_id)
    if row is None:
        raise NotFound(f"no file {source_file_id} that can be re-queued")
    db.audit(conn, actor, "requeue", "source_file", source_file_id, previous_status=row["previous_status"])


@dataclass
class _Prepared:
    """One batch, ready for the database: readings as COPY rows, and rollup blocks."""

    rows: int
    readings: int = 0
    lo: int = 0
    hi: int = 0
    data: memoryview | None = None
    rollup_blocks: list = field(default_factory=list)
    spans: dict[int, tuple[int, int]] = field(default_factory=dict)


def _prepare(batches, clock: Clocks, channel_ids: np.ndarray, builder, source_id: int) -> Iterator[_Prepared]:
    """The CPU work of an import (no database): convert, melt, encode, aggregate."""
    for batch in batches:
        t, values = _utc_rows(batch, clock)
        ch, tt, vv = _melt(t, values, channel_ids)
        if not len(vv):
            yield _Prepared(rows=len(batch.times))
            continue
        blocks = builder.add(t, values) if builder is not None else []
        yield _Prepared(len(batch.times), len(vv), int(tt.min()), int(tt.max()),
                        encode_copy(ch, tt, vv, source_id), blocks, _channel_spans(t, values, channel_ids))
    if builder is not None:  # the hours of the last day, held back until the file ended
        yield _Prepared(rows=0, rollup_blocks=builder.finish())


def _channel_spans(t: np.ndarray, values: np.ndarray, channel_ids: np.ndarray) -> dict[int, tuple[int, int]]:
    """Each channel's first and last time with a value (not NaN) in a batch: ``t`` ascending
    (as :func:`_utc_rows` gives it), ``values`` a row per time and a column per channel.

    >>> nan = float("nan")
    >>> _channel_spans(np.array([10, 20, 30]), np.array([[nan, 1.0, nan], [2.0, 1.0, nan], [3.0, nan, nan]]),
    ...                np.array([7, 8, 9], dtype=np.int32))
    {7: (20, 30), 8: (10, 20)}
    """
    keep = ~np.isnan(values)
    has = keep.any(axis=0)
    first = t[keep.argmax(axis=0)]
    last = t[len(t) - 1 - keep[::-1].argmax(axis=0)]
    spans: dict[int, tuple[int, int]] = {}
    for ch, a, b in zip(channel_ids[has].tolist(), first[has].tolist(), last[has].tolist()):
        _widen_span(spans, ch, a, b)  # twice for two columns of one channel
    return spans


def _widen_span(spans: dict[int, tuple[int, int]], ch: int, first: int, last: int) -> None:
    """Widen channel ``ch``'s span in ``spans`` to include ``first`` .. ``last``."""
    old = spans.get(ch)
    spans[ch] = (first, last) if old is None else (min(old[0], first), max(old[1], last))


#: Files from this size are read in a thread ahead of their COPY (:func:`_prefetch`); smaller
#: ones (a day or a week of 10-minute data) inline.
PREFETCH_MIN_BYTES = 1 << 20


class _Raised:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _prefetch(items: Iterator, depth: int = 2) -> Iterator:
    """Run ``items`` in a thread, ``depth`` ahead, so parsing overlaps the database's COPY
    (pyarrow and numpy release the GIL). Memory stays bounded by ``depth`` batches;
    the producer's exceptions are raised here."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(done)
        except BaseException as exc:  # handed to the consumer, raised there
            put(_Raised(exc))

    worker = threading.Thread(target=produce, name="sm-import-parse", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, _Raised):
                raise item.exc
            yield item
    finally:
        stop.set()
        worker.join(timeout=10)


#: COPY rows set aside in memory up to this size per table, beyond it in a temporary file.
SPILL_IN_MEMORY = 32 << 20


class _Spill:
    """A file's COPY rows (grouped by channel within each batch), set aside while the file
    is read, then given back in key order (channel, then time) or in the order they came.

    Key order matters for speed: a (channel_id, time) primary key takes rows that each land
    at the right end of the index (PostgreSQL's "fastpath") about a fifth faster than rows
    that land in the middle, which is where a batch's channels go when they are written
    batch by batch. Rows above ``SPILL_IN_MEMORY`` wait in a temporary file, not in memory.
    """

    def __init__(self, row: np.dtype, tmp_dir: Path) -> None:
        self.row = row
        self.file = tempfile.SpooledTemporaryFile(max_size=SPILL_IN_MEMORY, prefix="sm-import-", dir=tmp_dir)
        self.batches: list[tuple[int, int]] = []  # (offset, length) of each add
        self.runs: dict[int, list[tuple[int, int]]] = {}  # channel -> its (offset, length) runs
        self.size = 0

    def add(self, data: memoryview) -> None:
        channel = np.frombuffer(data, dtype=self.row)["channel"]
        starts = np.flatnonzero(np.r_[True, channel[1:] != channel[:-1]])
        ends = np.r_[starts[1:], len(channel)]
        for a, b in zip(starts.tolist(), ends.tolist()):
            self.runs.setdefault(int(channel[a]), []).append(
                (self.size + a * self.row.itemsize, (b - a) * self.row.itemsize))
        self.file.write(data)
        self.batches.append((self.size, len(data)))
        self.size += len(data)

    def _read(self, offset: int, length: int) -> bytes:
        self.file.seek(offset)
        return self.file.read(length)

    def by_key(self) -> Iterator[bytes]:
        """Every row, ordered by channel id, then as they came (time order within a batch)."""
        for channel in sorted(self.runs):
            for offset, length in self.runs[channel]:
                yield self._read(offset, length)

    def by_batch(self) -> Iterator[bytes]:
        for offset, length in self.batches:
            yield self._read(offset, length)

    def close(self) -> None:
        self.file.close()


def _load(conn: psycopg.Connection, reader, claimed: dict, level: int | None, tmp_dir: Path,
          channels: _ChannelCache) -> dict:
    """COPY every reading of the file (in the caller's transaction); see the module doc.

    The whole file is read (and checked) first, its COPY rows set aside in a :class:`_Spill`;
    nothing is written before the last line has parsed. Then, when the file's rows go forward
    in time and no reading exists yet for its channels and period (a new file, the usual
    case), readings and the rollups built from the batches are COPYed in key order.
    Otherwise the batches go, in file order, through a staging table and an upsert in which
    the later row wins. A file imported before (requeued) first loses the readings its earlier
    import left, so none stays at a time it no longer maps to.

    ``rollups`` in the result says what is left to refresh: ``"edges"`` (the hours of the
    file's first and last reading, and their days; the rest was built from the batches) or
    ``"full"``.
    """
    header: Header = reader.header
    station_id = claimed["station_id"]
    batches = iter(reader.batches())
    first = next(batches, None)
    if first is None:
        raise ParseError("the file has no data rows", file=reader.name)
    warnings = list(header.warnings)
    clock = _clocks(conn, station_id, header, _median_step_s(first.times), warnings)
    channel_ids = channels.lookup(conn, station_id, header)
    builder = None if level == 2 else rollups.RollupBuilder(channel_ids)  # level 2: continuous aggregates
    ids = [int(c) for c in channel_ids]
    n_rows = n_readings = n_changed = 0
    first_us: int | None = None
    last_us: int | None = None
    forward = True  # each batch starts after the previous one ends
    spans: dict[int, tuple[int, int]] = {}  # channel -> first and last time of its readings
    readings = _Spill(_ROW, tmp_dir)
    blocks = {table: _Spill(rollups.ROLLUP_ROW, tmp_dir) for table in ("reading_1h", "reading_1d")}
    try:
        prepared = _prepare(itertools.chain([first], batches), clock, channel_ids, builder, claimed["id"])
        # a small file is one batch: a thread to read it ahead would only cost its start and hand-over
        small = reader.path.stat().st_size < PREFETCH_MIN_BYTES
        for item in (prepared if small else _prefetch(prepared, depth=1)):
            n_rows += item.rows
            for table, block in item.rollup_blocks:
                blocks[table].add(block)
            if not item.readings:
                continue
            forward = forward and (last_us is None or item.lo > last_us)
            first_us = item.lo if first_us is None else min(first_us, item.lo)
            last_us = item.hi if last_us is None else max(last_us, item.hi)
            readings.add(item.data)
            for ch, (a, b) in item.spans.items():
                _widen_span(spans, ch, a, b)
            n_readings += item.readings
        full_refresh = builder is None
        earlier = _delete_earlier_readings(conn, claimed)
        full_refresh = full_refresh or earlier is not None  # the old span's rollups change too
        if first_us is not None and last_us is not None:
            overlap = db.fetch_one(
                conn, "overlap_exists", channel_ids=ids, first=_us_to_datetime(first_us), last=_us_to_datetime(last_us)
            )["overlap"]
            if forward and not overlap:
                _copy(conn, "reading", readings.by_key())
                # the rollups built from the batches, unless they are recomputed anyway (level 2's
                # continuous aggregates are views, refreshed after; a re-import's old span changes too)
                if not full_refresh:
                    for table, spill in blocks.items():
                        if spill.size:  # no day of a file of one or two days (its edges)
                            _copy(conn, table, spill.by_key(), rollups.ROLLUP_COPY)
            else:
                full_refresh = True  # the rollups of the whole range are recomputed in SQL
                conn.execute(db.q("create_staging"))
                for data in readings.by_batch():
                    _copy(conn, "reading_staging", [data])
                    n_changed += conn.execute(db.q("merge_staging")).fetchone()["changed"]
                    conn.execute(db.q("truncate_staging"))
    finally:
        for spill in (readings, *blocks.values()):
            spill.close()
    first_time = None if first_us is None else _us_to_datetime(first_us)
    last_time = None if last_us is None else _us_to_datetime(last_us)
    span = [t for t in (first_time, last_time, *(earlier or ())) if t is not None]
    return {
        "channel_ids": ids,
        "extents": {ch: (_us_to_datetime(a), _us_to_datetime(b)) for ch, (a, b) in spans.items()},
        "earlier": earlier,
        "rollups": "full" if full_refresh else "edges",
        "refresh": (min(span), max(span)) if span else None,
        "n_rows": n_rows,
        "n_readings": n_readings,
        "n_changed": n_changed,
        "warnings": warnings,
        "first_time": first_time,
        "last_time": last_time,
    }


def _delete_earlier_readings(conn: psycopg.Connection, claimed: dict) -> tuple[datetime, datetime] | None:
    """A file imported before and now again (requeued after its logger's clock or its mapping
    changed): delete the readings its earlier import left, so that none stays at a time the file
    no longer maps to. Returns the earlier span when readings were deleted."""
    if claimed["first_time"] is None or claimed["last_time"] is None:
        return None
    deleted = conn.execute(db.q("delete_file_readings"), {
        "id": claimed["id"], "first": claimed["first_time"], "last": claimed["last_time"]}).rowcount
    return (claimed["first_time"], claimed["last_time"]) if deleted else None


def _copy(conn: psycopg.Connection, table: str, chunks: Iterable[bytes | memoryview],
          copy_sql: str = COPY_SQL) -> None:
    """One binary COPY of the rows in ``chunks`` into ``table``."""
    stmt = psycopg.sql.SQL(copy_sql).format(psycopg.sql.Identifier(table))
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        copy.write(COPY_HEADER)
        for data in chunks:
            copy.write(data)
        copy.write(COPY_TRAILER)


#: How stamps are read when neither the logger's configuration nor the file (or its format)
#: says: as period starts, as brightwind, Windographer, NRG and most hand-made files write them.
DEFAULT_TIMESTAMP_IS_END = False
ASSUMED_START = ("stamps read as period start (the file does not say; set the logger's timestamp "
                 "convention to change it: stationmanager logger set --station NAME --timestamp-is-end true)")


def _clocks(conn: psycopg.Connection, station_id: int, header: Header, step_s: int | None,
            notes: list[str] | None = None) -> Clocks:
    """The file's logger configurations over time (one is created from the header if the
    station has none for this logger). The file's own time step, when it has one, is the
    averaging interval: a logger may write a 10-minute and an hourly table.

    Whether the stamps mark the end of the period: the logger's configuration when it says
    (a Task 43 document, a file mapping, ``stationmanager logger set``), else what the file
    or its format says, else :data:`DEFAULT_TIMESTAMP_IS_END`; that last assumption is
    added to ``notes``.
    """
    rows = db.fetch_all(conn, "loggers_of", station_id=station_id, serial=header.logger_serial)
    if not rows:
        rows = [db.fetch_one(
            conn, "insert_logger", station_id=station_id, oem=header.logger_oem,
            model=header.logger_model, serial=header.logger_serial,
            utc_offset_minutes=header.utc_offset_minutes or 0,
            timestamp_is_end=header.timestamp_is_end,  # NULL when the file does not say
            interval_s=header.interval_s or step_s or 600,
        )]
    starts = np.array(
        [np.iinfo(np.int64).min if r["valid_from"] is None else
         _us_since_1970(r["valid_from"] + timedelta(minutes=r["utc_offset_minutes"])) for r in rows],
        dtype=np.int64,
    )
    stated = header.timestamp_is_end
    if notes is not None and stated is None and any(r["timestamp_is_end"] is None for r in rows):
        notes.append(ASSUMED_START)
    stated_end = DEFAULT_TIMESTAMP_IS_END if stated is None else stated
    clocks = [
        LoggerClock(
            r["utc_offset_minutes"],
            stated_end if r["timestamp_is_end"] is None else r["timestamp_is_end"],
            step_s or header.interval_s or r["interval_s"],
        )
        for r in rows
    ]
    return Clocks(starts, clocks)


def _us_since_1970(t: datetime) -> int:
    return int((t - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * 1_000_000
