"""Migrating step by step gives the same schema as a fresh install."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest

from core import db, extents, schema
from core.settings import Settings
from tests.conftest import _create, _drop
from tests.integration.test_ingest import rollup_mismatches

pytestmark = pytest.mark.integration


def snapshot(url: str) -> dict[str, list]:
    with psycopg.connect(url) as conn:
        def rows(sql: str) -> list:
            return sorted(conn.execute(sql).fetchall())
        return {
            "columns": rows(
                "SELECT table_name, column_name, data_type, is_nullable, column_default "
                "FROM information_schema.columns WHERE table_schema = 'public'"
            ),
            "indexes": rows("SELECT tablename, indexdef FROM pg_indexes WHERE schemaname = 'public'"),
            "constraints": rows(
                "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE connamespace = 'public'::regnamespace"
            ),
            "views": rows("SELECT viewname, definition FROM pg_views WHERE schemaname = 'public'"),
            "functions": rows(
                "SELECT proname, pg_get_function_identity_arguments(oid) FROM pg_proc "
                "WHERE pronamespace = 'public'::regnamespace"
            ),
            "migrations": rows("SELECT version, name, file FROM schema_migration"),
        }


def test_step_by_step_equals_fresh_install(fresh_db, pg_admin_url):
    settings = Settings(database_url=fresh_db)
    last = schema.migrations()[-1].version
    for target in range(1, last + 1):
        schema.upgrade(fresh_db, settings, target=target)
    stepwise = snapshot(fresh_db)

    name = f"sm_mig_{uuid.uuid4().hex[:8]}"
    _create(pg_admin_url, name)
    try:
        fresh_url = db.with_dbname(pg_admin_url, name)
        schema.upgrade(fresh_url, Settings(database_url=fresh_url))
        assert snapshot(fresh_url) == stepwise
    finally:
        _drop(pg_admin_url, name)


def test_upgrade_is_idempotent_and_safe_concurrently(fresh_db):
    settings = Settings(database_url=fresh_db)
    results: list[dict] = []
    threads = [threading.Thread(target=lambda: results.append(schema.upgrade(fresh_db, settings))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    applied = [r["applied"] for r in results]
    assert sum(1 for a in applied if a) == 1, applied  # exactly one process did the work
    assert schema.upgrade(fresh_db, settings)["applied"] == []
    with db.connect(fresh_db) as conn:
        assert schema.pending(conn) == []


def test_storage_level_can_be_capped(fresh_db):
    result = schema.upgrade(fresh_db, Settings(database_url=fresh_db, storage_level_max=0))
    assert result["level"] == 0
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("SELECT to_regclass('reading_1h') IS NOT NULL").fetchone()[0]


def test_status_says_nothing_more_is_offered_and_raise_level_changes_nothing(db_url):
    status = schema.status(db_url)
    assert status["storage_level"] == status["offered_level"] and status["level_note"] is None
    assert schema.raise_level(db_url) == {"from": status["storage_level"], "level": status["storage_level"],
                                          "changed": False}


def test_raise_level_moves_a_capped_database_up_keeping_its_readings(fresh_db, settings, tmp_path):
    from datetime import date

    from core import demo, ingest

    schema.upgrade(fresh_db, Settings(database_url=fresh_db, storage_level_max=0))
    status = schema.status(fresh_db)
    offered = status["offered_level"]
    if offered == 0:
        pytest.skip("this server offers storage level 0 only (set STATIONMANAGER_TEST_DATABASE_URL to a "
                    "TimescaleDB server to test raising the level)")
    assert status["storage_level"] == 0
    assert f"offers storage level {offered}" in status["level_note"]
    assert "stationmanager db raise-level" in status["level_note"]
    files = [p for p in demo.generate(tmp_path, start=date(2025, 3, 1), days=2) if "ballymore" not in p.name]
    with db.connect(fresh_db, autocommit=True) as conn:
        for path in files:
            with conn.transaction():
                rec = ingest.receive(conn, path, station="Mast A", settings=settings)
            assert ingest.import_file(rec.id, url=fresh_db, settings=settings)["status"] == "imported"
        before = conn.execute("SELECT * FROM reading ORDER BY channel_id, time").fetchall()
    assert schema.raise_level(fresh_db, Settings(database_url=fresh_db)) == {
        "from": 0, "level": offered, "changed": True}
    status = schema.status(fresh_db)
    assert status["storage_level"] == offered and status["level_note"] is None
    with db.connect(fresh_db, autocommit=True) as conn:
        assert conn.execute("SELECT * FROM reading ORDER BY channel_id, time").fetchall() == before
        assert conn.execute(
            "SELECT count(*) FROM timescaledb_information.hypertables WHERE hypertable_name = 'reading'"
        ).fetchone()["count"] == 1
        assert rollup_mismatches(conn, "reading_1d", "day") == 0
        assert reading_indexes(conn) == {"(channel_id, \"time\")": reading_tables(conn)}  # as a new database
        assert extents.mismatches(conn) == [] and conn.execute(
            "SELECT count(*) AS n FROM channel_extent").fetchone()["n"] > 0


def reading_tables(conn: psycopg.Connection) -> int:
    """How many tables hold readings: ``reading`` and, at levels 1–2, its chunks."""
    return conn.execute(
        "SELECT 1 + count(*) AS n FROM pg_inherits WHERE inhparent = 'reading'::regclass").fetchone()["n"]


def reading_indexes(conn: psycopg.Connection) -> dict[str, int]:
    """The indexes of ``reading`` and its chunks: how many tables have each key."""
    out: dict[str, int] = {}
    for row in conn.execute(
        """
        SELECT pg_get_indexdef(i.indexrelid) AS def FROM pg_index i
        WHERE i.indrelid = 'reading'::regclass
           OR i.indrelid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'reading'::regclass)
        """
    ):
        key = row["def"][row["def"].index(" USING btree ") + len(" USING btree "):]
        out[key] = out.get(key, 0) + 1
    return out


def test_upgrade_leaves_reading_and_its_chunks_the_primary_key_only(fresh_db):
    """An existing database (with readings, so chunks, at levels 1–2) loses the index on
    time DESC that create_hypertable made in every chunk: as at level 0, the (channel_id,
    time) key is the only index left, and the readings stay."""
    migration = next(m for m in schema.migrations() if m.name == "reading_time_index")
    settings = Settings(database_url=fresh_db)
    schema.upgrade(fresh_db, settings, target=migration.version - 1)
    with db.connect(fresh_db, autocommit=True) as conn:
        conn.execute("INSERT INTO reading (channel_id, time, value, source_file_id) VALUES "
                     "(1, '2025-01-01 00:00+00', 1.5, 1), (1, '2025-03-01 00:00+00', 2.5, 1), "
                     "(2, '2025-03-01 00:00+00', 3.5, 1)")
        level = schema.stored_level(conn)
        tables = reading_tables(conn)
        before = reading_indexes(conn)
    assert tables == (1 if level == 0 else 3)  # two chunks at levels 1-2
    schema.upgrade(fresh_db, settings)
    with db.connect(fresh_db, autocommit=True) as conn:
        assert reading_indexes(conn) == {"(channel_id, \"time\")": tables}, before
        assert conn.execute("SELECT count(*) AS n FROM reading WHERE channel_id = 1 "
                            "AND time >= '2025-02-01 00:00+00'").fetchone()["n"] == 1
