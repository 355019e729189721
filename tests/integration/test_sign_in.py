"""Sign-in against guessing and sessions that end: lock counting, client delay, revocation,
idle expiry (core.signin, core.sessions), and the CLI that ends or unlocks them."""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import threading
import time

import pytest

from core import auth, db, sessions, signin
from core.errors import AccountLocked
from core.settings import Settings
from tests.integration.test_cli import env_for, run

pytestmark = pytest.mark.integration

RIGHT = "right-password"


@pytest.fixture
def users(settings: Settings) -> dict:
    auth.add_user(settings.users_file, "ana", RIGHT, "analyst")
    return auth.load(settings.users_file)


def strict(settings: Settings, **changes) -> Settings:
    """Settings with a lock after 3 failures and no client delay (unless changed)."""
    return dataclasses.replace(settings, **{"sign_in_max_failures": 3, "sign_in_delay_max_s": 0.0, **changes})


def attempt(conn, settings, users, name, password, client="10.0.0.1"):
    return signin.sign_in(lambda: contextlib.nullcontext(conn), settings, users, name, password, client=client)


@pytest.mark.parametrize("name", ["ana", "nobody"])
def test_a_name_locks_after_max_failures_and_refuses_even_the_right_password(conn, db_url, settings, users, name):
    s = strict(settings)
    assert attempt(conn, s, users, name, "wrong-1") is None
    assert attempt(conn, s, users, name, "wrong-2") is None
    with pytest.raises(AccountLocked) as locking:  # the failure that locks says so
        attempt(conn, s, users, name, "wrong-3")
    with pytest.raises(AccountLocked) as refused:
        attempt(conn, s, users, name, RIGHT)
    assert refused.value.until == locking.value.until
    assert str(refused.value).startswith("Too many failed sign-ins: this user name is locked until ")
    # kept in the database: another connection (another process, or after a restart) sees it
    with db.connect(db_url) as other, pytest.raises(AccountLocked):
        attempt(other, s, users, name, RIGHT)
    # the lock runs out (moved into the past, as time would)
    conn.execute("UPDATE sign_in_failure SET locked_until = now() - interval '1 second'")
    if name == "ana":
        sid = attempt(conn, s, users, name, RIGHT)
        assert sid and sessions.check(conn, sid, "ana", auth.password_fingerprint(users["credentials"]["usernames"]["ana"]),
                                      idle_minutes=60, max_age_days=7) is None
    else:
        assert attempt(conn, s, users, name, RIGHT) is None


def test_a_success_clears_the_count(conn, settings, users):
    s = strict(settings)
    for _ in range(2):
        assert attempt(conn, s, users, "ana", "wrong") is None
    assert attempt(conn, s, users, "ana", RIGHT)
    for _ in range(2):  # two more failures do not lock: the count started again
        assert attempt(conn, s, users, "ana", "wrong") is None


def test_attempts_at_once_are_counted_one_by_one(db_url, settings, users):
    s = strict(settings, sign_in_max_failures=4)
    results: list[str] = []

    def one() -> None:
        with db.connect(db_url) as c:
            try:
                results.append("checked" if attempt(c, s, users, "ana", "wrong") is None else "in")
            except AccountLocked:
                results.append("locked")

    threads = [threading.Thread(target=one) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(results) == ["checked"] * 3 + ["locked"] * 9


def test_each_attempt_from_a_failing_client_waits_longer(conn, settings, users):
    s = strict(settings, sign_in_max_failures=50, sign_in_delay_max_s=1.0)
    waits = []
    for _ in range(4):
        waits.append(signin.client_wait(conn, "10.0.0.9", s))
        attempt(conn, s, users, "ana", "wrong", client="10.0.0.9")
    assert waits == [0.0, 0.25, 0.5, 1.0]
    assert signin.client_wait(conn, "10.0.0.9", s) == 1.0  # capped
    assert signin.client_wait(conn, "10.0.0.10", s) == 0.0  # another client does not wait
    started = time.monotonic()
    attempt(conn, s, users, "ana", RIGHT, client="10.0.0.9")
    assert time.monotonic() - started >= 1.0


def test_a_wrong_password_takes_as_long_for_an_unknown_name(conn, settings, users):
    s = strict(settings, sign_in_max_failures=100)

    def median_s(name: str) -> float:
        times = []
        for _ in range(5):
            started = time.perf_counter()
            assert attempt(conn, s, users, name, "wrong") is None
            times.append(time.perf_counter() - started)
        return statistics.median(times)

    attempt(conn, s, users, "warm-up", "wrong")
    known, unknown = median_s("ana"), median_s("nobody")
    assert unknown > 0.5 * known and known > 0.5 * unknown, (known, unknown)


@pytest.fixture
def session(conn, users) -> tuple[str, str]:
    fp = auth.password_fingerprint(users["credentials"]["usernames"]["ana"])
    return sessions.start(conn, "ana", fp), fp


def check(conn, sid, fp, name="ana", idle=60.0):
    return sessions.check(conn, sid, name, fp, idle_minutes=idle, max_age_days=7)


def test_a_logged_out_session_stays_ended(conn, session):
    sid, fp = session
    assert check(conn, sid, fp) is None
    sessions.end(conn, sid)
    assert check(conn, sid, fp) == "logout"
    assert check(conn, sid, fp) == "logout"


def test_an_idle_session_ends(conn, session):
    sid, fp = session
    conn.execute("UPDATE sign_in_session SET last_seen_at = now() - interval '61 minutes'")
    assert check(conn, sid, fp, idle=90) is None  # within a longer idle time: used now
    conn.execute("UPDATE sign_in_session SET last_seen_at = now() - interval '61 minutes'")
    assert check(conn, sid, fp) == "idle"
    conn.execute("UPDATE sign_in_session SET last_seen_at = now()")
    assert check(conn, sid, fp) == "idle"  # ended for good
    assert sessions.ended_message("idle", 60) == (
        "You were signed out after 60 minutes without activity: please sign in again.")


def test_a_session_ends_with_its_user_or_password(conn, session):
    sid, fp = session
    assert check(conn, sid, fp, name="bob") == "unknown"  # another user's session id
    assert check(conn, None, fp) == "unknown"
    assert check(conn, sid, "another password") == "password"
    sid2 = sessions.start(conn, "ana", fp)
    assert check(conn, sid2, None) == "removed"


def test_users_logout_ends_every_session_and_unlock_lifts_a_lock(conn, db_url, settings, session):
    sid, fp = session
    other = sessions.start(conn, "ana", fp)
    env = env_for(db_url, settings.home)
    res = run(["users", "logout", "ana"], env)
    assert res.returncode == 0, res.stderr
    assert "ana: 2 sessions ended" in res.stdout
    assert check(conn, sid, fp) == check(conn, other, fp) == "revoked"

    conn.execute("INSERT INTO sign_in_failure (name, failures, locked_until) VALUES ('ana', 5, now() + interval '1 hour')")
    res = run(["users", "unlock", "ana"], env)
    assert res.returncode == 0 and "unlocked" in res.stdout, res.stderr
    assert conn.execute("SELECT count(*) FROM sign_in_failure").fetchone()["count"] == 0
