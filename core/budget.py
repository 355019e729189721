"""The connection budget: every process's pool, and the reader roles, within ``max_connections``.

PostgreSQL refuses a connection beyond its ``max_connections`` ("sorry, too many clients
already"), the last ``superuser_reserved_connections`` (and, from PostgreSQL 16,
``reserved_connections``) of them kept for superusers and privileged roles. StationManager's
processes each hold at most a known number of connections:

* the web app: ``WEB_POOL_SIZE`` (one pool for all its sessions);
* the HTTP API: ``API_POOL_SIZE``;
* each worker (``WORKERS`` of them): ``WORKER_CONCURRENCY + 2`` for the job queue, 1 for its
  LISTEN connection, ``POOL_SIZE`` for the jobs' queries, and 2 per running job that builds
  an export (its snapshot and its progress), so ``3 × WORKER_CONCURRENCY + 3 + POOL_SIZE``;
* each reader role: its connection limit (``stationmanager db reader-role NAME --connections N``);
* ``ADMIN_CONNECTIONS`` kept free for an administrator and CLI commands.

Their sum must fit in what the server allows. When it does, no process can be refused a
connection by the server because of the others: a process whose own pool is busy waits for
one of its connections (``POOL_WAIT_S``) instead of failing. :func:`check` says which
setting to change when the sum does not fit; ``stationmanager up`` refuses to start then,
a worker warns, and ``stationmanager db status`` shows the budget.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row

from core.db import SqlFile
from core.errors import ConfigError
from core.settings import Settings, get_settings

log = logging.getLogger(__name__)

_sql = SqlFile("reader_roles.sql")


def worker_connections(settings: Settings) -> int:
    """Connections one worker holds at most (see the module's docstring).

    >>> worker_connections(Settings(worker_concurrency=2, pool_size=4))
    13
    """
    return 3 * settings.worker_concurrency + 3 + settings.pool_size


@dataclass(frozen=True)
class Budget:
    """What the installation may use against what the server allows."""

    max_connections: int
    reserved: int  # superuser_reserved_connections + reserved_connections
    web: int
    api: int
    workers: int
    per_worker: int
    admin: int
    readers: dict[str, int] = field(default_factory=dict)  # role -> connection limit (-1: none)
    in_use: int | None = None  # client connections on the server now (all databases)

    @property
    def allowed(self) -> int:
        """Connections the server gives to roles that are not superusers."""
        return self.max_connections - self.reserved

    @property
    def needed(self) -> int:
        return (self.web + self.api + self.workers * self.per_worker
                + sum(max(n, 0) for n in self.readers.values()) + self.admin)

    @property
    def ok(self) -> bool:
        return not self.problems()

    def parts(self) -> list[tuple[str, int, str]]:
        """(what, connections, the setting that sets it), largest first."""
        rows = [
            ("web app", self.web, "STATIONMANAGER_WEB_POOL_SIZE"),
            ("HTTP API", self.api, "STATIONMANAGER_API_POOL_SIZE"),
            (f"{self.workers} worker{'s' if self.workers != 1 else ''} × {self.per_worker}",
             self.workers * self.per_worker,
             "STATIONMANAGER_WORKERS, STATIONMANAGER_WORKER_CONCURRENCY, STATIONMANAGER_POOL_SIZE"),
            *((f"reader role {name}", max(n, 0), f"stationmanager db reader-role {name} --connections N")
              for name, n in self.readers.items()),
            ("kept for an administrator", self.admin, "STATIONMANAGER_ADMIN_CONNECTIONS"),
        ]
        return sorted(rows, key=lambda r: -r[1])

    def problems(self) -> list[str]:
        """What is wrong with the budget, each with the setting to change (empty: it fits).

        >>> b = Budget(max_connections=20, reserved=3, web=4, api=8, workers=1, per_worker=13, admin=3)
        >>> print(b.problems()[0])  # doctest: +ELLIPSIS
        the connection budget needs 28 connections but the server allows 17 (max_connections 20 − 3 reserved for superusers): lower 1 worker × 13 (13: STATIONMANAGER_WORKERS, ...), HTTP API (8: STATIONMANAGER_API_POOL_SIZE), or raise the server's max_connections
        >>> Budget(100, 3, 4, 8, 1, 13, 3).problems()
        []
        >>> Budget(100, 3, 4, 8, 1, 13, 3, readers={"nb": -1}).problems()
        ['reader role nb has no connection limit: set one with `stationmanager db reader-role nb --connections N`']
        """
        out = [f"reader role {name} has no connection limit: set one with "
               f"`stationmanager db reader-role {name} --connections N`"
               for name, n in self.readers.items() if n < 0]
        if self.needed > self.allowed:
            biggest = ", ".join(f"{what} ({n}: {setting})" for what, n, setting in self.parts()[:2])
            out.append(
                f"the connection budget needs {self.needed} connections but the server allows {self.allowed} "
                f"(max_connections {self.max_connections} − {self.reserved} reserved for superusers): lower "
                f"{biggest}, or raise the server's max_connections")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "max_connections": self.max_connections, "reserved": self.reserved, "allowed": self.allowed,
            "needed": self.needed, "in_use": self.in_use, "ok": self.ok, "problems": self.problems(),
            "parts": [{"what": w, "connections": n, "setting": s} for w, n, s in self.parts()],
        }


def plan(max_connections: int, reserved: int, settings: Settings | None = None,
         readers: dict[str, int] | None = None, in_use: int | None = None) -> Budget:
    """The budget of ``settings`` on a server with these numbers.

    >>> plan(100, 3, Settings()).needed   # 4 web + 8 API + 13 for one worker + 3 admin
    28
    >>> plan(25, 3, Settings(workers=2)).ok, plan(25, 3, Settings(api_pool_size=0)).ok
    (False, True)
    """
    s = settings or get_settings()
    return Budget(max_connections=max_connections, reserved=reserved, web=s.web_pool_size, api=s.api_pool_size,
                  workers=s.workers, per_worker=worker_connections(s), admin=s.admin_connections,
                  readers=dict(readers or {}), in_use=in_use)


def reader_limits(conn: psycopg.Connection) -> dict[str, int]:
    """The reader roles of this database and their connection limits (-1: none)."""
    return {r["name"]: r["connections"] for r in _rows(conn, "readers")}


def measure(conn: psycopg.Connection, settings: Settings | None = None) -> Budget:
    """The budget of ``settings`` on the server of ``conn`` (its max_connections, reserve and
    this database's reader roles)."""
    server = _rows(conn, "server")[0]
    return plan(server["max_connections"], server["reserved"], settings, reader_limits(conn), server["in_use"])


def check(conn: psycopg.Connection, who: str, settings: Settings | None = None, *, strict: bool = False) -> Budget:
    """Check the budget when ``who`` starts: a warning in the log, or with ``strict`` a
    :class:`ConfigError`, saying what to change."""
    budget = measure(conn, settings)
    problems = budget.problems()
    if problems:
        text = "; ".join(problems)
        if strict:
            raise ConfigError(f"{who}: {text}")
        log.warning("%s: %s", who, text)
    return budget


def _rows(conn: psycopg.Connection, name: str) -> list[dict[str, Any]]:
    return conn.cursor(row_factory=dict_row).execute(_sql.q(name)).fetchall()
