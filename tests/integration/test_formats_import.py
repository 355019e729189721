"""Unseen kinds of text files through the real import path: the time convention of files that
do not state it (and the CLI that sets it per logger), header warnings, line endings and
classic NRG Symphonie exports."""

from __future__ import annotations

import json
import lzma
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core import ingest
from tests.integration.test_cli import env_for, run

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parent.parent / "data"


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


def demo_head(path: Path, rows: int) -> Path:
    """The first ``rows`` data rows of brightwind's demo mast CSV (CRLF line ends, as shipped)."""
    lines = lzma.decompress((DATA / "generic" / "demo_data.csv.xz").read_bytes()).split(b"\r\n")
    path.write_bytes(b"\r\n".join(lines[: rows + 1]) + b"\r\n")
    return path


def import_one(conn, settings, path: Path, station: str = "Text Mast") -> dict:
    with conn.transaction():
        rec = ingest.receive(conn, path, station=station, settings=settings)
    return ingest.import_file(rec.id)


def readings(conn) -> list[tuple[datetime, int]]:
    return [(r["time"], r["n"]) for r in conn.execute(
        "SELECT time, count(*) AS n FROM reading GROUP BY time ORDER BY time")]


def test_logger_set_changes_how_stamps_are_read(conn, db_url, settings, tmp_path):
    env = env_for(db_url, settings.home)
    csv = demo_head(tmp_path / "head.csv", 600)  # 4 days: rollups built from the batches too
    res = run(["ingest", str(csv), "--station", "Text Mast"], env)
    assert res.returncode == 0, res.stderr
    assert run(["worker", "--once"], env).returncode == 0
    (row,) = json.loads(run(["files", "--station", "Text Mast", "--json"], env).stdout)
    assert row["status"] == "imported" and row["first_time"].startswith("2016-01-09 15:30")  # start
    assert row["warnings"] == [ingest.ASSUMED_START]
    assert ingest.ASSUMED_START in run(["files", "--station", "Text Mast"], env).stdout  # the text table too
    before = readings(conn)
    assert (before[0][0], len(before)) == (utc(2016, 1, 9, 15, 30), 600)

    res = run(["logger", "set", "--station", "Text Mast", "--timestamp-is-end", "true", "--json"], env)
    assert res.returncode == 0, res.stderr
    assert [r["timestamp_is_end"] for r in json.loads(res.stdout)] == [True]
    assert run(["requeue", str(row["id"])], env).returncode == 0
    assert run(["worker", "--once"], env).returncode == 0
    (row,) = json.loads(run(["files", "--station", "Text Mast", "--json"], env).stdout)
    # the logger's setting wins: stamps are period ends, and nothing is assumed any more
    assert row["first_time"].startswith("2016-01-09 15:20") and row["warnings"] == []
    # the file's readings moved one step back: none is left at its old last stamp
    assert readings(conn) == [(t - timedelta(minutes=10), n) for t, n in before]
    for table in ("reading_1h", "reading_1d"):
        rollup = conn.execute(f"SELECT min(bucket) AS first, sum(n) AS n FROM {table}").fetchone()
        assert rollup["n"] == sum(n for _, n in before) and rollup["first"] <= utc(2016, 1, 9, 15), table

    res = run(["logger", "set", "--station", "Nowhere", "--timestamp-is-end", "true"], env)
    assert res.returncode == 2 and "no station 'Nowhere'" in res.stderr


def test_campbell_files_stay_end_of_period_without_a_warning(conn, settings):
    row = import_one(conn, settings, DATA / "toa5" / "TestLogger_Hourly_1.dat")
    assert (row["first_time"], row["warnings"]) == (utc(2021, 6, 18, 20), [])
    logger = conn.execute("SELECT timestamp_is_end FROM logger").fetchone()
    assert logger["timestamp_is_end"] is True


def test_an_unreadable_header_value_is_a_file_warning_and_the_readings_import(conn, settings, tmp_path):
    sample = DATA / "nrg_symphoniepro" / "004310_2022-03-17_00.00_000835_meas.txt"
    text = sample.read_text().replace("Effective Date:\t2022-03-17 00:00:00", "Effective Date:\t17.03.2022 0:00 h", 1)
    path = tmp_path / sample.name
    path.write_text(text)
    row = import_one(conn, settings, path, station="NRG Mast")
    assert row["status"] == "imported", row["error"]
    assert (row["n_rows"], row["first_time"], row["last_time"]) == (370, utc(2022, 3, 17, 5), utc(2022, 3, 17, 11, 9))
    assert row["warnings"] == ["line 41: Effective Date '17.03.2022 0:00 h' is not a date; this entry is taken "
                               "as the oldest"]
    listed = conn.execute("SELECT warnings FROM source_file WHERE id = %s", (row["id"],)).fetchone()
    assert listed["warnings"] == row["warnings"]


@pytest.mark.parametrize("fmt", ["windographer", "nrg_symphoniepro", "generic"])
def test_old_mac_line_ends_import(conn, settings, tmp_path, fmt):
    from tests.unit.test_formats_newlines import ENDINGS, grown, write

    lines, head = grown(fmt)
    path = write(tmp_path / f"{fmt}_cr.txt", lines, ENDINGS["cr"])
    row = import_one(conn, settings, path)
    assert row["status"] == "imported", row["error"]
    assert (row["format"], row["n_rows"]) == (fmt, len(lines) - head)


@pytest.mark.parametrize(("name", "first"), [("0123_20110716_sdr.txt", utc(2011, 7, 16, 20)),
                                             ("0456_20110716_dr.csv", utc(2011, 7, 16, 18))])
def test_classic_symphonie_exports_import_with_their_channel_metadata(conn, settings, name, first):
    row = import_one(conn, settings, DATA / "nrg_symphonie" / name, station="Symphonie Mast")
    assert row["status"] == "imported", row["error"]
    # local stamps at the site's time offset, marking the start of each 10 minutes
    assert (row["format"], row["n_rows"], row["first_time"], row["warnings"]) == ("nrg_symphonie", 36, first, [])
    assert row["last_time"] == first + timedelta(hours=5, minutes=50)
    points = conn.execute(
        "SELECT c.column_name, c.statistic, mp.name, mp.measurement_type, mp.height_m, mp.orientation_deg "
        "FROM channel c JOIN measurement_point mp ON mp.id = c.measurement_point_id ORDER BY c.id").fetchall()
    assert len(points) == 24  # every channel with a sensor is mapped from its channel block
    by_column = {p["column_name"]: p for p in points}
    assert (by_column["CH1Avg"]["measurement_type"], by_column["CH1Avg"]["height_m"]) == ("wind_speed", 60)
    assert by_column["CH1SD"]["name"] == by_column["CH1Avg"]["name"] and by_column["CH1SD"]["statistic"] == "sd"
    assert by_column["CH2Avg"]["name"] != by_column["CH1Avg"]["name"]  # a second anemometer at 60 m
    assert (by_column["CH7Avg"]["measurement_type"], by_column["CH7Avg"]["height_m"]) == ("wind_direction", 58.5)
    assert by_column["CH10Avg"]["measurement_type"] == "air_pressure"
    logger = conn.execute("SELECT serial, oem, utc_offset_minutes, timestamp_is_end FROM logger").fetchone()
    assert logger["oem"] == "NRG Systems" and logger["timestamp_is_end"] is False
