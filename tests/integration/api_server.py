"""Start the HTTP API (``python -m api``) as a real server on 127.0.0.1 for a test."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.conftest import Server, _free_port, _start, _wait_healthy


@dataclass
class ApiServer(Server):
    url: str  # http://127.0.0.1:PORT


def env_for(database_url: str, home: Path, **settings: str) -> dict[str, str]:
    """The environment of a server: this test's database and home, and ``STATIONMANAGER_*`` settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATIONMANAGER_")}
    env.update(STATIONMANAGER_DATABASE_URL=database_url, STATIONMANAGER_HOME=str(home), PYTHONUNBUFFERED="1")
    env.update({f"STATIONMANAGER_{k.upper()}": v for k, v in settings.items()})
    return env


def start_api(env: dict[str, str], log: Path, port: int | None = None) -> ApiServer:
    """``python -m api`` on a free port; returns once it answers (or raises with its output)."""
    port = port or _free_port()
    started = _start("API", [sys.executable, "-m", "api", "--port", str(port)], env, log)
    server = ApiServer(started.name, started.proc, started.log, f"http://127.0.0.1:{port}")
    if _wait_healthy(f"{server.url}/api/v1/status", server):
        return server
    server.stop()
    raise RuntimeError(f"the API did not come up on {server.url}\n{server.output()}")
