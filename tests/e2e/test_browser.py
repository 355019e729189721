"""The app in a real Chromium: sign-in, the chart of worker-imported data, role refusals.

Every step waits for visible text or elements (Streamlit reruns asynchronously), never
for a fixed time. Screenshots of the login page and the station page are
written to ``docs/screenshots/`` on each run.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import click_until, drag, settle, station_id


pytestmark = pytest.mark.e2e

LONG = 60_000  # ms: the first page load of a fresh server imports pandas, plotly, …


def sign_in(page: Page, app, role: str, *, password: str | None = None) -> None:
    user, right = app.users[role]
    username = page.get_by_role("textbox", name="Username")
    expect(username).to_be_visible(timeout=LONG)
    username.fill(user)
    page.get_by_role("textbox", name="Password").fill(password or right)
    page.get_by_role("button", name="Login").click()
    if password is None:
        # The remember-me cookie component reruns the page once it has set the cookie; a
        # click on the navigation before that rerun can be lost.
        page.wait_for_function("() => document.cookie.includes('stationmanager_auth=')", timeout=LONG)
        settle(page, timeout=LONG)


def nav(page: Page):
    return page.get_by_test_id("stSidebarNav")


def test_analyst_sees_the_chart_of_imported_data(page: Page, app, screenshots: Path) -> None:
    page.goto(app.url)
    sign_in(page, app, "analyst")
    expect(page.get_by_role("heading", name="Stations")).to_be_visible(timeout=LONG)
    card = page.get_by_test_id("stColumn").filter(has=page.get_by_role("link", name=app.mast))
    expect(card.get_by_test_id("stMetric").filter(has_text="Files 7 d")).to_contain_text(str(app.days))
    expect(page.get_by_text("Import queue empty").first).to_be_visible()
    expect(nav(page)).not_to_contain_text("Admin")  # (tests/e2e/test_overview.py screenshots the overview)

    click_until(page.get_by_role("link", name=app.mast).click,
                lambda timeout: expect(page).to_have_url(re.compile(r"/station\?station=Ballymore\+Hill$"), timeout=timeout))
    chart = page.locator(f".st-key-chart_{station_id(app)} .js-plotly-plot")
    expect(chart).to_be_visible(timeout=LONG)
    lines = chart.locator("g.trace.scatter path.js-line")
    expect(lines).to_have_count(2)  # the default: the two highest wind-speed averages
    assert all(len(d or "") > 100 for d in lines.evaluate_all("els => els.map(e => e.getAttribute('d'))"))
    expect(chart.locator(".legendtext")).to_have_text(["WS_80m_NE_Avg [m/s]", "WS_80m_SW_Avg [m/s]"])
    expect(page.get_by_text("Raw 10-minute readings.")).to_be_visible()
    page.screenshot(path=screenshots / "station.png")


def test_box_select_zooms_in_and_reset_restores(page: Page, app) -> None:
    page.goto(app.url)
    sign_in(page, app, "analyst")
    click_until(nav(page).get_by_role("link", name="Station", exact=True).click,
                lambda timeout: expect(page).to_have_url(re.compile(r"/station\?station=Ballymore\+Hill$"), timeout=timeout))
    chart = page.locator(f".st-key-chart_{station_id(app)} .js-plotly-plot")
    expect(chart).to_be_visible(timeout=LONG)
    # the caption under the time series, for the whole range (a rerun may briefly show the old
    # caption beside the new one, so each is looked for by its full text)
    whole = page.get_by_text(re.compile(rf"^Raw 10-minute readings\. .*\({app.days}\.0 days\)"))
    expect(whole).to_be_visible()
    expect(chart.locator("g.trace.scatter path.js-line")).to_have_count(2)  # drawn: ready for a drag
    # the multiselect shows the charted channels (it once came up empty after the cookie's rerun,
    # and the drag's rerun then sent no channels)
    picker = page.get_by_test_id("stMultiSelect").filter(has=page.get_by_text("Channels", exact=True))
    expect(picker.get_by_role("button", name=re.compile(r"^Remove "))).to_have_count(2)
    drag(page, chart, 0.40, 0.60)
    zoom = page.get_by_role("button", name="Zoom to selection")  # an analyst may also flag it
    expect(zoom).to_be_visible()
    expect(chart.locator("g.trace.scatter path.js-line")).to_have_count(2)
    zoom.click()
    expect(page.get_by_text("Zoomed in to")).to_be_visible()
    expect(whole).to_have_count(0)
    page.get_by_role("button", name="Reset range").click()
    expect(page.get_by_text("Zoomed in to")).to_have_count(0)
    expect(whole).to_be_visible()


def test_wrong_password_is_refused(page: Page, app, screenshots: Path) -> None:
    page.goto(app.url)
    expect(page.get_by_role("button", name="Login")).to_be_visible(timeout=LONG)
    page.screenshot(path=screenshots / "login.png")
    sign_in(page, app, "viewer", password="not-the-password")
    expect(page.get_by_text("Username or password is incorrect")).to_be_visible()
    expect(page.get_by_role("textbox", name="Username")).to_be_visible()
    expect(nav(page)).to_have_count(0)
    expect(page.get_by_role("heading", name="Stations")).to_have_count(0)


def test_viewer_cannot_reach_admin(page: Page, app) -> None:
    page.goto(app.url)
    sign_in(page, app, "viewer")
    expect(page.get_by_role("heading", name="Stations")).to_be_visible(timeout=LONG)
    expect(nav(page)).to_contain_text("Station")
    expect(nav(page)).not_to_contain_text("Admin")

    page.goto(f"{app.url}/admin")  # typed by hand: a new session
    refusal = page.get_by_text("this needs the admin role; you are viewer")
    username = page.get_by_role("textbox", name="Username")
    expect(refusal.or_(username)).to_be_visible(timeout=LONG)
    if username.is_visible():  # the remember-me cookie was not stored yet
        sign_in(page, app, "viewer")
    expect(refusal).to_be_visible(timeout=LONG)
    expect(page.get_by_role("heading", name="Admin")).to_have_count(0)
    expect(page.get_by_text("Users")).to_have_count(0)
    expect(nav(page)).not_to_contain_text("Admin")
