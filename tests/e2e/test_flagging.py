"""Brush-select flagging in a real Chromium: an analyst drags across the chart, flags the
period on two channels, sees the band, deletes the flag; the audit log has both changes.
Also: a click on the availability heatmap opens that day in the chart.

Screenshots ``docs/screenshots/health.png`` (the page with the new band) and
``docs/screenshots/flag-dialog.png`` (the flag dialog, filled in) are written on each run.
"""

from __future__ import annotations

import re
from datetime import UTC
from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import click_until, drag, settle, station_id
from tests.e2e.test_browser import LONG, sign_in

pytestmark = pytest.mark.e2e


def _open_station(page: Page, app) -> tuple[object, int]:
    sid = station_id(app)
    page.goto(app.url)
    sign_in(page, app, "analyst")
    chart = page.locator(f".st-key-chart_{sid} .js-plotly-plot")
    link = page.get_by_test_id("stSidebarNav").get_by_role("link", name="Station", exact=True)
    click_until(link.click, lambda timeout: expect(chart).to_be_visible(timeout=timeout), wait_ms=LONG)
    expect(page.get_by_role("heading", name=app.mast)).to_be_visible()
    expect(chart.locator("g.trace.scatter path.js-line")).to_have_count(2)
    return chart, sid


def _pick(page: Page, container, label: str, option: str) -> None:
    """Choose ``option`` in the multiselect or selectbox labelled ``label`` inside ``container``:
    type it, then click it in the (filtered) list."""
    box = container.get_by_role("combobox", name=label)
    box.click()
    box.press_sequentially(option[:12])
    page.get_by_role("option", name=option, exact=True).click()


def test_analyst_flags_a_dragged_period_sees_the_band_and_deletes_it(page: Page, app, screenshots: Path) -> None:
    chart, sid = _open_station(page, app)
    expect(chart.locator(".annotation-text")).to_have_count(0)  # no flags yet
    drag(page, chart, 0.30, 0.45)
    selected = page.get_by_text(re.compile(r"^Selected: \d{4}-\d\d-\d\d \d\d:\d\d – "))
    expect(selected).to_be_visible()
    flag_button = page.get_by_role("button", name="Flag this period…")
    expect(page.get_by_role("button", name="Zoom to selection")).to_be_visible()

    dialog = page.get_by_role("dialog")
    click_until(flag_button.click, lambda timeout: expect(dialog).to_be_visible(timeout=timeout))
    expect(dialog.get_by_text("Flag this period")).to_be_visible()
    # the period to be flagged, snapped to whole 10-minute records, is shown before saving
    expect(dialog.get_by_text(re.compile(r"^Snapped to whole records: every 10-minute record the selection "))).to_be_visible()
    shown = dialog.get_by_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d0 – \d{4}-\d\d-\d\d \d\d:\d0 UTC \(")).inner_text()
    # two channels: the plotted NE average stays, the SW average is swapped for 60 m NE
    remove = dialog.get_by_role("button", name=re.compile(r"^Remove "))
    expect(remove).to_have_count(2)
    assert remove.evaluate_all("els => els.map(e => e.getAttribute('aria-label'))") == [
        "Remove WS_80m_NE_Avg [m/s]", "Remove WS_80m_SW_Avg [m/s]"]
    dialog.get_by_role("button", name="Remove WS_80m_SW_Avg [m/s]").click()
    expect(remove).to_have_count(1)
    _pick(page, dialog, "Channels", "WS_60m_NE_Avg [m/s]")
    dialog.get_by_text("Flag this period").click()  # closes the list of options
    expect(remove).to_have_count(2)
    assert remove.evaluate_all("els => els.map(e => e.getAttribute('aria-label'))") == [
        "Remove WS_80m_NE_Avg [m/s]", "Remove WS_60m_NE_Avg [m/s]"]
    _pick(page, dialog, "Category", "maintenance")
    dialog.get_by_label("Note").fill("technician on the mast, cups replaced")
    expect(dialog.get_by_label("Note")).to_have_value("technician on the mast, cups replaced")
    page.screenshot(path=screenshots / "flag-dialog.png")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_have_count(0)

    with psycopg.connect(app.database_url) as conn:
        row = conn.execute(
            "SELECT f.id, f.category, f.note, f.author, f.start_time, f.end_time,"
            " array(SELECT c.column_name FROM flag_channel fc JOIN channel c ON c.id = fc.channel_id"
            "       WHERE fc.flag_id = f.id ORDER BY c.column_name) AS columns"
            " FROM flag f WHERE f.station_id = %s AND f.deleted_at IS NULL", (sid,)).fetchall()
    assert len(row) == 1, row
    flag_id, category, note, author, start, end, columns = row[0]
    assert (category, note, author) == ("maintenance", "technician on the mast, cups replaced", "anna")
    assert columns == ["WS_60m_NE_Avg", "WS_80m_NE_Avg"]
    span_days = (end - start).total_seconds() / 86400
    assert 0.2 < span_days < 0.7, (start, end)  # about 15 % of the 3-day chart
    # snapped to whole records: every record the drag touched, as the dialog said
    for t in (start, end):
        assert (t.minute % 10, t.second, t.microsecond) == (0, 0, 0), (start, end)
    assert shown.startswith(f"{start.astimezone(UTC):%Y-%m-%d %H:%M} – {end.astimezone(UTC):%Y-%m-%d %H:%M} UTC"), shown

    # the band is drawn at once, labelled, and listed under the chart
    expect(chart.locator(".annotation-text")).to_have_text([f"maintenance #{flag_id}"])
    expect(chart.locator(".shapelayer path")).to_have_count(1)
    listed = page.get_by_test_id("stMarkdown").filter(has_text=f"#{flag_id} maintenance")
    expect(listed).to_contain_text("WS_80m_NE_Avg, WS_60m_NE_Avg")
    expect(listed).to_contain_text("by anna")
    page.set_viewport_size({"width": 1400, "height": 1500})
    page.get_by_role("heading", name=app.mast).scroll_into_view_if_needed()
    page.screenshot(path=screenshots / "health.png")
    page.set_viewport_size({"width": 1400, "height": 900})

    page.get_by_role("button", name="Delete").click()
    expect(page.get_by_text("No flags in this range.")).to_be_visible()
    expect(chart.locator(".annotation-text")).to_have_count(0)
    expect(page.get_by_role("button", name=f"Undo: restore flag #{flag_id}")).to_be_visible()

    with psycopg.connect(app.database_url) as conn:
        audit = conn.execute(
            "SELECT action, actor, details->>'category' FROM audit WHERE entity = 'flag' AND entity_id = %s"
            " ORDER BY id", (flag_id,)).fetchall()
        deleted_by = conn.execute("SELECT deleted_by FROM flag WHERE id = %s", (flag_id,)).fetchone()[0]
    assert audit == [("create", "anna", "maintenance"), ("delete", "anna", "maintenance")]
    assert deleted_by == "anna"


def test_a_click_on_the_heatmap_opens_that_day_with_its_channel(page: Page, app) -> None:
    chart, sid = _open_station(page, app)
    heat = page.locator(f".st-key-heat_{sid} .js-plotly-plot")
    expect(heat).to_be_visible()
    expect(page.get_by_text(f"({app.days}.0 days)").first).to_be_visible()
    settle(page)
    heat.scroll_into_view_if_needed()
    box = heat.locator(".nsewdrag").first.bounding_box()
    row = heat.locator(".ytick text", has_text=re.compile(r"^AirT_2m_Avg \[Deg C\]$")).bounding_box()
    assert box is not None and row is not None
    # the middle of three day columns, in the row of a channel that is not charted yet
    page.mouse.click(box["x"] + box["width"] * 0.5, row["y"] + row["height"] / 2)
    zoomed = page.get_by_text(re.compile(r"^Zoomed in to \d{4}-\d\d-\d\d 00:00 – \d{4}-\d\d-\d\d 00:00 UTC \(1\.0 days\)$"))
    expect(zoomed).to_be_visible()
    settle(page)  # the run is over: the multiselect it replaced (a new key) is gone
    picker = page.get_by_test_id("stMultiSelect").filter(has=page.get_by_text("Channels", exact=True))
    expect(picker.get_by_role("button", name=re.compile(r"^Remove "))).to_have_count(3)
    expect(picker).to_contain_text("AirT_2m_Avg [Deg C]")
    expect(chart.locator(".legendtext")).to_have_text(
        ["WS_80m_NE_Avg [m/s]", "WS_80m_SW_Avg [m/s]", "AirT_2m_Avg [Deg C]"])
    # the channel choice survives the next rerun (the browser sends the multiselect's value)
    page.get_by_text("Hide flagged values").click()
    settle(page)
    expect(chart.locator(".legendtext")).to_have_count(3)
    expect(picker.get_by_role("button", name=re.compile(r"^Remove "))).to_have_count(3)
