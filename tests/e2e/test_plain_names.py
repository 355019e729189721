"""Names with Markdown and HTML in them show as typed in a real Chromium: no image loads, no
link appears, on the Overview and the station page (title, chart tick labels)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from core import demo
from tests.e2e.conftest import App, click_until, serve, station_id
from tests.e2e.test_browser import LONG, sign_in

pytestmark = pytest.mark.e2e

STATION = "![x](http://127.0.0.1:9/x.png) **bold** <b>b</b> [link](http://127.0.0.1:9/)"
COLUMN = "<a href='http://127.0.0.1:9/c'>c</a>"
#: Elements whose attributes would fetch or link to the names' address.
FETCHES = """() => [...document.querySelectorAll('*')].flatMap(e => [...e.attributes]
    .filter(a => ['src', 'srcset', 'href', 'xlink:href', 'style', 'data', 'poster'].includes(a.name)
                 && a.value.includes('//127.0.0.1:9'))
    .map(a => `<${e.tagName} ${a.name}="${a.value}">`))"""


@pytest.fixture(scope="module")
def app(pg_admin_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """One day of a demo mast under a hostile station name, one of its columns renamed too."""
    def files(home: Path) -> dict[Path, str]:
        out = {}
        for p in demo.generate(home / "demo", start=datetime.now(UTC).date() - timedelta(days=1), days=1):
            if p.parent.name == "ballymore-hill":
                p.write_text(p.read_text().replace('"WS_60m_SW_Avg"', f'"{COLUMN}"', 1))
                out[p] = STATION
        return out

    with serve(pg_admin_url, template_db, tmp_path_factory.mktemp("e2e-names"), files, days=1) as served:
        served.mast = STATION
        yield served


def test_a_hostile_station_name_is_plain_text_in_the_browser(page: Page, app: App) -> None:
    page.goto(app.url)
    sign_in(page, app, "analyst")
    link = page.get_by_role("link", name=STATION, exact=True)
    expect(link).to_be_visible(timeout=LONG)
    assert page.evaluate(FETCHES) == []

    click_until(link.click, lambda timeout: expect(page).to_have_url(re.compile(r"/station\?station="),
                                                                     timeout=timeout))
    expect(page.get_by_role("heading", name=STATION, exact=True)).to_be_visible(timeout=LONG)
    chart = page.locator(f".st-key-chart_{station_id(app)} .js-plotly-plot")
    expect(chart).to_be_visible(timeout=LONG)
    heatmap = page.locator(f".st-key-heat_{station_id(app)} .js-plotly-plot")
    expect(heatmap.locator("g.ytick text").filter(has_text=COLUMN)).to_have_count(1)  # a tick label, as typed
    assert page.evaluate(FETCHES) == []
    shown = page.locator("[data-testid=stMain] b, [data-testid=stMain] strong")
    expect(shown.filter(has_text=re.compile("^(b|bold)$"))).to_have_count(0)  # no bold from the name
