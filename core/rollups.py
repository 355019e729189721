"""Hourly and daily rollups (``reading_1h``, ``reading_1d``), whatever the storage level.

:func:`refresh_rollups` is the one entry point. At levels 0 and 1 the rollups are tables
recomputed here for whole UTC days covering the range; at level 2 they are TimescaleDB
continuous aggregates refreshed with ``refresh_continuous_aggregate``. Readers see the
same columns either way: ``channel_id, bucket, n, mean, min, max, sumsq``.

An import records the range (and channels) whose rollups it changed in ``rollup_pending``
in its own transaction (:func:`mark_pending`, whole hours); after the commit — after the last file of a
batch of consecutive files (``core.ingest.Batch``) — the ranges are refreshed together and
their rows deleted (:func:`refresh_pending`). At level 2 this is a must (a continuous
aggregate cannot be refreshed inside a transaction); at every level it makes a batch of
small files cost one refresh. A range left behind by a process that died in between is
refreshed by the worker's periodic catch-up, so rollups are never stale for good.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg

from core import db, schema

log = logging.getLogger(__name__)

_SQL = db.SqlFile("rollups.sql")


def day_span(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """Whole UTC days covering [start, end].

    >>> day_span(datetime(2025, 1, 1, 5, tzinfo=UTC), datetime(2025, 1, 2, 0, tzinfo=UTC))
    (datetime.datetime(2025, 1, 1, 0, 0, tzinfo=datetime.timezone.utc), datetime.datetime(2025, 1, 3, 0, 0, tzinfo=datetime.timezone.utc))
    """
    return _covering(start, end, timedelta(days=1))


def hour_span(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """Whole UTC hours covering [start, end].

    >>> hour_span(datetime(2025, 1, 1, 5, 10, tzinfo=UTC), datetime(2025, 1, 1, 6, 0, tzinfo=UTC))
    (datetime.datetime(2025, 1, 1, 5, 0, tzinfo=datetime.timezone.utc), datetime.datetime(2025, 1, 1, 7, 0, tzinfo=datetime.timezone.utc))
    """
    return _covering(start, end, timedelta(hours=1))


_ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)  # where the buckets are aligned (date_bin's origin)


def _covering(start: datetime, end: datetime, bucket: timedelta) -> tuple[datetime, datetime]:
    """The whole buckets of length ``bucket`` (an hour or a day) covering [start, end]."""
    def floor(t: datetime) -> datetime:
        return _ORIGIN + (t.astimezone(UTC) - _ORIGIN) // bucket * bucket

    return floor(start), floor(end) + bucket


#: Longest time window of one refresh statement at levels 0-1 (a long range is done window
#: by window, so each statement stays well within the statement timeout).
REFRESH_WINDOW = timedelta(days=31)
_REFRESH_LOCK = 0x524F4C4C  # advisory lock key: one level 0-1 refresh at a time


def refresh_rollups(
    conn: psycopg.Connection, start: datetime, end: datetime, channel_ids: list[int] | None = None
) -> None:
    """Recompute the rollups for the whole UTC days covering [start, end], for
    ``channel_ids`` (default: every channel; levels 0–1 use the (channel, time) key with it).

    At levels 0–1 this runs in the caller's transaction, set-based (see :func:`_refresh_tables`).
    At level 2 ``conn`` must be in autocommit mode: continuous aggregates cannot be refreshed
    inside a transaction.
    """
    s, e = day_span(start, end)
    if schema.stored_level(conn) == 2:
        for view in ("reading_1h", "reading_1d"):
            _refresh_aggregate(conn, view, s, e)
    else:
        _refresh_tables(conn, [(s, e)], channel_ids)
    log.debug("rollups refreshed for %s .. %s", s, e)


def _refresh_tables(conn: psycopg.Connection, ranges: list[tuple[datetime, datetime]],
                    channel_ids: list[int] | None) -> None:
    """Levels 0–1: recompute ``reading_1h`` over the whole-hour ranges [s, e) (disjoint), from
    the readings, then ``reading_1d`` over the whole days covering them, from ``reading_1h``,
    for ``channel_ids`` (None: every channel).

    One statement clears and one rebuilds each rollup level for all the ranges and channels at
    once (rows inserted in key order), per group of ranges spanning at most
    :data:`REFRESH_WINDOW` in all (a long range is cut into windows), so each statement stays
    well within the statement timeout.
    """
    if channel_ids is None:
        channel_ids = db.fetch_one(conn, "all_channel_ids")["ids"] or []
    ids = sorted(set(channel_ids))
    if not ids:
        return
    group: list[tuple[datetime, datetime]] = []
    length = timedelta(0)
    for a, b in _windows(ranges):
        if group and length + (b - a) > REFRESH_WINDOW:
            _refresh_group(conn, group, ids)
            group, length = [], timedelta(0)
        group.append((a, b))
        length += b - a
    if group:
        _refresh_group(conn, group, ids)


def _windows(ranges: list[tuple[datetime, datetime]]) -> Iterator[tuple[datetime, datetime]]:
    """The ranges in time order, each cut into windows of at most :data:`REFRESH_WINDOW`."""
    for a, b in sorted(ranges):
        while a < b:
            yield a, min(a + REFRESH_WINDOW, b)
            a = min(a + REFRESH_WINDOW, b)


def _refresh_group(conn: psycopg.Connection, ranges: list[tuple[datetime, datetime]], ids: list[int]) -> None:
    days: list[list[datetime]] = []
    for a, b in ranges:  # in time order: the days covering them, joined where they meet
        s, e = day_span(a, b - timedelta(microseconds=1))
        if days and s <= days[-1][1]:
            days[-1][1] = max(days[-1][1], e)
        else:
            days.append([s, e])
    for names, spans in ((("clear_1h", "refresh_1h"), ranges), (("clear_1d", "refresh_1d"), days)):
        params = {"starts": [a for a, _ in spans], "ends": [b for _, b in spans], "channel_ids": ids}
        for name in names:
            conn.execute(db.q(name), params)


def mark_pending(conn: psycopg.Connection, start: datetime, end: datetime,
                 channel_ids: list[int] | None = None) -> int:
    """Record that the rollups of the whole UTC hours covering [start, end] need a refresh
    (in the caller's transaction, with the readings that need it), for ``channel_ids``
    (None: every channel); returns the row's id. The refresh recomputes those hours, and
    the days that hold them (from the hours)."""
    s, e = hour_span(start, end)
    return _SQL.fetch_one(conn, "add_pending", start=s, end=e,
                          channel_ids=None if channel_ids is None else sorted(set(channel_ids)))["id"]


def pending_count(conn: psycopg.Connection) -> int:
    """How many ranges wait for a rollup refresh."""
    return _SQL.fetch_one(conn, "count_pending")["n"]


def merge_pending(rows: list[dict]) -> list[tuple[datetime, datetime, list[int] | None]]:
    """Pending ranges that overlap or touch joined into one, with the union of their
    channels (None, every channel, when one of them says so).

    >>> d = lambda day: datetime(2025, 1, day, tzinfo=UTC)
    >>> rows = [{"start": d(2), "end": d(3), "channel_ids": [2]}, {"start": d(1), "end": d(2), "channel_ids": [1]},
    ...         {"start": d(9), "end": d(10), "channel_ids": None}]
    >>> [(a.day, b.day, c) for a, b, c in merge_pending(rows)]
    [(1, 3, [1, 2]), (9, 10, None)]
    """
    out: list[list] = []
    for r in sorted(rows, key=lambda r: (r["start"], r["end"])):
        chans = None if r["channel_ids"] is None else set(r["channel_ids"])
        if out and r["start"] <= out[-1][1]:
            last = out[-1]
            last[1] = max(last[1], r["end"])
            last[2] = None if last[2] is None or chans is None else last[2] | chans
        else:
            out.append([r["start"], r["end"], chans])
    return [(a, b, None if c is None else sorted(c)) for a, b, c in out]


def refresh_pending(conn: psycopg.Connection, ids: list[int] | None = None) -> int:
    """Refresh the rollups of every pending range (or of those ``ids``), deleting each row
    once its range is refreshed; returns how many ranges were refreshed. Ranges that
    overlap or touch are refreshed together (a batch of consecutive files: one refresh).

    At levels 0–1 the rows are taken and their rollups rebuilt in one transaction, one
    refresh at a time (an advisory lock). At level 2 ``conn`` must be in autocommit mode
    (refreshes cannot run in a transaction). Refreshing a range twice (two workers, or an
    import and the catch-up) is harmless.
    """
    if schema.stored_level(conn) != 2:
        with conn.transaction():
            conn.execute(_SQL.q("refresh_lock"), {"key": _REFRESH_LOCK})
            rows = _SQL.fetch_all(conn, "take_pending", ids=ids)
            by_channels: dict[tuple[int, ...] | None, list[tuple[datetime, datetime]]] = {}
            for start, end, channels in merge_pending(rows):  # a batch's files: one group, one refresh
                by_channels.setdefault(None if channels is None else tuple(channels), []).append((start, end))
            for channels, ranges in by_channels.items():
                _refresh_tables(conn, ranges, None if channels is None else list(channels))
    else:
        # a continuous aggregate sums in the order its refresh plan reads the rows: at level 2
        # a mean or sumsq may differ in its last bits from level 0's (which sums in time order),
        # however the ranges are cut
        rows = [r for r in _SQL.fetch_all(conn, "pending") if ids is None or r["id"] in ids]
        for start, end, _ in merge_pending(rows):
            refresh_rollups(conn, start, end - timedelta(microseconds=1))
        if rows:
            conn.execute(_SQL.q("delete_pending"), {"ids": [r["id"] for r in rows]})
    if rows:
        log.info("rollups refreshed for %s pending range(s)", len(rows))
    return len(rows)


#: How long a level-2 refresh waits, in all, for other refreshes of overlapping windows.
CONCURRENT_REFRESH_WAIT_S = 60.0


def _refresh_aggregate(conn: psycopg.Connection, view: str, start: datetime, end: datetime) -> None:
    """``refresh_continuous_aggregate`` over [start, end), every bucket recomputed as level 0
    does (``force``, TimescaleDB >= 2.19: the invalidation log alone once left the last hour of
    an insert out of ``reading_1h``), waiting while another process
    refreshes an overlapping window (TimescaleDB refuses then: "could not refresh continuous
    aggregate … due to a concurrent refresh"; several workers import at once)."""
    force = _SQL.fetch_one(conn, "refresh_has_force")["force"]
    call = _SQL.q("refresh_forced" if force else "refresh")
    delay, waited = 0.05, 0.0
    while True:
        try:
            conn.execute(call, {"view": view, "start": start, "end": end})
            return
        except psycopg.errors.LockNotAvailable as exc:
            if "concurrent refresh" not in str(exc) or waited >= CONCURRENT_REFRESH_WAIT_S:
                raise
        time.sleep(delay)
        waited += delay
        delay = min(delay * 2, 1.0)


# --- rollups computed while importing ------------------------------------------------

HOUR_US = 3_600 * 1_000_000
DAY_US = 24 * HOUR_US
ROLLUP_ROW = np.dtype(
    [
        ("nfields", ">i2"), ("l1", ">i4"), ("channel", ">i4"), ("l2", ">i4"), ("bucket", ">i8"),
        ("l3", ">i4"), ("n", ">i8"), ("l4", ">i4"), ("mean", ">f8"), ("l5", ">i4"), ("min", ">f8"),
        ("l6", ">i4"), ("max", ">f8"), ("l7", ">i4"), ("sumsq", ">f8"),
    ]
)
ROLLUP_COPY = "COPY {} (channel_id, bucket, n, mean, min, max, sumsq) FROM STDIN (FORMAT BINARY)"


def aggregate(t: np.ndarray, values: np.ndarray, bucket_us: int) -> dict[str, np.ndarray]:
    """Per bucket and column of ``values``: n, mean, min, max, sumsq, NaN ignored.

    ``t`` (µs since 2000-01-01 UTC, ascending) gives each row's time; buckets are aligned
    to 2000-01-01 like ``date_bin`` at level 0.

    >>> a = aggregate(np.array([0, 600, 3_600_000_000]), np.array([[1.0], [3.0], [np.nan]]), HOUR_US)
    >>> a["bucket"].tolist(), a["n"][:, 0].tolist(), a["mean"][:, 0].tolist()[:1], a["max"][:, 0].tolist()[:1]
    ([0, 3600000000], [2, 0], [2.0], [3.0])
    """
    b = t // bucket_us
    starts = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])
    ok = ~np.isnan(values)
    v0 = np.where(ok, values, 0.0)
    n = np.add.reduceat(ok, starts, axis=0).astype(np.int64)
    total = np.add.reduceat(v0, starts, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / n
    return {
        "bucket": b[starts] * bucket_us,
        "n": n,
        "mean": mean,
        "min": np.fmin.reduceat(values, starts, axis=0),
        "max": np.fmax.reduceat(values, starts, axis=0),
        "sumsq": np.add.reduceat(v0 * v0, starts, axis=0),
    }


def encode_rollups(agg: dict[str, np.ndarray], channel_ids: np.ndarray) -> memoryview:
    """Aggregates as binary COPY rows for ``reading_1h``/``reading_1d``, ordered by channel
    then bucket; buckets without readings are left out (as the SQL refresh leaves them)."""
    n = agg["n"].T  # columns first
    keep = n > 0
    rows = np.empty(int(keep.sum()), dtype=ROLLUP_ROW)
    rows["nfields"] = 7
    rows["l1"] = 4
    for f in ("l2", "l3", "l4", "l5", "l6", "l7"):
        rows[f] = 8
    rows["channel"] = np.broadcast_to(channel_ids[:, None], n.shape)[keep]
    rows["bucket"] = np.broadcast_to(agg["bucket"][None, :], n.shape)[keep]
    rows["n"] = n[keep]
    for f in ("mean", "min", "max", "sumsq"):
        rows[f] = agg[f].T[keep]
    return memoryview(rows).cast("B")


class RollupBuilder:
    """Hourly and daily rollups of a file whose readings are all new, built while it is read.

    Rows arrive in time order in batches; the rows of each batch's last UTC day are held back
    until the next batch (or :meth:`finish`), so every day is aggregated whole. The hours and
    days holding the file's first and last reading are never written here: readings of
    another file may share them. The import marks those two hours pending, and the refresh
    recomputes them from the table and their days from the hours (:func:`refresh_pending`).
    """

    def __init__(self, channel_ids: np.ndarray) -> None:
        self.channel_ids = channel_ids
        self.first_hour: int | None = None  # of the file's first reading
        self._t: np.ndarray | None = None
        self._v: np.ndarray | None = None

    def add(self, t: np.ndarray, values: np.ndarray) -> list[tuple[str, memoryview]]:
        """Take a batch (UTC period starts in µs since 2000, values); return COPY blocks of
        whole days ready to write, as ``(table, data)``."""
        if self._t is not None:
            t, values = np.concatenate([self._t, t]), np.vstack([self._v, values])
        if self.first_hour is None:
            with_reading = _rows_with_reading(values)
            if not len(with_reading):  # no reading yet: nothing to aggregate, nothing to keep
                return []
            self.first_hour = int(t[with_reading[0]] // HOUR_US)
        days = t // DAY_US
        cut = int(np.searchsorted(days, days[-1]))  # rows before the last day are complete
        self._t, self._v = t[cut:], values[cut:]
        return self._blocks(t[:cut], values[:cut], last_hour=None, whole_days=True)

    def finish(self) -> list[tuple[str, memoryview]]:
        """The hourly rollups of the last day's rows held back, after the file's last batch
        (its day, holding the last reading, is left to the refresh)."""
        t, values, self._t, self._v = self._t, self._v, None, None
        if t is None or self.first_hour is None:
            return []
        with_reading = _rows_with_reading(values)
        if not len(with_reading):
            return []
        return self._blocks(t, values, last_hour=int(t[with_reading[-1]] // HOUR_US), whole_days=False)

    def _blocks(self, t: np.ndarray, values: np.ndarray, last_hour: int | None,
                whole_days: bool) -> list[tuple[str, memoryview]]:
        assert self.first_hour is not None
        hours = t // HOUR_US
        inner = hours != self.first_hour
        if last_hour is not None:
            inner &= hours != last_hour
        out = []
        if inner.any():
            out.append(("reading_1h", encode_rollups(aggregate(t[inner], values[inner], HOUR_US), self.channel_ids)))
        if whole_days:
            later = t // DAY_US > self.first_hour * HOUR_US // DAY_US  # after the first reading's day
            if later.any():
                out.append(("reading_1d", encode_rollups(aggregate(t[later], values[later], DAY_US), self.channel_ids)))
        return out


def _rows_with_reading(values: np.ndarray) -> np.ndarray:
    """The indices of the rows of ``values`` with at least one value (not NaN)."""
    return np.flatnonzero(~np.isnan(values).all(axis=1))
