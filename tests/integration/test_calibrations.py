"""Calibrations on a real PostgreSQL: periods from a Task 43 import, recalibration, editing, CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest

from core import calibrations, iea43
from core.calibrations import CalPeriod, to_us
from tests.unit.test_metadata import DEMO_DOC

pytestmark = pytest.mark.integration

CHANGE = datetime(2017, 1, 4, 18, 0, tzinfo=UTC)  # the demo mast's logger slope/offset change
BEFORE_END = datetime(2017, 1, 4, 17, 59, tzinfo=UTC)  # the document ends the first period here
START = datetime(2016, 1, 9, 15, 30, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def channel_id(conn, column: str) -> int:
    return conn.execute(
        "SELECT c.id FROM channel c JOIN station s ON s.id = c.station_id "
        "WHERE s.name = 'Demo Mast' AND c.column_name = %s", (column,),
    ).fetchone()["id"]


@pytest.fixture
def demo(conn):
    """The brightwind demo mast's Task 43 document, imported."""
    iea43.import_metadata(conn, DEMO_DOC, "ana")
    return conn


# --- periods ----------------------------------------------------------------------------------


def test_periods_follow_the_task43_logger_change(demo):
    spd, std, vane = (channel_id(demo, c) for c in ("Spd40mS", "Spd40mSStd", "Dir58mS"))
    got = calibrations.periods(demo, [spd, std, vane])
    assert [(p.valid_from, p.valid_to, p.logger_slope, p.logger_offset, p.cal_slope, p.cal_offset, p.source)
            for p in got[spd]] == [
        (START, BEFORE_END, 0.0459, 0.2554, 0.04591, 0.25539, "iea43"),
        (CHANGE, None, 0.04591, 0.25539, 0.04591, 0.25539, "iea43"),
    ]
    assert got[std] == got[spd]  # the sd channel records the same point
    assert [(p.valid_from, p.valid_to, p.logger_slope, p.cal_slope) for p in got[vane]] == [
        (START, BEFORE_END, 0.351, 0.351), (CHANGE, None, 0.351, 0.351)]
    assert all(isinstance(p, CalPeriod) and p.id for p in got[spd])


def test_periods_key_every_channel_asked_for(demo):
    unmapped = demo.execute(
        "INSERT INTO channel (station_id, column_name) SELECT id, 'Spare' FROM station RETURNING id"
    ).fetchone()["id"]
    assert calibrations.periods(demo, [unmapped, 999_999]) == {unmapped: [], 999_999: []}
    assert calibrations.periods(demo, []) == {}


def test_periods_clip_to_the_channel_mapping_history(demo):
    """A column rewired from one point to another takes each point's calibration in its time."""
    col = channel_id(demo, "Spd40mS")
    points = {r["name"]: r["id"] for r in demo.execute("SELECT id, name FROM measurement_point").fetchall()}
    demo.execute("DELETE FROM channel_mapping WHERE channel_id = %s", (col,))
    demo.execute(
        "INSERT INTO channel_mapping (channel_id, measurement_point_id, statistic, valid_from, valid_to) "
        "VALUES (%(c)s, %(a)s, 'avg', NULL, %(t)s), (%(c)s, %(b)s, 'avg', %(t)s, NULL)",
        {"c": col, "a": points["Spd40mS"], "b": points["Spd80mN"], "t": utc(2016, 6, 1)},
    )
    got = [(p.valid_from, p.valid_to, p.logger_slope) for p in calibrations.periods(demo, [col])[col]]
    assert got == [(START, utc(2016, 6, 1), 0.0459), (utc(2016, 6, 1), None, 0.046)]


def test_periods_without_mapping_history_use_the_channels_point(demo):
    col = channel_id(demo, "Spd40mS")
    demo.execute("DELETE FROM channel_mapping WHERE channel_id = %s", (col,))
    assert len(calibrations.periods(demo, [col])[col]) == 2


# --- apply ------------------------------------------------------------------------------------


def test_apply_over_a_range_crossing_the_change(demo):
    spd, std = channel_id(demo, "Spd40mS"), channel_id(demo, "Spd40mSStd")
    got = calibrations.periods(demo, [spd, std])
    times = [utc(2017, 1, 4, 17, 40), utc(2017, 1, 4, 17, 50), CHANGE, utc(2017, 1, 4, 18, 10)]
    t_us = np.array([to_us(t) for t in times], dtype=np.int64)
    logged = np.array([7.0, 7.2, 7.4, np.nan])
    first = (logged - 0.2554) / 0.0459 * 0.04591 + 0.25539
    want = np.concatenate([first[:2], logged[2:]])  # the second period: certificate = logger
    np.testing.assert_allclose(calibrations.apply(logged, t_us, "avg", got[spd]), want, rtol=0, atol=1e-12)
    assert not np.allclose(first[:2], logged[:2])  # the first period really changes the values
    sd = calibrations.apply(logged, t_us, "sd", got[std])
    np.testing.assert_allclose(sd, [7.0 * 0.04591 / 0.0459, 7.2 * 0.04591 / 0.0459, 7.4, np.nan], atol=1e-12)
    np.testing.assert_array_equal(calibrations.apply(logged, t_us, "count", got[spd]), logged)
    assert logged[0] == 7.0  # input untouched


def test_apply_is_vectorised_over_millions_of_values():
    n = 2_000_000
    t = np.arange(n, dtype=np.int64) * 600_000_000
    periods = [CalPeriod(1, None, datetime.fromtimestamp(n * 300, UTC), 2.0, 1.0, 4.0, 0.0, "", "manual")]
    v = np.ones(n)
    out = calibrations.apply(v, t, "avg", periods)
    assert out[0] == 0.0 and out[-1] == 1.0 and out.dtype == np.float64


def test_apply_same_result_for_sorted_and_shuffled_times_and_first_period_wins():
    t = np.arange(10, dtype=np.int64) * 1_000_000  # 0 .. 9 s
    second = lambda s: datetime.fromtimestamp(s, UTC)  # noqa: E731
    periods = [CalPeriod(1, second(2), second(5), 1.0, 0.0, 2.0, 0.0, "", "manual"),
               CalPeriod(2, second(4), None, 1.0, 0.0, 3.0, 1.0, "", "manual")]  # overlaps the first at 4 s
    want = np.array([0, 1, 4, 6, 8, 16, 19, 22, 25, 28], dtype=float)
    np.testing.assert_array_equal(calibrations.apply(np.arange(10.0), t, "avg", periods), want)
    perm = np.array([7, 2, 9, 0, 4, 1, 8, 3, 6, 5])
    np.testing.assert_array_equal(calibrations.apply(np.arange(10.0)[perm], t[perm], "avg", periods), want[perm])


def test_apply_rejects_mismatched_times():
    p = CalPeriod(1, None, None, 1.0, 0.0, 2.0, 0.0, "", "manual")
    with pytest.raises(ValueError, match="differ in shape"):
        calibrations.apply(np.ones(3), np.zeros(2, dtype=np.int64), "avg", [p])


def test_uncovered_shows_the_minute_the_document_leaves_out(demo):
    spd = channel_id(demo, "Spd40mS")
    got = calibrations.periods(demo, [spd])[spd]
    assert calibrations.uncovered(got, utc(2015, 1, 1), utc(2018, 1, 1)) == [
        (utc(2015, 1, 1), START), (BEFORE_END, CHANGE)]


# --- editing ----------------------------------------------------------------------------------


def point(conn, name: str) -> int:
    return conn.execute("SELECT id FROM measurement_point WHERE name = %s", (name,)).fetchone()["id"]


def audits(conn, action: str) -> list[dict]:
    return conn.execute("SELECT actor, entity_id, details FROM audit WHERE entity = 'calibration' AND action = %s "
                        "ORDER BY id", (action,)).fetchall()


CERT = dict(logger_slope=0.046, logger_offset=0.243, cal_slope=0.04594, cal_offset=0.2489, certificate="MEASNET 42")


def test_add_update_delete_are_audited(demo):
    pid = point(demo, "Spd80mN")
    demo.execute("DELETE FROM calibration WHERE measurement_point_id = %s", (pid,))
    row = calibrations.add_calibration(demo, pid, utc(2016, 1, 1), utc(2017, 1, 1), actor="ana", **CERT)
    assert (row["source"], row["entered_by"], row["point"], row["cal_slope"]) == ("manual", "ana", "Spd80mN", 0.04594)
    created = audits(demo, "create")[-1]
    assert created["actor"] == "ana" and created["entity_id"] == row["id"]
    assert created["details"]["point"] == "Spd80mN" and created["details"]["cal_slope"] == 0.04594

    new = calibrations.update_calibration(demo, row["id"], "bob", valid_to=None, cal_offset=0.25)
    assert new["valid_to"] is None and new["cal_offset"] == 0.25 and new["updated_at"] is not None
    updated = audits(demo, "update")[-1]
    assert updated["actor"] == "bob"
    assert updated["details"]["old"] == {"valid_to": "2017-01-01 00:00:00+00:00", "cal_offset": 0.2489}
    assert updated["details"]["new"] == {"valid_to": None, "cal_offset": 0.25}
    n = len(audits(demo, "update"))
    calibrations.update_calibration(demo, row["id"], "bob", cal_offset=0.25)  # no change: no audit row
    assert len(audits(demo, "update")) == n

    calibrations.delete_calibration(demo, row["id"], "carl")
    deleted = audits(demo, "delete")[-1]
    assert deleted["actor"] == "carl" and deleted["details"]["cal_offset"] == 0.25
    assert not demo.execute("SELECT 1 FROM calibration WHERE id = %s", (row["id"],)).fetchall()


def test_added_period_reaches_the_channels(demo):
    pid = point(demo, "Spd80mN")
    demo.execute("DELETE FROM calibration WHERE measurement_point_id = %s", (pid,))
    calibrations.add_calibration(demo, pid, None, None, actor="ana", **CERT)
    spd = channel_id(demo, "Spd80mN")
    [p] = calibrations.periods(demo, [spd])[spd]
    assert (p.valid_from, p.valid_to, p.cal_slope, p.source) == (START, None, 0.04594, "manual")  # clipped to mapping


@pytest.mark.parametrize(("start", "end"), [
    (utc(2016, 6, 1), utc(2016, 7, 1)),   # inside the first period
    (utc(2015, 1, 1), utc(2016, 2, 1)),   # across its start
    (utc(2017, 1, 5), None),              # inside the open last period
    (None, None),                         # all time
])
def test_overlapping_periods_are_refused(demo, start, end):
    pid = point(demo, "Spd40mS")
    before = demo.execute("SELECT count(*) AS n FROM calibration").fetchone()["n"]
    audited = len(audits(demo, "create"))
    with pytest.raises(calibrations.CalibrationError, match=r"Spd40mS: the period .* overlaps calibration \d+ .*iea43"):
        calibrations.add_calibration(demo, pid, start, end, actor="ana", **CERT)
    assert demo.execute("SELECT count(*) AS n FROM calibration").fetchone()["n"] == before
    assert len(audits(demo, "create")) == audited


def test_adjacent_periods_and_the_documents_gap_are_accepted(demo):
    pid = point(demo, "Spd40mS")
    row = calibrations.add_calibration(demo, pid, BEFORE_END, CHANGE, actor="ana", **CERT)  # the missing minute
    early = calibrations.add_calibration(demo, pid, utc(2015, 1, 1), START, actor="ana", **CERT)
    assert {r["id"] for r in calibrations.list_calibrations(demo, "Demo Mast")} >= {row["id"], early["id"]}
    spd = channel_id(demo, "Spd40mS")
    # the column recorded this point only over the document's periods (channel_mapping), which
    # leave out both the minute and the time before START: neither new period reaches it
    got = calibrations.periods(demo, [spd])[spd]
    assert [(p.valid_from, p.source) for p in got] == [(START, "iea43"), (CHANGE, "iea43")]


def test_update_refuses_an_overlap_with_a_neighbour(demo):
    first, second = [r for r in calibrations.list_calibrations(demo, "Demo Mast") if r["point"] == "Spd40mS"]
    with pytest.raises(calibrations.CalibrationError, match=f"overlaps calibration {second['id']}"):
        calibrations.update_calibration(demo, first["id"], "ana", valid_to=utc(2017, 2, 1))
    assert calibrations.get_calibration(demo, first["id"])["valid_to"] == BEFORE_END


@pytest.mark.parametrize(("changes", "message"), [
    ({"logger_slope": 0}, "logger slope must not be 0"),
    ({"cal_slope": 0.0}, "certificate slope must not be 0"),
    ({"valid_from": utc(2020, 1, 1), "valid_to": utc(2020, 1, 1)}, r"valid to \(2020-01-01 00:00 UTC\) must be after"),
    ({"valid_from": utc(2020, 2, 1), "valid_to": utc(2020, 1, 1)}, "must be after valid from"),
    ({"cal_offset": float("nan")}, "certificate offset must be a finite number"),
    ({"logger_offset": "x"}, "logger offset: 'x' is not a number"),
    ({"valid_from": "2020-01-01"}, "valid from: '2020-01-01' is not a date-time"),
])
def test_bad_periods_are_refused(demo, changes, message):
    pid = point(demo, "Spd80mN")
    demo.execute("DELETE FROM calibration WHERE measurement_point_id = %s", (pid,))
    fields = {"valid_from": None, "valid_to": None, **CERT, **changes}
    with pytest.raises(calibrations.CalibrationError, match=message):
        calibrations.add_calibration(demo, pid, actor="ana", **fields)
    left = demo.execute("SELECT count(*) AS n FROM calibration WHERE measurement_point_id = %s", (pid,)).fetchone()
    assert left["n"] == 0


def test_bad_edits_are_refused(demo):
    row = calibrations.list_calibrations(demo, "Demo Mast")[0]
    with pytest.raises(calibrations.CalibrationError, match="cannot change source"):
        calibrations.update_calibration(demo, row["id"], "ana", source="manual")
    with pytest.raises(calibrations.CalibrationError, match="logger slope must not be 0"):
        calibrations.update_calibration(demo, row["id"], "ana", logger_slope=0)
    with pytest.raises(calibrations.CalibrationError, match="needs the name of who"):
        calibrations.delete_calibration(demo, row["id"], " ")
    with pytest.raises(calibrations.NotFound, match="no calibration period with id 999999"):
        calibrations.delete_calibration(demo, 999_999, "ana")
    with pytest.raises(calibrations.NotFound, match="no measurement point with id 999999"):
        calibrations.add_calibration(demo, 999_999, None, None, actor="ana", **CERT)
    with pytest.raises(calibrations.NotFound, match="no station called 'Nowhere'"):
        calibrations.list_calibrations(demo, "Nowhere")


def test_the_database_refuses_a_backwards_period(demo):
    """The table's own check, for writers other than this module."""
    import psycopg

    with pytest.raises(psycopg.errors.CheckViolation):
        demo.execute("UPDATE calibration SET valid_to = valid_from - interval '1 day' WHERE valid_from IS NOT NULL")


def test_reimport_keeps_manual_periods_and_is_still_a_no_op(demo):
    pid = point(demo, "Spd80mN")
    demo.execute("DELETE FROM calibration WHERE measurement_point_id = %s AND source = 'iea43'", (pid,))
    iea43.import_metadata(demo, DEMO_DOC, "ana")  # restores the document's period
    spd40 = point(demo, "Spd40mS")
    manual = calibrations.add_calibration(demo, spd40, utc(2015, 1, 1), START, actor="ana", **CERT)
    report = iea43.import_metadata(demo, DEMO_DOC, "ana")
    assert not report.created and not report.updated and not report.deleted
    assert calibrations.get_calibration(demo, manual["id"])["source"] == "manual"


def test_list_calibrations_and_points(demo):
    rows = calibrations.list_calibrations(demo, "Demo Mast")
    assert len(rows) == 16 and {r["source"] for r in rows} == {"iea43"}
    spd = [r for r in rows if r["point"] == "Spd40mS"]
    assert [r["valid_from"] for r in spd] == [START, CHANGE] and spd[0]["sensor_serial"] == "013456"
    points = {p["name"]: p for p in calibrations.list_points(demo, "Demo Mast")}
    assert points["Spd40mS"]["calibrations"] == 2


# --- preview ----------------------------------------------------------------------------------


def test_preview_shows_logged_and_recalibrated_values(demo):
    spd, std = channel_id(demo, "Spd40mS"), channel_id(demo, "Spd40mSStd")
    times = [utc(2017, 1, 4, 17, 30) + i * (CHANGE - utc(2017, 1, 4, 17, 50)) for i in range(6)]  # 17:30 .. 18:20
    demo.execute("INSERT INTO source_file (sha256, original_name, size_bytes) VALUES (repeat('a', 64), 'x', 1)")
    with demo.cursor() as cur:
        cur.executemany("INSERT INTO reading (channel_id, time, value, source_file_id) "
                        "SELECT %s, %s, %s, id FROM source_file",
                        [(c, t, 7.0 + i) for c in (spd, std) for i, t in enumerate(times)])
    first = calibrations.periods(demo, [spd])[spd][0]
    got = calibrations.preview(demo, point(demo, "Spd40mS"), first, rows_per_channel=5)
    assert list(got.columns) == ["column_name", "statistic", "time", "logged", "recalibrated"]
    assert set(got["column_name"]) == {"Spd40mS", "Spd40mSStd"}
    avg = got[got["column_name"] == "Spd40mS"]
    assert len(avg) == 3  # the period ends at 17:59: 17:30, 17:40, 17:50
    np.testing.assert_allclose(avg["recalibrated"], (avg["logged"] - 0.2554) / 0.0459 * 0.04591 + 0.25539)
    sd = got[got["column_name"] == "Spd40mSStd"]
    np.testing.assert_allclose(sd["recalibrated"], sd["logged"] * 0.04591 / 0.0459)
    empty = calibrations.preview(demo, point(demo, "Spd80mN"), first)
    assert empty.empty and list(empty.columns) == list(got.columns)


# --- command line -----------------------------------------------------------------------------


def test_cli_list_add_delete(demo, capsys):
    from core import cli

    assert cli.main(["calibration", "add", "--station", "Demo Mast", "--point", "Spd40mS", "--from", "2015-01-01",
                     "--to", "2016-01-09T15:30", "--logger-slope", "0.046", "--logger-offset", "0.24",
                     "--slope", "0.0459", "--offset", "0.25", "--certificate", "old cup", "--json",
                     "--actor", "ana"]) == 0
    added = json.loads(capsys.readouterr().out)
    assert (added["point"], added["from"], added["source"], added["entered_by"]) == (
        "Spd40mS", "2015-01-01 00:00:00+00:00", "manual", "ana")

    assert cli.main(["calibration", "list", "--station", "Demo Mast", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 17 and added["id"] in [r["id"] for r in rows]
    assert cli.main(["calibration", "list", "--station", "Demo Mast"]) == 0
    assert "old cup" in capsys.readouterr().out

    # an overlap: a clear message and exit code 2, nothing written
    assert cli.main(["calibration", "add", "--station", "Demo Mast", "--point", "Spd40mS", "--from", "2016-06-01",
                     "--logger-slope", "1", "--logger-offset", "0", "--slope", "1", "--offset", "0"]) == 2
    assert "overlaps calibration" in capsys.readouterr().err
    assert cli.main(["calibration", "add", "--station", "Demo Mast", "--point", "Nope", "--from", "2016-06-01",
                     "--logger-slope", "1", "--logger-offset", "0", "--slope", "1", "--offset", "0"]) == 2
    assert "Demo Mast has no measurement point called 'Nope'; its points: " in capsys.readouterr().err

    assert cli.main(["calibration", "delete", str(added["id"]), "--actor", "ana"]) == 0
    assert f"calibration {added['id']} of Spd40mS deleted" in capsys.readouterr().out
    assert cli.main(["calibration", "delete", str(added["id"])]) == 2
    assert "no calibration period with id" in capsys.readouterr().err
    assert audits(demo, "delete")[-1]["entity_id"] == added["id"]
