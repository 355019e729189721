"""Generic delimited text: CSV, TSV or semicolon files with one header row.

Layout (everything but the header row is optional)::

    Exported by some tool                      <- free text lines before the header
    Timestamp,Spd80mN,Spd80mNStd,T2m [degC]    <- header row (``header_row``, 0-based)
    ,m/s,m/s,                                  <- units row (``units_row``), if any
    2016-01-09 15:30:00,8.37,1.24,0.711        <- data rows

How to read such a file is a :class:`GenericMapping` (saved per logger as JSON). Without
one the file must have, within its first 30 non-blank lines, a header with a timestamp
column of a usual name (``Timestamp``, ``Date/Time``, ``DateTime``, ``Time``, or ``Date``
and ``Time``), and the header's number of fields on nearly every line after it in the
first 4 KiB; the free text above the header, a units row below it, the delimiter and a
decimal comma are detected. Units may be written in the header as ``Name [unit]`` or
``Name (unit)``. The data rows are read by :class:`core.formats.delimited.TableReader`.

This module also holds the header helpers that the NRG and Windographer readers share.

>>> sniff(b"Timestamp,WS_Avg\\n2025-01-01 00:10:00,5.5\\n2025-01-01 00:20:00,5.1\\n")
True
>>> sniff(b"just some text\\nwithout a table\\n")
False
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from core import limits
from core.errors import ConfigError, InvalidValue
from core.formats import Batch, Column, Header, Reader
from core.formats.delimited import MISSING, Layout, TableReader

log = logging.getLogger(__name__)

#: Header names of a column holding date and time (compared lower-case, units removed).
TIME_NAMES = (
    "timestamp", "timestamps", "time stamp", "tmstamp", "date/time", "datetime", "date_time",
    "date time", "date-time", "date & time", "date & time stamp", "date and time",
    # German, Spanish, French exports
    "zeitstempel", "datum/zeit", "datum zeit", "fecha/hora", "fecha hora", "date/heure", "horodatage",
)
#: (date, time) column name pairs (lower-case), and a lone time or date column.
DATE_TIME_PAIRS = (("date", "time"), ("datum", "zeit"), ("fecha", "hora"), ("date", "heure"))
LONE_TIME_NAMES = ("time", "date", "zeit", "datum")
DELIMITERS = ",\t;|"
#: Longest header line read (a guard against binary files without line breaks).
MAX_LINE = 1 << 20
_UNIT = re.compile(r"^(.*?)\s*(?:\[([^\[\]]*)\]|\(([^()]*)\))$")
_STAT_SUFFIX = re.compile(r"(StdDev|Std|SD|Max|Min|Gust|Tot|Total|Sum|Avg|Mean)$")
_STAT_WORD = re.compile(r"[ _.\-](stddev|std|sd|max|min|gust|tot|total|sum|avg|mean)$", re.I)
_STATS = {"stddev": "sd", "std": "sd", "sd": "sd", "max": "max", "min": "min", "gust": "gust",
          "tot": "sum", "total": "sum", "sum": "sum", "avg": "avg", "mean": "avg"}
_UTC_SUFFIX = re.compile(r"(?:[+-]\d\d:?\d\d|Z)$")
_DATE = re.compile(r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}")
_DECIMAL_COMMA = re.compile(r"^\s*-?\d+,\d+\s*$")
_NUMBER = re.compile(r"^\s*[-+]?(\d+([.,]\d*)?|[.,]\d+)([eE][-+]?\d+)?\s*$|^\s*(nan|NAN|NaN|inf|-inf|INF|-INF)\s*$")


# --- helpers shared by the text formats ------------------------------------------------


def split_unit(name: str) -> tuple[str, str]:
    """A header name and the unit written after it in brackets or parentheses.

    >>> split_unit("Speed 80 m [m/s]"), split_unit("T2m (°C)"), split_unit("Spd80mN")
    (('Speed 80 m', 'm/s'), ('T2m', '°C'), ('Spd80mN', ''))
    """
    m = _UNIT.match(name.strip())
    if not m or not m[1]:
        return name.strip(), ""
    return m[1], (m[2] if m[2] is not None else m[3]).strip()


def suffix_statistic(name: str, default: str = "unknown") -> str:
    """The statistic named by a column's suffix (``Spd80mNStd``, ``WS_max``), else ``default``.

    >>> [suffix_statistic(n, "avg") for n in ("Spd80mNStd", "Dir78mS", "PrcpTot", "ws_max")]
    ['sd', 'avg', 'sum', 'max']
    """
    m = _STAT_SUFFIX.search(name) or _STAT_WORD.search(name)
    return _STATS[m[1].lower()] if m else default


def time_fields(names: list[str]) -> list[str] | None:
    """The timestamp column, or the date and time columns, among header ``names``.

    >>> time_fields(["Site", "Date/Time", "WS"]), time_fields(["Date", "Time", "WS"])
    (['Date/Time'], ['Date', 'Time'])
    >>> time_fields(["Datum", "Zeit", "WS"])
    ['Datum', 'Zeit']
    >>> time_fields(["WS", "WD"]) is None
    True
    """
    keys = {split_unit(n)[0].strip().lower(): n for n in reversed(names)}
    for key in TIME_NAMES:
        if key in keys:
            return [keys[key]]
    for date, time in DATE_TIME_PAIRS:
        if date in keys and time in keys:
            return [keys[date], keys[time]]
    for key in LONE_TIME_NAMES:
        if key in keys:
            return [keys[key]]
    return None


def has_utc_suffix(stamp: str) -> bool:
    """True when a timestamp ends in ``Z`` or ``+hh:mm`` (the reader converts it to UTC).

    >>> has_utc_suffix("2024-01-11T13:39:00Z"), has_utc_suffix("2016-01-09 15:30:00")
    (True, False)
    """
    return bool(_UTC_SUFFIX.search(stamp.strip()))


def unique_names(reader: Reader, names: list[str], line: int) -> tuple[list[str], set[str]]:
    """``names`` with blank ones replaced by placeholders (returned as the second item).

    Duplicate names are a :class:`ParseError` at ``line``.
    """
    out, blank = [], set()
    for i, name in enumerate(names):
        if name.strip():
            out.append(name)
        else:
            out.append(f"_blank_{i + 1}")
            blank.add(out[-1])
    if len(set(out)) != len(out):
        dup = sorted({x for x in out if out.count(x) > 1})
        raise reader.error(f"duplicate column names: {', '.join(dup)}", line)
    return out, blank


_EOL = re.compile(rb"\r\n?|\n")


def iter_lines(fh, limit: int = MAX_LINE, chunk: int = 1 << 16) -> Iterator[bytes]:
    """The lines of a binary file, each with its line end: ``\\n``, ``\\r\\n`` or a bare
    ``\\r`` (old Mac line ends, as older Windographer and NRG software wrote them), mixed
    as they come. Reads ``chunk`` bytes at a time; a line longer than ``limit`` bytes is
    given as its first ``limit`` bytes, without a line end, and ends the iteration.

    >>> import io
    >>> list(iter_lines(io.BytesIO(b"a,b\\r1,2\\r\\n3,4\\n5,6"), chunk=3))
    [b'a,b\\r', b'1,2\\r\\n', b'3,4\\n', b'5,6']
    """
    buf, pos = b"", 0
    while True:
        m = _EOL.search(buf, pos)
        # a lone CR at the end of what was read may be the first half of a CRLF: read on
        if m is not None and m.start() - pos <= limit and not (m.end() == len(buf) and m[0] == b"\r"):
            yield buf[pos:m.end()]
            pos = m.end()
            continue
        if (m.start() if m is not None else len(buf)) - pos > limit:
            yield buf[pos:pos + limit]
            return
        more = fh.read(chunk)
        if not more:
            if pos < len(buf):
                yield buf[pos:]
            return
        buf, pos = buf[pos:] + more, 0


def read_head_lines(
    reader: Reader, encoding: str | None, limit: int, until: bytes | None = None, after: int = 0
) -> tuple[list[str], str]:
    """Up to ``limit`` lines from the start of the file (line ends removed), and the
    encoding to read the rest with. With ``until``, reading stops ``after`` lines past the
    first line equal to it. The text is UTF-8 (BOM allowed) unless ``encoding`` says
    otherwise; with ``encoding=None`` Latin-1 when the head is not UTF-8. Lines may end in
    LF, CRLF or a bare CR (:func:`iter_lines`); only the head is read."""
    raw: list[bytes] = []
    with reader.path.open("rb") as fh:
        stop = None
        for line in iter_lines(fh):
            if len(raw) >= limit or (stop is not None and len(raw) >= stop):
                break
            if len(line) >= MAX_LINE and not line.endswith((b"\n", b"\r")):
                n = len(raw) + 1
                raise reader.error(f"line {n} is longer than {MAX_LINE} bytes; not a text table", n)
            raw.append(line)
            if stop is None and until is not None and line.strip() == until:
                stop = len(raw) + after

    def line_of(offset: int) -> int:
        """The 1-based line holding byte ``offset`` of the head."""
        for n, ln in enumerate(raw, start=1):
            if offset < len(ln):
                return n
            offset -= len(ln)
        return len(raw)

    data = b"".join(raw)
    if b"\x00" in data:
        raise reader.error("not a text file (it contains NUL bytes)", line_of(data.index(b"\x00")))
    codecs = [encoding] if encoding else ["utf-8-sig", "latin-1"]
    for codec in codecs:
        utf8 = codec.replace("-", "").replace("_", "").lower() in ("utf8", "utf8sig")
        try:
            text = data.decode("utf-8-sig" if utf8 else codec)
        except UnicodeDecodeError as exc:
            if codec == codecs[-1]:
                raise reader.error(f"not {codec} text (byte {exc.start} of the header)", line_of(exc.start)) from exc
            continue
        except LookupError as exc:
            raise reader.error(f"unknown encoding {codec!r}") from exc
        return [ln.rstrip("\r\n") for ln in io.StringIO(text, newline=None)], "utf8" if utf8 else codec
    raise AssertionError("unreachable")  # pragma: no cover


# --- the mapping -----------------------------------------------------------------------


@dataclass
class GenericMapping:
    """How to read one logger's delimited text files.

    ``timestamp`` is a column name or a ``[date, time]`` pair (``None``: detect);
    ``time_format`` a ``strptime`` format (``None``: ISO 8601 or guessed); ``decimal``
    ``"."`` or ``","``; ``missing`` extra missing-value codes such as ``"-9999"``.

    >>> m = GenericMapping(delimiter=";", decimal=",", timestamp=["Datum", "Zeit"])
    >>> GenericMapping.from_json(m.to_json()) == m
    True
    """

    header_row: int = 0
    units_row: int | None = None
    delimiter: str | None = None
    timestamp: str | list[str] | None = None
    time_format: str | None = None
    utc_offset_minutes: int | None = None
    timestamp_is_end: bool | None = None
    missing: list[str] = field(default_factory=list)
    decimal: str = "."
    skip_columns: list[str] = field(default_factory=list)
    encoding: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.timestamp, tuple):
            self.timestamp = list(self.timestamp)
        problems = []
        if not isinstance(self.header_row, int) or isinstance(self.header_row, bool) or self.header_row < 0:
            problems.append("header_row must be a whole number ≥ 0")
        units_row = self.units_row
        if units_row is not None and (not isinstance(units_row, int) or units_row <= self.header_row):
            problems.append("units_row must come after header_row")
        if self.delimiter is not None and (not isinstance(self.delimiter, str) or len(self.delimiter) != 1):
            problems.append("delimiter must be one character")
        stamp = self.timestamp
        if not (stamp is None or isinstance(stamp, str) or (
            isinstance(stamp, list) and len(stamp) == 2 and all(isinstance(t, str) for t in stamp)
        )):
            problems.append("timestamp must be a column name or [date column, time column]")
        if self.timestamp_is_end not in (None, True, False):
            problems.append("timestamp_is_end must be true, false or null")
        if self.decimal not in (".", ","):
            problems.append("decimal must be '.' or ','")
        elif self.decimal == "," and self.delimiter == ",":
            problems.append("a decimal comma needs another delimiter")
        if self.utc_offset_minutes is not None:
            try:
                limits.check_utc_offset_minutes(self.utc_offset_minutes)
            except InvalidValue:
                lo, hi = limits.UTC_OFFSET_MINUTES
                problems.append(f"utc_offset_minutes must be a whole number between {lo} and {hi}")
        for name in ("missing", "skip_columns"):
            value = getattr(self, name)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                problems.append(f"{name} must be a list of texts")
        for name in ("time_format", "encoding"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                problems.append(f"{name} must be a text")
        if problems:
            raise ConfigError("invalid file mapping: " + "; ".join(problems))

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> GenericMapping:
        try:
            data = limits.load_json(text)
        except InvalidValue as exc:
            raise ConfigError(f"invalid file mapping: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError("invalid file mapping: expected a JSON object")
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"invalid file mapping: unknown keys {', '.join(sorted(unknown))}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"invalid file mapping: {exc}") from exc


#: How far down (in non-blank lines) a header row is looked for below free text.
HEADER_SEARCH_LINES = 30


def detect(lines: list[str], min_share: float = 0.9) -> GenericMapping | None:
    """A mapping for ``lines`` (the start of a file) when it holds a plain table: a header
    row with a timestamp column (free text lines may come before it), maybe a units row,
    dates in the timestamp column, and the header's field count on at least ``min_share`` of
    the lines after it (``0``: a header alone will do). The header kept is the one most
    lines agree with, the first of equals.

    >>> detect(["Date;Time;WS", "09.01.2016;15:30;5,5"]).to_json()[:60]
    '{"decimal": ",", "delimiter": ";", "encoding": null, "header'
    >>> m = detect(["Logger 0815", "Timestamp,WS,WD", ",m/s,deg", "2025-01-01 00:10,5.5,180"])
    >>> m.header_row, m.units_row
    (1, 2)
    """
    rows_at = [i for i, ln in enumerate(lines) if ln.strip()]
    if not rows_at or (len(rows_at) < 2 and min_share > 0):
        return None
    text = [lines[i] for i in rows_at]
    candidates = []
    try:
        candidates.append(csv.Sniffer().sniff("\n".join(text[-20:]), delimiters=DELIMITERS).delimiter)
    except csv.Error:
        pass
    candidates += [d for d in DELIMITERS if d not in candidates]
    best: tuple[float, GenericMapping] | None = None
    for delim in candidates:
        try:
            rows = list(csv.reader(text, delimiter=delim))
        except csv.Error:
            continue
        for h, names in enumerate(rows[:HEADER_SEARCH_LINES]):
            found = _table_at(rows, h, names, min_share)
            if found is None:
                continue
            share, units = found
            values = [v for r in rows[h + 1 + (units is not None):] if len(r) == len(names) for v in r]
            times = time_fields(names)
            assert times is not None
            mapping = GenericMapping(
                header_row=rows_at[h], units_row=None if units is None else rows_at[units],
                delimiter=delim, decimal=_decimal_mark(delim, values),
                timestamp=times[0] if len(times) == 1 else times,
            )
            if best is None or share > best[0]:
                best = (share, mapping)
    return best[1] if best else None


def _decimal_mark(delimiter: str, values: list[str]) -> str:
    """``","`` when the fields are not comma-separated and a value has a decimal comma."""
    return "," if delimiter != "," and any(_DECIMAL_COMMA.match(v) for v in values) else "."


def _table_at(rows: list[list[str]], h: int, names: list[str],
              min_share: float) -> tuple[float, int | None] | None:
    """(share of the lines below that agree with it, units row) when row ``h`` is a header."""
    times = time_fields(names) if len(names) >= 2 else None
    if times is None:
        return None
    at = [names.index(t) for t in times]
    below = rows[h + 1:]
    units = None
    if below and len(below[0]) == len(names) and not _DATE.search(" ".join(below[0][i] for i in at)) \
            and any(v.strip() and not _NUMBER.match(v) for i, v in enumerate(below[0]) if i not in at):
        units, below = h + 1, below[1:]
    agree = [r for r in below if len(r) == len(names)]
    share = len(agree) / len(below) if below else 0.0
    if share < min_share or (min_share > 0 and not agree):
        return None
    if agree and not _DATE.search(" ".join(agree[0][i] for i in at)):
        return None
    return share, units


def sniff(head: bytes) -> bool:
    """True when ``head`` is a plain delimited table with a timestamp column."""
    if b"\x00" in head:
        return False
    lines = head.decode("utf-8-sig", errors="replace").splitlines()
    if len(head) >= 4096 and lines:
        lines = lines[:-1]  # the last line may be cut
    return detect(lines[:50]) is not None


class GenericReader(TableReader):
    """A delimited text file read with a :class:`GenericMapping` (detected when omitted)."""

    format = "generic"

    def __init__(self, path, display_name=None, mapping: GenericMapping | None = None) -> None:
        super().__init__(path, display_name)
        self.mapping = mapping
        self._value_fields: list[str] = []

    def read_header(self) -> Header:
        m = self.mapping
        if m is None:
            lines, encoding = read_head_lines(self, None, 50)
            if not any(ln.strip() for ln in lines):
                raise self.error("the file is empty")
            m = detect(lines, min_share=0.0)
            if m is None:
                raise self.error(
                    "no table with a timestamp column (Timestamp, Date/Time, DateTime, Time or Date "
                    "and Time) and a consistent delimiter; set up a file mapping for this logger", 1
                )
            self.mapping = m
        last = max(m.header_row, m.units_row or 0)
        lines, encoding = read_head_lines(self, m.encoding, last + 2)
        if not any(ln.strip() for ln in lines):
            raise self.error("the file is empty")
        if len(lines) <= m.header_row:
            raise self.error(
                f"the file has {len(lines)} lines; the header should be line {m.header_row + 1}", len(lines)
            )
        delim = m.delimiter or _guess_delimiter(lines[m.header_row])
        try:
            names = next(csv.reader([lines[m.header_row]], delimiter=delim))
        except (csv.Error, StopIteration) as exc:
            raise self.error(f"unreadable header: {exc}", m.header_row + 1) from exc
        line = m.header_row + 1
        names, blank = unique_names(self, names, line)
        units = [""] * len(names)
        if m.units_row is not None:
            if len(lines) <= m.units_row:
                raise self.error("the units row is missing", len(lines) + 1)
            units = next(csv.reader([lines[m.units_row]], delimiter=delim), [])
            if len(units) != len(names):
                raise self.error(
                    f"the units row has {len(units)} fields but the header has {len(names)}", m.units_row + 1
                )
        if m.timestamp is None:
            times = time_fields(names)
            if times is None:
                raise self.error("no timestamp column in the header (Timestamp, Date/Time, Time…)", line)
        else:
            times = [m.timestamp] if isinstance(m.timestamp, str) else list(m.timestamp)
            for t in times:
                if t not in names:
                    raise self.error(f"the timestamp column {t!r} is not in the header", line)
        skip = set(m.skip_columns) | blank | set(times)
        columns = []
        for name, unit in zip(names, units):
            if name in skip:
                continue
            base, in_name = split_unit(name)
            columns.append(Column(name=name, unit=unit.strip() or in_name, statistic=suffix_statistic(base)))
        self._value_fields = [c.name for c in columns]
        self.layout = Layout(
            fields=names, skip_lines=last + 1, time_fields=times, delimiter=delim,
            missing=MISSING + list(m.missing), time_format=m.time_format, encoding=encoding,
        )
        offset = m.utc_offset_minutes
        if offset is None and len(lines) > last + 1:
            first = next(csv.reader([lines[last + 1]], delimiter=delim), [])
            if len(first) == len(names) and has_utc_suffix(first[names.index(times[-1])]):
                offset = 0  # the reader converts "+hh:mm" / "Z" stamps to UTC
        return Header(
            format=self.format, columns=columns, utc_offset_minutes=offset,
            timestamp_is_end=m.timestamp_is_end, extra={"mapping": m.to_json()},
        )

    def _arrow_batches(self, rows: int) -> Iterator[pa.Table]:
        """The base reader's tables, with a decimal comma turned into a point."""
        for table in super()._arrow_batches(rows):
            if self.mapping is not None and self.mapping.decimal == ",":
                for name in self._value_fields:
                    i = table.schema.get_field_index(name)
                    table = table.set_column(i, name, pc.replace_substring(table.column(i), ",", "."))
            yield table


def _guess_delimiter(line: str) -> str:
    """The most frequent of the usual delimiters in a header line.

    >>> _guess_delimiter("Datum;Zeit;WS"), _guess_delimiter("a")
    (';', ',')
    """
    counts = {d: line.count(d) for d in DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","



# --- previews (a mapping tried on the first lines of a file, in the web app) --------------


def looks_like_text(path: Path, head_bytes: int = 4096) -> bool:
    """True when the start of the file has line breaks and no NUL bytes (not a binary file)."""
    with path.open("rb") as fh:
        head = fh.read(head_bytes)
    return b"\x00" not in head and (b"\n" in head or b"\r" in head or len(head) < head_bytes) and bool(head.strip())


def head_lines(path: Path, limit: int, head_bytes: int = 64 * 1024) -> tuple[list[str], str]:
    """Up to ``limit`` lines from the first ``head_bytes`` of a text file, and the encoding
    read (UTF-8, else Latin-1).

    NUL bytes, as in a binary file, become U+FFFD so that the lines can be shown.
    """
    with path.open("rb") as fh:
        head = fh.read(head_bytes)
    try:
        text, encoding = head.decode("utf-8-sig"), "utf8"
    except UnicodeDecodeError as exc:
        if exc.start >= len(head) - 3:  # a character cut at the end of the head
            text, encoding = head[: exc.start].decode("utf-8-sig"), "utf8"
        else:
            text, encoding = head.decode("latin-1"), "latin-1"
    lines = [ln.rstrip("\r\n").replace("\x00", "\ufffd") for ln in io.StringIO(text, newline=None)]
    return lines[:limit], encoding


_CLOCK = re.compile(r"^\s*\d{1,2}:\d\d(:\d\d(\.\d+)?)?\s*$")


def guess(lines: list[str]) -> GenericMapping:
    """A first guess at the layout of a table :func:`detect` does not recognise (no known
    timestamp name): the delimiter that splits most lines into the same number of fields,
    the first such line as the header, its first column as the timestamp (with the second
    when it holds clock times), and a decimal comma if the values have one.

    >>> m = guess(["Mast 7", "Tag;Uhrzeit;v80", "01.01.2025;12:00;5,5", "01.01.2025;12:10;6,0"])
    >>> m.header_row, m.delimiter, m.timestamp, m.decimal
    (1, ';', ['Tag', 'Uhrzeit'], ',')
    """
    rows_at = [i for i, ln in enumerate(lines) if ln.strip()]
    best: tuple[int, str, int] | None = None  # (lines agreeing, delimiter, fields)
    for delim in DELIMITERS:
        try:
            counts = Counter(len(r) for r in csv.reader([lines[i] for i in rows_at], delimiter=delim))
        except csv.Error:
            continue
        agreeing, width = max(((n, k) for k, n in counts.items() if k >= 2), default=(0, 0))
        if agreeing and (best is None or agreeing > best[0]):
            best = (agreeing, delim, width)
    if best is None:
        return GenericMapping()
    _, delim, width = best
    rows = [(i, r) for i, r in zip(rows_at, csv.reader([lines[i] for i in rows_at], delimiter=delim))
            if len(r) == width]
    (header, names), data = rows[0], [r for _, r in rows[1:]]
    pair = bool(data) and all(_CLOCK.match(r[1]) for r in data[:20])
    values = [v for r in data for v in r[2 if pair else 1:]]
    return GenericMapping(
        header_row=header, delimiter=delim, decimal=_decimal_mark(delim, values),
        timestamp=names[:2] if pair else names[0],
    )


def header_names(lines: list[str], mapping: GenericMapping) -> list[str]:
    """The column names in the header row that ``mapping`` points at (empty if none)."""
    if len(lines) <= mapping.header_row:
        return []
    line = lines[mapping.header_row]
    try:
        return next(csv.reader([line], delimiter=mapping.delimiter or _guess_delimiter(line)), [])
    except csv.Error:
        return []


def preview(path: Path, mapping: GenericMapping, *, name: str | None = None, rows: int = 10,
            head_bytes: int = 64 * 1024, tmp_dir: Path | None = None) -> tuple[Header, Batch | None]:
    """The header and the first ``rows`` data rows of ``path`` read with ``mapping``, from
    its first ``head_bytes`` only (copied into ``tmp_dir``): a quick check of a mapping before
    the worker imports the whole file. Raises :class:`~core.errors.ParseError` as the import would."""
    with path.open("rb") as fh:
        head = fh.read(head_bytes)
    end = max(head.rfind(b"\n"), head.rfind(b"\r"))
    if len(head) == head_bytes and end >= 0:
        head = head[: end + 1]  # whole lines only (a CRLF cut after its CR is a line end all the same)
    with tempfile.TemporaryDirectory(prefix="sm-preview-", dir=tmp_dir) as tmp:
        part = Path(tmp) / "head"
        part.write_bytes(head)
        reader = GenericReader(part, name or path.name, mapping=mapping)
        header = reader.header
        batch = next(iter(reader.batches(rows)), None)
    return header, batch
