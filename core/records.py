"""Whole logger records: the period a selection on a chart really means.

A reading is stamped at the **start** of its period, so the record stamped ``t`` covers
``[t, t + interval)``. An analyst who drags across a chart from 15:57 to 07:54 on 10-minute
data means the records in between, and a flag that cut a record in two would leave half a
record flagged, which nothing downstream can represent. :func:`snap` therefore widens a
selection to **every record it touches**: the start goes back to the start of its record,
the end forward to the end of its record (15:57–07:54 becomes 15:50–08:00). A boundary
stays where it is; a zero-width selection means the one record it falls in.

Records lie on the logger's clock: a logger at UTC+05:45 writing 10-minute records stamps
local :00, :10…, which are :15, :25… UTC. The grid is therefore the interval counted from
the logger's local midnight, taken from the logger configuration in force (interval and UTC
offset; whether it stamps the end of the period does not move the grid). Where the
configuration changes inside a selection (a new interval, a logger set to another offset),
the start is snapped on the grid in force at the start and the end on the grid in force at
the end. Where several loggers are in force at once, the longest interval wins, so every
record of every logger is covered whole.

Times are UTC (naive datetimes are taken as UTC); the station page draws its charts in UTC.

Flags typed with explicit times (``stationmanager flag add``, the Flags page, cleaning logs)
are not snapped: explicit times are what the user meant.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import psycopg

from core import db

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TINY = timedelta(microseconds=1)
#: The record length assumed for a station without a logger configuration.
DEFAULT_INTERVAL_S = 600


class Clock(NamedTuple):
    """One logger configuration's record grid over ``[valid_from, valid_to)`` (None: open)."""

    interval_s: int = DEFAULT_INTERVAL_S
    utc_offset_minutes: int = 0
    valid_from: datetime | None = None
    valid_to: datetime | None = None


class Snapped(NamedTuple):
    """A selection widened to whole records: ``[start, end)``, and the record lengths (s) at
    its start and end (equal unless the logger configuration changes inside it)."""

    start: datetime
    end: datetime
    start_interval_s: int
    end_interval_s: int


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def floor_record(t: datetime, interval_s: int, utc_offset_minutes: int = 0) -> datetime:
    """The start of the record ``t`` falls in.

    >>> floor_record(datetime(2025, 3, 1, 15, 57, tzinfo=UTC), 600)
    datetime.datetime(2025, 3, 1, 15, 50, tzinfo=datetime.timezone.utc)
    >>> floor_record(datetime(2025, 3, 1, 15, 50, tzinfo=UTC), 600).minute   # a boundary stays
    50
    >>> floor_record(datetime(2025, 3, 1, 15, 57, tzinfo=UTC), 600, 345).minute   # UTC+05:45: :45, :55 …
    55
    """
    if interval_s <= 0:
        raise ValueError("a record interval must be positive")
    origin = _EPOCH - timedelta(minutes=utc_offset_minutes)  # the logger's local midnight, 1970-01-01
    t = _utc(t)
    return t - (t - origin) % timedelta(seconds=interval_s)


def ceil_record(t: datetime, interval_s: int, utc_offset_minutes: int = 0) -> datetime:
    """The end of the record ``t`` falls in, unless ``t`` is a record boundary already.

    >>> ceil_record(datetime(2025, 3, 1, 7, 54, tzinfo=UTC), 600)
    datetime.datetime(2025, 3, 1, 8, 0, tzinfo=datetime.timezone.utc)
    >>> ceil_record(datetime(2025, 3, 1, 8, 0, tzinfo=UTC), 3600).hour
    8
    """
    f = floor_record(t, interval_s, utc_offset_minutes)
    return f if f == _utc(t) else f + timedelta(seconds=interval_s)


def clock_at(clocks: Sequence[Clock], t: datetime) -> Clock:
    """The configuration in force at ``t`` (the longest interval if several are), else the
    nearest one in time, else the default 10-minute UTC grid.

    >>> d = lambda *a: datetime(*a, tzinfo=UTC)
    >>> cs = [Clock(600, 0, None, d(2025, 6, 1)), Clock(3600, 0, d(2025, 6, 1), None)]
    >>> clock_at(cs, d(2025, 5, 31, 23, 59)).interval_s, clock_at(cs, d(2025, 6, 1)).interval_s
    (600, 3600)
    >>> clock_at([], d(2025, 1, 1))
    Clock(interval_s=600, utc_offset_minutes=0, valid_from=None, valid_to=None)
    """
    t = _utc(t)

    def distance(c: Clock) -> timedelta:
        if c.valid_from is not None and t < c.valid_from:
            return c.valid_from - t
        if c.valid_to is not None and t >= c.valid_to:
            return t - c.valid_to + _TINY
        return timedelta(0)

    if not clocks:
        return Clock()
    return min(clocks, key=lambda c: (distance(c), -c.interval_s))


def snap(start: datetime, end: datetime, clocks: Sequence[Clock] | int = DEFAULT_INTERVAL_S) -> Snapped:
    """``[start, end)`` widened to every record it touches (see the module docstring).

    ``clocks``: the station's logger configurations (:func:`logger_clocks`), or just an
    interval in seconds (UTC grid).

    >>> d = lambda *a: datetime(*a, tzinfo=UTC)
    >>> s = snap(d(2025, 3, 1, 15, 57), d(2025, 3, 2, 7, 54))
    >>> f"{s.start:%d %H:%M} – {s.end:%d %H:%M}"
    '01 15:50 – 02 08:00'
    >>> s = snap(d(2025, 3, 1, 15, 50), d(2025, 3, 1, 16, 0))     # on boundaries: unchanged
    >>> f"{s.start:%H:%M} – {s.end:%H:%M}"
    '15:50 – 16:00'
    >>> s = snap(d(2025, 3, 1, 15, 57), d(2025, 3, 1, 15, 57))     # zero width: its one record
    >>> f"{s.start:%H:%M} – {s.end:%H:%M}"
    '15:50 – 16:00'
    >>> s = snap(d(2025, 3, 1, 15, 57, 30), d(2025, 3, 1, 15, 58, 10), 60)   # 1-minute logger
    >>> f"{s.start:%H:%M:%S} – {s.end:%H:%M:%S}"
    '15:57:00 – 15:59:00'
    """
    if isinstance(clocks, int):
        clocks = [Clock(clocks)]
    start, end = _utc(start), _utc(end)
    if end < start:
        start, end = end, start
    last = max(start, end - _TINY)  # the last instant selected (the start itself when zero width)
    a_clock, b_clock = clock_at(clocks, start), clock_at(clocks, last)
    a = floor_record(start, a_clock.interval_s, a_clock.utc_offset_minutes)
    b = floor_record(last, b_clock.interval_s, b_clock.utc_offset_minutes) + timedelta(seconds=b_clock.interval_s)
    return Snapped(a, b, a_clock.interval_s, b_clock.interval_s)


def logger_clocks(conn: psycopg.Connection, station_id: int) -> list[Clock]:
    """The record grids of the station's logger configurations."""
    return [Clock(int(r["interval_s"]), int(r["utc_offset_minutes"] or 0), r["valid_from"], r["valid_to"])
            for r in db.fetch_all(conn, "loggers_of", station_id=station_id, serial="")]


def snap_selection(conn: psycopg.Connection, station_id: int, start: datetime, end: datetime) -> Snapped:
    """A chart selection on the station widened to every record it touches."""
    return snap(start, end, logger_clocks(conn, station_id))


def interval_text(seconds: int) -> str:
    """A record length for people.

    >>> interval_text(600), interval_text(60), interval_text(3600), interval_text(1), interval_text(86400)
    ('10-minute', '1-minute', 'hourly', '1-second', 'daily')
    """
    if seconds == 3600:
        return "hourly"
    if seconds == 86400:
        return "daily"
    if seconds % 60 == 0:
        return f"{seconds // 60:g}-minute"
    return f"{seconds:g}-second"


def describe(snapped: Snapped, selected: tuple[datetime, datetime] | None = None) -> str:
    """What the page says about a snapped selection.

    >>> d = lambda *a: datetime(*a, tzinfo=UTC)
    >>> print(describe(snap(d(2025, 3, 1, 15, 57), d(2025, 3, 2, 7, 54)), (d(2025, 3, 1, 15, 57), d(2025, 3, 2, 7, 54))))
    every 10-minute record the selection (15:57 – 07:54) touches, from the start of the first to the end of the last
    """
    a, b = snapped.start_interval_s, snapped.end_interval_s
    kind = interval_text(a) if a == b else f"{interval_text(a)} / {interval_text(b)}"
    where = "" if selected is None else f" ({_utc(selected[0]):%H:%M} – {_utc(selected[1]):%H:%M})"
    return f"every {kind} record the selection{where} touches, from the start of the first to the end of the last"

