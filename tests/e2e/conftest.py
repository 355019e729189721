"""Fixtures of the browser tests: a real worker, ``streamlit run app.py`` and the HTTP API
(the pages' download links), and Chromium.

One app per test module: a database copied from the session's migrated template, users
of every role in a temporary ``STATIONMANAGER_HOME``, a few days of 10-minute TOA5 files
received and queued, then a REAL worker subprocess imports them while Streamlit serves
the app on a free port. If either server fails to come up, its output is printed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from core import auth, db, demo, ingest, jobs
from core.settings import Settings
from tests.load import SETTLED_JS

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
#: role -> (user, password)
USERS = {
    "viewer": ("vera", "viewer-password"),
    "analyst": ("anna", "analyst-password"),
    "admin": ("adam", "admin-password"),
}
MAST = "Ballymore Hill"
DAYS = 3
START_TIMEOUT_S = 120
IMPORT_TIMEOUT_S = 180
QC_TIMEOUT_S = 180


@dataclass
class Server:
    """A subprocess whose output goes to a file, so it can be shown when things fail."""

    name: str
    proc: subprocess.Popen
    log: Path

    def output(self, last: int = 80) -> str:
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return f"--- {self.name} (exit code {self.proc.poll()}), last {last} lines of {self.log} ---\n" + "\n".join(lines[-last:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class App:
    url: str
    database_url: str
    home: Path
    file_ids: list[int]
    servers: list[Server]
    mast: str = MAST
    days: int = DAYS
    users: dict[str, tuple[str, str]] = field(default_factory=lambda: dict(USERS))

    def output(self) -> str:
        return "\n".join(s.output() for s in self.servers)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(name: str, argv: list[str], env: dict[str, str], log: Path) -> Server:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    return Server(name, proc, log)


def _wait_healthy(url: str, server: Server) -> bool:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and server.proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - loopback
                if r.status == 200:
                    return True
        except OSError:
            time.sleep(0.3)
    return False


def _wait_imported(database_url: str, ids: list[int], worker: Server) -> dict[str, int]:
    """Poll ``source_file`` until no file is queued or importing; the status counts."""
    deadline = time.monotonic() + IMPORT_TIMEOUT_S
    with psycopg.connect(database_url, autocommit=True) as conn:
        while True:
            rows = conn.execute(
                "SELECT status, count(*) FROM source_file WHERE id = ANY(%s) GROUP BY status", (ids,)
            ).fetchall()
            counts = dict(rows)
            if not counts.get("queued") and not counts.get("importing"):
                return counts
            if worker.proc.poll() is not None or time.monotonic() > deadline:
                return counts
            time.sleep(0.3)


def _create_db(admin_url: str, name: str, template: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))


def _drop_db(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _wait_checked(database_url: str, worker: Server) -> None:
    """Until the worker has run the quality checks of every import."""
    deadline = time.monotonic() + QC_TIMEOUT_S
    with psycopg.connect(database_url, autocommit=True) as conn:
        while True:
            waiting = conn.execute(
                "SELECT (SELECT count(*) FROM qc_request) + (SELECT count(*) FROM procrastinate_jobs "
                "WHERE task_name = 'sm:run_qc' AND status IN ('todo', 'doing'))").fetchone()[0]
            if not waiting:
                return
            if worker.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the quality checks did not finish\n{worker.output()}", pytrace=False)
            time.sleep(0.3)


@contextlib.contextmanager
def serve(pg_admin_url: str, template_db: str, home: Path, make_files: Callable[[Path], dict[Path, str]],
          *, days: int = DAYS, checked: bool = False, app_env: dict[str, str] | None = None,
          api: bool = False) -> Iterator[App]:
    """A database copied from the template, users of every role, the files ``make_files(home)``
    returns (path -> station) received and queued, then a real worker and ``streamlit run``
    (with the ``STATIONMANAGER_*`` variables in ``app_env``) and, with ``api``, the HTTP API
    (the pages' download links); yields once the worker has imported them (and, with
    ``checked``, run their quality checks).
    """
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    name = f"sm_e2e_{uuid.uuid4().hex[:8]}"
    _create_db(pg_admin_url, name, template_db)
    url = db.with_dbname(pg_admin_url, name)
    settings = Settings(home=home, database_url=url)
    servers: list[Server] = []
    try:
        for role, (user, password) in USERS.items():
            auth.add_user(settings.users_file, user, password, role)
        files = make_files(home)
        with db.connect(url) as conn, conn.transaction():
            ids = [ingest.receive(conn, p, station=station, origin="test", actor="e2e", settings=settings).id
                   for p, station in files.items()]
        jobs.queue_imports(url, ids)

        env = {k: v for k, v in os.environ.items() if not k.startswith("STATIONMANAGER_")}
        env.update(STATIONMANAGER_DATABASE_URL=url, STATIONMANAGER_HOME=str(home), PYTHONUNBUFFERED="1")
        env.update(app_env or {})
        port, api_port = _free_port(), _free_port()
        env["STATIONMANAGER_API_PORT"] = str(api_port)  # the pages' download links point there
        servers.append(_start("worker", [sys.executable, "-m", "ingest_worker"], env, home / "worker.log"))
        servers.append(_start(
            "streamlit",
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true",
             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
            env, home / "streamlit.log",
        ))
        if api:
            servers.append(_start("API", [sys.executable, "-m", "api", "--port", str(api_port)], env,
                                  home / "api.log"))
        worker, web = servers[:2]
        base = f"http://127.0.0.1:{port}"
        app = App(base, url, home, ids, servers, days=days)
        if not _wait_healthy(f"{base}/_stcore/health", web):
            pytest.fail(f"streamlit did not come up on {base}\n{app.output()}", pytrace=False)
        if api and not _wait_healthy(f"http://127.0.0.1:{api_port}/api/v1/status", servers[2]):
            pytest.fail(f"the API did not come up on port {api_port}\n{app.output()}", pytrace=False)
        counts = _wait_imported(url, ids, worker)
        if counts != {"imported": len(ids)}:
            pytest.fail(f"the worker did not import the files: {counts}\n{app.output()}", pytrace=False)
        if checked:
            _wait_checked(url, worker)
        yield app
    finally:
        for server in reversed(servers):
            server.stop()
        _drop_db(pg_admin_url, name)
        shutil.rmtree(home / "demo", ignore_errors=True)


@pytest.fixture(scope="module")
def app(pg_admin_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory,
        request: pytest.FixtureRequest) -> Iterator[App]:
    """The app served by ``streamlit run`` with the last days of one demo mast imported by a
    real worker; and the HTTP API when the test module sets ``WITH_API = True``."""
    def files(home: Path) -> dict[Path, str]:
        first_day = datetime.now(UTC).date() - timedelta(days=DAYS)
        return {p: MAST for p in demo.generate(home / "demo", start=first_day, days=DAYS)
                if p.parent.name == "ballymore-hill"}

    with serve(pg_admin_url, template_db, tmp_path_factory.mktemp("e2e-home"), files,
               api=getattr(request.module, "WITH_API", False)) as served:
        yield served


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[object]:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def page(browser, app: App, request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A fresh browser context (no cookies) per test. If the test fails: the page's text, a
    screenshot and the servers' output are printed or saved."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(30_000)
    tab = context.new_page()
    yield tab
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        print(f"--- the page at failure: {tab.url}, script state {script_state(tab)} ---")
        with contextlib.suppress(Exception):
            print(tab.locator("[data-testid=stMain]").inner_text(timeout=2_000)[:4_000])
        with contextlib.suppress(Exception):
            shot = tmp_path_factory.mktemp("failed") / f"{request.node.name}.png"
            tab.screenshot(path=shot, full_page=True)
            print(f"--- screenshot: {shot} ---")
    context.close()
    if report is not None and report.failed:
        print(app.output())


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


def click_until(click, check, *, tries: int = 3, wait_ms: int = 15_000) -> None:
    """Click, then wait for ``check`` (an ``expect`` that takes ``timeout=``); click again if
    it did not happen. Right after sign-in, the remember-me cookie component reruns the page
    once, and a navigation click that lands during that rerun can be lost (the same happens
    to a person, who then clicks again)."""
    from playwright.sync_api import Error as PlaywrightError

    for attempt in range(tries):
        click()
        try:
            check(timeout=wait_ms)
            return
        except (AssertionError, PlaywrightError):
            if attempt == tries - 1:
                raise


def script_state(page) -> str | None:
    """Streamlit's own record of the page's script run: ``running``, ``notRunning``…"""
    try:
        return page.locator("[data-testid=stApp]").get_attribute("data-test-script-state", timeout=2_000)
    except Exception:  # noqa: BLE001 - only for a failure report
        return None


def settle(page, *, quiet_ms: int = 750, timeout: int = 30_000) -> None:
    """Wait until Streamlit has stopped running the page's script and stayed idle for
    ``quiet_ms``: components (the remember-me cookie, a chart's selection) can start a
    rerun right after one ends, and a drag or click during a rerun can be lost."""
    page.evaluate("() => { window.__smBusy = undefined; }")  # idle is counted from now
    page.wait_for_function(SETTLED_JS, arg=quiet_ms, timeout=timeout, polling=100)


def drag(page, chart, x0: float, x1: float) -> None:
    """A real mouse drag across a plotly chart's plot area, from ``x0`` to ``x1`` (fractions
    of its width), as a box selection, once the page has stopped rerunning."""
    settle(page)
    chart.scroll_into_view_if_needed()
    box = chart.locator(".nsewdrag").first.bounding_box()
    assert box is not None
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * x0, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * (x0 + x1) / 2, y + 10, steps=8)
    page.mouse.move(box["x"] + box["width"] * x1, y + 20, steps=8)
    page.mouse.up()


def station_id(app: App) -> int:
    """The id of the test mast (it keys the station page's widgets, e.g. ``.st-key-chart_ID``)."""
    with psycopg.connect(app.database_url) as conn:
        return conn.execute("SELECT id FROM station WHERE name = %s", (app.mast,)).fetchone()[0]
