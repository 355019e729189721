"""The plotly figures of the station health page, built without Streamlit.

Times are drawn as naive UTC (plotly ignores time zones), so what a user selects reads back
as UTC (:func:`core.webdata.range_from_selection`).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import pandas as pd
import plotly.graph_objects as go

from core import webdata
from core.series import Series
from core.webdata import svg_text

#: Band colour of each flag category (core.flags.CATEGORIES).
CATEGORY_COLOURS = {
    "icing": "#4fa3e0", "maintenance": "#8c8c8c", "tower shadow": "#b07cc6",
    "faulty sensor": "#e0524f", "suspect": "#f0a030", "other": "#6fb36f",
}
#: Recovery colours: red (nothing) through yellow to green (all expected readings).
_HALF_DAY = timedelta(hours=12)
RECOVERY_SCALE = [[0.0, "#b2182b"], [0.5, "#f4d35e"], [0.9, "#a6d96a"], [1.0, "#1a9850"]]


def naive_utc(t: Any) -> datetime:
    """A time as naive UTC, the way plotly draws it.

    >>> naive_utc(datetime(2025, 1, 1, 12, tzinfo=UTC))
    datetime.datetime(2025, 1, 1, 12, 0)
    """
    ts = pd.Timestamp(t)
    ts = ts.tz_localize(UTC) if ts.tzinfo is None else ts.tz_convert(UTC)
    return ts.tz_localize(None).to_pydatetime()


def band_label(band: dict[str, Any]) -> str:
    """The text on a flag band: its category and id.

    >>> band_label({"id": 7, "category": "icing"})
    'icing #7'
    """
    return f"{band['category']} #{band['id']}"


def time_series(series: Series, labels: dict[int, str], bands: Sequence[dict[str, Any]] = (),
                start: datetime | None = None, end: datetime | None = None) -> go.Figure:
    """:func:`core.webdata.chart` (a line per channel, min–max envelope from rollups, box
    selection along x) with each flag drawn as a shaded band labelled with its category,
    clipped to ``[start, end)`` so that bands never stretch the axis."""
    fig = webdata.chart(series, labels)
    add_bands(fig, bands, start, end)
    if start is not None and end is not None:
        fig.update_xaxes(range=[naive_utc(start), naive_utc(end)])
    return fig


def add_bands(fig: go.Figure, bands: Sequence[dict[str, Any]], start: datetime | None = None,
              end: datetime | None = None) -> go.Figure:
    """Shade each flag's ``[start_time, end_time)`` in its category's colour, labelled.

    The shapes and labels are what ``fig.add_vrect(..., annotation_position="top left")``
    makes, given to plotly in one update: add_vrect validates every shape again at each
    call, so 40 flags took 2 s.
    """
    shapes, labels = [], []
    for band in bands:
        a, b = band["start_time"], band["end_time"]
        if start is not None:
            a = max(a, start)
        if end is not None:
            b = min(b, end)
        if b <= a:
            continue
        x0, x1 = naive_utc(a), naive_utc(b)
        shapes.append({"type": "rect", "xref": "x", "x0": x0, "x1": x1, "yref": "y domain", "y0": 0, "y1": 1,
                       "fillcolor": CATEGORY_COLOURS.get(band["category"], "#999999"), "opacity": 0.22,
                       "layer": "below", "line": {"width": 0}, "name": f"flag {band['id']}"})
        labels.append({"text": band_label(band), "xref": "x", "x": x0, "xanchor": "left", "yref": "y domain",
                       "y": 1, "yanchor": "top", "showarrow": False, "font": {"size": 11}})
    if shapes:
        fig.update_layout(shapes=list(fig.layout.shapes) + shapes,
                          annotations=list(fig.layout.annotations) + labels)
    return fig


#: Order of measurement types and statistics in the heatmap (the exports' order).
_TYPE_ORDER = ("wind_speed", "wind_direction", "air_temperature", "relative_humidity", "air_pressure",
               "precipitation", "solar_radiation", "vertical_wind_speed", "battery_voltage")
_STAT_ORDER = ("avg", "sd", "min", "max", "gust", "sample", "sum", "count")
#: Height of a heatmap row in pixels: plotly drops tick labels closer than their font allows.
ROW_PX = 15
UNMAPPED = "not mapped"


class HeatmapRow(NamedTuple):
    """One row of the heatmap: a channel, its label and the sensor group it is drawn in."""

    channel_id: int
    label: str
    group: str


def heatmap_rows(channels: Sequence[dict[str, Any]]) -> list[HeatmapRow]:
    """The heatmap's rows: each sensor's (measurement point's) statistics together — avg, sd,
    min, max… —, sensors by measurement type, then height from the top, then boom
    orientation; channels mapped to no point come last, as one group.

    >>> ch = lambda i, name, stat, point, kind, h: {"id": i, "label": name, "statistic": stat,
    ...     "measurement_point_id": point, "point_name": point and f"P{point}", "measurement_type": kind,
    ...     "height_m": h}
    >>> rows = heatmap_rows([ch(1, "T2m", "avg", 3, "air_temperature", 2.0), ch(2, "RECORD", "unknown", None, None, None),
    ...     ch(3, "Spd40mSd", "sd", 2, "wind_speed", 40.0), ch(4, "Spd80m", "avg", 1, "wind_speed", 80.0),
    ...     ch(5, "Spd40m", "avg", 2, "wind_speed", 40.0), ch(6, "Spd40mMax", "max", 2, "wind_speed", 40.0)])
    >>> [(r.label, r.group) for r in rows]  # doctest: +NORMALIZE_WHITESPACE
    [('Spd80m', 'P1'), ('Spd40m', 'P2'), ('Spd40mSd', 'P2'), ('Spd40mMax', 'P2'), ('T2m', 'P3'),
     ('RECORD', 'not mapped')]
    """
    def rank(value: Any, order: Sequence[str]) -> int:
        return order.index(value) if value in order else len(order)

    def key(c: dict[str, Any]) -> tuple:
        if c.get("measurement_point_id") is None:
            return (1, 0, 0.0, 0.0, "", 0, c["label"])
        height = c.get("height_m")
        orientation = c.get("orientation_deg")
        return (0, rank(c.get("measurement_type"), _TYPE_ORDER), -(height if height is not None else -1e9),
                orientation if orientation is not None else -1.0, str(c.get("point_name") or c["measurement_point_id"]),
                rank(c.get("statistic"), _STAT_ORDER), c["label"])

    return [HeatmapRow(c["id"], c["label"],
                       UNMAPPED if c.get("measurement_point_id") is None
                       else str(c.get("point_name") or f"point {c['measurement_point_id']}"))
            for c in sorted(channels, key=key)]


def heatmap(frame: pd.DataFrame, channels: Sequence[dict[str, Any]]) -> go.Figure:
    """Channel × day recovery (``frame`` of :func:`core.health.heatmap`; ``channels`` as
    :func:`core.stations.channels` gives them).

    Rows follow :func:`heatmap_rows`: a thin line separates two sensors and each sensor's
    name stands at the right. Every row is labelled (explicit ``tickvals``/``ticktext``:
    left to itself plotly drops every other label once there are ~28 rows) and the figure
    grows :data:`ROW_PX` pixels per row. Plotly cannot select heatmap cells, so an
    invisible marker sits on each cell: a click selects it, and the selection's point has
    the channel label as ``y`` and the day as ``x``.
    """
    if frame.empty:
        return go.Figure()
    grid = frame.pivot(index="channel_id", columns="day", values="recovery")
    rows = [r for r in heatmap_rows(channels) if r.channel_id in grid.index]
    grid = grid.loc[[r.channel_id for r in rows]]
    days = [pd.Timestamp(d).to_pydatetime() + _HALF_DAY for d in grid.columns]  # cell centres
    names = [svg_text(r.label) for r in rows]  # also the values a click reads back: clicked_cell unescapes
    fig = go.Figure(go.Heatmap(
        z=grid.to_numpy(), x=days, y=names, zmin=0, zmax=100, colorscale=RECOVERY_SCALE, xgap=1, ygap=1,
        colorbar={"title": {"text": "recovery %", "side": "right"}, "thickness": 12, "orientation": "h",
                  "x": 0.0, "xanchor": "left", "y": 1.0, "yanchor": "bottom", "len": 0.3, "lenmode": "fraction"},
        hoverinfo="skip",
    ))
    xs = [d for _ in names for d in days]
    ys = [n for n in names for _ in days]
    fig.add_trace(go.Scatter(
        x=xs, y=ys, mode="markers", customdata=grid.to_numpy().ravel(),
        marker={"symbol": "square", "size": 12, "opacity": 0}, selected={"marker": {"opacity": 0}},
        unselected={"marker": {"opacity": 0}}, showlegend=False, name="cells",
        hovertemplate="%{y}<br>%{x|%Y-%m-%d}: %{customdata:.0f} %<extra></extra>",
    ))
    groups = [r.group for r in rows]
    starts = [i for i, g in enumerate(groups) if i == 0 or g != groups[i - 1]]
    # given to update_layout at once: fig.add_shape/add_annotation validate every shape again
    # at each call (a heatmap of 80 channels took 0.6 s to build that way)
    lines = [{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": i - 0.5, "y1": i - 0.5,
              "line": {"color": "#222222", "width": 2}}
             for i in starts[1:]]  # category i sits at y = i; the line between two sensors at i - 0.5
    names_right = [{"text": svg_text(groups[i]), "xref": "paper", "x": 1.005, "xanchor": "left", "yref": "y",
                    "y": (i + j - 1) / 2, "yanchor": "middle", "showarrow": False,
                    "font": {"size": 10, "color": "#555555"}}
                   for i, j in zip(starts, starts[1:] + [len(rows)])]
    fig.update_layout(
        shapes=lines, annotations=names_right,
        height=max(200, ROW_PX * len(rows) + 90), margin={"l": 10, "r": 150, "t": 40, "b": 10},
        # fixed ranges: the invisible markers would pad them by half a row and half a day
        yaxis={"range": [len(rows) - 0.5, -0.5], "tickfont": {"size": 10}, "tickmode": "array",
               "tickvals": names, "ticktext": names, "type": "category"},
        xaxis={"type": "date", "range": [days[0] - _HALF_DAY, days[-1] + _HALF_DAY]},
        clickmode="event+select", dragmode=False, hovermode="closest",
    )
    return fig


def clicked_cell(selection: Any) -> tuple[str, datetime] | None:
    """(channel label, day) of the heatmap cell a selection holds, or None.

    >>> clicked_cell({"points": [{"x": "2025-03-02 12:00", "y": "WS_80m_NE_Avg [m/s]", "curve_number": 1}]})
    ('WS_80m_NE_Avg [m/s]', datetime.datetime(2025, 3, 2, 0, 0, tzinfo=datetime.timezone.utc))
    >>> clicked_cell({"points": [{"x": "2025-03-02", "y": "&lt;b&gt;T&lt;/b&gt;", "curve_number": 1}]})[0]
    '<b>T</b>'
    >>> clicked_cell({"points": []}) is None
    True
    """
    points = (selection or {}).get("points") or []
    if not points or points[0].get("x") is None or points[0].get("y") is None:
        return None
    day = pd.Timestamp(points[0]["x"]).floor("D").tz_localize(UTC).to_pydatetime()
    return html.unescape(str(points[0]["y"])), day  # heatmap() escaped the labels for plotly


def ratio(frame: pd.DataFrame, label: str) -> go.Figure:
    """The ratio of two anemometers over time, with 1 marked."""
    label = svg_text(label)
    fig = go.Figure(go.Scatter(
        x=pd.to_datetime(frame["time"], utc=True).dt.tz_localize(None), y=frame["ratio"],
        mode="lines+markers", marker={"size": 3}, line={"width": 1}, name=label,
    ))
    fig.add_hline(y=1.0, line_dash="dot", line_color="#888888")
    fig.update_layout(height=320, margin={"l": 10, "r": 10, "t": 30, "b": 10}, yaxis_title=label,
                      xaxis_title="time (UTC)")
    return fig


def scatter(frame: pd.DataFrame, x_label: str, y_label: str) -> go.Figure:
    """One channel against another, with the 1:1 line."""
    x_label, y_label = svg_text(x_label), svg_text(y_label)
    fig = go.Figure(go.Scattergl(
        x=frame["x"], y=frame["y"], mode="markers", marker={"size": 3, "opacity": 0.5},
        name=f"{y_label} vs {x_label}",
    ))
    if not frame.empty:
        lo = float(min(frame["x"].min(), frame["y"].min()))
        hi = float(max(frame["x"].max(), frame["y"].max()))
        fig.add_shape(type="line", x0=lo, y0=lo, x1=hi, y1=hi, line={"dash": "dot", "color": "#888888"})
    fig.update_layout(height=420, margin={"l": 10, "r": 10, "t": 30, "b": 10}, xaxis_title=x_label,
                      yaxis_title=y_label)
    return fig
