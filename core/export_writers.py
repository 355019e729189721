"""The file formats of exports, written batch by batch in bounded memory.

A writer is opened with the export's columns (:class:`OutColumn`) and the site's metadata,
gets :meth:`Writer.write` calls with consecutive blocks of rows — ``times_us`` (int64
microseconds since 1970 UTC, the start of each time step) and a ``values`` matrix with one
column per :class:`OutColumn` (NaN = missing) — and :meth:`Writer.close` writes what is
left and returns the files it made. The text goes through pyarrow's CSV writer, so numbers
are written in their shortest exact form (re-reading gives the same float64) and missing
values as empty fields.

Formats:

- ``windographer``: a header block like Windographer's own (``Created … by …``, site,
  latitude, longitude, elevation, "Time stamps indicate the beginning of the time step."),
  then ``Date/Time`` and one tab-separated column per channel, ``YYYY-MM-DD HH:MM`` local
  stamps, CRLF line ends;
- ``csv``: ``Timestamp`` (ISO 8601 with the UTC offset) and one column per channel;
- ``zip``: one such CSV per measurement type, plus the provenance;
- ``parquet``: ``wide`` (``time`` and one column per channel), ``long`` (``time``,
  ``channel_id``, ``channel``, ``value``) or ``tidy`` (:data:`TIDY_SCHEMA`: one row per value
  joined to its channel's metadata and flag, the table the API's readings serve), one row
  group per batch.

Column headers are either descriptive, after :func:`column_label` (``Speed 80 m N Avg
[m/s]``), or the logger's own column names (``Spd80mN``), as brightwind, cleaning logs and
scripts know them (:func:`name_columns`); either way they are unique regardless of case and
never the time column's name (:func:`unique_headers`). In the text formats a header that a
spreadsheet would read as a formula is written with a ``'`` in front, quoted
(:func:`core.spreadsheet.text_line`); Parquet keeps it as it is.
"""

from __future__ import annotations

import json
import logging
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from core.flags import CATEGORIES
from core.metadata import compass_of
from core.spreadsheet import one_line, text_line

log = logging.getLogger(__name__)

EXTENSIONS = {"windographer": ".txt", "csv": ".csv", "zip": ".zip", "parquet": ".parquet"}

#: The word for each measurement type in column names (re-read by core.metadata's conventions).
TYPE_WORDS = {
    "wind_speed": "Speed", "wind_direction": "Direction", "air_temperature": "Temperature",
    "relative_humidity": "Humidity", "air_pressure": "Pressure", "precipitation": "Precipitation",
    "battery_voltage": "Battery", "solar_radiation": "Solar", "vertical_wind_speed": "Vertical_Speed",
}
STAT_WORDS = {
    "avg": "Avg", "sd": "SD", "min": "Min", "max": "Max", "gust": "Gust", "sum": "Sum", "count": "Count",
    "sample": "Sample", "median": "Median", "mode": "Mode", "range": "Range", "ti": "TI",
    "ti30sec": "TI30sec", "availability": "Availability", "quality": "Quality",
}
#: Order of measurement types and statistics in a file.
TYPE_ORDER = list(TYPE_WORDS) + ["other", "unknown"]
STAT_ORDER = list(STAT_WORDS) + ["text", "unknown"]


@dataclass(frozen=True)
class OutColumn:
    """One column of an export: a channel and the label it is written under."""

    channel_id: int
    column_name: str
    measurement_type: str
    statistic: str
    height_m: float | None
    orientation_deg: float | None
    unit: str
    label: str = ""
    name: str = ""  # the header written in the file (see name_columns); "" until named

    @property
    def header(self) -> str:
        """The descriptive header: ``label [unit]``."""
        return f"{self.label} [{self.unit}]" if self.unit else self.label

    @property
    def written(self) -> str:
        """The header this column is written under."""
        return self.name or self.header

    def describe(self) -> dict[str, Any]:
        return {"header": self.header, "written_header": self.written, "channel_id": self.channel_id,
                "column_name": self.column_name, "measurement_type": self.measurement_type,
                "statistic": self.statistic, "height_m": self.height_m, "orientation_deg": self.orientation_deg,
                "unit": self.unit}


def column_label(measurement_type: str, height_m: float | None, orientation_deg: float | None,
                 statistic: str, column_name: str) -> str:
    """The stable name of a channel in an export: type, height, boom orientation (16-point
    compass) and statistic. Channels of an unknown type keep their logger column name.

    >>> column_label("wind_speed", 80.0, 0.0, "avg", "Spd80mN")
    'Speed 80 m N Avg'
    >>> column_label("wind_direction", 78.5, 180.0, "sd", "Dir78mSStd")
    'Direction 78.5 m S SD'
    >>> column_label("air_temperature", 2.0, None, "avg", "T2m")
    'Temperature 2 m Avg'
    >>> column_label("unknown", None, None, "unknown", "RECORD_Flag")
    'RECORD_Flag'
    """
    word = TYPE_WORDS.get(measurement_type)
    if word is None:
        return column_name
    parts = [word]
    if height_m is not None:
        parts.append(f"{height_m:g} m")
    if orientation_deg is not None:
        parts.append(compass_of(orientation_deg))
    stat = STAT_WORDS.get(statistic)
    if stat:
        parts.append(stat)
    return " ".join(parts)


def label_columns(columns: list[OutColumn]) -> list[OutColumn]:
    """``columns`` sorted (type, height from the top, orientation, statistic) and labelled;
    a label two channels would share gets the logger column name added before the statistic.

    >>> a = OutColumn(1, "Spd80mN", "wind_speed", "avg", 80.0, 0.0, "m/s")
    >>> b = OutColumn(2, "Spd80mN_2", "wind_speed", "avg", 80.0, 0.0, "m/s")
    >>> t = OutColumn(3, "T2m", "air_temperature", "avg", 2.0, None, "C")
    >>> [c.header for c in label_columns([t, b, a])]
    ['Speed 80 m N Spd80mN Avg [m/s]', 'Speed 80 m N Spd80mN_2 Avg [m/s]', 'Temperature 2 m Avg [C]']
    """
    def key(c: OutColumn) -> tuple:
        t = TYPE_ORDER.index(c.measurement_type) if c.measurement_type in TYPE_ORDER else len(TYPE_ORDER)
        s = STAT_ORDER.index(c.statistic) if c.statistic in STAT_ORDER else len(STAT_ORDER)
        return (t, -(c.height_m if c.height_m is not None else -1e9),
                c.orientation_deg if c.orientation_deg is not None else -1, s, c.column_name)

    ordered = sorted(columns, key=key)
    labels = [column_label(c.measurement_type, c.height_m, c.orientation_deg, c.statistic, c.column_name)
              for c in ordered]
    out = []
    for c, label in zip(ordered, labels):
        if labels.count(label) > 1:
            stat = STAT_WORDS.get(c.statistic)
            base = label[: -len(stat) - 1] if stat and label.endswith(" " + stat) else label
            label = f"{base} {c.column_name}" + (f" {stat}" if stat and base != label else "")
        out.append(OutColumn(**{**c.__dict__, "label": label}))
    return out


#: What the headers of an export can be.
HEADERS = ("descriptive", "logger")
#: Names of the time column in the formats: no data column may take one.
TIME_HEADERS = ("Date/Time", "Timestamp", "time")


def unique_headers(names: list[str], reserved: tuple[str, ...] = TIME_HEADERS) -> list[str]:
    """``names`` made unique regardless of case (Windographer and spreadsheets match headers
    so) and different from the ``reserved`` time-column names: a name already taken gets
    ``_2``, ``_3``… The first of equal names keeps its name.

    >>> unique_headers(["Spd80mN", "spd80mn", "T2m", "Timestamp", "SPD80MN"])
    ['Spd80mN', 'spd80mn_2', 'T2m', 'Timestamp_2', 'SPD80MN_3']
    """
    taken = {r.casefold() for r in reserved}
    out = []
    for name in names:
        candidate, k = name, 1
        while candidate.casefold() in taken:
            k += 1
            candidate = f"{name}_{k}"
        taken.add(candidate.casefold())
        out.append(candidate)
    return out


def name_columns(columns: list[OutColumn], headers: str = "descriptive") -> list[OutColumn]:
    """``columns`` (labelled by :func:`label_columns`) with the header each is written under:
    its descriptive header, or its logger column name (``headers="logger"``), made unique by
    :func:`unique_headers`.

    >>> cols = label_columns([OutColumn(1, "Spd80mN", "wind_speed", "avg", 80.0, 0.0, "m/s"),
    ...                       OutColumn(2, "T2m", "air_temperature", "avg", 2.0, None, "C")])
    >>> [c.written for c in name_columns(cols, "logger")], [c.written for c in name_columns(cols)]
    (['Spd80mN', 'T2m'], ['Speed 80 m N Avg [m/s]', 'Temperature 2 m Avg [C]'])
    """
    if headers not in HEADERS:
        raise ValueError(f"headers {headers!r} is not one of: {', '.join(HEADERS)}")
    names = unique_headers([c.column_name if headers == "logger" else c.header for c in columns])
    return [OutColumn(**{**c.__dict__, "name": n}) for c, n in zip(columns, names, strict=True)]


# --- timestamps ----------------------------------------------------------------------------


def format_times(times_us: np.ndarray, tz: str, iso: bool) -> pa.Array:
    """Time-step starts as text in ``tz``: ``YYYY-MM-DD HH:MM`` or ISO 8601 with the offset.

    >>> t = np.array([0, 3_600_000_000], dtype=np.int64)
    >>> format_times(t, "UTC", iso=False).to_pylist()
    ['1970-01-01 00:00', '1970-01-01 01:00']
    >>> format_times(t, "Europe/Berlin", iso=True).to_pylist()
    ['1970-01-01T01:00:00+01:00', '1970-01-01T02:00:00+01:00']
    """
    arr = pa.array(np.asarray(times_us, dtype=np.int64), pa.timestamp("us", tz=tz))
    if not iso:
        return pc.strftime(arr, format="%Y-%m-%d %H:%M")
    text = pc.strftime(arr, format="%Y-%m-%dT%H:%M:00%z")
    return pc.replace_substring_regex(text, pattern=r"([+-]\d\d)(\d\d)$", replacement=r"\1:\2")


def _degrees(value: float | None, pos: str, neg: str) -> str:
    """``N 53.304900`` (Windographer's way of writing a coordinate)."""
    assert value is not None
    return f"{pos if value >= 0 else neg} {abs(value):.6f}"


# --- writers ---------------------------------------------------------------------------------


class Writer:
    """Base of the writers: subclasses implement ``write`` and ``close``."""

    def __init__(self, path: Path, columns: list[OutColumn], site: dict[str, Any], tz: str,
                 header_lines: list[str]) -> None:
        self.path = path
        self.columns = columns
        self.site = site
        self.tz = tz
        self.header_lines = header_lines

    def write(self, times_us: np.ndarray, values: np.ndarray,
              marks: np.ndarray | None = None) -> None:  # pragma: no cover - interface
        """Write a block of rows; ``marks`` (flag codes, see :class:`core.exports.Block`)
        are used by the ``tidy`` layout only."""
        raise NotImplementedError

    def close(self, provenance: dict[str, Any]) -> list[Path]:  # pragma: no cover - interface
        raise NotImplementedError


def _value_arrays(values: np.ndarray) -> list[pa.Array]:
    return [pa.array(values[:, j], pa.float64(), from_pandas=True) for j in range(values.shape[1])]


class TextWriter(Writer):
    """A delimited text table, header written first, then the data rows batch by batch."""

    delimiter = ","
    eol = "\n"
    iso = True
    time_header = "Timestamp"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._fh = self.path.open("wb")
        self._fh.write(self.preamble().encode("utf-8"))
        names = [f"c{j}" for j in range(len(self.columns) + 1)]
        schema = pa.schema([(names[0], pa.string())] + [(n, pa.float64()) for n in names[1:]])
        self._writer = pacsv.CSVWriter(self._fh, schema, write_options=pacsv.WriteOptions(
            include_header=False, delimiter=self.delimiter, eol=self.eol, quoting_style="none"))  # timestamps and numbers only
        self._schema = schema

    def preamble(self) -> str:
        """The header row: its text cells made safe for spreadsheets (:mod:`core.spreadsheet`)."""
        return text_line([self.time_header] + [c.written for c in self.columns], self.delimiter, self.eol)

    def write(self, times_us: np.ndarray, values: np.ndarray, marks: np.ndarray | None = None) -> None:
        arrays = [format_times(times_us, self.tz, self.iso)] + _value_arrays(values)
        self._writer.write_table(pa.Table.from_arrays(arrays, schema=self._schema))

    def close(self, provenance: dict[str, Any]) -> list[Path]:
        self._writer.close()
        self._fh.close()
        return [self.path]


class CsvWriter(TextWriter):
    """Wide CSV: ``Timestamp`` in ISO 8601 with the UTC offset, one column per channel.

    The file has no comment lines (they would stop spreadsheet and CSV readers, ours
    included, from finding the header); its provenance is in the sidecar JSON.
    """


class WindographerWriter(TextWriter):
    """Windographer text: header block, ``Date/Time``, tabs, local stamps, CRLF."""

    delimiter = "\t"
    eol = "\r\n"
    iso = False
    time_header = "Date/Time"

    def preamble(self) -> str:
        site = self.site
        lines = list(self.header_lines[:1])
        lines.append(f"Site = {one_line(site['name'])}")
        if site.get("latitude") is not None and site.get("longitude") is not None:
            lines.append(f"Latitude = {_degrees(site['latitude'], 'N', 'S')}")
            lines.append(f"Longitude = {_degrees(site['longitude'], 'E', 'W')}")
        if site.get("elevation_m") is not None:
            lines.append(f"Elevation = {site['elevation_m']:g} m")
        lines += self.header_lines[1:]
        lines += ["", "Time stamps indicate the beginning of the time step.", ""]
        return self.eol.join(lines) + self.eol + super().preamble()


class ZipWriter(Writer):
    """One CSV per measurement type (built side by side on disk), zipped at the end."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._parts: dict[str, tuple[list[int], CsvWriter]] = {}
        stem = self.path.stem
        for j, c in enumerate(self.columns):
            kind = c.measurement_type if c.measurement_type in TYPE_ORDER else "unknown"
            if kind not in self._parts:
                self._parts[kind] = ([], None)  # type: ignore[assignment]
            self._parts[kind][0].append(j)
        for kind, (idx, _) in list(self._parts.items()):
            part = self.path.with_name(f"{stem}_{kind}.csv")
            self._parts[kind] = (idx, CsvWriter(part, [self.columns[j] for j in idx], self.site, self.tz, []))

    def write(self, times_us: np.ndarray, values: np.ndarray, marks: np.ndarray | None = None) -> None:
        for idx, writer in self._parts.values():
            writer.write(times_us, values[:, idx])

    def close(self, provenance: dict[str, Any]) -> list[Path]:
        with zipfile.ZipFile(self.path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for idx, writer in self._parts.values():
                (part,) = writer.close(provenance)
                zf.write(part, arcname=part.name)
                part.unlink()
            zf.writestr(f"{self.path.stem}.provenance.json", json.dumps(provenance, indent=2, default=str))
        return [self.path]


class ParquetWriter(Writer):
    """Parquet, ``wide``, ``long`` or ``tidy``; one row group per batch; provenance in the metadata."""

    def __init__(self, *args: Any, layout: str = "wide") -> None:
        super().__init__(*args)
        self.layout = layout
        time_type = pa.timestamp("us", tz=self.tz)
        self._tidy = TidyRows(self.site["name"], self.columns) if layout == "tidy" else None
        if self._tidy is not None:
            self.schema = TIDY_SCHEMA
        elif layout == "wide":
            fields = [pa.field("time", time_type)] + [
                pa.field(c.written, pa.float64(), metadata={k: str(v) for k, v in c.describe().items()})
                for c in self.columns]
            self.schema = pa.schema(fields)
        else:
            self.schema = pa.schema([pa.field("time", time_type), pa.field("channel_id", pa.int32()),
                                     pa.field("channel", pa.string()), pa.field("value", pa.float64())])
        self._writer = tidy_parquet_writer(self.path) if self._tidy else pq.ParquetWriter(
            self.path, self.schema, compression="zstd")
        self._ids = np.array([c.channel_id for c in self.columns], dtype=np.int32)
        self._names = pa.array([c.written for c in self.columns], pa.string())

    def write(self, times_us: np.ndarray, values: np.ndarray, marks: np.ndarray | None = None) -> None:
        if self._tidy is not None:
            self._writer.write_table(self._tidy.table(times_us, values, marks))
            return
        t = pa.array(np.asarray(times_us, dtype=np.int64), pa.timestamp("us", tz=self.tz))
        if self.layout == "wide":
            table = pa.Table.from_arrays([t] + _value_arrays(values), schema=self.schema)
        else:
            rows, cols = values.shape
            table = pa.Table.from_arrays([
                pc.take(t, pa.array(np.repeat(np.arange(rows), cols))),
                pa.array(np.tile(self._ids, rows)),
                pc.take(self._names, pa.array(np.tile(np.arange(cols), rows))),
                pa.array(values.reshape(-1), pa.float64(), from_pandas=True),
            ], schema=self.schema)
        self._writer.write_table(table)

    def close(self, provenance: dict[str, Any]) -> list[Path]:
        self._writer.add_key_value_metadata({"stationmanager.provenance": json.dumps(provenance, default=str)})
        self._writer.close()
        return [self.path]


# --- the tidy long table ---------------------------------------------------------------------

_TEXT = pa.dictionary(pa.int32(), pa.string())
#: The tidy long table: one row per value, joined to its channel's metadata. Text columns are
#: dictionary-encoded in memory and in the file (they repeat a handful of values); the file
#: stores no Arrow schema, so readers see plain text columns (:func:`tidy_parquet_writer`).
TIDY_SCHEMA = pa.schema([
    pa.field("time", pa.timestamp("us", tz="UTC")), pa.field("station", _TEXT), pa.field("channel", _TEXT),
    pa.field("measurement_type", _TEXT), pa.field("height_m", pa.float64()),
    pa.field("orientation_deg", pa.float64()), pa.field("statistic", _TEXT), pa.field("unit", _TEXT),
    pa.field("value", pa.float64()), pa.field("flag", _TEXT),
])


def tidy_parquet_writer(where: Any) -> pq.ParquetWriter:
    """A Parquet writer of :data:`TIDY_SCHEMA` tables to a path or a writable file object.

    Only ``time`` gets row-group statistics: each row group holds every channel of its time
    steps, so the others would select nothing (and cost a fifth of the writing). ``time`` and
    ``value`` are not dictionary-encoded: measured on the reference mast, their dictionaries
    overflow and the files come out larger and slower to write."""
    return pq.ParquetWriter(where, TIDY_SCHEMA, compression="zstd", store_schema=False, write_statistics=["time"],
                            use_dictionary=[n for n in TIDY_SCHEMA.names if n not in ("time", "value")])


class TidyRows:
    """Turns blocks of steps × columns into tidy tables (:data:`TIDY_SCHEMA`): one row per
    value that is there (steps without a value give no row), by time, then in column order.
    ``channel`` is the logger column name, as the app's channel pickers show it; an empty
    unit is null.

    >>> cols = [OutColumn(7, "Spd80mN", "wind_speed", "avg", 80.0, 0.0, "m/s"),
    ...         OutColumn(8, "T2m", "air_temperature", "avg", 2.0, None, "C")]
    >>> t = TidyRows("M", cols).table(np.array([0, 600_000_000]), np.array([[5.0, np.nan], [6.0, 3.5]]),
    ...                               np.array([[0, 0], [1, 0]], np.int8))
    >>> t.column("channel").to_pylist(), t.column("value").to_pylist(), t.column("flag").to_pylist()
    (['Spd80mN', 'Spd80mN', 'T2m'], [5.0, 6.0, 3.5], [None, 'icing', None])
    >>> t.column("orientation_deg").to_pylist()
    [0.0, 0.0, None]
    >>> TidyRows("M", cols).table(np.array([0]), np.array([[5.0, 2.0]]), None).column("channel").to_pylist()
    ['Spd80mN', 'T2m']
    """

    def __init__(self, station: str, columns: list[OutColumn]) -> None:
        self.n = len(columns)

        def text(values: list[str]) -> tuple[pa.Array, np.ndarray]:  # "" (no unit) is null: code -1
            names = [v for v in dict.fromkeys(values) if v]
            return pa.array(names, pa.string()), np.array([names.index(v) if v else -1 for v in values], np.int32)

        self._text = {name: text([getattr(c, attr) for c in columns]) for name, attr in (
            ("channel", "column_name"), ("measurement_type", "measurement_type"), ("statistic", "statistic"),
            ("unit", "unit"))}
        self._station = pa.array([station], pa.string())
        self._numbers = {name: pa.array([getattr(c, name) for c in columns], pa.float64())
                         for name in ("height_m", "orientation_deg")}
        self._flags = pa.array(CATEGORIES, pa.string())  # code k: CATEGORIES[k - 1]

    def table(self, times_us: np.ndarray, values: np.ndarray, marks: np.ndarray | None) -> pa.Table:
        flat = values.reshape(-1)
        times = np.asarray(times_us, dtype=np.int64)
        there = ~np.isnan(flat)
        if there.all():  # every step has every value: no index to build
            idx = None
            time = np.repeat(times, self.n)
            col = np.tile(np.arange(self.n, dtype=np.int32), len(times))
        else:
            idx = np.flatnonzero(there)
            row, col64 = np.divmod(idx, max(self.n, 1))
            time, col = times[row], col64.astype(np.int32)
            del row, col64
        del there
        n_rows = len(col)

        def pick(a: np.ndarray) -> np.ndarray:
            return a if idx is None else a[idx]

        def text(name: str) -> pa.DictionaryArray:
            dictionary, codes = self._text[name]
            picked = codes[col]
            return pa.DictionaryArray.from_arrays(pa.array(picked, mask=picked < 0 if codes.min(initial=0) < 0 else None),
                                                  dictionary)

        if marks is None or not marks.any():
            flag = pa.DictionaryArray.from_arrays(pa.nulls(n_rows, pa.int32()), self._flags)
        else:
            code = pick(marks.reshape(-1)).astype(np.int32)
            flag = pa.DictionaryArray.from_arrays(pa.array(code - 1, mask=code == 0), self._flags)
        col_arr = pa.array(col)
        return pa.Table.from_arrays([
            pa.array(time, pa.timestamp("us", tz="UTC")),
            pa.DictionaryArray.from_arrays(pa.array(np.zeros(n_rows, np.int32)), self._station),
            text("channel"), text("measurement_type"),
            self._numbers["height_m"].take(col_arr), self._numbers["orientation_deg"].take(col_arr),
            text("statistic"), text("unit"),
            pa.array(pick(flat), pa.float64()), flag,
        ], schema=TIDY_SCHEMA)


def open_writer(fmt: str, path: Path, columns: list[OutColumn], site: dict[str, Any], tz: str,
                header_lines: list[str], parquet_layout: str = "wide") -> Writer:
    """A writer of format ``fmt`` (one of :data:`EXTENSIONS`) for ``path``."""
    if fmt == "windographer":
        return WindographerWriter(path, columns, site, tz, header_lines)
    if fmt == "csv":
        return CsvWriter(path, columns, site, tz, header_lines)
    if fmt == "zip":
        return ZipWriter(path, columns, site, tz, header_lines)
    if fmt == "parquet":
        return ParquetWriter(path, columns, site, tz, header_lines, layout=parquet_layout)
    raise ValueError(f"unknown export format {fmt!r}")


_SLUG = re.compile(r"[^A-Za-z0-9]+")


def slug(text: str) -> str:
    """A file-name-safe version of ``text``.

    >>> slug("Demo Mast #2 (Ireland)")
    'demo_mast_2_ireland'
    """
    return _SLUG.sub("_", text).strip("_").lower() or "station"
