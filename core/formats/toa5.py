"""Campbell Scientific TOA5 (ASCII table data) files.

Layout: four header lines, then one row per record::

    "TOA5","station","CR1000X","12342","CR1000X.Std.03","CPU:prog.CR1X","2438","Hourly"
    "TIMESTAMP","RECORD","BattV","AirT_C(42)"      <- field names
    "TS","RN","Volts","Deg C"                      <- units
    "","","Avg","Smp"                              <- processing (statistic)
    "2021-06-18 21:00:00",10,13.23,26.29

``NAN`` marks a missing value. The data rows are read by
:class:`core.formats.delimited.TableReader`.

Older LoggerNet versions wrote TOACI1: an environment line ``"TOACI1","station","table"``
and the field names, without units or processing lines (read by :class:`Toaci1Reader`).

>>> sniff(b'"TOA5","x","CR1000X"')
True
>>> statistic_of("WS_80m_Avg", "Avg"), statistic_of("WS_80m_Std", ""), statistic_of("T", "Smp")
('avg', 'sd', 'sample')
"""

from __future__ import annotations

import csv
import logging
import re

from core.formats import Column, Header
from core.formats.delimited import Layout, TableReader

log = logging.getLogger(__name__)

HEADER_LINES = 4
TIME_NAMES = {"TIMESTAMP", "TMSTAMP", "TIMESTAMPS"}
RECORD_NAMES = {"RECORD", "RECNBR"}

_PROCESS = {
    "avg": "avg", "std": "sd", "sd": "sd", "min": "min", "max": "max", "smp": "sample",
    "tot": "sum", "totalize": "sum", "wvc": "avg", "med": "avg",
}
_SUFFIX = re.compile(r"(?:_|(?<=[a-z0-9]))(avg|ave|mean|std|stdev|sd|min|max|gust|tot)$", re.I)


def sniff(head: bytes) -> bool:
    """True when ``head`` (the first bytes of a file) looks like TOA5."""
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    return text.startswith((b'"TOA5"', b"TOA5,"))


def sniff_toaci1(head: bytes) -> bool:
    """True when ``head`` looks like TOACI1.

    >>> sniff_toaci1(b'"TOACI1","Hill","Ten_Min"'), sniff_toaci1(b'"TOA5","x"')
    (True, False)
    """
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    return text.startswith((b'"TOACI1"', b"TOACI1,"))


def statistic_of(name: str, process: str) -> str:
    """The statistic of a column, from its processing field or else its name suffix."""
    key = process.strip().lower()
    if key in _PROCESS:
        return _PROCESS[key]
    m = _SUFFIX.search(name)
    if m:
        return {"ave": "avg", "mean": "avg", "stdev": "sd", "std": "sd", "tot": "sum"}.get(
            m[1].lower(), m[1].lower()
        )
    return "unknown"


class Toa5Reader(TableReader):
    format = "toa5"
    header_lines = HEADER_LINES

    def _header_lines(self) -> list[list[str]]:
        lines: list[list[str]] = []
        try:
            with self.path.open(encoding="utf-8-sig", newline="") as fh:
                reader = csv.reader(fh)
                for _ in range(self.header_lines):
                    row = next(reader, None)
                    if row is None:
                        break
                    lines.append(row)
        except UnicodeDecodeError as exc:
            raise self.error(f"not UTF-8 text (byte {exc.start} of the header)", 1) from exc
        except csv.Error as exc:
            raise self.error(f"malformed header: {exc}", len(lines) + 1) from exc
        return lines

    def _environment(self, tag: str, fields: int | None = None) -> tuple[list[list[str]], list[str]]:
        """The header lines and the environment line (the first), checked: there is one,
        it starts with ``tag``, it has ``fields`` fields (when given), and all
        :attr:`header_lines` lines follow."""
        lines = self._header_lines()
        if not lines or not any(f.strip() for f in lines[0]):
            raise self.error("the file is empty" if not lines else "the first line is blank", 1)
        env = _strip_trailing_empty(lines[0])
        if env[0] != tag:
            raise self.error(f"not a {tag} file: first field is {env[0][:20]!r}, expected {tag!r}", 1)
        if fields is not None and len(env) != fields:
            raise self.error(f"the environment line has {len(env)} fields, expected {fields}", 1)
        if len(lines) < self.header_lines:
            raise self.error(
                f"the header is incomplete: {len(lines)} of {self.header_lines} lines", len(lines) + 1
            )
        return lines, env

    def read_header(self) -> Header:
        lines, env = self._environment("TOA5", fields=8)
        names, units, process = lines[1], lines[2], lines[3]
        n = len(names)
        for i, other in ((3, units), (4, process)):
            if len(other) != n:
                raise self.error(f"header line {i} has {len(other)} fields but line 2 has {n}", i)
        _check_names(self, names)
        self.layout = Layout(fields=names, skip_lines=HEADER_LINES, time_fields=[names[0]])
        return Header(
            format=self.format,
            columns=_columns(names, units, process),
            station_name=env[1],
            logger_model=env[2],
            logger_serial=env[3],
            table_name=env[7], timestamp_is_end=True,  # Campbell loggers stamp the end of the interval
            extra={"os_version": env[4], "program": env[5], "signature": env[6]},
        )


class Toaci1Reader(Toa5Reader):
    """TOACI1: the environment line has the station and table names only, and the field
    names follow; no units, no processing (statistics come from the name suffixes)."""

    format = "toaci1"
    header_lines = 2

    def read_header(self) -> Header:
        lines, env = self._environment("TOACI1")
        names = lines[1]
        _check_names(self, names)
        self.layout = Layout(fields=names, skip_lines=self.header_lines, time_fields=[names[0]])
        return Header(
            format=self.format, columns=_columns(names, [""] * len(names), [""] * len(names)),
            station_name=env[1] if len(env) > 1 else "", table_name=env[2] if len(env) > 2 else "",
            timestamp_is_end=True,
        )


def _check_names(reader: TableReader, names: list[str]) -> None:
    """Field names (line 2) must be unique and start with the timestamp."""
    if len(set(names)) != len(names):
        dup = sorted({x for x in names if names.count(x) > 1})
        raise reader.error(f"duplicate column names: {', '.join(dup)}", 2)
    if names[0].strip().upper() not in TIME_NAMES:
        raise reader.error(f"the first column is {names[0]!r}, expected TIMESTAMP", 2)


def _columns(names: list[str], units: list[str], process: list[str]) -> list[Column]:
    """The data columns: every field after the timestamp but the record number."""
    return [Column(name=name, unit=unit.strip(), statistic=statistic_of(name, proc))
            for name, unit, proc in zip(names[1:], units[1:], process[1:])
            if name.strip().upper() not in RECORD_NAMES]


def _strip_trailing_empty(fields: list[str]) -> list[str]:
    out = list(fields)
    while out and out[-1] == "":
        out.pop()
    return out or [""]
