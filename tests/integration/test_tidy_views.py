"""The tidy views (migration 0018) give exactly what core computes: metadata, recalibrated
values (core.calibrations) and flag categories (core.flags), at every storage level."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from core import calibrations, flags

pytestmark = pytest.mark.integration

T0 = datetime(2024, 3, 1, tzinfo=UTC)
STEP = timedelta(minutes=10)
N = 6 * 24 * 3  # three days of 10-minute readings


def t(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


@pytest.fixture
def mast(conn):
    """A mast with rewired and spare channels, overlapping and open calibration periods,
    and flags of every kind (channel, whole station, deleted, overlapping)."""
    x = conn.execute
    sid = x("INSERT INTO station (name, latitude, longitude) VALUES ('Tidy Hill', 53.1, -7.2) RETURNING id"
            ).fetchone()["id"]
    pts = {}
    for name, kind, h, unit in (("WS80", "wind_speed", 80.0, "m/s"), ("WS60", "wind_speed", 60.0, "m/s"),
                                ("T2", "temperature", 2.0, "")):
        pts[name] = x("INSERT INTO measurement_point (station_id, name, measurement_type, height_m, orientation_deg,"
                      " unit, sensor) VALUES (%s, %s, %s, %s, 270, %s, 'Thies FC') RETURNING id",
                      (sid, name, kind, h, unit)).fetchone()["id"]
    chans = {}
    for col, stat, point, unit in (("Spd80_Avg", "avg", "WS80", "m/s"), ("Spd80_Std", "sd", "WS80", "m/s"),
                                   ("Spd80_Max", "max", "WS80", "m/s"), ("Spd60_Avg", "avg", "WS60", "m/s"),
                                   ("T2_Avg", "avg", "T2", "degC"), ("Spd80_N", "count", "WS80", ""),
                                   ("Spare", "unknown", None, "V")):
        chans[col] = x("INSERT INTO channel (station_id, column_name, statistic, measurement_point_id, unit, mapped)"
                       " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                       (sid, col, stat, pts.get(point), unit, point is not None)).fetchone()["id"]
    # Spd60_Avg recorded WS80 for the first day, then WS60 (rewired)
    x("INSERT INTO channel_mapping (channel_id, measurement_point_id, statistic, valid_from, valid_to) VALUES "
      "(%(c)s, %(a)s, 'avg', NULL, %(t)s), (%(c)s, %(b)s, 'avg', %(t)s, NULL)",
      {"c": chans["Spd60_Avg"], "a": pts["WS80"], "b": pts["WS60"], "t": t(24)})
    cal = ("INSERT INTO calibration (measurement_point_id, valid_from, valid_to, logger_slope, logger_offset,"
           " cal_slope, cal_offset) VALUES (%s, %s, %s, %s, %s, %s, %s)")
    x(cal, (pts["WS80"], None, t(30), 0.8, 0.5, 0.75, 0.25))
    x(cal, (pts["WS80"], t(30), None, 0.046, 0.24, 0.0459, 0.25))
    x(cal, (pts["WS80"], t(40), t(50), 2.0, 1.0, 3.0, -1.0))  # overlaps the open period: the earlier start decides
    x(cal, (pts["WS60"], t(12), t(60), 1.1, 0.0, 1.0, 0.1))
    x(cal, (pts["T2"], t(50), t(70), 1.0, 0.0, 1.0, -273.15))
    rng = np.random.default_rng(7)
    rows = []
    for col, cid in chans.items():
        values = rng.normal(8, 3, N).round(3)
        for i in range(N):
            if col == "T2_Avg" and i % 17 == 0:
                continue  # gaps
            rows.append((cid, T0 + i * STEP, float(values[i]), 1))
    with conn.cursor().copy("COPY reading (channel_id, time, value, source_file_id) FROM STDIN") as cp:
        for r in rows:
            cp.write_row(r)
    flag = ("INSERT INTO flag (station_id, start_time, end_time, whole_station, category, author, deleted_by,"
            " deleted_at) VALUES (%s, %s, %s, %s, %s, 'ana', %s, %s) RETURNING id")
    on = lambda fid, *cols: [x("INSERT INTO flag_channel VALUES (%s, %s)", (fid, chans[c])) for c in cols]  # noqa: E731
    on(x(flag, (sid, t(5), t(9), False, "icing", None, None)).fetchone()["id"], "Spd80_Avg", "Spd80_Std")
    on(x(flag, (sid, t(8), t(12), False, "suspect", None, None)).fetchone()["id"], "Spd80_Avg")
    x(flag, (sid, t(20), t(21) + timedelta(minutes=5), True, "maintenance", None, None))
    on(x(flag, (sid, t(30), t(40), False, "tower shadow", "bob", T0)).fetchone()["id"], "Spd60_Avg")  # deleted
    on(x(flag, (sid, t(45), t(46), False, "faulty sensor", None, None)).fetchone()["id"], "Spare")
    return {"station": sid, "channels": chans}


def test_readings_match_core_calibrations_and_flags(conn, mast):
    ids = list(mast["channels"].values())
    periods = calibrations.periods(conn, ids)
    mask = flags.flag_mask(conn, ids, None, None)
    live = conn.execute(
        "SELECT f.category, f.start_time, f.end_time, f.whole_station, array_agg(fc.channel_id) AS ids "
        "FROM flag f LEFT JOIN flag_channel fc ON fc.flag_id = f.id WHERE f.deleted_at IS NULL GROUP BY f.id"
    ).fetchall()
    stats = {r["id"]: r["statistic"] for r in conn.execute("SELECT id, statistic FROM channel").fetchall()}
    checked = 0
    for name, cid in mast["channels"].items():
        rows = conn.execute(
            "SELECT time, value, value_calibrated, flag FROM tidy.readings WHERE station = 'Tidy Hill' "
            "AND channel = %s ORDER BY time", (name,)).fetchall()
        times = np.array([calibrations.to_us(r["time"]) for r in rows], dtype=np.int64)
        raw = np.array([r["value"] for r in rows])
        expected = calibrations.apply(raw, times, stats[cid], periods[cid])
        assert np.array_equal(np.array([r["value_calibrated"] for r in rows]), expected), name  # bit for bit
        flagged = flags.apply_mask(times, cid, mask)
        assert [r["flag"] is not None for r in rows] == flagged.tolist(), name
        for r in rows:
            cats = sorted({f["category"] for f in live if f["start_time"] <= r["time"] < f["end_time"]
                           and (f["whole_station"] or cid in f["ids"])})
            assert r["flag"] == (", ".join(cats) or None), (name, r["time"])
        checked += len(rows)
    assert checked == conn.execute("SELECT count(*) AS n FROM reading").fetchone()["n"]
    # the cases the mast was built for did occur
    some = conn.execute(
        "SELECT count(*) FILTER (WHERE value_calibrated <> value) AS changed,"
        " count(*) FILTER (WHERE flag = 'icing, suspect') AS both_flags,"
        " count(*) FILTER (WHERE flag = 'maintenance') AS whole_station FROM tidy.readings").fetchone()
    assert some["changed"] > 1000 and some["both_flags"] == 6 and some["whole_station"] == 7 * 7


def test_metadata_views(conn, mast):
    chans = {r["channel"]: r for r in conn.execute("SELECT * FROM tidy.channels").fetchall()}
    assert chans["Spd80_Avg"] == {
        "station": "Tidy Hill", "channel": "Spd80_Avg", "measurement_type": "wind_speed", "height_m": 80.0,
        "orientation_deg": 270.0, "statistic": "avg", "unit": "m/s", "sensor": "Thies FC",
        "measurement_point": "WS80", "mapped": True}
    assert (chans["T2_Avg"]["unit"], chans["Spare"]["measurement_type"], chans["Spare"]["unit"]) == ("degC", "unknown", "V")
    row = conn.execute("SELECT * FROM tidy.readings WHERE channel = 'Spd80_Std' ORDER BY time LIMIT 1").fetchone()
    assert list(row) == ["time", "station", "channel", "measurement_type", "height_m", "orientation_deg",
                         "statistic", "unit", "value", "value_calibrated", "flag"]
    assert conn.execute("SELECT * FROM tidy.stations").fetchall() == [
        {"station": "Tidy Hill", "latitude": 53.1, "longitude": -7.2, "elevation_m": None, "kind": "met mast"}]
    cal = conn.execute("SELECT valid_from, valid_to FROM tidy.calibrations WHERE channel = 'Spd60_Avg' "
                       "ORDER BY valid_from NULLS FIRST").fetchall()
    assert [(r["valid_from"], r["valid_to"]) for r in cal] == [(None, t(24)), (t(24), t(60))]  # clipped
    fl = conn.execute("SELECT channel, category FROM tidy.flags ORDER BY start_time, channel").fetchall()
    assert ("Spare", "faulty sensor") in [(r["channel"], r["category"]) for r in fl]
    assert sum(1 for r in fl if r["category"] == "maintenance") == 7
    assert not [r for r in fl if r["category"] == "tower shadow"]  # deleted


def test_rollup_views_read_the_rollups_of_any_level(conn, mast):
    from core import rollups

    rollups.refresh_rollups(conn, T0, T0 + N * STEP)
    hourly = conn.execute("SELECT * FROM tidy.readings_1h WHERE channel = 'Spd80_Avg' ORDER BY time").fetchall()
    raw = conn.execute("SELECT date_bin('1 hour', time, 'epoch') AS h, count(*) AS n, avg(value) AS mean, "
                       "max(value) AS max FROM tidy.readings WHERE channel = 'Spd80_Avg' GROUP BY 1 ORDER BY 1"
                       ).fetchall()
    assert [(r["time"], r["n"], r["max"]) for r in hourly] == [(r["h"], r["n"], r["max"]) for r in raw]
    assert np.allclose([r["mean"] for r in hourly], [r["mean"] for r in raw])
    daily = conn.execute("SELECT sum(n) AS n FROM tidy.readings_1d WHERE channel = 'Spd80_Avg'").fetchone()
    assert daily["n"] == N
