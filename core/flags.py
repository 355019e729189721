"""Flags on readings, and the suggestions of the automatic checks waiting for an analyst.

A **flag** says that the readings of some channels of a station over ``[start, end)`` are bad
or special: ``icing``, ``maintenance``, ``tower shadow``, ``faulty sensor``, ``suspect`` or
``other``, with a note, an author and a source (``manual``, or ``rule`` when it came from an
accepted suggestion). Readings are never changed: flags are applied when data is read or
exported (:func:`flag_mask`, :func:`apply_mask`). A flag on the whole station lists the
station's channels when it is made and also covers channels added later. Flags overlap
freely. They are never deleted: :func:`delete_flag` marks them (and :func:`undelete_flag`
takes that back), and every change is written to the audit log with the old and new values.

A **suggested flag** is a :class:`core.qc.Finding` stored by :func:`store_findings` for an
analyst to accept (it becomes a flag, see :data:`RULE_CATEGORY`) or dismiss. Checking a
range again replaces the open suggestions of that range; decided ones are kept, and what
they cover is not suggested again.

Times are UTC; naive datetimes are taken as UTC. Every function runs in one transaction
(a savepoint inside the caller's, if there is one) and raises :class:`FlagError` with the
reason when its input is not valid.
"""

from __future__ import annotations

import bisect
import itertools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple

import numpy as np
import psycopg

from core import db, limits, qc
from core.errors import InvalidValue, NotFound, StationManagerError

log = logging.getLogger(__name__)

CATEGORIES = ("icing", "maintenance", "tower shadow", "faulty sensor", "suspect", "other")
SOURCES = ("manual", "rule")
STATUSES = ("open", "accepted", "dismissed")

#: The category of the flag an accepted suggestion becomes (other rules: ``suspect``).
RULE_CATEGORY = {
    "icing": "icing",
    "flat_line": "faulty sensor",
    "dead": "faulty sensor",
    "pair_ratio": "faulty sensor",
    "gross_range": "suspect",
    "duplicates": "suspect",
}
#: Rules whose findings hold no readings to flag: accepting one acknowledges it, no flag.
UNFLAGGABLE_RULES = frozenset({"gap"})

Channels = Sequence[int] | Literal["station"]


class FlagError(StationManagerError):
    """The flag is not valid."""


# --- queries --------------------------------------------------------------------------------


_sql = db.SqlFile("flags.sql")
query = _sql.q  # a named query of core/sql/flags.sql
fetch_all = _sql.fetch_all
fetch_one = _sql.fetch_one


# --- small helpers ----------------------------------------------------------------------------


def utc(value: Any, what: str = "time") -> datetime:
    """``value`` as an aware UTC datetime; naive datetimes are UTC.

    >>> utc(datetime(2025, 1, 1, 12))
    datetime.datetime(2025, 1, 1, 12, 0, tzinfo=datetime.timezone.utc)
    >>> try:
    ...     utc("2025-01-01", "start")
    ... except FlagError as exc:
    ...     print(exc)
    start: '2025-01-01' is not a date and time
    """
    if isinstance(value, np.datetime64):
        value = value.astype("datetime64[us]").item()
    if not isinstance(value, datetime):
        raise FlagError(f"{what}: {value!r} is not a date and time")
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError as exc:  # 0001-01-01T00:00+05:00
        raise FlagError(f"{what} {value.isoformat()} is outside {limits.EARLIEST:%Y-%m-%d} … "
                        f"{limits.LATEST:%Y-%m-%d}") from exc


def _period(start: Any, end: Any, *, typed: bool = True) -> tuple[datetime, datetime]:
    """A flag's ``[start, end)`` in UTC; a ``typed`` one (by a person, a cleaning log) within
    1970 … 2100. The checks' ranges follow the readings and are not bounded."""
    start, end = utc(start, "start"), utc(end, "end")
    try:
        if typed:
            limits.check_time(start, "start")
            limits.check_time(end, "end")
    except InvalidValue as exc:
        raise FlagError(str(exc)) from None
    if end <= start:
        raise FlagError(f"a flag must end after it starts: start {start:%Y-%m-%d %H:%M}, "
                        f"end {end:%Y-%m-%d %H:%M} (UTC)")
    return start, end


def station_row(conn: psycopg.Connection, station: int | str) -> dict[str, Any]:
    """The station with this id (int) or name (str)."""
    if isinstance(station, int):
        row = fetch_one(conn, "find_station", id=station, name=None)
    else:
        row = fetch_one(conn, "find_station", id=None, name=station)
    if row is None:
        raise NotFound(f"no station {station!r}")
    return row


def _check_category(category: str) -> None:
    if category not in CATEGORIES:
        raise FlagError(f"category {category!r} is not one of: {', '.join(CATEGORIES)}")


def _check_note(note: str | None) -> None:
    """A note of at most 10 000 characters, without control characters but tab and new line."""
    if note:
        try:
            limits.check_text(note, "note", limits.TEXT_MAX)
        except InvalidValue as exc:
            raise FlagError(str(exc)) from None


def _channels(conn: psycopg.Connection, station: dict, channel_ids: Channels) -> tuple[list[int], bool]:
    """(channel ids, whole_station) of a flag, checked against the station's channels."""
    known = [r["id"] for r in fetch_all(conn, "station_channels", station_id=station["id"])]
    if isinstance(channel_ids, str):
        if channel_ids != "station":
            raise FlagError(f"channels: give channel ids or 'station', not {channel_ids!r}")
        return known, True
    ids = sorted({int(c) for c in channel_ids})
    if not ids:
        raise FlagError("choose at least one channel, or flag the whole station")
    strangers = sorted(set(ids) - set(known))
    if strangers:
        raise FlagError(f"station {station['name']!r} has no channel with id {', '.join(map(str, strangers))}")
    return ids, False


def channel_ids_by_name(conn: psycopg.Connection, station: int | str, names: Iterable[str]) -> list[int]:
    """The ids of the station's channels with these column names (or ids written as text)."""
    st = station_row(conn, station)
    rows = fetch_all(conn, "station_channels", station_id=st["id"])
    by_name = {r["column_name"]: r["id"] for r in rows}
    ids_ = {str(r["id"]): r["id"] for r in rows}
    out, unknown = [], []
    for name in names:
        name = name.strip()
        if name in by_name or name in ids_:
            out.append(by_name.get(name, ids_.get(name)))
        elif name:
            unknown.append(name)
    if unknown:
        raise FlagError(f"station {st['name']!r} has no channel {', '.join(map(repr, unknown))}")
    return out


def channels_at_height(conn: psycopg.Connection, station_id: int, height: float) -> list[int]:
    """Ids of every channel (all statistics, all booms) of sensors at ``height`` m (± 5 cm)."""
    return [r["id"] for r in fetch_all(conn, "channels_at_height", station_id=station_id, height_m=height)]


def channels_of_point(conn: psycopg.Connection, point_id: int) -> list[int]:
    """Ids of the channels of one measurement point: every statistic of one sensor."""
    return [r["id"] for r in fetch_all(conn, "channels_of_point", point_id=point_id)]


# --- flags --------------------------------------------------------------------------------------


def add_flag(
    conn: psycopg.Connection,
    station: int | str,
    channel_ids: Channels,
    start: datetime,
    end: datetime,
    category: str,
    note: str = "",
    author: str = "",
    source: str = "manual",
    rule: str | None = None,
) -> int:
    """Flag ``channel_ids`` (or ``"station"``: every channel, also later ones) of ``station``
    (id or name) over ``[start, end)``; returns the new flag's id. Audited.
    """
    _check_category(category)
    if source not in SOURCES:
        raise FlagError(f"source {source!r} is not one of: {', '.join(SOURCES)}")
    if source == "rule" and not rule:
        raise FlagError("a flag from a rule needs the rule's name")
    if not author.strip():
        raise FlagError("a flag needs an author")
    _check_note(note)
    start, end = _period(start, end)
    with conn.transaction():
        st = station_row(conn, station)
        ids, whole = _channels(conn, st, channel_ids)
        return _insert_flag(conn, st, ids, whole, start, end, category, note or "", author, source, rule)


def _insert_flag(conn: psycopg.Connection, st: dict, ids: list[int], whole: bool, start: datetime,
                 end: datetime, category: str, note: str, author: str, source: str, rule: str | None) -> int:
    row = fetch_one(conn, "insert_flag", station_id=st["id"], start_time=start, end_time=end, whole_station=whole,
               category=category, note=note, source=source, rule=rule, author=author)
    assert row is not None
    if ids:
        conn.execute(query("insert_flag_channels"), {"flag_id": row["id"], "channel_ids": ids})
    db.audit(conn, author, "create", "flag", row["id"], station=st["name"], channel_ids=ids,
             whole_station=whole, start=start, end=end, category=category, note=note, source=source, rule=rule)
    log.info("flag %s: %s on %s of %s, %s .. %s", row["id"], category,
             "the whole station" if whole else f"{len(ids)} channels", st["name"], start, end)
    return row["id"]


def get_flag(conn: psycopg.Connection, flag_id: int) -> dict[str, Any]:
    """One flag with its ``channel_ids`` and ``columns`` (also when deleted)."""
    row = fetch_one(conn, "flag_by_id", id=flag_id)
    if row is None:
        raise NotFound(f"no flag {flag_id}")
    return row


def list_flags(
    conn: psycopg.Connection,
    station: int | str,
    start: datetime | None = None,
    end: datetime | None = None,
    channel_ids: Sequence[int] | None = None,
    categories: Sequence[str] | None = None,
    include_deleted: bool = False,
) -> list[dict[str, Any]]:
    """The station's flags overlapping ``[start, end)`` (unbounded where None) that apply to
    any of ``channel_ids`` (whole-station flags apply to all), oldest start first.

    Each row has the flag's columns plus ``station``, ``channel_ids`` and ``columns`` (the
    channels' column names).
    """
    for c in categories or ():
        _check_category(c)
    st = station_row(conn, station)
    return fetch_all(
        conn, "list_flags", station_id=st["id"], include_deleted=include_deleted,
        start=None if start is None else utc(start, "start"), end=None if end is None else utc(end, "end"),
        categories=None if categories is None else list(categories),
        channel_ids=None if channel_ids is None else [int(c) for c in channel_ids],
    )


_FIELDS = ("category", "note", "start_time", "end_time", "whole_station", "channel_ids")


def update_flag(
    conn: psycopg.Connection,
    flag_id: int,
    actor: str,
    *,
    category: str | None = None,
    note: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    channel_ids: Channels | None = None,
) -> dict[str, Any]:
    """Change a flag's category, note, period or channels (None = keep). Audited with the
    old and new values; returns the flag. A deleted flag must be undeleted first."""
    if category is not None:
        _check_category(category)
    _check_note(note)
    with conn.transaction():
        old = fetch_one(conn, "flag_for_update", id=flag_id)
        if old is None:
            raise NotFound(f"no flag {flag_id}")
        if old["deleted_at"] is not None:
            raise FlagError(f"flag {flag_id} is deleted; undelete it before changing it")
        new = dict(old)
        if category is not None:
            new["category"] = category
        if note is not None:
            new["note"] = note
        new["start_time"], new["end_time"] = _period(
            old["start_time"] if start is None else start, old["end_time"] if end is None else end)
        if channel_ids is not None:
            new["channel_ids"], new["whole_station"] = _channels(conn, {"id": old["station_id"], "name": old["station"]},
                                                                 channel_ids)
        changed = [f for f in _FIELDS if new[f] != old[f]]
        if not changed:
            return get_flag(conn, flag_id)
        conn.execute(query("update_flag"), {"id": flag_id, **{f: new[f] for f in _FIELDS[:5]}})
        if "channel_ids" in changed:
            conn.execute(query("delete_flag_channels"), {"flag_id": flag_id})
            if new["channel_ids"]:
                conn.execute(query("insert_flag_channels"), {"flag_id": flag_id, "channel_ids": new["channel_ids"]})
        db.audit(conn, actor, "update", "flag", flag_id, station=old["station"],
                 old={f: old[f] for f in changed}, new={f: new[f] for f in changed})
        return get_flag(conn, flag_id)


def delete_flag(conn: psycopg.Connection, flag_id: int, actor: str) -> None:
    """Mark a flag deleted (kept, with who and when; it no longer masks readings)."""
    with conn.transaction():
        old = fetch_one(conn, "flag_for_update", id=flag_id)
        if old is None:
            raise NotFound(f"no flag {flag_id}")
        if old["deleted_at"] is not None:
            raise FlagError(f"flag {flag_id} was deleted already, by {old['deleted_by']} at "
                            f"{old['deleted_at']:%Y-%m-%d %H:%M} UTC")
        conn.execute(query("set_flag_deleted"), {"id": flag_id, "actor": actor})
        db.audit(conn, actor, "delete", "flag", flag_id, station=old["station"], category=old["category"],
                 start=old["start_time"], end=old["end_time"])


def undelete_flag(conn: psycopg.Connection, flag_id: int, actor: str) -> None:
    """Take back :func:`delete_flag`."""
    with conn.transaction():
        old = fetch_one(conn, "flag_for_update", id=flag_id)
        if old is None:
            raise NotFound(f"no flag {flag_id}")
        if old["deleted_at"] is None:
            raise FlagError(f"flag {flag_id} is not deleted")
        conn.execute(query("set_flag_undeleted"), {"id": flag_id})
        db.audit(conn, actor, "undelete", "flag", flag_id, station=old["station"],
                 deleted_by=old["deleted_by"], deleted_at=old["deleted_at"])


def flag_history(conn: psycopg.Connection, flag_id: int) -> list[dict[str, Any]]:
    """The audit trail of a flag, oldest first: ``at``, ``actor``, ``action`` (create, update,
    delete, undelete) and ``details`` (for an update, the ``old`` and ``new`` values)."""
    get_flag(conn, flag_id)  # NotFound for an unknown id
    return fetch_all(conn, "flag_history", flag_id=flag_id)


# --- masks ----------------------------------------------------------------------------------------


class MaskInterval(NamedTuple):
    """Readings of ``channel_id`` with ``start <= time < end`` are flagged."""

    channel_id: int
    start: datetime
    end: datetime


def flag_mask(
    conn: psycopg.Connection,
    channel_ids: Sequence[int],
    start: datetime | None,
    end: datetime | None,
    exclude_categories: Iterable[str] | None = None,
) -> list[MaskInterval]:
    """The flagged periods of each channel within ``[start, end)``, as disjoint intervals
    sorted by channel then time (overlapping flags are joined). Deleted flags do not count,
    nor flags of ``exclude_categories`` (their readings are kept, e.g. ``["tower shadow"]``).

    Use :func:`apply_mask` to drop the flagged readings of a series.
    """
    exclude = list(exclude_categories or ())
    for c in exclude:
        _check_category(c)
    rows = fetch_all(
        conn, "flag_mask", channel_ids=[int(c) for c in channel_ids], exclude_categories=exclude,
        start=None if start is None else utc(start, "start"), end=None if end is None else utc(end, "end"),
    )
    out: list[MaskInterval] = []
    for r in rows:
        last = out[-1] if out else None
        if last and last.channel_id == r["channel_id"] and r["start_time"] <= last.end:
            out[-1] = last._replace(end=max(last.end, r["end_time"]))
        else:
            out.append(MaskInterval(r["channel_id"], r["start_time"], r["end_time"]))
    return out


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _us(t: datetime) -> int:
    return (t - _EPOCH) // timedelta(microseconds=1)


def apply_mask(times_us: Any, channel_id: int, intervals: Iterable[MaskInterval]) -> np.ndarray:
    """True for each reading of ``channel_id`` at ``times_us`` that a flag covers.

    ``times_us`` are the readings' period starts: int64 microseconds since 1970-01-01 UTC,
    or ``datetime64`` (naive = UTC). A flag ``[start, end)`` covers ``start <= t < end``.
    Intervals of other channels are ignored; they may overlap and come in any order.

    >>> d = lambda h: datetime(2025, 1, 1, h, tzinfo=UTC)
    >>> t = np.array(["2025-01-01T00", "2025-01-01T01", "2025-01-01T02", "2025-01-01T03"], "datetime64[h]")
    >>> apply_mask(t, 7, [MaskInterval(7, d(1), d(3)), MaskInterval(8, d(0), d(4))])
    array([False,  True,  True, False])
    >>> keep = t[~apply_mask(t, 8, [MaskInterval(8, d(0), d(1))])]
    >>> keep.size
    3
    """
    t = np.asarray(times_us)
    if np.issubdtype(t.dtype, np.datetime64):
        t = t.astype("datetime64[us]").astype(np.int64)
    t = t.astype(np.int64, copy=False)
    own = sorted((_us(i.start), _us(i.end)) for i in intervals if i.channel_id == channel_id)
    if not own or not t.size:
        return np.zeros(t.shape, dtype=bool)
    starts, ends = [own[0][0]], [own[0][1]]
    for a, b in own[1:]:
        if a <= ends[-1]:
            ends[-1] = max(ends[-1], b)
        else:
            starts.append(a)
            ends.append(b)
    idx = np.searchsorted(np.asarray(starts, dtype=np.int64), t, side="right") - 1
    return (idx >= 0) & (t < np.asarray(ends, dtype=np.int64)[np.maximum(idx, 0)])


# --- suggested flags ------------------------------------------------------------------------------


@dataclass
class _Piece:
    """A stretch of one rule's finding on one set of channels."""

    rule: str
    channels: tuple[int, ...]
    start: datetime
    end: datetime
    severity: str


def _minus(start: datetime, end: datetime, cut_start: datetime, cut_end: datetime
           ) -> list[tuple[datetime, datetime]]:
    """``[start, end)`` without ``[cut_start, cut_end)``: zero, one or two intervals."""
    if cut_end <= start or cut_start >= end:
        return [(start, end)]
    return [(a, b) for a, b in ((start, cut_start), (cut_end, end)) if b > a]


def describe(rule: str, columns: Sequence[str], start: datetime, end: datetime, severity: str) -> str:
    """The message of a suggestion, worded like :class:`core.qc.Finding` messages.

    >>> describe("gap", (), datetime(2025, 7, 22), datetime(2025, 7, 25), "fail")
    'no records for 3.0 days (fail)'
    """
    return qc.message(qc.Finding(rule, tuple(columns), start, end, severity, ""))


def store_findings(
    conn: psycopg.Connection,
    station_id: int,
    findings: Iterable[qc.Finding],
    checked_start: datetime,
    checked_end: datetime,
    *,
    merge_gap: timedelta = timedelta(seconds=qc.CheckConfig.merge_gap_s),
) -> dict[str, int]:
    """Store what the checks found over ``[checked_start, checked_end)`` as open suggestions.

    ``findings`` name the station's column names (as :func:`core.qc.run_station_checks`
    returns them); naive times are UTC. The open suggestions of the checks' rules are
    replaced within the checked range: their parts outside it stay, a finding that continues
    one (same rule and channels, at most ``merge_gap`` apart) extends it, and a suggestion
    that did not change keeps its id. Time ranges of decided (accepted or dismissed)
    suggestions of the same rule covering the same channels are not suggested again.

    Returns counts: ``{"new", "updated", "unchanged", "removed"}``.
    """
    s, e = _period(checked_start, checked_end, typed=False)
    findings = list(findings)
    with conn.transaction():
        conn.execute(query("lock_station_flags"), {"station_id": station_id})
        chans = fetch_all(conn, "station_channels", station_id=station_id)
        by_name = {c["column_name"]: c["id"] for c in chans}
        names = {c["id"]: c["column_name"] for c in chans}
        new: list[_Piece] = []
        for f in findings:
            unknown = [c for c in f.columns if c not in by_name]
            if unknown:
                raise FlagError(f"finding {f.rule} names columns station {station_id} does not have: "
                                f"{', '.join(unknown)}")
            new.append(_Piece(f.rule, tuple(sorted({by_name[c] for c in f.columns})), utc(f.start), utc(f.end),
                              f.severity))
        lo = min([s] + [p.start for p in new]) - merge_gap
        hi = max([e] + [p.end for p in new]) + merge_gap
        rules = sorted(set(qc.RULE_TEXT) | {p.rule for p in new})
        near = fetch_all(conn, "suggestions_near", station_id=station_id, rules=rules, lo=lo, hi=hi)
        decided: dict[str, list[dict[str, Any]]] = {}
        for r in near:
            if r["status"] != "open":
                decided.setdefault(r["rule"], []).append(r)
        old = {r["id"]: r for r in near if r["status"] == "open"}
        pool = [q for p in new for q in _uncovered(p, decided)]
        for r in old.values():
            for a, b in _minus(r["start_time"], r["end_time"], s, e):
                pool.append(_Piece(r["rule"], tuple(r["channel_ids"]), a, b, r["severity"]))
        merged = _join(pool, merge_gap)
        keepers = _keepers(merged, list(old.values()))
        gone = sorted(set(old) - set(keepers.values()))
        if gone:
            conn.execute(query("delete_suggestions"), {"ids": gone})
        inserts, updates = [], []
        for i, m in enumerate(merged):
            message = describe(m.rule, [names.get(c, str(c)) for c in m.channels], m.start, m.end, m.severity)
            values = {"severity": m.severity, "start_time": m.start, "end_time": m.end, "message": message}
            if i not in keepers:
                inserts.append({"station_id": station_id, "rule": m.rule, "channel_ids": list(m.channels), **values})
            elif any(old[keepers[i]][k] != v for k, v in values.items()):
                updates.append({"id": keepers[i], **values})
        with conn.cursor() as cur:
            for name, rows in (("update_suggestion", updates), ("insert_suggestion", inserts)):
                if rows:
                    cur.executemany(query(name), rows)
        counts = {"new": len(inserts), "updated": len(updates), "unchanged": len(keepers) - len(updates),
                  "removed": len(gone)}
        if counts["new"] or counts["updated"] or counts["removed"]:
            db.audit(conn, "qc", "store findings", "station", station_id, start=s, end=e,
                     findings=len(findings), **counts)
    log.info("station %s, %s .. %s: %d findings; suggestions %s", station_id, s, e, len(findings), counts)
    return counts


def _uncovered(p: _Piece, decided: dict[str, list[dict[str, Any]]]) -> list[_Piece]:
    """The parts of ``p`` that no decided suggestion of its rule and channels covers."""
    parts = [(p.start, p.end)]
    for r in decided.get(p.rule, ()):
        if r["start_time"] < p.end and r["end_time"] > p.start and set(p.channels) <= set(r["channel_ids"]):
            parts = [x for a, b in parts for x in _minus(a, b, r["start_time"], r["end_time"])]
    return [_Piece(p.rule, p.channels, a, b, p.severity) for a, b in parts]


def _keepers(merged: list[_Piece], old: list[dict[str, Any]]) -> dict[int, int]:
    """Which open suggestion each merged piece updates (index -> id): one of the same rule
    and channels that overlaps it, the one with the same period first, else the oldest."""
    exact = {(r["rule"], tuple(r["channel_ids"]), r["start_time"], r["end_time"]): r["id"] for r in old}
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in sorted(old, key=lambda r: r["start_time"]):  # disjoint within a group
        groups.setdefault((r["rule"], tuple(r["channel_ids"])), []).append(r)
    ends = {k: [r["end_time"] for r in rows] for k, rows in groups.items()}
    keepers: dict[int, int] = {}
    for i, m in enumerate(merged):
        if (k := exact.get((m.rule, m.channels, m.start, m.end))) is not None:
            keepers[i] = k
    used = set(keepers.values())
    for i, m in enumerate(merged):
        if i in keepers:
            continue
        key = (m.rule, m.channels)
        rows = groups.get(key, [])
        j = bisect.bisect_right(ends.get(key, []), m.start)  # the first that ends after m starts
        overlapping = [r["id"] for r in itertools.takewhile(lambda r: r["start_time"] < m.end, rows[j:])]
        free = sorted(set(overlapping) - used)
        if free:
            keepers[i] = free[0]
            used.add(free[0])
    return keepers


def _join(pieces: list[_Piece], gap: timedelta) -> list[_Piece]:
    """Join pieces of one rule and channel set that overlap or are at most ``gap`` apart
    (gaps only when they overlap: a lone record between two gaps is data)."""
    out: list[_Piece] = []
    for p in sorted(pieces, key=lambda p: (p.rule, p.channels, p.start, p.end)):
        last = out[-1] if out else None
        if last and (last.rule, last.channels) == (p.rule, p.channels) and (
                p.start < last.end or p.start == last.start
                or (p.rule not in UNFLAGGABLE_RULES and p.start <= last.end + gap)):
            last.end = max(last.end, p.end)
            last.severity = "fail" if "fail" in (last.severity, p.severity) else "suspect"
        else:
            out.append(_Piece(p.rule, p.channels, p.start, p.end, p.severity))
    return sorted(out, key=lambda p: (p.start, p.rule, p.channels))


def list_suggestions(conn: psycopg.Connection, station: int | str, status: str | None = "open"
                     ) -> list[dict[str, Any]]:
    """The station's suggestions with this status (None: all), by start; each with
    ``columns`` (column names of its ``channel_ids``) and ``station``."""
    if status is not None and status not in STATUSES:
        raise FlagError(f"status {status!r} is not one of: {', '.join(STATUSES)}")
    st = station_row(conn, station)
    return fetch_all(conn, "list_suggestions", station_id=st["id"], status=status)


def open_suggestion_ids(conn: psycopg.Connection, station: int | str) -> list[int]:
    st = station_row(conn, station)
    return [r["id"] for r in fetch_all(conn, "open_suggestion_ids", station_id=st["id"])]


def _open_suggestions(conn: psycopg.Connection, ids: Sequence[int]) -> list[dict[str, Any]]:
    ids = sorted({int(i) for i in ids})
    if not ids:
        raise FlagError("give at least one suggestion id")
    rows = fetch_all(conn, "suggestions_for_update", ids=ids)
    missing = sorted(set(ids) - {r["id"] for r in rows})
    if missing:
        raise NotFound(f"no suggestion {', '.join(map(str, missing))}")
    decided = [r for r in rows if r["status"] != "open"]
    if decided:
        raise FlagError("; ".join(f"suggestion {r['id']} was {r['status']} already by {r['decided_by']}"
                                  for r in decided))
    return rows


def accept_suggestions(conn: psycopg.Connection, ids: Sequence[int], actor: str, category: str | None = None
                       ) -> dict[int, int | None]:
    """Turn open suggestions into flags (source ``rule``, category from :data:`RULE_CATEGORY`
    unless ``category`` is given, the suggestion's message as note). All or none.

    A gap has no readings to flag: accepting it acknowledges it, without a flag.
    Returns ``{suggestion id: flag id or None}``.
    """
    if category is not None:
        _check_category(category)
    out: dict[int, int | None] = {}
    with conn.transaction():
        for r in _open_suggestions(conn, ids):
            flag_id = None
            if r["rule"] not in UNFLAGGABLE_RULES:
                st = station_row(conn, r["station_id"])
                chans, whole = _channels(conn, st, r["channel_ids"] or "station")
                flag_id = _insert_flag(conn, st, chans, whole, r["start_time"], r["end_time"],
                                       category or RULE_CATEGORY.get(r["rule"], "suspect"), r["message"], actor,
                                       "rule", r["rule"])
            conn.execute(query("decide_suggestion"),
                         {"id": r["id"], "status": "accepted", "actor": actor, "flag_id": flag_id})
            db.audit(conn, actor, "accept", "suggested_flag", r["id"], rule=r["rule"], flag_id=flag_id,
                     start=r["start_time"], end=r["end_time"])
            out[r["id"]] = flag_id
    return out


def dismiss_suggestions(conn: psycopg.Connection, ids: Sequence[int], actor: str) -> int:
    """Dismiss open suggestions (kept as dismissed; the checks do not suggest them again)."""
    with conn.transaction():
        rows = _open_suggestions(conn, ids)
        for r in rows:
            conn.execute(query("decide_suggestion"),
                         {"id": r["id"], "status": "dismissed", "actor": actor, "flag_id": None})
            db.audit(conn, actor, "dismiss", "suggested_flag", r["id"], rule=r["rule"],
                     start=r["start_time"], end=r["end_time"])
    return len(rows)
