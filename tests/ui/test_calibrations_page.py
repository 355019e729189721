"""AppTest of the Calibrations page on a real database holding the brightwind demo mast's metadata."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core import auth, iea43
from core.settings import Settings
from tests.ui.test_pages import show, signed_in, texts
from tests.unit.test_metadata import DEMO_DOC

pytestmark = pytest.mark.integration

PAGE = "pages/calibrations.py"
MAST = "Demo Mast"
CHANGE = datetime(2017, 1, 4, 18, 0, tzinfo=UTC)


@pytest.fixture
def mast(conn, settings: Settings) -> Settings:
    """The demo mast's Task 43 metadata and a few readings of Spd40mS around its logger change."""
    iea43.import_metadata(conn, DEMO_DOC, "ana")
    conn.execute("INSERT INTO source_file (sha256, original_name, size_bytes) VALUES (repeat('a', 64), 'x', 1)")
    ids = [r["id"] for r in conn.execute(
        "SELECT id FROM channel WHERE column_name IN ('Spd40mS', 'Spd40mSStd') ORDER BY column_name").fetchall()]
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO reading (channel_id, time, value, source_file_id) SELECT %s, %s, %s, id FROM source_file",
            [(c, CHANGE + timedelta(minutes=10 * i), 7.0 + i) for c in ids for i in range(-3, 3)])
    auth.add_user(settings.users_file, "ada", "admin-password", "admin")
    return settings


def calibration_count(conn) -> int:
    return conn.execute("SELECT count(*) AS n FROM calibration").fetchone()["n"]


def choose(at, point: str, period: str | None = None):
    """Pick a measurement point, then a period by the start of its description (None = the first)."""
    at.selectbox(key=f"cal_point_{MAST}").select(
        next(o for o in at.selectbox(key=f"cal_point_{MAST}").options if o == point)).run()
    box = at.selectbox[2]
    if period is not None:
        box.select(next(o for o in box.options if o.startswith(period))).run()
    return at


@pytest.mark.parametrize("role", auth.ROLES)
def test_every_role_sees_the_periods_and_only_analysts_edit(mast: Settings, role: str) -> None:
    at = show(signed_in(role, station=MAST), PAGE)
    assert not at.error, [e.value for e in at.error]
    assert at.title[0].value == f"Calibrations · {MAST}"
    table = at.dataframe[0].value
    assert len(table) == 16 and set(table["source"]) == {"iea43"}
    spd = table[table["point"] == "Spd40mS"]
    assert spd["logger slope"].tolist() == [0.0459, 0.04591]
    assert spd["entered by"].tolist() == ["Task 43 import"] * 2
    buttons = [b.label for b in at.button]
    if role == "viewer":
        assert buttons == [] and "Read-only" in texts(at)
        assert not at.number_input
    else:
        assert buttons == ["Save", "Preview", "Delete this period"]


def test_preview_shows_recalibrated_values_of_the_first_period(mast: Settings) -> None:
    at = show(signed_in("analyst", station=MAST), PAGE)
    choose(at, "Spd40mS", "#")
    assert "Effect of this period" in texts(at)
    frame = at.dataframe[1].value
    avg = frame[frame["column_name"] == "Spd40mS"]
    assert avg["logged"].tolist() == [4.0, 5.0, 6.0]  # 17:30, 17:40, 17:50: before the change
    want = [(v - 0.2554) / 0.0459 * 0.04591 + 0.25539 for v in (4.0, 5.0, 6.0)]
    assert avg["recalibrated"].tolist() == pytest.approx(want, abs=1e-12)


def test_analyst_adds_a_period_and_overlap_is_refused(mast: Settings, conn) -> None:
    at = show(signed_in("analyst", station=MAST), PAGE)
    choose(at, "Spd80mN", "New period")
    before = calibration_count(conn)
    # the form starts from the point's open period: saving as is overlaps it
    at.number_input[2].set_value(0.0462)
    at.button[0].click().run()
    assert [e.value for e in at.error][0].startswith("Spd80mN: the period open .. open overlaps calibration")
    assert calibration_count(conn) == before

    at = show(signed_in("analyst", station=MAST), PAGE)
    choose(at, "Spd80mN", "New period")
    at.datetime_input[0].set_value(datetime(2015, 1, 1))
    at.datetime_input[1].set_value(datetime(2016, 1, 9, 15, 30))
    at.number_input[2].set_value(0.0462)
    at.text_input[0].set_value("old cup MEASNET 7")
    at.button[0].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "Saved calibration" in texts(at)
    row = conn.execute("SELECT * FROM calibration WHERE certificate = 'old cup MEASNET 7'").fetchone()
    assert (row["source"], row["entered_by"], row["cal_slope"]) == ("manual", "test-analyst", 0.0462)
    assert row["valid_from"] == datetime(2015, 1, 1, tzinfo=UTC)
    audit = conn.execute("SELECT actor FROM audit WHERE entity = 'calibration' AND entity_id = %s",
                         (row["id"],)).fetchall()
    assert audit == [{"actor": "test-analyst"}]


def test_slope_zero_is_refused_with_the_reason(mast: Settings, conn) -> None:
    at = show(signed_in("analyst", station=MAST), PAGE)
    choose(at, "Spd40mS", "#")
    before = conn.execute("SELECT logger_slope FROM calibration ORDER BY id").fetchall()
    at.number_input[0].set_value(0.0)
    at.button[1].click().run()  # preview checks too
    assert [e.value for e in at.error] == [
        "logger slope must not be 0: enter the slope the logger was programmed with (1 if it logs the raw signal)"]
    at.button[0].click().run()
    assert "logger slope must not be 0" in at.error[0].value
    assert conn.execute("SELECT logger_slope FROM calibration ORDER BY id").fetchall() == before


def test_delete_asks_for_confirmation(mast: Settings, conn) -> None:
    at = show(signed_in("analyst", station=MAST), PAGE)
    choose(at, "Spd40mS", "#")
    target = int(at.selectbox[2].value)
    before = calibration_count(conn)
    next(b for b in at.button if b.label == "Delete this period").click().run()
    assert calibration_count(conn) == before  # not yet
    assert "Delete calibration" in at.warning[-1].value
    next(b for b in at.button if b.label == "Cancel").click().run()
    assert calibration_count(conn) == before and not [w for w in at.warning if "Delete" in w.value]
    next(b for b in at.button if b.label == "Delete this period").click().run()
    next(b for b in at.button if b.label == "Yes, delete").click().run()
    assert not at.exception
    assert calibration_count(conn) == before - 1
    assert not conn.execute("SELECT 1 FROM calibration WHERE id = %s", (target,)).fetchall()
    assert f"Deleted calibration #{target}" in texts(at)
    assert conn.execute("SELECT actor FROM audit WHERE entity = 'calibration' AND action = 'delete'").fetchall() == [
        {"actor": "test-analyst"}]


def test_no_stations_says_where_to_start(conn, settings: Settings) -> None:
    at = show(signed_in("viewer"), PAGE)
    assert "No stations yet" in texts(at)


def test_a_slope_too_large_to_be_real_is_refused(mast: Settings, conn) -> None:
    at = show(signed_in("analyst", station=MAST), PAGE)
    choose(at, "Spd40mS", "#")
    before = conn.execute("SELECT cal_slope FROM calibration ORDER BY id").fetchall()
    at.number_input[2].set_value(1e300)
    at.button[0].click().run()
    assert not at.exception
    assert [e.value for e in at.error] == ["certificate slope 1e+300 is outside -1e+06 … 1e+06"]
    assert conn.execute("SELECT cal_slope FROM calibration ORDER BY id").fetchall() == before
