"""`stationmanager db reader-role`: a role that reads the tidy views and can do nothing else."""

from __future__ import annotations

import base64
import threading
import time
import uuid

import psycopg
import psycopg.sql
import pytest

from core import budget, reader_roles
from core.reader_roles import ReaderRoleError
from tests.integration.test_cli import env_for, run

pytestmark = pytest.mark.integration


@pytest.fixture
def reader(conn, db_url):
    """A reader role of the test database (roles are shared by the server's databases: a
    name of its own, dropped afterwards)."""
    name = f"sm_reader_{uuid.uuid4().hex[:8]}"
    made = reader_roles.ensure(conn, name, connections=2, statement_timeout_s=1, work_mem_mb=3)
    made["url"] = reader_roles.reader_url(db_url, name, made["password"])
    conn.execute("INSERT INTO station (name) VALUES ('Role Hill')")
    yield made
    if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone():
        reader_roles.drop(conn, name)


def refused(url: str, statement: str) -> str:
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("SET default_transaction_read_only = off")  # a session may: privileges still hold
        with pytest.raises(psycopg.Error) as info:
            c.execute(statement)
    return str(info.value)


def test_reads_the_tidy_views_only(reader):
    with psycopg.connect(reader["url"]) as c:
        assert c.execute("SELECT station FROM tidy.stations").fetchall() == [("Role Hill",)]
        for view in ("channels", "readings", "readings_1h", "readings_1d", "calibrations", "flags"):
            c.execute(f"SELECT * FROM tidy.{view} LIMIT 1")  # noqa: S608 - fixed names
        shown = dict(c.execute("SELECT name, setting FROM pg_settings WHERE name IN "
                               "('work_mem', 'statement_timeout', 'default_transaction_read_only')").fetchall())
        assert shown == {"work_mem": "3072", "statement_timeout": "1000", "default_transaction_read_only": "on"}
    for table in ("station", "reading", "channel", "flag", "audit", "procrastinate_jobs", "storage_info"):
        assert "permission denied" in refused(reader["url"], f"SELECT * FROM public.{table} LIMIT 1")  # noqa: S608


WRITES = [
    "INSERT INTO tidy.stations (station) VALUES ('x')",
    "UPDATE tidy.stations SET station = 'x'",
    "DELETE FROM tidy.stations",
    "CREATE TABLE tidy.mine (x int)",
    "CREATE TABLE public.mine (x int)",
    "CREATE TEMP TABLE mine (x int)",
    "CREATE SCHEMA mine",
    "COPY (SELECT 1) TO PROGRAM 'touch /tmp/sm-reader-was-here'",
    "COPY (SELECT 1) TO '/tmp/sm-reader-was-here'",
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT procrastinate_defer_jobs_v1(NULL)",
    "CREATE FUNCTION tidy.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
]


def test_cannot_write_or_reach_out(reader):
    for statement in WRITES:
        message = refused(reader["url"], statement)
        assert "permission denied" in message or "must be superuser" in message or "does not exist" in message, (
            statement, message)


def test_connection_limit_and_statement_timeout(reader):
    held = [psycopg.connect(reader["url"]) for _ in range(2)]
    try:
        with pytest.raises(psycopg.OperationalError, match="too many connections for role"):
            psycopg.connect(reader["url"])
        with pytest.raises(psycopg.errors.QueryCanceled, match="statement timeout"):
            held[0].execute("SELECT pg_sleep(30)")
    finally:
        for c in held:
            c.close()


def test_run_again_updates_and_drop_removes(conn, reader):
    name = reader["name"]
    again = reader_roles.ensure(conn, name, connections=3, work_mem_mb=16)
    assert not again["created"] and again["password"] is None  # the password is kept
    got = reader_roles.describe(conn, name)
    assert got["connections"] == 3 and got["settings"]["work_mem"] == "16MB" and got["reader"]
    with psycopg.connect(reader["url"]) as c:  # the same password still works
        assert c.execute("SELECT count(*) FROM tidy.stations").fetchone() == (1,)
    assert budget.reader_limits(conn) == {name: 3}
    assert reader_roles.ensure(conn, name, password="a-new-secret")["password"] == "a-new-secret"
    with psycopg.connect(reader_roles.reader_url(reader["url"], name, "a-new-secret")) as c:
        assert c.execute("SELECT count(*) FROM tidy.stations").fetchone() == (1,)
    session = psycopg.connect(reader["url"])
    assert reader_roles.drop(conn, name)["dropped"]
    assert conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone() is None
    with pytest.raises(psycopg.OperationalError):  # its session ended
        session.execute("SELECT 1")
    session.close()
    assert budget.reader_limits(conn) == {}


def test_refuses_other_roles_and_bad_names(conn):
    me = conn.execute("SELECT current_user AS u").fetchone()["u"]
    for name in (me, "pg_monitor"):
        with pytest.raises(ReaderRoleError):
            reader_roles.ensure(conn, name)
    with pytest.raises(ReaderRoleError, match="not allowed"):
        reader_roles.ensure(conn, 'x"; DROP TABLE reading; --')
    other = f"sm_other_{uuid.uuid4().hex[:8]}"
    conn.execute(f'CREATE ROLE "{other}"')
    try:
        with pytest.raises(ReaderRoleError, match="not a StationManager reader role"):
            reader_roles.ensure(conn, other)
        with pytest.raises(ReaderRoleError, match="not a StationManager reader role"):
            reader_roles.drop(conn, other)
    finally:
        conn.execute(f'DROP ROLE "{other}"')


def test_cli_prints_the_url_once(db_url, settings, conn):
    name = f"sm_cli_{uuid.uuid4().hex[:8]}"
    env = env_for(db_url, settings.home)
    try:
        out = run(["db", "reader-role", name, "--connections", "2", "--statement-timeout", "5"], env)
        assert out.returncode == 0, out.stderr
        url = out.stdout.strip().splitlines()[-1]
        assert url.startswith(f"postgresql://{name}:") and "created" in out.stdout
        with psycopg.connect(url) as c:
            assert c.execute("SHOW statement_timeout").fetchone() == ("5s",)
        status = run(["db", "status"], env)
        assert f"reader role {name}" in status.stdout and "budget" in status.stdout, status.stdout
        out = run(["db", "reader-role", name, "--drop"], env)
        assert out.returncode == 0 and "dropped" in out.stdout, out.stderr
    finally:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone():
            reader_roles.drop(conn, name)


def test_the_password_verifier_is_the_one_postgresql_computes(conn):
    """The server keeps what it would have computed from the password itself (checked with
    its own salt), so the role logs in with the password even where the server checks it."""
    name = f"sm_scram_{uuid.uuid4().hex[:8]}"
    conn.execute("SET password_encryption = 'scram-sha-256'")
    conn.execute(f"CREATE ROLE \"{name}\" PASSWORD 'correct horse 9'")
    try:
        stored = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (name,)).fetchone()["rolpassword"]
    finally:
        conn.execute(f'DROP ROLE "{name}"')
    iterations, salt = stored.split("$")[1].split(":")
    assert reader_roles.scram_verifier("correct horse 9", salt=base64.b64decode(salt),
                                       iterations=int(iterations)) == stored


def test_a_session_that_lifts_its_own_limits_is_stopped_all_the_same(conn, reader):
    """The role's timeouts are session defaults a notebook may SET away; the worker's check
    cancels the statement and ends the idle transaction anyway."""
    conn.execute(psycopg.sql.SQL("ALTER ROLE {} SET idle_in_transaction_session_timeout = 500").format(
        psycopg.sql.Identifier(reader["name"])))
    runner, idler = psycopg.connect(reader["url"], autocommit=True), psycopg.connect(reader["url"])
    errors = []

    def run_away():
        runner.execute("SET statement_timeout = 0")
        try:
            runner.execute("SELECT pg_sleep(120)")
        except psycopg.Error as exc:
            errors.append(exc)

    try:
        idler.execute("SET idle_in_transaction_session_timeout = 0")
        idler.execute("SELECT 1")  # a transaction left open
        thread = threading.Thread(target=run_away)
        thread.start()
        stopped: dict[str, list[int]] = {"cancelled": [], "ended": []}
        deadline = time.monotonic() + 60
        while not (stopped["cancelled"] and stopped["ended"]) and time.monotonic() < deadline:
            for key, pids in reader_roles.enforce(conn).items():
                stopped[key] += pids
            time.sleep(0.2)
        thread.join(30)
        assert len(stopped["cancelled"]) == 1 and len(stopped["ended"]) == 1, stopped
        assert isinstance(errors[0], psycopg.errors.QueryCanceled)
        with pytest.raises(psycopg.OperationalError):
            idler.execute("SELECT 1")
    finally:
        runner.close()
        idler.close()
