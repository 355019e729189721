"""Campbell Scientific TOB1 (table-oriented binary) files.

Layout: five ASCII header lines (CSV, quoted, ending in CRLF), then fixed-size binary
records back to back::

    "TOB1","station","CR1000X","12342","CR1000X.Std.03","CPU:prog.CR1X","2438","Hourly"
    "SECONDS","NANOSECONDS","RECORD","WS_Avg","T_Smp"      <- field names
    "SECONDS","NANOSECONDS","RN","m/s","Deg C"             <- units
    "","","","Avg","Smp"                                   <- processing (statistic)
    "ULONG","ULONG","ULONG","FP2","IEEE4"                  <- data types
    <record 1><record 2>…                                   <- 4+4+4+2+4 = 18 bytes each

Numbers are little-endian except FP2 and the ``…B`` / ``UINT``/``INT`` types (big-endian).
FP2 is Campbell's 2-byte float: a sign bit, a 2-bit decimal exponent (value =
mantissa × 10^-e) and a 13-bit mantissa; ``0x1FFF``/``0x9FFF`` are ±INF and ``0x9FFE`` NaN.
The time of a record is ``SECONDS`` + ``NANOSECONDS`` since 1990-01-01 00:00:00 (logger
clock), or an 8-byte ``SecNano`` field holding both. Infinities and NaN read as missing;
BOOL fields as 0/1; ``ASCII(n)`` text fields are skipped and listed in
``Header.extra["ignored_text_columns"]``. There are no line numbers in the binary part:
:attr:`Batch.first_line` is the 1-based record number and errors name the record.

>>> fp2_to_float(np.array([0x0000, 0x65DC, 0xC4D2, 0x1F3F, 0x9FFE], dtype=np.uint16)).tolist()
[0.0, 1.5, -12.34, 7999.0, nan]
>>> sniff(b'"TOB1","st","CR1000"'), sniff(b'"TOA5","st"')
(True, False)
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from core.formats import BATCH_ROWS, Batch, Column, Header, Reader
from core.formats.toa5 import statistic_of

log = logging.getLogger(__name__)

HEADER_LINES = 5
MAX_HEADER_LINE = 1 << 20
EPOCH = np.datetime64("1990-01-01T00:00:00", "us")
#: TOB1 data type → numpy dtype of the stored bytes.
TYPES = {
    "IEEE4": "<f4", "IEEE4L": "<f4", "IEEE4B": ">f4", "IEEE8": "<f8", "IEEE8L": "<f8", "IEEE8B": ">f8",
    "FP2": ">u2", "USHORT": "<u2", "SHORT": "<i2", "UINT2": ">u2", "INT2": ">i2",
    "ULONG": "<u4", "LONG": "<i4", "UINT4": ">u4", "INT4": ">i4",
    "BOOL": "u1", "BOOL2": "<u2", "BOOL4": "<u4",
    "SECNANO": "<u4,<u4", "NSEC": ">u4,>u4",
}
_ASCII = re.compile(r"^ASCII\((\d{1,5})\)$", re.I)
_SKIP = {"RECORD", "SECONDS", "NANOSECONDS"}
_INTEGER = {"USHORT", "SHORT", "UINT2", "INT2", "ULONG", "LONG", "UINT4", "INT4"}
_SCALE = np.array([1.0, 10.0, 100.0, 1000.0])


def sniff(head: bytes) -> bool:
    """True when ``head`` (the first bytes of a file) looks like TOB1."""
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    return text.startswith((b'"TOB1"', b"TOB1,"))


def fp2_to_float(raw: np.ndarray) -> np.ndarray:
    """Decode Campbell FP2 values (as unsigned 16-bit integers) to float64."""
    raw = raw.astype(np.uint16)
    negative = (raw & 0x8000) != 0
    exponent = (raw >> 13) & 0x3
    mantissa = (raw & 0x1FFF).astype(np.float64)
    value = mantissa / _SCALE[exponent]
    value = np.where(negative, -value, value)
    special = exponent == 0
    value = np.where(special & (mantissa == 8191), np.where(negative, -np.inf, np.inf), value)
    return np.where(special & (mantissa == 8190), np.nan, value)


@dataclass
class _Field:
    name: str
    type: str  # upper-case TOB1 type name, "ASCII" for text
    dtype: np.dtype


class Tob1Reader(Reader):
    format = "tob1"

    def __init__(self, path, display_name=None) -> None:
        super().__init__(path, display_name)
        self._header: Header | None = None
        self._fields: list[_Field] = []
        self._dtype: np.dtype | None = None
        self._data_offset = 0
        self._time: list[str] = []

    @property
    def header(self) -> Header:
        if self._header is None:
            self._header = self._read_header()
        return self._header

    def _header_lines(self) -> list[list[str]]:
        rows: list[list[str]] = []
        with self.path.open("rb") as fh:
            for n in range(1, HEADER_LINES + 1):
                raw = fh.readline(MAX_HEADER_LINE)
                if not raw:
                    break
                if not raw.endswith(b"\n"):
                    raise self.error(f"the header is incomplete: line {n} does not end", n)
                try:
                    text = raw.decode("utf-8-sig" if n == 1 else "utf-8")
                    row = next(csv.reader([text.rstrip("\r\n")]), [])
                except UnicodeDecodeError as exc:
                    raise self.error(f"not a text header line (byte {exc.start} is not UTF-8)", n) from exc
                except csv.Error as exc:
                    raise self.error(f"malformed header line: {exc}", n) from exc
                rows.append(row)
            self._data_offset = fh.tell()
        return rows

    def _read_header(self) -> Header:
        lines = self._header_lines()
        if not lines:
            raise self.error("the file is empty")
        env = lines[0]
        while env and env[-1] == "":
            env = env[:-1]
        if not env or env[0] != "TOB1":
            first = env[0][:20] if env else ""
            raise self.error(f"not a TOB1 file: first field is {first!r}, expected 'TOB1'", 1)
        if len(env) != 8:
            raise self.error(f"the environment line has {len(env)} fields, expected 8", 1)
        if len(lines) < HEADER_LINES:
            n = len(lines)
            raise self.error(f"the header is incomplete: {n} of {HEADER_LINES} lines", n + 1)
        names, units, process, types = lines[1:]
        for i, other in ((3, units), (4, process), (5, types)):
            if len(other) != len(names):
                raise self.error(f"header line {i} has {len(other)} fields but line 2 has {len(names)}", i)
        if len(set(names)) != len(names):
            dup = sorted({x for x in names if names.count(x) > 1})
            raise self.error(f"duplicate field names: {', '.join(dup)}", 2)
        self._fields = [self._field(n, t) for n, t in zip(names, types)]
        self._dtype = np.dtype({
            "names": [f"f{i}" for i in range(len(names))],
            "formats": [f.dtype for f in self._fields],
        })
        upper = [n.upper() for n in names]
        secnano = [f.name for f in self._fields if f.type in ("SECNANO", "NSEC")]
        if "SECONDS" in upper:
            self._time = [names[upper.index("SECONDS")]]
            if "NANOSECONDS" in upper:
                self._time.append(names[upper.index("NANOSECONDS")])
            for t in self._time:
                if self._fields[names.index(t)].type not in _INTEGER:
                    raise self.error(f"the {t} field must have an integer type such as ULONG", 5)
        elif secnano:
            self._time = secnano[:1]
        else:
            raise self.error("no timestamp: expected SECONDS and NANOSECONDS fields or a SecNano field", 2)
        columns, text = [], []
        for f, unit, proc in zip(self._fields, units, process):
            if f.name.upper() in _SKIP or f.name in self._time:
                continue
            if f.type == "ASCII":
                text.append(f.name)
                continue
            if f.type in ("SECNANO", "NSEC"):
                text.append(f.name)  # another timestamp: not a number
                continue
            columns.append(Column(name=f.name, unit=unit.strip(), statistic=statistic_of(f.name, proc)))
        header = Header(
            format=self.format, columns=columns, station_name=env[1], logger_model=env[2],
            logger_serial=env[3], logger_oem="Campbell Scientific", table_name=env[7],
            timestamp_is_end=True,  # Campbell loggers stamp the end of the interval
            extra={"os_version": env[4], "program": env[5], "signature": env[6]},
        )
        if text:
            header.extra["ignored_text_columns"] = ", ".join(text)
        return header

    def _field(self, name: str, type_name: str) -> _Field:
        key = type_name.strip().upper()
        m = _ASCII.match(key)
        if m and int(m[1]) > 0:
            return _Field(name, "ASCII", np.dtype(f"S{int(m[1])}"))
        if key not in TYPES:
            raise self.error(f"unknown data type {type_name[:30]!r} of field {name!r}", 5)
        spec = TYPES[key]
        if "," in spec:  # SecNano / NSec: seconds then nanoseconds
            seconds, nanos = spec.split(",")
            return _Field(name, key, np.dtype([("s", seconds), ("n", nanos)]))
        dtype = np.dtype(spec)
        return _Field(name, key, dtype)

    # --- data ------------------------------------------------------------------------

    def batches(self, rows: int = BATCH_ROWS) -> Iterator[Batch]:
        header = self.header
        dtype = self._dtype
        assert dtype is not None
        size = self.path.stat().st_size - self._data_offset
        count, rest = divmod(size, dtype.itemsize)
        if rest:
            raise self.error(f"record {count + 1} is truncated: {rest} of {dtype.itemsize} bytes")
        if count == 0:
            raise self.error("the file has a header but no data records")
        index = {f.name: i for i, f in enumerate(self._fields)}
        wanted = [(index[c.name], self._fields[index[c.name]].type) for c in header.columns]
        first = 1
        last_time = None
        with self.path.open("rb") as fh:
            fh.seek(self._data_offset)
            while first <= count:
                n = min(rows, count - first + 1)
                buf = fh.read(n * dtype.itemsize)
                if len(buf) != n * dtype.itemsize:
                    at = first + len(buf) // dtype.itemsize
                    raise self.error(f"record {at} is truncated (the file shrank while reading)")
                records = np.frombuffer(buf, dtype=dtype)
                times = self._times(records, first)
                if last_time is not None and times[0] <= last_time:
                    raise self.error(f"record {first}: the time {times[0]} is not after the previous record")
                last_time = times[-1]
                values = np.empty((n, len(wanted)), dtype=np.float64)
                for j, (i, kind) in enumerate(wanted):
                    values[:, j] = _to_float(records[f"f{i}"], kind)
                values[~np.isfinite(values)] = np.nan
                yield Batch(times=times, values=values, first_line=first)
                first += n

    def _times(self, records: np.ndarray, first: int) -> np.ndarray:
        index = {f.name: i for i, f in enumerate(self._fields)}
        fields = [records[f"f{index[t]}"] for t in self._time]
        if len(fields) == 1 and fields[0].dtype.names:
            seconds, nanos = fields[0]["s"], fields[0]["n"]
        else:
            seconds = fields[0]
            nanos = fields[1] if len(fields) > 1 else np.zeros(len(records), dtype=np.int64)
        seconds = seconds.astype(np.int64)
        nanos = nanos.astype(np.int64)
        bad = np.flatnonzero((seconds < 0) | (nanos < 0) | (nanos >= 1_000_000_000))
        if len(bad):
            i = int(bad[0])
            raise self.error(f"record {first + i}: invalid time ({seconds[i]} s, {nanos[i]} ns)")
        times = EPOCH + (seconds * 1_000_000 + nanos // 1000).astype("timedelta64[us]")
        steps = np.diff(times)
        if len(steps) and (steps <= np.timedelta64(0)).any():
            i = int(np.flatnonzero(steps <= np.timedelta64(0))[0]) + 1
            what = "repeats" if steps[i - 1] == np.timedelta64(0) else "goes back in time after"
            raise self.error(f"record {first + i}: the time {times[i]} {what} the previous record")
        return times


def _to_float(raw: np.ndarray, kind: str) -> np.ndarray:
    if kind == "FP2":
        return fp2_to_float(raw)
    if kind.startswith("BOOL"):
        return (raw != 0).astype(np.float64)
    with np.errstate(invalid="ignore"):  # a signalling NaN in an IEEE4 field is just missing
        return raw.astype(np.float64)
