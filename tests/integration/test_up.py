"""``stationmanager up --demo`` (what ``make demo`` runs) on a machine with nothing set up:
it starts its own embedded PostgreSQL, a worker and the web app, imports the demo site,
and on Ctrl-C stops all of them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(lines: list[str], text: str, proc: subprocess.Popen, timeout: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not any(text in line for line in lines):
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"no {text!r} from `stationmanager up --demo`:\n" + "".join(lines[-60:]))
        time.sleep(0.5)


def test_up_demo_serves_the_app_imports_the_demo_and_stops_everything(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATIONMANAGER_")}
    env.update(STATIONMANAGER_HOME=str(home), PYTHONUNBUFFERED="1")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "core.cli", "up", "--demo", "--days", "2", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        _wait_for(lines, f"StationManager is running at http://127.0.0.1:{port}", proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=10) as r:
            assert r.status == 200
        _wait_for(lines, "demo logins: viewer / viewer-demo, analyst / analyst-demo, admin / admin-demo", proc)
        _wait_for(lines, "demo: 4 files queued for import", proc)  # a file per day and station
        _wait_for(lines, "demo import: 4/4 files done", proc)
        assert (home / "pgdata" / "postmaster.pid").exists()  # its own embedded PostgreSQL
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            code = proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        reader.join(timeout=10)
        proc.stdout.close()
    output = "".join(lines)
    assert code == 0 and output.rstrip().endswith("stopped."), output[-3000:]
    # the worker logs only what matters to this terminal
    assert "Starting job" not in output and "INFO core.ingest" not in output, output[-3000:]
    time.sleep(2)
    assert not (home / "pgdata" / "postmaster.pid").exists(), "the embedded PostgreSQL is still running"
