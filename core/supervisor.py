"""``stationmanager up``: the database, one ingest worker, the web app and the HTTP API, until Ctrl-C.

This process holds the embedded database (when no ``STATIONMANAGER_DATABASE_URL`` is set),
starts the worker, Streamlit and the API (``python -m api``) as child processes, and on Ctrl-C or SIGTERM stops them
and waits for them, then stops the embedded PostgreSQL, so nothing is left behind. A
terminal's Ctrl-C reaches every process of the job at once (this one, the worker, the app,
``make``); a second Ctrl-C while they stop changes nothing.

A child that exits on its own (killed, out of memory, the worker losing its database) is
started again after 1 s, then 2 s, 4 s … at most 60 s while it keeps failing; a child that
ran for a minute starts the count again. Each restart is printed. The web app keeps serving
pages while the worker is down, and says so itself while the database is.

With ``--demo`` it runs in the demo's own home (:mod:`core.demo_home`), creates one demo
user per role and queues the demo site's files (imported in the background by the worker,
progress printed here and shown in the app), adds the demo's sources and runs its live
logger (:func:`core.demo.run_logger`, a thread of this process). Without it, it refuses a user file that still
has the demo logins.
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
from dataclasses import dataclass
from pathlib import Path

from core import budget, db, demo_home, embedded, schema
from core.demo_home import DEMO_USERS
from core.settings import PREFIX, get_settings

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
#: Restart delays of a child that keeps exiting: FIRST_DELAY_S, doubled each time, at most
#: MAX_DELAY_S; a child that ran RESET_AFTER_S starts from FIRST_DELAY_S again.
FIRST_DELAY_S = 1.0
MAX_DELAY_S = 60.0
RESET_AFTER_S = 60.0


def child_env(*, demo: bool) -> dict[str, str]:
    """The children's environment: the home as an absolute path (they run in the project
    folder, not in this process's current folder), and whether this is the demo."""
    env = {**os.environ, PREFIX + "HOME": str(get_settings().home.resolve())}
    if demo:
        env[PREFIX + "DEMO"] = "1"
    return env


def worker_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The worker's environment (``env``, default this process's): it logs only warnings and
    errors (a failed file, say) to this terminal, unless STATIONMANAGER_LOG_LEVEL says
    otherwise; the pages show the rest."""
    return {**(os.environ if env is None else env), "STATIONMANAGER_LOG_LEVEL": os.environ.get("STATIONMANAGER_LOG_LEVEL", "WARNING")}


def next_delay(previous: float | None, ran_s: float) -> float:
    """How long to wait before starting again a child that exited after ``ran_s`` seconds,
    when the delay before its last start was ``previous`` (None: it never restarted).

    >>> [next_delay(d, 5) for d in (None, 1, 2, 32, 60)]
    [1.0, 2.0, 4.0, 60.0, 60.0]
    >>> next_delay(60, ran_s=600)  # it ran a good while: start the count again
    1.0
    """
    if previous is None or ran_s >= RESET_AFTER_S:
        return FIRST_DELAY_S
    return min(float(previous) * 2, MAX_DELAY_S)


@dataclass
class Child:
    """A process this supervisor keeps running."""

    name: str
    argv: list[str]
    env: dict[str, str]
    proc: subprocess.Popen | None = None
    started: float = 0.0
    delay: float | None = None  # the delay before the last restart
    restart_at: float | None = None  # when it is due to start again
    restarts: int = 0

    def start(self) -> None:
        log.info("starting %s: %s", self.name, " ".join(self.argv))
        self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=self.env)
        self.started = time.monotonic()
        self.restart_at = None

    def watch(self, now: float) -> None:
        """Start the child again when it has exited and its delay has passed."""
        if self.restart_at is not None:
            if now >= self.restart_at:
                self.restarts += 1
                print(f"restarting the {self.name} (restart {self.restarts})", file=sys.stderr, flush=True)
                self.start()
            return
        assert self.proc is not None
        if self.proc.poll() is None:
            return
        self.delay = next_delay(self.delay, now - self.started)
        self.restart_at = now + self.delay
        print(f"{self.name} exited with code {self.proc.returncode} after {now - self.started:.0f} s; "
              f"starting it again in {self.delay:g} s", file=sys.stderr, flush=True)


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


def _stop(children: list[Child]) -> None:
    running = [c for c in children if c.proc is not None and c.proc.poll() is None]
    for c in running:
        log.info("stopping %s", c.name)
        c.proc.send_signal(signal.SIGTERM)
    for c in running:
        try:
            c.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in 30 s; killing it", c.name)
            c.proc.kill()
            c.proc.wait()


def up(*, demo: bool, port: int = 8501, days: int = 365, api_port: int | None = None) -> int:
    settings = demo_home.use_demo_home() if demo else get_settings()
    api_port = settings.api_port if api_port is None else api_port
    if demo:
        demo_home.ensure_demo_users(settings)
    else:
        demo_home.refuse_demo_logins(settings)
    url = db.database_url(settings)
    result = schema.upgrade(url, settings)
    with db.connect(url) as conn, db.translate():
        need = budget.check(conn, "stationmanager up", settings, strict=True)
    print(f"database ready: {db.redact(url)} — storage level {result['level']}; connection budget "
          f"{need.needed} of {need.allowed}", flush=True)
    env = {**child_env(demo=demo), PREFIX + "API_PORT": str(api_port)}  # the pages link to it
    stopping = threading.Event()

    def on_signal(signum, _frame):  # Ctrl-C reaches the children too; we wait for them
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    worker = Child("worker", [sys.executable, "-m", "ingest_worker"], worker_env(env))
    web = Child("web app", [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),
                            "--server.port", str(port), "--server.address", "127.0.0.1",
                            "--server.headless", "true"], env)
    api = Child("API", [sys.executable, "-m", "api", "--port", str(api_port)], worker_env(env))
    children = [worker, web, api]
    try:
        for child in children:
            child.start()
        if _wait_http(f"http://127.0.0.1:{port}/_stcore/health", web.proc):
            print(f"\nStationManager is running at http://127.0.0.1:{port}  (Ctrl-C stops everything)", flush=True)
            print(f"HTTP API at http://127.0.0.1:{api_port}/api/v1 (OpenAPI: /api/v1/openapi.json; tokens: "
                  "stationmanager tokens add NAME --role viewer)", flush=True)
            if demo:
                print("demo logins: " + ", ".join(f"{n} / {p}" for n, p, _ in DEMO_USERS), flush=True)
            if "STATIONMANAGER_LOG_LEVEL" not in os.environ:
                print("the worker's warnings and errors show here (STATIONMANAGER_LOG_LEVEL=INFO: every import)",
                      flush=True)
        else:  # the port is taken, say: restarting would not help
            print("the web app did not come up; see its output above", file=sys.stderr)
            stopping.set()
        if demo and not stopping.is_set():
            threading.Thread(target=_load_demo, args=(stopping, days), daemon=True).start()
        while not stopping.wait(0.5):
            for child in children:
                child.watch(time.monotonic())
    finally:
        _stop(children)
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
        added = demo.ensure_demo_sources()
        if added:
            print(f"demo: sources added: {', '.join(added)}", flush=True)
        folder = get_settings().home.resolve() / demo.LOGGER_FOLDER
        print(f"demo: the {demo.LIVE_STATION} logger writes a file every 10 minutes into {folder}", flush=True)
        threading.Thread(target=demo.run_logger, args=(folder, result["start"], result["end"], stopping),
                         name="demo logger", daemon=True).start()
        if result["queued"]:
            demo.wait_for_import(result["file_ids"], stopping, report=lambda msg: print(msg, flush=True))
    except Exception:  # report, keep the app running
        log.exception("loading the demo data failed")
