"""Archives, routing, the inbox watcher and re-queueing."""

from __future__ import annotations

import dataclasses
import gzip
import os
import threading
import time
import zipfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from core import demo, inbox, ingest

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parent.parent / "data" / "toa5"


def run_queue(conn, ids: list[int]) -> None:
    """Do what the worker does for these files and for what they produce (archive members)."""
    pending = list(ids)
    while pending:
        row = ingest.import_file(pending.pop(0))
        pending.extend(row["queue"])


def files(conn) -> dict[str, dict]:
    return {r["original_name"]: r for r in conn.execute("SELECT * FROM source_file ORDER BY id")}


def test_zip_members_are_files_of_their_own(conn, settings, tmp_path):
    z = tmp_path / "upload.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(DATA / "TestLogger_Hourly_1.dat", "data/TestLogger_Hourly_1.dat")
        zf.write(DATA / "TestLogger_Hourly_Bad05.dat", "data/bad.dat")
        zf.writestr("__MACOSX/._junk", b"x")
    with conn.transaction():
        rec = ingest.receive(conn, z, station="Zip Mast", settings=settings)
    run_queue(conn, [rec.id])
    got = files(conn)
    assert got["upload.zip"]["status"] == "unpacked" and got["upload.zip"]["n_rows"] == 2
    good, bad = got["upload.zip/data/TestLogger_Hourly_1.dat"], got["upload.zip/data/bad.dat"]
    assert good["status"] == "imported" and good["n_readings"] == 15 and good["parent_id"] == rec.id
    assert bad["status"] == "failed" and bad["error_line"] == 1


def test_gzip_member_and_damaged_archive(conn, settings, tmp_path):
    gz = tmp_path / "day.dat.gz"
    gz.write_bytes(gzip.compress((DATA / "TestLogger_Hourly_1.dat").read_bytes()))
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04" + os.urandom(64))
    with conn.transaction():
        ids = [ingest.receive(conn, p, station="Gz Mast", settings=settings).id for p in (gz, broken)]
    run_queue(conn, ids)
    got = files(conn)
    assert got["day.dat"]["status"] == "imported"
    assert got["broken.zip"]["status"] == "failed" and "damaged" in got["broken.zip"]["error"]


def test_file_without_station_is_routed_by_logger_serial_or_waits(conn, settings):
    with conn.transaction():
        known = ingest.receive(conn, DATA / "TestLogger_Hourly_1.dat", station=None, settings=settings)
    run_queue(conn, [known.id])
    row = files(conn)["TestLogger_Hourly_1.dat"]
    assert row["status"] == "needs station" and "12342" in row["error"]
    assert conn.execute("SELECT count(*) AS n FROM reading").fetchone()["n"] == 0
    with conn.transaction():
        ingest.assign_station(conn, known.id, "Serial Mast", actor="ana")
    run_queue(conn, [known.id])
    assert files(conn)["TestLogger_Hourly_1.dat"]["status"] == "imported"
    audit = conn.execute("SELECT actor, action FROM audit WHERE entity = 'source_file'").fetchall()
    assert audit == [{"actor": "ana", "action": "assign station"}]
    # the logger (serial 12342) is now known: its next file finds the station by itself
    with conn.transaction():
        nxt = ingest.receive(conn, DATA / "TestLogger_Daily_1.dat", station=None, settings=settings)
    run_queue(conn, [nxt.id])
    row = files(conn)["TestLogger_Daily_1.dat"]
    assert row["status"] == "imported"
    assert row["station_id"] == files(conn)["TestLogger_Hourly_1.dat"]["station_id"]


def test_requeue_imports_again_without_changing_values(conn, settings):
    with conn.transaction():
        rec = ingest.receive(conn, DATA / "TestLogger_Hourly_1.dat", station="Mast R", settings=settings)
    run_queue(conn, [rec.id])
    with conn.transaction():
        ingest.requeue(conn, rec.id, actor="admin")
    run_queue(conn, [rec.id])
    row = files(conn)["TestLogger_Hourly_1.dat"]
    assert row["status"] == "imported" and row["n_changed"] == 0 and row["attempts"] == 2
    assert conn.execute("SELECT count(*) AS n FROM reading").fetchone()["n"] == 15


def test_inbox_takes_settled_files_once_and_routes_by_folder(conn, settings, tmp_path):
    box = tmp_path / "inbox"
    s = dataclasses.replace(settings, inbox=box, inbox_settle_s=2.0)
    day = demo.generate(tmp_path / "gen", start=date(2025, 6, 1), days=1)[0]
    (box / "North Mast").mkdir(parents=True)
    target = box / "North Mast" / day.name
    target.write_bytes(day.read_bytes())
    (box / "North Mast" / ".hidden.dat").write_bytes(b"x")
    (box / "North Mast" / "upload.dat.part").write_bytes(b"x")
    now = time.time()
    os.utime(target, (now, now))
    assert inbox.scan(conn, s, now=now) == []  # still being written
    ids = inbox.scan(conn, s, now=now + 5)
    assert len(ids) == 1
    assert inbox.scan(conn, s, now=now + 10) == []  # seen, unchanged
    os.utime(target, (now + 20, now + 20))  # touched, same content: not received again
    assert inbox.scan(conn, s, now=now + 30) == []
    run_queue(conn, ids)
    row = files(conn)[f"North Mast/{day.name}"]
    assert row["status"] == "imported" and row["origin"] == "inbox"
    assert conn.execute("SELECT name FROM station WHERE id = %s", (row["station_id"],)).fetchone()["name"] == "North Mast"
    # the logger appends rows: the grown file is received and backfills
    target.write_bytes(day.read_bytes() + b'"2025-06-02 00:10:00",144' + b",1" * 41 + b"\r\n")
    os.utime(target, (now + 40, now + 40))
    ids = inbox.scan(conn, s, now=now + 50)
    run_queue(conn, ids)
    grown = conn.execute("SELECT * FROM source_file WHERE id = %s", (ids[0],)).fetchone()
    assert grown["status"] == "imported" and grown["n_readings"] == 145 * 41


def test_generic_text_is_read_with_the_mapping_saved_for_its_station(conn, settings, tmp_path):
    from core.formats.generic import GenericMapping

    text = (
        "Logger export\n"
        "Datum;Zeit;WS 80m [m/s];Temp [C]\n"
        "01.02.2025;00:00;5,5;-1,5\n"
        "01.02.2025;00:10;-999;-1,25\n"
    )
    path = tmp_path / "export.txt"
    path.write_text(text, encoding="utf-8")
    mapping = GenericMapping(header_row=1, delimiter=";", decimal=",", timestamp=["Datum", "Zeit"],
                             time_format="%d.%m.%Y %H:%M", utc_offset_minutes=60,
                             timestamp_is_end=False, missing=["-999"])
    with conn.transaction():
        ingest.set_file_mapping(conn, "Text Mast", mapping, actor="ana")
        rec = ingest.receive(conn, path, station="Text Mast", settings=settings)
    row = ingest.import_file(rec.id)
    assert row["status"] == "imported", row["error"]
    assert row["format"] == "generic" and row["n_readings"] == 3  # -999 is missing
    # 00:00 at UTC+1, start of period -> 23:00 UTC the day before
    assert row["first_time"].isoformat() == "2025-01-31T23:00:00+00:00"
    values = [r["value"] for r in conn.execute("SELECT value FROM reading ORDER BY time, channel_id")]
    assert values == [5.5, -1.5, -1.25]


def test_a_slow_import_records_its_real_duration(conn, db_url, settings):
    """``finished_at`` is the time the import ended, not the start of its transaction."""
    with conn.transaction():
        rec = ingest.receive(conn, DATA / "TestLogger_Hourly_1.dat", station="Slow Mast", settings=settings)
    held_s = 1.5
    with psycopg.connect(db_url) as locker:  # another session keeps `reading` locked a while
        locker.execute("LOCK TABLE reading IN ACCESS EXCLUSIVE MODE")
        release = threading.Timer(held_s, locker.commit)
        release.start()
        began = time.monotonic()
        row = ingest.import_file(rec.id)
        elapsed = time.monotonic() - began
        release.join()
    assert row["status"] == "imported" and elapsed >= held_s
    recorded = (row["finished_at"] - row["started_at"]).total_seconds()
    assert held_s - 0.2 <= recorded <= elapsed + 0.5, (recorded, elapsed)


def test_the_demo_run_again_later_adds_the_new_days_only(conn, db_url, settings):
    end = datetime(2026, 3, 4, 15, 37, tzinfo=UTC)
    first = demo.load_demo(days=3, end=end)
    assert first["queued"] == 6 and first["start"] == date(2026, 3, 2)  # 2 masts x 3 days, the last partial
    run_queue(conn, first["file_ids"])
    later = demo.load_demo(days=3, end=end + timedelta(days=1, hours=2))
    # only the day that had grown and the new day; the same site (its first run's start)
    assert later["start"] == date(2026, 3, 2) and (later["queued"], later["known"]) == (4, 4)
    run_queue(conn, later["file_ids"])
    assert set(files(conn)[n]["status"] for n in files(conn)) == {"imported"}
    last = conn.execute("SELECT max(time) AS t, count(*) AS n, count(DISTINCT (channel_id, time)) AS k "
                        "FROM reading").fetchone()
    assert last["n"] == last["k"]  # nothing twice
    # stamps mark the end of each period; stored times are the period start
    assert last["t"] == datetime(2026, 3, 5, 17, 20, tzinfo=UTC)
    per_channel = conn.execute("SELECT count(*) AS n FROM reading GROUP BY channel_id ORDER BY 1 DESC LIMIT 1"
                               ).fetchone()["n"]
    assert per_channel == 3 * 144 + 105  # 2 March 00:10 .. 5 March 17:30, every 10 minutes
