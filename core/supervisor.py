"""``stationmanager up``: the database, one ingest worker and the web app, until Ctrl-C.

This process holds the embedded database (when no ``STATIONMANAGER_DATABASE_URL`` is set),
starts the worker and Streamlit as child processes, and on Ctrl-C or SIGTERM stops them
and waits for them, then stops the embedded PostgreSQL, so nothing is left behind. A
terminal's Ctrl-C reaches every process of the job at once (this one, the worker, the app,
``make``); a second Ctrl-C while they stop changes nothing. With ``--demo`` it also
creates one demo user per role and queues the demo site's files (imported in the
background by the worker, progress printed here and shown in the app).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from core import auth, db, embedded, schema
from core.settings import get_settings

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
DEMO_USERS = (("viewer", "viewer-demo", "viewer"), ("analyst", "analyst-demo", "analyst"), ("admin", "admin-demo", "admin"))


def ensure_demo_users() -> None:
    path = get_settings().users_file
    known = {u["name"] for u in auth.users(path)}
    for name, password, role in DEMO_USERS:
        if name not in known:
            auth.add_user(path, name, password, role)


def worker_env() -> dict[str, str]:
    """The worker's environment: it logs only warnings and errors (a failed file, say) to
    this terminal, unless STATIONMANAGER_LOG_LEVEL says otherwise; the pages show the rest."""
    return {**os.environ, "STATIONMANAGER_LOG_LEVEL": os.environ.get("STATIONMANAGER_LOG_LEVEL", "WARNING")}


def _start(name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    log.info("starting %s: %s", name, " ".join(argv))
    return subprocess.Popen(argv, cwd=ROOT, env=env)


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - loopback only
                if r.status == 200:
                    return True
        except OSError:
            time.sleep(0.5)
    return False


def _stop(procs: dict[str, subprocess.Popen]) -> None:
    for name, p in procs.items():
        if p.poll() is None:
            log.info("stopping %s", name)
            p.send_signal(signal.SIGTERM)
    for name, p in procs.items():
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in 30 s; killing it", name)
            p.kill()
            p.wait()


def up(*, demo: bool, port: int = 8501, days: int = 365) -> int:
    settings = get_settings()
    url = db.database_url(settings)
    result = schema.upgrade(url, settings)
    print(f"database ready: {db.redact(url)} — storage level {result['level']}", flush=True)
    if demo:
        ensure_demo_users()
    procs: dict[str, subprocess.Popen] = {}
    stopping = threading.Event()

    def on_signal(signum, _frame):  # Ctrl-C reaches the children too; we wait for them
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        procs["worker"] = _start("worker", [sys.executable, "-m", "ingest_worker"], worker_env())
        procs["web app"] = _start(
            "web app",
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),
             "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true"],
        )
        if _wait_http(f"http://127.0.0.1:{port}/_stcore/health", procs["web app"]):
            print(f"\nStationManager is running at http://127.0.0.1:{port}  (Ctrl-C stops everything)", flush=True)
            if demo:
                print("demo logins: " + ", ".join(f"{n} / {p}" for n, p, _ in DEMO_USERS), flush=True)
            if "STATIONMANAGER_LOG_LEVEL" not in os.environ:
                print("the worker's warnings and errors show here (STATIONMANAGER_LOG_LEVEL=INFO: every import)",
                      flush=True)
        else:
            print("the web app did not come up; see its output above", file=sys.stderr)
            stopping.set()
        if demo and not stopping.is_set():
            threading.Thread(target=_load_demo, args=(stopping, days), daemon=True).start()
        while not stopping.is_set():
            for name, p in procs.items():
                if p.poll() is not None:
                    print(f"{name} exited with code {p.returncode}; stopping", file=sys.stderr)
                    stopping.set()
            stopping.wait(1)
    finally:
        _stop(procs)
        db.close_pools()
        # every child has exited (or was killed): let go of the embedded server, which
        # stops now, even if a child died without letting go of it
        embedded.stop_server(settings)
    print("stopped.", flush=True)
    return 0


def _load_demo(stopping: threading.Event, days: int) -> None:
    from core import demo

    try:
        result = demo.load_demo(days=days, progress=lambda msg: print(msg, flush=True), stop=stopping)
        if result["queued"]:
            demo.wait_for_import(result["file_ids"], stopping, report=lambda msg: print(msg, flush=True))
    except Exception:  # report, keep the app running
        log.exception("loading the demo data failed")
