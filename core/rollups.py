"""Hourly and daily rollups (``reading_1h``, ``reading_1d``), whatever the storage level.

:func:`refresh_rollups` is the one entry point. At levels 0 and 1 the rollups are tables
recomputed here for whole UTC days covering the range; at level 2 they are TimescaleDB
continuous aggregates refreshed with ``refresh_continuous_aggregate``. Readers see the
same columns either way: ``channel_id, bucket, n, mean, min, max, sumsq``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import psycopg

from core import db, schema

log = logging.getLogger(__name__)


def day_span(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """Whole UTC days covering [start, end].

    >>> day_span(datetime(2025, 1, 1, 5, tzinfo=UTC), datetime(2025, 1, 2, 0, tzinfo=UTC))
    (datetime.datetime(2025, 1, 1, 0, 0, tzinfo=datetime.timezone.utc), datetime.datetime(2025, 1, 3, 0, 0, tzinfo=datetime.timezone.utc))
    """
    s = start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    e = end.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    return s, e


def refresh_rollups(
    conn: psycopg.Connection, start: datetime, end: datetime, channel_ids: list[int] | None = None
) -> None:
    """Recompute the rollups for the whole UTC days covering [start, end], for
    ``channel_ids`` (default: every channel; levels 0–1 use the (channel, time) key with it).

    At levels 0–1 this runs in the caller's transaction (so an import and its rollups
    commit together). At level 2 ``conn`` must be in autocommit mode: continuous
    aggregates cannot be refreshed inside a transaction.
    """
    s, e = day_span(start, end)
    level = schema.stored_level(conn)
    if level == 2:
        for view in ("reading_1h", "reading_1d"):
            conn.execute(
                "CALL refresh_continuous_aggregate(%s, %s::timestamptz, %s::timestamptz)",
                (view, s, e),
            )
    else:
        if channel_ids is None:
            channel_ids = db.fetch_one(conn, "all_channel_ids")["ids"] or []
        params = {"start": s, "end": e, "channel_ids": list(channel_ids)}
        for name in ("clear_1h", "refresh_1h", "clear_1d", "refresh_1d"):
            conn.execute(db.q(name), params)
    log.debug("rollups refreshed for %s .. %s", s, e)
