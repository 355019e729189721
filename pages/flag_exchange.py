"""A section of the Flags and Exports pages: import a cleaning log (brightwind or Windographer)
as flags, and download a station's flags in either format.

Not a page of its own: pages call :func:`render`. Reading a cleaning log is light (a few
hundred lines of text), so it is done here; the rules are in :mod:`core.cleaning_log`.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import auth, cleaning_log
from core.cleaning_log import CleaningLogError
from core.settings import get_settings
from pages.common import connection, current_role, current_user, plain, show_errors

_FORMAT_NAMES = {"brightwind": "brightwind cleaning file (CSV)", "windographer": "Windographer flag log (TSV)"}
_SUFFIX = {"brightwind": "csv", "windographer": "txt"}


def render(station_name: str) -> None:
    """Streamlit section: upload a cleaning log → flags; download the station's flags."""
    key = f"flag_exchange_{station_name}"
    done = st.session_state.pop(f"{key}_done", None)
    if done:
        st.success(plain(done), icon=":material/check_circle:")
    upload_col, download_col = st.columns([3, 2], gap="large")
    with upload_col:
        st.markdown("**Import a cleaning log**")
        if auth.allowed(current_role(), "analyst"):
            _import(station_name, key)
        else:
            st.caption("Importing a cleaning log needs the analyst role.")
    with download_col:
        st.markdown("**Download the flags**")
        _downloads(station_name, key)


def _import(station_name: str, key: str) -> None:
    limit = get_settings().max_upload_mb
    upload = st.file_uploader(
        "Cleaning log", type=["csv", "txt", "tsv"], key=f"{key}_file",
        help="A brightwind cleaning file (Sensor,Start,Stop,Reason; the sensor is a column-name prefix, "
             "All = every channel) or a Windographer flag-segment log. Times are read as UTC. "
             f"At most {limit} MiB.")
    if upload is None:
        st.caption("Flags already on the station are not added again.")
        return
    data = upload.getvalue()
    if len(data) > limit * 1024 * 1024:
        st.error(f"larger than {limit} MiB (STATIONMANAGER_MAX_UPLOAD_MB): {plain(upload.name)}")
        return
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        st.error(f"{plain(upload.name)} is not UTF-8 text: save the cleaning log as UTF-8 and upload it again")
        return
    guessed = cleaning_log.guess_format(text) or "brightwind"
    fmt = st.radio("Format", cleaning_log.FORMATS, index=cleaning_log.FORMATS.index(guessed), horizontal=True,
                   format_func=_FORMAT_NAMES.get, key=f"{key}_format_{upload.file_id}")
    with show_errors(), connection() as conn:
        try:
            plan = cleaning_log.plan_import(conn, station_name, text, fmt)
        except CleaningLogError as exc:  # every bad line, and the rest of the page stays
            st.error(plain(CleaningLogError(exc.problems, file=upload.name)), icon=":material/error:")
            return
    st.dataframe(_preview(plan), hide_index=True, width="stretch", column_config={
        c: st.column_config.DatetimeColumn(c, format="YYYY-MM-DD HH:mm") for c in ("start (UTC)", "end (UTC)")})
    if plan.unmatched:
        st.warning(plain("No channel of this station matches: " + ", ".join(
            f"{s} (line {', '.join(map(str, lines))})" for s, lines in plan.unmatched.items())))
    st.caption(f"{len(plan.new)} new flag{'s' if len(plan.new) != 1 else ''}, "
               f"{len(plan.unchanged)} already on the station.")
    if st.button(f"Import {len(plan.new)} flag{'s' if len(plan.new) != 1 else ''}", key=f"{key}_import",
                 type="primary", disabled=not plan.new, icon=":material/flag:"):
        with show_errors(), connection() as conn:
            result = cleaning_log.import_flags(conn, station_name, text, fmt, current_user() or "")
        st.session_state[f"{key}_done"] = (f"{upload.name}: {result['added']} flags added, "
                                           f"{result['unchanged']} already there.")
        st.rerun()


def _preview(plan: cleaning_log.Plan) -> pd.DataFrame:
    """What the import would flag, one row per flag."""
    return pd.DataFrame([{
        "status": "already flagged" if f.existing else "new",
        "start (UTC)": f.start, "end (UTC)": f.end, "category": f.category, "note": f.note,
        "channels": "whole station" if f.whole_station else ", ".join(f.columns),
        "lines": ", ".join(map(str, f.lines)),
    } for f in plan.flags], columns=("status", "start (UTC)", "end (UTC)", "category", "note", "channels", "lines"))


def _downloads(station_name: str, key: str) -> None:
    for fmt in cleaning_log.FORMATS:
        warnings: list[str] = []
        with show_errors(), connection() as conn:
            text = cleaning_log.export_flags(conn, station_name, fmt, warnings=warnings)
        n = max(text.count("\n") - 1, 0)
        st.download_button(
            f"{_FORMAT_NAMES[fmt]} · {n} line{'s' if n != 1 else ''}", data=text.encode("utf-8"),
            file_name=f"{station_name.replace(' ', '_')}_flags_{fmt}.{_SUFFIX[fmt]}",
            mime="text/csv" if fmt == "brightwind" else "text/plain", key=f"{key}_download_{fmt}",
            icon=":material/download:")
        for w in warnings:
            st.caption(plain(w))
    st.caption("The station's live flags; times in UTC.")
