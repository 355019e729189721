"""Import through the worker's own function, on a real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from psycopg import sql

from core import demo, ingest, rollups, schema

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parent.parent / "data" / "toa5"


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory) -> list[Path]:
    out = tmp_path_factory.mktemp("demo")
    return demo.generate(out, start=date(2025, 3, 1), days=3)


def receive_and_import(conn, path: Path, station: str = "Mast A", settings=None) -> dict:
    with conn.transaction():
        rec = ingest.receive(conn, path, station=station, settings=settings)
    if rec.status != "queued":
        return conn.execute("SELECT * FROM source_file WHERE id = %s", (rec.id,)).fetchone()
    return ingest.import_file(rec.id)


def count(conn, sql: str, *args) -> int:
    return conn.execute(sql, args).fetchone()["n"]


def test_toa5_day_file_imports_every_reading_at_utc_period_start(conn, settings, demo_files):
    path = demo_files[0]
    row = receive_and_import(conn, path, settings=settings)
    assert row["status"] == "imported", row["error"]
    assert row["format"] == "toa5" and row["n_rows"] == 144
    # 41 numeric columns, no missing values on this day
    assert row["n_readings"] == 144 * 41 == count(conn, "SELECT count(*) AS n FROM reading")
    # logged 2025-03-01 00:10 (end of period) -> stored 00:00 (start), UTC
    assert row["first_time"] == datetime(2025, 3, 1, tzinfo=UTC)
    assert row["last_time"] == datetime(2025, 3, 1, 23, 50, tzinfo=UTC)
    assert count(conn, "SELECT count(*) AS n FROM channel WHERE statistic = 'sd'") == 6 + 2 + 3
    # the original is kept, content-addressed
    assert ingest.stored_path(settings, row["sha256"]).read_bytes() == path.read_bytes()


def test_same_content_twice_is_a_duplicate_and_changes_nothing(conn, settings, demo_files):
    first = receive_and_import(conn, demo_files[0], settings=settings)
    before = count(conn, "SELECT count(*) AS n FROM reading")
    again = receive_and_import(conn, demo_files[0], settings=settings)
    assert again["status"] == "duplicate" and again["duplicate_of"] == first["id"]
    assert count(conn, "SELECT count(*) AS n FROM reading") == before


def test_bad_file_fails_with_line_and_reason_and_imports_nothing(conn, settings, tmp_path, demo_files):
    good = demo_files[0].read_text()
    lines = good.splitlines(keepends=True)
    lines[100] = lines[100].rsplit(",", 1)[0] + "\r\n"  # one field short on file line 101
    bad = tmp_path / "short_row.dat"
    bad.write_text("".join(lines))
    row = receive_and_import(conn, bad, settings=settings)
    assert row["status"] == "failed"
    assert row["error_line"] == 101
    assert "this row has 42" in row["error"]
    assert count(conn, "SELECT count(*) AS n FROM reading") == 0
    assert ingest.stored_path(settings, row["sha256"]).exists()


@pytest.mark.parametrize("bad", sorted(p.name for p in DATA.glob("*Bad*.dat")))
def test_bad_samples_fail_cleanly(conn, settings, bad):
    row = receive_and_import(conn, DATA / bad, settings=settings)
    assert row["status"] == "failed" and row["error"]
    assert count(conn, "SELECT count(*) AS n FROM reading") == 0


def test_overlapping_file_backfills_and_later_import_wins(conn, settings, tmp_path, demo_files):
    receive_and_import(conn, demo_files[1], settings=settings)
    lines = demo_files[1].read_text().splitlines(keepends=True)
    # a later file repeating the last two rows, one value changed, plus one new row
    fields = lines[-1].rstrip("\r\n").split(",")
    fields[2] = "99.5"
    later = tmp_path / "later.dat"
    later.write_text("".join(lines[:4]) + lines[-2] + ",".join(fields) + "\r\n")
    row = receive_and_import(conn, later, settings=settings)
    assert row["status"] == "imported" and row["n_changed"] == 1
    assert value_at(conn, "WS_80m_NE_Avg", datetime(2025, 3, 2, 23, 50, tzinfo=UTC)) == 99.5
    # an earlier day arriving late backfills too
    assert receive_and_import(conn, demo_files[0], settings=settings)["status"] == "imported"
    assert count(conn, "SELECT count(DISTINCT time) AS n FROM reading") == 288


def rollup_mismatches(conn, table: str = "reading_1h", unit: str = "hour") -> int:
    """Buckets of rollup ``table`` that differ from the raw readings grouped by ``unit`` (UTC)."""
    query = """
        WITH raw AS (
            SELECT channel_id, date_trunc({unit}, time) AS bucket, count(*) AS n, avg(value) AS mean,
                   min(value) AS min, max(value) AS max
            FROM reading GROUP BY 1, 2)
        SELECT count(*) AS n FROM raw FULL JOIN {table} r USING (channel_id, bucket)
        WHERE r.n IS DISTINCT FROM raw.n OR abs(r.mean - raw.mean) > 1e-9
           OR r.min IS DISTINCT FROM raw.min OR r.max IS DISTINCT FROM raw.max
        """
    return conn.execute(sql.SQL(query).format(unit=sql.Literal(unit), table=sql.Identifier(table))).fetchone()["n"]


def value_at(conn, column_name: str, at: datetime) -> float:
    """The stored reading of the channel named ``column_name`` at ``at``."""
    return conn.execute(
        "SELECT r.value FROM reading r JOIN channel c ON c.id = r.channel_id "
        "WHERE c.column_name = %s AND r.time = %s", (column_name, at)).fetchone()["value"]


def test_rollups_match_the_raw_readings(conn, settings, demo_files):
    for p in demo_files:
        receive_and_import(conn, p, settings=settings)
    assert rollup_mismatches(conn) == 0
    days = conn.execute("SELECT count(DISTINCT bucket) AS n FROM reading_1d").fetchone()["n"]
    assert days == 3
    # refreshing again is idempotent
    before = conn.execute("SELECT sum(n) AS n, sum(mean) AS m FROM reading_1d").fetchone()
    rollups.refresh_rollups(conn, datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 3, 3, tzinfo=UTC))
    conn.commit()
    after = conn.execute("SELECT sum(n) AS n, sum(mean) AS m FROM reading_1d").fetchone()
    assert after["n"] == before["n"] and after["m"] == pytest.approx(before["m"], rel=1e-12)


def test_storage_level_is_the_best_the_server_offers(conn):
    caps = schema.capabilities(conn)
    assert schema.stored_level(conn) == caps["offered_level"]
    if caps["timescaledb"]:
        hyper = conn.execute(
            "SELECT count(*) AS n FROM timescaledb_information.hypertables WHERE hypertable_name = 'reading'"
        ).fetchone()["n"]
        assert hyper == 1


def test_each_row_uses_the_logger_configuration_in_force_at_its_time(conn, settings, demo_files):
    # the logger clock moves from UTC to UTC+1 at 2025-03-01 12:00 (logged time)
    with conn.transaction():
        st = ingest.ensure_station(conn, "Clock Mast")
        for valid_from, valid_to, offset in ((None, "2025-03-01 12:00+00", 0), ("2025-03-01 12:00+00", None, 60)):
            conn.execute(
                "INSERT INTO logger (station_id, serial, utc_offset_minutes, timestamp_is_end, interval_s,"
                " valid_from, valid_to) VALUES (%s, '31842', %s, true, 600, %s, %s)",
                (st["id"], offset, valid_from, valid_to),
            )
    row = receive_and_import(conn, demo_files[0], station="Clock Mast", settings=settings)
    times = [r["time"] for r in conn.execute(
        "SELECT DISTINCT time FROM reading ORDER BY time").fetchall()]
    assert times[0] == datetime(2025, 3, 1, 0, 0, tzinfo=UTC)  # logged 00:10, end of period
    # logged 11:50 -> 11:40; logged 12:00 (UTC+1) -> 10:50: the hour is logged twice
    assert datetime(2025, 3, 1, 11, 40, tzinfo=UTC) in times
    assert row["last_time"] == datetime(2025, 3, 1, 22, 50, tzinfo=UTC)
    assert row["n_rows"] == 144 and len(times) < 144  # overlapping hour merged, later wins


ROLLUPS_MATCH_RAW = """
    WITH raw AS (
        SELECT channel_id, date_trunc('{unit}', time) AS bucket, count(*) AS n, avg(value) AS mean,
               min(value) AS min, max(value) AS max, sum(value * value) AS sumsq
        FROM reading GROUP BY 1, 2)
    SELECT count(*) AS n FROM raw FULL JOIN reading_1{suffix} r USING (channel_id, bucket)
    WHERE r.n IS DISTINCT FROM raw.n OR abs(r.mean - raw.mean) > 1e-9
       OR r.min IS DISTINCT FROM raw.min OR r.max IS DISTINCT FROM raw.max
       OR abs(r.sumsq - raw.sumsq) > 1e-6 * raw.sumsq
"""


def test_rollups_built_while_reading_a_long_file_match_the_raw_readings(conn, settings, tmp_path):
    days = [p for p in demo.generate(tmp_path / "g", start=date(2025, 4, 7), days=7) if "ballymore" in p.name]
    lines = [p.read_text().splitlines(keepends=True) for p in days]
    head = lines[0][:4]
    # readings of other files share the long file's first and last day, without overlapping it
    morning, evening = tmp_path / "morning.dat", tmp_path / "evening.dat"
    morning.write_text("".join(head + lines[0][4:76]))
    evening.write_text("".join(head + lines[6][100:]))
    long_file = tmp_path / "long.dat"
    long_file.write_text("".join(head + lines[0][76:] + [x for d in lines[1:6] for x in d[4:]] + lines[6][4:100]))
    for p in (morning, evening):
        receive_and_import(conn, p, station="Long Mast", settings=settings)
    row = receive_and_import(conn, long_file, station="Long Mast", settings=settings)
    assert row["status"] == "imported" and row["n_changed"] == 0
    assert conn.execute("SELECT count(DISTINCT time) AS n FROM reading").fetchone()["n"] == 7 * 144
    for unit, suffix in (("hour", "h"), ("day", "d")):
        assert conn.execute(ROLLUPS_MATCH_RAW.format(unit=unit, suffix=suffix)).fetchone()["n"] == 0


def test_rollups_of_a_new_multi_day_file_match_the_raw_readings(conn, settings, tmp_path):
    days = [p for p in demo.generate(tmp_path / "g", start=date(2025, 4, 7), days=6) if "ballymore" in p.name]
    text = days[0].read_text()
    for p in days[1:]:
        text += "".join(p.read_text().splitlines(keepends=True)[4:])
    long_file = tmp_path / "six_days.dat"
    long_file.write_text(text)
    row = receive_and_import(conn, long_file, station="Long Mast", settings=settings)
    assert row["status"] == "imported"
    # the stuck anemometer of 8-10 April gives Std rows of exactly 0: min/max edge cases
    for unit, suffix in (("hour", "h"), ("day", "d")):
        assert conn.execute(ROLLUPS_MATCH_RAW.format(unit=unit, suffix=suffix)).fetchone()["n"] == 0
    assert conn.execute("SELECT count(DISTINCT bucket) AS n FROM reading_1d").fetchone()["n"] == 6


def test_stamps_with_their_own_offset_are_not_shifted_by_the_logger_offset(conn, settings, tmp_path):
    with conn.transaction():
        st = ingest.ensure_station(conn, "Offset Mast")
        conn.execute(
            "INSERT INTO logger (station_id, serial, utc_offset_minutes, timestamp_is_end, interval_s)"
            " VALUES (%s, '1', 120, true, 600)", (st["id"],))
    head = ('"TOA5","Offset Mast","CR1000X","1","os","prog","sig","T"\n"TIMESTAMP","RECORD","WS_Avg"\n'
            '"TS","RN","m/s"\n"","","Avg"\n')
    f = tmp_path / "offset.dat"
    f.write_text(head + '"2025-01-01 12:10:00+01:00",1,5.0\n"2025-01-01 12:20:00+01:00",2,6.0\n')
    row = receive_and_import(conn, f, station="Offset Mast", settings=settings)
    # 12:10+01:00 = 11:10 UTC, end of period -> 11:00 UTC (the logger's +2 h is not applied)
    assert row["first_time"] == datetime(2025, 1, 1, 11, 0, tzinfo=UTC)


@pytest.fixture
def small_batches(monkeypatch):
    """Batches of 100 rows, read ahead in a thread, and COPY rows set aside on disk beyond 4 KiB:
    a 3-day file then takes the paths of a big one (many batches, prefetch, a spill file)."""
    from functools import partialmethod

    from core.formats.delimited import TableReader

    monkeypatch.setattr(TableReader, "batches", partialmethod(TableReader.batches, rows=100))
    monkeypatch.setattr(ingest, "SPILL_IN_MEMORY", 4096)
    monkeypatch.setattr(ingest, "PREFETCH_MIN_BYTES", 0)


def _three_days(tmp_path: Path) -> tuple[list[str], list[str]]:
    days = [p for p in demo.generate(tmp_path / "g", start=date(2025, 4, 7), days=3) if "ballymore" in p.name]
    lines = [p.read_text().splitlines(keepends=True) for p in days]
    return lines[0][:4], [x for d in lines for x in d[4:]]


def test_a_file_of_many_batches_imports_in_key_order_like_one_batch(conn, settings, tmp_path, small_batches):
    head, rows = _three_days(tmp_path)
    path = tmp_path / "three_days.dat"
    path.write_text("".join(head + rows))
    row = receive_and_import(conn, path, station="Long Mast", settings=settings)
    assert row["status"] == "imported" and row["n_changed"] == 0 and row["n_rows"] == 3 * 144
    assert count(conn, "SELECT count(DISTINCT time) AS n FROM reading") == 3 * 144
    for unit, suffix in (("hour", "h"), ("day", "d")):
        assert conn.execute(ROLLUPS_MATCH_RAW.format(unit=unit, suffix=suffix)).fetchone()["n"] == 0


def _clock_mast(conn, name: str) -> None:
    """A station whose logger moves from UTC to UTC+1 at 2025-03-01 12:00 (logged time)."""
    with conn.transaction():
        st = ingest.ensure_station(conn, name)
        for valid_from, valid_to, offset in ((None, "2025-03-01 12:00+00", 0), ("2025-03-01 12:00+00", None, 60)):
            conn.execute(
                "INSERT INTO logger (station_id, serial, utc_offset_minutes, timestamp_is_end, interval_s,"
                " valid_from, valid_to) VALUES (%s, '31842', %s, true, 600, %s, %s)",
                (st["id"], offset, valid_from, valid_to),
            )


def _station_readings(conn, name: str) -> list[tuple]:
    return [tuple(r.values()) for r in conn.execute(
        "SELECT c.column_name, r.time, r.value FROM reading r JOIN channel c ON c.id = r.channel_id"
        " JOIN station s ON s.id = c.station_id WHERE s.name = %s ORDER BY 1, 2", (name,))]


def test_a_file_whose_utc_times_go_back_between_batches_imports_like_one_batch(
        conn, settings, demo_files, monkeypatch):
    from functools import partialmethod

    from core.formats.delimited import TableReader

    # one batch: the hour logged twice after the clock change is merged inside the batch
    _clock_mast(conn, "One Batch")
    receive_and_import(conn, demo_files[0], station="One Batch", settings=settings)
    # batches of 77 rows: the second starts at the change, logged 13:00 = 11:50 UTC (the
    # configuration is valid from 12:00 UTC), before the first ends (12:40 UTC)
    monkeypatch.setattr(TableReader, "batches", partialmethod(TableReader.batches, rows=77))
    _clock_mast(conn, "Two Batches")
    copy = Path(settings.home) / "copy.dat"
    copy.write_text(demo_files[0].read_text() + "\n")  # other bytes: not a duplicate of the file
    row = receive_and_import(conn, copy, station="Two Batches", settings=settings)
    assert row["status"] == "imported" and row["n_rows"] == 144
    assert row["n_changed"] > 0  # the upsert path: the second batch overwrote the first's hour
    assert _station_readings(conn, "Two Batches") == _station_readings(conn, "One Batch")
    for unit, suffix in (("hour", "h"), ("day", "d")):
        assert conn.execute(ROLLUPS_MATCH_RAW.format(unit=unit, suffix=suffix)).fetchone()["n"] == 0
