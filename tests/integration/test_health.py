"""Station health on a real database: recovery per channel and day (with and without flagged
readings), flag bands, anemometer pairs and their ratio, the scatter, and flagged readings
left out of chart series — each checked against figures counted directly from ``reading``."""

from __future__ import annotations

import doctest
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pytest

from core import charts, demo, flags, health, ingest, rollups, series

pytestmark = pytest.mark.integration

MAST = "Health Mast"


def t(day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2025, 4, day, hour, minute, tzinfo=UTC)


@pytest.fixture
def mast(conn, settings, tmp_path) -> dict:
    """Three days (2025-04-07 .. 04-09) of the demo mast: ``{"id", "ch": {column: id}}``."""
    paths = [p for p in demo.generate(tmp_path, start=date(2025, 4, 7), days=3) if "ballymore" in p.name]
    for p in paths:
        with conn.transaction():
            rec = ingest.receive(conn, p, station=MAST, settings=settings)
        ingest.import_file(rec.id)
    sid = conn.execute("SELECT id FROM station WHERE name = %s", (MAST,)).fetchone()["id"]
    ch = {r["column_name"]: r["id"] for r in conn.execute("SELECT column_name, id FROM channel WHERE station_id = %s",
                                                           (sid,))}
    return {"id": sid, "ch": ch}


def test_doctests() -> None:
    for module in (health, series, charts):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__


# --- recovery ---------------------------------------------------------------------------------


def _cell(frame: pd.DataFrame, channel_id: int, day: int) -> float:
    row = frame[(frame["channel_id"] == channel_id) & (frame["day"] == date(2025, 4, day))]
    assert len(row) == 1
    return float(row["recovery"].iloc[0])


def test_heatmap_gives_every_channel_and_day_with_gaps_counted(conn, mast) -> None:
    ws = mast["ch"]["WS_80m_NE_Avg"]
    with conn.transaction():  # six hours lost on 04-08: 36 of 144 readings
        conn.execute("DELETE FROM reading WHERE channel_id = %s AND time >= %s AND time < %s", (ws, t(8, 6), t(8, 12)))
    rollups.refresh_rollups(conn, t(8), t(8, 23), [ws])  # after the commit: at level 2 it cannot run inside one
    # a range that starts mid-day covers that whole day, and a day with no data is 0 %
    frame = health.heatmap(conn, mast["id"], t(7, 6), t(11))
    assert list(frame.columns) == ["channel_id", "day", "recovery"]
    assert len(frame) == len(mast["ch"]) * 4
    assert sorted(frame["day"].unique()) == [date(2025, 4, d) for d in (7, 8, 9, 10)]
    assert _cell(frame, ws, 7) == 100.0
    assert _cell(frame, ws, 8) == 75.0
    assert _cell(frame, ws, 10) == 0.0
    assert frame[frame["day"] == date(2025, 4, 9)]["recovery"].eq(100.0).all()


def test_heatmap_expects_readings_from_the_loggers_interval(conn, mast) -> None:
    conn.execute("UPDATE logger SET interval_s = 300 WHERE station_id = %s", (mast["id"],))  # 288 a day expected
    frame = health.heatmap(conn, mast["id"], t(7), t(8))
    assert frame["recovery"].eq(50.0).all() and len(frame) == len(mast["ch"])


def test_heatmap_of_an_empty_range_is_empty(conn, mast) -> None:
    assert health.heatmap(conn, mast["id"], t(8), t(8)).empty
    assert health.heatmap(conn, mast["id"], t(9), t(8), exclude_flagged=True).empty


def _flags(conn, mast) -> dict[str, int]:
    ch = mast["ch"]
    sw = ch["WS_80m_SW_Avg"]
    ids = {
        # 04-08 22:30 .. 04-10 01:10: raw, hourly, daily, hourly and raw pieces
        "long": flags.add_flag(conn, MAST, [sw], t(8, 22, 30), t(10, 1, 10), "icing", "", "ana"),
        "inside": flags.add_flag(conn, MAST, [sw], t(8, 23), t(9, 2), "suspect", "", "ana"),  # overlaps: once
        "station": flags.add_flag(conn, MAST, "station", t(7, 12), t(7, 13), "maintenance", "", "ana"),
        "deleted": flags.add_flag(conn, MAST, [ch["WS_60m_NE_Avg"]], t(7), t(8), "other", "", "ana"),
    }
    flags.delete_flag(conn, ids["deleted"], "ana")
    return ids


def test_heatmap_without_flagged_readings(conn, mast) -> None:
    _flags(conn, mast)
    ch = mast["ch"]
    sw, ne = ch["WS_80m_SW_Avg"], ch["WS_80m_NE_Avg"]
    plain = health.heatmap(conn, mast["id"], t(7), t(10))
    frame = health.heatmap(conn, mast["id"], t(7), t(10), exclude_flagged=True)
    assert plain["recovery"].eq(100.0).all()
    assert _cell(frame, sw, 7) == pytest.approx(100 * 138 / 144)  # the station's hour: 6 readings
    assert _cell(frame, ne, 7) == pytest.approx(100 * 138 / 144)
    assert _cell(frame, sw, 8) == pytest.approx(100 * (144 - 9) / 144)  # 22:30 .. 23:50
    assert _cell(frame, sw, 9) == 0.0
    assert _cell(frame, ne, 8) == 100.0 and _cell(frame, ch["WS_60m_NE_Avg"], 7) == pytest.approx(100 * 138 / 144)
    # every cell equals a count of the unflagged readings themselves
    brute = conn.execute("""
        SELECT r.channel_id, (date_trunc('day', r.time AT TIME ZONE 'UTC'))::date AS day, count(*) AS n
        FROM reading r JOIN channel c ON c.id = r.channel_id
        WHERE c.station_id = %(sid)s AND r.time >= %(a)s AND r.time < %(b)s
          AND NOT EXISTS (SELECT 1 FROM flag f WHERE f.station_id = c.station_id AND f.deleted_at IS NULL
                          AND r.time >= f.start_time AND r.time < f.end_time
                          AND (f.whole_station OR EXISTS (SELECT 1 FROM flag_channel fc
                                                          WHERE fc.flag_id = f.id AND fc.channel_id = r.channel_id)))
        GROUP BY 1, 2""", {"sid": mast["id"], "a": t(7), "b": t(10)}).fetchall()
    expected = {(r["channel_id"], r["day"]): 100 * r["n"] / 144 for r in brute}
    got = {(r.channel_id, r.day): r.recovery for r in frame.itertuples()}
    assert got == pytest.approx({k: expected.get(k, 0.0) for k in got})


# --- flag bands ----------------------------------------------------------------------------------


def test_flag_bands_are_the_live_flags_on_the_channels_or_the_station(conn, mast) -> None:
    ids = _flags(conn, mast)
    ch = mast["ch"]
    other = flags.add_flag(conn, MAST, [ch["AirT_2m_Avg"]], t(8), t(9), "suspect", "", "ana")
    bands = health.flag_bands(conn, mast["id"], [ch["WS_80m_SW_Avg"]], t(7), t(9))
    assert [b["id"] for b in bands] == [ids["station"], ids["long"], ids["inside"]]
    assert set(bands[0]) >= {"id", "start_time", "end_time", "category", "note", "channel_ids", "whole_station"}
    assert bands[0]["whole_station"] and bands[1]["channel_ids"] == [ch["WS_80m_SW_Avg"]]
    assert (bands[1]["start_time"], bands[1]["end_time"], bands[1]["category"]) == (t(8, 22, 30), t(10, 1, 10), "icing")
    assert [b["id"] for b in health.flag_bands(conn, mast["id"], [ch["WS_80m_NE_Avg"]], t(7, 13), t(10))] == []
    assert other not in [b["id"] for b in health.flag_bands(conn, mast["id"], [ch["WS_60m_NE_Avg"]], t(7), t(10))]


# --- series without flagged readings --------------------------------------------------------------


def _raw(conn, channel_id: int) -> pd.DataFrame:
    rows = conn.execute("SELECT time, value FROM reading WHERE channel_id = %s ORDER BY time", (channel_id,)).fetchall()
    return pd.DataFrame(rows, columns=["time", "value"])


@pytest.mark.parametrize("resolution", ["raw", "1h", "1d"])
def test_series_without_flagged_readings_matches_the_raw_readings(conn, mast, resolution) -> None:
    _flags(conn, mast)
    sw = mast["ch"]["WS_80m_SW_Avg"]
    kept = series.series(conn, [sw], t(7), t(10), resolution=resolution, exclude_flagged=True).frame
    everything = series.series(conn, [sw], t(7), t(10), resolution=resolution).frame
    raw = _raw(conn, sw)
    flagged = ((raw["time"] >= t(8, 22, 30)) & (raw["time"] < t(10, 1, 10))) | (
        (raw["time"] >= t(7, 12)) & (raw["time"] < t(7, 13)))
    raw = raw[~flagged]
    freq = {"raw": "10min", "1h": "1h", "1d": "1D"}[resolution]
    want = raw.groupby(raw["time"].dt.floor(freq))["value"].agg(["mean", "min", "max"]).reset_index()
    assert len(kept) == {"raw": 432 - 6 - 9 - 144, "1h": 72 - 1 - 1 - 24, "1d": 2}[resolution]
    assert len(everything) == {"raw": 432, "1h": 72, "1d": 3}[resolution]
    assert kept["time"].tolist() == want["time"].tolist()
    for col in ("mean", "min", "max"):
        assert np.allclose(kept[col].to_numpy(float), want[col].to_numpy(float)), col
    if resolution == "1h":  # 22:00 .. 23:00 on 04-08 is recomputed from 22:00, 22:10, 22:20
        row = kept[kept["time"] == t(8, 22)].iloc[0]
        assert row["mean"] == pytest.approx(raw[(raw["time"] >= t(8, 22)) & (raw["time"] < t(8, 22, 30))]["value"].mean())


def test_series_without_flags_is_unchanged(conn, mast) -> None:
    ws = mast["ch"]["WS_80m_NE_Avg"]
    a = series.series(conn, [ws], t(7), t(10), resolution="1h").frame
    b = series.series(conn, [ws], t(7), t(10), resolution="1h", exclude_flagged=True).frame
    pd.testing.assert_frame_equal(a, b)


# --- anemometer pairs, ratio, scatter -----------------------------------------------------------------


def test_anemometer_pairs_are_avg_wind_speeds_of_two_sensors_at_one_height(conn, mast) -> None:
    ch = mast["ch"]
    assert health.anemometer_pairs(conn, mast["id"]) == [
        (ch["WS_80m_NE_Avg"], ch["WS_80m_SW_Avg"], 80.0),
        (ch["WS_60m_NE_Avg"], ch["WS_60m_SW_Avg"], 60.0),
        (ch["WS_40m_NE_Avg"], ch["WS_40m_SW_Avg"], 40.0),
    ]


@pytest.mark.parametrize("resolution", ["raw", "1h"])
def test_pair_ratio_is_a_over_b_where_both_blow(conn, mast, resolution) -> None:
    a, b = mast["ch"]["WS_80m_NE_Avg"], mast["ch"]["WS_80m_SW_Avg"]
    got = health.pair_ratio(conn, a, b, t(7), t(10), resolution=resolution)
    ra, rb = _raw(conn, a), _raw(conn, b)
    if resolution == "1h":
        ra = ra.groupby(ra["time"].dt.floor("1h"))["value"].mean().reset_index()
        rb = rb.groupby(rb["time"].dt.floor("1h"))["value"].mean().reset_index()
    both = ra.merge(rb, on="time", suffixes=("_a", "_b"))
    both = both[(both["value_a"] >= 3) & (both["value_b"] >= 3)]
    assert len(got) == len(both) > {"raw": 300, "1h": 50}[resolution]
    assert got["time"].tolist() == both["time"].tolist()
    assert np.allclose(got["ratio"], both["value_a"] / both["value_b"])


def test_default_resolution_of_the_ratio_follows_the_range(conn, mast) -> None:
    a, b = mast["ch"]["WS_80m_NE_Avg"], mast["ch"]["WS_80m_SW_Avg"]
    assert len(health.pair_ratio(conn, a, b, t(7), t(10), min_speed=0)) == 432  # short: raw
    assert len(health.pair_ratio(conn, a, b, datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 12, 1, tzinfo=UTC),
                                 min_speed=0)) == 3  # 11 months: daily means


def test_scatter_pairs_readings_at_the_same_times_thinned_evenly(conn, mast) -> None:
    x, y = mast["ch"]["WS_80m_NE_Avg"], mast["ch"]["AirT_2m_Avg"]
    full = health.scatter(conn, x, y, t(7), t(10))
    assert len(full) == 432 and full.attrs["resolution"] == "raw"
    rx, ry = _raw(conn, x), _raw(conn, y)
    assert full["x"].tolist() == rx["value"].tolist() and full["y"].tolist() == ry["value"].tolist()
    thin = health.scatter(conn, x, y, t(7), t(10), max_points=200)  # every 3rd reading
    assert thin.attrs["resolution"] == "raw" and len(thin) == 144
    assert thin["time"].tolist() == full["time"].tolist()[::3]
    hourly = health.scatter(conn, x, y, t(7), t(10), max_points=50)  # 432 > 4 x 50: hourly means, every 2nd
    assert hourly.attrs["resolution"] == "1h" and len(hourly) == 36
    means = rx.groupby(rx["time"].dt.floor("1h"))["value"].mean()
    assert np.allclose(hourly["x"], means.iloc[::2].to_numpy())
    assert hourly["time"].tolist() == means.index[::2].tolist()


def test_scatter_without_flagged_pairs(conn, mast) -> None:
    _flags(conn, mast)
    x, y = mast["ch"]["WS_80m_NE_Avg"], mast["ch"]["WS_80m_SW_Avg"]
    kept = health.scatter(conn, x, y, t(7), t(10), exclude_flagged=True)
    assert len(kept) == 432 - 6 - 9 - 144  # y flagged by "long", both by the station's hour
    hourly = health.scatter(conn, x, y, t(7), t(10), max_points=50, exclude_flagged=True)
    assert len(hourly) == 36 - 1 - 1 - 12  # buckets 12:00 on 04-07, 22:00 on 04-08 and all of 04-09 touched


def test_scatter_refuses_bad_limits_and_empty_ranges(conn, mast) -> None:
    x, y = mast["ch"]["WS_80m_NE_Avg"], mast["ch"]["AirT_2m_Avg"]
    with pytest.raises(ValueError, match="max_points must be at least 1"):
        health.scatter(conn, x, y, t(7), t(10), max_points=0)
    assert health.scatter(conn, x, y, t(10), t(7)).empty
