"""Every real sample file imports through the worker's path with the right counts and times."""

from __future__ import annotations

import lzma
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core import ingest

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parent.parent / "data"


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


# file, format, channels, rows, first and last reading time (UTC, start of period)
SAMPLES = [
    # TOA5: stamps mark the end of the period; hourly table -> the hour before
    ("toa5/TestLogger_Hourly_1.dat", "toa5", 5, 3, utc(2021, 6, 18, 20), utc(2021, 6, 18, 22)),
    # "+00:00" stamps, day-first dates, 10-minute ends; Site is text and is not a channel
    ("toa5/campbell_scientific_demo_data1.csv", "toa5", 30, 188, utc(2016, 1, 9, 15, 20), utc(2016, 1, 10, 23, 40)),
    # SymphoniePRO: start-of-interval stamps in UTC-5, 1-minute data
    ("nrg_symphoniepro/004310_2022-03-17_00.00_000835_meas.txt", "nrg_symphoniepro", 63, 370,
     utc(2022, 3, 17, 5, 0), utc(2022, 3, 17, 11, 9)),
    ("nrg_logr/20240111_1339_000304_002995_statistical.dat", "nrg_logr", 139, 2,
     utc(2024, 1, 11, 13, 39), utc(2024, 1, 11, 13, 40)),
    # Windographer: "Time stamps indicate the beginning of the time step."
    ("windographer/windographer_demo_data1.txt", "windographer", 29, 188, utc(2016, 1, 9, 15, 30), utc(2016, 1, 10, 23, 50)),
]


@pytest.mark.parametrize(("name", "fmt", "channels", "rows", "first", "last"), SAMPLES, ids=[s[0] for s in SAMPLES])
def test_sample_imports(conn, settings, name, fmt, channels, rows, first, last):
    with conn.transaction():
        rec = ingest.receive(conn, DATA / name, station="Sample Mast", settings=settings)
    row = ingest.import_file(rec.id)
    assert row["status"] == "imported", row["error"]
    assert row["format"] == fmt
    assert row["n_rows"] == rows
    assert conn.execute("SELECT count(*) AS n FROM channel").fetchone()["n"] == channels
    assert (row["first_time"], row["last_time"]) == (first, last)
    assert row["n_readings"] == conn.execute("SELECT count(*) AS n FROM reading").fetchone()["n"] > 0


def import_demo_mast_csv(conn, settings, tmp_path) -> dict:
    csv = tmp_path / "demo_data.csv"
    csv.write_bytes(lzma.decompress((DATA / "generic" / "demo_data.csv.xz").read_bytes()))
    with conn.transaction():
        rec = ingest.receive(conn, csv, station="Demo Mast", settings=settings)
    row = ingest.import_file(rec.id)
    assert row["status"] == "imported", row["error"]
    return row


def test_brightwind_demo_mast_csv_imports_in_full(conn, settings, tmp_path):
    row = import_demo_mast_csv(conn, settings, tmp_path)
    assert row["format"] == "generic" and row["n_rows"] == 95_629
    assert conn.execute("SELECT count(*) AS n FROM channel").fetchone()["n"] == 29
    # no statement in the file: stamps are taken as period starts (as brightwind reads them),
    # and the file says so
    assert row["first_time"] == utc(2016, 1, 9, 15, 30)
    assert row["last_time"] == utc(2017, 11, 23, 10, 50)
    assert row["warnings"] == [ingest.ASSUMED_START]


def test_brightwind_demo_mast_with_its_task43_document_maps_every_column(conn, settings, tmp_path):
    from core import iea43

    iea43.import_metadata(conn, DATA / "iea43" / "demo_data_iea43_wra_data_model.json", "ana")
    import_demo_mast_csv(conn, settings, tmp_path)
    channels = conn.execute(
        "SELECT c.column_name, c.mapped, mp.height_m, mp.measurement_type FROM channel c "
        "LEFT JOIN measurement_point mp ON mp.id = c.measurement_point_id "
        "JOIN station s ON s.id = c.station_id WHERE s.name = 'Demo Mast'"
    ).fetchall()
    assert len(channels) == 29
    assert [c["column_name"] for c in channels if not c["mapped"]] == []
    # the document gives every point a height but the battery and the rain gauge
    assert sorted(c["column_name"] for c in channels if c["height_m"] is None) == ["BattMin", "PrcpTot"]
    heights = {c["column_name"]: c["height_m"] for c in channels}
    assert heights["Spd80mN"] == 80 and heights["Dir38mS"] == 38 and heights["T2m"] == 2
    assert {c["measurement_type"] for c in channels} >= {"wind_speed", "wind_direction", "air_temperature"}
