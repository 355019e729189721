"""Sensor health of one station: availability per channel and day, flag bands, anemometer
pairs and their ratio, and one channel against another.

Everything here reads the rollups (``reading_1h``, ``reading_1d``) or probes ``reading`` by
its ``(channel_id, time)`` key over short ranges, so each answer stays fast on a mast of
tens of millions of readings, at every storage level.

**Recovery** of a channel on a UTC day is ``100 × readings / expected``, where ``expected``
is 86,400 s divided by the logging interval of the station's logger in force that day (the
shortest, when several are; 10 minutes when none is recorded), capped at 100 %. With
``exclude_flagged`` only readings that no live flag covers count. Those are found without
reading a long flag's readings: a flagged period is cut (:func:`pieces`) into whole days,
whose counts come from ``reading_1d``, whole hours, from ``reading_1h``, and the minutes
left at its ends, counted in ``reading``. The result is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from core import db, flags
from core import series as series_mod
from core.settings import Settings

_sql = db.SqlFile("health.sql")

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
_ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)  # the rollups' bucket origin
#: Both means must reach this (m/s) for a point of the anemometer ratio: calm air says nothing.
PAIR_MIN_SPEED = 3.0


# --- time helpers -----------------------------------------------------------------------


def floor_to(t: datetime, step: timedelta) -> datetime:
    """``t`` rounded down to the rollups' ``step`` grid (UTC, from 2000-01-01).

    >>> floor_to(datetime(2025, 3, 1, 17, 45, tzinfo=UTC), DAY)
    datetime.datetime(2025, 3, 1, 0, 0, tzinfo=datetime.timezone.utc)
    >>> floor_to(datetime(2025, 3, 1, 17, 45, tzinfo=UTC), HOUR).hour
    17
    """
    t = flags.utc(t)
    return t - (t - _ORIGIN) % step


def ceil_to(t: datetime, step: timedelta) -> datetime:
    """``t`` rounded up to the ``step`` grid.

    >>> ceil_to(datetime(2025, 3, 1, 17, 45, tzinfo=UTC), HOUR).hour, ceil_to(datetime(2025, 3, 1, tzinfo=UTC), DAY).day
    (18, 1)
    """
    f = floor_to(t, step)
    return f if f == flags.utc(t) else f + step


def pieces(start: datetime, end: datetime) -> list[tuple[str, datetime, datetime]]:
    """Cut ``[start, end)`` into whole UTC days (``1d``), whole hours (``1h``) and the rest
    (``raw``), so that counting readings in it reads as few rows as possible.

    >>> t = lambda d, h, m=0: datetime(2025, 3, d, h, m, tzinfo=UTC)
    >>> for level, a, b in pieces(t(1, 22, 30), t(4, 1, 10)):
    ...     print(level, f"{a:%d %H:%M}", f"{b:%d %H:%M}")
    raw 01 22:30 01 23:00
    1h 01 23:00 02 00:00
    1d 02 00:00 04 00:00
    1h 04 00:00 04 01:00
    raw 04 01:00 04 01:10
    >>> [p[0] for p in pieces(t(1, 10, 10), t(1, 10, 50))], [p[0] for p in pieces(t(1, 0), t(2, 0))]
    (['raw'], ['1d'])
    """
    start, end = flags.utc(start), flags.utc(end)
    if end <= start:
        return []
    d0, d1 = ceil_to(start, DAY), floor_to(end, DAY)
    if d0 < d1:
        return _hours(start, d0) + [("1d", d0, d1)] + _hours(d1, end)
    return _hours(start, end)


def _hours(start: datetime, end: datetime) -> list[tuple[str, datetime, datetime]]:
    """``[start, end)`` (within a day) as whole hours and raw ends."""
    if end <= start:
        return []
    h0, h1 = ceil_to(start, HOUR), floor_to(end, HOUR)
    if h0 >= h1:
        return [("raw", start, end)]
    out = [("raw", start, h0)] if start < h0 else []
    out.append(("1h", h0, h1))
    if h1 < end:
        out.append(("raw", h1, end))
    return out


def day_grid(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The whole UTC days overlapping ``[start, end)``.

    >>> a, b = day_grid(datetime(2025, 3, 1, 6, tzinfo=UTC), datetime(2025, 3, 3, tzinfo=UTC))
    >>> f"{a:%m-%d} {b:%m-%d}"
    '03-01 03-03'
    """
    return floor_to(start, DAY), ceil_to(end, DAY)


# --- availability ------------------------------------------------------------------------


def station_channel_ids(conn: psycopg.Connection, station_id: int) -> list[int]:
    return [r["id"] for r in flags.fetch_all(conn, "station_channels", station_id=station_id)]


def heatmap(conn: psycopg.Connection, station_id: int, start: datetime, end: datetime,
            exclude_flagged: bool = False) -> pd.DataFrame:
    """Recovery (0..100 %) of every channel of the station on every UTC day overlapping
    ``[start, end)``: columns ``channel_id``, ``day`` (a date), ``recovery``; one row per
    channel and day (channels by id, then days), 0 where nothing was stored. With
    ``exclude_flagged``, readings that a live flag covers do not count.
    """
    first_day, end_day = day_grid(start, end)
    params = {"station_id": station_id, "first_day": first_day, "end_day": end_day}
    days = _sql.fetch_all(conn, "heatmap_days", **params)
    counts = _sql.fetch_all(conn, "heatmap_counts", **params) if days else []
    if not counts:
        return pd.DataFrame({"channel_id": pd.Series(dtype="int64"), "day": pd.Series(dtype="object"),
                             "recovery": pd.Series(dtype="float64")})
    channel_ids = [r["channel_id"] for r in counts]
    n = np.array([r["n"] for r in counts], dtype=np.float64)  # channels x days
    expected = np.array([float(d["expected"]) for d in days])
    day_starts = [d["day"] for d in days]
    if exclude_flagged:
        flagged = flagged_counts(conn, channel_ids, first_day, end_day)
        if not flagged.empty:
            row = {c: i for i, c in enumerate(channel_ids)}
            col = {d: j for j, d in enumerate(day_starts)}
            for r in flagged.itertuples(index=False):
                n[row[r.channel_id], col[r.day]] -= r.n
    recovery = np.clip(100.0 * n / expected, 0.0, 100.0)
    return pd.DataFrame({
        "channel_id": np.repeat(np.array(channel_ids, dtype=np.int64), len(days)),
        "day": [d.date() for d in day_starts] * len(channel_ids),
        "recovery": recovery.ravel(),
    })


def flagged_counts(conn: psycopg.Connection, channel_ids: Sequence[int], start: datetime, end: datetime
                   ) -> pd.DataFrame:
    """Readings covered by live flags, per channel and UTC day, within ``[start, end)``:
    columns ``channel_id``, ``day`` (UTC midnight), ``n``."""
    cols = {"channel_ids": [], "levels": [], "starts": [], "ends": []}
    for iv in flags.flag_mask(conn, channel_ids, start, end):
        for level, a, b in pieces(iv.start, iv.end):
            cols["channel_ids"].append(iv.channel_id)
            cols["levels"].append(level)
            cols["starts"].append(a)
            cols["ends"].append(b)
    if not cols["channel_ids"]:
        return pd.DataFrame(columns=["channel_id", "day", "n"])
    rows = _sql.fetch_all(conn, "flagged_counts", lo=start, hi=end, **cols)
    return pd.DataFrame(rows, columns=["channel_id", "day", "n"]).astype({"n": "float64"})


# --- flags ----------------------------------------------------------------------------------


def flag_bands(conn: psycopg.Connection, station_id: int, channel_ids: Sequence[int], start: datetime,
               end: datetime) -> list[dict[str, Any]]:
    """Live flags overlapping ``[start, end)`` on any of ``channel_ids`` (whole-station flags
    always): ``id, start_time, end_time, category, note, channel_ids, whole_station`` (plus
    ``author`` and ``columns``), oldest start first."""
    keys = ("id", "start_time", "end_time", "category", "note", "channel_ids", "whole_station", "author",
            "columns")
    rows = flags.list_flags(conn, station_id, start, end, channel_ids=list(channel_ids))
    return [{k: r[k] for k in keys} for r in rows]


# --- anemometer pairs ---------------------------------------------------------------------------


def anemometer_pairs(conn: psycopg.Connection, station_id: int) -> list[tuple[int, int, float]]:
    """``(channel a, channel b, height)`` of each pair of wind-speed averages of two sensors at
    the same height (± 5 cm), highest first."""
    return [(r["channel_a"], r["channel_b"], float(r["height_m"]))
            for r in _sql.fetch_all(conn, "anemometer_pairs", station_id=station_id)]


def pair_ratio(conn: psycopg.Connection, channel_a: int, channel_b: int, start: datetime, end: datetime,
               *, resolution: str | None = None, min_speed: float = PAIR_MIN_SPEED,
               exclude_flagged: bool = False, settings: Settings | None = None) -> pd.DataFrame:
    """``a / b`` over time: columns ``time``, ``ratio``.

    From the means at the resolution :func:`core.series.choose_resolution` picks for the
    range (raw readings when it is short, else hourly or daily rollup means), only where
    both means are at least ``min_speed`` m/s (near calm the ratio is noise).
    """
    data = series_mod.series(conn, [channel_a, channel_b], start, end, resolution=resolution,
                             settings=settings, exclude_flagged=exclude_flagged).frame
    a = data[data["channel_id"] == channel_a].set_index("time")["mean"]
    b = data[data["channel_id"] == channel_b].set_index("time")["mean"]
    both = pd.concat({"a": a, "b": b}, axis=1, join="inner")
    both = both[(both["a"] >= min_speed) & (both["b"] >= min_speed)]
    out = pd.DataFrame({"time": both.index, "ratio": (both["a"] / both["b"]).to_numpy()})
    return out.sort_values("time").reset_index(drop=True)


# --- scatter ------------------------------------------------------------------------------------


#: The scatter reads raw readings (else hourly, else daily means) while at most this many
#: times the point limit fall in the range, then keeps every k-th pair.
SCATTER_OVERSAMPLE = 4
_SCATTER_SOURCES = {"raw": ("reading", "time", "value"), "1h": ("reading_1h", "bucket", "mean"),
                    "1d": ("reading_1d", "bucket", "mean")}


def scatter_resolution(start: datetime, end: datetime, max_points: int) -> str:
    """``raw``, ``1h`` or ``1d``: the finest source with at most ``SCATTER_OVERSAMPLE ×
    max_points`` 10-minute readings, hours or days in ``[start, end)``.

    >>> d = lambda *a: datetime(*a, tzinfo=UTC)
    >>> [scatter_resolution(d(2025, 1, 1), d(2025, m, 1), 5000) for m in (4, 12)], scatter_resolution(d(2020, 1, 1), d(2026, 1, 1), 5000)
    (['raw', '1h'], '1d')
    """
    if max_points < 1:
        raise ValueError("max_points must be at least 1")
    span = end - start
    for name, step in series_mod.RESOLUTIONS:
        if span / step <= SCATTER_OVERSAMPLE * max_points:
            return name
    return "1d"


def scatter(conn: psycopg.Connection, x_channel: int, y_channel: int, start: datetime, end: datetime,
            max_points: int = 5000, *, exclude_flagged: bool = False) -> pd.DataFrame:
    """``x_channel`` against ``y_channel`` at the same times in ``[start, end)``: columns
    ``time``, ``x``, ``y``; ``frame.attrs["resolution"]`` says what the points are.

    Raw readings while the range holds at most ``SCATTER_OVERSAMPLE × max_points`` of them,
    else hourly (or daily) rollup means; thinned to at most ``max_points`` by keeping every
    k-th pair, so the points spread evenly over the range. With ``exclude_flagged``, pairs
    where either reading is flagged are left out (for rollup means: where a flag touches
    either bucket, see :func:`core.series.series`).
    """
    start, end = flags.utc(start, "start"), flags.utc(end, "end")
    resolution = scatter_resolution(start, end, max_points)
    if end <= start:
        frame = pd.DataFrame(columns=["time", "x", "y"])
        frame.attrs["resolution"] = resolution
        return frame
    table, time_col, value_col = _SCATTER_SOURCES[resolution]
    query = _sql.q("scatter").format(table=sql.Identifier(table), time=sql.Identifier(time_col),
                                     value=sql.Identifier(value_col))
    rows = conn.execute(query, {"x_channel": x_channel, "y_channel": y_channel, "start": start, "end": end,
                                "max_points": max_points}).fetchall()
    frame = pd.DataFrame(rows, columns=["time", "x", "y"])
    if exclude_flagged and not frame.empty:
        step = series_mod.BUCKETS.get(resolution, timedelta(0))
        mask = flags.flag_mask(conn, [x_channel, y_channel], start - step, end + step)
        times = pd.to_datetime(frame["time"], utc=True).to_numpy(dtype="datetime64[us]")
        if step:  # a bucket counts as flagged when any flag touches it
            mask = [iv._replace(start=iv.start - step + timedelta(microseconds=1)) for iv in mask]
        hit = flags.apply_mask(times, x_channel, mask) | flags.apply_mask(times, y_channel, mask)
        frame = frame[~hit].reset_index(drop=True)
    frame.attrs["resolution"] = resolution
    return frame


def default_range(last: datetime | None, days: int = 30) -> tuple[datetime, datetime] | None:
    """The last ``days`` whole UTC days up to the station's last reading.

    >>> a, b = default_range(datetime(2025, 3, 10, 5, tzinfo=UTC), 7)
    >>> f"{a:%m-%d} {b:%m-%d}"
    '03-04 03-11'
    """
    if last is None:
        return None
    end = ceil_to(last + timedelta(microseconds=1), DAY)
    return end - timedelta(days=days), end


def day_range(day: date | str) -> tuple[datetime, datetime]:
    """``[day, day + 1)`` in UTC, for a heatmap cell.

    >>> day_range("2025-03-02")[0].isoformat()
    '2025-03-02T00:00:00+00:00'
    """
    d = pd.Timestamp(day).date()
    a = datetime(d.year, d.month, d.day, tzinfo=UTC)
    return a, a + DAY
