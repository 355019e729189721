"""The Explore page in a real Chromium, the real worker building the snapshot.

Two users at once: an analyst runs a cross join of 10¹² rows; while it runs, a viewer on
another browser runs the *Monthly means per height* example and sees its chart; then the
analyst's query is stopped at the time limit with a clear message. Screenshot:
``docs/screenshots/explore.png``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from core import demo
from tests.e2e.conftest import CHROMIUM, MAST, serve, settle
from tests.e2e.test_browser import LONG
from tests.e2e.test_upload import open_page, sign_in_settled

pytestmark = pytest.mark.e2e

BUILD = 180_000  # ms: the worker builds the snapshot on a loaded machine
TIME_LIMIT_S = 20  # the app's STATIONMANAGER_EXPLORE_TIMEOUT_S
CROSS_JOIN = "SELECT count(*) FROM range(1000000) a, range(1000000) b"


@pytest.fixture(scope="module")
def app(pg_admin_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory):
    """The app with two days of the demo mast and a time limit the test can wait out."""
    def files(home: Path) -> dict[Path, str]:
        first_day = datetime.now(UTC).date() - timedelta(days=2)
        return {p: MAST for p in demo.generate(home / "demo", start=first_day, days=2)
                if p.parent.name == "ballymore-hill"}

    env = {"STATIONMANAGER_EXPLORE_TIMEOUT_S": str(TIME_LIMIT_S)}
    with serve(pg_admin_url, template_db, tmp_path_factory.mktemp("e2e-explore"), files, days=2, app_env=env) as s:
        yield s


def ready_to_query(page: Page, app, role: str) -> None:
    """Sign in, open Explore and build (or reuse) the snapshot of the test mast."""
    sign_in_settled(page, app, role)
    open_page(page, "Explore", "Explore")
    data = page.locator(".st-key-explore_data")
    expect(data.get_by_text(MAST)).to_be_visible(timeout=LONG)
    data.get_by_role("button", name="Build snapshot").click()
    expect(page.get_by_text(re.compile(r"Snapshot ready: [\d,]+ values of 1 station"))).to_be_visible(timeout=BUILD)
    settle(page)


def write_sql(page: Page, sql: str) -> None:
    box = page.get_by_role("textbox", name="SQL (DuckDB)")
    box.fill(sql)
    box.press("Control+Enter")
    settle(page)


def test_an_example_draws_its_chart_while_another_users_cross_join_runs(browser, app, screenshots: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    contexts = [browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in range(2)]
    try:
        viewer, analyst = (c.new_page() for c in contexts)
        for tab in (viewer, analyst):
            tab.set_default_timeout(30_000)
        ready_to_query(analyst, app, "analyst")
        ready_to_query(viewer, app, "viewer")

        expect(viewer.get_by_role("textbox", name="SQL (DuckDB)")).to_have_value("SELECT * FROM channels")
        examples = viewer.get_by_role("combobox", name="Examples")
        examples.click()
        viewer.get_by_role("option", name="Monthly means per height").click()
        expect(viewer.get_by_role("textbox", name="SQL (DuckDB)")).to_have_value(re.compile("Monthly mean wind speed"))
        settle(viewer)

        write_sql(analyst, CROSS_JOIN)
        analyst.get_by_role("button", name="Run", exact=True).click()
        expect(analyst.get_by_text("Running in the sandbox…")).to_be_visible(timeout=LONG)

        viewer.get_by_role("button", name="Run", exact=True).click()
        result = viewer.locator(".st-key-explore_result")
        expect(result.locator(".js-plotly-plot")).to_be_visible(timeout=LONG)
        expect(result.locator(".legendtext").filter(has_text=f"{MAST} 80 m")).to_have_count(1)
        expect(result.locator(".legendtext")).to_have_count(3)  # 80, 60 and 40 m
        # the cross join is still running: the viewer did not wait for it
        expect(analyst.get_by_text("Running in the sandbox…")).to_be_visible(timeout=1_000)

        stopped = analyst.get_by_text(re.compile(rf"the query was stopped after {TIME_LIMIT_S} s, the time limit"))
        expect(stopped).to_be_visible(timeout=(TIME_LIMIT_S + 40) * 1000)
        result.scroll_into_view_if_needed()
        viewer.screenshot(path=screenshots / "explore.png", full_page=True)
    finally:
        for c in contexts:
            c.close()
