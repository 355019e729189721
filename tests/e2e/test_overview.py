"""The Overview in a real Chromium, on the last days of a demo year ending now, imported and
checked by a real worker: Ballymore Hill is ok, Kestrel Ridge, whose hygrometer died 11
weeks ago, is faulty, and Curlew Point, whose files arrive 5 hours late, is late; as of
the day before yesterday, Curlew Point was ok. Saves ``docs/screenshots/overview.png``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from core import demo
from tests.e2e.conftest import App, click_until, serve
from tests.e2e.test_browser import LONG, sign_in

pytestmark = pytest.mark.e2e

DAYS = 5
END = datetime.now(UTC)
YEAR_START = (END - timedelta(days=365)).date()  # as `stationmanager demo` makes it


@pytest.fixture(scope="module")
def app(pg_admin_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """The demo masts' last days up to now, imported and checked by a real worker."""
    def files(home: Path) -> dict[Path, str]:
        by_slug = {s.slug: s.name for s in demo.STATIONS}
        made = demo.generate(home / "demo", end=END, days=DAYS, year_start=YEAR_START)
        return {p: by_slug[p.parent.name] for p in made}

    with serve(pg_admin_url, template_db, tmp_path_factory.mktemp("e2e-overview"), files, days=DAYS,
               checked=True) as served:
        yield served


def card(page: Page, station: str):
    return page.get_by_test_id("stColumn").filter(has=page.get_by_role("link", name=station))


def test_the_overview_shows_each_demo_masts_health_now_and_as_of_a_day(page: Page, app, screenshots: Path) -> None:
    page.goto(app.url)
    sign_in(page, app, "viewer")
    expect(page.get_by_role("heading", name="Stations")).to_be_visible(timeout=LONG)
    kestrel, ballymore, curlew = (card(page, s) for s in ("Kestrel Ridge", "Ballymore Hill", "Curlew Point"))
    expect(kestrel.get_by_text(re.compile(r"^faulty · \d+ min ago"))).to_be_visible(timeout=LONG)
    expect(curlew.get_by_text(re.compile(r"^late · [56](\.\d)? h ago"))).to_be_visible()
    expect(ballymore.get_by_text(re.compile(r"^ok · \d+ min ago"))).to_be_visible()
    for c in (kestrel, ballymore, curlew):  # every file was received just now
        expect(c.get_by_test_id("stMetric").filter(has_text="Files 7 d")).to_contain_text(str(DAYS))
    # worst first: faulty, late, ok
    where = [c.bounding_box() for c in (kestrel, curlew, ballymore)]
    assert sorted(where, key=lambda w: (w["y"], w["x"])) == where, where
    page.mouse.move(5, 5)  # no hover effects in the screenshot
    page.screenshot(path=screenshots / "overview.png", full_page=True)

    day = (END - timedelta(days=2)).date()
    for part, value in (("year", f"{day.year}"), ("month", f"{day.month:02d}"), ("day", f"{day.day:02d}")):  # typed
        page.get_by_role("spinbutton", name=f"{part}, As of (UTC)").click()
        page.keyboard.type(value)
    page.get_by_role("heading", name="Stations").click()  # leaving the field commits the day
    expect(page).to_have_url(re.compile(rf"as_of={day.isoformat()}"), timeout=LONG)
    expect(curlew.get_by_text(re.compile(r"^ok · "))).to_be_visible(timeout=LONG)  # on time, back then
    expect(kestrel.get_by_text(re.compile(r"^faulty · "))).to_be_visible()
    expect(ballymore.get_by_text(re.compile(r"^ok · "))).to_be_visible()

    click_until(kestrel.get_by_role("link", name="Kestrel Ridge").click,
                lambda timeout: expect(page).to_have_url(re.compile(r"/station\?station=Kestrel\+Ridge"),
                                                         timeout=timeout))
