"""Stations, their channels and their state (the overview of every station's health), for
the pages and the CLI."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import psycopg

from core import db, webdata  # webdata as a module: no import cycle should it use this one
from core.errors import NotFound

#: Statuses of :func:`overview`, worst first (the order the overview is sorted in).
STATUSES = ("silent", "faulty", "late", "ok", "empty")
#: Days of the recovery window and of the file counts.
RECOVERY_DAYS = 30
FILE_DAYS = 7
DEFAULT_INTERVAL_S = 600
_DAY = timedelta(days=1)


def recovery_window(now: datetime, days: int = RECOVERY_DAYS) -> tuple[datetime, datetime]:
    """The ``days`` whole UTC days before the day of ``now``: ``[start, end)``.

    Today's partial day is left out, so each day of the window is complete and its count
    comes from the daily rollups. As of a day's end (midnight), that day is the last one.

    >>> recovery_window(datetime(2026, 1, 1, tzinfo=UTC))
    (datetime.datetime(2025, 12, 2, 0, 0, tzinfo=datetime.timezone.utc), datetime.datetime(2026, 1, 1, 0, 0, tzinfo=datetime.timezone.utc))
    >>> recovery_window(datetime(2026, 1, 1, 15, 30, tzinfo=UTC), days=1)[0]
    datetime.datetime(2025, 12, 31, 0, 0, tzinfo=datetime.timezone.utc)
    """
    end = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return end - days * _DAY, end


def as_of(day: date, today: date | None = None) -> datetime:
    """The instant an overview "as of ``day``" looks from: now for today (or later), else the
    end of that UTC day (so the whole day counts).

    >>> as_of(date(2025, 12, 31), today=date(2026, 11, 28))
    datetime.datetime(2026, 1, 1, 0, 0, tzinfo=datetime.timezone.utc)
    """
    now = datetime.now(UTC)
    if day >= (today or now.date()):
        return now
    return datetime.combine(day + _DAY, time(), UTC)


def recovery(readings: int, expected: int) -> float | None:
    """Readings as a percentage of the expected ones (None when none were expected).

    >>> recovery(4176, 4320), recovery(0, 0)
    (96.66666666666667, None)
    """
    return 100.0 * readings / expected if expected > 0 else None


def expected_readings(channels: int, start: datetime, end: datetime, first: datetime | None,
                      interval_s: int) -> int:
    """Readings ``channels`` channels log at ``interval_s`` over ``[start, end)``, counted from
    the UTC day of the station's ``first`` reading when that is later (a new station is not
    missing the days before it was installed); 0 without any reading.

    >>> d = lambda *a: datetime(*a, tzinfo=UTC)
    >>> expected_readings(2, d(2025, 12, 2), d(2026, 1, 1), d(2025, 1, 1), 600)
    8640
    >>> expected_readings(2, d(2025, 12, 2), d(2026, 1, 1), d(2025, 12, 31, 13), 600)
    288
    >>> expected_readings(2, d(2025, 12, 2), d(2026, 1, 1), None, 600)
    0
    """
    if first is None:
        return 0
    first_day = first.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = max(start, first_day)
    if end <= start:
        return 0
    return channels * int((end - start).total_seconds() // interval_s)


def status(row: dict[str, Any]) -> str:
    """A station's status, from the figures of the overview query.

    - ``empty``: no reading yet (before the as-of time);
    - ``silent``: the next reading is overdue by more than 24 h;
    - ``faulty``: data arrives but a sensor is bad: an open QC finding of ``fail`` severity
      touches the last day of data, or a mapped channel that reported before has no reading
      in the last day of data while another mapped channel has. The last day of data is the
      24 h of periods ending with the last reading's: times in
      ``[last_reading + interval - 24 h, last_reading]``;
    - ``late``: the next reading is overdue by more than 1 h (at most 24 h);
    - ``ok``: otherwise.

    "Overdue" is :func:`core.webdata.freshness`: the age of the last reading minus one
    logger interval. A silent station is silent even when a sensor is also faulty
    (``faults`` says so).

    >>> base = {"age_hours": 0.5, "interval_s": 600, "fail_findings_last_day": 0,
    ...         "silent_channels": [], "reporting_channels": 4}
    >>> status(base), status({**base, "age_hours": 3}), status({**base, "age_hours": 30})
    ('ok', 'late', 'silent')
    >>> status({**base, "silent_channels": ["RH_2m_Avg"]}), status({**base, "fail_findings_last_day": 1})
    ('faulty', 'faulty')
    >>> status({**base, "age_hours": 3, "fail_findings_last_day": 2}), status({**base, "age_hours": None})
    ('faulty', 'empty')
    """
    fresh = webdata.freshness(row["age_hours"], row["interval_s"] or DEFAULT_INTERVAL_S)
    if fresh == "no data":
        return "empty"
    if fresh == "silent":
        return "silent"
    return "faulty" if faults(row) else fresh


def faults(row: dict[str, Any]) -> list[str]:
    """Why a station is faulty, for people (empty when it is not).

    >>> faults({"fail_findings_last_day": 2, "silent_channels": ["RH_2m_Avg", "RH_2m_Max"],
    ...         "reporting_channels": 20})
    ['2 failing QC findings in the last day of data', 'no reading in the last day of data: RH_2m_Avg, RH_2m_Max']
    >>> faults({"fail_findings_last_day": 0, "silent_channels": ["A"], "reporting_channels": 0})
    []
    """
    out = []
    n = row.get("fail_findings_last_day") or 0
    if n:
        out.append(f"{n} failing QC finding{'s' if n != 1 else ''} in the last day of data")
    silent = row.get("silent_channels") or []
    if silent and (row.get("reporting_channels") or 0) > 0:
        out.append(f"no reading in the last day of data: {', '.join(silent)}")
    return out


def sort_key(row: dict[str, Any]) -> tuple:
    """Worst first: by status (:data:`STATUSES`), then lowest unflagged recovery (unknown
    last), then name.

    >>> rows = [{"name": "b", "status": "ok", "recovery_30d_unflagged": 90.0},
    ...         {"name": "a", "status": "ok", "recovery_30d_unflagged": None},
    ...         {"name": "c", "status": "ok", "recovery_30d_unflagged": 50.0},
    ...         {"name": "d", "status": "silent", "recovery_30d_unflagged": 100.0}]
    >>> [r["name"] for r in sorted(rows, key=sort_key)]
    ['d', 'c', 'b', 'a']
    """
    rec = row.get("recovery_30d_unflagged")
    return (STATUSES.index(row["status"]), rec is None, rec if rec is not None else 0.0, row["name"])


def overview(conn: psycopg.Connection, now: datetime | None = None) -> list[dict[str, Any]]:
    """Each station's health as of ``now`` (default: now; readings, files and findings at or
    after it do not count), sorted worst first (:func:`sort_key`).

    Each row has the station's columns and:

    - ``last_reading`` (start of its period, UTC), ``age_hours`` (``now`` minus it),
      ``interval_s`` (of the logger in force at ``now``), ``channels``, ``mapped_channels``;
    - ``files_imported``, ``files_failed``, ``files_pending``, ``last_file_received`` (all
      time); ``files_7d`` (files received in the 7 days before ``now``, archives counted by
      their members) and ``failed_7d`` (of those, the ones that failed to import);
    - ``recovery_30d``: readings of the mapped channels over :func:`recovery_window` as a
      percentage of :func:`expected_readings` (None when none were expected);
      ``recovery_30d_unflagged``: the same without the readings under live (not deleted)
      flags of any category; ``readings_30d``, ``flagged_30d``, ``expected_30d``,
      ``window_start``, ``window_end`` behind them;
    - ``open_findings``: open suggested flags whose period starts before ``now``;
    - ``status`` (:func:`status`), ``faults`` (:func:`faults`), and the figures these use:
      ``fail_findings_last_day``, ``silent_channels``, ``reporting_channels``.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    win_start, win_end = recovery_window(now)
    rows = db.fetch_all(conn, "overview", now=now, win_start=win_start, win_end=win_end,
                        files_since=now - FILE_DAYS * _DAY)
    for r in rows:
        r["age_hours"] = (now - r["last_reading"]).total_seconds() / 3600 if r["last_reading"] else None
        r["readings_30d"], r["flagged_30d"] = int(r["readings_30d"]), int(r["flagged_30d"])
        r["expected_30d"] = expected_readings(r["mapped_channels"], win_start, win_end, r["first_reading"],
                                              r["interval_s"] or DEFAULT_INTERVAL_S)
        r["recovery_30d"] = recovery(r["readings_30d"], r["expected_30d"])
        r["recovery_30d_unflagged"] = recovery(r["readings_30d"] - r["flagged_30d"], r["expected_30d"])
        r["window_start"], r["window_end"] = win_start, win_end
        r["status"] = status(r)
        r["faults"] = faults(r)
    return sorted(rows, key=sort_key)


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
