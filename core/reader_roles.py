"""Reader roles: PostgreSQL logins for notebooks that see only the tidy views.

``stationmanager db reader-role NAME`` (:func:`ensure`) creates, or updates when run
again, a role that

* logs in, and nothing more: not a superuser, cannot create roles or databases, no
  replication, no row-security bypass;
* may SELECT the views of schema ``tidy`` (migration 0018) and nothing else: a view runs
  with its owner's rights, so the role reads exactly what the views show; it has no
  privilege on any table, and PUBLIC's defaults in this database (temporary tables, the
  public schema) are revoked;
* has a connection limit, and starts each session with a statement timeout, a
  ``work_mem`` cap, read-only transactions, an idle-in-transaction timeout, a cap on
  parallel workers and, when a superuser creates it, a temporary-file limit.

.. warning:: The session settings are defaults: PostgreSQL lets any role ``SET
   statement_timeout`` or ``work_mem`` in its own session (only ``temp_file_limit`` is
   beyond its reach). What cannot be undone from a session is what matters most: the
   privileges (it cannot write), the connection limit, and ``temp_file_limit``; and the
   worker's :func:`enforce` (every minute) cancels a statement that runs past the role's
   timeout and ends a session idle in a transaction past its limit, whatever the session
   set. ``work_mem`` raised in a session is not caught. See ``docs/security.md``.

The password never reaches the server in clear: the role gets a SCRAM-SHA-256 verifier
computed here (:func:`scram_verifier`), so it cannot show up in the server's log.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import sql

from core import db
from core.db import SqlFile
from core.errors import StationManagerError
from core.settings import Settings, get_settings

log = logging.getLogger(__name__)

_sql = SqlFile("reader_roles.sql")
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
#: The comment that marks a role as a reader role of StationManager (only those are changed).
MARK = "StationManager reader role: reads the tidy views only"
SCRAM_ITERATIONS = 4096


class ReaderRoleError(StationManagerError):
    """The reader role cannot be created or changed."""


def check_name(name: str) -> str:
    """A role name: lower-case letters, digits and underscores, not starting with a digit,
    and not one of PostgreSQL's own (``pg_…``).

    >>> check_name("notebook_anna")
    'notebook_anna'
    >>> try:
    ...     check_name('Robert"; DROP')
    ... except ReaderRoleError as exc:
    ...     print(exc)
    role name 'Robert"; DROP' is not allowed: use lower-case letters, digits and _ (at most 63, not starting with a digit or pg_)
    """
    if not _NAME.match(name or "") or name.startswith("pg_"):
        raise ReaderRoleError(f"role name {name!r} is not allowed: use lower-case letters, digits and _ "
                              "(at most 63, not starting with a digit or pg_)")
    return name


def scram_verifier(password: str, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for ``password`` (RFC 5802, 7677), so that
    ``CREATE ROLE … PASSWORD`` never carries the password itself.

    >>> scram_verifier("pencil", salt=b"0123456789abcdef")[:48]
    'SCRAM-SHA-256$4096:MDEyMzQ1Njc4OWFiY2RlZg==$nQpb'
    """
    if not password.isascii() or not password.isprintable():
        # SASLprep would change other passwords; keep to what it leaves as it is
        raise ReaderRoleError("the password must be printable ASCII")
    salt = salt or secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def role_settings(settings: Settings, *, statement_timeout_s: float | None = None,
                  work_mem_mb: int | None = None) -> dict[str, str]:
    """The session defaults of a reader role.

    >>> role_settings(Settings())["statement_timeout"], role_settings(Settings(), work_mem_mb=8)["work_mem"]
    ('60000', '8MB')
    """
    timeout = settings.reader_statement_timeout_s if statement_timeout_s is None else statement_timeout_s
    mem = settings.reader_work_mem_mb if work_mem_mb is None else work_mem_mb
    if timeout <= 0 or mem <= 0:
        raise ReaderRoleError("the statement timeout and work_mem of a reader role must be more than 0")
    return {
        "statement_timeout": str(round(timeout * 1000)),
        "work_mem": f"{int(mem)}MB",
        "default_transaction_read_only": "on",
        "idle_in_transaction_session_timeout": str(round(settings.reader_idle_in_transaction_s * 1000)),
        "max_parallel_workers_per_gather": str(settings.max_parallel_workers_per_gather),
        "jit": "off",
    }


def ensure(conn: psycopg.Connection, name: str, *, connections: int | None = None,
           statement_timeout_s: float | None = None, work_mem_mb: int | None = None,
           password: str | None = None, settings: Settings | None = None) -> dict[str, Any]:
    """Create the reader role ``name`` for this database, or update it (its limits; its
    password only when one is given). A new role without ``password`` gets a random one.

    Returns ``{"name", "created", "password" (None when unchanged), "connections",
    "settings", "notes"}``. Runs in one transaction of ``conn``.
    """
    settings = settings or get_settings()
    check_name(name)
    limit = settings.reader_connections if connections is None else connections
    if limit < 1:
        raise ReaderRoleError("a reader role needs a connection limit of at least 1")
    wanted = role_settings(settings, statement_timeout_s=statement_timeout_s, work_mem_mb=work_mem_mb)
    notes: list[str] = []
    ident = sql.Identifier(name)
    with db.translate(), conn.transaction():
        me = _sql.fetch_one(conn, "me")
        owner = _sql.fetch_one(conn, "tidy_owner")
        if owner is None:
            raise ReaderRoleError("this database has no tidy views yet: run `stationmanager db upgrade` first")
        existing = _sql.fetch_one(conn, "role", name=name)
        _refuse_foreign(existing, name)
        created = existing is None
        if created and password is None:
            password = secrets.token_urlsafe(24)
        try:
            if created:
                conn.execute(_sql.q("create_role").format(
                    name=ident, connections=sql.Literal(limit), password=sql.Literal(scram_verifier(password))))
            else:
                conn.execute(_sql.q("alter_role").format(name=ident, connections=sql.Literal(limit)))
                if password is not None:
                    conn.execute(_sql.q("set_password").format(
                        name=ident, password=sql.Literal(scram_verifier(password))))
        except psycopg.errors.InsufficientPrivilege as exc:
            raise ReaderRoleError(
                f"the database user {me['name']} may not create or change roles: run this command as a "
                f"user with CREATEROLE (STATIONMANAGER_DATABASE_URL of an administrator) ({db.first_line(exc)})"
            ) from exc
        conn.execute(_sql.q("comment_role").format(name=ident, comment=sql.Literal(MARK)))
        for key, value in wanted.items():
            conn.execute(_sql.q("set_role_setting").format(
                name=ident, setting=sql.Identifier(key), value=sql.Literal(value)))
        if me["superuser"]:
            conn.execute(_sql.q("set_role_setting").format(
                name=ident, setting=sql.Identifier("temp_file_limit"),
                value=sql.Literal(f"{settings.reader_temp_file_mb}MB")))
            wanted["temp_file_limit"] = f"{settings.reader_temp_file_mb}MB"
        else:
            notes.append("temp_file_limit not set (only a superuser may set it for a role)")
        conn.execute(_sql.q("lock_down_database").format(
            database=sql.Identifier(me["database"]), owner=sql.Identifier(owner["owner"]), name=ident))
    log.info("reader role %s %s", name, "created" if created else "updated")
    return {"name": name, "created": created, "password": password, "connections": limit,
            "settings": wanted, "notes": notes}


def drop(conn: psycopg.Connection, name: str) -> dict[str, Any]:
    """End the role's sessions in this database, remove its privileges here and drop it.

    A role that still has privileges in another database of the server is kept (without
    access to this one); ``{"dropped": False, "note": …}`` says so.
    """
    check_name(name)
    ident = sql.Identifier(name)
    with db.translate():
        with conn.transaction():
            existing = _sql.fetch_one(conn, "role", name=name)
            if existing is None:
                raise ReaderRoleError(f"there is no role {name!r}")
            _refuse_foreign(existing, name)
            conn.execute(_sql.q("sessions_of"), {"name": name}).fetchall()
            conn.execute(_sql.q("drop_owned").format(name=ident))
        try:
            with conn.transaction():
                conn.execute(_sql.q("drop_role").format(name=ident))
        except psycopg.errors.DependentObjectsStillReferenced as exc:
            note = (f"{name} keeps its access to other databases of this server ({db.first_line(exc)}); "
                    "run this command against each of them to drop it")
            return {"name": name, "dropped": False, "note": note}
    log.info("reader role %s dropped", name)
    return {"name": name, "dropped": True, "note": ""}


def _refuse_foreign(row: dict[str, Any] | None, name: str) -> None:
    """Only roles this module made are changed: never an administrator or the app's own user."""
    if row is None:
        return
    if row["is_current"] or row["rolsuper"] or row["comment"] != MARK:
        raise ReaderRoleError(f"role {name!r} exists and is not a StationManager reader role; "
                              "choose another name")


def reader_url(url: str, name: str, password: str | None) -> str:
    """``url`` (the StationManager database) for role ``name`` (password left out if None).

    >>> reader_url("postgresql://admin:secret@db.example:5433/sm?sslmode=require", "nb", "p@ss")
    'postgresql://nb:p%40ss@db.example:5433/sm?sslmode=require'
    >>> reader_url("postgresql://postgres:@/stationmanager?host=/tmp/sock", "nb", None)
    'postgresql://nb@/stationmanager?host=%2Ftmp%2Fsock'
    """
    info = psycopg.conninfo.conninfo_to_dict(url)
    host, port, dbname = info.pop("host", ""), info.pop("port", ""), info.pop("dbname", "")
    for key in ("user", "password", "passfile"):
        info.pop(key, None)
    options = {}
    if host and str(host).startswith("/"):
        options["host"] = str(host)
        host = ""
    options.update({k: str(v) for k, v in info.items()})
    who = quote(name, safe="") + (f":{quote(password, safe='')}" if password is not None else "")
    netloc = f"{who}@{host}" + (f":{port}" if port and host else "")
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in options.items())
    if port and not host:
        query = "&".join(filter(None, [query, f"port={port}"]))
    return f"postgresql://{netloc}/{quote(str(dbname), safe='')}" + (f"?{query}" if query else "")


def describe(conn: psycopg.Connection, name: str) -> dict[str, Any]:
    """The role as the server has it: connection limit and session settings."""
    row = _sql.fetch_one(conn, "role", name=name)
    if row is None:
        raise ReaderRoleError(f"there is no role {name!r}")
    pairs = dict(s.split("=", 1) for s in (row["settings"] or []))
    return {"name": name, "connections": row["rolconnlimit"], "settings": pairs,
            "reader": row["comment"] == MARK}



def enforce(conn: psycopg.Connection) -> dict[str, list[int]]:
    """Cancel the statements of this database's reader roles that run longer than their
    role's statement timeout, and end their sessions idle in a transaction longer than the
    role's limit, whatever the session set for itself (the worker runs this every minute).

    Returns the process ids ``{"cancelled": […], "ended": […]}``. Needs a database user that
    may signal those sessions (a superuser, or a member of ``pg_signal_backend``); without it
    the sessions are left alone and a warning says so.
    """
    out: dict[str, list[int]] = {"cancelled": [], "ended": []}
    for row in _sql.fetch_all(conn, "reader_sessions", mark=MARK):
        limit, idle_limit = _ms(row["timeout"]), _ms(row["idle_timeout"])
        if row["state"] == "active" and limit and row["running_ms"] > limit:
            what, query = "cancelled", "cancel"
        elif row["state"] != "active" and idle_limit and row["idle_ms"] > idle_limit:
            what, query = "ended", "terminate"
        else:
            continue
        try:
            with conn.transaction():
                done = _sql.fetch_one(conn, query, pid=row["pid"])["done"]
        except psycopg.errors.InsufficientPrivilege as exc:
            log.warning("reader role %s: session %s is past its limits but cannot be stopped: %s",
                        row["name"], row["pid"], db.first_line(exc))
            continue
        if done:
            out[what].append(row["pid"])
            log.warning("reader role %s: session %s %s (past the role's %s)", row["name"], row["pid"], what,
                        "statement timeout" if what == "cancelled" else "idle-in-transaction timeout")
    return out


def _ms(value: str | None) -> float | None:
    """A role setting as ``ensure`` stores it (milliseconds), else None.

    >>> _ms("1500"), _ms(None), _ms("1min")
    (1500.0, None, None)
    """
    try:
        return float(value) if value else None
    except ValueError:
        return None
