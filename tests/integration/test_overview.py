"""The overview of every station's health on a real database: recovery from the rollups,
with and without flagged readings, file counts, open findings, each status and the order.

Seven small stations are built with readings (SQL ``generate_series``), rollups
(``core.rollups.refresh_rollups``), flags (``core.flags.add_flag``) and suggestions
(``core.flags.store_findings``), and looked at as of 2025-03-31 00:00 UTC: the recovery
window is then 2025-03-01 .. 2025-03-31 and the file window 2025-03-24 .. 2025-03-31.
Every figure below is worked out by hand.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core import db, extents, flags, ingest, metadata, qc, rollups, schema, stations

pytestmark = pytest.mark.integration

NOW = datetime(2025, 3, 31, tzinfo=UTC)
TEN_MIN = timedelta(minutes=10)
HOUR = timedelta(hours=1)


def t(day: int, hour: int = 0, minute: int = 0, month: int = 3) -> datetime:
    return datetime(2025, month, day, hour, minute, tzinfo=UTC)


def make_station(conn, name: str, columns: tuple[str, ...], interval_s: int = 600) -> dict:
    """A station with a logger of ``interval_s`` and channels named by the conventions
    (unrecognised names stay unmapped): ``{"id", "name", "ch": {column: id}}``."""
    with conn.transaction():
        st = ingest.ensure_station(conn, name, "test")
        conn.execute("INSERT INTO logger (station_id, interval_s) VALUES (%s, %s)", (st["id"], interval_s))
        ch = {c: db.fetch_one(conn, "upsert_channel", station_id=st["id"], column_name=c, statistic="unknown",
                              unit="")["id"] for c in columns}
        metadata.apply_conventions(conn, st["id"], "test")
    return {"id": st["id"], "name": name, "ch": ch}


def readings(conn, channel_id: int, start: datetime, end: datetime, step: timedelta = TEN_MIN) -> None:
    """One reading every ``step`` over ``[start, end)``, rollups and the channel's extent refreshed."""
    conn.execute(
        "INSERT INTO reading (channel_id, time, value, source_file_id) "
        "SELECT %s, g, 1.5, 0 FROM generate_series(%s::timestamptz, %s::timestamptz - %s::interval, %s::interval) g",
        (channel_id, start, end, step, step))
    extents.recompute(conn, [channel_id])
    rollups.refresh_rollups(conn, start, end - step, [channel_id])


def remove(conn, channel_id: int, start: datetime, end: datetime) -> None:
    conn.execute("DELETE FROM reading WHERE channel_id = %s AND time >= %s AND time < %s", (channel_id, start, end))
    extents.recompute(conn, [channel_id])
    rollups.refresh_rollups(conn, start, end, [channel_id])


def received(conn, station_id: int, status: str, at: datetime) -> None:
    conn.execute(
        "INSERT INTO source_file (sha256, original_name, size_bytes, station_id, status, received_at) "
        "VALUES (md5(random()::text) || md5(random()::text), 'f.dat', 1, %s, %s, %s)", (station_id, status, at))


def finding(rule: str, columns: tuple[str, ...], start: datetime, end: datetime, severity: str) -> qc.Finding:
    return qc.Finding(rule, columns, start, end, severity, "")


@pytest.fixture
def site(conn) -> dict[str, dict]:
    # A: ok. Two mapped channels and an unmapped one that stopped on 03-20 (ignored).
    # 6 h missing on WS_80m_NE_Avg; flags: two overlapping ones on WS_80m_SW_Avg (joined:
    # 03-05 06:00 .. 03-07 18:00 = 18 h + 1 day + 18 h = 360 readings), one crossing the
    # window's start on WS_80m_NE_Avg (03-01 00:00 .. 03-02 02:00 = 156), a deleted one.
    # Readings after NOW exist and must not count.
    a = make_station(conn, "Alder", ("WS_80m_NE_Avg", "WS_80m_SW_Avg", "Mystery"))
    for c in ("WS_80m_NE_Avg", "WS_80m_SW_Avg"):
        readings(conn, a["ch"][c], t(1, month=2), t(2, month=4))
    readings(conn, a["ch"]["Mystery"], t(1, month=2), t(20))
    remove(conn, a["ch"]["WS_80m_NE_Avg"], t(10, 6), t(10, 12))
    sw, ne = [a["ch"]["WS_80m_SW_Avg"]], [a["ch"]["WS_80m_NE_Avg"]]
    flags.add_flag(conn, a["name"], sw, t(5, 6), t(7, 12), "icing", author="ana")
    flags.add_flag(conn, a["name"], sw, t(7), t(7, 18), "suspect", author="ana")
    flags.add_flag(conn, a["name"], ne, t(27, month=2), t(2, 2), "maintenance", author="ana")
    gone = flags.add_flag(conn, a["name"], ne, t(12), t(14), "other", author="ana")
    flags.delete_flag(conn, gone, "ana")
    # files: in the 7 days before NOW 2 imported, 1 failed, 1 duplicate, 1 unpacked archive
    # (its members are the files); before and after that window, a failed one each.
    for status, at in (("imported", t(24)), ("imported", t(30, 23)), ("failed", t(28)), ("duplicate", t(29)),
                       ("unpacked", t(29)), ("failed", t(23, 23, 59)), ("failed", t(31))):
        received(conn, a["id"], status, at)
    # findings: a suspect one in the last day, a failing one long ago (both open: 2), a
    # failing one dismissed, one starting after NOW (not yet).
    flags.store_findings(conn, a["id"], [
        finding("gross_range", ("WS_80m_NE_Avg",), t(30, 12), t(30, 13), "suspect"),
        finding("flat_line", ("WS_80m_SW_Avg",), t(1, month=2), t(2, month=2), "fail"),
        finding("dead", ("WS_80m_NE_Avg",), t(30, 14), t(30, 15), "fail"),
        finding("dead", ("WS_80m_SW_Avg",), t(31, 6), t(31, 7), "fail"),
    ], t(1, month=2), t(2, month=4))
    dismissed = [s["id"] for s in flags.list_suggestions(conn, a["name"]) if s["rule"] == "dead"
                 and s["start_time"] == t(30, 14)]
    flags.dismiss_suggestions(conn, dismissed, "ana")

    # B: late (last reading 03-30 19:50, 4 h 10 min old); installed on 03-20, so 11 days
    # are expected. A failing finding ends exactly where its last day of data begins.
    b = make_station(conn, "Birch", ("WS_80m_NE_Avg",))
    readings(conn, b["ch"]["WS_80m_NE_Avg"], t(20), t(30, 20))
    flags.store_findings(conn, b["id"], [
        finding("flat_line", ("WS_80m_NE_Avg",), t(29, 10), t(29, 20), "fail")], t(20), t(31))

    # C: faulty, its hygrometer silent since 03-25 12:00 while the anemometers report;
    # a whole-station flag over 03-15 12:00 .. 03-16 (3 channels x 72 readings).
    c = make_station(conn, "Cedar", ("WS_80m_NE_Avg", "WS_60m_NE_Avg", "RH_2m_Avg"))
    for col in ("WS_80m_NE_Avg", "WS_60m_NE_Avg"):
        readings(conn, c["ch"][col], t(1, month=2), NOW)
    readings(conn, c["ch"]["RH_2m_Avg"], t(1, month=2), t(25, 12))
    flags.add_flag(conn, c["name"], "station", t(15, 12), t(16), "maintenance", author="ana")

    # D: faulty by an open failing finding that just touches its last day of data.
    d = make_station(conn, "Dogwood", ("WS_80m_NE_Avg",))
    readings(conn, d["ch"]["WS_80m_NE_Avg"], t(1, month=2), NOW)
    flags.store_findings(conn, d["id"], [
        finding("flat_line", ("WS_80m_NE_Avg",), t(29, 23), t(30, 0, 10), "fail")], t(20), t(31))

    # E: silent since 03-20 (and its failing finding does not change that).
    e = make_station(conn, "Elm", ("WS_80m_NE_Avg",))
    readings(conn, e["ch"]["WS_80m_NE_Avg"], t(1, month=2), t(20))
    flags.store_findings(conn, e["id"], [
        finding("flat_line", ("WS_80m_NE_Avg",), t(19), t(20), "fail")], t(1), t(31))

    # F: no readings at all.
    f = make_station(conn, "Fir", ())

    # G: an hourly logger (an older 10-minute configuration is no longer in force); last
    # reading 03-30 22:00, 2 h old: 1 h overdue at 1 h intervals, so ok.
    g = make_station(conn, "Gorse", ("WS_80m_NE_Avg",), interval_s=3600)
    conn.execute("INSERT INTO logger (station_id, interval_s, valid_from, valid_to) VALUES (%s, 600, %s, %s)",
                 (g["id"], t(1, month=1), t(1, month=2)))
    conn.execute("UPDATE logger SET valid_from = %s WHERE station_id = %s AND interval_s = 3600",
                 (t(1, month=2), g["id"]))
    readings(conn, g["ch"]["WS_80m_NE_Avg"], t(1, month=2), t(30, 23), step=HOUR)
    return {s["name"]: s for s in (a, b, c, d, e, f, g)}


def test_every_figure_status_and_the_order(conn, site) -> None:
    rows = stations.overview(conn, now=NOW)
    assert [(r["name"], r["status"]) for r in rows] == [
        ("Elm", "silent"), ("Cedar", "faulty"), ("Dogwood", "faulty"), ("Birch", "late"),
        ("Alder", "ok"), ("Gorse", "ok"), ("Fir", "empty")]
    by = {r["name"]: r for r in rows}
    keys = ("last_reading", "interval_s", "channels", "mapped_channels", "readings_30d", "flagged_30d",
            "expected_30d", "files_7d", "failed_7d", "open_findings", "fail_findings_last_day",
            "silent_channels")
    assert {k: by["Alder"][k] for k in keys} == {
        "last_reading": t(30, 23, 50), "interval_s": 600, "channels": 3, "mapped_channels": 2,
        "readings_30d": 2 * 30 * 144 - 36, "flagged_30d": 360 + 156, "expected_30d": 2 * 30 * 144,
        "files_7d": 4, "failed_7d": 1, "open_findings": 2, "fail_findings_last_day": 0, "silent_channels": []}
    assert by["Alder"]["recovery_30d"] == pytest.approx(100 * 8604 / 8640)
    assert by["Alder"]["recovery_30d_unflagged"] == pytest.approx(100 * (8604 - 516) / 8640)
    assert (by["Alder"]["files_imported"], by["Alder"]["files_failed"]) == (2, 3)  # all time, as before
    assert by["Alder"]["age_hours"] == pytest.approx(1 / 6)
    assert (by["Alder"]["window_start"], by["Alder"]["window_end"]) == (t(1), NOW)

    assert {k: by["Birch"][k] for k in ("last_reading", "readings_30d", "expected_30d", "open_findings",
                                        "fail_findings_last_day")} == {
        "last_reading": t(30, 19, 50), "readings_30d": 10 * 144 + 120, "expected_30d": 11 * 144,
        "open_findings": 1, "fail_findings_last_day": 0}
    assert by["Birch"]["recovery_30d"] == by["Birch"]["recovery_30d_unflagged"] == pytest.approx(100 * 1560 / 1584)

    cedar = by["Cedar"]
    assert cedar["silent_channels"] == ["RH_2m_Avg"] and cedar["reporting_channels"] == 2
    assert (cedar["readings_30d"], cedar["flagged_30d"], cedar["expected_30d"]) == (
        2 * 4320 + 3528, 3 * 72, 3 * 4320)
    assert cedar["recovery_30d_unflagged"] == pytest.approx(100 * (12168 - 216) / 12960)
    assert cedar["faults"] == ["no reading in the last day of data: RH_2m_Avg"]

    assert by["Dogwood"]["fail_findings_last_day"] == 1 and by["Dogwood"]["silent_channels"] == []
    assert by["Dogwood"]["recovery_30d"] == by["Dogwood"]["recovery_30d_unflagged"] == 100.0
    assert by["Dogwood"]["faults"] == ["1 failing QC finding in the last day of data"]

    elm = by["Elm"]
    assert (elm["last_reading"], elm["readings_30d"], elm["expected_30d"]) == (t(19, 23, 50), 19 * 144, 30 * 144)
    assert elm["fail_findings_last_day"] == 1 and elm["faults"]  # silent wins over faulty

    fir = by["Fir"]
    assert (fir["last_reading"], fir["age_hours"], fir["recovery_30d"], fir["recovery_30d_unflagged"]) == (
        None, None, None, None)
    assert (fir["files_7d"], fir["failed_7d"], fir["open_findings"], fir["channels"]) == (0, 0, 0, 0)

    gorse = by["Gorse"]
    assert (gorse["interval_s"], gorse["last_reading"], gorse["readings_30d"], gorse["expected_30d"]) == (
        3600, t(30, 22), 30 * 24 - 1, 30 * 24)


def test_looking_back_counts_nothing_after_the_as_of_time(conn, site) -> None:
    rows = {r["name"]: r for r in stations.overview(conn, now=t(20, 0, 30))}
    elm = rows["Elm"]  # its last reading, 03-19 23:50, was fresh then; its failing finding is in its last day
    assert (elm["status"], elm["last_reading"], elm["open_findings"]) == ("faulty", t(19, 23, 50), 1)
    assert (elm["window_start"], elm["window_end"]) == (t(18, month=2), t(20))
    assert elm["readings_30d"] == elm["expected_30d"] == 30 * 144
    alder = rows["Alder"]  # no file yet; one finding begun; the flag across 03-01 is whole now
    assert (alder["files_7d"], alder["open_findings"], alder["flagged_30d"]) == (0, 1, 360 + 3 * 144 + 12)
    birch = rows["Birch"]  # installed that day: three readings, no whole day expected yet
    assert (birch["status"], birch["last_reading"], birch["expected_30d"], birch["recovery_30d"]) == (
        "ok", t(20, 0, 20), 0, None)


def test_a_day_not_yet_rolled_up_does_not_count(conn, site) -> None:
    """Recovery comes from the daily rollups, not from the raw readings."""
    if schema.stored_level(conn) == 2:
        pytest.skip("level 2 rollups are continuous aggregates: no row can be deleted from them")
    ch = site["Birch"]["ch"]["WS_80m_NE_Avg"]
    conn.execute("DELETE FROM reading_1d WHERE channel_id = %s AND bucket = %s", (ch, t(21)))
    row = next(r for r in stations.overview(conn, now=NOW) if r["name"] == "Birch")
    assert row["readings_30d"] == 10 * 144 + 120 - 144
