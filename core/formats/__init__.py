"""Logger file formats: detection and a common reader interface.

A reader turns a file into a :class:`Header` (logger identity and columns) and a stream of
:class:`Batch` es (timestamps as logged, plus a values matrix), so files of any size are
read in bounded memory. Every problem is raised as :class:`core.errors.ParseError` with the
file name and line.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.errors import ParseError

#: Rows per batch: 10 000 rows × 80 columns ≈ 6 MB of float64 (≈ 22 MB as COPY rows).
BATCH_ROWS = 10_000


@dataclass
class Column:
    """A numeric data column, with whatever metadata the file itself states.

    ``None`` means "the file does not say" (metadata then comes from the column name
    conventions or a Task 43 import).
    """

    name: str
    unit: str = ""
    statistic: str = "unknown"  # avg, sd, min, max, gust, count, sample, sum, unknown
    measurement_type: str | None = None  # wind_speed, wind_direction, air_temperature, ...
    height_m: float | None = None
    orientation_deg: float | None = None
    sensor: str = ""  # make/model/serial as the file gives it
    logger_slope: float | None = None  # the logger's programmed scale factor
    logger_offset: float | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass
class Header:
    format: str
    columns: list[Column]  # the numeric data columns, in file order
    station_name: str = ""
    logger_model: str = ""
    logger_serial: str = ""
    logger_oem: str = ""
    table_name: str = ""
    #: Whether the stamps mark the end of the period, as the file states it or its format
    #: defines it (Campbell: end; NRG: start); None when neither says (read as the start
    #: unless the logger's configuration says otherwise, see core.ingest).
    timestamp_is_end: bool | None = None
    utc_offset_minutes: int | None = None
    interval_s: int | None = None
    latitude: float | None = None
    longitude: float | None = None
    elevation_m: float | None = None
    extra: dict[str, str] = field(default_factory=dict)
    #: Header fields that could not be read ("line 41: Height '40 m?' is not a number"): the
    #: readings still import, and the warnings are kept on the file.
    warnings: list[str] = field(default_factory=list)

    def warn(self, reason: str, line: int | None = None) -> None:
        """Record that part of the header could not be read (with its line when known), once.

        >>> h = Header(format="x", columns=[])
        >>> h.warn("Height 'tall' is not a number", 12); h.warn("Height 'tall' is not a number", 12)
        >>> h.warnings
        ["line 12: Height 'tall' is not a number"]
        """
        text = f"line {line}: {reason}" if line else reason
        if text not in self.warnings:
            self.warnings.append(text)


@dataclass
class Batch:
    """Consecutive data rows: ``times`` as logged (naive, logger clock) and ``values``
    with one column per :attr:`Header.columns` entry (NaN where missing)."""

    times: np.ndarray  # datetime64[us], shape (rows,)
    values: np.ndarray  # float64, shape (rows, columns)
    first_line: int  # 1-based line number of the first row in the file
    #: True when the stamps carried their own UTC offset (``+01:00``, ``Z``) and ``times``
    #: are already UTC: the logger's configured offset must not be applied again.
    utc: bool = False


class Reader:
    """A parsed file: ``header`` and ``batches()``."""

    format = "unknown"

    def __init__(self, path: Path, display_name: str | None = None) -> None:
        self.path = path
        self.name = display_name or path.name

    @property
    def header(self) -> Header:  # pragma: no cover - interface
        raise NotImplementedError

    def batches(self, rows: int = BATCH_ROWS) -> Iterator[Batch]:  # pragma: no cover
        raise NotImplementedError

    def error(self, reason: str, line: int | None = None) -> ParseError:
        return ParseError(reason, file=self.name, line=line)


def open_reader(path: Path, display_name: str | None = None, format: str | None = None,
                mapping=None) -> Reader:
    """Detect the format of ``path`` from its content and return a reader for it.

    With ``mapping`` (a :class:`core.formats.generic.GenericMapping`, how one logger's
    delimited text files are laid out) the file is read as generic text with it.
    """
    from core.formats import generic, nrg, symphonie, toa5, tob1, windographer

    name = display_name or path.name
    # format -> (sniffer, reader), in the order of sniffing: the generic table last
    formats = {
        "toa5": (toa5.sniff, toa5.Toa5Reader),
        "toaci1": (toa5.sniff_toaci1, toa5.Toaci1Reader),
        "tob1": (tob1.sniff, tob1.Tob1Reader),
        "nrg_symphoniepro": (nrg.sniff_symphoniepro, nrg.SymphonieProReader),
        "nrg_logr": (nrg.sniff_logr, nrg.LogrReader),
        "nrg_symphonie": (symphonie.sniff, symphonie.SymphonieReader),
        "windographer": (windographer.sniff, windographer.WindographerReader),
        "generic": (generic.sniff, generic.GenericReader),
    }
    if mapping is not None:
        return generic.GenericReader(path, name, mapping=mapping)
    if format:
        if format not in formats:
            raise ParseError(f"unknown format {format!r}; known: {', '.join(sorted(formats))}", file=name)
        return formats[format][1](path, name)
    head = _head(path)
    if not head.strip():
        raise ParseError("the file is empty", file=name)
    for sniff, reader in formats.values():
        if sniff(head):
            return reader(path, name)
    raise ParseError(
        "unrecognised file format (supported: Campbell TOA5, TOACI1 and TOB1, NRG SymphoniePRO, LOGR and "
        "Symphonie (Data Retriever text), "
        "Windographer, delimited text with a timestamp column)", file=name, line=1,
    )


def _head(path: Path, size: int = 4096) -> bytes:
    with path.open("rb") as fh:
        return fh.read(size)
