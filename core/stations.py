"""Stations, their channels and their state, for the pages and the CLI."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg

from core import db
from core.errors import NotFound


def overview(conn: psycopg.Connection, now: datetime | None = None) -> list[dict[str, Any]]:
    """Each station with its last reading, the age of it, and file counts."""
    now = now or datetime.now(UTC)
    rows = db.fetch_all(conn, "overview")
    for r in rows:
        r["age_hours"] = (now - r["last_reading"]).total_seconds() / 3600 if r["last_reading"] else None
    return rows


def station(conn: psycopg.Connection, name: str) -> dict[str, Any]:
    row = db.fetch_one(conn, "station_by_name", name=name)
    if row is None:
        raise NotFound(f"no station called {name!r}")
    return row


def channels(conn: psycopg.Connection, station_id: int) -> list[dict[str, Any]]:
    """The station's channels, wind speeds first, highest first."""
    rows = db.fetch_all(conn, "channels_of_station", station_id=station_id)
    for r in rows:
        r["label"] = label(r)
    return rows


def label(ch: dict[str, Any]) -> str:
    """A human label for a channel: its column name, plus its unit when known.

    >>> label({"column_name": "WS_80m_NE_Avg", "unit": "m/s"})
    'WS_80m_NE_Avg [m/s]'
    """
    unit = (ch.get("unit") or "").strip()
    return f"{ch['column_name']} [{unit}]" if unit else ch["column_name"]


def time_range(conn: psycopg.Connection, station_id: int) -> tuple[datetime | None, datetime | None]:
    row = db.fetch_one(conn, "station_time_range", station_id=station_id)
    return (row["first_time"], row["last_time"]) if row else (None, None)


def queue_progress(conn: psycopg.Connection) -> dict[str, int]:
    row = db.fetch_one(conn, "queue_progress")
    return dict(row or {})
