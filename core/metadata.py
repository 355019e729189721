"""Channel metadata: what each logger column measures, where, and which statistic.

Metadata comes from three places, strongest last:

1. **Column-name conventions** (:func:`parse_column_name`, :func:`apply_conventions`): after each
   import, every channel that has no measurement point yet is read by its name — NRG
   ``Ch2_Anem_85.00m_S_Avg_m/s``, brightwind/Windographer ``Spd80mNStd``, Campbell
   ``WS_80m_NE_Std`` — and put on a point named like ``wind_speed 80m N``. Columns the
   conventions do not recognise stay channels with ``mapped = false``; nothing is dropped.
2. **An IEA Task 43 document** (:mod:`core.iea43`): replaces guesses with the documented
   points, sensors, calibrations and time-ranged column mappings.
3. **An analyst** (:func:`set_channel_mapping`) correcting one channel on the Metadata page.

Every change is audited.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import psycopg

from core import db, limits
from core.errors import InvalidValue, NotFound, StationManagerError

log = logging.getLogger(__name__)

MEASUREMENT_TYPES = (
    "wind_speed", "wind_direction", "air_temperature", "relative_humidity", "air_pressure",
    "precipitation", "battery_voltage", "solar_radiation", "vertical_wind_speed", "other", "unknown",
)
STATISTICS = (
    "avg", "sd", "min", "max", "gust", "count", "sample", "sum", "median", "mode", "range",
    "ti", "ti30sec", "availability", "quality", "text", "unknown",
)
COMPASS = ("N", "NNE", "NE", "ENE", "E", "ESE", "SE", "SSE", "S", "SSW", "SW", "WSW", "W", "WNW", "NW", "NNW")
COMPASS_DEG = {p: i * 22.5 for i, p in enumerate(COMPASS)}


class MetadataError(StationManagerError):
    """The metadata is not valid.

    ``errors`` lists every problem found, each starting with its JSON path, e.g.
    ``$.measurement_location[0].measurement_point[3].height_m: 'x' is not of type 'number', 'null'``.
    """

    def __init__(self, errors: list[str], *, file: str | None = None) -> None:
        self.errors = list(errors)
        self.file = file
        head = f"{file}: " if file else ""
        n = len(self.errors)
        shown = "\n".join(f"  - {e}" for e in self.errors[:50])
        more = f"\n  … and {n - 50} more" if n > 50 else ""
        super().__init__(f"{head}{n} problem{'s' if n != 1 else ''} in the metadata:\n{shown}{more}")


# --- column-name conventions (pure) ---------------------------------------------------------


@dataclass(frozen=True)
class ColumnMeta:
    """What a column name says. ``mapped`` is False when the name was not understood
    (then ``measurement_type`` is ``"unknown"``; height and statistic may still be known)."""

    name: str
    measurement_type: str = "unknown"
    height_m: float | None = None
    orientation: str | None = None  # compass text: "N", "SW", ...
    orientation_deg: float | None = None
    statistic: str = "unknown"
    unit: str = ""
    base_name: str = ""  # the name without statistic and unit: "Spd80mN", "WS_80m_NE"
    mapped: bool = False

    @property
    def point_name(self) -> str:
        """Name of the measurement point the conventions give this column.

        >>> parse_column_name("Spd80mNStd").point_name
        'wind_speed 80m N'
        >>> parse_column_name("BattMin").point_name
        'battery_voltage'
        """
        return point_name(self.measurement_type, self.height_m, self.orientation)


def point_name(measurement_type: str, height_m: float | None, orientation: str | None) -> str:
    """``wind_speed 80m N``, ``air_temperature 2m``, ``wind_speed 59.9m 315°``.

    >>> point_name("wind_speed", 85.0, "S"), point_name("air_pressure", None, None)
    ('wind_speed 85m S', 'air_pressure')
    """
    parts = [measurement_type]
    if height_m is not None:
        parts.append(f"{height_m:g}m")
    if orientation:
        parts.append(orientation)
    return " ".join(parts)


def compass_of(deg: float) -> str:
    """The nearest 16-point compass direction.

    >>> compass_of(315), compass_of(360), compass_of(100)
    ('NW', 'N', 'E')
    """
    return COMPASS[int((deg % 360) / 22.5 + 0.5) % 16]


def _words(**groups: str) -> list[tuple[re.Pattern[str], str]]:
    return [(re.compile(rx, re.I), key) for key, rxs in groups.items() for rx in rxs.split()]


# Words, case-insensitive. Longest match wins, so "Prcp" beats "P" and "Tot" beats "T".
_TYPE_WORDS = _words(
    wind_speed=r"wind_?speed wspd ws spd speed anem(?:ometer)?",
    wind_direction=r"wind_?dir(?:ection)? wdir wd dir(?:ection)? vane",
    air_temperature=r"air_?temp(?:erature)? airt tair temp(?:erature)? tmp t",
    relative_humidity=r"rel_?hum(?:id(?:ity)?)? humid(?:ity)? rh",
    air_pressure=r"baro(?:metric)?_?press(?:ure)? baro(?:meter)? press(?:ure)? prs bp p",
    precipitation=r"precip(?:itation)? prcp rain(?:fall)?",
    battery_voltage=r"batt(?:ery)?_?v(?:olt(?:age)?s?)? batt(?:ery)? vbatt",
    solar_radiation=r"solar_?rad(?:iation)? solar slrw slrkw ghi pyr(?:anometer)? irradiance",
    vertical_wind_speed=r"vert(?:ical)?_?(?:wind_?)?(?:speed|spd|ws) vws",
    other=r"p_?temp panel_?temp",
)
_STAT_WORDS = _words(
    avg=r"avg ave average mean",
    sd=r"std stdev stddev sdev sd",
    min=r"min minimum",
    max=r"max maximum",
    gust=r"gust(?:dir)?",
    sum=r"tot total sum",
    sample=r"smp sample inst",
    count=r"cnt count",
    ti30sec=r"ti30sec",
    ti=r"ti",
)
# Unit fragments inside names (case-sensitive): PTemp_C_Max, AirTC_Avg, Batt_V.
_UNIT_WORDS = [(re.compile(rx), rx) for rx in ("degC", "deg_C", "DegC", "C", "V", "mV", "hPa", "mbar", "kPa", "mm")]
_HEIGHT = re.compile(r"(\d+(?:\.\d+)?)\s?[mM](?![a-z])")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_CHANNEL = re.compile(r"ch(\d+)", re.I)
_INDEX = re.compile(r"\(\d+\)")
_SEP = "_ -"

_NRG = re.compile(
    r"^Ch(?P<ch>\d+)_(?P<kind>[A-Za-z]+)_(?:(?P<h>\d+(?:\.\d+)?)m)?_(?P<dir>[A-Za-z/]*)_"
    r"(?P<stat>[A-Za-z]+)_(?P<unit>.*)$"
)
_NRG_LOGR = re.compile(r"^Ch(?P<ch>\d+)_(?P<stat>Avg|SD|Min|Max|Gust|Total|Count)(?:_(?P<unit>.*))?$")
_NRG_KIND = {"anem": "wind_speed", "vane": "wind_direction"}

_UNIT_TYPES = {
    "wind_speed": "m/s ms-1 m/sec mps metres/second meters/second mph knots kt kn km/h",
    "wind_direction": "deg degree degrees °",
    "air_temperature": "c degc deg_c °c celsius celcius k kelvin f degf",
    "relative_humidity": "% %rh rh pct percent",
    "air_pressure": "hpa mbar mb millibar millibars kpa pa inhg mmhg atm",
    "precipitation": "mm",
    "battery_voltage": "v volt volts vdc",
    "solar_radiation": "w/m^2 w/m2 w/sqm w/m² wm-2 w/m^-2 kw/m^2",
}
_UNIT_TYPE = {u: t for t, units in _UNIT_TYPES.items() for u in units.split()}


def type_of_unit(unit: str) -> str | None:
    """The measurement type a unit implies, if any.

    >>> type_of_unit("Metres/Second"), type_of_unit("Deg C"), type_of_unit("W/sqm"), type_of_unit("")
    ('wind_speed', 'air_temperature', 'solar_radiation', None)
    """
    return _UNIT_TYPE.get(unit.strip().lower().replace(" ", ""))


def _boundary(name: str, end: int) -> bool:
    """A word ending at ``end`` is whole: the next character is not a lower-case letter
    (a digit, a separator, the end, or the upper-case start of the next word)."""
    return end >= len(name) or not name[end].islower()


def _scan(name: str) -> list[tuple[str, Any, int, int]]:
    """Split a column name into (kind, value, start, end) tokens."""
    tokens: list[tuple[str, Any, int, int]] = []
    i = 0
    while i < len(name):
        if name[i] in _SEP:
            i += 1
            continue
        best: tuple[str, Any, int] | None = None  # kind, value, end

        def offer(kind: str, value: Any, end: int) -> None:
            nonlocal best
            if end > i and (best is None or end > best[2]):
                best = (kind, value, end)

        for kind, words in (("type", _TYPE_WORDS), ("stat", _STAT_WORDS)):
            for rx, key in words:
                m = rx.match(name, i)
                if m and _boundary(name, m.end()):
                    offer(kind, key, m.end())
        for rx, unit in _UNIT_WORDS:
            m = rx.match(name, i)
            if m and (m.end() >= len(name) or not name[m.end()].isalpha() or name[m.end()].isupper()):
                offer("unit", unit, m.end())
        for n in (3, 2, 1):  # compass points are upper case: "Spd80mSMax" is S + Max
            word = name[i:i + n]
            if word in COMPASS_DEG and _boundary(name, i + n):
                offer("compass", word, i + n)
                break
        if m := _HEIGHT.match(name, i):
            offer("height", float(m[1]), m.end())
        elif m := _NUMBER.match(name, i):
            offer("number", float(m[0]), m.end())
        if (m := _CHANNEL.match(name, i)) and _boundary(name, m.end()):
            offer("channel", int(m[1]), m.end())
        if m := _INDEX.match(name, i):
            offer("index", m[0], m.end())
        if best is None:  # an unknown word: up to the next separator, digit or camel hump
            j = i + 1
            while j < len(name) and name[j] not in _SEP and not name[j].isdigit() and not name[j].isupper():
                j += 1
            best = ("unknown", name[i:j], j)
        tokens.append((best[0], best[1], i, best[2]))
        i = best[2]
    return tokens


def _base_name(name: str, tokens: list[tuple[str, Any, int, int]], understood: bool) -> str:
    keep = list(name)
    drop = ("stat", "unit", "index") if understood else ("stat", "index")
    for kind, _, start, end in tokens:
        if kind in drop:
            keep[start:end] = [""] * (end - start)
    text = re.sub(r"[_\- ]{2,}", lambda m: m[0][0], "".join(keep))
    return text.strip(_SEP)


def parse_column_name(name: str, unit: str = "") -> ColumnMeta:
    """Read measurement type, height, boom orientation and statistic from a column name.

    ``unit`` (e.g. from a TOA5 units row) decides the type when the name itself has only a
    generic word (NRG ``Analog``) or none. A name without a statistic word is an average
    (brightwind/Windographer: ``Spd80mN``). Unrecognised names give ``mapped=False``.

    NRG SymphoniePRO:

    >>> m = parse_column_name("Ch2_Anem_85.00m_S_Avg_m/s")
    >>> m.measurement_type, m.height_m, m.orientation, m.orientation_deg, m.statistic, m.unit
    ('wind_speed', 85.0, 'S', 180.0, 'avg', 'm/s')
    >>> m.base_name, m.point_name
    ('Ch2_Anem_85.00m_S', 'wind_speed 85m S')
    >>> m = parse_column_name("Ch13_Vane_83.00m_SE_Avg_deg")
    >>> m.measurement_type, m.height_m, m.orientation, m.statistic
    ('wind_direction', 83.0, 'SE', 'avg')
    >>> m = parse_column_name("Ch20_Analog_5.00m_N/A_Avg_C")
    >>> m.measurement_type, m.height_m, m.orientation, m.unit
    ('air_temperature', 5.0, None, 'C')

    brightwind / Windographer (``Spd80mNStd`` is the sd of ``Spd80mN``; ``T2m`` is 2 m):

    >>> m = parse_column_name("Spd80mNStd")
    >>> m.measurement_type, m.height_m, m.orientation, m.statistic, m.base_name
    ('wind_speed', 80.0, 'N', 'sd', 'Spd80mN')
    >>> m = parse_column_name("Spd80mSMax")
    >>> m.orientation, m.statistic
    ('S', 'max')
    >>> [parse_column_name(n).measurement_type for n in ("Dir78mS", "T2m", "RH2m", "P2m")]
    ['wind_direction', 'air_temperature', 'relative_humidity', 'air_pressure']
    >>> m = parse_column_name("T2m")
    >>> m.height_m, m.statistic
    (2.0, 'avg')
    >>> [(parse_column_name(n).measurement_type, parse_column_name(n).statistic) for n in ("PrcpTot", "BattMin")]
    [('precipitation', 'sum'), ('battery_voltage', 'min')]

    Campbell Scientific:

    >>> m = parse_column_name("WS_80m_NE_Std")
    >>> m.measurement_type, m.height_m, m.orientation, m.orientation_deg, m.statistic, m.base_name
    ('wind_speed', 80.0, 'NE', 45.0, 'sd', 'WS_80m_NE')
    >>> m = parse_column_name("AirTC_Avg")
    >>> m.measurement_type, m.height_m, m.statistic, m.unit
    ('air_temperature', None, 'avg', 'C')
    >>> m = parse_column_name("PTemp_C_Max")
    >>> m.measurement_type, m.statistic, m.mapped
    ('other', 'max', True)

    Unknown names are kept, marked unmapped:

    >>> m = parse_column_name("RECORD_Flag")
    >>> m.measurement_type, m.mapped
    ('unknown', False)
    >>> parse_column_name("CH1Avg").mapped, parse_column_name("CH1Avg", "m/s").measurement_type
    (False, 'wind_speed')
    """
    name = name.strip()
    if m := _NRG.match(name):
        return _nrg(name, m, unit)
    if m := _NRG_LOGR.match(name):
        u = unit or m["unit"] or ""
        mtype = type_of_unit(u)
        stat = _stat_word(m["stat"])
        return ColumnMeta(name, mtype or "unknown", statistic=stat, unit=u,
                          base_name=f"Ch{m['ch']}", mapped=mtype is not None)
    tokens = _scan(name)
    kinds = [t[0] for t in tokens]
    types = list(dict.fromkeys(t[1] for t in tokens if t[0] == "type"))
    stats = [t[1] for t in tokens if t[0] == "stat"]
    heights = [t[1] for t in tokens if t[0] == "height"]
    numbers = [t[1] for t in tokens if t[0] == "number"]
    compass = [t[1] for t in tokens if t[0] == "compass"]
    units = [t[1] for t in tokens if t[0] == "unit"]
    height = heights[0] if len(heights) == 1 else None
    orient, orient_deg = (compass[0], COMPASS_DEG[compass[0]]) if compass else (None, None)
    if not heights and types and numbers:  # "Spd_80.1_315": height, then boom bearing
        height = numbers[0]
        if len(numbers) > 1 and 0 <= numbers[1] <= 360 and orient is None:
            orient_deg = numbers[1]
            orient = compass_of(orient_deg)
    understood = "unknown" not in kinds and len(types) <= 1 and len(heights) <= 1 and len(compass) <= 1
    if not understood:  # a stray capital in "RECORD" is no bearing, nor its C a unit
        orient = orient_deg = None
        units = []
    unit = unit or (units[0] if units else "")
    mtype = types[0] if types else type_of_unit(unit)
    if not understood or mtype is None:
        mtype = "unknown"
    mapped = mtype != "unknown"
    stat = stats[0] if stats else ("avg" if mapped else "unknown")
    base = _base_name(name, tokens, understood)
    return ColumnMeta(name, mtype, height, orient, orient_deg, stat, unit, base, mapped)


def _stat_word(word: str) -> str:
    for rx, key in _STAT_WORDS:
        if rx.fullmatch(word):
            return key
    return "unknown"


def _nrg(name: str, m: re.Match[str], unit: str) -> ColumnMeta:
    u = unit or m["unit"]
    mtype = _NRG_KIND.get(m["kind"].lower()) or type_of_unit(u) or "unknown"
    orient = m["dir"] if m["dir"] in COMPASS_DEG else None
    base = name[: m.start("stat")].rstrip("_")
    return ColumnMeta(
        name, mtype, float(m["h"]) if m["h"] else None, orient,
        COMPASS_DEG[orient] if orient else None, _stat_word(m["stat"]), u, base, mtype != "unknown",
    )


# --- database -------------------------------------------------------------------------------


_sql = db.SqlFile("metadata.sql")
query = _sql.q  # a named query of core/sql/metadata.sql
fetch_all = _sql.fetch_all
fetch_one = _sql.fetch_one


def _ensure_point(conn: psycopg.Connection, station_id: int, name: str, meta: ColumnMeta,
                  unit: str, source: str, actor: str) -> dict:
    row = fetch_one(
        conn, "ensure_point", station_id=station_id, name=name, measurement_type=meta.measurement_type,
        height_m=meta.height_m, orientation_deg=meta.orientation_deg, unit=unit, source=source,
    )
    assert row is not None
    if row["created"]:
        db.audit(conn, actor, "create", "measurement_point", row["id"], name=name, source=source,
                 measurement_type=meta.measurement_type, height_m=meta.height_m,
                 orientation_deg=meta.orientation_deg)
    return row


def _map_to_point(conn: psycopg.Connection, station_id: int, ch: dict, meta: ColumnMeta, source: str,
                  actor: str, **audit: Any) -> dict:
    """Map channel ``ch`` to the point ``meta`` names (created if new; named after the column's
    base name too when another channel already records that statistic there), audited.
    A statistic the file stated is kept. Returns the point row."""
    statistic = ch["statistic"] if ch["statistic"] != "unknown" else meta.statistic
    unit = ch["unit"] or meta.unit
    point = _ensure_point(conn, station_id, meta.point_name, meta, unit, source, actor)
    taken = fetch_one(conn, "point_has_statistic", point_id=point["id"], statistic=statistic, channel_id=ch["id"])
    if taken and taken["taken"]:
        point = _ensure_point(conn, station_id, f"{meta.point_name} ({meta.base_name})", meta, unit, source, actor)
    conn.execute(query("map_channel"), {
        "channel_id": ch["id"], "measurement_point_id": point["id"], "statistic": statistic,
        "unit": unit, "mapped": True,
    })
    db.audit(conn, actor, "map", "channel", ch["id"], column_name=ch["column_name"], source=source,
             point=point["name"], statistic=statistic, **audit)
    return point


def apply_conventions(conn: psycopg.Connection, station_id: int, actor: str) -> dict[str, int]:
    """Give every channel of the station that has no measurement point yet the point its
    column name implies (one per type, height and orientation, e.g. ``wind_speed 80m N``).

    A statistic the file stated (e.g. TOA5 ``Std``) is kept. When another channel already
    records the same statistic at that point (two anemometers at one height and bearing),
    the point name gets the column's base name: ``wind_speed 80m N (Ch2_Anem_80.00m_N)``.
    Unrecognised columns stay unmapped. Runs in the caller's transaction; returns counts.
    """
    counts = {"mapped": 0, "unmapped": 0, "points_created": 0}
    for ch in fetch_all(conn, "channels_without_point", station_id=station_id):
        meta = parse_column_name(ch["column_name"], ch["unit"])
        if not meta.mapped:
            counts["unmapped"] += 1
            continue
        point = _map_to_point(conn, station_id, ch, meta, "conventions", actor)
        counts["points_created"] += int(point["created"])
        counts["mapped"] += 1
    if counts["mapped"]:
        log.info("station %s: %s channels mapped by name conventions", station_id, counts["mapped"])
    return counts


def apply_file_metadata(conn: psycopg.Connection, station_id: int, columns: list, actor: str) -> int:
    """Map channels that have no measurement point yet with what their file's header says of
    them (:class:`core.formats.Column`: measurement type, height, bearing), for columns whose
    name says no height (e.g. NRG Symphonie ``CH1Avg``, whose channel block gives type and
    height). Other columns are left to :func:`apply_conventions`. Returns the channels mapped.
    """
    by_name = {c.name: c for c in columns if c.measurement_type and c.height_m is not None}
    mapped = 0
    if not by_name:  # the header says nothing of them (TOA5): no query
        return mapped
    for ch in fetch_all(conn, "channels_without_point", station_id=station_id):
        col = by_name.get(ch["column_name"])
        if col is None or parse_column_name(ch["column_name"], ch["unit"]).height_m is not None:
            continue
        orientation = compass_of(col.orientation_deg) if col.orientation_deg is not None else None
        base = re.sub(r"(Avg|SD|StdDev|Max|Min|Gust)$", "", col.name, flags=re.I) or col.name
        meta = ColumnMeta(name=col.name, measurement_type=col.measurement_type, height_m=col.height_m,
                          orientation=orientation, orientation_deg=col.orientation_deg,
                          statistic=col.statistic, unit=col.unit, base_name=base, mapped=True)
        _map_to_point(conn, station_id, ch, meta, "file header", actor, sensor=col.sensor)
        mapped += 1
    return mapped


def set_channel_mapping(
    conn: psycopg.Connection,
    channel_id: int,
    measurement_type: str,
    height_m: float | None,
    orientation_deg: float | None,
    statistic: str,
    unit: str,
    actor: str,
) -> dict:
    """Map one channel by hand (an analyst correcting the conventions). Returns the channel.

    The channel goes to the point named after type, height and orientation (created if
    needed); ``measurement_type="unknown"`` unmaps it. Audited with old and new values.

    .. warning:: This sets the channel's current mapping. A later Task 43 import that lists
       the column maps it as the document says.
    """
    problems = []
    if measurement_type not in MEASUREMENT_TYPES:
        problems.append(f"measurement_type: {measurement_type!r} is not one of {', '.join(MEASUREMENT_TYPES)}")
    if statistic not in STATISTICS:
        problems.append(f"statistic: {statistic!r} is not one of {', '.join(STATISTICS)}")
    for value, what, (lo, hi) in ((height_m, "height (m)", limits.HEIGHT_M),
                                  (orientation_deg, "orientation", limits.ORIENTATION_DEG)):
        try:
            if value is not None:
                limits.check_range(value, what, lo, hi)
        except InvalidValue as exc:
            problems.append(str(exc))
    try:
        limits.check_text(unit, "unit")
    except InvalidValue as exc:
        problems.append(str(exc))
    if problems:
        raise MetadataError(problems)
    old = fetch_one(conn, "channel_by_id", channel_id=channel_id)
    if old is None:
        raise NotFound(f"no channel with id {channel_id}")
    with conn.transaction():
        point = None
        if measurement_type != "unknown":
            orient = compass_of(orientation_deg) if orientation_deg is not None else None
            meta = ColumnMeta(old["column_name"], measurement_type, height_m, orient, orientation_deg,
                              statistic, unit, mapped=True)
            point = _ensure_point(conn, old["station_id"], meta.point_name, meta, unit, "", actor)
        conn.execute(query("map_channel"), {
            "channel_id": channel_id, "measurement_point_id": point["id"] if point else None,
            "statistic": statistic, "unit": unit, "mapped": point is not None,
        })
        new = fetch_one(conn, "channel_by_id", channel_id=channel_id)
        assert new is not None
        fields = ("point_name", "measurement_type", "height_m", "orientation_deg", "statistic", "unit", "mapped")
        db.audit(conn, actor, "update", "channel", channel_id, column_name=old["column_name"], source="manual",
                 old={f: old[f] for f in fields}, new={f: new[f] for f in fields})
    return new


def station_metadata(conn: psycopg.Connection, station_id: int) -> dict[str, Any]:
    """Everything the Metadata page shows for a station: the station, its loggers,
    measurement points (with their sensors and calibrations), channels with their point's
    fields, and the time-ranged column mappings of Task 43 imports."""
    station = fetch_one(conn, "station_by_id", station_id=station_id)
    if station is None:
        raise NotFound(f"no station with id {station_id}")
    points = fetch_all(conn, "points_of_station", station_id=station_id)
    sensors = fetch_all(conn, "sensors_of_station", station_id=station_id)
    calibrations = fetch_all(conn, "calibrations_of_station", station_id=station_id)
    for p in points:
        p["sensors"] = [s for s in sensors if s["measurement_point_id"] == p["id"]]
        p["calibrations"] = [c for c in calibrations if c["measurement_point_id"] == p["id"]]
    return {
        "station": station,
        "loggers": fetch_all(conn, "loggers_of_station", station_id=station_id),
        "measurement_points": points,
        "channels": fetch_all(conn, "channels_with_points", station_id=station_id),
        "channel_mappings": fetch_all(conn, "mappings_of_station", station_id=station_id),
    }


def set_timestamp_convention(
    conn: psycopg.Connection, station: str, timestamp_is_end: bool | None, actor: str,
    serial: str | None = None,
) -> list[dict[str, Any]]:
    """Say whether a station's loggers (those with ``serial``, when given) stamp the end of
    the averaging period (``None``: as each file says, else the start). A station without a
    logger gets one, used by its next file. Audited; files already imported keep their
    times until they are imported again.
    """
    if serial is not None:
        limits.check_text(serial, "logger serial")
    st = db.fetch_one(conn, "station_by_name", name=station)
    if st is None:
        raise NotFound(f"no station {station!r}")
    params = {"station_id": st["id"], "serial": serial, "timestamp_is_end": timestamp_is_end}
    rows = _sql.fetch_all(conn, "set_logger_timestamp_is_end", **params)
    if not rows:
        if serial is not None and _sql.fetch_all(conn, "loggers_of_station", station_id=st["id"]):
            raise NotFound(f"station {station!r} has no logger with serial {serial!r}")
        rows = [_sql.fetch_one(conn, "insert_station_logger", **params)]
    for r in rows:
        db.audit(conn, actor, "set timestamp convention", "logger", r["id"], timestamp_is_end=timestamp_is_end)
    return rows
