"""Calibrations: slope/offset per measurement point over validity periods, and recalibration.

A calibration period of a measurement point says, over ``[valid_from, valid_to)``
(``None`` = open end), which slope/offset the logger was programmed with
(``logger_slope``/``logger_offset``) and which the sensor's certificate gives
(``cal_slope``/``cal_offset``). Rows come from a Task 43 import (``source = 'iea43'``,
see :mod:`core.iea43`) or are typed in by an analyst (``source = 'manual'``).

Recalibrating a logged value undoes the logger's line and applies the certificate's::

    raw   = (logged - logger_offset) / logger_slope
    value = raw * cal_slope + cal_offset            # avg, min, max, gust, sample, median, mode
    value = logged * |cal_slope / logger_slope|     # sd, range (spreads: no offset)

Every other statistic (count, availability, quality, text, unknown, ...) is left as logged,
and so is every value outside all periods: :func:`uncovered` tells where that happens so
that an export can say so.

.. warning:: A channel may have recorded different points over time (``channel_mapping``);
   :func:`periods` clips each point's calibration periods to the time the channel recorded
   that point, so never look up calibrations by ``channel.measurement_point_id`` alone.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import psycopg

from core import db, limits, stations
from core.db import SqlFile
from core.errors import InvalidValue, NotFound, StationManagerError
from core.series import series
from core.settings import Settings

log = logging.getLogger(__name__)

_sql = SqlFile("calibrations.sql")

#: Statistics recalibrated with the full line (slope and offset).
LINEAR_STATISTICS = frozenset({"avg", "min", "max", "gust", "sample", "median", "mode"})
#: Statistics that are spreads: scaled by |cal_slope / logger_slope|, no offset.
SPREAD_STATISTICS = frozenset({"sd", "range"})

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_MIN_US = np.iinfo(np.int64).min
_MAX_US = np.iinfo(np.int64).max


class CalPeriod(NamedTuple):
    """One calibration period, ``[valid_from, valid_to)``; ``None`` = open end."""

    id: int | None
    valid_from: datetime | None
    valid_to: datetime | None
    logger_slope: float
    logger_offset: float
    cal_slope: float
    cal_offset: float
    certificate: str
    source: str


def to_us(t: datetime) -> int:
    """Microseconds since the epoch (UTC) of an aware datetime (naive = UTC).

    >>> to_us(datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)), to_us(datetime(2017, 1, 4, 18, 0))
    (1000000, 1483552800000000)
    """
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return (t - _EPOCH) // _US


def periods(conn: psycopg.Connection, channel_ids: Sequence[int]) -> dict[int, list[CalPeriod]]:
    """The calibration periods of each channel's measurement point, sorted by ``valid_from``.

    Periods are clipped to the time over which the channel recorded that point (a channel
    rewired to another point takes that point's calibrations from then on). Every channel
    asked for is a key; channels without any calibration get ``[]``.
    """
    ids = sorted({int(c) for c in channel_ids})
    out: dict[int, list[CalPeriod]] = {c: [] for c in ids}
    if not ids:
        return out
    for row in _sql.fetch_all(conn, "channel_periods", channel_ids=ids):
        out[row["channel_id"]].append(CalPeriod(
            id=row["id"], valid_from=row["valid_from"], valid_to=row["valid_to"],
            logger_slope=row["logger_slope"], logger_offset=row["logger_offset"],
            cal_slope=row["cal_slope"], cal_offset=row["cal_offset"],
            certificate=row["certificate"], source=row["source"],
        ))
    return out


def apply(values: np.ndarray, times_us: np.ndarray, statistic: str, periods: Sequence[CalPeriod]) -> np.ndarray:
    """Recalibrate ``values`` logged at ``times_us`` (int64 µs since epoch, period starts).

    Returns a new float64 array; the input is not changed. Values outside every period,
    and statistics that are neither levels nor spreads, pass through unchanged. Should
    periods overlap, the first one (in the given order) decides.

    >>> p = CalPeriod(1, None, datetime(1970, 1, 1, 0, 0, 2, tzinfo=UTC), 0.8, 0.5, 0.75, 0.25, "", "manual")
    >>> v, t = np.array([8.5, 8.5, np.nan]), np.array([0, 2_000_000, 1_000_000])
    >>> apply(v, t, "avg", [p])          # (8.5 - 0.5) / 0.8 * 0.75 + 0.25 = 7.75; t=2 s is outside
    array([7.75, 8.5 ,  nan])
    >>> apply(v, t, "sd", [p])           # 8.5 * |0.75 / 0.8|
    array([7.96875, 8.5    ,     nan])
    >>> apply(v, t, "range", [p])        # a range (max - min) is a spread too
    array([7.96875, 8.5    ,     nan])
    >>> apply(v, t, "count", [p])
    array([8.5, 8.5, nan])
    >>> apply(np.array([1, 2]), np.array([0, 0]), "avg", [])
    array([1., 2.])
    >>> apply(v, np.array(["1970-01-01T00:00", "1970-01-01T00:00:02", "1970-01-01"], dtype="datetime64[s]"), "avg", [p])
    array([7.75, 8.5 ,  nan])
    """
    out = np.array(values, dtype=np.float64, copy=True)
    linear = statistic in LINEAR_STATISTICS
    if not (linear or statistic in SPREAD_STATISTICS) or not len(periods) or not out.size:
        return out
    times = np.asarray(times_us)
    if times.dtype.kind == "M":  # datetime64 (e.g. from pyarrow): as µs since the epoch
        times = times.astype("datetime64[us]").view(np.int64)
    times = times.astype(np.int64, copy=False)
    if times.shape != out.shape:
        raise ValueError(f"values and times_us differ in shape: {out.shape} vs {times.shape}")
    ordered = times.size < 2 or bool(np.all(times[1:] >= times[:-1]))
    src = out.copy()
    for p in reversed(periods):  # the first period is written last: it decides where periods overlap
        lo = _MIN_US if p.valid_from is None else to_us(p.valid_from)
        hi = _MAX_US if p.valid_to is None else to_us(p.valid_to)
        if ordered:  # sorted times (the usual case): a slice, no boolean mask
            where: slice | np.ndarray = slice(*np.searchsorted(times, [lo, hi], side="left"))
        else:
            where = (times >= lo) & (times < hi)
        if linear:
            out[where] = (src[where] - p.logger_offset) / p.logger_slope * p.cal_slope + p.cal_offset
        else:
            out[where] = src[where] * abs(p.cal_slope / p.logger_slope)
    return out


def fingerprint(by_channel: dict[int, Sequence[CalPeriod]]) -> str:
    """A short hash of the calibrations in force (e.g. of :func:`periods`), for an export's
    provenance and for telling whether a finished export is still up to date.

    >>> p = CalPeriod(3, None, None, 1.0, 0.0, 2.0, 0.5, "cert", "manual")
    >>> fingerprint({1: [p], 2: []}) == fingerprint({2: [], 1: [p]}), len(fingerprint({}))
    (True, 16)
    >>> fingerprint({1: [p]}) == fingerprint({1: [p._replace(cal_offset=0.6)]})
    False
    """
    text = repr(sorted((c, [tuple(p) for p in ps]) for c, ps in by_channel.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def uncovered(periods: Sequence[CalPeriod], start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """Sub-ranges of ``[start, end)`` that no period covers (values pass through there).

    >>> d = lambda day: datetime(2020, 1, day, tzinfo=UTC)
    >>> p = lambda a, b: CalPeriod(None, a, b, 1.0, 0.0, 1.0, 0.0, "", "manual")
    >>> [(a.day, b.day) for a, b in uncovered([p(d(3), d(5)), p(d(7), None)], d(1), d(10))]
    [(1, 3), (5, 7)]
    >>> uncovered([p(None, None)], d(1), d(10)), [(a.day, b.day) for a, b in uncovered([], d(1), d(2))]
    ([], [(1, 2)])
    """
    gaps: list[tuple[datetime, datetime]] = []
    cursor = start
    spans = sorted(
        ((p.valid_from, p.valid_to) for p in periods),
        key=lambda s: (s[0] is not None, s[0] or start),
    )
    for lo, hi in spans:
        if cursor >= end:
            break
        if hi is not None and hi <= cursor:
            continue
        if lo is not None and lo > cursor:
            gaps.append((cursor, min(lo, end)))
        cursor = end if hi is None else max(cursor, hi)
    if cursor < end:
        gaps.append((cursor, end))
    return gaps


# --- editing ----------------------------------------------------------------------------------


class CalibrationError(StationManagerError):
    """The calibration period is not valid."""


#: The fields of a calibration period an analyst may set.
FIELDS = ("valid_from", "valid_to", "logger_slope", "logger_offset", "cal_slope", "cal_offset", "certificate")


def _utc(value: datetime | None, what: str) -> datetime | None:
    """An aware datetime (naive = UTC), or ``None`` for an open end."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise CalibrationError(f"{what}: {value!r} is not a date-time")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def check_period(fields: dict[str, Any]) -> dict[str, Any]:
    """Validate (and normalise) the fields of a calibration period; raises :class:`CalibrationError`.

    >>> f = dict(valid_from=datetime(2020, 1, 1), valid_to=None, logger_slope=0.046, logger_offset=0.24,
    ...          cal_slope=0.0459, cal_offset=0.25, certificate=" MEASNET 1234 ")
    >>> check_period(f)["certificate"], check_period(f)["valid_from"].tzinfo
    ('MEASNET 1234', datetime.timezone.utc)
    >>> def error(**changes):
    ...     try:
    ...         check_period({**f, **changes})
    ...     except CalibrationError as exc:
    ...         print(exc)
    >>> error(logger_slope=0)
    logger slope must not be 0: enter the slope the logger was programmed with (1 if it logs the raw signal)
    >>> error(valid_to=datetime(2019, 1, 1))
    valid to (2019-01-01 00:00 UTC) must be after valid from (2020-01-01 00:00 UTC)
    >>> error(cal_offset="abc")
    certificate offset: 'abc' is not a number
    >>> error(cal_slope=1e300)
    certificate slope 1e+300 is outside -1e+06 … 1e+06
    >>> error(valid_from=datetime(1, 1, 1))
    valid from 0001-01-01 00:00 is outside 1970-01-01 … 2100-01-01
    """
    out = dict(fields)
    out["valid_from"], out["valid_to"] = _utc(out["valid_from"], "valid from"), _utc(out["valid_to"], "valid to")
    for name, label in (("logger_slope", "logger slope"), ("logger_offset", "logger offset"),
                        ("cal_slope", "certificate slope"), ("cal_offset", "certificate offset")):
        try:
            out[name] = float(out[name])
        except (TypeError, ValueError):
            raise CalibrationError(f"{label}: {out[name]!r} is not a number") from None
        if not np.isfinite(out[name]):
            raise CalibrationError(f"{label} must be a finite number, not {out[name]}")
        try:  # a reading times 1e300 overflows
            limits.check_range(out[name], label, *limits.MAGNITUDE)
        except InvalidValue as exc:
            raise CalibrationError(str(exc)) from None
    if out["logger_slope"] == 0:
        raise CalibrationError("logger slope must not be 0: enter the slope the logger was programmed with "
                               "(1 if it logs the raw signal)")
    if out["cal_slope"] == 0:
        raise CalibrationError("certificate slope must not be 0: enter the slope of the calibration certificate")
    lo, hi = out["valid_from"], out["valid_to"]
    try:
        for t, what in ((lo, "valid from"), (hi, "valid to")):
            if t is not None:
                limits.check_time(t, what)
        limits.check_text((out.get("certificate") or "").strip(), "certificate", limits.NAME_MAX)
    except InvalidValue as exc:
        raise CalibrationError(str(exc)) from None
    if lo is not None and hi is not None and hi <= lo:
        raise CalibrationError(f"valid to ({_show(hi)}) must be after valid from ({_show(lo)})")
    out["certificate"] = (out.get("certificate") or "").strip()
    return out


def _show(t: datetime | None) -> str:
    """A period bound for messages.

    >>> _show(None), _show(datetime(2017, 1, 4, 18, tzinfo=UTC))
    ('open', '2017-01-04 18:00 UTC')
    """
    return "open" if t is None else t.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def station_row(conn: psycopg.Connection, station: str) -> dict[str, Any]:
    return stations.station(conn, station)


def list_points(conn: psycopg.Connection, station: str) -> list[dict[str, Any]]:
    """The measurement points of ``station`` (name), with how many calibration periods each has."""
    return _sql.fetch_all(conn, "points_of_station", station_id=station_row(conn, station)["id"])


def list_calibrations(conn: psycopg.Connection, station: str) -> list[dict[str, Any]]:
    """Every calibration period of ``station`` (name), by point and ``valid_from``.

    Keys: ``id, measurement_point_id, point, measurement_type, height_m, valid_from, valid_to,
    logger_slope, logger_offset, cal_slope, cal_offset, certificate, source ('iea43' | 'manual'),
    entered_by, created_at, updated_at, sensor_serial``.
    """
    return _sql.fetch_all(conn, "calibrations_of_station", station_id=station_row(conn, station)["id"])


def point_id(conn: psycopg.Connection, station: str, point: str) -> int:
    """The id of the measurement point called ``point`` at ``station`` (names)."""
    row = _sql.fetch_one(conn, "point_by_name", station=station, point=point)
    if row is None:
        names = [p["name"] for p in list_points(conn, station)]
        raise NotFound(f"{station} has no measurement point called {point!r}; its points: {', '.join(names) or 'none'}")
    return row["id"]


def get_calibration(conn: psycopg.Connection, calibration_id: int) -> dict[str, Any]:
    row = _sql.fetch_one(conn, "calibration_by_id", id=calibration_id)
    if row is None:
        raise NotFound(f"no calibration period with id {calibration_id}")
    return row


def _refuse_overlap(conn: psycopg.Connection, point: dict, fields: dict, exclude_id: int | None) -> None:
    clash = _sql.fetch_all(conn, "overlapping", point_id=point["id"], exclude_id=exclude_id,
                           valid_from=fields["valid_from"], valid_to=fields["valid_to"])
    if clash:
        c = clash[0]
        raise CalibrationError(
            f"{point['name']}: the period {_show(fields['valid_from'])} .. {_show(fields['valid_to'])} overlaps "
            f"calibration {c['id']} ({_show(c['valid_from'])} .. {_show(c['valid_to'])}, {c['source'] or 'manual'}); "
            "a point has one calibration at a time: end the earlier period where the later one starts, "
            "or edit the existing period")


def add_calibration(
    conn: psycopg.Connection, point_id: int, valid_from: datetime | None, valid_to: datetime | None,
    logger_slope: float, logger_offset: float, cal_slope: float, cal_offset: float, certificate: str, actor: str,
) -> dict[str, Any]:
    """Add a calibration period (``source = 'manual'``) to a measurement point; returns it. Audited.

    Refuses (:class:`CalibrationError`) a slope of 0, ``valid_to <= valid_from`` and a period
    overlapping another of the same point. Naive datetimes are UTC; ``None`` is an open end.
    """
    fields = check_period(dict(valid_from=valid_from, valid_to=valid_to, logger_slope=logger_slope,
                               logger_offset=logger_offset, cal_slope=cal_slope, cal_offset=cal_offset,
                               certificate=certificate))
    _need_actor(actor)
    with db.translate(), conn.transaction():
        point = _sql.fetch_one(conn, "point_for_update", point_id=point_id)
        if point is None:
            raise NotFound(f"no measurement point with id {point_id}")
        _refuse_overlap(conn, point, fields, None)
        new_id = _sql.fetch_one(conn, "insert_calibration", point_id=point_id, actor=actor, **fields)["id"]
        db.audit(conn, actor, "create", "calibration", new_id, station=point["station"], point=point["name"],
                 source="manual", **fields)
    log.info("calibration %s added to %s by %s", new_id, point["name"], actor)
    return get_calibration(conn, new_id)


def update_calibration(conn: psycopg.Connection, calibration_id: int, actor: str, **changes: Any) -> dict[str, Any]:
    """Change fields (any of :data:`FIELDS`) of a calibration period; returns it. Audited with old and new values.

    Same checks as :func:`add_calibration`.

    .. warning:: A period from a Task 43 import keeps ``source = 'iea43'``: importing the
       document again restores the document's values. Correct the document, or end its
       period and add a manual one.
    """
    unknown = sorted(set(changes) - set(FIELDS))
    if unknown:
        raise CalibrationError(f"cannot change {', '.join(unknown)}; editable: {', '.join(FIELDS)}")
    _need_actor(actor)
    with db.translate(), conn.transaction():
        old = get_calibration(conn, calibration_id)
        point = _sql.fetch_one(conn, "point_for_update", point_id=old["measurement_point_id"])
        fields = check_period({**{f: old[f] for f in FIELDS}, **changes})
        changed = {f: fields[f] for f in FIELDS if fields[f] != old[f]}
        if not changed:
            return old
        _refuse_overlap(conn, point, fields, calibration_id)
        conn.execute(_sql.q("update_calibration"), {"id": calibration_id, **fields})
        db.audit(conn, actor, "update", "calibration", calibration_id, station=old["station"], point=old["point"],
                 source=old["source"], old={f: old[f] for f in changed}, new=changed)
    log.info("calibration %s of %s changed by %s: %s", calibration_id, old["point"], actor, sorted(changed))
    return get_calibration(conn, calibration_id)


def delete_calibration(conn: psycopg.Connection, calibration_id: int, actor: str) -> dict[str, Any]:
    """Delete a calibration period; returns what was deleted. Audited with every value."""
    _need_actor(actor)
    with db.translate(), conn.transaction():
        old = get_calibration(conn, calibration_id)
        _sql.fetch_one(conn, "point_for_update", point_id=old["measurement_point_id"])
        conn.execute(_sql.q("delete_calibration"), {"id": calibration_id})
        db.audit(conn, actor, "delete", "calibration", calibration_id, station=old["station"], point=old["point"],
                 **{k: old[k] for k in ("source", "entered_by", *FIELDS)})
    log.info("calibration %s of %s deleted by %s", calibration_id, old["point"], actor)
    return old


def _need_actor(actor: str) -> None:
    if not (actor or "").strip():
        raise CalibrationError("a calibration change needs the name of who makes it")


# --- preview ----------------------------------------------------------------------------------


def preview(conn: psycopg.Connection, point_id: int, period: CalPeriod, rows_per_channel: int = 6,
            settings: Settings | None = None) -> pd.DataFrame:
    """A few logged vs recalibrated values of the point's channels at the start of ``period``.

    Columns ``column_name, statistic, time, logged, recalibrated``; empty when the point
    has no readings in the period. Reads at most one day of 10-minute readings.
    """
    columns = ["column_name", "statistic", "time", "logged", "recalibrated"]
    channels = _sql.fetch_all(conn, "point_channels", point_id=point_id)
    ids = [c["id"] for c in channels]
    first = _sql.fetch_one(conn, "first_reading", channel_ids=ids, valid_from=period.valid_from,
                           valid_to=period.valid_to)["time"] if ids else None
    if first is None:
        return pd.DataFrame(columns=columns)
    end = first + timedelta(days=1)
    if period.valid_to is not None:
        end = min(end, period.valid_to)
    frame = series(conn, ids, first, end, resolution="raw", settings=settings).frame
    parts = []
    for c in channels:
        f = frame[frame["channel_id"] == c["id"]].head(rows_per_channel)
        if f.empty:
            continue
        logged = f["mean"].to_numpy(dtype=np.float64)
        times = np.array([to_us(t) for t in f["time"]], dtype=np.int64)
        parts.append(pd.DataFrame({
            "column_name": c["column_name"], "statistic": c["statistic"], "time": f["time"].to_numpy(),
            "logged": logged, "recalibrated": apply(logged, times, c["statistic"], [period]),
        }))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


# --- for display ------------------------------------------------------------------------------


def as_period(row: dict[str, Any]) -> CalPeriod:
    """A calibration row (as :func:`list_calibrations` gives it) as a :class:`CalPeriod`."""
    return CalPeriod(*(row.get(f) for f in ("id", "valid_from", "valid_to", "logger_slope", "logger_offset",
                                              "cal_slope", "cal_offset")),
                     certificate=row.get("certificate") or "", source=row.get("source") or "manual")


def describe(row: dict[str, Any]) -> str:
    """One line naming a calibration period.

    >>> describe({"id": 7, "valid_from": datetime(2017, 1, 4, 18, tzinfo=UTC), "valid_to": None,
    ...           "cal_slope": 0.04591, "cal_offset": 0.25539, "source": "iea43"})
    '#7 · 2017-01-04 18:00 UTC .. open · slope 0.04591, offset 0.25539 (iea43)'
    """
    return (f"#{row['id']} · {_show(row['valid_from'])} .. {_show(row['valid_to'])} · "
            f"slope {row['cal_slope']:g}, offset {row['cal_offset']:g} ({row.get('source') or 'manual'})")


def table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The Calibrations page's table of periods (one row each, by point and time)."""
    columns = ("point", "valid from", "valid to", "logger slope", "logger offset", "certificate slope",
               "certificate offset", "certificate", "source", "entered by", "id")
    return pd.DataFrame([{
        "point": r["point"], "valid from": r["valid_from"], "valid to": r["valid_to"],
        "logger slope": r["logger_slope"], "logger offset": r["logger_offset"],
        "certificate slope": r["cal_slope"], "certificate offset": r["cal_offset"],
        "certificate": r["certificate"], "source": r["source"] or "manual",
        "entered by": r.get("entered_by") or ("Task 43 import" if r["source"] == "iea43" else ""), "id": r["id"],
    } for r in rows], columns=columns)
