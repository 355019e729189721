"""The plotly figures of the station health page, built without Streamlit.

Times are drawn as naive UTC (plotly ignores time zones), so what a user selects reads back
as UTC (:func:`core.webdata.range_from_selection`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from core import webdata
from core.series import Series

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
    """Shade each flag's ``[start_time, end_time)`` in its category's colour, labelled."""
    for band in bands:
        a, b = band["start_time"], band["end_time"]
        if start is not None:
            a = max(a, start)
        if end is not None:
            b = min(b, end)
        if b <= a:
            continue
        fig.add_vrect(
            x0=naive_utc(a), x1=naive_utc(b), fillcolor=CATEGORY_COLOURS.get(band["category"], "#999999"),
            opacity=0.22, layer="below", line_width=0, name=f"flag {band['id']}",
            annotation_text=band_label(band), annotation_position="top left",
            annotation_font_size=11,
        )
    return fig


def heatmap(frame: pd.DataFrame, labels: dict[int, str]) -> go.Figure:
    """Channel × day recovery (``frame`` of :func:`core.health.heatmap`).

    Plotly cannot select heatmap cells, so an invisible marker sits on each cell: a click
    selects it, and the selection's point has the channel label as ``y`` and the day as ``x``.
    """
    if frame.empty:
        return go.Figure()
    grid = frame.pivot(index="channel_id", columns="day", values="recovery")
    order = [c for c in labels if c in grid.index]
    grid = grid.loc[order]
    days = [pd.Timestamp(d).to_pydatetime() + _HALF_DAY for d in grid.columns]  # cell centres
    names = [labels[c] for c in order]
    fig = go.Figure(go.Heatmap(
        z=grid.to_numpy(), x=days, y=names, zmin=0, zmax=100, colorscale=RECOVERY_SCALE, xgap=1, ygap=1,
        colorbar={"title": {"text": "recovery %"}, "thickness": 12}, hoverinfo="skip",
    ))
    xs = [d for _ in names for d in days]
    ys = [n for n in names for _ in days]
    fig.add_trace(go.Scatter(
        x=xs, y=ys, mode="markers", customdata=grid.to_numpy().ravel(),
        marker={"symbol": "square", "size": 12, "opacity": 0}, selected={"marker": {"opacity": 0}},
        unselected={"marker": {"opacity": 0}}, showlegend=False, name="cells",
        hovertemplate="%{y}<br>%{x|%Y-%m-%d}: %{customdata:.0f} %<extra></extra>",
    ))
    fig.update_layout(
        height=max(200, 12 * len(order) + 70), margin={"l": 10, "r": 10, "t": 10, "b": 10},
        yaxis={"autorange": "reversed", "tickfont": {"size": 9}}, xaxis={"type": "date"},
        clickmode="event+select", dragmode=False, hovermode="closest",
    )
    return fig


def clicked_cell(selection: Any) -> tuple[str, datetime] | None:
    """(channel label, day) of the heatmap cell a selection holds, or None.

    >>> clicked_cell({"points": [{"x": "2025-03-02 12:00", "y": "WS_80m_NE_Avg [m/s]", "curve_number": 1}]})
    ('WS_80m_NE_Avg [m/s]', datetime.datetime(2025, 3, 2, 0, 0, tzinfo=datetime.timezone.utc))
    >>> clicked_cell({"points": []}) is None
    True
    """
    points = (selection or {}).get("points") or []
    if not points or points[0].get("x") is None or points[0].get("y") is None:
        return None
    day = pd.Timestamp(points[0]["x"]).floor("D").tz_localize(UTC).to_pydatetime()
    return str(points[0]["y"]), day


def ratio(frame: pd.DataFrame, label: str) -> go.Figure:
    """The ratio of two anemometers over time, with 1 marked."""
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
