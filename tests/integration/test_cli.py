"""The command-line interface and the worker as separate processes, as operators run them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import psutil
import pytest

from core import demo

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parent.parent / "data" / "toa5"
CLI = [sys.executable, "-m", "core.cli"]


def env_for(db_url: str | None, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATIONMANAGER_")}
    env["STATIONMANAGER_HOME"] = str(home)
    if db_url:
        env["STATIONMANAGER_DATABASE_URL"] = db_url
    return env


def run(args: list[str], env: dict[str, str], stdin: str | None = None, timeout: float = 120):
    return subprocess.run(CLI + args, env=env, input=stdin, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def worker(db_url, settings):
    env = env_for(db_url, settings.home)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest_worker"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    yield proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)  # also closes the pipe
    print(out)


def test_ingest_wait_json_reports_each_file_and_fails_on_a_bad_one(db_url, settings, worker, tmp_path):
    files = [p for p in demo.generate(tmp_path, start=date(2025, 5, 1), days=2) if "ballymore" in p.name]
    bad = DATA / "TestLogger_Hourly_Bad05.dat"
    env = env_for(db_url, settings.home)
    res = run(["ingest", *map(str, files), str(bad), "--station", "Mast B", "--wait", "--json"], env)
    assert res.returncode == 1, res.stderr
    out = json.loads(res.stdout)
    assert [r["status"] for r in out] == ["imported", "imported", "failed"]
    assert out[0]["readings"] == 144 * 41
    assert "line 1" in out[2]["message"] and "9 fields" in out[2]["message"]
    # the same files again: duplicates, exit 0 for them
    res = run(["ingest", str(files[0]), "--station", "Mast B", "--wait", "--json"], env)
    assert res.returncode == 0 and json.loads(res.stdout)[0]["status"] == "duplicate"
    res = run(["files", "--station", "Mast B", "--json"], env)
    assert len(json.loads(res.stdout)) == 4


def test_db_status_json_reports_storage_level(db_url, settings):
    res = run(["db", "status", "--json"], env_for(db_url, settings.home))
    assert res.returncode == 0, res.stderr
    st = json.loads(res.stdout)
    assert st["storage_level"] == st["offered_level"]
    edition = st["timescaledb_edition"]
    assert st["storage_level"] == (0 if not st["timescaledb"] else 2 if edition == "community (TSL)" else 1)
    assert st["level_note"] is None
    assert st["pending_migrations"] == []
    assert st["connections"]["max_connections"] > 0


def test_users_add_reads_the_password_from_stdin(settings):
    env = env_for(None, settings.home)
    res = run(["users", "add", "ana", "--role", "analyst"], env, stdin="s3cret-pass\n")
    assert res.returncode == 0, res.stderr
    res = run(["users", "list", "--json"], env)
    assert json.loads(res.stdout) == [{"name": "ana", "role": "analyst", "email": "ana@localhost"}]
    res = run(["users", "add", "bob", "--role", "viewer"], env, stdin="short\n")
    assert res.returncode == 2 and "at least 8" in res.stderr


def test_worker_stops_cleanly_on_sigterm(worker):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and worker.poll() is None:
        line = worker.stdout.readline()
        if "Starting worker" in line:
            break
    time.sleep(1)  # procrastinate installs its signal handlers just after logging that line
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0


def test_processes_share_one_embedded_server_which_stops_with_the_last(tmp_path):
    env = env_for(None, tmp_path / "home")
    assert run(["db", "upgrade"], env).returncode == 0
    pgdata = tmp_path / "home" / "pgdata"
    assert not (pgdata / "postmaster.pid").exists()  # stopped when the command exited
    worker = subprocess.Popen([sys.executable, "-m", "ingest_worker"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (pgdata / "postmaster.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
        res = run(["db", "status", "--json"], env)
        assert res.returncode == 0 and json.loads(res.stdout)["storage_level"] == 0
        assert (pgdata / "postmaster.pid").exists(), "the CLI must not stop a server the worker uses"
        assert int((pgdata / "postmaster.pid").read_text().split()[0]) == pid
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    deadline = time.monotonic() + 30
    while psutil.pid_exists(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not psutil.pid_exists(pid), "the last process must stop the embedded server"
