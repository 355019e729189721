"""The server-mode settings of ``deploy/`` on a real server: the env example's settings with
``STATIONMANAGER_DATABASE_URL`` pointed at the test server (the CI TimescaleDB when
STATIONMANAGER_TEST_DATABASE_URL is set, else the embedded test server), and the web app
and a worker started with the commands of the systemd units (which the compose services run
too, tests/unit/test_deploy_files.py): the schema upgrade runs, the health endpoints answer,
and a logger file dropped into the inbox gets imported."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests import deployment as d

pytestmark = pytest.mark.integration

SAMPLE = d.ROOT / "tests" / "data" / "toa5" / "TestLogger_Hourly_1.dat"
TIMEOUT_S = 120


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server_env(fresh_db: str, tmp_path: Path) -> dict[str, str]:
    """The environment a unit gets: the env example's settings, this test's database and home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STATIONMANAGER_", "PG"))}
    env.update(d.env_file())
    env.update(STATIONMANAGER_DATABASE_URL=fresh_db, STATIONMANAGER_HOME=str(tmp_path / "home"),
               PYTHONUNBUFFERED="1")
    return env


class Process:
    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(argv, cwd=d.ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-4000:]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # what systemd and docker stop send
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


@pytest.fixture
def started() -> Iterator[list[Process]]:
    procs: list[Process] = []
    yield procs
    for p in procs:
        if p.proc.poll() is None:
            p.stop()


def _command(unit: str) -> list[str]:
    return d.local_command(d.exec_start(unit), d.ROOT, Path(sys.executable).parent)


def _run(unit_or_argv: str | list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    argv = _command(unit_or_argv) if isinstance(unit_or_argv, str) else unit_or_argv
    return subprocess.run(argv, cwd=d.ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)


def _wait(check, what: str, *procs: Process) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not check():
        dead = [p for p in procs if p.proc.poll() is not None]
        if dead or time.monotonic() > deadline:
            pytest.fail(f"{what}: {'a process exited' if dead else 'timed out'}\n"
                        + "\n---\n".join(p.output() for p in procs))
        time.sleep(0.3)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - loopback
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def test_the_units_commands_with_the_env_example_serve_and_import(
        server_env: dict[str, str], fresh_db: str, tmp_path: Path, started: list[Process]) -> None:
    stationmanager = [str(Path(sys.executable).parent / "stationmanager")]
    # the database is away: the worker's health check says so (exit 2), quickly
    away = {**server_env, "STATIONMANAGER_DATABASE_URL": "postgresql://sm@127.0.0.1:1/sm?connect_timeout=2"}
    result = _run([*stationmanager, "worker", "--check"], away)
    assert result.returncode == 2 and "database" in result.stderr

    # stationmanager-migrate.service: an empty database gets the schema
    result = _run("stationmanager-migrate.service", server_env)
    assert result.returncode == 0, result.stdout + result.stderr
    result = _run([*stationmanager, "worker", "--check"], server_env)
    assert result.returncode == 1 and "no worker is running" in result.stderr

    port = _free_port()
    web_argv = d.with_option(_command("stationmanager-web.service"), "--server.port", str(port))
    web = Process(web_argv, server_env, tmp_path / "web.log")
    worker = Process(_command("stationmanager-worker@.service"), server_env, tmp_path / "worker.log")
    started += [web, worker]
    _wait(lambda: _answers(f"http://127.0.0.1:{port}/_stcore/health"), "the web app's health endpoint", web)
    _wait(lambda: _run([*stationmanager, "worker", "--check"], server_env).returncode == 0,
          "`stationmanager worker --check`", worker)

    # a logger file dropped into the inbox (HOME/inbox/<station>/) is imported
    station = Path(server_env["STATIONMANAGER_HOME"]) / "inbox" / "Deploy Hill"
    station.mkdir(parents=True)
    shutil.copy(SAMPLE, station / SAMPLE.name)

    def imported() -> bool:
        with psycopg.connect(fresh_db, autocommit=True) as conn:
            row = conn.execute("SELECT status, n_readings FROM source_file").fetchone()
        assert row is None or row[0] in ("queued", "importing", "imported"), row
        return row is not None and row[0] == "imported"

    _wait(imported, "the inbox file's import", worker)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM reading").fetchone()[0] > 0
        assert conn.execute("SELECT name FROM station").fetchall() == [("Deploy Hill",)]

    # SIGTERM (systemctl stop, docker stop) ends both cleanly
    assert worker.stop() == 0, worker.output()
    assert web.stop() == 0, web.output()


@pytest.mark.skipif("api" not in d.cli_commands(), reason="`stationmanager api` is not in this tree yet")
def test_the_api_unit_serves_its_health_endpoint(server_env: dict[str, str], tmp_path: Path,
                                                  started: list[Process]) -> None:
    result = _run("stationmanager-migrate.service", server_env)
    assert result.returncode == 0, result.stdout + result.stderr
    port = _free_port()
    api = Process(d.with_option(_command("stationmanager-api.service"), "--port", str(port)), server_env,
                  tmp_path / "api.log")
    started.append(api)
    _wait(lambda: _answers(f"http://127.0.0.1:{port}/api/v1/health"), "the API's health endpoint", api)
    assert api.stop() == 0, api.output()
