"""Backup, restore and `db copy` end to end on the test server.

One database is populated once (real logger files, a Task 43 document, flags, a calibration,
a source, users and secrets), at storage level 0 as on the embedded server. On a TimescaleDB
server (``STATIONMANAGER_TEST_DATABASE_URL``) the restored and copied databases come up at
the level that server offers (a hypertable), and a copy back to a level-0 database is checked
too; on the embedded server every level is 0.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

import core.settings
from core import auth, backup, calibrations, db, flags, iea43, ingest, schema, sources
from core.cli import main
from core.errors import StationManagerError
from core.settings import Settings
from tests.conftest import SAMPLES, _create, _drop
from tests.unit.test_metadata import DEMO_DOC

pytestmark = pytest.mark.integration

SECRET = "hunter2-not-in-any-backup"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture(scope="module")
def env() -> Iterator[pytest.MonkeyPatch]:
    """Module-wide environment: no STATIONMANAGER_* setting but the test server's."""
    with pytest.MonkeyPatch.context() as mp:
        for key in list(os.environ):
            if key.startswith("STATIONMANAGER_") and key != "STATIONMANAGER_TEST_DATABASE_URL":
                mp.delenv(key)
        core.settings._current = None
        yield mp
    core.settings._current = None


def use(mp: pytest.MonkeyPatch, settings: Settings) -> None:
    """Point the process-wide settings at ``settings``' home and database."""
    mp.setenv("STATIONMANAGER_HOME", str(settings.home))
    if settings.database_url:
        mp.setenv("STATIONMANAGER_DATABASE_URL", settings.database_url)
    core.settings._current = None


@pytest.fixture(scope="module")
def new_db(pg_admin_url: str) -> Iterator:
    """Make new empty databases on the test server; all dropped at the end."""
    made: list[str] = []

    def make() -> str:
        name = f"sm_backup_{uuid.uuid4().hex[:8]}"
        _create(pg_admin_url, name)
        made.append(name)
        return db.with_dbname(pg_admin_url, name)

    yield make
    db.close_pools()
    for name in made:
        _drop(pg_admin_url, name)


@pytest.fixture(scope="module")
def source(env, new_db, tmp_path_factory) -> Settings:
    """A populated installation at storage level 0: its settings (home and database)."""
    home = tmp_path_factory.mktemp("source") / "home"
    url = new_db()
    settings = Settings(home=home, database_url=url, storage_level_max=0)
    use(env, settings)
    env.setenv("STATIONMANAGER_STORAGE_LEVEL_MAX", "0")
    env.setenv("STATIONMANAGER_EXPORT_RETENTION_DAYS", "12")  # a setting the backup keeps
    core.settings._current = None
    schema.upgrade(url, settings)
    auth.add_user(settings.users_file, "ana", "a-long-password", "analyst")
    settings.secrets_file.write_text(f'[provider_x]\nusername = "met"\npassword = "{SECRET}"\n')
    settings.secrets_file.chmod(0o600)
    with db.connect(url, autocommit=True) as conn:
        iea43.import_metadata(conn, DEMO_DOC, "ana")
        files = [("toa5/campbell_scientific_demo_data1.csv", "Demo Mast"),
                 ("toa5/TestLogger_Hourly_1.dat", "Mast B"),
                 ("toa5/TestLogger_Hourly_Bad05.dat", "Mast B"),   # fails: kept with its reason
                 ("toa5/TestLogger_Hourly_1.dat", "Mast B")]       # a duplicate
        for name, station in files:
            with conn.transaction():
                rec = ingest.receive(conn, SAMPLES / name, station=station, settings=settings)
            if rec.status == "queued":
                ingest.import_file(rec.id, url=url, settings=settings)
        spd = flags.channel_ids_by_name(conn, "Demo Mast", ["Spd80mN", "Spd80mS"])
        flags.add_flag(conn, "Demo Mast", spd, utc(2016, 1, 9, 18), utc(2016, 1, 9, 20), "icing", "rime", "ana")
        gone = flags.add_flag(conn, "Demo Mast", "station", utc(2016, 1, 10), utc(2016, 1, 10, 2), "maintenance",
                              author="ana")
        flags.delete_flag(conn, gone, "ana")
        point = calibrations.point_id(conn, "Demo Mast", "Spd80mN")
        calibrations.add_calibration(conn, point, utc(2015, 1, 1), utc(2016, 1, 1), 0.046, 0.25, 0.0461, 0.24, "cert 7", "ana")
        with conn.transaction():
            sources.add_source(conn, "ana", name="logger share", kind="folder", url="/srv/loggers",
                               credentials="provider_x", station="Mast B")
        # a row from before migration 0013, which checks coordinates on new rows only (NOT VALID)
        conn.execute("ALTER TABLE station DROP CONSTRAINT station_latitude_range; "
                     "UPDATE station SET latitude = 95 WHERE name = 'Mast B'; "
                     "ALTER TABLE station ADD CONSTRAINT station_latitude_range "
                     "CHECK (latitude BETWEEN -90 AND 90) NOT VALID")
    db.close_pools()
    return settings


#: Tables compared row for row (the readings too: a few thousand here).
COMPARED = ("station", "logger", "measurement_point", "sensor", "channel", "channel_mapping", "calibration",
            "source_file", "reading", "flag", "flag_channel", "source", "audit")


def contents(url: str) -> dict[str, list[tuple]]:
    out = {}
    with psycopg.connect(url) as conn:
        for table in (*COMPARED, "reading_1h", "reading_1d", "channel_extent"):
            cols = [r[0] for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' "
                "AND table_name = %s ORDER BY column_name", (table,))]
            query = sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(map(sql.Identifier, cols)),
                                                        sql.Identifier(table))
            out[table] = sorted(conn.execute(query).fetchall(), key=repr)
    return out


def assert_same(got: dict[str, list[tuple]], expected: dict[str, list[tuple]]) -> None:
    """Every table equal; the rollups' means and sums of squares to the last bits (a level-2
    continuous aggregate adds in another order than a level-0 table)."""
    for table, rows in expected.items():
        if table.startswith("reading_1"):
            assert len(got[table]) == len(rows), table
            for a, b in zip(got[table], rows, strict=True):
                assert all(x == y or (isinstance(y, float) and math.isclose(x, y, rel_tol=1e-12))
                           for x, y in zip(a, b, strict=True)), (table, a, b)
        else:
            assert got[table] == rows, table


def level_of(url: str) -> tuple[int, bool]:
    """The database's storage level and whether ``reading`` is a hypertable."""
    with psycopg.connect(url) as conn:
        level = conn.execute("SELECT level FROM storage_info").fetchone()[0]
        hyper = conn.execute(
            "SELECT to_regclass('timescaledb_information.hypertables') IS NOT NULL AND EXISTS ("
            "SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')").fetchone()[0]
        if hyper:
            hyper = conn.execute("SELECT count(*) FROM timescaledb_information.hypertables "
                                 "WHERE hypertable_name = 'reading'").fetchone()[0] == 1
        return level, hyper


@pytest.fixture(scope="module")
def made(source, env, tmp_path_factory) -> Path:
    """A backup of the populated installation, made by ``stationmanager backup DIR``."""
    out = tmp_path_factory.mktemp("backups") / "b1"
    use(env, source)
    assert main(["backup", str(out)]) == 0
    return out


def test_a_backup_holds_data_files_settings_and_users_but_no_secret(source, made):
    manifest = json.loads((made / "manifest.json").read_text())
    assert manifest["schema_version"] == schema.migrations()[-1].version
    assert manifest["storage_level"] == 0
    with psycopg.connect(source.database_url) as conn:
        n_readings = conn.execute("SELECT count(*) FROM reading").fetchone()[0]
        shas = sorted({r[0] for r in conn.execute("SELECT sha256 FROM source_file")})
    tables = {t["name"]: t for t in manifest["tables"]}
    assert tables["reading"]["rows"] == n_readings > 5000
    assert "reading_1h" not in tables and "channel_extent" not in tables  # rebuilt
    assert "sign_in_session" not in tables  # not kept
    assert sorted(f["sha256"] for f in manifest["files"]) == shas
    everything = b"".join(p.read_bytes() for p in made.rglob("*") if p.is_file())
    assert SECRET.encode() not in everything and not (made / "secrets.toml").exists()
    users = (made / "users.yaml").read_text()
    assert "ana" in users and "$2b$" in users  # names, roles and bcrypt hashes
    assert auth.load(source.users_file)["cookie"]["key"] not in users  # the cookie key is a secret
    assert "STATIONMANAGER_EXPORT_RETENTION_DAYS=12" in (made / "settings.env").read_text()
    assert "DATABASE_URL" not in (made / "settings.env").read_text()
    assert (made.stat().st_mode & 0o077) == 0  # readable by its owner only


def test_restore_finds_every_station_reading_flag_calibration_and_original(source, made, new_db, env,
                                                                           tmp_path, capsys):
    target = new_db()
    home = tmp_path / "restored-home"
    use(env, Settings(home=home))
    env.delenv("STATIONMANAGER_DATABASE_URL")
    env.delenv("STATIONMANAGER_STORAGE_LEVEL_MAX")
    core.settings._current = None
    assert main(["restore", str(made), "--to", target]) == 0
    assert "reading" in capsys.readouterr().err
    expected = contents(source.database_url)
    assert_same(contents(target), expected)
    with db.connect(target) as conn:
        offered = schema.capabilities(conn)["offered_level"]
    assert level_of(target) == (offered, offered >= 1)
    with db.connect(target) as conn:
        assert schema.pending(conn) == []
        # identities continue after the restored rows
        new_id = conn.execute("INSERT INTO station (name) VALUES ('Mast C') RETURNING id").fetchone()["id"]
        assert new_id == conn.execute("SELECT max(id) FROM station WHERE name <> 'Mast C'").fetchone()["max"] + 1
        shas = {r["sha256"] for r in conn.execute("SELECT sha256 FROM source_file")}
        conn.rollback()
    restored = Settings(home=home)
    assert len(shas) == 3
    for sha in shas:
        assert hashlib.sha256(ingest.stored_path(restored, sha).read_bytes()).hexdigest() == sha
    assert [u["name"] for u in auth.users(restored.users_file)] == ["ana"]
    assert auth.verify_password(auth.load(restored.users_file), "ana", "a-long-password")
    assert not restored.secrets_file.exists()

    # and back down: a copy of the restored database to a new one capped at level 0
    down = new_db()
    env.setenv("STATIONMANAGER_DATABASE_URL", target)
    env.setenv("STATIONMANAGER_STORAGE_LEVEL_MAX", "0")
    core.settings._current = None
    assert main(["db", "copy", "--to", down]) == 0
    assert_same(contents(down), expected)
    assert level_of(down) == (0, False)


def test_db_copy_moves_the_embedded_database_to_a_server(source, new_db, env, capsys):
    """From level 0 to the best level the target server offers (1 on the CI TimescaleDB)."""
    target = new_db()
    use(env, source)
    env.delenv("STATIONMANAGER_STORAGE_LEVEL_MAX")
    core.settings._current = None
    assert main(["db", "copy", "--to", target]) == 0
    err = capsys.readouterr().err
    assert "reading" in err and "STATIONMANAGER_DATABASE_URL" in err
    with db.connect(target) as conn:
        offered = schema.capabilities(conn)["offered_level"]
    assert level_of(target) == (offered, offered >= 1)
    assert_same(contents(target), contents(source.database_url))


def test_restore_and_copy_refuse_a_database_that_is_not_empty(source, made, env, capsys):
    use(env, Settings(home=source.home))
    before = contents(source.database_url)
    assert main(["restore", str(made), "--to", source.database_url]) == 2
    assert "not empty" in capsys.readouterr().err
    use(env, source)
    assert main(["db", "copy", "--to", source.database_url]) == 2
    assert "not empty" in capsys.readouterr().err
    assert contents(source.database_url) == before


@pytest.mark.parametrize("damage", ["table", "original", "manifest", "missing", "newer"])
def test_a_damaged_backup_is_refused_before_the_target_is_touched(made, pg_admin_url, tmp_path, damage):
    copy = tmp_path / "b"
    shutil.copytree(made, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    if damage == "table":
        part = copy / next(t["file"] for t in manifest["tables"] if t["name"] == "flag")
        part.chmod(0o600)
        part.write_bytes(part.read_bytes()[:-1] + b"x")
    elif damage == "original":
        sha = manifest["files"][0]["sha256"]
        original = copy / "files" / sha[:2] / sha
        original.chmod(0o600)
        original.write_bytes(original.read_bytes() + b"\n")
    elif damage == "manifest":
        manifest["tables"][0]["rows"] += 1
        manifest["tables"][0]["sha256"] = "0" * 64
        (copy / "manifest.json").write_text(json.dumps(manifest))
    elif damage == "newer":  # made by a newer StationManager, at a migration this one does not know
        manifest["migrations"].append(9999)
        (copy / "manifest.json").write_text(json.dumps(manifest))
    else:
        (copy / manifest["tables"][0]["file"]).unlink()
    name = f"sm_backup_never_{uuid.uuid4().hex[:8]}"  # restore would create it
    with pytest.raises(StationManagerError, match="the backup"):
        backup.restore(copy, db.with_dbname(pg_admin_url, name), Settings(home=tmp_path / "home"))
    with psycopg.connect(pg_admin_url) as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,)).fetchone()[0] == 0
    assert not (tmp_path / "home" / "files").exists()
