"""Import IEA Wind Task 43 WRA data model documents (station metadata as JSON).

:func:`import_metadata` checks a document against the official JSON Schema (draft-07) of
the version it declares — 1.0, 1.2 and 1.3 are shipped in ``core/schemas``; a 1.1 document
is checked against 1.2, whose changes over 1.1 only add optional properties and enum
values — and then against rules the schema cannot state (periods that end before they
start, one column mapped twice at once, duplicate names). Every problem is reported with
its JSON path in one :class:`MetadataError`; nothing is written unless the document is
valid.

Then, in one transaction, each ``measurement_location`` becomes a station with

* its **loggers** (``logger_main_config``: OEM, model, serial, UTC offset, end-of-period
  timestamps, averaging period) over their date ranges;
* its **measurement points** (type, height, boom orientation, unit), their **sensors** and
  **calibrations**: one calibration period wherever the logger's programmed slope/offset
  (``logger_measurement_config``) or the installed sensor changes, with the certificate's
  slope/offset as ``cal_slope``/``cal_offset``. Without a certificate the calibration
  repeats the logger's values, so recalibrating changes nothing;
* its **channels**: every ``column_name`` of a logger configuration, with its statistic, and
  the period over which it recorded that point (``channel_mapping``).

Rows made from a document carry ``source = 'iea43'``. Importing a document again updates
its rows to match it and deletes the ones it no longer lists, so importing the same
document twice changes nothing. Every change is audited.

.. warning:: Task 43 dates are in the logger's time zone (``offset_from_utc_hrs``), and
   ``date_to`` ends a period (the next one starts at the same instant); ``2100-01-01``
   means "still in force". They are stored in UTC, as instants: a logger stamping the END
   of its periods records the period 17:50–18:00 under 18:00, which is still before a
   change dated 18:00.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import psycopg
from psycopg import sql

from core import db, limits
from core.errors import InvalidValue
from core.metadata import MetadataError, fetch_all, fetch_one, query
from core.settings import get_settings

__all__ = ["ImportReport", "MetadataError", "import_metadata", "import_metadata_file", "validate"]

log = logging.getLogger(__name__)

SCHEMAS = {
    "1.0": "iea43_wra_data_model_1.0.schema.json",
    "1.2": "iea43_wra_data_model_1.2.schema.json",
    "1.3": "iea43_wra_data_model_1.3.schema.json",
}
NEWEST = "1.3"
SOURCE = "iea43"
#: Task 43 measurement_type_id -> StationManager measurement type (anything else: "other").
IEA_TYPES = {
    "wind_speed": "wind_speed", "motion_corrected_wind_speed": "wind_speed",
    "wind_direction": "wind_direction", "motion_corrected_wind_direction": "wind_direction",
    "vertical_wind_speed": "vertical_wind_speed", "motion_corrected_vertical_wind_speed": "vertical_wind_speed",
    "w": "vertical_wind_speed",
    "air_temperature": "air_temperature", "relative_humidity": "relative_humidity",
    "air_pressure": "air_pressure", "precipitation": "precipitation", "voltage": "battery_voltage",
    "global_horizontal_irradiance": "solar_radiation", "direct_normal_irradiance": "solar_radiation",
    "diffuse_horizontal_irradiance": "solar_radiation", "global_tilted_irradiance": "solar_radiation",
    "global_normal_irradiance": "solar_radiation",
}
_MIN = datetime.min.replace(tzinfo=UTC)
_MAX = datetime.max.replace(tzinfo=UTC)


@dataclass
class ImportReport:
    """What an import did. ``changed`` is False when the database already matched."""

    file: str
    version: str
    schema_version: str
    stations: list[str] = field(default_factory=list)
    created: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    deleted: dict[str, int] = field(default_factory=dict)
    unchanged: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.deleted)

    def count(self, what: str, entity: str) -> None:
        bucket = getattr(self, what)
        bucket[entity] = bucket.get(entity, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "changed": self.changed}

    def summary(self) -> str:
        """One paragraph for the CLI and the Metadata page."""

        def fmt(d: dict[str, int]) -> str:
            return ", ".join(f"{n} {k}" for k, n in sorted(d.items())) or "nothing"

        lines = [
            f"{self.file}: Task 43 data model {self.version} (checked against schema {self.schema_version}), "
            f"stations: {', '.join(self.stations)}",
            f"created {fmt(self.created)}; updated {fmt(self.updated)}; deleted {fmt(self.deleted)}; "
            f"{self.unchanged} unchanged",
        ]
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


# --- loading and validation (no database) ---------------------------------------------------


def load_document(path_or_dict: Path | str | dict) -> tuple[dict, str]:
    """The document and a display name; a file that is not a safe JSON object (see
    :func:`parse_document`) is a :class:`MetadataError`."""
    if isinstance(path_or_dict, dict):
        return path_or_dict, "<document>"
    path = Path(path_or_dict)
    limit = get_settings().max_metadata_bytes
    try:
        size = path.stat().st_size
        if size > limit:  # refused before it is read into memory
            raise MetadataError([_too_big(size, limit)], file=path.name)
        data = path.read_bytes()
    except OSError as exc:
        raise MetadataError([f"$: cannot read the file: {exc}"], file=path.name) from exc
    return parse_document(data, path.name), path.name


def parse_document(data: bytes | str, name: str) -> dict:
    """A Task 43 document from the bytes of a file or an upload, parsed safely
    (:func:`core.limits.load_json`): at most ``STATIONMANAGER_MAX_METADATA_BYTES``, nested
    at most 64 deep, no ``NaN``/``Infinity``. Anything else is a :class:`MetadataError` with
    the JSON path of each problem.

    >>> parse_document(b'{"version": "1.3.0-2024.03"}', "a.json")
    {'version': '1.3.0-2024.03'}
    >>> for bad in (b'{"version": ', b'{"a": NaN}', b'[' * 100_000, b'[]'):
    ...     try:
    ...         parse_document(bad, "a.json")
    ...     except MetadataError as exc:
    ...         print(exc.errors)
    ['$: not valid JSON: Expecting value (line 1, column 13)']
    ['$.a: NaN is not a number JSON allows (no NaN or Infinity)']
    ['$: nested more than 64 levels deep (at line 1, column 65)']
    ['$: a Task 43 document is a JSON object']
    """
    limit = get_settings().max_metadata_bytes
    if len(data) > limit:
        raise MetadataError([_too_big(len(data), limit)], file=name)
    try:
        doc = limits.load_json(data)
    except InvalidValue as exc:
        raise MetadataError(exc.problems, file=name) from None
    if not isinstance(doc, dict):
        raise MetadataError(["$: a Task 43 document is a JSON object"], file=name)
    return doc


def _too_big(size: int, limit: int) -> str:
    return f"$: {size:,} bytes, more than the {limit:,} allowed (STATIONMANAGER_MAX_METADATA_BYTES)"


def schema_version_for(version: object) -> tuple[str, str | None]:
    """The shipped schema to check a document of ``version`` against, and a note if it is
    not that exact version.

    >>> schema_version_for("1.0.0-2022.01"), schema_version_for("1.3.0-2024.03")
    (('1.0', None), ('1.3', None))
    >>> schema_version_for("1.1.0-2022.06")[0], schema_version_for("1.4.0-2025.01")[0]
    ('1.2', '1.3')
    """
    m = re.match(r"^(\d+)\.(\d+)\.", version) if isinstance(version, str) else None
    if not m or int(m[1]) != 1:
        return NEWEST, None
    minor = int(m[2])
    if minor == 1:
        return "1.2", "no 1.1 schema is shipped; checked against 1.2, which only adds optional fields to 1.1"
    if f"1.{minor}" in SCHEMAS:
        return f"1.{minor}", None
    if minor > 3:
        return NEWEST, f"version {version} is newer than this StationManager knows; checked against {NEWEST}"
    return NEWEST, None


@functools.cache
def _schema(version: str) -> dict:
    text = resources.files("core.schemas").joinpath(SCHEMAS[version]).read_text(encoding="utf-8")
    return json.loads(text)


_FORMATS = jsonschema.FormatChecker(formats=())


@_FORMATS.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    if isinstance(value, str):
        _in_range(datetime.fromisoformat(value))
    return True


@_FORMATS.checks("date", raises=ValueError)
def _is_date(value: object) -> bool:
    if isinstance(value, str):
        _in_range(date.fromisoformat(value))
    return True


class _TooEarly(ValueError):
    pass


def _in_range(value: date) -> None:
    """Dates from 1970 on; any date from 2100 on means "still in force"."""
    if value.year < limits.EARLIEST.year:
        raise _TooEarly(f"{value.isoformat()[:10]} is before {limits.EARLIEST:%Y-%m-%d}")


def _describe(error: jsonschema.ValidationError) -> str:
    message = error.message
    if error.validator == "format" and isinstance(error.cause, _TooEarly):
        message = f"{error.instance!r} is not a {error.validator_value}: {error.cause}"
    if error.validator == "enum" and isinstance(error.validator_value, list):
        allowed = [repr(v) for v in error.validator_value]
        shown = ", ".join(allowed[:8]) + (", …" if len(allowed) > 8 else "")
        message = f"{error.instance!r} is not one of the allowed values ({shown})"
    if len(message) > 300:
        message = message[:297] + "…"
    return f"{error.json_path}: {message}"


def validate(doc: object) -> tuple[str, list[str]]:
    """Check a document against the schema of its version, then against the rules the schema
    cannot state. Returns (schema version, notes); raises :class:`MetadataError` listing every
    problem with its JSON path."""
    if not isinstance(doc, dict):
        raise MetadataError(["$: a Task 43 document is a JSON object"])
    problems = list(limits.json_problems(doc))  # NaN, Infinity, huge texts, deep nesting
    if problems:
        raise MetadataError(problems)
    version = doc.get("version")
    schema_version, note = schema_version_for(version)
    errors = []
    if isinstance(version, str) and not re.match(r"^1\.\d+\.", version):
        errors.append(f"$.version: StationManager reads versions 1.0 to {NEWEST} of the data model, not {version!r}")
    validator = jsonschema.Draft7Validator(_schema(schema_version), format_checker=_FORMATS)
    found = sorted(
        validator.iter_errors(doc),
        key=lambda e: ([(0, p) if isinstance(p, int) else (1, str(p)) for p in e.absolute_path], e.message),
    )
    errors += [_describe(e) for e in found]
    if errors:
        raise MetadataError(errors)
    _plan(doc)  # what the schema cannot state: periods, overlaps, duplicate names
    return schema_version, [note] if note else []


# --- from document to rows (no database) ----------------------------------------------------


@dataclass
class _Mapping:
    column_name: str
    statistic: str
    unit: str
    is_ignored: bool
    valid_from: datetime | None
    valid_to: datetime | None
    path: str


@dataclass
class _Point:
    row: dict[str, Any]
    sensors: list[tuple[tuple, dict[str, Any]]]  # (key, row)
    calibrations: list[tuple[tuple | None, dict[str, Any]]]  # (sensor key, row)
    mappings: list[_Mapping]


@dataclass
class _Location:
    station: dict[str, Any]
    loggers: list[dict[str, Any]]
    points: list[_Point]


class _Clock:
    """Turns Task 43 times (logger local time) into UTC, with the offset of the logger
    configuration in force at that time."""

    def __init__(self, configs: list[dict]) -> None:
        self.periods = []
        for c in configs:
            off = _offset_minutes(c)
            self.periods.append((_naive(c.get("date_from"), off), _naive(c.get("date_to"), off), off))
        self.periods.sort(key=lambda p: p[0] or datetime.min)

    def offset_at(self, local: datetime) -> int:
        for start, end, off in self.periods:
            if (start is None or start <= local) and (end is None or local < end):
                return off
        before = [off for start, _, off in self.periods if start is None or start <= local]
        return before[-1] if before else (self.periods[0][2] if self.periods else 0)

    def utc(self, text: str | None, offset: int | None = None) -> datetime | None:
        if text is None:
            return None
        dt = datetime.fromisoformat(text)
        if dt.year >= 2100:  # "If null is not allowed please use 2100-01-01T00:00:00"
            return None
        if dt.tzinfo is not None:
            return dt.astimezone(UTC)
        off = self.offset_at(dt) if offset is None else offset
        return (dt - timedelta(minutes=off)).replace(tzinfo=UTC)


def _offset_minutes(config: dict) -> int:
    hrs = config.get("offset_from_utc_hrs")  # within _OFFSET_HOURS: _check_bounds came first
    return 0 if hrs is None else round(hrs * 60)


_OFFSET_HOURS = (limits.UTC_OFFSET_MINUTES[0] / 60, limits.UTC_OFFSET_MINUTES[1] / 60)


def _naive(text: str | None, offset: int) -> datetime | None:
    if text is None:
        return None
    dt = datetime.fromisoformat(text)
    if dt.year >= 2100:  # still in force; 9999-12-31T23:00-05:00 would overflow below
        return None
    if dt.tzinfo is not None:
        dt = (dt.astimezone(UTC) + timedelta(minutes=offset)).replace(tzinfo=None)
    return None if dt.year >= 2100 else dt


def _text(*parts: object, sep: str = " ") -> str:
    return sep.join(str(p) for p in parts if p not in (None, ""))


def _order(period: tuple[datetime | None, datetime | None]) -> tuple[datetime, datetime]:
    return (period[0] or _MIN, period[1] or _MAX)


def _check_period(f: datetime | None, t: datetime | None, path: str, errors: list[str]) -> None:
    if f is not None and t is not None and t <= f:
        errors.append(f"{path}.date_to: {t:%Y-%m-%dT%H:%M} UTC is not after date_from {f:%Y-%m-%dT%H:%M} UTC")


def _plan(doc: dict) -> list[_Location]:
    """Rows to write for each measurement location; raises MetadataError for problems the
    schema cannot express."""
    errors: list[str] = []
    _check_bounds(doc, errors)
    if errors:  # offsets, heights, slopes out of bounds: nothing below can be trusted
        raise MetadataError(sorted(errors, key=_path_order))
    plans = []
    seen_locations: dict[str, str] = {}
    for i, loc in enumerate(doc["measurement_location"]):
        lp = f"$.measurement_location[{i}]"
        if loc["name"] in seen_locations:
            errors.append(f"{lp}.name: {loc['name']!r} is already the name of {seen_locations[loc['name']]}")
        seen_locations.setdefault(loc["name"], lp)
        configs = loc.get("logger_main_config") or []
        clock = _Clock(configs + (loc.get("model_config") or []))
        station = {
            "name": loc["name"], "latitude": loc.get("latitude_ddeg"), "longitude": loc.get("longitude_ddeg"),
            "kind": {"mast": "met mast"}.get(loc.get("measurement_station_type_id"),
                                              loc.get("measurement_station_type_id") or "met mast"),
            "notes": loc.get("notes") or "",
        }
        loggers, logger_keys = [], set()
        for j, c in enumerate(configs):
            path = f"{lp}.logger_main_config[{j}]"
            off = _offset_minutes(c)
            row = {
                "oem": c.get("logger_oem_id") or "", "model": c.get("logger_model_name") or "",
                "serial": c.get("logger_serial_number") or "", "utc_offset_minutes": off,
                "timestamp_is_end": c.get("timestamp_is_end_of_period"),
                "interval_s": None, "valid_from": clock.utc(c.get("date_from"), off),
                "valid_to": clock.utc(c.get("date_to"), off), "source": SOURCE,
            }
            minutes = c.get("averaging_period_minutes")
            if minutes is not None:
                if minutes <= 0:
                    errors.append(f"{path}.averaging_period_minutes: {minutes} is not a positive number of minutes")
                else:
                    row["interval_s"] = round(minutes * 60)
            _check_period(row["valid_from"], row["valid_to"], path, errors)
            if (row["serial"], row["valid_from"]) in logger_keys:
                errors.append(f"{path}: logger {row['serial']!r} is listed twice from the same date_from")
            logger_keys.add((row["serial"], row["valid_from"]))
            loggers.append(row)
        points, names = [], {}
        for k, mp in enumerate(loc["measurement_point"]):
            path = f"{lp}.measurement_point[{k}]"
            if mp["name"] in names:
                errors.append(f"{path}.name: {mp['name']!r} is already the name of {names[mp['name']]}")
            names.setdefault(mp["name"], path)
            points.append(_plan_point(mp, path, clock, errors))
        _check_columns([m for p in points for m in p.mappings], errors)
        plans.append(_Location(station, loggers, points))
    if errors:
        raise MetadataError(sorted(errors, key=_path_order))
    return plans


#: (field, what, bounds) of the numbers StationManager keeps, by where they appear
_LOCATION_BOUNDS = (("latitude_ddeg", "latitude", limits.LATITUDE), ("longitude_ddeg", "longitude", limits.LONGITUDE))
_CONFIG_BOUNDS = (("offset_from_utc_hrs", "UTC offset (hours)", _OFFSET_HOURS),)
_POINT_BOUNDS = (("height_m", "height (m)", limits.HEIGHT_M),)
_MOUNTING_BOUNDS = (("boom_orientation_deg", "boom orientation", limits.ORIENTATION_DEG),)
_MEASUREMENT_BOUNDS = (("slope", "logger slope", limits.MAGNITUDE), ("offset", "logger offset", limits.MAGNITUDE),
                       ("logger_stated_boom_orientation_deg", "boom orientation", limits.ORIENTATION_DEG))
_CERTIFICATE_BOUNDS = (("slope", "certificate slope", limits.MAGNITUDE),
                       ("offset", "certificate offset", limits.MAGNITUDE))


def _check_bounds(doc: dict, errors: list[str]) -> None:
    """Numbers outside what is physically possible, and names too long to be names.

    >>> errors = []
    >>> _check_bounds({"measurement_location": [{"name": "M", "latitude_ddeg": 95, "measurement_point": [],
    ...     "logger_main_config": [{"offset_from_utc_hrs": 99999}]}]}, errors)
    >>> errors  # doctest: +NORMALIZE_WHITESPACE
    ['$.measurement_location[0].latitude_ddeg: latitude 95 is outside -90 … 90',
     '$.measurement_location[0].logger_main_config[0].offset_from_utc_hrs: UTC offset (hours) 99999 is outside -12 … 14']
    """
    def check(obj: dict, path: str, bounds: tuple) -> None:
        for key, what, (lo, hi) in bounds:
            if obj.get(key) is not None:
                try:
                    limits.check_range(obj[key], what, lo, hi, path=f"{path}.{key}")
                except InvalidValue as exc:
                    errors.append(str(exc))

    def name(obj: dict, key: str, path: str) -> None:
        if isinstance(obj.get(key), str):
            try:
                limits.check_text(obj[key], key.replace("_", " "), path=f"{path}.{key}")
            except InvalidValue as exc:
                errors.append(str(exc))

    def each(obj: dict, key: str, path: str) -> Iterable[tuple[dict, str]]:
        items = obj.get(key)
        return ((x, f"{path}.{key}[{i}]") for i, x in enumerate(items if isinstance(items, list) else [])
                if isinstance(x, dict))

    for loc, lp in each(doc, "measurement_location", "$"):
        check(loc, lp, _LOCATION_BOUNDS)
        name(loc, "name", lp)
        for key in ("logger_main_config", "model_config"):
            for c, cp in each(loc, key, lp):
                check(c, cp, _CONFIG_BOUNDS)
                name(c, "logger_serial_number", cp)
                minutes = c.get("averaging_period_minutes")
                if isinstance(minutes, int | float) and minutes > limits.AVERAGING_MINUTES[1]:
                    errors.append(f"{cp}.averaging_period_minutes: {minutes:g} minutes is longer than a day")
        for mp, pp in each(loc, "measurement_point", lp):
            check(mp, pp, _POINT_BOUNDS)
            name(mp, "name", pp)
            for m, mpath in each(mp, "mounting_arrangement", pp):
                check(m, mpath, _MOUNTING_BOUNDS)
            for c, cp in each(mp, "logger_measurement_config", pp):
                check(c, cp, _MEASUREMENT_BOUNDS)
                for col, colp in each(c, "column_name", cp):
                    name(col, "column_name", colp)
            for sensor, sp in each(mp, "sensor", pp):
                name(sensor, "serial_number", sp)
                for cert, certp in each(sensor, "calibration", sp):
                    check(cert, certp, _CERTIFICATE_BOUNDS)


def _path_order(message: str) -> list:
    """Sort messages by their JSON path, indexes as numbers."""
    path = message.split(":", 1)[0]
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[\[\].]+", path) if p]


def _plan_point(mp: dict, path: str, clock: _Clock, errors: list[str]) -> _Point:
    lmcs = []
    for j, c in enumerate(mp.get("logger_measurement_config") or []):
        cp = f"{path}.logger_measurement_config[{j}]"
        f, t = clock.utc(c.get("date_from")), clock.utc(c.get("date_to"))
        _check_period(f, t, cp, errors)
        if c.get("slope") == 0:
            errors.append(f"{cp}.slope: a logger slope of 0 would make every reading 0")
        lmcs.append((f, t, c, cp))
    lmcs.sort(key=lambda x: _order(x[:2]))
    for (f1, t1, _, p1), (f2, _, _, p2) in zip(lmcs, lmcs[1:]):
        if t1 is None or (f2 is not None and f2 < t1):
            errors.append(f"{p2}: its period overlaps that of {p1} (one logger configuration at a time)")
    sensors, sensor_periods = [], []
    for j, s in enumerate(mp.get("sensor") or []):
        sp = f"{path}.sensor[{j}]"
        f, t = clock.utc(s.get("date_from")), clock.utc(s.get("date_to"))
        _check_period(f, t, sp, errors)
        row = {
            "oem": s.get("oem") or "", "model": s.get("model") or "", "serial_number": s.get("serial_number") or "",
            "sensor_type": s.get("sensor_type_id") or "", "classification": s.get("classification") or "",
            "is_heated": s.get("is_heated"), "valid_from": f, "valid_to": t, "notes": s.get("notes") or "",
            "source": SOURCE,
        }
        key = (f, row["serial_number"], row["oem"], row["model"])
        if key in [k for k, _ in sensors]:
            errors.append(f"{sp}: the same sensor is listed twice from the same date_from")
        sensors.append((key, row))
        sensor_periods.append((f, t, key, s))
    mountings = sorted(mp.get("mounting_arrangement") or [], key=lambda m: m.get("date_from") or "")
    mounting = next((m for m in reversed(mountings) if m.get("boom_orientation_deg") is not None), None)
    orientation = mounting["boom_orientation_deg"] if mounting else None
    if orientation is None and lmcs:
        orientation = lmcs[-1][2].get("logger_stated_boom_orientation_deg")
    latest_sensor = max(sensors, key=lambda s: s[0][0] or _MIN)[1] if sensors else None
    iea_type = mp["measurement_type_id"]
    row = {
        "name": mp["name"], "measurement_type": IEA_TYPES.get(iea_type, "other"), "iea43_type": iea_type,
        "height_m": mp.get("height_m"), "height_reference": mp.get("height_reference_id") or "",
        "orientation_deg": orientation,
        "orientation_reference": (mounting or {}).get("orientation_reference_id") or "",
        "unit": (lmcs[-1][2].get("measurement_units_id") or "") if lmcs else "",
        "sensor": _text(latest_sensor["oem"], latest_sensor["model"],
                        f"s/n {latest_sensor['serial_number']}" if latest_sensor["serial_number"] else "")
        if latest_sensor else "",
        "notes": mp.get("notes") or "", "source": SOURCE,
    }
    calibrations = []
    for f, t, c, _ in lmcs:
        calibrations += _calibration_periods(f, t, c, sensor_periods, iea_type)
    mappings = []
    for f, t, c, cp in lmcs:
        for j, col in enumerate(c.get("column_name") or []):
            mappings.append(_Mapping(
                col["column_name"], col["statistic_type_id"], c.get("measurement_units_id") or "",
                bool(col.get("is_ignored")), f, t, f"{cp}.column_name[{j}]",
            ))
    return _Point(row, sensors, calibrations, mappings)


def _calibration_periods(f, t, config: dict, sensors: list, iea_type: str) -> list[tuple[tuple | None, dict]]:
    """Split one logger configuration's period where the installed sensor changes."""
    lo, hi = _order((f, t))
    cuts = {lo, hi} | {x for sf, st, _, _ in sensors for x in (sf, st) if x is not None and lo < x < hi}
    cuts_sorted = sorted(cuts)
    slope, offset = config.get("slope"), config.get("offset")
    out = []
    for a, b in zip(cuts_sorted, cuts_sorted[1:]):
        installed = next(
            ((key, s) for sf, st, key, s in sensors if (sf or _MIN) <= a < (st or _MAX)), (None, None)
        )
        key, sensor = installed
        cert = _certificate(sensor, iea_type, a) if sensor and slope is not None else None
        row = {
            "valid_from": None if a == _MIN else a, "valid_to": None if b == _MAX else b,
            "logger_slope": 1.0 if slope is None else slope, "logger_offset": offset or 0.0,
            "source": SOURCE,
        }
        if cert:
            row.update(cal_slope=cert["slope"], cal_offset=cert.get("offset") or 0.0, certificate=_text(
                cert.get("calibration_organisation"), cert.get("report_file_name"),
                f"rev {cert['revision']}" if cert.get("revision") else "", cert.get("date_of_calibration"),
                f"(sensor {sensor.get('serial_number')})" if sensor.get("serial_number") else "",
            ))
        else:  # no certificate: recalibration leaves the logged values as they are
            row.update(cal_slope=row["logger_slope"], cal_offset=row["logger_offset"],
                       certificate="" if slope is not None else "logger slope not stated")
        out.append((key if cert else None, row))
    return out


def _certificate(sensor: dict, iea_type: str, at: datetime) -> dict | None:
    """The sensor's latest calibration for this type dated on or before ``at``."""
    certs = [
        c for c in sensor.get("calibration") or []
        if c.get("slope") is not None and c.get("measurement_type_id") in (None, iea_type)
    ]
    certs.sort(key=lambda c: c.get("date_of_calibration") or "")
    day = "" if at == _MIN else at.date().isoformat()
    before = [c for c in certs if (c.get("date_of_calibration") or "") <= day]
    return (before or certs)[-1] if certs else None


def _check_columns(mappings: list[_Mapping], errors: list[str]) -> None:
    by_column: dict[str, list[_Mapping]] = {}
    for m in mappings:
        by_column.setdefault(m.column_name, []).append(m)
    for ms in by_column.values():
        ms.sort(key=lambda m: _order((m.valid_from, m.valid_to)))
        for a, b in zip(ms, ms[1:]):
            if a.valid_to is None or (b.valid_from is not None and b.valid_from < a.valid_to):
                errors.append(f"{b.path}: column {b.column_name!r} is also mapped by {a.path} over an "
                              f"overlapping period")


# --- writing --------------------------------------------------------------------------------


def import_metadata(
    conn: psycopg.Connection, path_or_dict: Path | str | dict, actor: str, *, name: str | None = None
) -> ImportReport:
    """Validate a Task 43 document and create or update its stations (one transaction).

    Raises :class:`MetadataError` with every problem (and its JSON path) when the document
    is not valid; then nothing is written.
    """
    doc, file_name = load_document(path_or_dict)
    file_name = name or file_name
    try:
        schema_version, notes = validate(doc)
        plans = _plan(doc)
    except MetadataError as exc:
        raise MetadataError(exc.errors, file=file_name) from None
    report = ImportReport(file_name, doc["version"], schema_version, notes=notes)
    with db.translate(), conn.transaction():
        writer = _Writer(conn, actor, report)
        for plan in plans:
            writer.location(plan)
    log.info("imported Task 43 metadata %s: %s", file_name, report.summary().replace("\n", "; "))
    return report


def import_metadata_file(path: Path, actor: str = "cli", url: str | None = None) -> ImportReport:
    """``stationmanager import-metadata FILE.json``: import with a pooled connection."""
    with db.connection(url) as conn:
        return import_metadata(conn, path, actor)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and float(a) == float(b)
    return a == b


class _Writer:
    def __init__(self, conn: psycopg.Connection, actor: str, report: ImportReport) -> None:
        self.conn, self.actor, self.report = conn, actor, report

    def audit(self, action: str, entity: str, entity_id: int, **details: Any) -> None:
        details = {**details, "source": SOURCE, "file": self.report.file}
        db.audit(self.conn, self.actor, action, entity, entity_id, **details)

    def sync(
        self, table: str, desired: Iterable[tuple[tuple, dict]], existing: list[dict],
        key: Callable[[dict], tuple], deletable: Callable[[dict], bool] = lambda r: True,
        stale: list[dict] | None = None,
    ) -> dict[tuple, int]:
        """Make ``table`` hold ``desired`` (key -> row): insert, update or delete, audited.
        With ``stale``, rows to delete are put there instead (to delete after their children)."""
        by_key = {key(r): r for r in existing}
        ids = {}
        for k, row in desired:
            old = by_key.pop(k, None)
            if old is None:
                ids[k] = self._insert(table, row)
                self.report.count("created", table)
                self.audit("create", table, ids[k], **row)
                continue
            ids[k] = old["id"]
            changes = {c: v for c, v in row.items() if not _same(old[c], v)}
            if changes:
                self._execute(sql.SQL("UPDATE {} SET {} WHERE id = %(id)s").format(
                    sql.Identifier(table),
                    sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(c), sql.Placeholder(c))
                                       for c in changes),
                ), {**changes, "id": old["id"]})
                self.report.count("updated", table)
                self.audit("update", table, old["id"], old={c: old[c] for c in changes}, new=changes)
            else:
                self.report.unchanged += 1
        gone = [old for old in by_key.values() if deletable(old)]
        if stale is None:
            self.delete(table, gone)
        else:
            stale += gone
        return ids

    def delete(self, table: str, rows: list[dict]) -> None:
        for old in rows:
            self._execute(sql.SQL("DELETE FROM {} WHERE id = %(id)s").format(sql.Identifier(table)), {"id": old["id"]})
            self.report.count("deleted", table)
            self.audit("delete", table, old["id"], **{c: v for c, v in old.items() if c != "id"})

    def _insert(self, table: str, row: dict) -> int:
        stmt = sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING id").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, row)),
            sql.SQL(", ").join(map(sql.Placeholder, row)),
        )
        return self.conn.execute(stmt, row).fetchone()["id"]

    def _execute(self, stmt: sql.Composed, params: dict) -> None:
        self.conn.execute(stmt, params)

    def location(self, plan: _Location) -> None:
        station_id = self.station(plan.station)
        self.loggers(station_id, plan.loggers)
        stale_points: list[dict] = []  # deleted last, so that their sensors etc. are audited first
        point_ids = self.sync(
            "measurement_point",
            [((p.row["name"],), {"station_id": station_id, **p.row}) for p in plan.points],
            fetch_all(self.conn, "points_of_station", station_id=station_id),
            key=lambda r: (r["name"],), deletable=lambda r: r["source"] == SOURCE, stale=stale_points,
        )
        sensor_ids = self.sync(
            "sensor",
            [((point_ids[(p.row["name"],)], *k), {"measurement_point_id": point_ids[(p.row["name"],)], **row})
             for p in plan.points for k, row in p.sensors],
            [s for s in fetch_all(self.conn, "sensors_of_station", station_id=station_id) if s["source"] == SOURCE],
            key=lambda r: (r["measurement_point_id"], r["valid_from"], r["serial_number"], r["oem"], r["model"]),
        )
        calibrations = []
        for p in plan.points:
            pid = point_ids[(p.row["name"],)]
            for skey, row in p.calibrations:
                sid = sensor_ids[(pid, *skey)] if skey else None
                calibrations.append(((pid, row["valid_from"]), {"measurement_point_id": pid, "sensor_id": sid, **row}))
        self.sync(
            "calibration", calibrations,
            [c for c in fetch_all(self.conn, "calibrations_of_station", station_id=station_id)
             if c["source"] == SOURCE],
            key=lambda r: (r["measurement_point_id"], r["valid_from"]),
        )
        self.channels(station_id, plan, point_ids)
        self.delete("measurement_point", stale_points)
        for row in fetch_all(self.conn, "delete_empty_convention_points", station_id=station_id):
            self.report.count("deleted", "measurement_point")
            self.audit("delete", "measurement_point", row["id"], name=row["name"], reason="no channel uses it")
        self.report.stations.append(plan.station["name"])

    def station(self, want: dict) -> int:
        row = db.fetch_one(self.conn, "station_by_name", name=want["name"])
        if row is None:
            row = db.fetch_one(self.conn, "insert_station", elevation_m=None, **want)  # Task 43 has no elevation
            assert row is not None
            self.report.count("created", "station")
            self.audit("create", "station", row["id"], **want)
            return row["id"]
        fields = ("latitude", "longitude", "kind") + (("notes",) if not row["notes"] else ())
        changes = {f: want[f] for f in fields if not _same(row[f], want[f])}
        if changes:
            self._execute(sql.SQL("UPDATE station SET {} WHERE id = %(id)s").format(
                sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(c), sql.Placeholder(c))
                                   for c in changes)), {**changes, "id": row["id"]})
            self.report.count("updated", "station")
            self.audit("update", "station", row["id"], old={c: row[c] for c in changes}, new=changes)
        else:
            self.report.unchanged += 1
        return row["id"]

    def loggers(self, station_id: int, loggers: list[dict]) -> None:
        existing = [r for r in fetch_all(self.conn, "loggers_of_station", station_id=station_id)
                    if r["source"] == SOURCE]
        by_key = {(r["serial"], r["valid_from"]): r for r in existing}
        desired = []
        for row in loggers:
            k = (row["serial"], row["valid_from"])
            old = by_key.get(k, {})
            # Not stated in the document: keep what is known (NULL: let each file's header
            # say, else the start-of-period default), and StationManager's default interval.
            filled = {**row,
                      "timestamp_is_end": row["timestamp_is_end"] if row["timestamp_is_end"] is not None
                      else old.get("timestamp_is_end"),
                      "interval_s": row["interval_s"] or old.get("interval_s", 600)}
            desired.append((k, {"station_id": station_id, **filled}))
        self.sync("logger", desired, existing, key=lambda r: (r["serial"], r["valid_from"]))

    def channels(self, station_id: int, plan: _Location, point_ids: dict) -> None:
        desired, latest = [], {}
        for p in plan.points:
            pid = point_ids[(p.row["name"],)]
            for m in p.mappings:
                ch = self._channel(station_id, m)
                desired.append(((ch["id"], m.valid_from), {
                    "channel_id": ch["id"], "measurement_point_id": pid, "statistic": m.statistic,
                    "unit": m.unit, "is_ignored": m.is_ignored, "valid_from": m.valid_from,
                    "valid_to": m.valid_to, "source": SOURCE,
                }))
                best = latest.get(ch["id"])
                if best is None or (m.valid_from or _MIN) > (best[1].valid_from or _MIN):
                    latest[ch["id"]] = (pid, m)
        existing = [m for m in fetch_all(self.conn, "mappings_of_station", station_id=station_id)
                    if m["source"] == SOURCE]
        self.sync("channel_mapping", desired, [{k: v for k, v in m.items() if k not in ("column_name", "point_name")}
                                               for m in existing],
                  key=lambda r: (r["channel_id"], r["valid_from"]))
        # Each channel's current mapping: the latest period of the document.
        for channel_id, (pid, m) in latest.items():
            self._set_channel(channel_id, pid, m.statistic, m.unit)
        # Channels the document no longer lists lose their Task 43 point.
        for channel_id in {m["channel_id"] for m in existing} - set(latest):
            self._set_channel(channel_id, None, None, None)
        for row in fetch_all(self.conn, "unmap_channels_without_point", station_id=station_id):
            self.report.count("updated", "channel")
            self.audit("update", "channel", row["id"], column_name=row["column_name"],
                       old={"mapped": True}, new={"mapped": False})

    def _channel(self, station_id: int, m: _Mapping) -> dict:
        params = {"station_id": station_id, "column_name": m.column_name, "statistic": m.statistic, "unit": m.unit}
        ch = fetch_one(self.conn, "channel_by_name", **params)
        if ch is None:
            ch = fetch_one(self.conn, "insert_channel", **params)
            if ch is not None:
                self.report.count("created", "channel")
                self.audit("create", "channel", ch["id"], column_name=m.column_name)
            else:  # created meanwhile by an import of data
                ch = fetch_one(self.conn, "channel_by_name", **params)
        assert ch is not None
        return ch

    def _set_channel(self, channel_id: int, point_id: int | None, statistic: str | None, unit: str | None) -> None:
        old = fetch_one(self.conn, "channel_by_id", channel_id=channel_id)
        assert old is not None
        want = {"measurement_point_id": point_id, "mapped": point_id is not None}
        if statistic is not None:
            want["statistic"] = statistic
        if unit:
            want["unit"] = unit
        changes = {c: v for c, v in want.items() if not _same(old[c], v)}
        if not changes:
            return
        new = {**{c: old[c] for c in ("statistic", "unit")}, **want}
        self.conn.execute(query("map_channel"), {
            "channel_id": channel_id, "measurement_point_id": new["measurement_point_id"],
            "statistic": new["statistic"], "unit": new["unit"], "mapped": new["mapped"],
        })
        self.report.count("updated", "channel")
        self.audit("update", "channel", channel_id, column_name=old["column_name"],
                   old={c: old[c] for c in changes}, new=changes)


