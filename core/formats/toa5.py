"""Campbell Scientific TOA5 (ASCII table data) files.

Layout: four header lines, then one row per record::

    "TOA5","station","CR1000X","12342","CR1000X.Std.03","CPU:prog.CR1X","2438","Hourly"
    "TIMESTAMP","RECORD","BattV","AirT_C(42)"      <- field names
    "TS","RN","Volts","Deg C"                      <- units
    "","","Avg","Smp"                              <- processing (statistic)
    "2021-06-18 21:00:00",10,13.23,26.29

``NAN`` marks a missing value. The data rows are read with pyarrow's CSV reader in
batches (bounded memory); when it reports a malformed row, a second, slow pass with
Python's csv module finds the exact line for the error message.

>>> sniff(b'"TOA5","x","CR1000X"')
True
>>> statistic_of("WS_80m_Avg", "Avg"), statistic_of("WS_80m_Std", ""), statistic_of("T", "Smp")
('avg', 'sd', 'sample')
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from core.errors import ParseError
from core.formats import BATCH_ROWS, Batch, Column, Header, Reader

log = logging.getLogger(__name__)

HEADER_LINES = 4
MISSING = ["NAN", "NaN", "nan", "", "INF", "-INF", "+INF", "inf", "-inf"]
NUMBER = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"
TIME_NAMES = {"TIMESTAMP", "TMSTAMP", "TIMESTAMPS"}

_PROCESS = {
    "avg": "avg", "std": "sd", "sd": "sd", "min": "min", "max": "max", "smp": "sample",
    "tot": "sum", "totalize": "sum", "wvc": "avg", "med": "avg",
}
_SUFFIX = re.compile(r"(?:_|(?<=[a-z0-9]))(avg|ave|mean|std|stdev|sd|min|max|gust|tot)$", re.I)


def sniff(head: bytes) -> bool:
    """True when ``head`` (the first bytes of a file) looks like TOA5."""
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    return text.startswith((b'"TOA5"', b"TOA5,"))


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


class Toa5Reader(Reader):
    format = "toa5"

    def __init__(self, path, display_name=None) -> None:
        super().__init__(path, display_name)
        self._header: Header | None = None
        self._fields: list[str] = []
        self._data_fields: list[str] = []
        self._text_fields: list[str] = []

    # --- header ----------------------------------------------------------------------

    @property
    def header(self) -> Header:
        if self._header is None:
            self._header = self._read_header()
        return self._header

    def _header_lines(self) -> list[list[str]]:
        lines: list[list[str]] = []
        try:
            with self.path.open(encoding="utf-8-sig", newline="") as fh:
                reader = csv.reader(fh)
                for _ in range(HEADER_LINES):
                    row = next(reader, None)
                    if row is None:
                        break
                    lines.append(row)
        except UnicodeDecodeError as exc:
            raise self.error(f"not UTF-8 text (byte {exc.start} of the header)", 1) from exc
        except csv.Error as exc:
            raise self.error(f"malformed header: {exc}", len(lines) + 1) from exc
        return lines

    def _read_header(self) -> Header:
        lines = self._header_lines()
        if not lines or not any(f.strip() for f in lines[0]):
            raise self.error("the file is empty" if not lines else "the first line is blank", 1)
        env = _strip_trailing_empty(lines[0])
        if env[0] != "TOA5":
            raise self.error(f"not a TOA5 file: first field is {env[0][:20]!r}, expected 'TOA5'", 1)
        if len(env) != 8:
            raise self.error(f"the environment line has {len(env)} fields, expected 8", 1)
        if len(lines) < HEADER_LINES:
            raise self.error(
                f"the header is incomplete: {len(lines)} of {HEADER_LINES} lines", len(lines) + 1
            )
        names, units, process = lines[1], lines[2], lines[3]
        n = len(names)
        for i, other in ((3, units), (4, process)):
            if len(other) != n:
                raise self.error(f"header line {i} has {len(other)} fields but line 2 has {n}", i)
        if len(set(names)) != n:
            dup = sorted({x for x in names if names.count(x) > 1})
            raise self.error(f"duplicate column names: {', '.join(dup)}", 2)
        if names[0].strip().upper() not in TIME_NAMES:
            raise self.error(f"the first column is {names[0]!r}, expected TIMESTAMP", 2)
        self._fields = names
        columns = []
        for name, unit, proc in zip(names[1:], units[1:], process[1:]):
            if name.strip().upper() == "RECORD":
                continue
            columns.append(Column(name=name, unit=unit.strip(), statistic=statistic_of(name, proc)))
        return Header(
            format=self.format,
            columns=columns,
            station_name=env[1],
            logger_model=env[2],
            logger_serial=env[3],
            table_name=env[7],
            extra={"os_version": env[4], "program": env[5], "signature": env[6]},
        )

    # --- data ------------------------------------------------------------------------

    def batches(self, rows: int = BATCH_ROWS) -> Iterator[Batch]:
        header = self.header
        wanted = [c.name for c in header.columns]
        text_columns: set[str] | None = None
        line = HEADER_LINES + 1
        for table in self._arrow_batches(rows):
            if text_columns is None:
                text_columns = _text_columns(table, wanted)
                if text_columns:
                    log.info("%s: ignoring text columns %s", self.name, sorted(text_columns))
                    header.columns = [c for c in header.columns if c.name not in text_columns]
                    header.extra["ignored_text_columns"] = ", ".join(sorted(text_columns))
            yield self._convert(table, header, line)
            line += table.num_rows
        if line == HEADER_LINES + 1:
            raise self.error("the file has a header but no data rows", line)

    def _arrow_batches(self, rows: int) -> Iterator[pa.Table]:
        names = self._fields
        try:
            stream = pacsv.open_csv(
                self.path,
                read_options=pacsv.ReadOptions(
                    skip_rows=HEADER_LINES, column_names=names, block_size=1 << 22, encoding="utf8"
                ),
                parse_options=pacsv.ParseOptions(newlines_in_values=False),
                convert_options=pacsv.ConvertOptions(
                    column_types={n: pa.string() for n in names},
                    null_values=MISSING,
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=True,
                ),
            )
            pending: pa.Table | None = None
            for batch in stream:
                table = pa.Table.from_batches([batch])
                pending = table if pending is None else pa.concat_tables([pending, table])
                while pending.num_rows >= rows:
                    yield pending.slice(0, rows)
                    pending = pending.slice(rows)
            if pending is not None and pending.num_rows:
                yield pending
        except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
            raise self._diagnose(exc) from exc

    def _diagnose(self, exc: Exception) -> ParseError:
        """Find the line that pyarrow could not read, with Python's csv module."""
        n = len(self._fields)
        try:
            with self.path.open(encoding="utf-8-sig", newline="") as fh:
                for lineno, row in enumerate(csv.reader(fh), start=1):
                    if lineno <= HEADER_LINES or not row:
                        continue
                    if len(row) != n:
                        return self.error(f"the header has {n} columns but this row has {len(row)}", lineno)
        except UnicodeDecodeError:
            return self.error("not UTF-8 text (a data row holds bytes of another encoding)")
        except csv.Error as e:
            return self.error(f"malformed row: {e}")
        return self.error(f"unreadable data: {str(exc).splitlines()[0]}")

    def _convert(self, table: pa.Table, header: Header, line: int) -> Batch:
        times = _parse_times(table.column(self._fields[0]), self, line)
        values = np.empty((table.num_rows, len(header.columns)), dtype=np.float64)
        for j, col in enumerate(header.columns):
            values[:, j] = _to_float(table.column(col.name), col.name, self, line)
        return Batch(times=times, values=values, first_line=line)


def _strip_trailing_empty(fields: list[str]) -> list[str]:
    out = list(fields)
    while out and out[-1] == "":
        out.pop()
    return out or [""]


def _text_columns(table: pa.Table, wanted: list[str]) -> set[str]:
    """Columns whose values in the first batch are all non-numeric text (e.g. a site name)."""
    text = set()
    for name in wanted:
        col = table.column(name)
        if col.null_count == len(col):
            continue
        numeric = pc.match_substring_regex(col, NUMBER)
        if not pc.any(pc.fill_null(numeric, False)).as_py():
            text.add(name)
    return text


def _to_float(col: pa.ChunkedArray, name: str, reader: Reader, line: int) -> np.ndarray:
    try:
        return pc.cast(pc.utf8_trim_whitespace(col), pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        ok = pc.match_substring_regex(col, NUMBER)
        bad = np.flatnonzero(~pc.fill_null(ok, True).to_numpy(zero_copy_only=False))
        i = int(bad[0]) if len(bad) else 0
        raise reader.error(
            f"column {name!r}: {col[i].as_py()!r} is not a number", line + i
        ) from None


def _parse_times(col: pa.ChunkedArray, reader: Reader, line: int) -> np.ndarray:
    if col.null_count:
        i = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
        raise reader.error("the timestamp is empty", line + i)
    strings = col.to_pandas()
    # "+00:00"-style suffixes: convert to UTC (pandas refuses mixed offsets otherwise)
    utc = bool(strings.str.contains(r"(?:[+-]\d\d:?\d\d|Z)$", regex=True).any())
    try:
        parsed = pd.to_datetime(strings, format="ISO8601", utc=utc)
    except (ValueError, TypeError):
        parsed = pd.to_datetime(strings, format="ISO8601", utc=utc, errors="coerce")
        i = int(np.flatnonzero(parsed.isna().to_numpy())[0]) if parsed.isna().any() else 0
        raise reader.error(f"{strings.iloc[i]!r} is not a valid timestamp", line + i) from None
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    times = parsed.to_numpy(dtype="datetime64[us]")
    steps = np.diff(times)
    if len(steps) and (steps <= np.timedelta64(0)).any():
        i = int(np.flatnonzero(steps <= np.timedelta64(0))[0]) + 1
        what = "repeats" if steps[i - 1] == np.timedelta64(0) else "goes back in time after"
        raise reader.error(f"timestamp {strings.iloc[i]} {what} the previous row", line + i)
    return times
