"""Exports built on request: clean, recalibrated data files, made by the worker.

The web app and the CLI call :func:`request_export` with an :class:`ExportRequest`. It checks
the request (:class:`ExportError` says what to change), then either **reuses** a finished
export whose parameters and inputs are unchanged — the inputs are the station's imported
files, flags, calibrations and metadata, each hashed cheaply in SQL (:func:`input_versions`)
— or records a ``queued`` row and queues the worker's ``sm:build_export`` job. The worker's
:func:`build_export` writes the file under ``HOME/exports/<id>/`` with a sidecar
``NAME.provenance.json`` and reports its progress on the row as it goes.

How a file is built, in bounded memory whatever the period:

1. the period is cut into batches of whole time steps (about :data:`BATCH_READINGS` readings
   each, e.g. 35 days of 80 channels of 10-minute data);
2. each batch's readings are streamed out of PostgreSQL with a binary ``COPY`` and decoded
   with numpy (34 bytes a reading, no Python objects per row);
3. per channel: recalibrated (:func:`core.calibrations.apply`; spans without a calibration
   pass through and are listed in the provenance), flagged readings dropped
   (:func:`core.flags.flag_mask` / :func:`core.flags.apply_mask`), then put in their time
   step (:func:`aggregate`): one reading per step at the native resolution, else the mean of
   averages (the vector mean for wind direction), the min of minima, the max of maxima and
   gusts, the sum of sums and counts, and standard deviations combined as
   ``sqrt(mean(sd²) + var(avg))`` — the within-interval variance plus the variance of the
   interval means of the same sensor's average channel (exact for equal sample counts per
   interval, population form; without that average channel only the first term is used);
4. the wide block (every time step of the batch, gaps as empty rows) goes to the writer of
   :mod:`core.export_writers`.

Times are UTC; naive datetimes are taken as UTC. Averaged time steps follow the clock of the
chosen time zone (:class:`Grid`): hourly steps start at each whole local hour (also in zones
such as Asia/Kathmandu, +05:45, and across Lord Howe Island's half-hour daylight-saving
change) and daily steps are that zone's calendar days; a step that averages nothing (10-minute
steps of 10-minute readings) keeps each reading's own time stamp.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
import psycopg
from psycopg.types.json import Jsonb

from core import db, export_writers, flags, spreadsheet
from core.errors import DatabaseUnavailable, NotFound, StationManagerError
from core.export_writers import OutColumn
from core.settings import Settings, get_settings

log = logging.getLogger(__name__)

FORMATS = ("windographer", "csv", "zip", "parquet")
AVERAGING = {"10min": 600, "1h": 3600, "1d": 86400}
PARQUET_LAYOUTS = ("wide", "long", "tidy")
HEADERS = export_writers.HEADERS
STATUSES = ("queued", "running", "done", "failed", "expired")
#: Readings fetched per batch (about 14 MB of COPY data).
BATCH_READINGS = 400_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FIRST_S, _LAST_S = -62_135_510_400, 253_402_128_000  # 0001-01-02 and 9999-12-30, s since 1970
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in µs since 1970
# elements of a binary array (after its 20-byte header): length, then the big-endian value
_ARRAY_TIME = np.dtype([("n", ">i4"), ("v", ">i8")])
_ARRAY_VALUE = np.dtype([("n", ">i4"), ("v", ">f8")])

_sql = db.SqlFile("exports.sql")


class ExportError(StationManagerError):
    """The export cannot be made as asked."""


def software_version() -> str:
    try:
        return version("stationmanager")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


# --- the request -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportRequest:
    """What to export. See the module docstring for how each option is applied."""

    station: str
    format: str
    start: datetime | None = None
    end: datetime | None = None
    channel_ids: tuple[int, ...] | None = None
    measurement_types: tuple[str, ...] | None = None
    calibrated: bool = True
    exclude_categories: tuple[str, ...] | None = None  # None: every category; (): keep flagged values
    averaging: str = "10min"
    timezone: str = "UTC"
    parquet_layout: str = "wide"
    headers: str = "descriptive"  # or "logger": the logger's own column names

    def params(self) -> dict[str, Any]:
        """The request as normalised JSON-ready parameters (equal requests, equal params).

        >>> ExportRequest("M", "csv", channel_ids=(3, 1), exclude_categories=("icing",)).params()["channel_ids"]
        [1, 3]
        """
        def utc_text(t: datetime | None) -> str | None:
            return None if t is None else _utc(t).isoformat()

        return {
            "station": self.station, "format": self.format,
            "start": utc_text(self.start), "end": utc_text(self.end),
            "channel_ids": None if self.channel_ids is None else sorted({int(c) for c in self.channel_ids}),
            "measurement_types": None if self.measurement_types is None else sorted(set(self.measurement_types)),
            "calibrated": bool(self.calibrated),
            "exclude_categories": None if self.exclude_categories is None else sorted(set(self.exclude_categories)),
            "averaging": self.averaging, "timezone": self.timezone,
            "parquet_layout": self.parquet_layout if self.format == "parquet" else None,
            "headers": self.headers,
        }

    @classmethod
    def from_params(cls, p: dict[str, Any]) -> ExportRequest:
        def when(text: str | None) -> datetime | None:
            return None if text is None else datetime.fromisoformat(text)

        def tup(v: list | None) -> tuple | None:
            return None if v is None else tuple(v)

        return cls(station=p["station"], format=p["format"], start=when(p["start"]), end=when(p["end"]),
                   channel_ids=tup(p["channel_ids"]), measurement_types=tup(p["measurement_types"]),
                   calibrated=p["calibrated"], exclude_categories=tup(p["exclude_categories"]),
                   averaging=p["averaging"], timezone=p["timezone"], parquet_layout=p["parquet_layout"] or "wide",
                   headers=p.get("headers") or "descriptive")  # none recorded before the choice existed


def _utc(t: Any, what: str = "time") -> datetime:
    if not isinstance(t, datetime):
        raise ExportError(f"{what}: {t!r} is not a date and time")
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def has_fixed_offset(tz: str, years: range = range(1990, 2040)) -> bool:
    """True when the zone keeps one UTC offset all year (no daylight saving time).

    >>> has_fixed_offset("UTC"), has_fixed_offset("Etc/GMT-1"), has_fixed_offset("Europe/Dublin")
    (True, True, False)
    """
    zone = ZoneInfo(tz)
    offsets = {datetime(y, m, 15, tzinfo=zone).utcoffset() for y in years for m in (1, 7)}
    return len(offsets) == 1


@dataclass
class Plan:
    """A checked request: the station, the columns and the period to write."""

    req: ExportRequest
    station: dict[str, Any]
    columns: list[OutColumn]
    helpers: dict[int, int]  # sd channel -> the average channel of the same sensor (fetched too)
    start: datetime  # resolved [start, end)
    end: datetime
    grid: Grid
    statistics: dict[int, str] = field(default_factory=dict)
    points: dict[int, str | None] = field(default_factory=dict)  # channel -> its measurement point's name
    native_s: int = 600  # the station's shortest logger interval


def _check_options(req: ExportRequest) -> None:
    problems = []
    if req.format not in FORMATS:
        problems.append(f"format {req.format!r} is not one of: {', '.join(FORMATS)}")
    if req.averaging not in AVERAGING:
        problems.append(f"averaging {req.averaging!r} is not one of: {', '.join(AVERAGING)}")
    if req.headers not in HEADERS:
        problems.append(f"headers {req.headers!r} is not one of: {', '.join(HEADERS)}")
    if req.parquet_layout not in PARQUET_LAYOUTS:
        problems.append(f"parquet layout {req.parquet_layout!r} is not one of: {', '.join(PARQUET_LAYOUTS)}")
    try:
        ZoneInfo(req.timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder name such as "Europe"
        problems.append(f"time zone {req.timezone!r} is unknown; use an IANA name such as UTC, "
                        "Europe/Dublin or Etc/GMT-1 (that is UTC+01:00)")
    else:
        if req.format == "windographer" and not has_fixed_offset(req.timezone):
            problems.append(f"time zone {req.timezone!r} has daylight saving time, and Windographer time "
                            "stamps carry no UTC offset, so an hour would repeat each autumn; choose a zone "
                            "with a fixed offset such as UTC or Etc/GMT-1 (UTC+01:00)")
    for c in req.exclude_categories or ():
        if c not in flags.CATEGORIES:
            problems.append(f"flag category {c!r} is not one of: {', '.join(flags.CATEGORIES)}")
    if req.start is not None and req.end is not None and _utc(req.end, "end") <= _utc(req.start, "start"):
        problems.append("the end must come after the start")
    if req.channel_ids is not None and not req.channel_ids:
        problems.append("choose at least one channel (or none at all for every mapped channel)")
    if req.measurement_types is not None and not req.measurement_types:
        problems.append("choose at least one measurement type (or none at all for every type)")
    if problems:
        raise ExportError("; ".join(problems))


def plan(conn: psycopg.Connection, req: ExportRequest, settings: Settings | None = None) -> Plan:
    """Check ``req`` against the database and resolve its channels and period."""
    settings = settings or get_settings()
    _check_options(req)
    station = _sql.fetch_one(conn, "station", name=req.station)
    if station is None:
        raise ExportError(f"there is no station {req.station!r}")
    ids = None if req.channel_ids is None else sorted({int(c) for c in req.channel_ids})
    if ids is not None:
        known = {r["id"] for r in _sql.fetch_all(conn, "station_channel_ids", station_id=station["id"])}
        strangers = sorted(set(ids) - known)
        if strangers:
            raise ExportError(f"station {req.station!r} has no channel with id {', '.join(map(str, strangers))}")
    types = None if req.measurement_types is None else sorted(set(req.measurement_types))
    rows = _sql.fetch_all(conn, "export_channels", station_id=station["id"], mapped_only=ids is None,
                          channel_ids=ids, types=types)
    if not rows:
        what = "of those measurement types" if types else "mapped to a measurement point"
        raise ExportError(f"station {req.station!r} has no channels {what}; choose channels or map them "
                          "on the Metadata page")
    columns = export_writers.name_columns(export_writers.label_columns([
        OutColumn(r["id"], r["column_name"], r["measurement_type"], r["statistic"], r["height_m"],
                  r["orientation_deg"], r["unit"]) for r in rows]), req.headers)
    col_ids = [c.channel_id for c in columns]
    rng = _sql.fetch_one(conn, "data_range", channel_ids=col_ids)
    if rng is None or rng["first_time"] is None:
        raise ExportError(f"the chosen channels of {req.station!r} have no readings yet")
    start = rng["first_time"] if req.start is None else _utc(req.start, "start")
    end = rng["last_time"] + timedelta(microseconds=1) if req.end is None else _utc(req.end, "end")
    if end <= start:
        raise ExportError(f"no readings from {start:%Y-%m-%d %H:%M} UTC on: the last one is from "
                          f"{rng['last_time']:%Y-%m-%d %H:%M} UTC")
    step_s = AVERAGING[req.averaging]
    about = -(-(end - start) // timedelta(seconds=step_s))
    if about > settings.export_max_rows * 1.1 + 50:  # far too long: not worth laying out the steps
        _too_many_rows(f"about {about:,}", settings)
    native = _sql.fetch_one(conn, "native_step", station_id=station["id"])
    native_s = (native or {}).get("step_s") or 600
    # a step that averages nothing follows the readings' own stamps, else the local clock
    phase = None
    if native_s >= step_s:
        found = _sql.fetch_one(conn, "reading_phase", channel_ids=col_ids, start=start, step_s=step_s)
        phase = int(found["phase_s"]) * 1_000_000 if found else 0
    grid = Grid(start, end, req.averaging, req.timezone, phase_us=phase)
    if grid.n_bins > settings.export_max_rows:
        _too_many_rows(f"{grid.n_bins:,}", settings)
    helpers = _sd_partners(conn, station["id"], columns) if AVERAGING[req.averaging] > 600 else {}
    return Plan(req, station, columns, helpers, start, end, grid,
                {c.channel_id: c.statistic for c in columns}, {r["id"]: r["point_name"] for r in rows}, native_s)


def _too_many_rows(count: str, settings: Settings) -> None:
    raise ExportError(f"{count} time steps is more than STATIONMANAGER_EXPORT_MAX_ROWS "
                      f"({settings.export_max_rows:,}); choose a shorter period or a longer averaging")


def _sd_partners(conn: psycopg.Connection, station_id: int, columns: list[OutColumn]) -> dict[int, int]:
    """For each sd channel, the avg channel of the same measurement point (if any)."""
    rows = _sql.fetch_all(conn, "export_channels", station_id=station_id, mapped_only=False,
                          channel_ids=None, types=None)
    point = {r["id"]: r["measurement_point_id"] for r in rows}
    avg_of = {r["measurement_point_id"]: r["id"] for r in rows
              if r["statistic"] == "avg" and r["measurement_point_id"] is not None}
    return {c.channel_id: avg_of[point[c.channel_id]] for c in columns
            if c.statistic == "sd" and point.get(c.channel_id) in avg_of}


def input_versions(conn: psycopg.Connection, station_id: int, req: ExportRequest) -> dict[str, Any]:
    """What an export of the station is built from: hashes of its imported files (data),
    flags, calibrations and metadata, and the software version. A raw export does not depend
    on calibrations, nor one that keeps flagged values on flags (those are left empty)."""
    v = _sql.fetch_one(conn, "input_versions", station_id=station_id)
    assert v is not None
    return {
        "software": software_version(),
        "data": f"{v['n_files']} files, {v['data_version'][:16]}",
        "flags": "" if req.exclude_categories == () else f"{v['n_flags']} flags, {v['flag_version'][:16]}",
        "calibrations": (f"{v['n_calibrations']} periods, {v['calibration_version'][:16]}"
                         if req.calibrated else ""),
        "metadata": v["metadata_version"][:16],
    }


def request_export(conn: psycopg.Connection, req: ExportRequest, actor: str) -> dict[str, Any]:
    """Check ``req`` and either reuse an unchanged finished export or queue a new build.

    Returns the export row (see :func:`get_export`); a reused one is ``done`` at once with
    ``reused=True``. A queued or running export with the same parameters and inputs is
    returned as it is instead of building the same file twice. Commits its own transaction
    (call it outside one), so that the worker sees the row.
    """
    if not actor.strip():
        raise ExportError("an export needs the name of who asks for it")
    params = req.params()
    with conn.transaction():
        p = plan(conn, req)
        inputs = input_versions(conn, p.station["id"], req)
        params_hash, inputs_key = _hash(params), _hash(inputs)
        reuse = None
        for r in _sql.fetch_all(conn, "reusable", params_hash=params_hash, inputs_key=inputs_key):
            if r["status"] in ("queued", "running"):
                return get_export(conn, r["id"])
            if r["file_path"] and (get_settings().exports_dir / r["file_path"]).is_file():
                reuse = r["id"]
                break
        row = _sql.fetch_one(conn, "insert_export", station_id=p.station["id"], format=req.format,
                             params=Jsonb(params), params_hash=params_hash, inputs=Jsonb(inputs),
                             inputs_key=inputs_key, actor=actor, reuse_id=reuse)
        assert row is not None
        db.audit(conn, actor, "request", "export", row["id"], station=req.station, params=params, reused_from=reuse)
    if reuse is None:
        _defer_build(row["id"])
    log.info("export %s of %s requested by %s%s", row["id"], req.station, actor,
             f" (reuses export {reuse})" if reuse else "")
    return get_export(conn, row["id"])


def _defer_build(export_id: int) -> None:
    from core import jobs

    app = jobs.make_app(db.database_url())
    with app.open():
        jobs.defer_export(app, export_id)


def get_export(conn: psycopg.Connection, export_id: int) -> dict[str, Any]:
    """One export row: ``id, station, station_id, format, status, progress, message,
    file_name, size_bytes, n_rows, requested_by, requested_at, started_at, finished_at,
    error, reused, params`` (and the rest of the table's columns)."""
    row = _sql.fetch_one(conn, "export_by_id", id=export_id)
    if row is None:
        raise NotFound(f"no export {export_id}")
    return row


def list_exports(conn: psycopg.Connection, station: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """The latest exports (of one station, or all), newest first."""
    return _sql.fetch_all(conn, "list_exports", station=station, limit=limit)


def export_file(row: dict[str, Any], settings: Settings | None = None) -> Path:
    """Where a finished export's file lies."""
    settings = settings or get_settings()
    if row["status"] == "expired":
        raise ExportError(f"export {row['id']} was cleaned up after the retention period "
                          "(STATIONMANAGER_EXPORT_RETENTION_DAYS); request it again")
    if row["status"] != "done" or not row.get("file_path"):
        raise ExportError(f"export {row['id']} is {row['status']}, not finished")
    path = settings.exports_dir / row["file_path"]
    if not path.is_file():
        raise ExportError(f"the file of export {row['id']} is missing ({path}); request it again")
    return path


def provenance_file(row: dict[str, Any], settings: Settings | None = None) -> Path:
    """The sidecar ``NAME.provenance.json`` of a finished export."""
    path = export_file(row, settings)
    return path.with_name(path.stem + ".provenance.json")


def cleanup(conn: psycopg.Connection, settings: Settings | None = None, now: datetime | None = None) -> int:
    """Delete export files finished more than ``STATIONMANAGER_EXPORT_RETENTION_DAYS`` ago;
    their rows stay, as ``expired``. Returns the number of files deleted."""
    settings = settings or get_settings()
    now = now or datetime.now(UTC)
    before = now - timedelta(days=settings.export_retention_days)
    n = 0
    with conn.transaction():
        for r in _sql.fetch_all(conn, "expired_files", before=before):
            folder = (settings.exports_dir / r["file_path"]).parent
            if folder.parent == settings.exports_dir.resolve() and folder.is_dir():
                shutil.rmtree(folder)
            conn.execute(_sql.q("expire_file"), {"file_path": r["file_path"]})
            n += 1
    if n:
        log.info("deleted %s export files older than %s days", n, settings.export_retention_days)
    return n


def worker_alive(conn: psycopg.Connection, seconds: float = 30.0) -> bool:
    """Is a worker running (a procrastinate heartbeat in the last ``seconds``)?"""
    row = _sql.fetch_one(conn, "live_worker", seconds=seconds)
    return bool(row and row["alive"])


# --- time steps ----------------------------------------------------------------------------------


class Grid:
    """The time steps of an export, on the clock of ``tz``.

    - **Daily** steps are the zone's calendar days, from one local midnight to the next (a day
      with a daylight-saving change lasts 23 or 25 hours, 23.5 or 24.5 on Lord Howe Island; a
      day whose midnight is skipped starts at its first instant).
    - **Shorter** steps start at every instant at which the local clock shows a whole step
      (hourly: every ``HH:00``) and last until the next one. So every time stamp is a whole
      local hour, also in zones such as Asia/Kathmandu (+05:45) and across a half-hour
      change: on Lord Howe Island the step in which the clock turns lasts 90 minutes (01:00
      to 02:00 LHST and 02:30 to 03:00 LHDT; or 01:00 LHDT to 02:00 LHST, the repeated
      half-hour included); where a whole hour repeats (Europe in autumn) both hours start a
      step, told apart by their UTC offset.
    - With ``phase_us`` (where the readings sit on the UTC grid of the step, µs), the steps
      follow the readings instead of the clock: used when a step is the loggers' own interval
      (nothing is averaged), so that each reading keeps its own time stamp in a zone whose
      offset is not a whole number of steps (10-minute readings in Kathmandu, +05:45).

    >>> g = Grid(datetime(2025, 1, 1, 0, 5, tzinfo=UTC), datetime(2025, 1, 1, 1, 0, tzinfo=UTC), "10min", "UTC")
    >>> g.n_bins, [str(pd.Timestamp(e, unit="us")) for e in g.edges(0, 2)]
    (6, ['2025-01-01 00:00:00', '2025-01-01 00:10:00', '2025-01-01 00:20:00'])
    >>> d = Grid(datetime(2025, 3, 29, tzinfo=UTC), datetime(2025, 3, 31, 23, tzinfo=UTC), "1d", "Europe/Dublin")
    >>> d.n_bins, [int(e // 3_600_000_000) % 24 for e in d.edges(0, 3)]   # local midnights; DST on the 30th
    (3, [0, 0, 23, 23])
    >>> h = Grid(datetime(2025, 10, 4, 14, tzinfo=UTC), datetime(2025, 10, 4, 17, tzinfo=UTC), "1h",
    ...          "Australia/Lord_Howe")
    >>> [f"{_from_us(e).astimezone(h.tz):%H:%M%z}" for e in h.edges(0, h.n_bins)]   # 02:00 LHST is 02:30 LHDT
    ['00:00+1030', '01:00+1030', '03:00+1100', '04:00+1100']
    >>> k = Grid(datetime(2025, 6, 1, tzinfo=UTC), datetime(2025, 6, 1, 0, 30, tzinfo=UTC), "10min", "Asia/Kathmandu",
    ...          phase_us=0)
    >>> [f"{_from_us(e).astimezone(k.tz):%H:%M}" for e in k.edges(0, k.n_bins)]   # the readings' own times
    ['05:45', '05:55', '06:05', '06:15']
    """

    def __init__(self, start: datetime, end: datetime, averaging: str, tz: str, phase_us: int | None = None) -> None:
        self.step_s = AVERAGING[averaging]
        self.tz = ZoneInfo(tz)
        if self.step_s == 86400:
            self.day0 = start.astimezone(self.tz).date()
            last = (end - timedelta(microseconds=1)).astimezone(self.tz).date()
            self.n_bins = (last - self.day0).days + 1
        else:
            step = self.step_s * 1_000_000
            t0, t1 = _to_us(start), _to_us(end)
            margin = 86_400_000_000 + step
            if phase_us is None:
                segments = _offset_segments(t0 - margin, t1 + margin, self.tz)
            else:  # steps fixed on the readings: as a zone whose offset puts its "whole steps" there
                segments = [(t0 - margin, -phase_us)]
            # in each span of one UTC offset, the instants whose local time is a whole step
            self._starts = np.array([a for a, _ in segments], dtype=np.int64)
            offsets = np.array([off for _, off in segments], dtype=np.int64)
            ends = np.append(self._starts[1:], t1 + margin)
            # the first t >= each span's start with (t + offset) % step == 0
            self._first = -(-(self._starts + offsets) // step) * step - offsets
            self._counts = np.maximum(0, -(-(ends - self._first) // step))
            self._before = np.concatenate([[0], np.cumsum(self._counts)])
            self._k0 = self._n_edges(t0, inclusive=True) - 1
            self.n_bins = self._n_edges(t1, inclusive=False) - self._k0
        self.origin_us = int(self.edges(0, 0)[0])

    def _n_edges(self, t: int, inclusive: bool) -> int:
        """How many step starts (from the first segment on) come before ``t`` (or at it)."""
        i = int(np.searchsorted(self._starts, t, side="right")) - 1
        gap, step = t - int(self._first[i]), self.step_s * 1_000_000
        if gap < 0:
            n = 0
        else:
            n = gap // step + 1 if inclusive else -(-gap // step)
        return int(self._before[i]) + min(n, int(self._counts[i]))

    def edges(self, k0: int, k1: int) -> np.ndarray:
        """Starts of steps ``k0 .. k1`` (``k1`` included: the end of step ``k1 - 1``), µs UTC."""
        if self.step_s == 86400:
            days = pd.date_range(pd.Timestamp(self.day0) + pd.Timedelta(days=k0), periods=k1 - k0 + 1, freq="D")
            local = days.tz_localize(self.tz, nonexistent="shift_forward", ambiguous=True)
            return local.as_unit("us").asi8.astype(np.int64)
        k = np.arange(self._k0 + k0, self._k0 + k1 + 1, dtype=np.int64)
        seg = np.searchsorted(self._before, k, side="right") - 1
        return self._first[seg] + (k - self._before[seg]) * (self.step_s * 1_000_000)

    def batches(self, readings_per_step: float, batch_readings: int | None = None) -> list[tuple[int, int]]:
        """``(k0, k1)`` ranges of steps holding about ``batch_readings`` readings each
        (default :data:`BATCH_READINGS`)."""
        size = max(1, int((batch_readings or BATCH_READINGS) / max(readings_per_step, 1.0)))
        return [(k, min(k + size, self.n_bins)) for k in range(0, self.n_bins, size)]


def _offset_segments(a_us: int, b_us: int, zone: ZoneInfo) -> list[tuple[int, int]]:
    """``(from µs, UTC offset µs)`` of each span of one offset of ``zone`` over ``[a, b)``.

    Offsets are sampled every 6 hours and each change is found to the second by bisection
    (no zone changes its offset twice within 6 hours).

    >>> a, b = _to_us(datetime(2025, 4, 5, tzinfo=UTC)), _to_us(datetime(2025, 4, 6, tzinfo=UTC))
    >>> [(str(_from_us(t)), off // 60_000_000) for t, off in _offset_segments(a, b, ZoneInfo("Australia/Lord_Howe"))]
    [('2025-04-05 00:00:00+00:00', 660), ('2025-04-05 15:00:00+00:00', 630)]
    """
    def offset(sec: int) -> int:
        sec = min(max(sec, _FIRST_S), _LAST_S)  # what datetime can hold
        return int(datetime.fromtimestamp(sec, zone).utcoffset().total_seconds())  # type: ignore[union-attr]

    a, b = a_us // 1_000_000, -(-b_us // 1_000_000)
    samples = list(range(a, b, 6 * 3600)) + [b]
    segments = [(a_us, offset(a) * 1_000_000)]
    prev = samples[0]
    for s in samples[1:]:
        if offset(s) != offset(prev):
            lo, hi = prev, s  # offset(lo) is the old one, offset(hi) the new one
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if offset(mid) == offset(prev) else (lo, mid)
            segments.append((hi * 1_000_000, offset(hi) * 1_000_000))
        prev = s
    return segments


def _to_us(t: datetime) -> int:
    return (t - _EPOCH) // timedelta(microseconds=1)


def _from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(us))


# --- reading and aggregating ----------------------------------------------------------------------


def decode_copy(data: bytes | bytearray | memoryview) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """``{channel: (times µs since 1970, values)}``, sorted by time, from a binary COPY of
    ``channel_id integer, times timestamptz[], vals double precision[]`` rows (no NULLs).

    >>> decode_copy(b"PGCOPY\\n\\xff\\r\\n\\x00" + bytes(8) + b"\\xff\\xff")
    {}
    """
    decoder = CopyDecoder()
    decoder.feed(data)
    return decoder.out


class CopyDecoder:
    """Decodes a binary COPY of ``channel_id, times[], vals[]`` rows as its pieces arrive
    (:meth:`feed`), keeping only an incomplete row's bytes: PostgreSQL sends a row per
    message, so a batch's raw bytes are never held whole. ``out`` is as :func:`decode_copy`'s.
    """

    def __init__(self) -> None:
        self.out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._buf = bytearray()
        self._header = False

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        self._buf += chunk
        buf, pos = memoryview(self._buf), 0
        try:
            if not self._header:
                if len(buf) < 19 or len(buf) < 19 + int.from_bytes(buf[15:19], "big"):
                    return
                pos, self._header = 19 + int.from_bytes(buf[15:19], "big"), True
            while len(buf) - pos >= 2:
                if int.from_bytes(buf[pos:pos + 2], "big", signed=True) == -1:  # the trailer
                    pos = len(buf)
                    break
                end = self._row_end(buf, pos)
                if end is None:
                    break
                self._row(buf, pos)
                pos = end
        finally:
            buf.release()
        self._buf = self._buf[pos:]  # a new buffer: no view of the old one outlives it

    @staticmethod
    def _row_end(buf: memoryview, pos: int) -> int | None:
        """Where the row at ``pos`` ends, or None if it has not all arrived."""
        end = pos + 10  # field count, then the channel id's length and value
        for _ in range(2):
            if len(buf) < end + 4:
                return None
            end += 4 + int.from_bytes(buf[end:end + 4], "big")
        return end if len(buf) >= end else None

    def _row(self, buf: memoryview, pos: int) -> None:
        cid = int.from_bytes(buf[pos + 6:pos + 10], "big", signed=True)
        pos += 10
        arrays = []
        for dtype in (_ARRAY_TIME, _ARRAY_VALUE):
            size = int.from_bytes(buf[pos:pos + 4], "big")
            arrays.append(np.frombuffer(buf[pos + 4 + 20:pos + 4 + size], dtype=dtype)["v"])
            pos += 4 + size
        t = arrays[0].astype(np.int64)
        t += _PG_EPOCH_US
        v = arrays[1].astype(np.float64)
        if t.size > 1 and not (t[1:] >= t[:-1]).all():  # array_agg's order is not promised
            order = np.argsort(t, kind="stable")
            t, v = t[order], v[order]
        self.out[cid] = (t, v)


def fetch(conn: psycopg.Connection, channel_ids: Sequence[int], start_us: int, end_us: int
          ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """The readings of ``channel_ids`` in ``[start, end)`` by binary COPY, per channel."""
    decoder = CopyDecoder()
    with conn.cursor() as cur, cur.copy(_sql.q("copy_readings"), {
            "channel_ids": list(channel_ids), "start": _from_us(start_us), "end": _from_us(end_us)}) as copy:
        for chunk in copy:
            decoder.feed(chunk)
    return decoder.out


def aggregate(bins: np.ndarray, values: np.ndarray, n_bins: int, how: str,
              partner: np.ndarray | None = None) -> np.ndarray:
    """One channel's readings put into time steps: ``bins`` is each reading's step index.

    ``how``: ``mean``, ``direction`` (vector mean, degrees), ``min``, ``max``, ``sum`` or
    ``sd`` (with ``partner``, the average channel's value at each reading, NaN if none:
    ``sqrt(mean(sd²) + var(avg))``). Steps without readings are NaN.

    >>> b = np.array([0, 0, 2]); v = np.array([1.0, 3.0, 5.0])
    >>> aggregate(b, v, 3, "mean"), aggregate(b, v, 3, "max"), aggregate(b, v, 3, "sum")
    (array([ 2., nan,  5.]), array([ 3., nan,  5.]), array([ 4., nan,  5.]))
    >>> aggregate(np.array([0, 0]), np.array([350.0, 10.0]), 1, "direction").round(6)
    array([0.])
    >>> aggregate(np.array([0, 0]), np.array([80.0, 100.0]), 1, "direction").round(6)
    array([90.])
    >>> aggregate(np.array([0, 0]), np.array([1.0, 1.0]), 1, "sd", partner=np.array([5.0, 7.0]))
    array([1.41421356])
    """
    out = np.full(n_bins, np.nan)
    if not values.size:
        return out
    n = np.bincount(bins, minlength=n_bins)
    has = n > 0
    if n.max() == 1 and how != "sd":  # one reading per step: the value itself
        out[bins] = values
        return out
    if how == "max":
        np.fmax.at(out, bins, values)
    elif how == "min":
        np.fmin.at(out, bins, values)
    elif how == "sum":
        out[has] = np.bincount(bins, values, n_bins)[has]
    elif how == "direction":
        rad = np.deg2rad(values)
        s, c = np.bincount(bins, np.sin(rad), n_bins), np.bincount(bins, np.cos(rad), n_bins)
        deg = np.mod(np.rad2deg(np.arctan2(s[has], c[has])), 360.0)
        out[has] = np.where(deg >= 360.0, 0.0, deg)  # mod of a tiny negative angle gives 360
    elif how == "sd":
        within = np.bincount(bins, values * values, n_bins)
        out[has] = within[has] / n[has]
        if partner is not None:
            ok = ~np.isnan(partner)
            k = np.bincount(bins[ok], minlength=n_bins)
            m1 = np.bincount(bins[ok], partner[ok], n_bins)
            m2 = np.bincount(bins[ok], partner[ok] ** 2, n_bins)
            both = has & (k > 0)
            between = m2[both] / k[both] - (m1[both] / k[both]) ** 2
            out[both] += np.maximum(between, 0.0)
        out = np.sqrt(out)
    else:
        out[has] = np.bincount(bins, values, n_bins)[has] / n[has]
    return out


def how_to_aggregate(statistic: str, measurement_type: str) -> str:
    """The :func:`aggregate` rule of a channel.

    >>> how_to_aggregate("avg", "wind_direction"), how_to_aggregate("gust", "wind_speed"), how_to_aggregate("count", "x")
    ('direction', 'max', 'sum')
    """
    if statistic in ("max", "gust"):
        return "max"
    if statistic == "min":
        return "min"
    if statistic in ("sum", "count"):
        return "sum"
    if statistic == "sd":
        return "sd"
    if measurement_type == "wind_direction" and statistic in ("avg", "sample", "median", "mode"):
        return "direction"
    return "mean"


# --- building (the worker) -------------------------------------------------------------------------


class _Progress:
    """Writes progress to the export row on its own autocommit connection."""

    def __init__(self, url: str, export_id: int) -> None:
        self.conn = db.connect(url, autocommit=True)
        self.id = export_id
        self.last = 0.0

    def __call__(self, progress: float, message: str, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last > 0.5:
            self.last = now
            self.conn.execute(_sql.q("export_progress"), {"id": self.id, "progress": min(max(progress, 0.0), 1.0),
                                                          "message": message})

    def close(self) -> None:
        self.conn.close()


def build_export(export_id: int, url: str | None = None, settings: Settings | None = None,
                 final: bool = True) -> dict[str, Any]:
    """Build a queued export (the worker's job; the CLI runs it itself when no worker runs).

    Claims the row (a second builder finds it taken and returns), writes the file and its
    provenance under ``HOME/exports/<id>/`` and marks the row ``done``. A request that turns
    out impossible (:class:`ExportError`) marks it ``failed`` with the reason; a database
    error is re-raised for the job queue to retry (``final=False``: the row goes back to
    ``queued``) or, on the last attempt, marks it ``failed``. Returns the row.
    """
    settings = settings or get_settings()
    url = url or db.database_url(settings)
    with db.connect(url, autocommit=True) as conn:
        row = None
        for _ in range(20):  # the request's transaction may not be visible yet
            row = _sql.fetch_one(conn, "export_by_id", id=export_id)
            if row is not None:
                break
            time.sleep(0.25)
        if row is None:
            raise NotFound(f"no export {export_id}")
        claimed = _sql.fetch_one(conn, "claim_export", id=export_id)
        if claimed is None:
            log.info("export %s is %s; nothing to do", export_id, row["status"])
            return row
    progress = _Progress(url, export_id)
    tmp = settings.exports_dir / f"{export_id}.tmp"
    try:
        result = _build(url, claimed, settings, tmp, progress)
    except Exception as exc:  # noqa: BLE001 - recorded on the row, then re-raised unless final
        shutil.rmtree(tmp, ignore_errors=True)
        transient = isinstance(exc, (psycopg.OperationalError, DatabaseUnavailable))
        status = "queued" if transient and not final else "failed"
        text = str(exc) if isinstance(exc, StationManagerError) else f"{type(exc).__name__}: {exc}"
        with db.connect(url, autocommit=True) as conn:
            conn.execute(_sql.q("export_failed"), {
                "id": export_id, "status": status, "error": text,
                "message": "retrying" if status == "queued" else "failed"})
        log.warning("export %s %s: %s", export_id, "will be retried" if status == "queued" else "failed", text)
        if isinstance(exc, ExportError):
            return _row(url, export_id)
        raise
    finally:
        progress.close()
    log.info("export %s done: %s, %s rows, %s bytes", export_id, result["file_name"], result["n_rows"],
             result["size_bytes"])
    return _row(url, export_id)


def export_ended(export_id: int, reason: str, url: str | None = None) -> None:
    """Mark an export whose build job ended without it (given up after its worker kept dying)
    ``failed`` with ``reason``; a finished export is left as it is."""
    with db.connect(url or db.database_url(get_settings()), autocommit=True) as conn:
        conn.execute(_sql.q("export_job_ended"), {"id": export_id, "error": reason})
    log.warning("export %s failed: %s", export_id, reason)


def _row(url: str, export_id: int) -> dict[str, Any]:
    with db.connect(url) as conn:
        return get_export(conn, export_id)


def _build(url: str, row: dict[str, Any], settings: Settings, tmp: Path,
           progress: Callable[..., None]) -> dict[str, Any]:
    req = ExportRequest.from_params(row["params"])
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with db.connect(url) as conn:
        # one snapshot for the whole file: an import committing meanwhile is not half in it
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        p = plan(conn, req, settings)
        inputs = input_versions(conn, p.station["id"], req)
        progress(0.0, f"reading {len(p.columns)} channels, {p.grid.n_bins:,} time steps", force=True)
        name = _file_name(p)
        writer_path = tmp / name
        header = _header_lines(p, inputs, row["id"], name)
        writer = export_writers.open_writer(req.format, writer_path, p.columns, p.station, req.timezone,
                                            header, req.parquet_layout)
        stats = _write_batches(conn, p, writer, progress)
        stats["mappings"] = _sql.fetch_all(conn, "column_mappings", channel_ids=[c.channel_id for c in p.columns])
        conn.rollback()
    prov = _provenance(p, inputs, row, stats)
    writer.close(prov)
    (tmp / f"{writer_path.stem}.provenance.json").write_text(json.dumps(prov, indent=2, default=str) + "\n")
    final = settings.exports_dir / str(row["id"])
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    size = (final / name).stat().st_size
    with db.connect(url, autocommit=True) as conn:
        conn.execute(_sql.q("export_done"), {
            "id": row["id"], "message": f"{stats['rows']:,} rows, {stats['values']:,} values",
            "file_name": name, "file_path": f"{row['id']}/{name}", "size_bytes": size,
            "n_rows": stats["rows"], "n_values": stats["values"], "provenance": Jsonb(prov),
            "inputs": Jsonb(inputs), "inputs_key": _hash(inputs)})
    return {"file_name": name, "n_rows": stats["rows"], "size_bytes": size}


def _file_name(p: Plan) -> str:
    last = _from_us(p.grid.edges(p.grid.n_bins - 1, p.grid.n_bins - 1)[0])
    parts = [export_writers.slug(p.station["name"]), f"{p.start:%Y%m%d}-{last:%Y%m%d}", p.req.averaging]
    if not p.req.calibrated:
        parts.append("raw")
    return "_".join(parts) + export_writers.EXTENSIONS[p.req.format]


def _categories_removed(req: ExportRequest) -> list[str]:
    if req.exclude_categories is None:
        return list(flags.CATEGORIES)
    return sorted(set(req.exclude_categories))


def _header_lines(p: Plan, inputs: dict[str, Any], export_id: int, name: str) -> list[str]:
    """Lines of the Windographer header block: who made it, how, from what."""
    removed = _categories_removed(p.req)
    return [
        f"Created {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by StationManager {software_version()} "
        f"(Windographer text format), export {export_id}",
        f"Time zone = {p.req.timezone} (UTC{_offset_text(p.req.timezone)})",
        f"Averaging = {p.req.averaging}",
        f"Column headers = {'logger column names' if p.req.headers == 'logger' else 'descriptive'} "
        "(mapping in the provenance)",
        f"Calibrated = {'yes' if p.req.calibrated else 'no (raw logger values)'}",
        "Included flags: <Unflagged data>" if removed else "Included flags: all data",
        f"Excluded flags: {', '.join(removed) if removed else 'none'}",
        f"Inputs = data {inputs['data']}; flags {inputs['flags'] or '-'}; calibrations "
        f"{inputs['calibrations'] or '-'}; metadata {inputs['metadata']}",
        f"Provenance = {Path(name).stem}.provenance.json",
    ]


def _offset_text(tz: str) -> str:
    off = datetime(2020, 1, 15, tzinfo=ZoneInfo(tz)).utcoffset() or timedelta(0)
    minutes = int(off.total_seconds() // 60)
    return f"{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _write_batches(conn: psycopg.Connection, p: Plan, writer: export_writers.Writer,
                   progress: Callable[..., None]) -> dict[str, Any]:
    """Read, clean, aggregate and write the export batch by batch; returns the counts."""
    stats = new_stats()
    for b in blocks(conn, p, stats, marks=(p.req.format, p.req.parquet_layout) == ("parquet", "tidy")):
        writer.write(b.times_us, b.values, b.marks)
        progress(b.k1 / p.grid.n_bins, f"{b.k1:,} of {p.grid.n_bins:,} time steps (batch {b.index + 1} of {b.count})")
    return stats


def new_stats() -> dict[str, Any]:
    """The counts :func:`blocks` keeps: rows, values, readings read, flagged readings removed."""
    return {"rows": 0, "values": 0, "flagged": 0, "readings": 0, "uncalibrated": []}


@dataclass
class Block:
    """One batch of whole time steps, cleaned and aggregated: a row per step, a column per
    :attr:`Plan.columns` entry (NaN = no value).

    ``marks`` (with ``marks=True``) holds, for each value, ``1 + `` the index in
    :data:`core.flags.CATEGORIES` of the flag that covers it and was kept (0: none; where
    several do, or several readings of an averaged step are flagged, the first category in
    that order)."""

    times_us: np.ndarray  # start of each step, int64 µs since 1970 UTC
    values: np.ndarray  # float64, (steps, columns)
    marks: np.ndarray | None  # int8, (steps, columns)
    k1: int  # steps done so far
    index: int  # this batch's number (from 0)
    count: int  # how many batches


def blocks(conn: psycopg.Connection, p: Plan, stats: dict[str, Any], marks: bool = False,
           batch_readings: int | None = None) -> Iterator[Block]:
    """The export's data, batch by batch: read, recalibrated (if asked), flagged readings of
    removed categories dropped, aggregated into the grid's steps. Memory is bounded by two
    batches (about ``batch_readings`` readings each, default :data:`BATCH_READINGS`: the next
    one is read in a thread meanwhile) whatever the period. ``stats`` is updated as
    batches go (see :func:`new_stats`); its ``uncalibrated`` list is set after the last one.
    With ``marks``, each block says which kept values a flag covers (see :class:`Block`).
    """
    from core import calibrations

    req, grid = p.req, p.grid
    out_ids = [c.channel_id for c in p.columns]
    fetch_ids = sorted(set(out_ids) | set(p.helpers.values()))
    cal = calibrations.periods(conn, fetch_ids) if req.calibrated else {}
    removed = _categories_removed(req)
    mask: dict[int, list[flags.MaskInterval]] = {c: [] for c in fetch_ids}
    if removed:
        keep = [c for c in flags.CATEGORIES if c not in removed]
        for iv in flags.flag_mask(conn, fetch_ids, p.start, p.end, exclude_categories=keep):
            mask[iv.channel_id].append(iv)
    kept = _kept_flags(conn, out_ids, p, removed) if marks else {}
    native_s = min(p.native_s, grid.step_s)
    batches = grid.batches(len(fetch_ids) * grid.step_s / native_s, batch_readings or BATCH_READINGS)
    start_us, end_us = _to_us(p.start), _to_us(p.end)
    how = {c.channel_id: how_to_aggregate(c.statistic, c.measurement_type) for c in p.columns}

    def read(k: int) -> tuple[np.ndarray, dict[int, tuple[np.ndarray, np.ndarray]]]:
        edges = grid.edges(*batches[k])
        return edges, fetch(conn, fetch_ids, max(int(edges[0]), start_us), min(int(edges[-1]), end_us))

    # The next batch is read (the server's work and the decoding) while this one is cleaned,
    # aggregated and written: two batches in memory at most. Leaving early (the generator
    # closed) waits for the read under way, so the connection is free again on return.
    with ThreadPoolExecutor(1, thread_name_prefix="export-read") as reader:
        pending = reader.submit(read, 0) if batches else None
        for i, (k0, k1) in enumerate(batches):
            assert pending is not None
            edges, fetched = pending.result()
            pending = reader.submit(read, i + 1) if i + 1 < len(batches) else None
            yield _block(p, edges, _clean(fetched, p, cal, mask, stats), how, kept, marks, stats,
                         k1, i, len(batches))
    stats["uncalibrated"] = _uncalibrated(p, cal) if req.calibrated else []


def _block(p: Plan, edges: np.ndarray, series: dict[int, tuple[np.ndarray, np.ndarray]], how: dict[int, str],
           kept: dict[int, list[tuple[int, list[flags.MaskInterval]]]], marks: bool, stats: dict[str, Any],
           k1: int, index: int, count: int) -> Block:
    """One batch's steps × columns, aggregated (and marked)."""
    n = len(edges) - 1
    block = np.full((n, len(p.columns)), np.nan)
    marked = np.zeros((n, len(p.columns)), np.int8) if marks else None
    for j, c in enumerate(p.columns):
        tt, vv = series[c.channel_id]
        bins = np.searchsorted(edges, tt, side="right") - 1
        partner = _partner_values(tt, series[p.helpers[c.channel_id]]) if c.channel_id in p.helpers else None
        block[:, j] = aggregate(bins, vv, n, how[c.channel_id], partner)
        if marked is not None and kept.get(c.channel_id):
            marked[:, j] = _marks(tt, bins, n, kept[c.channel_id])
    stats["rows"] += n
    stats["values"] += int(np.count_nonzero(~np.isnan(block)))
    return Block(edges[:-1], block, marked, k1, index, count)


def _kept_flags(conn: psycopg.Connection, channel_ids: list[int], p: Plan, removed: list[str]
                ) -> dict[int, list[tuple[int, list[flags.MaskInterval]]]]:
    """Per channel, ``(category code, intervals)`` of the flag categories that are kept, in
    :data:`core.flags.CATEGORIES` order (code = 1 + index)."""
    out: dict[int, list[tuple[int, list[flags.MaskInterval]]]] = {}
    for code, category in enumerate(flags.CATEGORIES, start=1):
        if category in removed:
            continue
        others = [c for c in flags.CATEGORIES if c != category]
        by_channel: dict[int, list[flags.MaskInterval]] = {}
        for iv in flags.flag_mask(conn, channel_ids, p.start, p.end, exclude_categories=others):
            by_channel.setdefault(iv.channel_id, []).append(iv)
        for cid, ivs in by_channel.items():
            out.setdefault(cid, []).append((code, ivs))
    return out


def _marks(times: np.ndarray, bins: np.ndarray, n_bins: int,
           kept: list[tuple[int, list[flags.MaskInterval]]]) -> np.ndarray:
    """Each step's flag code (see :class:`Block`): the lowest code of its readings' flags."""
    code = np.zeros(len(times), np.int8)
    for c, ivs in reversed(kept):  # the first category last: it wins
        hit = flags.apply_mask(times, ivs[0].channel_id, ivs)
        code[hit] = c
    out = np.zeros(n_bins, np.int8)
    flagged = code > 0
    if flagged.any():
        worst = np.full(n_bins, np.inf)
        np.fmin.at(worst, bins[flagged], code[flagged].astype(np.float64))
        has = np.isfinite(worst)
        out[has] = worst[has].astype(np.int8)
    return out


def _clean(fetched: dict[int, tuple[np.ndarray, np.ndarray]], p: Plan, cal: dict[int, list],
           mask: dict[int, list[flags.MaskInterval]], stats: dict[str, Any]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Each fetched channel recalibrated (if asked) and without its flagged readings."""
    from core import calibrations

    out = {}
    for cid in mask:
        tt, vv = fetched.get(cid, (np.empty(0, np.int64), np.empty(0, np.float64)))
        if cid in p.statistics:
            stats["readings"] += len(tt)
        if p.req.calibrated and cal.get(cid):
            vv = calibrations.apply(vv, tt, p.statistics.get(cid, "avg"), cal[cid])  # helpers are avg
        if mask[cid]:
            flagged = flags.apply_mask(tt, cid, mask[cid])
            if cid in p.statistics:
                stats["flagged"] += int(flagged.sum())
            tt, vv = tt[~flagged], vv[~flagged]
        out[cid] = (tt, vv)
    return out


def _partner_values(times: np.ndarray, partner: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The partner channel's value at each of ``times`` (NaN where it has none).

    >>> _partner_values(np.array([1, 2, 3]), (np.array([2, 3, 4]), np.array([20.0, 30.0, 40.0])))
    array([nan, 20., 30.])
    """
    pt, pv = partner
    out = np.full(len(times), np.nan)
    if len(pt):
        pos = np.minimum(np.searchsorted(pt, times), len(pt) - 1)
        hit = pt[pos] == times
        out[hit] = pv[pos[hit]]
    return out


def _uncalibrated(p: Plan, cal: dict[int, list]) -> list[dict[str, Any]]:
    """The channels and spans of the period that no calibration covers."""
    from core import calibrations

    affected = getattr(calibrations, "LINEAR_STATISTICS", set()) | getattr(calibrations, "SPREAD_STATISTICS", set())
    out = []
    for c in p.columns:
        if affected and c.statistic not in affected:
            continue
        spans = calibrations.uncovered(cal.get(c.channel_id, []), p.start, p.end)
        if spans:
            out.append({"channel": c.header, "column_name": c.column_name,
                        "spans": [[a.isoformat(), b.isoformat()] for a, b in spans]})
    return out


#: How a column's logger name relates to its readings, in every provenance.
HEADER_RULE = (
    "Each column is one logger column: it holds the readings logged under that column name and no "
    "others, so the logger name written is the one in force for every value of the column, at the end "
    "of the period too. A sensor whose logger column was renamed (column mapping over time) is written "
    "as one column per name, each filled over the time that name was logged; 'mapping' lists the "
    "measurement point each column recorded over time. The descriptive header follows the column's "
    "latest mapping. Headers are unique regardless of case; a name already taken (or a time column's "
    "name) gets _2, _3...")


#: How text files write a header that a spreadsheet would read as a formula.
TEXT_HEADER_RULE = (
    "In CSV and Windographer text, a header that starts with =, +, -, @, a tab or a carriage return "
    "(and is not a number) is written as text_header: with a ' in front, quoted, so that a spreadsheet "
    "opening the file shows it and runs no formula. Parquet and this file keep the header itself.")


def _header_mapping(p: Plan, mappings: list[dict[str, Any]]) -> dict[str, Any]:
    """Header written ↔ logger column name ↔ descriptive header ↔ channel id, with each
    column's mapping to measurement points over time."""
    history: dict[int, list[dict[str, Any]]] = {}
    for m in mappings:
        history.setdefault(m["channel_id"], []).append({
            "point": m["point"], "statistic": m["statistic"],
            "from": m["valid_from"].isoformat() if m["valid_from"] else None,
            "to": m["valid_to"].isoformat() if m["valid_to"] else None})
    columns = []
    for c in p.columns:
        now = [{"point": p.points[c.channel_id], "statistic": c.statistic, "from": None, "to": None}] \
            if p.points.get(c.channel_id) else []
        columns.append({"header": c.written, "text_header": spreadsheet.safe_cell(c.written),
                        "column_name": c.column_name, "descriptive": c.header,
                        "channel_id": c.channel_id, "mapping": history.get(c.channel_id, now)})
    return {"written": p.req.headers, "rule": HEADER_RULE, "text_rule": TEXT_HEADER_RULE, "columns": columns}


def _provenance(p: Plan, inputs: dict[str, Any], row: dict[str, Any], stats: dict[str, Any]) -> dict[str, Any]:
    removed = _categories_removed(p.req)
    cells = stats["rows"] * len(p.columns)
    return {
        "software": {"name": "StationManager", "version": software_version()},
        "export_id": row["id"], "requested_by": row["requested_by"],
        "created_at": datetime.now(UTC).isoformat(),
        "station": {k: p.station[k] for k in ("name", "latitude", "longitude", "elevation_m")},
        "parameters": row["params"],
        "period": {"start": p.start.isoformat(), "end": p.end.isoformat(),
                   "first_step": _from_us(p.grid.origin_us).isoformat(), "time_zone": p.req.timezone,
                   "time_stamps": "beginning of each time step"},
        "inputs": inputs,
        "columns": [c.describe() for c in p.columns],
        "headers": _header_mapping(p, stats.get("mappings", [])),
        "calibration": {
            "applied": p.req.calibrated,
            "rule": "raw = (logged - logger_offset) / logger_slope; value = raw * cal_slope + cal_offset "
                    "(avg/min/max/gust/sample/median/mode); sd * |cal_slope / logger_slope|",
            "uncalibrated": stats["uncalibrated"],
            "note": "values in uncalibrated spans are written as logged",
        },
        "flags": {"categories_removed": removed, "readings_removed": stats["flagged"]},
        "averaging": {"step": p.req.averaging, "rules": "mean of averages (vector mean for wind direction), "
                      "min of minima, max of maxima and gusts, sum of sums and counts, "
                      "sd = sqrt(mean(sd^2) + var(avg of the same sensor))"},
        "counts": {"rows": stats["rows"], "columns": len(p.columns), "values": stats["values"],
                   "missing": cells - stats["values"], "readings_read": stats["readings"]},
    }

