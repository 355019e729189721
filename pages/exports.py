"""Exports: request a file of a station's data, follow the worker building it, download it.

An analyst chooses the format and the options and presses *Request export*;
:func:`core.exports.request_export` either reuses a finished export whose inputs have not
changed (shown at once) or queues a job for the worker. The page never builds a file: it
shows the progress the worker records, refreshed in place while exports are being built,
and offers every finished file for download (viewers too) through the HTTP API: a
short-lived link signed for the signed-in user (:mod:`core.signed_links`), so a file of any
size streams from disk, and a copied link stops working after
``STATIONMANAGER_API_LINK_MINUTES``.
"""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pandas as pd
import streamlit as st

from core import auth, exports, flags, signed_links, stations, webdata
from core.errors import StationManagerError
from core.settings import get_settings
from pages import flag_exchange
from pages.common import connection, current_user, live, plain, require_role, show_errors, station_picker

role = require_role("viewer")
user = current_user() or ""
settings = get_settings()

FORMAT_NAMES = {
    "windographer": "Windographer text",
    "csv": "CSV (wide)",
    "zip": "Zip, one file per measurement type",
    "parquet": "Parquet",
}
AVERAGING = {"10min": "10 minutes", "1h": "Hourly", "1d": "Daily"}
LAYOUTS = {"wide": "Wide: a column per channel", "long": "Long: time, channel, value",
           "tidy": "Tidy: a row per value with its channel's metadata and flag"}
HEADER_NAMES = {"descriptive": "Descriptive (Speed 80 m N Avg [m/s])", "logger": "Logger column names (Spd80mN)"}
BY_TYPE, BY_CHANNEL = "Measurement types", "Channels"
CALIBRATED, RAW = "Calibrated", "Raw (as logged)"
STATUS_COLOURS = {"queued": "blue", "running": "violet", "done": "green", "failed": "red", "expired": "gray"}
STATUSES = tuple(STATUS_COLOURS)
ACTIVE = ("queued", "running")
HISTORY = 50
MINE = "_exports_mine"  # id of the export this session asked for last
TIME_ZONES = ("UTC", *sorted(zoneinfo.available_timezones() - {"UTC"}))

st.title("Exports")

name = station_picker(st.columns([1, 2])[0], title="Exports", key="exports_station")

with show_errors(), connection() as conn:
    station = stations.station(conn, name)
    channels = stations.channels(conn, station["id"])
    first, last = stations.time_range(conn, station["id"])
sid = station["id"]


# --- the request form ------------------------------------------------------------------


def _selection() -> tuple[tuple[int, ...] | None, tuple[str, ...] | None]:
    """The channels or measurement types chosen (None, None: every mapped channel).

    By name, any channel can be chosen, an unmapped one too."""
    how = st.radio("Choose data by", (BY_TYPE, BY_CHANNEL), horizontal=True, key=f"export_by_{sid}")
    if how == BY_TYPE:
        types = sorted({c["measurement_type"] for c in channels
                        if c.get("measurement_point_id") and c.get("measurement_type")})
        picked = st.multiselect("Measurement types", types, key=f"export_types_{sid}",
                                format_func=lambda t: t.replace("_", " "), placeholder="All mapped channels")
        return None, (tuple(picked) or None)
    by_label = {c["label"]: c["id"] for c in channels}
    picked = st.multiselect("Channels", list(by_label), key=f"export_channels_{sid}",
                            placeholder="All mapped channels")
    return (tuple(by_label[p] for p in picked) or None), None


def _request_form() -> exports.ExportRequest | None:
    """The export options; the request when *Request export* was pressed."""
    if first is None or last is None or not channels:
        st.info("Nothing to export yet: this station has no readings.")
        return None
    with st.container(border=True, key="export_request"):
        st.subheader("Request an export", anchor=False)
        left, right = st.columns(2)
        with left:
            fmt = st.selectbox("Format", exports.FORMATS, format_func=FORMAT_NAMES.get, key="export_format")
            layout = "wide"
            if fmt == "parquet":
                layout = st.radio("Parquet layout", tuple(LAYOUTS), format_func=LAYOUTS.get, horizontal=True,
                                  key="export_layout")
            dates = st.date_input(
                "Period (UTC dates, the last one included)", value=(first.date(), last.date()),
                min_value=first.date(), max_value=last.date(), key=f"export_dates_{sid}",
            )
            channel_ids, types = _selection()
        with right:
            values = st.radio("Values", (CALIBRATED, RAW), horizontal=True, key="export_values",
                              help="Calibrated: the certificate's slope and offset replace the logger's "
                                   "where a calibration is recorded; elsewhere values pass through.")
            excluded = st.multiselect(
                "Leave out values flagged as", flags.CATEGORIES, default=flags.CATEGORIES, key="export_flags",
                placeholder="Nothing left out: flagged values are kept",
                help="Flagged values become blank. Clear this to keep every value.",
            )
            averaging = st.selectbox("Averaging", tuple(AVERAGING), format_func=AVERAGING.get,
                                     key="export_averaging",
                                     help="On the clock of the time zone below: hourly steps start at each "
                                          "whole local hour, daily steps are local calendar days (23 or 25 "
                                          "hours on a daylight-saving change day; 23.5 or 24.5 on Lord Howe "
                                          "Island, where the hour in which the clock turns half an hour is "
                                          "90 minutes long). 10 minutes: each reading at its own time.")
            timezone = st.selectbox("Time zone of the timestamps", TIME_ZONES, key="export_timezone",
                                    help="The period above is in UTC; the file's timestamps are "
                                         "written in this time zone. Windographer files need one without "
                                         "daylight saving time, such as Etc/GMT-1 (UTC+01:00).")
            headers = st.radio("Column headers", exports.HEADERS, format_func=HEADER_NAMES.get, key="export_headers",
                               help="Descriptive headers name type, height, boom and statistic; logger column "
                                    "names are those brightwind, cleaning logs and scripts know. The provenance "
                                    "file maps each to the other and to the channel.")
        if not st.button("Request export", type="primary", icon=":material/file_export:", key="export_go"):
            return None
        if len(dates) != 2:
            st.warning("Choose the period: a first and a last day.")
            return None
    start, end = webdata.dates_to_range(dates)
    return exports.ExportRequest(
        station=name, format=fmt, start=start, end=end, channel_ids=channel_ids, measurement_types=types,
        calibrated=values == CALIBRATED,
        # every category chosen: None, so categories added later are left out too
        exclude_categories=None if set(excluded) == set(flags.CATEGORIES) else tuple(excluded),
        averaging=averaging, timezone=timezone, parquet_layout=layout, headers=headers,
    )


def _request(req: exports.ExportRequest) -> None:
    """Ask for the export; remember it as this session's, or show why it was refused."""
    try:
        with connection() as conn:
            row = exports.request_export(conn, req, actor=user)
    except StationManagerError as exc:
        st.error(f"The export was not requested: {plain(exc)}", icon=":material/error:")
        return
    st.session_state[MINE] = row["id"]


if auth.allowed(role, "analyst"):
    asked = _request_form()
    if asked is not None:
        _request(asked)
else:
    st.caption("Viewers download the exports below; an analyst can request new ones.")


# --- progress, the export just asked for, the history ------------------------------------


def _download(row: dict[str, Any], key: str) -> None:
    """A download link for a finished export: the API streams it, whatever its size."""
    try:
        path = exports.export_file(row)
    except StationManagerError as exc:
        st.warning(plain(exc), icon=":material/delete_history:")
        return
    size = webdata.format_size(row.get("size_bytes") or path.stat().st_size)
    st.link_button(
        f"Download {plain(row.get('file_name') or path.name)}", signed_links.link("export", row["id"], user),
        icon=":material/download:", type="primary", key=key,
        help=f"{size}; the link works for {settings.api_link_minutes:g} minutes (open the page again for a new one)",
    )


def _progress(row: dict[str, Any]) -> None:
    """A progress bar with the worker's message."""
    label = f"Export {row['id']} · {FORMAT_NAMES.get(row['format'], row['format'])} · "
    if row["status"] == "queued":
        label += "waiting for the worker"
    else:
        label += plain(row.get("message") or "building")
    st.progress(min(max(float(row.get("progress") or 0.0), 0.0), 1.0), text=label)


def _mine(row: dict[str, Any]) -> None:
    """What became of the export this session asked for."""
    what = f"Export {row['id']} ({FORMAT_NAMES.get(row['format'], row['format'])})"
    if row["status"] == "done":
        size, rows = webdata.format_size(row.get("size_bytes")), row.get("n_rows")
        counts = f"{rows:,} rows, {size}" if rows is not None else size
        if row.get("reused"):
            st.success(f"{what} with the same inputs was already built on "
                       f"{webdata.format_time(row.get('finished_at'))} UTC and nothing has changed since: "
                       f"reused, not built again ({counts}).", icon=":material/recycling:")
        else:
            st.success(f"{what} is ready: {counts}.", icon=":material/check_circle:")
        _download(row, key=f"export_download_mine_{row['id']}")
    elif row["status"] == "failed":
        st.error(f"{what} failed: {plain(row.get('error') or 'no reason recorded')}", icon=":material/error:")
    elif row["status"] == "expired":
        st.warning(f"{what} has expired: its file was cleaned up. Request it again.")


def _when(t: datetime | None) -> pd.Timestamp | None:
    return None if t is None else pd.Timestamp(t).tz_convert("UTC").tz_localize(None)


def _period(start: str | None, end: str | None) -> str:
    """An export's [start, end) as UTC days, the last one included when the end is a midnight."""
    first = "…" if start is None else f"{datetime.fromisoformat(start).astimezone(UTC):%Y-%m-%d}"
    if end is None:
        return f"{first} – …"
    stop = datetime.fromisoformat(end).astimezone(UTC)
    if stop.time() == time() and (start is None or stop > datetime.fromisoformat(start)):
        stop -= timedelta(days=1)
    return f"{first} – {stop:%Y-%m-%d}"


def _describe(params: dict[str, Any] | None) -> str:
    """A one-line summary of an export's parameters."""
    p = params or {}
    parts = []
    if p.get("start") or p.get("end"):
        parts.append(_period(p.get("start"), p.get("end")))
    if p.get("measurement_types"):
        parts.append(", ".join(p["measurement_types"]))
    elif p.get("channel_ids"):
        parts.append(f"{len(p['channel_ids'])} channels")
    parts.append("calibrated" if p.get("calibrated", True) else "raw")
    excluded = p.get("exclude_categories")
    parts.append("all flags out" if excluded is None else
                 ("flags kept" if not excluded else "without " + ", ".join(excluded)))
    parts.append(AVERAGING.get(p.get("averaging", "10min"), str(p.get("averaging"))))
    if p.get("timezone", "UTC") != "UTC":
        parts.append(str(p["timezone"]))
    if p.get("parquet_layout") in ("long", "tidy"):
        parts.append(p["parquet_layout"])
    if p.get("headers") == "logger":
        parts.append("logger column names")
    return " · ".join(parts)


def _history(rows: list[dict[str, Any]]) -> None:
    """Every export of the station, newest first, and a download of any finished one."""
    st.subheader("History", anchor=False)
    if not rows:
        st.info("No exports of this station yet.")
        return
    table = pd.DataFrame({
        "id": [r["id"] for r in rows],
        "requested at": [_when(r.get("requested_at")) for r in rows],
        "by": [r.get("requested_by") for r in rows],
        "format": [FORMAT_NAMES.get(r["format"], r["format"]) for r in rows],
        "parameters": [_describe(r.get("params")) for r in rows],
        "status": [[r["status"]] for r in rows],
        "reused": [bool(r.get("reused")) for r in rows],
        "size": [webdata.format_size(r.get("size_bytes")) if r.get("size_bytes") is not None else None
                 for r in rows],
        "rows": [r.get("n_rows") for r in rows],
        "finished at": [_when(r.get("finished_at")) for r in rows],
        "error": [r.get("error") for r in rows],
    })
    st.dataframe(
        table, hide_index=True, placeholder="–", key="exports_table",
        column_order=("id", "status", "requested at", "by", "format", "size", "rows", "parameters", "reused",
                      "finished at", "error"),
        column_config={
            "id": st.column_config.NumberColumn(format="%d", width="small"),
            "status": st.column_config.MultiselectColumn(
                options=STATUSES, color=[STATUS_COLOURS[s] for s in STATUSES]),
            "rows": st.column_config.NumberColumn(format="localized"),
            "reused": st.column_config.CheckboxColumn(help="The file of an earlier export with the same "
                                                           "parameters and unchanged inputs", width="small"),
            "parameters": st.column_config.TextColumn(width="medium"),
            "error": st.column_config.TextColumn(width="large"),
            **{c: st.column_config.DatetimeColumn(f"{c} (UTC)", format="YYYY-MM-DD HH:mm")
               for c in ("requested at", "finished at")},
        },
    )
    if any(r["status"] == "expired" for r in rows):
        st.caption(f"The files of expired exports were deleted {settings.export_retention_days:g} days after "
                   "they were built (STATIONMANAGER_EXPORT_RETENTION_DAYS); request them again to rebuild them.")
    done = {r["id"]: r for r in rows if r["status"] == "done"}
    if not done:
        return
    if st.session_state.get(f"exports_pick_{sid}") not in done:  # expired since, or another station's
        st.session_state.pop(f"exports_pick_{sid}", None)
    pick = st.selectbox(
        "Download a finished export", list(done), index=None, key=f"exports_pick_{sid}",
        placeholder=f"Choose one of the {len(done)} finished exports",
        format_func=lambda i: (f"{i} · {FORMAT_NAMES.get(done[i]['format'])} · {_describe(done[i].get('params'))}"
                               f" · {webdata.format_size(done[i].get('size_bytes'))}"),
    )
    if pick is not None:
        _download(done[pick], key=f"export_download_{pick}")


def _exports() -> list[dict[str, Any]]:
    with show_errors(), connection() as conn:
        return exports.list_exports(conn, station=name, limit=HISTORY)


def _live() -> bool:
    """Progress of the exports being built, this session's export, the history; True while any is built."""
    rows = _exports()
    active = [r for r in rows if r["status"] in ACTIVE]
    if active:
        st.caption(f":material/autorenew: The worker is building {len(active)} export"
                   f"{'s' if len(active) != 1 else ''} of this station; this refreshes every 2 s.")
        for row in reversed(active):  # oldest first: the worker takes them in that order
            _progress(row)
        if any(r["status"] == "queued" for r in active):
            with show_errors(), connection() as conn:
                alive = exports.worker_alive(conn)
            if not alive:
                st.warning("No worker is running, so nothing is being built: start one with "
                           "`stationmanager worker` (or `stationmanager up`).", icon=":material/warning:")
    mine = st.session_state.get(MINE)
    if mine:
        with show_errors(), connection() as conn:
            row = exports.get_export(conn, mine)
        if row["station"] == name:
            _mine(row)
    _history(rows)
    return bool(active)


live(_live, pending=lambda: any(r["status"] in ACTIVE for r in _exports()), key="exports_live", every=2)

with st.expander("Flags as cleaning logs", icon=":material/flag:"):
    flag_exchange.render(name)
