"""Metadata: a station's loggers, measurement points and channels.

Everyone may read it; an analyst may correct one channel's mapping (audited) and import an
IEA Task 43 document, which lists every error with its JSON path or changes nothing.
"""

from __future__ import annotations

import streamlit as st

from core import auth, iea43, metadata, stations, webdata
from core.metadata import MEASUREMENT_TYPES, STATISTICS, MetadataError
from pages.common import connection, current_user, plain, require_role, show_errors

role = require_role("viewer")
may_edit = auth.allowed(role, "analyst")
user = current_user() or ""
NOTICE = "_metadata_notice"
DATETIME = st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm")


def _task43_import() -> None:
    """Upload a Task 43 JSON document: its summary, or every problem with its JSON path."""
    st.subheader("Import an IEA Task 43 document")
    with st.form("task43", clear_on_submit=True):
        doc = st.file_uploader(
            "IEA Wind Task 43 WRA data model (JSON)", type=["json"],
            help="Versions 1.0–1.3. Creates or updates the stations it describes: loggers, "
                 "measurement points, sensors, calibrations and column mappings.",
        )
        submitted = st.form_submit_button("Import", icon=":material/upload_file:")
    if not submitted:
        return
    if doc is None:
        st.warning("Choose a JSON file first.")
        return
    with show_errors():  # other errors (e.g. the database's) stop the page
        try:
            with connection() as conn:
                report = iea43.import_metadata(conn, webdata.read_json_upload(doc.getvalue(), doc.name),
                                               user, name=doc.name)
        except MetadataError as exc:
            n = len(exc.errors)
            st.error(f"{plain(exc.file or doc.name)}: {n} problem{'s' if n != 1 else ''} in the document; "
                     "nothing was imported.", icon=":material/error:")
            st.code("\n".join(exc.errors), language=None, wrap_lines=True, height=min(40 + 24 * n, 480))
            return
    st.session_state[NOTICE] = report.summary()
    if report.stations:
        st.query_params["station"] = report.stations[0]
    st.rerun()


title = st.empty()
if notice := st.session_state.pop(NOTICE, None):
    st.success(plain(notice), icon=":material/check_circle:")  # plain keeps its lines

with show_errors(), connection() as conn:
    names = webdata.station_names(conn)
if not names:
    title.title("Metadata")
    st.info("No stations yet. Upload logger files, or import a Task 43 document.")
    if may_edit:
        _task43_import()
    st.stop()

wanted = st.query_params.get("station")
name = st.selectbox("Station", names, index=names.index(wanted) if wanted in names else 0, width=360)
st.query_params["station"] = name
title.title(f"Metadata · {plain(name)}")

with show_errors(), connection() as conn:
    meta = metadata.station_metadata(conn, stations.station(conn, name)["id"])
station, loggers, points, channels = (
    meta[k] for k in ("station", "loggers", "measurement_points", "channels"))

st.subheader("Station")
a, b, c, d = st.columns(4)
a.metric("Latitude", f"{station['latitude']:.5f}°" if station["latitude"] is not None else "–")
b.metric("Longitude", f"{station['longitude']:.5f}°" if station["longitude"] is not None else "–")
c.metric("Elevation", f"{station['elevation_m']:g} m" if station["elevation_m"] is not None else "–")
d.metric("Kind", plain(station["kind"] or "–"))
if station["notes"]:
    st.caption(plain(station["notes"]))

st.subheader("Loggers")
if loggers:
    st.dataframe(webdata.logger_table(loggers), hide_index=True, placeholder="–",
                 column_config={"valid from": DATETIME, "valid to": DATETIME})
else:
    st.caption("No logger recorded yet: the first imported file creates one from its header.")

st.subheader("Measurement points")
if points:
    st.dataframe(webdata.point_table(points), hide_index=True, placeholder="–",
                 column_config={"height (m)": st.column_config.NumberColumn(format="%g")})
else:
    st.caption("No measurement points yet.")

st.subheader("Channels")
unmapped = [c["column_name"] for c in channels if not c["mapped"]]
if unmapped:
    st.warning(
        f"{len(unmapped)} of {len(channels)} channels are not mapped to a measurement point: "
        + ", ".join(plain(c) for c in unmapped[:20]) + (" …" if len(unmapped) > 20 else "")
        + (". Correct them below or import a Task 43 document." if may_edit else "."),
        icon=":material/link_off:",
    )
if channels:
    st.dataframe(webdata.channel_table(channels), hide_index=True, placeholder="–", column_config={
        "height (m)": st.column_config.NumberColumn(format="%g"),
        "mapped": st.column_config.CheckboxColumn(help="mapped to a measurement point"),
    })
else:
    st.caption("No channels yet: they appear when the first file of this station is imported.")
if meta["channel_mappings"]:
    with st.expander(f"Column mappings over time ({len(meta['channel_mappings'])})"):
        st.dataframe(
            [{"column": m["column_name"], "point": m["point_name"], "statistic": m["statistic"],
              "unit": m["unit"], "ignored": m["is_ignored"], "valid from": m["valid_from"],
              "valid to": m["valid_to"], "source": m["source"]} for m in meta["channel_mappings"]],
            hide_index=True, placeholder="–", column_config={"valid from": DATETIME, "valid to": DATETIME},
        )

if not may_edit:
    st.caption("Read-only: an analyst can correct channel mappings and import Task 43 documents.")
    st.stop()

if channels:
    st.subheader("Correct a channel's mapping")
    by_id = {c["id"]: c for c in sorted(channels, key=lambda c: bool(c["mapped"]))}
    chosen = st.selectbox(
        "Channel", list(by_id), key=f"map_channel_{station['id']}", width=360,
        format_func=lambda i: by_id[i]["column_name"] + ("" if by_id[i]["mapped"] else " (unmapped)"),
    )
    ch = by_id[chosen]
    with st.form(f"map_{chosen}"):
        a, b, c, d, e = st.columns(5)
        mtype = a.selectbox("Measurement type", MEASUREMENT_TYPES,
                            index=MEASUREMENT_TYPES.index(ch["measurement_type"] or "unknown"),
                            help="unknown: not mapped to a measurement point")
        height = b.number_input("Height (m)", value=ch["height_m"], step=0.5, format="%g",
                                placeholder="none")
        orientation = c.number_input("Orientation (°)", value=ch["orientation_deg"], min_value=0.0,
                                     max_value=360.0, step=1.0, format="%g", placeholder="none",
                                     help="boom bearing, degrees from north")
        statistic = d.selectbox("Statistic", STATISTICS, index=STATISTICS.index(ch["statistic"]))
        unit = e.text_input("Unit", value=ch["unit"])
        if st.form_submit_button("Save mapping", type="primary", icon=":material/save:"):
            with show_errors(), connection() as conn:
                new = metadata.set_channel_mapping(conn, chosen, mtype, height, orientation, statistic,
                                                   unit.strip(), user)
            st.session_state[NOTICE] = (f"{new['column_name']} is now mapped to {new['point_name']}."
                                        if new["mapped"] else f"{new['column_name']} is now unmapped.")
            st.rerun()

_task43_import()
