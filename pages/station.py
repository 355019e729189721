"""Station health: availability per channel and day, charts of the chosen channels with their
flags, flagging by box selection (analysts), anemometer pairs and one channel against another."""

from __future__ import annotations

from datetime import datetime

import streamlit as st

from core import auth, charts, flags, health, records, series, stations, sync_health, webdata
from core.settings import get_settings
from pages.common import connection, current_user, plain, require_role, show_errors, station_picker

role = require_role("viewer")
analyst = auth.allowed(role, "analyst")

title = st.empty()
pick_station, pick_channels, pick_dates = st.columns([1.2, 3, 1.5])
name = station_picker(pick_station, title="Stations")
title.title(plain(name))

with show_errors(), connection() as conn:
    station = stations.station(conn, name)
    channels = stations.channels(conn, station["id"])
    first, last = stations.time_range(conn, station["id"])
    sync = sync_health.station(conn, station["id"])
if sync is not None:
    st.caption(sync.markdown)
if not channels or first is None or last is None:
    st.info("No readings for this station yet.")
    st.stop()

sid = station["id"]
zoom_key, chart_key, heat_key = f"zoom_{sid}", f"chart_{sid}", f"heat_{sid}"
picked_key, channels_key, undo_key = f"picked_{sid}", f"channels_{sid}", f"undo_{sid}"
picker_key = f"channel_picker_{sid}"
by_label = {c["label"]: c for c in channels}
by_id = {c["id"]: c for c in channels}
HEATMAP_MAX_DAYS = 400


def _reset_range() -> None:
    st.session_state.pop(zoom_key, None)
    st.session_state.pop(picked_key, None)


def _on_chart_select() -> None:
    """Box selection on the chart: a viewer zooms at once; an analyst chooses what to do."""
    picked = webdata.range_from_selection(st.session_state[chart_key].selection)
    if picked is None:
        st.session_state.pop(picked_key, None)
    elif analyst:
        st.session_state[picked_key] = picked
    else:
        st.session_state[zoom_key] = picked


def _zoom_to_selection() -> None:
    if st.session_state.get(picked_key):
        st.session_state[zoom_key] = st.session_state.pop(picked_key)


def _open_day() -> None:
    """A click on a heatmap cell: chart that day, with the cell's channel."""
    cell = charts.clicked_cell(st.session_state[heat_key].selection)
    if cell is None:
        return
    label, day = cell
    st.session_state[zoom_key] = health.day_range(day)
    st.session_state.pop(picked_key, None)
    chosen = list(st.session_state.get(channels_key) or [])
    if label in by_label and label not in chosen:
        st.session_state[channels_key] = chosen + [label]
        st.session_state[picker_key] = st.session_state.get(picker_key, 0) + 1  # a new widget shows it


# The chosen channels are kept apart from the multiselect and passed to it as its default, and
# a choice made by the page (a heatmap click) shows in a new multiselect (a new key). Setting
# the widget's value through session state is not safe: when a rerun (the remember-me
# cookie's) comes right after, the browser can keep an empty multiselect, and the next chart
# selection then sends no channels at all.
if channels_key not in st.session_state:
    st.session_state[channels_key] = [c["label"] for c in webdata.default_channels(channels)]
labels = pick_channels.multiselect(
    "Channels", list(by_label), default=[x for x in st.session_state[channels_key] if x in by_label],
    key=f"channels_pick_{sid}_{st.session_state.get(picker_key, 0)}",
)
st.session_state[channels_key] = labels
dates = pick_dates.date_input(
    "Date range (UTC)", value=webdata.default_dates(first, last), key=f"dates_{sid}",
    min_value=first.date(), max_value=last.date(), on_change=_reset_range,
)
hide = st.toggle("Hide flagged values", key=f"hide_{sid}",
                 help="Leave out the readings that flags cover, in the heatmap and in every chart.")

# --- availability ----------------------------------------------------------------------------
day_start, day_end = webdata.dates_to_range(dates)
shown_start = max(day_start, day_end - health.DAY * HEATMAP_MAX_DAYS)
with show_errors(), connection() as conn:
    heat = health.heatmap(conn, sid, shown_start, day_end, exclude_flagged=hide)
st.subheader("Availability")
st.plotly_chart(charts.heatmap(heat, channels), key=heat_key,
                on_select=_open_day, selection_mode="points")
st.caption(
    f"Recovery of each channel per UTC day (readings stored / expected){', flagged readings left out' if hide else ''}, "
    f"{webdata.describe_range(shown_start, day_end)}. Click a cell to open that day in the chart below."
    + (f" Only the last {HEATMAP_MAX_DAYS} days of the range are shown." if shown_start > day_start else "")
)

# --- time series -------------------------------------------------------------------------------
st.subheader("Time series")
if not labels:
    st.info("Choose at least one channel.")
    st.stop()

start, end = st.session_state.get(zoom_key) or (day_start, day_end)
ids = [by_label[label]["id"] for label in labels]
with show_errors(), connection() as conn:
    data = series.series(conn, ids, start, end, exclude_flagged=hide)
    bands = health.flag_bands(conn, sid, ids, start, end)

if st.session_state.get(zoom_key):
    info, button = st.columns([5, 1], vertical_alignment="center")
    info.caption(f"Zoomed in to {webdata.describe_range(start, end)}")
    button.button("Reset range", icon=":material/zoom_out:", on_click=_reset_range)
if data.truncated:
    st.warning(
        f"Too many points: the chart is cut at {get_settings().max_chart_points:,} points per "
        "channel. Narrow the range or choose fewer channels."
    )
if data.frame.empty:
    st.info(f"No readings in {webdata.describe_range(start, end)}"
            f"{' that no flag covers' if hide else ''}.")
else:
    st.plotly_chart(
        charts.time_series(data, {by_label[label]["id"]: label for label in labels}, bands, start, end),
        key=chart_key, on_select=_on_chart_select, selection_mode="box",
    )
    st.caption(
        f"{webdata.resolution_caption(data.resolution)} {webdata.describe_range(start, end)}. "
        + ("Drag across the chart to select a period to zoom to or to flag (a flag covers every whole "
           "record the selection touches)." if analyst
           else "Drag across the chart to zoom in.")
    )


# --- flagging (analysts) ----------------------------------------------------------------------------
DIALOG_KEYS = ("dlg_channels", "dlg_whole", "dlg_category", "dlg_note")


def _open_flag_dialog() -> None:
    for key in DIALOG_KEYS:
        st.session_state.pop(key, None)
    st.session_state["dlg_channels"] = list(labels)


def _widen(kind: str) -> None:
    """The dialog's shortcuts: every channel at the chosen channels' heights, or of their sensors."""
    chosen = [by_label[x] for x in st.session_state.get("dlg_channels") or labels if x in by_label]
    wanted: set[int] = {c["id"] for c in chosen}
    with show_errors(), connection() as conn:
        for c in chosen:
            if kind == "height" and c.get("height_m") is not None:
                wanted.update(flags.channels_at_height(conn, sid, c["height_m"]))
            elif kind == "sensor" and c.get("measurement_point_id") is not None:
                wanted.update(flags.channels_of_point(conn, c["measurement_point_id"]))
    st.session_state["dlg_channels"] = [c["label"] for c in channels if c["id"] in wanted]


@st.dialog("Flag this period", width="large")
def flag_dialog(picked: tuple[datetime, datetime], snapped: records.Snapped) -> None:
    """Channels, category and note of a new flag over the selected period, snapped to whole records."""
    st.markdown(f"**{webdata.describe_range(snapped.start, snapped.end)}**")
    st.caption(f"Snapped to whole records: {records.describe(snapped, picked)}. "
               f"You selected {webdata.describe_range(*picked)}.")
    whole = st.session_state.get("dlg_whole", False)
    if whole:
        st.info("The whole station: every channel, also channels added later.")
        st.button("Choose channels instead", on_click=st.session_state.update, args=({"dlg_whole": False},))
    else:
        st.multiselect("Channels", list(by_label), key="dlg_channels")
        height, sensor, everything = st.columns(3)
        height.button("All at this height", on_click=_widen, args=("height",), width="stretch")
        sensor.button("All statistics of this sensor", on_click=_widen, args=("sensor",), width="stretch")
        everything.button("Whole station", on_click=st.session_state.update, args=({"dlg_whole": True},),
                          width="stretch")
    category = st.selectbox("Category", flags.CATEGORIES, key="dlg_category")
    note = st.text_area("Note", key="dlg_note", placeholder="What happened, and how you know")
    if st.button("Save", type="primary", icon=":material/flag:"):
        chosen = "station" if whole else [by_label[x]["id"] for x in st.session_state.get("dlg_channels") or []]
        with show_errors(), connection() as conn:
            flags.add_flag(conn, sid, chosen, snapped.start, snapped.end, category, note,
                           author=current_user() or "")
        for key in DIALOG_KEYS:
            st.session_state.pop(key, None)
        st.session_state.pop(picked_key, None)
        st.rerun()


picked = st.session_state.get(picked_key) if analyst else None
if picked:
    with show_errors(), connection() as conn:
        snapped = records.snap_selection(conn, sid, *picked)
    info, zoom, flag = st.columns([4, 1.2, 1.4], vertical_alignment="center")
    info.markdown(f"Selected: **{webdata.describe_range(*picked)}**")
    info.caption(f"A flag covers {records.describe(snapped)}: "
                 f"{webdata.describe_range(snapped.start, snapped.end)}.")
    zoom.button("Zoom to selection", icon=":material/zoom_in:", on_click=_zoom_to_selection)
    if flag.button("Flag this period…", icon=":material/flag:", type="primary", on_click=_open_flag_dialog):
        flag_dialog(picked, snapped)


def _delete(flag_id: int) -> None:
    with show_errors(), connection() as conn:
        flags.delete_flag(conn, flag_id, current_user() or "")
    st.session_state[undo_key] = flag_id


def _undelete(flag_id: int) -> None:
    with show_errors(), connection() as conn:
        flags.undelete_flag(conn, flag_id, current_user() or "")
    st.session_state.pop(undo_key, None)


st.subheader("Flags in view")
if bands:
    table = webdata.flag_table(bands)
    if analyst:
        for band, row in zip(bands, table.to_dict("records"), strict=True):
            text, button = st.columns([6, 1], vertical_alignment="center")
            text.markdown(webdata.flag_line(row))
            button.button("Delete", key=f"delete_flag_{band['id']}", icon=":material/delete:",
                          on_click=_delete, args=(band["id"],))
    else:
        st.dataframe(table, hide_index=True)
else:
    st.caption("No flags in this range.")
if analyst and st.session_state.get(undo_key):
    st.button(f"Undo: restore flag #{st.session_state[undo_key]}", icon=":material/undo:",
              on_click=_undelete, args=(st.session_state[undo_key],))

# --- comparisons -------------------------------------------------------------------------------------
st.subheader("Comparisons")
# only the open tab is built (its queries and chart): the other is built when chosen
pairs_tab, scatter_tab = st.tabs(["Anemometer pairs", "Scatter"], key=f"comparisons_{sid}", on_change="rerun")
if pairs_tab.open:
    with pairs_tab:
        with show_errors(), connection() as conn:
            pairs = health.anemometer_pairs(conn, sid)
        if not pairs:
            st.info("No two wind-speed averages at the same height (check the Metadata page).")
        else:
            def _pair_name(p: tuple[int, int, float]) -> str:
                return f"{p[2]:g} m: {by_id[p[0]]['column_name']} / {by_id[p[1]]['column_name']}"

            pair = st.selectbox("Pair", pairs, format_func=_pair_name, key=f"pair_{sid}")
            with show_errors(), connection() as conn:
                ratio = health.pair_ratio(conn, pair[0], pair[1], start, end, exclude_flagged=hide)
            if ratio.empty:
                st.info(f"No times when both read at least {health.PAIR_MIN_SPEED:g} m/s in this range.")
            else:
                st.plotly_chart(charts.ratio(ratio, _pair_name(pair).split(": ", 1)[1]), key=f"ratio_{sid}")
                st.caption(f"Ratio of the means where both are at least {health.PAIR_MIN_SPEED:g} m/s; "
                           f"median {ratio['ratio'].median():.3f}. A drift away from its usual value "
                           "points at a faulty or iced anemometer.")
if scatter_tab.open:
    with scatter_tab:
        all_labels = list(by_label)
        x_col, y_col = st.columns(2)
        x_label = x_col.selectbox("x", all_labels, index=all_labels.index(labels[0]), key=f"scatter_x_{sid}")
        y_default = labels[1] if len(labels) > 1 else all_labels[(all_labels.index(labels[0]) + 1) % len(all_labels)]
        y_label = y_col.selectbox("y", all_labels, index=all_labels.index(y_default), key=f"scatter_y_{sid}")
        limit = get_settings().max_chart_points
        with show_errors(), connection() as conn:
            points = health.scatter(conn, by_label[x_label]["id"], by_label[y_label]["id"], start, end,
                                    max_points=limit, exclude_flagged=hide)
        if points.empty:
            st.info("No readings of both channels at the same times in this range.")
        else:
            st.plotly_chart(charts.scatter(points, x_label, y_label), key=f"scatter_{sid}")
            source = webdata.RESOLUTION_NAMES[points.attrs.get("resolution", "raw")]
            st.caption(f"{len(points):,} pairs of {source} at the same times, spread evenly over "
                       f"{webdata.describe_range(start, end)} (at most {limit:,}).")
