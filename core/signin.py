"""Password sign-in against guessing: a lock per user name, a growing wait per client, and
the same work whether the name exists or not.

* After ``STATIONMANAGER_SIGN_IN_MAX_FAILURES`` failed sign-ins in a row, a user name is
  locked for ``STATIONMANAGER_SIGN_IN_LOCK_MINUTES``: every password is refused, the right
  one too, with the time the lock ends. Names that do not exist are counted and locked the
  same way. The count is in the database: several app processes share it and a restart
  keeps it. Each attempt is counted as failed *before* the password is checked (a success
  clears the count), under a row lock, so attempts sent at once cannot all slip under the
  limit.
* Each attempt from a client address with recent failures waits first (:func:`client_delay`),
  up to ``STATIONMANAGER_SIGN_IN_DELAY_MAX_S``.
* One bcrypt check per attempt whatever the name (:func:`core.auth.verify_password`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from core import auth, db, sessions
from core.errors import AccountLocked
from core.settings import Settings

log = logging.getLogger(__name__)

_SQL = db.SqlFile("sign_in.sql")
FIRST_DELAY_S = 0.25
_LONGEST_NAME = 100  # a longer name cannot exist; it is counted by its first characters


@dataclass(frozen=True)
class Attempt:
    """An attempt once counted: the failures in a row it makes, the lock it set or found."""

    failures: int
    locked_until: datetime | None
    refused: bool  # the name was locked already: the password is not checked


def count(failures: int, locked_until: datetime | None, last_attempt_at: datetime, now: datetime, *,
          max_failures: int, lock: timedelta) -> Attempt:
    """The state after one more attempt on a name, counted as failed until proven right.

    >>> t = datetime(2026, 1, 1, 12)
    >>> lock = timedelta(minutes=15)
    >>> count(3, None, t, t, max_failures=5, lock=lock)
    Attempt(failures=4, locked_until=None, refused=False)
    >>> count(4, None, t, t, max_failures=5, lock=lock).locked_until
    datetime.datetime(2026, 1, 1, 12, 15)
    >>> count(5, t + lock, t, t + timedelta(minutes=1), max_failures=5, lock=lock).refused
    True

    A lock that has run out, or failures older than the lock time, start the count again:

    >>> count(5, t + lock, t, t + lock, max_failures=5, lock=lock)
    Attempt(failures=1, locked_until=None, refused=False)
    >>> count(4, None, t, t + lock + timedelta(seconds=1), max_failures=5, lock=lock).failures
    1
    """
    if locked_until is not None and locked_until > now:
        return Attempt(failures, locked_until, True)
    if locked_until is not None or now - last_attempt_at > lock:
        failures = 0
    failures += 1
    return Attempt(failures, now + lock if failures >= max_failures else None, False)


def client_delay(failures: int, max_s: float) -> float:
    """Seconds an attempt waits after ``failures`` recent failures from its client.

    >>> [client_delay(n, 8.0) for n in range(7)]
    [0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0]
    >>> client_delay(40, 8.0)
    8.0
    """
    if failures <= 0:
        return 0.0
    return min(FIRST_DELAY_S * 2 ** min(failures - 1, 30), max_s)


def _count_attempt(conn: psycopg.Connection, name: str, settings: Settings) -> Attempt:
    lock = timedelta(minutes=settings.sign_in_lock_minutes)
    with conn.transaction():
        conn.execute(_SQL.q("purge_failures"))
        conn.execute(_SQL.q("ensure_failure_row"), {"name": name})
        row = _SQL.fetch_one(conn, "failure_row", name=name)
        assert row is not None
        attempt = count(row["failures"], row["locked_until"], row["last_attempt_at"], row["now"],
                        max_failures=settings.sign_in_max_failures, lock=lock)
        if not attempt.refused:
            conn.execute(_SQL.q("set_failures"), {"name": name, "failures": attempt.failures,
                                                  "locked_until": attempt.locked_until, "now": row["now"]})
    return attempt


def client_wait(conn: psycopg.Connection, client: str, settings: Settings) -> float:
    """Seconds the next attempt from ``client`` waits (:func:`client_delay` of its recent failures)."""
    window_s = settings.sign_in_lock_minutes * 60
    with conn.transaction():
        conn.execute(_SQL.q("purge_clients"), {"window_s": window_s})
        row = _SQL.fetch_one(conn, "client_failures", client=client, window_s=window_s)
    return client_delay(row["failures"] if row else 0, settings.sign_in_delay_max_s)


def sign_in(connect: Callable[[], AbstractContextManager[psycopg.Connection]], settings: Settings,
            config: dict[str, Any], name: str, password: str, *, client: str) -> str | None:
    """Check ``password`` for user ``name`` (a loaded user file ``config``) from ``client``
    (its address); the new session's id (:func:`core.sessions.start`), or None if wrong.

    ``connect()`` gives a connection for each step (e.g. from the pool): none is held while
    the attempt waits or bcrypt runs, so that slow attempts cannot take every pooled
    connection. Raises :class:`AccountLocked` while the name is locked, and on the failure
    that locks it.
    """
    name = name[:_LONGEST_NAME]
    with connect() as conn:
        wait = client_wait(conn, client, settings)
    if wait:
        time.sleep(wait)
    with connect() as conn:
        attempt = _count_attempt(conn, name, settings)
    if attempt.refused:
        assert attempt.locked_until is not None
        raise AccountLocked(until=attempt.locked_until)
    if auth.verify_password(config, name, password):
        entry = auth.user(config, name)
        assert entry is not None
        with connect() as conn:
            with conn.transaction():
                conn.execute(_SQL.q("clear_failures"), {"name": name})
            return sessions.start(conn, name, auth.password_fingerprint(entry))
    with connect() as conn, conn.transaction():
        conn.execute(_SQL.q("client_failed"), {"client": client, "window_s": settings.sign_in_lock_minutes * 60})
    log.warning("failed sign-in for %r from %s (%d in a row)", name, client, attempt.failures)
    if attempt.locked_until is not None:
        raise AccountLocked(until=attempt.locked_until)
    return None


def unlock(conn: psycopg.Connection, name: str) -> bool:
    """Forget the failed sign-ins of ``name`` (an administrator's unlock); whether it had any."""
    with conn.transaction():
        return _SQL.fetch_one(conn, "clear_failures", name=name) is not None
