"""Explore's results as tables, charts and downloads, whatever types a query returns."""

from __future__ import annotations

import io
from decimal import Decimal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.explore import chart


def test_any_result_becomes_a_frame_with_unique_names_and_numbers_a_chart_can_draw():
    table = pa.table([
        pa.array([1, 2], pa.int32()), pa.array([1, 2], pa.int32()),
        pa.array([Decimal("3"), Decimal("4")], pa.decimal128(38, 0)),
        pa.array([None, None], pa.null()),
        pa.array(["x", "y"]).dictionary_encode(),
        pa.array([[1], [2, 3]]),
    ], names=["1", "1", "total", "nothing", "kind", "list"])
    frame = chart.to_frame(table)
    assert list(frame.columns) == ["1", "1_2", "total", "nothing", "kind", "list"]
    assert frame["total"].tolist() == [3.0, 4.0] and frame["kind"].tolist() == ["x", "y"]
    assert chart.guess_axes(frame) == ("1", "1_2", "kind")
    for kind in chart.KINDS:
        assert chart.figure(frame, "1", "total", "kind", kind).data
    assert chart.to_csv(frame).decode().splitlines()[0] == "1,1_2,total,nothing,kind,list"


def test_an_empty_result_has_no_axes_and_still_downloads():
    table = pa.table({"a": pa.array([], pa.int64())})
    frame = chart.to_frame(table)
    assert frame.empty and chart.guess_axes(frame) == ("a", None, None)
    assert pq.read_table(io.BytesIO(chart.to_parquet(table))).num_rows == 0


def test_an_unknown_chart_kind_is_refused():
    with pytest.raises(ValueError, match="chart kind 'pie'"):
        chart.figure(pd.DataFrame({"a": [1]}), "a", "a", None, "pie")
