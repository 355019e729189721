"""Station: a chart of the chosen channels over a date range; box-select on it to zoom."""

from __future__ import annotations

import functools

import streamlit as st

from core import series, stations, webdata
from core.settings import get_settings
from pages.common import connection, require_role, show_errors

require_role("viewer")

with show_errors(), connection() as conn:
    names = webdata.station_names(conn)
if not names:
    st.title("Stations")
    st.info("No stations yet. Import logger files with `stationmanager ingest FILE --station NAME`.")
    st.stop()

title = st.empty()
pick_station, pick_channels, pick_dates = st.columns([1.2, 3, 1.5])
wanted = st.query_params.get("station")
name = pick_station.selectbox("Station", names, index=names.index(wanted) if wanted in names else 0)
st.query_params["station"] = name
title.title(name)

with show_errors(), connection() as conn:
    station = stations.station(conn, name)
    channels = stations.channels(conn, station["id"])
    first, last = stations.time_range(conn, station["id"])
if not channels or first is None or last is None:
    st.info("No readings for this station yet.")
    st.stop()

sid = station["id"]
zoom_key, chart_key = f"zoom_{sid}", f"chart_{sid}"
by_label = {c["label"]: c for c in channels}


def _zoom_to_selection() -> None:
    """Box selection on the chart → narrow the range to its x extent."""
    picked_range = webdata.range_from_selection(st.session_state[chart_key].selection)
    if picked_range:
        st.session_state[zoom_key] = picked_range


labels = pick_channels.multiselect(
    "Channels", list(by_label), key=f"channels_{sid}",
    default=[c["label"] for c in webdata.default_channels(channels)],
)
dates = pick_dates.date_input(
    "Date range (UTC)", value=webdata.default_dates(first, last), key=f"dates_{sid}",
    min_value=first.date(), max_value=last.date(),
    on_change=functools.partial(st.session_state.pop, zoom_key, None),
)
if not labels:
    st.info("Choose at least one channel.")
    st.stop()

start, end = st.session_state.get(zoom_key) or webdata.dates_to_range(dates)
ids = [by_label[label]["id"] for label in labels]
with show_errors(), connection() as conn:
    data = series.series(conn, ids, start, end)

if st.session_state.get(zoom_key):
    info, button = st.columns([5, 1], vertical_alignment="center")
    info.caption(f"Zoomed in to {webdata.describe_range(start, end)}")
    button.button("Reset range", icon=":material/zoom_out:",
                  on_click=functools.partial(st.session_state.pop, zoom_key, None))
if data.frame.empty:
    st.info(f"No readings in {webdata.describe_range(start, end)}.")
    st.stop()
if data.truncated:
    st.warning(
        f"Too many points: the chart is cut at {get_settings().max_chart_points:,} points per "
        "channel. Narrow the range or choose fewer channels."
    )
st.plotly_chart(
    webdata.chart(data, {by_label[label]["id"]: label for label in labels}),
    key=chart_key, on_select=_zoom_to_selection, selection_mode="box",
)
st.caption(
    f"{webdata.resolution_caption(data.resolution)} {webdata.describe_range(start, end)}. "
    "Drag across the chart to zoom in."
)
