"""The tidy long table (core.tidy): the same values as the export of the same options, its
metadata and flag columns, every format, empty periods, bad queries, and bounded memory.

The mast is brightwind's Windographer sample of tests/integration/test_exports.py (29 channels,
2016-01-09 15:30 .. 01-10 23:50, 10-minute steps with gaps).
"""

from __future__ import annotations

import io
import json
import threading
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import psutil
import pyarrow.parquet as pq
import pytest

import core.settings
from core import cli, exports, flags, tidy
from core.errors import NotFound
from core.tidy import QueryError, ReadingsQuery
from tests.integration.test_exports import STATION, add_calibration, build, channel_ids, mast  # noqa: F401

pytestmark = pytest.mark.integration


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


def stream(src, fmt: str = "parquet", **kw) -> bytes:
    return b"".join(tidy.stream_readings(src, ReadingsQuery(station=kw.pop("station", STATION), **kw), fmt))


def table(src, **kw) -> pd.DataFrame:
    return pq.read_table(io.BytesIO(stream(src, **kw))).to_pandas()


def export_wide(conn, **kw) -> pd.DataFrame:
    """The wide Parquet export of the same options, its columns renamed to logger column names."""
    row = build(conn, format="parquet", **kw)
    names = {c["header"]: c["column_name"] for c in row["provenance"]["columns"]}
    return pq.read_table(exports.export_file(row)).to_pandas().set_index("time").rename(columns=names)


def pivot(df: pd.DataFrame) -> pd.DataFrame:
    return df.pivot(index="time", columns="channel", values="value")


@pytest.fixture
def flagged(mast):
    ids = channel_ids(mast)
    flags.add_flag(mast, STATION, [ids["Spd80mN"]], utc(2016, 1, 10, 0), utc(2016, 1, 10, 1), "icing", author="ana")
    flags.add_flag(mast, STATION, "station", utc(2016, 1, 10, 2), utc(2016, 1, 10, 2, 20), "maintenance",
                   author="ana")
    add_calibration(mast, "Spd80mN", utc(2016, 1, 10), None)
    return mast


@pytest.mark.parametrize("options", [
    {},  # calibrated, every flagged value removed, 10 minutes
    {"calibrated": False, "exclude_categories": ()},
    {"exclude_categories": ("maintenance",), "averaging": "1h"},
    {"calibrated": False, "averaging": "1d"},
])
def test_values_equal_the_exports_for_the_same_options(flagged, db_url, options):
    wide = export_wide(flagged, **options)
    got = pivot(table(db_url, **options))
    want = wide.dropna(how="all")[sorted(got.columns)]
    assert set(got.columns) == set(wide.columns)
    got.columns.name = None
    pd.testing.assert_frame_equal(got, want, check_freq=False, check_index_type=False, check_names=False)
    # the export's own tidy layout is the very same table
    row = build(flagged, format="parquet", parquet_layout="tidy", **options)
    assert pq.read_table(exports.export_file(row)).equals(pq.read_table(io.BytesIO(stream(db_url, **options))))


def test_metadata_columns_and_utc_times(mast):
    mast.execute("UPDATE measurement_point SET unit = 'm/s' WHERE measurement_type = 'wind_speed'")
    df = table(mast, calibrated=False)
    assert list(df.columns) == list(tidy.COLUMNS)
    assert str(df["time"].dt.tz) == "UTC"
    spd = df[df["channel"] == "Spd80mN"]
    assert len(spd) == 188 and spd["time"].is_monotonic_increasing
    one = spd.iloc[0]
    assert (one["station"], one["measurement_type"], one["height_m"], one["orientation_deg"], one["statistic"],
            one["unit"]) == (STATION, "wind_speed", 80.0, 0.0, "avg", "m/s")
    assert one["time"] == pd.Timestamp("2016-01-09 15:30", tz="UTC")
    temp = df[df["channel"] == "T2m"].iloc[0]
    assert (temp["measurement_type"], temp["height_m"], temp["statistic"]) == ("air_temperature", 2.0, "avg")
    assert pd.isna(temp["orientation_deg"]) and pd.isna(temp["unit"])  # the sample gives no unit
    assert df["flag"].isna().all() and df["value"].notna().all()
    assert df["time"].is_monotonic_increasing


def test_flagged_values_are_removed_or_marked(flagged):
    ids = channel_ids(flagged)
    marked = table(flagged, channel_ids=(ids["Spd80mN"], ids["T2m"]), exclude_categories=())
    spd = marked[marked["channel"] == "Spd80mN"].set_index("time")["flag"]
    assert len(spd) == 188
    assert (spd[utc(2016, 1, 10, 0):utc(2016, 1, 10, 0, 50)] == "icing").all()
    assert (spd[utc(2016, 1, 10, 2):utc(2016, 1, 10, 2, 10)] == "maintenance").all()
    assert spd.notna().sum() == 6 + 2
    t2m = marked[marked["channel"] == "T2m"].set_index("time")["flag"]
    assert t2m.notna().sum() == 2  # the whole-station maintenance flag only
    some = table(flagged, channel_ids=(ids["Spd80mN"],), exclude_categories=("maintenance",))
    assert len(some) == 188 - 2 and set(some["flag"].dropna()) == {"icing"} and some["flag"].notna().sum() == 6
    removed = table(flagged, channel_ids=(ids["Spd80mN"],))
    assert len(removed) == 188 - 8 and removed["flag"].isna().all()
    hourly = table(flagged, channel_ids=(ids["Spd80mN"],), exclude_categories=(), averaging="1h")
    by_hour = hourly.set_index("time")["flag"]
    assert by_hour[utc(2016, 1, 10, 0)] == "icing" and by_hour[utc(2016, 1, 10, 2)] == "maintenance"
    assert by_hour.notna().sum() == 2


def test_csv_and_json_lines_hold_the_same_rows(flagged):
    ids = channel_ids(flagged)
    kw = {"channel_ids": (ids["Spd80mN"], ids["T2m"]), "exclude_categories": ()}
    want = table(flagged, **kw)
    csv = pd.read_csv(io.BytesIO(stream(flagged, "csv", **kw)))
    lines = stream(flagged, "json", **kw).decode().splitlines()
    rows = [json.loads(line) for line in lines]
    assert list(csv.columns) == list(tidy.COLUMNS) == list(rows[0])
    assert csv["time"].iloc[0] == rows[0]["time"] == "2016-01-09T15:30:00Z"
    assert len(csv) == len(rows) == len(want)
    np.testing.assert_array_equal(csv["value"].to_numpy(), want["value"].to_numpy())  # shortest exact text
    assert [r["value"] for r in rows] == want["value"].tolist()
    assert [r["flag"] for r in rows] == [None if pd.isna(f) else f for f in want["flag"]]
    assert rows[-1]["orientation_deg"] is None and rows[-1]["channel"] == "T2m"
    assert csv["flag"].fillna("").tolist() == want["flag"].astype(object).fillna("").tolist()


@pytest.mark.parametrize("fmt", tidy.FORMATS)
def test_an_empty_period_gives_an_empty_table(mast, fmt):
    data = stream(mast, fmt, start=utc(2020, 1, 1), end=utc(2020, 2, 1))
    if fmt == "parquet":
        t = pq.read_table(io.BytesIO(data))
        assert t.num_rows == 0 and t.schema.names == list(tidy.COLUMNS)
    elif fmt == "csv":
        assert data == (",".join(tidy.COLUMNS) + "\n").encode()
    else:
        assert data == b""


@pytest.mark.parametrize(("params", "message"), [
    ({"station": STATION, "start": "yesterday"}, "start: 'yesterday' is not a date and time"),
    ({"station": STATION, "averaging": "5min"}, "averaging: '5min' is not one of: 10min, 1h, 1d"),
    ({"station": STATION, "exclude": "snow"}, "exclude: flag category 'snow' is not one of"),
    ({"station": STATION, "calibrated": "maybe"}, "calibrated: 'maybe' is not true or false"),
    ({"station": STATION, "channels": "a,b"}, "channels: 'a,b' is not a list of channel ids"),
    ({"station": STATION, "channels": "1", "types": "wind_speed"}, "give channels or types, not both"),
    ({"station": STATION, "start": "2016-01-10", "end": "2016-01-09"}, "end: the end must come after the start"),
    ({"station": STATION, "colour": "red"}, "unknown parameter 'colour'; known: station"),
    ({}, "station: give the station's name"),
])
def test_bad_parameters_are_refused_with_what_to_change(params, message):
    with pytest.raises(QueryError, match=message):
        ReadingsQuery.from_params(params)


def test_bad_queries_are_refused_before_any_byte(mast):
    with pytest.raises(NotFound, match="there is no station 'Nowhere'"):
        tidy.stream_readings(mast, ReadingsQuery("Nowhere"), "parquet")
    with pytest.raises(QueryError, match="has no channel with id 999999"):
        tidy.stream_readings(mast, ReadingsQuery(STATION, channel_ids=(999999,)), "csv")
    with pytest.raises(QueryError, match="format: 'xlsx' is not one of: parquet, csv, json"):
        tidy.stream_readings(mast, ReadingsQuery(STATION), "xlsx")
    with pytest.raises(QueryError, match="types: choose at least one"):
        tidy.stream_readings(mast, ReadingsQuery(STATION, measurement_types=()), "csv")


def test_from_params_reads_query_strings():
    q = ReadingsQuery.from_params({"station": STATION, "types": ["wind_speed", "wind_direction"],
                                   "start": "2016-01-09T16:00:00Z", "end": "2016-01-10T01:00:00+01:00",
                                   "exclude": "icing, maintenance", "averaging": "1h", "format": "csv"})
    assert q.measurement_types == ("wind_direction", "wind_speed")
    assert (q.start, q.end) == (utc(2016, 1, 9, 16), utc(2016, 1, 10, 0))
    assert q.exclude_categories == ("icing", "maintenance") and q.calibrated
    assert ReadingsQuery.from_params({"station": "M", "exclude": "all"}).exclude_categories is None
    assert ReadingsQuery.from_params({"station": "M", "exclude": ""}).exclude_categories == ()


def test_a_long_period_streams_batch_by_batch_in_bounded_memory(mast, db_url, monkeypatch):
    """A year of 29 channels (1.5 M readings) read 60,000 at a time: a chunk per batch, and
    the process grows by far less than the table it sends."""
    row = mast.execute("SELECT id FROM source_file LIMIT 1").fetchone()
    mast.execute("""
        INSERT INTO reading (channel_id, time, value, source_file_id)
        SELECT c.id, t, random() * 20, %s
        FROM channel c CROSS JOIN generate_series(timestamptz '2017-01-01', timestamptz '2017-12-31 23:50',
                                                  interval '10 minutes') AS t""", (row["id"],))
    monkeypatch.setenv("STATIONMANAGER_READINGS_BATCH", "60000")
    core.settings._current = None
    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = [base]
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], proc.memory_info().rss)

    watcher = threading.Thread(target=watch)
    watcher.start()
    size, chunks = 0, 0
    try:
        for chunk in tidy.stream_readings(db_url, ReadingsQuery(STATION, start=utc(2017, 1, 1), end=utc(2018, 1, 1),
                                                               exclude_categories=()), "parquet"):
            size, chunks = size + len(chunk), chunks + 1
    finally:
        done.set()
        watcher.join()
    n = 29 * 52_560
    assert chunks >= n // 60_000
    growth = (peak[0] - base) / 2**20
    print(f"RSS growth {growth:.0f} MB, {chunks} chunks")
    # the whole table would take ~150 MB as Arrow arrays (and far more as Python objects)
    assert growth < 60, f"RSS grew by {growth:.0f} MB while streaming {n:,} readings ({size / 2**20:.0f} MB)"


def test_cli_exports_the_tidy_layout(flagged, tmp_path, capsys):
    out = tmp_path / "mast.parquet"
    code = cli.main(["export", "--station", STATION, "--format", "parquet", "--layout", "tidy", "--channels",
                     "Spd80mN,T2m", "--include-flagged", "--out", str(out), "--json"])
    assert code == 0, capsys.readouterr().err
    got = pq.read_table(out)
    assert got.schema.names == list(tidy.COLUMNS)
    ids = channel_ids(flagged)
    assert got.equals(pq.read_table(io.BytesIO(stream(flagged, channel_ids=(ids["Spd80mN"], ids["T2m"]),
                                                        exclude_categories=()))))
    assert set(got.column("flag").drop_null().to_pylist()) == {"icing", "maintenance"}
