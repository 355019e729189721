"""The station page's figures, built without a database: the availability heatmap labels
every channel and groups each sensor's statistics together; flag bands are drawn as add_vrect
draws them, quickly."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from core import charts

TYPES = ("wind_speed", "wind_direction", "air_temperature")
STATS = ("max", "avg", "min", "sd")  # deliberately not in display order


def _mast(n_points: int = 16) -> list[dict]:
    """Channels of ``n_points`` sensors with four statistics each, ids in a scrambled order."""
    channels, cid = [], 0
    for p in range(n_points):
        kind = TYPES[p % len(TYPES)]
        height = float(20 + 10 * (p // len(TYPES)))
        for stat in STATS:
            cid += 1
            name = f"{kind[:4]}_{height:g}m_{p}_{stat}"
            channels.append({"id": 1000 - cid, "column_name": name, "label": f"{name} [u]", "statistic": stat,
                             "measurement_point_id": 100 + p, "point_name": f"P{p}_{kind}_{height:g}m",
                             "measurement_type": kind, "height_m": height, "orientation_deg": None})
    channels.append({"id": 5, "column_name": "RECORD", "label": "RECORD", "statistic": "unknown",
                     "measurement_point_id": None, "point_name": None, "measurement_type": None,
                     "height_m": None, "orientation_deg": None})
    return channels


def _frame(channels: list[dict], days: int = 3) -> pd.DataFrame:
    d0 = date(2025, 3, 1)
    rows = [(c["id"], d0 + timedelta(days=k), 100.0 * ((c["id"] + k) % 3) / 2) for c in channels for k in range(days)]
    return pd.DataFrame(rows, columns=["channel_id", "day", "recovery"])


def test_heatmap_of_65_channels_labels_every_row() -> None:
    channels = _mast()
    assert len(channels) >= 60
    fig = charts.heatmap(_frame(channels), channels)
    axis = fig.layout.yaxis
    assert axis.tickmode == "array"
    assert sorted(axis.ticktext) == sorted(c["label"] for c in channels)
    assert list(axis.tickvals) == list(fig.data[0].y)  # one tick on every row, none left to plotly
    # tall enough for a readable row each (plotly drops labels closer than their font)
    assert fig.layout.height >= 14 * len(channels)


def test_heatmap_rows_group_each_sensor_statistics_by_type_and_height() -> None:
    channels = _mast()
    rows = charts.heatmap_rows(channels)
    assert len(rows) == len(channels)
    groups = [r.group for r in rows]
    # each sensor's four rows are consecutive, in the order avg, sd, min, max
    for g in set(groups):
        idx = [i for i, x in enumerate(groups) if x == g]
        assert idx == list(range(idx[0], idx[0] + len(idx)))
    by_label = {c["label"]: c for c in channels}
    first = [by_label[r.label]["statistic"] for r in rows[:4]]
    assert first == ["avg", "sd", "min", "max"]
    # wind speed first, then direction, then temperature; highest first within a type
    kinds = [by_label[r.label]["measurement_type"] for r in rows if by_label[r.label]["measurement_type"]]
    assert kinds == sorted(kinds, key=TYPES.index)
    speeds = [by_label[r.label]["height_m"] for r in rows if by_label[r.label]["measurement_type"] == "wind_speed"]
    assert speeds == sorted(speeds, reverse=True)
    assert rows[-1].label == "RECORD" and rows[-1].group == "not mapped"


def test_heatmap_separates_sensors_and_names_them() -> None:
    channels = _mast(4)
    fig = charts.heatmap(_frame(channels), channels)
    lines = [s for s in fig.layout.shapes if s.type == "line"]
    assert len(lines) == 4  # between 5 groups (4 sensors, the unmapped channel)
    names = {a.text for a in fig.layout.annotations}
    assert {"P0_wind_speed_20m", "P1_wind_direction_20m", "not mapped"} <= names


def test_heatmap_cells_keep_their_channel_label_for_clicks() -> None:
    channels = _mast(2)
    fig = charts.heatmap(_frame(channels), channels)
    cells = fig.data[1]
    heat = fig.data[0]
    assert set(cells.y) == set(heat.y) == {c["label"] for c in channels}
    z = np.asarray(heat.z)
    assert z.shape == (len(channels), 3)


@pytest.mark.parametrize("n", [1, 28, 90])
def test_heatmap_height_grows_with_rows(n: int) -> None:
    channels = _mast(30)[:n]
    fig = charts.heatmap(_frame(channels, 2), channels)
    assert len(fig.layout.yaxis.ticktext) == n
    assert fig.layout.height >= 14 * n + 60


def _bands(n: int) -> list[dict]:
    t0 = datetime(2025, 3, 1, tzinfo=UTC)
    return [{"id": i, "category": list(charts.CATEGORY_COLOURS)[i % len(charts.CATEGORY_COLOURS)],
             "start_time": t0 + timedelta(hours=6 * i), "end_time": t0 + timedelta(hours=6 * i + 3)}
            for i in range(n)]


def test_flag_bands_are_what_add_vrect_draws() -> None:
    """The bands given to plotly at once are the shapes and labels of plotly's own add_vrect,
    clipped to the range; a band outside the range is left out."""
    bands = _bands(5)
    start, end = datetime(2025, 3, 1, 7, tzinfo=UTC), datetime(2025, 3, 2, 1, tzinfo=UTC)
    fig = charts.add_bands(go.Figure(go.Scatter(x=[1, 2], y=[1, 2])), bands, start, end)
    expected = go.Figure(go.Scatter(x=[1, 2], y=[1, 2]))
    for band in bands[1:]:  # 0 ends before the start; 1 and 4 are clipped
        expected.add_vrect(
            x0=charts.naive_utc(max(band["start_time"], start)), x1=charts.naive_utc(min(band["end_time"], end)),
            fillcolor=charts.CATEGORY_COLOURS[band["category"]], opacity=0.22, layer="below", line_width=0,
            name=f"flag {band['id']}", annotation_text=charts.band_label(band), annotation_position="top left",
            annotation_font_size=11)
    assert fig.layout.to_plotly_json() == expected.layout.to_plotly_json()
    assert len(fig.layout.shapes) == 4


def test_many_flag_bands_are_drawn_quickly() -> None:
    # one add_vrect per flag validated every shape again at each call: 100 flags took > 10 s
    t0 = time.perf_counter()
    fig = charts.add_bands(go.Figure(), _bands(100))
    assert time.perf_counter() - t0 < 3.0
    assert len(fig.layout.shapes) == len(fig.layout.annotations) == 100
