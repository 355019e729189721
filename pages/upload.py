"""Upload: logger files (and .zip/.gz archives of them); the worker imports them, live status here.

Only hashing and storing happen in the web process (:func:`core.files.upload`); parsing is
the worker's job. The ids of this session's uploads are kept in ``st.session_state``, so
their status survives reruns and visits to other pages.
"""

from __future__ import annotations

import streamlit as st

from core import files, webdata
from core.settings import get_settings
from pages.common import connection, current_user, live, require_role, show_errors

require_role("analyst")
st.title("Upload")

DETECT = "Detect from the file (logger serial / station in header)"
UPLOADED = "upload_ids"
MAX_SHOWN = 200
settings = get_settings()

with show_errors(), connection() as conn:
    names = webdata.station_names(conn)

with st.form("upload", clear_on_submit=True):
    chosen = st.file_uploader(
        "Logger files", accept_multiple_files=True, max_upload_size=max(settings.max_upload_mb, 1),
        help="Campbell TOA5/TOB1, NRG SymphoniePRO/LOGR, Windographer or delimited text; "
             ".zip and .gz archives are unpacked by the worker. At most "
             f"{settings.max_upload_mb} MiB per file (STATIONMANAGER_MAX_UPLOAD_MB).",
    )
    station = st.selectbox(
        "Station", [DETECT, *names], accept_new_options=True, key="upload_station",
        help="Detect: a file goes to the station that knows its logger serial, or whose name its "
             "header gives; otherwise it waits on the Files page for a station. Type a name to "
             "create a new station.",
    )
    submitted = st.form_submit_button("Upload and import", type="primary", icon=":material/upload:")

if submitted:
    if not chosen:
        st.warning("Choose at least one file first.")
    else:
        with show_errors(), st.spinner("Storing the files…"):
            ids = files.upload(
                [(f.name, f.getvalue()) for f in chosen],
                station=None if station == DETECT else station, actor=current_user() or "",
            )
        st.session_state[UPLOADED] = [*st.session_state.get(UPLOADED, []), *ids]


def _uploaded() -> list[dict]:
    ids = st.session_state.get(UPLOADED)
    if not ids:
        return []
    with show_errors(), connection() as conn:
        return files.files_by_ids(conn, ids)


def _status() -> bool:
    """Each uploaded file (and archive member) with its status; True while any is pending."""
    rows = _uploaded()
    if not rows:
        st.caption("Files you upload are listed here with their import status.")
        return False
    with show_errors(), connection() as conn:
        dup_names = webdata.duplicate_names(conn, rows)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    head, clear = st.columns([5, 1], vertical_alignment="bottom")
    head.subheader("Uploaded files")
    head.caption(" · ".join(f"{n} {s}" for s, n in counts.items()) + (
        " · refreshing every 2 s" if webdata.pending(rows) else ""))
    clear.button("Clear the list", icon=":material/clear_all:", on_click=st.session_state.pop,
                 args=(UPLOADED, None), width="stretch")
    widths = [3.4, 1.4, 1.5, 1.1, 1.9, 3.7]
    labels = ("file", "station", "status", "readings", "period (UTC)", "message")
    for col, label in zip(st.columns(widths), labels):
        col.caption(f"**{label}**")
    for r in rows[:MAX_SHOWN]:
        name, station_, status, readings, period, message = st.columns(widths, vertical_alignment="center")
        name.markdown(("↳ " if r["parent_id"] else "") + webdata.escape_markdown(r["original_name"]))
        station_.markdown(webdata.escape_markdown(r["station"] or "–"))
        with status:
            st.badge(r["status"], color=webdata.STATUS_COLOURS.get(r["status"], "gray"))
        readings.markdown(f"{r['n_readings']:,}" if r["n_readings"] is not None else "–")
        period.markdown(f"{webdata.format_time(r['first_time'])}  \n– {webdata.format_time(r['last_time'])}"
                        if r["first_time"] else "–")
        text = webdata.escape_markdown(webdata.file_message(r, dup_names)) or "–"
        colour = {"failed": "red", "needs station": "orange"}.get(r["status"])
        message.markdown(f":{colour}[{text}]" if colour else text)
    if len(rows) > MAX_SHOWN:
        st.caption(f"… and {len(rows) - MAX_SHOWN} more: see the Files page.")
    if any(r["status"] == "needs station" for r in rows):
        st.page_link("pages/files.py", label="Assign a station on the Files page",
                     icon=":material/folder_open:")
    return webdata.pending(rows)


live(_status, pending=lambda: webdata.pending(_uploaded()), key="upload_status", every=2)
