"""What the Sources page may change, each checked against the user's role here in core
(a page that hides its buttons is not protection): define, edit, enable, remove a source,
test it, queue a run for the worker, accept an SFTP host key. Every one needs ``admin``.

The web process never fetches: "sync now" queues the run (:func:`core.jobs.defer_sync`).
"Test" is queued too (:func:`queue_test`): the worker connects and lists (nothing is
downloaded), and the page shows its result when it arrives (:func:`test_result`).
"""

from __future__ import annotations

import re
from typing import Any

import psycopg

from core import auth, db, jobs, remote, sources
from core.errors import ConfigError, StationManagerError

NEEDED = "admin"


def parse_form(form: dict[str, Any]) -> dict[str, Any]:
    """The fields of :func:`core.sources.add_source` from the page's form: text trimmed,
    patterns split on commas or new lines, empty text as None. Raises :class:`ConfigError`
    naming the first field that is missing.

    >>> f = parse_form({"name": " A ", "kind": "sftp", "url": "sftp://h/x", "include": "*.dat, *.zip",
    ...                 "exclude": "", "credentials": "", "station": "Mast", "every_minutes": 15})
    >>> f["name"], f["include"], f["exclude"], f["credentials"], f["station"]
    ('A', ['*.dat', '*.zip'], [], None, 'Mast')
    >>> parse_form({"name": "", "kind": "ftp", "url": "ftp://h"})
    Traceback (most recent call last):
    core.errors.ConfigError: Name: give the source a name
    """
    out: dict[str, Any] = {}
    for key, value in form.items():
        if isinstance(value, str):
            value = value.strip()
            if key in ("include", "exclude"):
                value = [p.strip() for p in re.split(r"[,\n]", value) if p.strip()]
            elif value == "":
                value = None
        out[key] = value
    for key, label, hint in (("name", "Name", "give the source a name"), ("kind", "Kind", "choose one"),
                             ("url", "URL", "where the files wait, e.g. sftp://user@host/folder")):
        if not out.get(key):
            raise ConfigError(f"{label}: {hint}")
    return out


def add(conn: psycopg.Connection, user: str, role: str | None, form: dict[str, Any]) -> dict:
    auth.require(role, NEEDED)
    with conn.transaction():
        return sources.add_source(conn, user, **parse_form(form))


def edit(conn: psycopg.Connection, user: str, role: str | None, name: str, form: dict[str, Any]) -> dict:
    auth.require(role, NEEDED)
    fields = parse_form(form)
    with conn.transaction():
        return sources.edit_source(conn, name, user, **fields)


def set_enabled(conn: psycopg.Connection, user: str, role: str | None, name: str, enabled: bool) -> dict:
    auth.require(role, NEEDED)
    with conn.transaction():
        return sources.edit_source(conn, name, user, enabled=enabled)


def remove(conn: psycopg.Connection, user: str, role: str | None, name: str) -> None:
    auth.require(role, NEEDED)
    with conn.transaction():
        sources.remove_source(conn, name, user)


def queue_test(conn: psycopg.Connection, user: str, role: str | None, name: str) -> int:
    """Queue a test of the source for the worker (connect and list, nothing is downloaded;
    an offered SFTP host key is kept for an admin to accept). Returns the job's id, which
    :func:`test_result` takes."""
    auth.require(role, NEEDED)
    src = sources.get_source(conn, name)
    app = jobs.make_app(db.database_url())
    with app.open():
        return jobs.defer_test(app, src["id"], user)


def test_result(conn: psycopg.Connection, role: str | None, name: str, job_id: int) -> dict | None:
    """The result of the test queued as ``job_id`` (``{"ok", "files", "listed", "error_class",
    "error"}``), or None while it waits for the worker or runs. A job that ended without a
    result (the worker was stopped, the job cancelled) is a failed test that says so."""
    auth.require(role, NEEDED)
    src = sources.get_source(conn, name)
    return sources.check_result(conn, src["id"], job_id)


def queue_sync(conn: psycopg.Connection, user: str, role: str | None, name: str) -> bool:
    """Queue a run for the worker (``trigger = 'web'``); False when one is queued already."""
    auth.require(role, NEEDED)
    src = sources.get_source(conn, name)
    app = jobs.make_app(db.database_url())
    with app.open():
        queued = jobs.defer_sync(app, src["id"], trigger="web")
    with conn.transaction():
        db.audit(conn, user, "sync", "source", src["id"], name=name, queued=queued)
    return queued


def accept_host_key(conn: psycopg.Connection, user: str, role: str | None, name: str, fingerprint: str) -> None:
    """Accept the host key the server offered, if it is still the one whose ``fingerprint``
    the admin was shown (a key offered since must be shown first)."""
    auth.require(role, NEEDED)
    src = sources.get_source(conn, name)
    key = src["pending_host_key"]
    if not key:
        raise StationManagerError(f"{name}: no host key waits to be accepted; test the source first")
    if remote.fingerprint(key) != fingerprint:
        raise StationManagerError(f"{name}: the server now offers another host key; check its fingerprint again")
    with conn.transaction():
        sources.trust_host_key(conn, name, user, key)

