"""`stationmanager db upgrade` on a populated database made at an older migration keeps its data."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

import core.settings
from core import db, schema
from core.cli import main
from core.settings import Settings

pytestmark = pytest.mark.integration

#: The schema the database is made at: readings, metadata and flags exist; file warnings,
#: value bounds, sources and alerts come later.
OLD = 8

#: Rows as an installation at migration OLD wrote them.
POPULATE = """
INSERT INTO station (name, latitude, longitude) VALUES ('Old Mast', 53.1, -7.9), ('Second Mast', 52.0, -8.0);
INSERT INTO logger (station_id, serial, utc_offset_minutes, timestamp_is_end, interval_s)
    SELECT id, 'SN-' || id, 60, true, 600 FROM station;
INSERT INTO measurement_point (station_id, name, measurement_type, height_m)
    SELECT id, 'Spd80mN', 'wind_speed', 80 FROM station;
INSERT INTO channel (station_id, column_name, statistic, measurement_point_id, mapped)
    SELECT p.station_id, c, 'avg', p.id, true FROM measurement_point p, unnest(ARRAY['Spd80mN', 'Spd80mNStd']) c;
INSERT INTO calibration (measurement_point_id, valid_from, logger_slope, logger_offset, cal_slope, cal_offset,
                         certificate, source, entered_by)
    SELECT id, '2024-01-01', 0.046, 0.25, 0.0461, 0.24, 'cert 7', 'manual', 'ana' FROM measurement_point;
INSERT INTO source_file (sha256, original_name, size_bytes, station_id, format, status, n_rows, n_readings,
                         first_time, last_time)
    SELECT repeat(to_hex(id), 64 / length(to_hex(id))), 'day' || id || '.dat', 1000, id, 'toa5', 'imported',
           288, 576, '2024-03-01', '2024-03-02 23:50' FROM station;
INSERT INTO reading (channel_id, time, value, source_file_id)
    SELECT c.id, t, 5 + sin(extract(epoch FROM t) / 3600) + c.id, f.id
    FROM channel c JOIN source_file f ON f.station_id = c.station_id,
         generate_series(timestamptz '2024-03-01', '2024-03-02 23:50', interval '10 minutes') t;
INSERT INTO flag (station_id, start_time, end_time, category, note, author)
    SELECT id, '2024-03-01 06:00', '2024-03-01 09:00', 'icing', 'rime', 'ana' FROM station;
INSERT INTO flag_channel (flag_id, channel_id)
    SELECT f.id, c.id FROM flag f JOIN channel c ON c.station_id = f.station_id;
INSERT INTO suggested_flag (station_id, rule, severity, start_time, end_time, channel_ids)
    SELECT id, 'gap', 'suspect', '2024-03-02', '2024-03-02 01:00', '{}' FROM station;
INSERT INTO audit (actor, action, entity, entity_id, details)
    SELECT 'ana', 'create', 'flag', id, '{"note": "rime"}' FROM flag;
"""


def rows(conn: psycopg.Connection, tables: dict[str, list[str]]) -> dict[str, list]:
    out = {}
    for table, cols in tables.items():
        query = sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(map(sql.Identifier, cols)),
                                                    sql.Identifier(table))
        out[table] = sorted(conn.execute(query).fetchall(), key=repr)
    return out


def test_db_upgrade_of_a_populated_older_database_keeps_every_row(fresh_db, settings, monkeypatch, capsys):
    schema.upgrade(fresh_db, Settings(database_url=fresh_db), target=OLD)
    with psycopg.connect(fresh_db) as conn:
        conn.execute(POPULATE)
        conn.commit()
        old_columns: dict[str, list[str]] = {}
        for table, column in conn.execute(
                "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' "
                "AND table_name NOT LIKE 'procrastinate%' AND table_name <> 'schema_migration' ORDER BY table_name, ordinal_position"):
            old_columns.setdefault(table, []).append(column)
        before = rows(conn, old_columns)
    assert len(before["reading"]) == 4 * 288 and len(before["calibration"]) == 2

    monkeypatch.setenv("STATIONMANAGER_DATABASE_URL", fresh_db)
    core.settings._current = None
    assert main(["db", "upgrade"]) == 0
    assert "0009_file_warnings" in capsys.readouterr().out

    with psycopg.connect(fresh_db) as conn:
        assert rows(conn, old_columns) == before
        # columns added since take their defaults on the old rows
        assert conn.execute("SELECT DISTINCT warnings FROM source_file").fetchall() == [([],)]
    with db.connect(fresh_db) as conn:
        assert schema.pending(conn) == []
