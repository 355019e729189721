"""The Overview in a real Chromium, on the last days of the demo year imported and checked
by a real worker: today both masts are silent; as of 2025-12-31 Ballymore Hill is ok and
Kestrel Ridge, whose hygrometer died in October, is faulty. Saves
``docs/screenshots/overview.png``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from core import demo
from tests.e2e.conftest import App, click_until, serve
from tests.e2e.test_browser import LONG, sign_in

pytestmark = pytest.mark.e2e

FIRST_DAY = date(2025, 12, 27)
DAYS = 5


@pytest.fixture(scope="module")
def app(pg_admin_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """Both demo masts, 2025-12-27 .. 2025-12-31, imported and checked by a real worker."""
    def files(home: Path) -> dict[Path, str]:
        by_slug = {s.slug: s.name for s in demo.STATIONS}
        return {p: by_slug[p.parent.name] for p in demo.generate(home / "demo", start=FIRST_DAY, days=DAYS)}

    with serve(pg_admin_url, template_db, tmp_path_factory.mktemp("e2e-overview"), files, days=DAYS,
               checked=True) as served:
        yield served


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
