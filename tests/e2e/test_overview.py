"""The Overview in a real Chromium, on the last days of the demo year imported and checked
by a real worker: today both masts are silent; as of 2025-12-31 Ballymore Hill is ok and
Kestrel Ridge, whose hygrometer died in October, is faulty. Saves
``docs/screenshots/overview.png``.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import Page, expect

from core import auth, db, demo, ingest, jobs
from core.settings import Settings
from tests.e2e.conftest import (
    CHROMIUM, ROOT, USERS, App, _create_db, _drop_db, _free_port, _start, _wait_healthy, _wait_imported, click_until)
from tests.e2e.test_browser import LONG, sign_in

pytestmark = pytest.mark.e2e

FIRST_DAY = date(2025, 12, 27)
DAYS = 5
QC_TIMEOUT_S = 180


def _wait_checked(database_url: str, worker) -> None:
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


@pytest.fixture(scope="module")
def app(pg_admin_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """Both demo masts, 2025-12-27 .. 2025-12-31, imported and checked by a real worker."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    name = f"sm_e2e_{uuid.uuid4().hex[:8]}"
    _create_db(pg_admin_url, name, template_db)
    url = db.with_dbname(pg_admin_url, name)
    home = tmp_path_factory.mktemp("e2e-overview")
    settings = Settings(home=home, database_url=url)
    servers = []
    try:
        for role, (user, password) in USERS.items():
            auth.add_user(settings.users_file, user, password, role)
        files = demo.generate(home / "demo", start=FIRST_DAY, days=DAYS)
        stations = {p: next(s.name for s in demo.STATIONS if s.slug == p.parent.name) for p in files}
        with db.connect(url) as conn, conn.transaction():
            ids = [ingest.receive(conn, p, station=stations[p], origin="test", actor="e2e", settings=settings).id
                   for p in files]
        jobs.queue_imports(url, ids)
        env = {k: v for k, v in os.environ.items() if not k.startswith("STATIONMANAGER_")}
        env.update(STATIONMANAGER_DATABASE_URL=url, STATIONMANAGER_HOME=str(home), PYTHONUNBUFFERED="1")
        port = _free_port()
        servers.append(_start("worker", [sys.executable, "-m", "ingest_worker"], env, home / "worker.log"))
        servers.append(_start(
            "streamlit",
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true",
             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
            env, home / "streamlit.log",
        ))
        worker, web = servers
        base = f"http://127.0.0.1:{port}"
        app = App(base, url, home, ids, servers, days=DAYS)
        if not _wait_healthy(f"{base}/_stcore/health", web):
            pytest.fail(f"streamlit did not come up on {base}\n{app.output()}", pytrace=False)
        counts = _wait_imported(url, ids, worker)
        if counts != {"imported": len(ids)}:
            pytest.fail(f"the worker did not import the files: {counts}\n{app.output()}", pytrace=False)
        _wait_checked(url, worker)
        yield app
    finally:
        for server in reversed(servers):
            server.stop()
        _drop_db(pg_admin_url, name)
        shutil.rmtree(home / "demo", ignore_errors=True)


def card(page: Page, station: str):
    return page.get_by_test_id("stColumn").filter(has=page.get_by_role("link", name=station))


def test_as_of_the_end_of_the_demo_year_shows_each_masts_health(page: Page, app, screenshots: Path) -> None:
    page.goto(app.url)
    sign_in(page, app, "viewer")
    expect(page.get_by_role("heading", name="Stations")).to_be_visible(timeout=LONG)
    for station in ("Ballymore Hill", "Kestrel Ridge"):  # today: nothing since 2025, files just received
        expect(card(page, station).get_by_text(re.compile(r"^silent · "))).to_be_visible(timeout=LONG)
        expect(card(page, station).get_by_test_id("stMetric").filter(has_text="Files 7 d")).to_contain_text(
            str(DAYS))

    for part, value in (("year", "2025"), ("month", "12"), ("day", "31")):  # typed, as a person does
        page.get_by_role("spinbutton", name=f"{part}, As of (UTC)").click()
        page.keyboard.type(value)
    page.get_by_role("heading", name="Stations").click()  # leaving the field commits the day
    page.mouse.move(5, 5)  # no hover effects in the screenshot
    expect(page).to_have_url(re.compile(r"as_of=2025-12-31"), timeout=LONG)
    kestrel, ballymore = card(page, "Kestrel Ridge"), card(page, "Ballymore Hill")
    expect(kestrel.get_by_text("faulty · 10 min ago")).to_be_visible(timeout=LONG)
    expect(ballymore.get_by_text("ok · 10 min ago")).to_be_visible()
    # worst first: the faulty mast's card comes before the healthy one
    where = [card(page, s).bounding_box() for s in ("Kestrel Ridge", "Ballymore Hill")]
    assert (where[0]["y"], where[0]["x"]) < (where[1]["y"], where[1]["x"]), where
    # every reading since the mast's first day (2025-12-27) is there; no file was received in 2025
    expect(ballymore.get_by_test_id("stMetric").filter(has_text="Recovery 30 d")).to_contain_text("100.0 %")
    expect(ballymore.get_by_test_id("stMetric").filter(has_text="Files 7 d")).to_contain_text("0")
    page.screenshot(path=screenshots / "overview.png", full_page=True)

    click_until(kestrel.get_by_role("link", name="Kestrel Ridge").click,
                lambda timeout: expect(page).to_have_url(re.compile(r"/station\?station=Kestrel\+Ridge"),
                                                         timeout=timeout))
