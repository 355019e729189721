"""Explore: the user's own SQL over a tidy snapshot of chosen stations, in a DuckDB sandbox.

Pick stations, a period, measurement types, calibrated or raw values, flagged values removed
or marked, and *Build snapshot*: the worker builds (or reuses) one tidy Parquet export per
station (:mod:`core.explore.snapshot`), its progress shown here. Then write SQL over the
views ``readings`` and ``channels`` — or start from an example or a saved query — and *Run*:
:func:`core.explore.sandbox.run_query` runs it in a sandbox process of its own (no files,
no network, memory, time and row limits), never in this one. The result shows as a table
and a chart (x, y, colour, kind) and downloads as CSV or Parquet. Queries are saved per
user, and shared ones are listed for everyone by name.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from core import flags, stations, webdata
from core.errors import StationManagerError
from core.explore import chart, examples, sandbox, saved, snapshot
from core.settings import get_settings
from pages.common import connection, current_user, live, plain, require_role, show_errors

require_role("viewer")
user = current_user() or ""
settings = get_settings()

SNAP = "_explore_snapshot"  # the Snapshot this session asked for
RESULT = "_explore_result"  # (QueryResult, frame) of the last run
SQL = "explore_sql"
CHART_KEYS = {"x": "explore_x", "y": "explore_y", "colour": "explore_colour", "kind": "explore_kind"}
NONE = "(none)"
DEFAULT_DAYS = 90
CALIBRATED, RAW = "Calibrated", "Raw (as logged)"
AVERAGING = {"10min": "10 minutes", "1h": "Hourly", "1d": "Daily"}

st.title("Explore")
st.caption("Your own SQL (DuckDB) over a snapshot of the chosen data, run in a sandbox: it reads the views "
           "`readings` and `channels` and nothing else.")

with show_errors(), connection() as conn:
    names = webdata.station_names(conn)
    info = {}
    for n in names:
        s = stations.station(conn, n)
        info[n] = (stations.time_range(conn, s["id"]), stations.channels(conn, s["id"]))
if not names:
    st.info("No stations yet: import logger files first.")
    st.stop()


# --- the snapshot ---------------------------------------------------------------------------


def _snapshot_form() -> snapshot.SnapshotRequest | None:
    with st.container(border=True, key="explore_data"):
        st.subheader("Data", anchor=False)
        left, right = st.columns(2)
        with left:
            wanted = st.query_params.get("station")
            chosen = st.multiselect("Stations", names, default=[wanted if wanted in names else names[0]],
                                    key="explore_stations")
            ranges = [info[n][0] for n in chosen if info[n][0][0] is not None]
            period = None
            if ranges:
                first, last = min(r[0] for r in ranges), max(r[1] for r in ranges)
                period = st.date_input("Period (UTC dates, the last one included)",
                                       value=webdata.default_dates(first, last, DEFAULT_DAYS),
                                       min_value=first.date(), max_value=last.date(), key="explore_dates")
            types = sorted({c["measurement_type"] for n in chosen for c in info[n][1]
                            if c.get("measurement_point_id") and c.get("measurement_type")})
            picked = st.multiselect("Measurement types", types, key="explore_types",
                                    format_func=lambda t: t.replace("_", " "), placeholder="All mapped channels")
        with right:
            values = st.radio("Values", (CALIBRATED, RAW), horizontal=True, key="explore_values")
            flagged = st.radio("Flagged values", tuple(snapshot.FLAGGED), horizontal=True, key="explore_flagged",
                               format_func=lambda f: {"remove": "Removed", "mark": "Kept, marked"}[f],
                               help="Removed: values under any flag (" + ", ".join(flags.CATEGORIES) + ") are "
                                    "left out. Kept, marked: every value is there and `flag` holds its category.")
            averaging = st.selectbox("Averaging", tuple(AVERAGING), format_func=AVERAGING.get, key="explore_avg")
        go = st.button("Build snapshot", type="primary", icon=":material/database:", key="explore_build",
                       disabled=not chosen or period is None)
    if not go:
        return None
    if period is None or len(period) != 2:
        st.warning("Choose the period: a first and a last day.")
        return None
    start, end = webdata.dates_to_range(period)
    return snapshot.SnapshotRequest(tuple(chosen), start, end, tuple(picked) or None, values == CALIBRATED,
                                    flagged, averaging)


def _parts() -> list[dict[str, Any]]:
    snap = st.session_state.get(SNAP)
    if snap is None:
        return []
    with show_errors(), connection() as conn:
        return snapshot.rows(conn, snap)


def _show_parts() -> bool:
    """The snapshot's progress (or state); True while the worker is still building."""
    parts = _parts()
    for r in parts:
        if r["status"] in ("queued", "running"):
            text = "waiting for the worker" if r["status"] == "queued" else plain(r.get("message") or "building")
            st.progress(min(max(float(r.get("progress") or 0.0), 0.0), 1.0),
                        text=f"Snapshot of {plain(r['station'])} · {text}")
    if parts and not snapshot.pending(parts):
        try:
            snapshot.files(parts, settings)
        except StationManagerError as exc:
            st.error(plain(exc), icon=":material/error:")
        else:
            rows = sum(r.get("n_values") or 0 for r in parts)
            st.success(f"Snapshot ready: {rows:,} values of {len(parts)} station{'s' * (len(parts) > 1)} "
                       f"({', '.join(plain(r['station']) for r in parts)}).", icon=":material/check_circle:")
    return snapshot.pending(parts)


asked = _snapshot_form()
if asked is not None:
    try:
        with connection() as conn:
            st.session_state[SNAP] = snapshot.request(conn, asked, actor=user)
        st.session_state.pop(RESULT, None)
    except StationManagerError as exc:
        st.error(f"No snapshot: {plain(exc)}", icon=":material/error:")
if st.session_state.get(SNAP) is not None:
    for problem in st.session_state[SNAP].problems:
        st.warning(f"Left out: {plain(problem)}")
    live(_show_parts, pending=lambda: snapshot.pending(_parts()), key="explore_progress", every=1.0)


# --- the query --------------------------------------------------------------------------------


def _use(sql_text: str, chart_spec: dict[str, Any]) -> None:
    st.session_state[SQL] = sql_text
    st.session_state["_explore_chart"] = chart_spec


def _pick_example() -> None:
    e = examples.BY_NAME.get(st.session_state.get("explore_example"))
    if e is not None:
        _use(e.sql, {"x": e.x, "y": e.y, "colour": e.colour, "kind": e.kind})


with show_errors(), connection() as conn:
    mine_and_shared = saved.visible(conn, user)
by_id = {q["id"]: q for q in mine_and_shared}


def _pick_saved() -> None:
    q = by_id.get(st.session_state.get("explore_saved"))
    if q is not None:
        _use(q["sql"], dict(q["chart"] or {}))


def _saved_label(qid: int) -> str:
    q = by_id[qid]
    return q["name"] + (" (shared)" if q["shared"] else "") if q["mine"] else f"{q['name']} — {q['owner']}"


with st.container(border=True, key="explore_query"):
    st.subheader("Query", anchor=False)
    left, right = st.columns(2)
    left.selectbox("Examples", [e.name for e in examples.EXAMPLES], index=None, key="explore_example",
                   placeholder="Start from an example…", on_change=_pick_example,
                   help="\n\n".join(f"**{e.name}**: {e.description}" for e in examples.EXAMPLES))
    right.selectbox("Saved queries", list(by_id), index=None, key="explore_saved", format_func=_saved_label,
                    placeholder="Yours, and those shared by name…", on_change=_pick_saved)
    if SQL not in st.session_state:  # what is in the snapshot, to begin with
        first = examples.BY_NAME["Channels in the snapshot"]
        _use(first.sql, {"x": first.x, "y": first.y, "colour": first.colour, "kind": first.kind})
    sql_text = st.text_area("SQL (DuckDB)", key=SQL, height=260,
                            help="Views: `readings` (time, station, channel, measurement_type, height_m, "
                                 "orientation_deg, statistic, unit, value, flag) and `channels`.")
    parts = _parts()
    ready = bool(parts) and not snapshot.pending(parts)
    run = st.button("Run", type="primary", icon=":material/play_arrow:", key="explore_run", disabled=not ready)
    if not ready:
        st.caption("Build a snapshot first: queries run over it.")
    limit = sandbox.limits(settings)
    st.caption("Limits: " + " · ".join(f"{k} {v}" for k, v in limit.items()) + ". No files, network, "
               "extensions, ATTACH or COPY … TO.")

if run:
    try:
        paths = snapshot.files(parts, settings)
        waiting = st.empty()
        with st.spinner("Running in the sandbox…"):
            result = sandbox.run_query(
                sql_text, snapshot.views(paths), settings, derived=snapshot.DERIVED,
                on_wait=lambda n: waiting.info(f"{n} Explore queries are running, the most at once: yours waits "
                                               "for one to end…", icon=":material/hourglass_top:"))
        waiting.empty()
    except StationManagerError as exc:
        st.session_state.pop(RESULT, None)
        st.error(plain(exc), icon=":material/block:")
    else:
        frame = chart.to_frame(result.table)
        st.session_state[RESULT] = (result, frame)
        spec = st.session_state.get("_explore_chart") or {}
        gx, gy, gc = chart.guess_axes(frame)
        cols = list(frame.columns) or [None]
        st.session_state[CHART_KEYS["x"]] = spec.get("x") if spec.get("x") in cols else gx
        st.session_state[CHART_KEYS["y"]] = spec.get("y") if spec.get("y") in cols else (gy or cols[-1])
        colour = spec.get("colour") if spec.get("colour") in cols else gc
        st.session_state[CHART_KEYS["colour"]] = colour or NONE
        st.session_state[CHART_KEYS["kind"]] = spec.get("kind") if spec.get("kind") in chart.KINDS else "line"


# --- the result -------------------------------------------------------------------------------


def _result() -> None:
    result, frame = st.session_state[RESULT]
    with st.container(border=True, key="explore_result"):
        st.subheader("Result", anchor=False)
        if result.statement and frame.empty:
            st.info("The statement ran; it returns no rows.")
            return
        note = f"{len(frame):,} rows in {result.elapsed_s:.2f} s"
        if result.truncated:
            note += (f", **cut** at STATIONMANAGER_EXPLORE_MAX_ROWS ({settings.explore_max_rows:,}) or "
                     f"STATIONMANAGER_EXPLORE_MAX_RESULT_MB ({settings.explore_max_result_mb} MiB): aggregate more")
        st.caption(note)
        st.dataframe(frame, hide_index=True, key="explore_table", height=280)
        cols = list(frame.columns)
        if cols and len(frame):
            a, b, c, d = st.columns(4)
            x = a.selectbox("x", cols, key=CHART_KEYS["x"])
            y = b.selectbox("y", cols, key=CHART_KEYS["y"])
            colour = c.selectbox("Colour", [NONE, *cols], key=CHART_KEYS["colour"])
            kind = d.selectbox("Chart", tuple(chart.KINDS), format_func=chart.KINDS.get, key=CHART_KEYS["kind"])
            if x and y:
                st.plotly_chart(chart.figure(frame, x, y, None if colour == NONE else colour, kind),
                                key="explore_chart", width="stretch")
        one, two = st.columns(2)
        one.download_button("Download CSV", data=chart.to_csv(frame), file_name="explore.csv", mime="text/csv",
                            on_click="ignore", icon=":material/download:", key="explore_csv")
        two.download_button("Download Parquet", data=chart.to_parquet(result.table), file_name="explore.parquet",
                            mime="application/vnd.apache.parquet", on_click="ignore", icon=":material/download:",
                            key="explore_parquet")


if st.session_state.get(RESULT) is not None:
    _result()


# --- saved queries -----------------------------------------------------------------------------


with st.expander("Save this query", icon=":material/bookmark:"):
    name = st.text_input("Name", key="explore_save_name", max_chars=saved.MAX_NAME_CHARS)
    shared = st.checkbox("Share it: every user finds it under this name", key="explore_save_shared")
    if st.button("Save", key="explore_save"):
        spec = {k: st.session_state.get(v) for k, v in CHART_KEYS.items()}
        if spec.get("colour") == NONE:
            spec["colour"] = None
        try:
            with connection() as conn:
                row = saved.save(conn, user, name, st.session_state.get(SQL, ""), shared=shared, chart=spec)
        except StationManagerError as exc:
            st.error(plain(exc), icon=":material/error:")
        else:
            st.success(f"Saved as {plain(row['name'])}{' (shared)' if row['shared'] else ''}.")
    own = [q for q in mine_and_shared if q["mine"]]
    if own:
        gone = st.selectbox("Delete one of yours", [q["id"] for q in own], index=None, key="explore_delete_pick",
                            format_func=_saved_label)
        if gone is not None and st.button("Delete", key="explore_delete"):
            with show_errors(), connection() as conn:
                saved.delete(conn, user, gone)
            st.rerun()
