"""Time series for charts, from the rollups or the raw readings, bounded in size.

The resolution follows the range: raw 10-minute readings when the range is at most
``STATIONMANAGER_RAW_CHART_DAYS`` and fits ``STATIONMANAGER_MAX_CHART_POINTS`` per channel,
else hourly, else daily rollups. Rollups carry a min–max envelope.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd
import psycopg
from psycopg import sql

from core import db
from core.settings import Settings, get_settings

RESOLUTIONS = (("raw", timedelta(minutes=10)), ("1h", timedelta(hours=1)), ("1d", timedelta(days=1)))


@dataclass
class Series:
    frame: pd.DataFrame  # channel_id, time, mean, min, max
    resolution: str  # raw, 1h, 1d
    truncated: bool


def choose_resolution(start: datetime, end: datetime, settings: Settings | None = None) -> str:
    """The finest resolution that keeps each trace under the point limit.

    >>> from datetime import UTC
    >>> d = lambda *a: datetime(*a, tzinfo=UTC)
    >>> choose_resolution(d(2025, 1, 1), d(2025, 1, 4)), choose_resolution(d(2025, 1, 1), d(2025, 3, 1)), choose_resolution(d(2020, 1, 1), d(2026, 1, 1))
    ('raw', '1h', '1d')
    """
    settings = settings or get_settings()
    span = end - start
    for name, step in RESOLUTIONS:
        if name == "raw" and span > timedelta(days=settings.raw_chart_days):
            continue
        if span / step <= settings.max_chart_points:
            return name
    return "1d"


def series(
    conn: psycopg.Connection, channel_ids: list[int], start: datetime, end: datetime,
    resolution: str | None = None, settings: Settings | None = None,
) -> Series:
    """Readings of ``channel_ids`` in [start, end) at a size the browser can draw."""
    settings = settings or get_settings()
    resolution = resolution or choose_resolution(start, end, settings)
    per_channel = settings.max_chart_points
    params = {"channel_ids": channel_ids, "start": start, "end": end, "per_channel": per_channel}
    if resolution == "raw":
        rows = db.fetch_all(conn, "series_raw", **params)
    else:
        query = db.q("series_rollup").format(sql.Identifier(f"reading_{resolution}"))
        rows = conn.execute(query, params).fetchall()
    frame = pd.DataFrame(rows, columns=["channel_id", "time", "mean", "min", "max"])
    counts = frame.groupby("channel_id").cumcount()
    truncated = bool((counts >= per_channel).any())
    frame = frame[counts < per_channel].reset_index(drop=True)
    return Series(frame=frame, resolution=resolution, truncated=truncated)
