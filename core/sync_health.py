"""Sync health: is each station's data arriving, and if not, the most likely reason.

For each **source**: its last finished run, how many runs in a row have failed (since its last
ok or partial run; an ``interrupted`` run, cut short by a stopped worker, does not count, as
for alerts) and since when, and when its next run is
due. For each **station**: the newest file received from any way in (source, inbox,
upload, CLI) and its newest reading, against its logger's interval.

A station's state, first rule that holds (:func:`judge`):

1. ``failing``: a source serving the station (its own, or one that fetched files for it)
   failed its last run, or is stopped: "source X failing since 06:10: authentication failed";
2. ``not running``: an enabled source has not started a run for two of its intervals and
   ten minutes more: "source X has not run since … (is a worker running?)";
3. ``syncing``: the next reading is overdue by at most one hour
   (:func:`core.webdata.freshness` is ``ok``);
4. ``no data``: no file and no reading yet;
5. ``no new readings``: a file arrived after the next reading was an hour overdue, yet the
   station's newest reading is older: "files arrive but hold no new readings since …";
6. ``no file``: "no file from the logger since …" (saying when a source serving it is
   disabled).

A failing source beats everything else, since it explains the rest (no file, old
readings) and is what an admin can fix; readings that are fresh do not hide it, since the
next file will not come.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import plotly.graph_objects as go
import psycopg

from core import db, webdata

_sql = db.SqlFile("sync_health.sql")

DEFAULT_INTERVAL_S = 600
#: A source is "not running" once it has not started a run for this many of its intervals, plus the grace.
OVERDUE_INTERVALS = 2
OVERDUE_GRACE = timedelta(minutes=10)
#: Badge colour of each station state.
COLOURS = {"syncing": "green", "failing": "red", "not running": "orange", "no new readings": "orange",
           "no file": "orange", "no data": "gray"}


def when(t: datetime | None, now: datetime) -> str:
    """A time for people, in UTC: ``06:10`` on the day of ``now``, else with its date.

    >>> now = datetime(2026, 12, 6, 9, 30, tzinfo=UTC)
    >>> when(datetime(2026, 12, 6, 6, 10, tzinfo=UTC), now), when(datetime(2026, 12, 4, 23, 5, tzinfo=UTC), now)
    ('06:10', '2026-12-04 23:05')
    >>> when(None, now)
    'never'
    """
    if t is None:
        return "never"
    t = t.astimezone(UTC)
    return f"{t:%H:%M}" if t.date() == now.astimezone(UTC).date() else f"{t:%Y-%m-%d %H:%M}"


# --- sources ---------------------------------------------------------------------------------


def failing(src: dict[str, Any]) -> bool:
    """Did the source's last run fail, or is it stopped until an admin acts?

    >>> failing({"enabled": True, "blocked": None, "failed_runs": 2}), failing({"enabled": True, "blocked": "x", "failed_runs": 0})
    (True, True)
    >>> failing({"enabled": False, "blocked": None, "failed_runs": 3})
    False
    """
    return bool(src["enabled"]) and (bool(src["blocked"]) or (src["failed_runs"] or 0) > 0)


def next_due(src: dict[str, Any]) -> datetime | None:
    """When the worker next queues the source's run: its interval after the last one was
    queued (now, if never); None when it is disabled or stopped."""
    if not src["enabled"] or src["blocked"]:
        return None
    base = src["queued_at"] or src["last_run_at"]
    return base + timedelta(minutes=src["every_minutes"]) if base else src["created_at"]


def next_run_text(due: datetime | None, now: datetime) -> str:
    """The "next run" of a source for people: a time, ``due now`` or ``–`` (disabled or stopped).

    >>> now = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
    >>> next_run_text(now + timedelta(minutes=5), now), next_run_text(now, now), next_run_text(None, now)
    ('09:05', 'due now', '–')
    """
    if due is None:
        return "–"
    return "due now" if due <= now else when(due, now)


def last_run_text(src: dict[str, Any], now: datetime) -> str:
    """A source's last run in one line: when, how it ended, its counts and error class.

    >>> now = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
    >>> r = {"pending": False, "last_status": "failed", "last_run_at": now, "last_fetched": 0, "last_listed": 0,
    ...      "last_waiting": 0, "last_failed": 0, "last_error_class": "authentication failed"}
    >>> last_run_text(r, now)
    'last run 09:00: failed (authentication failed)'
    >>> last_run_text({**r, "last_status": "ok", "last_fetched": 2, "last_listed": 3, "last_error_class": None}, now)
    'last run 09:00: ok · 2 fetched of 3 listed, 0 waiting, 0 failed'
    """
    if src["pending"]:
        return "a run is queued or running"
    if src["last_status"] is None:
        return "no run yet"
    text = f"last run {when(src['last_run_at'], now)}: {src['last_status']}"
    if src["last_error_class"] and not (src["last_fetched"] or src["last_failed"]):
        return f"{text} ({src['last_error_class']})"
    text += f" · {counts(src)}"
    return f"{text} ({src['last_error_class']})" if src["last_error_class"] else text


def counts(src: dict[str, Any]) -> str:
    """The counts of a source's last run."""
    return (f"{src['last_fetched']} fetched of {src['last_listed']} listed, {src['last_waiting']} waiting, "
            f"{src['last_failed']} failed")


def not_running_since(src: dict[str, Any], now: datetime) -> datetime | None:
    """Since when an enabled source has not run though it should have (its last run's start,
    or when it was added); None when it runs on time, or is disabled or stopped.

    >>> t = datetime(2026, 12, 6, 6, tzinfo=UTC)
    >>> src = {"enabled": True, "blocked": None, "every_minutes": 15, "last_run_at": t, "running_since": None,
    ...        "created_at": t}
    >>> not_running_since(src, t + timedelta(minutes=39)), not_running_since(src, t + timedelta(minutes=41))
    (None, datetime.datetime(2026, 12, 6, 6, 0, tzinfo=datetime.timezone.utc))
    """
    if not src["enabled"] or src["blocked"]:
        return None
    last = src["running_since"] or src["last_run_at"] or src["created_at"]
    limit = timedelta(minutes=src["every_minutes"] * OVERDUE_INTERVALS) + OVERDUE_GRACE
    return last if now - last > limit else None


def source_reason(src: dict[str, Any], now: datetime) -> str | None:
    """Why a source is not fetching, in plain words (None when it is fine)."""
    if failing(src):
        if src["failed_runs"]:
            return f"source {src['name']} failing since {when(src['failing_since'], now)}: {src['failing_class']}"
        return f"source {src['name']} is stopped: {src['blocked']} (an admin must act)"
    since = not_running_since(src, now)
    if since is not None:
        what = "has not run since" if src["last_run_at"] or src["running_since"] else "has not run since it was added at"
        return f"source {src['name']} {what} {when(since, now)} (is a worker running?)"
    return None


def sources(conn: psycopg.Connection, now: datetime | None = None) -> list[dict[str, Any]]:
    """Every source with its sync health as of ``now``: the last finished run
    (``last_status``, ``last_run_at``, counts, ``last_error_class``), ``failed_runs`` in a
    row and ``failing_since``, ``next_due``, ``station_ids`` it serves and ``reason``
    (:func:`source_reason`)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    rows = _sql.fetch_all(conn, "source_health", now=now)
    for r in rows:
        r["next_due"] = next_due(r)
        r["reason"] = source_reason(r, now)
    return rows


def sync_pending(conn: psycopg.Connection, source_id: int) -> bool:
    """Is a run of the source queued or running?"""
    return bool(_sql.fetch_one(conn, "sync_pending", source_id=source_id)["pending"])


# --- stations --------------------------------------------------------------------------------


@dataclass
class StationSync:
    """A station's sync state (:func:`judge`): ``state``, a badge ``colour`` and ``reason``."""

    station_id: int
    name: str
    state: str
    reason: str
    last_file: datetime | None = None
    last_reading: datetime | None = None
    sources: list[str] = field(default_factory=list)

    @property
    def syncing(self) -> bool:
        return self.state == "syncing"

    @property
    def colour(self) -> str:
        return COLOURS[self.state]

    @property
    def markdown(self) -> str:
        """The line the Overview and the station page show (Streamlit markdown, names escaped).

        >>> print(StationSync(1, "M", "failing", "source *a_b* failing since 06:10: timeout").markdown)
        :red-badge[not syncing] source \\*a_b\\* failing since 06:10: timeout
        """
        if self.syncing:
            return ":green-badge[syncing]"
        return f":{self.colour}-badge[not syncing] {webdata.escape_markdown(self.reason)}"


def judge(station: dict[str, Any], srcs: list[dict[str, Any]], now: datetime) -> tuple[str, str]:
    """``(state, reason)`` of a station from its arrivals and the sources serving it; the
    rule order is the module's.

    >>> now = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
    >>> st = {"last_file": now - timedelta(hours=3), "last_reading": now - timedelta(minutes=20), "interval_s": 600}
    >>> judge(st, [], now)
    ('syncing', 'syncing: newest reading 20 min ago')
    >>> judge({**st, "last_file": now - timedelta(hours=4.5), "last_reading": now - timedelta(hours=5)}, [], now)
    ('no file', 'no file from the logger since 04:30')
    >>> judge({**st, "last_file": now - timedelta(minutes=5), "last_reading": now - timedelta(hours=5)}, [], now)
    ('no new readings', 'files arrive but hold no new readings since 04:00')
    >>> judge({"last_file": None, "last_reading": None, "interval_s": None}, [], now)
    ('no data', 'no file received yet')
    """
    for src in srcs:
        if failing(src):
            return "failing", source_reason(src, now) or ""
    for src in srcs:
        reason = source_reason(src, now)
        if reason:
            return "not running", reason
    interval = station["interval_s"] or DEFAULT_INTERVAL_S
    last_reading, last_file = station["last_reading"], station["last_file"]
    age = (now - last_reading).total_seconds() / 3600 if last_reading else None
    if webdata.freshness(age, interval) == "ok":
        return "syncing", f"syncing: newest reading {webdata.format_age(age)} ago"
    if last_file is None and last_reading is None:
        return "no data", "no file received yet"
    overdue_at = (last_reading + timedelta(seconds=interval, hours=1)) if last_reading else None
    if last_file is not None and (overdue_at is None or last_file > overdue_at):
        held = f"no new readings since {when(last_reading, now)}" if last_reading else "no readings"
        return "no new readings", f"files arrive but hold {held}"
    off = [s["name"] for s in srcs if not s["enabled"]]
    note = f" (source {', '.join(off)} is disabled)" if off else ""
    return "no file", f"no file from the logger since {when(last_file, now)}{note}" if last_file else \
        f"no file from the logger yet{note}"


def stations(conn: psycopg.Connection, now: datetime | None = None,
             station_ids: list[int] | None = None) -> dict[int, StationSync]:
    """Each station's :class:`StationSync` as of ``now`` (only ``station_ids``, when given)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    srcs = sources(conn, now)
    out = {}
    for st in _sql.fetch_all(conn, "station_arrivals", now=now, station_ids=station_ids):
        mine = [s for s in srcs if st["id"] in s["station_ids"]]
        state, reason = judge(st, mine, now)
        out[st["id"]] = StationSync(st["id"], st["name"], state, reason, st["last_file"], st["last_reading"],
                                    [s["name"] for s in mine])
    return out


def station(conn: psycopg.Connection, station_id: int, now: datetime | None = None) -> StationSync | None:
    """One station's :class:`StationSync` (the station page's header)."""
    return stations(conn, now, [station_id]).get(station_id)


# --- the runs chart -------------------------------------------------------------------------


def runs_chart(runs: list[dict[str, Any]], name: str) -> go.Figure:
    """A source's runs over time: files fetched (bars) and failed (red bars) on the left axis,
    duration (line, seconds) on the right; a failed run is a red ✕ labelled with its error
    class."""
    runs = sorted(runs, key=lambda r: r["started_at"])
    t = [r["started_at"] for r in runs]
    fig = go.Figure()
    fig.add_bar(x=t, y=[r["n_fetched"] for r in runs], name="files fetched", marker_color="#2ca02c")
    fig.add_bar(x=t, y=[r["n_failed"] for r in runs], name="files failed", marker_color="#ff7f0e")
    fig.add_scatter(x=t, y=[float(r["duration_s"] or 0) for r in runs], name="duration (s)", yaxis="y2",
                    mode="lines+markers", line={"color": "#1f77b4"})
    bad = [r for r in runs if r["status"] in ("failed", "interrupted")]
    if bad:
        fig.add_scatter(x=[r["started_at"] for r in bad], y=[0] * len(bad), name="failed run", mode="markers",
                        marker={"symbol": "x", "size": 12, "color": "#d62728"}, cliponaxis=False,
                        text=[r["error_class"] or r["status"] for r in bad],
                        hovertemplate="%{x}<br>%{text}<extra>failed run</extra>")
    fig.update_layout(title=f"Runs of {name}", barmode="group", height=320, margin={"l": 40, "r": 40, "t": 40, "b": 30},
                      yaxis={"title": "files", "rangemode": "tozero"},
                      yaxis2={"title": "duration (s)", "overlaying": "y", "side": "right", "rangemode": "tozero"},
                      legend={"orientation": "h", "y": -0.2})
    return fig
