"""Averaging steps on the local clock of the export's time zone, in zones with half-hour and
quarter-hour offsets and with daylight saving time (a 30-minute change on Lord Howe Island).

Each test builds a synthetic station (10-minute readings with known values), exports it, and
compares the file with an independent pandas computation: hourly steps start at every instant
the local clock shows a whole hour (found by scanning every UTC minute), daily steps are the
local calendar days (pandas' own time-zone conversion).
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from core import db, exports, ingest, metadata
from core.exports import ExportRequest

pytestmark = pytest.mark.integration

STATION = "Island Mast"
COLUMNS = ("Spd80mN", "T2m")


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


def make_station(conn, spans: list[tuple[datetime, datetime]], gaps: list[tuple[datetime, datetime]] = (),
                 phase_min: int = 0) -> pd.DataFrame:
    """A station with 10-minute readings of Spd80mN and T2m over ``spans`` (minus ``gaps``),
    stamped ``phase_min`` minutes after each UTC ten-minute mark; returns them (UTC index)."""
    with conn.transaction():
        st = ingest.ensure_station(conn, STATION, "test")
        for c in COLUMNS:
            db.fetch_one(conn, "upsert_channel", station_id=st["id"], column_name=c, statistic="unknown", unit="")
        metadata.apply_conventions(conn, st["id"], "test")
        conn.execute("INSERT INTO logger (station_id, interval_s, timestamp_is_end) VALUES (%s, 600, false)",
                     (st["id"],))
        fid = conn.execute("INSERT INTO source_file (sha256, original_name, size_bytes, station_id, status) "
                           "VALUES (repeat('a', 64), 'synthetic', 0, %s, 'imported') RETURNING id",
                           (st["id"],)).fetchone()["id"]
        ids = {r["column_name"]: r["id"] for r in conn.execute(
            "SELECT column_name, id FROM channel WHERE station_id = %s", (st["id"],)).fetchall()}
        times = pd.DatetimeIndex(np.concatenate([
            pd.date_range(a, b, freq="10min", inclusive="left").as_unit("ns").asi8 for a, b in spans]), tz=UTC)
        times = times + pd.Timedelta(minutes=phase_min)
        for a, b in gaps:
            times = times[(times < a) | (times >= b)]
        k = ((times.asi8 // 600_000_000_000) % 997).astype(float)  # known, varied values
        data = pd.DataFrame({"Spd80mN": 3.0 + (k % 13) * 0.7, "T2m": -4.0 + (k % 29) * 0.3}, index=times)
        with conn.cursor().copy("COPY reading (channel_id, time, value, source_file_id) FROM STDIN") as cp:
            for col in COLUMNS:
                for t, v in data[col].items():
                    cp.write_row((ids[col], t.to_pydatetime(), float(v), fid))
    return data


def export_csv(conn, **kw) -> pd.DataFrame:
    """A CSV export (uncalibrated, flagged values kept): its table, stamps as written."""
    row = exports.request_export(conn, ExportRequest(STATION, "csv", calibrated=False, exclude_categories=(),
                                                     headers="logger", **kw), "ana")
    if row["status"] == "queued":
        row = exports.build_export(row["id"])
    assert row["status"] == "done", row["error"]
    table = pd.read_csv(io.StringIO(exports.export_file(row).read_text()), dtype={"Timestamp": str})
    assert len(table) == row["n_rows"]
    return table


def local_whole_hours(a: datetime, b: datetime, tz: str) -> pd.DatetimeIndex:
    """Every instant in [a, b) at which the clock of ``tz`` shows a whole hour (UTC)."""
    minutes = pd.date_range(a, b, freq="1min", inclusive="left").as_unit("ns")
    local = minutes.tz_convert(tz)
    return minutes[(local.minute == 0) & (local.second == 0)]


def expected_hourly(data: pd.DataFrame, a: datetime, b: datetime, tz: str) -> pd.DataFrame:
    """Mean of each step from one local whole hour to the next, one row per step (NaN: none)."""
    edges = local_whole_hours(a - timedelta(hours=2), b + timedelta(hours=2), tz)
    first, last = edges[edges <= a][-1], edges[edges < b][-1]
    steps = edges[(edges >= first) & (edges <= last)]
    data = data[(data.index >= a) & (data.index < b)]
    step_of = steps[np.searchsorted(steps.asi8, data.index.asi8, side="right") - 1]
    return data.groupby(step_of).mean().reindex(steps)


def stamps(table: pd.DataFrame) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(table["Timestamp"], utc=True)).as_unit("ns")


def minutes_between(table: pd.DataFrame) -> set[int]:
    """The lengths of the steps (but the last), in minutes."""
    return set((np.diff(stamps(table).asi8) // 60_000_000_000).tolist())


def assert_values(table: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(stamps(table)) == list(expected.index)
    for col in COLUMNS:
        np.testing.assert_allclose(table[col].to_numpy(), expected[col].to_numpy(), rtol=1e-12)


LORD_HOWE = "Australia/Lord_Howe"
# 2025-04-06 02:00 LHDT (+11) back to 01:30 LHST (+10:30), at 15:00 UTC on the 5th;
# 2025-10-05 02:00 LHST (+10:30) on to 02:30 LHDT (+11), at 15:30 UTC on the 4th.
APRIL = (utc(2025, 4, 3, 13), utc(2025, 4, 8, 13))
OCTOBER = (utc(2025, 10, 2, 13), utc(2025, 10, 7, 13))


@pytest.mark.parametrize("span", [APRIL, OCTOBER], ids=["dst-ends", "dst-starts"])
def test_lord_howe_hourly_steps_stay_on_local_whole_hours_across_half_hour_dst(conn, span):
    data = make_station(conn, [span], gaps=[(span[0] + timedelta(days=1), span[0] + timedelta(days=1, hours=5))])
    a, b = span
    table = export_csv(conn, averaging="1h", timezone=LORD_HOWE, start=a, end=b)
    local = [datetime.fromisoformat(s) for s in table["Timestamp"]]
    assert all(t.minute == 0 for t in local), [str(t) for t in local if t.minute][:3]  # never :30
    offsets = {t.utcoffset() for t in local}
    assert offsets == {timedelta(hours=10, minutes=30), timedelta(hours=11)}
    expected = expected_hourly(data, a, b, LORD_HOWE)
    assert_values(table, expected)
    # the step in which the clock turns lasts 90 minutes; every other one an hour
    lengths = list(np.diff(stamps(table).asi8) // 60_000_000_000)
    assert minutes_between(table) == {60, 90} and lengths.count(90) == 1
    # every time step present: the local hours the 5-hour gap covers whole are blank rows
    assert table[list(COLUMNS)].isna().all(axis=1).sum() == (5 if span == APRIL else 4)


def test_lord_howe_daily_steps_are_local_days_of_23_5_and_24_5_hours(conn):
    data = make_station(conn, [APRIL, OCTOBER])
    for a, b in (APRIL, OCTOBER):
        table = export_csv(conn, averaging="1d", timezone=LORD_HOWE, start=a, end=b)
        local = pd.DatetimeIndex(data.index.tz_convert(LORD_HOWE))
        part = data[(data.index >= a) & (data.index < b)]
        day = pd.DatetimeIndex(local[(data.index >= a) & (data.index < b)].normalize())
        expected = part.groupby(day).mean()
        expected.index = expected.index.tz_convert(UTC)
        assert [datetime.fromisoformat(s).time().isoformat() for s in table["Timestamp"]] == ["00:00:00"] * len(table)
        assert_values(table, expected)
        assert minutes_between(table) == {24 * 60, 24 * 60 + (30 if a == APRIL[0] else -30)}


def test_lord_howe_ten_minute_steps_are_the_readings_themselves(conn):
    data = make_station(conn, [OCTOBER], gaps=[(utc(2025, 10, 4, 15), utc(2025, 10, 4, 16))])
    table = export_csv(conn, averaging="10min", timezone=LORD_HOWE)
    steps = pd.date_range(*OCTOBER, freq="10min", inclusive="left").as_unit("ns")
    assert list(stamps(table)) == list(steps)  # every step, the gap as blank rows
    assert_values(table, data.reindex(steps))


@pytest.mark.parametrize(("tz", "minutes"), [("Asia/Kathmandu", 45), ("Asia/Kolkata", 30)])
def test_hourly_steps_on_the_local_hour_in_zones_with_part_hour_offsets(conn, tz, minutes):
    span = (utc(2025, 6, 1), utc(2025, 6, 3))
    data = make_station(conn, [span])
    table = export_csv(conn, averaging="1h", timezone=tz)
    assert {datetime.fromisoformat(s).minute for s in table["Timestamp"]} == {0}
    assert {t.minute for t in stamps(table)} == {60 - minutes}  # the local hour, in UTC
    assert_values(table, expected_hourly(data, *span, tz))


@pytest.mark.parametrize("phase", [0, 5])
def test_kathmandu_ten_minute_steps_keep_each_reading_at_its_own_time(conn, phase):
    """+05:45 is not a whole number of 10-minute steps: a reading logged on the UTC (or the
    local) ten-minute mark keeps its own time stamp instead of moving to a local :x0."""
    span = (utc(2025, 6, 1), utc(2025, 6, 2))
    data = make_station(conn, [span], gaps=[(utc(2025, 6, 1, 6), utc(2025, 6, 1, 7))], phase_min=phase)
    table = export_csv(conn, averaging="10min", timezone="Asia/Kathmandu")
    steps = pd.date_range(*span, freq="10min", inclusive="left").as_unit("ns") + pd.Timedelta(minutes=phase)
    assert list(stamps(table)) == list(steps)
    assert_values(table, data.reindex(steps))
    assert table["Timestamp"].iloc[0] == ("2025-06-01T05:45:00+05:45" if phase == 0 else "2025-06-01T05:50:00+05:45")


def test_ten_minute_steps_follow_most_readings_not_a_stray_first_one(conn):
    span = (utc(2025, 6, 1), utc(2025, 6, 2))
    data = make_station(conn, [span])
    stray = span[0] - timedelta(minutes=3)
    conn.execute("INSERT INTO reading (channel_id, time, value, source_file_id) SELECT id, %s, 42.0, "
                 "(SELECT min(id) FROM source_file) FROM channel WHERE column_name = 'Spd80mN'", (stray,))
    table = export_csv(conn, averaging="10min", timezone="Asia/Kathmandu")
    steps = pd.date_range(span[0] - timedelta(minutes=10), span[1], freq="10min", inclusive="left").as_unit("ns")
    assert list(stamps(table)) == list(steps)  # 05:35, 05:45, 05:55 … local: the readings' own times
    assert table["Spd80mN"].iloc[0] == 42.0 and np.isnan(table["T2m"].iloc[0])  # in the step it starts in
    assert_values(table.iloc[1:], data.reindex(steps[1:]))


def test_regular_dst_zone_hourly_has_every_hour_and_the_repeated_one_twice(conn):
    spans = [(utc(2025, 3, 29), utc(2025, 4, 1)), (utc(2025, 10, 25), utc(2025, 10, 28))]
    data = make_station(conn, spans)
    for a, b in spans:
        table = export_csv(conn, averaging="1h", timezone="Europe/Berlin", start=a, end=b)
        assert minutes_between(table) == {60}  # every step one real hour
        assert {datetime.fromisoformat(s).minute for s in table["Timestamp"]} == {0}
        assert_values(table, expected_hourly(data, a, b, "Europe/Berlin"))
    assert {"2025-10-26T02:00:00+02:00", "2025-10-26T02:00:00+01:00"} <= set(table["Timestamp"])


def test_grid_edges_on_lord_howe_change_days():
    """The steps' starts (UTC) around both changes of 2025, hourly and daily."""
    zone = ZoneInfo(LORD_HOWE)

    def local(grid: exports.Grid) -> list[str]:
        return [f"{datetime.fromtimestamp(e / 1e6, zone):%d %H:%M%z}" for e in grid.edges(0, grid.n_bins)]

    hourly = exports.Grid(utc(2025, 4, 5, 13, 10), utc(2025, 4, 5, 17), "1h", LORD_HOWE)
    assert local(hourly) == ["06 00:00+1100", "06 01:00+1100", "06 02:00+1030", "06 03:00+1030",
                             "06 04:00+1030"]
    hourly = exports.Grid(utc(2025, 10, 4, 14), utc(2025, 10, 4, 17), "1h", LORD_HOWE)
    assert local(hourly) == ["05 00:00+1030", "05 01:00+1030", "05 03:00+1100", "05 04:00+1100"]
    daily = exports.Grid(utc(2025, 4, 4, 14), utc(2025, 4, 6, 13, 30), "1d", LORD_HOWE)
    assert local(daily) == ["05 00:00+1100", "06 00:00+1100", "07 00:00+1030"]
