"""What the pages show, without Streamlit or a database: ``core.webdata``."""

from __future__ import annotations

import doctest
from datetime import UTC, datetime

import pandas as pd
import pytest

from core import webdata
from core.series import Series


def test_doctests() -> None:
    result = doctest.testmod(webdata)
    assert result.attempted > 10 and result.failed == 0


@pytest.mark.parametrize(
    ("age_hours", "state"),
    [(None, "no data"), (0.0, "ok"), (1.16, "ok"), (1.17, "late"), (24.16, "late"), (24.17, "silent")],
)
def test_freshness_counts_from_the_expected_next_reading(age_hours, state) -> None:
    # a reading's time is the start of its 10-minute period: the next is due 10 min later
    assert webdata.freshness(age_hours) == state


def _series(resolution: str) -> Series:
    times = pd.date_range("2025-03-01", periods=6, freq="10min", tz="UTC")
    frame = pd.DataFrame({
        "channel_id": [1] * 3 + [2] * 3, "time": list(times[:3]) * 2,
        "mean": [1.0, 2, 3, 4, 5, 6], "min": [0.5, 1, 2, 3, 4, 5], "max": [2.0, 3, 4, 5, 6, 7],
    })
    return Series(frame=frame, resolution=resolution, truncated=False)


def test_raw_chart_has_one_line_per_channel_and_selects_boxes() -> None:
    fig = webdata.chart(_series("raw"), {1: "WS_80m_NE_Avg [m/s]", 2: "WS_60m_NE_Avg [m/s]"})
    assert [t.name for t in fig.data] == ["WS_80m_NE_Avg [m/s]", "WS_60m_NE_Avg [m/s]"]
    assert fig.layout.dragmode == "select"
    # drawn as naive UTC, so a box selection reads back as UTC
    assert pd.Timestamp(fig.data[0].x[0]) == pd.Timestamp("2025-03-01 00:00")  # no offset


def test_rollup_chart_adds_a_min_max_envelope() -> None:
    fig = webdata.chart(_series("1h"), {1: "a", 2: "b"})
    assert [t.name for t in fig.data] == ["a max", "a min", "a", "b max", "b min", "b"]
    assert fig.data[1].fill == "tonexty" and not fig.data[1].showlegend


def test_selection_in_either_direction_gives_an_ordered_utc_range() -> None:
    start, end = webdata.range_from_selection({"box": [{"x": ["2025-03-02 00:00", "2025-03-01 06:00"], "y": [0, 1]}]})
    assert (start, end) == (datetime(2025, 3, 1, 6, tzinfo=UTC), datetime(2025, 3, 2, tzinfo=UTC))
    assert webdata.range_from_selection({"box": [{"x": ["2025-03-01", "2025-03-01"]}]}) is None
    assert webdata.range_from_selection(None) is None
