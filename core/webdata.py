"""What the web pages show, computed without Streamlit: freshness, defaults, ranges, charts,
the tables of received files and of station metadata.

The pages in ``pages/`` read their widgets, call these functions and render the result;
everything here is plain Python (pandas, plotly) and can be tested directly.

>>> freshness(0.5), freshness(12.0), freshness(30.0), freshness(None)
('ok', 'late', 'silent', 'no data')
"""

from __future__ import annotations

import html
import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import psycopg

from core import db
from core.metadata import compass_of
from core.series import Series

#: Badge colour of each freshness state.
FRESHNESS_COLOURS = {"ok": "green", "late": "orange", "silent": "red", "no data": "gray"}
RESOLUTION_NAMES = {"raw": "raw 10-minute readings", "1h": "hourly means", "1d": "daily means"}
DEFAULT_DAYS = 30
_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")


# --- stations ------------------------------------------------------------------------


def station_names(conn: psycopg.Connection) -> list[str]:
    """Names of all stations, alphabetically."""
    return [r["name"] for r in db.fetch_all(conn, "stations")]


def freshness(age_hours: float | None, interval_s: int = 600) -> str:
    """``ok``, ``late`` or ``silent``: how long the NEXT reading is overdue.

    A reading's time marks the start of its period, so the next one is expected
    ``interval_s`` after the last. Overdue by at most 1 h is ``ok``, at most 24 h
    ``late``, more is ``silent``; a station without readings has ``no data``.

    >>> freshness(1.1), freshness(1.2), freshness(24.1), freshness(24.2)
    ('ok', 'late', 'late', 'silent')
    """
    if age_hours is None:
        return "no data"
    overdue = age_hours - interval_s / 3600
    if overdue <= 1:
        return "ok"
    if overdue <= 24:
        return "late"
    return "silent"


def format_age(age_hours: float | None) -> str:
    """A reading's age for people: minutes, hours or days.

    >>> format_age(0.25), format_age(5.04), format_age(50), format_age(None)
    ('15 min', '5.0 h', '2.1 d', '–')
    """
    if age_hours is None:
        return "–"
    if age_hours < 1:
        return f"{age_hours * 60:.0f} min"
    if age_hours < 48:
        return f"{age_hours:.1f} h"
    return f"{age_hours / 24:.1f} d"


def queue_fraction(progress: dict[str, int]) -> tuple[int, int, float]:
    """(files waiting, files done, fraction done) of :func:`core.stations.queue_progress`.

    >>> queue_fraction({"queued": 3, "importing": 1, "imported": 4, "failed": 0})
    (4, 4, 0.5)
    >>> queue_fraction({})
    (0, 0, 1.0)
    """
    waiting = progress.get("queued", 0) + progress.get("importing", 0)
    done = progress.get("imported", 0) + progress.get("failed", 0)
    total = waiting + done
    return waiting, done, (done / total if total else 1.0)


# --- channels and ranges -------------------------------------------------------------

_HEIGHT = re.compile(r"(\d+(?:\.\d+)?)\s*m(?![a-z])", re.IGNORECASE)


def _is_wind_speed_avg(ch: dict[str, Any]) -> bool:
    kind = (ch.get("measurement_type") or "").lower().replace("_", " ")
    unit = (ch.get("unit") or "").strip().lower()
    name = ch["column_name"].upper()
    wind = "wind speed" in kind or unit in ("m/s", "ms-1", "m s-1") or name.startswith("WS")
    return ch.get("statistic") == "avg" and wind


def _height(ch: dict[str, Any]) -> float:
    if ch.get("height_m") is not None:
        return float(ch["height_m"])
    m = _HEIGHT.search(ch["column_name"])
    return float(m[1]) if m else -1.0


def default_channels(channels: list[dict[str, Any]], n: int = 2) -> list[dict[str, Any]]:
    """The channels a chart starts with: the ``n`` highest wind-speed averages, else the first ``n``.

    >>> chs = [{"column_name": c, "statistic": s, "unit": u} for c, s, u in [
    ...     ("AirT_2m_Avg", "avg", "Deg C"), ("WS_40m_NE_Avg", "avg", "m/s"),
    ...     ("WS_80m_NE_Max", "max", "m/s"), ("WS_80m_NE_Avg", "avg", "m/s"),
    ...     ("WS_60m_SW_Avg", "avg", "m/s")]]
    >>> [c["column_name"] for c in default_channels(chs)]
    ['WS_80m_NE_Avg', 'WS_60m_SW_Avg']
    >>> [c["column_name"] for c in default_channels(chs[:1])]
    ['AirT_2m_Avg']
    """
    wind = [c for c in channels if _is_wind_speed_avg(c)]
    if wind:
        return sorted(wind, key=lambda c: -_height(c))[:n]
    return channels[:n]


def default_dates(first: datetime | None, last: datetime | None, days: int = DEFAULT_DAYS) -> tuple[date, date] | None:
    """The last ``days`` days of a station's data, as dates (None without data).

    >>> d = lambda *a: datetime(*a, tzinfo=UTC)
    >>> default_dates(d(2025, 1, 1), d(2025, 6, 30, 23, 50))
    (datetime.date(2025, 5, 31), datetime.date(2025, 6, 30))
    >>> default_dates(d(2025, 6, 29), d(2025, 6, 30, 23, 50))
    (datetime.date(2025, 6, 29), datetime.date(2025, 6, 30))
    """
    if first is None or last is None:
        return None
    end = last.astimezone(UTC).date()
    start = max(first.astimezone(UTC).date(), end - timedelta(days=days))
    return start, end


def dates_to_range(dates: tuple[date, ...] | list[date] | date) -> tuple[datetime, datetime]:
    """UTC [start, end) covering whole days; the end date is included.

    >>> dates_to_range((date(2025, 1, 1), date(2025, 1, 3)))
    (datetime.datetime(2025, 1, 1, 0, 0, tzinfo=datetime.timezone.utc), datetime.datetime(2025, 1, 4, 0, 0, tzinfo=datetime.timezone.utc))
    >>> dates_to_range((date(2025, 1, 1),))[1].day  # a range being picked: one day
    2
    """
    if isinstance(dates, date):
        dates = (dates,)
    first, last = dates[0], dates[-1]
    return (
        datetime.combine(first, time(), UTC),
        datetime.combine(last + timedelta(days=1), time(), UTC),
    )


def range_from_selection(selection: Any) -> tuple[datetime, datetime] | None:
    """The x range of a box selection on a time chart (plotly gives naive UTC strings).

    >>> range_from_selection({"box": [{"x": ["2025-01-02 06:00", "2025-01-01 12:30:15.5"]}]})
    (datetime.datetime(2025, 1, 1, 12, 30, 15, 500000, tzinfo=datetime.timezone.utc), datetime.datetime(2025, 1, 2, 6, 0, tzinfo=datetime.timezone.utc))
    >>> range_from_selection({"box": []}) is None
    True
    """
    boxes = (selection or {}).get("box") or []
    if not boxes or len(boxes[0].get("x") or []) < 2:
        return None
    xs = sorted(_utc(x) for x in boxes[0]["x"][:2])
    if xs[1] <= xs[0]:
        return None
    return xs[0], xs[1]


def _utc(x: Any) -> datetime:
    ts = pd.Timestamp(x)
    ts = ts.tz_localize(UTC) if ts.tzinfo is None else ts.tz_convert(UTC)
    return ts.to_pydatetime()


def describe_range(start: datetime, end: datetime) -> str:
    """A [start, end) range for a caption.

    >>> describe_range(datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 1, 2, 6, 30, tzinfo=UTC))
    '2025-01-01 00:00 – 2025-01-02 06:30 UTC (1.3 days)'
    """
    days = (end - start).total_seconds() / 86400
    return f"{start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} UTC ({days:.1f} days)"


# --- charts --------------------------------------------------------------------------


def svg_text(text: str) -> str:
    """A name shown literally in a plotly figure: plotly draws ``<a href>``, ``<b>``, ``<br>``,
    ``<span style>`` … in trace names, axis titles, tick labels, annotations and hover
    labels as links and styles, and decodes entities after it has read the tags, so an
    escaped ``<`` shows as ``<``.

    >>> svg_text('<a href="http://127.0.0.1:9/">x</a> & y')
    '&lt;a href="http://127.0.0.1:9/"&gt;x&lt;/a&gt; &amp; y'
    """
    return html.escape(str(text), quote=False)


def chart(series: Series, labels: dict[int, str]) -> go.Figure:
    """A line per channel of its mean; rollups also get a shaded min–max envelope.

    Times are drawn as naive UTC (plotly ignores time zones), so a box selection's x
    range reads back with :func:`range_from_selection`.
    """
    fig = go.Figure()
    frame = series.frame
    envelope = series.resolution != "raw"
    for i, (channel_id, name) in enumerate(labels.items()):
        label = svg_text(name)
        rows = frame[frame["channel_id"] == channel_id]
        x = pd.to_datetime(rows["time"], utc=True).dt.tz_localize(None)
        colour = _PALETTE[i % len(_PALETTE)]
        if envelope:
            fig.add_trace(go.Scatter(
                x=x, y=rows["max"], mode="lines", line={"width": 0}, legendgroup=label,
                showlegend=False, hoverinfo="skip", name=f"{label} max",
            ))
            fig.add_trace(go.Scatter(
                x=x, y=rows["min"], mode="lines", line={"width": 0}, fill="tonexty",
                fillcolor=_rgba(colour, 0.18), legendgroup=label, showlegend=False,
                hoverinfo="skip", name=f"{label} min",
            ))
        fig.add_trace(go.Scatter(
            x=x, y=rows["mean"], mode="lines", line={"width": 1.4, "color": colour},
            legendgroup=label, name=label,
        ))
    fig.update_layout(
        dragmode="select", selectdirection="h", hovermode="x unified", height=460,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        xaxis_title="time (UTC)",
    )
    return fig


def _rgba(hex_colour: str, alpha: float) -> str:
    """``#rrggbb`` with transparency.

    >>> _rgba("#1f77b4", 0.2)
    'rgba(31, 119, 180, 0.2)'
    """
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r}, {g}, {b}, {alpha})"


def resolution_caption(resolution: str) -> str:
    """What the chart shows, for its caption.

    >>> resolution_caption("1h"), resolution_caption("raw")
    ('Hourly means with their min–max envelope.', 'Raw 10-minute readings.')
    """
    text = RESOLUTION_NAMES[resolution]
    text = text[0].upper() + text[1:]
    if resolution != "raw":
        text += " with their min–max envelope"
    return text + "."


# --- received files ------------------------------------------------------------------

#: Badge colour of each status of a received file (core.files.STATUSES).
STATUS_COLOURS = {
    "queued": "blue", "importing": "violet", "imported": "green", "failed": "red",
    "duplicate": "gray", "needs station": "orange", "unpacked": "gray",
}
#: Statuses the worker has not finished with yet.
PENDING = ("queued", "importing")


def pending(rows: list[dict[str, Any]]) -> bool:
    """Whether the worker still has to import any of these files.

    >>> pending([{"status": "imported"}, {"status": "queued"}]), pending([{"status": "failed"}])
    (True, False)
    """
    return any(r["status"] in PENDING for r in rows)


def file_message(row: dict[str, Any], names: dict[int, str] | None = None) -> str:
    """What a user should read next to a file's status.

    >>> file_message({"status": "failed", "error": "the header is incomplete", "error_line": 3})
    'line 3: the header is incomplete'
    >>> file_message({"status": "duplicate", "duplicate_of": 7}, {7: "day.dat"})
    'same content as file 7 (day.dat): not imported again'
    >>> file_message({"status": "imported", "n_readings": 864, "n_changed": 12})
    '12 values already stored were changed'
    >>> file_message({"status": "unpacked", "n_rows": 3})
    'archive of 3 files'
    >>> file_message({"status": "queued"})
    'waiting for the worker'
    """
    status = row["status"]
    if status == "failed":
        line = row.get("error_line")
        return f"line {line}: {row.get('error')}" if line else str(row.get("error") or "")
    if status == "duplicate":
        dup = row.get("duplicate_of")
        name = (names or {}).get(dup)
        return f"same content as file {dup}{f' ({name})' if name else ''}: not imported again"
    if status == "needs station":
        return str(row.get("error") or "no station known for this file; assign one")
    if status == "unpacked":
        n = row.get("n_rows") or 0
        return f"archive of {n} file{'s' if n != 1 else ''}"
    if status == "imported":
        if not row.get("n_readings"):
            return "no readings in this file"
        changed = row.get("n_changed") or 0
        return f"{changed:,} values already stored were changed" if changed else ""
    if status == "queued":
        return "waiting for the worker"
    return ""


def format_size(n_bytes: int | None) -> str:
    """A file size for people.

    >>> format_size(512), format_size(2048), format_size(5 * 1024**2), format_size(None)
    ('512 B', '2.0 KiB', '5.0 MiB', '–')
    """
    if n_bytes is None:
        return "–"
    if n_bytes < 1024:
        return f"{n_bytes} B"
    for unit in ("KiB", "MiB", "GiB"):
        n_bytes /= 1024
        if n_bytes < 1024 or unit == "GiB":
            break
    return f"{n_bytes:.1f} {unit}"


def format_time(t: datetime | None) -> str:
    """A time in UTC to the minute ('' for none).

    >>> format_time(datetime(2025, 3, 1, 0, 10, 30, tzinfo=UTC)), format_time(None)
    ('2025-03-01 00:10', '')
    """
    return "" if t is None else f"{t.astimezone(UTC):%Y-%m-%d %H:%M}"


def escape_markdown(text: str) -> str:
    r"""Text (a name, a note, a message holding one) shown literally by any Streamlit element
    that renders Markdown: titles, captions, alerts, labels, badges.

    Every character that could start Markdown or HTML is escaped with a backslash
    (CommonMark's escape, which Streamlit documents for ``$`` and directives): emphasis,
    code, links and images (``[``), HTML and autolinks (``<``), tables, LaTeX, Streamlit's
    ``:red[…]``/``:material/…:`` directives (a ``:`` before a letter), web addresses
    GitHub-flavoured Markdown would link (``http://``, ``www.``, ``@``), and heading or
    list markers at the start of a line. Line breaks stay line breaks. Everything
    else is left as it is, so ``12:00``, ``a.dat``, ``RH_2m_Avg`` (``_`` inside a word is not
    emphasis) and ``(note)`` read as typed.

    >>> print(escape_markdown("data_[1]*:red.dat _lab_ RH_2m_Avg"))
    data\_\[1\]\*\:red.dat \_lab\_ RH_2m_Avg
    >>> print(escape_markdown("![x](http://127.0.0.1:9/x.png) **bold** <b>b</b>"))
    !\[x\](http\://127.0.0.1:9/x.png) \*\*bold\*\* \<b\>b\</b\>
    >>> print(escape_markdown("# 1. see www.example.org or ana@example.org, 18:00 $x$, flag #6"))
    \# 1. see www\.example.org or ana\@example.org, 18:00 \$x\$, flag #6
    >>> print(escape_markdown("ok\n- item\n2) two"))
    ok  
    \- item  
    2\) two
    """
    text = _MARKDOWN.sub(r"\\\1", str(text))
    text = _WWW.sub(r"\1\\.", text)
    lines = [_LINE_START.sub(r"\1\\\2", line) for line in text.splitlines()]
    return "  \n".join(lines) if len(lines) > 1 else (lines[0] if lines else "")


_MARKDOWN = re.compile(r"([\\`*~\[\]<>|$@]|:(?=[A-Za-z/])|(?<![^\W_])_|_(?![^\W_]))")  # a_b stays: no emphasis
_WWW = re.compile(r"(\bwww)\.", re.IGNORECASE)
_LINE_START = re.compile(r"^(\s*|\s*\d+(?=[.)](?:\s|$)))([-+=#.)])")  # "- a", "# a", "===", "1. a", "2) a"


def duplicate_names(conn: psycopg.Connection, rows: list[dict[str, Any]]) -> dict[int, str]:
    """Names of the files that these duplicates repeat (read-only)."""
    ids = sorted({r["duplicate_of"] for r in rows if r.get("duplicate_of")})
    if not ids:
        return {}
    return {r["id"]: r["original_name"] for r in db.fetch_all(conn, "source_files_by_ids", ids=ids)
            if r["id"] in ids}


def file_table(rows: list[dict[str, Any]], names: dict[int, str] | None = None) -> pd.DataFrame:
    """The Files page's table: one row per file, ``status`` as a one-item list (a coloured pill).

    >>> t = file_table([{"id": 3, "original_name": "a.dat", "station": None, "format": "toa5",
    ...     "status": "failed", "n_readings": 0, "n_changed": None, "first_time": None, "last_time": None,
    ...     "received_at": None, "received_by": "ana", "origin": "upload", "size_bytes": 2048,
    ...     "error": "bad", "error_line": 4}])
    >>> t.loc[0, ["name", "station", "status", "size", "message"]].tolist()
    ['a.dat', '–', ['failed'], '2.0 KiB', 'line 4: bad']
    """
    columns = ("id", "name", "station", "format", "status", "readings", "changed values", "first time",
               "last time", "received at", "received by", "origin", "size", "message")
    return pd.DataFrame([{
        "id": r["id"], "name": r["original_name"], "station": r.get("station") or "–",
        "format": r.get("format") or "", "status": [r["status"]],
        "readings": r.get("n_readings"), "changed values": r.get("n_changed"),
        "first time": r.get("first_time"), "last time": r.get("last_time"),
        "received at": r.get("received_at"), "received by": r.get("received_by") or "",
        "origin": r.get("origin") or "", "size": format_size(r.get("size_bytes")),
        "message": file_message(r, names),
    } for r in rows], columns=columns)


# --- station metadata ----------------------------------------------------------------


def format_offset(minutes: int | None) -> str:
    """A logger's UTC offset.

    >>> format_offset(60), format_offset(-330), format_offset(0), format_offset(None)
    ('UTC+01:00', 'UTC-05:30', 'UTC', '–')
    """
    if minutes is None:
        return "–"
    if minutes == 0:
        return "UTC"
    sign = "+" if minutes > 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours:02d}:{mins:02d}"


def format_orientation(deg: float | None) -> str:
    """A boom orientation with its compass point.

    >>> format_orientation(315), format_orientation(22.5), format_orientation(None)
    ('315° NW', '22.5° NNE', '')
    """
    if deg is None:
        return ""
    return f"{deg:g}° {compass_of(deg)}"


def logger_table(loggers: list[dict[str, Any]]) -> pd.DataFrame:
    """The Metadata page's loggers: one row per configuration period."""
    stamps = {True: "end of period", False: "start of period", None: "as each file says"}
    return pd.DataFrame([{
        "OEM": r["oem"], "model": r["model"], "serial": r["serial"],
        "UTC offset": format_offset(r["utc_offset_minutes"]), "timestamps": stamps[r["timestamp_is_end"]],
        "interval": f"{r['interval_s'] / 60:g} min", "valid from": r["valid_from"], "valid to": r["valid_to"],
        "source": r.get("source") or "",
    } for r in loggers], columns=("OEM", "model", "serial", "UTC offset", "timestamps", "interval",
                                   "valid from", "valid to", "source"))


def _sensor(point: dict[str, Any]) -> str:
    """The point's latest sensor (OEM, model, serial), else its sensor text."""
    if point.get("sensors"):
        s = point["sensors"][-1]
        text = " ".join(p for p in (s["oem"], s["model"]) if p)
        return f"{text} #{s['serial_number']}" if s["serial_number"] else text
    return point.get("sensor") or ""


def point_table(points: list[dict[str, Any]]) -> pd.DataFrame:
    """The Metadata page's measurement points."""
    return pd.DataFrame([{
        "name": p["name"], "type": p["measurement_type"], "height (m)": p["height_m"],
        "orientation": format_orientation(p["orientation_deg"]), "unit": p["unit"], "sensor": _sensor(p),
        "calibrations": len(p.get("calibrations") or []), "channels": p.get("channels", 0),
        "source": p.get("source") or "",
    } for p in points], columns=("name", "type", "height (m)", "orientation", "unit", "sensor",
                                  "calibrations", "channels", "source"))


def channel_table(channels: list[dict[str, Any]]) -> pd.DataFrame:
    """The Metadata page's channels, unmapped ones first."""
    ordered = sorted(channels, key=lambda c: bool(c["mapped"]))
    return pd.DataFrame([{
        "column": c["column_name"], "statistic": c["statistic"], "unit": c["unit"],
        "point": c.get("point_name") or "", "type": c.get("measurement_type") or "",
        "height (m)": c.get("height_m"), "orientation": format_orientation(c.get("orientation_deg")),
        "mapped": bool(c["mapped"]),
    } for c in ordered], columns=("column", "statistic", "unit", "point", "type", "height (m)",
                                   "orientation", "mapped"))


def read_json_upload(data: bytes, name: str) -> dict[str, Any]:
    """An uploaded Task 43 document, parsed as safely as the CLI's
    (:func:`core.iea43.parse_document`); unreadable JSON is a :class:`MetadataError` at ``$``.

    >>> read_json_upload(b'{"version": "1.3.0-2024.03"}', "a.json")
    {'version': '1.3.0-2024.03'}
    >>> try:
    ...     read_json_upload(b'{"version": ', "a.json")
    ... except Exception as exc:
    ...     print(exc.errors)
    ['$: not valid JSON: Expecting value (line 1, column 13)']
    """
    from core import iea43

    return iea43.parse_document(data, name)


# --- flags on the station page ---------------------------------------------------------


def flag_table(bands: list[dict[str, Any]]) -> pd.DataFrame:
    """The station page's "Flags in view": one row per flag drawn (:func:`core.health.flag_bands`).

    >>> t = flag_table([{"id": 4, "category": "icing", "start_time": datetime(2025, 1, 1, 6, tzinfo=UTC),
    ...     "end_time": datetime(2025, 1, 2, tzinfo=UTC), "whole_station": False,
    ...     "columns": ["WS_80m_NE_Avg", "WS_80m_SW_Avg"], "note": "rime", "author": "ana"}])
    >>> t.iloc[0, 1:].tolist()
    ['icing', '2025-01-01 06:00', '2025-01-02 00:00', 'WS_80m_NE_Avg, WS_80m_SW_Avg', 'rime', 'ana']
    """
    return pd.DataFrame([{
        "flag": b["id"], "category": b["category"], "start (UTC)": format_time(b["start_time"]),
        "end (UTC)": format_time(b["end_time"]),
        "channels": "whole station" if b.get("whole_station") else ", ".join(b.get("columns") or []),
        "note": b.get("note") or "", "by": b.get("author") or "",
    } for b in bands], columns=("flag", "category", "start (UTC)", "end (UTC)", "channels", "note", "by"))


def flag_line(row: dict[str, Any]) -> str:
    """One row of :func:`flag_table` as a line of markdown.

    >>> flag_line({"flag": 4, "category": "icing", "start (UTC)": "2025-01-01 06:00",
    ...     "end (UTC)": "2025-01-02 00:00", "channels": "WS_80m_NE_Avg", "note": "", "by": "ana"})
    '**#4 icing** · 2025-01-01 06:00 – 2025-01-02 00:00 · WS_80m_NE_Avg · by ana'
    """
    parts = [f"**#{row['flag']} {row['category']}**", f"{row['start (UTC)']} – {row['end (UTC)']}",
             escape_markdown(row["channels"])]
    if row["note"]:
        parts.append(f"“{escape_markdown(row['note'])}”")
    parts.append(f"by {escape_markdown(row['by'])}")
    return " · ".join(parts)
