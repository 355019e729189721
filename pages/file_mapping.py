"""A section of the Files page: tell how to read a delimited text file that failed, save it
as the station's file mapping, and import the file again.

Not a page of its own: ``pages/files.py`` calls :func:`render` for a failed text file of a
station (analysts). Only the first 64 KiB of the file are read here, to show its first
lines and a preview of ten rows read with the mapping; the import runs in the worker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from core import files, home, ingest, limits
from core.errors import ConfigError, ParseError
from core.formats import generic
from core.formats.generic import GenericMapping
from core.settings import get_settings
from pages.common import connection, notify, plain, show_errors

SHOWN_LINES = 15
NONE = "(none)"
DELIMITERS = {",": "comma ,", ";": "semicolon ;", "\t": "tab", "|": "pipe |"}
DECIMALS = {".": "point .", ",": "comma ,"}
#: label -> value, for the choices whose value may be None (a selectbox would offer to clear it)
ENCODINGS = {"detect (UTF-8, else Latin-1)": None, "UTF-8": "utf-8", "Latin-1": "latin-1",
             "Windows-1252": "cp1252"}
STAMPS = {"as the logger is set up (else the start)": None, "the start of the period": False,
          "the end of the period": True}


def _label(choices: dict[str, Any], value: Any) -> int:
    """The index of ``value`` among ``choices`` (the first choice when it is not one)."""
    return next((i for i, v in enumerate(choices.values()) if v == value and type(v) is type(value)), 0)


def render(row: dict[str, Any], path: Path, user: str) -> None:
    """The mapping form for the failed file ``row`` (stored at ``path``)."""
    key = f"mapping_{row['id']}"
    lines, _ = generic.head_lines(path, 40)
    if not lines:
        st.caption("The file is empty: there is nothing to read.")
        return
    with show_errors(), connection() as conn:
        saved = ingest.file_mapping(conn, row["station_id"])
    start = saved or generic.detect(lines, min_share=0.0) or generic.guess(lines)
    st.caption(
        f"Say how the text files of {plain(row['station'])} are laid out; the worker then reads this file "
        "and the station's later text files with it. "
        + ("The mapping saved for this station is filled in." if saved else "")
    )
    st.code("\n".join(f"{i + 1:>3}  {ln[:200]}" for i, ln in enumerate(lines[:SHOWN_LINES])), language=None)

    a, b, c, d = st.columns(4)
    header_line = a.number_input("Header line", 1, len(lines), min(start.header_row + 1, len(lines)),
                                 key=f"{key}_header", help="The line with the column names.")
    units_line = b.number_input("Units line (0: none)", 0, len(lines), (start.units_row or -1) + 1,
                                key=f"{key}_units", help="A line of units under the header, if any.")
    delimiter = c.selectbox("Delimiter", list(DELIMITERS), format_func=DELIMITERS.get, key=f"{key}_delim",
                            index=list(DELIMITERS).index(start.delimiter) if start.delimiter in DELIMITERS else 0)
    decimal = d.selectbox("Decimal mark", list(DECIMALS), index=list(DECIMALS).index(start.decimal),
                          format_func=DECIMALS.get, key=f"{key}_dec")
    names = generic.header_names(lines, GenericMapping(header_row=int(header_line) - 1, delimiter=delimiter))
    if len(names) < 2:
        st.warning(f"Line {header_line} has fewer than two columns with this delimiter.")
        return

    stamp = [start.timestamp] if isinstance(start.timestamp, str) else list(start.timestamp or [])
    if not stamp or not all(s in names for s in stamp):
        stamp = generic.time_fields(names) or [names[0]]
    a, b, c, d = st.columns(4)
    first = a.selectbox("Timestamp column", names, index=names.index(stamp[0]), key=f"{key}_ts")
    rest = [NONE, *[n for n in names if n != first]]
    second = b.selectbox("Time column (if apart)", rest, key=f"{key}_ts2",
                         index=rest.index(stamp[1]) if len(stamp) == 2 and stamp[1] in rest else 0)
    second = None if second == NONE else second
    time_format = c.text_input("Time format", start.time_format or "", key=f"{key}_fmt",
                               placeholder="ISO 8601 or guessed", help="strptime codes, e.g. %d.%m.%Y %H:%M")
    offset = d.number_input("UTC offset (minutes)", *limits.UTC_OFFSET_MINUTES, start.utc_offset_minutes, step=60,
                            key=f"{key}_offset", placeholder="the logger's",
                            help="Minutes ahead of UTC of the logger clock (60 for UTC+1). "
                                 "Empty: as the station's logger is set up.")
    a, b, c = st.columns([2, 2, 3])
    is_end = STAMPS[a.selectbox("Timestamps mark", list(STAMPS), key=f"{key}_end",
                                index=_label(STAMPS, start.timestamp_is_end))]
    encoding = ENCODINGS[b.selectbox("Encoding", list(ENCODINGS), key=f"{key}_enc",
                                     index=_label(ENCODINGS, start.encoding))]
    missing = c.text_input("Missing-value codes", ", ".join(start.missing), key=f"{key}_missing",
                           placeholder="e.g. -9999, -999.9", help="Besides NAN, NA, N/A and empty fields.")
    skip = st.multiselect("Columns to leave out (text columns, counters…)",
                          [n for n in names if n not in (first, second)],
                          default=[n for n in start.skip_columns if n in names and n not in (first, second)],
                          key=f"{key}_skip")
    try:
        mapping = GenericMapping(
            header_row=int(header_line) - 1, units_row=int(units_line) - 1 if units_line else None,
            delimiter=delimiter, timestamp=first if second is None else [first, second],
            time_format=time_format.strip() or None,
            utc_offset_minutes=None if offset is None else int(offset), timestamp_is_end=is_end,
            missing=[m.strip() for m in missing.split(",") if m.strip()], decimal=decimal,
            skip_columns=skip, encoding=encoding,
        )
    except ConfigError as exc:
        st.error(plain(exc), icon=":material/error:")
        return

    st.markdown("**Preview** (the first rows, read as the import will read them)")
    try:
        header, batch = generic.preview(path, mapping, name=row["original_name"],
                                        tmp_dir=home.process_tmp(get_settings()))
    except ParseError as exc:
        st.error(plain(exc), icon=":material/error:")
        return
    if batch is None:
        st.warning("No data rows under the header.")
        return
    frame = pd.DataFrame(batch.values, columns=[
        f"{c.name} [{c.unit}]" if c.unit and f"[{c.unit}]" not in c.name else c.name for c in header.columns])
    frame.insert(0, "time (as logged)", batch.times)
    st.dataframe(frame, hide_index=True)
    if st.button(f"Save for {plain(row['station'])} and import again", type="primary", icon=":material/save:",
                 key=f"{key}_save"):
        with show_errors():
            with connection() as conn, conn.transaction():
                ingest.set_file_mapping(conn, row["station"], mapping, user)
            files.requeue(row["id"], actor=user)
        notify(f"File mapping saved for {row['station']}; file {row['id']} ({row['original_name']}) queued again.",
               "_files_notice")
        st.rerun()
