"""Sources in a real Chromium, against a real SFTP server on 127.0.0.1 and a real worker: an
admin adds an SFTP source on the Sources page, accepts its host key, tests it (in the worker),
syncs it, and sees its station's sync state on the Overview go from "not syncing" to "syncing", then
to the source's error after a wrong password. A viewer sees the sources but no control,
and the core refuses the viewer's call. Saves ``docs/screenshots/sources.png``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import Page, expect

from core import demo, remote, source_admin
from core.errors import PermissionDenied
from tests.e2e.conftest import App, click_until, serve, settle
from tests.e2e.test_browser import LONG, nav, sign_in
from tests.integration import servers
from tests.integration.servers import PASSWORD, USER

pytestmark = pytest.mark.e2e

END = datetime.now(UTC)
YEAR_START = (END - timedelta(days=365)).date()
SOURCE, STATION = "Kestrel SFTP", "Kestrel Ridge"
SYNC_TIMEOUT = 180_000  # ms: a run queued to a loaded worker, then the import of its files


def write_secrets(home: Path, password: str) -> None:
    path = home / "secrets.toml"
    path.write_text(f'[kestrel]\nusername = "{USER}"\npassword = "{password}"\n', encoding="utf-8")
    path.chmod(0o600)


@pytest.fixture(scope="module")
def sftp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Server]:
    with servers.sftp_server(tmp_path_factory.mktemp("sftp-root")) as server:
        yield server


@pytest.fixture(scope="module")
def app(pg_admin_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory,
        sftp: servers.Server) -> Iterator[App]:
    """Ballymore Hill's last two days imported; Kestrel Ridge's waiting on the SFTP server."""
    def files(home: Path) -> dict[Path, str]:
        made = demo.generate(home / "demo", end=END, days=2, year_start=YEAR_START)
        old = time.time() - 3600  # settled long ago
        for p in made:
            if p.parent.name == "kestrel-ridge":
                sftp.put(f"loggers/{p.name}", p.read_bytes(), old)
        write_secrets(home, PASSWORD)
        return {p: "Ballymore Hill" for p in made if p.parent.name == "ballymore-hill"}

    with serve(pg_admin_url, template_db, tmp_path_factory.mktemp("e2e-sources"), files, days=2) as served:
        yield served


def card(page: Page, station: str):
    return page.get_by_test_id("stColumn").filter(has=page.get_by_role("link", name=station))


def go(page: Page, title: str, heading: str) -> None:
    click_until(nav(page).get_by_role("link", name=title, exact=True).click,
                lambda timeout: expect(page.get_by_role("heading", name=heading)).to_be_visible(timeout=timeout))
    settle(page)


def choose(page: Page, label: str, option: str) -> None:
    """Choose ``option`` in the selectbox labelled ``label``: type it, take it from the list."""
    box = page.get_by_test_id("stMain").get_by_role("combobox", name=label)
    box.click()
    box.press_sequentially(option[:12])
    page.get_by_role("option", name=option, exact=True).click()
    settle(page)


def click(page: Page, label: str) -> None:
    page.get_by_test_id("stMain").get_by_role("button", name=label, exact=True).click()


def on_overview(page: Page, station: str, text: str | re.Pattern, timeout: int) -> None:
    """Open the Overview until the station's card shows ``text`` (a file imported meanwhile
    shows at the next visit, or when the import queue empties)."""
    deadline = time.monotonic() + timeout / 1000
    while True:
        go(page, "Overview", "Stations")
        try:
            expect(card(page, station).get_by_text(text)).to_be_visible(timeout=15_000)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise


def test_an_admin_adds_trusts_tests_and_syncs_an_sftp_source(page: Page, app: App, sftp, screenshots: Path) -> None:
    page.goto(app.url)
    sign_in(page, app, "admin")
    go(page, "Sources", "Sources")
    expect(page.get_by_text("No sources yet. Add one below.")).to_be_visible()
    page.locator(".st-key-add_name input").fill(SOURCE)
    page.locator(".st-key-add_url input").fill(sftp.url + "loggers")
    choose(page, "Credentials", "kestrel")
    page.locator(".st-key-add_station input").fill(STATION)
    page.locator(".st-key-add_include input").fill("*.dat")
    page.get_by_role("button", name="Add source").click()
    expect(page.get_by_text(f"{SOURCE}: added")).to_be_visible(timeout=LONG)

    # its host key is not trusted yet: nothing can arrive
    on_overview(page, STATION, re.compile(r"^not syncing "), LONG)

    go(page, "Sources", "Sources")
    choose(page, "Source", SOURCE)
    click(page, "Test")  # queued: the worker connects, the page shows its result when it arrives
    expect(page.get_by_text("Test failed (host key unknown)")).to_be_visible(timeout=SYNC_TIMEOUT)
    fp = remote.fingerprint(sftp.host_key)
    expect(page.get_by_text(f"ssh-ed25519 {fp}")).to_be_visible()
    page.get_by_role("button", name="Accept host key").click()
    expect(page.get_by_text(f"{SOURCE}: host key {fp} accepted")).to_be_visible(timeout=LONG)
    settle(page)
    click(page, "Test")
    expect(page.get_by_text("Connected: 2 file(s) match of 2 listed.")).to_be_visible(timeout=SYNC_TIMEOUT)
    with psycopg.connect(app.database_url) as conn:  # both tests ran in the worker, which recorded them
        tested = conn.execute("SELECT details->>'error_class', details ? 'job_id' FROM audit "
                              "WHERE entity = 'source' AND action = 'test' ORDER BY id").fetchall()
    assert tested == [("host key unknown", True), (None, True)]

    click(page, "Sync now")
    expect(page.get_by_text(f"{SOURCE}: run queued")).to_be_visible(timeout=LONG)
    # the line refreshes live while the run is queued or running (a scheduled run may come first)
    expect(page.get_by_text(re.compile(rf"^{SOURCE} · last run \d\d:\d\d: ok"))).to_be_visible(timeout=SYNC_TIMEOUT)
    with psycopg.connect(app.database_url) as conn:
        got = conn.execute("SELECT count(*) FROM source_file f JOIN station s ON s.id = f.station_id "
                           "WHERE s.name = %s AND f.origin = 'source'", (STATION,)).fetchone()[0]
    assert got == 2
    settle(page)  # the page reruns once the run has ended (pages.common.live)
    expect(page.locator(".st-key-source_runs_chart .js-plotly-plot").last).to_be_visible()

    on_overview(page, STATION, re.compile(r"^syncing$"), SYNC_TIMEOUT)

    write_secrets(app.home, "wrong-password")
    go(page, "Sources", "Sources")
    choose(page, "Source", SOURCE)
    click(page, "Sync now")
    expect(page.get_by_text(re.compile(rf"^{SOURCE} · last run \d\d:\d\d: failed \(authentication failed\)")
                            )).to_be_visible(timeout=SYNC_TIMEOUT)
    settle(page)
    expect(page.locator(".st-key-source_runs_chart .js-plotly-plot .point")).not_to_have_count(0)
    page.set_viewport_size({"width": 1400, "height": 1500})  # the table, the chart and the runs
    page.get_by_role("heading", name="Sources").scroll_into_view_if_needed()
    page.mouse.move(5, 5)  # no tooltip in the screenshot
    settle(page)
    page.screenshot(path=screenshots / "sources.png")
    page.set_viewport_size({"width": 1400, "height": 900})
    on_overview(page, STATION, re.compile(
        rf"^not syncing source {SOURCE} failing since \d\d:\d\d: authentication failed$"), LONG)


def test_a_viewer_sees_sources_but_cannot_change_them(page: Page, app: App, sftp) -> None:
    with psycopg.connect(app.database_url, autocommit=True) as conn:
        conn.row_factory = psycopg.rows.dict_row
        with conn.transaction():
            source_admin.add(conn, "adam", "admin", {"name": "Viewer check", "kind": "sftp", "url": sftp.url,
                                                     "station": STATION})
        with pytest.raises(PermissionDenied, match="this needs the admin role; you are viewer"):
            source_admin.queue_sync(conn, "vera", "viewer", "Viewer check")
    page.goto(app.url)
    sign_in(page, app, "viewer")
    go(page, "Sources", "Sources")
    choose(page, "Source", "Viewer check")
    expect(page.get_by_text(re.compile(r"^Viewer check · (no run yet|last run|a run is)"))).to_be_visible()
    main = page.get_by_test_id("stMain")
    for label in ("Test", "Sync now", "Disable", "Accept host key", "Add source", "Save source", "Remove"):
        expect(main.get_by_role("button", name=label, exact=True)).to_have_count(0)
    expect(main.get_by_text("Add a source")).to_have_count(0)
    expect(main.locator("input[type=text]")).to_have_count(1)  # the source picker's search only
