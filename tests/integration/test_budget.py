"""The connection budget against a real server, and pools that wait when it is reached."""

from __future__ import annotations

import threading
import time

import pytest

import core.settings
from core import budget, db
from core.errors import ConfigError, PoolBusy
from core.settings import Settings
from tests.integration.test_cli import env_for, run

pytestmark = pytest.mark.integration


def use(monkeypatch, **values) -> None:
    for key, value in values.items():
        monkeypatch.setenv(f"STATIONMANAGER_{key.upper()}", str(value))
    core.settings._current = None


def test_the_budget_reads_the_servers_max_connections(conn):
    server = conn.execute("SELECT current_setting('max_connections')::int AS m, "
                          "current_setting('superuser_reserved_connections')::int AS r").fetchone()
    b = budget.measure(conn, Settings())
    assert (b.max_connections, b.allowed) == (server["m"], server["m"] - b.reserved)
    assert b.reserved >= server["r"] and b.in_use >= 1
    assert b.ok  # the defaults fit a default server (max_connections 100)
    too_many = Settings(workers=server["m"])
    with pytest.raises(ConfigError, match="STATIONMANAGER_WORKERS") as info:
        budget.check(conn, "stationmanager up", too_many, strict=True)
    assert f"max_connections {server['m']}" in str(info.value)
    assert budget.check(conn, "worker", too_many).ok is False  # a warning only


def test_up_refuses_to_start_beyond_the_budget(db_url, settings):
    env = {**env_for(db_url, settings.home), "STATIONMANAGER_WORKERS": "1000"}
    out = run(["up", "--port", "1"], env, timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "stationmanager up: the connection budget needs" in out.stderr and "STATIONMANAGER_WORKERS" in out.stderr
    assert "running at" not in out.stdout


def test_an_exhausted_pool_makes_the_next_request_wait_and_then_succeed(db_url, monkeypatch):
    use(monkeypatch, pool_size=1, pool_wait_s=60)
    release, results = threading.Event(), []

    def holder():
        with db.connection(db_url) as c:
            c.execute("SELECT 1")
            release.wait(60)

    def waiter():
        with db.connection(db_url) as c:
            results.append(c.execute("SELECT 42 AS x").fetchone()["x"])

    p = db.pool(db_url)
    a = threading.Thread(target=holder)
    a.start()
    deadline = time.monotonic() + 30
    while p.get_stats().get("pool_available", 1) and time.monotonic() < deadline:  # the holder has it
        time.sleep(0.01)
    b = threading.Thread(target=waiter)
    b.start()
    while not p.get_stats().get("requests_waiting") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert p.get_stats()["requests_waiting"] == 1 and not results  # waiting, not failed
    release.set()
    a.join(30)
    b.join(30)
    assert results == [42] and p.max_size == 1


def test_a_pool_busy_past_the_wait_says_which_setting_to_raise(db_url, monkeypatch):
    use(monkeypatch, web_pool_size=1, pool_wait_s=0.5)
    p = db.pool(db_url, kind="web")
    with db.pooled(p):
        with pytest.raises(PoolBusy) as info:
            with db.pooled(p):
                pass
    message = str(info.value)
    assert "within 0.5 s (STATIONMANAGER_POOL_WAIT_S)" in message and "STATIONMANAGER_WEB_POOL_SIZE" in message
    with db.pooled(p) as c:  # returned: usable again
        assert c.execute("SELECT 1 AS one").fetchone()["one"] == 1


@pytest.mark.parametrize("workers", [0, 3])
def test_sessions_cap_parallel_query_workers(db_url, monkeypatch, workers):
    use(monkeypatch, max_parallel_workers_per_gather=workers)
    with db.connection(db_url) as c:
        assert c.execute("SHOW max_parallel_workers_per_gather").fetchone() == {
            "max_parallel_workers_per_gather": str(workers)}


def test_threads_of_one_process_share_one_pool(db_url):
    """A worker's jobs run in threads: the first ones to ask must not open a pool each (the
    budget counts one)."""
    got, start = [], threading.Barrier(6)

    def ask():
        start.wait()
        got.append(db.pool(db_url))

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert len(got) == 6 and len({id(p) for p in got}) == 1
