"""NRG Systems logger files: SymphoniePRO text exports and LOGR ``.dat`` files.

Both start with ``Key:<TAB>value`` lines in titled sections, end the header with a line
``Data`` and continue with a tab-separated table::

    NRG Export Service                      <- LOGR: "NRG Systems Data Logger", then
    Export version:<TAB>3                      Model Number / Serial Number lines
    Site Properties
    Latitude:<TAB>44.5000000
    Time Zone:<TAB>UTC-5:00                 <- LOGR: "-5"
    Logger History                          <- SymphoniePRO only: Date, Model, Serial Number
    Sensor History
    Channel:<TAB>2                          <- one block per channel and configuration
    Effective Date:<TAB>2022-03-17 00:00:00    (SymphoniePRO only)
    Type:<TAB>Anemometer                    <- also Description, Serial Number, Height,
    Scale Factor:<TAB>0.09350                  Bearing, Offset, Units, Measurand …
    Data
    Timestamp<TAB>Ch2_Anem_85.00m_S_Avg_m/s<TAB>…   <- LOGR: Ch1_Avg_W/m^2, "…Z" stamps
    2022-03-17 00:00:00<TAB>0.139000<TAB>…

A column ``ChN_…`` takes its metadata from the latest ``Channel: N`` block (by Effective
Date); earlier blocks are kept as JSON in ``Column.extra["sensor_history"]``. ``ChN_NotUsed``
columns are placeholders and are skipped. ``-1000`` and ``-9999`` are NRG's bad-data codes
and read as missing. Stamps mark the start of the statistics interval. SymphoniePRO stamps
are local time at the site's "Time Zone"; LOGR stamps are UTC (``Z``) and the site's time
zone is kept in ``Header.extra["site_time_zone"]``.

>>> utc_offset("UTC-5:00"), utc_offset("-5"), utc_offset("UTC+05:30"), utc_offset("UTC")
(-300, -300, 330, 0)
>>> split_name("Ch15_Vane_10.00m_SSE_GustDir_Deg"), split_name("Ch3_Avg_deg_C")
((15, 'GustDir', 'Deg'), (3, 'Avg', 'deg_C'))
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from datetime import datetime

from core.formats import Column, Header
from core.formats.delimited import MISSING, Layout, TableReader
from core.formats.generic import has_utc_suffix, read_head_lines, suffix_statistic, unique_names

log = logging.getLogger(__name__)

HEADER_LIMIT = 20_000  # lines searched for the "Data" line
BAD_VALUES = ("-1000", "-9999")
NRG_MISSING = MISSING + [c + ("." + "0" * d if d else "") for c in BAD_VALUES for d in range(7)]
HISTORIES = {"Logger History": "Date", "iPack History": "Date", "Sensor History": "Channel"}
_STATS = {"avg": "avg", "sd": "sd", "min": "min", "max": "max", "gust": "gust", "gustdir": "gust",
          "sum": "sum", "total": "sum", "count": "count", "notused": "notused"}
_CHANNEL = re.compile(r"^Ch(\d+)_(.*)$")
_OFFSET = re.compile(r"^(?:UTC|GMT)?\s*([+-]?)\s*(\d{1,2})(?::(\d\d)|\.(\d+))?$", re.I)
#: measurement type from the words of a channel's Type, Measurand and Description
_KINDS = [
    ("vertical_wind_speed", r"vertical"),
    ("wind_direction", r"\bvane\b|wind dir|direction"),
    ("wind_speed", r"anem|wind speed|\b(s1|40c|40h)\b"),
    ("air_temperature", r"\btemp|\bt60\b|\b110s\b"),
    ("relative_humidity", r"humid|\brh\d*x?\b"),
    ("air_pressure", r"pressure|\bbaro|\bbp\d\d\b"),
    ("precipitation", r"rain|precip|tbrg"),
    ("solar_radiation", r"irradiance|pyra|\bghi\b|solar"),
    ("battery_voltage", r"batt"),
]
_USED = {"Channel", "Effective Date", "Description", "Serial Number", "Height", "Bearing",
         "Scale Factor", "Offset", "Units"}


def sniff_symphoniepro(head: bytes) -> bool:
    """True when ``head`` looks like a SymphoniePRO text export."""
    first = _first_line(head)
    return first.startswith((b"NRG Export Service", b"SymphoniePRO")) or (
        b"Export version:" in head and b"Site Number:" in head
    )


def sniff_logr(head: bytes) -> bool:
    """True when ``head`` looks like an NRG LOGR data file."""
    first = _first_line(head)
    return first.startswith(b"NRG Systems Data Logger") or (
        b"Model Number:\t" in head and b"File Created On" in head and b"Sensor History" in head
    )


def sniff(head: bytes) -> bool:
    """True for either NRG format."""
    return sniff_symphoniepro(head) or sniff_logr(head)


def _first_line(head: bytes) -> bytes:
    return re.split(rb"[\r\n]", head.lstrip(b"\xef\xbb\xbf").lstrip(), maxsplit=1)[0].strip()


def utc_offset(text: str) -> int | None:
    """Minutes east of UTC from an NRG "Time Zone" value; ``None`` if unreadable."""
    t = text.strip()
    if t.upper() in ("UTC", "GMT", "Z"):
        return 0
    m = _OFFSET.match(t)
    if not m:
        return None
    minutes = int(m[2]) * 60 + (int(m[3]) if m[3] else round(float("0." + m[4]) * 60) if m[4] else 0)
    if m[3] and int(m[3]) >= 60 or minutes > 14 * 60:
        return None
    return -minutes if m[1] == "-" else minutes


def split_name(name: str) -> tuple[int, str, str] | None:
    """Channel number, statistic word and unit of an NRG column name (``None`` if it is
    not ``ChN_…``); the statistic word is ``""`` when the name has none."""
    m = _CHANNEL.match(name)
    if not m:
        return None
    tokens = m[2].split("_")
    for i, tok in enumerate(tokens):
        if tok.lower() in _STATS:
            if tok.lower() == "gust" and i + 1 < len(tokens) and tokens[i + 1].lower() == "dir":
                return int(m[1]), "GustDir", "_".join(tokens[i + 2:])
            return int(m[1]), tok, "_".join(tokens[i + 1:])
    return int(m[1]), "", ""


def measurement_type(entry: dict[str, str]) -> str | None:
    """What a Sensor History entry measures, from its Type, Measurand and Description.

    >>> measurement_type({"Type": "Analog", "Description": "NRG T60 Temp"})
    'air_temperature'
    >>> measurement_type({"Measurand": "Wind Direction Fast"}), measurement_type({"Description": "PV panel"})
    ('wind_direction', None)
    """
    text = " ".join(entry.get(k, "") for k in ("Type", "Measurand", "Description")).lower()
    for kind, pattern in _KINDS:
        if re.search(pattern, text):
            return kind
    return None


@dataclass
class _Entry:
    line: int
    values: dict[str, str] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)


@dataclass
class _Parsed:
    info: _Entry  # keys outside the history sections (first occurrence wins)
    history: dict[str, list[_Entry]]
    data_line: int  # 1-based line of "Data"; the column names follow


class _NrgReader(TableReader):
    """Header parsing shared by both NRG formats."""

    def read_header(self) -> Header:
        self._warnings: dict[tuple[str, int | None], None] = {}  # (reason, line), in order, once each
        lines, encoding = read_head_lines(self, None, HEADER_LIMIT, until=b"Data", after=2)
        if not any(ln.strip() for ln in lines):
            raise self.error("the file is empty")
        p = self._parse(lines)
        if len(lines) <= p.data_line or not lines[p.data_line].strip():
            raise self.error("the column names line after 'Data' is missing", p.data_line + 1)
        names_line = p.data_line + 1
        names, blank = unique_names(self, [n.strip() for n in lines[p.data_line].split("\t")], names_line)
        times = [n for n in names if n.lower() in ("timestamp", "stats_timestamp")]
        if not times:
            raise self.error("no Timestamp column after the 'Data' line", names_line)
        channels: dict[int, list[_Entry]] = {}
        for entry in p.history.get("Sensor History", []):
            ch = self._number(entry, "Channel")
            if ch is None or ch != int(ch):
                self.warn("a Sensor History block has no channel number; it is ignored", entry.line)
                continue
            channels.setdefault(int(ch), []).append(entry)
        columns, unused = [], []
        for name in names:
            if name in blank or name == times[0]:
                continue
            col = self._column(name, channels)
            if col is None:
                unused.append(name)
            else:
                columns.append(col)
        self.layout = Layout(fields=names, skip_lines=names_line, time_fields=times[:1],
                             delimiter="\t", missing=NRG_MISSING, encoding=encoding)
        first = lines[names_line].split("\t")[0] if len(lines) > names_line else ""
        header = Header(format=self.format, columns=columns, logger_oem="NRG Systems", timestamp_is_end=False)
        if unused:
            header.extra["ignored_columns"] = ", ".join(unused)
        self._fill(header, p, has_utc_suffix(first))
        for key in ("Latitude", "Longitude", "Elevation"):
            value = self._number(p.info, key)
            limit = {"Latitude": 90, "Longitude": 180}.get(key)
            if value is not None and limit and abs(value) > limit:
                self.warn(f"{key} {value:g} is out of range", p.info.lines[key])
                value = None
            setattr(header, {"Elevation": "elevation_m"}.get(key, key.lower()), value)
        for reason, line in self._warnings:
            header.warn(reason, line)
        return header

    def warn(self, reason: str, line: int | None) -> None:
        """A header field that cannot be read: a warning on the file, not a refusal."""
        self._warnings[(reason, line)] = None

    def _fill(self, header: Header, p: _Parsed, utc_stamps: bool) -> None:  # pragma: no cover
        raise NotImplementedError

    def _parse(self, lines: list[str]) -> _Parsed:
        info = _Entry(line=1)
        history: dict[str, list[_Entry]] = {}
        section = ""
        for lineno, raw in enumerate(lines, start=1):
            text = raw.strip()
            if text == "Data":
                return _Parsed(info, history, lineno)
            if not text:
                continue
            if "\t" in raw:
                key, value = raw.split("\t", 1)
            elif ":" in text:
                key, _, value = text.partition(":")
            else:
                section = text
                continue
            key, value = key.strip().rstrip(":").strip(), value.strip()
            if section in HISTORIES:
                entries = history.setdefault(section, [])
                if key == HISTORIES[section] or not entries:
                    entries.append(_Entry(line=lineno))
                target = entries[-1]
            else:
                target = info
            if key not in target.values:
                target.values[key], target.lines[key] = value, lineno
        raise self.error("the header is incomplete: no 'Data' line before the end of the file", len(lines))

    def _number(self, entry: _Entry, key: str) -> float | None:
        text = entry.values.get(key, "").strip()
        if not text:
            return None
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            self.warn(f"{key} {text[:40]!r} is not a number", entry.lines[key])
            return None
        return value

    def _date(self, entry: _Entry, key: str) -> datetime | None:
        text = entry.values.get(key, "").strip()
        if not text:
            return None
        try:  # two spaces between date and time, as some exports write it, are one
            return datetime.fromisoformat(" ".join(text.replace("Z", "+00:00").split())).replace(tzinfo=None)
        except ValueError:
            self.warn(f"{key} {text[:40]!r} is not a date; this entry is taken as the oldest", entry.lines[key])
            return None

    def latest(self, entries: list[_Entry], key: str) -> tuple[_Entry | None, list[_Entry]]:
        """The entry with the latest date under ``key`` (file order breaks ties), and the others."""
        if not entries:
            return None, []
        order = sorted(range(len(entries)), key=lambda i: (self._date(entries[i], key) or datetime.min, i))
        return entries[order[-1]], [entries[i] for i in order[:-1]]

    def _column(self, name: str, channels: dict[int, list[_Entry]]) -> Column | None:
        parts = split_name(name)
        if parts is None:
            return Column(name=name, statistic=suffix_statistic(name))
        ch, stat, unit = parts
        if stat.lower() == "notused":
            return None
        col = Column(name=name, unit=unit, statistic=_STATS.get(stat.lower(), "unknown"))
        if stat == "GustDir":
            col.extra["nrg_statistic"] = "gust direction"
        entry, older = self.latest(channels.get(ch, []), "Effective Date")
        if entry is None:
            return col
        v = entry.values
        col.unit = v.get("Units") or unit
        col.height_m = self._number(entry, "Height")
        col.orientation_deg = self._number(entry, "Bearing")
        col.logger_slope = self._number(entry, "Scale Factor")
        col.logger_offset = self._number(entry, "Offset")
        serial = v.get("Serial Number", "")
        col.sensor = ", ".join(x for x in (v.get("Description", ""), serial and f"SN {serial}") if x)
        col.measurement_type = measurement_type(v)
        col.extra.update({k: x for k, x in v.items() if x and k not in _USED})
        if v.get("Effective Date"):
            col.extra["effective_date"] = v["Effective Date"]
        if older:
            col.extra["sensor_history"] = json.dumps([e.values for e in older], ensure_ascii=False)
        return col

    def offset_of(self, p: _Parsed, key: str = "Time Zone") -> int | None:
        text = p.info.values.get(key, "")
        if not text.strip():
            return None
        minutes = utc_offset(text)
        if minutes is None:
            self.warn(f"cannot read the time zone {text[:40]!r}; stamps are read with the logger's "
                      "configured UTC offset (UTC when none)", p.info.lines[key])
        return minutes


class SymphonieProReader(_NrgReader):
    """SymphoniePRO text export (NRG Export Service / SymphoniePRO Desktop)."""

    format = "nrg_symphoniepro"

    def _fill(self, header: Header, p: _Parsed, utc_stamps: bool) -> None:
        info = p.info.values
        logger, _ = self.latest(p.history.get("Logger History", []), "Date")
        ipack, _ = self.latest(p.history.get("iPack History", []), "Date")
        if logger is not None:
            header.logger_model = logger.values.get("Model", "")
            header.logger_serial = logger.values.get("Serial Number", "")
        header.station_name = info.get("Site Description") or info.get("Site Number", "")
        header.utc_offset_minutes = 0 if utc_stamps else self.offset_of(p)
        extra = {
            "site_number": info.get("Site Number", ""), "project": info.get("Project", ""),
            "location": info.get("Location", ""), "tower": info.get("Tower", ""),
            "time_zone": info.get("Time Zone", ""), "export_version": info.get("Export version", ""),
            "logger_firmware": logger.values.get("Firmware", "") if logger else "",
            "ipack_model": ipack.values.get("Model", "") if ipack else "",
            "ipack_serial": ipack.values.get("Serial Number", "") if ipack else "",
        }
        header.extra.update({k: v for k, v in extra.items() if v})


class LogrReader(_NrgReader):
    """NRG LOGR-series data file (``…_statistical.dat``)."""

    format = "nrg_logr"

    def _fill(self, header: Header, p: _Parsed, utc_stamps: bool) -> None:
        info = p.info.values
        header.logger_model = info.get("Model Number", "")
        header.logger_serial = info.get("Serial Number", "")
        header.station_name = info.get("Site", "")
        site = self.offset_of(p)
        header.utc_offset_minutes = 0 if utc_stamps else site
        minutes = self._number(p.info, "Statistical Interval (min)")
        if minutes is not None:
            header.interval_s = round(minutes * 60)
        extra = {
            "site_time_zone": info.get("Time Zone", ""), "project": info.get("Project", ""),
            "location": info.get("Location", ""), "file_created_utc": info.get("File Created On (UTC)", ""),
            "firmware": info.get("Created FW Version", ""), "file_content": info.get("File Content", ""),
        }
        header.extra.update({k: v for k, v in extra.items() if v})
