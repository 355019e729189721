"""NRG Symphonie, SymphoniePLUS and PLUS3 text exports (Symphonie Data Retriever, ``.rwd``
files read out as text).

Layout: a preamble, logger and site fields, one block per channel, then a table of
10-minute statistics, tab-delimited as Symphonie Data Retriever (SDR) writes it, or
comma-delimited as some Data Retriever versions do::

    SDR<TAB>Version 7.30                       <- or "Read by,DR Version 5.1.0"
    -----Logger Information-----
    Model #<TAB>4280                           <- also "Logger model", "Logger serial"
    Serial #<TAB>01234
    -----Site Information-----
    Site #<TAB>0123                            <- Site Desc(ription), Project Code, Tower,
    Latitude<TAB>N 037° 40.450'                   (Site) Location, (Site) Elevation,
    Time offset (hrs)<TAB>-7                      Latitude, Longitude, Time offset
    -----Sensor Information-----
    Channel #<TAB>1                            <- or a "[Channel01]" line
    Type<TAB>1                                 <- 1 anemometer, 3 vane, 4 analog, 0 none
    Description<TAB>NRG #40C Anem, m/s            ("Sensor Type" in some versions)
    Details<TAB>270 deg T                      <- the boom's bearing
    Serial Number<TAB>SN:179500012345
    Height<TAB>60   m                          <- or "187ft"
    Scale Factor<TAB>0.758                     <- the logger's programmed slope and offset
    Offset<TAB>0.35
    Units<TAB>m/s
    Date & Time Stamp<TAB>CH1Avg<TAB>CH1SD<TAB>CH1Max<TAB>CH1Min …   <- or "Time Stamp"
    07/16/2011 13:00:00<TAB>7.3<TAB>0.8<TAB>8.9<TAB>5.7 …

A column ``CHnAvg/SD/Max/Min`` takes its metadata from channel *n*'s block: measurement
type (from the type code, description and units), height, boom bearing, sensor and serial,
and the scale factor and offset as the logger's slope and offset. Columns of a channel with
no sensor (type 0, "No Sensor") are skipped. Stamps are local time at the site's time
offset and mark the start of the interval, as on every NRG logger; US month-first dates are
preferred when a date reads both ways. A field that cannot be read becomes a warning.

>>> coordinate("N 037° 40.450'"), coordinate("W 104 48.067'"), coordinate("374027N"), coordinate("-73.2")
(37.674167, -104.801117, 37.674167, -73.2)
>>> length("60   m"), length("187ft"), length("------"), length("m"), length("0")
((60.0, 'm'), (56.998, 'ft'), None, None, None)
"""

from __future__ import annotations

import csv
import logging
import re

import numpy as np
import pandas as pd

from core.formats import Column, Header
from core.formats.delimited import MISSING, Layout, TableReader
from core.formats.generic import read_head_lines, unique_names
from core.formats.nrg import measurement_type

log = logging.getLogger(__name__)

HEADER_LIMIT = 2_000  # lines searched for the data table's header
SAMPLE_ROWS = 50  # data rows read to choose the date layout
TIME_HEADS = ("date & time stamp", "time stamp", "timestamp", "date/time")
_CHANNEL_LINE = re.compile(r"^\[\s*channel\s*(\d+)\s*\]$", re.I)
_COLUMN = re.compile(r"^CH(\d+)(Avg|SD|StdDev|Max|Min|Gust)$", re.I)
_STATS = {"avg": "avg", "sd": "sd", "stddev": "sd", "max": "max", "min": "min", "gust": "gust"}
_TYPES = {"1": "anemometer", "2": "anemometer", "3": "wind vane"}  # 4: analog, told by description/units
_NO_SENSOR = re.compile(r"^no (sensor|scm)", re.I)
_LENGTH = re.compile(r"^([-+]?\d+(?:\.\d+)?)\s*(m|ft|feet)?\.?$", re.I)
_DEG_MIN = re.compile(r"^([NSEW])?\s*([-+]?\d{1,3})(?:[°?º\s]+(\d{1,2}(?:\.\d+)?)'?)?\s*([NSEW])?$", re.I)
_DMS = re.compile(r"^(\d{2,3})(\d\d)(\d\d)([NSEW])$", re.I)
_BEARING = re.compile(r"^(\d{1,3}(?:\.\d+)?)\s*deg", re.I)
#: Date layouts tried in order: month-first (NRG is American) before day-first.
TIME_FORMATS = (
    None, "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M", "%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M",
    "%m-%d-%Y %H:%M:%S", "%d-%m-%Y %H:%M:%S", "%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M",
    "%Y/%m/%d %A %H:%M:%S", "%d.%m.%Y %H:%M:%S",
)


def sniff(head: bytes) -> bool:
    """True when ``head`` looks like a classic Symphonie text export.

    >>> sniff(b"SDR\\tVersion 7\\r\\n-----Logger Information-----\\r\\nModel #\\t4280")
    True
    >>> sniff(b"Read by,DR Version 5.1.0\\nSite #,0456"), sniff(b"Timestamp,WS\\n")
    (True, False)
    """
    text = head.lstrip(b"\xef\xbb\xbf")
    return (b"-----Sensor Information-----" in text or b"-----Logger Information-----" in text
            or (re.search(rb"^\s*Read by[\t,]\s*DR Version", text, re.M) is not None)
            or (re.search(rb"^\[Channel\s*\d+\]", text, re.M | re.I) is not None and b"Site #" in text))


def coordinate(text: str) -> float | None:
    """Decimal degrees (6 places) from ``N 037° 40.450'``, ``374027N`` or ``-73.2``; ``None``
    if unreadable."""
    t = text.strip()
    m = _DMS.match(t)
    if m:
        deg = int(m[1]) + int(m[2]) / 60 + int(m[3]) / 3600
        hemisphere = m[4].upper()
    else:
        m = _DEG_MIN.match(t)
        if not m or (m[1] and m[4]):
            try:
                return float(t)
            except ValueError:
                return None
        deg = abs(float(m[2])) + (float(m[3]) / 60 if m[3] else 0.0)
        deg = -deg if m[2].startswith("-") else deg
        hemisphere = (m[1] or m[4] or "").upper()
    return round(-deg if hemisphere in ("S", "W") else deg, 6)


def length(text: str) -> tuple[float, str] | None:
    """(metres, unit written) from a height or elevation like ``60 m`` or ``187ft``; ``None``
    when it says nothing (blank, dashes, a lone unit, zero)."""
    t = text.strip()
    m = _LENGTH.match(t)
    if not m or float(m[1]) == 0:
        return None
    unit = (m[2] or "").lower()
    return round(float(m[1]) * (0.3048 if unit in ("ft", "feet") else 1.0), 3), "ft" if unit == "feet" else unit


def time_format(strings: pd.Series) -> str | None:
    """The first of :data:`TIME_FORMATS` that reads every stamp as increasing times.

    >>> time_format(pd.Series(["01/02/2012 00:00:00", "01/02/2012 00:10:00"]))   # January 2nd
    '%m/%d/%Y %H:%M:%S'
    >>> time_format(pd.Series(["2011/11/6 Sunday 00:00:00", "2011/11/6 Sunday 00:10:00"]))
    '%Y/%m/%d %A %H:%M:%S'
    """
    for fmt in TIME_FORMATS:
        parsed = pd.to_datetime(strings, format=fmt or "ISO8601", errors="coerce")
        if parsed.notna().all() and (len(parsed) < 2 or bool((np.diff(parsed.to_numpy()) > np.timedelta64(0)).all())):
            return fmt
    return None


def _split(line: str, delim: str) -> tuple[str, str] | None:
    """``(key, value)`` of a header line, ``None`` if it is not one."""
    for d in (("\t", delim) if delim != "\t" else ("\t",)):
        if d in line:
            key, value = line.split(d, 1)
            return key.strip(), value.strip().strip('"').strip()
    return None


class SymphonieReader(TableReader):
    format = "nrg_symphonie"

    def read_header(self) -> Header:
        lines, encoding = read_head_lines(self, None, HEADER_LIMIT + SAMPLE_ROWS)
        if not any(ln.strip() for ln in lines):
            raise self.error("the file is empty")
        head_at, delim = None, "\t"
        for i, line in enumerate(lines[:HEADER_LIMIT]):
            d = "\t" if "\t" in line else ","
            first = line.split(d, 1)[0].strip().strip('"').lower()
            if first in TIME_HEADS and re.search(r"CH\d+", line, re.I):
                head_at, delim = i, d
                break
        if head_at is None:
            raise self.error("no data table: no line starting with 'Date & Time Stamp' and CH1Avg…",
                             min(len(lines), HEADER_LIMIT))
        header = Header(format=self.format, columns=[], logger_oem="NRG Systems", timestamp_is_end=False)
        info, channels = self._fields(lines[:head_at], delim, header)
        names_line = head_at + 1
        names, blank = unique_names(self, next(csv.reader([lines[head_at]], delimiter=delim)), names_line)
        ignored = []
        for name in names[1:]:
            if name in blank:
                continue
            col = self._column(name, channels, header)
            if col is None:
                ignored.append(name)
            else:
                header.columns.append(col)
        if ignored:
            header.extra["ignored_columns"] = ", ".join(ignored)
        sample = pd.Series([next(csv.reader([ln], delimiter=delim), [""])[0].strip()
                            for ln in lines[names_line:names_line + SAMPLE_ROWS] if ln.strip()])
        self.layout = Layout(fields=names, skip_lines=names_line, time_fields=names[:1], delimiter=delim,
                             missing=MISSING + ["-----", "------", "---"], encoding=encoding,
                             time_format=time_format(sample) if len(sample) else None)
        self._site(info, header)
        return header

    def _fields(self, lines: list[str], delim: str, header: Header):
        """The site/logger fields ``{key: (value, line)}`` and the channel blocks ``{n: {...}}``."""
        info: dict[str, tuple[str, int]] = {}
        channels: dict[int, dict[str, tuple[str, int]]] = {}
        current: dict[str, tuple[str, int]] | None = None
        for lineno, raw in enumerate(lines, start=1):
            text = raw.strip()
            if not text:
                continue
            if text.startswith("---") and text.endswith("---"):
                current = None if "sensor" not in text.lower() else current
                continue
            m = _CHANNEL_LINE.match(text)
            kv = None if m else _split(raw, delim)
            if m or (kv and kv[0].lower().rstrip(":") in ("channel #", "channel")):
                number = m[1] if m else kv[1]
                if not number.strip().isdigit():
                    header.warn(f"channel number {number[:20]!r} is not a number; the block is ignored", lineno)
                    current = {}
                    continue
                current = channels.setdefault(int(number), {})
                continue
            if kv is None:
                continue
            key = kv[0].rstrip(":").strip()
            target = current if current is not None else info
            target.setdefault(key, (kv[1], lineno))
        return info, channels

    def _number(self, fields: dict, key: str, header: Header) -> float | None:
        value, line = fields.get(key, ("", 0))
        if not value:
            return None
        try:
            return float(value)
        except ValueError:
            header.warn(f"{key} {value[:40]!r} is not a number", line)
            return None

    def _column(self, name: str, channels: dict, header: Header) -> Column | None:
        m = _COLUMN.match(name.strip())
        if not m:
            return Column(name=name)
        block = channels.get(int(m[1]))
        col = Column(name=name, statistic=_STATS[m[2].lower()])
        if block is None:
            return col
        v = {k: value for k, (value, _) in block.items()}
        kind = v.get("Type") or v.get("Sensor Type") or ""
        description = v.get("Description", "")
        if kind.strip() == "0" or _NO_SENSOR.match(description):
            return None
        col.unit = v.get("Units", "")
        words = {"Type": _TYPES.get(kind.strip(), kind), "Description": description}
        from core.metadata import type_of_unit

        col.measurement_type = measurement_type(words) or type_of_unit(col.unit)
        height = v.get("Height", "")
        col.height_m = (length(height) or (None, ""))[0]
        if col.height_m is None and re.search(r"[1-9]", height):
            header.warn(f"Height {height[:40]!r} of channel {m[1]} is not a length", block["Height"][1])
        bearing = _BEARING.match(v.get("Details", ""))
        if bearing and float(bearing[1]) < 360:
            col.orientation_deg = float(bearing[1])
        col.logger_slope = self._number(block, "Scale Factor", header)
        col.logger_offset = self._number(block, "Offset", header)
        serial = re.sub(r"^SN:?\s*|^-+$", "", v.get("Serial Number", ""), flags=re.I).strip()
        col.sensor = ", ".join(x for x in (description, serial and f"SN {serial}") if x)
        col.extra.update({f"symphonie_{k.lower().replace(' ', '_')}": x for k, x in v.items()
                          if x and k in ("Type", "Sensor Type", "Details")})
        return col

    def _site(self, info: dict, header: Header) -> None:
        def get(*keys: str) -> tuple[str, int]:
            for k in keys:
                if info.get(k, ("", 0))[0]:
                    return info[k]
            return "", 0

        header.logger_model = get("Model #", "Logger model", "Logger Model")[0]
        header.logger_serial = get("Serial #", "Logger serial", "Logger Serial", "Logger SN")[0]
        site = get("Site #", "Site Number")[0]
        header.station_name = get("Site Desc", "Site Description")[0] or site
        for key, attr, limit in (("Latitude", "latitude", 90), ("Longitude", "longitude", 180)):
            value, line = get(key)
            if value:
                deg = coordinate(value)
                if deg is None or abs(deg) > limit:
                    header.warn(f"cannot read the {key.lower()} {value[:40]!r}", line)
                else:
                    setattr(header, attr, deg)
        value, line = get("Site Elevation", "Elevation")
        if value:
            got = length(value)
            if got and got[1]:
                header.elevation_m = got[0]
            elif got is None and re.search(r"[1-9]", value) and not re.match(r"^[-+]?\d+(\.\d+)?$", value):
                header.warn(f"cannot read the elevation {value[:40]!r}", line)
            header.extra["site_elevation"] = value  # a bare number: metres or feet, the file does not say
        value, line = get("Time offset (hrs)", "Time offset", "Time Offset")
        if value:
            try:
                hours = float(value)
                if abs(hours) > 14:
                    raise ValueError
                header.utc_offset_minutes = round(hours * 60)
            except ValueError:
                header.warn(f"cannot read the time offset {value[:40]!r}; stamps are read with the logger's "
                            "configured UTC offset (UTC when none)", line)
        extra = {"site_number": site, "project": get("Project Code")[0], "project_description":
                 get("Project Desc")[0], "location": get("Site Location", "Location")[0],
                 "tower": get("Tower")[0], "read_by": get("Read by", "SDR")[0],
                 "hardware_revision": get("Hardware Rev.")[0]}
        header.extra.update({k: v for k, v in extra.items() if v})
