"""Reading the data table of any delimited text format, fast and in bounded memory.

:class:`TableReader` is the base of the text formats (TOA5, NRG, Windographer, generic
CSV). A subclass parses its own header and sets :attr:`TableReader.layout`; this module
reads the data rows with pyarrow's CSV reader in batches, converts the timestamps and the
numeric columns, and turns every problem into a :class:`~core.errors.ParseError` with the
file's line number. When pyarrow rejects a row, a slow second pass with Python's csv module
finds the exact line for the message (only on that error path).

>>> guess_time_format(pd.Series(["09/01/2016 15:30:00", "13/01/2016 15:40:00"]))
'%d/%m/%Y %H:%M:%S'
>>> guess_time_format(pd.Series(["2025-01-01 00:10:00"])) is None   # ISO 8601
True
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from core.errors import ParseError
from core.formats import BATCH_ROWS, Batch, Header, Reader

log = logging.getLogger(__name__)

MISSING = ["NAN", "NaN", "nan", "", "INF", "-INF", "+INF", "inf", "-inf", "NA", "N/A", "#N/A"]
NUMBER = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"
_TZ_SUFFIX = r"(?:[+-]\d\d:?\d\d|Z)$"
#: Non-ISO layouts tried in order; day-first before month-first (ambiguity is settled by
#: requiring every value of the first batch to parse and the times to increase).
TIME_FORMATS = (
    "%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M",
    "%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M", "%d-%m-%Y %H:%M:%S", "%d-%m-%Y %H:%M",
    "%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M",
)
#: Rows a batch's time format is first guessed on (then checked against all its rows).
TIME_SAMPLE_ROWS = 24


@dataclass
class Layout:
    """Where the data table is and how to read it."""

    fields: list[str]  # every field name of a data row, in order
    skip_lines: int  # lines before the first data row
    time_fields: list[str]  # one field, or a date field and a time field
    delimiter: str = ","
    missing: list[str] = field(default_factory=lambda: list(MISSING))
    time_format: str | None = None  # strptime format; None: ISO 8601 or guessed
    encoding: str = "utf8"


class TableReader(Reader):
    """Base of the text formats; subclasses implement :meth:`read_header`."""

    def __init__(self, path, display_name=None) -> None:
        super().__init__(path, display_name)
        self._header: Header | None = None
        self.layout: Layout | None = None

    @property
    def header(self) -> Header:
        if self._header is None:
            self._header = self.read_header()
            assert self.layout is not None, "read_header() must set self.layout"
        return self._header

    def read_header(self) -> Header:  # pragma: no cover - interface
        raise NotImplementedError

    # --- data ------------------------------------------------------------------------

    def batches(self, rows: int = BATCH_ROWS) -> Iterator[Batch]:
        header = self.header
        layout = self.layout
        assert layout is not None
        first_line = layout.skip_lines + 1
        line = first_line
        checked_text = False
        time_format = layout.time_format
        last_time = None
        for table in self._arrow_batches(rows):
            if not checked_text:
                checked_text = True
                text = text_columns(table, [c.name for c in header.columns])
                if text:
                    log.info("%s: ignoring text columns %s", self.name, sorted(text))
                    header.columns = [c for c in header.columns if c.name not in text]
                    header.extra["ignored_text_columns"] = ", ".join(sorted(text))
            stamps = self._time_strings(table, line)
            utc = has_utc_offset(stamps)
            if time_format is None:
                time_format, times = self._guess_and_parse(stamps, line, utc)
            else:
                times = self._read_times(stamps, time_format, line, utc)
            if last_time is not None and times[0] <= last_time:
                raise self.error(f"timestamp {stamps[0].as_py()} is not after the previous row", line)
            last_time = times[-1]
            values = floats(table, [c.name for c in header.columns], self, line)
            yield Batch(times=times, values=values, first_line=line, utc=utc)
            line += table.num_rows
        if line == first_line:
            raise self.error("the file has a header but no data rows", line)

    def _read_times(self, stamps: pa.ChunkedArray, fmt: str | None, line: int, utc: bool) -> np.ndarray:
        """:func:`parse_times`, with ISO 8601 stamps read by pyarrow when it can (it reads a
        subset of what pandas reads, to the same times, without building a pandas Series)."""
        if fmt is None and not utc:
            times = iso_times(stamps)
            if times is not None and (len(times) < 2 or bool((np.diff(times) > np.timedelta64(0)).all())):
                return times
        return parse_times(stamps.to_pandas(), fmt, self, line, utc=utc)

    def _guess_and_parse(self, stamps: pa.ChunkedArray, line: int, utc: bool) -> tuple[str | None, np.ndarray]:
        """The time format and the times, as :func:`guess_time_format` then :func:`parse_times`
        would give them, for less: ISO 8601 (tried first by the guess, and taken when every row
        reads) is tried on every row; then the layouts on the first :data:`TIME_SAMPLE_ROWS`
        rows, the guess kept when it reads every row (the same answer: a layout earlier in
        :data:`TIME_FORMATS` that read every row would have read the first rows too); failing
        that, the guess on every row."""
        try:
            return None, self._read_times(stamps, None, line, utc)
        except ParseError:
            pass
        strings = stamps.to_pandas()
        if len(strings) > TIME_SAMPLE_ROWS:
            fmt = guess_time_format(strings.iloc[:TIME_SAMPLE_ROWS])
            if fmt is not None:
                try:
                    return fmt, parse_times(strings, fmt, self, line, utc=utc)
                except ParseError:
                    pass  # the first rows did not settle it
        fmt = guess_time_format(strings)
        return fmt, parse_times(strings, fmt, self, line, utc=utc)

    def _time_strings(self, table: pa.Table, line: int) -> pa.ChunkedArray:
        layout = self.layout
        assert layout is not None
        cols = [table.column(f) for f in layout.time_fields]
        for f, col in zip(layout.time_fields, cols):
            if col.null_count:
                i = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
                raise self.error(f"the {f!r} timestamp field is empty", line + i)
        joined = cols[0] if len(cols) == 1 else pc.binary_join_element_wise(*cols, " ")
        return pc.utf8_trim_whitespace(joined)

    def _arrow_batches(self, rows: int) -> Iterator[pa.Table]:
        layout = self.layout
        assert layout is not None
        try:
            stream = pacsv.open_csv(
                self.path,
                read_options=pacsv.ReadOptions(
                    skip_rows=layout.skip_lines, column_names=layout.fields,
                    block_size=1 << 20, encoding=layout.encoding,
                ),
                parse_options=pacsv.ParseOptions(delimiter=layout.delimiter, newlines_in_values=False),
                convert_options=pacsv.ConvertOptions(
                    column_types={n: pa.string() for n in layout.fields},
                    null_values=layout.missing,
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
        layout = self.layout
        assert layout is not None
        n = len(layout.fields)
        codec = "utf-8-sig" if layout.encoding.replace("-", "").lower() == "utf8" else layout.encoding
        try:
            with self.path.open(encoding=codec, newline="") as fh:
                for lineno, row in enumerate(csv.reader(fh, delimiter=layout.delimiter), start=1):
                    if lineno <= layout.skip_lines or not row:
                        continue
                    if len(row) != n:
                        return self.error(f"the header has {n} columns but this row has {len(row)}", lineno)
        except UnicodeDecodeError:
            return self.error(f"not {layout.encoding} text (a data row holds bytes of another encoding)")
        except csv.Error as e:
            return self.error(f"malformed row: {e}")
        return self.error(f"unreadable data: {str(exc).splitlines()[0]}")


def _all_columns(table: pa.Table, names: list[str]) -> pa.ChunkedArray:
    """The columns ``names`` one after the other as one string array (no copy), so that one
    compute call reads them all: a small file's batch then costs a few calls, not a few per
    column."""
    return pa.chunked_array([chunk for name in names for chunk in table.column(name).chunks], pa.string())


def text_columns(table: pa.Table, wanted: list[str]) -> set[str]:
    """Columns whose values in the first batch are all non-numeric text (e.g. a site name);
    a column with no value at all is not text. A column whose first row is a number is not
    text: only the others are searched further."""
    if not wanted or not table.num_rows:
        return set()
    first = pc.match_substring_regex(_all_columns(table.slice(0, 1), wanted), NUMBER)
    rest = [name for name, number in zip(wanted, first.to_pylist()) if not number]
    if not rest:
        return set()
    numeric = pc.fill_null(pc.match_substring_regex(_all_columns(table, rest), NUMBER), False)
    any_number = numeric.to_numpy(zero_copy_only=False).reshape(len(rest), table.num_rows).any(axis=1)
    return {name for name, number in zip(rest, any_number.tolist())
            if not number and table.column(name).null_count < table.num_rows}


def floats(table: pa.Table, names: list[str], reader: Reader, line: int) -> np.ndarray:
    """The columns ``names`` as a (rows, columns) float64 matrix (NaN where missing), cast in
    one call; a non-number is a ParseError naming the first such column and its row, as
    :func:`to_float` column by column would."""
    rows = table.num_rows
    if not names:
        return np.empty((rows, 0), dtype=np.float64)
    try:
        cast = pc.cast(pc.utf8_trim_whitespace(_all_columns(table, names)), pa.float64())
    except pa.ArrowInvalid:
        for name in names:  # find the column and row to blame
            to_float(table.column(name), name, reader, line)
        raise
    # column after column: the transpose of a column-major block, a view without a copy
    return cast.to_numpy(zero_copy_only=False).reshape(len(names), rows).T


def to_float(col: pa.ChunkedArray, name: str, reader: Reader, line: int) -> np.ndarray:
    """A string column as float64 (NaN where missing); a non-number is a ParseError."""
    try:
        return pc.cast(pc.utf8_trim_whitespace(col), pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        ok = pc.match_substring_regex(col, NUMBER)
        bad = np.flatnonzero(~pc.fill_null(ok, True).to_numpy(zero_copy_only=False))
        i = int(bad[0]) if len(bad) else 0
        raise reader.error(f"column {name!r}: {col[i].as_py()!r} is not a number", line + i) from None


def has_utc_offset(stamps: pa.ChunkedArray) -> bool:
    """Whether any stamp ends with a UTC offset (``+01:00``, ``Z``)."""
    return bool(pc.any(pc.match_substring_regex(stamps, _TZ_SUFFIX)).as_py())


#: The times ``datetime64[ns]`` holds, in µs: stamps beyond them are left to pandas (2.x
#: refuses them, 3.x reads them), as before pyarrow read any.
_PANDAS_RANGE_US = (pd.Timestamp.min.value // 1000 + 1, pd.Timestamp.max.value // 1000)


def iso_times(stamps: pa.ChunkedArray) -> np.ndarray | None:
    """ISO 8601 stamps without a UTC offset as ``datetime64[us]``, when pyarrow reads them
    all (``2025-01-01 00:10:00``, ``2025-01-01T00:10``) within the range pandas holds; else
    None (then pandas reads them, or says which is wrong).

    >>> iso_times(pa.chunked_array([["2025-01-01 00:10:00", "2025-01-01T00:20"]])).tolist()
    [datetime.datetime(2025, 1, 1, 0, 10), datetime.datetime(2025, 1, 1, 0, 20)]
    >>> iso_times(pa.chunked_array([["2025-1-1 00:10:00"]])) is None  # pandas reads it
    True
    """
    try:
        times = pc.cast(stamps, pa.timestamp("us")).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    us = times.astype(np.int64)
    if np.isnat(times).any() or us.min() < _PANDAS_RANGE_US[0] or us.max() > _PANDAS_RANGE_US[1]:
        return None
    return times


def guess_time_format(strings: pd.Series) -> str | None:
    """``None`` for ISO 8601, else the first of :data:`TIME_FORMATS` that reads every value
    (ignoring a ``+00:00`` suffix) as increasing times; failing that, the layout that reads
    the most values, so that :func:`parse_times` blames the right row."""
    sample = strings.str.replace(_TZ_SUFFIX, "", regex=True)
    best, best_n = None, 0
    for fmt in (None, *TIME_FORMATS):
        parsed = pd.to_datetime(sample, format=fmt or "ISO8601", errors="coerce")
        n = int(parsed.notna().sum())
        increasing = n < 2 or bool((np.diff(parsed.to_numpy()) > np.timedelta64(0)).all())
        if n == len(parsed) and (fmt is None or increasing):
            return fmt
        if n > best_n:
            best, best_n = fmt, n
    return best


def parse_times(strings: pd.Series, fmt: str | None, reader: Reader, line: int,
                utc: bool | None = None) -> np.ndarray:
    """Timestamps as naive ``datetime64[us]``; a ``+hh:mm`` suffix is converted to UTC
    (``utc``: whether any stamp has one, when the caller knows).

    Times must strictly increase within the batch; a repeat or a step back is an error.
    """
    if utc is None:
        utc = bool(strings.str.contains(_TZ_SUFFIX, regex=True).any())
    if fmt is not None and utc:
        fmt = fmt + "%z"
    kwargs = {"format": fmt or "ISO8601", "utc": utc}
    try:
        parsed = pd.to_datetime(strings, **kwargs)
    except (ValueError, TypeError):
        parsed = pd.to_datetime(strings, errors="coerce", **kwargs)
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
