"""Overview: each station's last reading and its age, its channels and files; the import queue."""

from __future__ import annotations

import streamlit as st

from core import stations, webdata
from pages.common import connection, require_role, show_errors, storage_level

require_role("viewer")
st.title("Stations")

with show_errors():
    level, level_name = storage_level()
    with connection() as conn:
        rows = stations.overview(conn)
st.caption(f"Storage level {level}: {level_name}")


@st.fragment(run_every=5)
def import_queue() -> None:
    """Import progress, refreshed every 5 s without rerunning the page."""
    with show_errors(), connection() as conn:
        progress = stations.queue_progress(conn)
    waiting, done, fraction = webdata.queue_fraction(progress)
    if waiting:
        st.session_state["_queue_busy"] = True
        st.progress(fraction, text=f"Importing files: {done} done, {waiting} waiting")
    elif st.session_state.pop("_queue_busy", False):
        st.rerun()  # the queue has just emptied: redraw the stations with the new data
    else:
        st.caption(f"Import queue empty · {progress.get('failed', 0)} of {done} files failed")


import_queue()

if not rows:
    st.info("No stations yet. Import logger files with `stationmanager ingest FILE --station NAME`.")
for i in range(0, len(rows), 3):
    for col, row in zip(st.columns(3), rows[i:i + 3]):
        state = webdata.freshness(row["age_hours"], row["interval_s"] or 600)
        with col.container(border=True):
            st.page_link("pages/station.py", label=row["name"], icon=":material/show_chart:",
                         query_params={"station": row["name"]})
            st.badge(f"{state} · {webdata.format_age(row['age_hours'])} ago"
                     if row["age_hours"] is not None else state,
                     color=webdata.FRESHNESS_COLOURS[state])
            last = row["last_reading"]
            st.caption(f"Last reading {last:%Y-%m-%d %H:%M} UTC" if last else "No readings yet")
            a, b, c, d = st.columns(4)
            a.metric("Channels", row["channels"])
            b.metric("Imported", row["files_imported"])
            c.metric("Failed", row["files_failed"])
            d.metric("Pending", row["files_pending"])
