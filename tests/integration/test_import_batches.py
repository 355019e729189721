"""Import jobs that take several consecutive files of a station (core.ingest.Batch).

Each file of a batch has its own transaction (a bad one fails alone, with its line and
reason), the channels are looked up once, and the rollups are refreshed once for the
batch: they must equal the rollups of the same files imported one by one, at every
storage level (run with STATIONMANAGER_TEST_DATABASE_URL at a level-1 or level-2 server).
"""

from __future__ import annotations

import threading
import time
from datetime import date, timedelta
from pathlib import Path

import psycopg
import pytest

from core import demo, ingest, rollups, schema

pytestmark = pytest.mark.integration

COLUMNS = 41  # numeric columns of a demo day file


def day_files(out: Path, days: int) -> list[Path]:
    """``days`` consecutive demo day files of one mast."""
    return [p for p in demo.generate(out, start=date(2025, 3, 1), days=days) if p.parent.name == "ballymore-hill"]


def receive_all(conn, paths: list[Path], station: str, settings) -> list[int]:
    with conn.transaction():
        return [ingest.receive(conn, p, station=station, settings=settings).id for p in paths]


def import_batch(ids: list[int]) -> list[dict]:
    with ingest.Batch() as batch:
        return [batch.import_file(i) for i in ids]


def with_column(text: str, name: str, value: str = "1.5") -> str:
    """A TOA5 file's text with one more column (``name``, every row ``value``)."""
    lines = text.splitlines()
    extra = [f',"{name}"', ',"m/s"', ',"Avg"']
    out = [lines[0]] + [line + add for line, add in zip(lines[1:4], extra)] + [line + "," + value for line in lines[4:]]
    return "\r\n".join(out) + "\r\n"


def short_row(text: str, line_no: int) -> str:
    """The file with one field missing on line ``line_no`` (1-based)."""
    lines = text.splitlines()
    lines[line_no - 1] = lines[line_no - 1].rsplit(",", 1)[0]
    return "\r\n".join(lines) + "\r\n"


def rollup_table(conn, table: str, station: str) -> dict:
    """The station's rollups by (column name, bucket)."""
    rows = conn.execute(
        f"SELECT c.column_name, r.bucket, r.n, r.mean, r.min, r.max, r.sumsq FROM {table} r "  # noqa: S608
        "JOIN channel c ON c.id = r.channel_id JOIN station s ON s.id = c.station_id WHERE s.name = %s",
        (station,)).fetchall()
    return {(r["column_name"], r["bucket"]): (r["n"], r["mean"], r["min"], r["max"], r["sumsq"]) for r in rows}


def expected_1h(conn, station: str) -> dict:
    """Hourly rollups computed here from ``reading`` (n, min and max; mean and sumsq rounded)."""
    rows = conn.execute(
        "SELECT c.column_name, date_trunc('hour', r.time) AS bucket, count(*) AS n, min(r.value) AS min, "
        "max(r.value) AS max, avg(r.value) AS mean FROM reading r JOIN channel c ON c.id = r.channel_id "
        "JOIN station s ON s.id = c.station_id WHERE s.name = %s GROUP BY 1, 2", (station,)).fetchall()
    return {(r["column_name"], r["bucket"]): (r["n"], r["min"], r["max"], round(r["mean"], 9)) for r in rows}


def coarse(table: dict) -> dict:
    return {k: (n, lo, hi, round(mean, 9)) for k, (n, mean, lo, hi, _) in table.items()}


def test_a_bad_file_in_a_batch_fails_alone_with_its_line_and_the_others_import(conn, settings, tmp_path):
    paths = day_files(tmp_path / "demo", 5)
    # the third file adds a column and is bad on line 101: neither its readings nor its new
    # channel may stay; the fourth adds the same column and imports (a channel cache that kept
    # the rolled-back channel's id would fail it, or lose its readings)
    bad = tmp_path / "bad.dat"
    bad.write_text(short_row(with_column(paths[2].read_text(), "WS_10m_Avg"), 101), newline="")
    more = tmp_path / "more.dat"
    more.write_text(with_column(paths[3].read_text(), "WS_10m_Avg", "2.5"), newline="")
    ids = receive_all(conn, [paths[0], paths[1], bad, more, paths[4]], "Mast B", settings)
    rows = []
    with ingest.Batch() as batch:
        for i in ids:
            rows.append(batch.import_file(i))
            # each file commits on its own: another session sees it before the batch ends
            seen = conn.execute("SELECT status, n_readings FROM source_file WHERE id = %s", (i,)).fetchone()
            assert (seen["status"], seen["n_readings"]) == (rows[-1]["status"], rows[-1]["n_readings"])
    assert [r["status"] for r in rows] == ["imported", "imported", "failed", "imported", "imported"]
    assert rows[2]["error_line"] == 101 and "this row has" in rows[2]["error"] and rows[2]["n_readings"] == 0
    assert conn.execute("SELECT count(*) AS n FROM reading WHERE source_file_id = %s", (ids[2],)).fetchone()["n"] == 0
    assert conn.execute("SELECT count(*) AS n FROM reading").fetchone()["n"] == 4 * 144 * COLUMNS + 144
    extra = conn.execute("SELECT count(*) AS n, min(value) AS v FROM reading r JOIN channel c ON c.id = r.channel_id "
                         "WHERE c.column_name = 'WS_10m_Avg'").fetchone()
    assert (extra["n"], extra["v"]) == (144, 2.5)
    assert rollups.pending_count(conn) == 0
    assert coarse(rollup_table(conn, "reading_1h", "Mast B")) == expected_1h(conn, "Mast B")


def test_rollups_after_a_batch_equal_rollups_after_the_files_one_by_one(conn, settings, tmp_path):
    paths = day_files(tmp_path / "demo", 6)
    one_by_one = receive_all(conn, paths, "Mast One", settings)
    for i in one_by_one:
        assert ingest.import_file(i)["status"] == "imported"
    # the same readings for a second mast (another station name in the header: other files)
    copies = []
    for p in paths:
        c = tmp_path / p.name
        c.write_text(p.read_text().replace('"Ballymore Hill"', '"Batch Hill"', 1), newline="")
        copies.append(c)
    batched = receive_all(conn, copies, "Mast Batch", settings)
    assert [r["status"] for r in import_batch(batched)] == ["imported"] * len(paths)
    assert rollups.pending_count(conn) == 0
    level = schema.stored_level(conn)
    for table in ("reading_1h", "reading_1d"):
        one, batch = rollup_table(conn, table, "Mast One"), rollup_table(conn, table, "Mast Batch")
        assert len(one) == (6 * 24 if table == "reading_1h" else 6) * COLUMNS
        if level == 2:  # a continuous aggregate sums in its plan's order: the last bits may differ
            assert batch.keys() == one.keys()
            for k, (n, mean, lo, hi, sumsq) in batch.items():
                assert (n, lo, hi) == one[k][0:1] + one[k][2:4]
                assert mean == pytest.approx(one[k][1], rel=1e-12) and sumsq == pytest.approx(one[k][4], rel=1e-12)
        else:  # levels 0-1 sum in time order: the same bits whatever was refreshed at once
            assert batch == one, table
    # importing a file of the batch again changes nothing
    before = rollup_table(conn, "reading_1h", "Mast Batch")
    again = receive_all(conn, copies[2:3], "Mast Batch", settings)
    assert conn.execute("SELECT status FROM source_file WHERE id = %s", (again[0],)).fetchone()["status"] == "duplicate"
    assert rollup_table(conn, "reading_1h", "Mast Batch") == before


def test_a_file_locked_by_a_session_that_lingers_is_imported_once_it_ends(conn, db_url, settings, tmp_path):
    # the session of a killed worker may outlive it for a while, holding its file's lock: the
    # retried job waits for it, then imports the file (it must not skip it as "being imported")
    paths = day_files(tmp_path / "demo", 1)
    (file_id,) = receive_all(conn, paths, "Mast L", settings)
    lingering = psycopg.connect(db_url, autocommit=True)
    lingering.execute("SELECT pg_advisory_lock(%s::int, %s::int)", (ingest._IMPORT_LOCK, file_id))
    result: dict = {}
    importer = threading.Thread(target=lambda: result.update(ingest.import_file(file_id)))
    importer.start()
    deadline = time.monotonic() + 60
    while not conn.execute("SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                           ).fetchone()["n"]:
        assert time.monotonic() < deadline and importer.is_alive(), result
        time.sleep(0.05)
    assert conn.execute("SELECT status FROM source_file WHERE id = %s", (file_id,)).fetchone()["status"] == "queued"
    lingering.close()
    importer.join(timeout=60)
    assert result["status"] == "imported" and result["attempts"] == 1


def test_a_batch_commits_its_files_without_waiting_for_the_disk_and_is_durable_when_it_ends(conn, settings,
                                                                                            tmp_path):
    # each file's commit is visible at once but does not wait for its WAL flush (a day file's
    # commit used to wait for one); the batch's end waits for every commit of it to be on disk,
    # before the job that ran it is recorded done, and gives its pooled connection back as it was
    paths = day_files(tmp_path / "demo", 3)
    ids = receive_all(conn, paths, "Mast W", settings)
    with ingest.Batch() as batch:
        for i in ids:
            assert batch.import_file(i)["status"] == "imported"
            assert conn.execute("SELECT status FROM source_file WHERE id = %s", (i,)).fetchone()["status"] == "imported"
        assert batch.conn.execute("SHOW synchronous_commit").fetchone()["synchronous_commit"] == "off"
        written = batch.conn.execute("SELECT pg_current_wal_insert_lsn()::text AS lsn").fetchone()["lsn"]
    assert conn.execute("SELECT pg_current_wal_flush_lsn() >= %s::pg_lsn AS ok", (written,)).fetchone()["ok"]
    assert batch.conn.execute("SHOW synchronous_commit").fetchone()["synchronous_commit"] == "on"


def pieces(paths: list[Path], cuts: list[int], out: Path) -> list[Path]:
    """The data rows of ``paths`` (one after the other) cut before each row index in ``cuts``,
    as files with the first file's header."""
    texts = [p.read_text().splitlines(keepends=True) for p in paths]
    head, rows = texts[0][:4], [line for t in texts for line in t[4:]]
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for i, (a, b) in enumerate(zip([0, *cuts], [*cuts, len(rows)], strict=True)):
        f = out / f"piece{i}.dat"
        f.write_text("".join(head + rows[a:b]), newline="")
        files.append(f)
    return files


def test_files_that_share_an_hour_or_a_day_leave_rollups_equal_to_the_raw_readings(conn, settings, tmp_path):
    # two days cut at 12:30, 23:40 (the last row of a day) and 02:10: each cut hour holds
    # readings of two files; one station's pieces in order in a batch, another's one by one
    # backwards (a later file's hour is refreshed again when an earlier one fills it)
    paths = day_files(tmp_path / "demo", 2)
    for station, order in (("Mast Cut", [0, 1, 2, 3]), ("Mast Back", [3, 2, 1, 0])):
        files = pieces(paths, [75, 143, 157], tmp_path / station)
        text = [f.read_text().replace('"Ballymore Hill"', f'"{station}"', 1) for f in files]
        for f, t in zip(files, text, strict=True):
            f.write_text(t, newline="")
        ids = receive_all(conn, [files[i] for i in order], station, settings)
        if station == "Mast Cut":
            assert [r["status"] for r in import_batch(ids)] == ["imported"] * 4
        else:
            for i in ids:
                assert ingest.import_file(i)["status"] == "imported"
        assert rollups.pending_count(conn) == 0
        assert coarse(rollup_table(conn, "reading_1h", station)) == expected_1h(conn, station)
        day = conn.execute(
            "SELECT c.column_name, date_trunc('day', r.time) AS bucket, count(*) AS n, min(r.value) AS min, "
            "max(r.value) AS max, avg(r.value) AS mean FROM reading r JOIN channel c ON c.id = r.channel_id "
            "JOIN station s ON s.id = c.station_id WHERE s.name = %s GROUP BY 1, 2", (station,)).fetchall()
        assert coarse(rollup_table(conn, "reading_1d", station)) == {
            (r["column_name"], r["bucket"]): (r["n"], r["min"], r["max"], round(r["mean"], 9)) for r in day}


def test_a_new_file_leaves_only_its_first_and_last_hour_to_refresh(conn, settings, tmp_path):
    # the hours between are built while the file is read (levels 0-1): what the batch's end
    # recomputes from the readings is two hours a file, not two days
    if schema.stored_level(conn) == 2:
        pytest.skip("level 2 refreshes its continuous aggregates over the file's whole span")
    paths = day_files(tmp_path / "demo", 2)
    ids = receive_all(conn, paths, "Mast Edges", settings)
    with ingest.Batch() as batch:
        rows = [batch.import_file(i) for i in ids]
        pending = conn.execute('SELECT start, "end" FROM rollup_pending ORDER BY start').fetchall()
    hour = timedelta(hours=1)
    expected = []
    for r in rows:
        first = r["first_time"].replace(minute=0, second=0, microsecond=0)
        last = r["last_time"].replace(minute=0, second=0, microsecond=0)
        expected += [(first, first + hour), (last, last + hour)]
    assert [(p["start"], p["end"]) for p in pending] == expected
    assert rollups.pending_count(conn) == 0
    assert coarse(rollup_table(conn, "reading_1h", "Mast Edges")) == expected_1h(conn, "Mast Edges")
