"""Storage level 2 (TimescaleDB community edition) on a real level-2 server.

These tests run only when ``STATIONMANAGER_TEST_DATABASE_URL`` points at a server that
preloads TimescaleDB built with the community (TSL) licence; elsewhere they skip, saying
why. Expected rollups are computed here independently (pandas over ``reading``), as
level 0's SQL would compute them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import psycopg
import pytest
from psycopg import sql

import core.settings

from core import db, demo, ingest, rollups, schema
from core.settings import Settings
from tests.conftest import _create, _drop
from tests.integration.test_ingest import value_at

pytestmark = pytest.mark.integration


def _server_licence(admin_url: str) -> str | None:
    """The TimescaleDB licence the server offers, read after creating the extension in a
    scratch database (before that, the setting may not be defined), or None."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT (SELECT setting FROM pg_settings WHERE name = 'shared_preload_libraries') AS preload, "
            "(SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb') AS available"
        ).fetchone()
    if not row[1] or "timescaledb" not in (row[0] or ""):
        return None
    name = f"sm_probe_{uuid.uuid4().hex[:8]}"
    _create(admin_url, name)
    try:
        with psycopg.connect(db.with_dbname(admin_url, name), autocommit=True) as conn:
            conn.execute("SET client_min_messages = warning")
            conn.execute("CREATE EXTENSION timescaledb")
            return conn.execute("SELECT current_setting('timescaledb.license', true)").fetchone()[0]
    finally:
        _drop(admin_url, name)


@pytest.fixture(scope="session")
def level2_server(pg_admin_url: str) -> str:
    licence = _server_licence(pg_admin_url)
    if licence != "timescale":
        pytest.skip(
            "storage level 2 needs a server that preloads TimescaleDB with the community licence "
            f"(this one: {'no TimescaleDB' if licence is None else f'licence {licence!r}'}); "
            "point STATIONMANAGER_TEST_DATABASE_URL at one"
        )
    return pg_admin_url


@pytest.fixture
def l2_url(level2_server: str, db_url: str) -> str:
    return db_url


@pytest.fixture
def l2(l2_url: str):
    with db.connect(l2_url, autocommit=True) as c:
        yield c


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory) -> list[Path]:
    out = tmp_path_factory.mktemp("demo")
    return [p for p in demo.generate(out, start=date(2025, 3, 1), days=3) if "ballymore" not in p.name]


def receive_and_import(conn, path: Path, settings, station: str = "Mast A") -> dict:
    with conn.transaction():
        rec = ingest.receive(conn, path, station=station, settings=settings)
    if rec.status != "queued":
        return conn.execute("SELECT * FROM source_file WHERE id = %s", (rec.id,)).fetchone()
    return ingest.import_file(rec.id)


def cli(args: list[str], db_url: str, home: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATIONMANAGER_")}
    env.update(STATIONMANAGER_HOME=str(home), STATIONMANAGER_DATABASE_URL=db_url)
    return subprocess.run([sys.executable, "-m", "core.cli", *args], env=env, capture_output=True,
                          text=True, timeout=120)


# --- expected values, computed without the product's SQL -----------------------------


def readings(conn) -> pd.DataFrame:
    rows = conn.execute("SELECT channel_id, time, value FROM reading ORDER BY 1, 2").fetchall()
    df = pd.DataFrame(rows, columns=["channel_id", "time", "value"])
    df["time"] = pd.to_datetime(df["time"], utc=True)
    df["value"] = df["value"].astype(float)
    return df


def expected_rollup(df: pd.DataFrame, freq: str) -> pd.DataFrame:
    g = df.assign(bucket=df["time"].dt.floor(freq)).groupby(["channel_id", "bucket"])["value"]
    out = pd.DataFrame({"n": g.count(), "mean": g.mean(), "min": g.min(), "max": g.max(),
                        "sumsq": g.apply(lambda v: (v * v).sum())})
    return out.reset_index().sort_values(["channel_id", "bucket"]).reset_index(drop=True)


def stored_rollup(conn, table: str) -> pd.DataFrame:
    rows = conn.execute(
        sql.SQL("SELECT channel_id, bucket, n, mean, min, max, sumsq FROM {} ORDER BY 1, 2").format(
            sql.Identifier(table))
    ).fetchall()
    df = pd.DataFrame(rows, columns=["channel_id", "bucket", "n", "mean", "min", "max", "sumsq"])
    df["bucket"] = pd.to_datetime(df["bucket"], utc=True)
    for c in ("mean", "min", "max", "sumsq"):
        df[c] = df[c].astype(float)
    return df


def assert_rollups_match_readings(conn) -> None:
    df = readings(conn)
    assert len(df) > 0
    for table, freq in (("reading_1h", "1h"), ("reading_1d", "1D")):
        got, want = stored_rollup(conn, table), expected_rollup(df, freq)
        assert len(got) == len(want), table
        pd.testing.assert_frame_equal(got, want, check_dtype=False, rtol=1e-9, obj=table)


# --- level detection -----------------------------------------------------------------


def test_a_new_empty_database_is_set_up_at_level_2(level2_server, fresh_db, tmp_path):
    # the licence is read once the extension exists, not before
    result = schema.upgrade(fresh_db, Settings(database_url=fresh_db))
    assert result["level"] == 2
    res = cli(["db", "status", "--json"], fresh_db, tmp_path)
    assert res.returncode == 0, res.stderr
    status = json.loads(res.stdout)
    assert status["storage_level"] == 2 and status["offered_level"] == 2
    assert status["level_note"] is None


def test_status_says_when_the_server_offers_more_and_how_to_move_up(level2_server, fresh_db, tmp_path):
    schema.upgrade(fresh_db, Settings(database_url=fresh_db, storage_level_max=1))
    status = schema.status(fresh_db)
    assert status["storage_level"] == 1 and status["offered_level"] == 2
    assert "stationmanager db raise-level" in status["level_note"]
    res = cli(["db", "status"], fresh_db, tmp_path)
    assert "this server offers storage level 2" in res.stdout, res.stdout


# --- schema, import, backfill, rollups -------------------------------------------------


def test_readings_are_a_compressible_hypertable_and_rollups_continuous_aggregates(l2):
    assert schema.stored_level(l2) == 2
    hyper = l2.execute(
        "SELECT compression_enabled FROM timescaledb_information.hypertables WHERE hypertable_name = 'reading'"
    ).fetchone()
    assert hyper is not None and hyper["compression_enabled"]
    caggs = {r["view_name"]: r for r in l2.execute(
        "SELECT view_name, materialized_only FROM timescaledb_information.continuous_aggregates")}
    assert set(caggs) == {"reading_1h", "reading_1d"}
    assert all(r["materialized_only"] for r in caggs.values())


def test_import_loads_readings_and_refreshes_the_rollups(l2, settings, demo_files):
    for path in demo_files:
        row = receive_and_import(l2, path, settings)
        assert row["status"] == "imported", row["error"]
    assert l2.execute("SELECT count(DISTINCT time) AS n FROM reading").fetchone()["n"] == 3 * 144
    assert_rollups_match_readings(l2)
    assert l2.execute("SELECT count(*) AS n FROM rollup_pending").fetchone()["n"] == 0
    # the same content again is a duplicate; importing the same file again changes nothing
    before = stored_rollup(l2, "reading_1d")
    again = receive_and_import(l2, demo_files[0], settings)
    assert again["status"] == "duplicate"
    pd.testing.assert_frame_equal(stored_rollup(l2, "reading_1d"), before)


def _compress_all(conn) -> int:
    return len(conn.execute(
        "SELECT compress_chunk(c, if_not_compressed => true) FROM show_chunks('reading') c").fetchall())


def test_backfill_into_compressed_chunks_equals_level_0(l2, settings, demo_files, tmp_path):
    receive_and_import(l2, demo_files[1], settings)
    assert _compress_all(l2) >= 1
    compressed = l2.execute(
        "SELECT count(*) AS n FROM timescaledb_information.chunks "
        "WHERE hypertable_name = 'reading' AND is_compressed").fetchone()["n"]
    assert compressed >= 1
    # a later file repeating the day's last two rows, one value changed, plus an earlier day
    lines = demo_files[1].read_text().splitlines(keepends=True)
    fields = lines[-1].rstrip("\r\n").split(",")
    fields[2] = "99.5"
    later = tmp_path / "later.dat"
    later.write_text("".join(lines[:4]) + lines[-2] + ",".join(fields) + "\r\n")
    row = receive_and_import(l2, later, settings)
    assert row["status"] == "imported", row["error"]
    assert row["n_changed"] == 1
    first = receive_and_import(l2, demo_files[0], settings)
    assert first["status"] == "imported", first["error"]
    assert value_at(l2, "WS_80m_NE_Avg", datetime(2025, 3, 2, 23, 50, tzinfo=UTC)) == 99.5
    assert l2.execute("SELECT count(DISTINCT time) AS n FROM reading").fetchone()["n"] == 288
    assert_rollups_match_readings(l2)
    # importing the earlier file once more (new content: same rows, one extra) changes nothing
    again = tmp_path / "again.dat"
    again.write_text(demo_files[0].read_text() + "\r\n")
    row = receive_and_import(l2, again, settings)
    assert row["n_changed"] == 0
    assert_rollups_match_readings(l2)


def first_imported_second_received(l2, settings, demo_files):
    """Import the first demo file and receive the second; returns the hourly rollup's
    materialization table (to lock, so a refresh waits) and the second file's record."""
    receive_and_import(l2, demo_files[0], settings)
    mat = l2.execute(
        "SELECT format('%I.%I', materialization_hypertable_schema, materialization_hypertable_name) AS t "
        "FROM timescaledb_information.continuous_aggregates WHERE view_name = 'reading_1h'").fetchone()["t"]
    with l2.transaction():
        rec = ingest.receive(l2, demo_files[1], station="Mast A", settings=settings)
    return mat, rec


def test_a_crash_between_commit_and_refresh_leaves_a_pending_range_that_is_caught_up(
    l2, l2_url, settings, demo_files
):
    """An import commits its readings and a pending range together; a process killed before
    its refresh leaves that range pending, and the worker's catch-up refreshes it."""
    mat, rec = first_imported_second_received(l2, settings, demo_files)
    with db.connect(l2_url) as blocker:
        # hold the materialization table so the import's refresh waits; then kill the process
        # and its connection, as a crash of the machine would
        blocker.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.SQL(mat)))
        env = {k: v for k, v in os.environ.items() if not k.startswith("STATIONMANAGER_")}
        env.update(STATIONMANAGER_HOME=str(settings.home), STATIONMANAGER_DATABASE_URL=l2_url)
        proc = subprocess.Popen([sys.executable, "-c", f"from core import ingest; ingest.import_file({rec.id})"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                status = l2.execute("SELECT status FROM source_file WHERE id = %s", (rec.id,)).fetchone()["status"]
                waiting = l2.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()").fetchall()
                if status == "imported" and waiting:
                    break
                time.sleep(0.1)
            else:
                pytest.fail(f"the import did not commit and wait: {status}")
            assert proc.poll() is None, proc.communicate()[0]  # waiting on the refresh
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)  # also closes the pipe
            for w in waiting:
                l2.execute("SELECT pg_terminate_backend(%s)", (w["pid"],))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=30)
            blocker.rollback()
    # its refresh never ran
    pending = l2.execute("SELECT count(*) AS n FROM rollup_pending").fetchone()["n"]
    assert pending == 1
    day2 = l2.execute("SELECT count(*) AS n FROM reading_1d WHERE bucket = '2025-03-02'").fetchone()["n"]
    assert day2 == 0  # stale: the file's day is not in the rollups yet
    assert rollups.refresh_pending(l2) == 1
    assert l2.execute("SELECT count(*) AS n FROM rollup_pending").fetchone()["n"] == 0
    assert_rollups_match_readings(l2)


@pytest.mark.parametrize("start_level", [0, 1])
def test_raise_level_moves_a_database_up_to_level_2_keeping_its_data(
    level2_server, fresh_db, settings, demo_files, tmp_path, start_level
):
    schema.upgrade(fresh_db, Settings(database_url=fresh_db, storage_level_max=start_level))
    with db.connect(fresh_db, autocommit=True) as conn:
        for path in demo_files[:2]:
            with conn.transaction():
                rec = ingest.receive(conn, path, station="Mast A", settings=settings)
            assert ingest.import_file(rec.id, url=fresh_db, settings=settings)["status"] == "imported"
        before = readings(conn)
        assert schema.stored_level(conn) == start_level
        # a reader of the tidy views over the rollup tables (which become continuous aggregates)
        role = f"sm_l2_reader_{start_level}"
        conn.execute(f"DROP ROLE IF EXISTS {role}")
        conn.execute(f"CREATE ROLE {role}")
        conn.execute(f"GRANT SELECT ON tidy.readings_1h, tidy.readings_1d TO {role}")
    res = cli(["db", "raise-level", "--json"], fresh_db, tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"from": start_level, "level": 2, "changed": True}
    status = schema.status(fresh_db)
    assert status["storage_level"] == 2 and status["level_note"] is None and not status["pending_migrations"]
    with db.connect(fresh_db, autocommit=True) as conn:
        pd.testing.assert_frame_equal(readings(conn), before)
        assert_rollups_match_readings(conn)
        for view, table in (("tidy.readings_1h", "reading_1h"), ("tidy.readings_1d", "reading_1d")):
            n = conn.execute(f"SELECT (SELECT count(*) FROM {view}) AS v, (SELECT count(*) FROM {table}) AS t").fetchone()
            assert n["v"] == n["t"] > 0, (view, n)
            assert conn.execute("SELECT has_table_privilege(%s, %s, 'SELECT') AS ok", (role, view)).fetchone()["ok"]
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")
        # and it imports at level 2 afterwards
        with conn.transaction():
            rec = ingest.receive(conn, demo_files[2], station="Mast A", settings=settings)
        assert ingest.import_file(rec.id, url=fresh_db, settings=settings)["status"] == "imported"
        assert_rollups_match_readings(conn)
    assert cli(["db", "raise-level"], fresh_db, tmp_path).stdout.startswith("storage level 2: already")


def test_admin_page_says_how_to_move_up(level2_server, fresh_db, settings, monkeypatch):
    from tests.ui.test_pages import show, signed_in, texts

    schema.upgrade(fresh_db, Settings(database_url=fresh_db, storage_level_max=1))
    monkeypatch.setenv("STATIONMANAGER_DATABASE_URL", fresh_db)
    core.settings._current = None
    at = show(signed_in("admin"), "pages/admin.py")
    assert "This server offers storage level 2" in texts(at)
    assert "stationmanager db raise-level" in texts(at)


def test_a_refresh_waits_for_a_concurrent_refresh_of_the_same_days(l2, l2_url, settings, demo_files):
    """Workers import at once; TimescaleDB refuses a refresh while another one of an
    overlapping window runs ("due to a concurrent refresh"), so each waits its turn instead
    of leaving its range stale."""
    import threading

    mat, rec = first_imported_second_received(l2, settings, demo_files)
    results: dict = {}

    def run(name, func) -> None:
        try:
            results[name] = func()
        except Exception as exc:  # reported below
            results[name] = exc

    day = datetime(2025, 3, 2, tzinfo=UTC)

    def second_refresh():
        with db.connect(l2_url, autocommit=True) as c:
            rollups.refresh_rollups(c, day, day)
            return "refreshed"

    with db.connect(l2_url) as blocker:
        blocker.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.SQL(mat)))
        first = threading.Thread(target=run, args=("import", lambda: ingest.import_file(rec.id, url=l2_url)["status"]))
        first.start()
        deadline = time.monotonic() + 60
        while not l2.execute("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() "
                             "AND wait_event_type = 'Lock'").fetchone()["n"]:
            assert time.monotonic() < deadline, "the import's refresh did not start"
            time.sleep(0.05)
        second = threading.Thread(target=run, args=("second", second_refresh))
        second.start()
        time.sleep(1.0)  # the second refresh meets the first one, still in progress
        blocker.rollback()
    first.join(timeout=120)
    second.join(timeout=120)
    assert results == {"import": "imported", "second": "refreshed"}
    assert l2.execute("SELECT count(*) AS n FROM rollup_pending").fetchone()["n"] == 0
    assert_rollups_match_readings(l2)


def test_compression_policy_follows_the_setting(level2_server, fresh_db):
    def compress_after(conn) -> str:
        return conn.execute(
            "SELECT config->>'compress_after' AS a FROM timescaledb_information.jobs "
            "WHERE proc_name = 'policy_compression' AND hypertable_name = 'reading'").fetchone()["a"]

    schema.upgrade(fresh_db, Settings(database_url=fresh_db, compress_after_days=30))
    with db.connect(fresh_db, autocommit=True) as conn:
        assert compress_after(conn) == "30 days"
    schema.upgrade(fresh_db, Settings(database_url=fresh_db))  # the default again
    with db.connect(fresh_db, autocommit=True) as conn:
        assert compress_after(conn) == "90 days"
