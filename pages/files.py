"""Files: every received file with its status and message; originals to download; stations to assign.

Files that need a station come first, with a form (analyst) that assigns one and queues
them again. What an import could not read in a file's header, or had to assume (such as
whether its stamps mark the start of the period), is shown as the file's warnings. The
table refreshes itself while the worker has files queued or importing. For a text file that
failed, an analyst can say how it is laid out (``pages/file_mapping.py``).
"""

from __future__ import annotations

import functools

import streamlit as st

from core import auth, files, inbox, signed_links, stations, webdata
from core.formats import generic
from core.settings import get_settings
from pages import file_mapping
from pages.common import connection, current_user, live, notify, plain, require_role, show_errors, show_notice

role = require_role("viewer")
user = current_user() or ""
settings = get_settings()
st.title("Files")

ALL_STATIONS, NO_STATION = "All stations", "No station (needs assignment)"
ALL_STATUSES = "All statuses"
LIMIT = 1000
#: Statuses an admin may queue again (core.ingest.requeue).
REQUEUEABLE = ("imported", "failed", "needs station", "importing", "queued")
PICK, TABLE = "files_pick", "files_table"

show_notice("_files_notice")

with show_errors(), connection() as conn:
    names = webdata.station_names(conn)
    waiting = files.list_files(conn, status="needs station", limit=LIMIT)


def _assign(ids: list[int], station: str) -> None:
    with show_errors():
        for file_id in ids:
            files.requeue(file_id, actor=user, station=station)
    plural = "s" if len(ids) != 1 else ""
    notify(f"{len(ids)} file{plural} queued for import at {station}.", "_files_notice")
    st.rerun()


if waiting:
    with st.container(border=True, key="needs_station"):
        st.subheader(f":orange[:material/help:] {len(waiting)} "
                     + ("file needs a station" if len(waiting) == 1 else "files need a station"))
        st.caption("No known logger serial or station name in their headers matched a station.")
        st.dataframe(
            webdata.file_table(waiting), hide_index=True, placeholder="–",
            column_order=("id", "name", "message", "received at", "received by"),
            column_config={"received at": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm")},
        )
        if auth.allowed(role, "analyst"):
            by_id = {r["id"]: r["original_name"] for r in waiting}
            with st.form("assign", clear_on_submit=True, border=False):
                pick, where, go = st.columns([3, 2, 1], vertical_alignment="bottom")
                ids = pick.multiselect("Files", list(by_id), default=list(by_id),
                                       format_func=lambda i: f"{i} · {by_id[i]}")
                station = where.selectbox("Station", names, index=None, accept_new_options=True,
                                          placeholder="Choose a station or type a new name")
                if go.form_submit_button("Assign and import", type="primary", width="stretch"):
                    if not ids or not station:
                        st.warning("Choose the files and a station.")
                    else:
                        _assign(ids, station)
        else:
            st.caption("An analyst can assign a station to them.")

if auth.allowed(role, "analyst"):
    with show_errors(), connection() as conn:
        refused = inbox.refused(conn)
    if refused:
        with st.container(border=True, key="inbox_refused"):
            st.subheader(f":red[:material/block:] {len(refused)} "
                         + ("entry of the inbox is" if len(refused) == 1 else "entries of the inbox are")
                         + " not read")
            st.caption("Links are never followed, and hard links, pipes and the home folder are never read: "
                       "copy the files themselves into the inbox.")
            st.dataframe(refused, hide_index=True, column_config={
                "path": st.column_config.TextColumn(width="large"),
                "seen_at": st.column_config.DatetimeColumn("last seen", format="YYYY-MM-DD HH:mm")})

left, right = st.columns(2)
where = left.selectbox("Station", [ALL_STATIONS, NO_STATION, *names], key="files_station")
status = right.selectbox("Status", [ALL_STATUSES, *files.STATUSES], key="files_status")
station_filter = {ALL_STATIONS: None, NO_STATION: "-"}.get(where, where)
status_filter = None if status == ALL_STATUSES else status


def _picked_row(ids: list[int]) -> None:
    """A row chosen in the table picks that file (by id: rows move as files arrive)."""
    rows = st.session_state[TABLE].selection.rows
    if rows:
        st.session_state[PICK] = ids[rows[0]]


def _details(row: dict) -> None:
    with st.container(border=True, key="file_details"):
        head, badge = st.columns([6, 1], vertical_alignment="center")
        head.subheader(webdata.escape_markdown(row["original_name"]), anchor=False)
        with badge:
            st.badge(row["status"], color=webdata.STATUS_COLOURS.get(row["status"], "gray"))
        with show_errors(), connection() as conn:
            message = webdata.escape_markdown(webdata.file_message(row, webdata.duplicate_names(conn, [row])))
        if row["status"] == "failed":
            st.error(message, icon=":material/error:")
        elif row["status"] == "needs station":
            st.warning(message, icon=":material/help:")
        elif message:
            st.info(message)
        for warning in row.get("warnings") or []:
            st.warning(webdata.escape_markdown(warning), icon=":material/warning:")
        a, b, c, d = st.columns(4)
        a.metric("Readings", f"{row['n_readings']:,}" if row["n_readings"] is not None else "–")
        b.metric("Changed values", f"{row['n_changed']:,}" if row["n_changed"] is not None else "–")
        c.metric("Rows", f"{row['n_rows']:,}" if row["n_rows"] is not None else "–")
        d.metric("Size", webdata.format_size(row["size_bytes"]))
        first, last = (webdata.format_time(row[k]) or "–" for k in ("first_time", "last_time"))
        st.caption(
            f"File {row['id']} · station {webdata.escape_markdown(row['station'] or '–')} · "
            f"format {row['format'] or '–'} · {first} – {last} UTC  \n"
            f"Received {webdata.format_time(row['received_at'])} UTC by {plain(row['received_by'] or '–')} "
            f"({plain(row['origin'])}) · {row['attempts']} import attempt{'s' if row['attempts'] != 1 else ''}"
            + (f" · member of archive {row['parent_id']}" if row["parent_id"] else "")
            + f"  \nsha256 `{row['sha256']}`"
        )
        path = files.original_path(row, settings)
        download, again = st.columns([3, 1])
        if not path.exists():
            download.warning(f"The original is missing from the file store ({path}).")
        else:  # through the API, whatever its size (core.signed_links)
            download.link_button(
                "Download the original", signed_links.link("file", row["id"], user), icon=":material/download:",
                key=f"download_{row['id']}",
                help=f"The link works for {settings.api_link_minutes:g} minutes (open the page again for a new one)",
            )
        if auth.allowed(role, "admin") and row["status"] in REQUEUEABLE:
            if again.button("Import again", icon=":material/replay:", key=f"requeue_{row['id']}",
                            help="Queue this file for import again (admin)", width="stretch"):
                with show_errors():
                    files.requeue(row["id"], actor=user)
                notify(f"File {row['id']} ({row['original_name']}) queued again.", "_files_notice")
                st.rerun()
        if (row["status"] == "failed" and row["station"] and row["format"] in (None, "generic")
                and auth.allowed(role, "analyst") and path.exists() and generic.looks_like_text(path)):
            with st.expander("Read it as a text table: say how it is laid out", icon=":material/table_edit:"):
                file_mapping.render(row, path, user)


def _waiting() -> int:
    """Files the worker has yet to import (any station)."""
    with show_errors(), connection() as conn:
        return webdata.queue_fraction(stations.queue_progress(conn))[0]


def _table() -> bool:
    """The files, and the chosen one's details; True while the worker has files to import."""
    with show_errors(), connection() as conn:
        rows = files.list_files(conn, station=station_filter, status=status_filter, limit=LIMIT)
        dup_names = webdata.duplicate_names(conn, rows)
    waiting_now = _waiting()
    if waiting_now:
        st.caption(f":material/autorenew: The worker has {waiting_now} file{'s' if waiting_now != 1 else ''} "
                   "to import; this table refreshes every 3 s.")
    if not rows:
        st.info("No files match. Upload logger files on the Upload page.")
        return bool(waiting_now)
    ids = [r["id"] for r in rows]
    table = webdata.file_table(rows, dup_names)
    table["warnings"] = files.warnings_text(rows)
    st.dataframe(
        table, key=TABLE, hide_index=True, placeholder="–",
        on_select=functools.partial(_picked_row, ids), selection_mode="single-row",
        column_order=("id", "name", "station", "status", "readings", "message", "warnings", "first time", "last time",
                      "changed values", "format", "received at", "received by", "origin", "size"),
        column_config={
            "id": st.column_config.NumberColumn(format="%d", width="small"),
            "status": st.column_config.MultiselectColumn(
                options=files.STATUSES, color=[webdata.STATUS_COLOURS[s] for s in files.STATUSES]),
            "message": st.column_config.TextColumn(width="large"),
            "warnings": st.column_config.TextColumn(
                width="medium", help="What the import could not read in the header, or had to assume"),
            "readings": st.column_config.NumberColumn(format="localized"),
            "changed values": st.column_config.NumberColumn(format="localized"),
            **{c: st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm")
               for c in ("first time", "last time", "received at")},
        },
    )
    if len(rows) == LIMIT:
        st.caption(f"Showing the newest {LIMIT} files; choose a station or a status to see older ones.")
    if st.session_state.get(PICK) not in ids:
        st.session_state.pop(PICK, None)
    by_id = {r["id"]: r for r in rows}
    picked = st.selectbox("File", ids, index=None, key=PICK,
                          format_func=lambda i: f"{i} · {by_id[i]['original_name']}",
                          placeholder="Select a row in the table, or choose a file here")
    if picked is not None:
        with show_errors(), connection() as conn:
            row = files.get_file(conn, picked)
        _details(row)
    return bool(waiting_now)


live(_table, pending=lambda: bool(_waiting()), key="files_live", every=3)
