"""Sign-in against guessing and sessions that end: lock counting, client delay, revocation,
idle expiry (core.signin, core.sessions), and the CLI that ends or unlocks them."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import statistics
import threading
import time

import bcrypt
import pytest

from core import auth, db, sessions, signin
from core.errors import AccountLocked, SignInBusy
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


@pytest.fixture
def team(users) -> dict:
    """The users, with ana's password hashed at bcrypt cost 10 instead of 12: the tests below
    check it many times at once on a machine of 2 cores."""
    config = copy.deepcopy(users)
    config["credentials"]["usernames"]["ana"]["password"] = bcrypt.hashpw(RIGHT.encode(), bcrypt.gensalt(10)).decode()
    return config


def at_once(db_url: str, settings: Settings, config: dict, tries: list[tuple[str, str]]) -> list:
    """Sign-ins of "ana" with each (password, client) of ``tries``, each in its own thread and
    connection, released together: the test holds the name's row of ``sign_in_failure``
    until every one waits for it. Each result: a session id, None (wrong password), or the
    error raised."""
    results: list = [None] * len(tries)

    def one(i: int, password: str, client: str) -> None:
        with db.connect(db_url, autocommit=True) as c:
            try:
                results[i] = attempt(c, settings, config, "ana", password, client)
            except (AccountLocked, SignInBusy) as exc:
                results[i] = exc

    with db.connect(db_url, autocommit=True) as holder, db.connect(db_url, autocommit=True) as watcher:
        holder.execute("INSERT INTO sign_in_failure (name) VALUES ('ana') ON CONFLICT DO NOTHING")
        with holder.transaction():
            holder.execute("SELECT FROM sign_in_failure WHERE name = 'ana' FOR UPDATE")
            threads = [threading.Thread(target=one, args=(i, *t)) for i, t in enumerate(tries)]
            for t in threads:
                t.start()
            deadline = time.monotonic() + 60
            while (waiting := watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'").fetchone()["count"]) < len(tries):
                assert time.monotonic() < deadline, f"{waiting} of {len(tries)} sign-ins reached the name's row"
                time.sleep(0.01)
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    return results


def failure_state(conn) -> dict:
    """ana's failures in a row and whether the name is locked; checks under way."""
    row = conn.execute("SELECT failures, coalesce(locked_until > now(), false) AS locked FROM sign_in_failure "
                       "WHERE name = 'ana'").fetchone()
    checks = conn.execute("SELECT count(*) FROM sign_in_check").fetchone()["count"]
    return {**(row or {"failures": 0, "locked": False}), "checks": checks}


def wrong_checked(conn, client: str) -> int:
    """How many wrong passwords were checked from ``client`` (each counts against it once)."""
    row = conn.execute("SELECT failures FROM sign_in_client WHERE client = %s", (client,)).fetchone()
    return row["failures"] if row else 0


def test_right_passwords_at_once_all_sign_in(db_url, conn, settings, team):
    s = strict(settings, sign_in_max_failures=5)
    results = at_once(db_url, s, team, [(RIGHT, "10.0.0.1")] * 10)
    assert all(isinstance(r, str) for r in results), results
    assert len(set(results)) == 10
    assert failure_state(conn) == {"failures": 0, "locked": False, "checks": 0}
    assert attempt(conn, s, team, "ana", RIGHT)


def test_wrong_passwords_at_once_check_exactly_the_limit_then_lock(db_url, conn, settings, team, caplog):
    s = strict(settings, sign_in_max_failures=4)
    with caplog.at_level(logging.WARNING, logger="core.signin"):
        results = at_once(db_url, s, team, [("wrong", "10.0.0.1")] * 12)
    # three answered "incorrect", the fourth locked the name, eight were refused unchecked
    assert sum(r is None for r in results) == 3
    assert sum(isinstance(r, AccountLocked) for r in results) == 9, results
    assert wrong_checked(conn, "10.0.0.1") == 4
    assert [r.args[2] for r in caplog.records if r.msg.startswith("failed sign-in")] == [1, 2, 3, 4]
    assert failure_state(conn) == {"failures": 4, "locked": True, "checks": 0}
    with pytest.raises(AccountLocked):
        attempt(conn, s, team, "ana", RIGHT)


def test_right_and_wrong_at_once_never_check_more_wrong_in_a_row_than_the_limit(db_url, conn, settings, team, caplog):
    s = strict(settings)  # locked after 3
    tries = [("wrong", "10.0.0.3")] * 14
    tries[3:3] = tries[9:9] = [(RIGHT, "10.0.0.2")]
    with caplog.at_level(logging.WARNING, logger="core.signin"):
        results = at_once(db_url, s, team, tries)
    right = [r for r, (p, _) in zip(results, tries, strict=True) if p == RIGHT]
    wrong = [r for r, (p, _) in zip(results, tries, strict=True) if p != RIGHT]
    assert all(isinstance(r, str | AccountLocked) for r in right), right  # in, or refused by the lock
    assert all(r is None or isinstance(r, AccountLocked) for r in wrong), wrong
    in_a_row = [r.args[2] for r in caplog.records if r.msg.startswith("failed sign-in")]
    assert max(in_a_row, default=0) <= 3 and len(in_a_row) == wrong_checked(conn, "10.0.0.3"), in_a_row
    # a success starts the count again, as one after another: at most 2 wrong before each
    # success, 3 after the last
    successes = sum(isinstance(r, str) for r in right)
    assert len(in_a_row) <= 3 + 2 * successes, (in_a_row, results)
    state = failure_state(conn)
    assert state["checks"] == 0 and state["failures"] <= 3
    assert state["locked"] == (state["failures"] == 3)


def test_a_sign_in_waits_its_turn_then_is_refused_with_try_again(conn, settings, team):
    s = strict(settings, sign_in_wait_s=0.5)
    # three checks of ana's password under way: the most a name without failures may have
    conn.execute("INSERT INTO sign_in_check (name) SELECT 'ana' FROM generate_series(1, 3)")
    started = time.monotonic()
    with pytest.raises(SignInBusy) as busy:
        attempt(conn, s, team, "ana", RIGHT)
    assert 0.5 <= time.monotonic() - started < 20
    assert str(busy.value) == "Many sign-ins of this user name are being checked at once: try again in a moment."
    assert failure_state(conn) == {"failures": 0, "locked": False, "checks": 3}  # nothing counted
    conn.execute("DELETE FROM sign_in_check WHERE id = (SELECT min(id) FROM sign_in_check)")  # one is over
    assert attempt(conn, s, team, "ana", RIGHT)
    assert failure_state(conn)["checks"] == 2


def test_checks_left_unfinished_count_as_failed(conn, settings, team):
    s = strict(settings)
    # checks started long ago by processes that stopped before the answer (no check lasts that long)
    conn.execute("INSERT INTO sign_in_check (name, started_at) SELECT 'ana', now() - interval '1 hour' "
                 "FROM generate_series(1, 3)")
    with pytest.raises(AccountLocked):
        attempt(conn, s, team, "ana", RIGHT)
    assert failure_state(conn) == {"failures": 3, "locked": True, "checks": 0}


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
    conn.execute("INSERT INTO sign_in_check (name, started_at) VALUES ('ana', now() - interval '1 hour')")
    res = run(["users", "unlock", "ana"], env)
    assert res.returncode == 0 and "unlocked" in res.stdout, res.stderr
    assert conn.execute("SELECT count(*) FROM sign_in_failure").fetchone()["count"] == 0
    assert conn.execute("SELECT count(*) FROM sign_in_check").fetchone()["count"] == 0  # not counted later
