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
LOCK_KEY = 0x5354414E  # pg_advisory_lock key serialising migrations
_SQL = db.SqlFile("rollups.sql")  # also the statements that raise the level


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


def capabilities(conn: psycopg.Connection, *, create_extension: bool = False) -> dict[str, Any]:
    """What the server offers: PostgreSQL and TimescaleDB versions, licence, level.

    .. warning:: On a database without the extension, ``timescaledb.license`` is not defined
       yet (the versioned library that defines it is loaded by ``CREATE EXTENSION``), so
       ``current_setting('timescaledb.license', true)`` is NULL there. When the server
       preloads TimescaleDB, the licence is read after creating the extension: in the
       caller's transaction with ``create_extension``, else in a transaction that is rolled
       back (nothing changes, but this session cannot create the extension afterwards:
       TimescaleDB refuses to load its library twice in one session).
    """
    row = conn.execute(
        """
        SELECT current_setting('server_version') AS postgresql,
               (SELECT default_version FROM pg_available_extensions
                 WHERE name = 'timescaledb') AS timescaledb_available,
               (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb') AS timescaledb,
               (SELECT setting FROM pg_settings WHERE name = 'shared_preload_libraries')
                   AS preload
        """
    ).fetchone()
    assert row is not None
    preloaded = "timescaledb" in (row["preload"] or "")
    license = None
    if row["timescaledb_available"] and preloaded:
        license = _licence(conn, installed=row["timescaledb"] is not None, create=create_extension)
    offered = 0 if license is None else 2 if license == "timescale" else 1
    return {
        "postgresql": row["postgresql"],
        "timescaledb": row["timescaledb"],
        "timescaledb_available": row["timescaledb_available"],
        "timescaledb_preloaded": preloaded,
        "timescaledb_edition": _edition(license) if row["timescaledb_available"] else None,
        "offered_level": offered,
    }


def _licence(conn: psycopg.Connection, *, installed: bool, create: bool) -> str | None:
    """The TimescaleDB licence (``timescale`` or ``apache``), read with the extension
    loaded; None when this user cannot create the extension here."""
    read = "SELECT current_setting('timescaledb.license', true) AS license"
    if installed:
        return conn.execute(read).fetchone()["license"]
    license = None
    try:
        with conn.transaction():
            conn.execute("SET client_min_messages = warning")
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            license = conn.execute(read).fetchone()["license"]
            if not create:
                raise psycopg.Rollback()  # only looking
    except psycopg.Error as exc:
        log.warning("TimescaleDB is installed but cannot be created in this database: %s", exc)
        return None
    return license


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
    with db.connect(url, autocommit=True) as conn, db.translate():
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        try:
            result = migrate(conn, settings, target=target)
            if result["level"] == 2 and target is None:
                _align_compression(conn, settings.compress_after_days)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    return result


def migrate(conn: psycopg.Connection, settings: Settings, *, target: int | None = None) -> dict[str, Any]:
    """Apply the pending migrations (up to ``target``) on ``conn``, each in a transaction of
    its own, or in savepoints of the caller's transaction (``core.backup`` restores the schema
    and the data in one). The caller serialises migrations (:func:`upgrade` holds a lock)."""
    applied: list[str] = []
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
    return {"level": level, "applied": applied}


def _ensure_storage_info(conn: psycopg.Connection, settings: Settings) -> int:
    level = stored_level(conn)
    if level is not None:
        return level
    with conn.transaction():
        # the extension first (when the server preloads it), then its licence: see capabilities
        caps = capabilities(conn, create_extension=settings.storage_level_max >= 1)
        level = min(caps["offered_level"], settings.storage_level_max)
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


def _align_compression(conn: psycopg.Connection, days: int) -> None:
    """Level 2: compress reading chunks older than ``STATIONMANAGER_COMPRESS_AFTER_DAYS``
    (migration 0003 sets 90 days; a changed setting takes effect at the next upgrade)."""
    row = _SQL.fetch_one(conn, "compression_policy")
    if row is not None and row["compress_after"] == f"{days} days":
        return
    with conn.transaction():
        conn.execute(_SQL.q("set_compression_policy"), {"days": days})
    log.info("reading chunks are compressed after %s days", days)


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


# --- raising the level ---------------------------------------------------------------

def raise_level(url: str | None = None, settings: Settings | None = None, *, to: int | None = None) -> dict[str, Any]:
    """Move an existing database up to a higher storage level in place, keeping every
    reading, flag and setting: level 0 -> 1 makes ``reading`` a hypertable (moving its rows
    into chunks); -> 2 also enables compression and replaces the rollup tables with
    continuous aggregates, refreshed over all the data afterwards.

    ``to`` defaults to the best the server offers, capped by ``STATIONMANAGER_STORAGE_LEVEL_MAX``.
    Stop the workers and the app first (``reading`` is locked while it is converted) and
    back the database up. Returns ``{"from": …, "level": …, "changed": bool}``.
    """
    settings = settings or get_settings()
    url = url or db.database_url(settings)
    upgrade(url, settings)  # the schema up to date at its current level first
    with db.connect(url, autocommit=True) as conn, db.translate():
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        try:
            current = stored_level(conn)
            assert current is not None
            done = {r["version"] for r in conn.execute("SELECT version FROM schema_migration")}
            with conn.transaction():
                conn.execute("SET LOCAL statement_timeout = 0")
                offered = capabilities(conn, create_extension=True)["offered_level"]  # rolled back unless used
                target = min(offered, settings.storage_level_max) if to is None else to
                if target > offered:
                    raise DatabaseError(f"this server offers storage level {offered}, not {target}")
                if target > settings.storage_level_max:
                    raise DatabaseError(f"STATIONMANAGER_STORAGE_LEVEL_MAX is {settings.storage_level_max}: "
                                        f"raise or unset it to move to level {target}")
                if target <= current:
                    raise psycopg.Rollback()
                for mig in migrations():
                    old, new = mig.file_for(current), mig.file_for(target)
                    if mig.version not in done or old == new:
                        continue
                    log.info("raising migration %04d_%s: %s -> %s", mig.version, mig.name, old, new)
                    if mig.version == 2:  # the hypertable, with the rows already there
                        conn.execute(_SQL.q("make_hypertable"))
                    elif mig.version == 3:  # rollup tables -> continuous aggregates
                        views = conn.execute(_SQL.q("rollup_views")).fetchall()
                        conn.execute(_SQL.q("drop_rollup_tables"))
                        conn.execute(_read(new))  # type: ignore[arg-type]
                        for v in views:  # the views over them, as they were (same columns)
                            conn.execute(f"CREATE VIEW {v['name']} AS {v['definition']}")  # type: ignore[arg-type]
                            for reader in v["readers"]:
                                conn.execute(f"GRANT SELECT ON {v['name']} TO {reader}")  # type: ignore[arg-type]
                    elif old is None and new is not None:  # skipped at the lower level: applied now
                        conn.execute(_read(new))  # type: ignore[arg-type]
                    else:
                        raise DatabaseError(f"no way to raise migration {mig.version:04d} from {old} to {new}")
                    conn.execute(_SQL.q("set_migration_file"), {"file": new, "version": mig.version})
                conn.execute(_SQL.q("set_level"), {"level": target})
                span = _SQL.fetch_one(conn, "reading_span")
                if target == 2 and span["first"] is not None:
                    from core import rollups

                    rollups.mark_pending(conn, span["first"], span["last"])
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
        if target <= current:
            return {"from": current, "level": current, "changed": False}
        if target == 2:
            from core import rollups

            rollups.refresh_pending(conn)  # outside the transaction; else the worker catches up
    upgrade(url, settings)  # settings that apply at the new level (compression policy)
    log.info("storage level raised from %s to %s: %s", current, target, LEVEL_NAMES[target])
    return {"from": current, "level": target, "changed": True}


def level_note(level: int | None, offered: int, level_max: int) -> str | None:
    """What to say when the server offers more than the database uses (else None).

    >>> print(level_note(2, 2, 2))
    None
    >>> level_note(1, 2, 2).split(";")[0]
    'this server offers storage level 2 (TimescaleDB community (hypertables, compression, continuous aggregates)) but this database uses level 1'
    """
    if level is None or level >= offered:
        return None
    how = "stop the workers and the app, back the database up, then run `stationmanager db raise-level`"
    if level_max < offered:
        how = f"unset STATIONMANAGER_STORAGE_LEVEL_MAX (now {level_max}), " + how
    return (f"this server offers storage level {offered} ({LEVEL_NAMES[offered]}) but this database uses "
            f"level {level}; to move up, {how} (it keeps every reading; see docs/architecture.md)")


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
            "level_note": level_note(level, caps["offered_level"], get_settings().storage_level_max),
            "pending_migrations": pending(conn),
            "rollup_ranges_pending": None,
        }
        if level is not None and conn.execute("SELECT to_regclass('rollup_pending') AS t").fetchone()["t"]:
            out["rollup_ranges_pending"] = _SQL.fetch_one(conn, "count_pending")["n"]
        conns = conn.execute(
            """
            SELECT count(*) FILTER (WHERE datname = current_database()) AS this_database,
                   count(*) AS server_total,
                   current_setting('max_connections')::int AS max_connections
            FROM pg_stat_activity WHERE backend_type = 'client backend'
            """
        ).fetchone()
        out["connections"] = dict(conns or {})
        from core import budget

        out["budget"] = budget.measure(conn).as_dict()
        counts: dict[str, int | None] = {}
        if level is not None:
            for table in _COUNTED:
                counts[table] = conn.execute(
                    psycopg.sql.SQL("SELECT count(*) AS n FROM {}").format(psycopg.sql.Identifier(table))
                ).fetchone()["n"]
        out["row_counts"] = counts
        return out
