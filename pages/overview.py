"""Overview: every station's health at a glance, worst first, as of a chosen day; the import queue.

Each card links to the station's page and shows its status (ok / late / faulty / silent,
see :func:`core.stations.status`), the age of its last reading, its data recovery over the
last 30 days with and without flagged readings, its files of the last 7 days and its open
quality-check findings. The cards and the queue refresh in place (``st.fragment``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import streamlit as st

from core import stations, sync_health, webdata
from pages.common import connection, plain, require_role, show_errors, storage_level

#: Badge colour of each status of :func:`core.stations.status`.
STATUS_COLOURS = {"silent": "red", "faulty": "violet", "late": "orange", "ok": "green", "empty": "gray"}
REFRESH_S = 60  # the cards, when looking at today

require_role("viewer")
st.title("Stations")


def _as_of_default(today: date) -> date:
    """``?as_of=YYYY-MM-DD`` when given and not in the future, else today."""
    try:
        asked = date.fromisoformat(st.query_params.get("as_of", ""))
    except ValueError:
        return today
    return min(asked, today)


today = datetime.now(UTC).date()
day = st.columns([1, 3])[0].date_input("As of (UTC)", value=_as_of_default(today), max_value=today, key="as_of",
                    help="Look at the stations as they were at the end of that day. Today: now.")
if day == today:
    st.query_params.pop("as_of", None)
else:
    st.query_params["as_of"] = day.isoformat()

with show_errors():
    level, level_name = storage_level()
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


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} %"


def card(row: dict, sync: sync_health.StationSync | None = None) -> None:
    """One station: link, status, sync, last reading, recovery, files, findings."""
    st.page_link("pages/station.py", label=plain(row["name"]), icon=":material/show_chart:",
                 query_params={"station": row["name"]})
    state = row["status"]
    st.badge(f"{state} · {webdata.format_age(row['age_hours'])} ago" if row["age_hours"] is not None else state,
             color=STATUS_COLOURS[state])
    if sync is not None:  # whether its files arrive, else the likely reason (core.sync_health)
        st.caption(sync.markdown)
    last = row["last_reading"]
    interval = f"{(row['interval_s'] or stations.DEFAULT_INTERVAL_S) / 60:g} min"
    st.caption(f"Last reading {last:%Y-%m-%d %H:%M} UTC · logger every {interval}" if last else "No readings yet")
    for fault in row["faults"]:
        st.caption(f":violet[{webdata.escape_markdown(fault)}]")
    a, b = st.columns(2)
    a.metric("Recovery 30 d", _percent(row["recovery_30d_unflagged"]),
             help=f"Readings of the {row['mapped_channels']} mapped channels that no flag covers, of those "
                  f"expected at the logger interval, {row['window_start']:%Y-%m-%d} to "
                  f"{row['window_end']:%Y-%m-%d} (end excluded)")
    b.metric("With flagged", _percent(row["recovery_30d"]), help="The same, counting flagged readings too")
    c, d, e = st.columns(3)
    c.metric("Files 7 d", row["files_7d"], help="Files received in the 7 days before the as-of time")
    d.metric("Failed", row["failed_7d"], help="Of those, the files that failed to import")
    e.metric("Findings", row["open_findings"], help="Open quality-check findings (suggested flags)")


def overview() -> None:
    """The cards, worst first; live (every minute) when looking at today."""
    with show_errors(), connection() as conn:
        now = stations.as_of(day, today)
        rows = stations.overview(conn, now=now)
        syncs = sync_health.stations(conn, now=now)
    if not rows:
        st.info("No stations yet. Import logger files with `stationmanager ingest FILE --station NAME`.")
        return
    counts = {s: sum(r["status"] == s for r in rows) for s in stations.STATUSES}
    st.markdown(" ".join(f":{STATUS_COLOURS[s]}-badge[{n} {s}]" for s, n in counts.items() if n))
    for i in range(0, len(rows), 3):
        for col, row in zip(st.columns(3), rows[i:i + 3]):
            with col.container(border=True):
                card(row, syncs.get(row["id"]))


import_queue()
st.fragment(overview, run_every=REFRESH_S if day == today else None)()
