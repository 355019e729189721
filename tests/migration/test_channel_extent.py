"""Migration 0021 on a database with readings: each channel's extent built from them, at the
storage level of the test server (level 2: over compressed chunks too), nothing else changed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core import db, extents, rollups, schema
from core.settings import Settings
from tests.integration.test_ingest import rollup_mismatches

pytestmark = pytest.mark.integration

#: Two stations: WS of Old Mast hourly over three months (three 30-day chunks at levels 1-2),
#: WD ten days of it, Spare no reading; New Mast's WS a single reading.
POPULATE = """
INSERT INTO station (name) VALUES ('Old Mast'), ('New Mast');
INSERT INTO channel (station_id, column_name, statistic)
    SELECT s.id, c, 'avg' FROM station s, unnest(ARRAY['WS', 'WD', 'Spare']) c ORDER BY s.id, c;
INSERT INTO reading (channel_id, time, value, source_file_id)
    SELECT c.id, t, 5.0, 1 FROM channel c JOIN station s ON s.id = c.station_id,
           generate_series(timestamptz '2025-01-01 00:00+00', '2025-03-31 23:00+00', interval '1 hour') t
    WHERE s.name = 'Old Mast' AND c.column_name = 'WS';
INSERT INTO reading (channel_id, time, value, source_file_id)
    SELECT c.id, t, 180.0, 1 FROM channel c JOIN station s ON s.id = c.station_id,
           generate_series(timestamptz '2025-02-10 00:10+00', '2025-02-20 12:00+00', interval '10 minutes') t
    WHERE s.name = 'Old Mast' AND c.column_name = 'WD';
INSERT INTO reading (channel_id, time, value, source_file_id)
    SELECT c.id, '2025-04-02 06:00+00', 7.5, 2 FROM channel c JOIN station s ON s.id = c.station_id
    WHERE s.name = 'New Mast' AND c.column_name = 'WS';
"""

RELATIONS = """
SELECT c.relname, c.relkind, pg_get_viewdef(c.oid) AS definition
FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace
"""


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def relations(conn) -> set[tuple]:
    """The schema's tables, views and indexes (level 2: and its continuous aggregates)."""
    out = {tuple(r.values()) for r in conn.execute(RELATIONS)}
    if schema.stored_level(conn) == 2:
        out |= {tuple(r.values()) for r in conn.execute(
            "SELECT view_name, materialized_only, view_definition FROM timescaledb_information.continuous_aggregates")}
    return out


def test_the_migration_builds_each_channels_extent_from_the_readings_there(fresh_db):
    migration = next(m for m in schema.migrations() if m.name == "channel_extent")
    settings = Settings(database_url=fresh_db)
    schema.upgrade(fresh_db, settings, target=migration.version - 1)
    with db.connect(fresh_db, autocommit=True) as conn:
        conn.execute(POPULATE)
        level = schema.stored_level(conn)
        if level == 2:  # old chunks are compressed: the probes read them too
            conn.execute("SELECT compress_chunk(c) FROM show_chunks('reading') c")
        before = relations(conn)
    schema.upgrade(fresh_db, settings, target=migration.version)  # this migration alone: later ones add more
    with db.connect(fresh_db, autocommit=True) as conn:
        got = conn.execute(
            "SELECT s.name, c.column_name, e.first_time, e.last_time FROM channel_extent e "
            "JOIN channel c ON c.id = e.channel_id JOIN station s ON s.id = c.station_id ORDER BY 1, 2").fetchall()
        assert [tuple(r.values()) for r in got] == [
            ("New Mast", "WS", utc(2025, 4, 2, 6), utc(2025, 4, 2, 6)),
            ("Old Mast", "WD", utc(2025, 2, 10, 0, 10), utc(2025, 2, 20, 12)),
            ("Old Mast", "WS", utc(2025, 1, 1), utc(2025, 3, 31, 23)),
        ]
        assert extents.mismatches(conn) == []
        after = relations(conn)
        assert before <= after and {r[0] for r in after - before} == {"channel_extent", "channel_extent_pkey"}
        # the rollups (level 2: continuous aggregates) refresh over the readings as before
        rollups.refresh_rollups(conn, utc(2025, 1, 1), utc(2025, 4, 3))
        assert rollup_mismatches(conn, "reading_1d", "day") == 0
