"""Run the quality checks of :mod:`core.qc` over a station's readings in the database, and
store what they find as suggested flags (:func:`core.flags.store_findings`).

:func:`run_checks` reads the readings block by block: the blocks of a fixed calendar grid
(:data:`BLOCK`, 30 days from 2000-01-01) that the range touches, each with :data:`LEAD`
(15 days) before it and :data:`MARGIN` after it, so that a stuck or iced sensor whose run
crosses a block edge is seen whole and the anemometer-pair check has the good days before
the block as its reference, also when the range is one recent import. Memory stays bounded
whatever the range, and because the blocks do not depend on the range asked for, a reading
is always checked with the same neighbours: checking a file's day after its import gives the
same suggestions as checking the whole year. Each block is read as one row per channel
holding binary arrays of its times and values (``array_send``, read by numpy without a
Python object per reading), pivoted into one column per channel (times are period starts,
UTC) and checked;
findings that overlap the range are kept and those of neighbouring blocks joined.
Gaps are found over the whole range at once, from the record times alone, including the
gap before the first and after the last record of the range (back to the station's
previous record, on to its next one).

The worker runs the checks after each import: :func:`request_checks` records the file's
range, and the ``run_qc`` job (:func:`run_requested`) takes every range waiting for the
station at once, so a burst of imports gives one run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg

from core import db, flags, metadata, qc
from core.errors import NotFound

log = logging.getLogger(__name__)

MARGIN = timedelta(days=1)  # longer than the longest run a check needs to see whole (dead: 12 h)
BLOCK = timedelta(days=30)
#: Read before each block as well: the anemometer-pair check compares each day with the good
#: days before it, also when the run covers only a recent import.
LEAD = timedelta(days=qc.CheckConfig.pair_reference_days + 1)
_GRID = datetime(2000, 1, 1, tzinfo=UTC)

PG_EPOCH_US = np.datetime64("2000-01-01T00:00:00", "us").astype(np.int64)  # timestamptz counts from here
_ARRAY_HEADER = 20
_INT8 = np.dtype([("length", ">i4"), ("value", ">i8")])  # timestamptz: microseconds since 2000
_FLOAT8 = np.dtype([("length", ">i4"), ("value", ">f8")])


def channel_meta(row: dict[str, Any]) -> dict[str, Any]:
    """What :func:`core.qc.run_station_checks` needs to know of a channel: from its
    measurement point when it has one, else read from its column name.

    >>> m = channel_meta({"column_name": "WS_80m_NE_Std", "unit": "m/s", "statistic": "unknown",
    ...                   "measurement_point_id": None})
    >>> m["measurement_type"], m["statistic"], m["height_m"], m["orientation"]
    ('wind_speed', 'sd', 80.0, 45.0)
    """
    parsed = metadata.parse_column_name(row["column_name"], row.get("unit") or "")
    if row.get("measurement_point_id") is not None:
        mtype, height, orient = row["measurement_type"], row["height_m"], row["orientation_deg"]
    else:
        mtype, height, orient = parsed.measurement_type, parsed.height_m, parsed.orientation_deg
    stat = row["statistic"] if row.get("statistic") not in (None, "", "unknown") else parsed.statistic
    unit = row.get("unit") or row.get("point_unit") or parsed.unit
    return {"measurement_type": mtype, "statistic": stat, "height_m": height, "orientation": orient, "unit": unit}


def blocks(start: datetime, end: datetime, size: timedelta | None = None) -> Iterator[tuple[datetime, datetime]]:
    """The blocks of the fixed calendar grid (``size`` long, from 2000-01-01 UTC) that
    ``[start, end)`` touches.

    >>> d = lambda m, day: datetime(2025, m, day, tzinfo=UTC)
    >>> [(str(a.date()), str(b.date())) for a, b in blocks(d(1, 20), d(2, 3))]
    [('2025-01-19', '2025-02-18')]
    >>> len(list(blocks(d(1, 20), d(2, 19)))), len(list(blocks(d(1, 20), d(1, 21), timedelta(hours=7))))
    (2, 5)
    """
    size = size or BLOCK
    k = (start - _GRID) // size
    while _GRID + k * size < end:
        yield _GRID + k * size, _GRID + (k + 1) * size
        k += 1


def load_wide(conn: psycopg.Connection, channel_ids: np.ndarray, start: datetime, end: datetime
              ) -> tuple[np.ndarray, np.ndarray]:
    """Readings of ``channel_ids`` (sorted) in ``[start, end)`` as (times, matrix): times are
    the distinct period starts (naive ``datetime64[us]``, UTC, increasing), ``matrix[i, j]``
    the value of channel ``channel_ids[j]`` at ``times[i]`` (NaN where none)."""
    params = {"channel_ids": [int(c) for c in channel_ids], "start": start, "end": end}
    with conn.cursor(binary=True) as cur:
        rows = cur.execute(flags.query("qc_readings"), params).fetchall()
    cols, stamps, values = [], [], []
    for r in rows:
        cols.append(int(np.searchsorted(channel_ids, r["channel_id"])))
        stamps.append(_array(r["times"], _INT8))
        values.append(_array(r["vals"], _FLOAT8))
    if not rows:
        return np.zeros(0, "datetime64[us]"), np.zeros((0, channel_ids.size))
    times = np.unique(np.concatenate(stamps))
    matrix = np.full((times.size, channel_ids.size), np.nan)
    for j, t, v in zip(cols, stamps, values):
        matrix[np.searchsorted(times, t), j] = v
    return (times + PG_EPOCH_US).astype("datetime64[us]"), matrix


def _array(data: bytes, dtype: np.dtype) -> np.ndarray:
    """The elements of a one-dimensional PostgreSQL array in binary form (``array_send``)
    without NULLs: a 20-byte header (dimensions, null flag, element type, length, lower
    bound), then each element as its length and its big-endian value."""
    return np.frombuffer(data, dtype, offset=_ARRAY_HEADER)["value"].astype(dtype["value"].newbyteorder("="))


def _naive(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(tzinfo=None)


def run_checks(conn: psycopg.Connection, station_id: int, start: datetime, end: datetime, *,
               config: qc.CheckConfig | None = None, store: bool = True) -> list[qc.Finding]:
    """Check the station's readings over ``[start, end)`` and (with ``store``) store the
    findings as suggestions; returns the findings that overlap the range (gaps: that touch it),
    with column names and naive UTC times as :func:`core.qc.run_station_checks` gives them."""
    start, end = flags.utc(start, "start"), flags.utc(end, "end")
    if end <= start:
        raise flags.FlagError(f"nothing to check: the range ends ({end}) before it starts ({start})")
    began = time.perf_counter()
    chans = flags.fetch_all(conn, "station_channels", station_id=station_id)
    if not chans:
        return []
    ids = np.array([c["id"] for c in chans], dtype=np.int64)  # sorted by id
    names = [c["column_name"] for c in chans]
    meta = {c["column_name"]: channel_meta(c) for c in chans}
    cfg = config or qc.CheckConfig()
    found: list[qc.Finding] = []
    seen: list[np.ndarray] = []
    lead = max(MARGIN, LEAD, timedelta(days=cfg.pair_reference_days + 1))
    for block_start, block_end in blocks(start, end):
        t, matrix = load_wide(conn, ids, block_start - lead, block_end + MARGIN)
        if not t.size:
            continue
        a, b = max(block_start, start), min(block_end, end)
        lo, hi = np.datetime64(_naive(a), "us"), np.datetime64(_naive(b), "us")
        seen.append(t[(t >= lo) & (t < hi)])
        columns = {name: matrix[:, j] for j, name in enumerate(names)}
        for f in qc.run_station_checks(t, columns, meta, config=cfg):
            if f.rule != "gap" and f.start < _naive(b) and f.end > _naive(a):
                found.append(f)
    found = _join(found, timedelta(seconds=cfg.merge_gap_s))
    found += _gaps(conn, ids, seen, start, end)
    found.sort(key=lambda f: (f.start, f.rule, f.columns))
    if store:
        flags.store_findings(conn, station_id, found, start, end, merge_gap=timedelta(seconds=cfg.merge_gap_s))
    log.info("QC of station %s, %s .. %s: %d findings in %.2f s", station_id, start, end, len(found),
             time.perf_counter() - began)
    return found


def _join(found: list[qc.Finding], gap: timedelta) -> list[qc.Finding]:
    """Join the findings of neighbouring blocks (same rule and columns, at most ``gap`` apart)."""
    out: list[qc.Finding] = []
    for f in sorted(found, key=lambda f: (f.rule, f.columns, f.start, f.end)):
        last = out[-1] if out else None
        if last and (last.rule, last.columns) == (f.rule, f.columns) and f.start <= last.end + gap:
            if f.end > last.end or f.severity != last.severity:
                sev = "fail" if "fail" in (last.severity, f.severity) else "suspect"
                end = max(last.end, f.end)
                out[-1] = qc.Finding(last.rule, last.columns, last.start, end, sev,
                                     flags.describe(last.rule, last.columns, last.start, end, sev))
        else:
            out.append(f)
    return out


def _gaps(conn: psycopg.Connection, ids: np.ndarray, seen: list[np.ndarray], start: datetime, end: datetime
          ) -> list[qc.Finding]:
    """Gaps among the records of ``[start, end)`` and the station's records just before and after."""
    edges = []
    for name, at in (("last_time_before", start), ("first_time_from", end)):
        row = flags.fetch_one(conn, name, channel_ids=[int(c) for c in ids], time=at)
        if row and row["time"] is not None:
            edges.append(np.datetime64(_naive(row["time"]), "us"))
    t = np.unique(np.concatenate(seen + [np.array(edges, dtype="datetime64[us]")]))
    if t.size < 2:
        return []
    step_s = float(np.median(np.diff(t) / np.timedelta64(1, "s")))
    out = []
    for a, b in qc.gaps(t, step_s):
        a, b = a.astype("datetime64[us]").item(), b.astype("datetime64[us]").item()
        if a <= _naive(end) and b >= _naive(start):
            out.append(qc.Finding("gap", (), a, b, "fail", flags.describe("gap", (), a, b, "fail")))
    return out


# --- after imports (the worker's run_qc job) -----------------------------------------------


def request_checks(conn: psycopg.Connection, station_id: int, start: datetime, end: datetime) -> None:
    """Record that the station's readings over ``[start, end)`` need checking (e.g. a file was
    imported); the next ``run_qc`` job of the station checks them."""
    conn.execute(flags.query("insert_qc_request"),
                 {"station_id": station_id, "start_time": flags.utc(start), "end_time": flags.utc(end)})


def merge_ranges(ranges: list[tuple[datetime, datetime]], gap: timedelta = 2 * MARGIN
                 ) -> list[tuple[datetime, datetime]]:
    """Ranges that overlap or lie at most ``gap`` apart joined into one (their checks would
    read the same readings).

    >>> d = lambda day: datetime(2025, 1, day, tzinfo=UTC)
    >>> [(a.day, b.day) for a, b in merge_ranges([(d(5), d(6)), (d(1), d(2)), (d(3), d(4)), (d(20), d(21))])]
    [(1, 6), (20, 21)]
    """
    out: list[tuple[datetime, datetime]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1] + gap:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def run_requested(station_id: int, extra: tuple[datetime, datetime] | None = None, url: str | None = None
                  ) -> list[tuple[datetime, datetime]]:
    """Check every range waiting for the station (and ``extra``), then forget them; returns
    the ranges checked. One transaction: if the run fails, the ranges wait for the retry."""
    with db.connection(url) as conn, conn.transaction():
        rows = flags.fetch_all(conn, "take_qc_requests", station_id=station_id)
        ranges = [(r["start_time"], r["end_time"]) for r in rows]
        if extra is not None:
            ranges.append((flags.utc(extra[0]), flags.utc(extra[1])))
        ranges = merge_ranges(ranges)
        conn.execute("SET LOCAL statement_timeout = 0")  # a long backlog may take minutes
        for a, b in ranges:
            run_checks(conn, station_id, a, b)
        if rows:
            conn.execute(flags.query("delete_qc_requests"), {"ids": [r["id"] for r in rows]})
    return ranges


def check_station(conn: psycopg.Connection, station: int | str, start: datetime | None = None,
                  end: datetime | None = None) -> dict[str, Any]:
    """Run the checks now over ``[start, end)`` (default: all the station's readings) and store
    the suggestions; for the CLI. Returns the range, the findings, what happened to the
    suggestions (``new``, ``updated``, ``unchanged``, ``removed``) and the seconds taken."""
    st = flags.station_row(conn, station)
    if start is None or end is None:
        row = db.fetch_one(conn, "station_time_range", station_id=st["id"])
        if row is None or row["first_time"] is None:
            raise NotFound(f"station {st['name']!r} has no readings to check")
        start = row["first_time"] if start is None else start
        end = row["last_time"] + timedelta(microseconds=1) if end is None else end
    began = time.perf_counter()
    with conn.transaction():
        findings = run_checks(conn, st["id"], start, end, store=False)
        counts = flags.store_findings(conn, st["id"], findings, start, end)
    return {"station": st["name"], "start": flags.utc(start), "end": flags.utc(end), "findings": findings,
            "suggestions": counts, "seconds": time.perf_counter() - began}
