"""Password sign-in against guessing: a lock per user name, a growing wait per client, and
the same work whether the name exists or not.

* After ``STATIONMANAGER_SIGN_IN_MAX_FAILURES`` failed sign-ins in a row, a user name is
  locked for ``STATIONMANAGER_SIGN_IN_LOCK_MINUTES``: every password is refused, the right
  one too, with the time the lock ends. Names that do not exist are counted and locked the
  same way. The count is in the database: several app processes share it and a restart
  keeps it.
* Attempts sent at once take turns (:func:`may_check`). A password is checked only once its
  attempt holds a turn, a row of ``sign_in_check``, and an attempt takes one only while the
  name's failures in a row plus the turns held stay under the limit. Taking a turn, and
  giving the answer (a wrong password turns its check into a failure, a right one ends it
  and clears the failures), each happen in one short transaction holding the name's row of
  ``sign_in_failure``. So failures + checks under way never pass the limit: however many
  attempts arrive at once, no more wrong passwords are checked in a row than the limit, and
  the lock comes on the last of them, exactly as one after another. A success in between
  starts the count again, as it does one after another. Right passwords sent at once all
  sign in: as many are checked at once as failures are left, the others wait their turn
  (up to ``STATIONMANAGER_SIGN_IN_WAIT_S``, then :class:`~core.errors.SignInBusy`, nothing
  counted). A wrong password checked at the same time cannot lock a right one out: the
  right one's turn keeps a failure's room.
* No connection is held while an attempt waits or bcrypt runs. (A lock per name held
  through the check, e.g. an advisory lock, would keep one pooled connection per waiting
  attempt, and check right passwords one bcrypt at a time.)
* A turn still held ``ABANDONED_S`` after it was taken belongs to a process that stopped
  before its answer: the next attempt on the name counts it as a failure, so that the
  bound holds even then. If its answer comes after all, it is not counted twice.
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
from core.errors import AccountLocked, SignInBusy
from core.settings import Settings

log = logging.getLogger(__name__)

_SQL = db.SqlFile("sign_in.sql")
FIRST_DELAY_S = 0.25
#: A turn held this long (seconds) is taken for a failure: no check lasts that long.
ABANDONED_S = 120.0
_POLL_S = (0.02, 0.5)  # first and longest pause between two tries at a turn
_LONGEST_NAME = 100  # a longer name cannot exist; it is counted by its first characters


@dataclass(frozen=True)
class Standing:
    """A name's failures in a row that still count, and the lock in force (None: unlocked)."""

    failures: int
    locked_until: datetime | None


def standing(failures: int, locked_until: datetime | None, last_attempt_at: datetime, now: datetime, *,
             lock: timedelta) -> Standing:
    """What a name's stored failures count for at ``now``.

    >>> t = datetime(2026, 1, 1, 12)
    >>> lock = timedelta(minutes=15)
    >>> standing(3, None, t, t + timedelta(minutes=1), lock=lock)
    Standing(failures=3, locked_until=None)
    >>> standing(5, t + lock, t, t + timedelta(minutes=1), lock=lock).locked_until
    datetime.datetime(2026, 1, 1, 12, 15)

    A lock that has run out, or failures older than the lock time, count no more:

    >>> standing(5, t + lock, t, t + lock, lock=lock)
    Standing(failures=0, locked_until=None)
    >>> standing(4, None, t, t + lock + timedelta(seconds=1), lock=lock).failures
    0
    """
    if locked_until is not None and locked_until > now:
        return Standing(failures, locked_until)
    if locked_until is not None or now - last_attempt_at > lock:
        return Standing(0, None)
    return Standing(failures, None)


def failed(now_standing: Standing, n: int, now: datetime, *, max_failures: int, lock: timedelta) -> Standing:
    """The standing after ``n`` more failures: the one that reaches ``max_failures`` locks the
    name from ``now``; a locked name stays as it is.

    >>> t = datetime(2026, 1, 1, 12)
    >>> lock = timedelta(minutes=15)
    >>> failed(Standing(3, None), 1, t, max_failures=5, lock=lock)
    Standing(failures=4, locked_until=None)
    >>> failed(Standing(4, None), 1, t, max_failures=5, lock=lock).locked_until
    datetime.datetime(2026, 1, 1, 12, 15)
    >>> failed(Standing(5, t), 2, t + lock, max_failures=5, lock=lock)
    Standing(failures=5, locked_until=datetime.datetime(2026, 1, 1, 12, 0))
    """
    if now_standing.locked_until is not None or n <= 0:
        return now_standing
    failures = now_standing.failures + n
    return Standing(failures, now + lock if failures >= max_failures else None)


def may_check(now_standing: Standing, checking: int, max_failures: int) -> bool:
    """Whether one more password of a name may be checked now: the name is not locked, and
    its failures in a row plus its checks under way (each may yet fail) stay under the limit.

    >>> may_check(Standing(0, None), 4, 5), may_check(Standing(0, None), 5, 5), may_check(Standing(3, None), 1, 5)
    (True, False, True)
    >>> may_check(Standing(3, None), 2, 5), may_check(Standing(5, datetime(2026, 1, 1)), 0, 5)
    (False, False)
    """
    return now_standing.locked_until is None and now_standing.failures + checking < max_failures


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


def _name_row(conn: psycopg.Connection, name: str, settings: Settings) -> tuple[Standing, datetime]:
    """The name's standing and the server's time, its row locked until the transaction ends."""
    row = _SQL.fetch_one(conn, "failure_row", name=name)
    assert row is not None
    lock = timedelta(minutes=settings.sign_in_lock_minutes)
    return standing(row["failures"], row["locked_until"], row["last_attempt_at"], row["now"], lock=lock), row["now"]


def _count_failures(conn: psycopg.Connection, name: str, before: Standing, n: int, now: datetime,
                    settings: Settings) -> Standing:
    after = failed(before, n, now, max_failures=settings.sign_in_max_failures,
                   lock=timedelta(minutes=settings.sign_in_lock_minutes))
    if after != before:
        conn.execute(_SQL.q("set_failures"), {"name": name, "failures": after.failures,
                                              "locked_until": after.locked_until, "now": now})
    return after


def _take_turn(conn: psycopg.Connection, name: str, settings: Settings) -> tuple[int | None, datetime | None]:
    """One try at a turn to check a password of ``name``: (the turn's id, None), (None, the
    lock's end) if the name is locked, or (None, None) if the turns are all taken."""
    with conn.transaction():
        conn.execute(_SQL.q("purge_failures"))
        conn.execute(_SQL.q("purge_checks"))
        now_standing, now = _name_row(conn, name, settings)
        abandoned = _SQL.fetch_one(conn, "drop_abandoned", name=name, abandoned_s=ABANDONED_S)
        assert abandoned is not None
        if abandoned["n"]:
            log.warning("%d sign-in checks for %r abandoned: counted as failed", abandoned["n"], name)
            now_standing = _count_failures(conn, name, now_standing, abandoned["n"], now, settings)
        if now_standing.locked_until is not None:
            return None, now_standing.locked_until
        checking = _SQL.fetch_one(conn, "checks_under_way", name=name)
        assert checking is not None
        if not may_check(now_standing, checking["n"], settings.sign_in_max_failures):
            return None, None
        turn = _SQL.fetch_one(conn, "start_check", name=name)
        assert turn is not None
        return turn["id"], None


def _wait_turn(connect: Callable[[], AbstractContextManager[psycopg.Connection]], name: str,
               settings: Settings) -> int:
    """The id of a turn to check a password of ``name``, waited for without a connection up
    to ``settings.sign_in_wait_s``. Raises :class:`AccountLocked` or :class:`SignInBusy`."""
    deadline = time.monotonic() + settings.sign_in_wait_s
    pause = _POLL_S[0]
    while True:
        with connect() as conn:
            turn, locked_until = _take_turn(conn, name, settings)
        if turn is not None:
            return turn
        if locked_until is not None:
            raise AccountLocked(until=locked_until)
        left = deadline - time.monotonic()
        if left <= 0:
            raise SignInBusy()
        time.sleep(min(pause, left))
        pause = min(2 * pause, _POLL_S[1])


def _answer(conn: psycopg.Connection, name: str, turn: int, right: bool, settings: Settings) -> Standing:
    """End the turn ``turn`` with the password's answer; the name's standing after it.

    A wrong password counts as failed, unless its turn was counted already (abandoned) or
    lifted (``users unlock``); a right one clears the failures, unless the name is locked.
    """
    with conn.transaction():
        now_standing, now = _name_row(conn, name, settings)
        ours = _SQL.fetch_one(conn, "end_check", id=turn) is not None
        if right:
            if now_standing.locked_until is None:
                conn.execute(_SQL.q("clear_failures"), {"name": name})
                return Standing(0, None)
            return now_standing
        return _count_failures(conn, name, now_standing, 1 if ours else 0, now, settings)


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
    that locks it; :class:`SignInBusy` if no turn to check the password came within
    ``settings.sign_in_wait_s`` (see the module's docstring).
    """
    name = name[:_LONGEST_NAME]
    with connect() as conn:
        wait = client_wait(conn, client, settings)
    if wait:
        time.sleep(wait)
    turn = _wait_turn(connect, name, settings)
    right = auth.verify_password(config, name, password)
    with connect() as conn:
        after = _answer(conn, name, turn, right, settings)
        if right and after.locked_until is None:
            entry = auth.user(config, name)
            assert entry is not None
            return sessions.start(conn, name, auth.password_fingerprint(entry))
    if not right:
        with connect() as conn, conn.transaction():
            conn.execute(_SQL.q("client_failed"), {"client": client, "window_s": settings.sign_in_lock_minutes * 60})
        log.warning("failed sign-in for %r from %s (%d in a row)", name, client, after.failures)
    if after.locked_until is not None:
        raise AccountLocked(until=after.locked_until)
    return None


def unlock(conn: psycopg.Connection, name: str) -> bool:
    """Forget the failed sign-ins of ``name`` (an administrator's unlock), and its checks under
    way (their answers are not counted); whether it had failures."""
    with conn.transaction():
        conn.execute(_SQL.q("drop_checks"), {"name": name})
        return _SQL.fetch_one(conn, "clear_failures", name=name) is not None
