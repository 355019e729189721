"""Windographer text exports.

Layout: free metadata lines, blank lines, then a header row and the data, separated by
tabs (or commas)::

    Created 10-05-2019 14:36 by Windographer 4.1.14
    Latitude = N 0.000000
    Longitude = E 0.000000
    Elevation = 0 m
    Calm threshold = 0 m/s
    Included flags: <Unflagged data>
    Time stamps indicate the beginning of the time step.      <- or "the end"
    Date/Time<TAB>Spd80mN<TAB>Spd80mNStd<TAB>Dir78mS …         <- or "Speed 80 m [m/s]"
    09/01/2016 15:30:00+00:00<TAB>8.37<TAB>1.24<TAB>114.2 …

The statistic comes from the name's suffix (``Std`` → sd, ``Max``, ``Min``, ``Tot`` →
sum, otherwise avg); a unit in brackets or parentheses goes to ``Column.unit`` and out of
the name. Stamps with a ``+hh:mm`` suffix are read as UTC. The data rows are read by
:class:`core.formats.delimited.TableReader`.

>>> coordinate("N 44.5"), coordinate("W 73.25"), coordinate("-12.5"), coordinate("north")
(44.5, -73.25, -12.5, None)
"""

from __future__ import annotations

import csv
import logging
import re

from core.formats import Column, Header
from core.formats.delimited import Layout, TableReader
from core.formats.generic import (
    has_utc_suffix, read_head_lines, split_unit, suffix_statistic, unique_names,
)

log = logging.getLogger(__name__)

HEADER_LIMIT = 500  # lines searched for the header row
_COORD = re.compile(r"^([NSEW])?\s*([-+]?\d+(?:\.\d+)?)\s*°?\s*([NSEW])?$", re.I)
_LENGTH = re.compile(r"^([-+]?\d+(?:\.\d+)?)\s*(m|ft)?$", re.I)
_TIME_STEP = re.compile(r"time stamps indicate the (beginning|start|end) of the time step", re.I)
_TIME_HEADS = ("Date/Time", "Date & Time Stamp", "Timestamp", "Date Time", "DateTime")


def sniff(head: bytes) -> bool:
    """True when ``head`` looks like a Windographer export."""
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    first = re.split(rb"[\r\n]", text, maxsplit=1)[0]
    return b"Windographer" in first or (
        _TIME_STEP.search(text.decode("latin-1")) is not None and b"Latitude =" in text
    )


def coordinate(text: str) -> float | None:
    """Decimal degrees from ``N 44.5`` / ``W 73.25`` / ``-12.5``; ``None`` if unreadable."""
    m = _COORD.match(text.strip())
    if not m or (m[1] and m[3]):
        return None
    hemisphere = (m[1] or m[3] or "").upper()
    value = float(m[2])
    return -value if hemisphere in ("S", "W") else value


class WindographerReader(TableReader):
    format = "windographer"

    def read_header(self) -> Header:
        lines, encoding = read_head_lines(self, None, HEADER_LIMIT + 2)
        if not any(ln.strip() for ln in lines):
            raise self.error("the file is empty")
        meta: dict[str, tuple[str, int]] = {}
        is_end: bool | None = None
        head_at = None
        for i, line in enumerate(lines[:HEADER_LIMIT]):
            first = re.split(r"[\t,;]", line, maxsplit=1)[0].strip().strip('"')
            if first.startswith(_TIME_HEADS) and re.search(r"[\t,;]", line):
                head_at = i
                break
            m = _TIME_STEP.search(line)
            if m:
                is_end = m[1].lower() == "end"
            elif " = " in line or ": " in line:
                key, _, value = line.partition(" = " if " = " in line else ": ")
                meta.setdefault(key.strip().lower(), (value.strip(), i + 1))
        if head_at is None:
            raise self.error("no header row starting with Date/Time", min(len(lines), HEADER_LIMIT))
        line_no = head_at + 1
        header_line = lines[head_at]
        delim = "\t" if "\t" in header_line else ("," if "," in header_line else ";")
        raw_names = next(csv.reader([header_line], delimiter=delim))
        names, units = [], {}
        for j, raw in enumerate(raw_names):
            base, unit = split_unit(raw) if j else (raw, "")
            names.append(base)
            units[base] = unit
        if len(set(names)) != len(names):
            names = raw_names  # units removed, names collide: keep them as written
            units = {n: "" for n in names}
        names, blank = unique_names(self, names, line_no)
        times = names[:1]
        columns = [
            Column(name=n, unit=units.get(n, ""), statistic=suffix_statistic(n, default="avg"))
            for n in names[1:] if n not in blank
        ]
        self.layout = Layout(fields=names, skip_lines=line_no, time_fields=times,
                             delimiter=delim, encoding=encoding)
        header = Header(format=self.format, columns=columns, timestamp_is_end=is_end)
        first_row = lines[line_no].split(delim)[0].strip('" ') if len(lines) > line_no else ""
        if has_utc_suffix(first_row):
            header.utc_offset_minutes = 0  # the reader converts "+hh:mm" stamps to UTC
        for key, attr in (("latitude", "latitude"), ("longitude", "longitude")):
            if key in meta:
                value, at = meta[key]
                deg = coordinate(value)
                if deg is None or abs(deg) > (90 if key == "latitude" else 180):
                    header.warn(f"cannot read the {key} {value[:40]!r}", at)
                    continue
                setattr(header, attr, deg)
        if "elevation" in meta:
            value, at = meta["elevation"]
            m = _LENGTH.match(value)
            if not m:
                header.warn(f"cannot read the elevation {value[:40]!r}", at)
            else:
                header.elevation_m = float(m[1]) * (0.3048 if (m[2] or "").lower() == "ft" else 1.0)
        if lines and "Windographer" in lines[0]:
            header.extra["created_by"] = lines[0].strip()
        for key in ("calm threshold", "included flags", "excluded flags"):
            if key in meta:
                header.extra[key.replace(" ", "_")] = meta[key][0]
        return header
