"""Time series for charts, from the rollups or the raw readings, bounded in size.

The resolution follows the range: raw 10-minute readings when the range is at most
``STATIONMANAGER_RAW_CHART_DAYS`` and fits ``STATIONMANAGER_MAX_CHART_POINTS`` per channel,
else hourly, else daily rollups. Rollups carry a min–max envelope.

With ``exclude_flagged`` the readings that a live flag covers are left out, exactly: raw
readings are masked (:func:`core.flags.apply_mask`); a rollup bucket that flags cover
entirely is dropped, and one they cover in part is recomputed in the database from the
readings in the parts no flag covers (mean, min, max). Only those partly covered buckets are
read raw — at most two per flagged period and channel — so a long flag costs little.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from core import db, flags
from core.settings import Settings, get_settings

RESOLUTIONS = (("raw", timedelta(minutes=10)), ("1h", timedelta(hours=1)), ("1d", timedelta(days=1)))
BUCKETS = {"1h": timedelta(hours=1), "1d": timedelta(days=1)}
_health_sql = db.SqlFile("health.sql")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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
    resolution: str | None = None, settings: Settings | None = None, exclude_flagged: bool = False,
) -> Series:
    """Readings of ``channel_ids`` in [start, end) at a size the browser can draw; with
    ``exclude_flagged``, without the readings that live flags cover."""
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
    if exclude_flagged and not frame.empty:
        frame = without_flagged(conn, frame, resolution, start, end)
    return Series(frame=frame, resolution=resolution, truncated=truncated)


# --- flagged readings left out --------------------------------------------------------------


def _us(times: pd.Series) -> np.ndarray:
    """Times as int64 microseconds since 1970 UTC."""
    return pd.to_datetime(times, utc=True).to_numpy(dtype="datetime64[us]").astype(np.int64)


def classify_buckets(bucket_us: np.ndarray, step_us: int, starts_us: np.ndarray, ends_us: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(fully covered, partly covered) masks of buckets ``[b, b + step)`` against disjoint,
    sorted intervals ``[start, end)``.

    >>> full, part = classify_buckets(np.array([0, 10, 20, 30]), 10, np.array([5, 20]), np.array([10, 35]))
    >>> full.tolist(), part.tolist()
    ([False, False, True, False], [True, False, False, True])
    """
    if not starts_us.size:
        none = np.zeros(bucket_us.shape, dtype=bool)
        return none, none.copy()
    i = np.searchsorted(starts_us, bucket_us, side="right") - 1  # last interval starting at or before b
    full = (i >= 0) & (ends_us[np.maximum(i, 0)] >= bucket_us + step_us)
    j = np.searchsorted(starts_us, bucket_us + step_us, side="left") - 1  # last starting before b + step
    touched = (j >= 0) & (ends_us[np.maximum(j, 0)] > bucket_us)
    return full, touched & ~full


def without_flagged(conn: psycopg.Connection, frame: pd.DataFrame, resolution: str, start: datetime,
                    end: datetime) -> pd.DataFrame:
    """``frame`` (channel_id, time, mean, min, max) without what live flags cover (see the
    module's docstring)."""
    step = BUCKETS.get(resolution, timedelta(0))
    ids = sorted(int(c) for c in frame["channel_id"].unique())
    mask = flags.flag_mask(conn, ids, start - step, end + step)
    if not mask:
        return frame
    times = _us(frame["time"])
    keep = np.ones(len(frame), dtype=bool)
    redo = np.zeros(len(frame), dtype=bool)
    channel = frame["channel_id"].to_numpy()
    spans = _spans(mask)
    for cid in ids:
        rows = channel == cid
        if not step:
            keep[rows] = ~flags.apply_mask(times[rows], cid, mask)
            continue
        starts, ends = spans.get(cid, _NO_SPANS)
        full, part = classify_buckets(times[rows], step // timedelta(microseconds=1), starts, ends)
        keep[rows] = ~full
        redo[rows] = part
    if redo.any():
        redone = _recompute(conn, frame[redo], step, spans)
        keep &= ~redo
        frame = pd.concat([frame[keep], redone], ignore_index=True) if not redone.empty else frame[keep]
        return frame.sort_values(["channel_id", "time"]).reset_index(drop=True)
    return frame[keep].reset_index(drop=True)


def uncovered(a: int, b: int, starts: np.ndarray, ends: np.ndarray) -> list[tuple[int, int]]:
    """The parts of ``[a, b)`` outside the disjoint, sorted intervals ``[starts, ends)``.

    >>> uncovered(0, 10, np.array([2, 6]), np.array([4, 8]))
    [(0, 2), (4, 6), (8, 10)]
    >>> uncovered(0, 10, np.array([-5]), np.array([3])), uncovered(0, 10, np.array([0]), np.array([10]))
    ([(3, 10)], [])
    """
    out, at = [], a
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        if e <= at or s >= b:
            continue
        if s > at:
            out.append((at, s))
        at = max(at, e)
    if at < b:
        out.append((at, b))
    return out


_NO_SPANS = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))


def _spans(mask: list[flags.MaskInterval]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Each channel's flagged intervals (disjoint, sorted) as (starts, ends) in microseconds."""
    out: dict[int, tuple[list[int], list[int]]] = {}
    for iv in mask:
        starts, ends = out.setdefault(iv.channel_id, ([], []))
        starts.append(flags._us(iv.start))
        ends.append(flags._us(iv.end))
    return {c: (np.array(s, dtype=np.int64), np.array(e, dtype=np.int64)) for c, (s, e) in out.items()}


def _recompute(conn: psycopg.Connection, buckets: pd.DataFrame, step: timedelta,
               spans: dict[int, tuple[np.ndarray, np.ndarray]]) -> pd.DataFrame:
    """Mean, min and max of the unflagged readings of these buckets (empty ones dropped),
    aggregated in the database over the parts of each bucket that no flag covers."""
    step_us = step // timedelta(microseconds=1)
    cols: dict[str, list] = {"channel_ids": [], "buckets": [], "starts": [], "ends": []}
    for cid, b in zip(buckets["channel_id"].astype(int).tolist(), _us(buckets["time"]).tolist(), strict=True):
        starts, ends = spans.get(cid, _NO_SPANS)
        for a, z in uncovered(b, b + step_us, starts, ends):
            cols["channel_ids"].append(cid)
            cols["buckets"].append(_EPOCH + timedelta(microseconds=b))
            cols["starts"].append(_EPOCH + timedelta(microseconds=a))
            cols["ends"].append(_EPOCH + timedelta(microseconds=z))
    if not cols["channel_ids"]:
        return pd.DataFrame(columns=["channel_id", "time", "mean", "min", "max"])
    rows = _health_sql.fetch_all(conn, "bucket_stats", **cols)
    return pd.DataFrame(rows, columns=["channel_id", "time", "n", "mean", "min", "max"]).drop(columns="n")
