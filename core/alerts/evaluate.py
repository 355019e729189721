"""Deciding what to say: each station's and source's state, its changes, the digest.

:func:`evaluate` reads every station's Overview status (:func:`core.stations.overview`)
and every enabled source's failed runs in a row, compares each with the state last
alerted (``alert_state``), and for each change records the new state, an event and one
message per subscriber and target, all in ONE transaction: a message is written once
whatever the restarts, and two evaluations at once cannot both write it (an advisory lock
lets one evaluate at a time, and each state changes only from the state it was read in).
The messages are then sent by :func:`core.alerts.send.deliver`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.types.json import Jsonb

from core import db, stations
from core.alerts import config
from core.settings import Settings, get_settings

log = logging.getLogger(__name__)
_sql = db.SqlFile("alerts.sql")
_LOCK = 0x414C5254  # advisory lock key: one evaluation at a time
#: Station states that are alerted; any other state after one of them is a recovery.
BAD = ("late", "silent", "faulty", "failing")


@dataclass(frozen=True)
class Subject:
    """A station or a source as evaluated now: its state and what to say about it."""

    kind: str  # station, source
    id: int
    name: str
    station: str | None  # the station concerned (a source's own, if it has one)
    state: str
    detail: str  # why, in plain words ("newest reading 5 h old (logger interval 10 min)")


def age(hours: float) -> str:
    """An age for people, rounded: minutes, hours, days.

    >>> age(0.2), age(5.04), age(30), age(75)
    ('12 min', '5 h', '30 h', '3 d')
    """
    if hours < 1:
        return f"{hours * 60:.0f} min"
    if hours < 48:
        return f"{hours:.0f} h"
    return f"{hours / 24:.0f} d"


def station_subject(row: dict[str, Any]) -> Subject:
    """What to say about an Overview row (:func:`core.stations.overview`).

    >>> s = station_subject({"id": 1, "name": "Kestrel Ridge", "status": "late", "age_hours": 5.1,
    ...                      "interval_s": 600, "faults": []})
    >>> f"{s.name} is {s.state}: {s.detail}"
    'Kestrel Ridge is late: newest reading 5 h old (logger interval 10 min)'
    """
    interval = row["interval_s"] or stations.DEFAULT_INTERVAL_S
    if row["age_hours"] is None:
        detail = "no reading yet"
    else:
        detail = f"newest reading {age(row['age_hours'])} old (logger interval {age(interval / 3600)})"
    if row["status"] == "faulty" and row.get("faults"):
        detail = "; ".join(row["faults"]) + f"; {detail}"
    return Subject("station", row["id"], row["name"], row["name"], row["status"], detail)


def station_subjects(conn: psycopg.Connection, now: datetime) -> list[Subject]:
    return [station_subject(r) for r in stations.overview(conn, now)]


def source_subject(row: dict[str, Any], zone: ZoneInfo, now: datetime) -> Subject:
    """A source is ``failing`` once its last ``threshold`` finished runs all failed.

    >>> t = datetime(2026, 3, 2, 6, 10, tzinfo=UTC)
    >>> s = source_subject({"id": 1, "name": "provider-x", "station": None, "threshold": 3, "streak": 3,
    ...                     "first_failed_at": t, "error": "authentication failed: login refused",
    ...                     "error_class": "authentication failed", "last_status": "failed"}, ZoneInfo("UTC"), t)
    >>> f"Source {s.name} {s.state} {s.detail}"
    'Source provider-x failing since 06:10 (3 runs): authentication failed'
    """
    if row["streak"] >= row["threshold"]:
        since = when(row["first_failed_at"], zone, now)
        detail = f"since {since} ({row['streak']} runs): {row['error_class'] or row['error'] or 'failed'}"
        return Subject("source", row["id"], row["name"], row["station"], "failing", detail)
    if row["last_status"] is None:
        return Subject("source", row["id"], row["name"], row["station"], "ok", "no run yet")
    detail = f"last run {row['last_status']} at {when(row['last_finished_at'], zone, now)}"
    if row.get("n_fetched") is not None:
        detail += f" ({row['n_fetched']} file{'s' if row['n_fetched'] != 1 else ''} fetched)"
    return Subject("source", row["id"], row["name"], row["station"], "ok", detail)


def when(t: datetime | None, zone: ZoneInfo, now: datetime) -> str:
    """A time for people in ``zone``: the clock time today, else with its date.

    >>> z, now = ZoneInfo("Europe/Dublin"), datetime(2026, 7, 2, 12, tzinfo=UTC)
    >>> when(datetime(2026, 7, 2, 5, 10, tzinfo=UTC), z, now), when(datetime(2026, 6, 30, 5, 10, tzinfo=UTC), z, now)
    ('06:10', '2026-06-30 06:10')
    """
    if t is None:
        return "–"
    local = t.astimezone(zone)
    return f"{local:%H:%M}" if local.date() == now.astimezone(zone).date() else f"{local:%Y-%m-%d %H:%M}"


def source_subjects(conn: psycopg.Connection, now: datetime, settings: Settings) -> list[Subject]:
    zone = ZoneInfo(settings.alert_time_zone)
    return [source_subject(r, zone, now)
            for r in _sql.fetch_all(conn, "source_health", default_failures=settings.alert_source_failures)]


def text_of(s: Subject, old: str | None) -> tuple[str, str]:
    """The subject line and the text of a change of state.

    >>> s = Subject("station", 1, "Kestrel Ridge", "Kestrel Ridge", "ok", "newest reading 8 min old")
    >>> text_of(s, "late")
    ('Kestrel Ridge recovered', 'Kestrel Ridge recovered: newest reading 8 min old (was late)')
    >>> text_of(Subject("source", 2, "provider-x", None, "failing", "since 06:10 (3 runs): timeout"), "ok")[1]
    'Source provider-x failing since 06:10 (3 runs): timeout'
    """
    name = s.name if s.kind == "station" else f"Source {s.name}"
    if s.state not in BAD:
        return f"{name} recovered", f"{name} recovered: {s.detail} (was {old})"
    if s.kind == "source":
        return f"{name} failing", f"{name} failing {s.detail}"
    return f"{name} is {s.state}", f"{name} is {s.state}: {s.detail}"


def is_change(old: str | None, new: str) -> bool:
    """Whether going from ``old`` (None: never evaluated, taken as ok) to ``new`` is alerted:
    into a bad state, from one bad state to another, or out of a bad state (a recovery).

    >>> is_change(None, "ok"), is_change(None, "late"), is_change("late", "silent"), is_change("silent", "ok")
    (False, True, True, True)
    >>> is_change("ok", "empty"), is_change("late", "late")
    (False, False)
    """
    was_bad = old in BAD
    return (new in BAD and new != old) or (was_bad and new not in BAD)


def evaluate(conn: psycopg.Connection, *, now: datetime | None = None, settings: Settings | None = None
             ) -> dict[str, Any]:
    """Record each change of state and queue its messages; returns ``{"events": [...],
    "messages": n}``, or ``{"busy": True}`` when another evaluation is running.

    ``conn`` must not be in a transaction: this runs in one of its own.
    """
    settings = settings or get_settings()
    now = (now or datetime.now(UTC)).astimezone(UTC)
    events, n_messages = [], 0
    with conn.transaction():
        if not conn.execute("SELECT pg_try_advisory_xact_lock(%s) AS ok", (_LOCK,)).fetchone()["ok"]:
            return {"busy": True, "events": [], "messages": 0}
        subjects = station_subjects(conn, now) + source_subjects(conn, now, settings)
        known = {(r["subject_kind"], r["subject_id"]): r for r in _sql.fetch_all(conn, "states")}
        subs = _routes(conn, settings)
        for s in subjects:
            old = known.get((s.kind, s.id))
            params = {"kind": s.kind, "id": s.id, "name": s.name, "state": s.state, "detail": s.detail, "at": now}
            if old is None:
                if _sql.fetch_one(conn, "insert_state", **params) is None:
                    continue  # recorded meanwhile by another evaluation
            elif old["state"] == s.state or _sql.fetch_one(conn, "change_state", old=old["state"], **params) is None:
                continue
            old_state = old["state"] if old else None
            if not is_change(old_state, s.state):
                continue
            title, text = text_of(s, old_state)
            event_id = _sql.fetch_one(conn, "insert_event", station=s.station, old=old_state, text=text,
                                      **params)["id"]
            kind = "alert" if s.state in BAD else "recovered"
            fields = {"subject": s.kind, "name": s.name, "station": s.station, "state": s.state,
                      "previous_state": old_state, "detail": s.detail, "at": now.isoformat()}
            for target, recipient in _recipients(subs, s.station):
                _queue(conn, kind, target, recipient, title, text, fields, now, settings, event_id=event_id)
                n_messages += 1
            events.append({"kind": s.kind, "name": s.name, "old": old_state, "new": s.state, "text": text})
            log.info("alert: %s", text)
        n_messages += _queue_digests(conn, subs, subjects, now, settings)
    return {"events": events, "messages": n_messages}


def _routes(conn: psycopg.Connection, settings: Settings) -> list[dict[str, Any]]:
    """Each subscription with its targets' rows and its address resolved now."""
    by_name = {t["name"]: t for t in config.targets(conn)}
    out = []
    for sub in config.subscriptions(conn):
        address = config.address_of(sub["subscriber"], settings, sub["email"])
        routes = []
        for name in sub["targets"]:
            t = by_name.get(name)
            if t is None:
                log.warning("alert subscription of %s: no target called %r", sub["subscriber"], name)
            elif t["kind"] == "email" and address is None:
                log.warning("alert subscription of %s: no email address", sub["subscriber"])
            else:
                routes.append((t, address if t["kind"] == "email" else None))
        out.append({**sub, "routes": routes})
    return out


def _recipients(subs: list[dict[str, Any]], station: str | None) -> list[tuple[dict, str | None]]:
    """The (target, address) pairs that hear about ``station`` (None: a source of no
    station, heard by subscribers of every station), each once."""
    seen, out = set(), []
    for sub in subs:
        if sub["stations"] is not None and station not in sub["stations"]:
            continue
        for target, address in sub["routes"]:
            if (target["id"], address) not in seen:
                seen.add((target["id"], address))
                out.append((target, address))
    return out


def _queue(conn: psycopg.Connection, kind: str, target: dict, recipient: str | None, subject: str, body: str,
           fields: dict[str, Any], now: datetime, settings: Settings, *, event_id: int | None = None,
           max_attempts: int | None = None) -> int:
    return _sql.fetch_one(
        conn, "insert_message", kind=kind, event_id=event_id, target_id=target["id"], target_name=target["name"],
        recipient=recipient, subject=f"[StationManager] {subject}", body=body, fields=Jsonb(fields),
        max_attempts=max_attempts or max(1, settings.alert_send_attempts), at=now)["id"]


# --- digest ----------------------------------------------------------------------------------


def _queue_digests(conn: psycopg.Connection, subs: list[dict[str, Any]], subjects: list[Subject], now: datetime,
                   settings: Settings) -> int:
    """Queue the daily digest of each subscriber whose hour has come today (once a day)."""
    zone = ZoneInfo(settings.alert_time_zone)
    local = now.astimezone(zone)
    n = 0
    for sub in subs:
        if sub["digest_hour"] is None or local.hour < sub["digest_hour"] or sub["digest_sent_on"] == local.date():
            continue
        if _sql.fetch_one(conn, "claim_digest", id=sub["id"], day=local.date()) is None:
            continue
        title, text = digest_text(conn, sub["stations"], subjects, now, zone)
        for target, address in sub["routes"]:
            _queue(conn, "digest", target, address, title, text, {"subscriber": sub["subscriber"]}, now, settings)
            n += 1
    return n


def digest_text(conn: psycopg.Connection, only: list[str] | None, subjects: list[Subject], now: datetime,
                zone: ZoneInfo) -> tuple[str, str]:
    """The digest: each station's (and source's) state now, then what changed in the last day."""
    def mine(station: str | None) -> bool:
        return only is None or station in only

    lines = [f"StationManager daily summary, {now.astimezone(zone):%Y-%m-%d %H:%M %Z}", "", "Stations:"]
    shown = [s for s in subjects if s.kind == "station" and mine(s.station)]
    lines += [f"- {s.name}: {s.state} ({s.detail})" for s in shown] or ["- none"]
    srcs = [s for s in subjects if s.kind == "source" and mine(s.station)]
    if srcs:
        lines += ["", "Sources:"] + [f"- {s.name}: {s.state} ({s.detail})" for s in srcs]
    changes = [e for e in _sql.fetch_all(conn, "events_since", since=now - timedelta(days=1), until=now)
               if mine(e["station"])]
    lines += ["", "Changes in the last day:"]
    lines += [f"- {when(e['at'], zone, now)}: {e['text']}" for e in changes] or ["- none"]
    bad = sum(1 for s in shown if s.state in BAD)
    title = f"Daily summary: {len(shown)} station{'s' if len(shown) != 1 else ''}, {bad} not ok"
    return title, "\n".join(lines)


# --- test messages -----------------------------------------------------------------------------


def queue_tests(conn: psycopg.Connection, actor: str, *, target: str | None = None, to: str | None = None,
                now: datetime | None = None, settings: Settings | None = None) -> list[int]:
    """Queue one test message to each target (or to ``target``): an email target's goes to
    ``to``, else its own From address. Tried once. Returns the messages' ids."""
    settings = settings or get_settings()
    now = now or datetime.now(UTC)
    chosen = [config.get_target(conn, target)] if target else config.targets(conn)
    if not chosen:
        raise config.ConfigError("no alert target is configured (stationmanager alerts targets add …)")
    to = config.check_address(to) if to else None
    ids = []
    for t in chosen:
        recipient = (to or t["options"]["from"]) if t["kind"] == "email" else None
        text = f"Test message from StationManager to {t['name']}, asked for by {actor}."
        ids.append(_queue(conn, "test", t, recipient, "Test message", text, {"test": True}, now, settings,
                          max_attempts=1))
    return ids


def states(conn: psycopg.Connection) -> list[dict]:
    """The state last alerted of each station and source."""
    return _sql.fetch_all(conn, "states")

