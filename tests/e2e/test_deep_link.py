"""A link to a page, opened before signing in, opens that page once signed in: on a server
that has just started (its first session) and on one already serving others."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import station_id
from tests.e2e.test_browser import LONG, sign_in

pytestmark = pytest.mark.e2e


def _link_then_sign_in(page: Page, app, path: str) -> None:
    page.goto(f"{app.url}/{path}?station=Ballymore+Hill")
    sign_in(page, app, "analyst")
    expect(page).to_have_url(re.compile(rf"/{path}\?station=Ballymore\+Hill$"), timeout=LONG)


def test_a_station_link_on_a_fresh_server_opens_after_sign_in(page: Page, app) -> None:
    # the first test of this module: the server has served no session yet
    _link_then_sign_in(page, app, "station")
    expect(page.get_by_role("heading", name=app.mast)).to_be_visible(timeout=LONG)
    expect(page.locator(f".st-key-chart_{station_id(app)} .js-plotly-plot")).to_be_visible(timeout=LONG)


def test_a_files_link_opens_after_sign_in(page: Page, app) -> None:
    _link_then_sign_in(page, app, "files")
    expect(page.get_by_role("heading", name="Files")).to_be_visible(timeout=LONG)
