"""Start the HTTP API (``python -m api``) as a real server on 127.0.0.1 for a test."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 90


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ApiServer:
    url: str  # http://127.0.0.1:PORT
    proc: subprocess.Popen
    log: Path

    def output(self, last: int = 60) -> str:
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return f"--- API (exit code {self.proc.poll()}), last {last} lines ---\n" + "\n".join(lines[-last:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def env_for(database_url: str, home: Path, **settings: str) -> dict[str, str]:
    """The environment of a server: this test's database and home, and ``STATIONMANAGER_*`` settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATIONMANAGER_")}
    env.update(STATIONMANAGER_DATABASE_URL=database_url, STATIONMANAGER_HOME=str(home), PYTHONUNBUFFERED="1")
    env.update({f"STATIONMANAGER_{k.upper()}": v for k, v in settings.items()})
    return env


def start_api(env: dict[str, str], log: Path, port: int | None = None) -> ApiServer:
    """``python -m api`` on a free port; returns once it answers (or raises with its output)."""
    port = port or free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "api", "--port", str(port)], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    server = ApiServer(f"http://127.0.0.1:{port}", proc, log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{server.url}/api/v1/status", timeout=2) as r:  # noqa: S310 - loopback
                if r.status == 200:
                    return server
        except OSError:
            time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"the API did not come up on {server.url}\n{server.output()}")
