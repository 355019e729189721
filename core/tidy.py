"""The tidy long table of readings, streamed in bounded memory whatever the period.

One row per value, joined to its channel's metadata (:data:`core.export_writers.TIDY_SCHEMA`):

========================  ===============================================================
``time``                  start of the time step, UTC (``[start, end)`` like every period)
``station``               the station's name
``channel``               the logger column name, as the app's channel pickers show it
``measurement_type``      ``wind_speed``, ``air_temperature`` … (``unknown`` when unmapped)
``height_m``              the measurement point's height (null when unknown)
``orientation_deg``       the boom orientation (null when unknown)
``statistic``             ``avg``, ``sd``, ``min``, ``max``, ``gust`` …
``unit``                  the unit of the value
``value``                 the value, cleaned as an export cleans it
``flag``                  the flag category when a flag covers the value and it was kept,
                          else null
========================  ===============================================================

It is the same data as the export of the same options, through the same code
(:func:`core.exports.blocks`): binary COPY in batches of whole time steps, recalibrated
(:func:`core.calibrations.apply`) unless raw values are asked for, the readings of removed
flag categories dropped (:func:`core.flags.apply_mask`), then aggregated
(:func:`core.exports.aggregate`). ``exclude_categories=None`` removes every flagged value, as
exports do by default; ``()`` keeps them all and *marks* them in ``flag``; a list removes those
categories and marks the others. Where several kept flags cover a value (or several readings of
an averaged step), ``flag`` is the first in :data:`core.flags.CATEGORIES` order. Time steps
without a value give no row.

Formats (:data:`FORMATS`): ``parquet`` (one row group per batch, zstd), ``csv`` (a header
row, ISO 8601 UTC times ``2025-01-01T00:10:00Z``, empty fields for nulls) and ``json``
(**JSON Lines**: one object per line, ``null`` for nulls — a reader can start before the end
and never holds a whole array). Rows are ordered by time, then by the export's column order.

:func:`stream_readings` checks the query and resolves it against the database *when called*
(so a web handler can answer a bad request with an error before any byte is sent), then
returns an iterator of byte chunks, one per batch.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from core import db, exports, flags
from core.errors import InvalidValue, NotFound
from core.export_writers import TIDY_SCHEMA, TidyRows, tidy_parquet_writer
from core.settings import Settings, get_settings

FORMATS = ("parquet", "csv", "json")
MEDIA_TYPES = {"parquet": "application/vnd.apache.parquet", "csv": "text/csv; charset=utf-8",
               "json": "application/x-ndjson"}
EXTENSIONS = {"parquet": ".parquet", "csv": ".csv", "json": ".jsonl"}
#: The parameters :meth:`ReadingsQuery.from_params` reads (``format`` is the caller's).
PARAMS = ("station", "channels", "types", "start", "end", "calibrated", "exclude", "averaging", "format")
COLUMNS = tuple(TIDY_SCHEMA.names)
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


class QueryError(InvalidValue):
    """The readings query cannot be answered as asked."""


@dataclass(frozen=True)
class ReadingsQuery:
    """Which readings, cleaned how. ``start``/``end`` are UTC (naive = UTC), ``[start, end)``;
    ``None`` = from the first or to the last reading. ``channel_ids`` or ``measurement_types``
    narrow the channels (neither: every mapped channel). ``exclude_categories``: ``None``
    removes every flagged value (as exports do), ``()`` keeps and marks them all, a tuple removes
    those categories and marks the others. ``averaging`` is one of
    :data:`core.exports.AVERAGING` (UTC steps)."""

    station: str
    start: datetime | None = None
    end: datetime | None = None
    channel_ids: tuple[int, ...] | None = None
    measurement_types: tuple[str, ...] | None = None
    calibrated: bool = True
    exclude_categories: tuple[str, ...] | None = None
    averaging: str = "10min"

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> ReadingsQuery:
        """A query from request parameters (text, as in a URL's query string, or lists for
        repeated parameters): ``station``, ``channels`` (ids, comma-separated), ``types``,
        ``start``, ``end`` (ISO 8601; a date is its UTC midnight; no offset = UTC),
        ``calibrated`` (true/false), ``exclude`` (``all``, the default, removes every flagged
        value; ``none`` keeps and marks them; or categories, comma-separated) and
        ``averaging``. ``format`` is allowed and ignored (see :func:`stream_readings`).
        Every problem is reported at once (:class:`QueryError`).

        >>> q = ReadingsQuery.from_params({"station": "M", "channels": "3,1", "start": "2025-01-01",
        ...                                "calibrated": "false", "exclude": "none"})
        >>> q.channel_ids, q.start.isoformat(), q.calibrated, q.exclude_categories
        ((1, 3), '2025-01-01T00:00:00+00:00', False, ())
        >>> try:
        ...     ReadingsQuery.from_params({"station": "M", "averaging": "2h", "start": "soon"})
        ... except QueryError as exc:
        ...     print(exc)
        start: 'soon' is not a date and time (use ISO 8601 such as 2025-01-31 or 2025-01-31T12:00:00Z); averaging: '2h' is not one of: 10min, 1h, 1d
        """
        problems: list[str] = []
        unknown = sorted(set(params) - set(PARAMS))
        if unknown:
            problems.append(f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                            f"known: {', '.join(PARAMS)}")
        station = _one(params, "station", problems)
        if not station or not station.strip():
            problems.append("station: give the station's name")
        ids = _items(params, "channels", problems)
        channel_ids = None
        if ids is not None:
            try:
                channel_ids = tuple(sorted({int(i) for i in ids}))
            except ValueError:
                problems.append(f"channels: {','.join(ids)!r} is not a list of channel ids such as 12,13")
        types = _items(params, "types", problems)
        if ids is not None and types is not None:
            problems.append("give channels or types, not both")
        start, end = _when(params, "start", problems), _when(params, "end", problems)
        calibrated = True
        text = _one(params, "calibrated", problems)
        if text is not None:
            if text.strip().lower() not in _TRUE + _FALSE:
                problems.append(f"calibrated: {text!r} is not true or false")
            calibrated = text.strip().lower() in _TRUE
        exclude: tuple[str, ...] | None = None
        cats = _items(params, "exclude", problems, empty_ok=True)
        if cats is not None:
            lowered = [c.strip().lower() for c in cats]
            if lowered in ([], ["none"]):
                exclude = ()
            elif lowered != ["all"]:
                exclude = tuple(sorted(set(lowered)))
        averaging = _one(params, "averaging", problems) or "10min"
        query = cls(station=station or "", start=start, end=end, channel_ids=channel_ids,
                    measurement_types=None if types is None else tuple(sorted(set(types))),
                    calibrated=calibrated, exclude_categories=exclude, averaging=averaging)
        problems += query.problems()
        if problems:
            raise QueryError("; ".join(dict.fromkeys(problems)), problems=list(dict.fromkeys(problems)))
        return query

    def problems(self) -> list[str]:
        """What is wrong with the query on its own (empty: nothing).

        >>> ReadingsQuery("M", exclude_categories=("snow",)).problems()
        ["exclude: flag category 'snow' is not one of: icing, maintenance, tower shadow, faulty sensor, suspect, other (or all, or none)"]
        """
        out = []
        if self.averaging not in exports.AVERAGING:
            out.append(f"averaging: {self.averaging!r} is not one of: {', '.join(exports.AVERAGING)}")
        for c in self.exclude_categories or ():
            if c not in flags.CATEGORIES:
                out.append(f"exclude: flag category {c!r} is not one of: {', '.join(flags.CATEGORIES)} "
                           "(or all, or none)")
        if self.start is not None and self.end is not None and _utc(self.end) <= _utc(self.start):
            out.append("end: the end must come after the start")
        if self.channel_ids is not None and not self.channel_ids:
            out.append("channels: choose at least one channel (or leave it out for every mapped channel)")
        if self.measurement_types is not None and not self.measurement_types:
            out.append("types: choose at least one measurement type (or leave it out for every type)")
        return out

    def export_request(self, fmt: str = "parquet") -> exports.ExportRequest:
        """The export of the same data (``parquet_layout="tidy"``, UTC steps)."""
        return exports.ExportRequest(
            station=self.station, format=fmt, start=self.start, end=self.end, channel_ids=self.channel_ids,
            measurement_types=self.measurement_types, calibrated=self.calibrated,
            exclude_categories=self.exclude_categories, averaging=self.averaging, timezone="UTC",
            parquet_layout="tidy")


def _one(params: Mapping[str, Any], name: str, problems: list[str]) -> str | None:
    v = params.get(name)
    if isinstance(v, (list, tuple)):
        if len(v) > 1:
            problems.append(f"{name}: give it once")
        v = v[0] if v else None
    return None if v is None else str(v)


def _items(params: Mapping[str, Any], name: str, problems: list[str], empty_ok: bool = False) -> list[str] | None:
    """A list parameter: repeated, comma-separated, or both. ``None`` when absent."""
    v = params.get(name)
    if v is None:
        return None
    raw = v if isinstance(v, (list, tuple)) else [v]
    items = [p.strip() for x in raw for p in str(x).split(",") if p.strip()]
    if not items and not empty_ok:
        problems.append(f"{name}: empty; leave it out or give at least one value")
    return items


def _when(params: Mapping[str, Any], name: str, problems: list[str]) -> datetime | None:
    text = _one(params, name, problems)
    if text is None:
        return None
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        problems.append(f"{name}: {text!r} is not a date and time (use ISO 8601 such as 2025-01-31 or "
                        "2025-01-31T12:00:00Z)")
        return None
    try:
        return _utc(t)
    except OverflowError:  # astimezone past year 1 or 9999
        problems.append(f"{name}: {text!r} is out of range (years 1 to 9999 in UTC)")
        return None


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


# --- streaming ------------------------------------------------------------------------------------


class _Sink(io.RawIOBase):
    """A write-only file whose bytes are taken out as they come (:meth:`take`)."""

    def __init__(self) -> None:
        super().__init__()
        self._chunks: list[bytes] = []
        self._pos = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self._chunks.append(data)
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def take(self) -> bytes:
        out = b"".join(self._chunks)
        self._chunks.clear()
        return out


class _Encoder:
    """Writes tidy tables in one format; :meth:`take` returns the bytes written so far."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self.sink = _Sink()
        self._pq: pq.ParquetWriter | None = None
        self._csv: pacsv.CSVWriter | None = None
        if fmt == "parquet":
            self._pq = tidy_parquet_writer(self.sink)
        elif fmt == "csv":
            self.sink.write(",".join(COLUMNS).encode() + b"\n")

    def write(self, table: pa.Table) -> None:
        if self._pq is not None:
            self._pq.write_table(table)
        elif self.fmt == "csv":
            self._write_csv(_as_text(table))
        elif table.num_rows:
            self._write_json(_as_text(table))

    def _write_csv(self, table: pa.Table) -> None:
        if self._csv is None:
            self._csv = pacsv.CSVWriter(self.sink, table.schema, write_options=pacsv.WriteOptions(
                include_header=False, quoting_style="needed"))
        self._csv.write_table(table)

    def _write_json(self, table: pa.Table) -> None:
        cols = [c.to_pylist() for c in table.columns]
        names = table.column_names
        lines = []
        for row in zip(*cols):
            lines.append(json.dumps(dict(zip(names, (None if isinstance(v, float) and math.isnan(v) else v
                                                      for v in row))), ensure_ascii=False))
        self.sink.write(("\n".join(lines) + "\n").encode("utf-8"))

    def close(self) -> None:
        if self._pq is not None:
            self._pq.close()
        elif self._csv is not None:
            self._csv.close()

    def take(self) -> bytes:
        return self.sink.take()


def _as_text(table: pa.Table) -> pa.Table:
    """Text columns decoded and times as ``YYYY-MM-DDTHH:MM:SSZ`` (for CSV and JSON; a time
    with a fraction of a second keeps it: ``…:SS.ffffffZ``)."""
    arrays = []
    for field, col in zip(table.schema, table.columns):
        if field.name == "time":
            col = pc.replace_substring(pc.strftime(col, format="%Y-%m-%dT%H:%M:%SZ"), ".000000Z", "Z")
        elif pa.types.is_dictionary(field.type):
            col = col.cast(pa.string())
        arrays.append(col)
    return pa.Table.from_arrays(arrays, names=table.column_names)


def stream_readings(conn_or_url: psycopg.Connection | str, query: ReadingsQuery, fmt: str,
                    settings: Settings | None = None) -> Iterator[bytes]:
    """The readings of ``query`` as a tidy table in ``fmt`` (:data:`FORMATS`), as byte chunks.

    The query is checked and resolved (station, channels, period) now: :class:`QueryError`
    for a bad query, :class:`core.errors.NotFound` for an unknown station. The data is read when
    the iterator is consumed, in one read-only snapshot, a batch of whole time steps at a time
    (about ``STATIONMANAGER_READINGS_BATCH`` readings), so memory stays bounded whatever the
    period. With a URL, one connection of the process's pool (:func:`core.db.pool`) serves the
    check and the read and returns to the pool when the iterator is exhausted or closed: however
    many read at once, the process keeps to its pool (the connection budget), and a caller
    waits for a free connection (:class:`core.errors.PoolBusy` after ``POOL_WAIT_S``) before
    anything is read. With a connection, the caller keeps it open, and does not use it, until
    the iterator is exhausted or closed (the next batch is read on it in a thread meanwhile).
    """
    if fmt not in FORMATS:
        raise QueryError(f"format: {fmt!r} is not one of: {', '.join(FORMATS)}")
    problems = query.problems()
    if problems:
        raise QueryError("; ".join(problems), problems=problems)
    settings = settings or get_settings()
    req = query.export_request()
    if isinstance(conn_or_url, str):
        with contextlib.ExitStack() as stack:
            conn = stack.enter_context(db.pooled(db.pool(conn_or_url)))
            # one snapshot for the check and the read
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            plan = _plan(conn, req, settings)
            held = stack.pop_all()  # the connection stays out of the pool while the data is read
        return _stream_held(conn, held, plan, fmt, settings.readings_batch)
    return _stream(conn_or_url, _plan(conn_or_url, req, settings), fmt, settings.readings_batch)


def _plan(conn: psycopg.Connection, req: exports.ExportRequest, settings: Settings) -> exports.Plan:
    if db.fetch_one(conn, "station_by_name", name=req.station) is None:
        raise NotFound(f"there is no station {req.station!r}")
    try:
        return exports.plan(conn, req, settings)
    except exports.ExportError as exc:
        raise QueryError(str(exc)) from exc


def _stream_held(conn: psycopg.Connection, held: contextlib.ExitStack, plan: exports.Plan,
                 fmt: str, batch: int) -> Iterator[bytes]:
    with held:
        try:
            yield from _stream(conn, plan, fmt, batch)
        finally:
            conn.rollback()


def _stream(conn: psycopg.Connection, plan: exports.Plan, fmt: str, batch: int) -> Iterator[bytes]:
    rows = TidyRows(plan.station["name"], plan.columns)
    enc = _Encoder(fmt)
    stats = exports.new_stats()
    for block in exports.blocks(conn, plan, stats, marks=True, batch_readings=batch):
        enc.write(rows.table(block.times_us, block.values, block.marks))
        chunk = enc.take()
        if chunk:
            yield chunk
    enc.close()
    chunk = enc.take()
    if chunk:
        yield chunk
