"""Migrations, storage levels and database status.

Migrations are the numbered SQL files of ``core/sql/migrations``, applied in order, each
in its own transaction, and recorded in ``schema_migration``. A migration may have
variants for higher storage levels: ``0003_rollups.sql`` (level 0),
``0003_rollups.level2.sql`` (level 2). The variant with the highest level not above the
database's level is applied; a migration with only higher-level variants is recorded
and skipped (e.g. ``0002_hypertable.level1.sql`` at level 0).

Storage levels (see ``docs/architecture.md``):

* 0 — plain PostgreSQL: tables, rollups refreshed by the worker;
* 1 — TimescaleDB Apache edition: ``reading`` is a hypertable;
* 2 — TimescaleDB community edition: also compression and continuous aggregates.

The level is chosen once, when the schema is first created, from what the server offers
(capped by ``STATIONMANAGER_STORAGE_LEVEL_MAX``), and kept in ``storage_info``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg

from core import db
from core.errors import DatabaseError
from core.settings import Settings, get_settings

log = logging.getLogger(__name__)

LEVEL_NAMES = {
    0: "PostgreSQL (tables, rollups refreshed by the worker)",
    1: "TimescaleDB Apache (hypertables, rollups refreshed by the worker)",
    2: "TimescaleDB community (hypertables, compression, continuous aggregates)",
}
_FILE = re.compile(r"^(\d{4})_(\w+?)(?:\.level(\d))?\.sql$")
_LOCK_KEY = 0x5354414E  # pg_advisory_lock key serialising migrations


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    variants: dict[int, str]  # level -> file name

    def file_for(self, level: int) -> str | None:
        usable = [lvl for lvl in self.variants if lvl <= level]
        return self.variants[max(usable)] if usable else None


def migrations() -> list[Migration]:
    """All migrations shipped with the code, in order."""
    folder = resources.files("core.sql").joinpath("migrations")
    found: dict[int, Migration] = {}
    for entry in folder.iterdir():
        m = _FILE.match(entry.name)
        if not m:
            continue
        version, name, level = int(m[1]), m[2], int(m[3] or 0)
        mig = found.setdefault(version, Migration(version, name, {}))
        if mig.name != name:
            raise DatabaseError(f"migration {version:04d} has two names: {mig.name}, {name}")
        mig.variants[level] = entry.name
    return [found[v] for v in sorted(found)]


def _read(file_name: str) -> str:
    return resources.files("core.sql").joinpath("migrations", file_name).read_text(encoding="utf-8")


# --- capabilities --------------------------------------------------------------------


def capabilities(conn: psycopg.Connection) -> dict[str, Any]:
    """What the server offers: PostgreSQL and TimescaleDB versions, licence, level."""
    row = conn.execute(
        """
        SELECT current_setting('server_version') AS postgresql,
               (SELECT default_version FROM pg_available_extensions
                 WHERE name = 'timescaledb') AS timescaledb_available,
               (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb') AS timescaledb,
               current_setting('timescaledb.license', true) AS license,
               (SELECT setting FROM pg_settings WHERE name = 'shared_preload_libraries')
                   AS preload
        """
    ).fetchone()
    assert row is not None
    preloaded = "timescaledb" in (row["preload"] or "")
    if row["timescaledb_available"] and preloaded:
        offered = 2 if row["license"] == "timescale" else 1
    else:
        offered = 0
    return {
        "postgresql": row["postgresql"],
        "timescaledb": row["timescaledb"],
        "timescaledb_available": row["timescaledb_available"],
        "timescaledb_edition": _edition(row["license"]) if row["timescaledb_available"] else None,
        "offered_level": offered,
    }


def _edition(license: str | None) -> str:
    return {"timescale": "community (TSL)", "apache": "Apache"}.get(license or "", license or "?")


def stored_level(conn: psycopg.Connection) -> int | None:
    if conn.execute("SELECT to_regclass('storage_info') AS t").fetchone()["t"] is None:
        return None
    row = conn.execute("SELECT level FROM storage_info").fetchone()
    return None if row is None else row["level"]


# --- upgrade -------------------------------------------------------------------------


def upgrade(
    url: str | None = None, settings: Settings | None = None, *, target: int | None = None
) -> dict[str, Any]:
    """Bring the database schema up to date (or up to migration ``target``); safe to run
    from several processes at once.

    Returns ``{"level": …, "applied": [names…]}``.
    """
    settings = settings or get_settings()
    url = url or db.database_url(settings)
    applied: list[str] = []
    with db.connect(url, autocommit=True) as conn, db.translate():
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            level = _ensure_storage_info(conn, settings)
            _ensure_job_queue(conn, applied)
            done = {r["version"] for r in conn.execute("SELECT version FROM schema_migration")}
            for mig in migrations():
                if mig.version in done or (target is not None and mig.version > target):
                    continue
                file_name = mig.file_for(level)
                with conn.transaction():
                    if file_name:
                        log.info("applying migration %s", file_name)
                        conn.execute(_read(file_name))  # type: ignore[arg-type]
                    conn.execute(
                        "INSERT INTO schema_migration (version, name, file) VALUES (%s, %s, %s)",
                        (mig.version, mig.name, file_name),
                    )
                applied.append(file_name or f"{mig.version:04d}_{mig.name} (not at level {level})")
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return {"level": level, "applied": applied}


def _ensure_storage_info(conn: psycopg.Connection, settings: Settings) -> int:
    level = stored_level(conn)
    if level is not None:
        return level
    caps = capabilities(conn)
    level = min(caps["offered_level"], settings.storage_level_max)
    with conn.transaction():
        if level >= 1:
            conn.execute("SET client_min_messages = warning")
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        conn.execute(
            """
            CREATE TABLE storage_info (
                level       smallint NOT NULL CHECK (level IN (0, 1, 2)),
                created_at  timestamptz NOT NULL DEFAULT now(),
                singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton)
            );
            CREATE TABLE schema_migration (
                version     integer PRIMARY KEY,
                name        text NOT NULL,
                file        text,
                applied_at  timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        conn.execute("INSERT INTO storage_info (level) VALUES (%s)", (level,))
    log.info("new database at storage level %s: %s", level, LEVEL_NAMES[level])
    return level


def _ensure_job_queue(conn: psycopg.Connection, applied: list[str]) -> None:
    """Install procrastinate's own schema (the job queue) once, as migration 0."""
    if conn.execute("SELECT to_regclass('procrastinate_jobs') AS t").fetchone()["t"] is not None:
        return
    import procrastinate
    from procrastinate.schema import SchemaManager

    with conn.transaction():
        conn.execute(SchemaManager.get_schema())
        conn.execute(
            "INSERT INTO schema_migration (version, name, file) VALUES (0, %s, NULL)",
            (f"procrastinate {procrastinate.__version__} schema",),
        )
    applied.append("procrastinate job queue schema")


def pending(conn: psycopg.Connection) -> list[str]:
    """Names of migrations not yet applied (empty when up to date)."""
    if stored_level(conn) is None:
        return [f"{m.version:04d}_{m.name}" for m in migrations()]
    done = {r["version"] for r in conn.execute("SELECT version FROM schema_migration")}
    return [f"{m.version:04d}_{m.name}" for m in migrations() if m.version not in done]


# --- status --------------------------------------------------------------------------

_COUNTED = ("station", "logger", "channel", "source_file", "reading", "reading_1h", "reading_1d")


def status(url: str | None = None) -> dict[str, Any]:
    """Everything ``stationmanager db status`` shows."""
    url = url or db.database_url()
    with db.connect(url) as conn, db.translate():
        caps = capabilities(conn)
        level = stored_level(conn)
        out: dict[str, Any] = {
            "database": db.redact(url),
            "postgresql": caps["postgresql"],
            "timescaledb": caps["timescaledb"],
            "timescaledb_available": caps["timescaledb_available"],
            "timescaledb_edition": caps["timescaledb_edition"],
            "storage_level": level,
            "storage_level_name": LEVEL_NAMES.get(level, "not migrated") if level is not None else "not migrated",
            "offered_level": caps["offered_level"],
            "pending_migrations": pending(conn),
        }
        conns = conn.execute(
            """
            SELECT count(*) FILTER (WHERE datname = current_database()) AS this_database,
                   count(*) AS server_total,
                   current_setting('max_connections')::int AS max_connections
            FROM pg_stat_activity WHERE backend_type = 'client backend'
            """
        ).fetchone()
        out["connections"] = dict(conns or {})
        counts: dict[str, int | None] = {}
        if level is not None:
            for table in _COUNTED:
                counts[table] = conn.execute(
                    psycopg.sql.SQL("SELECT count(*) AS n FROM {}").format(psycopg.sql.Identifier(table))
                ).fetchone()["n"]
        out["row_counts"] = counts
        return out
